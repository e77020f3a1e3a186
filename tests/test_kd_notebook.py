"""colab/03_kd_tickets_tpu.ipynb: well-formed, committed without outputs, runs top to bottom."""

import os
import pathlib

import nbformat
import pytest

NAME = "03_kd_tickets_tpu"
PATH = pathlib.Path(__file__).resolve().parent.parent / "colab" / f"{NAME}.ipynb"


def _read():
    return nbformat.read(PATH, as_version=nbformat.NO_CONVERT)


def test_notebook_opens_with_title_and_install_and_has_no_outputs():
    notebook = _read()
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    first, install = notebook.cells[0], notebook.cells[1]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert install.cell_type == "code" and 'if "google.colab" in sys.modules:' in install.source
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    source = "\n".join(cell.source for cell in code)
    assert 'os.environ.get("TF_LOTTERY_SMALL") == "1"' in source
    for needed in (
        "TPUStrategy",
        "strategy.scope()",
        "drop_remainder=True",
        "KDDistiller",
        "LotteryCallback",
    ):
        assert needed in source


@pytest.mark.slow
def test_notebook_runs_headless_with_small_data(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TF_LOTTERY_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = _read()
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows no plot"
    text = "".join(o.get("text", "") for o in outputs)
    assert "KD ticket (0it)" in text and "stripped KD ticket, test accuracy" in text
    assert sorted(os.listdir(tmp_path)) == ["kd_ticket.npz", "kd_ticket_savedmodel"]
