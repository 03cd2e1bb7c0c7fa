"""Noise and silence (issue 20, item 2): evaluation commands without Lightning's false callback warning, predict
says where its file went."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from nlbench.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = [f"--config={REPO / 'experiments' / 'demo.yaml'}", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--model.scheduler=null", "--data.init_args.batch_size=16",
        "--data.init_args.eval_batch_size=16"]  # fmt: skip


def test_test_and_predict_are_quiet_and_predict_names_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["WANDB_MODE"] = "disabled"
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, "--trainer.logger=false", f"--run_dir={run_dir}"]) == 0
    best = run_dir / "checkpoints" / "best.ckpt"
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["test", *TINY, f"--run_dir={run_dir}", f"--ckpt_path={best}", "--trainer.limit_test_batches=1"]) == 0
        assert main(["predict", *TINY, f"--run_dir={run_dir}", f"--ckpt_path={best}",
                     "--trainer.limit_predict_batches=1"]) == 0
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "callbacks used to create the checkpoint" in m], messages
    out = capsys.readouterr().out
    assert f"nlbench predict: wrote {run_dir.resolve() / 'predict' / 'predictions.csv'}" in out
