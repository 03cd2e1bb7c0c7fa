"""`trainer.deterministic: true` on CUDA, checked on the CPU against the contracts torch and Lightning state:
no backbone module is one that torch documents as raising under deterministic algorithms on CUDA (the backbones'
AdaptiveAvgPool2d was), Lightning sets the cuBLAS workspace variable, and the softmax block switches SDPA to its
math kernel where the fused kernels' backward is nondeterministic (a fake that lists the CPU among those devices
shows the switch; the kernel is read off the ATen op the call dispatched to)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import lightning as L
import pytest
import torch
from torch import nn

from nlbench.models import PreActResNet, PreActResNetTiny, WideResNet
from nlbench.models.preact_resnet import GlobalAvgPool2d
from nlbench.nn import NLConfig, NonLocal2d, attention
from nlbench.nn.sdpa import kernels_in


@pytest.fixture
def deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def modules_refused_on_cuda() -> tuple[type, ...]:
    """The module classes torch's own documentation says throw under ``use_deterministic_algorithms(True)`` (on
    CUDA, most when differentiated): the section after "will throw a RuntimeError" of its docstring."""
    doc = torch.use_deterministic_algorithms.__doc__ or ""
    section = doc.split("normally-nondeterministic operations will throw")[1]
    names = re.findall(r":class:`torch\.nn\.(\w+)`", section)
    assert "AdaptiveAvgPool2d" in names  # the contract this test reads (it breaks if torch's docs change shape)
    return tuple(getattr(nn, name) for name in names if hasattr(nn, name))


@pytest.mark.parametrize(
    "backbone",
    [
        lambda: PreActResNet(depth=20, nl=NLConfig(normalization="softmax", subsample=True)),
        lambda: PreActResNet(depth=20, block="gc"),
        lambda: PreActResNet(depth=20, block="se"),
        lambda: WideResNet(depth=10, widen=1),
        lambda: PreActResNetTiny(depth=18),
    ],
)
def test_no_backbone_module_is_refused_by_deterministic_cuda(backbone) -> None:
    refused = modules_refused_on_cuda()
    assert [type(m).__name__ for m in backbone().modules() if isinstance(m, refused)] == []


def test_global_average_pooling_is_the_mean_adaptive_pooling_computed() -> None:
    x = torch.randn(3, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    ours, theirs = GlobalAvgPool2d()(x), nn.AdaptiveAvgPool2d(1)(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-15, atol=1e-15)
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (grad_theirs,) = torch.autograd.grad(theirs.square().sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-15, atol=1e-15)
    x32 = torch.randn(4, 64, 8, 8).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(GlobalAvgPool2d()(x32), nn.AdaptiveAvgPool2d(1)(x32))


def test_a_checkpoint_of_the_adaptive_pooling_head_loads() -> None:
    """The pooling module has no state: checkpoints written with AdaptiveAvgPool2d load unchanged."""
    model = PreActResNet(depth=20)
    assert not [k for k in model.state_dict() if ".pool." in k]


def test_lightning_sets_the_cublas_workspace_for_deterministic_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        L.Trainer(
            accelerator="cpu",
            deterministic=True,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")  # cuBLAS's documented settings
    finally:
        torch.use_deterministic_algorithms(before)


def softmax_block() -> NonLocal2d:
    return NonLocal2d(16, normalization="softmax", heads=2, reduction=1)


def kernels_of(block: nn.Module, x: torch.Tensor) -> list[str]:
    return kernels_in(lambda: block(x).sum().backward())


def test_softmax_uses_the_fused_kernel_unless_deterministic_on_a_nondeterministic_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block, x = softmax_block(), torch.randn(2, 16, 6, 6, requires_grad=True)
    assert kernels_of(block, x) == ["flash (cpu)"]
    torch.use_deterministic_algorithms(True)
    try:
        assert kernels_of(block, x) == ["flash (cpu)"]  # the CPU's flash kernel is deterministic: kept
        # The fake: the CPU listed among the devices whose fused kernels are nondeterministic (CUDA's contract).
        monkeypatch.setattr(attention, "NONDETERMINISTIC_SDPA_DEVICES", ("cuda", "cpu"))
        assert kernels_of(block, x) == ["math"]
        compiled = torch.compile(block, backend="eager", fullgraph=True)  # no graph break from the switch
        assert kernels_of(compiled, x) == ["math"]
    finally:
        torch.use_deterministic_algorithms(False)
    assert kernels_of(block, x) == ["flash (cpu)"]


def test_the_math_kernel_gives_the_fused_kernels_output() -> None:
    block, x = softmax_block().double(), torch.randn(2, 16, 6, 6, dtype=torch.float64)
    fused = block(x)
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
        torch.testing.assert_close(block(x), fused, rtol=1e-12, atol=1e-12)
