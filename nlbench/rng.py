"""Exact resume: every random state training draws from travels in the checkpoint, one set per rank.

What "exact" buys: the resumed run draws the same random numbers as an uninterrupted one, so it ends bit for bit
where that run would on the CPU; on a GPU with ``trainer.deterministic: true`` (and ``trainer.benchmark: false``),
else within the kernels' nondeterminism (CUDA's atomic-add backward kernels and cuDNN's autotuning already make two
uninterrupted GPU runs differ in their last bits).

Training consumes the global generators of torch (CPU: the shuffling sampler and the DataLoader's base seed; CUDA:
the augmentation of single-device GPU runs), numpy and Python, plus the DataModule's per-rank augmentation
generator under DDP. Lightning saves none of them, so a resumed run reshuffled and re-augmented from the seed.
``RandomState`` captures them whenever a checkpoint is written (gathered from every rank) and sets them back on
resume, after the checkpoint is loaded and once more after the sanity check (which draws a DataLoader seed), i.e.
right before the first training epoch builds its loader iterator.

Each rank saves the CUDA state of its own device only, with the device's local index, and restores it onto the
device it runs on now: a run started by a sweep (one visible GPU) and resumed on a machine with eight resumes
exactly. What cannot be exact says so in one warning: CUDA state saved but the run now on the CPU (or the reverse),
or another number of DDP processes. Ranks the checkpoint has no states for (more processes than before) keep their
own rank-seeded augmentation generator instead of repeating rank 0's augmentations.

Not covered: persistent DataLoader worker processes (``loader=torchvision`` with ``num_workers > 0``) keep their
own generators, which no checkpoint can reach; those runs resume with fresh worker seeds.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from nlbench.device_share import with_index


def _plain(states: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors, ints and lists only, so checkpoints load with ``torch.load(weights_only=True)``; the CUDA state is
    that of `device` (this rank's), under its local index."""
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    version, py_state, py_gauss = states["python"]
    cuda = device.type == "cuda"
    return {
        "torch": states["torch"],
        "cuda_device": device.index if cuda else None,
        "cuda_state": torch.cuda.get_rng_state(device) if cuda else None,
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(py_state), py_gauss],
    }


def _collect_states() -> dict[str, Any]:
    """torch's, numpy's and Python's global random states, by each library's public getter (Lightning's
    ``_collect_rng_states(include_cuda=False)`` is private; the CUDA state is taken per device, see :func:`_plain`)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_states(states: dict[str, Any]) -> None:
    """Set the global states :func:`_collect_states` took (in :func:`_native` form)."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


def _native(states: dict[str, Any]) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    return {
        "torch": states["torch"],
        "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss),
        "python": tuple(states["python"]),
    }


def _saved_cuda_state(states: dict[str, Any], device: torch.device) -> torch.Tensor | None:
    """This rank's saved CUDA state; checkpoints written before it was saved per device hold every visible
    device's state ("torch.cuda"), of which the one at the run's local index is its own."""
    if "cuda_state" in states:
        return states["cuda_state"]
    every = states.get("torch.cuda") or []
    index = device.index or 0
    return every[index] if index < len(every) else (every[0] if every else None)


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

    def _device(self) -> torch.device:
        return with_index(self._trainer.strategy.root_device if self._trainer is not None else torch.device("cpu"))

    def _local(self) -> dict[str, Any]:
        states = _plain(_collect_states(), self._device())
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
        trainer = self._trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if ranks and len(ranks) != world and rank == 0:
            rank_zero_warn(
                f"Resuming {len(ranks)} process(es)' random states in {world}: not an exact resume "
                "(ranks without saved states draw from their own rank-seeded augmentation generator)"
            )
        if rank < len(ranks):
            self._pending = ranks[rank]
        elif ranks:  # an extra rank: rank 0's global states, as all ranks share them after seeding, but never
            # its augmentation state, which would repeat rank 0's augmentations on this rank
            self._pending = {**ranks[0], "augmentation": None, "cuda_state": None, "torch.cuda": None}
        else:
            self._pending = None
        self._apply(warn=rank < len(ranks))

    def _apply(self, warn: bool = False) -> None:
        if self._pending is None:
            return
        _set_states(_native(self._pending))
        device = self._device()
        saved = _saved_cuda_state(self._pending, device)
        if saved is not None and device.type == "cuda":
            torch.cuda.set_rng_state(saved, device)  # the run's device now, whatever its index was then
        elif warn and (saved is not None) != (device.type == "cuda"):
            then, now = ("a GPU", "the CPU") if saved is not None else ("the CPU", str(device))
            rank_zero_warn(
                f"The checkpoint's random states were saved on {then} and the run resumes on {now}: "
                "its GPU draws (augmentation) do not continue exactly"
            )
        generator = self._generator()
        if generator is not None and self._pending.get("augmentation") is not None:
            generator.set_state(self._pending["augmentation"])

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply()  # the sanity check's loader drew from the generators just restored

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None
