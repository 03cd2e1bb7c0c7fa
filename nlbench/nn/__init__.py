"""Building blocks: the non-local block, its attention kernels and the positional encoding."""

from nlbench.nn.attention import (
    apply_similarity,
    attention_weights,
    scale_divisor,
    scaled_attention,
    scaled_attention_projected,
    softmax_attention,
)
from nlbench.nn.config import NLConfig
from nlbench.nn.nonlocal_block import NonLocal2d
from nlbench.nn.posenc import SinusoidalPositionalEncoding2d, sinusoidal_table_2d

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
