"""The non-local block: every option, the equivalences the design relies on, and the analysis hooks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from nlbench.nn import (
    NLConfig,
    NonLocal2d,
    attention_weights,
    scale_divisor,
    scaled_attention,
    scaled_attention_projected,
    sinusoidal_table_2d,
    softmax_attention,
)

SIMILARITIES = ["dot", "magnitude", "direction"]


def make_block(channels: int = 8, *, trained: bool = True, **options) -> NonLocal2d:
    """A block whose output BN is no longer the zero map, so the attention path shows in the output."""
    block = NonLocal2d(channels, **options)
    if trained:
        with torch.no_grad():
            block.bn.weight.normal_()
            block.bn.bias.normal_()
            for conv in (block.theta, block.phi, block.g, block.w_z):
                conv.weight.normal_(std=0.5)
    return block


pytestmark = pytest.mark.usefixtures("seeded")  # the same random tensors in every test (conftest.py)


# --- construction and options -------------------------------------------------------------------------------------


def test_default_options_follow_nlconfig() -> None:
    block = NonLocal2d(8)
    cfg = NLConfig()
    for field in dataclasses.fields(NLConfig):
        if field.name not in ("reduction", "width", "pos_encoding"):
            assert getattr(block, field.name) == getattr(cfg, field.name), field.name
    assert block.width == 4 and block.pos_encoding is not None


def test_from_config_passes_every_option() -> None:
    cfg = NLConfig(
        normalization="softmax",
        width=6,
        heads=3,
        scale=2.5,
        order="nxn",
        similarity="direction",
        init="kaiming",
        pos_encoding=False,
        subsample=True,
    )
    with pytest.warns(UserWarning, match="has no effect with normalization softmax"):  # scale/order: scale's options
        block = NonLocal2d.from_config(12, cfg)
    assert (block.normalization, block.width, block.heads, block.scale) == ("softmax", 6, 3, 2.5)
    assert (block.order, block.similarity, block.init, block.subsample) == ("nxn", "direction", "kaiming", True)
    assert block.pos_encoding is None
    assert block.theta.weight.shape == (6, 12, 1, 1) and block.w_z.weight.shape == (12, 6, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduction": 16}, "width comes out 0"),
        ({"reduction": 0}, "reduction"),
        ({"width": 0}, "width"),
        ({"width": -4}, "width"),
        ({"width": 6, "heads": 4}, "not divisible by heads"),
        ({"heads": 3}, "not divisible by heads"),
        ({"heads": 0}, "heads"),
        ({"normalization": "sigmoid"}, "normalization"),
        ({"order": "backwards"}, "order"),
        ({"similarity": "cosine"}, "similarity"),
        ({"init": "xavier"}, "init"),
        ({"scale": "sqrt"}, "scale"),
        ({"scale": 0.0}, "scale"),
        ({"scale": -2}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": True}, "scale"),
    ],
)
def test_bad_options_raise_naming_the_option(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NonLocal2d(8, **kwargs)


def test_bad_channels_raise() -> None:
    with pytest.raises(ValueError, match="channels"):
        NonLocal2d(0)


def test_similarity_is_a_validated_switch() -> None:
    block = make_block(similarity="dot")
    x = torch.randn(2, 8, 4, 4)
    block.eval()
    outputs = {}
    for similarity in SIMILARITIES:
        block.similarity = similarity
        outputs[similarity] = block(x)
    assert not torch.allclose(outputs["dot"], outputs["magnitude"])
    assert not torch.allclose(outputs["dot"], outputs["direction"])
    with pytest.raises(ValueError, match="similarity"):
        block.similarity = "angle"
    assert block.similarity == "direction"


# --- initialisation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["normal", "zeros", "kaiming"])
@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_block_starts_as_identity_on_the_encoded_input(init: str, normalization: str) -> None:
    block = NonLocal2d(8, init=init, normalization=normalization)
    x = torch.randn(2, 8, 5, 3)
    expected = x + sinusoidal_table_2d(8, 5, 3)
    torch.testing.assert_close(block(x), expected)
    plain = NonLocal2d(8, init=init, normalization=normalization, pos_encoding=False)
    torch.testing.assert_close(plain(x), x)


def test_init_distributions() -> None:
    normal = NonLocal2d(64, init="normal")
    assert normal.theta.weight.std().item() == pytest.approx(0.01, rel=0.1)
    kaiming = NonLocal2d(64, init="kaiming")
    # fan_out of a 1x1 conv is its output channels: 32 for theta, 64 for W_z.
    assert kaiming.theta.weight.std().item() == pytest.approx(math.sqrt(2 / 32), rel=0.1)
    assert kaiming.w_z.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)
    zeros = NonLocal2d(64, init="zeros")
    for block in (normal, kaiming, zeros):
        assert torch.all(block.bn.weight == 0) and torch.all(block.bn.bias == 0)
    for conv in (zeros.theta, zeros.phi, zeros.g, zeros.w_z):
        assert torch.all(conv.weight == 0)


@pytest.mark.parametrize("init", ["normal", "zeros", "kaiming"])
def test_reset_parameters_restores_init(init: str) -> None:
    block = make_block(64, init=init)
    block.train()(torch.randn(4, 64, 4, 4))  # move the BN running statistics too
    block.reset_parameters()
    fresh = NonLocal2d(64, init=init)
    for conv_name in ("theta", "phi", "g", "w_z"):
        assert getattr(block, conv_name).weight.std().item() == pytest.approx(
            getattr(fresh, conv_name).weight.std().item(), rel=0.15, abs=1e-12
        )
    for name, buffer in fresh.bn.state_dict().items():
        torch.testing.assert_close(block.bn.state_dict()[name], buffer)


def test_gradient_reaches_embeddings_once_bn_gamma_is_nonzero() -> None:
    block = NonLocal2d(8, init="normal")
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    block(x).square().sum().backward()
    # At init gamma = 0 cuts the attention path: only the BN bias and the trunk get gradient.
    assert torch.all(block.theta.weight.grad == 0)
    block.zero_grad()
    with torch.no_grad():
        block.bn.weight.fill_(1.0)
    block(x).square().sum().backward()
    for conv in (block.theta, block.phi, block.g, block.w_z):
        assert conv.weight.grad.abs().sum() > 0


# --- attention math -----------------------------------------------------------------------------------------------


def test_softmax_attention_matches_explicit_softmax_without_temperature() -> None:
    q, k = torch.randn(2, 3, 10, 4), torch.randn(2, 3, 7, 4)
    v = torch.randn(2, 3, 7, 5)
    reference = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
    torch.testing.assert_close(softmax_attention(q, k, v), reference)
    # The block passes transposed views of channel-first conv outputs; those must give the same answer.
    qt = q.transpose(-2, -1).contiguous().transpose(-2, -1)
    torch.testing.assert_close(softmax_attention(qt, k, v), reference)
    torch.testing.assert_close(attention_weights(q, k, normalization="softmax") @ v, reference)


@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("subsample", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("scale", ["sqrt_n", "sqrt_nd", "n", 3.0])
def test_both_scale_orders_give_the_same_block_in_float64(similarity: str, subsample: bool, heads: int, scale) -> None:
    options = dict(width=4, heads=heads, subsample=subsample, similarity=similarity, scale=scale)
    reassociated = make_block(**options, order="reassociated").double()
    nxn = NonLocal2d(8, **options, order="nxn").double()
    nxn.load_state_dict(reassociated.state_dict())
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    out = reassociated(x)
    assert (out - x).abs().max() > 1e-3  # the attention path contributes
    torch.testing.assert_close(out, nxn(x), rtol=1e-12, atol=1e-12)


def test_scaled_attention_orders_agree_on_raw_tensors() -> None:
    q, k, v = (torch.randn(2, 3, n, 4, dtype=torch.float64) for n in (9, 6, 6))
    reference = (q @ k.transpose(-2, -1) / 2.5) @ v
    for order in ("reassociated", "nxn"):
        torch.testing.assert_close(scaled_attention(q, k, v, divisor=2.5, order=order), reference)
    with pytest.raises(ValueError, match="order"):
        scaled_attention(q, k, v, divisor=1.0, order="sideways")


@pytest.mark.parametrize("key_width", [4, 1])  # 1: the "magnitude" similarity's norm-only queries and keys
def test_projected_attention_folds_the_output_weight(key_width: int) -> None:
    q, k = torch.randn(2, 3, 9, key_width, dtype=torch.float64), torch.randn(2, 3, 6, key_width, dtype=torch.float64)
    v = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    weight = torch.randn(7, 3 * 5, dtype=torch.float64)
    heads = scaled_attention(q, k, v, divisor=2.5, order="nxn")  # (B, h, N, d_v)
    expected = weight @ heads.transpose(-2, -1).reshape(2, 15, 9)
    torch.testing.assert_close(scaled_attention_projected(q, k, v, weight, divisor=2.5), expected)


def test_scale_divisor() -> None:
    assert scale_divisor("sqrt_n", 49, head_width=4) == 7.0
    assert scale_divisor("sqrt_nd", 49, head_width=4) == 14.0
    assert scale_divisor("n", 49, head_width=4) == 49.0
    assert scale_divisor(2.5, 49, head_width=4) == 2.5
    with pytest.raises(ValueError, match="scale"):
        scale_divisor("log_n", 49, head_width=4)


def test_scale_option_divides_the_map() -> None:
    x = torch.randn(1, 8, 4, 6)
    maps = {}
    for scale in ("sqrt_n", "n", 1.0):
        block = make_block(scale=scale, subsample=True)
        torch.manual_seed(1)
        block.reset_parameters()
        maps[scale] = block.attention_map(x)
    keys = 2 * 3
    torch.testing.assert_close(maps["sqrt_n"] * math.sqrt(keys), maps[1.0])
    torch.testing.assert_close(maps["n"] * keys, maps[1.0])


@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_heads_split_the_width_into_independent_groups(normalization: str) -> None:
    block = make_block(8, width=6, heads=3, normalization=normalization, pos_encoding=False).double()
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    q, k, v = (conv(x).flatten(2).transpose(1, 2) for conv in (block.theta, block.phi, block.g))
    ys = []
    for head in range(3):
        part = slice(2 * head, 2 * head + 2)
        weights = q[..., part] @ k[..., part].transpose(1, 2)
        weights = torch.softmax(weights, -1) if normalization == "softmax" else weights / math.sqrt(12)
        ys.append(weights @ v[..., part])
    y = torch.cat(ys, dim=-1).transpose(1, 2).reshape(2, 6, 3, 4)
    block.eval()
    torch.testing.assert_close(block(x), x + block.bn(block.w_z(y)))


@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_attention_map_reproduces_forward(similarity: str, normalization: str) -> None:
    block = make_block(normalization=normalization, similarity=similarity, heads=2, subsample=True).double().eval()
    x = torch.randn(2, 8, 5, 4, dtype=torch.float64)
    attention = block.attention_map(x)
    assert attention.shape == (2, 2, 20, 3 * 2)
    if normalization == "softmax":
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, 2, 20, dtype=torch.float64))
    x_enc = x + sinusoidal_table_2d(8, 5, 4, dtype=torch.float64)
    v = F.max_pool2d(block.g(x_enc), 2, ceil_mode=True).flatten(2).unflatten(1, (2, -1)).transpose(-2, -1)
    y = (attention @ v).transpose(-2, -1).reshape(2, 4, 5, 4)
    torch.testing.assert_close(block(x), x_enc + block.bn(block.w_z(y)))


def test_similarity_definitions_on_the_map() -> None:
    block = make_block(similarity="magnitude", heads=2, pos_encoding=False, scale=1.0)
    x = torch.randn(1, 8, 3, 3)
    q = block.theta(x).flatten(2).unflatten(1, (2, -1)).transpose(-2, -1)
    k = block.phi(x).flatten(2).unflatten(1, (2, -1)).transpose(-2, -1)
    torch.testing.assert_close(block.attention_map(x), q.norm(dim=-1, keepdim=True) * k.norm(dim=-1).unsqueeze(-2))
    block.similarity = "direction"
    cosine = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    torch.testing.assert_close(block.attention_map(x), cosine)


# --- positional encoding and sub-sampling -------------------------------------------------------------------------


def test_positional_table_layout() -> None:
    table = sinusoidal_table_2d(8, 5, 7, dtype=torch.float64)
    rows = torch.arange(5, dtype=torch.float64)
    cols = torch.arange(7, dtype=torch.float64)
    # First half: rows (constant along columns); channel 0 = sin(row), 1 = cos(row), 2 = sin(row / 10000^(2/4)).
    torch.testing.assert_close(table[0, :, 3], rows.sin())
    torch.testing.assert_close(table[1, :, 0], rows.cos())
    torch.testing.assert_close(table[2, :, 6], (rows / 100).sin())
    assert torch.all(table[:4] == table[:4, :, :1])
    # Second half: columns.
    torch.testing.assert_close(table[4, 2], cols.sin())
    torch.testing.assert_close(table[7, 0], (cols / 100).cos())
    assert torch.all(table[4:] == table[4:, :1, :])
    assert sinusoidal_table_2d(5, 2, 2).shape == (5, 2, 2)


def test_positional_table_is_cached_per_size() -> None:
    encoding = NonLocal2d(8).pos_encoding
    first = encoding.table(4, 4, torch.device("cpu"), torch.float32)
    assert encoding.table(4, 4, torch.device("cpu"), torch.float32) is first
    assert encoding.table(4, 6, torch.device("cpu"), torch.float32).shape == (8, 4, 6)
    assert "pos_encoding" not in "".join(NonLocal2d(8).state_dict())


def test_subsample_pools_keys_and_values_only() -> None:
    block = make_block(subsample=True, normalization="softmax").eval()
    x = torch.randn(1, 8, 6, 5)
    assert block.attention_map(x).shape == (1, 1, 30, 3 * 3)
    assert block(x).shape == x.shape


# --- precision and compilation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("normalization", "order"), [("softmax", "reassociated"), ("scale", "reassociated"), ("scale", "nxn")]
)
def test_bf16_autocast_runs_and_matches_fp32(normalization: str, order: str) -> None:
    block = make_block(16, normalization=normalization, order=order, heads=2).eval()
    with torch.no_grad():
        for conv in (block.theta, block.phi, block.g):
            conv.weight.mul_(0.2)  # keep softmax logits moderate so bf16 rounding is not amplified
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    reference = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=0.05, atol=0.05)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(block.theta.weight.grad).all()


def test_reassociated_half_precision_accumulates_without_overflow() -> None:
    # Sum over 4096 keys of 30 * 30: 3.7e6, far above float16's 65504 if accumulated in half precision.
    q, k, v = (torch.full((1, 1, 4096, 2), 30.0, dtype=torch.float16) for _ in range(3))
    out = scaled_attention(q, k, v, divisor=4096.0)
    torch.testing.assert_close(out.float(), torch.full((1, 1, 4096, 2), 30.0 * 30 * 30 * 2), rtol=1e-3, atol=0)


@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_torch_compile_traces_without_graph_breaks(normalization: str) -> None:
    block = make_block(normalization=normalization, heads=2, subsample=True)
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    torch.testing.assert_close(compiled(x), block(x))
    compiled(x).sum().backward()
    assert block.theta.weight.grad is not None


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager() -> None:
    block = make_block(heads=2)
    compiled = torch.compile(block)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(compiled(x), block(x), rtol=1e-4, atol=1e-4)


# --- statistics ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_attention_stats_are_finite_and_sensible(similarity: str, normalization: str) -> None:
    block = make_block(normalization=normalization, similarity=similarity, heads=2)
    with torch.no_grad():
        block.theta.weight.mul_(0.2)  # moderate logits: a saturated softmax would hide the magnitude effect
    x = torch.randn(2, 8, 6, 6)
    stats = block.attention_stats(x)
    expected = {"query_norm_mean", "key_norm_mean", "key_norm_cv", "key_norm_attention_corr"}
    if normalization == "softmax":
        expected.add("attention_entropy")
        assert 0 < stats["attention_entropy"] <= 1 + 1e-6
    assert set(stats) == expected
    assert all(value.ndim == 0 and torch.isfinite(value) for value in stats.values())
    assert -1 - 1e-6 <= stats["key_norm_attention_corr"] <= 1 + 1e-6
    if similarity == "direction":
        assert stats["key_norm_cv"] < 1e-5
        assert stats["key_norm_mean"] == pytest.approx(1.0)
        assert stats["key_norm_attention_corr"] == 0
    else:
        assert stats["key_norm_cv"] > 0.05
    if similarity == "magnitude" and normalization == "softmax":
        # Logits |q_i| |k_j| are increasing in |k_j| for every query: larger keys get more mass.
        assert stats["key_norm_attention_corr"] > 0.8


def test_attention_stats_match_the_explicit_map() -> None:
    for normalization in ("scale", "softmax"):
        block = make_block(normalization=normalization, subsample=True)
        x = torch.randn(2, 8, 6, 6)
        attention = block.attention_map(x)
        mass = attention.abs().sum(dim=-2)  # the mass of nlbench.nn.nl_stats: sum over queries of |weight|
        k = F.max_pool2d(block.phi(x + sinusoidal_table_2d(8, 6, 6)), 2).flatten(2)
        key_norm = k.norm(dim=1)
        per_sample = [torch.corrcoef(torch.stack([key_norm[b], mass[b, 0]]))[0, 1] for b in range(2)]
        expected_corr = torch.stack(per_sample).mean()
        stats = block.attention_stats(x)
        torch.testing.assert_close(stats["key_norm_attention_corr"], expected_corr, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats["key_norm_cv"], (key_norm.std(-1, correction=0) / key_norm.mean(-1)).mean())
    entropy = -(attention * attention.log()).sum(-1).mean() / math.log(9)
    torch.testing.assert_close(stats["attention_entropy"], entropy)


def test_attention_stats_bound_the_softmax_map() -> None:
    block = make_block(normalization="softmax")
    x = torch.randn(2, 8, 8, 8)
    full = block.attention_stats(x)
    strided = block.attention_stats(x, max_map_elements=2 * 64 * 8)  # 8 of 64 queries
    assert torch.isfinite(strided["attention_entropy"])
    assert strided["attention_entropy"] == pytest.approx(full["attention_entropy"].item(), abs=0.1)


def test_attention_stats_of_a_fresh_softmax_block_are_uniform() -> None:
    block = NonLocal2d(8, normalization="softmax", init="zeros")
    assert block.attention_stats(torch.randn(2, 8, 4, 4))["attention_entropy"] == pytest.approx(1.0)


# --- the official re-associated head and the official widths ------------------------------------------------------


@pytest.mark.parametrize("order", ["reassociated", "nxn"])
@pytest.mark.parametrize("heads", [1, 4])
def test_sqrt_nd_is_the_official_t_head_divisor_in_float64(order: str, heads: int) -> None:
    """z = x' + BN(W_z y), y_i = sum_j (theta_i . phi_j / sqrt(M d_head)) g_j per head, written out by hand."""
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    block = make_block(16, heads=heads, reduction=1, scale="sqrt_nd", order=order).double().eval()
    xp = x + sinusoidal_table_2d(16, 5, 6, dtype=torch.float64)
    n, d_head = 5 * 6, 16 // heads

    def embed(conv: torch.nn.Conv2d) -> torch.Tensor:  # (B, heads, N, d_head)
        return (
            torch.einsum("oc,bcn->bon", conv.weight[:, :, 0, 0], xp.flatten(2))
            .unflatten(1, (heads, d_head))
            .transpose(-2, -1)
        )

    q, k, v = embed(block.theta), embed(block.phi), embed(block.g)
    y = (q @ k.transpose(-2, -1) / math.sqrt(n * d_head)) @ v  # (B, heads, N, d_head)
    y = y.transpose(-2, -1).reshape(2, 16, 5, 6)
    expected = xp + block.bn(block.w_z(y))
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        block.attention_map(x), q @ k.transpose(-2, -1) / math.sqrt(n * d_head), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(("heads", "per_head"), [(1, 32), (2, 32), (4, 16), (8, 8)])
def test_official_width_is_c_over_h_per_head_and_c_over_2_for_one_head(heads: int, per_head: int) -> None:
    block = NonLocal2d(64, width="official", heads=heads, reduction=16)  # reduction is ignored
    assert block.width // block.heads == per_head
    assert block.width == (32 if heads == 1 else 64)
    assert NonLocal2d.from_config(64, NLConfig(width="official", heads=heads)).width == block.width


def test_width_rejects_other_words() -> None:
    with pytest.raises(ValueError, match="width"):
        NonLocal2d(64, width="paper")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("normalization", "order"),
    [("scale", "reassociated"), ("scale", "nxn"), ("softmax", "reassociated"), ("linear", "reassociated")],
)
def test_the_output_keeps_the_inputs_memory_format(normalization: str, order: str) -> None:
    """The folded (re-associated scale) output was a contiguous (B, C, N) viewed as NCHW: a channels-last trunk
    (experiments/gpu.yaml) left channels-last at every NL block."""
    block = make_block(8, normalization=normalization, order=order, heads=2).double().eval()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    expected = block(x)
    assert expected.is_contiguous()
    block = block.to(memory_format=torch.channels_last)
    seen = []
    block.bn.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    out = block(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    (inner,) = seen  # what W_z (folded or not) hands the output BatchNorm
    assert inner.is_contiguous(memory_format=torch.channels_last) and not inner.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
