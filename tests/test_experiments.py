"""The experiment configs (base/paper.yaml + per-dataset deltas), every sweep spec under experiments/sweeps/, and
random seeds recorded where the run is described."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tinyfit
import yaml

from nlbench.lightning_cli import main, parse_fit_args
from nlbench.sweep_command import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SWEEPS = sorted((EXPERIMENTS / "sweeps").glob("*.yaml"))
FAST = tinyfit.with_options(
    tinyfit.FAST,
    "--trainer.limit_train_batches=1",
    "--data.init_args.batch_size=8",
    "--data.init_args.eval_batch_size=8",
)


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


# ---- the base experiment and its deltas ------------------------------------------------------------------------
@pytest.mark.parametrize("config", ["cifar10.yaml", "cifar100.yaml", "tiny_imagenet.yaml"])
def test_dataset_configs_are_the_paper_base_plus_their_delta(config: str) -> None:
    paper = parse_fit_args([f"--config={EXPERIMENTS / 'base' / 'paper.yaml'}", "--data=nlbench.data.CIFAR10DataModule"])
    cfg = parse_fit_args([f"--config={EXPERIMENTS / config}"])
    # Mappings in a delta would replace whole sections of the base; the deltas change single keys only.
    assert cfg.trainer.max_epochs == 300 and len(cfg.trainer.callbacks) == 2
    assert cfg.model.optimizer == paper.model.optimizer and cfg.model.scheduler == paper.model.scheduler
    assert cfg.model.backbone.init_args.nl == paper.model.backbone.init_args.nl
    assert cfg.model.backbone.init_args.fc_init == "kaiming" and cfg.seed_everything is True
    assert cfg.trainer.default_root_dir == f"runs/{config.removesuffix('.yaml')}"
    assert [logger.class_path.rsplit(".", 1)[-1] for logger in cfg.trainer.logger] == ["CSVLogger", "WandbLogger"]
    expected = {"tiny_imagenet.yaml": ("PreActResNetTiny", 18)}.get(config, ("PreActResNet", 20))
    assert (cfg.model.backbone.class_path.rsplit(".", 1)[-1], cfg.model.backbone.init_args.depth) == expected


def test_paper_experiments_share_one_base() -> None:
    for config in ("cifar10.yaml", "cifar100.yaml", "tiny_imagenet.yaml", "demo.yaml"):
        assert yaml.safe_load((EXPERIMENTS / config).read_text())["config"] == "base/paper.yaml", config


def test_wide_resnet_delta_fits(tmp_path: Path, cifar10_root: Path) -> None:
    run_dir = tmp_path / "wrn"
    code = main(
        [
            "fit",
            f"--config={EXPERIMENTS / 'cifar10.yaml'}",
            f"--config={EXPERIMENTS / 'base' / 'wrn28_10.yaml'}",
            *FAST,
            f"--data.init_args.data_dir={cifar10_root}",
            "--data.init_args.verify=false",
            "--model.backbone.init_args.depth=10",
            "--model.backbone.init_args.widen=1",
            f"--run_dir={run_dir}",
        ]
    )
    assert code == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["backbone"]["class_path"] == "nlbench.models.WideResNet"
    assert saved["model"]["backbone"]["init_args"]["nl"]["normalization"] == "scale"
    assert json.loads((run_dir / "result.json").read_text())["metrics"]["nl_params"] > 0


# ---- the sweeps of the paper's experiments -------------------------------------------------------------------
@pytest.mark.parametrize("spec", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_spec_passes_the_dry_run(spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = sweep_main(["--config", str(spec), "--dry-run", "--devices", "cpu", "--output_dir", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out" / "runs").glob("*/result.json"))


def test_multi_head_sweeps_use_the_official_widths() -> None:
    for spec in SWEEPS:
        data = yaml.safe_load(spec.read_text())
        if "model.backbone.nl.heads" in (data.get("axes") or {}):
            assert data["overrides"]["model.backbone.nl.width"] == "official", spec.name


# ---- seeds -------------------------------------------------------------------------------------------------------
def test_seed_everything_true_draws_a_random_seed_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # left by an earlier seeded run in this process: must not be reused
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    seeds = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        assert (
            main(
                [
                    "fit",
                    f"--config={EXPERIMENTS / 'demo.yaml'}",
                    *FAST,
                    "--seed_everything=true",
                    f"--run_dir={run_dir}",
                ]
            )
            == 0
        )
        config_seed = yaml.safe_load((run_dir / "config.yaml").read_text())["seed_everything"]
        result = json.loads((run_dir / "result.json").read_text())
        assert isinstance(config_seed, int) and not isinstance(config_seed, bool)
        assert result["hparams"]["seed"] == config_seed and result["run_name"].endswith(f"-s{config_seed}")
        assert int(os.environ["PL_GLOBAL_SEED"]) == config_seed  # the seed Lightning actually set
        seeds.append(config_seed)
    assert seeds[0] != seeds[1] and 0 not in seeds


def test_a_given_seed_is_kept(tmp_path: Path) -> None:
    assert (
        main(
            [
                "fit",
                f"--config={EXPERIMENTS / 'demo.yaml'}",
                *FAST,
                "--seed_everything=7",
                f"--run_dir={tmp_path / 'r'}",
            ]
        )
        == 0
    )
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["seed_everything"] == 7
