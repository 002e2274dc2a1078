"""``examples/quickstart.ipynb`` runs from top to bottom without an error (6 to 13 minutes on a shared 2-core
machine: see its first cell)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_saved_without_errors() -> None:
    """The saved notebook holds the outputs of a full run: every code cell ran, none failed."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code), "save the notebook executed, with its outputs"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert NOTEBOOK.stat().st_size < 400_000, "keep the pictures small"


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    """Run every cell in a fresh kernel (the default model is bundled: nothing is downloaded)."""
    nbformat = pytest.importorskip("nbformat", reason="needs the test extra: nbformat")
    nbclient = pytest.importorskip("nbclient", reason="needs the test extra: nbclient")
    pytest.importorskip("ipykernel", reason="needs the test extra: ipykernel")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    # One torch thread, as in the rest of the suite (conftest.py): small shared machines gain nothing from more.
    # The notebook's temporary folder goes under tmp_path, removed by pytest even if a cell fails.
    # Any error in a cell raises CellExecutionError, naming the cell.
    client.execute(env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "word accuracy on the 60 held-out codes: before" in text
    assert "held-out codes read as with torch" in text  # the export cell ran
