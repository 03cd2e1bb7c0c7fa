"""`nlbench analyze`: the magnitude/direction statistics on blocks whose answer is known by construction, the
test-time similarity ablation, and the whole command on a run really trained through `nlbench fit`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch
from tinyfit import FAST_DEMO, with_options

from nlbench.analysis import analyze_block, similarity_ablation, similarity_set
from nlbench.analysis import main as analyze_main
from nlbench.models import nl_blocks_of
from nlbench.nn import NonLocal2d
from nlbench.nn.attention import scale_divisor
from nlbench.record import read_record
from nlbench.schema import BEST_ACC1

REPO = Path(__file__).resolve().parents[1]
# A real but tiny training run: the embedded CIFAR-10 sample, PreResNet-8 (the demo's PreResNet-20 with one
# residual block per stage, so its NL block sits at the input of stage 2, on the 32x32 map), a few steps.
# Validation = the first VAL_BATCHES x EVAL_BATCH test images, which the analysis evaluates again.
VAL_BATCHES, EVAL_BATCH = 2, 50


def train_tiny_run(run_dir: Path) -> Path:
    """Train (once per location) a tiny run through the real CLI; returns its run directory."""
    if (run_dir / "result.json").is_file():
        return run_dir
    from nlbench.lightning_cli import main as nlbench_main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        patch.chdir(REPO)
        fast = with_options(
            FAST_DEMO,
            "--trainer.limit_train_batches=5",
            f"--trainer.limit_val_batches={VAL_BATCHES}",
            f"--data.init_args.eval_batch_size={EVAL_BATCH}",
        )
        rc = nlbench_main(
            [
                "fit",
                *fast,
                "--model.backbone.init_args.depth=8",
                "--trainer.num_sanity_val_steps=0",
                "--model.nl_stats_every_n_steps=0",
                f"--run_dir={run_dir}",
            ]
        )
    assert rc == 0 and (run_dir / "checkpoints" / "best.ckpt").is_file()
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.getbasetemp() / "tiny-run")


# ---- statistics with a known answer -----------------------------------------------------------------------------
def _block(normalization: str, theta: list[list[float]], phi: list[list[float]], **kwargs) -> NonLocal2d:
    block = NonLocal2d(4, normalization=normalization, width=len(theta), pos_encoding=False, **kwargs)
    with torch.no_grad():
        block.theta.weight.copy_(torch.tensor(theta)[..., None, None])
        block.phi.weight.copy_(torch.tensor(phi)[..., None, None])
    return block.eval()


def _magnitude_only_input() -> torch.Tensor:
    """Channel 0 positive and varying, the rest 0: every query and key points the same way, only norms differ."""
    x = torch.zeros(2, 4, 4, 4)
    x[:, 0] = torch.linspace(0.2, 2.0, 32).reshape(2, 4, 4)
    return x


def _direction_only_input() -> torch.Tensor:
    """Channels 0/1 a unit vector at varying angles: all norms equal, only directions differ."""
    angles = torch.linspace(0, 2 * math.pi, 33)[:32].reshape(2, 1, 4, 4)
    return torch.cat([angles.cos(), angles.sin(), torch.zeros(2, 2, 4, 4)], dim=1)


@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_logits_explained_by_key_magnitude(normalization: str) -> None:
    project = [[1.0, 0, 0, 0], [0, 0, 0, 0]]
    stats = analyze_block("b", _block(normalization, project, project), _magnitude_only_input()).stats
    assert stats.logit_r2_magnitude == pytest.approx(1.0, abs=1e-5)
    assert stats.logit_r2_direction == pytest.approx(0.0, abs=1e-6)  # every cosine is 1: explains nothing
    # Every query prefers the larger keys: mass is monotone in the key norm.
    assert stats.key_norm_mass_spearman == pytest.approx(1.0, abs=1e-6)
    # Key norms are channel 0's values (phi copies it): population std / mean over the 16 positions of each image.
    norms = _magnitude_only_input()[:, 0].flatten(1)
    assert stats.key_norm_cv == pytest.approx(float((norms.std(-1, correction=0) / norms.mean(-1)).mean()), rel=1e-5)
    if normalization == "scale":
        # |q_i . k_j| / s summed over i is exactly proportional to |k_j|.
        assert stats.key_norm_mass_pearson == pytest.approx(1.0, abs=1e-5)
        assert stats.attention_entropy is None and stats.mass == "sum over queries of |q.k| / s"
    else:
        assert 0 < stats.attention_entropy < 1 and stats.query_variation > 0


@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_logits_explained_by_direction(normalization: str) -> None:
    project = [[1.0, 0, 0, 0], [0, 1.0, 0, 0]]
    stats = analyze_block("b", _block(normalization, project, project), _direction_only_input()).stats
    assert stats.logit_r2_direction == pytest.approx(1.0, abs=1e-5)
    assert stats.logit_r2_magnitude == pytest.approx(0.0, abs=1e-6)  # constant key norms
    assert stats.key_norm_cv == pytest.approx(0.0, abs=1e-6)
    assert stats.key_norm_mass_pearson == 0.0


def test_uniform_softmax_attention_has_entropy_one() -> None:
    zero = [[0.0, 0, 0, 0], [0, 0, 0, 0]]
    stats = analyze_block("b", _block("softmax", zero, zero), _magnitude_only_input()).stats
    assert stats.attention_entropy == pytest.approx(1.0, abs=1e-6)
    assert stats.query_variation == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        dict(heads=2, subsample=True, pos_encoding=True),
        dict(heads=1, subsample=False, pos_encoding=True, similarity="direction"),
    ],
)
@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_queries_keys_reproduce_the_attention_map(normalization: str, options: dict) -> None:
    torch.manual_seed(0)
    block = NonLocal2d(8, normalization=normalization, reduction=1, init="kaiming", **options).eval()
    x = torch.randn(2, 8, 5, 6)
    q, k = block.queries_keys(x)
    logits = q @ k.transpose(-2, -1)
    with similarity_set([block], "dot"):
        weights = block.attention_map(x)
    expected = (
        logits.softmax(-1)
        if normalization == "softmax"
        else logits / scale_divisor(block.scale, k.shape[-2], head_width=block.width // block.heads)
    )
    torch.testing.assert_close(expected, weights, rtol=1e-4, atol=1e-5)
    assert q.shape == (2, options["heads"], 30, 8 // options["heads"])
    assert k.shape[2] == (9 if options["subsample"] else 30)  # 2x2 ceil-mode pooling of 5x6
    item = analyze_block("stage2.nonlocal0", block, x)
    assert item.stats.key_grid == ((3, 3) if options["subsample"] else (5, 6))
    assert item.weights.shape[-2:] == (30, 9 if options["subsample"] else 30)
    assert block.similarity == options.get("similarity", "dot")  # analysed with "dot", then restored


def test_similarity_ablation_changes_the_model_and_restores_blocks() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        NonLocal2d(8, normalization="softmax", init="kaiming"),
        NonLocal2d(8, normalization="scale", init="kaiming"),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    ).eval()
    blocks = nl_blocks_of(model)
    for block in blocks:
        torch.nn.init.ones_(block.bn.weight)  # let the blocks matter (they start as the identity)
    images = torch.randn(64, 8, 4, 4)
    with torch.no_grad():
        labels = model(images).argmax(dim=-1)  # the dot model's own predictions: 100 % for "dot"
    blocks[1].similarity = "magnitude"
    result = similarity_ablation(model, [(images[:32], labels[:32]), (images[32:], labels[32:])])
    assert list(result) == ["dot", "magnitude", "direction"]
    assert result["dot"] == 1.0 and result["magnitude"] < 0.9 and result["direction"] < 0.9
    assert [block.similarity for block in blocks] == ["dot", "magnitude"]


# ---- the command on a real trained run ----------------------------------------------------------------------------
def _drawn(path: Path) -> bool:
    pixels = matplotlib.image.imread(path)
    return min(pixels.shape[:2]) > 100 and float(pixels[..., :3].std()) > 0.02


def test_analyze_a_trained_run(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "analysis"
    rc = analyze_main(
        [
            "--run_dir",
            str(tiny_run),
            "--out",
            str(out),
            "--batches",
            str(VAL_BATCHES),
            "--images",
            "4",
            "--queries",
            "[[0.5, 0.5], [0.0, 1.0]]",
            "--show_images",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "analysis.json").read_text())
    printed = capsys.readouterr().out.splitlines()  # a summary and the paths, not the JSON (issue 20, item 2)
    assert len(printed) == 3 and printed[-1].startswith(f"wrote {out / 'analysis.json'}, {out / 'analysis.md'}")
    assert printed[0].startswith("top-1 with the similarity switched at test time: dot ")
    result = read_record(tiny_run).flat()
    # The same test images the run validated on, through the evaluation transform: the same accuracy.
    assert summary["test_images_evaluated"] == VAL_BATCHES * EVAL_BATCH
    assert summary["accuracy"]["dot"] == pytest.approx(result[BEST_ACC1], abs=1e-6)
    assert all(0.0 <= value <= 1.0 for value in summary["accuracy"].values())
    [block] = summary["blocks"]
    assert block["name"] == "stage2.nonlocal0" and block["normalization"] == "scale"
    assert block["query_grid"] == [32, 32] and block["key_grid"] == [32, 32]
    assert -1 <= block["key_norm_mass_pearson"] <= 1 and 0 <= block["logit_r2_magnitude"] <= 1
    assert summary["images_analysed"] == 4
    assert sorted(summary["figures"]) == [
        "attention_stage2_nonlocal0.png",
        "key_norm_vs_mass.png",
        "similarity_ablation.png",
    ]
    assert all(_drawn(out / name) for name in summary["figures"])
    md = (out / "analysis.md").read_text()
    assert "| stage2.nonlocal0 | scale | 1 | 32x32 |" in md and "| dot |" in md


def test_analyze_bad_input(tiny_run: Path, tmp_path: Path, capsys) -> None:
    assert analyze_main([]) == 2
    assert capsys.readouterr().err.strip() == "nlbench analyze: error: give --run_dir DIR or --ckpt PATH"
    assert analyze_main(["--run_dir", str(tmp_path / "nope")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert analyze_main(["--ckpt", str(tiny_run / "checkpoints" / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert analyze_main(["--run_dir", str(tiny_run), "--queries", "[[1.5, 0.5]]"]) == 2
    assert "--queries" in capsys.readouterr().err


# ---- one set of NL statistics for the training logs and the analysis ------------------------------------------------
@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_training_stats_and_analysis_agree(normalization: str) -> None:
    """attention_stats (logged in training) and analyze_block measure the same key-norm CV and key-norm/mass
    correlation on the same block and input (they used to differ: std correction, signed vs |q.k| mass)."""
    torch.manual_seed(1)
    block = NonLocal2d(8, normalization=normalization, reduction=1, heads=2, init="kaiming").eval()
    x = torch.randn(3, 8, 5, 5)
    logged = block.attention_stats(x)
    analysed = analyze_block("b", block, x).stats
    assert float(logged["key_norm_cv"]) == pytest.approx(analysed.key_norm_cv, rel=1e-5)
    assert float(logged["key_norm_attention_corr"]) == pytest.approx(analysed.key_norm_mass_pearson, abs=1e-5)
    # By hand: population std over the key positions, mass = sum over queries of |weights|.
    _, k = block.queries_keys(x)
    norms = k.norm(dim=-1)
    cv = (norms.std(dim=-1, correction=0) / norms.mean(dim=-1)).mean()
    assert analysed.key_norm_cv == pytest.approx(float(cv.detach()), rel=1e-5)


def test_nl_input_capture_hook_is_shared_and_removed() -> None:
    from nlbench.analysis import capture_inputs
    from nlbench.nn import nl_stats

    model = torch.nn.Sequential(NonLocal2d(8, normalization="scale"), torch.nn.Conv2d(8, 8, 1))
    images = torch.randn(2, 8, 4, 4)
    captured = capture_inputs(model, images)
    assert list(captured) == ["0"] and torch.equal(captured["0"], images)
    assert not model[0]._forward_pre_hooks  # the hooks go with the context
    store: dict = {}
    on = [False]
    nl_stats.register_input_capture([("0", model[0])], store, enabled=lambda: on[0])
    model(images)
    assert store == {}
    on[0] = True
    model(images)
    assert torch.equal(store["0"], images)


def test_analyze_warns_when_the_model_is_near_chance() -> None:
    from nlbench.analysis import analyze, to_markdown

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        NonLocal2d(8, normalization="scale", init="kaiming"), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10)
    ).eval()
    images = torch.randn(40, 8, 4, 4)
    with torch.no_grad():
        own = model(images).argmax(dim=-1)
    good = analyze(model, [(images, own)], images=4)  # its own predictions: 100 %
    assert good.classes == 10 and good.warning is None
    wrong = analyze(model, [(images, (own + 1) % 10)], images=4)  # never right: 0 %, chance is 10 %
    assert wrong.warning.startswith("the model is near chance: top-1 0.0% against 10.0% for 10 classes")
    summary = wrong.summary(run_dir="r", checkpoint="best", device="cpu")
    assert summary["warning"] == wrong.warning and "**Warning:** the model is near chance" in to_markdown(summary)
