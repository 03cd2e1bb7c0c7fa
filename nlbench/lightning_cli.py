"""The ``nlbench`` command: LightningCLI subcommands (fit/validate/test/predict) plus sweep, report, analyze, bench.

Every ``fit`` owns one run directory (see docs/design.md): resolved config, CSV metrics, checkpoints, W&B files and
``result.json``. Bad input ends with one line on stderr and exit code 2, leaving no run directory behind.
"""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_warn

from nlbench import error_lines, launch, rundir, trusted_imports, yamlsafe
from nlbench.callbacks import RunResult, evaluate_selected_checkpoint
from nlbench.checkpoint_io import check_checkpoint_classes, check_resumable, load_checkpoint_file, resume_checkpoint
from nlbench.classifier import ImageClassifier
from nlbench.device_share import DeviceShare
from nlbench.io import atomic_write_text
from nlbench.limits import terminal
from nlbench.loggers import WANDB_ID_FILE, ResumedMetrics, WandbLogger, quiet_third_party_output, wandb_run_id
from nlbench.nn.registry import check_config
from nlbench.predict import PredictionWriter
from nlbench.record import RunDir, RunIdentity, identity_from_config
from nlbench.rng import RandomState
from nlbench.schema import command_line_keys

# Lightning's ModelCheckpoint, replaced by nlbench.checkpoint_io.ModelCheckpoint (same options, last.ckpt always
# current)
LIGHTNING_MODEL_CHECKPOINT = (
    "lightning.pytorch.callbacks.ModelCheckpoint",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.ModelCheckpoint",
)


class ConfigError(ValueError):
    """A bad command line or config: reported as one line, exit code 2."""


WANDB_CONFIG_NAME = "nlbench-config.yaml"  # the resolved config among the W&B run's files


class ConfigSaver(SaveConfigCallback):
    """Writes config.yaml into the run directory and uploads the resolved config to W&B once."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # trainer.log_dir is a collective (broadcast) under DDP: read it here, where every rank runs.
        self._log_dir = Path(trainer.log_dir or ".")
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        result = next((cb for cb in trainer.callbacks if isinstance(cb, RunResult)), None)
        identity = result.identity if result is not None else identity_from_config(self.config)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.mode != "disabled":
                try:
                    run = logger.experiment
                    run.config.update(
                        {
                            **identity.hparams,
                            "config": self.config.as_dict(),
                            "differs": identity.differs,
                            "method": identity.method,
                        },
                        allow_val_change=True,
                    )
                    # A copy under a name W&B does not reserve: run.save would symlink the run's config.yaml into
                    # the W&B files, where W&B writes its own config.yaml through the link (wandb/wandb#7654).
                    copy = Path(run.dir) / WANDB_CONFIG_NAME
                    shutil.copyfile(self._log_dir / self.config_filename, copy)
                    run.save(str(copy), base_path=run.dir, policy="now")
                except Exception as err:  # noqa: BLE001 - W&B must never fail a run
                    rank_zero_warn(f"could not upload the config to W&B ({err}); it is in {self._log_dir}")


@dataclass
class CommandState:
    """What a command leaves its caller (:func:`main`) however it ends: NLBenchCLI fills it as it goes, the caller
    owns it, so a failure reaches the caller as the exception alone."""

    config_keys: list[str] = field(default_factory=list)  # the parsed config's dotted keys: an error names its option
    run_result: RunResult | None = None  # the fit's result callback: set-up vs training failures

    @property
    def training_started(self) -> bool:
        return self.run_result is not None and self.run_result.training_started


class NLBenchCLI(LightningCLI):
    """LightningCLI with nlbench's run directories, run naming and data -> model links."""

    # Hands the launcher's run directory to DDP worker processes, which re-run the same command line.
    RUN_DIR_ENV = launch.DDP_RUN_DIR_ENV

    def __init__(
        self, args: list[str] | None = None, run: bool = True, state: CommandState | None = None, **kwargs: Any
    ) -> None:
        self.state = CommandState() if state is None else state  # the caller's, when it passes one (main)
        self.run_dir: Path | None = None
        # The fit's exclusive lock on its run directory and the folders it created (nlbench.rundir): taken before
        # anything is written there, held until the fit has ended (and a failed set-up has been cleaned up).
        self.claim = rundir.RunDirClaim()
        self.argv = [str(a) for a in (sys.argv[1:] if args is None else args if isinstance(args, list) else [])]
        self.full_help = FULL_HELP in self.argv  # LightningCLI's own --help, with the whole Trainer surface
        if self.full_help:
            args = self.argv = ["--help" if a == FULL_HELP else a for a in self.argv]
        # The options that differ from the experiment's base config: the command line's (a sweep passes its
        # overrides and axes there), which name the run (nlbench.run.identity_from_config).
        self.option_keys = command_line_keys(self.argv)
        quiet_third_party_output()
        yamlsafe.guard_jsonargparse()
        try:
            super().__init__(
                ImageClassifier,
                L.LightningDataModule,
                subclass_mode_data=True,
                save_config_callback=ConfigSaver,
                save_config_kwargs={"overwrite": True, "multifile": False},
                auto_configure_optimizers=False,
                # prog: the usage line says `nlbench`, however it was started (`python -m nlbench` gave __main__.py)
                parser_kwargs={
                    "exit_on_error": False,
                    "env_prefix": "NLBENCH",
                    "default_env": False,
                    "prog": "nlbench",
                },
                args=args,
                run=run,
                **kwargs,
            )
        except BaseException:
            if not self.state.training_started:
                self.claim.discard_new()
            raise
        finally:
            self.claim.release()

    @property
    def run_result(self) -> RunResult | None:
        return self.state.run_result

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Run directory (config, metrics, checkpoints, result.json). Default: "
            "<trainer.default_root_dir>/<run name>, with a -vN suffix when taken.",
        )
        parser.link_arguments("data.num_classes", "model.backbone.init_args.num_classes", apply_on="instantiate")
        _count_or_fraction(parser)
        if not self.full_help:
            _shorten_help(parser)

    def _parse_ckpt_path(self) -> None:
        # Private LightningCLI hook (2.6) that reads --ckpt_path's hparams with torch.load(weights_only=True): a
        # refused pickle becomes one line naming the file (tests/test_checkpoint_safety.py breaks if it moves), and
        # the class paths they name are checked first: parsing them imports their modules
        # (tests/test_trusted_imports.py breaks if this hook stops being called).
        path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if path and Path(path).is_file():
            check_checkpoint_classes(path, f"--ckpt_path {path}")
        try:
            super()._parse_ckpt_path()
        except pickle.UnpicklingError as err:
            path = self.config[self.config.subcommand].get("ckpt_path")
            raise ValueError(
                f"--ckpt_path {path}: refused to load: the checkpoint holds pickled objects other than "
                "tensors and plain values, which could run code"
            ) from err

    def _set_seed(self) -> None:
        # Private LightningCLI hook (2.6; no public one runs between parsing and seeding; docs/design.md).
        # Lightning 2.6 seeds 0 for `seed_everything: true` (and reuses PL_GLOBAL_SEED left by an earlier run in
        # the same process): draw a real random seed instead, so config.yaml and result.json record it. DDP
        # workers re-run this command line and take the launcher's seed from PL_GLOBAL_SEED.
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        check_config(cfg)  # an unknown method: one line, before Lightning's "Seed set to" line
        if cfg.get("seed_everything") is True:
            worker = os.environ.get("LOCAL_RANK") not in (None, "0") and os.environ.get("PL_GLOBAL_SEED")
            cfg.seed_everything = int(os.environ["PL_GLOBAL_SEED"]) if worker else random_seed()
        super()._set_seed()

    # ---- run directory and loggers -------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self.state.config_keys = list(cfg.keys())
        _check_weights_only(cfg, self.argv)
        if self.subcommand == "fit":
            check_fit_length(cfg.trainer)
        launch.check_num_nodes(launch.detect(), cfg.trainer.get("num_nodes"))
        identity = identity_from_config(cfg, self.option_keys)
        run_dir = rundir.resolve(cfg, identity, self.subcommand, self.claim)
        RunDir(run_dir).check_files()  # before anything is written there: Lightning's writers follow links
        self.run_dir, self.identity = run_dir, identity
        log_dir = run_dir if self.subcommand in (None, "fit") else run_dir / self.subcommand
        cfg.trainer.default_root_dir = str(run_dir)
        cfg.trainer.logger = _configure_loggers(
            cfg.trainer.logger, log_dir, run_dir, identity, self.subcommand, resuming=bool(cfg.get("ckpt_path"))
        )
        for callback in _as_list(cfg.trainer.callbacks):
            if str(callback.get("class_path", "")) in LIGHTNING_MODEL_CHECKPOINT:
                callback.class_path = "nlbench.checkpoint_io.ModelCheckpoint"  # last.ckpt at every epoch end
            if str(callback.get("class_path", "")).endswith("ModelCheckpoint") and not callback.init_args.dirpath:
                callback.init_args.dirpath = str(run_dir / "checkpoints")
        cfg.trainer.plugins = _with_atomic_checkpoints(cfg.trainer.get("plugins"))
        if self.subcommand == "fit":
            wandb_ids = [
                lg.init_args.get("id") for lg in cfg.trainer.logger if str(lg.class_path).endswith("WandbLogger")
            ]
            self.state.run_result = RunResult(str(run_dir), identity, wandb_id=next(iter(wandb_ids), None))
            # DeviceShare: the memory cap of a run sharing its GPU with others (`runs_per_device` in a sweep).
            callbacks = [self.state.run_result, RandomState(), ResumedMetrics(), DeviceShare()]
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}
        elif self.subcommand == "predict":
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [PredictionWriter(log_dir)]}

    def _share_run_dir(self) -> None:
        """Before a multi-process run, let the DDP workers (started with this environment) find the run directory
        chosen here; a default one (``-vN``) could otherwise differ between the processes."""
        if self.trainer.world_size > 1 and self.run_dir is not None:
            os.environ[self.RUN_DIR_ENV] = str(self.run_dir)

    def _before_evaluation(self) -> None:
        self._share_run_dir()
        # Lightning asks for the fit's callbacks (RunResult, RandomState, ...) when evaluating its checkpoint: they
        # keep training state only, which an evaluation neither needs nor restores. A resumed fit keeps the warning.
        warnings.filterwarnings(
            "ignore",
            message="Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided",
        )

    before_validate = before_test = before_predict = _before_evaluation

    def after_predict(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, PredictionWriter) and callback.written and self.trainer.is_global_zero:
                print(f"nlbench predict: wrote {', '.join(map(str, callback.written))}")

    def after_fit(self) -> None:
        # A fit that held out a validation split records the test top-1 of its validation-selected checkpoint.
        if self.run_result is not None:
            evaluate_selected_checkpoint(self.trainer, self.model, self.datamodule, self.run_result)

    def before_fit(self) -> None:
        self._share_run_dir()
        # "last" -> the newest readable checkpoint (or a fresh start); a finished fixed-length run is not resumed.
        fit = self.config_init["fit"]
        fit.ckpt_path = resume_checkpoint(fit.get("ckpt_path"), self.run_dir / "checkpoints")
        check_resumable(self.run_dir, fit.ckpt_path)


# Trainer options shown by `nlbench fit --help`; `--help=full` shows all of them (the rest are Lightning's own).
SHORT_HELP_TRAINER = (
    "accelerator",
    "devices",
    "precision",
    "max_epochs",
    "max_steps",
    "limit_train_batches",
    "limit_val_batches",
    "log_every_n_steps",
    "default_root_dir",
    "enable_progress_bar",
)
FULL_HELP = "--help=full"


# Trainer options that take a count (an int: batches) or a fraction (a float: 1.0 = all), Lightning's convention.
COUNT_OR_FRACTION = (
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
    "val_check_interval",
)
COUNT_OR_FRACTION_HELP = (
    "An int counts batches (1 = one batch), a float is a fraction of them (1.0 = all, 0.1 = a tenth)."
)


def _count_or_fraction(parser: Any) -> None:
    """Make ``--trainer.limit_train_batches 1`` one batch, as Lightning documents an int, not 100%. Lightning's
    ``Optional[Union[int, float]]`` reaches jsonargparse as ``Union[float, int, None]`` (typing caches a Union by its
    members, in the order first seen), which jsonargparse tries float-first, turning every "1" into 1.0. The
    action's type hint is private to jsonargparse: tests/test_fit_help.py breaks if this stops working."""
    for action in parser._actions:  # argparse has no public way to list a parser's actions
        if (
            action.dest.removeprefix("trainer.") in COUNT_OR_FRACTION
            and action.dest.startswith("trainer.")
            and hasattr(action, "_typehint")
        ):
            action._typehint = int | float | None  # a types.UnionType: its order is kept
            action.help = f"{(action.help or '').rstrip('.')}. {COUNT_OR_FRACTION_HELP}"


def _shorten_help(parser: Any) -> None:
    """Fit the default help on a screen or two: hide the Trainer options nlbench users rarely set (they still
    parse; `--help=full` lists them), and say where the full surface is."""
    import argparse

    keep = {f"--trainer.{name}" for name in SHORT_HELP_TRAINER} | {
        f"--trainer.{name}.help" for name in SHORT_HELP_TRAINER
    }
    for action in parser._actions:  # argparse has no public way to list a parser's actions
        options = [o for o in action.option_strings if o.startswith("--trainer.")]
        if options and not keep & set(action.option_strings):
            action.help = argparse.SUPPRESS
    group = getattr(parser, "groups", {}).get("trainer")
    if group is not None:
        group.title = (
            "Trainer (common options; `nlbench fit --help=full` lists all of them, "
            "`--model.optimizer.help SGD` one class's options)"
        )


def _check_weights_only(cfg: Namespace, argv: list[str]) -> None:
    """``weights_only: false`` lets a checkpoint's pickle run code: honoured only when typed on the command line,
    never from a config file, which may have come with the checkpoint it is meant to unlock."""
    if cfg.get("weights_only") is False and not any(
        a == "--weights_only" or a.startswith("--weights_only=") for a in argv
    ):
        raise ConfigError(
            "weights_only: false from a config file is refused (loading a checkpoint's pickled objects "
            "can run code); if you trust the checkpoint, pass --weights_only false on the command line"
        )


def random_seed() -> int:
    """A fresh seed from the OS, in the 32-bit range every seeded library accepts."""
    return secrets.randbelow(2**32)


def _as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def _configure_loggers(
    loggers: Any, log_dir: Path, run_dir: Path, identity: RunIdentity, subcommand: str | None, resuming: bool
) -> Any:
    """Point the configured loggers at the run directory and give W&B the run's name, group, tags and id.

    A CSV logger is always there (metrics.csv feeds the sweep table and the offline report), even with
    ``trainer.logger: false``, which then only switches the other loggers off. Only ``fit`` logs to W&B:
    validate/test/predict write ``<run_dir>/<command>/metrics.csv`` and never open (or append to) the fit's W&B run."""
    configured = _as_list(loggers)
    if subcommand not in (None, "fit"):
        configured = [logger for logger in configured if not str(logger.get("class_path", "")).endswith("WandbLogger")]
    if not any(str(logger.get("class_path", "")).endswith("CSVLogger") for logger in configured):
        configured.insert(0, Namespace(class_path="nlbench.loggers.CSVLogger", init_args=Namespace()))
    for logger in configured:
        class_path = str(logger.get("class_path", ""))
        args = logger.init_args
        if class_path.endswith("CSVLogger"):
            args.save_dir, args.name, args.version = str(log_dir), "", ""
        elif class_path.endswith("WandbLogger"):
            args.save_dir = str(run_dir)
            args.name = args.get("name") or identity.name
            args.group = args.get("group") or identity.group
            args.tags = list(dict.fromkeys([*(args.get("tags") or []), *identity.tags]))
            if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
                # Under `wandb agent` W&B uses the agent's id whatever is passed: record that one (rank 0 only: the
                # other ranks neither lock nor write the run directory).
                args.id = os.environ["WANDB_RUN_ID"]
                if launched_rank() == 0:
                    atomic_write_text(run_dir / WANDB_ID_FILE, args.id + "\n")
            else:
                args.id = args.get("id") or wandb_run_id(run_dir, resuming)
    return configured


def _with_atomic_checkpoints(plugins: Any) -> Any:
    """Every Trainer writes checkpoints atomically (nlbench.checkpoint_io) unless a CheckpointIO is configured."""
    configured = _as_list(plugins)
    if any(
        "CheckpointIO" in str(p.get("class_path", "") if isinstance(p, (dict, Namespace)) else p) for p in configured
    ):
        return plugins
    return [*configured, Namespace(class_path="nlbench.checkpoint_io.AtomicCheckpointIO", init_args=Namespace())]


# ---- programmatic access ----------------------------------------------------------------------------------------
class _ParseOnlyCLI(NLBenchCLI):
    """Parses and instantiates model and data (to validate values) without creating a Trainer or any file."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        cfg = self.config.clone()
        cfg.trainer.logger, cfg.trainer.callbacks = None, None
        try:
            # jsonargparse 4.49 renamed instantiate_classes to instantiate (the old name warns); older ones lack it.
            instantiate = getattr(self.parser, "instantiate", None) or self.parser.instantiate_classes
            self.config_init = instantiate(cfg)
            _check_trainer_args(cfg.trainer)
        except Exception as err:
            if not error_lines.is_user_error(err):
                raise
            raise ConfigError(error_lines.one_line(err, self.config.keys())) from err

    def _set_seed(self) -> None:
        pass  # private LightningCLI hook (docs/design.md): a parse-only check seeds nothing


def _check_trainer_args(trainer: Namespace) -> None:
    """Let Lightning check the Trainer options (e.g. max_epochs >= -1) by building a bare CPU Trainer (a few ms):
    the devices, precision and strategy are the sweep's or the machine's business, so they are left out."""
    check_fit_length(trainer)
    import logging

    left_out = {
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
        "precision",
        "plugins",
        "logger",
        "callbacks",
        "enable_checkpointing",
        "default_root_dir",
        "profiler",
    }
    kwargs = {k: v for k, v in trainer.as_dict().items() if k not in left_out}
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # no "GPU available: ..." lines for a check
    try:
        L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, **kwargs)
    finally:
        quiet.setLevel(level)


def check_fit_length(trainer: Namespace) -> None:
    """A fit that trains no step is refused: Lightning fails obscurely (OneCycleLR's "total_steps -1"), or, with no
    scheduler, records "finished" after 0 epochs without a checkpoint, which a sweep then counts as done forever.
    Any of ``max_epochs: 0``, ``max_steps: 0``, ``max_time`` of zero and ``limit_train_batches`` 0 (or 0.0) stops
    Lightning before its first step. (A fit that still ends without a step is recorded "failed": RunResult.)"""
    evaluate = "evaluate without training with `nlbench validate` or `nlbench test`"
    for key, what in (("limit_train_batches", "batch"), ("max_epochs", "epoch"), ("max_steps", "step")):
        value = trainer.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
            raise ConfigError(f"trainer.{key}: {value:g} trains no {what}; a fit needs at least one ({evaluate})")
    max_time = trainer.get("max_time")
    if max_time is not None and _seconds(max_time) == 0:
        raise ConfigError(
            f"trainer.max_time: {max_time} trains for no time; give a positive duration such as "
            f"00:12:00:00 (DD:HH:MM:SS) or leave it unset ({evaluate})"
        )


def _seconds(duration: Any) -> float | None:
    """Lightning's ``max_time`` (``"DD:HH:MM:SS"``, a timedelta, or a mapping of timedelta's keywords) in seconds;
    None when it is none of these (Lightning reports that itself)."""
    from datetime import timedelta

    try:
        if isinstance(duration, timedelta):
            return duration.total_seconds()
        if isinstance(duration, str):
            days, hours, minutes, seconds = (int(part) for part in duration.strip().split(":"))
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
        if isinstance(duration, (dict, Namespace)):
            items = duration.as_dict() if isinstance(duration, Namespace) else duration
            return timedelta(**{key: value for key, value in items.items() if value is not None}).total_seconds()
    except (TypeError, ValueError):
        return None
    return None


def parse_fit_args(args: list[str]) -> Namespace:
    """Parse and validate a ``nlbench fit`` command line (without "fit"); raises ConfigError with one line."""
    try:
        _check_config_files(list(args))  # and the classes they name come from the user's environment
        config = _ParseOnlyCLI(args=list(args), run=False).config
        check_config(config)  # methods by name or class path resolve now, not when the run starts
        return config
    except ConfigError:
        raise
    except (ArgumentError, ValueError, TypeError, FileNotFoundError) as err:
        raise ConfigError(_one_line(err)) from err


def load_run(
    run_dir: str | os.PathLike[str], checkpoint: str = "best"
) -> tuple[ImageClassifier, L.LightningDataModule]:
    """Rebuild a trained run's model and DataModule from its config.yaml and a checkpoint ("best", "last" or a path)."""
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no config.yaml; is {run_dir} a run directory written by `nlbench fit`?")
    ckpt = Path(checkpoint) if checkpoint not in ("best", "last") else run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint not found")
    cfg = yamlsafe.load_file(config, follow_links=False)  # a received run directory's file: its link not followed
    trusted_imports.check_file(cfg, config)  # parsing imports the classes the (perhaps received) run names
    for key in ("ckpt_path", "weights_only"):  # Trainer.fit arguments; the parse-only parser has no subcommands
        cfg.pop(key, None)
    cfg.setdefault("trainer", {})["logger"] = False
    cli = _ParseOnlyCLI(args=cfg, run=False)
    model, data = cli.config_init.model, cli.config_init.data
    state = load_checkpoint_file(ckpt)
    model.load_state_dict(state["state_dict"])
    return model.eval(), data


# ---- entry point --------------------------------------------------------------------------------------------------
def _one_line(err: BaseException, config_keys: list[str] | None = None) -> str:
    """The error as one line naming the option or file at fault (see nlbench.error_lines)."""
    return error_lines.one_line(err, config_keys or [])


def main(argv: list[str] | None = None) -> int:
    """Run a LightningCLI subcommand (fit/validate/test/predict); ``argv[0]`` is the subcommand. The ``nlbench``
    entry point (:func:`nlbench.commands.main`, which owns the command table) calls this; this module never imports
    it back."""
    from_sys_argv = argv is None  # then LightningCLI reads sys.argv itself (DDP workers re-run the same argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    state = CommandState()  # filled by NLBenchCLI (which discarded a run directory it created, if untrained)
    try:
        launch.detect()  # launcher variables as a set Lightning acts on, or one line (nlbench.launch)
        _check_config_files(argv)
        NLBenchCLI(args=None if from_sys_argv else argv, state=state)
    except Exception as err:
        if not error_lines.is_user_error(err) or os.environ.get("NLBENCH_DEBUG"):
            raise
        if state.training_started and not error_lines.is_disk_error(err):
            raise  # a failure during training: result.json says "failed", the traceback says why
        line = f"nlbench {argv[0] if argv else ''}: error: {_one_line(err, state.config_keys)}"
        print(terminal(line), file=sys.stderr)  # a received value echoed: no terminal escapes, not 99k characters
        return 2
    return 0


def launched_rank() -> int:
    """This process's global rank as its launcher set it (:func:`nlbench.launch.detect`: torchrun, srun, jsrun, MPI,
    Lightning's DDP workers, nodes started by hand): 0 for the process that locks and writes the run directory."""
    return launch.detect().global_rank


def _check_config_files(argv: list[str]) -> None:
    """Name the file when a --config (or a file it includes with ``config:``) does not exist, is not YAML, is over
    the size limit or an alias bomb (nlbench.yamlsafe): jsonargparse's messages do not name it, or it never answers."""
    import yaml

    pending: list[Path] = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            pending.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            pending.append(Path(arg.split("=", 1)[1]))
    seen: set[Path] = set()
    while pending:
        path = pending.pop(0)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        if not path.is_file():
            raise ConfigError(f"--config {path}: file does not exist")
        try:
            config = yamlsafe.load_file(path)
        except yamlsafe.YamlLimitError as err:
            raise ConfigError(f"--config {err}") from err
        except UnicodeDecodeError as err:
            raise ConfigError(f"--config {path}: not a text (YAML) file: {error_lines.one_line(err)}") from err
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError(f"--config {path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from err
        if not isinstance(config, dict):
            got = "an empty file" if config is None else f"a {type(config).__name__}"
            raise ConfigError(f"--config {path}: expected a mapping of options (trainer:, model:, data:), got {got}")
        trusted_imports.check_file(config, path, f"--config {path}")  # e.g. a received run's config.yaml
        included = config.get("config")
        for name in included if isinstance(included, list) else [included] if isinstance(included, str) else []:
            pending.append(path.parent / name)  # jsonargparse resolves includes against the including file
