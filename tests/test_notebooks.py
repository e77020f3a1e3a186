"""The Colab notebooks in colab/: well-formed, committed without outputs, and run top to bottom."""

import os
import pathlib
import re

import nbformat
import pytest

COLAB = pathlib.Path(__file__).resolve().parent.parent / "colab"
NOTEBOOKS = [
    "01_quickstart",
    "02_rewinding_and_controls",
    "04_export_serving",
    "05_serving",
    "06_oneshot_llm",
]
ALL = sorted(p.stem for p in COLAB.glob("*.ipynb"))


def read(name):
    return nbformat.read(COLAB / f"{name}.ipynb", as_version=nbformat.NO_CONVERT)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_title_and_install_and_has_no_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    first, install = notebook.cells[0], notebook.cells[1]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert install.cell_type == "code"
    assert 'if "google.colab" in sys.modules:' in install.source
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert any('os.environ.get("TF_LOTTERY_SMALL") == "1"' in cell.source for cell in code)


def test_every_install_cell_is_the_same_and_keeps_colabs_tensorflow():
    # One setting, TF_LOTTERY_SOURCE, in one cell that every notebook shares word for word.
    cells = {name: read(name).cells[1].source for name in ALL}
    assert len(set(cells.values())) == 1, "the install cells differ: copy one into the others"
    install = cells[ALL[0]]
    assert install.count("TF_LOTTERY_SOURCE = ") == 1
    assert '!pip install -q "tf_lottery[experiments] @ {TF_LOTTERY_SOURCE}"' in install
    assert '"tensorflow=={colab_tensorflow}"' in install and 'version("tensorflow")' in install


@pytest.mark.parametrize("name", ALL)
def test_links_point_at_real_places(name):
    # Was: "Open in Colab" badges and pip URLs for a GitHub repository that does not exist.
    text = (COLAB / f"{name}.ipynb").read_text()
    assert "colab-badge" not in text and "github.com/tf-lottery" not in text
    for url in re.findall(r"https?://[^\s)\"'<>\\]+", text):
        assert url.startswith("https://arxiv.org/abs/"), url


def test_the_tpu_notebook_asks_colab_for_a_tpu():
    metadata = read("03_kd_tickets_tpu").metadata
    assert metadata.accelerator == "TPU" and metadata.colab.gpuType == "V28"


def test_every_notebook_in_colab_is_tested():
    assert sorted(p.stem for p in COLAB.glob("*.ipynb")) == sorted(
        NOTEBOOKS + [p.stem for p in COLAB.glob("03_*.ipynb")]  # 03 is tested with the distiller
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_headless_with_small_data(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TF_LOTTERY_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = read(name)
    # The kernel is the `python3` spec that ipykernel installs; jupyter_client starts it with this
    # interpreter. Files the notebook writes land in tmp_path.
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows no plot"
    if name == "04_export_serving":
        text = "".join(o.get("text", "") for o in outputs)
        assert "inputs['signal']" in text and "outputs['logits']" in text  # saved_model_cli show
        assert sorted(os.listdir(tmp_path / "exported")) == [
            "dense",
            "dense.tflite",
            "pruned",
            "pruned.tflite",
        ]
