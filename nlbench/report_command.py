"""``nlbench report``: write report.md, a self-contained report.html and PNG figures for sweeps and runs.

Reads any mix of sweep directories written by ``nlbench sweep`` (results table, per-run result.json and metrics.csv),
plain ``nlbench fit`` run directories, and W&B projects when online (``wandb:ENTITY/PROJECT`` as a source, or ``--wandb
ENTITY/PROJECT [--group G ...]``); the runs are grouped by whatever varies across them. ``--bench FILE [FILE ...]`` adds
a section per training benchmark file (``nlbench bench train --grid --out FILE``), e.g. one from a CPU, one from a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentError, ArgumentParser

from nlbench.io import refuse_link
from nlbench.limits import terminal
from nlbench.report.collect import SourceError, WandbSourceError, load_benchmark, load_sweep
from nlbench.report.stats import DEFAULT_MARGIN


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nlbench report", description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument(
        "sources",
        type=str,
        nargs="*",
        default=[],
        help="sweep directories (nlbench sweep), run directories (nlbench fit) and wandb:ENTITY/PROJECT",
    )
    parser.add_argument(
        "--out", type=str | None, default=None, help="output folder (default: <dir>/report for a single directory)"
    )
    parser.add_argument("--wandb", type=str | None, default=None, help="also read the runs of W&B ENTITY/PROJECT")
    parser.add_argument("--group", type=str, nargs="*", default=[], help="with --wandb: only these W&B groups")
    parser.add_argument(
        "--bench",
        type=str,
        nargs="+",
        action="extend",
        default=[],
        help="training benchmark JSON files (nlbench bench train --grid --out FILE), one report "
        "section each; repeatable",
    )
    parser.add_argument(
        "--compare",
        type=str,
        nargs="+",
        action="extend",
        default=[],
        help="KEY[=REFERENCE]: compare each value of KEY against REFERENCE (default: softmax for "
        "normalization, else the first value of the axis); repeatable. Default: every varying key",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=100 * DEFAULT_MARGIN,
        metavar="PT",
        help="equivalence margin in percentage points: a difference whose 90 percent interval "
        "lies within ±PT (TOST) reads 'equivalent'; the seed counts are given for a difference of PT "
        f"(default: {100 * DEFAULT_MARGIN:g})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as err:
        print(f"nlbench report: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        if not 0 < args.margin < 100:
            raise ValueError(f"--margin {args.margin:g}: expected a difference in percentage points, > 0 and < 100")
        sources = list(args.sources) + ([f"wandb:{args.wandb}"] if args.wandb else [])
        if not sources:
            hint = "; put it before --bench, which takes every argument after it" if args.bench else ""
            raise ValueError(f"give a sweep directory, a run directory or --wandb ENTITY/PROJECT with --out{hint}")
        wandb_sources = [source for source in sources if source.startswith("wandb:")]
        if args.group and not wandb_sources:
            raise ValueError("--group only applies with --wandb")
        if not args.out and (wandb_sources or len(sources) > 1):
            raise ValueError(
                "--out is required with several sources or W&B (there is no single directory to write into)"
            )
        sweep = load_sweep(*sources, groups=args.group)
        compare = dict(parse_compare(item) for item in args.compare)
        unknown = [key for key in compare if key not in sweep.config_keys]
        if unknown:
            varying = ", ".join(sweep.config_keys) or "nothing varies"
            raise ValueError(f"--compare {unknown[0]}: not a varying key of these runs (they vary: {varying})")
        # Every input is read and checked before anything is written.
        benchmarks = [load_benchmark(path) for path in args.bench]
        out = Path(args.out) if args.out else Path(sources[0]) / "report"
        check_output(out, inside_source=not args.out)
        from nlbench.report.render import write_report  # matplotlib: only once there is a report to draw

        files = write_report(sweep, out, benchmarks=benchmarks, compare=compare, margin=args.margin / 100)
    except (FileNotFoundError, WandbSourceError, SourceError, ValueError) as err:
        print(terminal(f"nlbench report: error: {err}"), file=sys.stderr)
        return 2
    finished, running = len(sweep.finished), len(sweep.running)
    # Received text (a sweep's name, an unreadable file's error) reaches the terminal without its escapes.
    print(
        terminal(
            f"report for {sweep.name}: {finished}/{len(sweep.runs)} runs finished"
            + (f", {running} running" if running else "")
        )
    )
    if sweep.merged:
        print(f"  {len(sweep.merged)} duplicate run(s) merged: each configuration and seed counts once")
    print(f"  {files.markdown}\n  {files.html}")
    for image in files.images:
        print(f"  {image}")
    if sweep.unreadable:
        print(
            terminal(
                f"  {len(sweep.unreadable)} unreadable run(s) left out (listed in the report): "
                + "; ".join(str(run["error"]) for run in sweep.unreadable[:3])
            ),
            file=sys.stderr,
        )
    return 0


def check_output(out: Path, *, inside_source: bool) -> None:
    """Refuse (UnsafeFileError, one line) to write the report through a symbolic link: a link among the files in the
    output folder (report.md, a figure), or the folder itself when it is the default one inside a received sweep
    directory (``<dir>/report``)."""
    if inside_source:
        refuse_link(out)
    if out.is_dir():
        for entry in out.iterdir():
            if entry.is_symlink():
                refuse_link(entry)


def parse_compare(item: str) -> tuple[str, str | None]:
    """``KEY[=REFERENCE]`` -> (KEY, REFERENCE or None)."""
    key, _, reference = item.partition("=")
    if not key:
        raise ValueError(f"--compare {item!r}: expected KEY or KEY=REFERENCE")
    return key, reference or None


if __name__ == "__main__":
    sys.exit(main())
