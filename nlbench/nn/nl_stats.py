"""The NL-block statistics, defined once for the training logs (`NonLocal2d.attention_stats`) and `nlbench analyze`,
and the one forward hook that captures each NL block's input.

Conventions (each statistic per (sample, head) over positions, then averaged by the caller):

- key norm CV: std / mean of the key L2 norms over the key positions, std with ``correction=0``: the positions of
  a map are the whole population, not a sample of one.
- attention mass of a key: sum over queries of |w_ij|. For softmax the weights are probabilities (|w| = w); for
  "scale" the map q_i . k_j / s is signed and a key's magnitude of contribution is what the paper's claim is about,
  so signed sums, which cancel, are not used.
- attention entropy (softmax): each query's entropy over the keys divided by log M (1 = uniform).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from nlbench.nn.attention import pearson


def key_norm_cv(key_norm: Tensor) -> Tensor:
    """(..., M) key norms -> (...) coefficient of variation over the M key positions (population std)."""
    return key_norm.std(dim=-1, correction=0) / key_norm.mean(dim=-1).clamp_min(1e-12)


def attention_mass(weights: Tensor) -> Tensor:
    """(..., N, M) attention weights -> (..., M) mass each key receives: sum over queries of |w|."""
    return weights.abs().sum(dim=-2)


def key_norm_mass_corr(key_norm: Tensor, mass: Tensor) -> Tensor:
    """(..., M) -> (...) Pearson correlation over keys between a key's norm and its attention mass."""
    return pearson(key_norm, mass)


def attention_entropy(probs: Tensor) -> Tensor:
    """Mean over queries (and leading dims) of each softmax row's entropy divided by log M (0-d tensor)."""
    m = probs.shape[-1]
    entropy = torch.special.entr(probs).sum(dim=-1).mean()
    return entropy / math.log(m) if m > 1 else torch.zeros_like(entropy)


def query_stride(batch: int, heads: int, queries: int, keys: int, max_map_elements: int) -> int:
    """Stride over queries so that an explicit (batch, heads, queries / stride, keys) map has at most
    ``max_map_elements`` elements (never fewer than one query)."""
    return max(1, math.ceil(batch * heads * queries * keys / max_map_elements))


def register_input_capture(
    blocks: Iterable[tuple[str, nn.Module]], store: dict[str, Tensor], enabled: Callable[[], bool] | None = None
) -> list[torch.utils.hooks.RemovableHandle]:
    """Forward pre-hooks that put each block's input (detached) into ``store`` under its name, while ``enabled()``
    (always when None); returns the handles. The hook keeps a reference to an activation autograd holds anyway."""

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
            # Compiled, the input is always kept (one more graph output, no copy): reading the sampling flag in the
            # graph would make it a guard, and each change of it a recompile (on rank 0 only, under DDP).
            if torch.compiler.is_compiling() or enabled is None or enabled():
                store[name] = args[0].detach()

        return hook

    return [block.register_forward_pre_hook(hook_for(name)) for name, block in blocks]


@contextmanager
def captured_inputs(blocks: Iterable[tuple[str, nn.Module]]) -> Iterator[dict[str, Tensor]]:
    """Within the context, every forward records each block's input in the yielded dict; the hooks go after."""
    store: dict[str, Tensor] = {}
    handles = register_input_capture(blocks, store)
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()
