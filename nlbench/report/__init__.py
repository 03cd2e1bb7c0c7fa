"""Offline results: collect a sweep's runs (directory or W&B), plot them, and write report.md / report.html.

    from nlbench.report import load_benchmark, load_sweep, write_report
    write_report(load_sweep("sweeps/demo"), "sweeps/demo/report", benchmarks=[load_benchmark("bench_cpu.json")])
"""

from nlbench.report.collect import Benchmark, Sweep, load_benchmark, load_sweep, load_wandb, summarize
from nlbench.report.render import write_report

__all__ = ["Benchmark", "Sweep", "load_benchmark", "load_sweep", "load_wandb", "summarize", "write_report"]
