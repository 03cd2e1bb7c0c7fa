"""Callbacks owned by nlbench: the run's result file and training throughput."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from nlbench.io import atomic_write_json
from nlbench.models import num_parameters


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


class RunResult(Callback):
    """Tracks best/final validation accuracy, time and throughput, and writes ``result.json`` atomically.

    The state travels in checkpoints, so a resumed run reports the best epoch over its whole history and its
    total training time. Only global rank 0 writes.

    Args:
        path: where to write the result file.
        hparams: headline hyper-parameters copied into the file (normalization, reduction, init, seed, ...).
        run_name: the run's display name.
        group: the run's group (same configuration, other seeds).
    """

    def __init__(
        self, path: str, hparams: dict[str, Any] | None = None, run_name: str = "", group: str = ""
    ) -> None:
        self.path = Path(path)
        self.hparams = dict(hparams or {})
        self.run_name = run_name
        self.group = group
        self.state: dict[str, Any] = {
            "best_val_acc1": None, "best_val_acc5": None, "best_epoch": None,
            "final_val_acc1": None, "final_val_acc5": None, "time_s": 0.0, "train_images_per_s": None,
        }
        self.training_started = False  # before it, a failure is a set-up error that the CLI reports in one line
        self._fit_start = 0.0
        self._epoch_start = 0.0
        self._last_batch_end = 0.0
        self._images = 0

    # ---- state in checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**self.state, "time_s": self.state["time_s"] + self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state.update(state_dict)

    def _elapsed(self) -> float:
        return time.perf_counter() - self._fit_start if self._fit_start else 0.0

    # ---- hooks -----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.training_started = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += len(batch[1])
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation runs before this hook, so time the training batches only (start of epoch to last batch).
        seconds = self._last_batch_end - self._epoch_start
        if self._images and seconds > 0:
            rate = self._images * trainer.world_size / seconds
            self.state["train_images_per_s"] = rate
            pl_module.log("train/images_per_s", rate, on_step=False, on_epoch=True, sync_dist=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if "val/acc1" not in metrics:
            return
        acc1 = float(metrics["val/acc1"])
        acc5 = float(metrics["val/acc5"]) if "val/acc5" in metrics else None
        self.state["final_val_acc1"], self.state["final_val_acc5"] = acc1, acc5
        best = self.state["best_val_acc1"]
        if best is None or acc1 > best:
            self.state.update(best_val_acc1=acc1, best_val_acc5=acc5, best_epoch=trainer.current_epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module, "diverged" if getattr(pl_module, "diverged", False) else "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self.training_started:
            return
        # Ctrl-C and SIGTERM (a scheduler's or the sweep's stop; Lightning raises SIGTERMException) are stops, not
        # failures: the run resumes from its last checkpoint.
        status = "interrupted" if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) else "failed"
        try:
            self.write(trainer, pl_module, status, error=_first_line(exception))
        except OSError as err:  # e.g. the disk that failed the run is still full: keep the original error
            rank_zero_warn(f"could not record the {status} run in {self.path}: {err}")

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str, error: str | None = None) -> None:
        if not trainer.is_global_zero:
            return
        model = getattr(pl_module, "model", pl_module)
        state = self.state_dict()
        result = {
            "status": status,
            "run_name": self.run_name,
            "group": self.group,
            "hparams": self.hparams,
            **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in state.items()},
            "epochs": trainer.current_epoch,  # completed epochs (Lightning counts up after each one)
            "global_step": trainer.global_step,
            "params": num_parameters(model),
            "nl_params": num_parameters(model, nl_only=True),
            "error": error,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(self.path, result)
