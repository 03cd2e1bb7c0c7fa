"""``nlbench sweep --launcher slurm``: the pending runs of a sweep as one SLURM job array, through submitit.

One array task per pending run, or, when tasks get GPUs (``gpus_per_task``, or a ``gres`` such as ``gpu:a100:4``),
per pack of gpus / devices_per_run x runs_per_device runs: what the task's GPUs hold at once. Each task is the same
sweep runner as on one machine (:func:`nlbench.sweep.runner.run_sweep`) restricted to its runs, so ownership
(claims), resume and the results table work exactly as locally, and any number of tasks share the directory.
submitit writes its scripts and logs under ``<sweep_dir>/slurm/``.

Requeue and resume: submitit's checkpointing, not Lightning's SLURM auto-requeue. The array task's process is
submitit's, and the fit is its child: with ``--signal=USR2@90`` (submitit's) SLURM warns the task before its time limit
or on preemption, submitit calls ``ArrayTask.checkpoint`` (nlbench/sweep/slurm_task.py) and requeues the task (counting
timeouts), and the requeued task resumes the run from its last checkpoint with nlbench's exact resume (``--ckpt_path
last``: model, optimizer, scheduler, RNG states and loader position), so it ends where an uninterrupted run would: bit
for bit on the CPU; on a GPU with ``trainer.deterministic: true`` (and ``trainer.benchmark: false``), else within the
kernels' nondeterminism (cuDNN's autotuned and atomic-add convolution and attention backward kernels differ from run to
run whether or not it was interrupted). Lightning's SLURMEnvironment is kept out of the child (runner.child_environ), so
no second handler requeues the job, and the child ignores USR1/USR2; it is stopped with SIGTERM by the task. A task that
gets SIGTERM while still RUNNING (``scancel --signal=TERM``, a preemption that does not requeue) requeues itself the
same way; a cancelled job (``scancel JOB``) stays cancelled.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from nlbench import limits, sweepdir
from nlbench.error_lines import os_error_line
from nlbench.io import open_append, read_bounded
from nlbench.limits import printable
from nlbench.sweep.datacheck import DataNeed, check_data, fetch_data
from nlbench.sweep.devices import plan_slots
from nlbench.sweep.launcher import LaunchError, counts_line
from nlbench.sweep.runner import SweepDirError, fit_command_of, plan, prepare_sweep_dir, run_owner
from nlbench.sweep.sbatch import check_options
from nlbench.sweep.spec import SweepRun, SweepSpec, SweepSpecError

# The options a user sets, on the command line (--slurm.KEY) or in the spec's `slurm:` section: key -> (type, help).
SLURM_OPTIONS: dict[str, tuple[type, str]] = {
    "partition": (str, "SLURM partition"),
    "time": (str, "time limit per array task (minutes, HH:MM:SS, D-HH:MM:SS); required"),
    "gpus_per_task": (int, "GPUs per array task"),
    "gres": (str, "generic resources per task, e.g. gpu:a100:2 (sbatch --gres)"),
    "cpus_per_task": (int, "CPUs per array task"),
    "mem": (str, "memory per array task, e.g. 32G (default: 8G per run the task holds)"),
    "array_parallelism": (int, "at most this many tasks at once"),
    "account": (str, "account to charge"),
    "qos": (str, "quality of service"),
    "additional": (dict, "any other sbatch options as a mapping, e.g. '{constraint: a100, mail-type: END}'"),
}
SLURM_KEYS = tuple(SLURM_OPTIONS)

DEFAULT_MEM_PER_RUN_GB = 8  # a CIFAR or Tiny-ImageNet run's uint8 cache, model and workers, with room to spare
JOBS_FILE = "jobs.txt"  # <sweep_dir>/slurm/jobs.txt: which task each submitted run went to
_TIME_RE = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)")
_GRES_GPUS = re.compile(r"gpu(?::[^:,]+)?:(\d+)")  # gpu:N or gpu:TYPE:N, one item of a comma-separated --gres


def parse_time(value: Any, where: str = "--slurm.time") -> int:
    """SLURM time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) -> whole minutes, rounded up (what submitit takes)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    bad = ValueError(f"{where}: {value!r} is not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS)")
    text = str(value).strip()
    if isinstance(value, bool) or not _TIME_RE.fullmatch(text):
        raise bad
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:  # MM, MM:SS, HH:MM:SS
        hours, minutes, seconds = ([0, 0] + parts)[-3:] if len(parts) == 3 else (0, parts[0], (parts + [0])[1])
    total = (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)
    if total < 1:
        raise ValueError(f"{where}: {value!r} is shorter than a minute")
    return total


def slurm_options(spec: SweepSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's `slurm:` section, overridden by the command line's --slurm.* values that are set; checked."""
    unknown = sorted(map(repr, set(spec.slurm) - set(SLURM_KEYS)))  # repr: a received key may hold a newline
    if unknown:
        raise SweepSpecError(
            f"{spec.label}: unknown slurm key(s) {', '.join(unknown)}; allowed: {', '.join(SLURM_KEYS)}"
        )
    options = {**spec.slurm, **{k: v for k, v in given.items() if v is not None}}
    where = {k: (f"--slurm.{k}" if given.get(k) is not None else f"{spec.label}: slurm.{k}") for k in options}
    if "time" not in options:
        raise ValueError(
            "--slurm.time is required (or slurm: time: in the spec), e.g. 12:00:00: submitit's default "
            "of 5 minutes would stop every run at once"
        )
    options["time"] = parse_time(options["time"], where["time"])
    for key in (key for key, (kind, _) in SLURM_OPTIONS.items() if kind is int):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where[key]}: must be a positive integer, got {value!r}")
    options["additional"] = options.get("additional") or {}
    # Every key and value reaches sbatch as the one option it names (nlbench.sweep.sbatch), or is refused.
    options = check_options(options, lambda key: where.get(key, f"--slurm.{key}"))
    for key in (key for key, (kind, _) in SLURM_OPTIONS.items() if kind is str and key != "time"):  # time: minutes
        if options.get(key) is not None:
            options[key] = str(options[key])
    runs = runs_per_task(spec, options, where)  # a task's GPUs must split into the spec's runs
    if options.get("mem") is None:
        # A cluster's own default may be a few hundred MB, or the whole node: ask for each run the task holds.
        options["mem"] = f"{DEFAULT_MEM_PER_RUN_GB * runs}G"
    return options


def task_gpus(options: Mapping[str, Any], where: Mapping[str, str] | None = None) -> int:
    """GPUs each array task gets: ``gpus_per_task``, else the GPU count of ``gres`` (``gpu:N``, ``gpu:TYPE:N``),
    else 0. Both set must agree (one would otherwise be silently ignored)."""
    where = where or {}
    gres = options.get("gres")
    from_gres = None
    if gres is not None:
        items = [item.strip() for item in str(gres).split(",")]
        counts = [int(m.group(1)) for item in items if (m := _GRES_GPUS.fullmatch(item))]
        if any(item.startswith("gpu") for item in items) and not counts:
            raise ValueError(
                f"{where.get('gres', '--slurm.gres')}: {gres!r} names GPUs without a count; "
                "expected gpu:N or gpu:TYPE:N, e.g. gpu:a100:2"
            )
        from_gres = sum(counts) if counts else None
    gpus = options.get("gpus_per_task")
    if gpus is not None and from_gres is not None and gpus != from_gres:
        raise ValueError(
            f"{where.get('gres', '--slurm.gres')}={gres!r} gives {from_gres} GPU(s) per task but "
            f"{where.get('gpus_per_task', '--slurm.gpus_per_task')} is {gpus}; set one of them"
        )
    return gpus if gpus is not None else from_gres or 0


def runs_per_task(spec: SweepSpec, options: Mapping[str, Any], where: Mapping[str, str] | None = None) -> int:
    """Runs one array task holds at once: its GPUs / devices_per_run x runs_per_device (what the task's own
    `plan_slots` makes of the GPUs SLURM gives it), or 1 on a task without GPUs."""
    gpus = task_gpus(options, where)
    if not gpus:
        return 1
    label = (where or {}).get("gpus_per_task") or (where or {}).get("gres") or "--slurm.gpus_per_task"
    groups, idle = divmod(gpus, spec.devices_per_run)
    if not groups or idle:
        raise ValueError(
            f"{label}: {gpus} GPU(s) per task do not split into runs of devices_per_run="
            f"{spec.devices_per_run} ({idle or gpus} would sit idle); give a multiple of it"
        )
    return groups * spec.runs_per_device


def task_runs(spec: SweepSpec, pending: Sequence[SweepRun], options: Mapping[str, Any]) -> list[list[str]]:
    """The run ids of each array task: as many as run at once on its GPUs (:func:`runs_per_task`), one on a CPU task."""
    size = runs_per_task(spec, options)
    return [[run.run_id for run in pending[i : i + size]] for i in range(0, len(pending), size)]


def executor_parameters(spec: SweepSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """submitit SlurmExecutor.update_parameters() keywords for the options."""
    params: dict[str, Any] = {
        "job_name": f"nlbench-{spec.name}",
        "time": options["time"],
        "stderr_to_stdout": True,  # one log per task, next to its runs' own stdout.log
        "additional_parameters": dict(options.get("additional") or {}),
        # The task unpickles nlbench's code in the folder the sweep was submitted from: never from a folder named
        # nlbench/ there (Python >= 3.11; the fits it starts get the same, nlbench.sweep.runner.child_environ).
        "setup": ["export PYTHONSAFEPATH=1"],
    }
    for key in ("partition", "gpus_per_task", "gres", "cpus_per_task", "mem", "account", "qos", "array_parallelism"):
        if options.get(key) is not None:
            params[key] = options[key]
    return params


def sbatch_script(spec: SweepSpec, tasks: int, options: Mapping[str, Any]) -> str:
    """The sbatch script submitit would submit for `tasks` array tasks (for --dry-run; needs no SLURM)."""
    # submitit has no public renderer; this is the function its SlurmExecutor calls (`_make_submission_file_text`),
    # with the same arguments. tests/test_sweep_slurm.py checks it against the script a real submission wrote.
    from submitit.slurm.slurm import _make_sbatch_string

    python = " ".join([_quote(sys.executable), "-u -m submitit.core._submit", _quote(str(log_folder(spec)))])
    return _make_sbatch_string(
        command=python, folder=log_folder(spec), map_count=tasks, **executor_parameters(spec, options)
    )


def log_folder(spec: SweepSpec) -> Path:
    return spec.output_dir / sweepdir.SLURM / "%j"


def submit(spec: SweepSpec, pending: Sequence[SweepRun], options: Mapping[str, Any]) -> str:
    """Submit the pending runs as one job array; returns the job id. Records it in <sweep_dir>/slurm/jobs.txt."""
    import submitit

    from nlbench.sweep.slurm_task import ArrayTask

    tasks = task_runs(spec, pending, options)
    executor = submitit.SlurmExecutor(folder=log_folder(spec))
    executor.update_parameters(**executor_parameters(spec, options))
    with executor.batch():
        jobs = [executor.submit(ArrayTask(spec, ids)) for ids in tasks]
    # One line per task: its SLURM id (JOB_INDEX in an array; submitit submits a single task as a plain job).
    with open_append(spec.output_dir / sweepdir.SLURM / JOBS_FILE) as f:  # never through a received link
        f.writelines(f"{job.job_id} {','.join(ids)}\n".encode() for job, ids in zip(jobs, tasks))
    return str(jobs[0].job_id).split("_")[0]


def submitted_jobs(spec: SweepSpec) -> dict[str, str]:
    """run id -> the SLURM task (``JOB_INDEX``, or ``JOB``) it was last submitted in."""
    path = spec.output_dir / sweepdir.SLURM / JOBS_FILE
    where: dict[str, str] = {}
    try:  # bounded, never through a link or blocking on a FIFO: a received sweep directory's file
        text = read_bounded(path, limits.MAX_JOBS_BYTES, what=JOBS_FILE).decode(errors="replace")
    except (OSError, ValueError):
        return where
    for line in text.splitlines():
        task, _, ids = line.partition(" ")
        where.update(dict.fromkeys(ids.split(","), printable(task)))
    return where


def queued(job_ids: Sequence[str]) -> dict[str, str]:
    """Job array task -> its SLURM state (PENDING, RUNNING, ...) for the tasks squeue still knows; {} without SLURM."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(set(job_ids)))],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split(None, 1) for line in out.splitlines() if len(line.split(None, 1)) == 2)


class SlurmLauncher:
    """``--launcher slurm``: the runs neither done nor running, as one SLURM job array (see the module doc)."""

    name = "slurm"

    def add_arguments(self, parser: ArgumentParser) -> None:
        for key, (kind, text) in SLURM_OPTIONS.items():
            parser.add_argument(
                f"--slurm.{key}", type=kind | None, default=None, help=f"{text} (default: the spec's slurm: {key})"
            )

    def given(self, args: Namespace) -> dict[str, Any]:
        section = getattr(args, "slurm", None)
        return {key: getattr(section, key) for key in SLURM_KEYS if section and getattr(section, key) is not None}

    def options(self, spec: SweepSpec, given: Mapping[str, Any]) -> dict[str, Any]:
        return slurm_options(spec, given)

    def launch(
        self,
        spec: SweepSpec,
        runs: Sequence[SweepRun],
        todo: Sequence[SweepRun],
        options: Mapping[str, Any],
        needs: Sequence[DataNeed],
        *,
        dry_run: bool,
    ) -> None:
        pending = [run for run, state in plan(spec, todo) if state.action != "skip" and run_owner(spec, run) is None]
        tasks = task_runs(spec, pending, options)
        if dry_run:
            print(
                f"sweep {spec.name}: {counts_line(spec, runs)}; would submit {len(pending)} run(s) as "
                f"{len(tasks)} array task(s), logs under {spec.output_dir / sweepdir.SLURM}; each task asks for "
                f"{options['mem']} of memory (--slurm.mem)"
            )
            # e.g. devices_per_run above --slurm.gpus_per_task (every task would fail): ValueError
            commands = task_commands(spec, pending, tasks[:20], options)
            for i, (ids, lines) in enumerate(zip(tasks, commands)):
                print(f"  task {i}: {', '.join(ids)}")
                for line in lines:
                    print(f"    {line}")
            if len(tasks) > 20:
                print(f"  ... {len(tasks) - 20} more task(s)")
            print(sbatch_script(spec, max(1, len(tasks)), options))
            return
        if not pending:
            print(f"sweep {spec.name}: nothing to submit ({counts_line(spec, runs)}; running ones are not resubmitted)")
            return
        try:
            check_data(needs)
            fetch_data(needs)  # here, on the login node: compute nodes often have no internet
            prepare_sweep_dir(spec)
            job = submit(spec, pending, options)
        except (SweepDirError, FileNotFoundError, ValueError):
            raise
        except OSError as err:
            raise LaunchError(os_error_line(err, where=spec.output_dir)) from err
        except Exception as err:  # submitit's FailedJobError / FailedSubmissionError: sbatch said no
            raise LaunchError(f"sbatch refused the job: {' '.join(str(err).split())[:300]}") from err
        print(
            f"submitted job {job}: {len(pending)} run(s) as {len(tasks)} array task(s); "
            f"logs: {spec.output_dir / sweepdir.SLURM}"
        )
        print(
            f"follow it with: nlbench sweep --config {spec.source or '<spec>'} --status"
            + (f" --output_dir {spec.output_dir}" if spec.source is None else "")
        )

    def queued(self, spec: SweepSpec) -> dict[str, str]:
        submitted = submitted_jobs(spec)
        queue = queued([task.split("_")[0] for task in submitted.values()])
        return {
            run_id: f"queued as SLURM job {task} ({queue[task]})"
            for run_id, task in submitted.items()
            if queue.get(task)
        }


def task_commands(
    spec: SweepSpec, pending: Sequence[SweepRun], tasks: Sequence[Sequence[str]], options: Mapping[str, Any]
) -> list[list[str]]:
    """The `nlbench fit` command line of each run of each task, as the array task starts it (nlbench.sweep.slurm_task:
    the sweep runner on the task's GPUs, numbered from 0 inside the task)."""
    gpus = [str(i) for i in range(options.get("gpus_per_task") or 0)]
    slots = plan_slots(gpus, spec.devices_per_run, spec.runs_per_device)
    by_id = {run.run_id: (run, state) for run, state in plan(spec, pending)}
    return [
        [
            shlex.join(fit_command_of(spec, by_id[run_id][0], slot, resume=by_id[run_id][1].resumable))
            for run_id, slot in zip(ids, itertools.cycle(slots))
        ]
        for ids in tasks
    ]


def _quote(text: str) -> str:
    return shlex.quote(text)
