"""The ``nlbench`` command: LightningCLI subcommands (fit/validate/test/predict) plus sweep, report, analyze, bench.

Every ``fit`` owns one run directory (see docs/design.md): resolved config, CSV metrics, checkpoints, W&B files and
``result.json``. Bad input ends with one line on stderr and exit code 2, leaving no run directory behind.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning as L
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_warn

from nlbench.callbacks import RunResult
from nlbench.classifier import ImageClassifier
from nlbench.device_share import DeviceShare
from nlbench.loggers import RunIdentity, WandbLogger, describe_run

RUN_DIR_ENV = "NLBENCH_RUN_DIR"  # hands the resolved run directory to DDP worker processes
_created_run_dir: Path | None = None  # set when this process chose a run directory that did not exist yet
_run_result: RunResult | None = None  # the fit's result callback: tells set-up failures from training failures

# Subcommands implemented outside LightningCLI: name -> (module with main(argv), one-line help).
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("nlbench.sweep.cli", "run a grid of fit runs (resumable), or export it as a W&B sweep"),
    "report": ("nlbench.report.cli", "write report.md/report.html/PNGs for a sweep directory"),
    "analyze": ("nlbench.analysis", "the paper's key magnitude/direction analysis of a trained run"),
    "bench": ("nlbench.bench", "benchmarks: block, loader, train, device-check"),
}
LIGHTNING_COMMANDS = {
    "fit": "train a model (one run directory per run)",
    "validate": "evaluate on the validation split",
    "test": "evaluate on the test split",
    "predict": "class probabilities for the predict split",
}


class ConfigError(ValueError):
    """A bad command line or config: reported as one line, exit code 2."""


class ConfigSaver(SaveConfigCallback):
    """Writes config.yaml into the run directory and uploads the resolved config to W&B once."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # trainer.log_dir is a collective (broadcast) under DDP: read it here, where every rank runs.
        self._log_dir = Path(trainer.log_dir or ".")
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        identity = describe_run(self.config.as_dict())
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.mode != "disabled":
                try:
                    run = logger.experiment
                    run.config.update({**identity.hparams, "config": self.config.as_dict()}, allow_val_change=True)
                    path = self._log_dir / self.config_filename
                    run.save(str(path), base_path=str(path.parent), policy="now")
                except Exception as err:  # noqa: BLE001 - W&B must never fail a run
                    rank_zero_warn(f"could not upload the config to W&B ({err}); it is in {self._log_dir}")


class NLBenchCLI(LightningCLI):
    """LightningCLI with nlbench's run directories, run naming and data -> model links."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        super().__init__(
            ImageClassifier,
            L.LightningDataModule,
            subclass_mode_data=True,
            save_config_callback=ConfigSaver,
            save_config_kwargs={"overwrite": True, "multifile": False},
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False, "env_prefix": "NLBENCH", "default_env": False},
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Run directory (config, metrics, checkpoints, result.json). Default: "
            "<trainer.default_root_dir>/<run name>, with a -vN suffix when taken.",
        )
        parser.link_arguments("data.num_classes", "model.backbone.init_args.num_classes", apply_on="instantiate")

    # ---- run directory and loggers -------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        identity = describe_run(cfg.as_dict())
        run_dir = self._resolve_run_dir(cfg, identity)
        self.run_dir, self.identity = run_dir, identity
        log_dir = run_dir if self.subcommand in (None, "fit") else run_dir / self.subcommand
        cfg.trainer.default_root_dir = str(run_dir)
        cfg.trainer.logger = _configure_loggers(cfg.trainer.logger, log_dir, run_dir, identity)
        for callback in _as_list(cfg.trainer.callbacks):
            if str(callback.get("class_path", "")).endswith("ModelCheckpoint") and not callback.init_args.dirpath:
                callback.init_args.dirpath = str(run_dir / "checkpoints")
        if self.subcommand == "fit":
            global _run_result
            _run_result = RunResult(str(run_dir / "result.json"), identity.hparams, identity.name, identity.group)
            # DeviceShare: the memory cap of a run sharing its GPU with others (`runs_per_device` in a sweep).
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [_run_result, DeviceShare()]}

    def _resolve_run_dir(self, cfg: Namespace, identity: RunIdentity) -> Path:
        if os.environ.get(RUN_DIR_ENV) and os.environ.get("LOCAL_RANK") not in (None, "0"):
            return Path(os.environ[RUN_DIR_ENV])  # a DDP worker: the launcher already chose
        resuming = bool(cfg.get("ckpt_path"))
        if cfg.run_dir:
            run_dir = Path(cfg.run_dir)
            if self.subcommand == "fit" and not resuming and _checkpoints_in(run_dir):
                raise ConfigError(
                    f"--run_dir {run_dir} already holds checkpoints; pass --ckpt_path last to resume it "
                    "or choose another --run_dir"
                )
        else:
            root = Path(cfg.trainer.default_root_dir or "runs")
            run_dir = root / identity.name
            if self.subcommand == "fit" and not resuming:
                version = 1
                while run_dir.exists() and any(run_dir.iterdir()):
                    version += 1
                    run_dir = root / f"{identity.name}-v{version}"
        run_dir = run_dir.resolve()
        os.environ[RUN_DIR_ENV] = str(run_dir)
        if self.subcommand == "fit" and not run_dir.exists():
            global _created_run_dir
            _created_run_dir = run_dir
        return run_dir


def _as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def _checkpoints_in(run_dir: Path) -> bool:
    return any(run_dir.glob("checkpoints/*.ckpt"))


def _configure_loggers(loggers: Any, log_dir: Path, run_dir: Path, identity: RunIdentity) -> Any:
    """Point the configured loggers at the run directory and give W&B the run's name, group, tags and id.

    A CSV logger is always there (metrics.csv feeds the sweep table and the offline report), even with
    ``trainer.logger: false``, which then only switches the other loggers off."""
    configured = _as_list(loggers)
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
            args.id = args.get("id") or hashlib.sha1(str(run_dir).encode()).hexdigest()[:16]
    return configured


# ---- programmatic access ----------------------------------------------------------------------------------------
class _ParseOnlyCLI(NLBenchCLI):
    """Parses and instantiates model and data (to validate values) without creating a Trainer or any file."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        cfg = self.config.clone()
        cfg.trainer.logger, cfg.trainer.callbacks = None, None
        self.config_init = self.parser.instantiate_classes(cfg)

    def _set_seed(self) -> None:
        pass


def parse_fit_args(args: list[str]) -> Namespace:
    """Parse and validate a ``nlbench fit`` command line (without "fit"); raises ConfigError with one line."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            return _ParseOnlyCLI(args=list(args), run=False).config
    except ConfigError:
        raise
    except (ArgumentError, ValueError, TypeError, FileNotFoundError) as err:
        raise ConfigError(_one_line(err)) from err


def load_run(
    run_dir: str | os.PathLike[str], checkpoint: str = "best"
) -> tuple[ImageClassifier, L.LightningDataModule]:
    """Rebuild a trained run's model and DataModule from its config.yaml and a checkpoint ("best", "last" or a path)."""
    import torch

    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no config.yaml; is {run_dir} a run directory written by `nlbench fit`?")
    ckpt = Path(checkpoint) if checkpoint not in ("best", "last") else run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint not found")
    import yaml

    cfg = yaml.safe_load(config.read_text())
    for key in ("ckpt_path", "weights_only"):  # Trainer.fit arguments; the parse-only parser has no subcommands
        cfg.pop(key, None)
    cfg.setdefault("trainer", {})["logger"] = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = _ParseOnlyCLI(args=cfg, run=False)
    model, data = cli.config_init.model, cli.config_init.data
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    return model.eval(), data


# ---- entry point --------------------------------------------------------------------------------------------------
_KEY = re.compile(r'^(?:- )?Parser key "([^"]+)":?$')
_NOISE = ("Problem with given class_path", "Does not validate against", "Subtypes:", "Errors:", "Given value",
          "- Expected a <class 'NoneType'>")


def _one_line(err: BaseException) -> str:
    """Condense jsonargparse's nested multi-line errors to "<full.dotted.key>: <what is wrong>"."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    keys: list[str] = []
    for line in lines:
        match = _KEY.match(line)
        if match:
            keys.append(match.group(1))
        elif not line.lstrip("- ").startswith(_NOISE) and not line.startswith(_NOISE):
            detail = line.lstrip("- ").replace("Expected a typing.Literal[", "expected one of [")
            return f"{'.'.join(keys)}: {detail}" if keys else detail
    return ".".join(keys) or type(err).__name__


def _print_overview() -> None:
    print("usage: nlbench <command> [options]   (nlbench <command> --help for a command's options)\n")
    print("Training (LightningCLI; --config experiments/<name>.yaml, dotted overrides, --print_config):")
    for name, text in LIGHTNING_COMMANDS.items():
        print(f"  {name:<10} {text}")
    print("\nStudy:")
    for name, (_, text) in EXTRA_COMMANDS.items():
        print(f"  {name:<10} {text}")


def main(argv: list[str] | None = None) -> int:
    from_sys_argv = argv is None  # then LightningCLI reads sys.argv itself (DDP workers re-run the same argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _print_overview()
        return 0
    if argv[0] in EXTRA_COMMANDS:
        entry: Callable[[list[str]], int] = importlib.import_module(EXTRA_COMMANDS[argv[0]][0]).main
        return entry(argv[1:])
    if argv[0] not in LIGHTNING_COMMANDS:
        choices = ", ".join([*LIGHTNING_COMMANDS, *EXTRA_COMMANDS])
        print(f"nlbench: error: unknown command {argv[0]!r}; choose from {choices}", file=sys.stderr)
        return 2
    global _created_run_dir, _run_result
    _created_run_dir = _run_result = None
    try:
        _check_config_files(argv)
        with warnings.catch_warnings():
            # Explicit argv (tests, `nlbench sweep` in-process) differs from sys.argv on purpose.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            NLBenchCLI(args=None if from_sys_argv else argv)
    except (ArgumentError, ConfigError, ValueError, FileNotFoundError) as err:
        if _training_started() or os.environ.get("NLBENCH_DEBUG"):
            raise  # a failure during training: result.json says "failed", the traceback says why
        _discard_new_run_dir()
        print(f"nlbench {argv[0]}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except BaseException:
        if not _training_started():
            _discard_new_run_dir()
        raise
    return 0


def _training_started() -> bool:
    return _run_result is not None and _run_result.training_started


def _check_config_files(argv: list[str]) -> None:
    """Name the file when a --config does not exist or is not YAML (jsonargparse's message does not)."""
    import yaml

    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = Path(argv[i + 1])
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
        else:
            continue
        if not path.is_file():
            raise ConfigError(f"--config {path}: file does not exist")
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError(f"--config {path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from err


def _discard_new_run_dir() -> None:
    """Remove the run directory this invocation created for a run that failed before training (bad input, missing
    data), unless it holds a checkpoint (never lose one)."""
    run_dir = _created_run_dir
    if run_dir is None or not run_dir.exists() or _checkpoints_in(run_dir):
        return
    if os.environ.get("LOCAL_RANK") not in (None, "0"):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
