"""Command-line options of a small, fast `nlbench fit` (two training batches of 16 images, one validation batch),
shared by the tests that run real fits, and the same fit as a sweep spec's `overrides`. A test that needs more (three
epochs, another batch size) states only that, after or through `with_options`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
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
# The demo experiment, fast, with its loggers (CSV, W&B "auto") and its one-cycle schedule.
FAST_DEMO = [f"--config={DEMO}", *FAST]
# The demo experiment, fast, without loggers or a schedule: for tests of what a fit does to its run directory.
TINY = [*FAST_DEMO, "--trainer.logger=false", "--model.scheduler=null"]
# FAST as a sweep spec's `overrides` (the sweep chooses the accelerator), without the sanity validation.
OVERRIDES = {
    "trainer.max_epochs": 1,
    "trainer.limit_train_batches": 2,
    "trainer.limit_val_batches": 1,
    "trainer.num_sanity_val_steps": 0,
    "data.batch_size": 16,
    "data.eval_batch_size": 16,
}


def with_options(base: Sequence[str], *changes: str) -> list[str]:
    """``base`` with each ``--key=value`` of ``changes`` in place of ``base``'s option of the same key, new keys
    appended: every option spelled once, so a command line (and a failure message) reads without shadowed values."""
    changed = dict(change.split("=", 1) for change in changes)
    options = []
    for arg in base:
        key = arg.split("=", 1)[0]
        options.append(f"{key}={changed.pop(key)}" if key in changed else arg)
    return options + [f"{key}={value}" for key, value in changed.items()]
