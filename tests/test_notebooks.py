"""Every notebook runs top to bottom without error, asserts what it shows, and is committed
without outputs."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from perfnet.lab import require_root_and_tools

nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat (pip install -e '.[dev]')")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient (pip install -e '.[dev]')")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
LIVE_MARK = "tracing live"  # what 03-live-lab prints when it traces (and so checks) for real


def check_cells(notebook: Any) -> list[Any]:
    """The notebook's checks: its code cells with an ``assert`` statement."""
    return [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(cell.source)))
    ]


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-compare-captures.ipynb", "03-live-lab.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_what_it_shows(path: Path) -> None:
    """Each notebook has check cells: small cells of their own, after a cell that shows
    something, whose first line says what they check."""
    notebook = nbformat.read(path, as_version=4)
    checks = check_cells(notebook)
    assert checks, f"{path.name} asserts nothing it shows"
    for before, cell in zip(notebook.cells, notebook.cells[1:], strict=False):
        if cell in checks:
            what = cell.source[:80]
            assert cell.source.startswith("# Check"), f"a check cell starts with '# Check...': {what!r}"
            assert len(cell.source.splitlines()) <= 12, f"a check cell is small: {what!r}"
            assert before.cell_type == "code" and before not in checks, f"a check follows what it checks: {what!r}"
    assert notebook.cells[0] not in checks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path) -> None:
    reason = require_root_and_tools()
    live = "live" in path.name
    if live and reason is not None:
        pytest.skip(f"{path.name} traces a lab live: {reason}")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error: a failed check too
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs)  # the kernel's inline backend drew figures
    assert all(not cell.outputs for cell in check_cells(notebook))  # checks show nothing: they pass or raise
    if live:  # its checks run only when it traced
        assert any(LIVE_MARK in out.get("text", "") for out in outputs)
