"""A received checkpoint never runs code (issue 20, item 8): every load is ``weights_only=True``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from tinyfit import TINY

from nlbench import analysis
from nlbench.lightning_cli import load_run, main


class Payload:
    """What an attacker pickles: unpickling calls os.system, which leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("safety") / "run"
    with pytest.MonkeyPatch.context() as mp:  # module scope: no monkeypatch fixture, and nothing left behind
        mp.setenv("WANDB_MODE", "disabled")
        assert main(["fit", *TINY, f"--run_dir={run_dir}"]) == 0
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"
    return run_dir


@pytest.fixture
def poisoned_run(finished_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a finished run whose last.ckpt (and best.ckpt) carry a __reduce__ payload next to real weights."""
    run_dir = tmp_path / "received"
    shutil.copytree(finished_run, run_dir)
    marker = tmp_path / "PWNED"
    for name in ("last.ckpt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        state = torch.load(path, weights_only=True)
        state["payload"] = Payload(marker)
        torch.save(state, path)
    return run_dir, marker


def test_load_run_does_not_run_the_payload(poisoned_run: tuple[Path, Path]) -> None:
    run_dir, marker = poisoned_run
    with pytest.raises(ValueError, match="last.ckpt: refused to load"):
        load_run(run_dir, "last")
    assert not marker.exists()


def test_analyze_does_not_run_the_payload(poisoned_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, marker = poisoned_run
    assert analysis.main(["--run_dir", str(run_dir)]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists()


def test_resuming_does_not_run_the_payload(poisoned_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, marker = poisoned_run
    assert main(["fit", *TINY, f"--run_dir={run_dir}", "--ckpt_path=last"]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists()


def test_test_command_does_not_run_the_payload(
    poisoned_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, marker = poisoned_run
    code = main(["test", *TINY, f"--run_dir={run_dir}", f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    assert code == 2 and "refused to load" in capsys.readouterr().err
    assert not marker.exists()


# The received checkpoint was saved in another run directory: Lightning's note about it is true and expected here.
@pytest.mark.filterwarnings("ignore:The dirpath has changed from")
def test_weights_only_false_from_a_config_file_is_refused(
    poisoned_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, marker = poisoned_run
    record = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").write_text(json.dumps({**record, "status": "interrupted"}))  # resumable
    received = tmp_path / "received.yaml"
    received.write_text("weights_only: false\n")
    args = ["fit", *TINY, f"--config={received}", f"--run_dir={run_dir}", "--ckpt_path=last"]
    assert main(args) == 2
    assert "weights_only: false from a config file is refused" in capsys.readouterr().err
    assert not marker.exists()
    # Typed on the command line, it is the user's own decision (and the payload runs: that is what it means).
    assert main([*args, "--weights_only=false"]) in (0, 2)
    assert marker.exists()


def test_nlbench_checkpoints_load_weights_only(finished_run: Path) -> None:
    model, _ = load_run(finished_run, "last")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_load_from_checkpoint_keeps_the_whole_config_in_hparams(finished_run: Path) -> None:
    from nlbench.classifier import ImageClassifier

    model = ImageClassifier.load_from_checkpoint(finished_run / "checkpoints" / "last.ckpt", map_location="cpu")
    saved = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert {"backbone", "optimizer", "scheduler"} <= set(model.hparams)
    assert model.hparams["backbone"] == saved["backbone"] and model.hparams["optimizer"] == saved["optimizer"]
    assert model.hparams["backbone"]["class_path"] == "nlbench.models.PreActResNet"
