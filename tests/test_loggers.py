"""W&B mode resolution, the fallback that never fails a run, and run naming."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
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


def wandb_records(path: Path) -> Iterator[object]:
    """The protobuf records of an offline run's ``run-<id>.wandb`` file. W&B (0.31) writes it from its Go core,
    which no longer ships a Python reader: the format is LevelDB's log (a 7-byte ``:W&B`` header, then 32 KiB blocks
    of records, each a 4-byte checksum, a 2-byte length, a type: 1 full, 2 first, 3 middle, 4 last). This test breaks
    if W&B changes it."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file in the expected format"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a record header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_the_readme_wandb_recipe_finds_its_names_in_an_offline_run(tmp_path: Path, monkeypatch) -> None:
    """Issue 26 item 11: the summary holds val/acc1_best as a plain number (not {"max": ...}, which the UI shows as
    val/acc1_best.max), lr/initial beside the scheduled lr, and every name the README's recipe uses is there."""
    from tinyfit import FAST_DEMO, REPO, with_options

    from nlbench.lightning_cli import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "fit",
                *with_options(FAST_DEMO, "--trainer.max_epochs=2", "--trainer.limit_train_batches=4"),
                "--model.optimizer.init_args.lr=0.05",
                f"--run_dir={run_dir}",
            ]
        )
        == 0
    )
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    config, summary, history = {}, {}, set()
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        items = {
            "config": lambda record=record: record.config.update,
            "summary": lambda record=record: record.summary.update,
            "history": lambda record=record: record.history.item,
        }.get(kind, lambda: [])()
        for item in items:
            key = item.key or "/".join(item.nested_key)
            if kind == "history":
                history.add(key)
            else:
                (config if kind == "config" else summary)[key] = json.loads(item.value_json)
    result = json.loads((run_dir / "result.json").read_text())
    assert summary["val/acc1_best"] == pytest.approx(result["metrics"]["val/acc1_best"])  # a number, the best
    assert summary["lr/initial"] == 0.05 and summary["lr"] != 0.05  # the configured lr beside the scheduled one
    section = (REPO / "README.md").read_text().split("### The comparison in the W&B UI", 1)[1].split("\n## ", 1)[0]
    names = {name for name in re.findall(r"`([^`]+)`", section) if " " not in name}
    assert {"normalization", "reduction", "val/acc1_best", "lr/initial", "trainer/global_step"} <= names
    for name in names:
        if name in summary:
            assert isinstance(summary[name], (int, float)), (name, summary[name])
        assert name in config or name in summary or name in history, name
