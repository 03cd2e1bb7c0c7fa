"""Sweeps: a grid of ``nlbench fit`` runs from a YAML spec, run over the visible devices, resumable after any
interruption, summarised as a results table (statistics: the report), and exportable as a W&B sweep for many machines.

Modules: `spec` (YAML -> SweepSpec, grid expansion, run ids, validation), `devices` (GPU slots), `runner`
(subprocesses, skip/resume, progress), `results` (tables), `wandb_export`, `cli` (``nlbench sweep``).
"""

from nlbench.sweep.devices import Slot, plan_slots, visible_gpus
from nlbench.sweep.runner import DEFAULT_FIT_COMMAND, run_sweep
from nlbench.sweep.spec import SweepRun, SweepSpec, SweepSpecError, load_spec, validate_runs
from nlbench.sweep.table import RunState, read_state, write_results
from nlbench.sweep.wandb_export import export_wandb, sweep_definition
from nlbench.sweepdir import run_id

__all__ = [
    "DEFAULT_FIT_COMMAND",
    "RunState",
    "Slot",
    "SweepRun",
    "SweepSpec",
    "SweepSpecError",
    "export_wandb",
    "load_spec",
    "plan_slots",
    "read_state",
    "run_id",
    "run_sweep",
    "sweep_definition",
    "validate_runs",
    "visible_gpus",
    "write_results",
]
