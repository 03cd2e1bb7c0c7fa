"""Issue 24 item 1: a fit that holds out a validation split (data.val_split > 0) records the test top-1 of the
checkpoint chosen on that split (nlbench.run.SELECTED_ACC1), the unbiased metric the report decides on; also after
a crash and a resume. With val_split 0 nothing is added (the validation split is the test split)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
from tinyfit import TINY

from nlbench.callbacks import RunResult, evaluate_selected_checkpoint
from nlbench.classifier import ImageClassifier
from nlbench.lightning_cli import main
from nlbench.record import identify
from nlbench.schema import BEST_ACC1, CLASSES, FINAL_ACC1, SELECTED_ACC1

# Two epochs, 64 training images held out for validation, two test batches.
HELD_OUT = [*TINY, "--trainer.max_epochs=2", "--data.init_args.val_split=64", "--trainer.limit_test_batches=2"]


class Crash(RuntimeError):
    pass


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


def _metrics(run_dir: Path) -> dict:
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "finished"
    return record["metrics"]


def test_the_validation_selected_checkpoint_is_tested_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tested = []
    original = L.Trainer.test

    def test(self, model=None, dataloaders=None, ckpt_path=None, verbose=True, datamodule=None, weights_only=None):
        tested.append(ckpt_path)
        return original(self, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    monkeypatch.setattr(L.Trainer, "test", test)
    assert main(["fit", *HELD_OUT, f"--run_dir={tmp_path / 'straight'}"]) == 0
    assert tested == [str(tmp_path / "straight" / "checkpoints" / "best.ckpt")]  # chosen on validation
    metrics = _metrics(tmp_path / "straight")
    assert 0.0 <= metrics[SELECTED_ACC1] <= 1.0 and metrics[CLASSES] == 10
    assert metrics[FINAL_ACC1] is not None and metrics[BEST_ACC1] is not None

    # Killed in its second epoch and resumed: the same checkpoint is chosen (ModelCheckpoint's state travels in the
    # checkpoint), and the same number is recorded.
    original_step = ImageClassifier.training_step

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == 3:
            raise Crash("simulated crash in epoch 1")
        return original_step(self, batch, batch_idx)

    with monkeypatch.context() as mp:
        mp.setattr(ImageClassifier, "training_step", training_step)
        with pytest.raises(Crash):
            main(["fit", *HELD_OUT, f"--run_dir={tmp_path / 'resumed'}"])
    assert json.loads((tmp_path / "resumed" / "result.json").read_text())["metrics"][SELECTED_ACC1] is None
    assert main(["fit", *HELD_OUT, f"--run_dir={tmp_path / 'resumed'}", "--ckpt_path=last"]) == 0
    assert _metrics(tmp_path / "resumed")[SELECTED_ACC1] == metrics[SELECTED_ACC1]
    assert tested[-1] == str(tmp_path / "resumed" / "checkpoints" / "best.ckpt")


class _Data:
    def __init__(self, val_split: float) -> None:
        self.val_split = val_split


def test_nothing_is_added_without_a_held_out_split_or_a_finished_fit(tmp_path: Path) -> None:
    """val_split 0: the validation split is the test split, and the checkpoint chosen on it is best-on-test. A
    diverged fit or one that never ended has no checkpoint to stand for it. (The trainer is never touched.)"""
    result = RunResult(str(tmp_path), identify(nl=None, dataset="cifar10", backbone="PreActResNet"))
    result.outcome = ("finished", {})
    evaluate_selected_checkpoint(None, None, _Data(0), result)  # type: ignore[arg-type]
    for outcome in (None, ("diverged", {})):
        result.outcome = outcome
        evaluate_selected_checkpoint(None, None, _Data(0.1), result)  # type: ignore[arg-type]
    assert not (tmp_path / "result.json").exists()
