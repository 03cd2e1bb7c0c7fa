"""The global context (GC) block of GCNet (Cao et al., 2019), a peer of the NL block at the same insertion point."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GlobalContext2d(nn.Module):
    """z = x + transform(context), context = sum_j softmax_j(w_k . x_j) x_j (one vector per image).

    Attention pooling: a 1x1 conv C -> 1 (with bias) gives one logit per position, softmax over the H W positions
    weighs the positions' features into a (B, C) context. Transform: 1x1 conv C -> C * ``ratio`` (bias), LayerNorm
    over those channels, ReLU, 1x1 conv back to C (bias), added to every position (GCNet's "channel_add" fusion).
    As in the official ContextBlock, the pooling conv is Kaiming (fan_in) and the last conv starts at zero, so the
    block starts as the identity.

    Args:
        channels: C.
        ratio: bottleneck width C * ratio (GCNet: 1/4 or 1/16); at least one channel.
    """

    def __init__(self, channels: int, *, ratio: float = 0.25) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"GlobalContext2d: channels must be positive; got {channels}")
        if not 0 < ratio <= 1:
            raise ValueError(f"GlobalContext2d: ratio must be in (0, 1]; got {ratio}")
        self.channels, self.ratio = channels, ratio
        hidden = max(1, int(channels * ratio))
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        first, norm, _, last = self.transform
        first.reset_parameters()
        norm.reset_parameters()
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def context(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> the attention-pooled (B, C, 1, 1) context."""
        logits = self.conv_mask(x).flatten(1)  # (B, HW)
        # The softmax over H W positions runs in float32 for half-precision logits (its normaliser sums HW terms);
        # float32 and float64 stay as they are: precision is promoted, never lowered.
        half = logits.dtype in (torch.float16, torch.bfloat16)
        weights = torch.softmax(logits, dim=-1, dtype=torch.float32 if half else None).to(x.dtype)
        return torch.einsum("bcn,bn->bc", x.flatten(2), weights)[..., None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.transform(self.context(x))

    def extra_repr(self) -> str:
        return f"{self.channels}, ratio={self.ratio}"
