"""Running a sweep: every run is an ``nlbench fit`` subprocess with its own run directory, on a device slot.

Idempotence and resume come from the run directories alone: a run whose result.json says finished or diverged is
skipped; any other run is (re)started, with ``--ckpt_path last`` when it holds checkpoints, so an interrupted or
failed run continues from its last epoch. The results table is rebuilt from the run directories after every
change, atomically, so killing the sweep at any moment (even ``kill -9``) loses nothing but the epochs in flight.

Child processes never outlive the sweep: they stay in the sweep's process group (Ctrl-C or ``kill -- -PGID``
reaches them directly), and on Linux each asks the kernel for SIGTERM when the sweep dies (``PR_SET_PDEATHSIG``),
which covers ``kill -9 <sweep pid>`` too; SIGTERM lets Lightning stop its DDP workers cleanly. Every child also
holds the sweep directory's lock, so a new sweep on the same directory waits until the old runs have exited
instead of writing into the same run directories.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import yaml
from tqdm import tqdm

from nlbench import run as record_
from nlbench.io import atomic_write_text
from nlbench.sweep.devices import Slot
from nlbench.sweep.results import RunState, read_state, write_results
from nlbench.sweep.spec import SweepRun, SweepSpec

DEFAULT_FIT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "nlbench", "fit")
LOG_NAME = record_.RunDir(Path()).stdout.name
LOCK_NAME = ".sweep.lock"
LOG_MARK = "[nlbench sweep]"  # prefixes the lines the sweep itself writes into a run's log
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class SweepLockedError(RuntimeError):
    """Another sweep (or runs it started) is still using the sweep directory."""


@dataclass
class _Job:
    run: SweepRun
    slot: Slot
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float = field(default_factory=time.monotonic)


class _Bar(tqdm):
    # No monitor thread: the loop refreshes the bar itself, and children are forked with a preexec hook,
    # which is only safe while the sweep process has a single thread.
    monitor_interval = 0


def run_dir_of(spec: SweepSpec, run: SweepRun) -> Path:
    return spec.output_dir / "runs" / run.run_id


def plan(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[tuple[SweepRun, RunState]]:
    """Each run with the state its directory is in now (what the next sweep would do: ``state.action``)."""
    return [(run, read_state(run_dir_of(spec, run))) for run in runs]


def fit_command_of(
    spec: SweepSpec, run: SweepRun, slot: Slot, *, resume: bool, fit_command: Sequence[str] = DEFAULT_FIT_COMMAND
) -> list[str]:
    """The full command line of one run on one slot."""
    given = {**spec.overrides, **run.params}
    command = [*fit_command, *spec.fit_args(run.params), *slot.fit_args(strategy_given="trainer.strategy" in given)]
    if "trainer.enable_progress_bar" not in given:
        # The log is a file: a per-batch progress bar would fill it with megabytes of carriage returns.
        command.append("--trainer.enable_progress_bar=false")
    command.append(f"--run_dir={run_dir_of(spec, run)}")
    if resume:
        command.append("--ckpt_path=last")
    return command


def run_sweep(
    spec: SweepSpec,
    *,
    slots: Sequence[Slot],
    runs: Sequence[SweepRun] | None = None,
    fit_command: Sequence[str] = DEFAULT_FIT_COMMAND,
    max_runs: int | None = None,
    progress: bool = True,
    poll_interval_s: float = 0.2,
    stop_timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Run every unfinished run of `spec` (at most `max_runs`), one per free slot; returns the results rows.

    Failed and diverged runs are recorded and the sweep goes on. On Ctrl-C or SIGTERM the running children get
    SIGTERM (SIGKILL after `stop_timeout_s`), the table is rebuilt and KeyboardInterrupt propagates.
    """
    if not slots:
        raise ValueError("run_sweep needs at least one device slot")
    runs = list(spec.expand() if runs is None else runs)
    (spec.output_dir / "runs").mkdir(parents=True, exist_ok=True)
    with _sweep_lock(spec.output_dir) as lock_fd, _sigterm_as_interrupt():
        atomic_write_text(spec.output_dir / "sweep.yaml", yaml.safe_dump(spec.as_dict(), sort_keys=False))
        pending = [run for run, state in plan(spec, runs) if state.action != "skip"]
        todo, skipped = pending[:max_runs], len(runs) - len(pending)
        write_results(spec, runs)
        queue: deque[SweepRun] = deque(todo)
        free: list[Slot] = list(slots)
        active: list[_Job] = []
        counts: Counter[str] = Counter()
        bar = _Bar(total=skipped + len(todo), initial=skipped, unit="run", desc=spec.name,
                   disable=None if progress else True, dynamic_ncols=True)  # fmt: skip
        try:
            while queue or active:
                while queue and free:
                    active.append(_launch(spec, queue.popleft(), free.pop(0), fit_command, lock_fd))
                    write_results(spec, runs)
                    _show(bar, counts, active)
                time.sleep(poll_interval_s)
                for job in [job for job in active if job.proc.poll() is not None]:
                    active.remove(job)
                    free.append(job.slot)
                    status = _finish(spec, job)
                    counts[status] += 1
                    bar.update(1)
                    done = f"{skipped + sum(counts.values())}/{skipped + len(todo)}"
                    bar.write(_describe_end(spec, job, status, done=done))
                    write_results(spec, runs)
                    _show(bar, counts, active)
        finally:
            _stop(active, timeout_s=stop_timeout_s)
            bar.close()
            rows = write_results(spec, runs)
        return rows


# ---- one run ------------------------------------------------------------------------------------------------------
def _launch(spec: SweepSpec, run: SweepRun, slot: Slot, fit_command: Sequence[str], lock_fd: int) -> _Job:
    run_dir = run_dir_of(spec, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(run_dir)
    # Only failed/interrupted results reach here: this attempt's outcome must not be read from the previous one.
    (run_dir / "result.json").unlink(missing_ok=True)
    command = fit_command_of(spec, run, slot, resume=state.resumable, fit_command=fit_command)
    log = open(run_dir / LOG_NAME, "ab")  # appended: the log keeps every attempt
    log.write(f"{LOG_MARK} {_now()} on {slot.label}: {shlex.join(command)}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**slot.child_env(os.environ), "PYTHONUNBUFFERED": "1"},
        pass_fds=(lock_fd,),
        preexec_fn=_die_with_parent(os.getpid()),
    )
    return _Job(run, slot, proc, log)


def _finish(spec: SweepSpec, job: _Job) -> str:
    """Close the run's log and make sure its result.json records the outcome; returns the run's status."""
    job.log.close()
    code = job.proc.returncode
    run_dir = run_dir_of(spec, job.run)
    state = read_state(run_dir)
    if state.record is not None and state.record.status != "running":
        return state.status  # the fit wrote its own outcome (an "interrupted" one stays resumable)
    # The fit died without a result (crash, config error, OOM kill) or exited 0 without one: record it as failed.
    if code < 0:  # killed by a signal (e.g. the OOM killer): its log just stops, so name the signal
        error = f"killed by {signal.Signals(-code).name}"
    elif code > 0:  # a traceback or `nlbench fit: error: ...` ends the log
        error = _last_log_line(run_dir / LOG_NAME) or f"exit code {code}"
    else:
        error = "exited 0 without writing result.json"
    record_.write_record(run_dir, _failed_record(spec, job.run, state.record, error, code))
    return "failed"


def _failed_record(
    spec: SweepSpec, run: SweepRun, running: record_.RunRecord | None, error: str, code: int
) -> record_.RunRecord:
    """The record of a run that could not write its outcome: its last "running" record (identity and metrics up
    to the last validation) when it got that far, else the identity of its fit config."""
    if running is None:
        identity = _identity_of(spec, run)
        running = record_.RunRecord(status="failed", run_name=identity.name if identity else run.run_id,
                                    group=identity.group if identity else "",
                                    hparams=identity.hparams if identity else {},
                                    config=identity.config if identity else {},
                                    differs=identity.differs if identity else [])  # fmt: skip
    running.status, running.error, running.exit_code, running.written_by = "failed", error, code, "nlbench sweep"
    return running


def _identity_of(spec: SweepSpec, run: SweepRun) -> record_.RunIdentity | None:
    """The identity the fit would have recorded (same names, same hparams), or None when its config does not parse."""
    try:
        from nlbench.cli import ConfigError, parse_fit_args
    except ImportError:
        return None
    try:
        args = spec.fit_args(run.params)
        return record_.identity_from_config(parse_fit_args(args), record_.command_line_keys(args))
    except (ConfigError, ValueError, TypeError, FileNotFoundError):
        return None


def _last_log_line(path: Path, tail_bytes: int = 16384) -> str | None:
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
        lines = f.read().decode(errors="replace").splitlines()
    return next((ln.strip() for ln in reversed(lines) if ln.strip() and not ln.startswith(LOG_MARK)), None)


def _stop(jobs: Sequence[_Job], *, timeout_s: float) -> None:
    """SIGTERM the children still running, SIGKILL whatever is left after `timeout_s`, close their logs."""
    for job in jobs:
        if job.proc.poll() is None:
            job.proc.terminate()
    deadline = time.monotonic() + timeout_s
    for job in jobs:
        try:
            job.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.proc.kill()
            job.proc.wait()
        job.log.close()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child when the sweep dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the hook must not do much

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the sweep died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


# ---- sweep-level helpers ------------------------------------------------------------------------------------------
@contextmanager
def _sweep_lock(sweep_dir: Path, timeout_s: float = 15.0) -> Iterator[int]:
    """An exclusive flock on the sweep directory, shared with the children (released when all have exited)."""
    fd = os.open(sweep_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SweepLockedError(
                        f"{sweep_dir} is in use by another `nlbench sweep` or runs it started; "
                        "wait for them to finish, or stop them"
                    ) from None
                time.sleep(0.2)
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (e.g. a scheduler stopping the job) into KeyboardInterrupt so children are stopped cleanly."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signal handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show(bar: tqdm, counts: Counter[str], active: Sequence[_Job]) -> None:
    bar.set_postfix_str(
        f"running {len(active)}, finished {counts['finished']}, diverged {counts['diverged']}, "
        f"failed {counts['failed']}"
    )


def _describe_end(spec: SweepSpec, job: _Job, status: str, *, done: str) -> str:
    record = read_state(run_dir_of(spec, job.run)).record
    metrics = record.metrics if record else {}
    seconds = time.monotonic() - job.started
    if status == "failed":
        detail = f"error: {record.error if record else None}"
    elif metrics.get(record_.BEST_ACC1) is not None:
        detail = f"best val acc1 {metrics[record_.BEST_ACC1]:.4f} after {metrics.get('epochs')} epochs"
    else:
        detail = f"{metrics.get('epochs')} epochs"
    return f"[{done}] {status:<11} {job.run.run_id} ({format_duration(seconds)}, {job.slot.label}) {detail}"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
