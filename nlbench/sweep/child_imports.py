"""The sweep checks its runs in this process; they run in child processes. Both must import the same code.

A run is started as ``python -P -m nlbench fit`` (nlbench.sweep.runner.DEFAULT_FIT_COMMAND): nothing comes from the
current folder. This process may see more (a notebook's ``sys.path.append``, the current folder of ``python -c``)
or other code (a folder named nlbench/ where it was started), so its up-front check could pass while every run
fails to import its classes. :func:`check_child_imports` asks one child interpreter, started as the runs are, where
it would find nlbench and each top-level module the checked configs name, and refuses the sweep in one line when
that differs from what this process imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nlbench.trusted_imports import dotted_names

# Prints {module: the file or folder its import would use, or null}, for the modules named in argv.
_PROBE = (
    "import importlib.util, json, sys\n"
    "def where(m):\n"
    "    try:\n"
    "        s = importlib.util.find_spec(m)\n"
    "    except (ImportError, ValueError):\n"
    "        return None\n"
    "    if s is None:\n"
    "        return None\n"
    "    o = s.origin if s.origin not in (None, 'built-in', 'frozen') else None\n"
    "    return o or next(iter(s.submodule_search_locations or []), None) or s.origin\n"
    "print(json.dumps({m: where(m) for m in sys.argv[1:]}))\n"
)


def imported_modules(configs: Iterable[Any]) -> list[str]:
    """nlbench and the top-level modules of the class paths in ``configs`` (parsed fit configs or plain mappings)
    that this process has imported."""
    names: dict[str, None] = {"nlbench": None}
    for config in configs:
        data = config.as_dict() if hasattr(config, "as_dict") else config
        names.update(dict.fromkeys(name.split(".", 1)[0] for name in dotted_names(data)))
    return [name for name in names if name in sys.modules]


def origin_here(module: str) -> str | None:
    """Where this process imported ``module`` from (its file, or a package's first folder)."""
    loaded = sys.modules.get(module)
    spec = getattr(loaded, "__spec__", None)
    if spec is None:
        return None
    origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else None
    return origin or next(iter(spec.submodule_search_locations or []), None) or spec.origin


def probe_command(fit_command: Sequence[str]) -> list[str]:
    """The interpreter a run's command starts, with the same import path, asked to run the probe instead."""
    command = list(fit_command)
    if "-m" in command:  # python [-P] -m nlbench fit
        return [*command[: command.index("-m")], "-c", _PROBE]
    # The installed `nlbench` script: its import path starts at its own folder.
    folder = str(Path(command[0]).resolve().parent)
    return [sys.executable, "-c", f"import sys; sys.path[0] = {folder!r}\n{_PROBE}"]


def check_child_imports(modules: Sequence[str], fit_command: Sequence[str], env: Mapping[str, str]) -> None:
    """Refuse (ValueError, one line) when a run started with ``fit_command`` in ``env`` would import one of
    ``modules`` from elsewhere than this process, or not find it."""
    if not modules:
        return
    try:
        done = subprocess.run(
            [*probe_command(fit_command), *modules],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        there = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        there = None
    if not isinstance(there, dict):
        raise ValueError(f"could not start {fit_command[0]} as the runs would be started, to check what they import")
    for module in modules:
        here, theirs = origin_here(module), there.get(module)
        if here is None:
            continue
        if theirs is None:
            raise ValueError(
                f"the runs could not import {module}: this process checked them with {module} from "
                f"{here}, where a run (started without the current folder on its import path) does not "
                "look; install it, or put its folder on PYTHONPATH"
            )
        if os.path.realpath(theirs) != os.path.realpath(here):
            raise ValueError(
                f"the runs would import {module} from {theirs}, but this process checked them with "
                f"{module} from {here}; start the sweep as `nlbench sweep` (or `python -P -m nlbench "
                "sweep`), so that both import the same"
            )
