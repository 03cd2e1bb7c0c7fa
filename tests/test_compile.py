"""Compiled training on the CPU with torch._dynamo's counters (backend "eager": Dynamo's graph capture and guards
exactly as with Inductor, without code generation): one graph per (train/eval mode, batch shape), over training
steps, a validation pass and a second epoch, with NL statistics sampled on some steps only."""

from __future__ import annotations

import copy
import functools
from typing import Any

import lightning as L
import pytest
import torch
from torch._dynamo.utils import counters

from nlbench.classifier import ImageClassifier
from nlbench.data import CIFAR10SampleDataModule
from nlbench.models import PreActResNet
from nlbench.nn import NLConfig


@pytest.fixture
def eager_backend(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """torch.compile itself, with the "eager" backend instead of Inductor; records what it was asked for."""
    real, calls = torch.compile, []

    def compile_eagerly(model: Any = None, *, mode: str | None = None, **kwargs: Any) -> Any:
        calls.append({"mode": mode, **kwargs})
        return real(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    torch._dynamo.reset()
    counters.clear()
    yield calls
    torch._dynamo.reset()


def _classifier(**kwargs: Any) -> ImageClassifier:
    torch.manual_seed(0)
    backbone = PreActResNet(num_classes=10, depth=8, nl=NLConfig(normalization="softmax"), nl_stages=[2])
    return ImageClassifier(backbone, optimizer=functools.partial(torch.optim.SGD, lr=0.05), **kwargs)


def test_one_graph_per_mode_and_batch_shape(eager_backend: list[dict[str, Any]]) -> None:
    model = _classifier(compile="default", nl_stats_every_n_steps=2)  # statistics on steps 0, 2, 4, ...
    assert eager_backend == [{"mode": "default", "dynamic": False}]
    dm = CIFAR10SampleDataModule(batch_size=16, eval_batch_size=20, subset=40)  # batches 16, 16, 8 (the short one)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 6
    graphs = counters["stats"]["unique_graphs"]
    # train 16, train 8, eval 20: one graph each, none recompiled (statistics flag, tables, second epoch)
    assert graphs == 3, f"{graphs} graphs, recompiles: {dict(counters['recompiles'])}"
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_a_deep_copy_computes_with_its_own_weights(eager_backend: list[dict[str, Any]]) -> None:
    model = _classifier(compile="default")
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    before = model(x)
    twin = copy.deepcopy(model)  # e.g. an EMA or SWA model
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    assert not torch.allclose(twin(x), before)
    assert torch.equal(model(x), before)


def test_position_tables_are_buffers_built_before_compiling() -> None:
    model = _classifier()
    encoding = model.model.stage2.nonlocal0.pos_encoding
    assert not dict(encoding.named_buffers())
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    dm = CIFAR10SampleDataModule()
    model.trainer, trainer.datamodule = trainer, dm  # type: ignore[misc]
    model.setup("fit")  # one eager forward of a single image: every table exists before the first compiled step
    assert set(dict(encoding.named_buffers())) == {"table_32x32"}
    assert "table_32x32" not in "".join(model.state_dict())  # fixed: never in a checkpoint
    assert model.model.training


def test_magnitude_norms_stay_float32_under_autocast() -> None:
    from nlbench.nn.attention import apply_similarity

    q, k = torch.randn(2, 1, 6, 16).bfloat16(), torch.randn(2, 1, 6, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mq, mk = apply_similarity(q, k, "magnitude")
    assert mq.dtype == mk.dtype == torch.float32
    torch.testing.assert_close(mq, q.float().norm(dim=-1, keepdim=True), rtol=1e-6, atol=0)
    assert apply_similarity(q, k, "magnitude")[0].dtype == torch.bfloat16  # a bf16 model without autocast: bf16
