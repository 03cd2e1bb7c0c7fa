"""Exact resume: every random state training draws from travels in the checkpoint, one set per rank.

Training consumes the global generators of torch (CPU: the shuffling sampler and the DataLoader's base seed; CUDA:
the augmentation of single-device GPU runs), numpy and Python, plus the DataModule's per-rank augmentation
generator under DDP. Lightning saves none of them, so a resumed run reshuffled and re-augmented from the seed.
``RandomState`` captures them whenever a checkpoint is written (gathered from every rank) and sets them back on
resume, after the checkpoint is loaded and once more after the sanity check (which draws a DataLoader seed), i.e.
right before the first training epoch builds its loader iterator.

Not covered: persistent DataLoader worker processes (``loader=torchvision`` with ``num_workers > 0``) keep their
own generators, which no checkpoint can reach; those runs resume with fresh worker seeds.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Callback


def _plain(states: dict[str, Any]) -> dict[str, Any]:
    """Tensors, ints and lists only, so checkpoints load with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    version, py_state, py_gauss = states["python"]
    return {
        "torch": states["torch"],
        "torch.cuda": list(states.get("torch.cuda", [])),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(py_state), py_gauss],
    }


def _native(states: dict[str, Any]) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    native = {
        "torch": states["torch"],
        "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss),
        "python": tuple(states["python"]),
    }
    if states["torch.cuda"] and torch.cuda.is_available() and len(states["torch.cuda"]) == torch.cuda.device_count():
        native["torch.cuda"] = states["torch.cuda"]
    return native


class RandomState(Callback):
    """Saves the random states of every rank in checkpoints and restores them exactly on resume."""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None  # this rank's states from the checkpoint, until training starts

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _generator(self) -> torch.Generator | None:
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        get = getattr(datamodule, "augmentation_generator", None)
        return get(trainer.strategy.root_device) if callable(get) else None

    def _local(self) -> dict[str, Any]:
        states = _plain(_collect_rng_states(include_cuda=True))
        generator = self._generator()
        states["augmentation"] = generator.get_state() if generator is not None else None
        return states

    def state_dict(self) -> dict[str, Any]:
        local = self._local()
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1 or not torch.distributed.is_initialized():
            return {"ranks": [local]}
        ranks: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(ranks, local)  # every rank dumps the checkpoint; rank 0 writes it
        return {"ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks") or []
        rank = self._trainer.global_rank if self._trainer is not None else 0
        # A checkpoint from another world size cannot be resumed exactly; its rank-0 states are the best guess.
        self._pending = ranks[rank] if rank < len(ranks) else (ranks[0] if ranks else None)
        self._apply()

    def _apply(self) -> None:
        if self._pending is None:
            return
        _set_rng_states(_native(self._pending))
        generator = self._generator()
        if generator is not None and self._pending.get("augmentation") is not None:
            generator.set_state(self._pending["augmentation"])

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply()  # the sanity check's loader drew from the generators just restored

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None
