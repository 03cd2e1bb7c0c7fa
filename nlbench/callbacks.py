"""Callbacks owned by nlbench: the run's record (result.json) and training throughput."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from nlbench import out_of_memory, schema
from nlbench.models import num_parameters
from nlbench.record import RunDir, RunIdentity, RunRecord, write_record

NO_STEP = (
    "trained no step: the fit stopped before its first optimizer step (trainer.max_epochs, max_steps, "
    "max_time or limit_train_batches)"
)

# The W&B summary's name for the learning rate the run was configured with (beside the scheduled `lr`).
INITIAL_LR = "lr/initial"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


class RunResult(Callback):
    """Keeps the run's record (:class:`nlbench.RunRecord`) in ``result.json``: "running" from the start of
    training (updated after every validation), then finished, diverged, failed or interrupted. Only global rank 0
    writes. The metrics carry the names the module logs (:data:`nlbench.schema.METRICS`), and the W&B summary gets the
    same names.

    Library pieces and why this callback still exists:
    - best top-1 has one owner, the module's ``val/acc1_best`` (a torchmetrics MaxMetric, kept in checkpoints);
      this callback reads it after each validation and only notes the epoch and the top-5 at which it rose (the
      MaxMetric knows neither); the W&B summary holds it as a plain number (the logged running best), with
      ``lr/initial``, the configured learning rate, beside the last scheduled ``lr``. The last validation's
      metrics travel in checkpoints too, so a run resumed from its end checkpoint (e.g. after its result.json was
      torn) records them instead of nulls.
    - throughput is timed here, not with ``ThroughputMonitor``: that one calls ``torch.cuda.synchronize()`` after
      every batch and logs per step under its own names; one sync-free per-epoch ``train/images_per_s`` is wanted.

    Args:
        path: the run directory (result.json goes there).
        identity: the run's name, group and hyper-parameters (:func:`nlbench.identity_from_config`).
        wandb_id: the run's W&B id, recorded so the report can find it.
    """

    def __init__(self, path: str, identity: RunIdentity, wandb_id: str | None = None) -> None:
        self.run_dir = RunDir(Path(path))
        self.identity = identity
        self.wandb_id = wandb_id
        self.state: dict[str, Any] = {
            schema.BEST_ACC5: None,
            schema.BEST_EPOCH: None,
            "time_s": 0.0,
            schema.IMAGES_PER_S: None,
            "_best": None,
            schema.FINAL_ACC1: None,
            schema.FINAL_ACC5: None,
        }
        self.training_started = False  # before it, a failure is a set-up error that the CLI reports in one line
        # The fit's outcome as on_fit_end recorded it: later evaluations (evaluate_selected_checkpoint) add to that
        # record and never change its status.
        self.outcome: tuple[str, dict[str, Any]] | None = None
        self._fit_start = 0.0
        self._epoch_start = 0.0
        self._last_batch_end = 0.0
        self._images = 0
        self._sdpa: str | None = None  # the attention kernel(s) of the model's softmax blocks (nlbench.nn.sdpa)

    # ---- state in checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**self.state, "time_s": self.state["time_s"] + self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state.update({key: value for key, value in state_dict.items() if key in self.state})

    def _elapsed(self) -> float:
        return time.perf_counter() - self._fit_start if self._fit_start else 0.0

    # ---- hooks -----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.training_started = True
        if trainer.is_global_zero:
            self._sdpa = _sdpa_kernels(trainer, pl_module)
            _update_wandb_summary(trainer, {INITIAL_LR: _initial_lr(trainer)})
        self.write(trainer, pl_module, "running")

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
            self.state[schema.IMAGES_PER_S] = rate
            pl_module.log(schema.IMAGES_PER_S, rate, on_step=False, on_epoch=True, sync_dist=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the module's on_validation_epoch_end: its val/acc1_best (the one owner of best top-1) is updated.
        if trainer.sanity_checking or schema.FINAL_ACC1 not in trainer.callback_metrics:
            return
        logged = trainer.callback_metrics
        acc5 = logged.get(schema.FINAL_ACC5)
        self.state.update(
            {
                schema.FINAL_ACC1: float(logged[schema.FINAL_ACC1]),
                schema.FINAL_ACC5: None if acc5 is None else float(acc5),
            }
        )
        best = _best_of(pl_module)
        if best is not None and (self.state["_best"] is None or best > self.state["_best"]):
            self.state.update(
                {
                    "_best": best,
                    schema.BEST_ACC5: self.state[schema.FINAL_ACC5],
                    schema.BEST_EPOCH: trainer.current_epoch,
                }
            )
        if self.training_started:
            # Mid-epoch, Lightning's current_epoch is the epoch being trained: this one's validation completes it.
            self.write(trainer, pl_module, "running", epochs=trainer.current_epoch + 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The W&B run is finished (loggers finalized) before on_fit_end: give its summary the record's metrics here.
        if trainer.is_global_zero:
            _update_wandb_summary(trainer, {**self.metrics(trainer, pl_module), INITIAL_LR: _initial_lr(trainer)})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "diverged", False):
            status, error = "diverged", None
        elif trainer.global_step == 0:
            # Lightning stopped before its first step (a zero length the CLI's check did not see): "finished" would
            # make a sweep skip the run forever, with no checkpoint and no metric.
            status, error = "failed", NO_STEP
        else:
            status, error = "finished", None
        self.write(trainer, pl_module, status, error=error)
        self.outcome = (status, self.metrics(trainer, pl_module))

    def record_selected(self, trainer: L.Trainer, pl_module: L.LightningModule, acc1: float | None) -> None:
        """Add the test top-1 of the validation-selected checkpoint to the finished fit's record (same status)."""
        if self.outcome is None or not trainer.is_global_zero:
            return
        status, metrics = self.outcome
        metrics = {**metrics, schema.SELECTED_ACC1: acc1}
        self.outcome = (status, metrics)
        write_record(self.run_dir, self._record(pl_module, status, metrics, None))
        _update_wandb_summary(trainer, {schema.SELECTED_ACC1: acc1})

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self.training_started or self.outcome is not None:
            return  # before training: a set-up error; after the fit ended: its record stands
        # Ctrl-C and SIGTERM (a scheduler's or the sweep's stop; Lightning raises SIGTERMException) are stops, not
        # failures: the run resumes from its last checkpoint.
        status = "interrupted" if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) else "failed"
        error = _first_line(exception)
        if out_of_memory.is_out_of_memory_exception(exception):
            error = out_of_memory.describe(pl_module.device)  # the cap it ran under, and what to change
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # what the failed step held, before the record is written and W&B closes
        try:
            self.write(trainer, pl_module, status, error=error)
        except OSError as err:  # e.g. the disk that failed the run is still full: keep the original error
            rank_zero_warn(f"could not record the {status} run in {self.run_dir.result}: {err}")

    # ---- the record ------------------------------------------------------------------------------------------
    def metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The run's metrics now, keyed by :data:`nlbench.schema.METRICS`."""
        logged = trainer.callback_metrics
        model = getattr(pl_module, "model", pl_module)
        state = self.state_dict()

        def value(name: str) -> float | None:
            return float(logged[name]) if name in logged else state[name]  # a resumed, finished fit: the checkpoint's

        return {
            schema.BEST_ACC1: state["_best"],  # the module's val/acc1_best as of the last validation
            schema.FINAL_ACC1: value(schema.FINAL_ACC1),
            schema.BEST_ACC5: state[schema.BEST_ACC5],
            schema.FINAL_ACC5: value(schema.FINAL_ACC5),
            schema.BEST_EPOCH: state[schema.BEST_EPOCH],
            "epochs": trainer.current_epoch,  # completed epochs (Lightning counts up after each one)
            "global_step": trainer.global_step,
            "time_s": state["time_s"],
            schema.IMAGES_PER_S: state[schema.IMAGES_PER_S],
            "params": num_parameters(model),
            "nl_params": num_parameters(model, nl_only=True),
            schema.CLASSES: getattr(getattr(pl_module, "val_acc1", None), "num_classes", None),
        }

    def write(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        status: str,
        error: str | None = None,
        epochs: int | None = None,
    ) -> None:
        if not trainer.is_global_zero:
            return
        metrics = self.metrics(trainer, pl_module)
        if epochs is not None:
            metrics["epochs"] = epochs
        record = self._record(pl_module, status, metrics, error)
        write_record(self.run_dir, record)
        if status in ("failed", "interrupted"):  # on_exception runs while the W&B run is still live
            _update_wandb_summary(trainer, record.metrics)

    def _record(
        self, pl_module: L.LightningModule, status: str, metrics: dict[str, Any], error: str | None
    ) -> RunRecord:
        return RunRecord(
            status=status,
            run_name=self.identity.name,
            group=self.identity.group,
            wandb_id=self.wandb_id,
            hparams=dict(self.identity.hparams),
            metrics=metrics,
            error=error,
            machine={**_machine(pl_module), "sdpa": self._sdpa},
            config=dict(self.identity.config),
            differs=list(self.identity.differs),
            method=dict(self.identity.method),
        )


def evaluate_selected_checkpoint(
    trainer: L.Trainer, model: L.LightningModule, datamodule: Any, result: RunResult
) -> None:
    """After a finished fit that held out a validation split (``val_split > 0``): test the checkpoint chosen on it
    (the ModelCheckpoint monitoring val/acc1, mode max: its best_model_path, restored on resume) and record its
    test top-1 as :data:`nlbench.schema.SELECTED_ACC1`, the unbiased metric the report decides on. With val_split 0
    the validation split is the test split, so that checkpoint's test top-1 is val/acc1_best: nothing to add.
    A failure here warns and leaves the record as it is (the fit finished)."""
    if not getattr(datamodule, "val_split", 0) or result.outcome is None or result.outcome[0] != "finished":
        return
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    if (
        getattr(checkpoint, "monitor", None) != schema.FINAL_ACC1
        or getattr(checkpoint, "mode", None) != "max"
        or not best
    ):
        rank_zero_warn(
            f"data.val_split > 0 but no ModelCheckpoint(monitor={schema.FINAL_ACC1}, mode=max) saved a best "
            f"checkpoint: {schema.SELECTED_ACC1} is not recorded, and the report decides on the final top-1 "
            "of the validation split instead"
        )
        return
    try:
        out = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    except Exception as err:  # noqa: BLE001 - the fit's record stands; say why the metric is missing
        rank_zero_warn(f"could not test the validation-selected checkpoint {best}: {_first_line(err)}")
        return
    value = out[0].get(schema.TEST_ACC1) if out else None
    result.record_selected(trainer, model, None if value is None else float(value))


def _best_of(pl_module: L.LightningModule) -> float | None:
    """The module's best validation top-1 (its ``val_acc1_best`` MaxMetric), None before any validation."""
    best = getattr(pl_module, "val_acc1_best", None)
    if best is None or best.update_count == 0:
        return None
    value = float(best.compute())
    return value if value > float("-inf") else None


def _machine(pl_module: L.LightningModule) -> dict[str, Any]:
    """Where this run trains (:data:`nlbench.schema.MACHINE_KEYS`): device (with the GPU's name), threads, host."""
    device = pl_module.device
    name = str(device)
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    return {"device": name, "threads": torch.get_num_threads(), "host": socket.gethostname()}


def _sdpa_kernels(trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
    """The SDPA kernel(s) the model's softmax blocks run in this training (its device, precision and feature-map
    sizes): one eager forward of two blank images under the trainer's precision context; None without SDPA calls or
    without a DataModule that states its image size."""
    from nlbench.nn.sdpa import model_sdpa_kernels

    size = getattr(trainer.datamodule, "image_size", None) if trainer.datamodule is not None else None
    if not isinstance(size, int):
        return None
    example = torch.zeros(2, 3, size, size, device=pl_module.device)
    return model_sdpa_kernels(pl_module, example, trainer.precision_plugin.forward_context)


def _initial_lr(trainer: L.Trainer) -> float | None:
    """The learning rate the optimizer was built with (``model.optimizer.init_args.lr``, what a sweep varies); the
    logged ``lr`` is the scheduler's value at each step, its last one in the summary."""
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    lr = getattr(optimizer, "defaults", {}).get("lr")
    return float(lr) if isinstance(lr, (int, float)) else None


def _update_wandb_summary(trainer: L.Trainer, metrics: dict[str, Any]) -> None:
    """Give the W&B summary the record's metrics under the same names (best epoch, top-5 at best, time, ...), each a
    plain number: ``val/acc1_best`` is the best validation top-1 so far (the module logs the running best), so the UI
    and the README's recipe find it under that name, not as ``val/acc1_best.max``."""
    for logger in trainer.loggers:
        experiment = getattr(logger, "_experiment", None)  # only a W&B run that exists; never start one here
        summary = getattr(experiment, "summary", None)
        if summary is None or not hasattr(summary, "update"):
            continue
        try:
            summary.update({k: v for k, v in metrics.items() if v is not None})
        except Exception:  # noqa: BLE001 - W&B must never fail a run
            pass
