"""``nlbench sweep``: run a sweep spec's grid as ``nlbench fit`` runs, preview it, or export it as a W&B sweep.

    nlbench sweep --config experiments/sweeps/cifar10.yaml [--dry-run] [--export-wandb FILE]
                  [--output_dir DIR] [--devices auto|cpu|0,1,...] [--max-runs N]

Re-running the same command skips finished and diverged runs, resumes interrupted ones from their last checkpoint
and retries failed ones (also resuming when they left a checkpoint). Exit code: 0 when no run of the sweep is
failed (diverged runs are results, and runs left for later by --max-runs are not failures), 1 when any run failed
(results.csv says why; re-run to retry), 2 for a bad spec or option, 130 when interrupted (re-run to resume).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError, ArgumentParser

from nlbench.sweep.devices import Slot, parse_devices, plan_slots, visible_gpus
from nlbench.sweep.results import axis_columns
from nlbench.sweep.runner import SweepLockedError, format_duration, plan, run_sweep
from nlbench.sweep.spec import SweepRun, SweepSpec, SweepSpecError, format_value, load_spec, validate_runs
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
        "--export-wandb", type=str, default=None, metavar="FILE",
        help="write a W&B sweep definition (method grid) for `wandb sweep` + `wandb agent`; run nothing",
    )  # fmt: skip
    parser.add_argument("--output_dir", type=str, default=None, help="sweep directory, instead of the spec's")
    parser.add_argument(
        "--devices", type=str, default="auto", help="auto (all visible GPUs, else CPU), cpu, or GPU ids such as 0,1,3"
    )
    parser.add_argument("--max-runs", type=int, default=None, help="start at most this many runs, then stop")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except ArgumentError as err:
        return _error(" ".join(str(err).split()))
    try:
        if args.max_runs is not None and args.max_runs < 0:
            raise ValueError(f"--max-runs must be >= 0, got {args.max_runs}")
        gpus = parse_devices(args.devices)
        spec = load_spec(args.config, output_dir=args.output_dir)
        runs = spec.expand()
        slots = None  # only needed to run or preview; an export may be made on a machine without the GPUs
        if args.dry_run or not args.export_wandb:
            slots = plan_slots(visible_gpus() if gpus is None else gpus, spec.devices_per_run)
        print(f"checking {len(runs)} run(s) with the `nlbench fit` parser ...", file=sys.stderr, flush=True)
        parsed = validate_runs(spec, runs)
        if args.export_wandb:
            path = export_wandb(spec, args.export_wandb)
            print(f"wrote W&B sweep definition {path} ({len(runs)} runs); its header says how to run it")
    except (SweepSpecError, FileNotFoundError, ValueError) as err:
        return _error(str(err))
    if slots is None:
        return 0
    if args.dry_run:
        print_plan(spec, runs, parsed, slots)
        return 0

    print(f"sweep {spec.name}: {_counts_line(spec, runs)}; {len(slots)} slot(s): "
          f"{', '.join(s.label for s in slots)} -> {spec.output_dir}")  # fmt: skip
    try:
        rows = run_sweep(spec, slots=slots, runs=runs, max_runs=args.max_runs)
    except SweepLockedError as err:
        return _error(str(err))
    except KeyboardInterrupt:
        print(f"nlbench sweep: interrupted; run the same command again to resume ({spec.output_dir})", file=sys.stderr)
        return 130
    counts = Counter(row["status"] for row in rows)
    print(f"sweep {spec.name}: " + ", ".join(f"{n} {status}" for status, n in counts.most_common()))
    print(f"results: {spec.output_dir / 'results.csv'}, mean/std over seeds: {spec.output_dir / 'summary.csv'}")
    sync = wandb_sync_line(spec.output_dir)
    if sync:
        print(sync)
    return 1 if counts["failed"] else 0


def wandb_sync_line(output_dir: Path) -> str | None:
    """One `wandb sync` command for every offline W&B run of the sweep (each run's own hint stays in its
    stdout.log), or None when no run logged offline."""
    pattern = "runs/*/wandb/offline-run-*"
    offline = sorted(Path(output_dir).glob(pattern))
    if not offline:
        return None
    return f"W&B ran offline for {len(offline)} run(s); upload them later with: wandb sync {Path(output_dir) / pattern}"


def _error(message: str) -> int:
    print(f"nlbench sweep: error: {message}", file=sys.stderr)
    return 2


def _counts_line(spec: SweepSpec, runs: Sequence[SweepRun]) -> str:
    actions = Counter(state.action for _, state in plan(spec, runs))
    return (f"{len(runs)} runs, {actions['skip']} done, {actions['run']} new, {actions['resume']} to resume, "
            f"{actions['retry']} to retry")  # fmt: skip


def print_plan(spec: SweepSpec, runs: Sequence[SweepRun], parsed: Mapping[str, Any], slots: Sequence[Slot]) -> None:
    """The dry run: one line per run (status, action, id, overrides), then the estimated cost."""
    columns = axis_columns(spec)
    planned = plan(spec, runs)
    print(f"sweep {spec.name} ({spec.label}) -> {spec.output_dir}")
    width = max(len(run.run_id) for run in runs)
    print(f"{'status':<11} {'action':<6} {'run_id':<{width}}  overrides")
    for run, state in planned:
        overrides = " ".join(f"{columns[k]}={format_value(v)}" for k, v in run.params.items())
        print(f"{state.status:<11} {state.action:<6} {run.run_id:<{width}}  {overrides}")
    print(_counts_line(spec, runs))

    todo = [run for run, state in planned if state.action != "skip"]
    if not todo:
        print("cost: nothing left to run (every run is finished or diverged)")
        return
    epochs = [_max_epochs(parsed.get(run.run_id)) for run in todo]
    known = [e for e in epochs if e is not None]
    total = sum(known)
    per_run = f"{known[0]}" if known and len(set(known)) == 1 else "varying"
    unknown = f" (+{len(epochs) - len(known)} runs without trainer.max_epochs)" if len(known) < len(epochs) else ""
    print(f"cost: {len(todo)} runs x {per_run} epochs = {total} epochs{unknown} on {len(slots)} slot(s): "
          f"{', '.join(s.label for s in slots)}")  # fmt: skip

    timed = [s.result for _, s in planned if s.status == "finished" and s.result and s.result.get("epochs")]
    seconds = sum(float(r.get("time_s") or 0.0) for r in timed)
    measured_epochs = sum(int(r["epochs"]) for r in timed)
    if seconds > 0 and measured_epochs:
        per_epoch = seconds / measured_epochs
        eta = format_duration(total * per_epoch / len(slots))
        print(f"ETA: ~{eta} at {per_epoch:.1f} s/epoch (measured over {len(timed)} finished run(s))")
    else:
        print("ETA: unknown (no finished runs to time yet)")


def _max_epochs(config: Any) -> int | None:
    epochs = config.get("trainer.max_epochs") if config is not None else None
    return epochs if isinstance(epochs, int) and epochs >= 0 else None


if __name__ == "__main__":
    sys.exit(main())
