"""One fit per run directory, and a failed fit removes only its own folders (issue 20, items 10 and 11)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
from tinyfit import TINY

from nlbench.lightning_cli import main
from nlbench.runlock import RunLock, owner

pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


class OwnsRunDir(L.Callback):
    """Records who holds the run directory's lock while the fit trains."""

    seen: list[int | None] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        who = owner(trainer.default_root_dir)
        OwnsRunDir.seen.append(who.pid if who else None)


class StartsARunThenInterrupts(L.Callback):
    """Replays the race of item 11: while this fit (F/B) is in its sanity check, another fit starts in F/A (and
    holds its lock there); then Ctrl-C arrives."""

    other: RunLock | None = None

    def __init__(self, other_run_dir: str) -> None:
        self.other_run_dir = other_run_dir

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        StartsARunThenInterrupts.other = RunLock(self.other_run_dir, command="nlbench fit").acquire()
        (Path(self.other_run_dir) / "config.yaml").write_text("# the other run's\n")
        raise KeyboardInterrupt


def test_the_fit_holds_its_run_directory_lock(tmp_path: Path) -> None:
    OwnsRunDir.seen.clear()
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, f"--run_dir={run_dir}", "--trainer.callbacks+=test_run_dir_lock.OwnsRunDir"]) == 0
    assert OwnsRunDir.seen == [os.getpid()]
    assert owner(run_dir) is None  # released at the end


def test_a_second_fit_on_a_run_directory_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    with RunLock(run_dir, command="nlbench fit"):  # the first fit, still training
        capsys.readouterr()
        assert main(["fit", *TINY, f"--run_dir={run_dir}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"nlbench fit: error: --run_dir {run_dir}: in use by nlbench fit (pid {os.getpid()}")
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # the second wrote nothing


def test_two_default_named_fits_take_different_directories(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with RunLock(root / "taken", command="nlbench fit"):
        args = ["fit", *TINY, f"--trainer.default_root_dir={root}", "--trainer.callbacks+=test_run_dir_lock.OwnsRunDir"]
        assert main(args) == 0
    names = sorted(p.name for p in root.iterdir())
    assert "taken" in names and len(names) == 2  # the fit chose its own name; the locked directory is untouched


def test_a_failed_fit_keeps_a_folder_another_fit_started_in(tmp_path: Path) -> None:
    parent = tmp_path / "F"
    other = parent / "A"
    args = [
        "fit",
        *TINY,
        f"--run_dir={parent / 'B'}",
        "--trainer.callbacks+=test_run_dir_lock.StartsARunThenInterrupts",
        f"--trainer.callbacks.init_args.other_run_dir={other}",
    ]
    try:
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            main(args)
        assert not (parent / "B").exists()  # the failed fit's own directory is gone
        assert (other / "config.yaml").is_file() and owner(other) is not None  # the other run lives on
    finally:
        if StartsARunThenInterrupts.other is not None:
            StartsARunThenInterrupts.other.release()


def test_a_failed_fit_removes_the_folders_it_created(tmp_path: Path) -> None:
    run_dir = tmp_path / "F" / "B"
    assert main(["fit", *TINY, f"--run_dir={run_dir}", "--model.backbone.init_args.depth=21"]) == 2
    assert not (tmp_path / "F").exists()


def test_a_waiter_whose_lock_file_was_removed_locks_the_new_one(tmp_path: Path) -> None:
    import threading

    run_dir = tmp_path / "run"
    first = RunLock(run_dir).acquire()
    second = RunLock(run_dir)
    waiter = threading.Thread(target=second.acquire, kwargs={"timeout_s": 5.0})
    waiter.start()
    import time

    time.sleep(0.2)  # the second is waiting on the first's lock file
    (run_dir / ".lock").unlink()  # the first cleans up its failed run, lock file and all
    run_dir.rmdir()
    first.release()
    waiter.join()
    try:
        assert second.held and (run_dir / ".lock").is_file()
        assert owner(run_dir) is not None  # a third process sees the second as the owner
    finally:
        second.release()


# Each launcher's complete set of variables, as Lightning detects it (nlbench.launch; tests/test_launch.py refuses
# the incomplete ones).
@pytest.mark.parametrize(
    "launcher",
    [
        {
            "TORCHELASTIC_RUN_ID": "job",
            "RANK": "1",
            "LOCAL_RANK": "1",
            "GROUP_RANK": "0",
            "LOCAL_WORLD_SIZE": "2",
            "WORLD_SIZE": "2",
        },
        {"SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0", "SLURM_NTASKS": "2"},
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "NODE_RANK": "1"},
    ],
)
def test_a_worker_rank_of_an_outside_launcher_neither_locks_nor_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: dict[str, str]
) -> None:
    """torchrun/srun/another node start every rank with the same command: rank 0 locks (and may version) the run
    directory; a rank > 0 that tried too would wait and fail "in use", or train into a stray `<name>-v2`."""
    from jsonargparse import Namespace

    from nlbench import rundir
    from nlbench.launch import RANK_VARS
    from nlbench.record import RunIdentity

    for name in (
        *RANK_VARS,
        "TORCHELASTIC_RUN_ID",
        "SLURM_NTASKS",
        "SLURM_JOB_NAME",
        "MASTER_ADDR",
        "MASTER_PORT",
        "NLBENCH_DDP_RUN_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    claim = rundir.RunDirClaim()  # only the run-dir choice is exercised: no parser, no Trainer
    identity = RunIdentity(name="scale-r2-h1-normal-s0", group="g", tags=[])
    given, default = tmp_path / "given", tmp_path / "runs" / identity.name
    trainer = Namespace(default_root_dir=str(tmp_path / "runs"))
    with RunLock(given, command="nlbench fit (rank 0)"), RunLock(default, command="nlbench fit (rank 0)"):
        (default / "config.yaml").write_text("rank 0 wrote this\n")
        assert (
            rundir.resolve(Namespace(run_dir=str(given), ckpt_path=None, trainer=trainer), identity, "fit", claim)
            == given.resolve()
        )
        assert (
            rundir.resolve(Namespace(run_dir=None, ckpt_path=None, trainer=trainer), identity, "fit", claim)
            == default.resolve()
        )
    assert claim.lock is None and not (tmp_path / "runs" / f"{identity.name}-v2").exists()
    from nlbench.loggers import WANDB_ID_FILE, wandb_run_id

    assert wandb_run_id(given, resuming=False) == "" and not (given / WANDB_ID_FILE).exists()  # writes nothing
