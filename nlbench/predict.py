"""``nlbench predict``'s output: one CSV row per image with its predicted class and class probabilities."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Writes ``<log_dir>/predictions.csv``: ``index`` (position in the predict split), ``target`` (the label, when
    the batches carry one), ``predicted`` (arg-max class) and ``prob_0 ... prob_{C-1}``.

    Rows are written batch by batch into a temporary file that replaces predictions.csv when the epoch is done, so
    an interrupted run leaves no truncated file. Under DDP each rank writes ``predictions.rank<R>.csv`` (the index
    column says where each row belongs; a distributed sampler may repeat a few images to even out the ranks).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        super().__init__(write_interval="batch")
        self.log_dir = Path(log_dir)
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._path: Path | None = None
        self.written: list[Path] = []  # the files this writer completed (the CLI says where they went)

    def _target_path(self, trainer: L.Trainer) -> Path:
        name = "predictions.csv" if trainer.world_size == 1 else f"predictions.rank{trainer.global_rank}.csv"
        return self.log_dir / name

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._path = self._target_path(trainer)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path.with_name(self._path.name + ".tmp"), "w", newline="")
        self._writer = None

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: torch.Tensor,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self._file is not None
        probs = prediction.detach().float().cpu()
        if self._writer is None:
            self._writer = csv.writer(self._file)
            self._writer.writerow(["index", "target", "predicted", *(f"prob_{c}" for c in range(probs.shape[1]))])
        targets = batch[1].tolist() if isinstance(batch, (tuple, list)) and len(batch) > 1 else [""] * len(probs)
        indices = list(batch_indices) if batch_indices is not None else [""] * len(probs)
        for index, target, predicted, row in zip(indices, targets, probs.argmax(1).tolist(), probs.tolist()):
            self._writer.writerow([index, target, predicted, *(f"{p:.6g}" for p in row)])

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._file is None or self._path is None:
            return
        self._file.close()
        os.replace(self._file.name, self._path)
        self._file = None
        self.written.append(self._path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._file is not None:
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)
            self._file = None
