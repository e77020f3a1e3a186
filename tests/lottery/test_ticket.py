"""Tickets: save/load safely and atomically, apply with checks, transfer."""

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp
from tf_lottery.core.walk import model_variables
from tf_lottery.utils import atomic_io


def _ticket_model(classes=10, hidden=(32, 16)):
    return tfl.prunable(mlp(input_dim=20, hidden=hidden, classes=classes))


def _ticket(model):
    weights = [v.numpy().copy() for v in model_variables(model)]
    tfl.prune(model, target_sparsity=0.7)
    return tfl.Ticket.from_model(model, weights=weights, metadata={"round": 3})


class TestTicket(TestCase):
    def test_save_load_apply_round_trip(self, tmp_path):
        source = _ticket_model()
        ticket = _ticket(source)
        path = str(tmp_path / "ticket.npz")
        ticket.save(path)
        assert os.listdir(tmp_path) == ["ticket.npz"]  # no temporary files left
        loaded = tfl.Ticket.load(path)
        assert loaded.metadata["round"] == 3
        assert loaded.metadata["sparsity"] == pytest.approx(0.7, abs=1e-3)
        assert loaded.mask_names == ["dense/kernel", "dense_1/kernel", "output/kernel"]
        target = _ticket_model()
        loaded.apply(target)
        for a, b in zip(tfl.prune_wrappers(source), tfl.prune_wrappers(target)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
        masks = {
            id(w): m for wr in tfl.prune_wrappers(target) for w, m in zip(wr.pruned_weights, wr.get_masks())
        }
        for variable, value in zip(model_variables(target), ticket.weights):
            expected = value * masks[id(variable)] if id(variable) in masks else value
            np.testing.assert_array_equal(variable.numpy(), expected)

    def test_a_ticket_prints_as_one_line_summary(self, tmp_path):
        ticket = _ticket(_ticket_model())  # 20*32 + 32*16 + 16*10 = 1,312 prunable weights
        kept = sum(int(np.count_nonzero(m)) for m in ticket.masks)
        expected = (
            f"Ticket(masks=3 ({kept:,} of 1,312 weights kept), sparsity={1 - kept / 1312:.4f}, "
            "weights=6 arrays, round=3)"
        )
        assert repr(ticket) == str(ticket) == expected
        path = str(tmp_path / "ticket.npz")
        ticket.save(path)
        loaded = repr(tfl.Ticket.load(path))
        assert loaded == expected[:-1] + f", path={path!r})" and "\n" not in loaded
        masks_only = tfl.Ticket(masks=[np.ones((2, 2), bool)], mask_names=["d/kernel"])
        assert repr(masks_only) == "Ticket(masks=1 (4 of 4 weights kept), sparsity=0.0000, weights=None)"

    def test_loading_never_unpickles(self, tmp_path):
        path = str(tmp_path / "evil.npz")
        np.savez(path, header=np.array([{"format": "x"}], dtype=object))
        with pytest.raises(ValueError, match="not a readable tf_lottery ticket"):
            tfl.Ticket.load(path)

    @pytest.mark.parametrize(
        "damage, reason",
        [
            ("truncate", "File is not a zip file"),
            ("garbage", "it does not start as a zip archive"),
            ("garble", "Bad CRC-32"),
            ("missing_mask", "the array 'mask_00001' is missing"),
            ("no_header", "its entry 'header' is missing"),
            ("header_a_list", "its entry 'header' holds a JSON array, expected a JSON object"),
            ("header_not_json", "its entry 'header' is not readable JSON"),
            ("names_not_a_list", "its header's 'mask_names' is 3, not a list of names"),
            ("weight_names_a_string", "its header's 'weight_names' is 'w', not a list of names"),
            ("metadata_a_list", "its header's 'metadata' is a list, not an object"),
        ],
    )
    def test_corrupted_files_give_a_clear_error_naming_the_file(self, tmp_path, damage, reason):
        path = str(tmp_path / "ticket.npz")
        _ticket(_ticket_model()).save(path)
        data = open(path, "rb").read()
        arrays = atomic_io.load_npz(path)
        header = atomic_io.json_entry(arrays, "header", path)
        if damage == "truncate":
            open(path, "wb").write(data[: len(data) // 2])
        elif damage == "garbage":
            open(path, "wb").write(b"not a zip file at all")
        elif damage == "garble":  # bytes of an array overwritten: the archive's checksum differs
            middle = len(data) // 2
            open(path, "wb").write(data[:middle] + bytes(16) + data[middle + 16 :])
        else:
            if damage == "missing_mask":
                del arrays["mask_00001"]
            elif damage == "no_header":
                del arrays["header"]
            elif damage == "header_a_list":
                arrays["header"] = atomic_io.json_array([header])
            elif damage == "header_not_json":
                arrays["header"] = np.frombuffer(b"{\xff", dtype=np.uint8)
            else:
                key = {"names": "mask_names", "weight": "weight_names", "metadata": "metadata"}[
                    damage.split("_")[0]
                ]
                header[key] = {"mask_names": 3, "weight_names": "w", "metadata": []}[key]
                arrays["header"] = atomic_io.json_array(header)
            atomic_io.write_npz(path, arrays)
        with pytest.raises(atomic_io.DamagedFileError) as caught:
            tfl.Ticket.load(path)
        message = str(caught.value)
        assert message.startswith(f"Cannot read '{path}': it is not a readable tf_lottery ticket")
        assert reason in message and message.endswith("Re-create it with `Ticket.save`.")
        assert isinstance(caught.value, ValueError) and caught.value.path == path

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no ticket file at"):
            tfl.Ticket.load(str(tmp_path / "nope.npz"))

    def test_a_crash_mid_save_leaves_the_previous_ticket(self, tmp_path, monkeypatch):
        path = str(tmp_path / "ticket.npz")
        first = _ticket(_ticket_model())
        first.save(path)
        before = open(path, "rb").read()

        def crash(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="disk full"):
            first.save(path)
        assert open(path, "rb").read() == before
        assert os.listdir(tmp_path) == ["ticket.npz"]

    def test_ticket_for_another_architecture_is_refused_and_changes_nothing(self):
        ticket = _ticket(_ticket_model())
        other = _ticket_model(hidden=(32, 8))
        masks_before = [m for wr in tfl.prune_wrappers(other) for m in wr.get_masks()]
        with pytest.raises(ValueError, match=r"pruned weight #1 is 'dense_1/kernel' of shape \(32, 16\)"):
            ticket.apply(other)
        masks_after = [m for wr in tfl.prune_wrappers(other) for m in wr.get_masks()]
        for a, b in zip(masks_before, masks_after):
            np.testing.assert_array_equal(a, b)
        deeper = tfl.prunable(mlp(input_dim=20, hidden=(32, 16, 8), classes=10))
        with pytest.raises(ValueError, match="the ticket has 3 pruned weights .* the model has 4"):
            ticket.apply(deeper)

    def test_transfer_to_a_model_with_another_output_layer(self):
        source = _ticket_model(classes=10)
        ticket = _ticket(source)
        target = _ticket_model(classes=3)
        fresh_head = tfl.prune_wrappers(target)[-1].layer.kernel.numpy().copy()
        with pytest.raises(ValueError, match="transfer=True"):
            ticket.apply(target)
        ticket.apply(target, transfer=True)
        wrappers = tfl.prune_wrappers(target)
        for a, b in zip(tfl.prune_wrappers(source)[:-1], wrappers[:-1]):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
        assert wrappers[-1].get_masks()[0].all()  # dense head
        np.testing.assert_array_equal(wrappers[-1].layer.kernel.numpy(), fresh_head)
        first_kernel = ticket.weights[0] * ticket.masks[0]
        np.testing.assert_array_equal(wrappers[0].layer.kernel.numpy(), first_kernel)

    def test_masks_only_ticket(self):
        model = _ticket_model()
        tfl.prune(model, target_sparsity=0.5)
        ticket = tfl.Ticket.from_model(model)
        assert ticket.weights is None
        target = _ticket_model()
        before = tfl.prune_wrappers(target)[0].layer.kernel.numpy().copy()
        ticket.apply(target)
        mask = ticket.masks[0]
        np.testing.assert_array_equal(tfl.prune_wrappers(target)[0].layer.kernel.numpy(), before * mask)

    @pytest.mark.parametrize(
        "damage, message",
        [
            (
                "float64_weight",
                r"weight #4 'output/kernel' \(for '.*output/kernel'\) has dtype float64 .* float32",
            ),
            ("string_weight", r"weight #4 'output/kernel' .* has dtype <U3 .* does not convert exactly"),
            (
                "nan_rewind_weight",
                r"weight #4 'output/kernel' .* holds 1 NaN or Inf value\(s\).*`weights=False`",
            ),
            ("inf_rewind_weight", r"weight #5 'output/bias' .* holds 2 NaN or Inf value\(s\)"),
            ("wrong_shape_weight", r"weight #5 'output/bias' .* has shape \(3,\) in the ticket"),
            (
                "mask_of_twos",
                r"mask #2 'output/kernel' \(for '.*output/kernel'\) holds values other than 0 and 1",
            ),
            ("wrong_mask_shape", r"pruned weight #2 is 'output/kernel' of shape \(16, 3\)"),
            ("missing_weight", r"it holds 5 weights, the model has 6"),
        ],
        ids=lambda value: value if "_" in value and " " not in value else "",
    )
    def test_a_failing_apply_changes_nothing_and_names_the_file_and_weight(self, tmp_path, damage, message):
        # Was: masks and earlier weights written before the failure (or NaN/float64 weights applied).
        ticket = _ticket(_ticket_model())
        if damage == "float64_weight":
            ticket.weights[4] = ticket.weights[4].astype(np.float64)
        elif damage == "string_weight":
            ticket.weights[4] = np.full(ticket.weights[4].shape, "abc")
        elif damage == "nan_rewind_weight":
            ticket.weights[4][0, 0] = np.nan
        elif damage == "inf_rewind_weight":
            ticket.weights[5][:2] = [np.inf, -np.inf]
        elif damage == "wrong_shape_weight":
            ticket.weights[5] = np.zeros(3, np.float32)
        elif damage == "mask_of_twos":
            ticket.masks[2] = ticket.masks[2].astype(np.int8) * 2
        elif damage == "wrong_mask_shape":
            ticket.masks[2] = np.ones((16, 3), bool)
        elif damage == "missing_weight":
            ticket.weights, ticket.weight_names = ticket.weights[:5], ticket.weight_names[:5]
        path = str(tmp_path / "ticket.npz")
        if damage in ("mask_of_twos", "string_weight"):
            tickets = [ticket]  # `save` writes masks as booleans; string arrays need pickling to load
        else:
            ticket.save(path)
            tickets = [ticket, tfl.Ticket.load(path)]
        target = _ticket_model()
        tfl.prune(target, target_sparsity=0.3)
        masks_before = [m.tobytes() for wr in tfl.prune_wrappers(target) for m in wr.get_masks()]
        values_before = [v.numpy().tobytes() for v in model_variables(target)]
        for candidate in tickets:
            named = rf"^Ticket '{path}'" if candidate.path else r"^This ticket"
            with pytest.raises(ValueError, match=named + ".*" + message):
                candidate.apply(target)
            assert [m.tobytes() for wr in tfl.prune_wrappers(target) for m in wr.get_masks()] == masks_before
            assert [v.numpy().tobytes() for v in model_variables(target)] == values_before

    def test_masks_given_as_zeros_and_ones_apply_as_booleans(self):
        model = _ticket_model()
        ticket = _ticket(model)
        ticket.masks = [m.astype(np.float32) for m in ticket.masks]
        target = _ticket_model()
        ticket.apply(target)
        for a, b in zip(tfl.prune_wrappers(model), tfl.prune_wrappers(target)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])

    def test_from_model_checks(self):
        with pytest.raises(ValueError, match="has no PruneWrapper layers"):
            tfl.Ticket.from_model(mlp())
        with pytest.raises(ValueError, match=r"`weights`: expected 6 arrays"):
            tfl.Ticket.from_model(_ticket_model(), weights=[np.zeros(3)])


class TestSparsityReport(TestCase):
    def test_counts(self):
        model = _ticket_model()
        tfl.prune(model, rate=0.5, scope="layer")
        report = tfl.sparsity_report(model)
        assert [e.total for e in report.layers] == [640, 512, 160]
        assert [e.alive for e in report.layers] == [320, 256, 80]
        assert report.sparsity == pytest.approx(0.5)
        assert report.percent_remaining == pytest.approx(50.0)
        biases = 32 + 16 + 10
        assert report.model_total == 640 + 512 + 160 + biases
        assert report.model_nonzero <= report.alive + biases
        text = str(report)
        assert "global" in text and "50.00%" in text
        assert report.to_dict()["layers"][0]["shape"] == [20, 32]

    def test_plain_model(self):
        plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        report = tfl.sparsity_report(plain)
        # No masks: the prunable kernel is listed with its zeros counted (#26).
        assert report.source == "zeros" and [(e.name, e.total) for e in report.layers] == [
            ("dense/kernel", 6)
        ]
        assert report.model_total == 8


def test_atomic_files_get_ordinary_permissions(tmp_path):
    from tf_lottery.utils import atomic_io

    path = str(tmp_path / "data.json")
    atomic_io.write_json(path, {"a": 1})
    expected = 0o666 & ~atomic_io._UMASK
    assert os.stat(path).st_mode & 0o777 == expected
