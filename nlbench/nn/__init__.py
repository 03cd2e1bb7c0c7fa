"""Building blocks: the non-local block, its attention normalizations (a registry), the peer blocks (GC, SE) and the
positional encoding.

NLConfig (the vocabulary) is imported eagerly and is torch-free, so readers of the run record (``nlbench report``)
can use it without the training stack; the torch modules load on first use (PEP 562 module ``__getattr__``).
"""

from importlib import import_module
from typing import Any

from nlbench.nn.config import NLConfig
from nlbench.nn.registry import (
    BLOCKS,
    NORMALIZATIONS,
    MethodInfo,
    block_info,
    block_name,
    method_info,
    method_name,
    register_block,
    register_normalization,
)

_LAZY = {
    "apply_similarity": "nlbench.nn.attention",
    "attention_weights": "nlbench.nn.attention",
    "scale_divisor": "nlbench.nn.attention",
    "scaled_attention": "nlbench.nn.attention",
    "scaled_attention_projected": "nlbench.nn.attention",
    "softmax_attention": "nlbench.nn.attention",
    "NonLocal2d": "nlbench.nn.nonlocal_block",
    "GlobalContext2d": "nlbench.nn.global_context",
    "SqueezeExcite2d": "nlbench.nn.squeeze_excite",
    "SoftmaxAttention": "nlbench.nn.normalizations",
    "ScaleAttention": "nlbench.nn.normalizations",
    "LinearAttention": "nlbench.nn.normalizations",
    "EfficientAttention": "nlbench.nn.normalizations",
    "create_normalization": "nlbench.nn.normalizations",
    "linear_attention": "nlbench.nn.attention",
    "efficient_attention": "nlbench.nn.attention",
    "SinusoidalPositionalEncoding2d": "nlbench.nn.posenc",
    "sinusoidal_table_2d": "nlbench.nn.posenc",
}

__all__ = [
    "BLOCKS",
    "NORMALIZATIONS",
    "MethodInfo",
    "NLConfig",
    "block_info",
    "block_name",
    "method_info",
    "method_name",
    "register_block",
    "register_normalization",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nlbench.nn' has no attribute {name!r}")
