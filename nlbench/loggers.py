"""Logging set-up: W&B with an offline fallback, and a CSV logger that keeps a resumed run's metrics (run names
 and groups: nlbench.record.identify).

W&B must never be the reason a run fails: without credentials it runs offline (sync later with ``wandb sync``),
and if the service cannot be reached it falls back to offline, then to disabled.
"""

from __future__ import annotations

import csv
import io
import logging
import netrc
import os
import secrets
import string
import warnings
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _LightningExperimentWriter
from lightning.pytorch.loggers.logger import DummyExperiment, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from nlbench.io import atomic_write_text, read_bounded
from nlbench.limits import MAX_SMALL_BYTES

WandbMode = Literal["auto", "online", "offline", "disabled"]


# ---- console noise -----------------------------------------------------------------------------------------------
class _DropAdvertisements(logging.Filter):
    """Lightning's "Tip: try litlogger/litmodels" lines: advertisements, not information about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip:")


_ADVERTISEMENTS = _DropAdvertisements()


def quiet_third_party_output() -> None:
    """Silence the library messages that say nothing true or useful about an nlbench run; real warnings stay.

    Fixed at their source elsewhere in this module: W&B's "anonymous setting" warning (WandbLogger no longer passes
    the setting), its "git root does not exist" (the run directory exists before W&B starts) and Lightning's false
    "Previous log files ... will be deleted" (nlbench's CSVLogger keeps them)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _ADVERTISEMENTS not in logger.filters:
            logger.addFilter(_ADVERTISEMENTS)
    # Lightning 2.6 still calls a torch pytree API that torch 2.14 deprecated; nothing a user can act on.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # nlbench logs its training metrics per epoch (the divergence check runs at epoch end too): an epoch shorter than
    # log_every_n_steps loses nothing, so Lightning's notice about it is not true here.
    warnings.filterwarnings(
        "ignore",
        message=r"The number of training batches \(\d+\) is smaller than the logging "
        "interval",
    )
    # nlbench passes LightningCLI explicit args on purpose (`nlbench sweep` validating its runs, `load_run`, tests),
    # while sys.argv holds another command line; Lightning's "not recommended" notice is not about a mistake here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # A fresh fit into a run directory that holds checkpoints is refused (NLBenchCLI), so a non-empty checkpoint
    # folder is a resume (`--ckpt_path last`), where Lightning's "exists and is not empty" is expected, not a hazard.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    if "SLURM_JOB_ID" not in os.environ:
        # Lightning warns wherever `srun` is installed (a login node, a workstation with SLURM's client) that it is
        # "not used"; outside a SLURM job there is nothing to launch with srun. Inside one the warning stays.
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def wandb_credentials_available() -> bool:
    """True when W&B has an API key: ``WANDB_API_KEY`` or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: WandbMode) -> Literal["online", "offline", "disabled"]:
    """ "auto" honours ``WANDB_MODE`` if set, else goes online only when credentials exist."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled"):
        return env  # type: ignore[return-value]
    if env == "dryrun":
        return "offline"
    return "online" if wandb_credentials_available() else "offline"


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger with explicit, YAML-friendly options and a fallback that never fails a run.

    Args:
        project: W&B project.
        name: run name; the CLI fills it from the configuration (e.g. ``scale-r2-h1-normal-s0``) when unset.
        group: runs that differ only by seed share a group; filled by the CLI when unset.
        tags: extra tags (the CLI adds dataset and normalization).
        notes: free-text notes.
        entity: W&B entity (user or team); default from your W&B settings.
        save_dir: where W&B keeps run files; the CLI sets it to the run directory.
        id: W&B run id; the CLI derives it from the run directory so a resumed run continues the same W&B run.
        mode: "auto" (online with credentials, else offline), "online", "offline" or "disabled".
        log_model: upload checkpoints as W&B artifacts (online only).
        init_timeout: seconds to wait for the W&B service before falling back to offline.
    """

    def __init__(
        self,
        project: str = "nlbench",
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        entity: str | None = None,
        save_dir: str = ".",
        id: str | None = None,
        mode: WandbMode = "auto",
        log_model: bool = False,
        init_timeout: float = 30.0,
    ) -> None:
        import wandb

        resolved = resolve_wandb_mode(mode)
        super().__init__(
            name=name,
            save_dir=save_dir,
            id=id,
            project=project,
            log_model=log_model and resolved == "online",
            group=group,
            tags=list(tags or []),
            notes=notes,
            entity=entity,
            mode=resolved,
            settings=wandb.Settings(init_timeout=init_timeout, console="off", silent=True),
        )
        # Lightning keeps wandb.init's arguments only in private attributes (_wandb_init, _id; docs/design.md).
        # Lightning passes anonymous=None, which W&B now answers with "The anonymous setting has no effect".
        self._wandb_init.pop("anonymous", None)
        if os.environ.get("WANDB_SWEEP_ID"):
            # Under `wandb agent` W&B takes project, entity and run id from the agent (WANDB_PROJECT, WANDB_ENTITY,
            # WANDB_RUN_ID) and warns "Ignoring ... when running a sweep" about any passed: pass none.
            for key in ("project", "entity", "id"):
                self._wandb_init.pop(key, None)
            self._id = os.environ.get("WANDB_RUN_ID", self._id)

    @property
    def mode(self) -> str:
        return self._wandb_init["mode"]

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        # W&B looks for the git repository from its directory and warns "git root ... does not exist" before
        # creating it.
        if self._save_dir:
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)
        while True:
            try:
                return super().experiment
            except Exception as err:  # noqa: BLE001 - any W&B failure must not stop training
                fallback = {"online": "offline", "offline": "disabled"}.get(self.mode)
                if fallback is None:
                    raise
                rank_zero_warn(f"W&B could not start in {self.mode} mode ({err}); falling back to {fallback}.")
                _tear_down_half_started_run()
                self._wandb_init["mode"] = fallback

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._experiment is None or isinstance(self._experiment, DummyExperiment):
            return
        run_dir = Path(self._experiment.dir).parent
        # Finish the W&B run: one CLI invocation is one run, and a later run in the same process needs a fresh one.
        self._experiment.finish(exit_code=0 if status == "success" else 1)
        self._experiment = None
        if self.mode == "offline":
            rank_zero_info(f"W&B ran offline. Upload this run later with: wandb sync {run_dir}")


class _KeepingExperimentWriter(_LightningExperimentWriter):
    """Lightning's CSV writer, except that it continues an existing metrics.csv instead of deleting it (with a
    warning that the previous log files will be deleted)."""

    def _check_log_dir_exists(self) -> None:  # private hook of Lightning's writer (docs/design.md)
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            # The writer appends to the file and widens its header when new columns appear.
            self.metrics_keys = next(csv.reader(file), [])


def _tear_down_half_started_run() -> None:
    """A failed ``wandb.init`` leaves its run id registered in the W&B service ("run ID ... is in use" on the next
    init with that id): finish whatever run exists and stop the service, so the fallback starts clean."""
    import wandb

    for step in (lambda: wandb.run is not None and wandb.run.finish(exit_code=1), wandb.teardown):
        try:
            step()
        except Exception:  # noqa: BLE001 - best effort: the next init reports what is still wrong
            pass


class CSVLogger(_LightningCSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps its metrics.csv (Lightning's deletes the file when the
    log directory exists), so the learning curves of a resumed run cover all of its epochs."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def discard_from(self, step: int) -> None:
        """Drop the rows logged at ``step`` or later: a resumed run logs them again (a killed attempt got past its
        checkpoint), and a fresh start in an old run directory logs everything again."""
        path = Path(self.experiment.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if _step(row) < step]
        if len(kept) == len(rows):
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys)
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(path, out.getvalue())


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")  # compares False: a row without a step is never dropped


class ResumedMetrics(Callback):
    """When training (re)starts, drops the CSV rows that the restored state will log again (see
    ``CSVLogger.discard_from``), so metrics.csv holds each step once."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.discard_from(trainer.global_step)


WANDB_ID_FILE = "wandb-id"  # in the run directory: the run's W&B id, reused when the run is resumed


def wandb_run_id(run_dir: Path, resuming: bool) -> str:
    """The W&B id of the run in ``run_dir``: the stored one when resuming, else a new random id that is stored.

    Ids are never derived from the path, so a run directory that is deleted and run again does not append to the old
    W&B run. Only the process that picks the id (rank 0, or the launcher) writes the file; DDP workers read it.
    """
    path = Path(run_dir) / WANDB_ID_FILE
    try:  # a received run directory's file: bounded, never through a link or blocking on a FIFO
        stored = read_bounded(path, MAX_SMALL_BYTES, what=WANDB_ID_FILE).decode(errors="replace").strip()
    except (OSError, ValueError):
        stored = ""
    from nlbench.launch import detect

    worker = not detect().writes  # a rank > 0 of any launcher: it reads the id rank 0 stored, never writes one
    if worker or (resuming and stored):
        return stored
    # W&B's own id alphabet and length (wandb.util.generate_id), without importing wandb here.
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    atomic_write_text(path, run_id + "\n")
    return run_id
