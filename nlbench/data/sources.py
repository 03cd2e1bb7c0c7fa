"""Where the datasets come from and how they get to uint8 tensors: the entry point the DataModules call.

On disk, under a data root (the layout torchvision uses, so an existing torchvision download is reused)::

    <root>/cifar-10-python.tar.gz     the official archive (downloaded if missing and allowed)
    <root>/cifar-10-batches-py/       its extracted tree (renamed into place only once complete)
    <root>/cifar10-cache/train.pt     the decoded split (see nlbench.data.cache), rebuilt when the source changes

``prepare`` does the once-per-machine work (rank 0): download, verify, extract, build both caches.
``load`` is cheap on every rank afterwards: it opens the cache memory-mapped.

Verification (``verify=True``) checks an archive's official md5 before extracting it, and for CIFAR the official
md5 of every batch file before the cache is built from it. Tiny-ImageNet publishes no per-file checksums: its
extracted tree is trusted as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nlbench.data import archives, cifar, tiny_imagenet
from nlbench.data.cache import ImageArrays, fingerprint, read_cache, write_cache
from nlbench.data.errors import DatasetNotFoundError

__all__ = ["DATASETS", "SAMPLE_ROOT", "SPECS", "SPLITS", "DatasetSpec", "ImageArrays", "cache_path", "load", "prepare"]

DATASETS = ("cifar10", "cifar100", "tiny_imagenet")
SPLITS = ("train", "test")

# The real CIFAR-10 sample shipped inside the package (built by nlbench/data/make_sample.py). It is never cached
# on disk: reading its 1,500 images takes milliseconds, and the package folder may be read-only.
SAMPLE_ROOT = Path(__file__).resolve().parent / "sample"


class SplitSource(Protocol):
    """The files one split is built from, and how to check and read them."""

    files: list[str | Path]
    checkable: bool  # whether verify() checks anything (per-file official md5s exist)

    def verify(self) -> None: ...

    def read(self) -> ImageArrays: ...


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's official archive and what it holds."""

    name: str
    url: str
    filename: str  # the archive's name under the data root
    md5: str  # the official archive's md5
    folder: str  # the archive's top-level folder, extracted under the data root
    num_classes: int
    image_size: int
    open_split: Callable[[Path, str, bool], SplitSource]  # (tree, split, verify) -> source
    train_images: int = 0  # images in the official training split (a sweep's ETA from a benchmark uses it)


@dataclass
class _CifarSource:
    files: list[Path]
    layout: cifar.CifarLayout
    checkable: bool = True

    def verify(self) -> None:
        cifar.verify_files(self.files, self.layout)

    def read(self) -> ImageArrays:
        return cifar.read_split(self.files, self.layout)


def _open_cifar(layout: cifar.CifarLayout, tree: Path, split: str, verify: bool) -> _CifarSource:
    return _CifarSource(cifar.split_files(tree, layout, split, require_all=verify), layout)


@dataclass
class _TinyImageNetSource:
    index: tiny_imagenet.TinyImageNetIndex
    checkable: bool = False

    @property
    def files(self) -> list[Path]:
        return self.index.files

    def verify(self) -> None:
        """Nothing to check: Tiny-ImageNet has no official per-file checksums (its zip's md5 is checked)."""

    def read(self) -> ImageArrays:
        return tiny_imagenet.read_split(self.index)


def _open_tiny_imagenet(tree: Path, split: str, verify: bool) -> _TinyImageNetSource:
    return _TinyImageNetSource(tiny_imagenet.index_split(tree, split))


SPECS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        name="cifar10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder=cifar.CIFAR10.folder,
        num_classes=10,
        image_size=cifar.IMAGE_SIZE,
        open_split=functools.partial(_open_cifar, cifar.CIFAR10),
        train_images=50_000,
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        filename="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder=cifar.CIFAR100.folder,
        num_classes=100,
        image_size=cifar.IMAGE_SIZE,
        open_split=functools.partial(_open_cifar, cifar.CIFAR100),
        train_images=50_000,
    ),
    "tiny_imagenet": DatasetSpec(
        name="tiny_imagenet",
        url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        filename="tiny-imagenet-200.zip",
        md5="90528d7ca1a48142e341f4ef8d21d0de",
        folder=tiny_imagenet.FOLDER,
        num_classes=200,
        image_size=tiny_imagenet.IMAGE_SIZE,
        open_split=_open_tiny_imagenet,
        train_images=100_000,
    ),
}


def _spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return SPECS[name]


def cache_path(name: str, root: str | Path, split: str) -> Path:
    """Where ``load`` caches a split: ``<root>/<name>-cache/<split>.pt``."""
    return Path(root).expanduser() / f"{name}-cache" / f"{split}.pt"


def prepare(name: str, root: str | Path, *, download: bool, verify: bool) -> None:
    """Once per machine (rank 0): download if missing and allowed, verify, extract safely, build both caches."""
    spec = _spec(name)
    root = Path(root).expanduser()
    tree = _acquire(spec, root, download=download, verify=verify)
    for split in SPLITS:
        _split_arrays(spec, root, tree, split, verify=verify, cache=True)


def load(name: str, root: str | Path, split: str, *, verify: bool = True, cache: bool = True) -> ImageArrays:
    """The ``split`` ("train", or "test": for Tiny-ImageNet the labelled official val split) as uint8 arrays.

    Reads the cache (memory-mapped) when it matches the source; otherwise extracts a present archive if needed,
    reads the source and, with ``cache``, writes the cache. Never downloads: that is ``prepare``'s job.
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(root).expanduser()
    tree = _acquire(spec, root, download=False, verify=verify)
    return _split_arrays(spec, root, tree, split, verify=verify, cache=cache)


def _acquire(spec: DatasetSpec, root: Path, *, download: bool, verify: bool) -> Path:
    """The extracted tree, extracting (and first downloading) the archive when it is missing."""
    tree = root / spec.folder
    if tree.is_dir():  # extraction renames a tree into place only once complete, so a present tree is whole
        return tree
    archive = root / spec.filename
    if not archive.is_file():
        if not download:
            raise DatasetNotFoundError(
                f"{spec.name} not found: looked for {tree}/ and {archive}; download {spec.url} into {root}, "
                "or allow downloading (download=True, e.g. `--data.download true`)"
            )
        archives.download(spec.url, archive, md5=spec.md5 if verify else None)
    elif verify:
        archives.verify_md5(archive, spec.md5)
    return archives.extract(archive, root, folder=spec.folder)


def _split_arrays(spec: DatasetSpec, root: Path, tree: Path, split: str, *, verify: bool, cache: bool) -> ImageArrays:
    source = spec.open_split(tree, split, verify)
    cache = cache and root.resolve() != SAMPLE_ROOT
    if cache:
        path = cache_path(spec.name, root, split)
        key = fingerprint(source.files, tree)
        cached = read_cache(path, fingerprint=key, require_verified=verify and source.checkable)
        if cached is not None:
            return cached
    if verify:
        source.verify()
    arrays = source.read()
    if cache:
        write_cache(path, arrays, fingerprint=key, verified=verify)
    return arrays
