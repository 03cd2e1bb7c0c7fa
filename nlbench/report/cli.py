"""``nlbench report``: write report.md, a self-contained report.html and PNG figures for a sweep.

Reads the sweep directory written by ``nlbench sweep`` (results table, per-run result.json and metrics.csv), or the
runs of a W&B project when online (``--wandb ENTITY/PROJECT [--group G ...]``). ``--bench FILE [FILE ...]`` adds a
section per training benchmark file (``nlbench bench train --grid --out FILE``), e.g. one from a CPU, one from a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentError, ArgumentParser

from nlbench.report.collect import WandbSourceError, load_benchmark, load_sweep, load_wandb


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nlbench report", description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("sweep_dir", type=str | None, nargs="?", default=None, help="sweep directory (nlbench sweep)")
    parser.add_argument("--out", type=str | None, default=None, help="output folder (default: <sweep_dir>/report)")
    parser.add_argument("--wandb", type=str | None, default=None, help="read the runs from W&B ENTITY/PROJECT instead")
    parser.add_argument("--group", type=str, nargs="*", default=[], help="with --wandb: only these W&B groups")
    parser.add_argument("--bench", type=str, nargs="+", action="extend", default=[],
                        help="training benchmark JSON files (nlbench bench train --grid --out FILE), one report "
                        "section each; repeatable")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as err:
        print(f"nlbench report: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        if args.wandb:
            if not args.out:
                raise ValueError("--out is required with --wandb (there is no sweep directory to write into)")
            sweep = load_wandb(args.wandb, groups=args.group)
        elif args.sweep_dir:
            if args.group:
                raise ValueError("--group only applies with --wandb")
            sweep = load_sweep(args.sweep_dir)
        else:
            hint = "; put it before --bench, which takes every argument after it" if args.bench else ""
            raise ValueError(f"give a sweep directory, or --wandb ENTITY/PROJECT with --out{hint}")
        # Every input is read and checked before anything is written.
        benchmarks = [load_benchmark(path) for path in args.bench]
        from nlbench.report.render import write_report  # matplotlib: only once there is a report to draw

        out = Path(args.out) if args.out else Path(args.sweep_dir) / "report"
        files = write_report(sweep, out, benchmarks=benchmarks)
    except (FileNotFoundError, WandbSourceError, ValueError) as err:
        print(f"nlbench report: error: {err}", file=sys.stderr)
        return 2
    finished = len(sweep.finished)
    print(f"report for {sweep.name}: {finished}/{len(sweep.runs)} runs finished")
    print(f"  {files.markdown}\n  {files.html}")
    for image in files.images:
        print(f"  {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
