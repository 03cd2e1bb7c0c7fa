"""Methods as registered modules: the new kernels against their formulas, maps against fast paths, the GC and SE
blocks, the registry's names and errors, and the warnings for options a method ignores."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nlbench.models import PreActResNet, WideResNet, named_inserted_blocks, num_parameters
from nlbench.nn import (
    NORMALIZATIONS,
    GlobalContext2d,
    NLConfig,
    NonLocal2d,
    SqueezeExcite2d,
    block_info,
    create_normalization,
    method_info,
    method_name,
)
from nlbench.nn.registry import RESIDUAL_KINDS, UnknownMethodError, method_look, peer_block
from nlbench.record import identify
from nlbench.results import _fold_block

pytestmark = pytest.mark.usefixtures("seeded")  # the same random tensors in every test (conftest.py)


def qkv(heads: int, *, n: int = 12, m: int = 5, d: int = 3, dv: int = 4, dtype=torch.float64):
    """Queries (2, heads, N, d), sub-sampled keys (2, heads, M, d) with M < N, values (2, heads, M, d_v)."""
    return (
        torch.randn(2, heads, n, d, dtype=dtype),
        torch.randn(2, heads, m, d, dtype=dtype),
        torch.randn(2, heads, m, dv, dtype=dtype),
    )


def linear_reference(q, k, v, eps=1e-6):
    """Katharopoulos et al. (2020), position by position: y_i = phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T
    sum_j phi(k_j) (+ eps, as fast-transformers)."""
    phi = lambda x: F.elu(x) + 1  # noqa: E731
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            s = sum(torch.outer(phi(k[b, h, j]), v[b, h, j]) for j in range(k.shape[2]))
            z = sum(phi(k[b, h, j]) for j in range(k.shape[2]))
            for i in range(q.shape[2]):
                out[b, h, i] = phi(q[b, h, i]) @ s / (phi(q[b, h, i]) @ z + eps)
    return out


def efficient_reference(q, k, v):
    """Shen et al. (2021), per head: rho_q = softmax of each query over its channels, rho_k = softmax of each key
    channel over the positions, y = rho_q(Q) (rho_k(K)^T V)."""
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            rho_q = torch.exp(q[b, h]) / torch.exp(q[b, h]).sum(dim=1, keepdim=True)  # rows over channels
            rho_k = torch.exp(k[b, h]) / torch.exp(k[b, h]).sum(dim=0, keepdim=True)  # columns over positions
            out[b, h] = rho_q @ (rho_k.T @ v[b, h])
    return out


# ---- the new kernels ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize(("name", "reference"), [("linear", linear_reference), ("efficient", efficient_reference)])
def test_new_kernels_match_their_formulas_in_float64(name: str, reference, heads: int) -> None:
    q, k, v = qkv(heads)
    torch.testing.assert_close(create_normalization(name)(q, k, v), reference(q, k, v))


@pytest.mark.parametrize("name", [n for n in NORMALIZATIONS])
@pytest.mark.parametrize("options", [{}, {"order": "nxn"}, {"scale": "sqrt_nd"}])
def test_every_explicit_map_times_v_equals_the_fast_path(name: str, options: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # order/scale off-default for a method that ignores them: tested below
        module = create_normalization(name, head_width=3, **options)
    assert method_info(name).has_map
    q, k, v = qkv(4)
    torch.testing.assert_close(module.attention_map(q, k) @ v, module(q, k, v))


@pytest.mark.parametrize("name", ["linear", "efficient"])
def test_new_maps_are_distributions(name: str) -> None:
    q, k, _ = qkv(2)
    weights = create_normalization(name).attention_map(q, k)
    assert weights.shape == (2, 2, 12, 5) and bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 12, dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "efficient"])
def test_bf16_autocast_stays_within_1e_2_of_float32(name: str) -> None:
    block = NonLocal2d(16, normalization=name, heads=4, reduction=1, subsample=True)
    with torch.no_grad():
        block.bn.weight.fill_(1.0)
    x = torch.randn(2, 16, 8, 8)
    expected = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = block._embed(block._with_position(x))
        fast = block.attention(q, k, v)
        got = block(x)
    assert fast.dtype == torch.bfloat16  # the kernel returns the autocast dtype; it accumulated in float32
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=1e-2)


@pytest.mark.parametrize("name", ["linear", "efficient"])
@pytest.mark.parametrize("heads", [1, 4])
def test_the_block_with_a_new_normalization_is_x_plus_bn_wz_of_map_times_g(name: str, heads: int) -> None:
    block = NonLocal2d(8, normalization=name, heads=heads, reduction=1, subsample=True).double().eval()
    with torch.no_grad():
        block.bn.weight.normal_()
        block.w_z.weight.normal_()
    x = torch.randn(2, 8, 5, 4, dtype=torch.float64)
    x_pos = block._with_position(x)
    _, _, g = block._embed(x_pos)
    y = (block.attention_map(x) @ g).transpose(-2, -1).reshape(2, 8, 5, 4)
    torch.testing.assert_close(block(x), x_pos + block.bn(block.w_z(y)))
    assert block.attention_map(x).shape == (2, heads, 20, 3 * 2)


# ---- the registry --------------------------------------------------------------------------------------------------
class SigmoidAttention(nn.Module):
    """A user's method: y_i = sum_j sigmoid(q_i . k_j) v_j / M, with a map."""

    name = "sigmoid"
    label = "sigmoid attention"
    color = "tab:olive"

    def forward(self, q, k, v):
        return self.attention_map(q, k) @ v

    def attention_map(self, q, k):
        return torch.sigmoid(q @ k.transpose(-2, -1)) / k.shape[-2]


class NoMapAttention(nn.Module):
    """A user's method without an explicit map."""

    def forward(self, q, k, v):
        return q * v.mean(dim=-2, keepdim=True)[..., : q.shape[-1]]


PATH = f"{__name__}.SigmoidAttention"


def test_a_class_path_is_a_normalization_named_by_its_class() -> None:
    block = NonLocal2d(8, normalization=PATH, heads=2)
    assert isinstance(block.attention, SigmoidAttention) and block.has_attention_map
    assert block(torch.randn(2, 8, 4, 4)).shape == (2, 8, 4, 4)
    info = method_info(PATH)
    assert (info.name, info.label, info.color, info.has_map, info.value) == (
        "sigmoid",
        "sigmoid attention",
        "tab:olive",
        True,
        PATH,
    )
    assert method_info(f"{__name__}.NoMapAttention").name == "NoMapAttention"  # no name attribute: the class name
    assert method_info("linear").label == "linear (Katharopoulos)" and method_name("softmax") == "softmax"
    nl = NLConfig(normalization=PATH)
    assert identify(nl=nl, dataset="cifar10", backbone="PreActResNet", seed=0, nl_blocks=1).name == (
        "sigmoid-r2-h1-normal-s0"
    )


@pytest.mark.parametrize("value", ["sigmoid", "no_such_pkg.Attention", f"{__name__}.Missing", "torch.relu"])
def test_an_unknown_normalization_is_one_line_naming_the_option(value: str) -> None:
    with pytest.raises(ValueError, match="model.backbone.nl.normalization") as caught:
        NonLocal2d(8, normalization=value)
    assert "\n" not in str(caught.value)


def test_a_class_that_is_not_a_module_is_refused() -> None:
    with pytest.raises(ValueError, match="model.backbone.nl.normalization: .* not a torch.nn.Module"):
        NonLocal2d(8, normalization="collections.OrderedDict")


@pytest.mark.parametrize(
    ("normalization", "options", "warned"),
    [
        ("softmax", {"order": "nxn"}, "order"),
        ("linear", {"scale": 2.0}, "scale"),
        ("efficient", {"scale": "n", "order": "nxn"}, "scale"),
        (PATH, {"order": "nxn"}, "order"),
    ],
)
def test_options_a_method_ignores_are_warned_about(normalization: str, options: dict, warned: str) -> None:
    with pytest.warns(UserWarning, match=f"model.backbone.nl.{warned}=.* has no effect"):
        NonLocal2d(8, normalization=normalization, **options)


@pytest.mark.parametrize("normalization", ["softmax", "linear", "efficient", "scale"])
def test_defaults_and_used_options_warn_about_nothing(normalization: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NonLocal2d(8, normalization=normalization)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NonLocal2d(8, normalization="scale", order="nxn", scale="sqrt_nd")


def test_attention_statistics_are_skipped_with_a_note_without_a_map() -> None:
    block = NonLocal2d(8, normalization=NoMapAttention, heads=2)
    assert not block.has_attention_map
    x = torch.randn(2, 8, 4, 4)
    with pytest.warns(UserWarning, match="has no attention_map: the attention statistics .* are skipped"):
        stats = block.attention_stats(x)
    assert set(stats) == {"query_norm_mean", "key_norm_mean", "key_norm_cv"}
    with pytest.raises(ValueError, match="has no attention_map"):
        block.attention_map(x)
    # With a map, the entropy is logged for the methods whose rows are distributions.
    assert "attention_entropy" in NonLocal2d(8, normalization="linear").attention_stats(x)
    assert "attention_entropy" not in NonLocal2d(8, normalization="scale").attention_stats(x)


def test_analysis_skips_the_map_statistics_with_a_note() -> None:
    from nlbench.analysis import analyze_block, to_markdown

    item = analyze_block("stage2.nonlocal0", NonLocal2d(8, normalization=NoMapAttention), torch.randn(2, 8, 4, 4))
    assert item.weights is None and item.stats.key_norm_mass_pearson is None and item.stats.attention_entropy is None
    assert "has no attention_map" in item.stats.note and item.stats.normalization == "NoMapAttention"
    summary = {
        "run_dir": "r",
        "checkpoint": "best",
        "images_analysed": 2,
        "test_images_evaluated": 2,
        "device": "cpu",
        "accuracy": {"dot": 0.5},
        "blocks": [vars(item.stats)],
    }
    assert "has no attention_map" in to_markdown(summary)


# ---- the peer blocks ------------------------------------------------------------------------------------------------
def perturbed(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(std=0.5)
    return module.double()


def test_gc_block_matches_its_formula() -> None:
    block = perturbed(GlobalContext2d(8, ratio=0.25))
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    first, norm, _, last = block.transform
    logits = torch.einsum("c,bchw->bhw", block.conv_mask.weight.flatten(), x) + block.conv_mask.bias
    weights = torch.softmax(logits.flatten(1), dim=1)  # over the H W positions
    context = torch.einsum("bcn,bn->bc", x.flatten(2), weights)
    hidden = context @ first.weight.flatten(1).T + first.bias  # (B, C / 4)
    mean, var = hidden.mean(1, keepdim=True), hidden.var(1, unbiased=False, keepdim=True)
    hidden = (hidden - mean) / torch.sqrt(var + norm.eps) * norm.weight.flatten() + norm.bias.flatten()
    add = torch.relu(hidden) @ last.weight.flatten(1).T + last.bias
    assert first.weight.shape[0] == 2  # ratio 1/4 of 8 channels
    torch.testing.assert_close(block(x), x + add[..., None, None])


def test_se_block_matches_its_formula() -> None:
    block = perturbed(SqueezeExcite2d(8, ratio=0.25))
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    squeezed = x.mean(dim=(2, 3))
    hidden = torch.relu(squeezed @ block.fc1.weight.flatten(1).T + block.fc1.bias)
    gate = 2.0 * torch.sigmoid(hidden @ block.fc2.weight.flatten(1).T + block.fc2.bias)
    assert block.fc1.weight.shape[0] == 2
    torch.testing.assert_close(block(x), x * gate[..., None, None])
    classic = perturbed(SqueezeExcite2d(8, gain=1.0, zero_init_last=False))
    gate = torch.sigmoid(
        torch.relu(squeezed @ classic.fc1.weight.flatten(1).T + classic.fc1.bias) @ classic.fc2.weight.flatten(1).T
        + classic.fc2.bias
    )
    torch.testing.assert_close(classic(x), x * gate[..., None, None])


@pytest.mark.parametrize("cls", [GlobalContext2d, SqueezeExcite2d])
def test_peer_blocks_start_as_the_identity_and_reset(cls: type) -> None:
    block = cls(8)
    x = torch.randn(2, 8, 5, 3)
    torch.testing.assert_close(block(x), x)
    perturbed(block).float()
    assert not torch.allclose(block(x), x)
    block.reset_parameters()
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("block", ["gc", "se", "nlbench.nn.GlobalContext2d"])
@pytest.mark.parametrize(
    "backbone", [lambda **kw: PreActResNet(depth=8, **kw), lambda **kw: WideResNet(depth=10, widen=1, **kw)]
)
def test_every_backbone_places_a_peer_block_that_starts_as_the_identity(backbone, block: str) -> None:
    model = backbone(block=block).eval()
    inserted = named_inserted_blocks(model)
    kind = block_info(block)
    assert [name for name, _ in inserted] == [f"stage2.{kind.name.lower()}0"]
    assert isinstance(inserted[0][1], (GlobalContext2d, SqueezeExcite2d))
    assert num_parameters(model, nl_only=True) == sum(p.numel() for p in inserted[0][1].parameters()) > 0
    x = torch.randn(2, inserted[0][1].channels, 8, 8)
    torch.testing.assert_close(inserted[0][1](x), x)  # the backbone's init pass did not undo the block's own


def test_a_peer_block_warns_that_nl_options_do_nothing_and_a_bad_block_is_one_line() -> None:
    with pytest.warns(UserWarning, match="model.backbone.nl has no effect with model.backbone.block=gc"):
        PreActResNet(depth=8, block="gc", nl=NLConfig(normalization="softmax"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PreActResNet(depth=8, block="se")
        PreActResNet(depth=8, block="gc", nl_stages=[], nl=NLConfig(normalization="softmax"))  # nothing inserted
    with pytest.raises(ValueError, match="model.backbone.block: unknown block 'cbam'"):
        PreActResNet(depth=8, block="cbam")


def test_the_residual_kind_moved_to_residual_with_a_deprecation_warning() -> None:
    new = PreActResNet(depth=11, residual="bottleneck", nl_stages=[])
    with pytest.warns(DeprecationWarning, match="model.backbone.residual"):
        old = PreActResNet(depth=11, block="bottleneck", nl_stages=[])
    assert new.state_dict().keys() == old.state_dict().keys()


def test_peer_runs_are_named_by_their_block_without_nl_options() -> None:
    identity = identify(
        nl=NLConfig(),
        dataset="cifar10",
        backbone="PreActResNet",
        depth=20,
        seed=1,
        block="gc",
        nl_stages=[2],
        nl_blocks=1,
    )
    assert identity.name == "gc-s1" and identity.hparams["block"] == "gc" and "normalization" not in identity.hparams
    nl = identify(
        nl=NLConfig(normalization="linear"),
        dataset="cifar10",
        backbone="PreActResNet",
        seed=1,
        block="nonlocal",
        nl_blocks=1,
    )
    assert nl.name == "linear-r2-h1-normal-s1" and "block" not in nl.hparams
    assert (
        identify(nl=NLConfig(), dataset="cifar10", backbone="PreActResNet", block="se", nl_stages=[], nl_blocks=1).name
        == "baseline"
    )


@pytest.mark.parametrize("name", ["linear", "efficient"])
def test_analysis_reads_a_new_method_from_the_registry(name: str) -> None:
    from nlbench.analysis import analyze_block, attention_figure, scatter_figure

    block = NonLocal2d(8, normalization=name, reduction=1, init="kaiming").eval()
    images = torch.randn(2, 3, 4, 4)
    item = analyze_block("stage2.nonlocal0", block, torch.randn(2, 8, 4, 4))
    assert item.stats.normalization == name and item.probabilities and item.color == method_info(name).color
    assert 0 < item.stats.attention_entropy <= 1 and item.stats.mass == f"sum over queries of {name} probabilities"
    assert -1 <= item.stats.key_norm_mass_pearson <= 1
    figure = attention_figure(images, item, [(0.5, 0.5)], show_images=1)
    assert f"{name} probabilities" in figure._suptitle.get_text()
    scatter_figure([item])


def test_method_info_serves_record_readers() -> None:
    assert method_info("none").label == "baseline (no block)"
    away = method_info("someone_elses_pkg.attn.GatedAttention")  # not importable here: named by its path
    assert (away.name, away.label, away.has_map) == ("GatedAttention", "GatedAttention", False)
    with pytest.raises(UnknownMethodError, match="model.backbone.nl.normalization: unknown normalization 'sigmod'"):
        method_info("sigmod")  # a plain name that is not registered is a typo, not a record from elsewhere


@pytest.mark.parametrize("legacy", RESIDUAL_KINDS)
def test_a_former_residual_kind_in_block_is_not_a_peer_block(legacy: str) -> None:
    """Configs and records from before `block` chose the insertion point's block hold `block: auto|basic|bottleneck`:
    those runs are NL runs, named, recorded and read as such (not as a method called "auto")."""
    from typing import get_args

    from nlbench.models.preact_resnet import BlockKind

    assert get_args(BlockKind) == RESIDUAL_KINDS  # the model's residual kinds are the ones readers recognise
    identity = identify(
        nl=NLConfig(normalization="scale"),
        dataset="cifar10",
        backbone="PreActResNet",
        nl_blocks=1,
        block=legacy,
        seed=0,
    )
    assert identity.name == "scale-r2-h1-normal-s0" and identity.hparams["normalization"] == "scale"
    assert "block" not in identity.hparams
    hparams = {"block": legacy, "normalization": "softmax", "reduction": 2}
    _fold_block(hparams)
    assert hparams == {"normalization": "softmax", "reduction": 2}


def test_a_peer_block_reads_the_same_by_name_and_by_class_path() -> None:
    by_path = {"block": "nlbench.nn.global_context.GlobalContext2d"}
    _fold_block(by_path)
    assert by_path == {"normalization": "gc"} and method_look("gc") == ("GC block", "tab:purple")
    assert peer_block("nlbench.nn.nonlocal_block.NonLocal2d") is None and peer_block("my_pkg.Block") == "my_pkg.Block"


# ---- float64: every method against its formula, at float64's precision ----------------------------------------------
def softmax_reference(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def scale_reference(q, k, v):
    return (q @ k.transpose(-2, -1) / k.shape[-2] ** 0.5) @ v  # s = sqrt(M), the default "sqrt_n"


@pytest.mark.parametrize(
    ("name", "options", "reference"),
    [
        ("softmax", {}, softmax_reference),
        ("scale", {"order": "reassociated"}, scale_reference),
        ("scale", {"order": "nxn"}, scale_reference),
        ("linear", {}, linear_reference),
        ("efficient", {}, efficient_reference),
    ],
)
def test_every_method_matches_its_formula_to_float64_precision(name: str, options: dict, reference) -> None:
    """No kernel lowers float64 to float32 on the way (where the kernels agree to ~1e-16, a float32 step shows as
    ~1e-8, as the GC block's softmax did)."""
    q, k, v = qkv(2)
    got = create_normalization(name, head_width=3, **options)(q, k, v)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference(q, k, v), rtol=1e-12, atol=1e-12)


def gc_reference(block: GlobalContext2d, x: torch.Tensor) -> torch.Tensor:
    first, norm, _, last = block.transform
    logits = torch.einsum("c,bchw->bhw", block.conv_mask.weight.flatten(), x) + block.conv_mask.bias
    weights = torch.softmax(logits.flatten(1), dim=1)  # over the H W positions
    context = torch.einsum("bcn,bn->bc", x.flatten(2), weights)
    hidden = context @ first.weight.flatten(1).T + first.bias
    mean, var = hidden.mean(1, keepdim=True), hidden.var(1, unbiased=False, keepdim=True)
    hidden = (hidden - mean) / torch.sqrt(var + norm.eps) * norm.weight.flatten() + norm.bias.flatten()
    return x + (torch.relu(hidden) @ last.weight.flatten(1).T + last.bias)[..., None, None]


def test_the_peer_blocks_match_their_formulas_to_float64_precision() -> None:
    """The GC block's softmax ran in float32 even on float64 input: 1.2e-8 off its formula (upcast half only)."""
    gc = perturbed(GlobalContext2d(16, ratio=0.5))  # a bottleneck of 8: LayerNorm over 2 would hide the error
    x = torch.randn(2, 16, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(gc(x), gc_reference(gc, x), rtol=1e-12, atol=1e-12)
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    se = perturbed(SqueezeExcite2d(8, ratio=0.25))
    gate = 2.0 * torch.sigmoid(
        torch.relu(x.mean(dim=(2, 3)) @ se.fc1.weight.flatten(1).T + se.fc1.bias) @ se.fc2.weight.flatten(1).T
        + se.fc2.bias
    )
    torch.testing.assert_close(se(x), x * gate[..., None, None], rtol=1e-12, atol=1e-12)


def test_the_gc_softmax_still_runs_in_float32_for_bfloat16() -> None:
    gc = perturbed(GlobalContext2d(8)).float()
    x = torch.randn(2, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gc.context(x)
    expected = gc.context(x.bfloat16().float())  # float32 throughout, on the same (rounded) input
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=0.02, atol=0.02)
