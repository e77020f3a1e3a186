"""export_tflite: sparse TensorFlow Lite flatbuffers that compute what the Keras model does."""

import os
import warnings

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp, toy_data
from tf_lottery.export.saved_model import artifact_size
from tf_lottery.export.tflite import export_tflite, tflite_runner
from tf_lottery.export.tflite_report import tflite_sparsity_report


def pruned_mlp(sparsity=0.9):
    model = tfl.prunable(mlp(hidden=(300, 100)))
    model(toy_data(n=2)[0])
    if sparsity:
        tfl.prune(model, target_sparsity=sparsity)
    return model


class TestExportTflite(TestCase):
    def test_sparse_flatbuffer_matches_keras_and_is_much_smaller(self, tmp_path):
        model = pruned_mlp(0.9)
        sparse = export_tflite(model, str(tmp_path / "sparse.tflite"), output_names=["logits"])
        dense_format = export_tflite(model, str(tmp_path / "dense_format.tflite"), sparse=False)
        assert sorted(os.listdir(tmp_path)) == ["dense_format.tflite", "sparse.tflite"]  # no temporary files
        x, _ = toy_data(n=32, seed=4)
        expected = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_allclose(tflite_runner(sparse)(inputs=x)["logits"], expected, atol=1e-5)
        np.testing.assert_allclose(tflite_runner(dense_format)(inputs=x)["output"], expected, atol=1e-5)
        # 10% of the float32 weights remain, plus their indices.
        assert artifact_size(sparse).raw <= 0.25 * artifact_size(dense_format).raw

    def test_a_dense_model_is_not_made_larger(self, tmp_path):
        model = pruned_mlp(0.0)
        sparse = artifact_size(export_tflite(model, str(tmp_path / "a.tflite"))).raw
        plain = artifact_size(export_tflite(model, str(tmp_path / "b.tflite"), sparse=False)).raw
        assert sparse == pytest.approx(plain, rel=0.01)

    def test_runner_takes_the_bytes_and_names_the_inputs(self, tmp_path):
        path = export_tflite(pruned_mlp(0.5), str(tmp_path / "m.tflite"), input_names=["features"])
        with open(path, "rb") as handle:
            run = tflite_runner(handle.read())
        assert run(features=np.zeros((3, 40)))["output"].shape == (3, 10)  # float64 is cast, batch resized
        with pytest.raises(ValueError, match=r"Expected the inputs \['features'\]. Received: \['x'\]"):
            run(x=np.zeros((1, 40)))
        with pytest.raises(ValueError, match=r"argument `signature`: expected one of \['serving_default'\]"):
            tflite_runner(path, signature="serve")


class TestExportTfliteErrors(TestCase):
    def test_an_existing_file_is_kept_unless_overwrite(self, tmp_path):
        path = tmp_path / "m.tflite"
        path.write_bytes(b"old")
        with pytest.raises(FileExistsError, match=r"argument `path`: '.*m.tflite' already exists"):
            export_tflite(pruned_mlp(0.5), str(path))
        assert path.read_bytes() == b"old"
        export_tflite(pruned_mlp(0.5), str(path), overwrite=True)
        assert path.read_bytes()[4:8] == b"TFL3"  # the flatbuffer identifier
        assert os.listdir(tmp_path) == ["m.tflite"]

    def test_unbuilt_model_and_missing_directory_write_nothing(self, tmp_path):
        with pytest.raises(ValueError, match=r"argument `model`: 'unbuilt' is not built"):
            export_tflite(
                keras.Sequential([keras.layers.Dense(2)], name="unbuilt"), str(tmp_path / "m.tflite")
            )
        with pytest.raises(FileNotFoundError, match="does not exist"):
            export_tflite(pruned_mlp(0.5), str(tmp_path / "missing" / "m.tflite"))
        assert os.listdir(tmp_path) == []


def _export_quietly(model, path, **kwargs) -> tuple:
    """Exports and returns the report and the export_tflite warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_tflite(model, path, verbose=0, **kwargs)
    return tflite_sparsity_report(path), [w for w in caught if "export_tflite:" in str(w.message)]


class TestTfliteSparsityReport(TestCase):
    def test_1x4_blocks_run_the_sparse_kernel_and_nothing_is_warned(self, tmp_path, capsys):
        model = tfl.prunable(mlp(hidden=(64, 32)))
        model(toy_data(n=2)[0])
        tfl.prune(model, target_sparsity=0.75, scope="layer", structure="1x4")
        path = str(tmp_path / "blocks.tflite")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            export_tflite(model, path)
        assert not [w for w in caught if "export_tflite:" in str(w.message)]
        printed = capsys.readouterr().out
        assert printed.count("stored sparse 1x4 blocks: sparse kernel") == 3, printed
        report = tflite_sparsity_report(path)
        assert [w.op for w in report.fast] == ["FULLY_CONNECTED"] * 3 and report.slow == []
        assert [w.shape for w in report.weights] == [(64, 40), (32, 64), (10, 32)]  # TFLite's (out, in)
        assert all(w.storage == "sparse 1x4 blocks" for w in report.weights)
        assert report.weights[0].zeros == pytest.approx(0.75, abs=0.01)
        x, _ = toy_data(n=8, seed=3)
        expected = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_allclose(tflite_runner(path)(inputs=x)["output"], expected, atol=1e-5)

    def test_blocks_along_the_outputs_are_not_what_the_kernel_reads(self, tmp_path):
        # 4x1: four consecutive output units of one input, the transpose of TFLite's 1x4.
        model = tfl.prunable(mlp(hidden=(64, 32)), exclude=["output"])  # 10 outputs: not a multiple of 4
        model(toy_data(n=2)[0])
        tfl.prune(model, target_sparsity=0.75, scope="layer", structure="4x1")
        report, warned = _export_quietly(model, str(tmp_path / "transposed.tflite"))
        assert [(w.storage, w.runtime) for w in report.weights[:2]] == [("sparse", "densified at load")] * 2
        assert len(warned) == 1

    @pytest.mark.parametrize("structure, amount", [(None, 0.9), ("2:4", None)])
    def test_unstructured_and_n_m_dense_weights_are_densified_with_one_warning(
        self, tmp_path, capsys, structure, amount
    ):
        model = pruned_mlp(0.0)
        tfl.prune(model, target_sparsity=amount, scope="layer", structure=structure)
        report, warned = _export_quietly(model, str(tmp_path / "m.tflite"))
        assert capsys.readouterr().out == ""  # verbose=0
        assert [w.runtime for w in report.weights] == ["densified at load"] * 3
        assert [w.storage for w in report.weights] == ["sparse"] * 3
        assert len(warned) == 1
        assert "3 of the 3 pruned weights" in str(warned[0].message)
        assert "structure='1x4'" in str(warned[0].message)

    def test_convolutions_run_dense_and_say_why(self, tmp_path):
        model = tfl.prunable(
            keras.Sequential(
                [
                    keras.Input((8, 8, 16)),
                    keras.layers.Conv2D(32, 1, name="pointwise"),
                    keras.layers.Conv2D(16, 3, name="conv3x3"),
                ]
            )
        )
        model(np.zeros((1, 8, 8, 16), "float32"))
        tfl.prune(model, target_sparsity=0.9, scope="layer")
        report, warned = _export_quietly(model, str(tmp_path / "cnn.tflite"))
        assert [(w.op, w.runtime) for w in report.weights] == [("CONV_2D", "densified at load")] * 2
        assert "XNNPACK's sparse 1x1-convolution path" in report.weights[0].note
        assert "no sparse convolution kernel" in report.weights[1].note
        assert len(warned) == 1 and "2 of the 2 pruned weights" in str(warned[0].message)

    def test_a_dense_model_reports_dense_weights_and_no_warning(self, tmp_path):
        report, warned = _export_quietly(pruned_mlp(0.0), str(tmp_path / "dense.tflite"))
        assert warned == [] and report.slow == [] and report.fast == []
        assert {w.runtime for w in report.weights} == {"dense"}
        assert "3 other weight(s): dense" in str(report)
