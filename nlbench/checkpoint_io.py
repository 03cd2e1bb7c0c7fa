"""Crash-safe checkpoints: atomic writes, and a resume that survives an unreadable checkpoint.

A checkpoint is written to a temporary file in the same folder, flushed to disk (fsync) and renamed over the old
one, so a full disk or a kill mid-write leaves the previous checkpoint intact instead of a truncated zip that every
later resume trips over. ``resume_checkpoint`` picks what ``--ckpt_path last`` resumes from: the newest *readable*
checkpoint of the run, or none (a fresh start), saying in one line what it skipped.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as _ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nlbench import trusted_imports
from nlbench.io import atomic_writer
from nlbench.record import Unreadable, read_record


def load_checkpoint_file(path: str | os.PathLike[str], *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint without running code: ``torch.load(weights_only=True)`` (tensors, numbers, strings and
    torch's own allow-list of containers such as ``collections.Counter``). nlbench's checkpoints hold nothing else;
    a received file whose pickle names any other global (a ``__reduce__`` payload) is refused with ValueError."""
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path}: refused to load: the checkpoint holds pickled objects other than tensors and plain "
            f"values, which could run code ({first})"
        ) from err


def check_checkpoint_classes(path: str | os.PathLike[str], what: str | None = None) -> None:
    """Refuse (ValueError, one line naming the class and the file) a checkpoint whose hyper-parameters name a class
    that rebuilding the model would import from the current folder or the checkpoint's own folders rather than from
    the user's environment (:mod:`nlbench.trusted_imports`). A checkpoint that cannot be read weights-only is left
    to the loader, which says why."""
    try:
        try:
            checkpoint = load_checkpoint_file(path, mmap=True)  # the hyper-parameters only: no copy of the weights
        except RuntimeError:  # mmap needs torch's zip format
            checkpoint = load_checkpoint_file(path)
    except (ValueError, OSError, RuntimeError, EOFError, zipfile.BadZipFile):
        return
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    trusted_imports.check_file(hparams or {}, path, what)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic saves (temporary file, fsync, rename, fsync of the folder), and
    loads that never run a checkpoint's code: ``weights_only`` left unset (None) means True here, whatever torch's
    default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say; only an explicit ``--weights_only false`` on the command
    line (see ``nlbench.lightning_cli``) reaches this method as False."""

    def load_checkpoint(
        self, path: str | os.PathLike[str], map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if weights_only is False:
            return super().load_checkpoint(path, map_location=map_location, weights_only=False)
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{path}: refused to load: the checkpoint holds pickled objects other than tensors and "
                "plain values, which could run code; if you trust it, pass --weights_only false on "
                "the command line"
            ) from err

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        # Serialised in memory first (as Lightning's own writer does): a full disk then fails the plain file write
        # with OSError ENOSPC, not torch's zip writer with an opaque "unexpected pos" RuntimeError.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_writer(path, "wb") as f:
            f.write(buffer.getbuffer())


class ModelCheckpoint(_ModelCheckpoint):
    """Lightning's ModelCheckpoint whose ``save_last`` writes last.ckpt at *every* epoch end, not only when a
    monitored checkpoint is saved (Lightning 2.6 skips it then, so a run that stopped improving kept an old
    last.ckpt: a kill -9 lost every epoch since the last improvement, and "last" evaluated old weights).

    Saved through the Trainer's CheckpointIO, so atomically. Uses three private helpers of Lightning 2.6
    (``_should_skip_saving_checkpoint``, ``_should_save_on_train_epoch_end``, ``_save_last_checkpoint``): the only
    way to reuse its last-checkpoint naming and bookkeeping; tests/test_last_checkpoint.py breaks if they change.
    The CLI uses this class wherever a config names Lightning's."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: L.Trainer) -> None:
        # Skipped when the parent just saved at this step (it then wrote last.ckpt too), in sanity checks and
        # outside fitting.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def readable(path: Path) -> str | None:
    """None if ``path`` is an intact checkpoint (a zip whose every member passes its CRC), else why not."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        return None if bad is None else f"member {bad} is corrupt"
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        return str(err) or type(err).__name__


def resume_checkpoint(ckpt_path: str | None, checkpoints: Path) -> str | None:
    """The checkpoint a fit should resume from.

    ``"last"``: ``checkpoints/last.ckpt`` if readable, else the newest other readable checkpoint there, else None (a
    fresh start); each skipped file is reported in one line on stderr. An explicit path must be readable (ValueError
    otherwise): the user chose it, so nothing else is substituted.
    """
    if not ckpt_path:
        return None
    if ckpt_path != "last":
        problem = readable(Path(ckpt_path)) if Path(ckpt_path).is_file() else None
        if problem:
            raise ValueError(f"--ckpt_path {ckpt_path}: unreadable checkpoint ({problem})")
        return ckpt_path  # Lightning reports a missing file and resolves "best"/"hpc"/... itself
    candidates = sorted(checkpoints.glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", -p.stat().st_mtime))
    for candidate in candidates:
        problem = readable(candidate)
        if problem is None:
            return str(candidate)
        # Moved aside (not deleted: it is evidence), so ModelCheckpoint writes last.ckpt again instead of last-v1.
        aside = candidate.with_name(candidate.name + ".unreadable")
        candidate.replace(aside)
        print(
            f"nlbench fit: warning: unreadable checkpoint {candidate} ({problem}), moved to {aside.name}; "
            "trying the previous one",
            file=sys.stderr,
        )
    if candidates:
        print(f"nlbench fit: warning: no readable checkpoint in {checkpoints}; starting fresh", file=sys.stderr)
    return None


def check_resumable(run_dir: Path, ckpt_path: str | None) -> None:
    """Refuse (ValueError, one line) to resume a finished run whose schedule was sized to its length (OneCycleLR's
    ``total_steps``): it cannot go on, and a crash would overwrite its finished result."""
    if not ckpt_path:
        return
    try:  # bounded, never through a link or blocking on a FIFO
        record = read_record(run_dir)
    except Unreadable:  # not a finished record of nlbench: nothing to protect
        return
    if record is None or record.status != "finished":
        return
    state = load_checkpoint_file(ckpt_path, mmap=True)
    if any("total_steps" in scheduler for scheduler in state.get("lr_schedulers", [])):
        raise ValueError(
            f"--ckpt_path {ckpt_path}: {run_dir} already finished its run-length schedule (result.json says "
            "finished); train longer in a new --run_dir instead of resuming it"
        )
