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
from nlbench.run import short_name
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
    """One row per run of the spec, in spec order, read from ``<output_dir>/runs/<run_id>`` by the one reader; then
    one per other run directory there (runs of the same sweep with axes or points this spec no longer lists: a spec
    with fewer axes adds to the table, it never drops finished rows), their swept values read from their records."""
    columns = axis_columns(spec)
    rows = []
    for run in runs:
        run_dir = spec.output_dir / "runs" / run.run_id
        read = results.read_run(run_dir, run_id=run.run_id, params=run.params, curves=False) if run_dir.is_dir() \
            else {"status": results.NEW, "error": None}
        rows.append(_row(run.run_id, read, {col: run.params.get(key) for key, col in columns.items()}))
    ids = {run.run_id for run in runs}
    run_root = spec.output_dir / "runs"
    others = sorted(p.name for p in run_root.iterdir() if p.name not in ids and p.is_dir() and not p.is_symlink()) \
        if run_root.is_dir() else []  # fmt: skip
    if not others:
        return rows
    reads = [results.read_run(run_root / run_id, run_id=run_id, curves=False) for run_id in others]
    # Keys those runs were swept by (their records' differing keys) that this spec neither sweeps nor fixes.
    known = {record_.canonical_key(key) for key in (*spec.swept_keys, *spec.overrides)}
    extra: dict[str, None] = {}
    for read in reads:
        extra.update(dict.fromkeys(key for key in read.get("differs") or [] if not record_.is_volatile(key)
                                   and record_.canonical_key(key) not in known
                                   and not any(record_.canonical_key(key).startswith(k + ".") for k in known)))
    extra_columns = column_names(list(extra), taken=(*record_.BOOKKEEPING, *record_.METRICS, *columns.values()))
    for run_id, read in zip(others, reads):
        config = read.get("config") or {}
        # A record without a config (an earlier version's) still names its vocabulary: seed, normalization, ...
        values = {col: config.get(results.flat_key(key, config), read.get(short_name(key)))
                  for key, col in columns.items()}  # fmt: skip
        values.update({col: config.get(key) for key, col in extra_columns.items()})
        rows.append(_row(run_id, read, values))
    return rows


def _row(run_id: str, read: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    status = read["status"]
    row: dict[str, Any] = {"run_id": run_id, "status": UNFINISHED if status in ("running", "interrupted") else status}
    row.update(values)
    row.update({name: read.get(name) for name in record_.METRICS})
    recipe = results.recipe(read.get("config") or {}, read.get("hparams") or {})
    row.update({name: value for name, value in recipe.items() if name not in row})  # a swept key keeps its column
    row["error"] = read.get("error") if status in ("failed", results.UNREADABLE) else None
    return row


def write_results(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """Rebuild results.{csv,json} in the sweep directory; returns the result rows."""
    import pandas as pd

    rows = collect_rows(spec, runs)
    out = spec.output_dir
    atomic_write_json(out / "results.json", rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))  # rows of earlier axes may add columns
    order = ["run_id", "status", *(c for c in columns if c not in ("run_id", "status", "error", *record_.METRICS)),
             *record_.METRICS, "error"]  # fmt: skip
    table = pd.DataFrame.from_records(rows, columns=order if rows else None)
    for column in table.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if any(isinstance(v, (list, dict)) for v in values):  # lists (e.g. nl_stages) as JSON, as the spec has them
            table[column] = table[column].map(lambda v: json.dumps(v, separators=(",", ":"))
                                              if isinstance(v, (list, dict)) else v)
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")  # "30", not pandas' "30.0" for a column with blanks
    atomic_write_text(out / "results.csv", table.to_csv(index=False, lineterminator="\n") if rows else "")
    return rows
