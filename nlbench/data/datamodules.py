"""LightningDataModules for CIFAR-10, CIFAR-100, Tiny-ImageNet and the CIFAR-10 sample shipped in the package.

Two loading paths over the same in-memory uint8 arrays (from ``sources.load``):

- ``loader="tensor"`` (default, fast): the DataLoader yields uint8 batches; ``on_after_batch_transfer`` converts,
  augments and normalises the whole batch on the model's device (``batch_transform``).
- ``loader="torchvision"``: transforms v2 per sample in the DataLoader (``sample_transform``), with ``num_workers``;
  batches arrive ready.

Both paths give the same transform distribution and bit-identical evaluation batches (tests/test_data_augment.py).
Defaults are the paper's (official code): CIFAR random crop 32 with 4 px zero padding + flip, CIFAR mean/std;
Tiny-ImageNet RandomResizedCrop(56, scale=(0.08, 1)) + flip for training, CenterCrop(56) for evaluation, ImageNet
mean/std; batch 128, evaluation batch 100; the official test split serves as the validation split
(``val_split=0``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as F
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from nlbench.data import sources
from nlbench.data.augment import random_crop_flip, random_resized_crop_flip
from nlbench.data.loaders import BatchedImageDataset, ImageTensorDataset, make_loader
from nlbench.data.sources import ImageArrays

__all__ = [
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CIFAR10SampleDataModule",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CIFARDataModule",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDataModule",
    "TinyImageNetDataModule",
]

# The official code normalises CIFAR-100 with the CIFAR-10 statistics too.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Splits each Trainer stage needs ("val" is the official test split unless val_split > 0).
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class ImageDataModule(LightningDataModule):
    """Common machinery of the image classification DataModules; subclasses set the dataset and its transforms.

    Args:
        data_dir: Folder holding (or receiving) the dataset archives, extracted files and uint8 cache.
        batch_size: Training batch size: the global batch, as the paper's single-process (DataParallel) runs had
            it. Under DDP each of the world-size processes loads batch_size / world size (which must divide).
        eval_batch_size: Batch size of the validation, test and predict loaders, per process (results do not
            depend on it).
        download: Download the official archive when it is missing (``prepare_data``, rank 0 only).
        verify: Check archive checksums; turn off for local copies whose bytes differ from the official ones.
        val_split: 0 = validate on the official test split (as the paper does); a fraction in (0, 1) or an image
            count >= 1 = hold out that part of the training split for validation (chosen with ``split_seed``).
        split_seed: Seed of the held-out validation split and of the ``subset`` draw.
        loader: "tensor" = uint8 batches augmented on the model's device; "torchvision" = transforms v2 per sample.
        num_workers: DataLoader worker processes (mostly useful for the torchvision path).
        augment: Apply the training augmentation (off = training batches get the evaluation transform).
        flip: Random horizontal flips (probability 0.5) in the training augmentation.
        mean: Per-channel normalisation mean (of images scaled to [0, 1]).
        std: Per-channel normalisation standard deviation.
        subset: Keep only this many training images (a seeded random draw), e.g. for demos and smoke tests.
        drop_last: Drop the last incomplete training batch (the official loaders keep it).
        device_cache: Tensor path on a GPU: keep the uint8 cache in GPU memory (moved once, about 180 MB for
            CIFAR), so a batch is one gather on the device instead of a host gather plus a transfer. Needs
            ``num_workers=0``; without a GPU it changes nothing.
    """

    name: ClassVar[str]  # the dataset's name in ``sources.DATASETS``

    def __init__(
        self,
        *,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 100,
        download: bool = False,
        verify: bool = True,
        val_split: int | float = 0,
        split_seed: int = 0,
        loader: Literal["tensor", "torchvision"] = "tensor",
        num_workers: int = 0,
        augment: bool = True,
        flip: bool = True,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        subset: int | None = None,
        drop_last: bool = False,
        device_cache: bool = False,
    ) -> None:
        super().__init__()
        for option, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{option} must be >= 1, got {value}")
        if val_split < 0 or (val_split >= 1 and val_split != int(val_split)):
            raise ValueError(f"val_split must be 0, a fraction in (0, 1) or a whole image count, got {val_split}")
        if loader not in ("tensor", "torchvision"):
            raise ValueError(f"loader must be 'tensor' or 'torchvision', got {loader!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each with std > 0, got mean={mean}, std={std}")
        if device_cache and (loader != "tensor" or num_workers):
            raise ValueError(
                "device_cache needs loader='tensor' and num_workers=0 (workers cannot share GPU memory), "
                f"got loader={loader!r}, num_workers={num_workers}"
            )
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be >= 1 or None, got {subset}")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.download = download
        self.verify = verify
        self.val_split = val_split
        self.split_seed = split_seed
        self.loader = loader
        self.num_workers = num_workers
        self.augment = augment
        self.flip = flip
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.subset = subset
        self.drop_last = drop_last
        self.device_cache = device_cache
        self._arrays: dict[str, ImageArrays] = {}
        self._device_arrays: dict[tuple[int, torch.device], tuple[ImageArrays, ImageArrays]] = {}
        self._norm_constants: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}
        self._generator: torch.Generator | None = None

    # ---- what the model sees -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes, known without loading data (the CLI links it into the model at instantiation)."""
        return sources.SPECS[self.name].num_classes

    @property
    def image_size(self) -> int:
        """Side of the square images reaching the model."""
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        """Class names in label order, read from the data (loads the test split if nothing is loaded yet)."""
        if not self._arrays:
            self._arrays["test"] = self._load("test")
        return next(iter(self._arrays.values())).classes

    def batch_transform(self, images: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        """uint8 (B, 3, H, W) on any device -> float32 normalised (B, 3, S, S): the fast path's transform.
        ``generator`` draws the augmentation (default: the global generator of the images' device)."""
        raise NotImplementedError

    def sample_transform(self, *, train: bool) -> v2.Transform:
        """The torchvision path's per-sample transform of one uint8 (3, H, W) image (same distribution)."""
        raise NotImplementedError

    def _to_normalized_float(self, images: Tensor) -> Tensor:
        # The very kernels v2.ToDtype and v2.Normalize call per sample, so evaluation batches match bit for bit.
        return self._normalize(F.to_dtype(images, torch.float32, scale=True))

    def _normalize(self, images: Tensor) -> Tensor:
        """torchvision's ``normalize_image`` (subtract, then divide: bit for bit what v2.Normalize gives) with mean
        and std built once per device and dtype. F.normalize builds them from the lists at every call, which on a GPU
        is a blocking host-to-device copy per batch (torchvision issue 9576)."""
        key = (images.device, images.dtype)
        if key not in self._norm_constants:
            self._norm_constants[key] = tuple(
                torch.tensor(v, dtype=images.dtype, device=images.device).view(-1, 1, 1) for v in (self.mean, self.std)
            )  # type: ignore[assignment]
        mean, std = self._norm_constants[key]
        return images.sub(mean).div_(std)

    def _to_float_and_normalize(self) -> list[v2.Transform]:
        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(self.mean), std=list(self.std))]

    # ---- Lightning hooks -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        sources.prepare(self.name, self.data_dir, download=self.download, verify=self.verify)

    def setup(self, stage: str) -> None:
        if stage not in _STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(_STAGE_SPLITS)}")
        if stage == "fit":
            _ = self.rank_batch_size  # refuse a global batch the DDP processes cannot split, before loading anything
        for split in _STAGE_SPLITS[stage]:
            if split in self._arrays:
                continue
            if split == "test" or (split == "val" and not self.val_split):
                if "test" not in self._arrays:
                    self._arrays["test"] = self._load("test")
                self._arrays[split] = self._arrays["test"]
            else:
                self._arrays.update(self._carve(self._load("train")))

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._dataloader("test", train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        if self.loader != "tensor" or not isinstance(batch, (tuple, list)):
            return batch  # e.g. the model's example_input_array for its summary: already a float image batch
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        generator = self.augmentation_generator(images.device) if training else None
        return self.batch_transform(images, train=training, generator=generator), labels

    def augmentation_generator(self, device: torch.device) -> torch.Generator | None:
        """The generator the fast path's training augmentation draws from on ``device``: None (the device's global
        generator) on one device; under DDP, where every rank has the same seed, a per-rank generator keeps their
        augmentations independent. ``nlbench.rng.RandomState`` checkpoints it."""
        if self.trainer is None or self.trainer.world_size == 1:
            return None
        if self._generator is None or self._generator.device != device:
            seed = (torch.initial_seed() + 7919 * self.trainer.global_rank) % 2**63
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    @property
    def rank_batch_size(self) -> int:
        """Training batch of this process: ``batch_size`` split evenly over the trainer's DDP processes."""
        world = self.trainer.world_size if self.trainer is not None else 1
        return per_rank_batch(self.batch_size, world)

    # ---- internals ---------------------------------------------------------------------------------------------
    def _load(self, split: str) -> ImageArrays:
        return sources.load(self.name, self.data_dir, split, verify=self.verify)

    def _carve(self, train: ImageArrays) -> dict[str, ImageArrays]:
        """The training split (after holding out ``val_split`` and drawing ``subset``) and the held-out split."""
        n = len(train.labels)
        n_val = round(self.val_split * n) if self.val_split < 1 else int(self.val_split)
        if self.val_split and not 0 < n_val < n:
            raise ValueError(
                f"val_split={self.val_split} leaves no training or no validation images out of {n} training images"
            )
        if not n_val and self.subset is None:
            return {"train": train}
        # One seeded permutation: its head is the validation split, the rest (or a subset of it) the training one.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        train_idx = order[n_val:] if self.subset is None else order[n_val : n_val + self.subset]
        # Sorted, so a carved split keeps the file order (and a subset of a class-sorted split stays sorted).
        splits = {"train": _take(train, train_idx.sort().values)}
        if n_val:
            splits["val"] = _take(train, order[:n_val].sort().values)
        return splits

    def _on_device(self, arrays: ImageArrays, device: torch.device) -> ImageArrays:
        """`arrays` moved to `device` once per split (val and test share one copy when they are the same split)."""
        key = (id(arrays), device)
        if key not in self._device_arrays:  # holding `arrays` in the value keeps its id from being reused
            self._device_arrays[key] = (arrays, _on_device_copy(arrays, device))
        return self._device_arrays[key][1]

    def _dataloader(self, split: str, *, train: bool) -> DataLoader:
        if split not in self._arrays:
            stage = "fit" if split == "train" else "validate" if split == "val" else "test"
            raise RuntimeError(f"{type(self).__name__} has no {split} split yet: call setup({stage!r}) first")
        return self.make_dataloader(self._arrays[split], train=train)

    def make_dataloader(self, arrays: ImageArrays, *, train: bool, pin_memory: bool | None = None) -> DataLoader:
        """The loader this module builds for a split, over any ``arrays`` (training: shuffled, ``batch_size``).

        ``pin_memory=None`` pins batches when the attached Trainer runs on CUDA.
        """
        if self.loader == "tensor":
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            if self.device_cache and device.type == "cuda":
                arrays = self._on_device(arrays, device)
                pin_memory = False  # the batches are on the GPU already
            dataset: ImageTensorDataset = BatchedImageDataset(arrays.images, arrays.labels)
        else:
            dataset = ImageTensorDataset(arrays.images, arrays.labels, transform=self.sample_transform(train=train))
        if pin_memory is None:
            pin_memory = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return make_loader(
            dataset,
            batch_size=self.rank_batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and self.drop_last,
            num_workers=self.num_workers,
            pin_memory=pin_memory,
        )


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The per-process share of a global training batch; the global batch (and so the paper's learning rate) stays
    what the config says whatever the number of GPUs a run gets."""
    if batch_size % world_size:
        raise ValueError(
            f"data.batch_size={batch_size} is the global batch and must divide evenly over the "
            f"{world_size} DDP processes (trainer.devices x trainer.num_nodes)"
        )
    return batch_size // world_size


def _on_device_copy(arrays: ImageArrays, device: torch.device) -> ImageArrays:
    return dataclasses.replace(arrays, images=arrays.images.to(device), labels=arrays.labels.to(device))


def _take(arrays: ImageArrays, index: Tensor) -> ImageArrays:
    coarse = arrays.coarse_labels
    return dataclasses.replace(
        arrays,
        images=arrays.images[index],
        labels=arrays.labels[index],
        coarse_labels=None if coarse is None else coarse[index],
    )


class CIFARDataModule(ImageDataModule):
    """CIFAR (32 x 32): random crop with zero padding + horizontal flip for training, plain normalisation for
    evaluation.

    Args:
        crop_padding: Zero padding (pixels per side) of the random 32 x 32 crop; 0 disables the crop.
        mean: Per-channel normalisation mean (CIFAR statistics, as the official code uses for both datasets).
        std: Per-channel normalisation standard deviation.
        **kwargs: The common options of ``ImageDataModule``.
    """

    def __init__(
        self,
        *,
        crop_padding: int = 4,
        mean: tuple[float, float, float] = CIFAR_MEAN,
        std: tuple[float, float, float] = CIFAR_STD,
        **kwargs,
    ) -> None:
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        super().__init__(mean=mean, std=std, **kwargs)
        self.crop_padding = crop_padding

    @property
    def image_size(self) -> int:
        return sources.SPECS[self.name].image_size

    def batch_transform(self, images: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        if train and self.augment:
            images = random_crop_flip(images, padding=self.crop_padding, flip=self.flip, generator=generator)
        return self._to_normalized_float(images)

    def sample_transform(self, *, train: bool) -> v2.Transform:
        steps: list[v2.Transform] = []
        if train and self.augment:
            if self.crop_padding:
                steps.append(v2.RandomCrop(self.image_size, padding=self.crop_padding))
            if self.flip:
                steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps + self._to_float_and_normalize())


class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes. See ``CIFARDataModule``."""

    name = "cifar10"


class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100 (fine labels): 50,000 training and 10,000 test images of 100 classes. See ``CIFARDataModule``."""

    name = "cifar100"


class CIFAR10SampleDataModule(CIFAR10DataModule):
    """The real CIFAR-10 sample embedded in the package: nothing to download, checksums not checked (its bytes
    differ from the official archive's). Takes every option of ``CIFAR10DataModule`` except data_dir, download
    and verify."""

    record_name: ClassVar[str] = "cifar10_sample"  # the run record's dataset: a subset, never pooled with cifar10
    train_images: ClassVar[int] = 1000  # data_batch_1 (sample/README.md): a sweep's CPU time estimate reads it

    def __init__(self, **kwargs) -> None:
        super().__init__(data_dir=str(sources.SAMPLE_ROOT), download=False, verify=False, **kwargs)


class TinyImageNetDataModule(ImageDataModule):
    """Tiny-ImageNet-200 (64 x 64; the labelled official val split is the test split): RandomResizedCrop + flip for
    training, CenterCrop for evaluation.

    Args:
        crop_size: Side of the crops reaching the model (RandomResizedCrop output and CenterCrop size).
        rrc_scale: Range of the crop's area as a fraction of the image (RandomResizedCrop ``scale``).
        rrc_ratio: Range of the crop's aspect ratio (RandomResizedCrop ``ratio``).
        mean: Per-channel normalisation mean (ImageNet statistics).
        std: Per-channel normalisation standard deviation.
        **kwargs: The common options of ``ImageDataModule``.
    """

    name = "tiny_imagenet"

    def __init__(
        self,
        *,
        crop_size: int = 56,
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        **kwargs,
    ) -> None:
        if not 1 <= crop_size <= 64:
            raise ValueError(f"crop_size must be in [1, 64] (the images are 64 x 64), got {crop_size}")
        if not (0 < rrc_scale[0] <= rrc_scale[1] <= 1) or not (0 < rrc_ratio[0] <= rrc_ratio[1]):
            raise ValueError(
                f"rrc_scale must satisfy 0 < low <= high <= 1 and rrc_ratio 0 < low <= high, "
                f"got rrc_scale={rrc_scale}, rrc_ratio={rrc_ratio}"
            )
        super().__init__(mean=mean, std=std, **kwargs)
        self.crop_size = crop_size
        self.rrc_scale = tuple(rrc_scale)
        self.rrc_ratio = tuple(rrc_ratio)

    @property
    def image_size(self) -> int:
        return self.crop_size

    def batch_transform(self, images: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        if not (train and self.augment):
            return self._to_normalized_float(F.center_crop(images, [self.crop_size]))
        images = random_resized_crop_flip(
            F.to_dtype(images, torch.float32, scale=True),
            size=self.crop_size,
            scale=self.rrc_scale,
            ratio=self.rrc_ratio,
            flip=self.flip,
            generator=generator,
        )
        return self._normalize(images)

    def sample_transform(self, *, train: bool) -> v2.Transform:
        if not (train and self.augment):
            return v2.Compose([v2.CenterCrop(self.crop_size), *self._to_float_and_normalize()])
        steps: list[v2.Transform] = [
            v2.RandomResizedCrop(self.crop_size, scale=self.rrc_scale, ratio=self.rrc_ratio, antialias=True)
        ]
        if self.flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps + self._to_float_and_normalize())
