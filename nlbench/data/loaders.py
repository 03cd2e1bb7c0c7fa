"""Map-style datasets over in-memory uint8 image tensors, for the two loading paths.

- ``BatchedImageDataset`` (fast path): ``__getitems__`` returns a whole batch with one tensor index, so a standard
  ``DataLoader`` (``collate_fn=keep_batch``) costs one gather per batch, and any sampler works unchanged
  (Lightning's automatic ``DistributedSampler`` injection shards it under DDP like any other dataset).
  Augmentation happens later, batched, on the model's device (see ``augment.py``). The arrays may live on the GPU
  (``device_cache``), and the gather then runs there.
- ``ImageTensorDataset`` (torchvision path): ``__getitem__`` applies a per-sample transform (transforms v2) to one
  image; the default collate stacks the results.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["BatchedImageDataset", "ImageTensorDataset", "keep_batch", "make_loader"]


class ImageTensorDataset(Dataset[tuple[Tensor, Tensor]]):
    """uint8 images (N, 3, H, W) and int64 labels (N,), with an optional per-sample ``transform`` of the image."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class BatchedImageDataset(ImageTensorDataset):
    """``ImageTensorDataset`` without a transform that serves whole batches: ``__getitems__(indices)`` returns
    (uint8 (B, 3, H, W), int64 (B,)). Use it with ``collate_fn=keep_batch``."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        super().__init__(images, labels)

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        if self.images.is_cuda:
            # A GPU-resident cache: copy the indices from pinned memory without blocking, so the gather is queued
            # behind the running step instead of waiting for it (a pageable copy would synchronise the host).
            index = index.pin_memory().to(self.images.device, non_blocking=True)
        return self.images[index], self.labels[index]


def keep_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Collate function for ``BatchedImageDataset``: its ``__getitems__`` already returns a collated batch."""
    return batch


def make_loader(
    dataset: ImageTensorDataset,
    *,
    batch_size: int,
    shuffle: bool,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A plain ``DataLoader`` for either dataset (the collate function follows the dataset's kind)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,  # forking workers again every epoch would dominate small epochs
        collate_fn=keep_batch if isinstance(dataset, BatchedImageDataset) else None,
    )
