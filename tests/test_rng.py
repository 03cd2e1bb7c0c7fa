"""`nlbench.rng.RandomState` across a change of devices: the CUDA state of the run's own device, by local index, and
ranks the checkpoint has no states for (fake CUDA runtime: torch's own device checks still run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from fakecuda import FakeCuda

from nlbench.rng import RandomState


def _callback(device: str, *, rank: int = 0, world: int = 1, generator: torch.Generator | None = None) -> RandomState:
    datamodule = SimpleNamespace(augmentation_generator=lambda _device: generator)
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)),
        global_rank=rank,
        world_size=world,
        datamodule=datamodule,
    )
    callback = RandomState()
    callback.setup(trainer, None, "fit")  # type: ignore[arg-type]
    return callback


def test_a_sweep_run_resumes_exactly_on_a_machine_with_more_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started by the sweep with one visible GPU, resumed by hand where eight are visible: the state was dropped."""
    cuda = FakeCuda(monkeypatch, count=1)
    cuda.rng[0] = torch.tensor([42, 7], dtype=torch.uint8)
    saved = _callback("cuda").state_dict()  # Lightning's root device of a single-GPU run: cuda:0
    assert saved["ranks"][0]["cuda_device"] == 0
    eight = FakeCuda(monkeypatch, count=8)
    _callback("cuda:0").load_state_dict(saved)
    assert eight.rng[0].tolist() == [42, 7]
    moved = FakeCuda(monkeypatch, count=8)  # resumed on another GPU of the machine: onto the run's device now
    _callback("cuda:5").load_state_dict(saved)
    assert moved.rng[5].tolist() == [42, 7] and moved.rng[0].tolist() == [0]


def test_a_real_mismatch_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCuda(monkeypatch, count=1)
    saved = _callback("cuda:0").state_dict()
    with pytest.warns(UserWarning, match="saved on a GPU and the run resumes on the CPU"):
        _callback("cpu").load_state_dict(saved)


def test_extra_ddp_ranks_do_not_repeat_rank_0s_augmentations() -> None:
    rank0 = torch.Generator().manual_seed(1)
    saved = _callback("cpu", generator=rank0).state_dict()
    own = torch.Generator().manual_seed(2)  # what the DataModule seeds from the rank
    before = own.get_state()
    with pytest.warns(UserWarning, match=r"Resuming 1 process\(es\)' random states in 2"):
        _callback("cpu", rank=0, world=2, generator=torch.Generator()).load_state_dict(saved)
    _callback("cpu", rank=1, world=2, generator=own).load_state_dict(saved)
    assert torch.equal(own.get_state(), before) and not torch.equal(own.get_state(), rank0.get_state())


def test_cpu_states_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    saved: dict[str, Any] = _callback("cpu").state_dict()
    expected = torch.rand(3)
    torch.manual_seed(4)
    _callback("cpu").load_state_dict(saved)
    assert torch.equal(torch.rand(3), expected)
