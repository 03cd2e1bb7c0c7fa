"""The optimizer's lr is the one learning-rate knob (issue 20, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nlbench.schedulers import OneCycleLR
from nlbench.sweep_command import main

REPO = Path(__file__).resolve().parents[1]


def write_spec(tmp_path: Path, overrides: dict | None = None) -> Path:
    """The attack's own spec: an optimizer-lr axis on a sweep based on experiments/demo.yaml."""
    spec = {
        "name": "lr",
        "base": str(REPO / "experiments" / "demo.yaml"),
        "output_dir": str(tmp_path / "out"),
        "overrides": overrides or {},
        "axes": {"model.optimizer.init_args.lr": [0.05, 0.1]},
    }
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def peak_lrs(lr: float, **kwargs: float) -> float:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = OneCycleLR(optimizer, total_steps=10, pct_start=0.3, **kwargs)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return max(lrs)


def test_one_cycle_peak_follows_the_optimizer_lr() -> None:
    assert peak_lrs(0.05) == pytest.approx(0.05) and peak_lrs(0.1) == pytest.approx(0.1)
    assert peak_lrs(0.05, max_lr=0.2) == pytest.approx(0.2)  # set explicitly, max_lr still wins


def test_an_lr_axis_on_the_demo_is_a_real_axis(tmp_path: Path) -> None:
    assert main(["--config", str(write_spec(tmp_path)), "--dry-run", "--devices", "cpu"]) == 0


@pytest.mark.parametrize(
    "scheduler",
    [
        {"model.scheduler.init_args.max_lr": 0.2},
        {
            "model.scheduler": {
                "class_path": "torch.optim.lr_scheduler.OneCycleLR",
                "init_args": {"max_lr": 0.2, "pct_start": 0.25},
            }
        },
    ],
    ids=["nlbench-max_lr", "torch-one-cycle"],
)
def test_an_lr_axis_a_scheduler_overrides_is_refused_in_the_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: dict
) -> None:
    assert main(["--config", str(write_spec(tmp_path, scheduler)), "--dry-run", "--devices", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert (
        len(err) == 1
        and "swept key 'model.optimizer.init_args.lr' changes nothing: OneCycleLR's max_lr (0.2)" in err[0]
    ), err
