"""``nlbench analyze``: how much a trained model's non-local attention depends on key magnitude vs direction.

The paper's first claim is that softmax attention in an NL block is driven mostly by the *magnitude* of the keys:
a key with a large norm gets a large logit for (almost) every query, so it receives much of the attention mass
whatever the query is. For every NL block of a trained run, on a batch of real test images (evaluation transform),
this module measures:

- ``key_norm_mass_pearson`` / ``key_norm_mass_spearman``: correlation over key positions between a key's L2 norm
  and the attention mass it receives. Mass = column sum of |weights| over queries of the normalization's explicit map:
  probabilities for "softmax" (and "linear", "efficient"), absolute scaled weights |q_i . k_j| / s for "scale" (the
  scaled map is signed; its magnitude is what a key contributes). A normalization without ``attention_map`` gets None
  for the statistics that need the map, and a note saying so. Computed per (image, head), then averaged. This,
  ``key_norm_cv`` and the entropy are the definitions of :mod:`nlbench.nn.nl_stats`, shared with the training logs
  (``NonLocal2d.attention_stats``).
- ``attention_entropy`` (maps whose rows are distributions: the normalization's ``probabilities``): each query's
  entropy over the keys divided by log M (1 = uniform).
- ``query_variation`` (the same maps): mean total-variation distance between each query's distribution and the
  mean distribution of its image and head (0 = every query attends identically, the query-independent attention
  that key-magnitude dominance produces).
- ``logit_r2_magnitude`` / ``logit_r2_direction``: the share of the variance of the logits l_ij = q_i . k_j =
  |q_i| |k_j| cos(q_i, k_j) explained by the key magnitude vs by the direction. Softmax is invariant to shifts
  within a query's row, so the variance that matters is over keys j for a fixed query i, where |q_i| is a
  constant: per row, R^2 of the best linear fit of l_ij on |k_j| (magnitude) and on cos(q_i, k_j) (direction),
  i.e. the squared correlations; rows are averaged weighted by their logit variance (a flat row yields uniform
  attention whatever explains it). 1 = that factor alone reproduces the row's logits up to an affine map. The two
  need not sum to 1 (the factors multiply).
- ``accuracy``: test top-1 of the whole model with every block's ``similarity`` switched at test time to
  "magnitude" (logit |q_i| |k_j|: direction removed) or "direction" (cosine: magnitude removed), against "dot".

Outputs (``--out``, default ``<run_dir>/analysis``): analysis.json, analysis.md, attention_<block>.png (maps of a
few query positions over the images), key_norm_vs_mass.png, similarity_ablation.png.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ArgumentError, ArgumentParser
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from nlbench.io import atomic_write_json, atomic_write_text
from nlbench.models import named_nl_blocks
from nlbench.nn import NonLocal2d, method_info, nl_stats
from nlbench.nn.attention import pearson
from nlbench.schema import NEAR_CHANCE

SIMILARITIES = ("dot", "magnitude", "direction")
DEFAULT_QUERIES = ((0.25, 0.25), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25))


@dataclass
class BlockStats:
    """The magnitude/direction statistics of one NL block (see the module docstring for definitions)."""

    name: str
    normalization: str
    heads: int
    query_grid: tuple[int, int]
    key_grid: tuple[int, int]
    mass: str
    key_norm_mass_pearson: float | None
    key_norm_mass_spearman: float | None
    key_norm_cv: float
    attention_entropy: float | None
    query_variation: float | None
    logit_r2_magnitude: float
    logit_r2_direction: float
    note: str | None = None  # why statistics are missing (a normalization without an explicit map)


@dataclass
class BlockAttention:
    """What the figures need from one block: its statistics, maps and per-key values."""

    stats: BlockStats
    weights: Tensor | None  # (B, heads, N, M) as the block computes them; None without an explicit map
    key_norm: Tensor  # (B, heads, M)
    mass: Tensor | None  # (B, heads, M)
    probabilities: bool = False  # the map's rows are distributions (softmax, linear, efficient)
    color: str | None = None  # the method's colour (nlbench.nn.method_info)


# ---- the block-level analysis -------------------------------------------------------------------------------------
@torch.no_grad()
def analyze_block(name: str, block: NonLocal2d, x: Tensor) -> BlockAttention:
    """Statistics of one block on its input ``x`` (B, C, H, W) captured from a forward pass."""
    info = method_info(block.normalization)
    q, k = (t.float() for t in block.queries_keys(x))
    weights = mass = None
    if block.has_attention_map:
        with similarity_set([block], "dot"):
            weights = block.attention_map(x).float()
        mass = nl_stats.attention_mass(weights)
    logits = q @ k.transpose(-2, -1)  # (B, h, N, M)
    probabilities = bool(getattr(block.attention, "probabilities", False))
    key_norm = torch.linalg.vector_norm(k, dim=-1)  # (B, h, M)
    query_norm = torch.linalg.vector_norm(q, dim=-1)  # (B, h, N)
    cosine = logits / (query_norm.unsqueeze(-1) * key_norm.unsqueeze(-2)).clamp_min(1e-12)
    r2_magnitude = _weighted_row_r2(logits, key_norm.unsqueeze(-2).expand_as(logits))
    r2_direction = _weighted_row_r2(logits, cosine)
    entropy = variation = None
    if weights is not None and probabilities:
        entropy = float(nl_stats.attention_entropy(weights))
        variation = float(0.5 * (weights - weights.mean(dim=-2, keepdim=True)).abs().sum(-1).mean())
    h, w = x.shape[-2:]
    key_grid = (math.ceil(h / 2), math.ceil(w / 2)) if block.subsample else (h, w)
    stats = BlockStats(
        name=name,
        normalization=info.name,
        heads=block.heads,
        query_grid=(h, w),
        key_grid=key_grid,
        mass="none (no explicit map)"
        if weights is None
        else f"sum over queries of {info.name} probabilities"
        if probabilities
        else "sum over queries of |q.k| / s"
        if info.name == "scale"
        else f"sum over queries of |{info.name} weights|",
        key_norm_mass_pearson=None if mass is None else float(nl_stats.key_norm_mass_corr(key_norm, mass).mean()),
        key_norm_mass_spearman=None
        if mass is None
        else float(nl_stats.key_norm_mass_corr(_ranks(key_norm), _ranks(mass)).mean()),
        key_norm_cv=float(nl_stats.key_norm_cv(key_norm).mean()),
        attention_entropy=entropy,
        query_variation=variation,
        logit_r2_magnitude=r2_magnitude,
        logit_r2_direction=r2_direction,
        note=None
        if weights is not None
        else f"normalization {info.name} has no attention_map: the map's "
        "statistics (key norm vs mass, entropy, query variation) and figures are skipped",
    )
    return BlockAttention(
        stats=stats, weights=weights, key_norm=key_norm, mass=mass, probabilities=probabilities, color=info.color
    )


def _ranks(values: Tensor) -> Tensor:
    return values.argsort(dim=-1).argsort(dim=-1).float()


def _weighted_row_r2(logits: Tensor, factor: Tensor) -> float:
    """Mean over rows (last dim = keys) of corr(logits, factor)^2, weighted by the row's logit variance."""
    variance = logits.var(dim=-1)
    total = variance.sum()
    if total <= 0:
        return 0.0
    return float((pearson(logits, factor) ** 2 * variance).sum() / total)


@contextmanager
def similarity_set(blocks: Sequence[NonLocal2d], similarity: str) -> Iterator[None]:
    """Switch ``similarity`` on the blocks for the duration of the context, restoring each block's own after."""
    saved = [block.similarity for block in blocks]
    try:
        for block in blocks:
            block.similarity = similarity
        yield
    finally:
        for block, value in zip(blocks, saved):
            block.similarity = value


@torch.no_grad()
def capture_inputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """The input of every NL block of ``model`` during one forward pass on ``images``, by block name."""
    with nl_stats.captured_inputs(named_nl_blocks(model)) as captured:
        model(images)
    return captured


@torch.no_grad()
def accuracy(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]]) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) over the batches."""
    correct = total = 0
    for images, labels in batches:
        correct += int((model(images).argmax(dim=-1) == labels).sum())
        total += len(labels)
    return correct / total


def similarity_ablation(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Top-1 accuracy with every NL block's similarity set to each of dot, magnitude, direction at test time."""
    blocks = [block for _, block in named_nl_blocks(model)]
    results = {}
    for similarity in SIMILARITIES:
        with similarity_set(blocks, similarity):
            results[similarity] = accuracy(model, batches)
    return results


# ---- a trained run -------------------------------------------------------------------------------------------------
def eval_batches(datamodule: Any, *, count: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """The first ``count`` batches of the official test split as the model sees them (evaluation transform)."""
    datamodule.prepare_data()
    datamodule.setup("test")
    batches = []
    for images, labels in datamodule.test_dataloader():
        # The tensor loader normalises on the device in this hook; without a trainer it applies the eval transform.
        batches.append(datamodule.on_after_batch_transfer((images.to(device), labels.to(device)), 0))
        if len(batches) == count:
            break
    return batches


@dataclass
class Analysis:
    """The analysis of one model: the images analysed, each block's statistics and maps, the ablation accuracies."""

    images: Tensor
    blocks: list[BlockAttention]
    accuracy: dict[str, float]
    test_images: int
    classes: int | None = None

    @property
    def warning(self) -> str | None:
        """A warning when the model's own accuracy ("dot") is near chance: its attention statistics and the
        similarity ablation then say little about the paper's claims."""
        dot = self.accuracy.get("dot")
        if not self.classes or dot is None or dot >= NEAR_CHANCE / self.classes:
            return None
        return (
            f"the model is near chance: top-1 {100 * dot:.1f}% against {100 / self.classes:.1f}% for "
            f"{self.classes} classes; train it longer before reading the ablation"
        )

    def summary(self, **meta: Any) -> dict[str, Any]:
        """JSON-ready summary; ``meta`` (run_dir, checkpoint, device, figures, ...) goes first."""
        return {
            **meta,
            "images_analysed": len(self.images),
            "test_images_evaluated": self.test_images,
            "accuracy": self.accuracy,
            "classes": self.classes,
            "warning": self.warning,
            "blocks": [asdict(item.stats) for item in self.blocks],
        }


def analyze(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], *, images: int = 64) -> Analysis:
    """Statistics of every NL block of ``model`` (a backbone, e.g. the classifier's ``.model``, so block names read
    as in the training logs: ``stage2.nonlocal0``) on the first ``images`` images of ``batches``, and the similarity
    ablation's accuracies over all ``batches``."""
    blocks = named_nl_blocks(model)
    if not blocks:
        raise ValueError(
            "the model has no NL blocks (a baseline run, or a peer block such as gc or se?); nothing to analyse"
        )
    sample = torch.cat([x for x, _ in batches])[:images]
    inputs = capture_inputs(model, sample)
    with torch.no_grad():
        classes = int(model(sample[:1]).shape[-1])
    return Analysis(
        images=sample,
        blocks=[analyze_block(name, block, inputs[name]) for name, block in blocks],
        accuracy=similarity_ablation(model, batches),
        test_images=sum(len(y) for _, y in batches),
        classes=classes,
    )


def analyze_run(
    run_dir: str | os.PathLike[str],
    *,
    checkpoint: str = "best",
    out: str | os.PathLike[str] | None = None,
    batches: int = 8,
    images: int = 64,
    queries: Sequence[tuple[float, float]] = DEFAULT_QUERIES,
    show_images: int = 3,
    device: str | None = None,
) -> dict[str, Any]:
    """Run the whole analysis on a run directory; writes the figures and summaries, returns the summary dict."""
    from nlbench.lightning_cli import load_run  # the training stack is only needed here

    for fy, fx in queries:
        if not (0 <= fy <= 1 and 0 <= fx <= 1):
            raise ValueError(f"--queries: positions are (row, column) fractions in [0, 1]; got ({fy}, {fx})")
    if batches < 1 or images < 1:
        raise ValueError(f"--batches and --images must be >= 1; got {batches} and {images}")
    run_dir = Path(run_dir)
    out_dir = Path(out) if out is not None else run_dir / "analysis"
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    classifier, datamodule = load_run(run_dir, checkpoint=checkpoint)
    backbone = classifier.model.to(torch_device).eval()
    if not named_nl_blocks(backbone):
        raise ValueError(
            f"{run_dir}: the model has no NL blocks (a baseline run, or a peer block such as gc or "
            "se?); nothing to analyse"
        )
    result = analyze(backbone, eval_batches(datamodule, count=batches, device=torch_device), images=images)

    out_dir.mkdir(parents=True, exist_ok=True)
    mapped = [item for item in result.blocks if item.weights is not None]
    figures = {
        f"attention_{item.stats.name.replace('.', '_')}.png": attention_figure(
            result.images, item, queries, show_images=show_images
        )
        for item in mapped
    }
    if mapped:
        figures["key_norm_vs_mass.png"] = scatter_figure(mapped)
    figures["similarity_ablation.png"] = ablation_figure(result.accuracy)
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110, bbox_inches="tight")
    summary = result.summary(
        run_dir=str(run_dir), checkpoint=checkpoint, device=str(torch_device), figures=list(figures)
    )
    atomic_write_json(out_dir / "analysis.json", summary)
    atomic_write_text(out_dir / "analysis.md", to_markdown(summary))
    return summary


# ---- figures -------------------------------------------------------------------------------------------------------
def _figure(nrows: int, ncols: int, *, width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _display(image: Tensor) -> np.ndarray:
    """A normalised (3, H, W) image as (H, W, 3) in [0, 1] for display (min-max per image). Arrays, not tensors, go
    to matplotlib: it converts tensors through ``__array__(copy=...)``, which torch does not implement (a warning)."""
    image = image.float().cpu()
    image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return image.permute(1, 2, 0).numpy()


def attention_figure(
    images: Tensor, item: BlockAttention, queries: Sequence[tuple[float, float]], *, show_images: int
) -> Figure:
    """Rows: images; columns: the image with the query positions, then one map per query (mean over heads) over
    the key grid, stretched over the image. Softmax maps are probabilities; scale maps are signed weights."""
    stats = item.stats
    (qh, qw), (kh, kw) = stats.query_grid, stats.key_grid
    count = min(show_images, len(images))
    fig, axes = _figure(count, len(queries) + 1, width=2.2, height=2.2)
    assert item.weights is not None, "attention_figure needs a block with an explicit map"
    softmax = item.probabilities
    for row in range(count):
        picture = _display(images[row])
        axes[row, 0].imshow(picture, extent=(0, 1, 1, 0))
        for index, (fy, fx) in enumerate(queries):
            qy, qx = round(fy * (qh - 1)), round(fx * (qw - 1))
            # Marker at the centre of the query's cell, in image fractions.
            cy, cx = (qy + 0.5) / qh, (qx + 0.5) / qw
            axes[row, 0].plot(cx, cy, "x", color=f"C{index}", markersize=8, markeredgewidth=2)
            amap = item.weights[row, :, qy * qw + qx].mean(dim=0).reshape(kh, kw).cpu().numpy()
            ax = axes[row, index + 1]
            ax.imshow(picture, extent=(0, 1, 1, 0))
            if softmax:
                shown = ax.imshow(amap, extent=(0, 1, 1, 0), cmap="magma", alpha=0.7, interpolation="bilinear")
            else:
                limit = float(np.abs(amap).max()) or 1.0
                shown = ax.imshow(
                    amap,
                    extent=(0, 1, 1, 0),
                    cmap="coolwarm",
                    vmin=-limit,
                    vmax=limit,
                    alpha=0.75,
                    interpolation="bilinear",
                )
            ax.plot(cx, cy, "x", color=f"C{index}", markersize=8, markeredgewidth=2)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            if row == 0:
                ax.set_title(f"query ({qy}, {qx})", fontsize=9)
        axes[row, 0].set_title("image" if row == 0 else "", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    kind = (
        f"{stats.normalization} probabilities"
        if softmax
        else ("scaled weights q.k / s" if stats.normalization == "scale" else f"{stats.normalization} weights")
    )
    fig.suptitle(f"{stats.name}: attention of a few queries ({kind}, mean over {stats.heads} head(s))", fontsize=10)
    return fig


def scatter_figure(analysed: Sequence[BlockAttention], *, max_points: int = 4000) -> Figure:
    """Key norm against the attention mass the key receives, one panel per block (a random subset of keys)."""
    fig, axes = _figure(1, len(analysed), width=3.6, height=3.2)
    generator = torch.Generator().manual_seed(0)
    for index, (ax, item) in enumerate(zip(axes[0], analysed)):
        assert item.mass is not None, "scatter_figure needs blocks with an explicit map"
        norms, masses = item.key_norm.flatten().cpu(), item.mass.flatten().cpu()
        if len(norms) > max_points:
            keep = torch.randperm(len(norms), generator=generator)[:max_points]
            norms, masses = norms[keep], masses[keep]
        ax.scatter(norms, masses, s=3, alpha=0.3, color=item.color or f"C{index}", rasterized=True)
        ax.set_xlabel("key norm |k_j|")
        ax.set_ylabel("attention mass" if item.probabilities else "sum_i |w_ij|")
        ax.set_title(
            f"{item.stats.name} ({item.stats.normalization})\nPearson {item.stats.key_norm_mass_pearson:.2f}, "
            f"Spearman {item.stats.key_norm_mass_spearman:.2f}",
            fontsize=9,
        )
        ax.grid(True, alpha=0.3)
    return fig


def ablation_figure(ablation: dict[str, float]) -> Figure:
    fig, axes = _figure(1, 1, width=4.0, height=3.0)
    ax = axes[0, 0]
    names = list(ablation)
    values = [100.0 * ablation[name] for name in names]
    bars = ax.bar(names, values, color=["tab:gray", "tab:purple", "tab:green"][: len(names)])
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_xlabel("similarity at test time (all NL blocks)")
    ax.set_ylim(0, max(values + [1.0]) * 1.15)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# ---- summary -------------------------------------------------------------------------------------------------------
def to_markdown(summary: dict[str, Any]) -> str:
    def number(value: Any) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = [
        f"# Magnitude vs direction: `{summary['run_dir']}`",
        "",
        f"Checkpoint `{summary['checkpoint']}`, {summary['images_analysed']} test images for the attention "
        f"statistics, {summary['test_images_evaluated']} for the accuracies (device {summary['device']}). "
        "Definitions: the docstring of nlbench/analysis.py.",
        "",
        *([f"**Warning:** {summary['warning']}.", ""] if summary.get("warning") else []),
        "## Test accuracy with the similarity switched at test time",
        "",
        "| similarity | top-1 (%) | change vs dot (points) |",
        "| --- | --- | --- |",
    ]
    dot = summary["accuracy"].get("dot")
    for name, value in summary["accuracy"].items():
        lines.append(f"| {name} | {100 * value:.2f} | {100 * (value - dot):+.2f} |")
    lines += [
        "",
        "## Per block",
        "",
        "| block | normalization | heads | grid | corr(key norm, mass) Pearson / Spearman | key norm CV | "
        "entropy | query variation | logit R² magnitude | logit R² direction |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for block in summary["blocks"]:
        grid = "x".join(map(str, block["query_grid"]))
        lines.append(
            f"| {block['name']} | {block['normalization']} | {block['heads']} | {grid} | "
            f"{number(block['key_norm_mass_pearson'])} / {number(block['key_norm_mass_spearman'])} | "
            f"{number(block['key_norm_cv'])} | {number(block['attention_entropy'])} | "
            f"{number(block['query_variation'])} | {number(block['logit_r2_magnitude'])} | "
            f"{number(block['logit_r2_direction'])} |"
        )
    lines += ["", "Attention mass: " + "; ".join(sorted({b["mass"] for b in summary["blocks"]})) + ".", ""]
    notes = [f"- {b['name']}: {b['note']}." for b in summary["blocks"] if b.get("note")]
    lines += ["Notes:", "", *notes, ""] if notes else []
    lines += [f"![{name}]({name})" for name in summary.get("figures", [])]
    return "\n".join(lines) + "\n"


# ---- command line --------------------------------------------------------------------------------------------------
def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nlbench analyze", description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--run_dir", type=str | None, default=None, help="run directory written by `nlbench fit`")
    parser.add_argument(
        "--ckpt",
        type=str | None,
        default=None,
        help="a checkpoint file instead (its run directory is the folder above checkpoints/)",
    )
    parser.add_argument("--checkpoint", type=str, default="best", help="with --run_dir: best | last")
    parser.add_argument("--out", type=str | None, default=None, help="output folder (default: <run_dir>/analysis)")
    parser.add_argument("--batches", type=int, default=8, help="test batches for the accuracies")
    parser.add_argument("--images", type=int, default=64, help="test images for the attention statistics")
    parser.add_argument(
        "--queries",
        type=list[tuple[float, float]],
        default=[list(q) for q in DEFAULT_QUERIES],
        help="query positions as (row, column) fractions of the feature map, e.g. [[0.5,0.5]]",
    )
    parser.add_argument("--show_images", type=int, default=3, help="images in the attention-map figures")
    parser.add_argument("--device", type=str | None, default=None, help="cpu | cuda (default: cuda if available)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.ckpt:
            ckpt = Path(args.ckpt)
            run_dir = Path(args.run_dir) if args.run_dir else ckpt.resolve().parent.parent
            checkpoint = str(ckpt)
        elif args.run_dir:
            run_dir, checkpoint = Path(args.run_dir), args.checkpoint
        else:
            raise ValueError("give --run_dir DIR or --ckpt PATH")
        summary = analyze_run(
            run_dir,
            checkpoint=checkpoint,
            out=args.out,
            batches=args.batches,
            images=args.images,
            queries=[tuple(q) for q in args.queries],
            show_images=args.show_images,
            device=args.device,
        )
    except (ArgumentError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"nlbench analyze: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else run_dir / "analysis"
    print(summary_lines(summary, out))
    if summary.get("warning"):
        print(f"nlbench analyze: warning: {summary['warning']}", file=sys.stderr)
    return 0


def summary_lines(summary: dict[str, Any], out: Path) -> str:
    """What `nlbench analyze` prints: the accuracies, the blocks, and where the full JSON/markdown went (the whole
    JSON on stdout buried both)."""
    accuracy = ", ".join(f"{name} {100 * value:.2f}%" for name, value in summary["accuracy"].items())
    blocks = ", ".join(f"{b['name']} ({b['normalization']})" for b in summary["blocks"])
    return (
        f"top-1 with the similarity switched at test time: {accuracy} "
        f"({summary['test_images_evaluated']} test images)\n"
        f"NL blocks: {blocks}\n"
        f"wrote {out / 'analysis.json'}, {out / 'analysis.md'} and {len(summary['figures'])} figures in {out}"
    )


if __name__ == "__main__":
    sys.exit(main())
