"""The MNIST-1D cache folder: a cached copy is the generated dataset bit for bit, and a bad one is replaced."""

import os

import numpy as np
import pytest

from tf_lottery.data import mnist1d

# A small dataset keeps generation cheap; the canonical one differs only in its sample count.
SEED, SAMPLES = 7, 120


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TF_LOTTERY_CACHE_DIR", str(folder))
    mnist1d._make.cache_clear()  # the in-process memo stands for "another process" below
    yield folder
    mnist1d._make.cache_clear()


def _generated():
    return mnist1d._generate(SEED, SAMPLES)


def _load():
    mnist1d._make.cache_clear()
    (x, y), _, (x_test, y_test) = mnist1d.load_mnist1d(seed=SEED, num_samples=SAMPLES)
    return x, y, x_test, y_test


def _assert_same(found, expected):
    for a, b in zip(found, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def _only_file(folder):
    names = os.listdir(folder)
    assert (
        len(names) == 1
        and names[0].startswith("mnist1d-")
        and names[0].endswith(f"-seed{SEED}-n{SAMPLES}.npz")
    )
    return folder / names[0]


def test_the_first_load_writes_the_file_the_next_reads_without_generating(cache, monkeypatch):
    expected = _generated()
    _assert_same(_load(), expected)
    path = _only_file(cache)

    def generate(*args):
        raise AssertionError("generated although a cached copy was there")

    monkeypatch.setattr(mnist1d, "_generate", generate)
    _assert_same(_load(), expected)
    assert _only_file(cache) == path


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda path: path.write_bytes(path.read_bytes()[:200]), "truncated or garbled"),
        (lambda path: path.write_bytes(b""), "the file is empty"),
    ],
)
def test_a_damaged_copy_is_named_generated_again_and_replaced(cache, damage, reason):
    expected = _generated()
    _load()
    path = _only_file(cache)
    damage(path)
    with pytest.warns(UserWarning, match=rf"MNIST-1D: the cached copy is not used.*{path.name}.*{reason}"):
        _assert_same(_load(), expected)
    _assert_same(mnist1d._cached(str(path), mnist1d._cache_file(SEED, SAMPLES)[1]), expected)


def test_a_copy_of_another_dataset_under_this_name_is_not_used(cache):
    expected = _generated()
    _load()
    path = _only_file(cache)
    other_seed = mnist1d._cache_file(SEED + 1, SAMPLES)[0]
    mnist1d._make.cache_clear()
    mnist1d.load_mnist1d(seed=SEED + 1, num_samples=SAMPLES)
    os.replace(other_seed, path)  # seed 8's arrays under seed 7's name
    with pytest.warns(UserWarning, match=r"it describes .*'seed': 8.*expected .*'seed': 7"):
        _assert_same(_load(), expected)


def test_an_unwritable_folder_is_named_and_the_data_still_returned(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("TF_LOTTERY_CACHE_DIR", str(blocker / "cache"))
    mnist1d._make.cache_clear()
    try:
        with pytest.warns(
            UserWarning, match=r"cache folder '.*a file/cache' cannot be written.*TF_LOTTERY_CACHE_DIR"
        ):
            _assert_same(_load(), _generated())
    finally:
        mnist1d._make.cache_clear()
    assert blocker.read_text() == ""


def test_an_empty_variable_switches_the_cache_off_and_the_default_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TF_LOTTERY_CACHE_DIR", raising=False)
    assert mnist1d.cache_dir() == str(tmp_path / "xdg" / "tf_lottery")
    monkeypatch.setenv("TF_LOTTERY_CACHE_DIR", "")
    assert mnist1d.cache_dir() is None
    mnist1d._make.cache_clear()
    try:
        _assert_same(_load(), _generated())
    finally:
        mnist1d._make.cache_clear()
    assert not (tmp_path / "xdg").exists()
