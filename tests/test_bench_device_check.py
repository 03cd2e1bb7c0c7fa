"""`nlbench bench device-check --smoke`: the GPU check's own script, end to end on the CPU at tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nlbench.bench import device_check
from nlbench.bench.block import VARIANTS
from nlbench.bench.device_check import FULL, GRID_EPOCHS, GRID_RUNS, Budget, grid_projection, packed_phase
from nlbench.data import CIFAR10DataModule
from nlbench.data.synthetic import write_cifar10


def test_smoke_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "dc"
    assert device_check.main(["--smoke", "--out", str(out)]) == 0
    results = json.loads((out / "device_check.json").read_text())
    assert results["smoke"] and results["device"] == "cpu"
    assert not [name for name in ("block", "train_step", "epoch", "packed") if "error" in results[name]]
    assert {r["variant"] for r in results["block"]} == {v.name for v in VARIANTS}
    assert all(r["time_ms"] > 0 for r in results["block"])
    steps = {(r["setting"], r["normalization"]): r["images_per_s"] for r in results["train_step"]}
    assert set(steps) == {(s, n) for s in ("fp32", "bf16") for n in ("softmax", "scale")} and min(steps.values()) > 0
    assert results["epoch"]["train_images"] == device_check.SMOKE.train_images and results["epoch"]["epoch_s"] > 0
    assert [r["k"] for r in results["packed"]] == [1, 2] and all(r["images_per_s"] > 0 for r in results["packed"])
    assert results["packed"][0]["speedup"] == 1.0 and results["grid"]["hours"] > 0
    table = (out / "device_check.md").read_text()
    for heading in ("## NL block", "## Training step", "## Epoch", "## Packed runs", "## Projected CIFAR-10 grid"):
        assert heading in table
    assert "bf16+compile | skipped (smoke run)" in table


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
    assert records == [{"k": 1, "skipped": "time budget", "speedup": None},
                       {"k": 2, "skipped": "time budget", "speedup": None}]  # fmt: skip


def test_synthetic_cifar10_is_read_by_the_real_loader(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, train=103, test=7, seed=1)
    dm = CIFAR10DataModule(data_dir=str(root), verify=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm._arrays["train"].images.shape == (103, 3, 32, 32) and dm._arrays["val"].images.shape == (7, 3, 32, 32)
    assert dm.class_names[0] == "airplane" and int(dm._arrays["train"].labels.max()) < 10
    with pytest.raises(ValueError, match="need at least 5 training and 1 test image"):
        write_cifar10(tmp_path / "x", train=3, test=1)
