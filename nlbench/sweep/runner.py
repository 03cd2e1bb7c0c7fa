"""Running a sweep: every run is an ``nlbench fit`` subprocess with its own run directory, on a device slot.

Idempotence and resume come from the run directories alone: a run whose result.json says finished or diverged is
skipped; any other run is (re)started, with ``--ckpt_path last`` when it holds checkpoints, so an interrupted or
failed run continues from its last epoch. The results table is rebuilt from the run directories after every
change, atomically, so killing the sweep at any moment (even ``kill -9``) loses nothing but the epochs in flight.

Child processes never outlive the sweep: they stay in the sweep's process group (Ctrl-C or ``kill -- -PGID``
reaches them directly), and on Linux each asks the kernel for SIGTERM when the sweep dies (``PR_SET_PDEATHSIG``),
which covers ``kill -9 <sweep pid>`` too; SIGTERM lets Lightning stop its DDP workers cleanly.

Ownership is per run, so any number of sweep processes (on one machine, or SLURM array tasks on several sharing
the directory) work on one sweep directory: a process claims a run by holding ``<sweep_dir>/claims/<run_id>.lock``
(an flock, :mod:`nlbench.runlock`) before starting it, and passes the lock to the child fit, so the claim lasts
until the last process working on the run has exited (kill -9 included: the kernel drops it). A run claimed by a
live process is never started twice; a dead owner's run is free and resumed by the next process that looks. The
claim is a separate file, not the run directory's own ``.lock``, because the child ``nlbench fit`` takes that one
for itself (a second holder would make it refuse its own run directory).
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from nlbench import launch, out_of_memory, runlock, schema, sweepdir
from nlbench.io import UnsafeFileError, open_append, open_file
from nlbench.limits import printable, shorten, terminal
from nlbench.record import RunDir, RunIdentity, RunRecord, Unreadable, identity_from_config, write_record
from nlbench.sweep.devices import Slot
from nlbench.sweep.spec import SweepRun, SweepSpec
from nlbench.sweep.table import RunState, read_state, write_results


def _fit_command() -> tuple[str, ...]:
    """How a run starts: ``nlbench fit`` in this interpreter, never importing from the current folder (a clone named
    nlbench/ there, or any module beside a received sweep, would shadow the installed package): ``python -P`` where
    Python has it (3.11+; the children also get PYTHONSAFEPATH=1, which Lightning's DDP workers inherit), else the
    installed ``nlbench`` command next to the interpreter (its import path starts at its own folder)."""
    if sys.version_info >= (3, 11):
        return (sys.executable, "-P", "-m", "nlbench", "fit")
    script = Path(sys.executable).with_name("nlbench")
    return (str(script), "fit") if script.is_file() else (sys.executable, "-m", "nlbench", "fit")


DEFAULT_FIT_COMMAND: tuple[str, ...] = _fit_command()
LOG_NAME = RunDir(Path()).stdout.name
LOG_MARK = "[nlbench sweep]"  # prefixes the lines the sweep itself writes into a run's log
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# How long a claim waits out a reader's shared-lock probe (runlock.owner holds one for microseconds) before it
# counts the run as another process's.
_PROBE_S = 0.2


class SweepDirError(RuntimeError):
    """The output directory belongs to another sweep (or is not a sweep directory); one line naming it."""


@dataclass
class _Job:
    run: SweepRun
    slot: Slot
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    claim: runlock.RunLock
    started: float = field(default_factory=time.monotonic)
    held: list[Slot] = field(default_factory=list)  # the slots it occupies (a retry alone: its group's every slot)


class _Bar(tqdm):
    # No monitor thread: the loop refreshes the bar itself, and children are forked with a preexec hook,
    # which is only safe while the sweep process has a single thread.
    monitor_interval = 0


def run_dir_of(spec: SweepSpec, run: SweepRun) -> Path:
    return sweepdir.run_dir(spec.output_dir, run.run_id)


def claim_path(spec: SweepSpec, run: SweepRun) -> Path:
    return runlock.claim_path(run_dir_of(spec, run))


def run_owner(spec: SweepSpec, run: SweepRun) -> runlock.Owner | None:
    """The live process working on a run: the sweep process that claimed it, else a fit holding its run directory
    (e.g. one started by hand), else None."""
    return runlock.owner(run_dir_of(spec, run), path=claim_path(spec, run)) or runlock.owner(run_dir_of(spec, run))


def check_sweep_dir(spec: SweepSpec) -> None:
    """Refuse (SweepDirError, one line) an output directory this spec must not write into: one that holds another
    sweep (its sweep.yaml records another identity: name, base configs and their content, fixed overrides), one that
    is not a sweep directory at all, or one holding a symbolic link or a special file where nlbench writes (its
    files, ``claims/``, ``runs/``, a run directory or the files in it: :meth:`nlbench.record.RunDir.check_files`), so
    that nothing is ever written through a link. Reads only."""
    out = spec.output_dir
    _check_entries(out)
    stored_path = out / sweepdir.SPEC
    if os.path.lexists(stored_path):
        try:
            stored = sweepdir.read_spec(out)
        except Unreadable as err:
            raise SweepDirError(f"{err}; not writing into this directory") from err
        theirs = sweepdir.stored_identity(stored)
        if theirs != spec.identity:
            if (
                theirs is not None
                and theirs["base_digest"] is None
                and {**theirs, "base_digest": spec.base_digest} == spec.identity
            ):
                raise SweepDirError(
                    f"{stored_path} was written by an earlier nlbench and records no base_digest (its base configs' "
                    f"content); if its base configs are the ones {spec.label} names, unchanged, add the line "
                    f"'base_digest: {spec.base_digest}' to it; else choose another --output_dir (or output_dir:)"
                )
            diff = ", ".join(k for k in spec.identity if (theirs or {}).get(k) != spec.identity[k]) or "format"
            diff = diff.replace("base_digest", "base config content")
            raise SweepDirError(
                f"{out} holds another sweep ({stored_path} differs in {diff}: "
                f"{printable(shorten(repr((theirs or {}).get('name')), 80))} vs {spec.name!r}); choose another "
                "--output_dir (or output_dir:)"
            )
    elif out.is_dir() and any(p.name not in sweepdir.ENTRIES and not p.name.startswith(".") for p in out.iterdir()):
        raise SweepDirError(f"{out} exists and is not a sweep directory (no sweep.yaml); choose another --output_dir")


def _check_entries(out: Path) -> None:
    """No symbolic link or special file among the sweep directory's entries, in claims/ and runs/, in any run
    directory (SweepDirError naming the first). slurm/jobs.txt is appended to without following a link."""
    if not out.is_dir():
        return
    for name, is_folder in sweepdir.ENTRIES.items():
        path = out / name
        if os.path.islink(path):
            raise SweepDirError(
                f"{path}: a symbolic link in the sweep directory; nlbench does not write through links "
                "(replace it with the file or folder itself, or choose another --output_dir)"
            )
        if os.path.lexists(path) and not (path.is_dir() if is_folder else path.is_file()):
            raise SweepDirError(
                f"{path}: not a {'folder' if is_folder else 'regular file'}; remove it, or choose another --output_dir"
            )
    for folder in (out / sweepdir.CLAIMS, out / sweepdir.RUNS):  # slurm/ is submitit's (it links its files there)
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                    what = "a symbolic link" if entry.is_symlink() else "not a regular file or folder"
                    raise SweepDirError(
                        f"{entry.path}: {what} in the sweep directory; nlbench does not write through "
                        "links or into special files (remove it, or choose another --output_dir)"
                    )
                if folder.name == sweepdir.RUNS and entry.is_dir():
                    try:
                        RunDir(Path(entry.path)).check_files()
                    except UnsafeFileError as err:
                        raise SweepDirError(str(err)) from None


def prepare_sweep_dir(spec: SweepSpec) -> None:
    """:func:`check_sweep_dir`, then record the spec as run in sweep.yaml. Nothing is written when refused."""
    check_sweep_dir(spec)
    sweepdir.write_spec(spec.output_dir, spec.as_dict())


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
    todo: Sequence[SweepRun] | None = None,
    fit_command: Sequence[str] = DEFAULT_FIT_COMMAND,
    max_runs: int | None = None,
    progress: bool = True,
    poll_interval_s: float = 0.2,
    stop_timeout_s: float = 30.0,
    rescan_s: float = 2.0,
) -> list[dict[str, Any]]:
    """Run every unfinished run of `todo` (default: all `runs` of the spec) that no other process has claimed, at
    most `max_runs` of them, one per free slot; returns the results rows of all `runs`.

    Runs claimed by another live process are left to it; while this process still has runs in flight it looks
    again every `rescan_s` for runs whose owner died. Failed and diverged runs are recorded and the sweep goes on;
    a packed GPU run that ran out of memory (:mod:`nlbench.out_of_memory`) is retried once alone on its GPU group,
    which takes no new run until every run on it has ended.
    On Ctrl-C or SIGTERM the running children get SIGTERM (SIGKILL after `stop_timeout_s`), the table is rebuilt
    and KeyboardInterrupt propagates.
    """
    if not slots:
        raise ValueError("run_sweep needs at least one device slot")
    runs = list(spec.expand() if runs is None else runs)
    todo = list(runs if todo is None else todo)
    prepare_sweep_dir(spec)
    with _sigterm_as_interrupt():
        pending = [run for run, state in plan(spec, todo) if state.action != "skip"]
        skipped = len(todo) - len(pending)
        limit = len(pending) if max_runs is None else min(max_runs, len(pending))
        write_results(spec, runs)
        free: list[Slot] = list(slots)
        active: list[_Job] = []
        counts: Counter[str] = Counter()
        started, next_scan = 0, 0.0
        # Packed runs that ran out of memory, each waiting for every slot of its GPU group to retry once alone there.
        alone: list[tuple[SweepRun, Slot]] = []
        retried: set[str] = set()
        bar = _Bar(
            total=skipped + limit,
            initial=skipped,
            unit="run",
            desc=spec.name,
            disable=None if progress else True,
            dynamic_ncols=True,
        )
        try:
            while True:
                for run, slot in list(alone):
                    group = [s for s in free if s.gpus == slot.gpus]
                    if len(group) == _group_size(slots, slot):  # the whole group is free: the retry takes all of it
                        alone.remove((run, slot))
                        job = _claim_and_launch(spec, [run], _alone(slot), fit_command)
                        if job is None:  # another process took the run meanwhile: its outcome is theirs
                            counts["failed"] += 1
                            bar.update(1)
                            continue
                        job.held = group
                        free = [s for s in free if s not in group]
                        active.append(job)
                reserved = {slot.gpus for _, slot in alone}  # no new run there while a retry waits for the group
                while pending and started < limit and time.monotonic() >= next_scan:
                    open_slots = [s for s in free if s.gpus not in reserved]
                    if not open_slots:
                        break
                    job = _claim_and_launch(spec, pending, open_slots[0], fit_command)
                    if job is None:  # everything left is someone else's: look again later
                        next_scan = time.monotonic() + rescan_s
                        break
                    free.remove(open_slots[0])
                    active.append(job)
                    started += 1
                    write_results(spec, runs)
                    _show(bar, counts, active)
                if not active and not alone:
                    break
                time.sleep(poll_interval_s)
                for job in [job for job in active if job.proc.poll() is not None]:
                    active.remove(job)
                    free.extend(job.held or [job.slot])
                    try:
                        status = _finish(spec, job)
                    finally:
                        job.claim.release()
                    # Retried only where this process holds every slot of the group (so it can empty it).
                    if (
                        status == "failed"
                        and job.slot.gpus
                        and job.slot.shared_by > 1
                        and _group_size(slots, job.slot) == job.slot.shared_by
                        and job.run.run_id not in retried
                        and _ran_out_of_memory(spec, job.run)
                    ):
                        retried.add(job.run.run_id)
                        alone.append((job.run, job.slot))
                        bar.write(
                            f"{LOG_MARK} {job.run.run_id} ran out of memory with {job.slot.shared_by} runs on "
                            f"{job.slot.label}: retrying it once alone on gpu {','.join(job.slot.gpus)}"
                        )
                        write_results(spec, runs)
                        continue
                    counts[status] += 1
                    bar.update(1)
                    done = f"{skipped + sum(counts.values())}/{skipped + limit}"
                    bar.write(_describe_end(spec, job, status, done=done))
                    write_results(spec, runs)
                    _show(bar, counts, active)
        finally:
            _stop(active, timeout_s=stop_timeout_s)
            for job in active:
                job.claim.release()
            bar.close()
            rows = write_results(spec, runs)
        return rows


def _claim_and_launch(spec: SweepSpec, pending: list[SweepRun], slot: Slot, fit_command: Sequence[str]) -> _Job | None:
    """Claim the first pending run nobody else holds and start it; drops runs found final on the way."""
    for run in list(pending):
        claim = runlock.RunLock(run_dir_of(spec, run), path=claim_path(spec, run), command=_claim_command())
        try:
            claim.acquire(timeout_s=_PROBE_S)
        except runlock.RunLockedError:
            continue
        if runlock.is_alive(run_dir_of(spec, run)):  # a fit started by hand works there: not ours to start
            claim.release()
            continue
        # Re-read under the claim: another process may have finished the run since this one planned it.
        if read_state(run_dir_of(spec, run)).action == "skip":
            claim.release()
            pending.remove(run)
            continue
        pending.remove(run)
        try:
            return _launch(spec, run, slot, fit_command, claim)
        except BaseException:
            claim.release()
            raise
    return None


def _alone(slot: Slot) -> Slot:
    """The slot of a run retried alone on `slot`'s GPUs: no memory cap (its thread share stays: other groups run)."""
    return dataclasses.replace(slot, shared_by=1, index=0)


def _group_size(slots: Sequence[Slot], slot: Slot) -> int:
    """How many of `slots` share `slot`'s GPUs."""
    return sum(s.gpus == slot.gpus for s in slots)


def _ran_out_of_memory(spec: SweepSpec, run: SweepRun) -> bool:
    record = read_state(run_dir_of(spec, run)).record
    return record is not None and out_of_memory.is_out_of_memory(record.error)


def _claim_command() -> str:
    """What the claim lock says about its owner: the sweep, and the SLURM job (array task) it runs in."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job and "SLURM_ARRAY_TASK_ID" in os.environ else None
    job = job or os.environ.get("SLURM_JOB_ID")
    return f"nlbench sweep (SLURM job {job})" if job else "nlbench sweep"


# ---- one run ------------------------------------------------------------------------------------------------------
def _launch(spec: SweepSpec, run: SweepRun, slot: Slot, fit_command: Sequence[str], claim: runlock.RunLock) -> _Job:
    run_dir = run_dir_of(spec, run)
    try:  # checked again under the claim: a link put there since check_sweep_dir is not written through either
        RunDir(run_dir).check_files()
    except UnsafeFileError as err:
        raise SweepDirError(str(err)) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(run_dir)
    log = open_append(run_dir / LOG_NAME)  # appended: the log keeps every attempt; never through a link
    if state.error is not None:  # an unreadable result.json is kept for a person to look at, never run over
        aside = _move_aside(RunDir(run_dir).result)
        log.write(f"{LOG_MARK} {_now()} {state.error}; moved to {aside.name}\n".encode())
    # Only failed/interrupted results reach here: this attempt's outcome must not be read from the previous one.
    RunDir(run_dir).result.unlink(missing_ok=True)
    command = fit_command_of(spec, run, slot, resume=state.resumable, fit_command=fit_command)
    log.write(f"{LOG_MARK} {_now()} on {slot.label}: {shlex.join(command)}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**slot.child_env(child_environ()), "PYTHONUNBUFFERED": "1"},
        pass_fds=(claim.fd,) if claim.fd is not None else (),  # the claim lasts as long as the fit, too
        preexec_fn=_die_with_parent(os.getpid()),
    )
    return _Job(run, slot, proc, log, claim)


# Lightning warns in every process that finds `srun` on the PATH without SLURM task variables, i.e. in every fit a
# sweep starts on a SLURM node or login node; the sweep launches its fits itself, on purpose.
_SRUN_WARNING = "ignore:The `srun` command is available on your system but is not used"


def child_environ() -> dict[str, str]:
    """The environment a run starts in (before its slot's variables): this one without SLURM's task variables
    (:func:`nlbench.launch.child_env`: a sweep's fit is a plain local process, and requeueing is the array task's,
    nlbench.sweep.slurm, done once, not by every fit), and with PYTHONSAFEPATH=1, so neither the fit nor the DDP
    workers Lightning starts with ``python -m nlbench`` import from the current folder (see DEFAULT_FIT_COMMAND)."""
    env = launch.child_env(os.environ)
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), _SRUN_WARNING]))
    env["PYTHONSAFEPATH"] = "1"
    return env


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.unreadable`` (``-2``, ``-3``, ... when taken); returns the new path."""
    for n in itertools.count(1):
        aside = path.with_name(f"{path.name}.unreadable" + (f"-{n}" if n > 1 else ""))
        if not os.path.lexists(aside):
            os.rename(path, aside)
            return aside
    raise AssertionError("unreachable")


def _finish(spec: SweepSpec, job: _Job) -> str:
    """Close the run's log and make sure its result.json records the outcome; returns the run's status."""
    job.log.close()
    code = job.proc.returncode
    run_dir = run_dir_of(spec, job.run)
    state = read_state(run_dir)
    if state.record is not None and state.record.status != "running":
        # The fit wrote its own outcome (an "interrupted" one stays resumable). The record's word, not
        # state.status: this process still holds the run's claim, which resolve_status would read as "running".
        return state.record.status
    if runlock.is_alive(run_dir):
        # Another fit (started by hand in the moment between the claim and the child's start) holds the run
        # directory; the child was refused. Its record is that fit's to write.
        return "running"
    # The fit died without a result (crash, config error, OOM kill) or exited 0 without one: record it as failed.
    if code < 0:  # killed by a signal (e.g. the OOM killer): its log just stops, so name the signal
        error = f"killed by {signal.Signals(-code).name}"
    elif code > 0:  # a traceback or `nlbench fit: error: ...` ends the log
        error = _last_log_line(run_dir / LOG_NAME) or f"exit code {code}"
    else:
        error = "exited 0 without writing result.json"
    write_record(run_dir, _failed_record(spec, job.run, state.record, error, code))
    return "failed"


def _failed_record(spec: SweepSpec, run: SweepRun, running: RunRecord | None, error: str, code: int) -> RunRecord:
    """The record of a run that could not write its outcome: its last "running" record (identity and metrics up
    to the last validation) when it got that far, else the identity of its fit config."""
    if running is None:
        identity = _identity_of(spec, run)
        running = RunRecord(
            status="failed",
            run_name=identity.name if identity else run.run_id,
            group=identity.group if identity else "",
            hparams=identity.hparams if identity else {},
            config=identity.config if identity else {},
            differs=identity.differs if identity else [],
            method=identity.method if identity else {},
        )
    running.status, running.error, running.exit_code, running.written_by = "failed", error, code, "nlbench sweep"
    return running


def _identity_of(spec: SweepSpec, run: SweepRun) -> RunIdentity | None:
    """The identity the fit would have recorded (same names, same hparams), or None when its config does not parse."""
    try:
        from nlbench.lightning_cli import ConfigError, parse_fit_args
    except ImportError:
        return None
    try:
        args = spec.fit_args(run.params)
        return identity_from_config(parse_fit_args(args), schema.command_line_keys(args))
    except (ConfigError, ValueError, TypeError, FileNotFoundError):
        return None


def _last_log_line(path: Path, tail_bytes: int = 16384) -> str | None:
    """The log's last line that the fit wrote (not a link, not a FIFO: None then), printable on a terminal."""
    try:
        f = os.fdopen(open_file(path), "rb")
    except (OSError, UnsafeFileError):
        return None
    with f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
        lines = f.read().decode(errors="replace").splitlines()
    line = next((ln.strip() for ln in reversed(lines) if ln.strip() and not ln.startswith(LOG_MARK)), None)
    return None if line is None else printable(line)


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
        # SLURM signals every process of the task (--signal=USR2@90 before the time limit): the array task decides
        # what happens (nlbench.sweep.slurm) and stops the fit with SIGTERM; the default action would kill it.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the sweep died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return hook if sys.platform.startswith("linux") else None


# ---- sweep-level helpers ------------------------------------------------------------------------------------------
@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (e.g. a scheduler stopping the job) into KeyboardInterrupt so children are stopped cleanly."""

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already: a second SIGTERM must not cut it short
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
    elif metrics.get(schema.BEST_ACC1) is not None:
        detail = f"best val acc1 {metrics[schema.BEST_ACC1]:.4f} after {metrics.get('epochs')} epochs"
    else:
        detail = f"{metrics.get('epochs')} epochs"
    return terminal(f"[{done}] {status:<11} {job.run.run_id} ({format_duration(seconds)}, {job.slot.label}) {detail}")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
