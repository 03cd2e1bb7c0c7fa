"""The one reader of runs: ``load(*sources) -> pandas.DataFrame``, one row per run, status decided here once.

Sources: sweep directories (``nlbench sweep``: ``sweep.yaml`` and ``runs/<run_id>/``), run directories
(``nlbench fit``), and ``wandb:ENTITY/PROJECT``. Columns:

- bookkeeping: ``run_id``, ``status``, ``error``, ``run_name``, ``wandb_group``, ``source``, ``run_dir``,
  ``wandb_id``, ``written_at``;
- the metrics under their logged names (:data:`nlbench.schema.METRICS`), and where the run trained
  (:data:`nlbench.schema.MACHINE_KEYS`);
- the NL vocabulary (``normalization``, ``reduction``, ``heads``, ``init``, ..., ``seed``), the training recipe
  (:data:`nlbench.schema.RECIPE`: optimizer, lr, ..., limit_train_batches, limit_val_batches, val_split), and a column
  for every other config key whose value varies between the runs (named by its shortest unique dotted suffix: ``lr``,
  ...);
- ``normalization`` is the method at the NL insertion point: the NL block's normalization (``softmax``, ``scale``,
  a class path, ...), a peer block in its place (``gc``, ``se``, a class path: the run's ``model.backbone.block``,
  which has no column of its own), or ``none`` (no block), so the report compares every method against softmax;
  ``method_label``, ``method_color``, ``method_has_map``: how it is shown, from the registry for registered methods
  and from the run's record for class paths (what the fit resolved): reading never imports a record's class;
- ``group``: the configuration without the seed; two runs share it if and only if their configs differ only in the
  seed. ``curve`` (with ``curves=True``): the run's per-epoch metrics (a list of dicts, one per epoch).

Status: the record's word, except that a "running" record whose run directory's lock (and, in a sweep directory, the
run's claim) is free (:func:`nlbench.runlock.is_alive`) belongs to a dead process and reads "interrupted", and a run
whose lock or claim is held reads "running" whatever an earlier attempt left. A run whose files cannot be read (not
UTF-8, invalid YAML, a foreign file) reads "unreadable", with ``error`` naming the file; it is listed, never averaged. A
truncated result.json is rebuilt from metrics.csv. Light on imports (pandas, yaml; no torch): the report and notebooks
use it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlbench import runlock, schema, sweepdir
from nlbench.nn.registry import BLOCKS, NONE, NORMALIZATIONS, peer_block, recorded_method
from nlbench.record import RunDir, Unreadable, epoch_rows, method_of, read_run_files

if TYPE_CHECKING:  # pandas loads on first use: `nlbench sweep --help` imports this module and needs no table
    import pandas as pd


METHOD = "normalization"  # the column naming the method at the NL insertion point
# Its label, colour and whether it has an attention map (nlbench.nn.registry.MethodInfo), from the record.
METHOD_LABEL, METHOD_COLOR, METHOD_HAS_MAP = "method_label", "method_color", "method_has_map"
METHOD_COLUMNS: tuple[str, ...] = (METHOD_LABEL, METHOD_COLOR, METHOD_HAS_MAP)


class SourceError(ValueError):
    """A source that is not a sweep directory, a run directory or ``wandb:ENTITY/PROJECT``."""


class WandbSourceError(RuntimeError):
    """W&B could not be used as a source (offline, no credentials, unknown project)."""


# ---- status: the one rule ---------------------------------------------------------------------------------------
def resolve_status(record_status: str | None, run_dir: Path) -> str:
    """A run directory's status: final outcomes (finished, diverged) as recorded; else "running" while a process
    holds the run's lock (or, in a sweep directory, its claim); else the record's word, a "running" record (its
    process is gone) or none at all being "interrupted" ("new" when the directory does not exist)."""
    if record_status in schema.FINAL_STATUSES:
        return record_status
    if runlock.is_alive(run_dir) or (
        _in_sweep_dir(run_dir) and runlock.is_alive(run_dir, path=runlock.claim_path(run_dir))
    ):
        return "running"  # a fit holds the run directory, or a sweep process has claimed it (in a sweep directory)
    if record_status in (None, "running"):
        return "interrupted" if run_dir.is_dir() else schema.NEW
    return record_status


def _in_sweep_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` is ``<sweep_dir>/runs/<run_id>`` (where sweep processes claim runs), not a plain fit's
    default ``runs/<name>``."""
    return run_dir.parent.name == sweepdir.RUNS and (run_dir.parent.parent / sweepdir.SPEC).is_file()


# ---- one run directory ------------------------------------------------------------------------------------------
def read_run(
    run_dir: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    curves: bool = True,
) -> dict[str, Any]:
    """One run directory as a row (see the module doc). ``params``: the sweep's dotted keys of this run, used as its
    differing keys when the record does not carry them (runs without a record yet, records of earlier versions)."""
    path = Path(run_dir)
    row: dict[str, Any] = {"run_id": run_id or path.name, "run_dir": str(path), "error": None}
    try:
        files = read_run_files(path, curves=curves)
    except Unreadable as err:
        return {
            **row,
            "status": schema.UNREADABLE,
            "error": str(err),
            "hparams": {},
            "config": {},
            "differs": [],
            "curve": [],
            "method": {},
        }
    record = files.record
    if record is None:
        row.update(hparams={}, config={}, differs=[], method={})
    else:
        row.update(record.flat())
        row["wandb_group"] = row.pop("group", None)
        row.update(
            hparams=dict(record.hparams),
            config=dict(record.config),
            differs=list(record.differs),
            method=dict(record.method),
        )
    row["status"] = resolve_status(record.status if record else None, path)
    row["error"] = record.error if record is not None and row["status"] == record.status else None
    row["curve"] = files.curve
    if params and not row["differs"]:
        row["config"] = {**row["config"], **{schema.flat_key(key, row["config"]): v for key, v in params.items()}}
        row["differs"] = [schema.flat_key(key, row["config"]) for key in params]
    if row.get("device") is None:
        row["device"] = files.device
    return row


# ---- sources -----------------------------------------------------------------------------------------------------
def read_sweep_dir(root: Path, *, curves: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of a sweep directory (its runs in the spec's order, then any other run directory), and a list of
    unreadable files outside the runs (e.g. a sweep.yaml that is not YAML)."""
    problems: list[dict[str, Any]] = []
    order: dict[str, dict[str, Any]] = {}
    try:
        order = sweepdir.stored_runs(sweepdir.read_spec(root))
    except Unreadable as err:
        problems.append({"run_id": sweepdir.SPEC, "status": schema.UNREADABLE, "error": str(err), "run_dir": str(root)})
    run_root = root / sweepdir.RUNS
    present = sorted(p.name for p in run_root.iterdir() if p.is_dir()) if run_root.is_dir() else []
    rows = []
    for run_id in [*order, *(name for name in present if name not in order)]:
        if os.path.islink(run_root / run_id):  # a received link to a folder elsewhere: not followed
            problems.append(
                {
                    "run_id": run_id,
                    "status": schema.UNREADABLE,
                    "run_dir": str(run_root / run_id),
                    "error": f"{run_root / run_id}: a symbolic link; not followed",
                }
            )
        elif run_id not in order or (run_root / run_id).is_dir():
            rows.append(read_run(run_root / run_id, params=order.get(run_id), curves=curves))
        else:  # a run of the spec that has not started
            config = dict(order[run_id])
            rows.append(
                {
                    "run_id": run_id,
                    "run_dir": str(run_root / run_id),
                    "status": schema.NEW,
                    "error": None,
                    "hparams": {},
                    "config": config,
                    "differs": list(config),
                    "curve": [],
                }
            )
    return rows, problems


def read_source(source: str, *, curves: bool = True, groups: Sequence[str] = ()) -> tuple[list[dict], list[dict]]:
    """The rows of one source and its unreadable files."""
    if source.startswith("wandb:"):
        return read_wandb(source.removeprefix("wandb:"), groups=groups, curves=curves), []
    path = Path(source)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such sweep or run directory")
    if sweepdir.is_sweep_dir(path):
        rows, problems = read_sweep_dir(path, curves=curves)
    elif RunDir(path).result.is_file() or RunDir(path).config.is_file():
        rows, problems = [read_run(path, run_id=path.resolve().name, curves=curves)], []
    else:
        raise SourceError(
            f"{path}: neither a sweep directory (sweep.yaml, runs/) nor a run directory "
            "(result.json, config.yaml) of nlbench"
        )
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
            key = str(row.get("run_dir") or row["run_id"]) + (
                "" if row["status"] != schema.UNREADABLE else row["error"]
            )
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return frame(rows, curves=curves)


def frame(rows: Sequence[Mapping[str, Any]], *, curves: bool = False) -> pd.DataFrame:
    """Rows of :func:`read_run` as the reader's DataFrame: vocabulary, recipe and varying config columns, group."""
    flat_keys: dict[str, None] = {}
    for row in rows:
        flat_keys.update(dict.fromkeys(key for key in row.get("config") or {} if not _in_vocabulary(key)))
    varying = [
        key for key in flat_keys if len({schema.hashable((row.get("config") or {}).get(key)) for row in rows}) > 1
    ]
    taken = (
        *schema.BOOKKEEPING,
        *schema.METRICS,
        *schema.MACHINE_KEYS,
        *schema.HPARAMS,
        *schema.RECIPE,
        *METHOD_COLUMNS,
    )
    columns = schema.column_names(varying, taken=taken)
    records = []
    for row in rows:
        config = row.get("config") or {}
        out: dict[str, Any] = {key: row.get(key) for key in schema.BOOKKEEPING if key not in ("group", "curve")}
        out.update({key: row.get(key) for key in schema.MACHINE_KEYS})
        hparams = dict(row.get("hparams") or {})
        swept = {schema.canonical_key(key) for key in row.get("differs") or []}
        baseline = hparams.get("normalization") == "none"
        for name in schema.HPARAMS:
            field = schema.BY_NAME[name]
            canon = _CANONICAL[name]
            if name in hparams and (
                canon not in swept or field.read is not None or (baseline and name in schema.NL_FIELDS)
            ):
                continue  # the record's word (derived words are the fit's); a swept value fills in or corrects
            for flat in (field.key, canon):
                if flat in config:
                    hparams[name] = schema.read_field(field, config[flat])
        _fold_block(hparams)
        out.update({key: hparams.get(key) for key in schema.HPARAMS if key in hparams})
        out.update(_method_columns(hparams.get(METHOD), row.get("method") or {}))
        out.update(recipe(config, hparams))
        out.update({columns[key]: config.get(key) for key in varying})
        out.update({name: row.get(name) for name in schema.METRICS})
        if curves:
            out["curve"] = row.get("curve") or []
        records.append(out)
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    for column in (*schema.BOOKKEEPING, *schema.METRICS, *schema.RECIPE, schema.SEED, *METHOD_COLUMNS):
        if column not in df and column not in ("group", "curve"):
            df[column] = None
    keys = config_keys(df)
    df["group"] = [
        " ".join(f"{key}={_text(value)}" for key, value in zip(keys, values)) or "all runs"
        for values in (zip(*(df[key] for key in keys)) if keys else [()] * len(df))
    ]
    return df


def recipe(config: Mapping[str, Any], hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The :data:`nlbench.schema.RECIPE` of one run from its flat config (optimizer and scheduler by class name),
    falling back on its hyper-parameters (max_epochs, batch_size) where the config lacks a key."""
    words = schema.vocabulary(config, list(schema.RECIPE))
    return {name: words[name] if name in words else (hparams or {}).get(name) for name in schema.RECIPE}


@functools.cache  # called for every config key of every run: thousands of times, few keys
def _in_vocabulary(key: str) -> bool:
    """Whether a word of the schema (a hyper-parameter or the recipe) holds this flat key, or it is volatile."""
    canon = schema.canonical_key(key)
    return schema.is_volatile(key) or any(canon == c or canon.startswith(c + ".") for c in _CANONICAL.values())


_CANONICAL = {field.name: schema.canonical_key(field.key) for field in schema.FIELDS}  # word -> key, no init_args


def _fold_block(hparams: dict[str, Any]) -> None:
    """A peer block (GC, SE, a class path) is the run's method: it becomes the ``normalization`` (the NL options do
    not apply to it); ``block`` itself is never a column (``nonlocal`` is what every NL run has)."""
    # gc, se, a user's class path; None: the NL block. Judged by the text: a reader never imports a record's class.
    peer = peer_block(hparams.pop("block", None), import_classes=False)
    if peer is None or hparams.get("normalization") == "none":
        return
    for name in schema.NL_FIELDS:
        hparams.pop(name, None)
    hparams["normalization"] = peer


def _method_columns(value: Any, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The label, colour and map of the run's method (its ``normalization`` column), importing nothing: a registered
    method as the registry has it (the same in every report), any other (a class path) as the run's record says
    (:attr:`nlbench.record.RunRecord.method`, what the fit resolved), else by its last component."""
    info = recorded_method(value) if isinstance(value, str) else None
    registered = info is not None and (
        info is NONE or NORMALIZATIONS.registered_name(value) is not None or BLOCKS.registered_name(value) is not None
    )
    if not registered and recorded.get("value") == value and recorded.get("label"):
        return {
            METHOD_LABEL: recorded["label"],
            METHOD_COLOR: recorded.get("color"),
            METHOD_HAS_MAP: recorded.get("has_map"),
        }
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


# ---- configurations ------------------------------------------------------------------------------------------------
NOT_CONFIG: frozenset[str] = frozenset(
    {*schema.BOOKKEEPING, *schema.METRICS, *schema.MACHINE_KEYS, schema.SEED, *METHOD_COLUMNS}
)


def config_keys(df: pd.DataFrame) -> list[str]:
    """The columns that tell configurations apart: those varying across the runs (seed excluded; runs without a
    record count only where they know the key), minus any that the others already determine (e.g. ``nl_blocks`` 0
    next to ``normalization`` "none"), dropping later columns first so the sweep's own axes are kept."""
    usable = df[df["status"] != schema.UNREADABLE] if "status" in df else df
    if usable.empty:
        return []
    known = usable["status"].isin(list(schema.STATUSES))  # "new" runs know only their swept keys

    def distinct(key: str) -> int:
        values = usable[key][known | usable[key].notna()]
        return len({schema.hashable(v) for v in values})

    not_config = {*NOT_CONFIG, *schema.METRICS}  # read at call time: a metric added to the schema is never a key
    keys = [key for key in usable.columns if key not in not_config and distinct(key) > 1]

    def configurations(cols: Sequence[str]) -> int:
        if not cols:
            return 1
        return len({tuple(schema.hashable(v) for v in values) for values in zip(*(usable[c] for c in cols))})

    total = configurations(keys)
    for key in reversed(list(keys)):
        rest = [k for k in keys if k != key]
        if configurations(rest) == total:
            keys = rest
    return keys


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return str(value)


# ---- W&B ---------------------------------------------------------------------------------------------------------
# W&B run state -> status.
_WANDB_STATUS = {
    "finished": "finished",
    "running": "running",
    "crashed": "interrupted",
    "failed": "failed",
    "killed": "interrupted",
}


def read_wandb(path: str, *, groups: Sequence[str] = (), timeout: int = 20, curves: bool = True) -> list[dict]:
    """The runs of W&B project ``ENTITY/PROJECT`` as rows: the NL vocabulary and the resolved config as nlbench
    uploads them (``nlbench.lightning_cli.ConfigSaver``), metrics from the summary, curves from the history."""
    if path.count("/") != 1 or not all(path.split("/")):
        raise SourceError(f"wandb:{path}: expected wandb:ENTITY/PROJECT")
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_OFFLINE") == "true":
        raise WandbSourceError(
            f"cannot read W&B project {path}: WANDB_MODE is {os.environ.get('WANDB_MODE', 'offline')}"
            "; report from the local sweep directory instead (nlbench report SWEEP_DIR)"
        )
    import requests
    import wandb

    rows = []
    try:
        api = wandb.Api(timeout=timeout)
        for wandb_run in api.runs(path, filters={"group": {"$in": list(groups)}} if groups else {}):
            row = _wandb_row(wandb_run)
            if curves:
                row["curve"] = epoch_rows(wandb_run.scan_history(keys=["epoch", schema.FINAL_ACC1]))
            row["source"] = f"wandb:{path}"
            rows.append(row)
    except (wandb.errors.Error, requests.RequestException, ValueError) as err:  # no key, offline, unknown project
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WandbSourceError(
            f"cannot read W&B project {path} ({message}); check `wandb login` and network access, "
            "or report from the local sweep directory instead (nlbench report SWEEP_DIR)"
        ) from err
    if not rows:
        raise WandbSourceError(f"W&B project {path} has no runs" + (f" in groups {list(groups)}" if groups else ""))
    return rows


def _wandb_row(wandb_run: Any) -> dict[str, Any]:
    config = dict(wandb_run.config)
    summary = dict(wandb_run.summary)
    metrics: dict[str, Any] = {}
    for name in schema.METRICS:
        value = summary.get(name, config.get(name))
        metrics[name] = value.get("max") if isinstance(value, Mapping) else value  # define_metric(summary="max")
    if metrics["epochs"] is None and isinstance(summary.get("epoch"), (int, float)):
        metrics["epochs"] = int(summary["epoch"]) + 1  # W&B keeps the last 0-based epoch; the record counts epochs
    if metrics["global_step"] is None:
        metrics["global_step"] = summary.get("trainer/global_step")
    full = config.get("config")
    flat = schema.flatten(full) if isinstance(full, Mapping) else {}
    flat = {key: value for key, value in flat.items() if not schema.is_volatile(key)}
    return {
        "run_id": str(wandb_run.id),
        "run_name": wandb_run.name,
        "wandb_group": wandb_run.group,
        "wandb_id": str(wandb_run.id),
        "status": _WANDB_STATUS.get(wandb_run.state, wandb_run.state),
        "error": None,
        "hparams": {key: config[key] for key in schema.HPARAMS if key in config},
        "config": flat,
        "differs": list(config.get("differs") or []),
        "curve": [],
        "method": method_of(config.get("method")),
        **metrics,
    }
