"""Which kernel ``F.scaled_dot_product_attention`` runs, read off the ATen op it dispatches to.

SDPA picks its kernel per call from the device, dtype, head width, sequence lengths and whether grads are needed
(on Hopper, e.g.: cuDNN attention for bf16 head widths 32/16/8, flash with padding for 4/2; memory-efficient in
fp32, math at width 2), so the softmax block's speed and memory depend on a choice nothing else records. The
probe runs the call (or a whole forward) under the PyTorch profiler, CPU events only, and maps the SDPA ops it
saw to short names. Used by the device check (per reduction and dtype), the block benchmark (beside each row) and
the run record (``machine["sdpa"]``, :data:`nlbench.run.MACHINE_KEYS`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

# The ATen op each SDPA kernel is dispatched as (the profiler's event name) -> its short name.
SDPA_KERNELS: dict[str, str] = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_attention_math_for_mps": "math (mps)",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


@contextlib.contextmanager
def quiet_kineto() -> Iterator[None]:
    """Kineto, the profiler's backend, writes "USDT: ... profiler_start/stop" lines to stderr on every profile (and
    "gpuGetDeviceCount failed" on a CUDA build without a GPU, a false error): level 6 silences them. It reads
    ``KINETO_LOG_LEVEL`` at each profile, so it is set for the profile only (unless the user set it)."""
    if "KINETO_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["KINETO_LOG_LEVEL"] = "6"
    try:
        yield
    finally:
        os.environ.pop("KINETO_LOG_LEVEL", None)


def kernels_in(fn: Callable[[], Any]) -> list[str]:
    """The SDPA kernels `fn` runs, in the order of their first call (empty when it calls no SDPA)."""
    with quiet_kineto(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = [SDPA_KERNELS[e.name] for e in prof.events() if e.name in SDPA_KERNELS]
    return list(dict.fromkeys(names))


def sdpa_kernel_for(
    shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device | str, *, requires_grad: bool = True
) -> str:
    """The kernel SDPA picks for (B, heads, N, d) queries, keys and values of `dtype` on `device` (training:
    `requires_grad`), with the NL block's plain dot product (``scale=1``); '+'-joined if several ran."""
    q, k, v = (torch.randn(shape, dtype=dtype, device=device, requires_grad=requires_grad) for _ in range(3))
    return "+".join(kernels_in(lambda: F.scaled_dot_product_attention(q, k, v, scale=1.0))) or "none"


def model_sdpa_kernels(
    model: torch.nn.Module, example: torch.Tensor, context: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> str | None:
    """The SDPA kernels one eager forward of `model` on `example` runs, as training runs it (grads enabled, the
    precision `context`, e.g. a Lightning precision plugin's ``forward_context``), '+'-joined; None when the model
    calls no SDPA (no softmax block). Eval mode, so no BatchNorm statistics change; compiled code is run eagerly."""
    training = model.training
    model.eval()
    try:
        with torch.enable_grad(), context(), torch.compiler.set_stance("force_eager"):
            kernels = kernels_in(lambda: model(example))
    finally:
        model.train(training)
    return "+".join(kernels) or None
