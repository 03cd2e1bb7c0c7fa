"""A decoded split as uint8 tensors, and its on-disk cache.

Decoding happens once: the cache file ``<split>.pt`` (torch.save of plain tensors, lists and strings, read back with
``weights_only=True`` and memory-mapped, so every rank can open it cheaply) stores the arrays together with a
fingerprint of the source files (names, sizes, times and sampled contents). A changed source changes the fingerprint,
and the cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from nlbench.io import new_file_mode

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: fingerprints sample file contents


@dataclass
class ImageArrays:
    """One split in memory: ``images`` uint8 (N, 3, H, W) contiguous, ``labels`` int64 (N,), ``classes[label]``.

    CIFAR-100 also carries its 20 superclasses in ``coarse_labels`` / ``coarse_classes`` (None elsewhere).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    coarse_labels: torch.Tensor | None = None
    coarse_classes: list[str] | None = None

    def __post_init__(self) -> None:
        images = self.images
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or not images.is_contiguous():
            raise ValueError(
                f"images must be a contiguous uint8 (N, 3, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
            )
        _check_labels(self.labels, self.classes, len(images), "labels")
        if (self.coarse_labels is None) != (self.coarse_classes is None):
            raise ValueError("coarse_labels and coarse_classes must be given together")
        if self.coarse_labels is not None:
            _check_labels(self.coarse_labels, self.coarse_classes, len(images), "coarse_labels")

    def __len__(self) -> int:
        return len(self.labels)


def _check_labels(labels: torch.Tensor, classes: list[str], n: int, what: str) -> None:
    if labels.dtype != torch.int64 or labels.shape != (n,):
        raise ValueError(f"{what} must be an int64 tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    if n and not (0 <= int(labels.min()) and int(labels.max()) < len(classes)):
        raise ValueError(f"{what} must lie in [0, {len(classes)})")


_BLOCK = 4096  # content sample: this many bytes at _SAMPLES evenly spaced offsets of each file (small files whole)
_SAMPLES = 16


def fingerprint(files: Iterable[str | Path], base: Path) -> str:
    """A digest of the files' paths (relative to ``base``), sizes, modification times and sampled contents.

    The content sample (64 KiB per file at most: CIFAR's labels and headers, a Tiny-ImageNet JPEG whole) catches a
    same-size edit whose timestamp was kept, at the cost of a few reads per file.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    prefix = os.path.join(base, "")
    for path in map(os.fspath, files):  # plain strings: this runs over 100k files on every load of Tiny-ImageNet
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under {base}")
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            digest.update(f"{path[len(prefix) :]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            if st.st_size <= _BLOCK * _SAMPLES:
                digest.update(f.read())
            else:
                for i in range(_SAMPLES):
                    digest.update(os.pread(f.fileno(), _BLOCK, i * (st.st_size - _BLOCK) // (_SAMPLES - 1)))
    return digest.hexdigest()


def read_cache(path: Path, *, fingerprint: str, require_verified: bool) -> ImageArrays | None:
    """The cached split if ``path`` holds one built from the same source (and md5-verified if required)."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        if entry["version"] != CACHE_VERSION or entry["fingerprint"] != fingerprint:
            return None
        if require_verified and not entry["verified"]:
            return None
        return ImageArrays(**entry["arrays"])
    except Exception as e:  # the cache is derived data: whatever is wrong with it, rebuilding it fixes it
        log.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, e)
        return None


def write_cache(path: Path, arrays: ImageArrays, *, fingerprint: str, verified: bool) -> None:
    """Write the split atomically (temporary file, then rename), so a reader never sees a partial cache."""
    entry = {
        "version": CACHE_VERSION,
        "fingerprint": fingerprint,
        "verified": verified,
        "arrays": {
            "images": arrays.images,
            "labels": arrays.labels,
            "classes": list(arrays.classes),
            "coarse_labels": arrays.coarse_labels,
            "coarse_classes": None if arrays.coarse_classes is None else list(arrays.coarse_classes),
        },
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except PermissionError as e:
        raise PermissionError(
            f"cannot write the dataset cache {path}: {e.strerror}; make {path.parent} writable or load with cache=False"
        ) from e
    try:
        os.chmod(tmp, new_file_mode())  # a shared data folder: readable by the group as the umask says, not 0600
        with os.fdopen(fd, "wb") as f:
            torch.save(entry, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    log.info("wrote dataset cache %s (%d images)", path, len(arrays))
