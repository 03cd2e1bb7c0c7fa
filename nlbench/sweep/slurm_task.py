"""What one SLURM array task runs (pickled by submitit): the sweep runner on the task's runs. Requeue and resume:
see nlbench/sweep/slurm.py. A module of its own so that `nlbench sweep` imports submitit only to submit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from submitit.helpers import Checkpointable

from nlbench.sweep.spec import SweepSpec


class ArrayTask(Checkpointable):  # type: ignore[misc]
    """What one array task runs: the sweep runner on its runs, on the task's devices (pickled by submitit)."""

    def __init__(self, spec: SweepSpec, run_ids: Sequence[str]) -> None:
        self.spec = spec
        self.run_ids = list(run_ids)

    def __call__(self) -> dict[str, str]:
        from nlbench.sweep.devices import plan_slots, visible_gpus
        from nlbench.sweep.runner import run_sweep

        runs = self.spec.expand()
        todo = [run for run in runs if run.run_id in set(self.run_ids)]
        slots = plan_slots(visible_gpus(), self.spec.devices_per_run, self.spec.runs_per_device)
        try:
            rows = run_sweep(self.spec, slots=slots, runs=runs, todo=todo, progress=False)
        except KeyboardInterrupt:  # SIGTERM: the runs are stopped and their state written
            _requeue_if_running()
            raise SystemExit(-1) from None  # no result pickle: the task is not over
        return {row["run_id"]: row["status"] for row in rows if row["run_id"] in set(self.run_ids)}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        # Called by submitit on SIGUSR2 (time limit near, or preemption) before it requeues the task. The run
        # directories are the checkpoint: the resubmitted task is this same task. SLURM's requeue then sends
        # SIGTERM, which must not interrupt the clean stop that submitit's sys.exit starts.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return super().checkpoint(*args, **kwargs)


def _requeue_if_running() -> None:
    """Requeue this array task unless SLURM is already ending it (cancelled, requeued, timed out)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
        state = re.search(r"\bJobState=(\S+)", out)
        if state and state.group(1) == "RUNNING":
            subprocess.run(["scontrol", "requeue", job], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        pass
