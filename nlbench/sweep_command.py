"""``nlbench sweep``: run a sweep spec's grid as ``nlbench fit`` runs, preview it, or export it as a W&B sweep.

    nlbench sweep --config experiments/sweeps/cifar10.yaml [--dry-run [--pilot SWEEP_DIR [--margin PT]]]
                  [--export-wandb FILE] [--status] [--output_dir DIR] [--devices auto|cpu|0,1,...]
                  [--runs-per-device K] [--max-runs N]
                  [--index 0-9,20] [--launcher local|slurm [--slurm.time 12:00:00 --slurm.partition P ...]]

Any number of sweep processes (or SLURM array tasks) may share one sweep directory: each run is claimed by one
process at a time (nlbench.sweep.runner). `--launcher slurm` submits the pending runs as one job array
(nlbench.sweep.slurm); `--status` shows every run's state across all of them.

Re-running the same command skips finished and diverged runs, resumes interrupted ones from their last checkpoint
and retries failed ones (also resuming when they left a checkpoint). Exit code: 0 when no run of the sweep is
failed (diverged runs are results, and runs left for later by --max-runs are not failures), 1 when any run failed
(results.csv says why; re-run to retry), 2 for a bad spec or option, 130 when interrupted (re-run to resume).
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError, ArgumentParser

from nlbench.error_lines import os_error_line
from nlbench.io import UnsafeFileError
from nlbench.limits import terminal
from nlbench.schema import short_name
from nlbench.sweep import eta
from nlbench.sweep.child_imports import check_child_imports, imported_modules
from nlbench.sweep.datacheck import DataNeed, check_data, data_needs, fetch_data
from nlbench.sweep.devices import Slot, parse_devices, plan_slots, visible_gpus
from nlbench.sweep.launcher import LAUNCHERS, LaunchError, counts_line, launchers
from nlbench.sweep.mps import mps_slots
from nlbench.sweep.runner import (
    DEFAULT_FIT_COMMAND,
    SweepDirError,
    check_sweep_dir,
    child_environ,
    format_duration,
    plan,
    run_owner,
    run_sweep,
)
from nlbench.sweep.spec import (
    BASE_RUN,
    DEFAULT_GRID_LIMIT,
    SweepRun,
    SweepSpec,
    SweepSpecError,
    format_value,
    load_spec,
    probe_runs,
    validate_runs,
)
from nlbench.sweep.table import axis_columns
from nlbench.sweep.wandb_export import export_wandb


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="nlbench sweep",
        description="Run every point of a sweep spec as an `nlbench fit` run (resumable), preview it, or export "
        "it as a W&B sweep. Spec format: see the header of experiments/sweeps/cifar10.yaml.",
        exit_on_error=False,
    )
    parser.add_argument("--config", type=str, required=True, help="sweep spec, e.g. experiments/sweeps/demo.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, their status and cost; run nothing")
    parser.add_argument(
        "--export-wandb",
        type=str,
        default=None,
        metavar="FILE",
        help="write a W&B sweep definition (method grid) for `wandb sweep` + `wandb agent`; run nothing",
    )
    parser.add_argument("--output_dir", type=str, default=None, help="sweep directory, instead of the spec's")
    parser.add_argument(
        "--devices", type=str, default="auto", help="auto (all visible GPUs, else CPU), cpu, or GPU ids such as 0,1,3"
    )
    parser.add_argument(
        "--runs-per-device",
        type=int,
        default=None,
        metavar="K",
        help="concurrent runs per GPU (group of devices_per_run GPUs) or on the CPU, instead of the spec's "
        "runs_per_device; each gets 1/K of the GPU memory, or of the CPU cores",
    )
    parser.add_argument(
        "--mps",
        action="store_true",
        help="with runs_per_device > 1 on GPUs: run the sweep under a private NVIDIA MPS daemon (pipe and log dirs "
        "in the sweep dir), so the runs sharing a GPU run kernels concurrently instead of time-slicing it",
    )
    parser.add_argument(
        "--bench",
        type=str,
        default=None,
        metavar="FILE",
        help="a training benchmark (nlbench bench train --grid --out FILE) for the dry run's ETA before any run "
        "has finished",
    )
    parser.add_argument(
        "--pilot",
        type=str,
        default=None,
        metavar="SWEEP_DIR",
        help="with --dry-run: from this finished pilot sweep's seed variance, the smallest difference each compared "
        "key could detect with this sweep's seeds (80% power, Holm over its planned family), and the seeds a "
        "difference of --margin needs",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        metavar="PT",
        help="with --pilot: the difference in percentage points to give the seed count for "
        "(default: 0.5, the report's equivalence margin)",
    )
    parser.add_argument("--max-runs", type=int, default=None, help="start at most this many runs, then stop")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="run even when the runs would take over an hour on this machine's CPU (no GPU visible); without it the "
        "sweep says how long and stops",
    )
    parser.add_argument(
        "--grid-limit",
        type=int,
        default=None,
        metavar="N",
        help=f"refuse specs with more than N runs (default: {DEFAULT_GRID_LIMIT:,}, or the spec's lower grid_limit)",
    )
    parser.add_argument(
        "--index",
        type=str,
        default=None,
        metavar="I",
        help="run only these grid points (0-based, in --dry-run's order): 3, or ranges and lists such as 0-9,20",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="show every run's state (pending, running where, finished, failed and why); start nothing",
    )
    parser.add_argument(
        "--launcher",
        type=str,
        default="local",
        choices=["local", *LAUNCHERS],
        help="local: run here; slurm: submit the pending runs as one SLURM job array (submitit)",
    )
    for launcher in launchers().values():
        launcher.add_arguments(parser)
    return parser


def parse_index(text: str, size: int) -> list[int]:
    """``0-9,20`` -> [0, ..., 9, 20] (sorted, unique), each within the sweep's `size` runs."""
    indices: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError:
            raise ValueError(f"--index {text}: {part.strip()!r} is not an index or a range such as 0-9") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"--index {text}: {part.strip()!r} is not an index or an increasing range")
        if hi >= size:
            raise ValueError(f"--index {text}: {hi} is out of range; the sweep has {size} runs (0-{size - 1})")
        indices.update(range(lo, hi + 1))
    return sorted(indices)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except ArgumentError as err:
        return _error(" ".join(str(err).split()))
    try:
        if args.max_runs is not None and args.max_runs < 0:
            raise ValueError(f"--max-runs must be >= 0, got {args.max_runs}")
        if args.grid_limit is not None and args.grid_limit < 1:
            raise ValueError(f"--grid-limit must be >= 1, got {args.grid_limit}")
        gpus = parse_devices(args.devices)
        if args.runs_per_device is not None and args.runs_per_device < 1:
            raise ValueError(f"--runs-per-device must be >= 1, got {args.runs_per_device}")
        if args.pilot is not None and not args.dry_run:
            raise ValueError("--pilot reads a finished pilot sweep for --dry-run's power estimate; add --dry-run")
        if args.margin is not None and args.pilot is None:
            raise ValueError("--margin only applies with --pilot (the difference the seed count is given for)")
        margin = 0.5 if args.margin is None else args.margin
        if not 0 < margin < 100:
            raise ValueError(f"--margin {margin:g}: expected a difference in percentage points, > 0 and < 100")
        spec = load_spec(args.config, output_dir=args.output_dir)
        for name, other in launchers().items():
            if args.launcher != name and other.given(args):
                raise ValueError(f"--{name}.* options need --launcher {name}")
        launcher = launchers().get(args.launcher)
        if args.mps and (args.launcher != "local" or args.export_wandb or args.status):
            # The daemon lives as long as this process runs the sweep: an array task or an agent would not get it.
            raise ValueError(
                "--mps runs a sweep here under a private MPS daemon; it does nothing with --launcher "
                "slurm, --export-wandb or --status"
            )
        if args.grid_limit is not None:
            spec = dataclasses.replace(spec, grid_limit=args.grid_limit)
        if args.runs_per_device is not None:
            spec = dataclasses.replace(spec, runs_per_device=args.runs_per_device)
        spec.check_size()
        options = launcher.options(spec, launcher.given(args)) if launcher and not args.status else None
        slots = None  # only needed to run or preview here; an export or a submission may be made without the GPUs
        local = args.launcher == "local" and not args.status
        if local and (args.dry_run or not args.export_wandb):
            slots = plan_slots(_check_gpus(gpus), spec.devices_per_run, spec.runs_per_device)
        print(f"expanding {spec.size} run(s) ...", file=sys.stderr, flush=True)
        runs = spec.expand()
        todo = runs if args.index is None else [runs[i] for i in parse_index(args.index, len(runs))]
        if args.status or args.dry_run:
            check_sweep_dir(spec)  # another sweep's directory, or links in it: say so before listing its runs
        power = pilot_power(args.pilot, runs, margin / 100) if args.pilot is not None else None
        if args.status:
            print_status(spec, runs)
            return 0
        probes = probe_runs(spec, runs)
        print(
            f"checking {len(runs)} run(s) with the `nlbench fit` parser ({len(probes) + 1} configs parsed) ...",
            file=sys.stderr,
            flush=True,
        )
        parsed = validate_runs(spec, runs)
        if not args.export_wandb:  # the runs must import what this process checked (nlbench.sweep.child_imports)
            check_child_imports(imported_modules(parsed.values()), DEFAULT_FIT_COMMAND, child_environ())
        needs = data_needs(parsed.values())
        if args.export_wandb:
            path = export_wandb(spec, args.export_wandb)
            print(f"wrote W&B sweep definition {path} ({len(runs)} runs); its header says how to run it")
        elif not args.dry_run:
            check_data(needs)
    except (SweepSpecError, SweepDirError, FileNotFoundError, ValueError) as err:
        return _error(str(err))
    except OSError as err:  # e.g. a read-only or full disk for --export-wandb
        return _error(os_error_line(err))
    if launcher is not None and options is not None and not args.export_wandb:
        try:
            launcher.launch(spec, runs, todo, options, needs, dry_run=args.dry_run)
        except (LaunchError, SweepDirError, FileNotFoundError, ValueError) as err:
            return _error(str(err))
        if power:
            print(power)
        return 0
    if slots is None:
        return 0
    if args.dry_run:
        print_plan(spec, todo, parsed, slots, needs, bench=args.bench)
        if power:
            print(power)
        return 0

    if not slots[0].gpus and not args.yes:  # CPU only: a grid meant for GPUs would train for weeks without a word
        cpu = eta.estimate(plan(spec, todo), parsed, len(slots), max_runs=args.max_runs)
        if cpu is not None and cpu.seconds > eta.CONFIRM_ABOVE_S:
            return _error(
                f"the runs would take about {format_duration(cpu.seconds)} on this machine's CPU (no GPU "
                f"visible): {cpu.epochs:,} epochs at {cpu.how}; pass --yes to run them anyway, or fewer "
                "with --max-runs N or --index"
            )
    print(
        f"sweep {spec.name}: {counts_line(spec, runs)}; {len(slots)} slot(s): "
        f"{', '.join(s.label for s in slots)} -> {spec.output_dir}"
    )
    try:
        fetch_data(needs)
        with mps_slots(slots, spec.output_dir, enabled=args.mps) as slots:
            rows = run_sweep(spec, slots=slots, runs=runs, todo=todo, max_runs=args.max_runs)
    except (SweepDirError, FileNotFoundError, UnsafeFileError) as err:
        return _error(str(err))
    except OSError as err:  # a read-only or full output_dir: one line, and no run was started on it
        return _error(os_error_line(err, where=spec.output_dir))
    except KeyboardInterrupt:
        print(f"nlbench sweep: interrupted; run the same command again to resume ({spec.output_dir})", file=sys.stderr)
        return 130
    counts = Counter(row["status"] for row in rows)
    print(f"sweep {spec.name}: " + ", ".join(f"{n} {status}" for status, n in counts.most_common()))
    print(f"results: {spec.output_dir / 'results.csv'}; statistics over seeds: nlbench report {spec.output_dir}")
    sync = wandb_sync_line(spec.output_dir)
    if sync:
        print(sync)
    return 1 if counts["failed"] else 0


def print_status(spec: SweepSpec, runs: Sequence[SweepRun]) -> None:
    """One line per run: pending (queued in a SLURM job when it is), running where, finished, diverged, failed
    with the error or its log's last line. Reads the run directories, claims and squeue; starts nothing."""
    from nlbench.sweep.runner import LOG_NAME, _last_log_line, run_dir_of

    queued = {run_id: where for launcher in launchers().values() for run_id, where in launcher.queued(spec).items()}
    print(f"sweep {spec.name} -> {spec.output_dir}")
    width = max(len(run.run_id) for run in runs)
    counts: Counter[str] = Counter()
    for run, state in plan(spec, runs):
        who = run_owner(spec, run)
        record = state.record
        if who is not None:
            status, detail = "running", f"{who.where()}" + (f", {who.command}" if who.command else "")
        elif state.status in ("finished", "diverged"):
            acc = record.metrics.get("val/acc1_best") if record else None
            status, detail = state.status, (f"best val acc1 {acc:.4f}" if isinstance(acc, float) else "")
        elif state.status == "failed":
            log = run_dir_of(spec, run) / LOG_NAME
            error = (record.error if record else None) or (_last_log_line(log) if log.is_file() else None)
            status, detail = "failed", error or "no error recorded"
        else:
            status = "pending"
            detail = f"{state.status}, {queued[run.run_id]}" if run.run_id in queued else state.status
        counts[status] += 1
        print(terminal(f"{status:<9} {run.run_id:<{width}}  {detail}"))  # received text: lock owners, errors, logs
    print(", ".join(f"{n} {status}" for status, n in counts.most_common()))


def wandb_sync_line(output_dir: Path) -> str | None:
    """One `wandb sync` command for every offline W&B run of the sweep (each run's own hint stays in its
    stdout.log), or None when no run logged offline."""
    pattern = "runs/*/wandb/offline-run-*"
    offline = sorted(Path(output_dir).glob(pattern))
    if not offline:
        return None
    return f"W&B ran offline for {len(offline)} run(s); upload them later with: wandb sync {Path(output_dir) / pattern}"


def _check_gpus(gpus: list[str] | None) -> list[str]:
    """The GPUs to use: all visible ones for auto, else the --devices ids, each of which must be visible."""
    visible = visible_gpus()
    if gpus is None:
        return visible
    missing = [gpu for gpu in gpus if gpu not in visible]
    if missing:
        raise ValueError(
            f"--devices {','.join(gpus)}: GPU(s) {', '.join(missing)} not visible on this machine "
            f"(visible: {','.join(visible) or 'none'}); use --devices auto or cpu"
        )
    return gpus


def _error(message: str) -> int:
    print(terminal(f"nlbench sweep: error: {message}"), file=sys.stderr)  # received text: no escapes, not 99k long
    return 2


def print_plan(
    spec: SweepSpec,
    runs: Sequence[SweepRun],
    parsed: Mapping[str, Any],
    slots: Sequence[Slot],
    needs: Sequence[DataNeed] = (),
    bench: str | None = None,
) -> None:
    """The dry run: one line per run (status, action, id, overrides), then data, devices and estimated cost."""
    columns = axis_columns(spec)
    planned = plan(spec, runs)
    print(f"sweep {spec.name} ({spec.label}) -> {spec.output_dir}")
    width = max(len(run.run_id) for run in runs)
    print(f"{'status':<11} {'action':<6} {'run_id':<{width}}  overrides")
    for run, state in planned:
        overrides = " ".join(f"{columns[k]}={format_value(v)}" for k, v in run.params.items())
        print(terminal(f"{state.status:<11} {state.action:<6} {run.run_id:<{width}}  {overrides}"))
    print(counts_line(spec, runs))
    for need in needs:
        print(need.describe)
    print(
        f"devices: {len(slots)} slot(s), one run at a time on each: {', '.join(s.label for s in slots)}"
        + ("" if slots[0].gpus else " (no GPU visible, or --devices cpu)")
    )

    todo = [run for run, state in planned if state.action != "skip"]
    if not todo:
        print("cost: nothing left to run (every run is finished or diverged)")
        return
    base_epochs = _max_epochs(parsed[BASE_RUN].get("trainer.max_epochs")) if BASE_RUN in parsed else None
    epochs = [
        _max_epochs(run.params["trainer.max_epochs"]) if "trainer.max_epochs" in run.params else base_epochs
        for run in todo
    ]
    known = [e for e in epochs if e is not None]
    total = sum(known)
    per_run = f"{known[0]}" if known and len(set(known)) == 1 else "varying"
    unknown = f" (+{len(epochs) - len(known)} runs without trainer.max_epochs)" if len(known) < len(epochs) else ""
    print(
        f"cost: {len(todo)} runs x {per_run} epochs = {total} epochs{unknown} on {len(slots)} slot(s): "
        f"{', '.join(s.label for s in slots)}"
    )

    timed = [s.record.metrics for _, s in planned if s.status == "finished" and s.record and s.record.metrics["epochs"]]
    seconds = sum(float(r.get("time_s") or 0.0) for r in timed)
    measured_epochs = sum(int(r["epochs"]) for r in timed)
    if seconds > 0 and measured_epochs:
        per_epoch = seconds / measured_epochs
        remaining = format_duration(total * per_epoch / len(slots))
        print(f"ETA: ~{remaining} at {per_epoch:.1f} s/epoch (measured over {len(timed)} finished run(s))")
    elif bench is not None:
        print(_benchmark_eta(bench, todo, epochs, needs, len(slots)))
    elif not slots[0].gpus and (cpu := eta.estimate(planned, parsed, len(slots))) is not None:
        ask = "; over an hour: the sweep asks for --yes" if cpu.seconds > eta.CONFIRM_ABOVE_S else ""
        print(f"ETA: ~{format_duration(cpu.seconds)} on this CPU ({cpu.how}){ask}")
    else:
        print("ETA: unknown (no finished runs to time yet; --bench FILE estimates it from a benchmark)")


def pilot_power(pilot: str, runs: Sequence[SweepRun], margin: float) -> str:
    """The dry run's power table: per key the pilot compares, its seed sd (paired differences, pooled over its
    comparisons), and with this sweep's seeds and planned family size (Holm's first level 0.05 / family) the
    smallest difference detectable at 80% power and the seeds a difference of ``margin`` needs. Raises ValueError
    (one line) for a pilot that cannot be read."""
    from nlbench.report.collect import SourceError, load_sweep
    from nlbench.report.compare import METRIC_LABELS, Families, power_plan
    from nlbench.report.stats import MAX_SEEDS

    try:
        sweep = load_sweep(pilot)
    except (FileNotFoundError, SourceError) as err:
        raise ValueError(f"--pilot {err}") from None
    params = [{short_name(key): value for key, value in run.params.items()} for run in runs]
    seeds = len({repr(p.get("seed")) for p in params})
    axes = list(dict.fromkeys(key for p in params for key in p if key != "seed"))
    families = Families(sweep.finished, sweep.config_keys, margin)
    sizes = {}
    for key in sweep.config_keys:
        if key in axes:  # comparisons the planned sweep makes along key: its other configurations x (values - 1)
            others = {tuple(repr(p.get(k)) for k in axes if k != key) for p in params}
            sizes[key] = len(others) * (len({repr(p.get(key)) for p in params}) - 1)
    compared = [key for key in sweep.config_keys if key in axes]
    plans = power_plan([families.get(key) for key in compared], seeds, sizes, margin)
    label = METRIC_LABELS.get(families.metric, families.metric)
    lines = [
        f"power from the pilot {pilot} ({len(sweep.finished)} finished runs, {label}; 80% power, Holm's "
        f"first level 0.05 / family):"
    ]
    skipped = [key for key in sweep.config_keys if key not in axes]
    if not plans:
        varied = ", ".join(sweep.config_keys) or "nothing"
        return "\n".join(
            lines + [f"  nothing to estimate: this sweep varies none of the keys the pilot compares ({varied})"]
        )
    lines.append(
        f"  {'key':<16} {'reference':<12} {'seed sd (pt)':>12} {'seeds':>6} {'family':>7} "
        f"{'detectable (pt)':>16} {f'seeds for {100 * margin:g} pt':>18}"
    )
    for row in plans:
        sd = "–" if row.sd is None else f"{100 * row.sd:.2f}"
        detect = "–" if row.detectable is None else f"{100 * row.detectable:.2f}"
        need = (
            "–"
            if row.seeds_for_margin is None and row.sd is None
            else (f"> {MAX_SEEDS:,}" if row.seeds_for_margin is None else str(row.seeds_for_margin))
        )
        lines.append(
            f"  {row.key:<16} {str(row.reference):<12} {sd:>12} {row.seeds:>6} {row.family:>7} {detect:>16} {need:>18}"
        )
    if skipped:
        lines.append(f"  (the pilot also compares {', '.join(skipped)}, which this sweep does not vary)")
    if any(row.sd is None for plan in plans):
        lines.append("  –: no seed sd in the pilot (a key needs two seeds both arms ran, differing between seeds)")
    return "\n".join(lines)


def _benchmark_eta(
    path: str, todo: Sequence[SweepRun], epochs: Sequence[int | None], needs: Sequence[DataNeed], slots: int
) -> str:
    """The ETA from a training benchmark: per run, epochs x training images / the images/s the benchmark measured
    for its normalization, reduction and heads (the mean over matching records; all records when none match)."""
    from nlbench.data.sources import SPECS
    from nlbench.throughput_file import BenchFileError, load_benchmark

    try:
        benchmark = load_benchmark(path)
    except (FileNotFoundError, BenchFileError) as err:
        return f"ETA: unknown ({err})"
    images = {SPECS[need.dataset].train_images for need in needs}
    if len(images) != 1 or 0 in images:
        return "ETA: unknown (the runs' training-set size is not known: a packaged sample, or several datasets)"
    (train_images,) = images
    seconds = 0.0
    for run, run_epochs in zip(todo, epochs):
        params = {short_name(key): value for key, value in run.params.items()}
        matching = [
            r
            for r in benchmark.records
            if all(r.get(k) == params[k] for k in ("normalization", "reduction", "heads") if k in params)
        ]
        rates = [float(r["images_per_s"]) for r in (matching or benchmark.records)]
        seconds += (run_epochs or 0) * train_images / (sum(rates) / len(rates))
    device = benchmark.device or "device not recorded"
    return (
        f"ETA: ~{format_duration(seconds / slots)} from the benchmark {path} ({device}, measured "
        f"{benchmark.when}; {train_images:,} training images per epoch, one run at a time per slot)"
    )


def _max_epochs(epochs: Any) -> int | None:
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0 else None


if __name__ == "__main__":
    sys.exit(main())
