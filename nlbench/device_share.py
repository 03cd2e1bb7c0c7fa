"""Sharing one device between several concurrent runs (``runs_per_device: k`` in a sweep).

The sweep starts k ``nlbench fit`` processes per GPU slot and tells each, through the environment, which share of
the device it may take; the fit applies it in `DeviceShare.setup`, after Lightning has selected the run's CUDA
device and before the model or the data cache allocates anything on it:

- GPU: ``NLBENCH_CUDA_MEMORY_FRACTION=f`` -> ``torch.cuda.set_per_process_memory_fraction(f, device)``, so a run
  that grows raises an out-of-memory error in its own process instead of starving the k - 1 others. The sweep
  passes ``(1 - CUDA_RESERVE) / k``: memory outside PyTorch's caching allocator (each process's CUDA context and
  kernel images, some hundreds of MiB) is not counted by the fraction, so a margin is kept for it.
- Threads, GPU or CPU: ``OMP_NUM_THREADS=t`` (torch's intra-op pool, read at start-up, and OpenMP/MKL elsewhere)
  and ``TORCHINDUCTOR_COMPILE_THREADS=t`` (Inductor's compile workers, otherwise min(32, cores) per process), with
  t = cores / the training processes running at once (at least 1): k processes split the cores instead of each
  spawning one thread per core.
"""

from __future__ import annotations

import os

import lightning as L
import torch

MEMORY_FRACTION_ENV = "NLBENCH_CUDA_MEMORY_FRACTION"
THREADS_ENV = "OMP_NUM_THREADS"
COMPILE_THREADS_ENV = "TORCHINDUCTOR_COMPILE_THREADS"
CUDA_RESERVE = 0.1  # of the device memory, kept outside the k runs' allocator limits (contexts, kernel images)


def memory_fraction(runs_per_device: int) -> float:
    """The allocator limit of each of `runs_per_device` runs sharing one GPU, as a fraction of its memory."""
    if runs_per_device < 1:
        raise ValueError(f"runs_per_device must be >= 1, got {runs_per_device}")
    return (1.0 - CUDA_RESERVE) / runs_per_device


def threads_per_run(runs_per_device: int, cpus: int | None = None) -> int:
    """CPU threads for each of `runs_per_device` concurrent CPU runs: the usable cores split evenly (at least 1)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // runs_per_device)


def share_env(
    runs_per_device: int, *, gpu: bool, cpus: int | None = None, concurrent: int | None = None
) -> dict[str, str]:
    """Environment variables of one of `runs_per_device` runs sharing a slot; {} for a process alone on the host.

    `concurrent`: training processes running at once on this host (all slots, DDP ranks included); default
    `runs_per_device`. The host's cores are split between them, on GPU slots as on CPU ones.
    """
    concurrent = runs_per_device if concurrent is None else concurrent
    env = {MEMORY_FRACTION_ENV: f"{memory_fraction(runs_per_device):.6f}"} if gpu and runs_per_device > 1 else {}
    if concurrent > 1:
        threads = str(threads_per_run(concurrent, cpus))
        env.update({THREADS_ENV: threads, COMPILE_THREADS_ENV: threads})
    return env


def requested_fraction() -> float | None:
    """The memory fraction this process was given, or None; a malformed value is an error naming the variable."""
    text = os.environ.get(MEMORY_FRACTION_ENV)
    if not text:
        return None
    try:
        fraction = float(text)
    except ValueError:
        fraction = -1.0
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{MEMORY_FRACTION_ENV}={text!r}: expected a fraction in (0, 1]")
    return fraction


def apply_memory_share(device: torch.device) -> float | None:
    """Cap this process's CUDA allocations on `device` at the requested fraction; returns it (None: no cap)."""
    fraction = requested_fraction()
    if fraction is None or device.type != "cuda":
        return None
    device = with_index(device)
    # The allocator reads the device's total memory with the *current* device: make it the run's device.
    with torch.cuda.device(device):
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def with_index(device: torch.device) -> torch.device:
    """`device` with an explicit index: an index-less ``cuda`` is the current CUDA device (torch's per-device
    calls such as ``set_per_process_memory_fraction`` refuse a device without one)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class DeviceShare(L.Callback):
    """Applies the memory share the sweep requested (see the module docstring); a no-op without one."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        apply_memory_share(trainer.strategy.root_device)
