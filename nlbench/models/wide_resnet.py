"""Wide ResNet (Zagoruyko and Komodakis, 2016) for 32 px inputs, as built by the paper's official code."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlbench.models.placement import build_stages, init_weights
from nlbench.models.preact_resnet import classifier_head
from nlbench.nn import NLConfig
from nlbench.nn.config import DEFAULT_FC_INIT, FcInit


class WideBasicBlock(nn.Module):
    """Pre-activation block of two 3x3 convolutions with dropout between them.

    Unlike the pre-activation ResNet's blocks, a projection shortcut reads the pre-activated input (the original
    WRN code, kept by the paper's official code).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.shortcut = (
            None
            if stride == 1 and in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """Wide ResNet WRN-depth-widen for 32 px inputs (CIFAR), optionally with non-local blocks.

    Stem: 3x3 conv to 16 channels. Three stages of n = (depth - 4) / 6 wide blocks with 16k, 32k and 64k channels at
    32, 16 and 8 px. Head: BN-ReLU, global average pooling, linear. The paper puts one NL block in stage 2 before
    its last block, the default here.

    Args:
        num_classes: number of output logits.
        depth: 6n+4 (e.g. 16, 28, 40).
        widen: widening factor k.
        dropout: dropout probability between the two convolutions of each block.
        block, nl, nl_stages, nl_blocks, nl_position, fc_init: as for :class:`~nlbench.models.PreActResNet`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 28,
        widen: int = 10,
        *,
        dropout: float = 0.0,
        block: str = "nonlocal",
        nl: NLConfig = NLConfig(),
        nl_stages: Sequence[int] | None = None,
        nl_blocks: int | list[int] = 1,
        nl_position: int = -1,
        fc_init: FcInit = DEFAULT_FC_INIT,
    ) -> None:
        super().__init__()
        count, rest = divmod(depth - 4, 6)
        if count < 1 or rest:
            raise ValueError(f"depth={depth} is not a Wide ResNet depth: it must be 6n+4 with n >= 1 (e.g. 16, 28, 40)")
        if widen < 1:
            raise ValueError(f"widen must be >= 1, got {widen}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.stem = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        stages, channels = [], 16
        for width, stride in ((16 * widen, 1), (32 * widen, 2), (64 * widen, 2)):
            first = WideBasicBlock(channels, width, stride, dropout)
            stages.append([first] + [WideBasicBlock(width, width, 1, dropout) for _ in range(count - 1)])
            channels = width
        self.stage1, self.stage2, self.stage3 = build_stages(
            stages, nl=nl, nl_stages=nl_stages, nl_blocks=nl_blocks, nl_position=nl_position, block=block
        )
        self.head = classifier_head(channels, num_classes)
        init_weights(self, fc_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))
