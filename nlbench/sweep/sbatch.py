"""What may reach sbatch from a spec's ``slurm:`` section and the ``--slurm.*`` options: sbatch's own option names,
with values that stay one option.

submitit writes every option as one ``#SBATCH --key=value`` line, the value through ``shlex.quote`` and the key as
given. sbatch splits such a line into arguments at unquoted whitespace (and ends it at an unquoted ``#``), and bash
runs the script's other lines, so a received spec could otherwise add options (``partition: "gpu --export=..."``),
commands (a newline in any key or value) or, through getopt's prefix matching, an option under another name
(``--out`` is ``--output``). Hence: keys are exact sbatch long option names; values are printable ASCII without
whitespace, quotes, backslashes or ``#``; and the options nlbench and submitit set themselves (where logs go, the
job's environment, working directory, array and signal) are refused. Torch-free, submitit-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

# sbatch's long options (Slurm 23.02, `man sbatch`). Exact names only: sbatch would also take an unambiguous prefix.
SBATCH_OPTIONS = frozenset(
    """
account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment constraint container
container-id contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency
distribution error exclude exclusive export export-file extra extra-node-info get-user-env gid gpu-bind gpu-freq gpus
gpus-per-node gpus-per-socket gpus-per-task gres gres-flags help hint hold ignore-pbs input job-name
kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nice
no-kill no-requeue nodefile nodelist nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket
open-mode output overcommit oversubscribe parsable partition power prefer priority profile propagate qos quiet reboot
requeue reservation signal sockets-per-node spread-job switches test-only thread-spec threads-per-core time time-min
tmp tres-per-task uid usage use-min-nodes verbose version wait wait-all-nodes wckey wrap
""".split()
)
# Set by nlbench or submitit, or changing who runs the task, where it runs, what it sees or where its output goes:
# refused in `additional` (option -> why).
RESERVED = {
    "array": "the sweep's array of pending runs",
    "job-name": "nlbench-<sweep name>",
    "output": "submitit's logs in <sweep_dir>/slurm/",
    "error": "submitit's logs in <sweep_dir>/slurm/",
    "open-mode": "submitit's logs",
    "input": "the task reads no input",
    "signal": "submitit's requeue signal",
    "chdir": "the task runs where the sweep was submitted",
    "export": "the task gets the submitting environment",
    "export-file": "the task gets the submitting environment",
    "get-user-env": "the task gets the submitting environment",
    "uid": "the task runs as you",
    "gid": "the task runs as you",
    "wrap": "the script is submitit's",
    "batch": "the script is submitit's",
    "parsable": "submitit reads sbatch's answer",
    "test-only": "nothing is submitted",
    "wait": "the sweep does not wait",
    "help": "not an option of a job",
    "usage": "not an option of a job",
    "version": "not an option of a job",
}
# Options nlbench has its own key for (--slurm.KEY, slurm: KEY).
OWN_KEYS = {
    "partition": "partition",
    "time": "time",
    "gpus-per-task": "gpus_per_task",
    "cpus-per-task": "cpus_per_task",
    "mem": "mem",
    "account": "account",
    "qos": "qos",
}
_SAFE_VALUE = re.compile(r"[!$-&(-\[\]-_a-~]+")  # printable ASCII but space ' " # \ `
_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_SHOWN = 40


class SbatchOptionError(ValueError):
    """An option that would not reach sbatch as the one option it names; one line naming it."""


def check_value(value: Any, where: str) -> str | int | float | bool:
    """A value as it may reach sbatch: a string of printable ASCII without whitespace, quotes, backslashes or ``#``
    (each would split the ``#SBATCH`` line or end it), a finite number, or ``true`` for a flag."""
    if value is True or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if not isinstance(value, str):
        raise SbatchOptionError(f"{where}: expected a string or a number, got {type(value).__name__}")
    if not value or not _SAFE_VALUE.fullmatch(value):
        bad = next((c for c in value if not _SAFE_VALUE.fullmatch(c)), None)
        what = "is empty" if not value else f"holds {_char(bad)}"
        raise SbatchOptionError(
            f"{where}: {_show(value)} {what}; a value that sbatch reads as one option is printable "
            "text without spaces, quotes, backslashes or '#'"
        )
    return value


def check_additional(additional: Any, where: str) -> dict[str, Any]:
    """``additional``: sbatch option names (``mail-type`` or ``mail_type``) -> values, each checked."""
    if not isinstance(additional, Mapping):
        raise SbatchOptionError(
            f"{where}: must map sbatch option names to values, e.g. "
            f'\'{{"constraint": "a100"}}\', got {type(additional).__name__}'
        )
    checked: dict[str, Any] = {}
    for key, value in additional.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", key):
            raise SbatchOptionError(
                f"{where}: {_show(key)} is not an sbatch option name (lower-case letters, digits and -)"
            )
        name = key.replace("_", "-")  # as submitit writes it
        if name in OWN_KEYS:
            raise SbatchOptionError(
                f"{where}: {key} has its own option: --slurm.{OWN_KEYS[name]} (or slurm: {OWN_KEYS[name]})"
            )
        if name in RESERVED:
            raise SbatchOptionError(f"{where}: {key} is set by nlbench ({RESERVED[name]}); leave it out")
        if name not in SBATCH_OPTIONS:
            raise SbatchOptionError(
                f"{where}: {key} is not an sbatch option (see `man sbatch`; the full name, not a prefix)"
            )
        checked[key] = check_value(value, f"{where}.{key}")
    return checked


def check_options(options: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """Every value of nlbench's SLURM options (``where(key)`` names the option or spec key in messages), and
    ``additional``'s names and values; ``mem`` must read as an sbatch size (``32G``, ``4000``)."""
    checked = dict(options)
    for key, value in options.items():
        if value is None:
            continue
        if key == "additional":
            checked[key] = check_additional(value, where(key))
        else:
            checked[key] = check_value(value, where(key))
    mem = checked.get("mem")
    if mem is not None and not _MEM.fullmatch(str(mem)):
        raise SbatchOptionError(f"{where('mem')}: {_show(mem)} is not a memory size such as 32G or 4000 (MB)")
    return checked


def _char(c: str | None) -> str:
    names = {
        " ": "a space",
        "\n": "a newline",
        "\t": "a tab",
        "'": "a quote",
        '"': "a quote",
        "#": "'#'",
        "\\": "a backslash",
        "`": "a backquote",
    }
    return names.get(c or "", f"the character {c!r}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text):,} characters)"
