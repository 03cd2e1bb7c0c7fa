"""last.ckpt is the last state (issue 20, item 9): written at every epoch end, even when val/acc1 did not improve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tinyfit import TINY, with_options

from nlbench.lightning_cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("no_wandb")
def test_last_checkpoint_is_written_when_accuracy_did_not_improve(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # lr 0: the weights never change, so val/acc1 of epoch 1 equals epoch 0's (no improvement, best.ckpt stays at
    # the first epoch), while global_step advances to 2 x 4 = 8.
    code = main(
        [
            "fit",
            *with_options(
                TINY, "--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--data.init_args.batch_size=8"
            ),
            "--model.optimizer.init_args.lr=0.0",
            f"--run_dir={run_dir}",
        ]
    )
    assert code == 0
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["global_step"] == 4  # the monitored checkpoint was not saved again
    assert last["global_step"] == 8 and last["epoch"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
