"""The sweep's tables, rebuilt from the run directories (the source of truth) and written atomically.

``results.csv/json``: one row per run of the spec (run_id, status, one column per swept key, metrics from the
run's result.json, error). ``summary.csv/json``: per configuration (all swept keys except the seed), mean, sample
standard deviation (n - 1; empty for n = 1) and n of the accuracies over the finished runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlbench.io import atomic_write_json, atomic_write_text
from nlbench.sweep.spec import SEED_KEY, SweepRun, SweepSpec, column_names

# Status of a run directory. "finished" and "diverged" are final; the others are (re)run by the next sweep.
FINAL_STATUSES = ("finished", "diverged")
METRIC_COLUMNS = (
    "best_val_acc1", "final_val_acc1", "best_val_acc5", "final_val_acc5", "best_epoch",
    "epochs", "time_s", "train_images_per_s", "params", "nl_params",
)  # fmt: skip
SUMMARY_METRICS = ("best_val_acc1", "final_val_acc1", "best_val_acc5", "final_val_acc5")


@dataclass(frozen=True)
class RunState:
    """What a run directory says about a run.

    status: "new" (nothing yet), "interrupted" (stopped without a final result), "failed", "diverged" or
    "finished". (Tables written while a sweep runs also say "running".)
    resumable: the directory holds checkpoints, so the next attempt passes ``--ckpt_path last``.
    """

    status: str
    resumable: bool
    result: Mapping[str, Any] | None = None

    @property
    def action(self) -> str:
        """What the next sweep does with this run: skip, run, resume or retry."""
        if self.status in FINAL_STATUSES:
            return "skip"
        if self.status == "failed":
            return "retry"
        return "resume" if self.resumable else "run"


def read_state(run_dir: Path) -> RunState:
    """The state of one run directory (missing or unreadable result.json counts as no result)."""
    resumable = any(run_dir.glob("checkpoints/*.ckpt"))
    result = _read_result(run_dir / "result.json")
    status = result.get("status") if result else None
    if status in (*FINAL_STATUSES, "failed"):
        return RunState(status, resumable, result)
    # No result, or "interrupted" (Ctrl-C): stopped mid-way; the next attempt resumes from a checkpoint if any.
    return RunState("interrupted" if run_dir.exists() else "new", resumable, result)


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def axis_columns(spec: SweepSpec) -> dict[str, str]:
    """Dotted swept key -> results column name (short, unique, never a metric column's name)."""
    return column_names(spec.swept_keys, taken=("run_id", "status", "error", *METRIC_COLUMNS, "n"))


def collect_rows(spec: SweepSpec, runs: Sequence[SweepRun], *, running: Collection[str] = ()) -> list[dict[str, Any]]:
    """One row per run of the spec, in spec order, read from ``<output_dir>/runs/<run_id>``."""
    columns = axis_columns(spec)
    rows = []
    for run in runs:
        state = read_state(spec.output_dir / "runs" / run.run_id)
        result = state.result or {}
        status = "running" if run.run_id in running else state.status
        row: dict[str, Any] = {"run_id": run.run_id, "status": status}
        row.update({col: run.params.get(key) for key, col in columns.items()})
        row.update({name: _finite(result.get(name)) for name in METRIC_COLUMNS})
        row["error"] = result.get("error") if state.status == "failed" else None
        rows.append(row)
    return rows


def summarize(rows: Sequence[Mapping[str, Any]], group_columns: Sequence[str]) -> list[dict[str, Any]]:
    """Mean, sample std and n of the accuracies of finished runs per configuration (all groups, in row order)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = json.dumps([row.get(c) for c in group_columns])
        groups.setdefault(key, []).append(row)
    summary = []
    for members in groups.values():
        finished = [r for r in members if r["status"] == "finished"]
        entry: dict[str, Any] = {c: members[0].get(c) for c in group_columns}
        entry.update(
            n=len(finished),
            diverged=sum(r["status"] == "diverged" for r in members),
            failed=sum(r["status"] == "failed" for r in members),
        )
        for metric in SUMMARY_METRICS:
            values = [float(r[metric]) for r in finished if r.get(metric) is not None]
            entry[f"{metric}_mean"] = statistics.fmean(values) if values else None
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(entry)
    return summary


def write_results(
    spec: SweepSpec, runs: Sequence[SweepRun], *, running: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Rebuild results.{csv,json} and summary.{csv,json} in the sweep directory; returns the result rows."""
    rows = collect_rows(spec, runs, running=running)
    columns = axis_columns(spec)
    seed_column = columns.get(SEED_KEY)
    summary = summarize(rows, [c for c in columns.values() if c != seed_column])
    out = spec.output_dir
    atomic_write_json(out / "results.json", rows)
    atomic_write_text(out / "results.csv", _to_csv(rows))
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.csv", _to_csv(summary))
    return rows


def _finite(value: Any) -> Any:
    """NaN/inf become None: JSON has no NaN, and an empty cell reads better than 'nan' in a CSV."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value
