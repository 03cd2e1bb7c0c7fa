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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nlbench.io import atomic_write_json
from nlbench.nn import NLConfig, block_name, method_name

# ---- metric vocabulary ------------------------------------------------------------------------------------------
BEST_ACC1 = "val/acc1_best"  # best validation top-1 over epochs (the paper's figure; selects on the eval split)
BEST_ACC5 = "val/acc5_at_best"  # top-5 at the epoch of the best top-1
FINAL_ACC1 = "val/acc1"  # top-1 of the last epoch
FINAL_ACC5 = "val/acc5"
BEST_EPOCH = "best_epoch"
IMAGES_PER_S = "train/images_per_s"
METRICS: tuple[str, ...] = (
    BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5, BEST_EPOCH,
    "epochs", "global_step", "time_s", IMAGES_PER_S, "params", "nl_params",
)  # fmt: skip
ACCURACIES: tuple[str, ...] = (BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5)

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
# Where the run trained, so throughput figures can say where they were measured (RunRecord.machine).
MACHINE_KEYS: tuple[str, ...] = ("device", "threads", "host")


def short_name(key: str) -> str:
    """The one translation from a dotted config key to the vocabulary: its last component (``seed_everything`` and
    ``seed`` -> ``seed``). ``model.backbone.init_args.nl.normalization`` -> ``normalization``."""
    name = key.rsplit(".", 1)[-1]
    return SEED if name == SEED_KEY else name


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

    @property
    def resumable(self) -> bool:
        """The directory holds checkpoints, so a new attempt resumes (``--ckpt_path last``)."""
        return any(self.checkpoints.glob("*.ckpt"))


# ---- identity ---------------------------------------------------------------------------------------------------
@dataclass
class RunIdentity:
    """How a run is named and grouped in W&B, the run directory and the results tables."""

    name: str
    group: str
    tags: list[str]
    hparams: dict[str, Any] = field(default_factory=dict)


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
) -> RunIdentity:
    """The run's name, group, tags and hyper-parameters (keys of :data:`HPARAMS`, None values dropped).

    ``nl`` is the NLConfig the backbone's blocks get; a backbone without NL blocks (no stage or zero blocks) is the
    baseline, recorded as normalization "none". ``block`` other than "nonlocal" (a peer block: gc, se, a class
    path) is recorded, named by its short name, and its runs carry no NL options (they do not apply)."""
    # nl_blocks is one count for every NL stage, or one count per stage (then nl_stages may be empty)
    if isinstance(nl_blocks, (list, tuple)):
        has_nl = nl is not None and sum(nl_blocks) > 0
        nl_blocks = list(nl_blocks)
    else:
        has_nl = nl is not None and (nl_stages is None or len(nl_stages) > 0) and nl_blocks > 0  # None = stage 2
    peer = block_name(block) if has_nl and block not in (None, "nonlocal") else None
    if peer == "nonlocal":  # the NL block given by class path
        peer = None
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
        parts = [method_name(nl.normalization), width, f"h{nl.heads}", nl.init]
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
    config_name = "-".join(parts)
    name = f"{config_name}-s{seed}" if seed is not None else config_name
    group = f"{dataset}-{backbone.lower()}{depth if depth is not None else ''}-{config_name}"
    tag = peer or method_name(hparams["normalization"]) if hparams.get("normalization") != "none" else "none"
    return RunIdentity(name=name, group=group, tags=[dataset, tag], hparams=hparams)


def identity_from_config(config: Any) -> RunIdentity:
    """The identity of a resolved ``nlbench fit`` config (a jsonargparse Namespace, or its ``as_dict()``).

    The config is resolved, so every init argument is there with the classes' own defaults; the NL options become
    the NLConfig the backbone will get, and the dataset's name is the DataModule class's ``name``."""
    cfg = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    backbone = (cfg.get("model") or {}).get("backbone") or {}
    args = backbone.get("init_args") or {}
    data = cfg.get("data") or {}
    nl = args.get("nl")
    seed = cfg.get(SEED_KEY)
    return identify(
        nl=NLConfig(**nl) if isinstance(nl, Mapping) else nl if isinstance(nl, NLConfig) else None,
        dataset=dataset_name(data.get("class_path")),
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
    )


def _blocks(value: Any) -> int | list[int]:
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return int(value or 0)


def dataset_name(class_path: str | None) -> str:
    """The DataModule class's dataset name (its ``record_name``, else ``name``), e.g. "cifar10"."""
    if not class_path:
        return "data"
    module, _, name = class_path.rpartition(".")
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
    machine: dict[str, Any] = field(default_factory=dict)  # MACHINE_KEYS: device, threads, host

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
        return cls(**known)

    def flat(self) -> dict[str, Any]:
        """One flat dict: bookkeeping, hyper-parameters (short names) and metrics (:data:`METRICS` names)."""
        return {
            "status": self.status, "error": self.error, "run_name": self.run_name, "group": self.group,
            "wandb_id": self.wandb_id, "written_at": self.written_at, **self.hparams, **self.metrics,
            **{key: self.machine.get(key) for key in MACHINE_KEYS},
        }  # fmt: skip


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(run_dir: str | os.PathLike[str] | RunDir, record: RunRecord) -> None:
    """Write ``result.json`` atomically (readers never see half a file), stamping ``written_at``."""
    record.written_at = now()
    atomic_write_json(_run_dir(run_dir).result, record.to_json())


def read_record(run_dir: str | os.PathLike[str] | RunDir) -> RunRecord | None:
    """The run's record, or None when result.json is missing, unreadable or not a record (a half-written or
    foreign file counts as no result: the run is then re-run or reported as missing, never mis-read)."""
    try:
        data = json.loads(_run_dir(run_dir).result.read_text(encoding="utf-8"))
        return RunRecord.from_json(data) if isinstance(data, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError):
        return None


def load_run_record(run_dir: str | os.PathLike[str]) -> RunRecord:
    """A run directory as a record, also when it has no (readable) result.json: then the identity comes from its
    config.yaml and the status is "interrupted" (it stopped without writing an outcome). Raises FileNotFoundError
    when the directory holds neither file."""
    paths = RunDir(Path(run_dir))
    record = read_record(paths)
    if record is not None:
        return record
    if not paths.config.is_file():
        raise FileNotFoundError(f"{paths.path}: no result.json or config.yaml; is it a run directory of `nlbench fit`?")
    import yaml

    identity = identity_from_config(yaml.safe_load(paths.config.read_text()) or {})
    return RunRecord(status="interrupted", run_name=identity.name, group=identity.group, hparams=identity.hparams)


def _run_dir(run_dir: str | os.PathLike[str] | RunDir) -> RunDir:
    return run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))


def _finite(value: Any) -> Any:
    """NaN/inf become None: JSON has no NaN, and an empty cell reads better than 'nan' in a CSV."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
