"""Backbones: architecture sizes, NL placement, pass-through of NL options, identity at init, errors, CLI use."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from jsonargparse import ArgumentParser
from torch import nn

from nlbench.models import PreActResNet, PreActResNetTiny, WideResNet, named_nl_blocks, nl_blocks_of, num_parameters
from nlbench.models.preact_resnet import PreActBasicBlock, PreActBottleneck
from nlbench.models.wide_resnet import WideBasicBlock
from nlbench.nn import NLConfig, NonLocal2d, SinusoidalPositionalEncoding2d


def _on_meta(factory):
    with torch.device("meta"):
        return factory()


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        # Published sizes: He et al. 2016 (ResNet-20 0.27 M, PreResNet-110 1.7 M, PreResNet-164 1.7 M),
        # Zagoruyko & Komodakis 2016 (WRN-28-10 36.5 M), ResNet-18 with a 200-way head and a 7x7 stem 11.3 M.
        (lambda: PreActResNet(depth=20, nl_stages=()), 0.27e6),
        (lambda: PreActResNet(depth=110, residual="basic", nl_stages=()), 1.73e6),
        (lambda: PreActResNet(depth=164, nl_stages=()), 1.70e6),
        (lambda: WideResNet(depth=28, widen=10, nl_stages=()), 36.48e6),
        (lambda: PreActResNetTiny(depth=18, nl_stages=()), 11.28e6),
        # The official rule makes depth 110 twelve bottleneck blocks per stage.
        (lambda: PreActResNet(depth=110, nl_stages=()), 1.15e6),
    ],
)
def test_parameter_counts_match_the_standard_architectures(factory, expected):
    assert num_parameters(_on_meta(factory)) == pytest.approx(expected, rel=0.01)


def test_auto_block_follows_the_official_depth_rule():
    assert isinstance(PreActResNet(depth=32, nl_stages=()).stage1.block0, PreActBasicBlock)
    deep = _on_meta(lambda: PreActResNet(depth=56, nl_stages=()))
    assert isinstance(deep.stage1.block0, PreActBottleneck)
    assert len(deep.stage3) == 6
    assert deep.head.fc.in_features == 256
    # Like the official code, "44" rounds n = (44 - 2) / 9 down: 4 bottleneck blocks per stage.
    official44 = _on_meta(lambda: PreActResNet(depth=44, nl_stages=()))
    assert isinstance(official44.stage1.block0, PreActBottleneck) and len(official44.stage3) == 4


@pytest.mark.parametrize(
    ("model", "size", "classes"),
    [
        (lambda: PreActResNet(num_classes=10, depth=8), 32, 10),
        (lambda: PreActResNet(num_classes=100, depth=11, residual="bottleneck"), 32, 100),
        (lambda: WideResNet(num_classes=10, depth=10, widen=1, dropout=0.3), 32, 10),
        (lambda: PreActResNetTiny(num_classes=200, depth=18), 56, 200),
        (lambda: PreActResNetTiny(num_classes=200, depth=18), 64, 200),
    ],
)
def test_forward_gives_one_logit_per_class(model, size, classes):
    torch.manual_seed(0)
    net = model().eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 3, size, size))
    assert logits.shape == (2, classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("block", "reads_preactivation"),
    [
        # The official code: ResNet projections read the raw input, WRN projections the pre-activated one.
        (PreActBasicBlock(4, 8, stride=2), False),
        (PreActBottleneck(4, 2, stride=2), False),
        (WideBasicBlock(4, 8, stride=2), True),
    ],
)
def test_projection_shortcut_input_follows_the_official_code(block, reads_preactivation):
    torch.manual_seed(0)
    last_conv = block.conv3 if isinstance(block, PreActBottleneck) else block.conv2
    nn.init.zeros_(last_conv.weight)  # leaves only the shortcut
    nn.init.normal_(block.bn1.weight)
    nn.init.normal_(block.bn1.bias)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        block.eval()
        shortcut_input = torch.relu(block.bn1(x)) if reads_preactivation else x
        torch.testing.assert_close(block(x), block.shortcut(shortcut_input))
    assert block(x).shape == (2, 8, 4, 4)


def _nl_inputs(model: nn.Module, size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, per-sample input shape) of every NL block, in the order the forward reaches them."""
    seen = []
    for name, block in named_nl_blocks(model):
        block.register_forward_hook(lambda _m, args, _out, name=name: seen.append((name, tuple(args[0].shape[1:]))))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    return seen


def test_nl_blocks_go_before_the_last_residual_block_of_each_chosen_stage():
    model = PreActResNet(depth=20, nl_stages=[1, 2, 3], nl_blocks=2)
    for stage in (model.stage1, model.stage2, model.stage3):
        assert [name for name, _ in stage.named_children()] == ["block0", "block1", "nonlocal0", "nonlocal1", "block2"]
    assert _nl_inputs(model, 32) == [
        ("stage1.nonlocal0", (16, 32, 32)),
        ("stage1.nonlocal1", (16, 32, 32)),
        ("stage2.nonlocal0", (32, 16, 16)),
        ("stage2.nonlocal1", (32, 16, 16)),
        ("stage3.nonlocal0", (64, 8, 8)),
        ("stage3.nonlocal1", (64, 8, 8)),
    ]
    assert [name for name, _ in named_nl_blocks(model)] == [name for name, _ in _nl_inputs(model, 32)]
    assert nl_blocks_of(model) == [block for _, block in named_nl_blocks(model)]


@pytest.mark.parametrize(
    ("position", "children", "shape"),
    [
        # Position 0 sits on the stage input, before the first block down-samples it.
        (0, ["nonlocal0", "block0", "block1", "block2"], (16, 32, 32)),
        (-3, ["nonlocal0", "block0", "block1", "block2"], (16, 32, 32)),
        (1, ["block0", "nonlocal0", "block1", "block2"], (32, 16, 16)),
        (-1, ["block0", "block1", "nonlocal0", "block2"], (32, 16, 16)),
        (3, ["block0", "block1", "block2", "nonlocal0"], (32, 16, 16)),
    ],
)
def test_nl_position_indexes_the_residual_blocks_of_the_stage(position, children, shape):
    model = PreActResNet(depth=20, nl_stages=[2], nl_position=position)
    assert [name for name, _ in model.stage2.named_children()] == children
    assert _nl_inputs(model, 32) == [("stage2.nonlocal0", shape)]


def test_nl_blocks_take_the_channels_of_their_insertion_point():
    bottleneck = PreActResNet(depth=11, residual="bottleneck", nl_stages=[1, 2], nl_position=0)
    assert _nl_inputs(bottleneck, 32) == [("stage1.nonlocal0", (16, 32, 32)), ("stage2.nonlocal0", (64, 32, 32))]
    tiny = PreActResNetTiny(depth=18, nl_stages=[1, 4])
    assert [(name, block.channels) for name, block in named_nl_blocks(tiny)] == [
        ("stage1.nonlocal0", 64),
        ("stage4.nonlocal0", 512),
    ]
    assert _nl_inputs(tiny, 56)[1] == ("stage4.nonlocal0", (512, 7, 7))
    wide = WideResNet(depth=16, widen=2)  # the paper's WRN placement is the default
    assert [name for name, _ in wide.stage2.named_children()] == ["block0", "nonlocal0", "block1"]
    assert _nl_inputs(wide, 32) == [("stage2.nonlocal0", (64, 16, 16))]


@pytest.mark.parametrize("placement", [{"nl_stages": []}, {"nl_stages": [1, 2], "nl_blocks": 0}])
def test_baseline_has_no_nl_parameters(placement):
    model = PreActResNet(depth=20, **placement)
    assert nl_blocks_of(model) == []
    assert num_parameters(model, nl_only=True) == 0
    with_nl = PreActResNet(depth=20, nl_stages=[1, 2])
    assert num_parameters(with_nl) - num_parameters(model) == num_parameters(with_nl, nl_only=True) > 0


@pytest.mark.parametrize(("backbone", "depth"), [(PreActResNet, 20), (PreActResNetTiny, 18), (WideResNet, 16)])
def test_nl_options_reach_every_block_unchanged(backbone, depth, monkeypatch):
    cfg = NLConfig(normalization="softmax", width=16, heads=4, similarity="direction", init="zeros", subsample=True)
    received = []
    real = NonLocal2d.from_config.__func__

    def record(cls, channels, config):
        received.append(config)
        return real(cls, channels, config)

    monkeypatch.setattr(NonLocal2d, "from_config", classmethod(record))
    model = _on_meta(lambda: backbone(depth=depth, nl=cfg, nl_stages=[1, 2], nl_blocks=2))
    # The second block of each insertion point is the same config without the positional encoding.
    assert received == [cfg, dataclasses.replace(cfg, pos_encoding=False)] * 2
    for block in nl_blocks_of(model):
        assert (block.normalization, block.width, block.heads, block.similarity, block.init, block.subsample) == (
            "softmax",
            16,
            4,
            "direction",
            "zeros",
            True,
        )


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: PreActResNet(depth=8, **kw),
        lambda **kw: PreActResNet(depth=11, residual="bottleneck", **kw),
        lambda **kw: WideResNet(depth=10, widen=2, dropout=0.3, **kw),
        lambda **kw: PreActResNetTiny(depth=18, **kw),
    ],
)
@pytest.mark.parametrize("normalization", ["scale", "softmax"])
def test_nl_blocks_start_as_the_identity_on_the_baseline_weights(build, normalization):
    torch.manual_seed(0)
    baseline = build(nl_stages=[]).eval()
    # Kaiming-initialised embeddings make y large, so only the zero output BN can keep the block an identity.
    nl = NLConfig(normalization=normalization, init="kaiming", pos_encoding=False)
    model = build(nl=nl, nl_stages=[1, 2, 3], nl_blocks=2, nl_position=0).eval()
    missing, unexpected = model.load_state_dict(baseline.state_dict(), strict=False)
    assert unexpected == [] and missing and all(".nonlocal" in key for key in missing)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), baseline(x))
        for block in nl_blocks_of(model):  # the blocks are on the forward path: waking them changes the output
            nn.init.ones_(block.bn.weight)
        assert not torch.allclose(model(x), baseline(x), atol=1e-3)


def test_backbone_init_is_kaiming_and_nl_blocks_keep_their_own():
    torch.manual_seed(0)
    model = PreActResNet(depth=20, nl_stages=[3], fc_init="pytorch")
    conv = model.stage3.block2.conv2  # 64 -> 64, 3x3: fan_out 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
    assert torch.equal(model.stage3.block2.bn1.weight, torch.ones(64))
    assert model.head.fc.weight.abs().max() <= 64**-0.5  # PyTorch's default Linear init: U(+-1/sqrt(fan_in))
    (block,) = nl_blocks_of(model)
    assert torch.equal(block.bn.weight, torch.zeros(64))
    assert block.theta.weight.std().item() == pytest.approx(0.01, rel=0.2)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = PreActResNet(depth=8, nl_stages=[2, 3], nl=NLConfig(normalization="softmax"))
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["stem.weight"].abs().sum() > 0
    assert grads["stage2.nonlocal0.bn.weight"].abs().sum() > 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PreActResNet(depth=21), "depth=21 does not fit basic blocks"),
        (lambda: PreActResNet(depth=44, residual="bottleneck"), "depth=44 does not fit bottleneck blocks"),
        (lambda: PreActResNet(depth=2), "6n\\+2"),
        (lambda: PreActResNetTiny(depth=20), "depth=20"),
        (lambda: WideResNet(depth=27), "6n\\+4"),
        (lambda: WideResNet(depth=10, widen=0), "widen"),
        (lambda: WideResNet(depth=10, dropout=1.0), "dropout"),
        (lambda: PreActResNet(depth=8, nl_stages=[4]), "stage 4 does not exist.*1..3"),
        (lambda: PreActResNet(depth=8, nl_stages=[0]), "stage 0 does not exist"),
        (lambda: PreActResNet(depth=8, nl_stages=[2, 2]), "more than once"),
        (lambda: PreActResNet(depth=20, nl_position=4), "nl_position=4 .* stage 2 with 3 residual blocks"),
        (lambda: PreActResNet(depth=20, nl_position=-4), "nl_position=-4"),
        (lambda: PreActResNet(depth=8, nl_blocks=-1), "nl_blocks must be >= 0"),
    ],
)
def test_invalid_options_raise_a_clear_error(build, message):
    with pytest.raises(ValueError, match=message):
        _on_meta(build)


def test_configs_instantiate_backbones_by_class_path():
    parser = ArgumentParser()
    parser.add_argument("--model", type=nn.Module)
    config = parser.parse_string(
        """
        model:
          class_path: nlbench.models.WideResNet
          init_args: {depth: 10, widen: 1, nl: {normalization: softmax, heads: 2}, nl_stages: [1, 3], nl_blocks: 2}
        """
    )
    dumped = parser.dump(config)
    assert "similarity: dot" in dumped  # the resolved config spells out every NL option
    model = parser.instantiate(config).model
    assert isinstance(model, WideResNet) and model.num_classes == 10
    assert [name for name, _ in named_nl_blocks(model)] == [
        "stage1.nonlocal0",
        "stage1.nonlocal1",
        "stage3.nonlocal0",
        "stage3.nonlocal1",
    ]
    assert {(block.normalization, block.heads) for block in nl_blocks_of(model)} == {("softmax", 2)}


# --- the official set-up: classifier init, stacked blocks, per-stage counts ---------------------------------------


@pytest.mark.parametrize(
    ("build", "fan_in", "fan_out"),
    [
        (lambda **kw: PreActResNet(depth=20, **kw), 64, 10),
        (lambda **kw: PreActResNet(depth=11, residual="bottleneck", num_classes=100, **kw), 256, 100),
        (lambda **kw: PreActResNetTiny(depth=18, **kw), 512, 200),
        (lambda **kw: WideResNet(depth=10, widen=2, **kw), 128, 10),
    ],
)
def test_classifier_init_is_the_official_kaiming_fan_out_by_default(build, fan_in, fan_out):
    torch.manual_seed(0)
    weight = build(nl_stages=[]).head.fc.weight.detach()
    assert weight.shape == (fan_out, fan_in)
    # kaiming_normal_(mode="fan_out"): N(0, 2 / fan_out), e.g. std 0.447 for 64 -> 10 (PyTorch's default: < 0.125).
    assert weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
    assert abs(weight.mean().item()) < 0.1 * (2 / fan_out) ** 0.5
    assert weight.abs().max() > fan_in**-0.5  # impossible under PyTorch's default U(+-1/sqrt(fan_in))
    default = build(nl_stages=[], fc_init="pytorch").head.fc.weight.detach()
    assert default.abs().max() <= fan_in**-0.5
    assert default.std().item() == pytest.approx((3 * fan_in) ** -0.5, rel=0.1)


def test_fc_init_rejects_other_words():
    with pytest.raises(ValueError, match="fc_init"):
        PreActResNet(depth=8, fc_init="xavier")


def test_positional_encoding_is_added_once_per_insertion_point(monkeypatch):
    model = PreActResNet(depth=20, nl_stages=[2, 3], nl_blocks=3)
    blocks = named_nl_blocks(model)
    assert [(name, block.pos_encoding is not None) for name, block in blocks] == [
        ("stage2.nonlocal0", True),
        ("stage2.nonlocal1", False),
        ("stage2.nonlocal2", False),
        ("stage3.nonlocal0", True),
        ("stage3.nonlocal1", False),
        ("stage3.nonlocal2", False),
    ]
    calls = []
    real = SinusoidalPositionalEncoding2d.forward
    monkeypatch.setattr(
        SinusoidalPositionalEncoding2d, "forward", lambda self, x: calls.append(x.shape) or real(self, x)
    )
    model(torch.randn(2, 3, 32, 32))
    assert calls == [torch.Size([2, 32, 16, 16]), torch.Size([2, 64, 8, 8])]
    # Switched off, no block adds it.
    off = PreActResNet(depth=20, nl_stages=[2], nl_blocks=2, nl=NLConfig(pos_encoding=False))
    assert all(block.pos_encoding is None for block in nl_blocks_of(off))


def test_per_stage_counts_place_that_many_blocks_in_each_stage():
    names = lambda model: [name for name, _ in named_nl_blocks(model)]  # noqa: E731
    assert names(PreActResNet(depth=20, nl_blocks=[0, 1, 0])) == names(PreActResNet(depth=20)) == ["stage2.nonlocal0"]
    assert names(PreActResNet(depth=20, nl_blocks=[2, 0, 1], nl_stages=[1, 3])) == [
        "stage1.nonlocal0",
        "stage1.nonlocal1",
        "stage3.nonlocal0",
    ]
    tiny = _on_meta(lambda: PreActResNetTiny(depth=18, nl_blocks=[0, 1, 2, 0]))
    assert names(tiny) == ["stage2.nonlocal0", "stage3.nonlocal0", "stage3.nonlocal1"]
    assert nl_blocks_of(PreActResNet(depth=20, nl_blocks=[0, 0, 0])) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nl_blocks": [0, 1]}, "one count >= 0 for each of this backbone's 3 stages"),
        ({"nl_blocks": [0, -1, 1]}, "one count >= 0"),
        ({"nl_blocks": [1, 1, 0], "nl_stages": [2]}, "nl_stages=\\[2\\] disagrees"),
    ],
)
def test_bad_per_stage_counts_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreActResNet(depth=8, **kwargs)
