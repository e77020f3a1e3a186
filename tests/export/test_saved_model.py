"""export_saved_model: a serving-ready, versioned SavedModel of the stripped ticket."""

import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.export.saved_model import REPORT_ASSET, artifact_size, export_saved_model, stripped_for_export


def pruned_mlp(sparsity=0.9, hidden=(64, 32)):
    model = tfl.prunable(mlp(hidden=hidden))
    model(toy_data(n=2)[0])
    if sparsity:
        tfl.prune(model, target_sparsity=sparsity)
    return model


def checkpoint_values(saved_model_dir):
    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.endswith("VARIABLE_VALUE") and not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")
    }


def serving_op_types(saved_model_dir):
    function = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    graph = function.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return collections.Counter(n.op for n in nodes)


class Pair(keras.Model):
    """A stand-in for a distiller: a teacher, a student, `lottery_target()`."""

    def __init__(self, teacher, student):
        super().__init__()
        self.teacher = teacher
        self.student = student

    def call(self, x):
        return self.student(x)

    def lottery_target(self):
        return self.student


class TestExportSavedModel(TestCase):
    def test_writes_a_versioned_directory_with_a_named_serving_signature(self, tmp_path):
        model = pruned_mlp()
        base = str(tmp_path / "models" / "mlp")
        path = export_saved_model(model, base, version=3, input_names=["features"], output_names=["logits"])
        assert path == os.path.join(base, "3")
        assert os.listdir(base) == ["3"]  # no temporary directory left behind
        assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(path))
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        assert list(serve.structured_input_signature[1]) == ["features"]
        assert list(serve.structured_outputs) == ["logits"]
        x, _ = toy_data(n=16, seed=1)
        np.testing.assert_allclose(serve(features=tf.constant(x))["logits"], model(x), atol=1e-5)

    def test_default_names_come_from_the_layers(self, tmp_path):
        inputs = {name: keras.Input((3,), name=name) for name in ("age", "income")}
        hidden = keras.layers.Dense(8)(keras.layers.Concatenate()([inputs["age"], inputs["income"]]))
        outputs = [keras.layers.Dense(2, name="risk")(hidden), keras.layers.Dense(1)(hidden)]
        model = tfl.prunable(keras.Model([inputs["age"], inputs["income"]], outputs))
        serve = tf.saved_model.load(export_saved_model(model, str(tmp_path))).signatures["serving_default"]
        assert sorted(serve.structured_input_signature[1]) == ["age", "income"]
        assert sorted(serve.structured_outputs) == ["output_1", "risk"]  # auto-named layers get positions
        sequential = tf.saved_model.load(export_saved_model(pruned_mlp(), str(tmp_path), 2))
        assert list(sequential.signatures["serving_default"].structured_input_signature[1]) == ["inputs"]
        assert list(sequential.signatures["serving_default"].structured_outputs) == ["output"]

    def test_a_subclassed_model_returning_a_dict_keeps_its_keys(self, tmp_path):
        class Scorer(keras.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.head = keras.layers.Dense(3)

            def call(self, x):
                return {"scores": self.head(x)}

        model = tfl.prunable(Scorer())
        x, _ = toy_data(n=4, input_dim=5)
        model(x)
        tfl.prune(model, rate=0.5)
        serve = tf.saved_model.load(export_saved_model(model, str(tmp_path))).signatures["serving_default"]
        assert list(serve.structured_input_signature[1]) == ["inputs"]
        np.testing.assert_allclose(serve(inputs=tf.constant(x))["scores"], model(x)["scores"], atol=1e-5)

    def test_pruned_positions_are_exact_zeros_and_nothing_else_is_saved(self, tmp_path):
        inputs = keras.Input((40,))
        hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(64, activation="relu")(inputs))
        model = tfl.prunable(keras.Model(inputs, keras.layers.Dense(10, name="output")(hidden)))
        compile_classifier(model)
        model.fit(*toy_data(n=64), epochs=1, verbose=0)  # optimizer slots and iterations now exist
        tfl.prune(model, target_sparsity=0.9)
        path = export_saved_model(model, str(tmp_path))
        saved = checkpoint_values(path)
        plain = stripped_for_export(model)
        # Two kernels, two biases: no masks, no optimizer state, no dropout seed.
        assert len(saved) == len(plain.trainable_weights) == 4
        assert not any(value.dtype == bool for value in saved.values())
        for wrapper in tfl.prune_wrappers(model):
            kernel, mask = wrapper.pruned_weights[0], wrapper.get_masks()[0]
            matches = [
                v for v in saved.values() if v.shape == mask.shape and np.array_equal(v, kernel.numpy())
            ]
            assert len(matches) == 1
            value = matches[0]
            assert np.count_nonzero(value == 0.0) == np.count_nonzero(~mask)  # exactly the masked positions
            assert not np.any(np.signbit(value[~mask]))
        report = json.load(open(os.path.join(path, REPORT_ASSET)))
        assert report["sparsity"] == pytest.approx(0.9, abs=1e-3)
        assert report["alive"] == tfl.sparsity_report(model).alive
        assert [e["layer"] for e in report["layers"]] == ["dense", "output"]
        x, _ = toy_data(n=8, seed=2)  # dropout is off in the signature: outputs are deterministic
        serve = tf.saved_model.load(path).signatures["serving_default"]
        np.testing.assert_allclose(
            serve(inputs=tf.constant(x))["output"], model(x, training=False), atol=1e-5
        )

    def test_stripped_model_gives_the_same_export_and_report(self, tmp_path):
        model = pruned_mlp(0.8)
        plain = tfl.strip(model)
        from_wrapped = json.load(
            open(os.path.join(export_saved_model(model, str(tmp_path), 1), REPORT_ASSET))
        )
        from_plain = json.load(open(os.path.join(export_saved_model(plain, str(tmp_path), 2), REPORT_ASSET)))
        for key in ("total", "alive", "sparsity", "model_total", "model_nonzero"):
            assert from_plain[key] == pytest.approx(from_wrapped[key])
        assert [e["alive"] for e in from_plain["layers"]] == [e["alive"] for e in from_wrapped["layers"]]
        assert (
            checkpoint_values(os.path.join(str(tmp_path), "1")).keys()
            == checkpoint_values(os.path.join(str(tmp_path), "2")).keys()
        )

    def test_a_distiller_exports_its_student(self, tmp_path):
        teacher = mlp(hidden=(128,), name="teacher")
        student = pruned_mlp(0.5, hidden=(16,))
        pair = Pair(teacher, student)
        x, _ = toy_data(n=8)
        pair(x)
        path = export_saved_model(pair, str(tmp_path))
        assert len(checkpoint_values(path)) == len(student.layers) * 2  # the student's kernels and biases
        serve = tf.saved_model.load(path).signatures["serving_default"]
        np.testing.assert_allclose(serve(inputs=tf.constant(x))["output"], student(x), atol=1e-5)
        assert json.load(open(os.path.join(path, REPORT_ASSET)))["sparsity"] == pytest.approx(0.5, abs=1e-2)

    def test_the_pruned_graph_does_the_same_work_as_the_dense_one(self, tmp_path):
        dense = export_saved_model(pruned_mlp(0.0), str(tmp_path), 1)
        pruned = export_saved_model(pruned_mlp(0.9), str(tmp_path), 2)
        ops = serving_op_types(pruned)
        assert ops == serving_op_types(dense)
        assert not {"Select", "SelectV2", "Where"} & set(ops)  # no masking left
        assert b"tf_lottery" not in open(os.path.join(pruned, "saved_model.pb"), "rb").read()

    def test_compressed_size_at_90_percent_is_under_a_quarter_of_dense(self, tmp_path):
        dense = artifact_size(export_saved_model(pruned_mlp(0.0, hidden=(300, 100)), str(tmp_path), 1))
        pruned = artifact_size(export_saved_model(pruned_mlp(0.9, hidden=(300, 100)), str(tmp_path), 2))
        assert pruned.raw == pytest.approx(dense.raw, rel=0.02)  # dense float32 storage either way
        assert pruned.gzip <= 0.25 * dense.gzip
        assert artifact_size(os.path.join(str(tmp_path), "2")) == pruned  # deterministic


class TestExportErrors(TestCase):
    def test_existing_version_is_refused_and_left_untouched(self, tmp_path):
        model = pruned_mlp()
        path = export_saved_model(model, str(tmp_path))
        before = sorted(os.listdir(path))
        with pytest.raises(
            FileExistsError, match=r"argument `version`: '.*1' already exists.*Received: version=1"
        ):
            export_saved_model(model, str(tmp_path), 1)
        assert sorted(os.listdir(path)) == before
        assert os.listdir(tmp_path) == ["1"]

    @pytest.mark.parametrize("version", [0, -2, 1.0, "2", True, None])
    def test_version_must_be_a_positive_int(self, tmp_path, version):
        with pytest.raises(
            ValueError, match=rf"argument `version`: expected a positive int.*version={version!r}"
        ):
            export_saved_model(pruned_mlp(), str(tmp_path / "base"), version)
        assert not os.path.exists(tmp_path / "base")

    def test_an_unbuilt_model_is_refused_before_anything_is_written(self, tmp_path):
        unbuilt = keras.Sequential([keras.layers.Dense(4)], name="unbuilt")
        with pytest.raises(ValueError, match=r"argument `model`: 'unbuilt' is not built"):
            export_saved_model(unbuilt, str(tmp_path / "base"))
        with pytest.raises(ValueError, match=r"argument `model`: 'unbuilt' is not built"):
            export_saved_model(Pair(mlp(), unbuilt), str(tmp_path / "base"))  # the student is checked
        with pytest.raises(ValueError, match="expected a Keras model"):
            export_saved_model("model.keras", str(tmp_path / "base"))
        assert not os.path.exists(tmp_path / "base")

    def test_bad_names_are_refused(self, tmp_path):
        with pytest.raises(ValueError, match=r"argument `output_names`: expected 1 distinct.*'two words'"):
            export_saved_model(pruned_mlp(), str(tmp_path), output_names=["two words"])
        with pytest.raises(ValueError, match=r"argument `input_names`: expected 1 distinct.*\['a', 'b'\]"):
            export_saved_model(pruned_mlp(), str(tmp_path), input_names=["a", "b"])
        assert os.listdir(tmp_path) == []

    def test_a_failed_write_leaves_nothing_behind(self, tmp_path, monkeypatch):
        base = tmp_path / "base"
        base.mkdir()
        (base / "1").mkdir()  # an earlier version, kept

        def fail(self, filepath, **kwargs):
            os.makedirs(os.path.join(filepath, "variables"), exist_ok=True)
            open(os.path.join(filepath, "variables", "partial"), "w").write("x")
            raise OSError("disk full")

        # `keras.export.ExportArchive()` builds the backend's subclass.
        monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", fail)
        with pytest.raises(OSError, match="disk full"):
            export_saved_model(pruned_mlp(), str(base), 2)
        assert os.listdir(base) == ["1"]
        with pytest.raises(OSError, match="disk full"):
            export_saved_model(pruned_mlp(), str(tmp_path / "new"), 1)
        assert not os.path.exists(tmp_path / "new")


_FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["tf_lottery"] = None  # any import of tf_lottery now fails
    import numpy as np, tensorflow as tf
    model_dir, x_path, out_path = sys.argv[1:]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    np.save(out_path, serve(features=tf.constant(np.load(x_path)))["logits"].numpy())
    assert not any(name.startswith("tf_lottery") and sys.modules[name] for name in sys.modules)
    """
)


class TestServingTools(TestCase):
    """What a user would run: a fresh process, and the `saved_model_cli` script."""

    @pytest.fixture
    def exported(self, tmp_path):
        model = pruned_mlp()
        path = export_saved_model(
            model, str(tmp_path / "serving"), input_names=["features"], output_names=["logits"]
        )
        x, _ = toy_data(n=16, seed=3)
        np.save(tmp_path / "x.npy", x)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
        run = dict(env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        return path, keras.ops.convert_to_numpy(model(x)), run

    def test_loads_and_serves_in_a_fresh_process_without_tf_lottery(self, exported, tmp_path):
        path, expected, run = exported
        fresh = subprocess.run(
            [sys.executable, "-I", "-c", _FRESH_PROCESS, path, "x.npy", "fresh.npy"], **run
        )
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        np.testing.assert_allclose(np.load(tmp_path / "fresh.npy"), expected, atol=1e-5)

    @pytest.mark.slow
    def test_saved_model_cli_shows_the_signature_and_runs_it(self, exported, tmp_path):
        path, expected, run = exported
        # The `saved_model_cli` script installed with tensorflow, beside this interpreter.
        cli = [os.path.join(os.path.dirname(sys.executable), "saved_model_cli")]
        if not os.path.exists(cli[0]):
            cli = [shutil.which("saved_model_cli")]
        show = subprocess.run(
            cli + ["show", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default"], **run
        )
        assert show.returncode == 0, show.stderr[-3000:]
        assert "inputs['features']" in show.stdout and "shape: (-1, 40)" in show.stdout
        assert "outputs['logits']" in show.stdout and "shape: (-1, 10)" in show.stdout
        assert "tensorflow/serving/predict" in show.stdout

        cli_run = subprocess.run(
            cli
            + ["run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default"]
            + ["--inputs", "features=x.npy", "--outdir", "cli_out"],
            **run,
        )
        assert cli_run.returncode == 0, cli_run.stderr[-3000:]
        np.testing.assert_allclose(np.load(tmp_path / "cli_out" / "logits.npy"), expected, atol=1e-5)
