"""Benchmarks that print markdown tables (results are recorded in BENCHMARKS.md, never asserted in tests).

nlbench bench block    every normalization and peer block: forward+backward time and peak memory per size
nlbench bench loader   images/s of the tensor fast path vs torchvision per-sample transforms
nlbench bench train    training step through Lightning vs a plain PyTorch loop; --grid for backbones
nlbench bench imports  start-up time of short nlbench commands (--help, usage errors) in fresh processes
nlbench bench sweep    start-up of `nlbench sweep --dry-run` / `--export-wandb` on a 10,000-run grid
nlbench bench report   `nlbench report` over 2,000 generated run directories in 20 to 2,000 configurations
nlbench bench device-check   one GPU in 8 minutes, phases with deadlines: SDPA kernels, epoch time (fast path
                       and paper set-up), packing, bf16 vs fp32, compile modes and determinism, the block, and
                       the grid's projected wall time (--smoke: the CPU at tiny sizes); `make device-check`,
                       or `bash dist/gpu-bundle/run.sh OUT` on a node without network (`make gpu-bundle`)
"""

from __future__ import annotations

import importlib
import sys

# `nlbench bench NAME` -> the module that runs it (nlbench.bench.<module>.main)
BENCHMARKS: dict[str, str] = {
    "block": "block",
    "loader": "loader",
    "train": "train",
    "imports": "imports",
    "sweep": "sweep_startup",
    "report": "report_time",
    "device-check": "device_check",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] not in BENCHMARKS:
        print(
            f"nlbench bench: error: unknown benchmark {argv[0]!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr
        )
        return 2
    return importlib.import_module(f"nlbench.bench.{BENCHMARKS[argv[0]]}").main(argv[1:])
