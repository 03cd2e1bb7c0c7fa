"""W&B mode resolution, the fallback that never fails a run, and run naming."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb

from nlbench.loggers import WandbLogger, resolve_wandb_mode


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
