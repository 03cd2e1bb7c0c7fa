"""W&B mode resolution, the fallback that never fails a run, and run naming."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import wandb

from nlbench.loggers import WANDB_ID_FILE, WandbLogger, resolve_wandb_mode, wandb_run_id


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
    with pytest.warns(UserWarning, match="W&B could not start in (online|offline) mode") as caught:
        assert logger.experiment is not None
    assert [str(w.message).split(" mode")[0].rsplit(" ", 1)[1] for w in caught] == ["online", "offline"]
    assert modes == ["online", "offline", "disabled"] and logger.mode == "disabled"
    logger.finalize("success")


def test_unreachable_online_wandb_ends_in_an_offline_run_with_the_same_id(
    no_credentials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real service, online with a key but nothing listening: the half-started run is torn down first, so the
    offline run can take the same id (it used to fail with "run ID ... is in use" and end disabled)."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: connection refused
    logger = WandbLogger(mode="online", save_dir=str(tmp_path), id="nlbtest01", init_timeout=3)
    with pytest.warns(UserWarning, match="falling back to offline"):
        run = logger.experiment
    assert logger.mode == "offline" and run.id == "nlbtest01"
    run.log({"x": 1.0})
    with caplog.at_level(logging.INFO):
        logger.finalize("success")
    assert list((tmp_path / "wandb").glob("offline-run-*-nlbtest01"))
    assert any("wandb sync" in r.getMessage() and "offline-run-" in r.getMessage() for r in caplog.records)


def test_wandb_run_ids_are_stored_and_reused_only_on_resume(tmp_path: Path) -> None:
    first = wandb_run_id(tmp_path, resuming=False)
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == first
    assert wandb_run_id(tmp_path, resuming=True) == first
    assert wandb_run_id(tmp_path, resuming=False) != first
