"""last.ckpt is the last state (issue 20, item 9): written at every epoch end, even when val/acc1 did not improve."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nlbench.lightning_cli import main

REPO = Path(__file__).resolve().parents[1]


def test_last_checkpoint_is_written_when_accuracy_did_not_improve(tmp_path: Path) -> None:
    os.environ["WANDB_MODE"] = "disabled"
    run_dir = tmp_path / "run"
    # lr 0: the weights never change, so val/acc1 of epoch 1 equals epoch 0's (no improvement, best.ckpt stays at
    # the first epoch), while global_step advances to 2 x 4 = 8.
    code = main([
        "fit", f"--config={REPO / 'experiments' / 'demo.yaml'}", f"--run_dir={run_dir}",
        "--trainer.accelerator=cpu", "--trainer.max_epochs=2", "--trainer.limit_train_batches=4",
        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.logger=false", "--model.scheduler=null", "--model.optimizer.init_args.lr=0.0",
        "--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=16",
    ])  # fmt: skip
    assert code == 0
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["global_step"] == 4  # the monitored checkpoint was not saved again
    assert last["global_step"] == 8 and last["epoch"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
