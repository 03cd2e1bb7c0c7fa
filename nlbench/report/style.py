"""How the report names and colours a configuration value: one place, so a new method (a registered name or a class
path such as ``my_pkg.attn.SigmoidAttention``) is labelled and coloured without an edit here.

A method (the reader's ``normalization`` column: a normalization, a peer block or ``none``) takes its label and
colour from the runs' records (:func:`remember_methods`: what the fit resolved from the class's ``label`` and
``color`` attributes or its registration), else from the method registry without importing anything
(:func:`nlbench.nn.registry.method_look`; a class path by its class name). Other values, and methods without a
colour of their own, take colours from a fixed palette (minus the colours methods have claimed) in the order the
values first appear in the runs (the sweep's own axis order), so a value keeps its colour in every figure of a
report.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nlbench import schema
from nlbench.nn.registry import NONE, method_look

PALETTE: tuple[str, ...] = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
BASELINE_COLOR = NONE.color or "tab:gray"
BASELINE = NONE.value  # the normalization of a backbone without NL blocks
METHOD = "normalization"  # the reader's column naming the method at the insertion point
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":", "-.")
# Compact labels, the same words as the run names (scale-r2-h1-normal): key -> prefix of its value.
_PREFIXES = {"reduction": "r", "heads": "h", "width": "w", "depth": "d"}
# Keys whose values read on their own (no "key=").
_BARE = {"normalization", "init", "similarity", "order", "dataset", "backbone", "optimizer", "scheduler"}


def label(key: str, value: Any) -> str:
    """A value as the report shows it: a method by its registry label (``linear`` -> ``linear (Katharopoulos)``,
    a class path by its class's ``label`` or name), other class paths by their class name, floats compactly
    (``0.05``)."""
    if value is None:
        return "–"
    if key == METHOD and isinstance(value, str):
        return _look(value)[0]
    if isinstance(value, str) and "." in value and not value.replace(".", "").isdigit():
        return value.rsplit(".", 1)[-1]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return str(value)


def config_label(config: Mapping[str, Any]) -> str:
    """'scale r2 normal lr=0.05' style label of a configuration; '(all runs)' when nothing varies."""
    parts = []
    for key, value in config.items():
        text = label(key, value)
        if key in _PREFIXES and value is not None:
            parts.append(f"{_PREFIXES[key]}{text}")
        elif key in _BARE:
            parts.append(text)
        else:
            parts.append(f"{key}={text}")
    return " ".join(parts) or "(all runs)"


def order(runs: Iterable[Mapping[str, Any]], key: str) -> list[Any]:
    """The values of ``key`` in the order the runs first take them (the colour order)."""
    return list(dict.fromkeys(schema.hashable(run.get(key)) for run in runs))


def remember_methods(looks: Mapping[str, tuple[str, str | None]]) -> None:
    """The labels and colours the runs' records give their methods (:func:`nlbench.results.method_looks`), for the
    report being drawn: a class path is shown as the fit that ran it recorded, never by importing it here."""
    _RECORDED.clear()
    _RECORDED.update(looks)
    _look.cache_clear()


def color(key: str, value: Any, values: Sequence[Any]) -> str:
    """The colour of ``value`` among ``values`` (see :func:`order`): a method's own colour where it has one (the
    baseline is grey), else the next palette colour no method among ``values`` has claimed."""
    own = {v: _look(v)[1] for v in values if key == METHOD and isinstance(v, str)}
    if key == METHOD and isinstance(value, str) and _look(value)[1]:
        return str(_look(value)[1])
    palette = [c for c in PALETTE if c not in own.values()] or list(PALETTE)
    shown = [v for v in values if not own.get(v)]
    value = schema.hashable(value)
    index = shown.index(value) if value in shown else len(shown)
    return palette[index % len(palette)]


_RECORDED: dict[str, tuple[str, str | None]] = {}  # remember_methods: value -> the records' label and colour


@functools.cache
def _look(method: str) -> tuple[str, str | None]:
    """The records' look of a method, else the registry's (registered methods; a class path by its last component);
    never an import."""
    return _RECORDED.get(method) or method_look(method)
