"""The run directory's record: one owner for what a run writes and every reader reads.

Metric names are the names logged by the LightningModule, so the logs, result.json, results.csv, the W&B summary
and the report all say the same thing. Hyper-parameter names are NLConfig's field names plus the few that place
the blocks and describe the run (:data:`HPARAMS`). Everything that writes or reads ``result.json`` goes through
:class:`RunRecord`, :func:`write_record` and :func:`read_record`; a reader gets one flat dict per run from
:meth:`RunRecord.flat` (status, error, hyper-parameters, metrics).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nlbench import limits
from nlbench.io import UnsafeFileError, atomic_write_json, read_bounded
from nlbench.nn import NLConfig
from nlbench.nn.registry import BLOCKS, NORMALIZATIONS, Registry, peer_block, recorded_method

# ---- metric vocabulary ------------------------------------------------------------------------------------------
BEST_ACC1 = "val/acc1_best"  # best validation top-1 over epochs (the paper's figure; selects on the eval split)
BEST_ACC5 = "val/acc5_at_best"  # top-5 at the epoch of the best top-1
FINAL_ACC1 = "val/acc1"  # top-1 of the last epoch
FINAL_ACC5 = "val/acc5"
BEST_EPOCH = "best_epoch"
# Test top-1 of the checkpoint chosen on the held-out validation split (recorded only when data.val_split > 0; with
# val_split 0 the validation split is the test split, and this would be BEST_ACC1, which selects on the test data).
SELECTED_ACC1 = "test/acc1_at_best_val"
IMAGES_PER_S = "train/images_per_s"
CLASSES = "classes"  # the model's number of outputs: chance top-1 is 1 / classes
# Per-step/epoch names the LightningModule logs (nlbench.classifier logs through these constants).
TRAIN_LOSS, TRAIN_ACC1 = "train/loss", "train/acc1"
VAL_LOSS = "val/loss"
TEST_LOSS, TEST_ACC1, TEST_ACC5 = "test/loss", "test/acc1", "test/acc5"
METRICS: tuple[str, ...] = (
    BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5, BEST_EPOCH, SELECTED_ACC1,
    "epochs", "global_step", "time_s", IMAGES_PER_S, "params", "nl_params", CLASSES,
)  # fmt: skip
ACCURACIES: tuple[str, ...] = (BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5, SELECTED_ACC1)
# Below this multiple of chance top-1 (1 / classes) a model has learnt too little for its numbers to mean much.
NEAR_CHANCE = 1.5

# ---- hyper-parameter vocabulary ---------------------------------------------------------------------------------
NL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(NLConfig))
HPARAMS: tuple[str, ...] = (
    "dataset", "backbone", "depth", "widen", "nl_stages", "nl_blocks", "fc_init", "block", *NL_FIELDS,
    "seed", "max_epochs", "batch_size",
)  # fmt: skip
SEED = "seed"
SEED_KEY = "seed_everything"  # the fit config's key for the seed

# ---- statuses -----------------------------------------------------------------------------------------------------
STATUSES: tuple[str, ...] = ("finished", "failed", "diverged", "interrupted", "running")
FINAL_STATUSES: tuple[str, ...] = ("finished", "diverged")  # a sweep skips these; it (re)runs the others
# Keys of a flat record that are bookkeeping, never hyper-parameters or metrics.
BOOKKEEPING: tuple[str, ...] = ("run_id", "status", "error", "run_name", "group", "wandb_id", "written_at")
# Where the run trained, so throughput figures can say where they were measured (RunRecord.machine); "sdpa": the
# attention kernel(s) SDPA ran for the model's softmax blocks in training (nlbench.nn.sdpa; None without one).
MACHINE_KEYS: tuple[str, ...] = ("device", "threads", "host", "sdpa")


def short_name(key: str) -> str:
    """The one translation from a dotted config key to the vocabulary: its last component other than jsonargparse's
    ``init_args``/``class_path`` (``seed_everything`` and ``seed`` -> ``seed``).
    ``model.backbone.init_args.nl.normalization`` -> ``normalization``; ``model.optimizer.class_path`` ->
    ``optimizer``."""
    parts = [part for part in key.split(".") if part not in ("init_args", "class_path")] or [key]
    return SEED if parts[-1] == SEED_KEY else parts[-1]


# ---- the config, flattened ---------------------------------------------------------------------------------------
# Keys of a resolved fit config that say where or how a run is stored or executed, never what it trains: they
# differ between runs and machines without making configurations different (dotted prefixes).
VOLATILE: tuple[str, ...] = (
    "config", "run_dir", "ckpt_path", "weights_only", "print_config", "trainer.default_root_dir", "trainer.logger",
    "trainer.callbacks", "trainer.plugins", "trainer.accelerator", "trainer.devices", "trainer.strategy",
    "trainer.num_nodes", "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "data.init_args.root", "data.init_args.data_dir", "data.init_args.num_workers", "data.init_args.download",
)  # fmt: skip
# Keys the NL words of a name already say (with the seed and the dataset/backbone prefix of the group).
_NAMED: tuple[str, ...] = (
    "model.backbone.init_args.nl", "model.backbone.init_args.nl_stages", "model.backbone.init_args.nl_blocks",
    "model.backbone.init_args.fc_init", "model.backbone.init_args.depth", "model.backbone.init_args.block",
    "model.backbone.class_path", "data.class_path", SEED_KEY,
)  # fmt: skip
# Short forms of common options in run names: lr0.05, ep30, bs64 (any other: <short name><value>).
_ABBREVIATIONS = {"max_epochs": "ep", "batch_size": "bs", "weight_decay": "wd", "momentum": "mom", "lr": "lr",
                  "widen": "k", "precision": ""}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config (a jsonargparse ``as_dict()``, a YAML mapping) as one level of dotted keys; lists stay values.
    ``{"model": {"optimizer": {"init_args": {"lr": 0.1}}}}`` -> ``{"model.optimizer.init_args.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_volatile(key: str) -> bool:
    return any(key == v or key.startswith(v + ".") for v in VOLATILE)


def canonical_key(key: str) -> str:
    """A dotted key without jsonargparse's ``init_args`` level: the command line may leave it out."""
    return ".".join(part for part in key.split(".") if part != "init_args")


def command_line_keys(args: Sequence[str]) -> list[str]:
    """The dotted option keys a ``nlbench fit`` command line sets (``--key=value`` / ``--key value``), in order,
    without the options that only locate files (``--config``, ``--run_dir``, ...)."""
    keys = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            key = arg[2:].split("=", 1)[0]
            if not is_volatile(key) and key not in keys:
                keys.append(key)
    return keys


def differing_keys(option_keys: Sequence[str], flat: Mapping[str, Any]) -> list[str]:
    """The flat config keys that ``option_keys`` (command-line or sweep keys, with or without ``init_args``) set.
    A key naming a whole class (``--model.optimizer torch.optim.AdamW``) counts as its ``class_path``."""
    canon = {canonical_key(key): key for key in flat}
    out: list[str] = []
    for option in option_keys:
        option = canonical_key(option)
        if option in canon:
            hits = [canon[option]]
        elif f"{option}.class_path" in canon:
            hits = [canon[f"{option}.class_path"]]
        else:
            hits = [key for c, key in canon.items() if c.startswith(option + ".")]
        out.extend(key for key in hits if key not in out and not is_volatile(key))
    return out


def short_form(key: str, value: Any) -> str:
    """A differing option in a run name: ``lr0.05``, ``ep30``, ``optimizer-adamw`` (class paths by class name)."""
    name = short_name(key)
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
            raise UnsafeFileError(f"{self.path}: the run directory is a symbolic link; nlbench does not write through "
                                  "links (use the folder it points to as --run_dir, or a new one)")
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
        inside = folder.name == "checkpoints" and os.sep not in target and target not in (".", "..") \
            and (folder / target).is_file() and not (folder / target).is_symlink()  # fmt: skip
        if not inside:
            raise UnsafeFileError(f"{path}: a symbolic link in a run directory; nlbench does not write through links "
                                  "(replace it with the file itself, or remove it)")
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
    """The run's name, group, tags and hyper-parameters (keys of :data:`HPARAMS`, None values dropped).

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
        has_nl = nl is not None and (nl_stages is None or len(nl_stages) > 0) and nl_blocks > 0  # None = stage 2
    # A peer block by its short name; the NL block (by name or class path) and the former residual kinds are none.
    peer_value = peer_block(block, import_classes=import_classes) if has_nl else None
    peer = _short_name(BLOCKS, block, import_classes) if peer_value is not None and block else None
    hparams: dict[str, Any] = {
        "dataset": dataset, "backbone": backbone, "depth": depth, "widen": widen,
        "nl_stages": None if nl_stages is None else list(nl_stages), "nl_blocks": nl_blocks, "fc_init": fc_init,
        "block": block if peer else None,
        **(dataclasses.asdict(nl) if has_nl and not peer else {} if peer else {"normalization": "none"}),
        "seed": seed, "max_epochs": max_epochs, "batch_size": batch_size,
    }  # fmt: skip
    hparams = {key: hparams[key] for key in HPARAMS if hparams.get(key) is not None}
    if peer:
        parts = [peer]
    if has_nl and not peer:
        assert nl is not None
        width = f"w{nl.width}" if nl.width else f"r{nl.reduction}"
        parts = [_short_name(NORMALIZATIONS, nl.normalization, import_classes), width, f"h{nl.heads}", nl.init]
        if nl.similarity != "dot":
            parts.append(nl.similarity)
        if nl.normalization == "scale" and nl.order != "reassociated":
            parts.append(nl.order)
        # Options off their default, so that configurations that differ never share a W&B group.
        if nl.normalization == "scale" and nl.scale != "sqrt_n":
            parts.append(str(nl.scale))
        if not nl.pos_encoding:
            parts.append("nopos")
        if isinstance(nl_blocks, list):
            parts.append("blocks" + "-".join(map(str, nl_blocks)))
        else:
            if nl_stages is not None and list(nl_stages) != [2]:
                parts.append("stages" + "-".join(map(str, nl_stages)))
            if nl_blocks > 1:
                parts.append(f"x{nl_blocks}")
    elif not peer:
        parts = ["baseline"]
    if peer and isinstance(nl_blocks, list):
        parts.append("blocks" + "-".join(map(str, nl_blocks)))
    elif peer:
        if nl_stages is not None and list(nl_stages) != [2]:
            parts.append("stages" + "-".join(map(str, nl_stages)))
        if nl_blocks > 1:
            parts.append(f"x{nl_blocks}")
    if fc_init not in (None, "kaiming"):
        parts.append(f"fc{fc_init}")
    parts += [extra for extra in extras if extra not in parts]  # other differing options: lr0.05, ep30
    config_name = "-".join(parts)
    name = f"{config_name}-s{seed}" if seed is not None else config_name
    group = f"{dataset}-{backbone.lower()}{depth if depth is not None else ''}-{config_name}"
    normalization = hparams.get("normalization")
    tag = peer or _short_name(NORMALIZATIONS, normalization, import_classes) if normalization != "none" else "none"
    method = recorded_method(block if peer else normalization or "none", import_classes=import_classes)
    return RunIdentity(name=name, group=group, tags=[dataset, tag], hparams=hparams,
                       method=dataclasses.asdict(method) if method is not None else {})


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
    flat = {key: value for key, value in flatten(cfg).items() if not is_volatile(key)}
    differs = differing_keys(option_keys, flat)
    named = [key for key in differs if not any(key == n or key.startswith(n + ".") for n in _NAMED)]
    backbone = (cfg.get("model") or {}).get("backbone") or {}
    args = backbone.get("init_args") or {}
    data = cfg.get("data") or {}
    nl = args.get("nl")
    seed = cfg.get(SEED_KEY)
    identity = identify(
        nl=NLConfig(**nl) if isinstance(nl, Mapping) else nl if isinstance(nl, NLConfig) else None,
        dataset=dataset_name(data.get("class_path"), import_class=import_classes),
        backbone=str(backbone.get("class_path") or "backbone").rsplit(".", 1)[-1],
        depth=args.get("depth"),
        widen=args.get("widen"),
        nl_stages=None if args.get("nl_stages") is None else list(args["nl_stages"]),
        nl_blocks=_blocks(args.get("nl_blocks")),
        fc_init=args.get("fc_init"),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        max_epochs=(cfg.get("trainer") or {}).get("max_epochs"),
        batch_size=(data.get("init_args") or {}).get("batch_size"),
        block=args.get("block"),
        extras=[short_form(key, flat[key]) for key in named],
        import_classes=import_classes,
    )
    return dataclasses.replace(identity, config=flat, differs=differs)


def _blocks(value: Any) -> int | list[int]:
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return int(value or 0)


def dataset_name(class_path: str | None, *, import_class: bool = True) -> str:
    """The DataModule class's dataset name (its ``record_name``, else ``name``), e.g. "cifar10"."""
    if not class_path:
        return "data"
    module, _, name = class_path.rpartition(".")
    if not import_class:
        return name.removesuffix("DataModule").lower() or "data"
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return name.removesuffix("DataModule").lower() or "data"
    return str(getattr(cls, "record_name", None) or getattr(cls, "name", None) or name.removesuffix("DataModule").lower())


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
        if self.status not in STATUSES:
            raise ValueError(f"run status must be one of {list(STATUSES)}, got {self.status!r}")
        self.metrics = {name: _finite(self.metrics.get(name)) for name in METRICS}

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
            "status": self.status, "error": self.error, "run_name": self.run_name, "group": self.group,
            "wandb_id": self.wandb_id, "written_at": self.written_at, **self.hparams, **self.metrics,
            **{key: self.machine.get(key) for key in MACHINE_KEYS},
        }  # fmt: skip


# A record's method entry: each field and the type it must have (a received record's others are dropped).
_METHOD_FIELDS: dict[str, type | tuple[type, ...]] = {"name": str, "label": str, "color": str, "has_map": bool,
                                                     "value": str}  # fmt: skip


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


def read_record(run_dir: str | os.PathLike[str] | RunDir) -> RunRecord | None:
    """The run's record, or None when result.json is missing, unreadable or not a record (a half-written or
    foreign file counts as no result: the run is then re-run or reported as missing, never mis-read)."""
    path = _run_dir(run_dir).result
    try:
        data = limits.loads_json(read_bounded(path, limits.MAX_JSON_BYTES, what="result.json"), str(path))
        return RunRecord.from_json(data) if isinstance(data, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError):  # incl. nlbench's limits
        return None


def _run_dir(run_dir: str | os.PathLike[str] | RunDir) -> RunDir:
    return run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))


def _finite(value: Any) -> Any:
    """NaN/inf become None: JSON has no NaN, and an empty cell reads better than 'nan' in a CSV."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
