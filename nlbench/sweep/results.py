"""The sweep's results table, rebuilt from the run directories (the source of truth) and written atomically.

``results.csv/json``: one row per run of the spec: run_id, status, one column per swept key (its short name,
:func:`nlbench.run.short_name`, made unique), the run record's metrics under :data:`nlbench.run.METRICS`, error.
Statistics over seeds are the report's (``nlbench report SWEEP_DIR``): the table holds no aggregate of its own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlbench import run as record_
from nlbench.io import atomic_write_json, atomic_write_text
from nlbench.sweep.spec import SweepRun, SweepSpec, column_names

FINAL_STATUSES = record_.FINAL_STATUSES  # "finished" and "diverged" are final; the others are (re)run


@dataclass(frozen=True)
class RunState:
    """What a run directory says about a run.

    status: "new" (nothing yet), "interrupted" (stopped without a final result, or a "running" record whose
    process is gone), "failed", "diverged" or "finished". (Tables written while a sweep runs also say "running".)
    resumable: the directory holds checkpoints, so the next attempt passes ``--ckpt_path last``.
    record: the run's result.json, if readable.
    """

    status: str
    resumable: bool
    record: record_.RunRecord | None = None

    @property
    def action(self) -> str:
        """What the next sweep does with this run: skip, run, resume or retry."""
        if self.status in FINAL_STATUSES:
            return "skip"
        if self.status == "failed":
            return "retry"
        return "resume" if self.resumable else "run"


def read_state(run_dir: Path) -> RunState:
    """The state of one run directory (a missing or unreadable result.json counts as no result)."""
    paths = record_.RunDir(run_dir)
    record = record_.read_record(paths)
    status = record.status if record else None
    if status in (*FINAL_STATUSES, "failed"):
        return RunState(status, paths.resumable, record)
    # No result, "running" or "interrupted" (Ctrl-C): stopped mid-way; the next attempt resumes from a checkpoint.
    return RunState("interrupted" if run_dir.exists() else "new", paths.resumable, record)


def axis_columns(spec: SweepSpec) -> dict[str, str]:
    """Dotted swept key -> results column name (short, unique, never a bookkeeping or metric column's name)."""
    return column_names(spec.swept_keys, taken=(*record_.BOOKKEEPING, *record_.METRICS))


def collect_rows(spec: SweepSpec, runs: Sequence[SweepRun], *, running: Collection[str] = ()) -> list[dict[str, Any]]:
    """One row per run of the spec, in spec order, read from ``<output_dir>/runs/<run_id>``."""
    columns = axis_columns(spec)
    rows = []
    for run in runs:
        state = read_state(spec.output_dir / "runs" / run.run_id)
        metrics = state.record.metrics if state.record else dict.fromkeys(record_.METRICS)
        status = "running" if run.run_id in running else state.status
        row: dict[str, Any] = {"run_id": run.run_id, "status": status}
        row.update({col: run.params.get(key) for key, col in columns.items()})
        row.update({name: metrics.get(name) for name in record_.METRICS})
        row["error"] = state.record.error if state.record and state.status == "failed" else None
        rows.append(row)
    return rows


def write_results(
    spec: SweepSpec, runs: Sequence[SweepRun], *, running: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Rebuild results.{csv,json} in the sweep directory; returns the result rows."""
    rows = collect_rows(spec, runs, running=running)
    out = spec.output_dir
    atomic_write_json(out / "results.json", rows)
    atomic_write_text(out / "results.csv", _to_csv(rows))
    return rows


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
