"""W&B mode resolution, the fallback that never fails a run, and run naming."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb

from nlbench.loggers import WandbLogger, describe_run, resolve_wandb_mode


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_auto_mode_is_offline_without_credentials_and_online_with_them(no_credentials: Path, monkeypatch) -> None:
    assert resolve_wandb_mode("auto") == "offline"
    no_credentials.write_text("machine api.wandb.ai login user password secret\n")
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit environment choice wins
    assert resolve_wandb_mode("auto") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"


def test_unreachable_wandb_falls_back_instead_of_failing(tmp_path: Path, monkeypatch) -> None:
    real_init, modes = wandb.init, []

    def init(**kwargs):
        modes.append(kwargs["mode"])
        if kwargs["mode"] != "disabled":
            raise wandb.errors.CommError("service unreachable (simulated)")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    logger = WandbLogger(mode="online", save_dir=str(tmp_path))
    assert logger.experiment is not None
    assert modes == ["online", "offline", "disabled"] and logger.mode == "disabled"
    logger.finalize("success")


def test_run_names_and_groups_follow_the_vocabulary() -> None:
    config = {
        "seed_everything": 3,
        "data": {"class_path": "nlbench.data.CIFAR100DataModule", "init_args": {"batch_size": 128}},
        "model": {"backbone": {"class_path": "nlbench.models.PreActResNet", "init_args": {
            "depth": 20, "nl_stages": [2], "nl_blocks": 1,
            "nl": {"normalization": "scale", "reduction": 8, "heads": 4, "init": "zeros", "similarity": "direction",
                   "order": "nxn"}}}},
    }
    identity = describe_run(config)
    assert identity.name == "scale-r8-h4-zeros-direction-nxn-s3"
    assert identity.group == "cifar100-preactresnet20-scale-r8-h4-zeros-direction-nxn"
    assert identity.hparams["reduction"] == 8 and identity.hparams["seed"] == 3
    config["model"]["backbone"]["init_args"]["nl_stages"] = []
    assert describe_run(config).name == "baseline-s3"
    assert describe_run(config).hparams["normalization"] == "none"


def test_options_off_their_default_name_the_run_and_per_stage_counts_read() -> None:
    args = {"depth": 20, "nl_stages": None, "nl_blocks": [0, 1, 0], "nl": {"normalization": "scale", "reduction": 2,
            "heads": 1, "init": "normal", "scale": "sqrt_nd", "pos_encoding": False}}  # fmt: skip
    config = {"seed_everything": 1, "data": {"class_path": "nlbench.data.CIFAR10DataModule"},
              "model": {"backbone": {"class_path": "nlbench.models.PreActResNet", "init_args": args}}}  # fmt: skip
    identity = describe_run(config)
    assert identity.name == "scale-r2-h1-normal-sqrt_nd-nopos-blocks0-1-0-s1"
    assert identity.hparams["nl_blocks"] == [0, 1, 0] and identity.hparams["normalization"] == "scale"
    args["nl_blocks"] = [0, 0, 0]
    assert describe_run(config).hparams["normalization"] == "none"
    args.update(nl_blocks=2, nl_stages=[1, 3], fc_init="pytorch")
    args["nl"] = {"normalization": "softmax", "reduction": 2, "heads": 1, "init": "normal"}
    assert describe_run(config).name == "softmax-r2-h1-normal-stages1-3-x2-fcpytorch-s1"
