"""Squeeze-and-excitation (Hu et al., 2018) as a peer of the NL block at the same insertion point."""

from __future__ import annotations

from torch import Tensor, nn


class SqueezeExcite2d(nn.Module):
    """z = x * gain * sigmoid(W_2 relu(W_1 mean_hw(x))): a per-channel gate from the global average.

    W_1 is a 1x1 conv C -> C * ``ratio`` and W_2 back to C, both with bias (timm's ``SEModule``). With ``gain=2``
    and ``zero_init_last`` (the defaults) W_2 starts at zero, the gate at 2 * sigmoid(0) = 1, so the block starts
    as the identity like the NL and GC blocks it is compared with (NFNets use the same factor 2); ``gain=1``,
    ``zero_init_last=False`` is the original block.

    Args:
        channels: C.
        ratio: bottleneck width C * ratio (at least one channel).
        gain: the gate's scale.
        zero_init_last: start W_2 at zero (PyTorch's default init otherwise).
    """

    def __init__(self, channels: int, *, ratio: float = 0.25, gain: float = 2.0, zero_init_last: bool = True) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"SqueezeExcite2d: channels must be positive; got {channels}")
        if not 0 < ratio <= 1:
            raise ValueError(f"SqueezeExcite2d: ratio must be in (0, 1]; got {ratio}")
        self.channels, self.ratio, self.gain, self.zero_init_last = channels, ratio, gain, zero_init_last
        hidden = max(1, int(channels * ratio))
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        if self.zero_init_last:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
        else:
            self.fc2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * (self.gain * gate.sigmoid())

    def extra_repr(self) -> str:
        return f"{self.channels}, ratio={self.ratio}, gain={self.gain}"
