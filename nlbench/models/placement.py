"""Where non-local blocks go in a backbone, and the helpers every backbone shares.

A backbone is a stem, a few stages of residual blocks, and a head. The NL placement keywords mean the same for all:

- ``nl_stages``: 1-based numbers of the stages that receive NL blocks (``[]`` = the baseline without NL; default
  ``None`` = stage 2, or the stages a per-stage ``nl_blocks`` list gives blocks to);
- ``nl_blocks``: how many NL blocks are stacked at each insertion point (0 = none), either one count for every
  stage of ``nl_stages`` or a list with one count per stage, like the official ``--num-block1..4``
  (``[0, 1, 0]`` = one block in stage 2). As in the official ``nlblock``, the positional encoding is added once
  per insertion point, by its first NL block; the stacked blocks after it run attention only;
- ``nl_position``: index of the residual block in the stage before which they go, Python-style: -1 = before the
  last block (the paper's placement), 0 = at the stage input (before its first, possibly down-sampling, block),
  ``len(stage)`` = after the last block.

- ``block``: what goes at each insertion point: ``"nonlocal"`` (the NL block with the options ``nl``), ``"gc"``
  (:class:`~nlbench.nn.GlobalContext2d`), ``"se"`` (:class:`~nlbench.nn.SqueezeExcite2d`), or a class path to any
  module taking the channel count (``nlbench.nn.registry.BLOCKS``). ``nl`` only applies to ``"nonlocal"``; set off
  its defaults with another block it is warned about.

Each stage becomes a :class:`Stage` (an ``nn.Sequential``) whose residual blocks are named ``block0, block1, ...``
whatever the placement, and whose inserted blocks are named ``nonlocal0, nonlocal1, ...`` (``gc0``, ``se0``, or the
class's short name for other blocks): a baseline's state dict is therefore a subset of the same backbone's with NL
blocks, and ``stage2.nonlocal0`` names a block in logs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from nlbench.nn import NLConfig, NonLocal2d
from nlbench.nn.config import DEFAULT_FC_INIT, DEFAULT_NL_STAGES, FcInit
from nlbench.nn.registry import BLOCKS, DEFAULT_BLOCK


def stage_counts(num_stages: int, *, nl_stages: Sequence[int] | None, nl_blocks: int | Sequence[int]) -> dict[int, int]:
    """{1-based stage: number of stacked NL blocks} for the stages that get at least one; raises ValueError naming
    the option when ``nl_stages`` and ``nl_blocks`` are malformed or disagree."""
    if isinstance(nl_blocks, int):
        if nl_blocks < 0:
            raise ValueError(f"nl_blocks must be >= 0 (0 = no NL blocks), got {nl_blocks}")
        stages = DEFAULT_NL_STAGES if nl_stages is None else nl_stages
        return {stage: nl_blocks for stage in stages} if nl_blocks > 0 else {}
    counts = list(nl_blocks)
    if len(counts) != num_stages or any(not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError(
            f"nl_blocks={counts}: a per-stage list needs one count >= 0 for each of this backbone's {num_stages} "
            "stages (or give one int for the stages in nl_stages)"
        )
    chosen = {stage: count for stage, count in enumerate(counts, start=1) if count > 0}
    if nl_stages is not None and sorted(nl_stages) != sorted(chosen):
        raise ValueError(
            f"nl_stages={list(nl_stages)} disagrees with the per-stage nl_blocks={counts} (blocks in stages "
            f"{sorted(chosen)}); set nl_stages to null or to those stages"
        )
    return chosen


def resolve_placement(
    blocks_per_stage: Sequence[int],
    *,
    nl_stages: Sequence[int] | None,
    nl_blocks: int | Sequence[int],
    nl_position: int,
) -> dict[int, tuple[int, int]]:
    """Check the placement keywords against a backbone's stages.

    Returns {1-based stage: (index in 0..len(stage) of the residual block the NL blocks go before, number of NL
    blocks)}; empty when no NL block is placed. Raises ValueError naming the offending option.
    """
    num_stages = len(blocks_per_stage)
    if nl_stages is not None and len(set(nl_stages)) != len(nl_stages):
        raise ValueError(f"nl_stages lists a stage more than once: {list(nl_stages)}")
    counts = stage_counts(num_stages, nl_stages=nl_stages, nl_blocks=nl_blocks)
    placement = {}
    for stage, count in counts.items():
        if not 1 <= stage <= num_stages:
            raise ValueError(
                f"nl_stages={list(nl_stages)}: stage {stage} does not exist; this backbone has stages 1..{num_stages}"
            )
        n = blocks_per_stage[stage - 1]
        if not -n <= nl_position <= n:
            raise ValueError(
                f"nl_position={nl_position} is out of range for stage {stage} with {n} residual blocks: valid are "
                f"{-n}..{n} (-1 = before the last block, 0 = at the stage input, {n} = after the last block)"
            )
        placement[stage] = (nl_position if nl_position >= 0 else n + nl_position, count)
    return placement


class Stage(nn.Sequential):
    """One stage: residual blocks and the blocks inserted among them (names in ``inserted``), in forward order.
    Its state dict is that of the ``nn.Sequential`` it extends."""

    def __init__(self, layers: OrderedDict[str, nn.Module], inserted: Sequence[str] = ()) -> None:
        super().__init__(layers)
        self.inserted = tuple(inserted)


def build_stages(
    stages: Sequence[Sequence[nn.Module]],
    *,
    nl: NLConfig,
    nl_stages: Sequence[int] | None,
    nl_blocks: int | Sequence[int],
    nl_position: int,
    block: str = DEFAULT_BLOCK,
) -> list[Stage]:
    """Chain each stage's residual blocks into a :class:`Stage` and insert the blocks (see module docstring).

    Each residual block must expose ``in_channels`` and ``out_channels``: inserted blocks take the channels of the
    feature map at their insertion point. ``nl`` passes unchanged to every NL block.
    """
    placement = resolve_placement(
        [len(blocks) for blocks in stages], nl_stages=nl_stages, nl_blocks=nl_blocks, nl_position=nl_position
    )
    cls = BLOCKS.resolve(block)
    if placement and not issubclass(cls, NonLocal2d) and nl != NLConfig():
        warnings.warn(
            f"model.backbone.nl has no effect with model.backbone.block={block} (it configures the NL "
            "block only); leave it at its defaults",
            UserWarning,
            stacklevel=3,
        )
    built = []
    for number, blocks in enumerate(stages, start=1):
        insert_at, count = placement.get(number, (None, 0))
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        inserted: dict[str, nn.Module] = {}
        for index, residual in enumerate(blocks):
            if index == insert_at:
                inserted = _inserted_layers(residual.in_channels, nl, count, cls, block)
                layers.update(inserted)
            layers[f"block{index}"] = residual
        if insert_at == len(blocks):
            inserted = _inserted_layers(blocks[-1].out_channels, nl, count, cls, block)
            layers.update(inserted)
        built.append(Stage(layers, inserted=list(inserted)))
    return built


def _inserted_layers(channels: int, nl: NLConfig, count: int, cls: type, block: str) -> dict[str, nn.Module]:
    if issubclass(cls, NonLocal2d):
        # The official nlblock adds the positional encoding once, then runs its k attention modules.
        stacked = dataclasses.replace(nl, pos_encoding=False) if nl.pos_encoding else nl
        return {f"nonlocal{k}": cls.from_config(channels, nl if k == 0 else stacked) for k in range(count)}
    prefix = BLOCKS.name_of(block).lower()
    return {f"{prefix}{k}": cls(channels) for k in range(count)}


def init_weights(model: nn.Module, fc_init: FcInit = DEFAULT_FC_INIT) -> None:
    """Backbone init: Kaiming normal (fan_out) convs, BatchNorm weight 1 and bias 0, and for ``nn.Linear`` the
    official code's Kaiming normal (fan_out) weight (``fc_init="kaiming"``) or PyTorch's default (``"pytorch"``).

    Inserted blocks (NL, GC, SE, ...) with a ``reset_parameters`` are then reset to their own init (small
    embeddings, output BN or last conv at zero) because the backbone pass also reaches the convs and BN inside
    them; the official code orders it the same way.
    """
    if fc_init not in ("kaiming", "pytorch"):
        raise ValueError(f"fc_init must be one of kaiming, pytorch; got {fc_init!r}")
    for module in model.modules():
        if isinstance(module, nn.Linear) and fc_init == "kaiming":
            # The official models/preresnet.py and wrn.py: kaiming_normal_(mode="fan_out"), default gain sqrt(2);
            # the bias keeps PyTorch's default, as there.
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for _, block in named_inserted_blocks(model):
        if callable(getattr(block, "reset_parameters", None)):
            block.reset_parameters()


def named_inserted_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks placed at insertion points (NL or a peer: GC, SE, ...) with their qualified names, in forward
    order."""
    return [
        (f"{name}.{child}" if name else child, getattr(stage, child))
        for name, stage in model.named_modules()
        if isinstance(stage, Stage)
        for child in stage.inserted
    ]


def named_nl_blocks(model: nn.Module) -> list[tuple[str, NonLocal2d]]:
    """The model's NL blocks with their qualified names (e.g. ``stage2.nonlocal0``), in forward order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, NonLocal2d)]


def nl_blocks_of(model: nn.Module) -> list[NonLocal2d]:
    """The model's NL blocks in forward order."""
    return [module for _, module in named_nl_blocks(model)]


def num_parameters(model: nn.Module, *, nl_only: bool = False) -> int:
    """Number of parameters of the model, or of its inserted blocks only (NL or peer blocks; works on the meta
    device)."""
    modules = [block for _, block in named_inserted_blocks(model)] if nl_only else [model]
    return sum(p.numel() for module in modules for p in module.parameters())
