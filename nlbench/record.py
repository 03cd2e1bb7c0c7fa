"""The run's record: what ``result.json`` holds, how a run is named, and the one reader of a run's files.

Everything that writes or reads ``result.json`` goes through :class:`RunRecord`, :func:`write_record` and
:func:`read_record`; a run's config.yaml and metrics.csv are read here too (:func:`read_config`,
:func:`read_curve`), each once, with one answer for a missing, torn, foreign or unreadable file (:class:`Unreadable`).
The words (metric names, hyper-parameters, statuses) are :mod:`nlbench.schema`'s.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nlbench import limits, schema, yamlsafe
from nlbench.io import UnsafeFileError, atomic_write_json, open_file, read_bounded
from nlbench.nn import NLConfig
from nlbench.nn.config import DEFAULT_FC_INIT, DEFAULT_NL_STAGES
from nlbench.nn.registry import BLOCKS, NORMALIZATIONS, Registry, peer_block, recorded_method

# ---- run names ------------------------------------------------------------------------------------------------
# Short forms of common options in run names: lr0.05, ep30, bs64 (any other: <short name><value>).
_ABBREVIATIONS = {
    "max_epochs": "ep",
    "batch_size": "bs",
    "weight_decay": "wd",
    "momentum": "mom",
    "lr": "lr",
    "widen": "k",
    "precision": "",
}


def short_form(key: str, value: Any) -> str:
    """A differing option in a run name: ``lr0.05``, ``ep30``, ``optimizer-adamw`` (class paths by class name)."""
    name = schema.short_name(key)
    if isinstance(value, str) and "." in value and value.rsplit(".", 1)[-1][:1].isupper():
        value = value.rsplit(".", 1)[-1].lower()  # torch.optim.AdamW -> adamw
    if isinstance(value, (list, tuple)):
        text = "-".join(map(str, value))
    elif isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, float):
        text = f"{value:g}"  # 2.0 -> 2, 0.05 -> 0.05
    else:
        text = str(value)
    prefix = _ABBREVIATIONS.get(name, name)
    sep = "" if prefix in _ABBREVIATIONS.values() or text[:1].isdigit() or text[:1] == "-" else "-"
    return f"{prefix}{sep}{text}" if prefix else text


# ---- the run directory --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (docs/design.md "Run directory")."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    @property
    def stdout(self) -> Path:
        return self.path / "stdout.log"  # written by the sweep (the fit's stdout and stderr)

    @property
    def wandb(self) -> Path:
        return self.path / "wandb"

    def check_files(self) -> None:
        """Refuse (UnsafeFileError, one line naming the entry) a run directory nlbench would write through a link
        or block on: the directory itself a symbolic link, or, in it, in ``checkpoints/`` and in the validate/test/
        predict folders, an entry that is a symbolic link or neither a regular file nor a folder (a FIFO). Checked
        before a fit or the sweep writes anything there: Lightning's CSVLogger and config writer follow links.
        ``checkpoints/`` may hold links to checkpoints beside them (Lightning's ``save_last: link``)."""
        if os.path.islink(self.path):
            raise UnsafeFileError(
                f"{self.path}: the run directory is a symbolic link; nlbench does not write through "
                "links (use the folder it points to as --run_dir, or a new one)"
            )
        if not self.path.is_dir():
            return
        for folder in (self.path, self.checkpoints, *(self.path / name for name in SUBCOMMAND_DIRS)):
            if folder != self.path and (os.path.islink(folder) or not folder.is_dir()):
                if os.path.lexists(folder):
                    _check_entry(folder, folder.parent)
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    _check_entry(Path(entry.path), folder)

    @property
    def resumable(self) -> bool:
        """The directory holds checkpoints, so a new attempt resumes (``--ckpt_path last``)."""
        return any(self.checkpoints.glob("*.ckpt"))


SUBCOMMAND_DIRS: tuple[str, ...] = ("validate", "test", "predict")  # <run_dir>/<command>/ of the evaluation commands


def _check_entry(path: Path, folder: Path) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(path)
        inside = (
            folder.name == "checkpoints"
            and os.sep not in target
            and target not in (".", "..")
            and (folder / target).is_file()
            and not (folder / target).is_symlink()
        )
        if not inside:
            raise UnsafeFileError(
                f"{path}: a symbolic link in a run directory; nlbench does not write through links "
                "(replace it with the file itself, or remove it)"
            )
    elif not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise UnsafeFileError(f"{path}: not a regular file or folder in a run directory; remove it")


# ---- identity ---------------------------------------------------------------------------------------------------
@dataclass
class RunIdentity:
    """How a run is named and grouped in W&B, the run directory and the results tables."""

    name: str
    group: str
    tags: list[str]
    hparams: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, flat dotted keys (VOLATILE left out)
    differs: list[str] = field(default_factory=list)  # its keys that differ from the experiment's base
    # The method at the insertion point (nlbench.nn.registry.MethodInfo: name, label, color, has_map, value), as the
    # fit resolved it: readers show it from here and never import its class.
    method: dict[str, Any] = field(default_factory=dict)


def _short_name(registry: Registry, value: str, import_classes: bool) -> str:
    """A method's short name for run names: by import in the fit; from its text alone in a reader."""
    if import_classes:
        return registry.name_of(value)
    return registry.registered_name(value) or value.rsplit(".", 1)[-1]


def identify(
    *,
    nl: NLConfig | None,
    dataset: str,
    backbone: str,
    depth: int | None = None,
    widen: int | None = None,
    nl_stages: list[int] | tuple[int, ...] | None = None,
    nl_blocks: int | list[int] = 0,
    fc_init: str | None = None,
    seed: int | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    block: str | None = None,
    extras: Sequence[str] = (),
    import_classes: bool = True,
) -> RunIdentity:
    """The run's name, group, tags and hyper-parameters (keys of :data:`nlbench.schema.HPARAMS`, None values dropped).

    ``nl`` is the NLConfig the backbone's blocks get; a backbone without NL blocks (no stage or zero blocks) is the
    baseline, recorded as normalization "none". ``block`` other than "nonlocal" (a peer block: gc, se, a class
    path) is recorded, named by its short name, and its runs carry no NL options (they do not apply).
    ``import_classes=False`` (readers of records) names methods from the registry and their text, importing
    nothing."""
    # nl_blocks is one count for every NL stage, or one count per stage (then nl_stages may be empty)
    if isinstance(nl_blocks, (list, tuple)):
        has_nl = nl is not None and sum(nl_blocks) > 0
        nl_blocks = list(nl_blocks)
    else:
        has_nl = nl is not None and (nl_stages is None or len(nl_stages) > 0) and nl_blocks > 0  # None: the default
    # A peer block by its short name; the NL block (by name or class path) and the former residual kinds are none.
    peer_value = peer_block(block, import_classes=import_classes) if has_nl else None
    peer = _short_name(BLOCKS, block, import_classes) if peer_value is not None and block else None
    hparams: dict[str, Any] = {
        "dataset": dataset,
        "backbone": backbone,
        "depth": depth,
        "widen": widen,
        "nl_stages": None if nl_stages is None else list(nl_stages),
        "nl_blocks": nl_blocks,
        "fc_init": fc_init,
        "block": block if peer else None,
        **(dataclasses.asdict(nl) if has_nl and not peer else {} if peer else {"normalization": "none"}),
        "seed": seed,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
    }
    hparams = {key: hparams[key] for key in schema.HPARAMS if hparams.get(key) is not None}
    if peer:
        parts = [peer]
    if has_nl and not peer:
        assert nl is not None
        width = f"w{nl.width}" if nl.width else f"r{nl.reduction}"
        parts = [_short_name(NORMALIZATIONS, nl.normalization, import_classes), width, f"h{nl.heads}", nl.init]
        if nl.similarity != NLConfig.similarity:
            parts.append(nl.similarity)
        if nl.normalization == "scale" and nl.order != NLConfig.order:
            parts.append(nl.order)
        # Options off their default, so that configurations that differ never share a W&B group.
        if nl.normalization == "scale" and nl.scale != NLConfig.scale:
            parts.append(str(nl.scale))
        if not nl.pos_encoding:
            parts.append("nopos")
        if isinstance(nl_blocks, list):
            parts.append("blocks" + "-".join(map(str, nl_blocks)))
        else:
            if nl_stages is not None and tuple(nl_stages) != DEFAULT_NL_STAGES:
                parts.append("stages" + "-".join(map(str, nl_stages)))
            if nl_blocks > 1:
                parts.append(f"x{nl_blocks}")
    elif not peer:
        parts = ["baseline"]
    if peer and isinstance(nl_blocks, list):
        parts.append("blocks" + "-".join(map(str, nl_blocks)))
    elif peer:
        if nl_stages is not None and tuple(nl_stages) != DEFAULT_NL_STAGES:
            parts.append("stages" + "-".join(map(str, nl_stages)))
        if nl_blocks > 1:
            parts.append(f"x{nl_blocks}")
    if fc_init not in (None, DEFAULT_FC_INIT):
        parts.append(f"fc{fc_init}")
    parts += [extra for extra in extras if extra not in parts]  # other differing options: lr0.05, ep30
    config_name = "-".join(parts)
    name = f"{config_name}-s{seed}" if seed is not None else config_name
    group = f"{dataset}-{backbone.lower()}{depth if depth is not None else ''}-{config_name}"
    normalization = hparams.get("normalization")
    tag = peer or _short_name(NORMALIZATIONS, normalization, import_classes) if normalization != "none" else "none"
    method = recorded_method(block if peer else normalization or "none", import_classes=import_classes)
    return RunIdentity(
        name=name,
        group=group,
        tags=[dataset, tag],
        hparams=hparams,
        method=dataclasses.asdict(method) if method is not None else {},
    )


def identity_from_config(config: Any, option_keys: Sequence[str] = (), *, import_classes: bool = True) -> RunIdentity:
    """The identity of a resolved ``nlbench fit`` config (a jsonargparse Namespace, or its ``as_dict()``).

    The config is resolved, so every init argument is there with the classes' own defaults; the NL options become
    the NLConfig the backbone will get, and the dataset's name is the DataModule class's ``name``. ``option_keys``
    are the keys that differ from the experiment's base (the command line's options, which for a sweep's run are
    its overrides and axes): each one the NL words do not already say is named in short form (``lr0.05``), so two
    runs share a name and a group only when their configs differ in nothing but the seed. ``import_classes=False``
    names the dataset from its class name and the methods from the registry and their text, importing nothing
    (readers of records, which may come from anyone)."""
    cfg = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    flat = {key: value for key, value in schema.flatten(cfg).items() if not schema.is_volatile(key)}
    differs = schema.differing_keys(option_keys, flat)
    named = [key for key in differs if not any(key == n or key.startswith(n + ".") for n in schema.NAMED_KEYS)]
    words = schema.vocabulary(flat, [name for name in schema.HPARAMS if name not in schema.NL_FIELDS])
    if import_classes:
        words["dataset"] = schema.dataset_name(flat.get(schema.BY_NAME["dataset"].key), import_class=True)
    nl = ((((cfg.get("model") or {}).get("backbone") or {}).get("init_args")) or {}).get("nl")
    identity = identify(
        nl=schema.nl_config(nl),
        **{
            **words,
            "dataset": words.get("dataset") or "data",
            "backbone": words.get("backbone") or "backbone",
            "nl_blocks": words.get("nl_blocks") or 0,
        },
        extras=[short_form(key, flat[key]) for key in named],
        import_classes=import_classes,
    )
    return dataclasses.replace(identity, config=flat, differs=differs)


# ---- the record -----------------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """What ``result.json`` holds: the run's status, identity, hyper-parameters and metrics.

    status: "running" (written when training starts and after every validation), then "finished", "diverged",
    "failed" or "interrupted". metrics: every name of :data:`METRICS` (None when unknown)."""

    status: str
    run_name: str = ""
    group: str = ""
    wandb_id: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    written_at: str | None = None
    written_by: str = "nlbench fit"
    exit_code: int | None = None
    machine: dict[str, Any] = field(default_factory=dict)  # MACHINE_KEYS: device, threads, host, sdpa
    config: dict[str, Any] = field(default_factory=dict)  # resolved config, flat dotted keys (RunIdentity.config)
    differs: list[str] = field(default_factory=list)  # the config keys that differ from the experiment's base
    method: dict[str, Any] = field(default_factory=dict)  # RunIdentity.method: name, label, color, has_map, value

    def __post_init__(self) -> None:
        if self.status not in schema.STATUSES:
            raise ValueError(f"run status must be one of {list(schema.STATUSES)}, got {self.status!r}")
        self.metrics = {name: _finite(self.metrics.get(name)) for name in schema.METRICS}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {key: value for key, value in data.items() if key in names}
        known["hparams"] = dict(known.get("hparams") or {})
        known["metrics"] = dict(known.get("metrics") or {})
        known["machine"] = dict(known.get("machine") or {})
        known["config"] = dict(known.get("config") or {})
        known["differs"] = [str(key) for key in known.get("differs") or []]
        known["method"] = method_of(known.get("method"))
        return cls(**known)

    def flat(self) -> dict[str, Any]:
        """One flat dict: bookkeeping, hyper-parameters (short names) and metrics (:data:`METRICS` names)."""
        return {
            "status": self.status,
            "error": self.error,
            "run_name": self.run_name,
            "group": self.group,
            "wandb_id": self.wandb_id,
            "written_at": self.written_at,
            **self.hparams,
            **self.metrics,
            **{key: self.machine.get(key) for key in schema.MACHINE_KEYS},
        }


# A record's method entry: each field and the type it must have (a received record's others are dropped).
_METHOD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "label": str,
    "color": str,
    "has_map": bool,
    "value": str,
}


def method_of(data: Any) -> dict[str, Any]:
    """A record's (or a W&B config's) ``method`` as read: the known fields of the right type (a received file may
    hold anything)."""
    if not isinstance(data, Mapping):
        return {}
    return {key: data[key] for key, kind in _METHOD_FIELDS.items() if isinstance(data.get(key), kind)}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(run_dir: str | os.PathLike[str] | RunDir, record: RunRecord) -> None:
    """Write ``result.json`` atomically (readers never see half a file), stamping ``written_at``."""
    record.written_at = now()
    atomic_write_json(_run_dir(run_dir).result, record.to_json())


class Unreadable(Exception):
    """A run's file that cannot be read (not UTF-8, not YAML or JSON of the right shape, over nlbench's limits, a
    link or a special file); the message is one line naming it."""


def load_record(run_dir: str | os.PathLike[str] | RunDir) -> tuple[RunRecord | None, bool]:
    """The run's record and whether its result.json is torn (there, but not JSON: a write killed midway by an older
    nlbench). ``(None, False)``: no result.json. Read within nlbench's limits (nlbench.limits: size, nesting),
    never through a link and never blocking on a FIFO; anything else raises :class:`Unreadable`."""
    path = _run_dir(run_dir).result
    try:
        data = limits.loads_json(
            read_bounded(path, limits.MAX_JSON_BYTES, what="result.json").decode("utf-8"), str(path)
        )
    except FileNotFoundError:
        return None, False
    except (UnsafeFileError, limits.LimitError) as err:
        raise Unreadable(str(err)) from err
    except UnicodeDecodeError as err:
        raise Unreadable(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError:
        return None, True
    except OSError as err:
        raise Unreadable(f"{path}: cannot read it ({err.strerror or err})") from err
    if not isinstance(data, dict):
        raise Unreadable(f"{path}: not a run record (a JSON {type(data).__name__}, not an object)")
    try:
        return RunRecord.from_json(data), False
    except (TypeError, ValueError) as err:
        raise Unreadable(f"{path}: not a run record ({err})") from err


def read_record(run_dir: str | os.PathLike[str] | RunDir) -> RunRecord | None:
    """The run's record; None when result.json is missing or torn; :class:`Unreadable` when it cannot be read."""
    return load_record(run_dir)[0]


def read_config(run_dir: str | os.PathLike[str] | RunDir) -> dict[str, Any] | None:
    """The run's config.yaml (None when there is none), within nlbench's YAML limits and never through a link;
    :class:`Unreadable` when it is not a fit config."""
    path = _run_dir(run_dir).config
    if not os.path.lexists(path):
        return None
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise Unreadable(f"{path}: not a fit config (a mapping)")
    return config


def read_yaml(path: Path, what: str = "file") -> Any:
    """A received YAML file, parsed within nlbench's limits (size, nesting, alias expansion) and never through a
    link; :class:`Unreadable` (one line naming it) when it cannot be read. Its shape is the caller's to check."""
    try:
        return yamlsafe.load_file(path, what, follow_links=False)
    except (yamlsafe.YamlLimitError, UnsafeFileError) as err:  # over a limit; a link or a special file
        raise Unreadable(str(err)) from err
    except UnicodeDecodeError as err:
        raise Unreadable(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except yaml.YAMLError as err:  # also a tag safe_load refuses (!!python/object ...)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise Unreadable(f"{path}: not valid YAML ({problem})") from err
    except OSError as err:
        raise Unreadable(f"{path}: cannot read it ({err.strerror or err})") from err


def record_from_config(config: Mapping[str, Any]) -> RunRecord:
    """The record of a run killed before it wrote one (or whose record is torn): its identity from its config."""
    identity = identity_from_config(config, import_classes=False)
    return RunRecord(
        status="interrupted",
        run_name=identity.name,
        group=identity.group,
        hparams=identity.hparams,
        config=identity.config,
        method=identity.method,
    )


def device_of(config: Mapping[str, Any] | None) -> str | None:
    """``trainer.accelerator x devices`` of a fit config, for records that do not say where they ran."""
    trainer = (config or {}).get("trainer")
    if not isinstance(trainer, dict):
        return None
    accelerator, devices = trainer.get("accelerator"), trainer.get("devices")
    if accelerator and accelerator != "auto":
        return f"{accelerator} x{devices}" if devices not in (None, 1, "1") else str(accelerator)
    return None


# ---- metrics.csv --------------------------------------------------------------------------------------------------
# Per-epoch columns kept from metrics.csv (CSVLogger output; sparse rows, one metric family per row).
CURVE_COLUMNS: tuple[str, ...] = (
    schema.TRAIN_LOSS,
    schema.TRAIN_ACC1,
    schema.VAL_LOSS,
    schema.FINAL_ACC1,
    schema.FINAL_ACC5,
    "lr",
    schema.IMAGES_PER_S,
)


def read_curve(run_dir: str | os.PathLike[str] | RunDir) -> list[dict[str, float]]:
    """metrics.csv's epochs (:func:`epoch_rows`; [] without the file), streamed within nlbench's limits: the file's
    size, each row's length and the number of epochs are bounded (nlbench.limits), so a received 1 GB file is
    refused (:class:`Unreadable`) instead of held in memory."""
    path = _run_dir(run_dir).metrics_csv
    try:
        fd = open_file(path)
    except FileNotFoundError:
        return []
    except UnsafeFileError as err:
        raise Unreadable(str(err)) from err
    except OSError as err:
        raise Unreadable(f"{path}: cannot read it ({err.strerror or err})") from err
    try:
        with os.fdopen(fd, newline="", encoding="utf-8") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.MAX_CSV_BYTES:
                raise limits.LimitError(
                    f"{path}: {size / 2**20:,.0f} MB is over the "
                    f"{limits.MAX_CSV_BYTES // 2**20} MB limit for metrics.csv"
                )
            return epoch_rows(csv.DictReader(_bounded_lines(f, path)))
    except limits.LimitError as err:
        raise Unreadable(str(err) if str(err).startswith(str(path)) else f"{path}: {err}") from err
    except UnicodeDecodeError as err:
        raise Unreadable(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise Unreadable(f"{path}: not a CSV file ({err})") from err


def _bounded_lines(f: Any, path: Path) -> Iterator[str]:
    """The lines of a text file, refusing (LimitError) one longer than :data:`nlbench.limits.MAX_CSV_LINE`."""
    while True:
        line = f.readline(limits.MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > limits.MAX_CSV_LINE:
            raise limits.LimitError(
                f"{path}: a line longer than {limits.MAX_CSV_LINE:,} characters; not a metrics file of nlbench"
            )
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


def metrics_from_curve(curve: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The record's accuracy metrics as metrics.csv has them (for a record whose result.json is torn)."""
    val = [row for row in curve if row.get(schema.FINAL_ACC1) is not None]
    if not val:
        return {}
    best = max(val, key=lambda row: row[schema.FINAL_ACC1])
    return {
        schema.BEST_ACC1: best[schema.FINAL_ACC1],
        schema.BEST_ACC5: best.get(schema.FINAL_ACC5),
        schema.BEST_EPOCH: int(best["epoch"]),
        schema.FINAL_ACC1: val[-1][schema.FINAL_ACC1],
        schema.FINAL_ACC5: val[-1].get(schema.FINAL_ACC5),
        "epochs": int(val[-1]["epoch"]) + 1,
    }


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---- one run directory, read once -----------------------------------------------------------------------------------
@dataclass
class RunFiles:
    """A run directory's files, each read once: its record (rebuilt from config.yaml when there is none, with the
    metrics of metrics.csv when result.json is torn), its config as the record holds it, and its epochs."""

    record: RunRecord | None
    torn: bool = False
    curve: list[dict[str, float]] = field(default_factory=list)
    device: str | None = None  # where it ran, from config.yaml, for records that do not say


def read_run_files(run_dir: str | os.PathLike[str] | RunDir, *, curves: bool = True) -> RunFiles:
    """The one read of a run directory (the reader's and the sweep's): :class:`Unreadable` names the first file
    that cannot be read."""
    paths = _run_dir(run_dir)
    record, torn = load_record(paths)
    curve = read_curve(paths) if curves or record is None or torn else []
    config = read_config(paths) if record is None else None
    if record is not None and record.machine.get("device") is None:
        try:  # only to say where an older record ran: its config.yaml does not make the run unreadable
            config = read_config(paths)
        except Unreadable:
            config = None
    if record is None and config is not None:
        record = record_from_config(config)
    if record is not None and torn and curve:
        record.metrics.update(metrics_from_curve(curve))
    return RunFiles(record=record, torn=torn, curve=curve, device=device_of(config))


def _run_dir(run_dir: str | os.PathLike[str] | RunDir) -> RunDir:
    return run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))


def _finite(value: Any) -> Any:
    """NaN/inf become None: JSON has no NaN, and an empty cell reads better than 'nan' in a CSV."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
