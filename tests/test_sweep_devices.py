"""Device slots: N simulated GPUs and devices_per_run k -> floor(N / k) pinned slots; no GPU -> one CPU slot."""

from __future__ import annotations

import pytest
import torch

from nlbench.sweep.devices import Slot, parse_devices, plan_slots, visible_gpus


@pytest.mark.parametrize(
    ("n_gpus", "per_run", "expected"),
    [
        (0, 1, [()]),
        (1, 1, [("0",)]),
        (4, 1, [("0",), ("1",), ("2",), ("3",)]),
        (4, 2, [("0", "1"), ("2", "3")]),
        (5, 2, [("0", "1"), ("2", "3")]),  # the fifth GPU stays idle
        (8, 3, [("0", "1", "2"), ("3", "4", "5")]),
        (4, 4, [("0", "1", "2", "3")]),
    ],
)
def test_slots_split_the_gpus(n_gpus: int, per_run: int, expected: list[tuple[str, ...]]) -> None:
    slots = plan_slots([str(i) for i in range(n_gpus)], per_run)
    assert [s.gpus for s in slots] == expected


def test_slot_environment_and_trainer_arguments() -> None:
    cpu, one, two = Slot(), Slot(("3",)), Slot(("4", "6"))
    assert cpu.env() == {} and cpu.fit_args() == ["--trainer.accelerator=cpu", "--trainer.devices=1"]
    assert one.env() == {"CUDA_VISIBLE_DEVICES": "3"}
    assert one.fit_args() == ["--trainer.accelerator=gpu", "--trainer.devices=1"]
    assert two.env() == {"CUDA_VISIBLE_DEVICES": "4,6"}
    assert two.fit_args() == ["--trainer.accelerator=gpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    assert "--trainer.strategy=ddp" not in two.fit_args(strategy_given=True)  # the spec chose a strategy


def test_impossible_layouts_are_refused() -> None:
    with pytest.raises(ValueError, match=r"devices_per_run=2 but only 1 GPU\(s\) visible: 0"):
        plan_slots(["0"], 2)
    with pytest.raises(ValueError, match="devices_per_run=2 needs GPUs, but none are visible"):
        plan_slots([], 2)


def test_visible_gpus_keep_the_parent_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert visible_gpus() == ["5", "7"]  # children must be pinned to the physical ids, not 0 and 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert plan_slots(visible_gpus(), 1) == [Slot()]


def test_devices_option() -> None:
    assert parse_devices("auto") is None
    assert parse_devices("cpu") == []
    assert parse_devices("0, 2") == ["0", "2"]
    with pytest.raises(ValueError, match="--devices"):
        parse_devices("0,,1")
    with pytest.raises(ValueError, match="--devices"):
        parse_devices("1,1")
