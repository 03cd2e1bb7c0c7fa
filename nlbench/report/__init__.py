"""Offline results: collect a sweep's runs (directory or W&B), plot them, and write report.md / report.html.

    from nlbench.report import load_sweep, write_report
    write_report(load_sweep("sweeps/demo"), "sweeps/demo/report")
"""

from nlbench.report.collect import Sweep, load_sweep, load_wandb, summarize
from nlbench.report.render import write_report

__all__ = ["Sweep", "load_sweep", "load_wandb", "summarize", "write_report"]
