"""Offline results: the runs of sweeps, run directories or W&B (nlbench.results), plotted and compared in
report.md / report.html.

    from nlbench.report import load_benchmark, load_sweep, write_report
    write_report(load_sweep("sweeps/demo"), "sweeps/demo/report", benchmarks=[load_benchmark("bench_cpu.json")])
"""

from typing import Any

from nlbench.report.collect import Benchmark, Sweep, load_benchmark, load_sweep, summarize


def __getattr__(name: str) -> Any:
    # write_report needs matplotlib: imported on first use, so `nlbench report` parses its options without it.
    if name == "write_report":
        from nlbench.report.render import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Benchmark", "Sweep", "load_benchmark", "load_sweep", "summarize", "write_report"]
