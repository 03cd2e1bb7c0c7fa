"""The report's view of the runs: :func:`nlbench.results.load`'s table as a :class:`Sweep` (its rows as dicts, the
curves per run id, the configuration keys), and per-configuration statistics over seeds.

A *configuration* is what the sweep compares: the columns that take more than one value across the runs, seed
excluded (:func:`nlbench.results.config_keys`). Statistics over seeds are computed per configuration from finished
runs only; failed, diverged, interrupted and unreadable runs are counted and listed, never averaged.

The seed is the unit of replication: two runs of one configuration and seed (the same run read from two sources, a
rerun in another sweep) count once (:func:`merge_duplicates`: the one with a final outcome, then the newest, is
kept) and the report says how many it merged.

Benchmark files (``nlbench bench train --grid --out FILE``) are read by :mod:`nlbench.throughput_file`, their owner.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from nlbench import results, schema, sweepdir
from nlbench.record import Unreadable
from nlbench.report import stats, style
from nlbench.results import SourceError, WandbSourceError
from nlbench.throughput_file import BenchFileError, Benchmark, load_benchmark

FINISHED = "finished"
RUNNING = "running"
# A row's keys that are bookkeeping or outcome, never configuration.
SEED_KEYS: frozenset[str] = frozenset({schema.SEED, schema.SEED_KEY})

__all__ = [
    "Benchmark",
    "BenchFileError",
    "SourceError",
    "Sweep",
    "WandbSourceError",
    "load_benchmark",
    "load_sweep",
    "summarize",
]


@dataclass
class Sweep:
    """The runs of one sweep, ready for aggregation and plotting."""

    name: str
    source: str
    runs: list[dict[str, Any]]
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    created: str | None = None
    frame: Any = None  # the reader's pandas.DataFrame
    merged: list[dict[str, Any]] = field(default_factory=list)  # duplicates of a kept run (same configuration, seed)

    @property
    def unreadable(self) -> list[dict[str, Any]]:
        """Runs (or files) that could not be read: listed with the file at fault, left out of everything else."""
        return [run for run in self.runs if run.get("status") == schema.UNREADABLE]

    @cached_property
    def config_keys(self) -> tuple[str, ...]:
        """The columns that tell configurations apart (:func:`nlbench.results.config_keys`)."""
        return tuple(results.config_keys(self.frame)) if self.frame is not None else ()

    @cached_property
    def summary(self) -> list[dict[str, Any]]:
        """:func:`summarize` of every metric, computed once per report (figures and tables ask for it often)."""
        return summarize(self, schema.METRICS)

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [run for run in self.runs if run.get("status") == FINISHED]

    @property
    def running(self) -> list[dict[str, Any]]:
        """Runs still training: shown as running, excluded from statistics until they end."""
        return [run for run in self.runs if run.get("status") == RUNNING]

    @property
    def at_chance(self) -> list[dict[str, Any]]:
        """Finished runs whose top-1 is below NEAR_CHANCE times chance (1 / classes): they learnt next to nothing,
        so their comparisons say little (flagged in the report, still counted)."""
        return [run for run in self.finished if near_chance(run)]

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        """Runs that failed, diverged, were interrupted or never started: listed in the report, excluded from
        statistics."""
        return [run for run in self.runs if run.get("status") not in (FINISHED, RUNNING)]


def near_chance(run: Mapping[str, Any]) -> bool:
    """Whether a run's final (or validation-selected) top-1 is below :data:`nlbench.run.NEAR_CHANCE` times chance;
    False when the record does not say how many classes there are."""
    classes = run.get(schema.CLASSES)
    acc = run.get(schema.SELECTED_ACC1) if stats.finite(run.get(schema.SELECTED_ACC1)) else run.get(schema.FINAL_ACC1)
    if not stats.finite(classes) or float(classes) < 2 or not stats.finite(acc):
        return False
    return float(acc) < schema.NEAR_CHANCE / float(classes)


def merge_duplicates(
    runs: Sequence[dict[str, Any]], keys: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, merged): one run per configuration (the values of ``keys``) and seed, preferring a final outcome
    (finished, diverged), then a running one, then the newest record; runs without a seed or unreadable are kept
    as they are. The kept run stays where the first of its duplicates was."""

    def rank(run: Mapping[str, Any]) -> tuple[int, str]:
        status = run.get("status")
        return (
            2 if status in schema.FINAL_STATUSES else 1 if status == RUNNING else 0,
            str(run.get("written_at") or ""),
        )

    chosen: dict[tuple[Any, ...], int] = {}
    slots: list[dict[str, Any] | tuple[Any, ...]] = []
    merged: list[dict[str, Any]] = []
    for run in runs:
        if run.get("status") == schema.UNREADABLE or run.get("seed") is None:
            slots.append(run)
            continue
        key = (*config_of(run, keys), schema.hashable(run.get("seed")))
        if key not in chosen:
            chosen[key] = len(slots)
            slots.append(run)
            continue
        held = slots[chosen[key]]
        assert isinstance(held, dict)
        if rank(run) > rank(held):
            slots[chosen[key]], run = run, held
        merged.append(run)
    return [slot for slot in slots if isinstance(slot, dict)], merged


def top1_error(acc: float | None) -> float | None:
    """Top-1 error in percent from an accuracy fraction in [0, 1] (the paper's figure)."""
    return None if acc is None else 100.0 * (1.0 - acc)


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (None below two values) and count of the non-missing values."""
    est = stats.estimate(values)
    return est.mean, est.std, est.n


def config_of(run: Mapping[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    """The run's values of ``keys`` as a hashable tuple (lists such as ``nl_stages`` become tuples)."""
    return tuple(schema.hashable(run.get(key)) for key in keys)


def group_runs(
    runs: Iterable[Mapping[str, Any]], keys: Sequence[str]
) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    """Runs by configuration (the values of ``keys``), configurations in sorted order (None first)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(config_of(run, keys), []).append(run)
    return dict(sorted(groups.items(), key=lambda item: tuple(_sort_key(v) for v in item[0])))


def summarize(sweep: Sweep, metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per configuration: its key values, ``n`` finished runs, ``n_unfinished``, and for each metric
    ``<metric>_mean``, ``<metric>_std`` and the 95% interval ``<metric>_low``, ``<metric>_high`` over the finished
    runs' seeds (:func:`nlbench.report.stats.estimate`)."""
    if metrics is None:  # every metric (read at call time: the vocabulary is nlbench.schema's), once per sweep
        return sweep.summary
    if metrics is schema.METRICS and "summary" in sweep.__dict__:
        return sweep.summary
    keys = sweep.config_keys
    rows = []
    for config, runs in group_runs([r for r in sweep.runs if r.get("status") != schema.UNREADABLE], keys).items():
        finished = [run for run in runs if run.get("status") == FINISHED]
        row: dict[str, Any] = dict(zip(keys, config))
        row["n"] = len(finished)
        row["n_running"] = sum(run.get("status") == RUNNING for run in runs)
        row["n_unfinished"] = len(runs) - len(finished) - row["n_running"]
        row["seeds"] = sorted((run["seed"] for run in finished if run.get("seed") is not None), key=_sort_key)
        row["n_chance"] = sum(near_chance(run) for run in finished)
        for metric in metrics:
            bounds = (0.0, 1.0) if metric in schema.ACCURACIES else None  # a mean accuracy cannot leave [0, 1]
            est = stats.estimate((run.get(metric) for run in finished), bounds=bounds)
            row[f"{metric}_mean"], row[f"{metric}_std"] = est.mean, est.std
            row[f"{metric}_low"], row[f"{metric}_high"] = est.low, est.high
        rows.append(row)
    return rows


def mean_curve(
    sweep: Sweep, runs: Iterable[Mapping[str, Any]], column: str = schema.FINAL_ACC1
) -> list[tuple[int, float, float | None]]:
    """(epoch, mean, std) of one metrics.csv column over the given runs, for the epochs any of them reached."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for row in sweep.curves.get(run["run_id"], []):
            if row.get(column) is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(row[column])
    return [(epoch, *mean_std(values)[:2]) for epoch, values in sorted(by_epoch.items())]


def load_sweep(*sources: str | os.PathLike[str], groups: Sequence[str] = ()) -> Sweep:
    """The runs of any mix of sweep directories, run directories and ``wandb:ENTITY/PROJECT`` sources
    (:func:`nlbench.results.load`), with their learning curves."""
    if not sources:
        raise ValueError("give a sweep directory, a run directory or wandb:ENTITY/PROJECT")
    frame = results.load(*sources, curves=True, groups=groups)
    style.remember_methods(results.method_looks(frame))  # labels of class paths as their runs recorded them
    clean = frame.astype(object).where(frame.notna(), None)
    runs = clean.drop(columns=["curve"]).to_dict("records")
    curves = {str(run["run_id"]): curve for run, curve in zip(runs, frame["curve"]) if curve}
    names = []
    for source in map(str, sources):
        names.append(source if source.startswith("wandb:") else _source_name(Path(source)))
    stamps = [_mtime(Path(source)) for source in map(str, sources) if not source.startswith("wandb:")]
    created = max((s for s in stamps if s), default=datetime.now(timezone.utc))
    runs, merged = merge_duplicates(runs, results.config_keys(frame))
    return Sweep(
        name=" + ".join(names),
        source=", ".join(map(str, sources)),
        runs=runs,
        curves=curves,
        created=created.strftime("%Y-%m-%d %H:%M UTC"),
        frame=frame,
        merged=merged,
    )


def _source_name(path: Path) -> str:
    """A sweep's name from its sweep.yaml (else the folder's name)."""
    try:
        spec = sweepdir.read_spec(path)
    except Unreadable:  # listed among the unreadable files by the reader
        spec = None
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return spec["name"]
    return path.resolve().name


def _mtime(path: Path) -> datetime | None:
    """When the newest record of a source was written."""
    files = [path / "result.json", *path.glob("runs/*/result.json")]
    times = [f.stat().st_mtime for f in files if f.is_file()]
    return datetime.fromtimestamp(max(times), tz=timezone.utc) if times else None


def _sort_key(value: Any) -> tuple[int, Any]:
    """Order None < numbers < everything else (as text), so mixed columns sort without TypeError."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value)
    return (2, str(value))
