"""Export a sweep's grid as a W&B sweep definition, so ``wandb agent`` on many machines shares the runs.

W&B's agent builds each run's command from ``command``: ``${env}`` becomes ``/usr/bin/env`` and ``${args}`` the
run's parameters as ``--name=value`` (https://docs.wandb.ai/guides/sweeps/define-sweep-configuration), which is
exactly the dotted-override syntax of ``nlbench fit``. W&B does the bookkeeping of which grid points are taken.

Each agent's run writes its run directory where ``nlbench sweep`` would: ``<output_dir>/runs/<run_id>`` of the
exported spec (the command sets ``NLBENCH_SWEEP_DIR``, and the export writes the spec's sweep.yaml there), so
``nlbench report <output_dir>`` and ``nlbench sweep --status`` see agents' runs like any other. Under an agent,
W&B ignores the run id, project and entity a run passes (and warns): nlbench passes none and records the id the
agent assigned (``WANDB_RUN_ID``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nlbench import yamlsafe
from nlbench.io import atomic_write_text
from nlbench.rundir import SWEEP_DIR_ENV  # where agents' runs go (nlbench.rundir.agent_run_dir)
from nlbench.schema import BEST_ACC1
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
# Run directories land in {output_dir}/runs/ (a shared filesystem lets every machine write there; a machine
# that cannot see it uses the base config's trainer.default_root_dir); results are in W&B, grouped by
# configuration, and in `nlbench report {output_dir}`. Method grid: every point once, then the sweep ends.
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
        # ${env} is /usr/bin/env: it sets the sweep directory for the run, then starts nlbench.
        "command": ["${env}", f"{SWEEP_DIR_ENV}={spec.output_dir}", "nlbench", "fit", *configs, *devices, "${args}"],
        "parameters": parameters,
    }


def export_wandb(spec: SweepSpec, path: str | Path, *, cwd: Path | None = None) -> Path:
    """Write the W&B sweep definition YAML (with usage instructions in its header) atomically; returns the path."""
    path = Path(path)
    definition = sweep_definition(spec, cwd=cwd)
    runs = 1
    for values in spec.axes.values():
        runs *= len(values)
    header = _HEADER.format(
        name=spec.name, source=spec.source or "<spec>", path=path, runs=runs, output_dir=spec.output_dir
    )
    from nlbench.sweep.runner import prepare_sweep_dir

    prepare_sweep_dir(spec)  # agents find the spec (and so their run ids) in its sweep.yaml
    atomic_write_text(path, header + yaml.safe_dump(definition, sort_keys=False, width=120))
    return path


def wandb_project(spec: SweepSpec) -> str | None:
    """The ``project`` of a WandbLogger in the base config(s) (the last one that names it), if any."""
    project = None
    for path in spec.base:
        config = yamlsafe.load_file(path, "base config") or {}
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
