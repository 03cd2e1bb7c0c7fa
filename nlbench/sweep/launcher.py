"""Where a sweep's runs start: here, one per device slot (``--launcher local``, :func:`nlbench.sweep.runner.run_sweep`),
or elsewhere through a launcher: one class in its own module implementing :class:`Launcher`, named in
:data:`LAUNCHERS`. ``nlbench sweep`` adds each launcher's options (``--<name>.<key>``, also the spec's ``<name>:``
section), refuses them without ``--launcher <name>``, hands it the runs to start (or to preview with
``--dry-run``), and asks it which runs it has queued for ``--status``.
"""

from __future__ import annotations

import functools
import importlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from jsonargparse import ArgumentParser, Namespace

from nlbench.sweep.datacheck import DataNeed
from nlbench.sweep.runner import plan
from nlbench.sweep.spec import SweepRun, SweepSpec

# --launcher NAME -> "module:Class" (imported when named, or for --status and --help).
LAUNCHERS: dict[str, str] = {"slurm": "nlbench.sweep.slurm:SlurmLauncher"}


class LaunchError(RuntimeError):
    """A launcher could not start the runs (its scheduler refused them); one line."""


class Launcher(Protocol):
    name: str  # --launcher NAME; options --NAME.KEY

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Add ``--<name>.<key>`` options (default None: unset)."""

    def given(self, args: Namespace) -> dict[str, Any]:
        """The launcher's options the command line set (key -> value, unset ones left out)."""

    def options(self, spec: SweepSpec, given: Mapping[str, Any]) -> dict[str, Any]:
        """The spec's section overridden by ``given``, checked (ValueError/SweepSpecError naming the option)."""

    def launch(
        self,
        spec: SweepSpec,
        runs: Sequence[SweepRun],
        todo: Sequence[SweepRun],
        options: Mapping[str, Any],
        needs: Sequence[DataNeed],
        *,
        dry_run: bool,
    ) -> None:
        """Start (or with ``dry_run`` print) the runs of ``todo`` that are neither done nor running; prints what it
        did. Raises LaunchError, or the sweep's own errors (SweepDirError, ValueError, OSError)."""

    def queued(self, spec: SweepSpec) -> dict[str, str]:
        """run_id -> where it waits (``SLURM job 12_3 (PENDING)``), for the runs the scheduler still holds."""


@functools.cache
def launchers() -> dict[str, Launcher]:
    """Every launcher of :data:`LAUNCHERS`, by name (imported once)."""
    out = {}
    for name, path in LAUNCHERS.items():
        module, _, cls = path.partition(":")
        out[name] = getattr(importlib.import_module(module), cls)()
    return out


def counts_line(spec: SweepSpec, runs: Sequence[SweepRun]) -> str:
    """``90 runs, 30 done, 50 new, 10 to resume, 0 to retry``: what the next sweep would do."""
    actions = Counter(state.action for _, state in plan(spec, runs))
    return (
        f"{len(runs)} runs, {actions['skip']} done, {actions['run']} new, {actions['resume']} to resume, "
        f"{actions['retry']} to retry"
    )
