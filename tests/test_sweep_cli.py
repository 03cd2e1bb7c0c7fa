"""`nlbench sweep` end to end: errors, --dry-run, --export-wandb, and a real tiny sweep through `nlbench fit`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tinyfit import OVERRIDES

from nlbench.record import RunRecord, read_record, write_record
from nlbench.report import collect
from nlbench.schema import BEST_ACC1, FINAL_ACC5
from nlbench.sweep.runner import LOG_MARK, run_dir_of
from nlbench.sweep.spec import load_spec
from nlbench.sweep.wandb_export import export_wandb
from nlbench.sweep_command import main, wandb_sync_line

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
NORMALIZATION = "model.backbone.nl.normalization"
# A couple of batches per run: the sweep machinery, not the training, is under test.
TINY = OVERRIDES


def demo_spec(tmp_path: Path, **body: Any) -> Path:
    path = tmp_path / "tiny.yaml"
    spec = {"name": "tiny", "base": str(DEMO), "output_dir": str(tmp_path / "out"), **body}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-runs", "-1"], "--max-runs must be >= 0"),
        (["--devices", "1,1"], "--devices: expected auto, cpu or distinct"),
        (["--no-such-option", "1"], "no-such-option"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    spec = demo_spec(tmp_path, axes={NORMALIZATION: ["scale"]})
    assert main(["--config", str(spec), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlbench sweep: error: ") and message in err and err.count("\n") == 1


def test_bad_spec_exits_2_naming_the_axis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = demo_spec(tmp_path, axes={NORMALIZATION: ["softmax", "sigmoid"]})
    assert main(["--config", str(spec), "--dry-run", "--devices", "cpu"]) == 2
    expanding, progress, error = capsys.readouterr().err.splitlines()
    assert expanding == "expanding 2 run(s) ..."
    assert progress == "checking 2 run(s) with the `nlbench fit` parser (3 configs parsed) ..."
    assert error.startswith("nlbench sweep: error: ") and f"axis '{NORMALIZATION}' value 'sigmoid'" in error
    assert "unknown normalization 'sigmoid': use one of softmax, scale" in error  # the registry's reason


def test_dry_run_lists_runs_with_status_and_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = demo_spec(tmp_path, overrides={"trainer.max_epochs": 4}, axes={NORMALIZATION: ["softmax", "scale"]})
    spec = load_spec(path)
    first, second = spec.expand()
    argv = ["--config", str(path), "--dry-run", "--devices", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cost: 2 runs x 4 epochs = 8 epochs on 1 slot(s): cpu" in out
    # No finished run yet and no GPU: the recorded CPU rate (nlbench.sweep.eta), 8 epochs of the 1,000-image sample.
    assert "on this CPU (400 training images/s recorded for PreActResNet-20 on 2 CPU cores" in out

    # One run finished earlier (4 epochs in 20 s): skipped, and it times the rest.
    write_record(run_dir_of(spec, first), RunRecord(status="finished", metrics={"epochs": 4, "time_s": 20.0}))
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.split() == ["finished", "skip", first.run_id, "normalization=softmax"] for ln in lines)
    assert any(ln.split() == ["new", "run", second.run_id, "normalization=scale"] for ln in lines)
    assert "cost: 1 runs x 4 epochs = 4 epochs on 1 slot(s): cpu" in lines
    assert "ETA: ~20s at 5.0 s/epoch (measured over 1 finished run(s))" in lines
    assert sorted(p.name for p in spec.output_dir.iterdir()) == ["runs"]  # a dry run writes nothing


def test_wandb_export_names_real_fit_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args  # what `wandb agent` uses for ${args}

    from nlbench.lightning_cli import parse_fit_args

    monkeypatch.chdir(REPO)  # agents run from the repository root
    spec = load_spec("experiments/sweeps/cifar10.yaml", output_dir=tmp_path / "sweep")
    text = export_wandb(spec, tmp_path / "cifar10-wandb.yaml").read_text()
    assert text.startswith("# W&B sweep definition") and "wandb agent ENTITY/PROJECT/SWEEP_ID" in text
    definition = yaml.safe_load(text)
    assert definition["method"] == "grid" and definition["project"] == "nlbench-cifar10"
    assert definition["command"] == [
        "${env}",
        f"NLBENCH_SWEEP_DIR={tmp_path / 'sweep'}",
        "nlbench",
        "fit",
        "--config",
        "experiments/cifar10.yaml",
        "${args}",
    ]
    parameters = definition["parameters"]
    assert {k: p["values"] for k, p in parameters.items() if "values" in p} == spec.axes
    assert parameters["data.download"] == {"value": True}

    # Every value of every parameter, turned into a command line as the agent does, is a valid fit command line.
    longest = max(len(p.get("values", [])) for p in parameters.values())
    for i in range(longest):
        chosen = {k: p["values"][i % len(p["values"])] if "values" in p else p["value"] for k, p in parameters.items()}
        args = create_sweep_command_args({"args": {k: {"value": v} for k, v in chosen.items()}})["args"]
        command = [
            a
            for c in definition["command"]
            for a in {"${env}": [], "${args}": args}.get(c, [c])
            if not a.startswith("NLBENCH_SWEEP_DIR=")
        ]
        assert command[:2] == ["nlbench", "fit"]
        config = parse_fit_args(command[2:])
        nl = config.model.backbone.init_args.nl
        assert (nl.normalization, nl.reduction, nl.init) == (
            chosen[NORMALIZATION],
            chosen["model.backbone.nl.reduction"],
            chosen["model.backbone.nl.init"],
        )
        assert config.seed_everything == chosen["seed_everything"] and config.data.init_args.download is True

    # Through the CLI; explicit points cannot be a W&B grid.
    path = demo_spec(tmp_path, axes={NORMALIZATION: ["softmax", "scale"]}, points=[{"model.backbone.nl_stages": []}])
    assert main(["--config", str(path), "--export-wandb", str(tmp_path / "w.yaml")]) == 2
    assert "cannot express explicit 'points'" in capsys.readouterr().err


def test_a_wandb_agents_run_lands_in_the_sweep_directory_with_the_agents_id(tmp_path: Path) -> None:
    """Issue 19 item 3, with a fake agent that keeps wandb's contract: it runs the definition's command with ${env}
    and ${args} expanded as wandb does, and sets WANDB_SWEEP_ID and WANDB_RUN_ID (W&B offline here)."""
    import os
    import subprocess
    import sys

    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = load_spec(
        demo_spec(tmp_path, overrides=TINY, axes={NORMALIZATION: ["softmax", "scale"], "seed_everything": [0]})
    )
    definition = yaml.safe_load(export_wandb(spec, tmp_path / "w.yaml").read_text())
    chosen = {k: p["values"][-1] if "values" in p else p["value"] for k, p in definition["parameters"].items()}
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in chosen.items()}})["args"]
    command = [a for c in definition["command"] for a in {"${env}": ["/usr/bin/env"], "${args}": args}.get(c, [c])]
    at = command.index("nlbench")  # the console script `nlbench` is `python -m nlbench` (no install needed here)
    command[at : at + 1] = [sys.executable, "-m", "nlbench"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "offline",
        "WANDB_SWEEP_ID": "swp12345",
        "WANDB_RUN_ID": "agentrun1",
        "WANDB_PROJECT": "nlbench-test",
        "WANDB_DIR": str(tmp_path),
    }
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # as agents do
    assert done.returncode == 0, done.stderr[-2000:]
    run = spec.expand()[1]  # scale, seed 0
    record = read_record(run_dir_of(spec, run))  # under the sweep directory, not the base's default_root_dir
    assert record is not None and record.status == "finished" and record.wandb_id == "agentrun1"
    assert "Ignoring" not in done.stdout + done.stderr  # W&B's "Ignoring run_id/project ... when running a sweep"
    # W&B warns (wandb_init.clear_run_path_if_sweep_or_launch) whenever a run under an agent passes a project,
    # entity or run id to wandb.init; nlbench's logger passes none there (W&B is silent=True, so check the call).
    from nlbench.loggers import WandbLogger

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            if key.startswith("WANDB_"):
                mp.setenv(key, value)
        logger = WandbLogger(project="nlbench-cifar10", entity="lab", id="ignored1", save_dir=str(tmp_path))
    assert not {"project", "entity", "id"} & set(logger._wandb_init) and logger.version == "agentrun1"
    rows = main(["--config", str(spec.source), "--status"])
    assert rows == 0


def test_real_tiny_sweep_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = demo_spec(tmp_path, overrides=TINY, axes={NORMALIZATION: ["softmax", "scale"]})
    spec = load_spec(path)
    argv = ["--config", str(path), "--devices", "cpu"]
    assert main(argv) == 0, capsys.readouterr()
    assert "wandb sync" not in capsys.readouterr().out  # W&B was disabled: nothing to upload

    with open(spec.output_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["status"], r["normalization"]) for r in rows] == [("finished", "softmax"), ("finished", "scale")]
    for row in rows:
        assert 0.0 <= float(row[BEST_ACC1]) <= 1.0 and 0.0 <= float(row[FINAL_ACC5]) <= 1.0
        assert row["epochs"] == "1" and float(row["time_s"]) > 0 and int(row["params"]) > 0 and not row["error"]
    summary = collect.summarize(collect.load_sweep(spec.output_dir))
    assert sorted((s["normalization"], s["n"], s[f"{BEST_ACC1}_std"]) for s in summary) == [
        ("scale", 1, None),
        ("softmax", 1, None),
    ]
    record = read_record(run_dir_of(spec, spec.expand()[0]))
    assert record is not None and record.hparams["normalization"] == "softmax"  # the fit's identity, short names
    for run, value in zip(spec.expand(), ["softmax", "scale"]):
        run_dir = run_dir_of(spec, run)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["model"]["backbone"]["init_args"]["nl"]["normalization"] == value  # the axis reached the fit
        assert (config["trainer"]["accelerator"], config["trainer"]["enable_progress_bar"]) == ("cpu", False)
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    # Re-running the finished sweep starts nothing and keeps the same rows.
    assert main(argv) == 0
    for run in spec.expand():
        assert (run_dir_of(spec, run) / "stdout.log").read_text().count(LOG_MARK) == 1
    with open(spec.output_dir / "results.csv") as f:
        assert [r["run_id"] for r in csv.DictReader(f)] == [r["run_id"] for r in rows]


# ---- fail fast: devices, grid size, data, disks -------------------------------------------------------------------
CIFAR10 = REPO / "experiments" / "cifar10.yaml"


def test_gpu_ids_that_are_not_visible_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("nlbench.sweep_command.visible_gpus", lambda: [])  # a machine without GPUs
    spec = demo_spec(tmp_path, axes={NORMALIZATION: ["scale"]})
    assert main(["--config", str(spec), "--devices", "7,9", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "nlbench sweep: error: --devices 7,9: GPU(s) 7, 9 not visible on this machine (visible: none); "
        "use --devices auto or cpu\n"
    )


def test_grid_limit_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = demo_spec(tmp_path, axes={NORMALIZATION: ["softmax", "scale"], "seed_everything": [0, 1]})
    assert main(["--config", str(spec), "--dry-run", "--devices", "cpu", "--grid-limit", "3"]) == 2
    err = capsys.readouterr().err
    assert "4 runs (axes 2 x 2, 0 points) exceed the limit of 3" in err and err.count("\n") == 1
    assert main(["--config", str(spec), "--dry-run", "--devices", "cpu", "--grid-limit", "4"]) == 0


def test_missing_data_fails_once_before_any_run_and_the_dry_run_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "nodata"
    path = demo_spec(
        tmp_path,
        axes={NORMALIZATION: ["softmax", "scale"]},
        overrides={"data.data_dir": str(empty), "data.download": False},
    )
    yaml_spec = yaml.safe_load(path.read_text())
    yaml_spec["base"] = str(CIFAR10)
    path.write_text(yaml.safe_dump(yaml_spec))
    assert main(["--config", str(path), "--devices", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (
        f"nlbench sweep: error: cifar10 missing from {empty}; put cifar-10-python.tar.gz "
        f"(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into {empty}, or set data.download: true"
    )
    assert not (tmp_path / "out").exists()  # no run was started

    assert main(["--config", str(path), "--devices", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"data: cifar10 missing from {empty}; put cifar-10-python.tar.gz" in out
    assert "devices: 1 slot(s), one run at a time on each: cpu (no GPU visible, or --devices cpu)" in out


def test_a_failed_download_fails_the_sweep_once_saying_where_to_put_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nlbench.data import archives
    from nlbench.data.errors import DownloadError

    calls = []

    def offline(url: str, dest: Path, **kwargs: Any) -> None:
        calls.append(url)
        raise DownloadError(f"downloading {url} to {dest} failed: <urlopen error [Errno -3] no network>")

    monkeypatch.setattr(archives, "download", offline)
    empty = tmp_path / "nodata"
    spec = {
        "name": "c",
        "base": str(CIFAR10),
        "output_dir": str(tmp_path / "out"),
        "overrides": {"data.data_dir": str(empty), "data.download": True},
        "axes": {NORMALIZATION: ["softmax", "scale"], "seed_everything": [0, 1, 2]},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(spec))
    # --yes: 300-epoch CIFAR-10 runs on the CPU would otherwise stop at the time estimate, before any download.
    assert main(["--config", str(path), "--devices", "cpu", "--yes"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("nlbench sweep: error: cifar10: downloading https://www.cs.toronto.edu/")
    assert err.endswith(
        f"without network, put cifar-10-python.tar.gz "
        f"(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into {empty}"
    )
    assert len(calls) == 1 and not (tmp_path / "out" / "runs").exists()  # once, and no run started


@pytest.mark.parametrize("code", [30, 28])  # EROFS, ENOSPC
def test_an_unwritable_output_dir_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
) -> None:
    import errno
    import os

    out = tmp_path / "out"
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:  # root ignores chmod: simulate the mount
        if self == out or out in self.parents:
            raise OSError(code, os.strerror(code), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    spec = demo_spec(tmp_path, axes={NORMALIZATION: ["scale"]})
    assert main(["--config", str(spec), "--devices", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    what = {
        errno.EROFS: "read-only file system; choose a writable directory",
        errno.ENOSPC: "no space left on device; free some space or write elsewhere",
    }[code]
    assert err == f"nlbench sweep: error: {out / 'runs'}: cannot write: {what}"


def test_one_wandb_sync_line_for_the_offline_runs_of_a_sweep(tmp_path: Path) -> None:
    assert wandb_sync_line(tmp_path) is None
    for run in ("a", "b"):
        (tmp_path / "runs" / run / "wandb" / f"offline-run-2026-{run}").mkdir(parents=True)
    (tmp_path / "runs" / "c" / "wandb").mkdir(parents=True)  # W&B disabled for this one
    line = wandb_sync_line(tmp_path)
    assert line is not None and "2 run(s)" in line
    assert line.endswith(f"wandb sync {tmp_path}/runs/*/wandb/offline-run-*")


def test_the_dry_run_estimates_the_eta_from_a_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = demo_spec(
        tmp_path,
        axes={NORMALIZATION: ["softmax", "scale"]},
        overrides={"data.data_dir": str(tmp_path / "nodata"), "data.download": False, "trainer.max_epochs": 3},
    )
    yaml_spec = yaml.safe_load(path.read_text())
    yaml_spec["base"] = str(CIFAR10)
    path.write_text(yaml.safe_dump(yaml_spec))
    record = {"backbone": "PreResNet-20", "depth": 20, "reduction": 2, "heads": 1, "peak_mib": 100.0}
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "machine": "test box",
                "device": "cuda (H200)",
                "date": "2026-12-01T10:00:00+00:00",
                "records": [
                    {**record, "normalization": "softmax", "images_per_s": 1000.0},
                    {**record, "normalization": "scale", "images_per_s": 2000.0},
                ],
            }
        )
    )
    assert main(["--config", str(path), "--devices", "cpu", "--dry-run", "--bench", str(bench)]) == 0
    out = capsys.readouterr().out
    # 3 epochs x 50,000 images at 1,000 img/s (softmax) + at 2,000 img/s (scale) = 150 s + 75 s, one slot.
    assert (
        f"ETA: ~3m 45s from the benchmark {bench} (cuda (H200), measured 2026-12-01 10:00 UTC; 50,000 training "
        "images per epoch, one run at a time per slot)"
    ) in out


def test_a_long_grid_on_the_cpu_says_how_long_and_asks_for_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26 item 13: `make sweep-cifar10` on a machine without a GPU started 27,000 epochs without a word."""
    from nlbench import sweep_command
    from nlbench.sweep import eta

    monkeypatch.setattr(eta.os, "cpu_count", lambda: 2)  # the recorded rate's machine: 400 images/s
    path = demo_spec(tmp_path, overrides={"trainer.max_epochs": 300}, axes={"seed_everything": [0, 1, 2, 3, 4, 5]})
    argv = ["--config", str(path), "--devices", "cpu"]
    assert main(argv) == 2
    # 6 runs x 300 epochs x 1,000 sample images / 400 images/s = 4,500 s.
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "nlbench sweep: error: the runs would take about 1h 15m on this machine's CPU (no GPU visible): 1,800 epochs "
        "at 400 training images/s recorded for PreActResNet-20 on 2 CPU cores, scaled to its depth and to 2 cores; "
        "evaluation not counted; pass --yes to run them anyway, or fewer with --max-runs N or --index"
    )
    assert not (tmp_path / "out" / "runs").exists()  # nothing started
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ETA: ~1h 15m on this CPU (" in out and "over an hour: the sweep asks for --yes" in out
    started: list[int] = []
    monkeypatch.setattr(sweep_command, "run_sweep", lambda spec, **kw: started.append(kw["max_runs"] or 0) or [])
    assert main([*argv, "--max-runs", "1"]) == 0 and started == [1]  # one run: 12m 30s, no question asked
    assert main([*argv, "--yes"]) == 0 and started == [1, 0]
