"""Command-line options of a small, fast `nlbench fit` (two training batches of 16 images, one validation batch),
shared by the tests that run real fits."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--trainer.accelerator=cpu",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.batch_size=16",
    "--data.init_args.eval_batch_size=16",
]
# The demo experiment, fast, without loggers or a schedule: for tests of what a fit does to its run directory.
TINY = [f"--config={REPO / 'experiments' / 'demo.yaml'}", *FAST, "--trainer.logger=false", "--model.scheduler=null"]
