"""A user's own normalization, defined outside nlbench (a module under tmp_path on PYTHONPATH), runs through a real
sweep of `nlbench fit` with no edit to nlbench, and the run's name and record name it (docs/extending.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tinyfit import OVERRIDES

from nlbench.record import read_record
from nlbench.report_command import main as report_main
from nlbench.sweep.runner import run_dir_of
from nlbench.sweep.spec import load_spec
from nlbench.sweep_command import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
TINY = {**OVERRIDES, "model.nl_stats_every_n_steps": 1}  # the attention statistics of the user's method, logged

USER_MODULE = '''
import torch
from torch import nn


class SigmoidAttention(nn.Module):
    """y_i = sum_j sigmoid(q_i . k_j + bias) v_j / M."""

    name = "sigmoid"
    label = "sigmoid attention"
    color = "tab:olive"

    def __init__(self, *, bias: float = -2.0) -> None:
        super().__init__()
        self.bias = bias

    def forward(self, q, k, v):
        return self.attention_map(q, k).to(v.dtype) @ v

    def attention_map(self, q, k):
        return torch.sigmoid(q @ k.transpose(-2, -1) + self.bias) / k.shape[-2]
'''


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "attn.py").write_text(textwrap.dedent(USER_MODULE))
    # The sweep's runs are subprocesses: they find the user's package through PYTHONPATH, as a user's shell would.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return "my_pkg.attn.SigmoidAttention"


def test_a_user_normalization_runs_through_a_sweep_of_nlbench_fit(
    user_package: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = tmp_path / "mine.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "base": str(DEMO),
                "output_dir": str(tmp_path / "out"),
                "overrides": TINY,
                "axes": {"model.backbone.nl.normalization": ["softmax", user_package]},
            }
        )
    )
    assert sweep_main(["--config", str(spec_path), "--devices", "cpu"]) == 0, capsys.readouterr()
    spec = load_spec(spec_path)
    _, run = spec.expand()
    run_dir = run_dir_of(spec, run)
    record = read_record(run_dir)
    assert record is not None and record.status == "finished", (run_dir / "stdout.log").read_text()[-3000:]
    assert record.run_name.startswith("sigmoid-r2-h1-normal")  # the class's short name, not its path
    assert record.hparams["normalization"] == user_package  # the record keeps what reruns it
    assert record.metrics["nl_params"] > 0
    # The attention statistics were logged for the user's method (it has a map).
    metrics = (run_dir / "metrics.csv").read_text()
    assert "key_norm_attention_corr" in metrics
    # The report compares it against softmax under the class's own label (issue 17 items 1 and 5).
    assert report_main([str(spec.output_dir), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    comparison = md.split("**normalization** against softmax:")[1].split("\n\n")[1]
    assert "| sigmoid attention | final top-1 | 1 pair |" in comparison


def test_an_unknown_normalization_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "-m",
        "nlbench",
        "fit",
        "--config",
        str(DEMO),
        "--trainer.fast_dev_run",
        "true",
        "--model.backbone.nl.normalization",
        "my_pkg.attn.Missing",
        "--run_dir",
        str(tmp_path / "run"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and errors[0].startswith(
        "nlbench fit: error: model.backbone.nl.normalization: unknown normalization 'my_pkg.attn.Missing'"
    )


@pytest.mark.parametrize(
    ("key", "value"), [("model.backbone.nl.normalization", "my_pkg.attn.Missing"), ("model.backbone.block", "cbam")]
)
def test_the_dry_run_refuses_a_method_that_does_not_resolve(
    user_package: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    spec_path = tmp_path / "bad.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "base": str(DEMO),
                "output_dir": str(tmp_path / "out"),
                "axes": {key: [user_package if "nl." in key else "gc", value]},
            }
        )
    )
    assert sweep_main(["--config", str(spec_path), "--dry-run", "--devices", "cpu"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"axis '{key}' value '{value}'" in error and f"{key}: unknown" in error
