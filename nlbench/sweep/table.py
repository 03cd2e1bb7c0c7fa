"""The sweep's results table: an export of :func:`nlbench.results.load` for people, written atomically.

``results.csv/json``: one row per run of the spec, in spec order: run_id, status, one column per swept key (its
short name, :func:`nlbench.schema.short_name`, made unique), the run record's metrics under
:data:`nlbench.schema.METRICS`, the training recipe (:data:`nlbench.schema.RECIPE`, from the run's resolved config),
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

from nlbench import results, schema, sweepdir
from nlbench.io import atomic_write_json, atomic_write_text
from nlbench.record import RunDir, RunRecord, Unreadable, read_record
from nlbench.sweep.spec import SweepRun, SweepSpec

# The export's word for a run that was not over when the table was written (running or interrupted).
UNFINISHED = "unfinished"


@dataclass(frozen=True)
class RunState:
    """What a run directory says about a run, read by the one reader (:func:`nlbench.record.load_record`) and
    decided by the one status rule (:func:`nlbench.results.resolve_status`).

    status: "new" (nothing yet), "running" (a process holds its lock), "interrupted", "failed", "diverged",
    "finished", or "unreadable" (``error`` says why). resumable: the directory holds checkpoints, so the next
    attempt passes ``--ckpt_path last``. record: the run's result.json, if readable.

    What the next sweep does (:attr:`action`), by what result.json holds:

    ====================================  ======================================================================
    result.json                           the sweep
    ====================================  ======================================================================
    missing                               runs it ("run"; "resume" when checkpoints/ holds one)
    torn (not JSON: a write cut short)    reruns it from its checkpoints ("resume"/"run"); the reader takes the
                                          metrics from metrics.csv meanwhile
    unreadable (not UTF-8, over limits,   moves it aside to ``result.json.unreadable[-N]`` and says so in the
    not a record)                         run's log, then "resume"/"run": never silently run over
    "running" with its lock free          "resume" (the process that wrote it is gone: interrupted)
    "failed"                              "retry" (from its checkpoints when there are any)
    "finished" or "diverged"              "skip"
    ====================================  ======================================================================
    """

    status: str
    resumable: bool
    record: RunRecord | None = None
    error: str | None = None  # why result.json is unreadable

    @property
    def action(self) -> str:
        """What the next sweep does with this run: skip, run, resume or retry."""
        if self.status in schema.FINAL_STATUSES:
            return "skip"
        if self.status == "failed":
            return "retry"
        return "resume" if self.resumable else "run"


def read_state(run_dir: Path) -> RunState:
    """The state of one run directory (see :class:`RunState`)."""
    paths = RunDir(run_dir)
    try:
        record, error = read_record(paths), None
    except Unreadable as err:
        record, error = None, str(err)
    status = results.resolve_status(record.status if record else None, run_dir)
    if error is not None and status != "running":
        status = schema.UNREADABLE
    return RunState(status, paths.resumable, record, error)


def axis_columns(spec: SweepSpec) -> dict[str, str]:
    """Dotted swept key -> results column name (short, unique, never a bookkeeping or metric column's name)."""
    return schema.column_names(spec.swept_keys, taken=(*schema.BOOKKEEPING, *schema.METRICS))


def collect_rows(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """One row per run of the spec, in spec order, read from ``<output_dir>/runs/<run_id>`` by the one reader; then
    one per other run directory there (runs of the same sweep with axes or points this spec no longer lists: a spec
    with fewer axes adds to the table, it never drops finished rows), their swept values read from their records."""
    columns = axis_columns(spec)
    rows = []
    for run in runs:
        run_dir = sweepdir.run_dir(spec.output_dir, run.run_id)
        read = (
            results.read_run(run_dir, run_id=run.run_id, params=run.params, curves=False)
            if run_dir.is_dir()
            else {"status": schema.NEW, "error": None}
        )
        rows.append(_row(run.run_id, read, {col: run.params.get(key) for key, col in columns.items()}))
    ids = {run.run_id for run in runs}
    run_root = spec.output_dir / sweepdir.RUNS
    others = (
        sorted(p.name for p in run_root.iterdir() if p.name not in ids and p.is_dir() and not p.is_symlink())
        if run_root.is_dir()
        else []
    )
    if not others:
        return rows
    reads = [results.read_run(run_root / run_id, run_id=run_id, curves=False) for run_id in others]
    # Keys those runs were swept by (their records' differing keys) that this spec neither sweeps nor fixes.
    known = {schema.canonical_key(key) for key in (*spec.swept_keys, *spec.overrides)}
    extra: dict[str, None] = {}
    for read in reads:
        extra.update(
            dict.fromkeys(
                key
                for key in read.get("differs") or []
                if not schema.is_volatile(key)
                and schema.canonical_key(key) not in known
                and not any(schema.canonical_key(key).startswith(k + ".") for k in known)
            )
        )
    extra_columns = schema.column_names(list(extra), taken=(*schema.BOOKKEEPING, *schema.METRICS, *columns.values()))
    for run_id, read in zip(others, reads):
        config = read.get("config") or {}
        # A record without a config (an earlier version's) still names its vocabulary: seed, normalization, ...
        values = {
            col: config.get(schema.flat_key(key, config), read.get(schema.short_name(key)))
            for key, col in columns.items()
        }
        values.update({col: config.get(key) for key, col in extra_columns.items()})
        rows.append(_row(run_id, read, values))
    return rows


def _row(run_id: str, read: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    status = read["status"]
    row: dict[str, Any] = {"run_id": run_id, "status": UNFINISHED if status in ("running", "interrupted") else status}
    row.update(values)
    row.update({name: read.get(name) for name in schema.METRICS})
    recipe = results.recipe(read.get("config") or {}, read.get("hparams") or {})
    row.update({name: value for name, value in recipe.items() if name not in row})  # a swept key keeps its column
    row["error"] = read.get("error") if status in ("failed", schema.UNREADABLE) else None
    return row


def write_results(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """Rebuild results.{csv,json} in the sweep directory; returns the result rows."""
    import pandas as pd

    rows = collect_rows(spec, runs)
    out = spec.output_dir
    atomic_write_json(out / sweepdir.RESULTS_JSON, rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))  # rows of earlier axes may add columns
    order = [
        "run_id",
        "status",
        *(c for c in columns if c not in ("run_id", "status", "error", *schema.METRICS)),
        *schema.METRICS,
        "error",
    ]
    table = pd.DataFrame.from_records(rows, columns=order if rows else None)
    for column in table.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if any(isinstance(v, (list, dict)) for v in values):  # lists (e.g. nl_stages) as JSON, as the spec has them
            table[column] = table[column].map(
                lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else v
            )
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")  # "30", not pandas' "30.0" for a column with blanks
    atomic_write_text(out / sweepdir.RESULTS_CSV, table.to_csv(index=False, lineterminator="\n") if rows else "")
    return rows
