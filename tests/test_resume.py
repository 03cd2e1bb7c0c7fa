"""Exact resume, crash-safe checkpoints and the status of interrupted runs (issue 10, items 1, 2, 6 and 7)."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from tinyfit import FAST_DEMO, with_options

from nlbench.checkpoint_io import AtomicCheckpointIO
from nlbench.classifier import ImageClassifier
from nlbench.io import _umask
from nlbench.lightning_cli import main
from nlbench.record import read_record
from nlbench.schema import BEST_ACC1, BEST_EPOCH, FINAL_ACC1

# Three tiny epochs (2 training batches of 16 images each), a step-wise OneCycleLR and metrics every step.
TINY = [*with_options(FAST_DEMO, "--trainer.max_epochs=3"), "--trainer.log_every_n_steps=1"]


class Crash(RuntimeError):
    pass


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


def _crash_at(monkeypatch: pytest.MonkeyPatch, step: int, action=None) -> None:
    """Make training die when it reaches ``step`` (after that step's batch was drawn and augmented)."""
    original = ImageClassifier.training_step

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == step:
            if action is None:
                raise Crash(f"simulated crash at step {step}")
            action()
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ImageClassifier, "training_step", training_step)


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if "images_per_s" not in k} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An uninterrupted run, and the same run killed in epoch 1 (after logging a step of it) and resumed."""
    root = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        assert main(["fit", *TINY, f"--run_dir={root / 'straight'}"]) == 0
        _crash_at(mp, step=3)
        with pytest.raises(Crash):
            main(["fit", *TINY, f"--run_dir={root / 'resumed'}"])
    assert json.loads((root / "resumed" / "result.json").read_text())["status"] == "failed"
    assert main(["fit", *TINY, f"--run_dir={root / 'resumed'}", "--ckpt_path=last"]) == 0
    return {"straight": root / "straight", "resumed": root / "resumed"}


def test_interrupted_and_resumed_equals_uninterrupted(runs: dict[str, Path]) -> None:
    last = {k: torch.load(d / "checkpoints" / "last.ckpt", weights_only=False) for k, d in runs.items()}
    weights = {k: v["state_dict"] for k, v in last.items()}
    different = [
        name for name in weights["straight"] if not torch.equal(weights["straight"][name], weights["resumed"][name])
    ]
    assert not different, f"{len(different)} of {len(weights['straight'])} tensors differ, e.g. {different[:3]}"
    results = {k: read_record(d).flat() for k, d in runs.items()}
    for key in (FINAL_ACC1, BEST_ACC1, BEST_EPOCH, "epochs", "global_step", "status"):
        assert results["straight"][key] == results["resumed"][key], key


def test_resumed_metrics_csv_drops_the_killed_attempts_rows(runs: dict[str, Path]) -> None:
    straight, resumed = _metrics(runs["straight"]), _metrics(runs["resumed"])
    steps = [row["step"] for row in resumed if row.get("train/loss")]
    assert len(steps) == len(set(steps)), f"duplicate training steps {steps}"
    assert resumed == straight


def test_resume_skips_an_unreadable_last_checkpoint(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    # A run stopped in epoch 1: its last.ckpt then gets truncated (as an ENOSPC used to leave it).
    with pytest.MonkeyPatch.context() as mp:
        _crash_at(mp, step=2)
        with pytest.raises(Crash):
            main(["fit", *TINY, f"--run_dir={run_dir}"])
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["fit", *TINY, f"--run_dir={run_dir}", "--ckpt_path=last"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "unreadable checkpoint" in line and "last.ckpt" in line]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"
    # It went on from best.ckpt (epoch 0), so it ends where the uninterrupted run ends.
    resumed = torch.load(last, weights_only=False)["state_dict"]
    straight = torch.load(runs["straight"] / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_nothing_readable_starts_fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    args = [*TINY, "--trainer.max_epochs=1", f"--run_dir={run_dir}", "--ckpt_path=last"]
    assert main(["fit", *args]) == 0
    assert "starting fresh" in capsys.readouterr().err
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 0}, path)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 1}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True) == {"epoch": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs: room for one checkpoint of the demo model (2.3 MB) but not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("optional: needs root (to mount a 3 MB tmpfs) for the full-disk checkpoint test")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_loadable_checkpoints_and_a_result(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = small_disk / "run"
    assert main(["fit", *TINY, f"--run_dir={run_dir}"]) == 2  # a full disk is the user's to fix: one line, exit 2
    assert "no space left on device" in capsys.readouterr().err.strip().splitlines()[-1]
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    assert checkpoints and all(p.suffix == ".ckpt" for p in checkpoints), checkpoints  # no temporary files
    for path in checkpoints:
        assert torch.load(path, weights_only=False)["epoch"] == 0
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "No space left" in result["error"]
    # With room again, `--ckpt_path last` goes on from the checkpoint that was written.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    assert main(["fit", *TINY, f"--run_dir={run_dir}", "--ckpt_path=last"]) == 0
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"


def test_sigterm_records_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    _crash_at(monkeypatch, step=1, action=lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException
        main(["fit", *TINY, f"--run_dir={run_dir}"])
    assert json.loads((run_dir / "result.json").read_text())["status"] == "interrupted"


def test_resuming_a_finished_one_cycle_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, "--trainer.max_epochs=1", f"--run_dir={run_dir}"]) == 0
    before = (run_dir / "result.json").read_text()
    capsys.readouterr()
    assert main(["fit", *TINY, "--trainer.max_epochs=2", f"--run_dir={run_dir}", "--ckpt_path=last"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "finished" in err and "--run_dir" in err, err
    assert (run_dir / "result.json").read_text() == before
