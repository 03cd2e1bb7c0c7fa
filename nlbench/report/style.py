"""How the report names and colours a configuration value: one place, so a new method (a registered name or a
class path such as ``my_pkg.attn.SigmoidAttention``) is labelled and coloured without an edit here.

Colours come from a fixed palette in the order the values first appear in the runs (the sweep's own axis order),
so a value keeps its colour in every figure of a report; ``none`` (no NL block, the baseline) is grey.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PALETTE: tuple[str, ...] = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                            "tab:pink", "tab:olive", "tab:cyan")  # fmt: skip
BASELINE_COLOR = "tab:gray"
BASELINE = "none"  # the normalization of a backbone without NL blocks
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":", "-.")
# Compact labels, the same words as the run names (scale-r2-h1-normal): key -> prefix of its value.
_PREFIXES = {"reduction": "r", "heads": "h", "width": "w", "depth": "d"}
# Keys whose values read on their own (no "key=").
_BARE = {"normalization", "init", "similarity", "order", "dataset", "backbone", "optimizer", "scheduler"}


def label(key: str, value: Any) -> str:
    """A value as the report shows it: class paths by their class name (``my_pkg.attn.SigmoidAttention`` ->
    ``SigmoidAttention``), the baseline as "baseline (no NL)", floats compactly (``0.05``)."""
    if value is None:
        return "–"
    if key == "normalization" and value == BASELINE:
        return "baseline (no NL)"
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
    return list(dict.fromkeys(_hashable(run.get(key)) for run in runs))


def color(key: str, value: Any, values: Sequence[Any]) -> str:
    """The colour of ``value`` among ``values`` (see :func:`order`); the baseline is grey."""
    if key == "normalization" and value == BASELINE:
        return BASELINE_COLOR
    shown = [v for v in values if not (key == "normalization" and v == BASELINE)]
    value = _hashable(value)
    index = shown.index(value) if value in shown else len(shown)
    return PALETTE[index % len(PALETTE)]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
