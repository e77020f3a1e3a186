"""Atomic files on local disk and on `tf.io.gfile` paths (ram://): whole or absent, first finished wins."""

from __future__ import annotations

import errno
import os
import threading
import time
import uuid

import numpy as np
import pytest

from tf_lottery.utils import atomic_io


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    path = f"ram://atomic_io_test_{uuid.uuid4().hex}"
    atomic_io.makedirs(path)
    return path


def _temporaries(root):
    return [
        os.path.join(directory, name)
        for directory, _, files in atomic_io.walk(root)
        for name in files
        if name.endswith(".tmp")
    ]


def test_only_scheme_urls_are_not_local():
    assert atomic_io.is_local("/tmp/runs") and atomic_io.is_local("runs/a.json")
    assert not atomic_io.is_local("ram://runs") and not atomic_io.is_local("gs://bucket/runs")


def test_json_text_and_bytes_round_trip_and_leave_no_temporaries(root):
    atomic_io.makedirs(os.path.join(root, "a", "b"))
    json_path = os.path.join(root, "a", "b", "data.json")
    assert atomic_io.write_json(json_path, {"b": [1, 2.5], "a": "x"}) is True
    assert atomic_io.read_json(json_path) == {"a": "x", "b": [1, 2.5]}
    assert atomic_io.read_text(json_path).startswith('{\n  "a": "x"')  # indented, keys sorted
    atomic_io.write_text(os.path.join(root, "a", "note.txt"), "héllo")
    assert atomic_io.read_text(os.path.join(root, "a", "note.txt")) == "héllo"
    atomic_io.write_bytes(os.path.join(root, "blob"), b"\x00\x01")
    assert atomic_io.read_bytes(os.path.join(root, "blob")) == b"\x00\x01"
    assert atomic_io.listdir(root) == ["a", "blob"]
    assert atomic_io.listdir(os.path.join(root, "a")) == ["b", "note.txt"]
    assert atomic_io.isdir(os.path.join(root, "a")) and not atomic_io.isfile(os.path.join(root, "a"))
    assert atomic_io.isfile(json_path) and atomic_io.exists(json_path) and not atomic_io.isdir(json_path)
    assert not atomic_io.exists(os.path.join(root, "missing.json"))
    assert _temporaries(root) == []


def test_npz_round_trip_is_exact(root):
    arrays = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "m": np.array([True, False]),
        "s": np.int64(7),
    }
    path = os.path.join(root, "state.npz")
    atomic_io.write_npz(path, arrays)
    loaded = atomic_io.load_npz(path)
    assert sorted(loaded) == ["m", "s", "w"]
    for key, value in arrays.items():
        assert loaded[key].dtype == np.asarray(value).dtype and np.array_equal(loaded[key], value)


def test_load_npz_never_unpickles(root):
    path = os.path.join(root, "evil.npz")
    atomic_io.write_npz(path, {"header": np.array([{"format": "x"}], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        atomic_io.load_npz(path)


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_atomic_open_writes_text_and_bytes(root, mode):
    path = os.path.join(root, "out")
    with atomic_io.atomic_open(path, mode) as handle:
        handle.write("abc" if mode == "w" else b"abc")
    assert atomic_io.read_bytes(path) == b"abc"


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temporary(root):
    path = os.path.join(root, "data.json")
    atomic_io.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_io.atomic_open(path, "w") as handle:
            handle.write('{"v": ')
            raise RuntimeError("crash")
    assert atomic_io.read_json(path) == {"v": 1}
    assert _temporaries(root) == []


def test_missing_files_raise_file_not_found(root):
    with pytest.raises(FileNotFoundError):
        atomic_io.read_json(os.path.join(root, "missing.json"))
    with pytest.raises(FileNotFoundError):
        atomic_io.load_npz(os.path.join(root, "missing.npz"))


def test_remove_temporaries_removes_only_temporary_files(root):
    atomic_io.makedirs(os.path.join(root, "level"))
    keep = [os.path.join(root, "a.json"), os.path.join(root, "level", "end.npz")]
    for path in keep:
        atomic_io.write_bytes(path, b"whole")
    for path in (
        os.path.join(root, ".a.json.k2j4x8.tmp"),
        os.path.join(root, "level", ".end.npz.q1w2e3.tmp"),
    ):
        atomic_io.write_bytes(path, b"half")  # what a killed write leaves
    assert atomic_io.remove_temporaries(root) == 2
    assert _temporaries(root) == []
    assert all(atomic_io.read_bytes(path) == b"whole" for path in keep)
    assert atomic_io.remove_temporaries(os.path.join(root, "no_such_dir")) == 0


def test_without_overwrite_the_first_write_wins(root):
    path = os.path.join(root, "metrics.json")
    assert atomic_io.write_json(path, {"by": "first"}, overwrite=False) is True
    assert atomic_io.write_json(path, {"by": "second"}, overwrite=False) is False
    assert atomic_io.write_npz(path, {"x": np.zeros(2)}, overwrite=False) is False
    assert atomic_io.read_json(path) == {"by": "first"}
    assert _temporaries(root) == []
    assert atomic_io.write_json(path, {"by": "third"}) is True  # overwrite=True replaces
    assert atomic_io.read_json(path) == {"by": "third"}


def test_without_overwrite_a_local_file_gets_ordinary_permissions(tmp_path):
    path = str(tmp_path / "first.json")
    atomic_io.write_json(path, {}, overwrite=False)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~atomic_io._UMASK


def test_without_hard_links_the_first_write_still_wins(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", dst)

    monkeypatch.setattr(os, "link", no_links)
    path = str(tmp_path / "metrics.json")
    assert atomic_io.write_json(path, {"by": "first"}, overwrite=False) is True
    assert atomic_io.write_json(path, {"by": "second"}, overwrite=False) is False
    assert atomic_io.read_json(path) == {"by": "first"}
    assert os.listdir(tmp_path) == ["metrics.json"]


def _race(path: str, contents: dict) -> dict:
    """Writes each content to `path` from its own thread, all released at once."""
    barrier = threading.Barrier(len(contents))
    won = {}

    def writer(name):
        barrier.wait()
        won[name] = atomic_io.write_bytes(path, contents[name], overwrite=False)

    threads = [threading.Thread(target=writer, args=(name,)) for name in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_concurrent_writers_exactly_one_wins_and_the_file_is_whole(root):
    contents = {"a": b"\x01" * (1 << 20), "b": b"\x02" * (1 << 20)}
    for attempt in range(10):
        path = os.path.join(root, f"level_{attempt}.bin")
        won = _race(path, contents)
        assert sorted(won.values()) == [False, True]
        winner = "a" if won["a"] else "b"
        assert atomic_io.read_bytes(path) == contents[winner]
    assert _temporaries(root) == []


def test_remove_temporaries_keeps_writes_in_progress(tmp_path):
    """A temporary file names its writer: a live process's is kept, a dead one's or a stale one's goes."""
    import subprocess
    import sys

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    host = atomic_io._HOST
    other = "0" * 8 if host != "0" * 8 else "1" * 8
    names = {
        f".end.npz.{host}-{os.getpid()}-abc.tmp": True,  # this process, writing: kept
        f".end.npz.{host}-{dead_pid}-abc.tmp": False,  # killed writer on this machine
        f".end.npz.{other}-1-abc.tmp": True,  # another machine, recent
        f".old.npz.{other}-1-abc.tmp": False,  # another machine, older than STALE_AFTER_S
        ".legacy.json.x1y2.tmp": False,  # no writer recorded
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    stale = time.time() - atomic_io.STALE_AFTER_S - 60
    os.utime(tmp_path / f".old.npz.{other}-1-abc.tmp", (stale, stale))
    assert atomic_io.remove_temporaries(str(tmp_path)) == 3
    assert {p.name for p in tmp_path.iterdir()} == {n for n, kept in names.items() if kept}


def test_a_write_names_this_process_in_its_temporary_file(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_io.write_json(str(tmp_path / "metrics.json"), {"a": 1})
    (name,) = seen
    assert name.startswith(f".metrics.json.{atomic_io._HOST}-{os.getpid()}-") and name.endswith(".tmp")


def test_damaged_json_raises_one_error_naming_the_file(root):
    path = os.path.join(root, "metrics.json")
    atomic_io.write_json(path, {"level": 1, "evals": [1.0, 2.0]})
    text = atomic_io.read_bytes(path)
    cases = {
        "truncated": (text[: len(text) // 2], "not readable JSON (truncated or garbled)"),
        "garbled": (text[:5] + b"\xff\xfe" + text[7:], "not readable JSON (truncated or garbled)"),
        "empty": (b"", "not readable JSON"),
        "a list": (b"[1, 2]", "it holds a JSON array, expected a JSON object"),
        "a number": (b"3", "it holds a JSON int, expected a JSON object"),
    }
    for damage, (data, reason) in cases.items():
        atomic_io.write_bytes(path, data)
        with pytest.raises(atomic_io.DamagedFileError) as caught:
            atomic_io.read_json(path, expect=dict)
        assert str(caught.value).startswith(f"Cannot read '{path}': {reason}"), damage
        assert caught.value.path == path and isinstance(caught.value, ValueError)
    assert atomic_io.read_json(path) == 3  # no type asked for
    fixed = caught.value.with_fix("Delete it.")
    assert str(fixed) == f"Cannot read '{path}': it holds a JSON int, expected a JSON object. Delete it."


def test_every_truncation_and_garbling_of_an_npz_is_a_damaged_file_error(root):
    arrays = {"m00000": np.arange(40, dtype=np.float32), "info": atomic_io.json_array({"step": 3})}
    path = os.path.join(root, "state.npz")
    atomic_io.write_npz(path, arrays)
    data = atomic_io.read_bytes(path)
    rng = np.random.default_rng(0)
    damaged = [data[:n] for n in range(0, len(data), 3)]
    for _ in range(300):
        garbled = bytearray(data)
        for index in rng.integers(len(data), size=int(rng.integers(1, 6))):
            garbled[index] = (garbled[index] + int(rng.integers(1, 256))) % 256
        damaged.append(bytes(garbled))
    for content in damaged:
        if atomic_io.is_local(path):
            with open(path, "wb") as handle:  # not write_bytes: its fsync costs ~20 ms a file
                handle.write(content)
        else:
            atomic_io.write_bytes(path, content)
        try:
            loaded = atomic_io.load_npz(path)
            info = atomic_io.json_entry(loaded, "info", path)
        except atomic_io.DamagedFileError as error:
            assert str(error).startswith(f"Cannot read '{path}': ")
            continue
        # A change in bytes that hold no data (times, attributes) leaves the arrays whole.
        assert info == {"step": 3} and np.array_equal(loaded["m00000"], arrays["m00000"])


def test_json_entries_of_an_npz_are_checked(root):
    path = os.path.join(root, "state.npz")
    arrays = {"info": atomic_io.json_array([1]), "bad": np.frombuffer(b"{\xff", np.uint8)}
    for key, reason in [
        ("info", "its entry 'info' holds a JSON array, expected a JSON object"),
        ("bad", "its entry 'bad' is not readable JSON"),
        ("missing", "its entry 'missing' is missing"),
    ]:
        with pytest.raises(atomic_io.DamagedFileError, match=f"^Cannot read '{path}': {reason}"):
            atomic_io.json_entry(arrays, key, path)
    assert atomic_io.json_entry(arrays, "info", path, expect=list) == [1]


def test_remove_deletes_a_file_and_accepts_a_missing_one(root):
    path = os.path.join(root, "checkpoint.npz")
    atomic_io.write_bytes(path, b"x")
    atomic_io.remove(path)
    assert not atomic_io.exists(path)
    atomic_io.remove(path)
