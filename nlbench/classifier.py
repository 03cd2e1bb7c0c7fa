"""The LightningModule: image classification around any backbone, with the paper's metrics and NL statistics."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from nlbench import schema
from nlbench.models import Backbone, named_nl_blocks, num_parameters
from nlbench.nn.nl_stats import register_input_capture

log = logging.getLogger(__name__)

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = CompileMode.__args__
# Scheduler arguments that mean "the run's length": filled in by configure_optimizers when a config leaves them null.
RUN_LENGTH_ARGS = ("total_steps", "T_max")


class ImageClassifier(L.LightningModule):
    """Cross-entropy classification of a backbone (e.g. a pre-activation ResNet with non-local blocks).

    Args:
        backbone: the network: one of nlbench's backbones, or any importable ``nn.Module`` by ``class_path``; its
            ``num_classes`` is linked from the DataModule by the CLI.
        optimizer: optimizer factory (LightningCLI dependency injection), e.g. SGD(lr=0.1, momentum=0.9).
        scheduler: optional learning-rate scheduler factory, e.g. MultiStepLR(milestones=[150, 225]). A scheduler
            whose ``total_steps`` (OneCycleLR) or ``T_max`` (``nlbench.schedulers.CosineAnnealingLR``) is left
            unset gets the run's length in steps (or epochs).
        scheduler_interval: step the scheduler every "epoch" (the paper's milestones) or every optimizer "step".
        label_smoothing: cross-entropy label smoothing (0 in the paper).
        channels_last: run the backbone in channels-last memory format (faster convolutions on GPU).
        compile: ``torch.compile`` the backbone's forward (and, through AOTAutograd, its backward) with this mode:
            false (eager), "default" (Inductor kernel fusion; true means the same), "reduce-overhead" (plus CUDA
            graphs, which remove the per-kernel launch cost that dominates a small network's step),
            "max-autotune" (plus GEMM/conv autotuning: minutes of compilation) or "max-autotune-no-cudagraphs".
            experiments/gpu.yaml chooses the mode; `nlbench bench device-check` measures them.
        nl_stats_every_n_steps: log NL-block statistics (key norms, attention entropy) every N training steps;
            0 disables. They cost an extra pass through each block, so keep N large.
    """

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerCallable,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool | CompileMode = False,
        nl_stats_every_n_steps: int = 0,
    ) -> None:
        super().__init__()
        if nl_stats_every_n_steps < 0:
            raise ValueError(f"model.nl_stats_every_n_steps must be >= 0, got {nl_stats_every_n_steps}")
        if isinstance(compile, str) and compile not in COMPILE_MODES:
            raise ValueError(f"model.compile must be false or one of {', '.join(COMPILE_MODES)}, got {compile!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attribute 'backbone' is an instance of `nn.Module`")
            self.save_hyperparameters()
        # Built by LightningCLI, backbone/optimizer/scheduler are saved as their config (class_path and init_args),
        # which is what lets ImageClassifier.load_from_checkpoint rebuild them. Built in Python they are objects,
        # which hparams (logged, pickled in every checkpoint) must not hold.
        self.remove_ignored_hparams(
            [k for k in ("backbone", "optimizer", "scheduler") if not _is_config(self.hparams[k])]
        )
        self.model = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # The backbone module is compiled in place (nn.Module.compile): its weights stay registered once, and a deep
        # copy (EMA/SWA) runs its own weights (torch drops the compiled call from copies) rather than the original's
        # through a function captured here. dynamic=False: one graph per batch shape, never a symbolic-shape
        # recompile when the epoch's last, shorter batch comes.
        mode = "default" if compile is True else compile or None
        if mode:
            self.model.compile(mode=mode, dynamic=False)
        self.diverged = False
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

        num_classes = _num_classes(backbone)
        top5 = min(5, num_classes)
        # No NaN filtering and no argument validation: both sync with the device on every update, and a NaN
        # loss must reach the epoch mean so that divergence is seen.
        mean = functools.partial(MeanMetric, nan_strategy="disable")
        accuracy = functools.partial(MulticlassAccuracy, num_classes, average="micro", validate_args=False)
        self.train_loss, self.val_loss, self.test_loss = mean(), mean(), mean()
        self.train_acc1 = accuracy(top_k=1)
        self.val_acc1, self.val_acc5 = accuracy(top_k=1), accuracy(top_k=top5)
        self.test_acc1, self.test_acc5 = accuracy(top_k=1), accuracy(top_k=top5)
        self.val_acc1_best = MaxMetric()
        self.val_acc1_best.persistent(True)  # kept in checkpoints, so a resumed run remembers its best epoch

        self._nl_inputs: dict[str, torch.Tensor | None] = {}
        self._capture_nl = False
        if nl_stats_every_n_steps:
            self._register_nl_capture()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Lightning's ``load_from_checkpoint``, after checking that the classes the checkpoint's hyper-parameters
        name (the backbone's ``class_path``, a normalization's) would be imported from the user's environment, not
        from the current folder or the checkpoint's folders (:mod:`nlbench.trusted_imports`): rebuilding the model
        imports them. ``hparams_file`` (which replaces the hyper-parameters) is checked the same way."""
        from nlbench import trusted_imports, yamlsafe
        from nlbench.checkpoint_io import check_checkpoint_classes

        if isinstance(checkpoint_path, (str, os.PathLike)):
            check_checkpoint_classes(checkpoint_path)
        elif hasattr(checkpoint_path, "seek"):  # a file object: read its hyper-parameters, then rewind it
            start = checkpoint_path.tell()
            try:
                checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - unreadable: Lightning's own load says why
                checkpoint = {}
            finally:
                checkpoint_path.seek(start)
            hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
            trusted_imports.check_file(hparams or {}, None, "the checkpoint")
        if kwargs.get("hparams_file") is not None and str(kwargs["hparams_file"]).lower().endswith((".yaml", ".yml")):
            trusted_imports.check_file(yamlsafe.load_file(kwargs["hparams_file"]), kwargs["hparams_file"])
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ---- forward -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        return loss, logits, y

    def setup(self, stage: str) -> None:
        # An example batch gives the model summary its FLOPs and tensor sizes (all 0 without one). Not with
        # torch.compile, which would compile the summary's batch-of-one forward as well.
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # not attached to a Trainer (a model set up by hand)
            datamodule = None
        size = getattr(datamodule, "image_size", None)
        if isinstance(size, int) and self.example_input_array is None and not self.hparams.compile:
            self.example_input_array = torch.zeros(1, 3, size, size)
        if isinstance(size, int):
            self._prepare_fixed_tensors(size)

    def _prepare_fixed_tensors(self, size: int) -> None:
        """One eager forward of a single image: fixed tensors built at first use (positional-encoding tables, one
        buffer per feature-map size) exist before a compiled forward, which would otherwise build them in its graph
        and recompile once they exist. Eval mode and no grad: no BatchNorm statistics change."""
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), torch.compiler.set_stance("force_eager"):
                self.model(torch.zeros(1, 3, size, size, device=self.device))
        finally:
            self.model.train(training)

    # ---- training ------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        counts = {"params": num_parameters(self.model), "nl_params": num_parameters(self.model, nl_only=True)}
        for logger in self.loggers:
            logger.log_hyperparams(counts)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        every = self.hparams.nl_stats_every_n_steps
        # Only rank 0 logs, so only rank 0 pays for the statistics.
        self._capture_nl = bool(every) and self.global_step % every == 0 and self.trainer.is_global_zero
        loss, logits, y = self._shared_step(batch)
        # update(), not __call__: a metric's forward also computes the batch's own value, which nothing uses (the
        # logs hold epoch values). Lightning calls compute() once, at the epoch's end (on_step=False below).
        self.train_loss.update(loss.detach())
        self.train_acc1.update(logits.detach(), y)
        # One name in the logs (the epoch mean, as docs/design.md says). A progress-bar value is copied to the host
        # (.item()) after every batch: show the step loss only when a progress bar is there to show it, so runs
        # without one (sweeps, the GPU overlay) never sync per step.
        self.log(schema.TRAIN_LOSS, self.train_loss, on_step=False, on_epoch=True)
        if self.trainer.progress_bar_callback is not None:
            self.log("loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, logger=False)
        self.log(schema.TRAIN_ACC1, self.train_acc1, on_step=False, on_epoch=True)
        if self._capture_nl:
            self._capture_nl = False
            self._log_nl_stats()
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Divergence check only when Lightning logs anyway (it syncs there too), to keep the hot loop sync-free.
        if (batch_idx + 1) % self.trainer.log_every_n_steps == 0:
            self._stop_if_diverged(outputs["loss"] if isinstance(outputs, dict) else outputs)

    def on_train_epoch_end(self) -> None:
        self._stop_if_diverged(self.train_loss.compute() if self.train_loss.update_count else None)

    def _stop_if_diverged(self, loss: torch.Tensor | None) -> None:
        finite = loss is None or bool(torch.isfinite(loss).all())
        # One decision for all ranks (a collective: every rank checks at the same steps), or DDP would hang.
        if self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
            log.warning("Training diverged (non-finite loss at step %d): stopping.", self.global_step)
            self.diverged = True
            self.trainer.should_stop = True

    # ---- evaluation ----------------------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._shared_step(batch)
        self.val_loss.update(loss)
        self.val_acc1.update(logits, y)
        self.val_acc5.update(logits, y)
        self.log(schema.VAL_LOSS, self.val_loss, prog_bar=False)
        self.log(schema.FINAL_ACC1, self.val_acc1, prog_bar=True)
        self.log(schema.FINAL_ACC5, self.val_acc5)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc1_best(self.val_acc1.compute())
        # Equal on every rank (torchmetrics already reduced val/acc1), so rank 0's value is the value.
        self.log(schema.BEST_ACC1, self.val_acc1_best.compute(), prog_bar=True, rank_zero_only=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, y = self._shared_step(batch)
        self.test_loss.update(loss)
        self.test_acc1.update(logits, y)
        self.test_acc5.update(logits, y)
        self.log(schema.TEST_LOSS, self.test_loss)
        self.log(schema.TEST_ACC1, self.test_acc1)
        self.log(schema.TEST_ACC5, self.test_acc5)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    # ---- optimisation --------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        extra: dict[str, Any] = {}
        keywords = getattr(self.scheduler_factory, "keywords", {})
        for length_arg in RUN_LENGTH_ARGS:
            if length_arg in keywords and keywords[length_arg] is None:
                # e.g. OneCycleLR's total_steps or nlbench's CosineAnnealingLR's T_max left unset in YAML: the
                # schedule spans the whole run, whatever the data size, in units of scheduler_interval.
                steps = int(self.trainer.estimated_stepping_batches)
                extra[length_arg] = steps if self.hparams.scheduler_interval == "step" else self.trainer.max_epochs
        if "total_steps" in extra:
            if float(keywords.get("pct_start", 0.3)) * extra["total_steps"] == 1:
                # torch's OneCycleLR divides by zero when its warm-up phase is exactly one step long.
                raise ValueError(
                    f"model.scheduler: a warm-up of pct_start={keywords['pct_start']} x "
                    f"{extra['total_steps']} steps is exactly one step, which OneCycleLR cannot "
                    "schedule; change pct_start or the run length"
                )
        scheduler = self.scheduler_factory(optimizer, **extra)
        return {
            "optimizer": optimizer,
            # "name" makes LearningRateMonitor log it as "lr".
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval, "name": "lr"},
        }

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # load_from_checkpoint rebuilds backbone/optimizer/scheduler from their saved config, then (built as
        # objects) __init__ drops them from hparams: put the checkpoint's config back, so model.hparams says what
        # the model is, as after a fit.
        saved = checkpoint.get("hyper_parameters") or {}
        for key in ("backbone", "optimizer", "scheduler"):
            if key not in self.hparams and key in saved and _is_config(saved[key]):
                self.hparams[key] = saved[key]

    # ---- NL statistics -------------------------------------------------------------------------------------
    def nl_blocks(self) -> dict[str, nn.Module]:
        return dict(named_nl_blocks(self.model))

    def _register_nl_capture(self) -> None:
        # Only on sampled steps (self._capture_nl); compiled, on every forward (see register_input_capture). The keys
        # are there from the start and never removed: a compiled graph guards on the keys of a dict it writes to.
        self._nl_inputs.update(dict.fromkeys(self.nl_blocks()))
        register_input_capture(self.nl_blocks().items(), self._nl_inputs, enabled=lambda: self._capture_nl)

    @torch.no_grad()
    def _log_nl_stats(self) -> None:
        # Straight to the loggers, once per sampled step: self.log(on_step=True) would repeat the last value at
        # every later logging step.
        blocks = self.nl_blocks()
        metrics = {
            f"nl/{name.replace('.', '_')}/{key}": float(value)
            for name, x in self._nl_inputs.items()
            if x is not None
            for key, value in blocks[name].attention_stats(x).items()
        }
        self._nl_inputs.update(dict.fromkeys(self._nl_inputs))  # drop the activations, keep the keys
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)


def _is_config(value: Any) -> bool:
    return value is None or isinstance(value, (dict, str, int, float, bool))


def _num_classes(backbone: nn.Module) -> int:
    """The number of outputs of the backbone's classifier head (its last Linear layer)."""
    num = getattr(backbone, "num_classes", None)
    if isinstance(num, int):
        return num
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model.backbone has no num_classes attribute and no Linear head to read it from")
    return linears[-1].out_features
