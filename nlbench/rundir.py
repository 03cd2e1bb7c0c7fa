"""Which run directory a command works in: choose, version, lock and discard (the policy; the layout is
nlbench.record.RunDir).

A ``fit`` takes ``--run_dir`` as given, the directory of its grid point under ``wandb agent`` (an exported sweep), or
``<trainer.default_root_dir>/<run name>``, versioned ``-v2``, ``-v3``, ... past directories that hold files or are
locked by a concurrent fit. It locks the directory (nlbench.runlock) before anything is written there and, when it
fails before training, removes what it created (:meth:`RunDirClaim.discard_new`). validate/test/predict name the
fit's directory and lock nothing; a DDP worker takes its launcher's choice, and a rank > 0 of an outside launcher
only names the directory rank 0 chose.

No Lightning or torch here: the fit's CLI (nlbench.lightning_cli) calls these functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlbench import launch, sweepdir
from nlbench.record import RunIdentity, Unreadable
from nlbench.runlock import LOCK_NAME, RunLock, RunLockedError

SWEEP_DIR_ENV = "NLBENCH_SWEEP_DIR"  # set by an exported W&B sweep's command: the sweep directory agents' runs go to


class RunDirError(ValueError):
    """A run directory the command cannot use (a link, in use, already trained); one line, exit code 2."""


@dataclass
class RunDirClaim:
    """A fit's hold on its run directory: the lock (taken before anything is written there, held until the fit has
    ended and a failed set-up has been cleaned up) and the folders this process created for it, deepest first."""

    lock: RunLock | None = None
    created: list[Path] = field(default_factory=list)

    def take(self, run_dir: Path, wait: bool = True, option: str = "run directory") -> bool:
        """Lock ``run_dir`` (creating it), recording the folders created. A directory in use by another process:
        RunDirError (one line), or False when ``wait`` is off (the caller tries another)."""
        created = []
        folder = run_dir
        while not folder.exists():
            created.append(folder)
            folder = folder.parent
        lock = RunLock(run_dir, command="nlbench fit")
        try:
            # Without waiting, still outlast a reader's shared-lock probe (runlock.owner holds one for microseconds).
            lock.acquire(timeout_s=2.0 if wait else 0.2)
        except RunLockedError as err:
            remove_empty_dirs(created)
            if not wait:
                return False
            raise RunDirError(f"{option} {err}") from None
        if not wait and holds_files(run_dir):  # filled between the check and the lock
            lock.release()
            return False
        self.lock, self.created = lock, created
        return True

    def discard_new(self) -> None:
        """After a fit failed before training (bad input, missing data, Ctrl-C in the sanity check): remove the run
        directory if this process created it and it holds no checkpoint (never lose one), then each folder above it
        that this process created and that is still empty -- another run may have started in one of them meanwhile.

        Runs under the run directory's lock, so nothing in the run directory belongs to another process."""
        if not self.created or self.lock is None or not self.lock.held:
            return
        run_dir = self.created[0]
        if any(run_dir.rglob("*.ckpt")):
            return
        for entry in run_dir.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        # Unlinked while still held: a fit waiting on this lock file sees that it was replaced (nlbench.runlock).
        (run_dir / LOCK_NAME).unlink(missing_ok=True)
        remove_empty_dirs(self.created)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def resolve(cfg: Any, identity: RunIdentity, subcommand: str | None, claim: RunDirClaim) -> Path:
    """The run directory of a command with parsed config ``cfg`` (``run_dir``, ``ckpt_path``,
    ``trainer.default_root_dir``); a fit that writes it also locks it into ``claim``."""
    launched = launch.detect()
    if launched.launcher == "ddp-worker":
        return Path(os.environ[launch.DDP_RUN_DIR_ENV])  # a DDP worker: the launcher already chose (and locked)
    fit = subcommand == "fit"
    if not launched.writes:
        # A rank > 0 of torchrun/srun/mpirun or of another node: global rank 0 chooses, locks and writes the run
        # directory; this process only names it (it writes nothing there), so it neither locks nor picks -vN.
        if cfg.run_dir:
            return resolved(Path(cfg.run_dir))
        agent_dir = agent_run_dir(cfg) if fit else None
        return resolved(agent_dir or Path(cfg.trainer.default_root_dir or "runs") / identity.name)
    resuming = bool(cfg.get("ckpt_path"))
    if cfg.run_dir:
        run_dir = resolved(Path(cfg.run_dir))
        if fit:
            claim.take(run_dir, option="--run_dir")
            if not resuming and checkpoints_in(run_dir):
                raise RunDirError(
                    f"--run_dir {cfg.run_dir} already holds checkpoints; pass --ckpt_path last to "
                    "resume it or choose another --run_dir"
                )
        return run_dir
    if fit and (agent_dir := agent_run_dir(cfg)) is not None:
        # a `wandb agent` run of an exported sweep: in the sweep's directory
        run_dir = resolved(agent_dir)
        claim.take(run_dir)
        if not resuming and checkpoints_in(run_dir):
            raise RunDirError(
                f"{run_dir} (this W&B agent run's directory in its sweep) already holds "
                "checkpoints; the grid point ran before"
            )
        return run_dir
    root = Path(cfg.trainer.default_root_dir or "runs")
    run_dir = root / identity.name
    if not fit:
        return resolved(run_dir)
    if resuming:
        claim.take(resolved(run_dir))
        return resolved(run_dir)
    version = 1
    # The first free <name>, <name>-v2, ...: empty and not locked by a concurrent fit that chose it first.
    while True:
        candidate = resolved(run_dir)
        if not (candidate.exists() and holds_files(candidate)) and claim.take(candidate, wait=False):
            return candidate
        version += 1
        run_dir = root / f"{identity.name}-v{version}"


def resolved(run_dir: Path) -> Path:
    """The run directory's absolute path, refused (RunDirError) when it is a symbolic link: ``resolve`` would follow
    it, and the fit would write another folder's config.yaml, metrics.csv and result.json (links above it, such as
    ``runs -> /scratch/runs``, are the user's own set-up and followed)."""
    if os.path.islink(run_dir):
        raise RunDirError(
            f"run directory {run_dir} is a symbolic link; nlbench does not write through links (pass "
            "the folder it points to as --run_dir, or a new one)"
        )
    return run_dir.resolve()


def holds_files(run_dir: Path) -> bool:
    """Whether a run directory holds anything besides its lock file."""
    return any(entry.name != LOCK_NAME for entry in run_dir.iterdir())


def checkpoints_in(run_dir: Path) -> bool:
    return any(run_dir.glob("checkpoints/*.ckpt"))


def remove_empty_dirs(folders: list[Path]) -> None:
    """Remove the given folders, deepest first, stopping at the first that is not empty (os.rmdir is atomic: a file
    another process put there meanwhile keeps its folder)."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


# ---- W&B agent runs of an exported sweep (nlbench.sweep.wandb_export) ----------------------------------------------
def under_agent() -> bool:
    """Whether this process is a run started by ``wandb agent`` (the agent sets WANDB_SWEEP_ID and WANDB_RUN_ID)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def agent_run_dir(cfg: Any, value_of: Callable[[Any, str], Any] | None = None) -> Path | None:
    """The run directory of an agent's run of an exported sweep: ``<sweep_dir>/runs/<run_id>``, the run whose swept
    values equal the parsed config's (``value_of(cfg, dotted_key)``, default :func:`lookup`); None outside an agent
    or an exported command, with a warning when the sweep directory cannot be read here or no run of it matches."""
    sweep_dir = os.environ.get(SWEEP_DIR_ENV)
    if not sweep_dir or not under_agent():
        return None
    value_of = value_of or lookup
    stored = Path(sweep_dir) / sweepdir.SPEC
    try:  # within limits, never through a link: a received directory. Run ids need only the stored spec.
        spec = sweepdir.read_spec(Path(sweep_dir))
        if not isinstance(spec, dict):
            raise Unreadable(f"{stored}: not a sweep spec")
        runs = sweepdir.stored_runs(spec)
    except Unreadable as err:
        warnings.warn(
            f"{stored}: cannot read the sweep ({' '.join(str(err).split())[:120]}); the run goes to "
            "trainer.default_root_dir instead",
            stacklevel=2,
        )
        return None
    for run_id, params in runs.items():
        if all(_same(value_of(cfg, key), value) for key, value in params.items()):
            return sweepdir.run_dir(Path(sweep_dir), run_id)
    warnings.warn(
        f"{stored}: no run of the sweep has this run's values; it goes to trainer.default_root_dir", stacklevel=2
    )
    return None


_MISSING = object()


def lookup(cfg: Any, key: str) -> Any:
    """A dotted override key's parsed value: ``model.backbone.nl.reduction`` reaches through ``init_args`` as the
    command line's shorthand does."""
    node: Any = cfg
    for part in key.split("."):
        # jsonargparse's Namespace is an argparse.Namespace: checked without importing jsonargparse (~0.1 s)
        if isinstance(node, argparse.Namespace) and part in node:
            node = node[part]
        elif (
            isinstance(node, argparse.Namespace)
            and "init_args" in node
            and isinstance(node.init_args, argparse.Namespace)
            and part in node.init_args
        ):
            node = node.init_args[part]
        else:
            return _MISSING
    return node


def _same(parsed: Any, value: Any) -> bool:
    parsed = parsed.as_dict() if hasattr(parsed, "as_dict") else parsed
    if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(parsed, (int, float)):
        return float(parsed) == float(value)
    return bool(parsed == value)
