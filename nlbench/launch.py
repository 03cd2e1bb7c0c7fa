"""Which launcher started this process, and its rank: launcher variables count only as a set Lightning acts on.

Lightning reads a process's rank from the first cluster environment whose ``detect()`` holds (torchelastic, SLURM,
LSF, MPI; else its own environment, where ``LOCAL_RANK`` means "started by someone else" and ``NODE_RANK`` places a
node). A variable left over in a shell (``NODE_RANK=1``, ``LOCAL_RANK=1`` next to ``SLURM_PROCID=0``) would make it
treat a lone process as a worker: it trains, writes none of the run's files, and nlbench (which lets only global rank
0 lock and write the run directory) would skip the lock. So the variables are honoured only as the complete,
consistent set of a launcher Lightning detects, and any other non-zero rank variable is refused in one line
(:class:`LaunchError`); a worker rank > 0 writes nothing into the run directory, rank 0 holds its lock.

Torch-free until a variable asks for it (torchelastic's detection is torch.distributed's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# torch.distributed's own rank variables (torchrun sets them; Lightning's DDP workers and nodes started by hand too).
TORCH_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
# Variables that give a process a rank (or a world) in some launcher's scheme.
RANK_VARS = (
    *TORCH_RANK_VARS,
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "PMI_RANK",
    "JSM_NAMESPACE_RANK",
    "JSM_NAMESPACE_LOCAL_RANK",
)
# The rendezvous of a torch.distributed world: a child inheriting them would join (or collide with) the outer one.
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT")
# Whole families Lightning reads as an outer launcher (SLURMEnvironment, TorchElasticEnvironment).
LAUNCHER_PREFIXES = ("SLURM_", "TORCHELASTIC_")
# The SLURM job's identity, kept for a child that runs alone (requeue, signals, accounting): not a task's rank.
SLURM_JOB_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CLUSTER_NAME", "SLURM_CONF")
# nlbench's own DDP workers (Lightning's subprocess launcher re-runs the command line with this set;
# nlbench.lightning_cli).
DDP_RUN_DIR_ENV = "NLBENCH_DDP_RUN_DIR"
_HINT = (
    "unset them, start multi-process runs with --trainer.devices N, or under a launcher Lightning detects "
    "(torchrun, srun, jsrun, or MASTER_ADDR, MASTER_PORT, NODE_RANK and --trainer.num_nodes for nodes "
    "started by hand)"
)


class LaunchError(ValueError):
    """Launcher variables that are not a set Lightning acts on; one line naming them."""


@dataclass(frozen=True)
class Launch:
    """How this process was started: ``launcher`` ("none", "torchelastic", "slurm", "lsf", "mpi", "nodes": by hand
    with MASTER_ADDR/MASTER_PORT/NODE_RANK, "ddp-worker": Lightning's subprocess launcher for nlbench), its global
    rank as far as the environment tells (0 for the process that locks and writes the run directory) and, for
    nodes started by hand, the node's rank (checked against ``--trainer.num_nodes``)."""

    launcher: str = "none"
    global_rank: int = 0  # exact where the launcher says (torchrun, SLURM, LSF, MPI); else > 0 for every other rank
    node_rank: int = 0

    @property
    def writes(self) -> bool:
        """Whether this process locks and writes the run directory (global rank 0)."""
        return self.global_rank == 0


def detect(env: Mapping[str, str] | None = None) -> Launch:
    """This process's launch, from ``env`` (default: os.environ); LaunchError when the launcher variables are not a
    complete, consistent set of a launcher Lightning detects, tried in Lightning's order of detection."""
    env = os.environ if env is None else env
    if env.get("TORCHELASTIC_RUN_ID") is not None and _torchelastic_available():  # TorchElasticEnvironment.detect()
        rank, _, world = _ints(env, ("RANK", "LOCAL_RANK", "WORLD_SIZE"), "torchrun (TORCHELASTIC_RUN_ID is set)")
        _in_world("RANK", rank, world, "WORLD_SIZE")
        return Launch("torchelastic", rank)
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):  # SLURMEnvironment.detect()
        procid, localid, nodeid, ntasks = _ints(
            env, ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS"), "srun (SLURM_NTASKS is set)"
        )
        _in_world("SLURM_PROCID", procid, ntasks, "SLURM_NTASKS")
        _agree(env, {"RANK": procid, "LOCAL_RANK": localid, "NODE_RANK": nodeid}, "SLURM")
        return Launch("slurm", procid)
    if {"LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE"} <= set(env):  # LSF
        rank, _, world = _ints(env, ("JSM_NAMESPACE_RANK", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE"), "jsrun")
        _in_world("JSM_NAMESPACE_RANK", rank, world, "JSM_NAMESPACE_SIZE")
        return Launch("lsf", rank)
    mpi = _mpi_rank(env)
    if mpi is not None:
        return Launch("mpi", mpi)
    # Lightning's own environment: nlbench's DDP workers, or nodes (and their processes) started by hand.
    generic = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
    local = _int_or_none(env, "LOCAL_RANK")
    if env.get(DDP_RUN_DIR_ENV) and local:
        (world,) = _ints(env, ("WORLD_SIZE",), f"Lightning's DDP launcher ({DDP_RUN_DIR_ENV} is set)")
        _in_world("LOCAL_RANK", local, world, "WORLD_SIZE")
        _unexplained(env, ignore=generic)
        return Launch("ddp-worker", local, _int_or_none(env, "NODE_RANK") or 0)
    node_var = "NODE_RANK" if "NODE_RANK" in env else "GROUP_RANK"
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT") and node_var in env:
        node = _int_or_none(env, node_var)
        for name, value in ((node_var, node), ("LOCAL_RANK", local)):
            if name in env and (value is None or value < 0):
                raise LaunchError(f"{name}={_shown(env[name])} is not a rank (0, 1, ...); {_HINT}")
        _unexplained(env, ignore=generic)
        node = node or 0
        return Launch("nodes", node + (local or 0), node)  # > 0 exactly for the processes that are not rank 0
    _unexplained(env, ignore=())
    return Launch()


def check_num_nodes(launch: Launch, num_nodes: object) -> None:
    """Nodes started by hand: ``NODE_RANK`` must name one of ``--trainer.num_nodes`` nodes (Lightning would otherwise
    run a lone process as a worker of a world that does not exist, writing nothing)."""
    if launch.launcher != "nodes":
        return
    nodes = num_nodes if isinstance(num_nodes, int) and not isinstance(num_nodes, bool) else 1
    if not 0 <= launch.node_rank < nodes:
        raise LaunchError(
            f"NODE_RANK={launch.node_rank} but --trainer.num_nodes is {nodes}: a node rank names one "
            f"of the run's nodes (0-{nodes - 1}); {_HINT}"
        )


def child_env(parent: Mapping[str, str], *, own_world: bool = False) -> dict[str, str]:
    """The environment of a fit nlbench starts itself (a sweep's run), from `parent`'s: the one place that decides
    which launcher variables a child inherits.

    SLURM's task variables always go (they would make Lightning pick its SLURMEnvironment, with the task's rank and
    its own SIGUSR1 requeue, in a plain local process); the job's identity (:data:`SLURM_JOB_VARS`) stays. With
    `own_world` (a run sharing its device with others, or a DDP run) every outer launcher variable goes too: SLURM_*,
    TORCHELASTIC_*, torch's rank variables and MASTER_ADDR/MASTER_PORT, so the child picks its own rendezvous (a
    free port) instead of joining the outer one's, or all concurrent DDP runs meeting on the same port."""
    if own_world:
        dropped = {*TORCH_RANK_VARS, *RENDEZVOUS_VARS}
        return {k: v for k, v in parent.items() if k not in dropped and not k.startswith(LAUNCHER_PREFIXES)}
    return {k: v for k, v in parent.items() if not k.startswith("SLURM_") or k in SLURM_JOB_VARS}


# ---- helpers -----------------------------------------------------------------------------------------------------
def _torchelastic_available() -> bool:
    import torch.distributed

    return torch.distributed.is_available()


def _mpi_rank(env: Mapping[str, str]) -> int | None:
    """MPIEnvironment.detect(): mpi4py installed and a world of more than one process. Asked only when an MPI launcher
    set its variables (importing mpi4py initialises MPI)."""
    if not any(name in env for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")):
        return None
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        return None
    from lightning.fabric.plugins.environments import MPIEnvironment

    return MPIEnvironment().global_rank() if MPIEnvironment.detect() else None


def _int_or_none(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name)
    return int(text) if text is not None and text.strip().lstrip("-").isdigit() else None


def _ints(env: Mapping[str, str], names: Sequence[str], launcher: str) -> list[int]:
    """The launcher's variables as numbers; LaunchError naming those missing or not numbers."""
    values = [_int_or_none(env, name) for name in names]
    missing = [name for name, value in zip(names, values) if value is None]
    if missing:
        raise LaunchError(
            f"{launcher} needs {', '.join(names)}, but {', '.join(_describe(env, n) for n in missing)}; {_HINT}"
        )
    return [int(value or 0) for value in values]


def _in_world(name: str, rank: int, world: int, world_name: str) -> None:
    if not 0 <= rank < world:
        raise LaunchError(f"{name}={rank} is not a rank of {world_name}={world}; {_HINT}")


def _agree(env: Mapping[str, str], expected: Mapping[str, int], launcher: str) -> None:
    """Generic rank variables set next to a launcher's own must say the same (LOCAL_RANK=1 with SLURM_LOCALID=0
    would make nlbench and Lightning disagree on who writes)."""
    for name, value in expected.items():
        if name in env and _int_or_none(env, name) != value:
            raise LaunchError(f"{name}={_shown(env[name])} disagrees with {launcher}'s rank ({value}); {_HINT}")


def _unexplained(env: Mapping[str, str], ignore: Sequence[str]) -> None:
    """Refuse rank variables no detected launcher explains, unless they say rank 0 (or a world of 1)."""
    stray = [
        f"{name}={_shown(env[name])}"
        for name in RANK_VARS
        if name in env and name not in ignore and env[name].strip() not in ("0", "1" if "SIZE" in name else "0")
    ]
    if stray:
        raise LaunchError(
            f"{' '.join(stray)} set in the environment, but no launcher Lightning detects started this process; {_HINT}"
        )


def _describe(env: Mapping[str, str], name: str) -> str:
    return f"{name} is not set" if name not in env else f"{name}={_shown(env[name])} is not a number"


def _shown(text: str) -> str:
    return repr(text) if not text.strip().lstrip("-").isdigit() or len(text) > 20 else text
