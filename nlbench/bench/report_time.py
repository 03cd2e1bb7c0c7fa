"""``nlbench bench report``: time ``nlbench report`` over generated run directories (target: under 10 s at 2,000
runs, however many configurations they form; issue 20 item 15).

Writes N run directories the way ``nlbench fit`` leaves them (result.json with the resolved config and its
differing keys, a CSVLogger metrics.csv of E epochs), grouped into C configurations (normalization x heads x lr,
the seeds filling each), then runs the report in a fresh process per case and prints a markdown table of the wall
times. Timings are meaningful only on an otherwise idle machine.

    nlbench bench report                          # 2,000 runs in 20, 200 and 2,000 configurations
    nlbench bench report --runs 50 --configs 5    # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nlbench import schema
from nlbench.record import RunRecord, write_record

NORMALIZATIONS = ("softmax", "scale")
HEADS = (1, 2, 4, 8)


def configurations(count: int) -> list[dict[str, object]]:
    """``count`` distinct configurations: normalization x heads x lr (as many lr values as needed)."""
    lrs = [round(0.01 * (i + 1), 4) for i in range(max(1, -(-count // (len(NORMALIZATIONS) * len(HEADS)))))]
    grid = itertools.product(lrs, HEADS, NORMALIZATIONS)
    return [
        {
            "model.backbone.init_args.nl.normalization": n,
            "model.backbone.init_args.nl.heads": h,
            "model.optimizer.init_args.lr": lr,
        }
        for lr, h, n in itertools.islice(grid, count)
    ]


def write_runs(root: Path, runs: int, configs: int, epochs: int) -> None:
    """``runs`` run directories under ``root`` in ``configs`` configurations (seeds 0, 1, ... within each)."""
    base = {
        "model.backbone.class_path": "nlbench.models.PreActResNet",
        "model.backbone.init_args.depth": 20,
        "model.backbone.init_args.nl.reduction": 2,
        "model.optimizer.class_path": "torch.optim.SGD",
        "model.scheduler.class_path": "torch.optim.lr_scheduler.OneCycleLR",
        "trainer.max_epochs": epochs,
        "data.class_path": "nlbench.data.CIFAR10DataModule",
        "data.init_args.batch_size": 128,
    }
    points = configurations(configs)
    for i in range(runs):
        point, seed = points[i % len(points)], i // len(points)
        config = {**base, **point, schema.SEED_KEY: seed}
        norm, heads, lr = point.values()
        acc = [0.5 + 0.3 * (e + 1) / epochs + (0.01 if norm == "scale" else 0.0) + 0.001 * seed for e in range(epochs)]
        hparams = {
            "dataset": "cifar10",
            "backbone": "PreActResNet",
            "depth": 20,
            "nl_blocks": 1,
            "normalization": norm,
            "reduction": 2,
            "heads": heads,
            "init": "normal",
            "seed": seed,
        }
        metrics = {
            schema.BEST_ACC1: max(acc),
            schema.FINAL_ACC1: acc[-1],
            schema.BEST_EPOCH: epochs - 1,
            "epochs": epochs,
            "time_s": 60.0,
            schema.IMAGES_PER_S: 1000.0 + 10 * heads,
            "params": 280_000,
            "nl_params": 4_000,
        }
        run_dir = root / "runs" / f"run{i:05d}"
        write_record(
            run_dir,
            RunRecord(
                status="finished",
                run_name=f"{norm}-h{heads}-lr{lr}-s{seed}",
                hparams=hparams,
                metrics=metrics,
                config=config,
                differs=[*point, schema.SEED_KEY],
            ),
        )
        with (run_dir / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, ["epoch", "step", "train/loss", "val/acc1", "val/acc5"])
            writer.writeheader()
            for epoch, value in enumerate(acc):
                writer.writerow({"epoch": epoch, "step": epoch * 10 + 9, "train/loss": 1.0 / (epoch + 1)})
                writer.writerow({"epoch": epoch, "step": epoch * 10 + 9, "val/acc1": value, "val/acc5": value})


def time_report(root: Path) -> float:
    """Wall seconds of ``nlbench report ROOT --out ROOT/report`` in a fresh process (start-up included)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "nlbench", "report", str(root), "--out", str(root / "report")],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlbench bench report", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="run directories per case (default 2000)")
    parser.add_argument(
        "--configs", type=int, nargs="+", default=[20, 200, 2000], help="configurations per case (default 20 200 2000)"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run's metrics.csv (default 30)")
    parser.add_argument("--keep", type=Path, default=None, help="write the runs here and keep them")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.epochs < 1 or min(args.configs) < 1:
        print("nlbench bench report: error: --runs, --configs and --epochs must be positive", file=sys.stderr)
        return 2
    print("| runs | configurations | epochs | generate (s) | nlbench report (s) |\n|---|---|---|---|---|")
    for configs in args.configs:
        root = (args.keep / f"c{configs}") if args.keep else Path(tempfile.mkdtemp(prefix="nlbench-bench-report-"))
        try:
            start = time.perf_counter()
            write_runs(root, args.runs, min(configs, args.runs), args.epochs)
            generate = time.perf_counter() - start
            print(
                f"| {args.runs} | {min(configs, args.runs)} | {args.epochs} | {generate:.1f} | "
                f"{time_report(root):.1f} |",
                flush=True,
            )
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
