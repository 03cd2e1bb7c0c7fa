"""The attention math of the non-local block, as plain functions on (batch, heads, positions, width) tensors.

Queries q are (B, h, N, d), keys k (B, h, M, d) and values v (B, h, M, d_v); N query and M key positions (M < N
when keys are sub-sampled). The functions return (B, h, N, d_v), the explicit map (B, h, N, M), or for
``scaled_attention_projected`` the already projected (B, C, N).

Precision: sums over positions (the softmax normaliser, phi^T g, the N x N map times g) run in float32 when the
inputs are float16/bfloat16, with autocast off, because they accumulate N terms of growing magnitude (float16
overflows at 65504). Sums over the embedding width stay in the input precision.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from nlbench.nn.config import Order, ScaleDivisor, Similarity

# The accepted words, read off the NLConfig types so that the two cannot drift apart.
SIMILARITIES: tuple[str, ...] = get_args(Similarity)
ORDERS: tuple[str, ...] = get_args(Order)
# The normalizations `attention_weights` knows by name (the paper's two); every method: nlbench.nn.registry.
NORMALIZATIONS: tuple[str, ...] = ("softmax", "scale")
SCALE_NAMES: tuple[str, ...] = get_args(get_args(ScaleDivisor)[0])


def _accumulation_dtype(t: Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _autocast_off(t: Tensor) -> AbstractContextManager:
    return torch.autocast(device_type=t.device.type, enabled=False)


def _norm_float32_under_autocast(t: Tensor) -> Tensor:
    """Per-head L2 norm (width-1 vector) summed in float32; kept in float32 under autocast (a bf16 norm carries
    3 significant digits, which the magnitude ablation's logits |q| |k| are made of), else in the input dtype."""
    norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True, dtype=torch.promote_types(t.dtype, torch.float32))
    return norm if torch.is_autocast_enabled(t.device.type) else norm.to(t.dtype)


def apply_similarity(q: Tensor, k: Tensor, similarity: Similarity) -> tuple[Tensor, Tensor]:
    """Transform queries and keys (never values) for the paper's similarity ablation, per head.

    "dot" leaves them alone; "magnitude" replaces each per-head vector by its L2 norm, a width-1 vector, so the logit
    is |q_i| |k_j|; "direction" L2-normalises each per-head vector, so the logit is the cosine.
    """
    if similarity == "dot":
        return q, k
    if similarity == "magnitude":
        return _norm_float32_under_autocast(q), _norm_float32_under_autocast(k)
    if similarity == "direction":
        return F.normalize(q, dim=-1).to(q.dtype), F.normalize(k, dim=-1).to(k.dtype)
    raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}")


def scale_divisor(scale: ScaleDivisor, num_keys: int, *, head_width: int) -> float:
    """The divisor s of the scaled block: sqrt(M) for "sqrt_n" (official N x N head), sqrt(M * d_head) for
    "sqrt_nd" (the official re-associated "T" head), M for "n", or the number itself."""
    if scale == "sqrt_n":
        return math.sqrt(num_keys)
    if scale == "sqrt_nd":
        return math.sqrt(num_keys * head_width)
    if scale == "n":
        return float(num_keys)
    if isinstance(scale, str):
        raise ValueError(f"scale must be one of {', '.join(SCALE_NAMES)} or a positive number; got {scale!r}")
    return float(scale)


def attention_weights(q: Tensor, k: Tensor, *, normalization: str, divisor: float = 1.0) -> Tensor:
    """The explicit (B, h, N, M) map: softmax(q k^T) for "softmax", q k^T / divisor for "scale".

    Computed in float32 (or float64 for float64 inputs). Memory is O(N M): meant for analysis on small inputs and
    for the N x N reference order.
    """
    dtype = _accumulation_dtype(q)
    with _autocast_off(q):
        logits = torch.matmul(q.to(dtype), k.to(dtype).transpose(-2, -1))
        if normalization == "softmax":
            return torch.softmax(logits, dim=-1)
        if normalization == "scale":
            return logits / divisor
    raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}; got {normalization!r}")


# Devices whose fused SDPA kernels (flash, memory-efficient, cuDNN) have a nondeterministic backward.
NONDETERMINISTIC_SDPA_DEVICES: tuple[str, ...] = ("cuda",)


def deterministic_sdpa(t: Tensor) -> bool:
    """Whether SDPA must run its math kernel for `t`: deterministic algorithms are on
    (``torch.use_deterministic_algorithms(True)``, which ``trainer.deterministic: true`` sets) and the device's
    fused kernels are nondeterministic in backward (CUDA: their gradients accumulate atomically). The math kernel
    is the explicit softmax(q k^T) v: deterministic, and O(N M) memory."""
    return t.device.type in NONDETERMINISTIC_SDPA_DEVICES and torch.are_deterministic_algorithms_enabled()


def softmax_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Embedded-Gaussian attention softmax_j(q_i . k_j) v_j via the fused SDPA kernels (the math kernel when
    :func:`deterministic_sdpa`).

    ``scale=1.0``: the non-local block (and the official code) use the plain dot product, no 1/sqrt(d). Inputs
    are made contiguous because the fused kernels need a unit-stride last dim (the block's are transposed views of
    channel-first conv outputs); otherwise SDPA silently falls back to the math kernel that materialises N x M.
    """
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if deterministic_sdpa(q):
        with sdpa_kernel([SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v, scale=1.0)
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)


def scaled_attention(q: Tensor, k: Tensor, v: Tensor, *, divisor: float, order: Order = "reassociated") -> Tensor:
    """The paper's scaled attention y_i = sum_j (q_i . k_j / divisor) v_j, in either evaluation order.

    "reassociated": q (k^T v / divisor): O(N d d_v) time and O(d d_v) extra memory per head. "nxn": the explicit
    (q k^T / divisor) v, O(N M d) time and O(N M) memory. The two are the same function (equal up to rounding).
    Unlike the official re-associated code we do not additionally divide by sqrt(d), so the orders are
    interchangeable.
    """
    if order == "reassociated":
        dtype = _accumulation_dtype(k)
        with _autocast_off(k):
            kv = torch.matmul(k.to(dtype).transpose(-2, -1), v.to(dtype)) / divisor
        return torch.matmul(q, kv.to(q.dtype))
    if order == "nxn":
        weights = attention_weights(q, k, normalization="scale", divisor=divisor)
        with _autocast_off(weights):
            return torch.matmul(weights, v.to(weights.dtype)).to(v.dtype)
    raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")


def scaled_attention_projected(q: Tensor, k: Tensor, v: Tensor, weight: Tensor, *, divisor: float) -> Tensor:
    """``weight`` applied to the concatenated heads of re-associated scaled attention, folded: (B, C, N).

    Equals ``weight @ concat_heads(scaled_attention(q, k, v))`` for a (C, h * d_v) weight (the block's W_z), but
    applies the weight to the per-head (d_v x d) summaries v^T k / divisor instead of to the N outputs: the
    per-position work is one (C x h d) GEMM instead of the (d x d_v) product plus the (C x h d_v) projection, and
    no (B, h d_v, N) intermediate is stored for backward.

    The output's memory layout follows the queries': position-major (the strides of a channels-last feature map)
    when their positions are not unit-stride, as in a block whose input is channels-last, so that the block's
    output keeps its input's memory format; else channel-major (contiguous).
    """
    b, heads, n, dk = q.shape
    dv = v.shape[-1]
    dtype = _accumulation_dtype(k)
    with _autocast_off(k):
        vk = torch.matmul(v.to(dtype).transpose(-2, -1), k.to(dtype)) / divisor  # (B, h, d_v, d)
        per_head_weight = weight.to(dtype).unflatten(1, (heads, dv)).transpose(0, 1)  # (h, C, d_v)
        folded = torch.matmul(per_head_weight, vk).transpose(1, 2).reshape(b, -1, heads * dk)  # (B, C, h d)
    # A view when q is the transposed view of a channel-first conv output, as in the block.
    queries = q.transpose(-2, -1).reshape(b, heads * dk, n)
    if n > 1 and queries.stride(-1) != 1:  # channels-last input: (B, N, C) rows, returned as a (B, C, N) view
        return torch.matmul(queries.transpose(-2, -1), folded.to(q.dtype).transpose(-2, -1)).transpose(-2, -1)
    return torch.matmul(folded.to(q.dtype), queries)


def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 > 0, the feature map of Katharopoulos et al. (2020)."""
    return F.elu(x) + 1


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Linear attention (Katharopoulos et al., 2020): y_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T
    sum_j phi(k_j) + eps), phi = elu + 1, in O(N d d_v) per head; eps as fast-transformers, against a zero
    denominator. Everything in float32 for half inputs: the key sums accumulate M positive terms."""
    dtype = _accumulation_dtype(k)
    with _autocast_off(k):
        q_feat, k_feat = elu_feature_map(q.to(dtype)), elu_feature_map(k.to(dtype))
        kv = torch.matmul(k_feat.transpose(-2, -1), v.to(dtype))  # (B, h, d, d_v)
        normaliser = torch.matmul(q_feat, k_feat.sum(dim=-2, keepdim=True).transpose(-2, -1))  # (B, h, N, 1)
        return (torch.matmul(q_feat, kv) / (normaliser + eps)).to(v.dtype)


def linear_attention_map(q: Tensor, k: Tensor, *, eps: float = 1e-6) -> Tensor:
    """The (B, h, N, M) map of :func:`linear_attention`: phi(q_i).phi(k_j) / (sum_j' phi(q_i).phi(k_j') + eps)."""
    dtype = _accumulation_dtype(q)
    with _autocast_off(q):
        similarity = torch.matmul(elu_feature_map(q.to(dtype)), elu_feature_map(k.to(dtype)).transpose(-2, -1))
        return similarity / (similarity.sum(dim=-1, keepdim=True) + eps)


def efficient_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Efficient Attention (Shen et al., WACV 2021): y = rho_q(Q) (rho_k(K)^T V), rho_q a softmax of each query over
    its channels, rho_k a softmax of each key channel over the M positions; O(N d d_v) per head."""
    dtype = _accumulation_dtype(k)
    with _autocast_off(k):
        context = torch.matmul(torch.softmax(k.to(dtype), dim=-2).transpose(-2, -1), v.to(dtype))  # (B, h, d, d_v)
        return torch.matmul(torch.softmax(q.to(dtype), dim=-1), context).to(v.dtype)


def efficient_attention_map(q: Tensor, k: Tensor) -> Tensor:
    """The (B, h, N, M) map of :func:`efficient_attention`: rho_q(Q) rho_k(K)^T (each row sums to 1)."""
    dtype = _accumulation_dtype(q)
    with _autocast_off(q):
        return torch.matmul(torch.softmax(q.to(dtype), dim=-1), torch.softmax(k.to(dtype), dim=-2).transpose(-2, -1))


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Correlation along the last dim; 0 where either side is constant up to rounding (key norms under "direction")."""
    a_centred = a - a.mean(dim=-1, keepdim=True)
    b_centred = b - b.mean(dim=-1, keepdim=True)
    a_spread = torch.linalg.vector_norm(a_centred, dim=-1)
    b_spread = torch.linalg.vector_norm(b_centred, dim=-1)
    constant = (a_spread <= 1e-5 * torch.linalg.vector_norm(a, dim=-1)) | (
        b_spread <= 1e-5 * torch.linalg.vector_norm(b, dim=-1)
    )
    correlation = (a_centred * b_centred).sum(dim=-1) / (a_spread * b_spread).clamp_min(1e-30)
    return correlation.masked_fill(constant, 0.0)
