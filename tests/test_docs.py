"""The docs are self-contained: every relative link resolves inside the repository, none leaves it."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Text a reader of the repository sees: the docs, the configs' docstrings, the package, the notebooks.
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md"]
    + [
        p
        for folder in ("docs", "configs", "tf_lottery", "colab", "examples", "benchmarks")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".md", ".py", ".ipynb")
    ]
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _name(path):
    return str(path.relative_to(ROOT))


_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(path) -> set[str]:
    """The `#anchors` GitHub gives the headings of markdown file `path` (code blocks left out).

    GitHub's rule: lower case, drop every character but letters, digits, `_`, `-` and spaces,
    spaces become `-`; the second heading with the same anchor gets `-1`, the third `-2`.
    """
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6} (.+?)#*$", _FENCE.sub("", path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.exists()], ids=_name)
def test_nothing_refers_to_files_outside_the_repository(path):
    text = path.read_text(errors="replace")
    assert "../shared" not in text and "shared/FACTS" not in text and "/work/" not in text
    if path.suffix == ".md":
        text = _FENCE.sub("", text)  # code is not rendered as links
    for target in _LINK.findall(text) if path.suffix in (".md", ".ipynb") else []:
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), (
                f"{target}: no heading of {_name(resolved)} has the anchor #{anchor}"
            )


def test_anchors_follow_githubs_rule(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Results\n\n## Served tickets: `tfl.shrink` (N:M, 80/90%)\n## Tests\n## Tests\n```\n# not a heading\n```\n"
    )
    assert anchors(page) == {"results", "served-tickets-tflshrink-nm-8090", "tests", "tests-1"}


_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
# Blocks fenced ```python tfmot show tensorflow-model-optimization's code beside ours
# (docs/COMING_FROM_TFMOT.md); tfmot is not installed with tf_lottery, so they are never run.
_TFMOT_BLOCK = re.compile(r"```python tfmot\n(.*?)```", re.S)
# `from tf_lottery.<module> import ...` that examples may use: the facade and the data helpers.
_PUBLIC_MODULES = {"tf_lottery", "tf_lottery.datasets"}
# Known exceptions, with why: the KD notebook batches arrays with a helper the facade does not export.
_PRIVATE_IMPORTS_ALLOWED = {("colab/03_kd_tickets_tpu.ipynb", "tf_lottery.distillation")}


def python_blocks(path):
    """The Python a reader copies from `path`: ```python blocks, notebook code cells, or the file."""
    text = path.read_text()
    if path.suffix == ".md":
        return _BLOCK.findall(text)
    if path.suffix == ".ipynb":
        import json

        cells = json.loads(text)["cells"]
        return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [text]


_EXAMPLES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_EXAMPLES += sorted((ROOT / "colab").glob("*.ipynb")) + sorted((ROOT / "examples").glob("*.py"))


def _run_blocks(tmp_path, page, runner: str) -> tuple[list, dict]:
    """Runs `page`'s Python blocks (or a list of blocks) with `runner` in a fresh process.

    Returns the blocks and the facts the runner prints last (JSON).
    """
    import json
    import os
    import subprocess
    import sys

    blocks = page if isinstance(page, list) else python_blocks(page)
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(runner)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "runner.py", "blocks.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return blocks, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", _EXAMPLES, ids=_name)
def test_examples_import_only_the_public_api(path):
    imported = re.compile(r"^\s*(?:from|import)\s+(tf_lottery[\w.]*)", re.M)
    for block in python_blocks(path):
        for module in imported.findall(block.replace("!pip", "#")):
            if (_name(path), module) not in _PRIVATE_IMPORTS_ALLOWED:
                assert module in _PUBLIC_MODULES, f"{_name(path)} imports {module}: use `tfl.<name>`"


@pytest.mark.parametrize("path", [p for p in _EXAMPLES if p.suffix == ".md"], ids=_name)
def test_snippets_agree_on_the_loss_of_a_logits_head(path):
    blocks = "\n".join(python_blocks(path))
    assert "sparse_categorical_crossentropy" not in blocks  # would read logits as probabilities
    assert blocks.count("SparseCategoricalCrossentropy(") == blocks.count(
        "SparseCategoricalCrossentropy(from_logits=True)"
    )


_README_RUNNER = """
import json, sys
import numpy as np
import tf_lottery.datasets

full = tf_lottery.datasets.mnist1d


def small(validation=500, seed=42, num_samples=5000):
    (x, y), (xv, yv), (xt, yt) = full(validation=validation, seed=seed, num_samples=num_samples)
    return (x[:256], y[:256]), (xv[:64], yv[:64]), (xt[:64], yt[:64])


tf_lottery.datasets.mnist1d = small  # small data: the README's code as written otherwise
namespace = {}
for block in json.load(open(sys.argv[1])):
    exec(compile(block, "README.md", "exec"), namespace)
lottery, model = namespace["lottery"], namespace["model"]
import tf_lottery as tfl

print(json.dumps({
    "blocks": len(json.load(open(sys.argv[1]))),
    "rounds": [r["round"] for r in lottery.history],
    "ticket_sparsity": lottery.ticket.sparsity,
    "stripped_wrappers": len(tfl.prune_wrappers(namespace["plain"])),
}))
"""


@pytest.mark.slow  # trains the Quick start (5 rounds of 10 epochs) on 256 sequences: ~95 s on 2 loaded cores
def test_every_readme_python_block_runs_as_written(tmp_path):
    blocks, facts = _run_blocks(tmp_path, ROOT / "README.md", _README_RUNNER)
    assert facts["blocks"] == len(blocks) == 1  # the Quick start; the rest of the examples are in docs/guide
    assert facts["rounds"] == [0, 1, 2, 3, 4]
    # Four prunings of 20% (output layer 10%): 1 - 0.8**4 = 59% of the hidden weights.
    assert 0.55 < facts["ticket_sparsity"] < 0.6
    assert facts["stripped_wrappers"] == 0
    assert (tmp_path / "ticket.npz").exists()


# What docs/EXPORT.md's snippets take as given: a pruned `model` with named input and output, data `x, y`.
_EXPORT_PRELUDE = """
import keras
import numpy as np
import tf_lottery as tfl

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 40)).astype("float32")
y = np.arange(64) % 10
layers = [keras.Input((40,), name="inputs"), keras.layers.Dense(32, activation="relu")]
model = tfl.prunable(keras.Sequential(layers + [keras.layers.Dense(10, name="output")]))
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
tfl.prune(model, target_sparsity=0.5)
"""


@pytest.mark.slow  # exports a SavedModel and a TFLite file, trains 50 epochs on 64 rows: ~30 s
def test_every_export_doc_python_block_runs(tmp_path):
    # The doc's Serving path is absolute (docker mounts it); here it lands in tmp_path.
    blocks = [
        b.replace('"/models/', f'"{tmp_path}/models/') for b in python_blocks(ROOT / "docs" / "EXPORT.md")
    ]
    program = _EXPORT_PRELUDE + (
        "import json, sys\n"
        "for block in json.load(open(sys.argv[1])):\n"
        "    exec(compile(block, 'docs/EXPORT.md', 'exec'))\n"
        "print(json.dumps({'path': path, 'rounds': len(lottery.history), 'out': run(inputs=x)['output'].shape}))\n"
    )
    blocks, facts = _run_blocks(tmp_path, blocks, program)
    # Export, TFLite, the runtime report, shrink (MobileNetV2, BERT), TensorBoard.
    assert len(blocks) == 6
    assert facts == {"path": f"{tmp_path}/models/ticket/1", "rounds": 5, "out": [64, 10]}
    assert (tmp_path / "ticket.tflite").exists() and (tmp_path / "logs" / "pruning").is_dir()
    assert (tmp_path / "serving" / "mobilenet").is_dir()


_TFMOT_PAGE = ROOT / "docs" / "COMING_FROM_TFMOT.md"


def test_the_tfmot_page_follows_each_tfmot_block_with_ours():
    text = _TFMOT_PAGE.read_text()
    fences = re.findall(r"```python( tfmot)?\n", text)
    assert fences == [" tfmot", ""] * 3, fences
    assert len(_TFMOT_BLOCK.findall(text)) == len(python_blocks(_TFMOT_PAGE)) == 3


_TFMOT_RUNNER = """
import json, sys, warnings
namespace = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for block in json.load(open(sys.argv[1])):
        exec(compile(block, "docs/COMING_FROM_TFMOT.md", "exec"), namespace)
import os
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

import tf_lottery as tfl

run = event_accumulator.EventAccumulator(os.path.join(namespace["logdir"], "pruning"))
run.Reload()
last = {t: float(tf.make_ndarray(run.Tensors(t)[-1].tensor_proto)) for t in run.Tags()["tensors"]}
size = namespace["get_gzipped_model_size"]
print(json.dumps({
    "layers": {r.name: [r.total - r.nonzero, r.total] for r in tfl.sparsity_report(namespace["model_for_export"]).layers},
    "summaries": last,
    "accuracy": [namespace["baseline_model_accuracy"], namespace["model_for_pruning_accuracy"]],
    "gzip": [size(namespace["keras_file"]), size(namespace["pruned_keras_file"]), size(namespace["pruned_tflite_file"])],
    "gradual_warnings": [str(w.message) for w in caught if "GradualPruning" in str(w.message)],
}))
"""


@pytest.mark.slow  # MNIST-1D (4,000 sequences), 4 + 2 epochs of a small convnet, a TFLite export: ~50 s
def test_every_tfmot_page_python_block_runs(tmp_path):
    blocks, facts = _run_blocks(tmp_path, _TFMOT_PAGE, _TFMOT_RUNNER)
    # The page's results table: the schedule's 80% in each layer, to the weight.
    assert facts["layers"] == {"conv1d/kernel": [29, 36], "dense/kernel": [1824, 2280]}
    assert facts["summaries"]["layer_sparsity/conv1d/kernel"] == pytest.approx(29 / 36, abs=1e-6)
    assert facts["summaries"]["layer_sparsity/dense/kernel"] == pytest.approx(0.8, abs=1e-6)
    assert facts["summaries"]["sparsity"] == pytest.approx((29 + 1824) / (36 + 2280), abs=1e-6)
    assert not facts["gradual_warnings"]  # frequency=2 reaches the final sparsity
    baseline, pruned, tflite = facts["gzip"]
    assert pruned < 0.45 * baseline and tflite < 0.45 * baseline
    assert all(0.2 < a < 0.5 for a in facts["accuracy"]), facts["accuracy"]


_BERT_RUNNER = """
import json, sys
namespace, runs = {}, []
for block in json.load(open(sys.argv[1])):
    exec(compile(block, "docs/BERT_TICKETS.md", "exec"), namespace)
    lottery = namespace.get("lottery")
    if lottery is not None and (not runs or runs[-1][0] is not lottery):
        runs.append((lottery, [round(r["percent_remaining"], 1) for r in lottery.history]))
import tf_lottery as tfl

print(json.dumps({
    "runs": [remaining for _, remaining in runs],
    "ticket_sparsity": runs[0][0].ticket.sparsity,
    "last_model_sparsity": tfl.sparsity_report(namespace["model"]).sparsity,
}))
"""


@pytest.mark.slow  # pre-trains a tiny BERT, 4 IMP rounds, Wanda + 3 rounds, SparseGPT: ~3 min on a busy CPU
def test_every_bert_tickets_python_block_runs(tmp_path):
    pytest.importorskip("keras_hub")
    blocks, facts = _run_blocks(tmp_path, ROOT / "docs" / "BERT_TICKETS.md", _BERT_RUNNER)
    assert len(blocks) == 4
    # IMP at 10% of the survivors per round, then Wanda's 50% seed shared out to 75%: the page's numbers.
    assert facts["runs"] == [[100.0, 90.0, 81.0, 72.9], [50.0, 35.4, 25.0]]
    assert facts["ticket_sparsity"] == pytest.approx(1 - 3172 / 4352)
    assert facts["last_model_sparsity"] == pytest.approx(0.5)  # SparseGPT's masks, the original values


# The guide: one page per task, each a program of its own (its blocks run in order, in one namespace).
_GUIDE = ROOT / "docs" / "guide"
_GUIDE_PAGES = sorted(_GUIDE.glob("*.md"))

# Facts each page's program leaves behind: key -> (the block after which it is read, an expression).
_GUIDE_FACTS = {
    "getting_started.md": {
        "rounds": (0, "[r['round'] for r in lottery.history]"),
        "ticket_sparsity": (0, "lottery.ticket.sparsity"),
        "stripped_wrappers": (1, "len(tfl.prune_wrappers(plain))"),
        "loaded_sparsity": (1, "ticket.sparsity"),
    },
    "lottery_callback.md": {
        "ticket_sparsity": (0, "[round(r['sparsity'], 4) for r in lottery.history]"),
        "control_sparsity": (0, "[round(r['sparsity'], 4) for r in reinit.history]"),
        "same_masks": (
            0,
            "all((a == b).all() for a, b in zip(reinit.round_masks[-1], lottery.round_masks[-1]))",
        ),
        "early_bird_checks": (1, "len(early_bird.distances)"),
        "log_runs": (2, "sorted(os.listdir('logs'))"),
        "state_files": (3, "bool(os.listdir('lottery_state'))"),
    },
    "gradual_and_structures.md": {
        "gradual_sparsity": (0, "round(tfl.sparsity_report(model).sparsity, 4)"),
        "channels_units": (1, "[result['units_pruned'], result['units_total']]"),
        "imp_2of4_sparsity": (2, "round(lottery.history[-1]['sparsity'], 4)"),
    },
    "sparse_training.md": {
        "rigl_sparsity": (0, "round(tfl.sparsity_report(model).sparsity, 3)"),
        "snip_sparsity": (1, "round(snip_sparsity, 3)"),
        "synflow_sparsity": (1, "round(tfl.sparsity_report(synflow).sparsity, 3)"),
    },
    "kd_tickets.md": {
        "student_sparsity": (0, "[round(r['sparsity'], 4) for r in lottery.history]"),
        "teacher_wrappers": (0, "len(tfl.prune_wrappers(teacher))"),
        "stripped_wrappers": (0, "len(tfl.prune_wrappers(ticket_model))"),
    },
    "oneshot.md": {
        "sparsity": (0, "round(tfl.sparsity_report(model).sparsity, 4)"),
        "alive_per_4_inputs": (
            0,
            "int(tfl.prune_wrappers(model)[0].get_masks()[0].reshape(10, 4, -1).sum(1).max())",
        ),
    },
    "serving.md": {
        "params_halved": (0, "report.params_after < 0.5 * report.params_before"),
        "shrunk_wrappers": (0, "len(tfl.prune_wrappers(small))"),
        "tflite_runtimes": (1, "sorted({w.runtime for w in runtime.weights})"),
    },
    "export.md": {
        "last_sparsity": (0, "round(lottery.history[-1]['sparsity'], 4)"),
        "files": (0, "[os.path.isdir('models/ticket/1/variables'), os.path.isfile('ticket.tflite')]"),
    },
    "masks.md": {
        "custom_loop": (0, "[report.sparsity, report.violations]"),
    },
}

_GUIDE_RUNNER = """
import json, os, sys, time, traceback
import tf_lottery.datasets

full = tf_lottery.datasets.mnist1d


def small(validation=500, seed=42, num_samples=5000):
    (x, y), (xv, yv), (xt, yt) = full(validation=validation, seed=seed, num_samples=num_samples)
    return (x[:256], y[:256]), (xv[:64], yv[:64]), (xt[:64], yt[:64])


tf_lottery.datasets.mnist1d = small  # small data: the pages' code as written otherwise
import tf_lottery as tfl

pages, report = json.load(open(sys.argv[1])), {}
home = os.getcwd()
for name, page in pages.items():
    os.makedirs(os.path.join(home, name), exist_ok=True)
    os.chdir(os.path.join(home, name))
    namespace, facts, start = {}, {"blocks": 0}, time.perf_counter()
    try:
        for index, block in enumerate(page["blocks"]):
            exec(compile(block, "docs/guide/" + name, "exec"), namespace)
            facts["blocks"] += 1
            for key, (after, expression) in page["facts"].items():
                if after == index:
                    facts[key] = eval(expression, dict(namespace, tfl=tfl, os=os))
    except Exception:
        facts["error"] = traceback.format_exc()[-3000:]
    facts["seconds"] = round(time.perf_counter() - start, 1)
    report[name] = facts
print(json.dumps(report, default=str))
"""


def _run_guide(tmp_path, names) -> dict:
    """Runs the named guide pages in one process (TensorFlow imported once); returns their facts."""
    import json
    import os
    import subprocess
    import sys

    pages = {n: {"blocks": python_blocks(_GUIDE / n), "facts": _GUIDE_FACTS.get(n, {})} for n in names}
    (tmp_path / "pages.json").write_text(json.dumps(pages))
    (tmp_path / "runner.py").write_text(_GUIDE_RUNNER)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "runner.py", "pages.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_RUN_GUIDE = [p for p in _GUIDE_PAGES if python_blocks(p)]


@pytest.fixture(scope="module")
def guide_facts(tmp_path_factory):
    return _run_guide(tmp_path_factory.mktemp("guide"), [p.name for p in _RUN_GUIDE])


# What each page's program must leave behind, beside running without an error.
_GUIDE_EXPECTED = {
    "getting_started.md": {"rounds": [0, 1, 2, 3, 4], "stripped_wrappers": 0},
    "lottery_callback.md": {
        "ticket_sparsity": [0.0, 0.5, 0.75],  # target_sparsity=0.75 in 2 prunings, exactly
        "control_sparsity": [0.0, 0.5, 0.75],
        "same_masks": True,  # the reinit control trains the ticket's own masks
        "log_runs": ["pruning", "train", "validation"],
        "state_files": True,
    },
    "gradual_and_structures.md": {
        "gradual_sparsity": 0.9,
        "channels_units": [64, 128],  # half of the hidden layer's units; the output layer's stay
        "imp_2of4_sparsity": 0.5,
    },
    "sparse_training.md": {"rigl_sparsity": 0.9, "snip_sparsity": 0.9, "synflow_sparsity": 0.9},
    "kd_tickets.md": {"student_sparsity": [0.0, 0.5, 0.75], "teacher_wrappers": 0, "stripped_wrappers": 0},
    "oneshot.md": {"sparsity": 0.5, "alive_per_4_inputs": 2},
    "serving.md": {"params_halved": True, "shrunk_wrappers": 0, "tflite_runtimes": ["sparse kernel"]},
    "export.md": {"last_sparsity": 0.9, "files": [True, True]},
    "masks.md": {"custom_loop": [0.5, 0]},
}


@pytest.mark.slow  # the 9 guide pages in one process on 256 sequences: ~5 min on 2 loaded cores
@pytest.mark.xdist_group("guide_pages")
@pytest.mark.parametrize("page", _RUN_GUIDE, ids=_name)
def test_every_guide_python_block_runs_as_written(page, guide_facts):
    facts = guide_facts[page.name]
    assert "error" not in facts, facts.get("error")
    assert facts["blocks"] == len(python_blocks(page))
    expected = _GUIDE_EXPECTED[page.name]
    assert {key: facts[key] for key in expected} == expected


def test_every_guide_page_is_checked_and_listed():
    assert {p.name for p in _RUN_GUIDE} == set(_GUIDE_EXPECTED) == set(_GUIDE_FACTS)
    index, readme = (ROOT / "docs" / "index.md").read_text(), (ROOT / "README.md").read_text()
    for page in _GUIDE_PAGES:
        assert f"(guide/{page.name})" in index, f"docs/index.md does not list {page.name}"
        assert f"(docs/guide/{page.name})" in readme, f"README.md does not link {page.name}"


@pytest.mark.parametrize("page", _GUIDE_PAGES, ids=_name)
def test_every_guide_page_says_what_it_is_for_its_pitfalls_and_its_reference(page):
    text = page.read_text()
    assert re.search(r"^# .+\n\nFor: ", text), "the page opens with its title and what it is for"
    assert re.search(r"^## Pitfalls", text, re.M) and "\n## Reference\n" in text
    assert re.search(r"^```(python|bash)\n", text, re.M), "the page has an example"


def test_the_command_line_page_names_shipped_configs_and_real_kinds():
    from tf_lottery.cli import usage

    text = (_GUIDE / "command_line.md").read_text() + (ROOT / "README.md").read_text()
    shipped = usage.shipped_configs()
    for name in re.findall(r"--config=(?:configs/)?([a-z0-9_]+)(?:\.py)?", text):
        assert name in shipped, f"--config={name}: no shipped config of that name"
    for kind in re.findall(r"`--config\.experiment` is answered[^`]*`([a-z_]+)`", text):
        assert kind in usage.KINDS
    for kind in ("lottery", "oneshot", "gradual", "early_bird", "rigl", "set", "static", "kd_ticket"):
        assert f"`{kind}`" in text, f"the command line page does not mention the kind {kind}"


def _documented_api_commands() -> list[list[str]]:
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    return [line.split()[2:] for line in re.findall(r"python docs/build_api\.py[^`\n#]*", text)]


def test_the_documented_api_command_chooses_its_folder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    build_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_api)
    commands = _documented_api_commands()
    assert ["--output", "/tmp/tf_lottery_api"] in commands, commands  # docs/index.md's
    for argv in commands:
        args = build_api.parser().parse_args(argv)  # every documented form parses
        assert args.output == (pathlib.Path(argv[1]) if argv else ROOT / "build" / "api")


@pytest.mark.slow  # pdoc imports every public module (TensorFlow, the experiments): ~1 min
def test_the_api_reference_builds_into_the_folder_given(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "my api"
    result = subprocess.run(
        [sys.executable, "docs/build_api.py", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        # This checkout's package, not another one installed in editable mode (pdoc warns about that).
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "index.html").is_file() and (out / "tf_lottery.html").is_file()
    assert (out / "tf_lottery" / "lottery" / "callback.html").is_file()


def test_the_masks_page_custom_loop_runs_in_the_default_suite():
    # The one guide page cheap enough to run here (a 8-16-2 MLP, 3 SGD steps): the others are slow above.
    namespace = {}
    for block in python_blocks(_GUIDE / "masks.md"):
        exec(compile(block, "docs/guide/masks.md", "exec"), namespace)
    report = namespace["report"]
    assert (report.sparsity, report.measured_sparsity, report.violations) == (0.5, 0.5, 0)
