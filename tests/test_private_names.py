"""Every private name of Lightning and other libraries that nlbench overrides or reads still exists, with the
signature nlbench relies on (docs/design.md, "Private Lightning and library names we use"). A library upgrade that
renames one fails here, by name, before the behaviour tests listed in that table fail less plainly."""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (module, object path, attribute or None, parameters the override or call relies on)
PRIVATE = [
    ("lightning.pytorch.cli", "LightningCLI", "_parse_ckpt_path", ["self"]),
    ("lightning.pytorch.cli", "LightningCLI", "_set_seed", ["self"]),
    ("lightning.pytorch.callbacks", "ModelCheckpoint", "_should_skip_saving_checkpoint", ["self", "trainer"]),
    ("lightning.pytorch.callbacks", "ModelCheckpoint", "_should_save_on_train_epoch_end", ["self", "trainer"]),
    (
        "lightning.pytorch.callbacks",
        "ModelCheckpoint",
        "_save_last_checkpoint",
        ["self", "trainer", "monitor_candidates"],
    ),
    ("lightning.pytorch.callbacks", "ModelCheckpoint", "_monitor_candidates", ["self", "trainer"]),
    ("lightning.pytorch.loggers.csv_logs", "ExperimentWriter", "_check_log_dir_exists", ["self"]),
    ("submitit.slurm.slurm", "_make_sbatch_string", None, ["command", "folder"]),  # and map_count, by keyword
    ("torch._dynamo.utils", "counters", None, None),
    ("jsonargparse._deprecated", "JsonargparseDeprecationWarning", None, None),
]


@pytest.mark.parametrize(("module", "name", "attribute", "params"), PRIVATE, ids=lambda v: str(v))
def test_private_names_we_use_exist(module: str, name: str, attribute: str | None, params: list[str] | None) -> None:
    if module.startswith("submitit"):
        pytest.importorskip("submitit")
    obj = getattr(importlib.import_module(module), name)
    if attribute is not None:
        assert hasattr(obj, attribute), f"{module}.{name}.{attribute} is gone: see docs/design.md"
        obj = getattr(obj, attribute)
    if params is not None:
        assert list(inspect.signature(obj).parameters)[: len(params)] == params
    if name == "_make_sbatch_string":
        assert "map_count" in inspect.signature(obj).parameters


def test_private_instance_attributes_we_use_exist(tmp_path: Path) -> None:
    """Attributes Lightning sets in __init__ (not on the class): the W&B logger's init arguments, id, run and
    save_dir, the CSV logger's run and filesystem, a LightningModule's trainer."""
    from nlbench.loggers import CSVLogger, WandbLogger

    wandb = WandbLogger(project="p", save_dir=str(tmp_path), mode="disabled")
    assert {"_wandb_init", "_id", "_experiment", "_save_dir"} <= set(vars(wandb))
    assert isinstance(wandb._wandb_init, dict) and "mode" in wandb._wandb_init
    csv = CSVLogger(save_dir=str(tmp_path))
    assert {"_experiment", "_fs"} <= set(vars(csv))


def test_argparse_and_jsonargparse_internals_we_use_exist() -> None:
    """argparse has no public list of a parser's actions; jsonargparse keeps an option's type hint privately."""
    from lightning.pytorch.cli import LightningArgumentParser
    from lightning.pytorch.trainer import Trainer

    assert isinstance(argparse.ArgumentParser()._actions, list)
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(Trainer, "trainer")
    action = next(a for a in parser._actions if a.dest == "trainer.limit_train_batches")
    assert hasattr(action, "_typehint")


def test_the_lightning_range_we_test_is_declared() -> None:
    """pyproject's range covers the Lightning the tests run on (constraints.txt, tools/gpu-image.txt), and no
    minor version the private names above were not checked against."""
    import lightning

    assert re.findall(r'^\s*"(lightning[^"]*)"', (REPO / "pyproject.toml").read_text(), re.M) == [
        "lightning>=2.6.6,<2.7"
    ]
    major, minor = (int(part) for part in lightning.__version__.split(".")[:2])
    assert (major, minor) == (2, 6)
    for pinned in ("constraints.txt", "tools/gpu-image.txt"):
        assert "lightning==2.6.6" in (REPO / pinned).read_text().split()
