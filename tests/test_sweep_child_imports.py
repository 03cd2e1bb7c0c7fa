"""Issue 26 item 10: a sweep's runs never import from the current folder, and the sweep's up-front check sees the
code its runs will import."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tinyfit import OVERRIDES

from nlbench.record import read_record
from nlbench.sweep.runner import DEFAULT_FIT_COMMAND, child_environ, run_dir_of
from nlbench.sweep.spec import load_spec
from nlbench.sweep_command import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
TINY = {**OVERRIDES, "trainer.limit_train_batches": 1, "trainer.logger": False}


def write_spec(path: Path, **body: object) -> Path:
    path.write_text(
        yaml.safe_dump(
            {"name": path.stem, "base": str(DEMO), "output_dir": str(path.with_suffix("")), "overrides": TINY, **body}
        )
    )
    return path


def test_runs_start_without_the_current_folder_on_the_import_path() -> None:
    assert DEFAULT_FIT_COMMAND[1:] == ("-P", "-m", "nlbench", "fit") or sys.version_info < (3, 11)
    assert child_environ()["PYTHONSAFEPATH"] == "1"  # also for the DDP workers Lightning starts with `-m nlbench`


def test_a_folder_named_nlbench_in_the_current_folder_does_not_shadow_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stranger's nlbench (a clone, with the data/ folder a sweep made inside it) in the folder the sweep starts
    from: the runs import the installed nlbench and finish."""
    cwd = tmp_path / "home"
    (cwd / "nlbench" / "data").mkdir(parents=True)
    (cwd / "nlbench" / "__init__.py").write_text(
        textwrap.dedent("""
        import pathlib
        pathlib.Path(__file__).parent.with_name("SHADOWED").write_text("the current folder's nlbench ran")
        raise ImportError("not the installed nlbench")
    """)
    )
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec_path = write_spec(tmp_path / "shadow.yaml", axes={"seed_everything": [0]})
    assert sweep_main(["--config", str(spec_path), "--devices", "cpu"]) == 0, capsys.readouterr()
    (run,) = load_spec(spec_path).expand()
    record = read_record(run_dir_of(load_spec(spec_path), run))
    assert record is not None and record.status == "finished"
    assert not (cwd / "SHADOWED").exists()


def test_the_up_front_check_refuses_what_the_runs_could_not_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A normalization importable here only (a notebook's sys.path.append) would pass this process's check and fail
    in every run: the sweep refuses it before starting any."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "only_here.py").write_text(
        "from torch import nn\n\n\nclass Attn(nn.Module):\n    def forward(self, q, k, v):\n        return v\n"
    )
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delitem(sys.modules, "only_here", raising=False)
    spec_path = write_spec(
        tmp_path / "here.yaml", axes={"model.backbone.nl.normalization": ["softmax", "only_here.Attn"]}
    )
    assert sweep_main(["--config", str(spec_path), "--devices", "cpu", "--max-runs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"nlbench sweep: error: the runs could not import only_here: this process checked them with "
        f"only_here from {mods / 'only_here.py'}, where a run (started without the current folder on "
        "its import path) does not look; install it, or put its folder on PYTHONPATH"
    )
    assert not (tmp_path / "here").exists()
    monkeypatch.setenv("PYTHONPATH", str(mods))  # where the runs find it too: accepted
    assert sweep_main(["--config", str(spec_path), "--devices", "cpu", "--dry-run"]) == 0
