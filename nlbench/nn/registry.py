"""Methods by name: the attention normalizations of the NL block and the blocks placed at an insertion point.

A method is a class. Users name it by its registered name (``softmax``, ``gc``) or by a class path
(``my_pkg.attn.SigmoidAttention``), the way timm's ``create_attn`` maps names to classes; nothing else in nlbench
keeps a list of methods. What the rest of the code needs to know about a method (its short name for run names, a
label and colour for the report, whether it has an explicit attention map) comes from :func:`method_info`, read off
the class:

- ``name``: the registered name, else the class's ``name`` attribute, else its class name;
- ``label`` / ``color``: optional class attributes, else given at registration (default: the name, and no colour:
  the plot picks one);
- ``has_map``: the class defines ``attention_map(q, k)``.

Torch-free: built-ins are registered as import paths and loaded on first use, so the run record's readers can name
a built-in method without loading the training stack. Readers never import a class path at all (a record may come
from anyone): the fit records its method's :class:`MethodInfo` (``RunRecord.method``), and :meth:`Registry.known`
answers from the registrations alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class UnknownMethodError(ValueError):
    """A name that is neither registered nor an importable class path; the message names the option."""


@dataclass(frozen=True)
class MethodInfo:
    """What reports, run names and benchmarks show of a method."""

    name: str  # short name: run names, table rows
    label: str  # legend and table label
    color: str | None  # matplotlib colour, or None to let the plot choose
    has_map: bool  # defines attention_map(q, k) -> (B, h, N, M)
    value: str  # what the user wrote: the registered name or the class path


class Registry:
    """Names -> classes for one kind of method; ``option`` is the dotted option users set (for error messages)."""

    def __init__(self, kind: str, option: str) -> None:
        self.kind, self.option = kind, option
        self._entries: dict[str, type | str] = {}
        # name -> label, colour and whether it has a map, given at registration
        self._looks: dict[str, tuple[str | None, str | None, bool | None]] = {}

    def register(
        self,
        name: str,
        target: type | str,
        *,
        label: str | None = None,
        color: str | None = None,
        has_map: bool | None = None,
    ) -> None:
        """Register a class (or its import path ``module.Class``, loaded on first use) under ``name``; ``label``,
        ``color`` and ``has_map`` let a reader of records show it without importing it (the class's attributes
        win)."""
        if not name.isidentifier():
            raise ValueError(f"{self.kind} names are identifiers; got {name!r}")
        self._entries[name] = target
        self._looks[name] = (label, color, has_map)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, value: object) -> bool:
        return value in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def resolve(self, value: str | type) -> type:
        """The class for a registered name, a class path or a class; UnknownMethodError (one line) otherwise."""
        if isinstance(value, type):
            return value
        if not isinstance(value, str) or not value:
            raise UnknownMethodError(self.unknown(value))
        target = self._entries.get(value, value)
        if isinstance(target, type):
            return target
        if "." not in target:
            raise UnknownMethodError(self.unknown(value))
        module, _, name = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except ImportError as err:
            raise UnknownMethodError(f"{self.unknown(value)} ({type(err).__name__}: {err})") from None
        except AttributeError:
            raise UnknownMethodError(f"{self.unknown(value)} (module {module} has no {name})") from None
        if not isinstance(cls, type):
            raise UnknownMethodError(f"{self.option}: {value} is not a class")
        return cls

    def name_of(self, value: str | type) -> str:
        """The short name: the registered name, else the class's ``name`` attribute, else its class name. A
        registered name is returned without importing anything; a class path that does not import here (a record
        read where the user's module is not on the path) gives its last component."""
        if isinstance(value, str) and value in self._entries:
            return value
        try:
            cls = self.resolve(value)
        except UnknownMethodError:
            if isinstance(value, str) and value:
                return value.rsplit(".", 1)[-1]
            raise
        for name, target in self._entries.items():
            if target is cls or target == f"{cls.__module__}.{cls.__qualname__}":
                return name
        return str(getattr(cls, "name", None) or cls.__name__)

    def registered_name(self, value: str) -> str | None:
        """The registered name ``value`` stands for, read from the text alone: a name, or the class path a name was
        registered with (also as re-exported higher up in nlbench: ``nlbench.nn.GlobalContext2d``); else None."""
        if not isinstance(value, str):
            return None
        if value in self._entries:
            return value
        for name, target in self._entries.items():
            path = target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"
            if value == path or (
                value.startswith("nlbench.")
                and path.startswith("nlbench.")
                and value.rsplit(".", 1)[-1] == path.rsplit(".", 1)[-1]
            ):
                return name
        return None

    def known(self, value: str) -> MethodInfo:
        """What the registry says of ``value`` without importing anything (readers of records that came from
        elsewhere): a registered name (or its class path) with the label, colour and map given at registration; any
        other class path by its last component, without colour or map. An unregistered plain name is a typo:
        UnknownMethodError."""
        name = self.registered_name(value) if isinstance(value, str) and value else None
        if name is None:
            if not isinstance(value, str) or "." not in value:
                raise UnknownMethodError(self.unknown(value))
            last = value.rsplit(".", 1)[-1]
            return MethodInfo(name=last, label=last, color=None, has_map=False, value=value)
        label, color, has_map = self._looks.get(name, (None, None, None))
        return MethodInfo(name=name, label=label or name, color=color, has_map=bool(has_map), value=value)

    def info(self, value: str | type) -> MethodInfo:
        cls = self.resolve(value)
        name = self.name_of(value)
        label, color, _ = self._looks.get(name, (None, None, None)) if name in self._entries else (None, None, None)
        return MethodInfo(
            name=name,
            label=str(getattr(cls, "label", None) or label or name),
            color=getattr(cls, "color", None) or color,
            has_map=callable(getattr(cls, "attention_map", None)),
            value=value if isinstance(value, str) else f"{cls.__module__}.{cls.__qualname__}",
        )

    def unknown(self, value: Any) -> str:
        """The one-line message for a value that names none of this registry's methods."""
        return (
            f"{self.option}: unknown {self.kind} {value!r}: use one of {', '.join(self._entries)} or a class "
            "path (package.module.Class) importable from the Python path"
        )


# The attention normalization inside the NL block: forward(q, k, v) -> y (see nlbench.nn.normalizations).
NORMALIZATIONS = Registry("normalization", "model.backbone.nl.normalization")
for _name, _cls, _label, _color in (
    ("softmax", "SoftmaxAttention", "softmax", "tab:orange"),
    ("scale", "ScaleAttention", "scale", "tab:blue"),
    ("linear", "LinearAttention", "linear (Katharopoulos)", "tab:green"),
    ("efficient", "EfficientAttention", "efficient (Shen)", "tab:red"),
):
    NORMALIZATIONS.register(_name, f"nlbench.nn.normalizations.{_cls}", label=_label, color=_color, has_map=True)

# The block placed at an NL insertion point: a module taking the channel count, (B, C, H, W) -> the same shape.
BLOCKS = Registry("block", "model.backbone.block")
BLOCKS.register("nonlocal", "nlbench.nn.nonlocal_block.NonLocal2d")
BLOCKS.register("gc", "nlbench.nn.global_context.GlobalContext2d", label="GC block", color="tab:purple", has_map=False)
BLOCKS.register("se", "nlbench.nn.squeeze_excite.SqueezeExcite2d", label="SE block", color="tab:brown", has_map=False)
DEFAULT_BLOCK = "nonlocal"
# What `model.backbone.block` meant before it selected the block at the insertion point: the residual block kind
# (now `model.backbone.residual`). Configs and records written then still hold these values.
RESIDUAL_KINDS = ("auto", "basic", "bottleneck")


def register_normalization(
    name: str, target: type | str, *, label: str | None = None, color: str | None = None, has_map: bool | None = None
) -> None:
    """Make ``name`` select the normalization class ``target`` (a class or its path ``module.Class``)."""
    NORMALIZATIONS.register(name, target, label=label, color=color, has_map=has_map)


def register_block(
    name: str, target: type | str, *, label: str | None = None, color: str | None = None, has_map: bool | None = None
) -> None:
    """Make ``name`` select the block class ``target`` for ``model.backbone.block``."""
    BLOCKS.register(name, target, label=label, color=color, has_map=has_map)


# What the run record says of a run without any inserted block (nlbench.run: normalization "none").
NONE = MethodInfo(name="none", label="baseline (no block)", color="tab:gray", has_map=False, value="none")


def method_info(value: str | type) -> MethodInfo:
    """Name, label, colour and whether it has a map, of a normalization (registered name, class path or class).

    For readers of run records: "none" (the baseline) has its own entry, and a class path that does not import
    here (the user's package is not on this machine's path) gets its last component as name and label, no colour
    and no map, instead of an error."""
    if value == "none":
        return NONE
    try:
        return NORMALIZATIONS.info(value)
    except UnknownMethodError:
        if not isinstance(value, str) or "." not in value:
            raise
        name = value.rsplit(".", 1)[-1]
        return MethodInfo(name=name, label=name, color=None, has_map=False, value=value)


def method_name(value: str | type) -> str:
    """The short name of a normalization: for run names (a registered name costs no import)."""
    return NORMALIZATIONS.name_of(value)


def block_name(value: str | type) -> str:
    """The short name of a block (``model.backbone.block``), as :func:`method_name`."""
    return BLOCKS.name_of(value)


def block_info(value: str | type) -> MethodInfo:
    """As :func:`method_info`, for the block at the insertion point (``model.backbone.block``)."""
    return BLOCKS.info(value)


def check_config(config: Any) -> None:
    """Resolve the methods a parsed ``nlbench fit`` config names (``model.backbone.nl.normalization``,
    ``model.backbone.block``), so that a parse-only check (the sweep's dry run) refuses an unknown name or a class
    path that does not import, as training would. Raises UnknownMethodError (one line naming the option)."""
    cfg = config.as_dict() if hasattr(config, "as_dict") else config
    backbone = ((cfg or {}).get("model") or {}).get("backbone") or {}
    args = backbone.get("init_args") or {} if isinstance(backbone, dict) else {}
    nl = args.get("nl")
    if isinstance(nl, dict) and isinstance(nl.get("normalization"), str):
        NORMALIZATIONS.resolve(nl["normalization"])
    if peer_block(args.get("block")) is not None:
        BLOCKS.resolve(args["block"])


def method_look(value: str) -> tuple[str, str | None]:
    """Label and colour of a method as the registry knows it without importing anything (:meth:`Registry.known`),
    for the results reader's ``normalization`` column (the method at the insertion point): a normalization, a peer
    block (``gc``, ``se``, a class path) or ``none`` (no block). A run's own record says more
    (``RunRecord.method``); an unknown name is shown as written, without a colour."""
    info = recorded_method(value)
    return (info.label, info.color) if info is not None else (str(value), None)


def recorded_method(value: Any, *, import_classes: bool = False) -> MethodInfo | None:
    """The method at the insertion point named ``value`` (a normalization, a peer block or "none"), as a run record
    keeps it: by import when ``import_classes`` (the fit, which builds it anyway), else from the registry alone
    (:meth:`Registry.known`). None for a value that names no method (not a string, or an unregistered plain name)."""
    if value == NONE.value:
        return NONE
    if not (isinstance(value, str) and value) and not (import_classes and isinstance(value, type)):
        return None
    registry = (
        BLOCKS if value in BLOCKS or BLOCKS.registered_name(value) not in (None, DEFAULT_BLOCK) else NORMALIZATIONS
    )
    try:
        return registry.info(value) if import_classes else registry.known(value)
    except UnknownMethodError:
        if import_classes:
            raise
        return None


def peer_block(value: Any, *, import_classes: bool = True) -> str | None:
    """The block a run places at the insertion point instead of the NL block, as its short name where registered
    (``gc``; a class path of a registered block -> its name), else as written (a user's class path); None for the NL
    block itself (unset, ``nonlocal`` or its class path) and for the former residual kinds (:data:`RESIDUAL_KINDS`).
    One answer for run names (nlbench.run), the reader (nlbench.results) and config checks. ``import_classes=False``
    (readers) judges a class path by its text alone (:meth:`Registry.registered_name`), never importing it."""
    if not isinstance(value, str) or not value or value in RESIDUAL_KINDS or value == DEFAULT_BLOCK:
        return None
    if value in BLOCKS:
        return value
    # A class path: the fit imports it to compare with the registered classes; a reader compares the text.
    name = BLOCKS.name_of(value) if import_classes else BLOCKS.registered_name(value)
    if name == DEFAULT_BLOCK:
        return None
    return name if name in BLOCKS else value
