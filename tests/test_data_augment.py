"""The fast path's batched augmentation against torchvision's per-sample transforms.

Pixel operations: exact (crop/flip, evaluation transforms) or within float rounding (resized crop) given the same
parameters. Parameter distributions: chi-square / Kolmogorov-Smirnov tests with fixed seeds at a 1e-4 level, each
shown to reject a plausible bug, comparing the DataModules' two paths end to end.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as F

from nlbench.data import CIFAR10DataModule, TinyImageNetDataModule
from nlbench.data.augment import (
    crop_flip,
    resized_crop_flip,
    sample_flips,
    sample_resized_crop_boxes,
    sample_translations,
)
from nlbench.data.datamodules import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD

ALPHA = 1e-4


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b| (exact with ties)."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b]).unique()
    cdf_a = torch.searchsorted(a, grid, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, grid, right=True).double() / len(b)
    return (cdf_a - cdf_b).abs().max().item()


def ks_critical(n: int, m: int, alpha: float = ALPHA) -> float:
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def chi2_critical(df: int, alpha: float = ALPHA) -> float:
    """Upper alpha quantile of chi-square(df) (Wilson-Hilferty; accurate to ~1% for df > 30)."""
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - alpha)).item()
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2_uniform(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return (((counts - expected) ** 2) / expected).sum().item()


def chi2_homogeneity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Chi-square statistic that two count vectors come from the same distribution."""
    table = torch.stack([a, b]).double()
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    return (((table - expected) ** 2) / expected.clamp(min=1e-12)).sum().item()


def unnormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Float normalised images -> pixel values in [0, 255] (float)."""
    mean = torch.tensor(mean).view(-1, 1, 1)
    std = torch.tensor(std).view(-1, 1, 1)
    return (images * std + mean) * 255


def run_sample_transform(transform, images: torch.Tensor) -> torch.Tensor:
    return torch.stack([transform(image) for image in images])


# ---- pixel operations, given the parameters --------------------------------------------------------------------
def test_crop_flip_equals_torchvision_pad_crop_flip():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    offsets = sample_translations(40, 4, generator=g)
    flips = sample_flips(40, generator=g)
    out = crop_flip(images, offsets, flips, padding=4)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for image, (top, left), flip, got in zip(images, offsets.tolist(), flips, out):
        expected = F.crop(F.pad(image, [4]), top, left, 32, 32)
        if flip:
            expected = F.horizontal_flip(expected)
        assert torch.equal(got, expected)


def test_resized_crop_flip_equals_torchvision_resized_crop():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 3, 64, 64), dtype=torch.uint8, generator=g)
    boxes = sample_resized_crop_boxes(48, 64, 64, generator=g)
    # also the extremes: the whole image (downscale), a 1-pixel box and a thin strip at the border
    boxes[:3] = torch.tensor([[0, 0, 64, 64], [63, 0, 1, 1], [5, 60, 40, 4]])
    flips = sample_flips(48, generator=g)
    floats = F.to_dtype(images, torch.float32, scale=True)
    out = resized_crop_flip(floats, boxes, flips, size=56)
    assert out.shape == (48, 3, 56, 56)
    for image, image_u8, box, flip, got in zip(floats, images, boxes.tolist(), flips, out):
        expected = F.resized_crop(image, *box, [56, 56], antialias=True)
        # what the torchvision path computes: the same resize on uint8 (fixed-point weights, rounded output)
        expected_u8 = F.to_dtype(F.resized_crop(image_u8, *box, [56, 56], antialias=True), torch.float32, scale=True)
        if flip:
            expected, expected_u8 = F.horizontal_flip(expected), F.horizontal_flip(expected_u8)
        torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)
        assert (got - expected_u8).abs().max().item() <= 1.01 / 255


def test_resized_crop_needs_float():
    with pytest.raises(TypeError, match="float"):
        resized_crop_flip(
            torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.tensor([[0, 0, 8, 8]]), torch.tensor([False]), size=4
        )


# ---- RandomResizedCrop box distribution ----------------------------------------------------------------------
def box_features(boxes: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    top, left, h, w = boxes.double().unbind(1)
    return {
        "area": h * w / (height * width),
        "log_ratio": torch.log(w / h),
        # relative position within the free range (0.5 when the box spans the image)
        "top": torch.where(h < height, top / (height - h).clamp(min=1), 0.5),
        "left": torch.where(w < width, left / (width - w).clamp(min=1), 0.5),
    }


def torchvision_boxes(n: int, height: int, width: int, scale, ratio, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    transform = v2.RandomResizedCrop(56, scale=scale, ratio=ratio)
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    rows = []
    for _ in range(n):
        p = transform.make_params([image])
        rows.append((p["top"], p["left"], p["height"], p["width"]))
    return torch.tensor(rows)


def clamped_boxes(n: int, height: int, width: int, scale, ratio, generator) -> torch.Tensor:
    """A plausible wrong sampler: one draw, clamped to the image instead of retried."""
    area = height * width * torch.empty(n).uniform_(*scale, generator=generator)
    aspect = torch.exp(torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator))
    w = torch.sqrt(area * aspect).round().clamp(max=width)
    h = torch.sqrt(area / aspect).round().clamp(max=height)
    return torch.stack([torch.zeros(n), torch.zeros(n), h, w], 1).long()


@pytest.mark.parametrize("height,width", [(64, 64), (48, 64)])
def test_resized_crop_boxes_distributed_as_torchvision(height, width):
    n, scale, ratio = 10_000, (0.08, 1.0), (3 / 4, 4 / 3)
    ref = box_features(torchvision_boxes(n, height, width, scale, ratio, seed=0), height, width)
    fast_boxes = sample_resized_crop_boxes(
        n, height, width, scale=scale, ratio=ratio, generator=torch.Generator().manual_seed(0)
    )
    top, left, h, w = fast_boxes.unbind(1)
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= height).all() and (left + w <= width).all()
    fast = box_features(fast_boxes, height, width)
    wrong = box_features(clamped_boxes(n, height, width, scale, ratio, torch.Generator().manual_seed(0)), height, width)
    critical = ks_critical(n, n)
    for name in ref:
        assert ks_statistic(ref[name], fast[name]) < critical, name
    assert ks_statistic(ref["area"], wrong["area"]) > 3 * critical  # the test has the power to see the bug


def test_resized_crop_fallback_matches_torchvision():
    # wide boxes (ratio 2 to 3) with area fractions 0.35 to 1 rarely fit a square image: about a third of the
    # images exhaust the 10 attempts and get the central fallback crop
    n, scale, ratio = 4_000, (0.35, 1.0), (2.0, 3.0)
    ref = torchvision_boxes(n, 64, 64, scale, ratio, seed=1)
    fast = sample_resized_crop_boxes(n, 64, 64, scale=scale, ratio=ratio, generator=torch.Generator().manual_seed(1))
    fallback = torch.tensor([16, 0, 32, 64])  # central crop of height 64 / 2
    ref_rate = (ref == fallback).all(1).double().mean().item()
    fast_rate = (fast == fallback).all(1).double().mean().item()
    assert 0.2 < ref_rate < 0.9
    assert abs(ref_rate - fast_rate) < 4 * math.sqrt(ref_rate * (1 - ref_rate) * 2 / n)
    for name, values in box_features(ref, 64, 64).items():
        assert ks_statistic(values, box_features(fast, 64, 64)[name]) < ks_critical(n, n), name


def test_resized_crop_boxes_reject_bad_ranges():
    with pytest.raises(ValueError, match="scale"):
        sample_resized_crop_boxes(4, 64, 64, scale=(0.5, 0.1))


# ---- the DataModules' two paths, end to end ------------------------------------------------------------------
def cifar_coordinate_images(n: int) -> torch.Tensor:
    """Images whose channels hold row + 1 and column + 1 (0 only in the zero padding)."""
    rows = torch.arange(1, 33, dtype=torch.uint8).view(32, 1).expand(32, 32)
    image = torch.stack([rows, rows.T, torch.zeros_like(rows)])
    return image.expand(n, 3, 32, 32).contiguous()


def decode_cifar(images: torch.Tensor, padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, flip) of each augmented coordinate image, read at its centre pixel."""
    pixels = unnormalize(images, CIFAR_MEAN, CIFAR_STD).round().long()
    row, col, col_next = pixels[:, 0, 16, 16] - 1, pixels[:, 1, 16, 16] - 1, pixels[:, 1, 16, 17] - 1
    flip = col_next < col
    top = row - 16 + padding
    left = torch.where(flip, col - 15, col - 16) + padding
    return top, left, flip


def test_cifar_paths_same_translation_and_flip_distribution():
    n, padding = 8_100, 4
    dm = CIFAR10DataModule(data_dir="unused")
    images = cifar_coordinate_images(n)
    torch.manual_seed(2)
    fast = decode_cifar(dm.batch_transform(images, train=True), padding)
    torch.manual_seed(3)
    slow = decode_cifar(run_sample_transform(dm.sample_transform(train=True), images), padding)
    cells = (2 * padding + 1) ** 2 * 2
    counts = []
    for top, left, flip in (fast, slow):
        assert top.min() == 0 and top.max() == 2 * padding and left.min() == 0 and left.max() == 2 * padding
        assert abs(flip.double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
        cell = (top * (2 * padding + 1) + left) * 2 + flip.long()
        counts.append(torch.bincount(cell, minlength=cells).double())
        assert chi2_uniform(counts[-1]) < chi2_critical(cells - 1)
    assert chi2_homogeneity(*counts) < chi2_critical(cells - 1)
    # power: the same statistic flags a crop that never uses the last offset
    biased = counts[0].view(2 * padding + 1, 2 * padding + 1, 2).clone()
    biased[-1] = 0
    assert chi2_uniform(biased.flatten()) > 3 * chi2_critical(cells - 1)


def tiny_coordinate_images(n: int) -> torch.Tensor:
    rows = (torch.arange(64, dtype=torch.uint8) * 4).view(64, 1).expand(64, 64)
    image = torch.stack([rows, rows.T, torch.zeros_like(rows)])
    return image.expand(n, 3, 64, 64).contiguous()


def decode_tiny(images: torch.Tensor, size: int) -> torch.Tensor:
    """(top, left, height, width, flip) of each RandomResizedCrop of a coordinate image.

    Bilinear resampling (antialiased or not) reproduces a linear ramp exactly away from the crop's edges, so two
    interior output pixels give each axis' scale and offset.
    """
    pixels = unnormalize(images, IMAGENET_MEAN, IMAGENET_STD) / 4
    k1, k2 = 8, size - 9
    mid = size // 2
    row1, row2 = pixels[:, 0, k1, mid], pixels[:, 0, k2, mid]
    col1, col2 = pixels[:, 1, mid, k1], pixels[:, 1, mid, k2]
    scale_y = (row2 - row1) / (k2 - k1)
    scale_x = (col2 - col1) / (k2 - k1)
    flip = scale_x < 0
    scale_x = scale_x.abs()
    top = row1 - (k1 + 0.5) * scale_y + 0.5
    # a flipped output pixel k shows the crop's column size - 1 - k
    left = torch.where(flip, col2, col1) - (k1 + 0.5) * scale_x + 0.5
    return torch.stack([top, left, scale_y * size, scale_x * size, flip.double()], 1).round().long()


def test_tiny_imagenet_paths_same_resized_crop_distribution():
    n = 2_000
    dm = TinyImageNetDataModule(data_dir="unused")
    images = tiny_coordinate_images(n)
    torch.manual_seed(4)
    fast = decode_tiny(dm.batch_transform(images, train=True), dm.image_size)
    torch.manual_seed(5)
    slow = decode_tiny(run_sample_transform(dm.sample_transform(train=True), images), dm.image_size)
    for boxes in (fast, slow):
        top, left, h, w, flip = boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
        assert abs(flip.double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
    fast_features, slow_features = box_features(fast[:, :4], 64, 64), box_features(slow[:, :4], 64, 64)
    for name in fast_features:
        assert ks_statistic(fast_features[name], slow_features[name]) < ks_critical(n, n), name
    # and both match the distribution the transform is meant to have
    ref = box_features(torchvision_boxes(n, 64, 64, (0.08, 1.0), (3 / 4, 4 / 3), seed=6), 64, 64)
    assert ks_statistic(ref["area"], fast_features["area"]) < ks_critical(n, n)


# ---- evaluation transforms: bit-identical between the paths --------------------------------------------------
@pytest.mark.parametrize("module,size", [(CIFAR10DataModule, 32), (TinyImageNetDataModule, 64)])
def test_eval_transform_identical_between_paths(module, size):
    dm = module(data_dir="unused")
    images = torch.randint(0, 256, (16, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    fast = dm.batch_transform(images, train=False)
    slow = run_sample_transform(dm.sample_transform(train=False), images)
    assert fast.dtype == torch.float32 and fast.shape == (16, 3, dm.image_size, dm.image_size)
    assert torch.equal(fast, slow)
    # and it is the right transform: centre crop (4 px border for 64 -> 56) and the normalisation inverts
    border = (size - dm.image_size) // 2
    expected = images[:, :, border : border + dm.image_size, border : border + dm.image_size]
    assert torch.equal(unnormalize(fast, dm.mean, dm.std).round().to(torch.uint8), expected)


@pytest.mark.parametrize("module,size", [(CIFAR10DataModule, 32), (TinyImageNetDataModule, 64)])
def test_augment_off_gives_eval_transform_for_training(module, size):
    dm = module(data_dir="unused", augment=False)
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(dm.batch_transform(images, train=True), dm.batch_transform(images, train=False))
    assert torch.equal(
        run_sample_transform(dm.sample_transform(train=True), images), dm.batch_transform(images, train=False)
    )
