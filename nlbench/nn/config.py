"""The non-local block's options, as one dataclass that configs, backbones and sweeps share.

The field names are the words used everywhere else (YAML keys, sweep axes, W&B run names, report columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

# A registered name (softmax, scale, linear, efficient; see nlbench.nn.registry) or a class path
# (my_pkg.attn.SigmoidAttention) to an nn.Module with forward(q, k, v): docs/extending.md.
Normalization = str
Order = Literal["reassociated", "nxn"]
Similarity = Literal["dot", "magnitude", "direction"]
Init = Literal["normal", "zeros", "kaiming"]
ScaleDivisor = Union[Literal["sqrt_n", "sqrt_nd", "n"], float]
# "official": the official code's embedding widths, C / h per head for h > 1 heads (total C), C / 2 for one head.
Width = Union[Literal["official"], int, None]
# Where a backbone puts its NL blocks, and how it initialises its classifier, unless told otherwise (the official
# code's choices; the backbones' defaults and the run-name rules read them from here).
DEFAULT_NL_STAGES: tuple[int, ...] = (2,)
FcInit = Literal["kaiming", "pytorch"]
DEFAULT_FC_INIT: FcInit = "kaiming"


@dataclass(frozen=True)
class NLConfig:
    """Options of one 2-D non-local block (defaults follow the official code). Frozen: backbones share one
    default instance, and the blocks only read it.

    Attributes:
        normalization: "softmax" (embedded Gaussian), "scale" (the paper's method: divide by a constant), "linear"
            (Katharopoulos et al. 2020), "efficient" (Shen et al. 2021), or a class path to a user's module
            (docs/extending.md).
        reduction: embedding width d = channels // reduction (ignored when ``width`` is given).
        width: explicit total embedding width d, overriding ``reduction``; or "official": the official code's
            widths, C / h per head for h > 1 heads (total width C) and C / 2 for one head.
        heads: number of heads; the embedding width d is split into ``heads`` heads of width d / heads.
        scale: divisor for "scale" (a warning when set for a method that ignores it): "sqrt_n" (sqrt of the number M
            of key positions, official N x N head), "sqrt_nd" (sqrt(M * d_head), the official re-associated "T"
            head), "n" (M), or a number.
        order: for "scale" (a warning when set for a method that ignores it), "reassociated" (theta (phi^T g),
            O(N d^2)) or "nxn" (the N x N map, O(N^2 d)).
        similarity: "dot" (default), "magnitude" (norms only) or "direction" (cosine), applied to theta and phi.
        init: initialisation of theta/phi/g/W_z: "normal" (std 0.01), "zeros" or "kaiming".
        pos_encoding: add a fixed 2-D sinusoidal positional encoding to the block input.
        subsample: 2x2 max-pool phi and g (keys/values) as in the original non-local paper.
    """

    normalization: Normalization = "scale"
    reduction: int = 2
    width: Width = None
    heads: int = 1
    scale: ScaleDivisor = "sqrt_n"
    order: Order = "reassociated"
    similarity: Similarity = "dot"
    init: Init = "normal"
    pos_encoding: bool = True
    subsample: bool = False
