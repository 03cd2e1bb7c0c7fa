"""Sweep start-up cost: wall time of ``nlbench sweep --dry-run`` and ``--export-wandb`` on big grids.

    nlbench bench sweep                    # the paper's 90-run CIFAR-10 grid and a 10,000-run grid
    nlbench bench sweep --runs 10000 100000

Each measurement is a fresh ``python -m nlbench sweep`` process (imports included, as a user sees it) writing into
a temporary folder. The N-run grid is experiments/demo.yaml with normalization (2) x reduction (5) x lr (10) x
weight_decay (10) x N/1000 seeds. Target (issue 10): the dry run of a 10,000-run grid in under 30 s.
Prints a markdown table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

REPO = Path(__file__).resolve().parents[2]


def grid_spec(runs: int, out: Path) -> dict[str, object]:
    """A demo grid of exactly `runs` points (a multiple of 1,000)."""
    if runs % 1000 or runs < 1000:
        raise ValueError(f"--runs must be a multiple of 1000, got {runs}")
    return {
        "name": f"grid{runs}",
        "base": str(REPO / "experiments" / "demo.yaml"),
        "output_dir": str(out / f"grid{runs}"),
        "grid_limit": max(runs, 100_000),
        "axes": {
            "model.backbone.nl.normalization": ["softmax", "scale"],
            "model.backbone.nl.reduction": [1, 2, 4, 8, 16],
            "model.optimizer.init_args.lr": [round(0.02 * (i + 1), 2) for i in range(10)],
            "model.optimizer.init_args.weight_decay": [round(1e-4 * (i + 1), 5) for i in range(10)],
            "seed_everything": list(range(runs // 1000)),
        },
    }


def _time(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nlbench", "sweep", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"nlbench sweep {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="nlbench bench sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=list[int], default=[10_000], help="sizes of the generated grids")
    parser.add_argument("--cifar10", type=bool, default=True, help="also time experiments/sweeps/cifar10.yaml")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nlbench-bench-sweep-") as tmp:
        out = Path(tmp)
        specs: list[tuple[str, Path, int]] = []
        if args.cifar10:
            specs.append(("experiments/sweeps/cifar10.yaml", REPO / "experiments" / "sweeps" / "cifar10.yaml", 90))
        for runs in args.runs:
            path = out / f"grid{runs}.yaml"
            path.write_text(yaml.safe_dump(grid_spec(runs, out), sort_keys=False))
            specs.append((f"demo grid, {runs:,} runs", path, runs))
        for label, path, runs in specs:
            common = ["--config", str(path), "--output_dir", str(out / "o" / path.stem), "--devices", "cpu"]
            dry = _time([*common, "--dry-run"])
            export = _time([*common, "--export-wandb", str(out / f"{path.stem}-wandb.yaml")])
            rows.append((label, runs, dry, export))
    print("| spec | runs | `--dry-run` (s) | `--export-wandb` (s) |")
    print("|---|---:|---:|---:|")
    for label, runs, dry, export in rows:
        print(f"| {label} | {runs:,} | {dry:.1f} | {export:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
