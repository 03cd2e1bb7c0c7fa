"""`nlbench bench device-check --smoke`: the GPU check's own script, end to end on the CPU at tiny sizes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import lightning as L

import pytest
import torch

from nlbench.bench import device_check
from nlbench.bench.block import VARIANTS
from nlbench.bench.device_check import FULL, GRID_EPOCHS, GRID_RUNS, Budget, grid_projection, packed_phase
from fakecuda import FakeCuda
from nlbench.classifier import ImageClassifier
from nlbench.data import CIFAR10DataModule
from nlbench.device_share import MEMORY_FRACTION_ENV
from nlbench.data.synthetic import write_cifar10


def test_smoke_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "dc"
    assert device_check.main(["--smoke", "--out", str(out)]) == 0
    results = json.loads((out / "device_check.json").read_text())
    assert results["smoke"] and results["device"] == "cpu"
    assert not [name for name in ("block", "train_step", "epoch", "precision", "packed") if "error" in results[name]]
    assert {r["variant"] for r in results["block"]} == {v.name for v in VARIANTS}
    assert all(r["time_ms"] > 0 for r in results["block"])
    steps = {(r["setting"], r["normalization"]): r["images_per_s"] for r in results["train_step"]}
    assert set(steps) == {(s, n) for s in ("fp32", "bf16") for n in ("softmax", "scale")} and min(steps.values()) > 0
    assert results["epoch"]["train_images"] == device_check.SMOKE.train_images and results["epoch"]["epoch_s"] > 0
    # the packed phase for k = 2 ran end to end: children, memory-share env, common window (MPS: CUDA only)
    assert [(r["k"], r["mps"]) for r in results["packed"]] == [(1, False), (2, False), (2, True)]
    assert all(r["images_per_s"] > 0 for r in results["packed"] if not r["mps"])
    assert results["packed"][2]["skipped"] == "MPS is a CUDA feature"
    assert results["packed"][0]["speedup"] == 1.0 and results["grid"]["hours"] > 0
    assert [r["precision"] for r in results["precision"]] == ["32-true", "bf16-mixed"]
    assert all(0 <= r["val_acc1"] <= 1 and r["val_loss"] > 0 for r in results["precision"])
    assert results["versions"]["torch"] == torch.__version__ and results["versions"]["lightning"]
    table = (out / "device_check.md").read_text()
    for heading in ("| check | figure, or why there is none |", "## NL block", "## Training step", "## Epoch",
                    "## bf16-mixed vs fp32", "## Packed runs", "## Projected CIFAR-10 grid"):  # fmt: skip
        assert heading in table
    assert "bf16+compile | skipped (smoke run)" in table and "| packed k=2 + MPS, speed-up | MPS is a CUDA" in table


def test_grid_projection_scales_the_epoch_and_uses_the_best_packing() -> None:
    epoch = {"train_s": 1.0, "train_images": 5000, "val_s": 0.5, "val_images": 1000, "epoch_s": 1.5, "fit_s": 20.0,
             "epochs": [{"epoch_s": 1.5}]}  # fmt: skip
    packed = [{"k": 1, "speedup": 1.0, "startup_s": 10.0}, {"k": 4, "speedup": 3.0, "startup_s": 20.0},
              {"k": 8, "skipped": "time budget"}]  # fmt: skip
    grid = grid_projection(epoch, packed)
    epoch_s = FULL.train_images / 5000 * 1.0 + FULL.test_images / 1000 * 0.5  # 10 s + 5 s
    assert grid["epoch_s"] == pytest.approx(epoch_s) and grid["best_k"] == 4
    assert grid["hours"] == pytest.approx((GRID_RUNS * GRID_EPOCHS * epoch_s / 3 + GRID_RUNS * 20.0 / 4) / 3600)
    assert grid_projection({"error": "x"}, packed) == {"error": "no epoch time measured"}


def test_spent_budget_skips_the_packed_runs(tmp_path: Path) -> None:
    records = packed_phase(torch.device("cpu"), device_check.SMOKE, tmp_path, Budget(0.0), smoke=True)
    assert records == [{"k": 1, "mps": False, "skipped": "time budget", "speedup": None},
                       {"k": 2, "mps": False, "skipped": "time budget", "speedup": None},
                       {"k": 2, "mps": True, "skipped": "MPS is a CUDA feature", "speedup": None}]  # fmt: skip


def test_packed_children_get_the_device_as_given_and_resolve_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the children get ``cuda`` (no index): the memory cap goes to the current device, not a crash."""
    cuda = FakeCuda(monkeypatch, count=1)
    monkeypatch.setenv(MEMORY_FRACTION_ENV, "0.45")
    assert device_check.child_device("cuda") == torch.device("cuda") and cuda.fractions == {0: 0.45}


def test_the_packed_window_starts_after_the_first_epochs_short_batch() -> None:
    assert device_check.packed_warmup(FULL) > -(-FULL.train_images // 128)  # 391 steps in a CIFAR-10 epoch
    assert device_check.packed_warmup(device_check.SMOKE) > -(-device_check.SMOKE.train_images // 128)


def test_one_reduce_overhead_row_is_measured_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[Any] = []

    def fake_loop(model: Any, dm: Any, device: Any, steps: int, warmup: int, bf16: bool, *, channels_last: bool,
                  compile: Any) -> float:  # fmt: skip
        measured.append(compile)
        return 1.0

    monkeypatch.setattr(device_check, "plain_loop", fake_loop)
    root = write_cifar10(tmp_path, train=64, test=8)
    sizes = dataclasses.replace(device_check.SMOKE, compile_modes=("default", "reduce-overhead"), reserve_s=0)
    records = device_check.train_step_phase(torch.device("cpu"), sizes, root, Budget(0.0))  # budget spent already
    assert measured == ["reduce-overhead", None, None, None, None]  # the first row, then the eager rows
    assert records[0]["setting"] == "bf16+compile(reduce-overhead)" and records[0]["images_per_s"] == 1.0
    assert [r.get("skipped") for r in records if r["setting"] == "bf16+compile(default)"] == ["time budget"] * 2


def test_sync_debug_is_off_in_the_timed_epochs(tmp_path: Path) -> None:
    modes: list[Any] = []
    seen: list[tuple[int, Any]] = []
    debug = device_check.SyncDebugFirstEpoch(modes.append)

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            seen.append((trainer.current_epoch, modes[-1] if modes else None))

    dm = CIFAR10DataModule(data_dir=str(write_cifar10(tmp_path, train=64, test=8)), verify=False, batch_size=32)
    model = ImageClassifier(device_check._model("scale"), optimizer=device_check.SGD)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[debug, Watch()])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert seen == [(0, "warn")] * 2 + [(1, 0)] * 2 + [(2, 0)] * 2 and modes == ["warn", 0]


def test_synthetic_cifar10_is_read_by_the_real_loader(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, train=103, test=7, seed=1)
    dm = CIFAR10DataModule(data_dir=str(root), verify=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm._arrays["train"].images.shape == (103, 3, 32, 32) and dm._arrays["val"].images.shape == (7, 3, 32, 32)
    assert dm.class_names[0] == "airplane" and int(dm._arrays["train"].labels.max()) < 10
    with pytest.raises(ValueError, match="need at least 5 training and 1 test image"):
        write_cifar10(tmp_path / "x", train=3, test=1)
