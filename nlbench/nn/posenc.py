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

    One non-persistent buffer per feature-map size (``table_{H}x{W}``, in the dtype of its first use), so tables
    follow the module's ``.to()`` and are plain inputs of a compiled graph. Build them eagerly before compiling
    (`prepare`, or one eager forward at each size: ``nlbench.classifier`` does it): a table first built inside
    ``torch.compile`` would be computed by the graph (CPU kernels in a GPU graph) and then cost a recompile once it
    exists.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def prepare(
        self, height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The buffer for (height, width), built now if missing (on `device`, default the module's; in `dtype`,
        default float32; it then follows the module's ``.to()``/``.double()``)."""
        name = f"table_{height}x{width}"
        table = getattr(self, name, None)
        if table is None:
            if device is None:
                device = next((b.device for b in self.buffers()), torch.device("cpu"))
            table = sinusoidal_table_2d(self.channels, height, width, device=device, dtype=dtype or torch.float32)
            self.register_buffer(name, table, persistent=False)
        return table

    def table(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        return self.prepare(height, width, device, dtype).to(device=device, dtype=dtype)  # no-op for the usual case

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table(x.shape[-2], x.shape[-1], x.device, x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
