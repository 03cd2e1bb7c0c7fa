"""Noise and silence (issue 20, item 2): evaluation commands without Lightning's false callback warning, predict
says where its file went."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from tinyfit import FAST_DEMO

from nlbench.lightning_cli import main

REPO = Path(__file__).resolve().parents[1]
# With the demo's loggers: test and predict run with them (only the fit turns them off).
TINY = [*FAST_DEMO, "--model.scheduler=null"]


@pytest.mark.usefixtures("no_wandb")
def test_test_and_predict_are_quiet_and_predict_names_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    best = run_dir / "checkpoints" / "best.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 2 batches per epoch, log_every_n_steps 5: Lightning's notice about it is false for nlbench's epoch metrics.
        assert main(["fit", *TINY, "--trainer.logger=false", f"--run_dir={run_dir}"]) == 0
        capsys.readouterr()
        assert (
            main(["test", *TINY, f"--run_dir={run_dir}", f"--ckpt_path={best}", "--trainer.limit_test_batches=1"]) == 0
        )
        assert (
            main(["predict", *TINY, f"--run_dir={run_dir}", f"--ckpt_path={best}", "--trainer.limit_predict_batches=1"])
            == 0
        )
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "callbacks used to create the checkpoint" in m], messages
    assert not [m for m in messages if "smaller than the logging interval" in m], messages
    out = capsys.readouterr().out
    assert f"nlbench predict: wrote {run_dir.resolve() / 'predict' / 'predictions.csv'}" in out


def test_make_install_has_no_editable_banner(tmp_path: Path) -> None:
    """`make install`'s pip command, with the Makefile's own environment, installs without setuptools' banner."""
    import re
    import shutil
    import subprocess
    import sys

    makefile = (REPO / "Makefile").read_text()
    env_setting = re.search(r"^QUIET_EDITABLE := (\w+)=\"(.*)\"$", makefile, re.M)
    assert env_setting and "$(QUIET_EDITABLE) $(PY) -m pip install" in makefile
    project = tmp_path / "project"
    # .venv* and dist: the venvs (`make test-oldest`'s too, gigabytes) and the GPU bundle are not the project.
    shutil.copytree(
        REPO,
        project,
        ignore=shutil.ignore_patterns(".venv*", ".git", "runs", "sweeps", "*.egg-info", "build", "dist", "__pycache__"),
    )
    env = {**os.environ, env_setting.group(1): env_setting.group(2)}
    before = _installed_nlbench()
    # --ignore-installed: without it pip first uninstalls the nlbench this test suite runs from (same name), and
    # every later test that starts `python -m nlbench` in a subprocess fails with ModuleNotFoundError.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--ignore-installed",
            "--prefix",
            str(tmp_path / "prefix"),
            "-e",
            ".",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Editable installation" not in proc.stdout + proc.stderr and "!!" not in proc.stderr, proc.stderr
    assert _installed_nlbench() == before  # the suite's own install untouched


def _installed_nlbench() -> str | None:
    """Where the running interpreter's nlbench was installed from (None: not installed)."""
    from importlib import metadata

    try:
        return metadata.distribution("nlbench").read_text("direct_url.json") or ""
    except metadata.PackageNotFoundError:
        return None
