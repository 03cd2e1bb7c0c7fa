"""Issue 26 items 3 and 4: reading results never imports code, and loading a checkpoint or a run imports its class
paths only from the user's environment.

A module ``evil.py`` sits in the current folder, which is first on the import path (as under ``python -c``, a script
or a notebook started there): importing it leaves a marker file. Received runs, records and checkpoints name its
classes; no reader, report, sweep or loader may import it.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from tinyfit import FAST, TINY

from nlbench import results, schema, trusted_imports
from nlbench.lightning_cli import load_run, main
from nlbench.record import RunRecord, write_record
from nlbench.report_command import main as report_main
from nlbench.sweep.spec import load_spec
from nlbench.sweep_command import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
EVIL = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("evil.py ran")
import torch


class Net(torch.nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, num_classes)


class Attn(torch.nn.Module):
    label = "imported label"

    def forward(self, q, k, v):
        return v


class Block(torch.nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()


class DataModule:
    name = "imported-dataset"
"""
# What the fit recorded of the method (RunRecord.method): the report shows this label without importing evil.
RECORDED = {
    "name": "cosine",
    "label": "cosine / temperature",
    "color": "tab:pink",
    "has_map": True,
    "value": "evil.Attn",
}


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder, holding evil.py and first on the import path; returns the marker evil.py would write."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "evil.py").write_text(textwrap.dedent(EVIL))
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delitem(sys.modules, "evil", raising=False)
    yield cwd / "IMPORTED"
    sys.modules.pop("evil", None)


def write_run(run_dir: Path, status: str = "finished", method: dict | None = None, **hparams: object) -> None:
    record = RunRecord(
        status=status,
        run_name=run_dir.name,
        group="g",
        hparams={"dataset": "cifar10", "backbone": "PreActResNet", "seed": 0, **hparams},
        metrics={schema.BEST_ACC1: 0.5, schema.FINAL_ACC1: 0.5, "epochs": 1},
        config={"data.class_path": "evil.DataModule"},
        method=method or {},
    )
    write_record(run_dir, record)


def received_sweep(root: Path) -> Path:
    """Runs naming evil's classes as their normalization, block and DataModule: with and without a record."""
    runs = root / "runs"
    write_run(runs / "softmax", normalization="softmax", reduction=2)
    write_run(runs / "attn", method=RECORDED, normalization="evil.Attn", reduction=2)
    write_run(runs / "block", block="evil.Block", normalization="softmax")
    (runs / "killed").mkdir(parents=True)  # killed before its first record: its identity comes from config.yaml
    (runs / "killed" / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "seed_everything": 1,
                "data": {"class_path": "evil.DataModule"},
                "model": {
                    "backbone": {
                        "class_path": "nlbench.models.PreActResNet",
                        "init_args": {
                            "depth": 20,
                            "nl_stages": [2],
                            "nl_blocks": 1,
                            "block": "evil.Block",
                            "nl": {"normalization": "evil.Attn"},
                        },
                    }
                },
            }
        )
    )
    return root


def test_reading_and_reporting_results_imports_no_class(evil: Path, tmp_path: Path) -> None:
    sweep = received_sweep(tmp_path / "received")
    df = results.load(sweep)
    assert not evil.exists()
    by_id = df.set_index("run_id")
    assert by_id.loc["attn", "method_label"] == "cosine / temperature"  # the record's word, not the import's
    assert by_id.loc["block", "normalization"] == "evil.Block" and by_id.loc["block", "method_label"] == "Block"
    assert by_id.loc["softmax", "method_color"] == "tab:orange"  # built-ins from the registry, torch-free
    assert by_id.loc["killed", "dataset"] == "data"  # named from the class path's text, not the class's `name`
    assert report_main([str(sweep), "--out", str(tmp_path / "report")]) == 0
    assert not evil.exists()
    assert "cosine / temperature" in (tmp_path / "report" / "report.md").read_text()


def test_a_sweep_over_received_runs_imports_no_class(
    evil: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {"name": "s", "base": str(DEMO), "output_dir": str(tmp_path / "s"), "axes": {"seed_everything": [0, 1, 2]}}
        )
    )
    args = ["--config", str(spec_path), "--max-runs", "0", "--devices", "cpu"]
    assert sweep_main(args) == 0, capsys.readouterr().err
    first, second, third = (tmp_path / "s" / "runs" / run.run_id for run in load_spec(spec_path).expand())
    write_run(first, status="failed", method=RECORDED, normalization="evil.Attn")
    write_run(second, status="failed", block="evil.Block")
    received_sweep(tmp_path / "other")
    shutil.copytree(tmp_path / "other" / "runs" / "killed", third)
    assert sweep_main(args) == 1, capsys.readouterr().err  # 1: the received runs are failed ones
    assert not evil.exists()
    assert json.loads((tmp_path / "s" / "results.json").read_text())[0]["status"] == "failed"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("trusted") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        assert main(["fit", *TINY, "--trainer.limit_train_batches=1", f"--run_dir={run_dir}"]) == 0
    return run_dir


@pytest.fixture
def received_run(finished_run: Path, tmp_path: Path) -> Path:
    """A finished run whose config.yaml and checkpoints name evil.Net as the backbone (weights-only clean)."""
    run_dir = tmp_path / "received" / "run"
    shutil.copytree(finished_run, run_dir)
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)
        state["hyper_parameters"]["backbone"] = {"class_path": "evil.Net", "init_args": {"num_classes": 10}}
        torch.save(state, ckpt)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["backbone"] = {"class_path": "evil.Net", "init_args": {"num_classes": 10}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def test_load_from_checkpoint_refuses_a_class_from_the_current_folder(evil: Path, received_run: Path) -> None:
    from nlbench.classifier import ImageClassifier

    ckpt = received_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=f"{ckpt}: refused to import evil.Net: its module would come from "):
        ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    with pytest.raises(ValueError, match="refused to import evil.Net"), open(ckpt, "rb") as f:
        ImageClassifier.load_from_checkpoint(f, map_location="cpu")  # a file object: the current folder still
    with pytest.raises(ValueError, match="config.yaml: refused to import evil.Net"):
        load_run(received_run, "last")
    assert not evil.exists()


def test_nlbench_test_refuses_a_class_from_the_current_folder(
    evil: Path, received_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = received_run / "checkpoints" / "best.ckpt"
    out = received_run.parent / "evaluated"
    # The checkpoint's hyper-parameters name it (the config is the demo's own) ...
    assert (
        main(["test", f"--config={DEMO}", *FAST, "--trainer.logger=false", f"--ckpt_path={ckpt}", f"--run_dir={out}"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"nlbench test: error: --ckpt_path {ckpt}: refused to import evil.Net")
    # ... or the received run's config.yaml does.
    assert main(["test", f"--config={received_run / 'config.yaml'}", f"--ckpt_path={ckpt}", f"--run_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.yaml: refused to import evil.Net" in err[0]
    assert not evil.exists()


def test_the_users_environment_is_trusted(evil: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"model": {"backbone": {"class_path": "evil.Net"}, "optimizer": "json.JSONDecoder"}}
    with pytest.raises(trusted_imports.UntrustedImportError, match="refused to import evil.Net"):
        trusted_imports.check_file(data, evil.parent / "config.yaml")
    monkeypatch.setenv("PYTHONPATH", str(evil.parent))  # the user put the folder on PYTHONPATH: their choice
    trusted_imports.check_file(data, evil.parent / "config.yaml")
    assert trusted_imports.dotted_names({"base": "demo.yaml", "x": ["a.b.Cls"], "class_path": "m.f"}) == [
        "a.b.Cls",
        "m.f",
    ]
    assert not evil.exists()


def test_python_m_nlbench_drops_the_current_folder(evil: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`python -m nlbench` puts the current folder first on the import path; the entry point takes it off, as
    `python -P` does (a PYTHONPATH entry for the same folder stays): evil.Net is then not importable at all."""
    import subprocess

    from nlbench.commands import drop_current_folder

    monkeypatch.setattr(sys, "path", [str(evil.parent), "/elsewhere", str(evil.parent)])
    drop_current_folder()
    assert sys.path == ["/elsewhere", str(evil.parent)]
    config = evil.parent / "received.yaml"
    config.write_text(yaml.safe_dump({"model": {"backbone": {"class_path": "evil.Net"}}}))
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "nlbench", "test", "--config", str(config)],
        cwd=evil.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "evil" in done.stderr, done.stderr
    assert "refused to import" not in done.stderr  # not even found: the current folder is not on the path
    assert not evil.exists()
