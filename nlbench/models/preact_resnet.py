"""Pre-activation ResNets (He et al., 2016) as built by the paper's official code: CIFAR (32 px) and Tiny-ImageNet.

Residual blocks apply BN-ReLU before each convolution; the stem is a bare convolution (the first block normalises
its output) and the head applies the final BN-ReLU before global average pooling. As in the official code, a
projection shortcut (1x1 conv, when channels or stride change) reads the block's raw input, not its pre-activation.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nlbench.models.placement import build_stages, init_weights
from nlbench.nn import NLConfig
from nlbench.nn.config import DEFAULT_FC_INIT, FcInit
from nlbench.nn.registry import RESIDUAL_KINDS

BlockKind = Literal["auto", "basic", "bottleneck"]  # = nlbench.nn.registry.RESIDUAL_KINDS (a test keeps them equal)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class PreActBasicBlock(nn.Module):
    """Two 3x3 convolutions, each after BN-ReLU; ``out_channels = planes``."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.shortcut = _projection(in_channels, self.out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class PreActBottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand (x4), each after BN-ReLU; ``out_channels = 4 * planes``."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.out_channels, kernel_size=1, bias=False)
        self.shortcut = _projection(in_channels, self.out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + self.shortcut(x)


Block = type[PreActBasicBlock] | type[PreActBottleneck]


def stage_blocks(block: Block, in_channels: int, planes: int, count: int, stride: int) -> list[nn.Module]:
    """``count`` residual blocks of width ``planes``; the first one changes the channels and carries the stride."""
    blocks = [block(in_channels, planes, stride)]
    blocks += [block(planes * block.expansion, planes) for _ in range(count - 1)]
    return blocks


class GlobalAvgPool2d(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1), the mean over H and W: what ``nn.AdaptiveAvgPool2d(1)`` computes, with a
    deterministic CUDA backward (the mean's gradient is an expand). ``AdaptiveAvgPool2d``'s CUDA backward adds
    atomically, so ``torch.use_deterministic_algorithms(True)`` (``trainer.deterministic: true``) refuses it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def classifier_head(channels: int, num_classes: int) -> nn.Sequential:
    """Final pre-activation BN-ReLU, global average pooling (any input size) and the linear classifier."""
    return nn.Sequential(
        OrderedDict(
            norm=nn.BatchNorm2d(channels),
            relu=nn.ReLU(inplace=True),
            pool=GlobalAvgPool2d(),
            flatten=nn.Flatten(),
            fc=nn.Linear(channels, num_classes),
        )
    )


def _cifar_layout(depth: int, block: BlockKind) -> tuple[Block, int]:
    kind = ("basic" if depth < 44 else "bottleneck") if block == "auto" else block
    layers_per_block = 2 if kind == "basic" else 3
    count, rest = divmod(depth - 2, 3 * layers_per_block)
    # "auto" reproduces the official code, which rounds n down (its "depth 44" is 4 bottleneck blocks per stage).
    if count < 1 or (rest and not (block == "auto" and kind == "bottleneck")):
        rule = "6n+2 (e.g. 20, 32, 44, 56, 110)" if kind == "basic" else "9n+2 (e.g. 47, 56, 110, 164)"
        raise ValueError(f"model.backbone.depth={depth} does not fit {kind} blocks: depth must be {rule} with n >= 1")
    return (PreActBasicBlock if kind == "basic" else PreActBottleneck), count


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32 px inputs (CIFAR), optionally with non-local blocks.

    Stem: 3x3 conv to 16 channels. Three stages of n residual blocks with 16, 32 and 64 planes at 32, 16 and 8 px
    (bottleneck outputs are 4x wider). Head: BN-ReLU, global average pooling, linear.

    Args:
        num_classes: number of output logits.
        depth: number of weighted layers: 6n+2 with basic blocks, 9n+2 with bottleneck blocks.
        residual: the residual blocks: "basic", "bottleneck", or "auto": the official code's rule, basic below
            depth 44 and bottleneck from 44 on with n = (depth - 2) // 9 rounded down as the official code does (so
            "44" builds 4 bottleneck blocks per stage, and 110 is 12 per stage, 1.1 M parameters; the classic 1.7 M
            PreResNet-110 is ``residual="basic"``).
        block: the block at each insertion point: "nonlocal" (default), "gc", "se" or a class path (see
            :mod:`nlbench.models.placement`). For compatibility a residual kind given here ("basic", "bottleneck",
            "auto": this option's meaning before 0.x) is taken as ``residual``, with a deprecation warning.
        nl: options of every NL block, passed unchanged.
        nl_stages: 1-based stages that receive NL blocks; empty = the baseline without NL; None = stage 2, or the
            stages a per-stage ``nl_blocks`` list names.
        nl_blocks: NL blocks stacked at each insertion point: one count, or one per stage (``[0, 1, 0]``); the
            positional encoding is added once per insertion point.
        nl_position: residual block index in the stage before which the NL blocks go (-1 = before the last one).
        fc_init: "kaiming" (the official code: Kaiming normal, fan_out, on the classifier's weight) or
            "pytorch" (PyTorch's default Linear init).
    """

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 20,
        *,
        residual: BlockKind = "auto",
        block: str = "nonlocal",
        nl: NLConfig = NLConfig(),
        nl_stages: Sequence[int] | None = None,
        nl_blocks: int | list[int] = 1,
        nl_position: int = -1,
        fc_init: FcInit = DEFAULT_FC_INIT,
    ) -> None:
        super().__init__()
        if block in RESIDUAL_KINDS:
            warnings.warn(
                f"model.backbone.block={block!r} is a residual block kind: use model.backbone.residual "
                "(block now selects the block at the NL insertion point)",
                DeprecationWarning,
                stacklevel=2,
            )
            residual, block = block, "nonlocal"
        kind, count = _cifar_layout(depth, residual)
        self.num_classes = num_classes
        self.stem = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        stages, channels = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(stage_blocks(kind, channels, planes, count, stride))
            channels = planes * kind.expansion
        self.stage1, self.stage2, self.stage3 = build_stages(
            stages, nl=nl, nl_stages=nl_stages, nl_blocks=nl_blocks, nl_position=nl_position, block=block
        )
        self.head = classifier_head(channels, num_classes)
        init_weights(self, fc_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))


# depth -> (block, residual blocks per stage), the ImageNet ResNet family.
_TINY_LAYOUTS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (PreActBasicBlock, (2, 2, 2, 2)),
    34: (PreActBasicBlock, (3, 4, 6, 3)),
    50: (PreActBottleneck, (3, 4, 6, 3)),
    101: (PreActBottleneck, (3, 4, 23, 3)),
    152: (PreActBottleneck, (3, 8, 36, 3)),
    200: (PreActBottleneck, (3, 24, 36, 3)),
}


class PreActResNetTiny(nn.Module):
    """Pre-activation ResNet for Tiny-ImageNet (56 px crops), optionally with non-local blocks.

    Stem: 7x7 stride-1 conv to 64 channels, no max-pool. Four stages with 64, 128, 256 and 512 planes at strides
    1, 2, 2, 2 (56, 28, 14, 7 px for 56 px inputs). Head: BN-ReLU, global average pooling, linear.

    Args:
        num_classes: number of output logits.
        depth: 18 or 34 (basic blocks), 50, 101, 152 or 200 (bottleneck blocks).
        block, nl, nl_stages, nl_blocks, nl_position, fc_init: as for :class:`PreActResNet`.
    """

    def __init__(
        self,
        num_classes: int = 200,
        depth: int = 18,
        *,
        block: str = "nonlocal",
        nl: NLConfig = NLConfig(),
        nl_stages: Sequence[int] | None = None,
        nl_blocks: int | list[int] = 1,
        nl_position: int = -1,
        fc_init: FcInit = DEFAULT_FC_INIT,
    ) -> None:
        super().__init__()
        if depth not in _TINY_LAYOUTS:
            raise ValueError(f"depth={depth} is not a Tiny-ImageNet ResNet depth: use one of {list(_TINY_LAYOUTS)}")
        residual, counts = _TINY_LAYOUTS[depth]
        self.num_classes = num_classes
        self.stem = nn.Conv2d(3, 64, kernel_size=7, padding=3, bias=False)
        stages, channels = [], 64
        for planes, stride, count in zip((64, 128, 256, 512), (1, 2, 2, 2), counts):
            stages.append(stage_blocks(residual, channels, planes, count, stride))
            channels = planes * residual.expansion
        self.stage1, self.stage2, self.stage3, self.stage4 = build_stages(
            stages, nl=nl, nl_stages=nl_stages, nl_blocks=nl_blocks, nl_position=nl_position, block=block
        )
        self.head = classifier_head(channels, num_classes)
        init_weights(self, fc_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage4(self.stage3(self.stage2(self.stage1(self.stem(x))))))
