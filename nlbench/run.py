"""The run directory's record: one owner for what a run writes and every reader reads.

Metric names are the names logged by the LightningModule, so the logs, result.json, results.csv, the W&B summary
and the report all say the same thing.
"""

from __future__ import annotations

# ---- metric vocabulary ------------------------------------------------------------------------------------------
BEST_ACC1 = "val/acc1_best"  # best validation top-1 over epochs (the paper's figure; selects on the eval split)
BEST_ACC5 = "val/acc5_at_best"  # top-5 at the epoch of the best top-1
FINAL_ACC1 = "val/acc1"  # top-1 of the last epoch
FINAL_ACC5 = "val/acc5"
BEST_EPOCH = "best_epoch"
IMAGES_PER_S = "train/images_per_s"
METRICS: tuple[str, ...] = (
    BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5, BEST_EPOCH,
    "epochs", "global_step", "time_s", IMAGES_PER_S, "params", "nl_params",
)  # fmt: skip
ACCURACIES: tuple[str, ...] = (BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5)
