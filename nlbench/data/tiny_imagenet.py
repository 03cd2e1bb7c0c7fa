"""Tiny-ImageNet-200 in the official extracted layout: index the JPEGs, then decode them once into uint8 arrays.

Layout (``tiny-imagenet-200/``): ``wnids.txt`` (the 200 class ids; their order is the class index),
``words.txt`` (tab-separated id and human-readable names), ``train/<wnid>/images/*.JPEG``, and
``val/images/*.JPEG`` indexed by ``val/val_annotations.txt`` (tab-separated: file, wnid, box). The labelled val
split serves as the test split; the unlabelled ``test/`` images are not used.
Order: train by class index, then file name; val in annotation-file order.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nlbench.data.cache import ImageArrays
from nlbench.data.errors import DatasetFormatError

log = logging.getLogger(__name__)

FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64
_DECODE_CHUNK = 1024  # images decoded per stacked chunk: bounds the memory of the per-image tensors


@dataclass
class TinyImageNetIndex:
    """The images of one split with their labels and the class ids.

    Image paths are plain strings: an index of 100k images is built on every ``load`` (to fingerprint the source),
    and pathlib objects would make that several times slower.
    """

    images: list[str]
    labels: list[int]
    wnids: list[str]
    words_file: Path  # the human-readable class names, read only when decoding
    meta_files: list[Path]  # the text files the index was built from

    @property
    def files(self) -> list[str | Path]:
        """Every file the split is built from."""
        return [*self.meta_files, *self.images]


def index_split(tree: Path, split: str) -> TinyImageNetIndex:
    """Index ``split`` ("train" or "test" = the official val split), checking the layout on the way."""
    wnids_file, words_file = tree / "wnids.txt", tree / "words.txt"
    _require_file(words_file)
    wnids = _read_wnids(wnids_file)
    class_of = {wnid: k for k, wnid in enumerate(wnids)}
    if split == "train":
        images, labels = _index_train(tree / "train", class_of, wnids_file)
        meta_files = [wnids_file, words_file]
    else:
        annotations = tree / "val" / "val_annotations.txt"
        images, labels = _index_val(annotations, tree / "val" / "images", class_of)
        meta_files = [wnids_file, words_file, annotations]
    return TinyImageNetIndex(images=images, labels=labels, wnids=wnids, words_file=words_file, meta_files=meta_files)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DatasetFormatError(f"missing {path} (the official Tiny-ImageNet layout has it)")


def _read_wnids(path: Path) -> list[str]:
    _require_file(path)
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise DatasetFormatError(f"{path} lists no class ids")
    if len(set(wnids)) != len(wnids):
        raise DatasetFormatError(f"{path} lists a class id twice")
    return wnids


def _class_names(path: Path, wnids: list[str]) -> list[str]:
    names = {}
    for line in path.read_text().splitlines():
        wnid, _, name = line.partition("\t")
        names[wnid] = name.strip()
    missing = [w for w in wnids if not names.get(w)]
    if missing:
        raise DatasetFormatError(f"{path} has no name for class {missing[0]} ({len(missing)} missing)")
    return [names[w] for w in wnids]


def _jpegs(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.endswith(".JPEG") and e.is_file())


def _index_train(train: Path, class_of: dict[str, int], wnids_file: Path) -> tuple[list[str], list[int]]:
    if not train.is_dir():
        raise DatasetFormatError(f"missing {train}/ (the official Tiny-ImageNet layout has it)")
    with os.scandir(train) as entries:
        folders = {e.name for e in entries if e.is_dir()}
    unknown = sorted(folders - class_of.keys())
    if unknown:
        raise DatasetFormatError(f"{train / unknown[0]} is a class folder not listed in {wnids_file}")
    images, labels = [], []
    for wnid, label in class_of.items():
        folder = train / wnid / "images"
        if not folder.is_dir():
            raise DatasetFormatError(f"missing {folder}/ for class {wnid} listed in {wnids_file}")
        names = _jpegs(folder)
        if not names:
            raise DatasetFormatError(f"{folder} holds no .JPEG images")
        images += [os.path.join(folder, n) for n in names]
        labels += [label] * len(names)
    return images, labels


def _index_val(annotations: Path, folder: Path, class_of: dict[str, int]) -> tuple[list[str], list[int]]:
    if not annotations.is_file():
        raise DatasetFormatError(f"missing {annotations}: the val (test) split is indexed from it")
    if not folder.is_dir():
        raise DatasetFormatError(f"missing {folder}/ (the official Tiny-ImageNet layout has it)")
    on_disk = set(_jpegs(folder))
    images, labels, seen = [], [], set()
    for lineno, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{annotations}:{lineno}"
        if len(fields) < 2:
            raise DatasetFormatError(f"{where}: expected tab-separated file name and class id, got {line!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in class_of:
            raise DatasetFormatError(f"{where}: class id {wnid!r} is not listed in wnids.txt")
        if name not in on_disk:
            raise DatasetFormatError(f"{where}: image {folder / name} does not exist")
        if name in seen:
            raise DatasetFormatError(f"{where}: image {name} is annotated twice")
        seen.add(name)
        images.append(os.path.join(folder, name))
        labels.append(class_of[wnid])
    unannotated = sorted(on_disk - seen)
    if unannotated:
        raise DatasetFormatError(f"{folder / unannotated[0]} has no line in {annotations}")
    if not images:
        raise DatasetFormatError(f"{annotations} annotates no images")
    return images, labels


def read_split(index: TinyImageNetIndex) -> ImageArrays:
    """Decode the indexed JPEGs (greyscale ones to RGB) into one uint8 (N, 3, 64, 64) array."""
    start = time.perf_counter()
    n = len(index.images)
    images = torch.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for lo in range(0, n, _DECODE_CHUNK):
        paths = index.images[lo : lo + _DECODE_CHUNK]
        images[lo : lo + len(paths)] = torch.stack([_check_size(img, p) for img, p in zip(_decode(paths), paths)])
    elapsed = time.perf_counter() - start
    log.info("decoded %d Tiny-ImageNet images in %.1f s (%.0f images/s)", n, elapsed, n / max(elapsed, 1e-9))
    return ImageArrays(
        images=images,
        labels=torch.tensor(index.labels, dtype=torch.int64),
        classes=_class_names(index.words_file, index.wnids),
    )


def _decode(paths: list[str]) -> list[torch.Tensor]:
    return [_decode_one(path) for path in paths]


def _decode_one(path: str) -> torch.Tensor:
    """One JPEG as a uint8 (3, H, W) tensor, greyscale converted to RGB. Pillow, not torchvision.io: torchvision
    0.29 deprecated its decoders (a DeprecationWarning per call) in favour of TorchCodec, which is not a dependency."""
    if os.path.getsize(path) == 0:
        raise DatasetFormatError(f"{path}: empty file")
    try:
        with Image.open(path, formats=["JPEG"]) as image:
            pixels = np.array(image.convert("RGB"))  # a writable copy (torch.from_numpy warns on read-only)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DatasetFormatError(f"{path}: not a decodable JPEG ({e})") from e
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _check_size(image: torch.Tensor, path: str) -> torch.Tensor:
    if image.shape != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetFormatError(f"{path}: expected a {IMAGE_SIZE}x{IMAGE_SIZE} image, got {tuple(image.shape[1:])}")
    return image
