"""Export a sweep's grid as a W&B sweep definition, so ``wandb agent`` on many machines shares the runs.

W&B's agent builds each run's command from ``command``: ``${env}`` becomes ``/usr/bin/env`` and ``${args}`` the
run's parameters as ``--name=value`` (https://docs.wandb.ai/guides/sweeps/define-sweep-configuration), which is
exactly the dotted-override syntax of ``nlbench fit``. W&B does the bookkeeping of which grid points are taken;
each run is a normal ``nlbench fit`` run directory under the base config's ``trainer.default_root_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nlbench.io import atomic_write_text
from nlbench.run import BEST_ACC1
from nlbench.sweep.spec import SweepSpec, SweepSpecError

METRIC = {"name": BEST_ACC1, "goal": "maximize"}

_HEADER = """\
# W&B sweep definition for the nlbench sweep {name!r} (from {source}), written by
#   nlbench sweep --config {source} --export-wandb {path}
# Share the {runs} runs of its grid over any number of machines:
#   1. once, from the repository root:   wandb sweep {path}
#      (creates it in the project below, or --project P; prints the id ENTITY/PROJECT/SWEEP_ID)
#   2. on every machine, from the repository root with nlbench installed (`make install`, venv activated)
#      and `wandb login` done; one agent per GPU, e.g. on a 4-GPU machine:
#        for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i wandb agent ENTITY/PROJECT/SWEEP_ID & done; wait
#      Each agent takes the next grid point and runs: nlbench fit --config <base> --key=value ...
#      A run needing several GPUs (DDP) is one agent given several CUDA_VISIBLE_DEVICES; a multi-node run is
#      Lightning's own (--trainer.num_nodes), launched per node by your cluster's scheduler.
# Run directories land in the base config's trainer.default_root_dir on each machine; results are in W&B,
# grouped by configuration as for any `nlbench fit` run. Method grid: every point once, then the sweep ends.
"""


def sweep_definition(spec: SweepSpec, *, cwd: Path | None = None) -> dict[str, Any]:
    """The W&B sweep configuration (a dict) for `spec`'s grid; base paths relative to `cwd` when inside it."""
    if spec.points:
        raise SweepSpecError(
            f"{spec.label}: W&B grid sweeps cannot express explicit 'points' ({len(spec.points)} given); "
            "export a spec with axes only"
        )
    cwd = (cwd or Path.cwd()).absolute()
    configs = [arg for path in spec.base for arg in ("--config", _portable(path, cwd))]
    devices = []
    if spec.devices_per_run > 1:
        devices = [f"--trainer.devices={spec.devices_per_run}"]
        if "trainer.strategy" not in spec.overrides:
            devices.append("--trainer.strategy=ddp")
    parameters: dict[str, Any] = {key: {"values": list(values)} for key, values in spec.axes.items()}
    parameters.update({key: {"value": value} for key, value in spec.overrides.items()})
    definition: dict[str, Any] = {"name": spec.name}
    project = wandb_project(spec)
    if project:
        definition["project"] = project  # the project the base config's runs log to, so sweep runs sit with them
    return {
        **definition,
        "program": "nlbench",
        "method": "grid",
        "metric": dict(METRIC),
        "command": ["${env}", "nlbench", "fit", *configs, *devices, "${args}"],
        "parameters": parameters,
    }


def export_wandb(spec: SweepSpec, path: str | Path, *, cwd: Path | None = None) -> Path:
    """Write the W&B sweep definition YAML (with usage instructions in its header) atomically; returns the path."""
    path = Path(path)
    definition = sweep_definition(spec, cwd=cwd)
    runs = 1
    for values in spec.axes.values():
        runs *= len(values)
    header = _HEADER.format(name=spec.name, source=spec.source or "<spec>", path=path, runs=runs)
    atomic_write_text(path, header + yaml.safe_dump(definition, sort_keys=False, width=120))
    return path


def wandb_project(spec: SweepSpec) -> str | None:
    """The ``project`` of a WandbLogger in the base config(s) (the last one that names it), if any."""
    project = None
    for path in spec.base:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        # Experiment deltas set single keys with dotted names (experiments/cifar10.yaml: `trainer.logger:`).
        loggers = config.get("trainer.logger", (config.get("trainer") or {}).get("logger"))
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if isinstance(logger, dict) and str(logger.get("class_path", "")).endswith("WandbLogger"):
                project = (logger.get("init_args") or {}).get("project", project)
    return project


def _portable(path: Path, cwd: Path) -> str:
    """Agents run from the repository root, so a config inside it is named relative to it."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)
