"""Device slots for a sweep: which GPUs each concurrently running `nlbench fit` gets.

N visible GPUs and ``devices_per_run`` k give floor(N / k) slots of k GPUs each, pinned with
``CUDA_VISIBLE_DEVICES`` and run with ``--trainer.accelerator gpu --trainer.devices k`` (plus
``--trainer.strategy ddp`` when k > 1). Without GPUs there is one CPU slot, so runs go one after another.

``runs_per_device`` r puts r runs on every slot at once (r slots share each GPU group, or the CPU): small runs
leave most of a modern GPU idle, and r processes overlap one another's host overhead and kernel launches. Each
sharing run gets a memory cap on GPU, and every one of several concurrent processes an even share of the host's
cores (see `nlbench.device_share`).

A packed or DDP run starts in an environment without the launcher variables it inherited (`launch.child_env`):
Lightning would otherwise take an outer SLURM job (the sweep running inside an array task) or an inherited
``MASTER_PORT`` as its own, and concurrent DDP runs would all rendezvous on the same port.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nlbench import launch

# How the sweep's own MPS daemon (nlbench.sweep.mps) and its clients find one another: set by every run on it.
PIPE_ENV, LOG_ENV = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"


def client_env(mps_dir: str | os.PathLike[str]) -> dict[str, str]:
    """What an MPS daemon and each of its clients need in their environment to find one another."""
    root = Path(mps_dir)
    return {PIPE_ENV: str(root / "pipe"), LOG_ENV: str(root / "log")}


@dataclass(frozen=True)
class Slot:
    """Where one run executes: a group of GPU ids (as ``CUDA_VISIBLE_DEVICES`` names them), or the CPU."""

    gpus: tuple[str, ...] = ()
    shared_by: int = 1  # runs that use the same GPUs (or the CPU) at once, this one included
    index: int = 0  # which of those runs this slot is (0 .. shared_by - 1)
    cpus: int | None = None  # cores to split between the processes (None: the cores this process may use)
    concurrent: int | None = None  # training processes at once on the host, DDP ranks included (None: shared_by)
    mps_dir: str | None = None  # the sweep's private MPS daemon (nlbench.sweep.mps), when it runs one

    @property
    def label(self) -> str:
        where = f"gpu {','.join(self.gpus)}" if self.gpus else "cpu"
        return f"{where} #{self.index + 1}/{self.shared_by}" if self.shared_by > 1 else where

    def env(self) -> dict[str, str]:
        """Environment variables that pin the run to this slot's GPUs (inside the run they are 0..k-1) and, when
        the slot is shared, cap its share of the device (memory fraction on GPU, threads on CPU)."""
        pinned = {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)} if self.gpus else {}
        from nlbench.device_share import share_env  # imports torch and Lightning: not for `nlbench sweep --help`

        shared = share_env(self.shared_by, gpu=bool(self.gpus), cpus=self.cpus, concurrent=self.concurrent)
        mps = client_env(self.mps_dir) if self.mps_dir and self.gpus else {}
        return {**pinned, **shared, **mps}

    def child_env(self, parent: Mapping[str, str]) -> dict[str, str]:
        """The whole environment of a run on this slot: `parent`'s, without an outer launcher's variables when the
        run is packed or DDP (see the module docstring), plus `env()`."""
        packed_or_ddp = self.shared_by > 1 or len(self.gpus) > 1
        return {**launch.child_env(parent, own_world=packed_or_ddp), **self.env()}

    def fit_args(self, *, strategy_given: bool = False) -> list[str]:
        """Trainer arguments for this slot; `strategy_given` when the run's own overrides choose a strategy."""
        if not self.gpus:
            return ["--trainer.accelerator=cpu", "--trainer.devices=1"]
        args = ["--trainer.accelerator=gpu", f"--trainer.devices={len(self.gpus)}"]
        if len(self.gpus) > 1 and not strategy_given:
            args.append("--trainer.strategy=ddp")
        return args


def visible_gpus() -> list[str]:
    """GPU ids this process may use, in the names ``CUDA_VISIBLE_DEVICES`` uses (indices, or UUIDs if set so)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [d.strip() for d in listed.split(",") if d.strip()][:count]


def parse_devices(text: str) -> list[str] | None:
    """``--devices`` text: "auto" -> None (all visible GPUs, else CPU), "cpu" -> [], "0,2" -> ["0", "2"]."""
    text = text.strip()
    if text == "auto":
        return None
    if text == "cpu":
        return []
    gpus = [d.strip() for d in text.split(",")]
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--devices: expected auto, cpu or distinct comma-separated GPU ids such as 0,1; got {text!r}")
    return gpus


def plan_slots(gpus: Sequence[str], devices_per_run: int, runs_per_device: int = 1) -> list[Slot]:
    """Split `gpus` into floor(len / devices_per_run) groups, each shared by `runs_per_device` runs at once.

    No GPUs -> the CPU, shared the same way. Slots are ordered round-robin over the groups, so a sweep with fewer
    runs than slots spreads them over the GPUs before doubling up on one.
    """
    if devices_per_run < 1:
        raise ValueError(f"devices_per_run must be >= 1, got {devices_per_run}")
    if runs_per_device < 1:
        raise ValueError(f"runs_per_device must be >= 1, got {runs_per_device}")
    if not gpus:
        if devices_per_run > 1:
            raise ValueError(f"devices_per_run={devices_per_run} needs GPUs, but none are visible")
        groups: list[tuple[str, ...]] = [()]
    else:
        if len(gpus) < devices_per_run:
            raise ValueError(f"devices_per_run={devices_per_run} but only {len(gpus)} GPU(s) visible: {','.join(gpus)}")
        n_groups = len(gpus) // devices_per_run
        groups = [tuple(gpus[i * devices_per_run : (i + 1) * devices_per_run]) for i in range(n_groups)]
    processes = len(groups) * runs_per_device * devices_per_run  # training processes at once (DDP: one per GPU)
    concurrent = processes if processes > 1 else None  # None: alone, as `Slot()`
    return [
        Slot(group, runs_per_device, index, concurrent=concurrent)
        for index in range(runs_per_device)
        for group in groups
    ]
