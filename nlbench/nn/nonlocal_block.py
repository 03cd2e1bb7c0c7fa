"""The 2-D non-local block with every option of the paper's study (softmax vs. scaling and its ablations)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlbench.nn import nl_stats  # noqa: I001 (kept apart from the imports above to keep merges local)
from nlbench.nn.attention import ORDERS, SCALE_NAMES, SIMILARITIES, apply_similarity
from nlbench.nn.config import Init, NLConfig, Normalization, Order, ScaleDivisor, Similarity, Width
from nlbench.nn.normalizations import create_normalization
from nlbench.nn.posenc import SinusoidalPositionalEncoding2d
from nlbench.nn.registry import method_info

INITS: tuple[str, ...] = get_args(Init)
_NOTED: set[str] = set()


def _note_no_map(normalization: str) -> None:
    """Say once per method that its map statistics are skipped (not an error: the map is optional)."""
    if normalization not in _NOTED:
        _NOTED.add(normalization)
        warnings.warn(
            f"normalization {normalization} has no attention_map: the attention statistics that need the "
            "map (key_norm_attention_corr, attention_entropy) are skipped",
            UserWarning,
            stacklevel=3,
        )


def _check_choice(option: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"NonLocal2d: {option} must be one of {', '.join(choices)}; got {value!r}")


def _check_scale(scale: object) -> ScaleDivisor:
    if scale in SCALE_NAMES:
        return scale  # type: ignore[return-value]
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
    if not (number and math.isfinite(scale) and scale > 0):
        raise ValueError(
            f"NonLocal2d: scale must be one of {', '.join(SCALE_NAMES)} or a positive number; got {scale!r}"
        )
    return float(scale)  # type: ignore[arg-type]


def _embedding_width(channels: int, reduction: int, width: Width, heads: int) -> int:
    if channels < 1:
        raise ValueError(f"NonLocal2d: channels must be positive; got {channels}")
    if heads < 1:
        raise ValueError(f"NonLocal2d: heads must be positive; got {heads}")
    if width == "official":
        # The official code's num_c: C / h per head for h > 1 heads, C / 2 for a single head.
        width = channels if heads > 1 else channels // 2
    elif isinstance(width, str) or isinstance(width, bool):
        raise ValueError(f'NonLocal2d: width must be a positive integer, "official" or null; got {width!r}')
    if width is None:
        if reduction < 1:
            raise ValueError(f"NonLocal2d: reduction must be positive; got {reduction}")
        width = channels // reduction
        if width == 0:
            raise ValueError(f"NonLocal2d: width comes out 0 (channels={channels} // reduction={reduction})")
    elif width < 1:
        raise ValueError(f"NonLocal2d: width must be positive; got {width}")
    if width % heads:
        raise ValueError(f"NonLocal2d: width {width} is not divisible by heads={heads}")
    return width


class NonLocal2d(nn.Module):
    """Non-local block x (B, C, H, W) -> z = x' + BN(W_z y), the same shape; x' = x + positional encoding when on.

    theta, phi, g are bias-free 1x1 convs C -> d, W_z a bias-free 1x1 conv d -> C followed by BatchNorm2d(C) whose
    gamma and beta start at 0, so the block starts as the identity (on x'). The positional encoding stays in the
    trunk, as in the official "add_init".

    Width and heads: d = ``width`` if given, else channels // ``reduction``. d is the *total* width, split into
    ``heads`` heads of d / heads channels each (so heads do not change the parameter count). ``width="official"``
    is the official code's default: C / h per head for h > 1 heads (total C), C / 2 for one head.

    Attention per head, with queries theta, keys phi and values g (N query positions, M key positions; M = N
    unless ``subsample`` 2x2 max-pools phi and g, ceil mode so odd sizes keep their border):

    The normalization is a registered module (``self.attention``, see :mod:`nlbench.nn.normalizations`): a
    registered name or a class path with ``forward(q, k, v)``. The built-ins:

    - ``normalization="softmax"`` (embedded Gaussian): y_i = sum_j softmax_j(theta_i . phi_j) g_j, through
      ``F.scaled_dot_product_attention`` with the plain dot product (no 1/sqrt(d), as the official code).
    - ``normalization="scale"`` (the paper): y_i = sum_j (theta_i . phi_j / s) g_j with s = sqrt(M) for
      ``scale="sqrt_n"`` (official), M for "n", or a given number. ``order="reassociated"`` evaluates
      theta (phi^T g) / s in O(N d^2) time and O(d^2) memory per head, with W_z folded into the (d x d) summary
      (see ``scaled_attention_projected``); ``"nxn"`` builds the N x M map. Both orders give the same output for
      every ``scale``. The official re-associated ("T") head additionally divides by sqrt(d_head):
      ``scale="sqrt_nd"`` (s = sqrt(M * d_head), d_head = d / heads) is that head, in either order.
      ``order`` and ``scale`` only apply to "scale" (a warning when set off their default for another method).
    - ``"linear"`` (Katharopoulos et al. 2020, phi = elu + 1) and ``"efficient"`` (Shen et al. 2021): O(N d^2).

    ``similarity`` (theta and phi only): "dot", "magnitude" (logit |theta_i| |phi_j|) or "direction" (cosine). It
    is a plain attribute read in every forward, so analysis can switch it on a trained block.

    ``init`` for theta, phi, g and W_z: "normal" (std 0.01, default), "zeros" or "kaiming" (He normal, fan_out, as
    torchvision's ResNet). With "zeros" every path through the block has zero gradient, so it stays the identity
    (plus a learned per-channel BN bias); this mirrors the official code's zero init. Backbones that re-initialise
    all convs after construction should call :meth:`reset_parameters` on their blocks afterwards.
    """

    def __init__(
        self,
        channels: int,
        *,
        normalization: Normalization = NLConfig.normalization,  # the defaults are NLConfig's
        reduction: int = NLConfig.reduction,
        width: Width = NLConfig.width,
        heads: int = NLConfig.heads,
        scale: ScaleDivisor = NLConfig.scale,
        order: Order = NLConfig.order,
        similarity: Similarity = NLConfig.similarity,
        init: Init = NLConfig.init,
        pos_encoding: bool = NLConfig.pos_encoding,
        subsample: bool = NLConfig.subsample,
    ) -> None:
        super().__init__()
        _check_choice("order", order, ORDERS)
        _check_choice("init", init, INITS)
        self.channels = channels
        self.width = _embedding_width(channels, reduction, width, heads)
        self.heads = heads
        self.normalization = normalization
        self.scale = _check_scale(scale)
        self.order = order
        self.attention = create_normalization(
            normalization, scale=self.scale, order=order, head_width=self.width // heads
        )
        self.similarity = similarity
        self.init = init
        self.subsample = subsample
        self.theta = nn.Conv2d(channels, self.width, 1, bias=False)
        self.phi = nn.Conv2d(channels, self.width, 1, bias=False)
        self.g = nn.Conv2d(channels, self.width, 1, bias=False)
        self.w_z = nn.Conv2d(self.width, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.pos_encoding = SinusoidalPositionalEncoding2d(channels) if pos_encoding else None
        self.reset_parameters()

    @classmethod
    def from_config(cls, channels: int, cfg: NLConfig) -> NonLocal2d:
        return cls(channels, **dataclasses.asdict(cfg))

    @property
    def similarity(self) -> Similarity:
        return self._similarity

    @similarity.setter
    def similarity(self, value: Similarity) -> None:
        _check_choice("similarity", value, SIMILARITIES)
        self._similarity = value

    def reset_parameters(self) -> None:
        for conv in (self.theta, self.phi, self.g, self.w_z):
            if self.init == "normal":
                nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            elif self.init == "zeros":
                nn.init.zeros_(conv.weight)
            else:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        self.bn.reset_parameters()
        nn.init.zeros_(self.bn.weight)

    def _split_heads(self, t: Tensor) -> Tensor:
        """(B, d, H, W) -> (B, heads, H*W, d / heads), a view of the channel-first conv output."""
        return t.flatten(2).unflatten(1, (self.heads, -1)).transpose(-2, -1)

    def _with_position(self, x: Tensor) -> Tensor:
        return x if self.pos_encoding is None else self.pos_encoding(x)

    def _embed(self, x: Tensor, similarity: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries and keys (after ``similarity``, default the block's) and values, each (B, heads, positions,
        width)."""
        # theta, phi and g as one 1x1 conv: one pass over x and one GEMM (forward and backward) instead of three.
        qkv = F.conv2d(x, torch.cat([self.theta.weight, self.phi.weight, self.g.weight]))
        q, kv = qkv.split([self.width, 2 * self.width], dim=1)
        if self.subsample:
            kv = F.max_pool2d(kv, 2, ceil_mode=True)
        k, v = kv.chunk(2, dim=1)
        q, k = apply_similarity(self._split_heads(q), self._split_heads(k), similarity or self.similarity)
        return q, k, self._split_heads(v)

    def forward(self, x: Tensor) -> Tensor:
        x = self._with_position(x)
        q, k, v = self._embed(x)
        b, c, h, w = x.shape
        # The output keeps the input's memory format: a channels-last trunk (experiments/gpu.yaml) gets no layout
        # transposes from the block.
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if getattr(self.attention, "folds_projection", False):
            out = self.attention.forward_projected(q, k, v, self.w_z.weight.flatten(1))  # (B, C, N)
            if channels_last:
                out = out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)  # a view when already N-major
            return x + self.bn(out.reshape(b, c, h, w))
        y = self.attention(q, k, v)  # (B, heads, N, d_v)
        if channels_last:
            y = y.transpose(1, 2).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        else:
            y = y.transpose(-2, -1).reshape(b, -1, h, w)
        return x + self.bn(self.w_z(y))

    @property
    def has_attention_map(self) -> bool:
        """The normalization defines ``attention_map`` (the analysis and the map statistics need it)."""
        return callable(getattr(self.attention, "attention_map", None))

    def queries_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-head queries (B, heads, N, d/heads) and keys (B, heads, M, d/heads) for the input ``x``, before the
        similarity transform: the raw vectors whose magnitude and direction the paper studies."""
        q, k, _ = self._embed(self._with_position(x), similarity="dot")
        return q, k

    def attention_map(self, x: Tensor) -> Tensor:
        """The explicit (B, heads, N, M) weights, in float32: softmax probabilities, the scaled logits for "scale",
        or the normalization's own ``attention_map``. ValueError when the normalization has none.

        y = map @ g reproduces the forward's y. O(N M) memory: for analysis on small inputs; the forward never
        builds it (except for ``order="nxn"``).
        """
        if not self.has_attention_map:
            raise ValueError(f"normalization {method_info(self.normalization).name} has no attention_map")
        q, k, _ = self._embed(self._with_position(x))
        weights = self.attention.attention_map(q, k)
        return weights.float() if weights.dtype in (torch.float16, torch.bfloat16) else weights

    @torch.no_grad()
    def attention_stats(self, x: Tensor, *, max_map_elements: int = 2**24) -> dict[str, Tensor]:
        """Cheap scalar statistics of queries, keys and the attention they induce, for low-frequency logging.

        Norms are of the per-head query/key vectors after ``similarity``; each statistic is computed per (sample,
        head) over positions, then averaged:

        - ``query_norm_mean``, ``key_norm_mean``: mean L2 norms.
        - ``key_norm_cv``: std / mean of the key norms over key positions (how much attention can lean on key
          magnitude, the paper's claim; 0 for "direction").
        - ``key_norm_attention_corr``: Pearson correlation over keys between a key's norm and the attention mass it
          receives (sum over queries of |weight|).
        - ``attention_entropy`` (when the map's rows are distributions: the normalization's ``probabilities``,
          softmax, linear, efficient): entropy of each query's distribution over keys divided by log M,
          averaged over queries (1 = uniform).

        Definitions shared with ``nlbench analyze``: :mod:`nlbench.nn.nl_stats`. The map is built for an evenly
        strided subset of queries so that it has at most ``max_map_elements`` elements (never fewer than one query).
        A normalization without ``attention_map`` gets the norm statistics only (a warning says so, once).
        """
        q, k, _ = self._embed(self._with_position(x))
        q, k = q.float(), k.float()
        query_norm = torch.linalg.vector_norm(q, dim=-1)
        key_norm = torch.linalg.vector_norm(k, dim=-1)
        b, heads, n, _ = q.shape
        m = k.shape[-2]
        stats = {
            "query_norm_mean": query_norm.mean(),
            "key_norm_mean": key_norm.mean(),
            "key_norm_cv": nl_stats.key_norm_cv(key_norm).mean(),
        }
        if not self.has_attention_map:
            _note_no_map(self.normalization)
            return stats
        step = nl_stats.query_stride(b, heads, n, m, max_map_elements)
        weights = self.attention.attention_map(q[:, :, ::step], k).float()
        if getattr(self.attention, "probabilities", False):
            stats["attention_entropy"] = nl_stats.attention_entropy(weights)
        stats["key_norm_attention_corr"] = nl_stats.key_norm_mass_corr(
            key_norm, nl_stats.attention_mass(weights)
        ).mean()
        return stats

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, width={self.width}, heads={self.heads}, normalization={self.normalization}, "
            f"scale={self.scale}, order={self.order}, similarity={self.similarity}, init={self.init}, "
            f"subsample={self.subsample}"
        )
