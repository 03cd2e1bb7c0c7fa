"""The sweep's results table: an export of :func:`nlbench.results.load` for people, written atomically.

``results.csv/json``: one row per run of the spec, in spec order: run_id, status, one column per swept key (its
short name, :func:`nlbench.run.short_name`, made unique), the run record's metrics under
:data:`nlbench.run.METRICS`, the training recipe (:data:`nlbench.results.RECIPE`, from the run's resolved config),
error. Never read back: every reader (report, status, notebooks) loads the run
directories through :mod:`nlbench.results`. The file is a snapshot, so it never claims a run is alive: a run that
was training when it was written says "unfinished" (a kill -9 of the sweep cannot leave "running" behind); the
live answer, running or interrupted, comes from the run's lock (``nlbench report``, ``nlbench.results.load``).
Statistics over seeds are the report's: the table holds no aggregate of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlbench import results
from nlbench import run as record_
from nlbench.io import atomic_write_json, atomic_write_text
from nlbench.sweep.spec import SweepRun, SweepSpec, column_names

FINAL_STATUSES = record_.FINAL_STATUSES  # "finished" and "diverged" are final; the others are (re)run
# The export's word for a run that was not over when the table was written (running or interrupted).
UNFINISHED = "unfinished"


@dataclass(frozen=True)
class RunState:
    """What a run directory says about a run (:func:`nlbench.results.resolve_status`).

    status: "new" (nothing yet), "running" (a process holds its lock), "interrupted", "failed", "diverged" or
    "finished". resumable: the directory holds checkpoints, so the next attempt passes ``--ckpt_path last``.
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
    return RunState(results.resolve_status(record.status if record else None, run_dir), paths.resumable, record)


def axis_columns(spec: SweepSpec) -> dict[str, str]:
    """Dotted swept key -> results column name (short, unique, never a bookkeeping or metric column's name)."""
    return column_names(spec.swept_keys, taken=(*record_.BOOKKEEPING, *record_.METRICS))


def collect_rows(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """One row per run of the spec, in spec order, read from ``<output_dir>/runs/<run_id>`` by the one reader."""
    columns = axis_columns(spec)
    rows = []
    for run in runs:
        run_dir = spec.output_dir / "runs" / run.run_id
        read = results.read_run(run_dir, run_id=run.run_id, params=run.params, curves=False) if run_dir.is_dir() \
            else {"status": results.NEW, "error": None}
        status = read["status"]
        row: dict[str, Any] = {"run_id": run.run_id,
                               "status": UNFINISHED if status in ("running", "interrupted") else status}
        row.update({col: run.params.get(key) for key, col in columns.items()})
        row.update({name: read.get(name) for name in record_.METRICS})
        recipe = results.recipe(read.get("config") or {}, read.get("hparams") or {})
        row.update({name: value for name, value in recipe.items() if name not in row})  # a swept key keeps its column
        row["error"] = read.get("error") if status in ("failed", results.UNREADABLE) else None
        rows.append(row)
    return rows


def write_results(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """Rebuild results.{csv,json} in the sweep directory; returns the result rows."""
    import pandas as pd

    rows = collect_rows(spec, runs)
    out = spec.output_dir
    atomic_write_json(out / "results.json", rows)
    table = pd.DataFrame.from_records(rows, columns=list(rows[0]) if rows else None)
    for column in table.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if any(isinstance(v, (list, dict)) for v in values):  # lists (e.g. nl_stages) as JSON, as the spec has them
            table[column] = table[column].map(lambda v: json.dumps(v, separators=(",", ":"))
                                              if isinstance(v, (list, dict)) else v)
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")  # "30", not pandas' "30.0" for a column with blanks
    atomic_write_text(out / "results.csv", table.to_csv(index=False, lineterminator="\n") if rows else "")
    return rows
