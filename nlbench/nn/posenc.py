"""Fixed 2-D sinusoidal positional encoding, added to a feature map (the official code's "add_init")."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _sinusoids(positions: int, channels: int) -> Tensor:
    """(channels, positions) Transformer table: channel j holds sin (even j) or cos (odd j) of
    position * 10000^(-2 (j // 2) / channels)."""
    pos = torch.arange(positions, dtype=torch.float64)
    j = torch.arange(channels)
    inv_freq = 10000.0 ** (-(2 * (j // 2)).double() / channels)
    angle = inv_freq[:, None] * pos[None, :]
    return torch.where((j % 2 == 0)[:, None], angle.sin(), angle.cos())


def sinusoidal_table_2d(
    channels: int,
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The (channels, height, width) encoding: the first channels // 2 channels encode the row, the rest the column.

    Matches the official ``get_sinusoid_encoding_table`` for even ``channels`` (there the table is square; here it is
    built for the actual height and width). Computed in float64, then cast to ``dtype`` (default: torch's
    default dtype).
    """
    if channels < 1 or height < 1 or width < 1:
        raise ValueError(
            f"sinusoidal_table_2d: channels, height and width must be positive; got {channels}, {height}, {width}"
        )
    row_channels = channels // 2
    col_channels = channels - row_channels
    rows = _sinusoids(height, row_channels)[:, :, None].expand(row_channels, height, width)
    cols = _sinusoids(width, col_channels)[:, None, :].expand(col_channels, height, width)
    return torch.cat([rows, cols]).to(device=device, dtype=dtype or torch.get_default_dtype())


class SinusoidalPositionalEncoding2d(nn.Module):
    """x (B, C, H, W) -> x + table (C, H, W); the table is fixed (no parameters, not in the state dict).

    Tables are cached per (height, width, device, dtype) in a plain dict rather than a buffer, so feature maps of
    several sizes and a module moved between devices never rebuild or pay a stale-buffer check in every forward.
    Under ``torch.compile`` the first call of a new size fills the cache inside the graph, so the second call
    recompiles once (with the table as a constant) and then stays compiled.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self._tables: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}

    def table(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (height, width, device, dtype)
        if key not in self._tables:
            self._tables[key] = sinusoidal_table_2d(self.channels, height, width, device=device, dtype=dtype)
        return self._tables[key]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table(x.shape[-2], x.shape[-1], x.device, x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
