"""Sweep specs: a YAML file -> a validated `SweepSpec`, expanded into runs with stable ids.

The format is documented at the top of experiments/sweeps/cifar10.yaml. In short: `base` LightningCLI config(s),
fixed dotted `overrides`, a grid of dotted `axes`, optional explicit `points` (added to the grid), `output_dir`
and `devices_per_run`. Every run is ``nlbench fit --config BASE... --key=value...``; nothing here imports the
training code except `validate_runs`, which asks the real fit parser whether the values the runs differ by are valid.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlbench import trusted_imports, yamlsafe
from nlbench.limits import MAX_ECHO_CHARS, echo, shorten
from nlbench.sweepdir import DEFAULT_GRID_LIMIT, canonical, format_value, grid, run_id

SPEC_KEYS = (
    "name",
    "base",
    "output_dir",
    "overrides",
    "axes",
    "points",
    "devices_per_run",
    "grid_limit",
    "runs_per_device",
    "slurm",
    "base_digest",
)  # base_digest: written into sweep.yaml by nlbench, recomputed from the files
# Above this many runs a spec is refused unless it (or --grid-limit) raises the limit: a typo such as a 1000-value
# seed axis should fail at once, not after minutes of expansion. 100,000 runs of even one minute are ~70 GPU-days.
# Set by the sweep itself (run directory, resume, device assignment), so a spec may not set them.
RESERVED_KEYS = frozenset({"config", "run_dir", "ckpt_path", "trainer.accelerator", "trainer.devices"})
_KEY_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# A sweep's name becomes the folder sweeps/<name> and the W&B sweep's name: a plain file name, nothing path-like.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# Every override reaches `nlbench fit` as one command-line argument, and Linux refuses an argument longer than
# 128 KiB (MAX_ARG_STRLEN) and a command line past ~2 MB with "Argument list too long", after the dry run said
# all was well: refuse such values in the spec instead. Far above any real config value.
MAX_ARG_CHARS = 100_000
MAX_COMMAND_CHARS = 1_000_000


class SweepSpecError(ValueError):
    """A bad sweep spec; the message is one line naming the file and what is wrong."""


@dataclass(frozen=True)
class SweepRun:
    """One point of a sweep: the dotted overrides that distinguish it, and its stable id."""

    run_id: str
    params: Mapping[str, Any]
    origin: str  # "grid" or "points[i]", for error messages


@dataclass(frozen=True)
class SweepSpec:
    """A loaded and structurally validated sweep spec (paths resolved, values checked for type)."""

    name: str
    base: tuple[Path, ...]
    output_dir: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    points: tuple[Mapping[str, Any], ...] = ()
    devices_per_run: int = 1
    runs_per_device: int = 1  # concurrent runs per GPU group (or on the CPU); see nlbench.sweep.devices
    source: Path | None = None
    grid_limit: int = DEFAULT_GRID_LIMIT
    slurm: Mapping[str, Any] = field(default_factory=dict)  # the spec's `slurm:` section (nlbench.sweep.slurm)
    base_digest: str = ""  # the base configs' content, hashed (:func:`base_digest`); "" when not known

    @property
    def label(self) -> str:
        return str(self.source) if self.source else self.name

    @property
    def swept_keys(self) -> list[str]:
        """Keys that vary between runs: the axes, then keys only explicit points set (first-seen order)."""
        keys = dict.fromkeys(self.axes)
        for point in self.points:
            keys.update(dict.fromkeys(point))
        return list(keys)

    @property
    def size(self) -> int:
        """The number of runs (grid product plus explicit points), computed without expanding the grid."""
        return (math.prod(len(v) for v in self.axes.values()) if self.axes else 0) + len(self.points)

    def check_size(self, limit: int | None = None) -> None:
        """Refuse a spec with more runs than `limit` (default: the spec's `grid_limit`) before expanding it."""
        limit = self.grid_limit if limit is None else limit
        if self.size > limit:
            sizes = " x ".join(str(len(v)) for v in self.axes.values()) or "0"
            raise SweepSpecError(
                f"{self.label}: {self.size:,} runs (axes {sizes}, {len(self.points)} points) exceed the limit of "
                f"{limit:,}; shrink the axes, or raise it on the command line with --grid-limit {self.size}"
            )

    def expand(self) -> list[SweepRun]:
        """The grid (product of the axes, if any) followed by the explicit points; duplicates are an error."""
        self.check_size()
        runs: list[SweepRun] = []
        seen: dict[str, str] = {}
        for params, origin in grid(self.axes, self.points):
            canon = canonical(params)
            if canon in seen:
                raise SweepSpecError(
                    f"{self.label}: {origin} {_describe(params)} duplicates {seen[canon]}; every run must differ"
                )
            seen[canon] = "a grid point" if origin == "grid" else origin
            runs.append(SweepRun(run_id(params, base=self.base, overrides=self.overrides), params, origin))
        return runs

    def fit_args(self, params: Mapping[str, Any]) -> list[str]:
        """The ``nlbench fit`` arguments of a run (without run directory and devices): configs, then overrides."""
        args = [arg for path in self.base for arg in ("--config", str(path))]
        return args + override_args({**self.overrides, **params})

    @property
    def identity(self) -> dict[str, Any]:
        """What makes a sweep directory this sweep's: its name, its base configs (file names, and their content as
        :func:`base_digest` hashes it: a same-named spec over another demo.yaml is another sweep) and its fixed
        overrides: everything every run shares. The runs' own values (axes, points) are hashed in their run ids;
        axes and points may grow or shrink: more seeds extend a sweep, fewer never drop its finished rows."""
        return {
            "name": self.name,
            "base": [p.name for p in self.base],
            "base_digest": self.base_digest,
            "overrides": dict(self.overrides),
        }

    def as_dict(self) -> dict[str, Any]:
        """The spec as run, for ``<sweep_dir>/sweep.yaml`` (absolute paths)."""
        return {
            "name": self.name,
            "base": [str(p) for p in self.base],
            "output_dir": str(self.output_dir),
            "overrides": dict(self.overrides),
            "axes": {k: list(v) for k, v in self.axes.items()},
            "points": [dict(p) for p in self.points],
            "devices_per_run": self.devices_per_run,
            "grid_limit": self.grid_limit,
            "runs_per_device": self.runs_per_device,
            **({"slurm": dict(self.slurm)} if self.slurm else {}),
            "base_digest": self.base_digest,
        }


# ---- loading ------------------------------------------------------------------------------------------------------
def load_spec(path: str | Path, *, output_dir: str | Path | None = None) -> SweepSpec:
    """Read and check a sweep YAML file; `output_dir` overrides the spec's (relative paths: to the working dir)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sweep spec not found")
    data = _read_spec_yaml(path)
    if isinstance(data, dict):  # the classes a received spec names are imported only from the user's environment
        try:
            trusted_imports.check_file([data.get(key) for key in ("overrides", "axes", "points")], path)
        except trusted_imports.UntrustedImportError as err:
            raise SweepSpecError(str(err)) from None
    return spec_from_dict(data, root=path.parent, source=path, output_dir=output_dir)


def _read_spec_yaml(path: Path) -> Any:
    """The spec file's YAML, refused in one line when not YAML, over the size limit or an alias bomb
    (nlbench.yamlsafe): a bomb would otherwise expand when the runs are listed (3 GB in 55 s)."""
    try:
        return yamlsafe.load_file(path, what="sweep spec")
    except yamlsafe.YamlLimitError as err:
        raise SweepSpecError(str(err)) from err
    except yaml.YAMLError as err:
        raise SweepSpecError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err


def spec_from_dict(
    data: Any, *, root: Path, source: Path | None = None, output_dir: str | Path | None = None
) -> SweepSpec:
    """Check a parsed spec; `root` is the folder relative `base` paths are resolved against."""
    label = str(source) if source else "sweep spec"

    def fail(message: str) -> SweepSpecError:
        return SweepSpecError(f"{label}: {message}")

    if not isinstance(data, dict):
        raise fail(f"expected a mapping with keys {', '.join(SPEC_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(SPEC_KEYS)}")

    name = data.get("name", source.stem if source else None)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise fail(f"'name' must be a plain file name (letters, digits, . _ + -; no path), got {echo(name)}")

    base_value = data.get("base")
    bases = [base_value] if isinstance(base_value, str) else base_value
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise fail(f"'base' must be a config path or a non-empty list of paths, got {echo(base_value)}")
    base = tuple((root / b).resolve() for b in bases)
    for given, resolved in zip(bases, base):
        if not resolved.is_file():
            raise FileNotFoundError(f"{label}: base config {echo(given)} not found (looked for {resolved})")

    out = output_dir if output_dir is not None else data.get("output_dir", f"sweeps/{name}")
    if not isinstance(out, (str, Path)) or not str(out):
        raise fail(f"'output_dir' must be a path, got {echo(out)}")

    overrides = _check_mapping(data.get("overrides") or {}, "overrides", fail)
    axes_value = data.get("axes") or {}
    if not isinstance(axes_value, dict):
        raise fail(f"'axes' must map dotted config keys to lists of values, got {type(axes_value).__name__}")
    axes: dict[str, list[Any]] = {}
    for key, values in axes_value.items():
        _check_key(key, "axes", fail)
        if not isinstance(values, list):
            raise fail(f"axis {echo(key)} must be a list of values, got {echo(values)}")
        if not values:
            raise fail(f"axis {echo(key)} is an empty list; give at least one value")
        for value in values:
            _check_value(value, f"axis {echo(key)} value {echo(value)}", fail)
        canon = [canonical(v) for v in values]
        dup = next((v for v, c in zip(values, canon) if canon.count(c) > 1), None)
        if dup is not None:
            raise fail(f"axis {echo(key)} lists the value {echo(dup)} more than once")
        if key in overrides:
            raise fail(f"{echo(key)} is both an axis and a fixed override; keep one")
        axes[key] = values

    points_value = data.get("points") or []
    if not isinstance(points_value, list):
        raise fail(f"'points' must be a list of {{key: value}} mappings, got {type(points_value).__name__}")
    points = []
    for i, point in enumerate(points_value):
        point = _check_mapping(point, f"points[{i}]", fail)
        clash = sorted(set(point) & set(overrides))
        if clash:
            raise fail(f"points[{i}] sets {', '.join(clash)}, which 'overrides' already fixes for every run")
        points.append(point)
    if not axes and not points:
        raise fail("no runs: give 'axes' and/or 'points'")

    devices_per_run = data.get("devices_per_run", 1)
    if isinstance(devices_per_run, bool) or not isinstance(devices_per_run, int) or devices_per_run < 1:
        raise fail(f"'devices_per_run' must be a positive integer, got {echo(devices_per_run)}")
    runs_per_device = data.get("runs_per_device", 1)
    if isinstance(runs_per_device, bool) or not isinstance(runs_per_device, int) or runs_per_device < 1:
        raise fail(f"'runs_per_device' must be a positive integer, got {echo(runs_per_device)}")

    grid_limit = data.get("grid_limit", DEFAULT_GRID_LIMIT)
    if isinstance(grid_limit, bool) or not isinstance(grid_limit, int) or grid_limit < 1:
        raise fail(f"'grid_limit' must be a positive integer, got {echo(grid_limit)}")
    if grid_limit > DEFAULT_GRID_LIMIT:  # a received spec must not lift the guard meant to stop it
        raise fail(
            f"'grid_limit' {grid_limit:,} raises the limit of {DEFAULT_GRID_LIMIT:,}; a spec may only lower "
            "it, raise it on the command line with --grid-limit N"
        )
    slurm = data.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise fail(f"'slurm' must map option names to values, got {type(slurm).__name__}")
    _check_command_size(overrides, axes, points, fail)
    digest = base_digest(base, label)

    return SweepSpec(
        name=name,
        base=base,
        output_dir=Path(out).absolute(),
        overrides=overrides,
        axes=axes,
        points=tuple(points),
        devices_per_run=devices_per_run,
        runs_per_device=runs_per_device,
        source=source,
        grid_limit=grid_limit,
        slurm=dict(slurm),
        base_digest=digest,
    )


_MAX_INCLUDES = 16  # `config:` includes nested deeper than this are a loop or not a config


def base_digest(base: Sequence[Path], label: str = "sweep spec") -> str:
    """The sha1 of the base configs' content as the fit reads it: each file's YAML (comments and layout left out),
    with the files it includes (``config: other.yaml``, resolved against the including file, as jsonargparse does)
    in place of the include. Two specs over different configs of the same name differ here."""

    def resolved(path: Path, chain: tuple[Path, ...]) -> Any:
        if path in chain or len(chain) > _MAX_INCLUDES:
            raise SweepSpecError(f"{label}: base config {chain[0]} includes itself (through {path.name})")
        try:
            data = yamlsafe.load_file(path, what="base config")
        except yamlsafe.YamlLimitError as err:
            raise SweepSpecError(f"{label}: base config {err}") from err
        except UnicodeDecodeError as err:
            raise SweepSpecError(f"{label}: base config {path}: not UTF-8 text ({err.reason})") from err
        except yaml.YAMLError as err:
            raise SweepSpecError(f"{label}: base config {path}: not valid YAML: {' '.join(str(err).split())}") from err
        except OSError as err:
            raise SweepSpecError(f"{label}: base config {path}: cannot read it ({err.strerror or err})") from err
        included = data.get("config") if isinstance(data, dict) else None
        if isinstance(included, (str, list)):
            names = [included] if isinstance(included, str) else included
            data = {
                **data,
                "config": [
                    resolved(path.parent / str(name), (*chain, path)) if isinstance(name, str) else name
                    for name in names
                ],
            }
        return data

    content = _plain([resolved(Path(path), ()) for path in base])
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """YAML data with string keys only, so it hashes as sorted JSON (YAML allows 1: and "a": in one mapping)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _check_command_size(
    overrides: Mapping[str, Any],
    axes: Mapping[str, Sequence[Any]],
    points: Sequence[Mapping[str, Any]],
    fail: Callable[[str], SweepSpecError],
) -> None:
    """Refuse values that cannot reach `nlbench fit` on a command line (see MAX_ARG_CHARS), naming the key."""

    def size(key: str, value: Any) -> int:
        return len(f"--{key}=") + len(format_value(value).encode())

    for where, key, value in itertools.chain(
        (("overrides", k, v) for k, v in overrides.items()),
        ((f"axis {echo(k)}", k, v) for k, values in axes.items() for v in values),
        ((f"points[{i}]", k, v) for i, point in enumerate(points) for k, v in point.items()),
    ):
        if size(key, value) > MAX_ARG_CHARS:
            raise fail(
                f"{where}: the value of {echo(key)} is {size(key, value):,} bytes on the command line, over the "
                f"{MAX_ARG_CHARS:,} a run's argument may take; put it in a base config file instead"
            )
    largest = (
        sum(size(k, v) for k, v in overrides.items())
        + sum(max(size(k, v) for v in values) for k, values in axes.items())
        + max((sum(size(k, v) for k, v in point.items()) for point in points), default=0)
    )
    if largest > MAX_COMMAND_CHARS:
        raise fail(
            f"the overrides of a run take {largest:,} bytes on the command line, over {MAX_COMMAND_CHARS:,}; "
            "put the large values in a base config file instead"
        )


def _check_key(key: Any, where: str, fail: Callable[[str], SweepSpecError]) -> None:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise fail(f"{where}: {echo(key)} is not a dotted config key such as model.backbone.nl.reduction")
    if key in RESERVED_KEYS:
        raise fail(f"{where}: {echo(key)} is set by the sweep itself (run directory, resume, devices_per_run)")


def _check_mapping(value: Any, where: str, fail: Callable[[str], SweepSpecError]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(f"'{where}' must map dotted config keys to values, got {echo(value)}")
    for key, item in value.items():
        _check_key(key, where, fail)
        _check_value(item, f"{where}: {echo(key)} value {echo(item)}", fail)
    return dict(value)


def _check_value(value: Any, where: str, fail: Callable[[str], SweepSpecError]) -> None:
    """Values must survive a JSON round trip: they become command-line text and run-id hashes."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item, where, fail)
        return
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for item in value.values():
            _check_value(item, where, fail)
        return
    raise fail(f"{where} has type {type(value).__name__}; use a string, number, bool, null, list or mapping")


# ---- command lines and ids ----------------------------------------------------------------------------------------
def override_args(overrides: Mapping[str, Any]) -> list[str]:
    return [f"--{key}={format_value(value)}" for key, value in overrides.items()]


def _describe(params: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {shorten(format_value(v), MAX_ECHO_CHARS)}" for k, v in params.items()) + "}"


# ---- validation against the real fit parser -----------------------------------------------------------------------
BASE_RUN = ""  # the key of the base config (base + overrides, no swept value) in `validate_runs`' answer


def probe_runs(spec: SweepSpec, runs: Sequence[SweepRun]) -> list[SweepRun]:
    """The few runs whose parsing checks every value that can differ: each explicit point, and for the grid the
    i-th value of every axis together (axes cycled, i < the longest axis), so each value of each axis is parsed
    once, within a real grid point (keys that depend on each other, such as a ``class_path`` axis and the
    ``init_args`` it allows, are met only in combinations the grid holds). A 10,000-run grid of four 10-value axes
    needs 10 parses instead of 10,000."""
    grid = {canonical(dict(run.params)): run for run in runs if run.origin == "grid"}
    probes: list[SweepRun] = []
    for i in range(max((len(v) for v in spec.axes.values()), default=0)):
        params = {key: values[i % len(values)] for key, values in spec.axes.items()}
        run = grid.get(canonical(params))
        if run is not None:
            probes.append(run)
    return probes + [run for run in runs if run.origin != "grid"]


def validate_runs(
    spec: SweepSpec,
    runs: Sequence[SweepRun],
    *,
    parse_args: Callable[[list[str]], Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Parse the base config and the `probe_runs` with `nlbench.lightning_cli.parse_fit_args`; returns run_id -> parsed
    config for those runs, plus `BASE_RUN` -> the base config (what every other run shares but its swept values).

    Raises `SweepSpecError` naming the fixed override, or the axis/point key and value, that the parser rejects.
    """
    from nlbench.lightning_cli import ConfigError, parse_fit_args

    with warnings.catch_warnings():
        # Parsing is not running: Lightning's advice to launch with srun (where srun exists) is for the runs.
        warnings.filterwarnings("ignore", message="The `srun` command is available")
        parsed = _validate(spec, probe_runs(spec, runs), parse_args or parse_fit_args, ConfigError, progress=progress)
    check_swept_keys_take_effect(spec, parsed)
    return parsed


def check_swept_keys_take_effect(spec: SweepSpec, parsed: Mapping[str, Any]) -> None:
    """Refuse (SweepSpecError, one line naming the key) a swept key whose values resolve to configs that train
    identically, judged on the parsed configs of `validate_runs`: the optimizer's lr under a scheduler that sets the
    learning rate itself (nlbench.schedulers.lr_overridden_by). The runs would differ only in their label."""
    from nlbench.schedulers import lr_overridden_by

    lr_keys = [key for key in spec.swept_keys if key.startswith("model.optimizer.") and key.endswith(".lr")]
    if not lr_keys:
        return
    for config in parsed.values():
        model = config.get("model") if hasattr(config, "get") else None
        reason = lr_overridden_by(model.get("scheduler") if model is not None else None)
        if reason:
            raise SweepSpecError(
                f"{spec.label}: swept key {echo(lr_keys[0])} changes nothing: {reason}, so its values train "
                "identically; sweep the scheduler's max_lr instead, or leave max_lr unset "
                "(nlbench.schedulers.OneCycleLR follows the optimizer's lr)"
            )


def _validate(
    spec: SweepSpec,
    runs: Sequence[SweepRun],
    parse: Callable[[list[str]], Any],
    error: type[Exception],
    *,
    progress: bool = False,
) -> dict[str, Any]:
    from tqdm import tqdm

    try:
        parsed: dict[str, Any] = {BASE_RUN: parse(spec.fit_args({}))}
    except error as err:
        raise SweepSpecError(f"{spec.label}: base config with 'overrides' is not a valid fit config: {err}") from err
    # disable=None: a bar on a terminal only (logs and tests get the one "checking" line).
    for run in tqdm(
        runs, desc="checking", unit="config", file=sys.stderr, disable=None if progress else True, leave=False
    ):
        try:
            parsed[run.run_id] = parse(spec.fit_args(run.params))
        except error as err:
            raise SweepSpecError(f"{spec.label}: {_culprit(spec, run, parse, error)}: {err}") from err
    return parsed


def _culprit(spec: SweepSpec, run: SweepRun, parse: Callable[[list[str]], Any], error: type[Exception]) -> str:
    """Name the single key/value the parser rejects on its own, else the whole point (keys that clash together)."""
    where = "axis" if run.origin == "grid" else f"{run.origin} key"
    for key, value in run.params.items():
        try:
            parse(spec.fit_args({key: value}))
        except error:
            return f"{where} {echo(key)} value {echo(value)}"
    return f"{run.origin} point {_describe(run.params)}"
