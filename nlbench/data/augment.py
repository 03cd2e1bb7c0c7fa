"""Batched image augmentation on any device (the fast path's transforms).

Each function takes a whole batch (B, C, H, W) and draws one set of random parameters per image, vectorised over
the batch: no per-image Python loop. Parameters are drawn from the same distributions as the torchvision
transforms the per-sample path uses (``RandomCrop(padding=p)``, ``RandomHorizontalFlip``, ``RandomResizedCrop``),
and the pixel operations reproduce those transforms given the same parameters, so the two paths are
interchangeable. The sampling and the pixel operations are separate functions so each can be checked against
torchvision on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor

__all__ = [
    "crop_flip",
    "random_crop_flip",
    "random_resized_crop_flip",
    "resized_crop_flip",
    "sample_flips",
    "sample_resized_crop_boxes",
    "sample_translations",
]


def sample_flips(
    n: int, *, p: float = 0.5, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Bool (n,): which images to flip horizontally, each with probability ``p`` (as ``RandomHorizontalFlip``)."""
    return torch.rand(n, device=device, generator=generator) < p


def sample_translations(
    n: int, padding: int, *, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Long (n, 2): (top, left) crop offsets into the zero-padded image, each uniform on [0, 2 * padding].

    ``RandomCrop(size, padding=p)`` on an image of that size draws top and left independently and uniformly, so
    all (2p + 1)^2 translations are equally likely.
    """
    return torch.randint(0, 2 * padding + 1, (n, 2), device=device, generator=generator)


def crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, *, padding: int) -> Tensor:
    """Zero-pad each image by ``padding``, crop it back to its size at ``offsets`` and mirror where ``flips``.

    Equals ``F.horizontal_flip(F.crop(F.pad(img, padding), top, left, H, W))`` per image, for any dtype (use it on
    uint8 before conversion: the padding value 0 then means black, as in the per-sample path).
    """
    batch, _, height, width = images.shape
    padded = nnf.pad(images, (padding, padding, padding, padding))
    # A strided view of every (top, left) window; indexing it copies one window per image. This beat gathering
    # rows and columns with index tensors by ~1.5x on CPU.
    windows = padded.unfold(2, height, 1).unfold(3, width, 1).permute(0, 2, 3, 1, 4, 5)
    crops = windows[torch.arange(batch, device=images.device), offsets[:, 0], offsets[:, 1]]
    return torch.where(flips[:, None, None, None], crops.flip(-1), crops)


def random_crop_flip(
    images: Tensor, *, padding: int, flip: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """``RandomCrop(size, padding=padding)`` followed by ``RandomHorizontalFlip()`` for every image of a batch."""
    n, device = images.shape[0], images.device
    offsets = sample_translations(n, padding, device=device, generator=generator)
    flips = (
        sample_flips(n, device=device, generator=generator) if flip else torch.zeros(n, dtype=torch.bool, device=device)
    )
    return crop_flip(images, offsets, flips, padding=padding)


@functools.lru_cache(maxsize=16)
def _log_ratio(low: float, high: float) -> tuple[float, float]:
    """torchvision's float32 log of the aspect-ratio bounds, computed once (not a host tensor and two reads per
    batch)."""
    log_ratio = torch.log(torch.tensor([low, high]))
    return log_ratio[0].item(), log_ratio[1].item()


def sample_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Long (n, 4): (top, left, height, width) crop boxes distributed as ``RandomResizedCrop.get_params``.

    torchvision tries up to 10 (area fraction, log aspect ratio) draws per image and keeps the first box that fits
    in the image, else falls back to a central crop. Here all attempts are drawn at once and the first fitting one
    is picked per row, which gives the same distribution. (Rounding is done in float32 rather than Python floats;
    the two can disagree only on values within ~1e-6 of a .5 tie.)
    """
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(
            f"random resized crop needs 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1], "
            f"got scale={tuple(scale)}, ratio={tuple(ratio)}"
        )
    area = height * width
    log_ratio = _log_ratio(float(ratio[0]), float(ratio[1]))
    target_area = area * torch.empty(n, attempts, device=device).uniform_(scale[0], scale[1], generator=generator)
    aspect = torch.exp(torch.empty(n, attempts, device=device).uniform_(*log_ratio, generator=generator))
    w = torch.sqrt(target_area * aspect).round().long()
    h = torch.sqrt(target_area / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    # top and left uniform over the valid positions, as torch.randint(0, size - crop + 1) per image
    top = (torch.rand(n, device=device, generator=generator) * (height - h + 1)).long().clamp_(max=height - h)
    left = (torch.rand(n, device=device, generator=generator) * (width - w + 1)).long().clamp_(max=width - w)

    fallback_h, fallback_w = _central_fallback(height, width, ratio)
    none_fit = ~fits.any(dim=1)
    h = torch.where(none_fit, fallback_h, h)
    w = torch.where(none_fit, fallback_w, w)
    top = torch.where(none_fit, (height - fallback_h) // 2, top)
    left = torch.where(none_fit, (width - fallback_w) // 2, left)
    return torch.stack([top, left, h, w], dim=1)


def _central_fallback(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int]:
    """(h, w) of torchvision's central crop when no random box fits: the whole image, clamped to the ratio range."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def _resize_weights(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """(B, out_size, in_size) rows of the antialiased bilinear resampling of the span [start, start + length).

    This is the triangle filter torch uses for ``interpolate(mode="bilinear", antialias=True)``: the support
    widens with the downscale factor (so shrinking averages instead of aliasing), weights outside the span are
    dropped and each row is renormalised, which reproduces the edge clamping of the plain bilinear upscale.
    """
    device = start.device
    scale = (length.float() / out_size)[:, None, None]
    centre = start[:, None, None] + (torch.arange(out_size, device=device) + 0.5)[None, :, None] * scale
    pixel_centre = torch.arange(in_size, device=device)[None, None, :] + 0.5
    weights = (1 - (pixel_centre - centre).abs() / scale.clamp(min=1)).clamp_(min=0)
    inside = (pixel_centre > start[:, None, None]) & (pixel_centre < (start + length)[:, None, None])
    weights = weights * inside
    return weights / weights.sum(dim=-1, keepdim=True)


def resized_crop_flip(images: Tensor, boxes: Tensor, flips: Tensor, *, size: int) -> Tensor:
    """Crop each float image to its (top, left, height, width) box, resize to ``size`` x ``size``, mirror where
    ``flips``.

    Equals ``F.horizontal_flip(F.resized_crop(img, *box, [size, size], antialias=True))`` per float image (up to
    float rounding; TF32 matmuls, if enabled, add ~1e-4 relative error). The resize is separable, so it is two
    batched matmuls with per-image weight matrices: out = Wy @ img @ Wx^T. The dense matrices do ~20x the
    arithmetic of a sparse 4-tap filter, which is free on a GPU and still ~5x faster than per-sample resizing on CPU.
    """
    if not images.is_floating_point():
        raise TypeError(f"resized_crop_flip needs float images, got {images.dtype}")
    height, width = images.shape[-2:]
    top, left, box_h, box_w = boxes.unbind(dim=1)
    weights_y = _resize_weights(top, box_h, height, size).to(images.dtype)
    weights_x = _resize_weights(left, box_w, width, size).to(images.dtype)
    weights_x = torch.where(flips[:, None, None], weights_x.flip(1), weights_x)
    return torch.einsum("boh,bchw,bpw->bcop", weights_y, images, weights_x)


def random_resized_crop_flip(
    images: Tensor,
    *,
    size: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``RandomResizedCrop(size, scale, ratio)`` followed by ``RandomHorizontalFlip()`` for a float batch."""
    n, device = images.shape[0], images.device
    boxes = sample_resized_crop_boxes(
        n, images.shape[-2], images.shape[-1], scale=scale, ratio=ratio, device=device, generator=generator
    )
    flips = (
        sample_flips(n, device=device, generator=generator) if flip else torch.zeros(n, dtype=torch.bool, device=device)
    )
    return resized_crop_flip(images, boxes, flips, size=size)
