"""The attention normalizations of the NL block, one small module each, registered by name in
:mod:`nlbench.nn.registry` (``model.backbone.nl.normalization``).

The interface (a user's own method implements the same; docs/extending.md):

- ``forward(q, k, v) -> y``: queries (B, h, N, d), keys (B, h, M, d), values (B, h, M, d_v) -> (B, h, N, d_v);
- optional ``attention_map(q, k) -> (B, h, N, M)`` with ``y = map @ v``: used by ``nlbench analyze`` and the
  training's attention statistics (skipped with a note for a method without one);
- optional class attributes: ``name`` (short name for run names), ``label`` and ``color`` (report),
  ``probabilities`` (map rows are distributions: entropy statistics apply), ``quadratic`` (the forward holds
  N x M maps: the block benchmark estimates their memory before running);
- ``__init__`` takes keyword options; the block passes those of ``scale``, ``order`` and ``head_width`` that it
  accepts and warns when the user set one off its default for a method that does not take it.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from torch import Tensor, nn

from nlbench.nn.attention import (
    attention_weights,
    efficient_attention,
    efficient_attention_map,
    linear_attention,
    linear_attention_map,
    scale_divisor,
    scaled_attention,
    scaled_attention_projected,
    softmax_attention,
)
from nlbench.nn.config import NLConfig, Order, ScaleDivisor
from nlbench.nn.registry import NORMALIZATIONS

# The NL options a normalization may take, with the defaults at which they are "not set".
OPTION_DEFAULTS: dict[str, Any] = {"scale": NLConfig.scale, "order": NLConfig.order}


class SoftmaxAttention(nn.Module):
    """Embedded Gaussian: y_i = sum_j softmax_j(q_i . k_j) v_j, through SDPA's fused kernels (plain dot product)."""

    probabilities = True
    quadratic = True

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return softmax_attention(q, k, v)

    def attention_map(self, q: Tensor, k: Tensor) -> Tensor:
        return attention_weights(q, k, normalization="softmax")


class ScaleAttention(nn.Module):
    """The paper's y_i = sum_j (q_i . k_j / s) v_j, s from ``scale`` (see ``scale_divisor``), in either ``order``.

    ``head_width`` is d_head for ``scale="sqrt_nd"`` (default: the queries' width). With ``order="reassociated"``
    the block folds its W_z into the (d_v x d) summaries (:meth:`forward_projected`)."""

    probabilities = False

    def __init__(
        self, *, scale: ScaleDivisor = "sqrt_n", order: Order = "reassociated", head_width: int | None = None
    ) -> None:
        super().__init__()
        self.scale, self.order, self.head_width = scale, order, head_width

    @property
    def quadratic(self) -> bool:
        return self.order == "nxn"

    @property
    def folds_projection(self) -> bool:
        """The block may call :meth:`forward_projected` instead of ``forward`` followed by W_z."""
        return self.order == "reassociated"

    def divisor(self, q: Tensor, k: Tensor) -> float:
        return scale_divisor(self.scale, k.shape[-2], head_width=self.head_width or q.shape[-1])

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return scaled_attention(q, k, v, divisor=self.divisor(q, k), order=self.order)

    def forward_projected(self, q: Tensor, k: Tensor, v: Tensor, weight: Tensor) -> Tensor:
        """``weight`` (C, h d_v) applied to the concatenated heads, folded: (B, C, N)."""
        return scaled_attention_projected(q, k, v, weight, divisor=self.divisor(q, k))

    def attention_map(self, q: Tensor, k: Tensor) -> Tensor:
        return attention_weights(q, k, normalization="scale", divisor=self.divisor(q, k))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, order={self.order}"


class LinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al., 2020): phi = elu + 1, y_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) /
    (phi(q_i)^T sum_j phi(k_j) + eps), O(N d d_v)."""

    probabilities = True
    quadratic = False

    def __init__(self, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return linear_attention(q, k, v, eps=self.eps)

    def attention_map(self, q: Tensor, k: Tensor) -> Tensor:
        return linear_attention_map(q, k, eps=self.eps)


class EfficientAttention(nn.Module):
    """Efficient Attention (Shen et al., WACV 2021): y = rho_q(Q) (rho_k(K)^T V), softmax of each query over its
    channels and of each key channel over positions, O(N d d_v)."""

    probabilities = True
    quadratic = False

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return efficient_attention(q, k, v)

    def attention_map(self, q: Tensor, k: Tensor) -> Tensor:
        return efficient_attention_map(q, k)


def create_normalization(value: str | type, *, head_width: int | None = None, **options: Any) -> nn.Module:
    """The normalization module for ``value`` (registered name, class path or class).

    ``options`` (``scale``, ``order``) and ``head_width`` go to the class when its ``__init__`` takes them; an
    option set off its default for a class that does not take it is warned about (it would do nothing). Raises
    ValueError naming ``model.backbone.nl.normalization`` for an unknown name or a class that is not a module."""
    cls = NORMALIZATIONS.resolve(value)
    option = NORMALIZATIONS.option
    if not (issubclass(cls, nn.Module)):
        raise ValueError(f"{option}: {value} is not a torch.nn.Module subclass")
    accepted = _keywords(cls)
    given = {"head_width": head_width, **options}
    kwargs = {key: val for key, val in given.items() if accepted is None or key in accepted}
    ignored = [key for key in options if key not in kwargs and options[key] != OPTION_DEFAULTS.get(key)]
    if ignored:
        name = NORMALIZATIONS.name_of(value)
        warnings.warn(
            f"{', '.join(f'model.backbone.nl.{key}={options[key]!r}' for key in ignored)} has no effect with "
            f"normalization {name}, which does not take it",
            UserWarning,
            stacklevel=3,
        )
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{option}: cannot create {value} with keyword options {sorted(kwargs)}: {err}") from None


def _keywords(cls: type) -> set[str] | None:
    """Keyword parameters of ``cls.__init__``, or None when it takes ``**kwargs`` (then every option is passed)."""
    if cls.__init__ is nn.Module.__init__:  # no __init__ of its own: nn.Module's *args/**kwargs take nothing
        return set()
    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
