"""Building blocks: the non-local block, its attention kernels and the positional encoding."""

from typing import Any

from nlbench.nn.config import NLConfig

# Everything but NLConfig needs torch: imported on first use, so that readers of the vocabulary (nlbench.run, the
# sweep and report commands) start without it.
_LAZY = {
    "apply_similarity": "nlbench.nn.attention",
    "attention_weights": "nlbench.nn.attention",
    "scale_divisor": "nlbench.nn.attention",
    "scaled_attention": "nlbench.nn.attention",
    "scaled_attention_projected": "nlbench.nn.attention",
    "softmax_attention": "nlbench.nn.attention",
    "NonLocal2d": "nlbench.nn.nonlocal_block",
    "SinusoidalPositionalEncoding2d": "nlbench.nn.posenc",
    "sinusoidal_table_2d": "nlbench.nn.posenc",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NLConfig",
    "NonLocal2d",
    "SinusoidalPositionalEncoding2d",
    "apply_similarity",
    "attention_weights",
    "scale_divisor",
    "scaled_attention",
    "scaled_attention_projected",
    "sinusoidal_table_2d",
    "softmax_attention",
]
