"""``nlbench bench imports``: wall time of short ``nlbench`` commands (start-up and imports), in fresh processes.

Each command runs ``--repeats`` times as ``python -m nlbench ...``; the table gives the median and the fastest run,
the exit code and the lines printed. The target: ``nlbench --help`` and a usage error under 1 s. The training
commands need torch and Lightning, whose imports alone take seconds (the reference rows).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

from jsonargparse import ArgumentParser

COMMANDS: tuple[tuple[str, list[str]], ...] = (
    ("nlbench --help", ["-m", "nlbench", "--help"]),
    ("nlbench report --bogus (usage error)", ["-m", "nlbench", "report", "--bogus"]),
    ("nlbench sweep --bogus (usage error)", ["-m", "nlbench", "sweep", "--bogus"]),
    ("nlbench bench --help", ["-m", "nlbench", "bench", "--help"]),
    ("nlbench fit --bogus (usage error)", ["-m", "nlbench", "fit", "--bogus"]),
    ("nlbench fit --help", ["-m", "nlbench", "fit", "--help"]),
    ("reference: python -c 'import torch'", ["-c", "import torch"]),
    ("reference: python -c 'import lightning'", ["-c", "import lightning"]),
)


def time_command(args: list[str], repeats: int) -> tuple[list[float], int, int]:
    """Wall times of ``repeats`` fresh runs of ``python ARGS``, the last exit code and its number of output lines."""
    times, code, lines = [], 0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=dict(os.environ))
        times.append(time.perf_counter() - start)
        code, lines = proc.returncode, len((proc.stdout + proc.stderr).splitlines())
    return times, code, lines


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="nlbench bench imports", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    print("| command | median (s) | fastest (s) | exit code | output lines |")
    print("|---|---|---|---|---|")
    for label, command in COMMANDS:
        times, code, lines = time_command(command, args.repeats)
        print(f"| {label} | {statistics.median(times):.2f} | {min(times):.2f} | {code} | {lines} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
