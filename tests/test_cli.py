"""End-to-end tests of `nlbench fit/validate/test` through LightningCLI, on generated data in the official formats."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinyfit import FAST, FAST_DEMO

from nlbench.classifier import ImageClassifier
from nlbench.lightning_cli import ConfigError, NLBenchCLI, load_run, main, parse_fit_args
from nlbench.record import read_record
from nlbench.schema import BEST_ACC1, FINAL_ACC1

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


@pytest.fixture
def data_args(cifar10_root: Path, cifar100_root: Path, tiny_imagenet_root: Path) -> dict[str, list[str]]:
    """Per experiment file: the overrides that point it at generated data."""
    return {
        "cifar10.yaml": [f"--data.init_args.data_dir={cifar10_root}", "--data.init_args.verify=false"],
        "cifar100.yaml": [f"--data.init_args.data_dir={cifar100_root}", "--data.init_args.verify=false"],
        "tiny_imagenet.yaml": [f"--data.init_args.data_dir={tiny_imagenet_root}", "--data.init_args.verify=false"],
        "demo.yaml": [],
    }


# How FAST's options read in a run name (nlbench.run.short_form); progress bar and summary change nothing trained.
FAST_WORDS = "ep1-limit_train_batches2-limit_val_batches1-bs16-eval_batch_size16"


def fit(tmp_path: Path, config: str, *extra: str, name: str = "run") -> tuple[int, Path]:
    run_dir = tmp_path / name
    code = main(["fit", f"--config={EXPERIMENTS / config}", *FAST, f"--run_dir={run_dir}", *extra])
    return code, run_dir


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


OVERLAYS = {"gpu.yaml"}  # applied on top of a config (tests/test_gpu_fast_path.py), not configs of their own


@pytest.mark.parametrize("config", sorted(p.name for p in EXPERIMENTS.glob("*.yaml") if p.name not in OVERLAYS))
def test_every_experiment_config_fits(tmp_path: Path, config: str, data_args: dict[str, list[str]]) -> None:
    code, run_dir = fit(tmp_path, config, *data_args[config])
    assert code == 0
    result = read_record(run_dir).flat()
    assert result["status"] == "finished"
    assert 0.0 <= result[BEST_ACC1] <= 1.0 and result[FINAL_ACC1] is not None
    assert result["epochs"] == 1 and result["global_step"] in (1, 2)  # the generated Tiny-ImageNet has 1 batch
    assert result["params"] > 0 and result["nl_params"] > 0
    assert (run_dir / "config.yaml").is_file()
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}
    rows = read_metrics(run_dir)
    assert any(r.get("val/acc1") for r in rows) and any(r.get("train/loss") for r in rows)
    # The metric names of docs/design.md, not Lightning's _step/_epoch variants.
    assert not [key for key in rows[0] if key.endswith(("_step", "_epoch"))]


def test_softmax_and_scale_runs_are_named_and_grouped_apart(tmp_path: Path) -> None:
    results = {}
    for norm in ("softmax", "scale"):
        code, run_dir = fit(tmp_path, "demo.yaml", f"--model.backbone.nl.normalization={norm}", name=norm)
        assert code == 0
        results[norm] = read_record(run_dir).flat()
    # The NL words, then every other option the command line changed (what differs from the config), then the seed.
    assert results["softmax"]["run_name"] == f"softmax-r2-h1-normal-{FAST_WORDS}-s0"
    assert results["scale"]["group"].endswith(f"scale-r2-h1-normal-{FAST_WORDS}")
    assert results["softmax"]["normalization"] == "softmax"


def test_default_run_dir_is_named_and_never_reused(tmp_path: Path) -> None:
    args = ["fit", *FAST_DEMO, f"--trainer.default_root_dir={tmp_path}"]
    assert main(args) == 0 and main(args) == 0
    name = f"scale-r2-h1-normal-{FAST_WORDS}-s0"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, f"{name}-v2"]
    assert NLBenchCLI.RUN_DIR_ENV not in os.environ  # only multi-process runs hand their run directory on


def test_same_seed_gives_identical_runs(tmp_path: Path) -> None:
    runs = [fit(tmp_path, "demo.yaml", "--seed_everything=7", name=f"r{i}")[1] for i in range(2)]
    metrics = [[{k: v for k, v in row.items() if "images_per_s" not in k} for row in read_metrics(r)] for r in runs]
    assert metrics[0] == metrics[1]
    weights = [torch.load(r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_resume_continues_optimizer_scheduler_and_epoch_state(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    base = [
        "fit",
        *FAST_DEMO,
        f"--run_dir={run_dir}",
        "--model.scheduler=torch.optim.lr_scheduler.StepLR",
        "--model.scheduler.step_size=1",
        "--model.scheduler.gamma=0.5",
        "--model.scheduler_interval=epoch",
    ]
    assert main([*base, "--trainer.max_epochs=1"]) == 0
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    # Without --ckpt_path the existing checkpoints are protected.
    assert main([*base, "--trainer.max_epochs=2"]) == 2
    assert main([*base, "--trainer.max_epochs=2", "--ckpt_path=last"]) == 0
    second = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert (first["epoch"], second["epoch"]) == (0, 1)
    assert (first["global_step"], second["global_step"]) == (2, 4)
    # The schedule went on from epoch 1 instead of restarting: lr 0.2 (demo.yaml's) -> 0.1 -> 0.05.
    assert second["lr_schedulers"][0]["last_epoch"] == 2
    assert second["lr_schedulers"][0]["_last_lr"] == pytest.approx([0.05])
    momentum = second["optimizer_states"][0]["state"]
    assert momentum and all(torch.isfinite(s["momentum_buffer"]).all() for s in momentum.values())
    result = read_record(run_dir).flat()
    assert result["epochs"] == 2 and result["global_step"] == 4 and result["status"] == "finished"
    assert result["time_s"] > 0


def test_diverged_run_is_recorded(tmp_path: Path) -> None:
    code, run_dir = fit(
        tmp_path,
        "demo.yaml",
        "--model.optimizer.init_args.lr=1e30",
        "--model.scheduler=null",
        "--trainer.log_every_n_steps=1",
        "--trainer.limit_train_batches=4",
        "--trainer.max_epochs=3",
    )
    assert code == 0
    result = read_record(run_dir).flat()
    assert result["status"] == "diverged"
    assert result["global_step"] < 12


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--model.backbone.nl.normalization=softmaxx", "normalization"),
        ("--model.backbone.nl.reduction=1000", "reduction"),
        ("--model.backbone.nl.heads=3", "heads"),
        ("--model.backbone.nl.bogus=1", "bogus"),
        ("--trainer.max_epochz=1", "max_epochz"),
        ("--data.init_args.loader=fast", "loader"),
    ],
)
def test_bad_options_fail_in_one_line_without_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, expected: str
) -> None:
    code, run_dir = fit(tmp_path, "demo.yaml", override)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not run_dir.exists()


def test_bad_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", f"--config={tmp_path / 'missing.yaml'}"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    assert main(["fit", f"--config={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml" in err, err


def test_missing_dataset_names_the_place_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "nodata"
    empty.mkdir()
    code, run_dir = fit(tmp_path, "cifar10.yaml", f"--data.init_args.data_dir={empty}")
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(empty) in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()


def test_parse_fit_args_validates_without_side_effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = parse_fit_args([f"--config={EXPERIMENTS / 'cifar10.yaml'}", "--model.backbone.nl.reduction=4"])
    assert cfg.model.backbone.init_args.nl.reduction == 4
    with pytest.raises(ConfigError, match="normalization"):
        parse_fit_args([f"--config={EXPERIMENTS / 'cifar10.yaml'}", "--model.backbone.nl.normalization=x"])
    assert not list(tmp_path.iterdir())  # parse-only creates no run directory, logs or W&B files


def test_validate_test_predict_and_load_run(tmp_path: Path) -> None:
    code, run_dir = fit(tmp_path, "demo.yaml")
    assert code == 0
    best = run_dir / "checkpoints" / "best.ckpt"
    model, data = load_run(run_dir, "best")
    assert not model.training and data.num_classes == 10
    # Lightning's own way works too: the checkpoint's hparams hold the backbone's class_path and init_args.
    loaded = ImageClassifier.load_from_checkpoint(best, map_location="cpu").eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images))
    assert (
        main(
            [
                "test",
                f"--config={run_dir / 'config.yaml'}",
                f"--run_dir={run_dir}",
                f"--ckpt_path={best}",
                "--trainer.limit_test_batches=1",
            ]
        )
        == 0
    )
    assert (run_dir / "test" / "metrics.csv").is_file()

    assert (
        main(
            [
                "predict",
                f"--config={run_dir / 'config.yaml'}",
                f"--run_dir={run_dir}",
                f"--ckpt_path={best}",
                "--trainer.limit_predict_batches=2",
                "--data.init_args.eval_batch_size=8",
            ]
        )
        == 0
    )
    with open(run_dir / "predict" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(16))
    for row in rows:
        probs = [float(row[f"prob_{c}"]) for c in range(10)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert int(row["predicted"]) == max(range(10), key=probs.__getitem__) and 0 <= int(row["target"]) < 10
    assert not list((run_dir / "predict").glob("*.tmp"))


def test_fit_help_lists_nlbench_backbones_and_any_module_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "nlbench.models.PreActResNet" in out and "nlbench.models.WideResNet" in out
    assert "torch.ao" not in out and "torchvision.models.detection" not in out
    assert len(out.splitlines()) < 700  # 1,231 lines when every imported nn.Module was listed
    with pytest.raises(SystemExit):
        main(["fit", "--model.backbone.help", "nlbench.models.PreActResNet"])
    assert "--model.backbone.depth DEPTH" in capsys.readouterr().out
    # Any importable nn.Module still works through class_path.
    backbone = (
        '{"class_path": "torchvision.models.ResNet", "init_args": '
        '{"block": "torchvision.models.resnet.BasicBlock", "layers": [1, 1, 1, 1]}}'
    )
    cfg = parse_fit_args([f"--config={EXPERIMENTS / 'demo.yaml'}", f"--model.backbone={backbone}"])
    assert cfg.model.backbone.class_path == "torchvision.models.ResNet"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from nlbench.commands import main as nlbench_main

    assert nlbench_main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "sweep", "report", "analyze", "bench"):
        assert f"  {command} " in out


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(NETRC=str(tmp_path / "no-netrc"), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def offline_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real fit in a fresh process, W&B offline without credentials, model summary on: (run_dir, output)."""
    tmp_path = tmp_path_factory.mktemp("offline")
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "nlbench",
        "fit",
        *FAST_DEMO,
        f"--run_dir={run_dir}",
        "--trainer.enable_model_summary=true",
    ]
    proc = subprocess.run(cmd, env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "noise",
    [
        "litlogger",
        "The anonymous setting has no effect",
        "Previous log files in this directory will be deleted",
        "git root",
        "LeafSpec",
        "Symlinked 1 file into the W&B run directory",
    ],
)
def test_fit_output_has_no_false_or_useless_messages(offline_fit: tuple[Path, str], noise: str) -> None:
    assert noise not in offline_fit[1]


def test_model_summary_counts_flops(offline_fit: tuple[Path, str]) -> None:
    # Lightning's plain summary ends the line with "Total Flops"; its rich one (with `rich` installed) starts it
    # with "Total FLOPs:".
    total = next(
        line
        for line in offline_fit[1].splitlines()
        if line.rstrip().endswith("Total Flops") or line.startswith("Total FLOPs:")
    )
    count = total.split()[0] if total.rstrip().endswith("Total Flops") else total.split(":", 1)[1].split()[0]
    assert count not in ("0", "0.0"), total


def test_wandb_runs_offline_without_credentials(offline_fit: tuple[Path, str]) -> None:
    """No credentials and no network: the run completes, W&B files hold the config, and sync is explained."""
    run_dir, output = offline_fit
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert "wandb sync" in output
    # The resolved config travels twice: as a copy among the run's files (not a symlink to config.yaml, which W&B
    # would write its own config.yaml through: wandb/wandb#7654), and in the run's config record.
    files = offline_runs[0] / "files"
    assert "normalization: scale" in (files / "nlbench-config.yaml").read_text()
    assert not any(p.is_symlink() for p in files.rglob("*"))
    own = (run_dir / "config.yaml").read_text()
    assert "wandb_version" not in own and "\n_wandb:" not in own and "normalization: scale" in own
    record = next(offline_runs[0].glob("run-*.wandb")).read_bytes()
    assert b"normalization" in record and b"scale-r2-h1-normal-" in record


def test_wandb_ids_are_new_per_run_and_kept_on_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["fit", *FAST_DEMO, f"--run_dir={run_dir}", "--model.scheduler=null"]
    assert main(args) == 0
    first = (run_dir / "wandb-id").read_text().strip()
    assert main([*args, "--trainer.max_epochs=2", "--ckpt_path=last"]) == 0
    assert (run_dir / "wandb-id").read_text().strip() == first  # a resume continues the same W&B run
    shutil.rmtree(run_dir)
    assert main(args) == 0  # the same path again is a new run: a new id, not an append to the old W&B run
    assert (run_dir / "wandb-id").read_text().strip() != first


def test_test_on_a_fit_run_directory_opens_no_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nlbench.lightning_cli

    code, run_dir = fit(tmp_path, "demo.yaml")
    assert code == 0
    seen = []
    real = nlbench.lightning_cli._configure_loggers
    monkeypatch.setattr(
        nlbench.lightning_cli, "_configure_loggers", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1]
    )
    assert (
        main(
            [
                "test",
                f"--config={run_dir / 'config.yaml'}",
                f"--run_dir={run_dir}",
                f"--ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                "--trainer.limit_test_batches=1",
            ]
        )
        == 0
    )
    loggers = [str(logger["class_path"]) for logger in seen[0]]
    assert loggers == ["nlbench.loggers.CSVLogger"], loggers  # demo.yaml configures W&B too
    assert (run_dir / "test" / "metrics.csv").is_file()


def test_a_failed_first_run_leaves_no_empty_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The optimizer is built after the run directory's first files are written.
    root = tmp_path / "runs" / "demo"
    code = main(["fit", *FAST_DEMO, f"--trainer.default_root_dir={root}", "--model.optimizer.init_args.lr=-0.1"])
    assert code == 2 and "learning rate" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_ddp_on_cpu_with_two_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "nlbench",
        "fit",
        *FAST_DEMO,
        f"--run_dir={run_dir}",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    proc = subprocess.run(cmd, env=_offline_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_record(run_dir).flat()
    assert result["status"] == "finished" and result["global_step"] == 2
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one W&B run, not one per process
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # both processes used the same run directory


# ---- one-line errors that name the option or file (exit 2, no traceback, no run directory left) ------------------
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--trainer.max_epochs=-5", "trainer.max_epochs: `max_epochs` must be a non-negative integer or -1"),
        ("--model.optimizer.init_args.lr=-0.1", "model.optimizer.lr: Invalid learning rate: -0.1"),
        ("--data.init_args.batch_size=0", "data.batch_size: batch_size must be >= 1, got 0"),
        ("--model.backbone.nl.heads=3", "model.backbone.nl.heads: NonLocal2d: width 16 is not divisible by heads=3"),
        ("--seed_everything=notanint", "seed_everything: got 'notanint'; expected a bool or an int"),
        (
            "--trainer.precision=bogus",
            "trainer.precision: got 'bogus'; expected one of 64, 32, 16, 'transformer-engine', ",
        ),
    ],
)
def test_bad_values_name_their_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, expected: str
) -> None:
    code, run_dir = fit(tmp_path, "demo.yaml", override)
    err = capsys.readouterr().err
    line = err.splitlines()[-1]  # (lr is checked when the optimizer is built: W&B may have said something first)
    assert code == 2 and line.startswith(f"nlbench fit: error: {expected}") and "Traceback" not in err, err
    assert not run_dir.exists()
    if "precision" in override:
        assert "'bf16-mixed'" in err and "'32-true'" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x00\x01\xff\xfe", "not a text (YAML) file"),
        (b"", "expected a mapping of options (trainer:, model:, data:), got an empty file"),
        (b"- a\n- b\n", "expected a mapping of options (trainer:, model:, data:), got a list"),
    ],
)
def test_unusable_config_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    assert (
        main(["fit", f"--config={EXPERIMENTS / 'demo.yaml'}", f"--config={path}", f"--run_dir={tmp_path / 'r'}"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"nlbench fit: error: --config {path}: {expected}") and err.count("\n") == 1, err


def test_corrupt_and_unsafe_archives_are_one_line(
    tmp_path: Path, cifar10_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The generated archive's md5 is not the official one: verify=true refuses it.
    code, run_dir = fit(tmp_path, "cifar10.yaml", f"--data.init_args.data_dir={cifar10_root}")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "md5 mismatch" in err and "cifar-10-python.tar.gz" in err, err
    assert not run_dir.exists()

    import io
    import tarfile

    evil = tmp_path / "evil"
    evil.mkdir()
    with tarfile.open(evil / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    code, run_dir = fit(
        tmp_path, "cifar10.yaml", f"--data.init_args.data_dir={evil}", "--data.init_args.verify=false", name="evil-run"
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'..' component" in err, err
    assert not run_dir.exists() and not (tmp_path / "escaped").exists()


def test_an_unwritable_run_dir_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from nlbench.lightning_cli import NLBenchCLI

    run_dir = tmp_path / "ro" / "run"
    real = NLBenchCLI.before_instantiate_classes

    def read_only(self: NLBenchCLI) -> None:  # root ignores chmod: simulate the mount where the run dir is made
        real(self)
        raise PermissionError(errno.EROFS, "Read-only file system", str(run_dir))

    monkeypatch.setattr(NLBenchCLI, "before_instantiate_classes", read_only)
    code = main(["fit", *FAST_DEMO, f"--run_dir={run_dir}"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err == f"nlbench fit: error: {run_dir}: cannot write: read-only file system; choose a writable directory\n"
    ), err


@pytest.mark.skipif(os.geteuid() == 0, reason="optional: needs a non-root user (root writes into read-only folders)")
def test_a_really_read_only_run_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code = main(["fit", *FAST_DEMO, f"--run_dir={parent / 'run'}"])
    finally:
        parent.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot write: permission denied" in err, err


def test_a_full_disk_during_training_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from nlbench.classifier import ImageClassifier

    def full(self: ImageClassifier, *args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoints" / "last.ckpt"))

    monkeypatch.setattr(ImageClassifier, "on_train_epoch_end", full)
    code, run_dir = fit(tmp_path, "demo.yaml")
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.splitlines()[-1] == (
        f"nlbench fit: error: {run_dir / 'checkpoints' / 'last.ckpt'}: cannot write: "
        "no space left on device; free some space or write elsewhere"
    )
    import json

    assert json.loads((run_dir / "result.json").read_text())["status"] == "failed"  # the run is kept, as failed


@pytest.mark.parametrize("argv", [["--help"], ["report", "--bogus"], ["sweep", "--bogus"], ["bench", "--help"]])
def test_help_and_usage_errors_import_no_torch_lightning_or_matplotlib(argv: list[str]) -> None:
    """What keeps them under a second (timings: `nlbench bench imports`, BENCHMARKS.md)."""
    code = (
        "import sys; from nlbench.commands import main; main(sys.argv[1:]); "
        "print(sorted(m for m in ('torch', 'lightning', 'matplotlib', 'wandb') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


def test_one_entry_point_without_an_import_cycle() -> None:
    """The command table lives in nlbench.commands; nlbench.lightning_cli (the LightningCLI subcommands) never
    imports it."""
    code = "import sys, nlbench.lightning_cli; print('nlbench.commands' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    import nlbench.lightning_cli as cli_module

    assert not hasattr(cli_module, "commands") and not hasattr(cli_module, "LIGHTNING_COMMANDS")
