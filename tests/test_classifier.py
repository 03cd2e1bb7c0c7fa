"""Behaviour of the LightningModule and its result callback through real (tiny) `nlbench fit` runs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from tinyfit import DEMO, FAST_DEMO, with_options

from nlbench.classifier import ImageClassifier
from nlbench.lightning_cli import main
from nlbench.record import read_record
from nlbench.schema import BEST_ACC1, FINAL_ACC1, IMAGES_PER_S

# Every test gives its number of epochs; metrics every step and an epoch-wise schedule to read back.
FAST = [
    *with_options(FAST_DEMO, "--trainer.limit_train_batches=3", "--data.init_args.eval_batch_size=64"),
    "--trainer.log_every_n_steps=1",
    "--model.nl_stats_every_n_steps=2",
    "--model.scheduler=torch.optim.lr_scheduler.StepLR",
    "--model.scheduler.step_size=1",
    "--model.scheduler_interval=epoch",
]


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


def fit(run_dir: Path, *extra: str) -> int:
    return main(["fit", *FAST, f"--run_dir={run_dir}", *extra])


def epoch_rows(run_dir: Path, column: str) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row[column]) for row in csv.DictReader(f) if row.get(column)]


def test_best_and_final_accuracy_over_epochs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert fit(run_dir, "--trainer.max_epochs=3", "--model.optimizer.init_args.lr=0.5") == 0
    result = read_record(run_dir).flat()
    val = epoch_rows(run_dir, "val/acc1")
    assert len(val) == 3
    assert result[BEST_ACC1] == pytest.approx(max(val))
    assert result[FINAL_ACC1] == pytest.approx(val[-1])
    assert result["best_epoch"] == val.index(max(val))
    assert epoch_rows(run_dir, "val/acc1_best")[-1] == pytest.approx(max(val))
    assert epoch_rows(run_dir, "lr") == pytest.approx([0.5, 0.05, 0.005])
    # NL statistics are logged every 2 steps for the stage-2 block.
    assert len(epoch_rows(run_dir, "nl/stage2_nonlocal0/key_norm_mean")) == 5  # steps 0, 2, 4, 6, 8
    assert result[IMAGES_PER_S] > 0 and result["epochs"] == 3


def test_resume_keeps_the_learning_curve_and_the_best_epoch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert fit(run_dir, "--trainer.max_epochs=2") == 0
    first = read_record(run_dir).flat()
    first_val = epoch_rows(run_dir, "val/acc1")
    assert fit(run_dir, "--trainer.max_epochs=3", "--ckpt_path=last") == 0
    result = read_record(run_dir).flat()
    val = epoch_rows(run_dir, "val/acc1")
    assert len(val) == 3 and val[:2] == first_val  # Lightning's CSVLogger would have deleted the first two
    assert result[BEST_ACC1] == pytest.approx(max(val)) and result["best_epoch"] == val.index(max(val))
    assert result["time_s"] > first["time_s"]


def test_failure_during_training_keeps_the_run_and_says_failed(tmp_path: Path, monkeypatch) -> None:
    original = ImageClassifier.training_step

    def broken_step(self, batch, batch_idx):
        if self.global_step == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ImageClassifier, "training_step", broken_step)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="out of memory"):
        fit(run_dir, "--trainer.max_epochs=2", "--trainer.limit_train_batches=2")
    result = read_record(run_dir).flat()
    assert result["status"] == "failed" and "out of memory" in result["error"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # epoch 1 finished and was checkpointed


def test_divergence_is_caught_at_epoch_end_without_step_checks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = fit(
        run_dir,
        "--trainer.max_epochs=3",
        "--trainer.log_every_n_steps=50",
        "--model.scheduler=null",
        "--model.optimizer.init_args.lr=1e30",
    )
    assert code == 0
    result = read_record(run_dir).flat()
    assert result["status"] == "diverged" and result["global_step"] == 3  # stopped after the first epoch


def test_no_per_step_device_syncs_in_the_metrics() -> None:
    model = ImageClassifier(torch.nn.Linear(4, 10), optimizer=torch.optim.SGD)
    assert model.train_loss.nan_strategy == "disable"  # NaN filtering syncs, and would hide divergence
    assert not model.train_acc1.validate_args and not model.val_acc1.validate_args


@pytest.mark.parametrize(("interval", "t_max"), [("step", 300 * 391), ("epoch", 300)])
def test_cosine_t_max_is_filled_from_the_run_length(interval: str, t_max: int) -> None:
    """The official --cos: lr_t = 0.1 / 2 (1 + cos(pi t / T)), T = epochs x iterations per epoch, stepped per step."""
    from types import SimpleNamespace

    from nlbench.lightning_cli import _ParseOnlyCLI

    cli = _ParseOnlyCLI(
        args=[
            f"--config={DEMO}",
            "--model.scheduler=nlbench.schedulers.CosineAnnealingLR",
            f"--model.scheduler_interval={interval}",
            "--model.optimizer.lr=0.1",
        ],
        run=False,
    )
    model = cli.config_init.model
    model._trainer = SimpleNamespace(estimated_stepping_batches=300 * 391, max_epochs=300)
    config = model.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    assert scheduler.T_max == t_max and scheduler.eta_min == 0.0 and config["lr_scheduler"]["interval"] == interval
    optimizer = config["optimizer"]
    for t in range(1, 4):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * t / t_max)), rel=1e-9)


def test_cosine_without_a_run_length_names_t_max() -> None:
    from nlbench.schedulers import CosineAnnealingLR

    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))


def test_metrics_update_every_step_and_compute_once_per_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calling a metric (its forward) computes the batch's own value besides updating the state: per-step work (and,
    for some metrics, host syncs) that nothing reads. Each metric is updated per step and computed at epoch end."""
    from torchmetrics import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    computed: dict[int, int] = {}
    for cls in (MeanMetric, MulticlassAccuracy):
        original = cls.compute

        def counting(self, original=original):  # type: ignore[no-untyped-def]
            computed[id(self)] = computed.get(id(self), 0) + 1
            return original(self)

        monkeypatch.setattr(cls, "compute", counting)
    models: list[ImageClassifier] = []
    monkeypatch.setattr(ImageClassifier, "on_fit_start", lambda self: models.append(self), raising=False)
    assert (
        fit(
            tmp_path / "run",
            "--trainer.max_epochs=2",
            "--trainer.limit_val_batches=2",
            "--data.init_args.eval_batch_size=16",
            "--trainer.logger=false",
        )
        == 0
    )
    (model,) = models
    per_metric = {
        name: computed.get(id(getattr(model, name)), 0)
        for name in ("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5")
    }
    # 2 epochs x 3 training steps and 2 validation steps (+ the sanity check's validation): one compute per epoch
    # and stage (torchmetrics caches it until the next update: val/acc1_best and the divergence check reuse it).
    assert per_metric == {"train_loss": 2, "train_acc1": 2, "val_loss": 3, "val_acc1": 3, "val_acc5": 3}
