"""Collect a sweep's runs as tidy records (plain dicts, no pandas) from its directory or from W&B.

A record is one run: ``run_id``, ``status`` ("finished" | "failed" | "diverged" | ...), ``error``, the run's
hyper-parameters under their short names (``normalization``, ``reduction``, ``init``, ``seed``, ...), and the
metrics of its record under :data:`nlbench.run.METRICS` (``val/acc1_best``, ``val/acc1``, ``train/images_per_s``,
``params``, ...); see :class:`nlbench.run.RunRecord`.
Learning curves are kept apart, per run id, as one row per epoch.

A :class:`Benchmark` is one file written by ``nlbench bench train --grid --out FILE``: images/s and peak memory of
training steps per backbone x normalization x reduction x heads, validated on load.

A *configuration* is what the sweep compares: the hyper-parameters that take more than one value across the runs,
seed excluded (:attr:`Sweep.config_keys`). Statistics over seeds are computed per configuration from finished runs
only; failed and diverged runs are counted and listed, never averaged.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nlbench import run as run_
from nlbench.report import stats

FINISHED = "finished"
RUNNING = "running"
# Where a run trained, as far as its record says (else its config.yaml's trainer): for the throughput caveat.
MACHINE_KEYS = run_.MACHINE_KEYS
# A flat record's keys that are bookkeeping or outcome, never hyper-parameters.
BOOKKEEPING: frozenset[str] = frozenset({*run_.BOOKKEEPING, "run_dir", "hparams", *run_.METRICS, *MACHINE_KEYS})
# Per-epoch columns kept from metrics.csv (CSVLogger output; sparse rows, one metric family per row).
CURVE_COLUMNS: tuple[str, ...] = (
    "train/loss",
    "train/acc1",
    "val/loss",
    run_.FINAL_ACC1,
    run_.FINAL_ACC5,
    "lr",
    run_.IMAGES_PER_S,
)
SEED_KEYS: frozenset[str] = frozenset({run_.SEED, run_.SEED_KEY})


class SweepDirError(FileNotFoundError):
    """A sweep directory is missing or lacks its results table."""


class WandbSourceError(RuntimeError):
    """W&B could not be used as a source (offline, no credentials, unknown project)."""


class BenchFileError(ValueError):
    """A benchmark file is not JSON or not in the schema ``nlbench bench train --grid --out`` writes."""


@dataclass
class Sweep:
    """The runs of one sweep, ready for aggregation and plotting."""

    name: str
    source: str
    runs: list[dict[str, Any]]
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    spec: dict[str, Any] | None = None
    created: str | None = None

    @property
    def config_keys(self) -> tuple[str, ...]:
        """The hyper-parameters that tell configurations apart: those varying across runs (seed excluded; a key
        missing from some runs counts as a distinct value), minus any that the others already determine (e.g.
        ``nl_blocks`` 0 next to ``normalization`` "none" for a baseline), dropping later-seen keys first so the
        sweep's own axes (the results table's columns) are kept."""
        names: dict[str, None] = {}
        for run in self.runs:
            names.update((key, None) for key in run if key not in BOOKKEEPING and key not in SEED_KEYS
                         and key not in run_.METRICS)
        # A run without a record yet (running, or failed before writing one) knows only its swept keys: a key it
        # lacks is unknown there, not a distinct value (else a mid-sweep report invents a "dataset" axis).
        def values(key: str) -> set[tuple[Any, ...]]:
            return {config_of(run, [key]) for run in self.runs
                    if run.get("status") == FINISHED or run.get(key) is not None}

        keys = [key for key in names if len(values(key)) > 1]
        configurations = len({config_of(run, keys) for run in self.runs})
        for key in reversed(list(keys)):
            rest = [k for k in keys if k != key]
            if len({config_of(run, rest) for run in self.runs}) == configurations:
                keys = rest
        return tuple(keys)

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [run for run in self.runs if run.get("status") == FINISHED]

    @property
    def running(self) -> list[dict[str, Any]]:
        """Runs still training: shown as running, excluded from statistics until they end."""
        return [run for run in self.runs if run.get("status") == RUNNING]

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        """Runs that failed, diverged, were interrupted or never started: listed in the report, excluded from
        statistics."""
        return [run for run in self.runs if run.get("status") not in (FINISHED, RUNNING)]


def top1_error(acc: float | None) -> float | None:
    """Top-1 error in percent from an accuracy fraction in [0, 1] (the paper's figure)."""
    return None if acc is None else 100.0 * (1.0 - acc)


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (None below two values) and count of the non-missing values."""
    est = stats.estimate(values)
    return est.mean, est.std, est.n


def config_of(run: Mapping[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    """The run's values of ``keys`` as a hashable tuple (lists such as ``nl_stages`` become tuples)."""
    return tuple(_freeze(run.get(key)) for key in keys)


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
    metrics = run_.METRICS if metrics is None else metrics  # read at call time: the vocabulary is nlbench.run's
    keys = sweep.config_keys
    rows = []
    for config, runs in group_runs(sweep.runs, keys).items():
        finished = [run for run in runs if run.get("status") == FINISHED]
        row: dict[str, Any] = dict(zip(keys, config))
        row["n"] = len(finished)
        row["n_running"] = sum(run.get("status") == RUNNING for run in runs)
        row["n_unfinished"] = len(runs) - len(finished) - row["n_running"]
        row["seeds"] = sorted((run["seed"] for run in finished if run.get("seed") is not None), key=_sort_key)
        for metric in metrics:
            est = stats.estimate(run.get(metric) for run in finished)
            row[f"{metric}_mean"], row[f"{metric}_std"] = est.mean, est.std
            row[f"{metric}_low"], row[f"{metric}_high"] = est.low, est.high
        rows.append(row)
    return rows


def mean_curve(
    sweep: Sweep, runs: Iterable[Mapping[str, Any]], column: str = run_.FINAL_ACC1
) -> list[tuple[int, float, float | None]]:
    """(epoch, mean, std) of one metrics.csv column over the given runs, for the epochs any of them reached."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for row in sweep.curves.get(run["run_id"], []):
            if row.get(column) is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(row[column])
    return [(epoch, *mean_std(values)[:2]) for epoch, values in sorted(by_epoch.items())]


# --------------------------------------------------------------------------------------------------------------
# Local sweep directory


def load_sweep(sweep_dir: str | os.PathLike[str]) -> Sweep:
    """Read ``<sweep_dir>/results.json`` (or results.csv), each run's result.json and metrics.csv; a plain
    ``nlbench fit`` run directory (result.json or config.yaml) reads as a sweep of one run (:func:`load_run_dir`)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise SweepDirError(f"sweep directory {root} does not exist")
    paths = run_.RunDir(root)
    if not (root / "results.json").is_file() and not (root / "results.csv").is_file() and (
            paths.result.is_file() or paths.config.is_file()):
        return load_run_dir(root)
    table = root / "results.json"
    if table.is_file():
        rows = _read_results_json(table)
    elif (table := root / "results.csv").is_file():
        rows = [_parse_row(row) for row in _read_csv(table)]
    else:
        raise SweepDirError(f"{root} holds no results.json or results.csv: is it a sweep directory (nlbench sweep)?")
    spec = _read_spec(root / "sweep.yaml")
    runs, curves = [], {}
    for row in rows:
        if "run_id" not in row:
            raise ValueError(f"{table}: a row has no run_id column: {sorted(row)}")
        run_dir = root / "runs" / str(row["run_id"])
        runs.append(_with_device(_record(row, run_.read_record(run_dir)), run_dir))
        metrics = run_.RunDir(run_dir).metrics_csv
        if metrics.is_file():
            curves[str(row["run_id"])] = epoch_rows(_read_csv(metrics))
    name = str((spec or {}).get("name") or root.resolve().name)
    created = datetime.fromtimestamp(table.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Sweep(name=name, source=str(root), runs=runs, curves=curves, spec=spec, created=created)


def epoch_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Collapse CSVLogger rows (sparse: train and val metrics on separate rows) to one row per epoch holding the
    last logged value of each :data:`CURVE_COLUMNS` column."""
    epochs: dict[int, dict[str, float]] = {}
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        merged = epochs.setdefault(int(epoch), {"epoch": int(epoch)})
        for column in CURVE_COLUMNS:
            # A metric logged both per step and per epoch appears as "<name>_epoch" (Lightning's naming).
            value = _number(row.get(f"{column}_epoch"))
            value = _number(row.get(column)) if value is None else value
            if value is not None:
                merged[column] = value
    return [epochs[epoch] for epoch in sorted(epochs)]


def _record(row: Mapping[str, Any], record: run_.RunRecord | None) -> dict[str, Any]:
    """Merge a results-table row with its run's record into one flat dict."""
    # A results row holds the swept keys under their short column names (nlbench.run.short_name), the record's
    # hparams use the same names and win where both exist; the record is the run's own word on metrics and status,
    # except that a "running" record of a run the table no longer lists as running means its process is gone.
    flat: dict[str, Any] = {
        ("seed" if key in SEED_KEYS else key): value for key, value in row.items() if key not in BOOKKEEPING
    }
    flat.update({key: row.get(key) for key in ("status", "error", *run_.METRICS)})
    if record is not None:
        flat.update(record.flat())
        if record.status == "running" and row.get("status") not in (None, "running"):
            flat["status"] = row["status"]
    flat["run_id"] = str(row["run_id"])
    # The sweep's table says "running" while a child trains, whatever an earlier attempt left in result.json.
    flat["status"] = RUNNING if row.get("status") == RUNNING else flat.get("status") or "missing"
    return flat


def _with_device(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Fill ``device`` from the run's config.yaml (trainer.accelerator x devices) when its record does not say."""
    config = run_.RunDir(run_dir).config
    if record.get("device") is None and config.is_file():
        try:
            trainer = (_read_spec(config) or {}).get("trainer") or {}
        except yaml.YAMLError:
            trainer = {}
        accelerator, devices = trainer.get("accelerator"), trainer.get("devices")
        if accelerator and accelerator != "auto":
            record["device"] = f"{accelerator} x{devices}" if devices not in (None, 1, "1") else str(accelerator)
    return record


def merge(sweeps: Sequence[Sweep]) -> Sweep:
    """Several sources (sweep and run directories, W&B projects) as one: runs side by side, grouped later by
    whatever varies across all of them. A run id seen twice keeps its first source."""
    if len(sweeps) == 1:
        return sweeps[0]
    runs, curves, seen = [], {}, set()
    for sweep in sweeps:
        for run in sweep.runs:
            if run["run_id"] in seen:
                continue
            seen.add(run["run_id"])
            runs.append(run)
            if run["run_id"] in sweep.curves:
                curves[run["run_id"]] = sweep.curves[run["run_id"]]
    created = max((s.created for s in sweeps if s.created), default=None)
    return Sweep(name=" + ".join(s.name for s in sweeps), source=", ".join(s.source for s in sweeps), runs=runs,
                 curves=curves, created=created)


def load_run_dir(run_dir: str | os.PathLike[str]) -> Sweep:
    """A single run directory (a plain ``nlbench fit``) as a sweep of one run: its record and learning curve."""
    root = Path(run_dir)
    if not root.is_dir():
        raise SweepDirError(f"run directory {root} does not exist")
    paths = run_.RunDir(root)
    record = run_.load_run_record(root)
    flat = _with_device({**record.flat(), "run_id": root.resolve().name}, root)
    curves = {flat["run_id"]: epoch_rows(_read_csv(paths.metrics_csv))} if paths.metrics_csv.is_file() else {}
    stamp = paths.result if paths.result.is_file() else paths.config
    created = datetime.fromtimestamp(stamp.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Sweep(name=record.run_name or flat["run_id"], source=str(root), runs=[flat], curves=curves,
                 created=created)


def _read_results_json(path: Path) -> list[dict[str, Any]]:
    rows = _read_json(path)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: expected a list of run rows (objects), got {type(rows).__name__}")
    return rows


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _read_spec(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    spec = yaml.safe_load(path.read_text())
    return spec if isinstance(spec, dict) else None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _parse_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Type the strings of a results.csv row: numbers, booleans, JSON lists/objects, empty -> None."""
    return {key: _parse_value(value) for key, value in row.items()}


def _parse_value(value: str | None) -> Any:
    if value is None or value == "":
        return None
    if value in ("True", "true", "False", "false"):
        return value.lower() == "true"
    if value[0] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _sort_key(value: Any) -> tuple[int, Any]:
    """Order None < numbers < everything else (as text), so mixed columns sort without TypeError."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value)
    return (2, str(value))


# --------------------------------------------------------------------------------------------------------------
# W&B


def load_wandb(path: str, *, groups: Sequence[str] = (), timeout: int = 20) -> Sweep:
    """Read the runs of a W&B project ``ENTITY/PROJECT`` (optionally only some groups) as a :class:`Sweep`.

    Hyper-parameters come from each run's uploaded config (matched by short name), results from its summary,
    learning curves from its history. Needs network access and credentials (``wandb login``).
    """
    if path.count("/") != 1 or not all(path.split("/")):
        raise ValueError(f"--wandb must be ENTITY/PROJECT, got {path!r}")
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_OFFLINE") == "true":
        raise WandbSourceError(
            f"cannot read W&B project {path}: WANDB_MODE is {os.environ.get('WANDB_MODE', 'offline')}; "
            "report from the local sweep directory instead (nlbench report SWEEP_DIR)"
        )
    import requests
    import wandb

    runs, curves = [], {}
    try:
        api = wandb.Api(timeout=timeout)
        for wandb_run in api.runs(path, filters={"group": {"$in": list(groups)}} if groups else {}):
            record = _wandb_record(wandb_run)
            runs.append(record)
            curves[record["run_id"]] = epoch_rows(wandb_run.scan_history(keys=["epoch", "val/acc1"]))
    except (wandb.errors.Error, requests.RequestException, ValueError) as err:  # no key, offline, unknown project
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WandbSourceError(
            f"cannot read W&B project {path} ({message}); check `wandb login` and network access, or report from the "
            "local sweep directory instead (nlbench report SWEEP_DIR)"
        ) from err
    if not runs:
        raise WandbSourceError(f"W&B project {path} has no runs" + (f" in groups {list(groups)}" if groups else ""))
    name = f"{path}" + (f" ({', '.join(groups)})" if groups else "")
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Sweep(name=name, source=f"wandb:{path}", runs=runs, curves=curves, created=created)


# W&B run state -> record status.
_WANDB_STATUS = {"finished": FINISHED, "running": "running", "crashed": "failed", "failed": "failed",
                 "killed": "failed"}


def _wandb_record(wandb_run: Any) -> dict[str, Any]:
    # nlbench uploads the record's hparams at the top level of the W&B config (the full resolved config goes under
    # "config") and puts the record's metrics in the summary under the same names (nlbench.callbacks.RunResult);
    # params and nl_params are also logged as hyper-parameters.
    config = dict(wandb_run.config)
    summary = dict(wandb_run.summary)
    record: dict[str, Any] = {key: config[key] for key in run_.HPARAMS if key in config}
    for name in run_.METRICS:
        value = summary.get(name, config.get(name))
        record[name] = value.get("max") if isinstance(value, Mapping) else value  # define_metric(summary="max")
    if record["epochs"] is None and isinstance(summary.get("epoch"), (int, float)):
        record["epochs"] = int(summary["epoch"]) + 1  # W&B keeps the last 0-based epoch; the record counts epochs
    if record["global_step"] is None:
        record["global_step"] = summary.get("trainer/global_step")
    record.update(
        run_id=str(wandb_run.id),
        run_name=wandb_run.name,
        group=wandb_run.group,
        status=_WANDB_STATUS.get(wandb_run.state, wandb_run.state),
        error=None,
    )
    return record


# --------------------------------------------------------------------------------------------------------------
# Training benchmark files (nlbench bench train --grid --out FILE)

# Record fields that say which configuration was measured, and the measurements; all required.
BENCH_CONFIG: tuple[str, ...] = ("backbone", "normalization", "reduction", "heads")
BENCH_METRICS: tuple[str, ...] = ("images_per_s", "peak_mib")


@dataclass
class Benchmark:
    """The records of one training-throughput benchmark file and the machine they were measured on."""

    source: str
    machine: str
    date: datetime
    records: list[dict[str, Any]]
    device: str | None = None
    batch_size: int | None = None
    bf16: bool | None = None

    @property
    def backbones(self) -> list[str]:
        """Backbones in the order the benchmark measured them (e.g. PreResNet-20, PreResNet-56)."""
        return list(dict.fromkeys(record["backbone"] for record in self.records))

    @property
    def when(self) -> str:
        return self.date.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def load_benchmark(path: str | os.PathLike[str]) -> Benchmark:
    """Read and validate a benchmark file; raises FileNotFoundError or :class:`BenchFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} does not exist (write one with nlbench bench train --grid "
                                "--out FILE)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchFileError(f"benchmark file {path} is not valid JSON: {err}") from err

    def bad(what: str) -> BenchFileError:
        return BenchFileError(f"benchmark file {path}: {what} (expected the JSON of nlbench bench train --grid --out)")

    if not isinstance(data, dict):
        raise bad(f"expected an object, got {type(data).__name__}")
    missing = [key for key in ("machine", "date", "records") if key not in data]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    if not isinstance(data["machine"], str):
        raise bad("machine is not a string")
    try:
        date = datetime.fromisoformat(data["date"])
    except (TypeError, ValueError):
        raise bad(f"date {data['date']!r} is not an ISO 8601 date") from None
    if date.tzinfo is None:  # the benchmark writes UTC; a bare date is read as UTC too
        date = date.replace(tzinfo=timezone.utc)
    records = data["records"]
    if not isinstance(records, list) or not records:
        raise bad("records is not a non-empty list")
    seen: set[tuple[Any, ...]] = set()
    for i, record in enumerate(records):
        problem = _bench_record_problem(record)
        if problem:
            raise bad(f"records[{i}] {problem}")
        config = config_of(record, BENCH_CONFIG)
        if config in seen:
            raise bad(f"records[{i}] repeats {dict(zip(BENCH_CONFIG, config))}")
        seen.add(config)
    return Benchmark(source=str(path), machine=data["machine"], date=date, records=records,
                     device=data.get("device"), batch_size=data.get("batch_size"), bf16=data.get("bf16"))


def _bench_record_problem(record: Any) -> str | None:
    """What is wrong with one benchmark record, or None."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    missing = [key for key in (*BENCH_CONFIG, *BENCH_METRICS) if key not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in ("backbone", "normalization"):
        if not isinstance(record[key], str):
            return f"{key} {record[key]!r} is not a string"
    for key in ("reduction", "heads"):
        if not isinstance(record[key], int) or isinstance(record[key], bool) or record[key] < 1:
            return f"{key} {record[key]!r} is not a positive integer"
    for key in BENCH_METRICS:
        value = record[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            return f"{key} {value!r} is not a non-negative number"
    return None
