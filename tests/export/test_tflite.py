"""export_tflite: sparse TensorFlow Lite flatbuffers that compute what the Keras model does."""

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp, toy_data
from tf_lottery.export.saved_model import artifact_size
from tf_lottery.export.tflite import export_tflite, tflite_runner


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
