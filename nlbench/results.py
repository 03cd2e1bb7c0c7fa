"""The one reader of runs: ``load(*sources) -> pandas.DataFrame``, one row per run, status decided here once.

Sources: sweep directories (``nlbench sweep``: ``sweep.yaml`` and ``runs/<run_id>/``), run directories
(``nlbench fit``), and ``wandb:ENTITY/PROJECT``. Columns:

- bookkeeping: ``run_id``, ``status``, ``error``, ``run_name``, ``wandb_group``, ``source``, ``run_dir``,
  ``wandb_id``, ``written_at``;
- the metrics under their logged names (:data:`nlbench.run.METRICS`), and where the run trained
  (:data:`nlbench.run.MACHINE_KEYS`);
- the NL vocabulary (``normalization``, ``reduction``, ``heads``, ``init``, ..., ``seed``), the training recipe
  (:data:`RECIPE`: optimizer, lr, ..., limit_train_batches, limit_val_batches, val_split), and a column for every
  other config key whose value varies between the runs (named by its shortest unique dotted suffix: ``lr``, ...);
- ``normalization`` is the method at the NL insertion point: the NL block's normalization (``softmax``, ``scale``,
  a class path, ...), a peer block in its place (``gc``, ``se``, a class path: the run's ``model.backbone.block``,
  which has no column of its own), or ``none`` (no block), so the report compares every method against softmax;
  ``method_label``, ``method_color``, ``method_has_map``: how it is shown, from the registry for registered methods
  and from the run's record for class paths (what the fit resolved): reading never imports a record's class;
- ``group``: the configuration without the seed; two runs share it if and only if their configs differ only in the
  seed. ``curve`` (with ``curves=True``): the run's per-epoch metrics (a list of dicts, one per epoch).

Status: the record's word, except that a "running" record whose run directory's lock (and, in a sweep directory,
the run's claim) is free (:func:`nlbench.runlock.is_alive`) belongs to a dead process and reads "interrupted", and
a run whose lock or claim is held reads "running" whatever an earlier attempt left. A run whose files cannot be read (not UTF-8, invalid YAML, a
foreign file) reads "unreadable", with ``error`` naming the file; it is listed, never averaged. A truncated
result.json is rebuilt from metrics.csv. Light on imports (pandas, yaml; no torch): the report and notebooks use it.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nlbench import limits, runlock, yamlsafe
from nlbench import run as run_
from nlbench.io import UnsafeFileError, open_file, read_bounded
from nlbench.nn.registry import BLOCKS, NONE, NORMALIZATIONS, peer_block, recorded_method

if TYPE_CHECKING:  # pandas loads on first use: `nlbench sweep --help` imports this module and needs no table
    import pandas as pd

UNREADABLE = "unreadable"
METHOD = "normalization"  # the column naming the method at the NL insertion point
# Its label, colour and whether it has an attention map (nlbench.nn.registry.MethodInfo), from the record.
METHOD_LABEL, METHOD_COLOR, METHOD_HAS_MAP = "method_label", "method_color", "method_has_map"
METHOD_COLUMNS: tuple[str, ...] = (METHOD_LABEL, METHOD_COLOR, METHOD_HAS_MAP)
NEW = "new"  # a sweep's run that has no directory yet
BOOKKEEPING: tuple[str, ...] = ("run_id", "status", "error", "run_name", "wandb_group", "group", "source",
                                "run_dir", "wandb_id", "written_at", "curve")  # fmt: skip
# The training recipe every report and results table states per configuration (issue: "which lr was this?"): every
# option that shapes what is trained and on what, by flat config key. A run whose config lacks one (an older record,
# a user's DataModule without val_split) has it empty.
RECIPE: dict[str, str] = {
    "optimizer": "model.optimizer.class_path",
    "lr": "model.optimizer.init_args.lr",
    "momentum": "model.optimizer.init_args.momentum",
    "weight_decay": "model.optimizer.init_args.weight_decay",
    "scheduler": "model.scheduler.class_path",
    "max_epochs": "trainer.max_epochs",
    "max_steps": "trainer.max_steps",
    "limit_train_batches": "trainer.limit_train_batches",
    "limit_val_batches": "trainer.limit_val_batches",
    "accumulate_grad_batches": "trainer.accumulate_grad_batches",
    "gradient_clip_val": "trainer.gradient_clip_val",
    "precision": "trainer.precision",
    "batch_size": "data.init_args.batch_size",
    "val_split": "data.init_args.val_split",
    "subset": "data.init_args.subset",
    "label_smoothing": "model.label_smoothing",
}
# Per-epoch columns kept from metrics.csv (CSVLogger output; sparse rows, one metric family per row).
CURVE_COLUMNS: tuple[str, ...] = (run_.TRAIN_LOSS, run_.TRAIN_ACC1, run_.VAL_LOSS, run_.FINAL_ACC1, run_.FINAL_ACC5, "lr",
                                  run_.IMAGES_PER_S)  # fmt: skip
SEED = run_.SEED
# Flat config keys the NL vocabulary (hparams) already holds under its own names.
_HPARAM_PREFIXES = ("model.backbone.init_args.nl.", "model.backbone.nl.", "model.backbone.init_args.depth", "model.backbone.init_args.widen",
                    "model.backbone.init_args.nl_stages", "model.backbone.init_args.nl_blocks",
                    "model.backbone.init_args.fc_init", "model.backbone.init_args.block", "model.backbone.class_path",
                    "data.class_path",
                    run_.SEED_KEY, *RECIPE.values())  # fmt: skip


class SourceError(ValueError):
    """A source that is not a sweep directory, a run directory or ``wandb:ENTITY/PROJECT``."""


class WandbSourceError(RuntimeError):
    """W&B could not be used as a source (offline, no credentials, unknown project)."""


# ---- status: the one rule ---------------------------------------------------------------------------------------
def resolve_status(record_status: str | None, run_dir: Path) -> str:
    """A run directory's status: final outcomes (finished, diverged) as recorded; else "running" while a process
    holds the run's lock (or, in a sweep directory, its claim); else the record's word, a "running" record (its process is gone) or none at all being
    "interrupted" ("new" when the directory does not exist)."""
    if record_status in run_.FINAL_STATUSES:
        return record_status
    if runlock.is_alive(run_dir) or (_in_sweep_dir(run_dir)
                                     and runlock.is_alive(run_dir, path=runlock.claim_path(run_dir))):
        return "running"  # a fit holds the run directory, or a sweep process has claimed it (in a sweep directory)
    if record_status in (None, "running"):
        return "interrupted" if run_dir.is_dir() else NEW
    return record_status


def _in_sweep_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` is ``<sweep_dir>/runs/<run_id>`` (where sweep processes claim runs), not a plain fit's
    default ``runs/<name>``."""
    return run_dir.parent.name == "runs" and (run_dir.parent.parent / "sweep.yaml").is_file()


# ---- one run directory ------------------------------------------------------------------------------------------
def read_run(run_dir: str | os.PathLike[str], *, run_id: str | None = None,
             params: Mapping[str, Any] | None = None, curves: bool = True) -> dict[str, Any]:
    """One run directory as a row (see the module doc). ``params``: the sweep's dotted keys of this run, used as its
    differing keys when the record does not carry them (runs without a record yet, records of earlier versions)."""
    path = Path(run_dir)
    paths = run_.RunDir(path)
    row: dict[str, Any] = {"run_id": run_id or path.name, "run_dir": str(path), "error": None}
    try:
        record, torn = _read_record(paths)
        curve = _read_curve(paths.metrics_csv) if curves or record is None else []
        if record is None and os.path.lexists(paths.config):
            record = _record_from_config(paths)
        if record is not None and torn and curve:
            record.metrics.update(_metrics_from_curve(curve))  # a torn result.json: metrics.csv still holds them
    except _Unreadable as err:
        return {**row, "status": UNREADABLE, "error": str(err), "hparams": {}, "config": {}, "differs": [],
                "curve": [], "method": {}}  # fmt: skip
    if record is None:
        row.update(hparams={}, config={}, differs=[], method={})
    else:
        row.update(record.flat())
        row["wandb_group"] = row.pop("group", None)
        row.update(hparams=dict(record.hparams), config=dict(record.config), differs=list(record.differs),
                   method=dict(record.method))  # fmt: skip
    row["status"] = resolve_status(record.status if record else None, path)
    row["error"] = record.error if record is not None and row["status"] == record.status else None
    row["curve"] = curve
    if params and not row["differs"]:
        row["config"] = {**row["config"], **{flat_key(key, row["config"]): v for key, v in params.items()}}
        row["differs"] = [flat_key(key, row["config"]) for key in params]
    if row.get("device") is None:
        row["device"] = _device_of(paths)
    return row


class _Unreadable(Exception):
    """A run's file that cannot be read; the message names it."""


def _read_record(paths: run_.RunDir) -> tuple[run_.RunRecord | None, bool]:
    """The run's record and whether its result.json is torn (there, but not JSON). Read within nlbench's limits
    (nlbench.limits: size, nesting), never through a link and never blocking on a FIFO: those are unreadable."""
    try:
        data = limits.loads_json(read_bounded(paths.result, limits.MAX_JSON_BYTES, what="result.json").decode("utf-8"),
                                 str(paths.result))
    except FileNotFoundError:
        return None, False
    except (UnsafeFileError, limits.LimitError) as err:
        raise _Unreadable(str(err)) from err
    except UnicodeDecodeError as err:
        raise _Unreadable(f"{paths.result}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError:
        return None, True  # torn (killed mid-write by an older version): rebuilt from config.yaml and metrics.csv
    except OSError as err:
        raise _Unreadable(f"{paths.result}: cannot read it ({err.strerror or err})") from err
    try:
        return (run_.RunRecord.from_json(data) if isinstance(data, dict) else None), False
    except (TypeError, ValueError) as err:
        raise _Unreadable(f"{paths.result}: not a run record ({err})") from err


def _read_yaml(path: Path) -> Any:
    try:
        # A received file: the size, nesting and alias-expansion limits apply, and a link is not followed.
        return yamlsafe.load_file(path, "file", follow_links=False)
    except yamlsafe.YamlLimitError as err:
        raise _Unreadable(str(err)) from err
    except UnicodeDecodeError as err:
        raise _Unreadable(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except yaml.YAMLError as err:  # also a tag safe_load refuses (!!python/object ...)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _Unreadable(f"{path}: not valid YAML ({problem})") from err


def _record_from_config(paths: run_.RunDir) -> run_.RunRecord:
    """A run killed before it wrote a record (or whose record is torn): its identity from config.yaml."""
    config = _read_yaml(paths.config)
    if not isinstance(config, dict):
        raise _Unreadable(f"{paths.config}: not a fit config (a mapping)")
    identity = run_.identity_from_config(config, import_classes=False)
    return run_.RunRecord(status="interrupted", run_name=identity.name, group=identity.group,
                          hparams=identity.hparams, config=identity.config, method=identity.method)  # fmt: skip


def _read_curve(path: Path) -> list[dict[str, float]]:
    """metrics.csv's epochs, streamed within nlbench's limits: the file's size, each row's length and the number of
    epochs are bounded (nlbench.limits), so a received 1 GB file is refused instead of held in memory."""
    try:
        fd = open_file(path)
    except FileNotFoundError:
        return []
    except UnsafeFileError as err:
        raise _Unreadable(str(err)) from err
    except OSError as err:
        raise _Unreadable(f"{path}: cannot read it ({err.strerror or err})") from err
    try:
        with os.fdopen(fd, newline="", encoding="utf-8") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.MAX_CSV_BYTES:
                raise limits.LimitError(f"{path}: {size / 2**20:,.0f} MB is over the "
                                        f"{limits.MAX_CSV_BYTES // 2**20} MB limit for metrics.csv")  # fmt: skip
            return epoch_rows(csv.DictReader(_bounded_lines(f, path)))
    except limits.LimitError as err:
        raise _Unreadable(str(err) if str(err).startswith(str(path)) else f"{path}: {err}") from err
    except UnicodeDecodeError as err:
        raise _Unreadable(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise _Unreadable(f"{path}: not a CSV file ({err})") from err


def _bounded_lines(f: Any, path: Path) -> Iterator[str]:
    """The lines of a text file, refusing (LimitError) one longer than :data:`nlbench.limits.MAX_CSV_LINE`."""
    while True:
        line = f.readline(limits.MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > limits.MAX_CSV_LINE:
            raise limits.LimitError(f"{path}: a line longer than {limits.MAX_CSV_LINE:,} characters; not a metrics "
                                    "file of nlbench")
        yield line


def epoch_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Collapse CSVLogger rows (sparse: train and val metrics on separate rows) to one row per epoch holding the
    last logged value of each :data:`CURVE_COLUMNS` column."""
    epochs: dict[int, dict[str, float]] = {}
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        if int(epoch) not in epochs and len(epochs) >= limits.MAX_EPOCHS:
            raise limits.LimitError(f"metrics of more than {limits.MAX_EPOCHS:,} epochs; not read")
        merged = epochs.setdefault(int(epoch), {"epoch": int(epoch)})
        for column in CURVE_COLUMNS:
            # A metric logged both per step and per epoch appears as "<name>_epoch" (Lightning's naming).
            value = _number(row.get(f"{column}_epoch"))
            value = _number(row.get(column)) if value is None else value
            if value is not None:
                merged[column] = value
    return [epochs[epoch] for epoch in sorted(epochs)]


def _metrics_from_curve(curve: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The record's accuracy metrics as metrics.csv has them (for a record whose result.json is torn)."""
    val = [row for row in curve if row.get(run_.FINAL_ACC1) is not None]
    if not val:
        return {}
    best = max(val, key=lambda row: row[run_.FINAL_ACC1])
    return {run_.BEST_ACC1: best[run_.FINAL_ACC1], run_.BEST_ACC5: best.get(run_.FINAL_ACC5),
            run_.BEST_EPOCH: int(best["epoch"]), run_.FINAL_ACC1: val[-1][run_.FINAL_ACC1],
            run_.FINAL_ACC5: val[-1].get(run_.FINAL_ACC5), "epochs": int(val[-1]["epoch"]) + 1}  # fmt: skip


def _device_of(paths: run_.RunDir) -> str | None:
    """``trainer.accelerator x devices`` from config.yaml, for records that do not say where they ran."""
    if not paths.config.is_file():
        return None
    try:
        config = _read_yaml(paths.config)
    except _Unreadable:
        return None
    trainer = (config or {}).get("trainer") if isinstance(config, dict) else None
    if not isinstance(trainer, dict):
        return None
    accelerator, devices = trainer.get("accelerator"), trainer.get("devices")
    if accelerator and accelerator != "auto":
        return f"{accelerator} x{devices}" if devices not in (None, 1, "1") else str(accelerator)
    return None


def flat_key(key: str, config: Mapping[str, Any]) -> str:
    """A sweep's dotted key as the record's flat key (with ``init_args`` where the config has it)."""
    found = run_.differing_keys([key], config) if config else []
    return found[0] if len(found) == 1 else key


# ---- sources -----------------------------------------------------------------------------------------------------
def read_sweep_dir(root: Path, *, curves: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of a sweep directory (its runs in the spec's order, then any other run directory), and a list of
    unreadable files outside the runs (e.g. a sweep.yaml that is not YAML)."""
    problems: list[dict[str, Any]] = []
    order: dict[str, dict[str, Any]] = {}
    spec_path = root / "sweep.yaml"
    if spec_path.is_file():
        try:
            order = spec_run_params(_read_yaml(spec_path))
        except _Unreadable as err:
            problems.append({"run_id": spec_path.name, "status": UNREADABLE, "error": str(err), "run_dir": str(root)})
    run_root = root / "runs"
    present = sorted(p.name for p in run_root.iterdir() if p.is_dir()) if run_root.is_dir() else []
    rows = []
    for run_id in [*order, *(name for name in present if name not in order)]:
        if os.path.islink(run_root / run_id):  # a received link to a folder elsewhere: not followed
            problems.append({"run_id": run_id, "status": UNREADABLE, "run_dir": str(run_root / run_id),
                             "error": f"{run_root / run_id}: a symbolic link; not followed"})  # fmt: skip
        elif run_id not in order or (run_root / run_id).is_dir():
            rows.append(read_run(run_root / run_id, params=order.get(run_id), curves=curves))
        else:  # a run of the spec that has not started
            config = dict(order[run_id])
            rows.append({"run_id": run_id, "run_dir": str(run_root / run_id), "status": NEW, "error": None,
                         "hparams": {}, "config": config, "differs": list(config), "curve": []})  # fmt: skip
    return rows, problems


def spec_run_params(spec: Any) -> dict[str, dict[str, Any]]:
    """run_id -> the swept values of each run of a stored sweep.yaml, in the sweep's order, without checking the
    base configs exist (a report may run on another machine)."""
    from nlbench.sweep.spec import DEFAULT_GRID_LIMIT, run_id

    if not isinstance(spec, dict):
        return {}
    axes = spec.get("axes") or {}
    points = spec.get("points") or []
    base = [Path(str(b)) for b in (spec.get("base") if isinstance(spec.get("base"), list) else [spec.get("base")])
            if b]  # fmt: skip
    overrides = spec.get("overrides") or {}
    if not isinstance(axes, dict) or not isinstance(points, list) or not isinstance(overrides, dict):
        return {}
    if not all(isinstance(values, list) for values in axes.values()):
        return {}
    if math.prod(len(values) for values in axes.values()) > DEFAULT_GRID_LIMIT:  # a received spec: never expand
        raise _Unreadable(f"sweep.yaml: its axes make over {DEFAULT_GRID_LIMIT:,} runs; not expanded")
    grid = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []
    return {run_id(params, base=base, overrides=overrides): params
            for params in [*grid, *(p for p in points if isinstance(p, dict))]}


def is_sweep_dir(path: Path) -> bool:
    return (path / "sweep.yaml").is_file() or (path / "runs").is_dir()


def read_source(source: str, *, curves: bool = True, groups: Sequence[str] = ()) -> tuple[list[dict], list[dict]]:
    """The rows of one source and its unreadable files."""
    if source.startswith("wandb:"):
        return read_wandb(source.removeprefix("wandb:"), groups=groups, curves=curves), []
    path = Path(source)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such sweep or run directory")
    if is_sweep_dir(path):
        rows, problems = read_sweep_dir(path, curves=curves)
    elif run_.RunDir(path).result.is_file() or run_.RunDir(path).config.is_file():
        rows, problems = [read_run(path, run_id=path.resolve().name, curves=curves)], []
    else:
        raise SourceError(f"{path}: neither a sweep directory (sweep.yaml, runs/) nor a run directory "
                          "(result.json, config.yaml) of nlbench")
    for row in rows:
        row["source"] = str(path)
    return rows, problems


def load(*sources: str | os.PathLike[str], curves: bool = False, groups: Sequence[str] = ()) -> pd.DataFrame:
    """Every run of the sources as one table (see the module doc); ``groups`` filter W&B sources by group.
    Unreadable files are rows with status "unreadable" (their ``error`` names the file)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source in sources:
        got, problems = read_source(os.fspath(source), curves=curves, groups=groups)
        for row in [*got, *problems]:
            key = str(row.get("run_dir") or row["run_id"]) + ("" if row["status"] != UNREADABLE else row["error"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return frame(rows, curves=curves)


def frame(rows: Sequence[Mapping[str, Any]], *, curves: bool = False) -> pd.DataFrame:
    """Rows of :func:`read_run` as the reader's DataFrame: vocabulary, recipe and varying config columns, group."""
    flat_keys: dict[str, None] = {}
    for row in rows:
        flat_keys.update(dict.fromkeys(key for key in row.get("config") or {} if not _in_vocabulary(key)))
    varying = [key for key in flat_keys if len({_hashable((row.get("config") or {}).get(key)) for row in rows}) > 1]
    taken = (*BOOKKEEPING, *run_.METRICS, *run_.MACHINE_KEYS, *run_.HPARAMS, *RECIPE, *METHOD_COLUMNS)
    from nlbench.sweep.spec import column_names

    columns = column_names(varying, taken=taken)
    records = []
    for row in rows:
        config = row.get("config") or {}
        out: dict[str, Any] = {key: row.get(key) for key in BOOKKEEPING if key not in ("group", "curve")}
        out.update({key: row.get(key) for key in run_.MACHINE_KEYS})
        hparams = dict(row.get("hparams") or {})
        swept = {run_.canonical_key(key) for key in row.get("differs") or []}
        baseline = hparams.get("normalization") == "none"
        for name, key in _hparam_keys().items():
            canon = run_.canonical_key(key)
            if name in hparams and (canon not in swept or (baseline and name in run_.NL_FIELDS)):
                continue  # the record's word; a run's swept value fills in for a record that lacks it
            for flat in (key, canon):
                if flat in config:
                    hparams[name] = config[flat]
        _fold_block(hparams)
        out.update({key: hparams.get(key) for key in run_.HPARAMS if key in hparams})
        out.update(_method_columns(hparams.get(METHOD), row.get("method") or {}))
        out.update(recipe(config, hparams))
        out.update({columns[key]: config.get(key) for key in varying})
        out.update({name: row.get(name) for name in run_.METRICS})
        if curves:
            out["curve"] = row.get("curve") or []
        records.append(out)
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    for column in (*BOOKKEEPING, *run_.METRICS, *RECIPE, SEED, *METHOD_COLUMNS):
        if column not in df and column not in ("group", "curve"):
            df[column] = None
    keys = config_keys(df)
    df["group"] = [" ".join(f"{key}={_text(value)}" for key, value in zip(keys, values)) or "all runs"
                   for values in (zip(*(df[key] for key in keys)) if keys else [()] * len(df))]  # fmt: skip
    return df


def recipe(config: Mapping[str, Any], hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The :data:`RECIPE` of one run from its flat config (optimizer and scheduler by class name), falling back on
    its hyper-parameters (max_epochs, batch_size) where the config lacks a key."""
    out = {}
    for name, key in RECIPE.items():
        value = config.get(key, config.get(run_.canonical_key(key), (hparams or {}).get(name)))
        out[name] = _class_name(value) if name in ("optimizer", "scheduler") else value
    return out


@functools.lru_cache(maxsize=None)  # called for every config key of every run: thousands of times, few keys
def _in_vocabulary(key: str) -> bool:
    """Whether the NL vocabulary or the recipe holds this flat key under its own name (or it is volatile)."""
    canon = run_.canonical_key(key)
    return run_.is_volatile(key) or any(canon == p or canon.startswith(p.rstrip(".") + ".")
                                        for p in map(run_.canonical_key, _HPARAM_PREFIXES))


@functools.lru_cache(maxsize=None)
def _hparam_keys() -> dict[str, str]:
    """NL vocabulary name -> flat config key (for runs known only by their sweep values)."""
    keys = {f: f"model.backbone.init_args.nl.{f}" for f in run_.NL_FIELDS}
    keys.update(depth="model.backbone.init_args.depth", widen="model.backbone.init_args.widen",
                nl_stages="model.backbone.init_args.nl_stages", nl_blocks="model.backbone.init_args.nl_blocks",
                fc_init="model.backbone.init_args.fc_init", block="model.backbone.init_args.block",
                seed=run_.SEED_KEY)
    return keys


def _fold_block(hparams: dict[str, Any]) -> None:
    """A peer block (GC, SE, a class path) is the run's method: it becomes the ``normalization`` (the NL options do
    not apply to it); ``block`` itself is never a column (``nonlocal`` is what every NL run has)."""
    # gc, se, a user's class path; None: the NL block. Judged by the text: a reader never imports a record's class.
    peer = peer_block(hparams.pop("block", None), import_classes=False)
    if peer is None or hparams.get("normalization") == "none":
        return
    for name in run_.NL_FIELDS:
        hparams.pop(name, None)
    hparams["normalization"] = peer


def _method_columns(value: Any, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The label, colour and map of the run's method (its ``normalization`` column), importing nothing: a registered
    method as the registry has it (the same in every report), any other (a class path) as the run's record says
    (:attr:`nlbench.run.RunRecord.method`, what the fit resolved), else by its last component."""
    info = recorded_method(value) if isinstance(value, str) else None
    registered = info is not None and (info is NONE or NORMALIZATIONS.registered_name(value) is not None
                                       or BLOCKS.registered_name(value) is not None)  # fmt: skip
    if not registered and recorded.get("value") == value and recorded.get("label"):
        return {METHOD_LABEL: recorded["label"], METHOD_COLOR: recorded.get("color"),
                METHOD_HAS_MAP: recorded.get("has_map")}  # fmt: skip
    if info is None:
        return {METHOD_LABEL: None if value is None else str(value), METHOD_COLOR: None, METHOD_HAS_MAP: None}
    return {METHOD_LABEL: info.label, METHOD_COLOR: info.color, METHOD_HAS_MAP: info.has_map if registered else None}


def method_looks(df: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    """``normalization`` value -> (label, colour) of the runs' methods (the first run's word for each), for the
    report's legends and tables (:func:`nlbench.report.style.remember_methods`)."""
    looks: dict[str, tuple[str, str | None]] = {}
    if METHOD not in df or METHOD_LABEL not in df:
        return looks
    for value, label, color in zip(df[METHOD], df[METHOD_LABEL], df[METHOD_COLOR]):
        if isinstance(value, str) and isinstance(label, str) and value not in looks:
            looks[value] = (label, color if isinstance(color, str) else None)
    return looks


def _class_name(value: Any) -> Any:
    return value.rsplit(".", 1)[-1] if isinstance(value, str) else value


# ---- configurations ------------------------------------------------------------------------------------------------
NOT_CONFIG: frozenset[str] = frozenset({*BOOKKEEPING, *run_.METRICS, *run_.MACHINE_KEYS, SEED, *METHOD_COLUMNS})


def config_keys(df: pd.DataFrame) -> list[str]:
    """The columns that tell configurations apart: those varying across the runs (seed excluded; runs without a
    record count only where they know the key), minus any that the others already determine (e.g. ``nl_blocks`` 0
    next to ``normalization`` "none"), dropping later columns first so the sweep's own axes are kept."""
    usable = df[df["status"] != UNREADABLE] if "status" in df else df
    if usable.empty:
        return []
    known = usable["status"].isin(list(run_.STATUSES))  # "new" runs know only their swept keys

    def distinct(key: str) -> int:
        values = usable[key][known | usable[key].notna()]
        return len({_hashable(v) for v in values})

    not_config = {*NOT_CONFIG, *run_.METRICS}  # read at call time: the vocabulary is nlbench.run's
    keys = [key for key in usable.columns if key not in not_config and distinct(key) > 1]

    def configurations(cols: Sequence[str]) -> int:
        return len({tuple(_hashable(v) for v in values) for values in zip(*(usable[c] for c in cols))}) if cols else 1

    total = configurations(keys)
    for key in reversed(list(keys)):
        rest = [k for k in keys if k != key]
        if configurations(rest) == total:
            keys = rest
    return keys


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return str(value)


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---- W&B ---------------------------------------------------------------------------------------------------------
# W&B run state -> status.
_WANDB_STATUS = {"finished": "finished", "running": "running", "crashed": "interrupted", "failed": "failed",
                 "killed": "interrupted"}  # fmt: skip


def read_wandb(path: str, *, groups: Sequence[str] = (), timeout: int = 20, curves: bool = True) -> list[dict]:
    """The runs of W&B project ``ENTITY/PROJECT`` as rows: the NL vocabulary and the resolved config as nlbench
    uploads them (``nlbench.cli.ConfigSaver``), metrics from the summary, curves from the history."""
    if path.count("/") != 1 or not all(path.split("/")):
        raise SourceError(f"wandb:{path}: expected wandb:ENTITY/PROJECT")
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_OFFLINE") == "true":
        raise WandbSourceError(f"cannot read W&B project {path}: WANDB_MODE is {os.environ.get('WANDB_MODE', 'offline')}"
                               "; report from the local sweep directory instead (nlbench report SWEEP_DIR)")
    import requests
    import wandb

    rows = []
    try:
        api = wandb.Api(timeout=timeout)
        for wandb_run in api.runs(path, filters={"group": {"$in": list(groups)}} if groups else {}):
            row = _wandb_row(wandb_run)
            if curves:
                row["curve"] = epoch_rows(wandb_run.scan_history(keys=["epoch", run_.FINAL_ACC1]))
            row["source"] = f"wandb:{path}"
            rows.append(row)
    except (wandb.errors.Error, requests.RequestException, ValueError) as err:  # no key, offline, unknown project
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WandbSourceError(f"cannot read W&B project {path} ({message}); check `wandb login` and network access, "
                               "or report from the local sweep directory instead (nlbench report SWEEP_DIR)") from err
    if not rows:
        raise WandbSourceError(f"W&B project {path} has no runs" + (f" in groups {list(groups)}" if groups else ""))
    return rows


def _wandb_row(wandb_run: Any) -> dict[str, Any]:
    config = dict(wandb_run.config)
    summary = dict(wandb_run.summary)
    metrics: dict[str, Any] = {}
    for name in run_.METRICS:
        value = summary.get(name, config.get(name))
        metrics[name] = value.get("max") if isinstance(value, Mapping) else value  # define_metric(summary="max")
    if metrics["epochs"] is None and isinstance(summary.get("epoch"), (int, float)):
        metrics["epochs"] = int(summary["epoch"]) + 1  # W&B keeps the last 0-based epoch; the record counts epochs
    if metrics["global_step"] is None:
        metrics["global_step"] = summary.get("trainer/global_step")
    full = config.get("config")
    flat = run_.flatten(full) if isinstance(full, Mapping) else {}
    flat = {key: value for key, value in flat.items() if not run_.is_volatile(key)}
    return {
        "run_id": str(wandb_run.id), "run_name": wandb_run.name, "wandb_group": wandb_run.group,
        "wandb_id": str(wandb_run.id), "status": _WANDB_STATUS.get(wandb_run.state, wandb_run.state), "error": None,
        "hparams": {key: config[key] for key in run_.HPARAMS if key in config}, "config": flat,
        "differs": list(config.get("differs") or []), "curve": [], "method": run_.method_of(config.get("method")),
        **metrics,
    }  # fmt: skip
