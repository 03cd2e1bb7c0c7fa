"""The run record's vocabulary, defined once: metric names, statuses, and the table of the record's fields.

Every other spelling is derived from :data:`FIELDS`: the hyper-parameters a run records (:data:`HPARAMS`), the
config keys its name already says (:data:`NAMED_KEYS`), the training recipe every table states (:data:`RECIPE`),
and the reader's columns. :func:`vocabulary` is the one translation from a resolved fit config to those words, used
by the fit (run names, result.json) and by the reader (runs known only by their config or their swept values).
A new field is one row of the table. Light on imports (no torch): the reader and the report use it.
docs/design.md "The record schema" shows the table.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlbench.nn.config import NLConfig

# ---- metrics ----------------------------------------------------------------------------------------------------
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
    BEST_ACC1,
    FINAL_ACC1,
    BEST_ACC5,
    FINAL_ACC5,
    BEST_EPOCH,
    SELECTED_ACC1,
    "epochs",
    "global_step",
    "time_s",
    IMAGES_PER_S,
    "params",
    "nl_params",
    CLASSES,
)
ACCURACIES: tuple[str, ...] = (BEST_ACC1, FINAL_ACC1, BEST_ACC5, FINAL_ACC5, SELECTED_ACC1)
# Below this multiple of chance top-1 (1 / classes) a model has learnt too little for its numbers to mean much.
NEAR_CHANCE = 1.5

# ---- statuses and bookkeeping -----------------------------------------------------------------------------------
STATUSES: tuple[str, ...] = ("finished", "failed", "diverged", "interrupted", "running")
FINAL_STATUSES: tuple[str, ...] = ("finished", "diverged")  # a sweep skips these; it (re)runs the others
NEW = "new"  # a sweep's run that has no directory yet
UNREADABLE = "unreadable"  # a run whose files cannot be read: listed, never averaged
# The reader's columns that say which run a row is and where it came from: never hyper-parameters or metrics.
BOOKKEEPING: tuple[str, ...] = (
    "run_id",
    "status",
    "error",
    "run_name",
    "wandb_group",
    "group",
    "source",
    "run_dir",
    "wandb_id",
    "written_at",
    "curve",
)
# Where the run trained, so throughput figures can say where they were measured (RunRecord.machine); "sdpa": the
# attention kernel(s) SDPA ran for the model's softmax blocks in training (nlbench.nn.sdpa; None without one).
MACHINE_KEYS: tuple[str, ...] = ("device", "threads", "host", "sdpa")
SEED = "seed"
SEED_KEY = "seed_everything"  # the fit config's key for the seed


# ---- the record's fields ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One word of the vocabulary: its ``name`` (hparams key, table column), the flat ``key`` of a resolved fit
    config it comes from, whether the run records it as a hyper-parameter (``hparam``), whether a run's name
    already says it (``names_run``: never repeated as ``<name><value>``), and whether it is part of the training
    recipe every report and results table states (``recipe``). ``read``: the config value -> the word (default:
    as is)."""

    name: str
    key: str
    hparam: bool = False
    names_run: bool = False
    recipe: bool = False
    read: Callable[[Any], Any] | None = None


def dataset_name(class_path: Any, *, import_class: bool = True) -> str:
    """The DataModule class's dataset name (its ``record_name``, else ``name``), e.g. "cifar10". Without
    ``import_class`` (readers of records, which may come from anyone) from the class name alone."""
    if not isinstance(class_path, str) or not class_path:
        return "data"
    module, _, name = class_path.rpartition(".")
    fallback = name.removesuffix("DataModule").lower() or "data"
    if not import_class:
        return fallback
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return fallback
    return str(getattr(cls, "record_name", None) or getattr(cls, "name", None) or fallback)


def _dataset_text(value: Any) -> str:
    return dataset_name(value, import_class=False)  # a reader never imports a record's class


def _class_name(value: Any) -> Any:
    return value.rsplit(".", 1)[-1] if isinstance(value, str) else value


def _stages(value: Any) -> Any:
    return None if value is None else list(value)


def _blocks(value: Any) -> int | list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else int(value or 0)


def _seed(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_BACKBONE = "model.backbone.init_args."
NL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(NLConfig))
FIELDS: tuple[Field, ...] = (
    Field("dataset", "data.class_path", hparam=True, names_run=True, read=_dataset_text),
    Field("backbone", "model.backbone.class_path", hparam=True, names_run=True, read=_class_name),
    Field("depth", _BACKBONE + "depth", hparam=True, names_run=True),
    Field("widen", _BACKBONE + "widen", hparam=True),
    Field("nl_stages", _BACKBONE + "nl_stages", hparam=True, names_run=True, read=_stages),
    Field("nl_blocks", _BACKBONE + "nl_blocks", hparam=True, names_run=True, read=_blocks),
    Field("fc_init", _BACKBONE + "fc_init", hparam=True, names_run=True),
    Field("block", _BACKBONE + "block", hparam=True, names_run=True),
    *(Field(name, f"{_BACKBONE}nl.{name}", hparam=True, names_run=True) for name in NL_FIELDS),
    Field(SEED, SEED_KEY, hparam=True, names_run=True, read=_seed),
    Field("optimizer", "model.optimizer.class_path", recipe=True, read=_class_name),
    Field("lr", "model.optimizer.init_args.lr", recipe=True),
    Field("momentum", "model.optimizer.init_args.momentum", recipe=True),
    Field("weight_decay", "model.optimizer.init_args.weight_decay", recipe=True),
    Field("scheduler", "model.scheduler.class_path", recipe=True, read=_class_name),
    Field("max_epochs", "trainer.max_epochs", hparam=True, recipe=True),
    Field("max_steps", "trainer.max_steps", recipe=True),
    Field("limit_train_batches", "trainer.limit_train_batches", recipe=True),
    Field("limit_val_batches", "trainer.limit_val_batches", recipe=True),
    Field("accumulate_grad_batches", "trainer.accumulate_grad_batches", recipe=True),
    Field("gradient_clip_val", "trainer.gradient_clip_val", recipe=True),
    Field("precision", "trainer.precision", recipe=True),
    Field("batch_size", "data.init_args.batch_size", hparam=True, recipe=True),
    Field("val_split", "data.init_args.val_split", recipe=True),
    Field("subset", "data.init_args.subset", recipe=True),
    Field("label_smoothing", "model.label_smoothing", recipe=True),
)
BY_NAME: dict[str, Field] = {field.name: field for field in FIELDS}
HPARAMS: tuple[str, ...] = tuple(field.name for field in FIELDS if field.hparam)
RECIPE: dict[str, str] = {field.name: field.key for field in FIELDS if field.recipe}
NAMED_KEYS: tuple[str, ...] = tuple(field.key for field in FIELDS if field.names_run)


def read_field(field: Field, value: Any) -> Any:
    return field.read(value) if field.read is not None and value is not None else value


def vocabulary(flat: Mapping[str, Any], names: Sequence[str] = HPARAMS) -> dict[str, Any]:
    """The words ``names`` (default: the hyper-parameters) of a resolved fit config's flat keys (with or without
    ``init_args``), each read by its field; a word whose key the config lacks is left out."""
    canon = {canonical_key(key): value for key, value in flat.items()}
    out = {}
    for name in names:
        field = BY_NAME[name]
        if field.key in flat or canonical_key(field.key) in canon:
            out[name] = read_field(field, flat.get(field.key, canon.get(canonical_key(field.key))))
    return out


def nl_config(value: Any) -> NLConfig | None:
    """The NLConfig a resolved config's ``nl`` (a mapping or an NLConfig) gives the backbone's blocks."""
    if isinstance(value, NLConfig):
        return value
    return NLConfig(**value) if isinstance(value, Mapping) else None


# ---- config keys ------------------------------------------------------------------------------------------------
# Keys of a resolved fit config that say where or how a run is stored or executed, never what it trains: they
# differ between runs and machines without making configurations different (dotted prefixes).
VOLATILE: tuple[str, ...] = (
    "config",
    "run_dir",
    "ckpt_path",
    "weights_only",
    "print_config",
    "trainer.default_root_dir",
    "trainer.logger",
    "trainer.callbacks",
    "trainer.plugins",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.init_args.root",
    "data.init_args.data_dir",
    "data.init_args.num_workers",
    "data.init_args.download",
)


def short_name(key: str) -> str:
    """The one translation from a dotted config key to the vocabulary: its last component other than jsonargparse's
    ``init_args``/``class_path`` (``seed_everything`` and ``seed`` -> ``seed``).
    ``model.backbone.init_args.nl.normalization`` -> ``normalization``; ``model.optimizer.class_path`` ->
    ``optimizer``."""
    parts = [part for part in key.split(".") if part not in ("init_args", "class_path")] or [key]
    return SEED if parts[-1] == SEED_KEY else parts[-1]


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


def flat_key(key: str, config: Mapping[str, Any]) -> str:
    """A sweep's dotted key as the record's flat key (with ``init_args`` where the config has it)."""
    found = differing_keys([key], config) if config else []
    return found[0] if len(found) == 1 else key


def column_names(keys: Sequence[str], *, taken: Sequence[str] = ()) -> dict[str, str]:
    """Unique table column names for dotted keys: the shortest dotted suffix that clashes with nothing."""

    def suffixes(key: str) -> list[str]:
        parts = key.split(".")
        return [short_name(key)] + [".".join(parts[-n:]) for n in range(2, len(parts) + 1)]

    names: dict[str, str] = {}
    for key in keys:
        used = set(taken).union(*(suffixes(other) for other in keys if other != key))
        names[key] = next((name for name in suffixes(key) if name not in used), key)
    return names


def hashable(value: Any) -> Any:
    """A config or table value frozen for sets and dict keys: lists as tuples, mappings as sorted item tuples, NaN
    as None (the one rule for comparing values across runs)."""
    if isinstance(value, (list, tuple)):
        return tuple(hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
