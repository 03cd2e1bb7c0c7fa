"""A private NVIDIA MPS control daemon for a packed sweep (``nlbench sweep --mps``).

Without MPS, k processes on one GPU time-slice it: their kernels never run at once, so packing gains at most
about 1 / (one run's GPU-busy fraction). MPS funnels the k processes' work into one GPU context, where kernels of
different processes run concurrently. The sweep starts its own daemon (``nvidia-cuda-mps-control -d``) with its
pipe and log directories under the sweep directory (``CUDA_MPS_PIPE_DIRECTORY``, ``CUDA_MPS_LOG_DIRECTORY``: the
daemon, its server and every client must agree on the pipe directory), so it never joins or stops a daemon
someone else runs; each run is started with the same two variables, and the daemon is told to ``quit`` (on its
standard input) when the sweep ends, however it ends. When the daemon cannot start (no such program, a pipe path
too long for a UNIX socket, an error), the sweep warns once and runs without MPS.

Device numbering: the MPS server renumbers the devices its control daemon was started with, and a client's
``CUDA_VISIBLE_DEVICES`` then indexes that renumbered list (NVIDIA's MPS documentation). Each run is pinned with
``CUDA_VISIBLE_DEVICES`` set to the ids the sweep itself sees (``3`` on a node, or UUIDs), so the daemon is started
*without* ``CUDA_VISIBLE_DEVICES``: it serves the devices in the numbering those ids were taken in, and each client's
ids mean what they say. (Started with the sweep's ``CUDA_VISIBLE_DEVICES=2,3``, its server would call those GPUs 0
and 1, and a run pinned to ``3`` would fail with an invalid device ordinal.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from nlbench import sweepdir
from nlbench.sweep.devices import PIPE_ENV, Slot, client_env

CONTROL = "nvidia-cuda-mps-control"
MAX_PIPE_DIR = 90  # a UNIX socket path holds at most 107 bytes, and the daemon adds its socket names to the dir


def daemon_env(mps_dir: str | os.PathLike[str], parent: Mapping[str, str]) -> dict[str, str]:
    """The control daemon's environment: `parent`'s without ``CUDA_VISIBLE_DEVICES`` (see the module docstring),
    plus the pipe and log directories."""
    return {**{k: v for k, v in parent.items() if k != "CUDA_VISIBLE_DEVICES"}, **client_env(mps_dir)}


def start(mps_dir: Path) -> str | None:
    """Start the control daemon; None when it runs, else why not (one line)."""
    program = shutil.which(CONTROL)
    if program is None:
        return f"{CONTROL} is not on PATH"
    env = client_env(mps_dir)
    if len(env[PIPE_ENV]) > MAX_PIPE_DIR:
        return f"the pipe directory {env[PIPE_ENV]} is too long for a UNIX socket path"
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [program, "-d"], env=daemon_env(mps_dir, os.environ), capture_output=True, text=True, timeout=60
    )
    if done.returncode:
        message = (done.stderr or done.stdout).strip().splitlines()
        return f"{CONTROL} -d exited with {done.returncode}: {message[-1] if message else 'no message'}"
    return None


def stop(mps_dir: Path) -> str | None:
    """Tell the daemon to quit; None when it did, else why not."""
    program = shutil.which(CONTROL)
    if program is None:
        return f"{CONTROL} is not on PATH"
    done = subprocess.run(
        [program], input="quit\n", env=daemon_env(mps_dir, os.environ), capture_output=True, text=True, timeout=60
    )
    if done.returncode:
        message = (done.stderr or done.stdout).strip().splitlines()
        return f"{CONTROL} quit exited with {done.returncode}: {message[-1] if message else 'no message'}"
    return None


@contextlib.contextmanager
def mps_slots(slots: Sequence[Slot], sweep_dir: Path, *, enabled: bool) -> Iterator[list[Slot]]:
    """`slots`, each pointed at a private MPS daemon that runs for the duration of the context, when `enabled` and
    some GPU is shared by several runs; otherwise `slots` unchanged (with one warning when MPS was asked for)."""
    slots = list(slots)
    if not enabled:
        yield slots
        return
    if not any(s.gpus and s.shared_by > 1 for s in slots):
        _warn(
            "--mps has no effect: it shares a GPU between concurrent runs, and no GPU runs more than one "
            "(set runs_per_device > 1 on GPUs)"
        )
        yield slots
        return
    mps_dir = sweep_dir / sweepdir.MPS
    why = start(mps_dir)
    if why:
        _warn(f"--mps: could not start the MPS control daemon ({why}); running without MPS (time-sliced)")
        yield slots
        return
    try:
        yield [dataclasses.replace(s, mps_dir=str(mps_dir)) if s.gpus else s for s in slots]
    finally:
        why = stop(mps_dir)
        if why:
            _warn(
                f"--mps: could not stop the MPS control daemon ({why}); stop it with "
                f"`echo quit | {PIPE_ENV}={client_env(mps_dir)[PIPE_ENV]} {CONTROL}`"
            )


def _warn(line: str) -> None:
    print(f"nlbench sweep: warning: {line}", file=sys.stderr, flush=True)
