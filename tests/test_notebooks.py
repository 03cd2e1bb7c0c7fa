"""The notebooks are stored without outputs and run top to bottom against a tiny sweep and a tiny trained run.

They run in a kernel of this very interpreter: a kernel spec pointing at ``sys.executable`` is written to a
temporary Jupyter path, so nothing depends on kernels installed on the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from test_analysis import train_tiny_run
from test_report import write_sweep

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "nlbench-tests"


@pytest.fixture(scope="session")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    return root


def run_notebook(name: str, kernel_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict:
    """Execute notebooks/<name> in its folder with ``env`` set; returns the executed notebook."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return notebook


def outputs_of(notebook: dict, kind: str) -> list[dict]:
    return [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if kind in out.get("data", {})
    ]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), (
        f"{path.name} is stored with outputs: clear them (Jupyter: Edit > Clear outputs of all cells)"
    )
    assert "NLBENCH_" in code[0].source  # the first code cell reads the parameters from the environment


def test_notebook_names() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == ["attention_analysis.ipynb", "compare_runs.ipynb"]


def test_compare_runs_notebook(kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = write_sweep(tmp_path / "sweep", epochs=2)
    notebook = run_notebook("compare_runs.ipynb", kernel_path, monkeypatch, {"NLBENCH_SWEEP_DIR": str(sweep)})
    text = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "synthetic: 16 runs, 14 finished; compared: ('normalization', 'reduction', 'init')" in text
    assert "not in the statistics" in text and "failed" in text and "diverged" in text
    # The three report figures, the slice and the custom plot; the configuration table as Markdown.
    assert len(outputs_of(notebook, "image/png")) == 5
    [table] = outputs_of(notebook, "text/markdown")
    assert "| normalization | reduction | init | n |" in table["data"]["text/markdown"]


def test_attention_analysis_notebook(
    kernel_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = train_tiny_run(tmp_path_factory.getbasetemp() / "tiny-run")
    notebook = run_notebook(
        "attention_analysis.ipynb",
        kernel_path,
        monkeypatch,
        {"NLBENCH_RUN_DIR": str(run_dir), "NLBENCH_BATCHES": "1", "NLBENCH_IMAGES": "4", "NLBENCH_DEVICE": "cpu"},
    )
    [summary] = outputs_of(notebook, "text/markdown")
    assert "| stage2.nonlocal0 | scale | 1 | 32x32 |" in summary["data"]["text/markdown"]
    # Attention maps, scatter, ablation bars, key-norm histogram.
    assert len(outputs_of(notebook, "image/png")) == 4
