"""A sweep directory's format, below everything that reads or writes it: its entries, run ids, the stored spec.

``<output_dir>/``: ``sweep.yaml`` (the spec as run), ``runs/<run_id>/`` (one run directory each), ``claims/``
(which sweep process runs which run now, :mod:`nlbench.runlock`), ``results.{csv,json}`` (an export),
``slurm/`` (submitit's logs) and ``mps/`` (the sweep's private MPS daemon). A run's id is a pure function of its
swept values, the base configs' file names and the fixed overrides (:func:`run_id`), so the sweep, a W&B agent and
the reader find the same run directory from the stored spec alone (:func:`stored_runs`), without the fit's CLI.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nlbench import runlock
from nlbench.io import atomic_write_text
from nlbench.record import Unreadable, read_yaml
from nlbench.schema import short_name

SPEC = "sweep.yaml"
RUNS = "runs"
CLAIMS = runlock.CLAIMS
SLURM = "slurm"  # submitit's folder (it links its own files there)
MPS = "mps"  # <sweep_dir>/mps/{pipe,log}: the sweep's private MPS daemon
RESULTS_CSV, RESULTS_JSON = "results.csv", "results.json"
# The sweep directory's own entries (besides dot files: a concurrent atomic write), and whether each is a folder.
ENTRIES: dict[str, bool] = {
    SPEC: False,
    RESULTS_CSV: False,
    RESULTS_JSON: False,
    CLAIMS: True,
    RUNS: True,
    SLURM: True,
    MPS: True,
}
DEFAULT_GRID_LIMIT = 100_000  # runs a spec may expand to without --grid_limit (a received spec: never more)
_ID_PREFIX_MAX = 150  # keeps run directory names well below the usual 255-byte limit


def is_sweep_dir(path: Path) -> bool:
    return (path / SPEC).is_file() or (path / RUNS).is_dir()


def run_dir(output_dir: Path, run_id: str) -> Path:
    return output_dir / RUNS / run_id


# ---- run ids ------------------------------------------------------------------------------------------------------
def run_id(params: Mapping[str, Any], *, base: Sequence[Path], overrides: Mapping[str, Any]) -> str:
    """``init=normal_normalization=scale_reduction=2_seed=0-1a2b3c4d``: readable, and a pure function of the run.

    The readable part lists the run's own swept values (keys sorted, short names); the 8-hex suffix is the sha1 of
    the canonical JSON of the base config file names and all overrides, so ids do not depend on key order, and a
    changed fixed override gives new ids (a different experiment) instead of silently reusing old results.
    """
    merged = {**overrides, **params}
    digest = hashlib.sha1(canonical({"base": [p.name for p in base], "overrides": merged}).encode()).hexdigest()
    prefix = "_".join(f"{short_name(k)}={_slug(params[k])}" for k in sorted(params)) or "base"
    return f"{prefix[:_ID_PREFIX_MAX]}-{digest[:8]}"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def format_value(value: Any) -> str:
    """A value as `nlbench fit` reads it after ``--key=``: strings as is, everything else as JSON (valid YAML)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _slug(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_slug(v) for v in value) or "empty"
    text = format_value(value) if not isinstance(value, dict) else canonical(value)
    sign = "-" if text.startswith("-") else ""  # -1 and 1 must read differently
    return (sign + re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-"))[:32] or "x"


def grid(axes: Mapping[str, Sequence[Any]], points: Sequence[Mapping[str, Any]]) -> Iterator[tuple[dict, str]]:
    """The runs' swept values in the sweep's order, each with where it comes from: the product of the axes ("grid"),
    then the explicit points ("points[i]")."""
    if axes:
        for values in itertools.product(*axes.values()):
            yield dict(zip(axes, values)), "grid"
    for i, point in enumerate(points):
        yield dict(point), f"points[{i}]"


# ---- the stored spec ----------------------------------------------------------------------------------------------
def write_spec(output_dir: Path, spec: Mapping[str, Any]) -> None:
    """Record the spec as run in ``sweep.yaml`` (atomically) and make ``runs/``."""
    (output_dir / RUNS).mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / SPEC, yaml.safe_dump(dict(spec), sort_keys=False))


def read_spec(output_dir: Path) -> Any:
    """The stored ``sweep.yaml`` as parsed (None when absent): within nlbench's YAML limits, never through a link;
    :class:`nlbench.record.Unreadable` (one line naming it) when it cannot be read. A received file: its shape is
    the caller's to check."""
    path = output_dir / SPEC
    if not path.exists() and not path.is_symlink():
        return None
    return read_yaml(path, SPEC)


def stored_identity(stored: Any) -> dict[str, Any] | None:
    """What makes a directory one sweep's (:attr:`nlbench.sweep.spec.SweepSpec.identity`), as its sweep.yaml says."""
    if not isinstance(stored, dict):
        return None
    base = stored.get("base")
    return {
        "name": stored.get("name"),
        "base": [Path(str(b)).name for b in base] if isinstance(base, list) else base,
        "base_digest": stored.get("base_digest"),
        "overrides": stored.get("overrides") or {},
    }


def stored_runs(stored: Any) -> dict[str, dict[str, Any]]:
    """run_id -> the swept values of each run of a stored sweep.yaml, in the sweep's order, without checking the
    base configs exist (a report may run on another machine, an agent on another node). A spec of the wrong shape
    has no runs; one whose axes make over :data:`DEFAULT_GRID_LIMIT` runs is :class:`Unreadable`, never expanded."""
    if not isinstance(stored, dict):
        return {}
    axes = stored.get("axes") or {}
    points = stored.get("points") or []
    base_value = stored.get("base")
    base = [Path(str(b)) for b in (base_value if isinstance(base_value, list) else [base_value]) if b]
    overrides = stored.get("overrides") or {}
    if not isinstance(axes, dict) or not isinstance(points, list) or not isinstance(overrides, dict):
        return {}
    if not all(isinstance(values, list) for values in axes.values()):
        return {}
    if math.prod(len(values) for values in axes.values()) > DEFAULT_GRID_LIMIT:
        raise Unreadable(f"{SPEC}: its axes make over {DEFAULT_GRID_LIMIT:,} runs; not expanded")
    return {
        run_id(params, base=base, overrides=overrides): params
        for params, _ in grid(axes, [p for p in points if isinstance(p, dict)])
    }
