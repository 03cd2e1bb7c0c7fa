"""CIFAR-10/100 in the official "python version" layout: batches pickled by Python 2, read without trusting them.

A batch is a dict holding "data" (uint8 array (N, 3072), each row the R, G and B planes of a 32x32 image), the
labels ("labels", or "fine_labels" and "coarse_labels" for CIFAR-100) as lists of ints, plus "batch_label" and
"filenames". With verification off a batch is untrusted input, so it is unpickled by an unpickler that can build
only what that format holds: dicts, lists, strings, numbers and numpy arrays.
"""

from __future__ import annotations

import io
import logging
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from nlbench.data.archives import verify_md5
from nlbench.data.cache import ImageArrays
from nlbench.data.errors import DatasetFormatError, DatasetNotFoundError, UnsafePickleError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

log = logging.getLogger(__name__)

# The only globals a CIFAR batch refers to: how numpy arrays (and their dtypes) unpickle. Official batches name
# numpy.core; numpy >= 2 names numpy._core; pickle protocol 5 (Python 3's default, for copies re-pickled by
# Python 3) rebuilds arrays with _frombuffer.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_PY2_GLOBAL_NAMES = {
    _reconstruct: ("numpy.core.multiarray", "_reconstruct"),
    np.ndarray: ("numpy", "ndarray"),
    np.dtype: ("numpy", "dtype"),
}

IMAGE_SIZE = 32


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR variant keeps its batches, labels and class names, with the official per-file md5s."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    md5s: dict[str, str]
    coarse_label_key: str | None = None
    coarse_names_key: str | None = None


CIFAR10 = CifarLayout(
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{k}" for k in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    md5s={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
)
CIFAR100 = CifarLayout(
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    md5s={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    coarse_label_key="coarse_labels",
    coarse_names_key="coarse_label_names",
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 str -> str, as the official format needs
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: refusing to unpickle {module}.{name}; a CIFAR batch holds only dicts, lists, "
                "strings, numbers and numpy arrays"
            ) from None


def read_batch(path: Path) -> dict[str, Any]:
    """Unpickle one CIFAR batch or meta file, allowing only the objects the format holds."""
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # garbage bytes make the unpickler raise nearly anything (EOFError, KeyError, ...)
        raise DatasetFormatError(f"{path}: truncated or corrupted pickle ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    return batch


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose opcode writers can be replaced
    """Pickles like Python 2 did for the official batches: str and bytes as Python 2 str, numpy 1.x names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj not in _PY2_GLOBAL_NAMES:
            raise pickle.PicklingError(f"a CIFAR batch cannot hold {obj!r}")
        module, qualname = _PY2_GLOBAL_NAMES[obj]
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


def write_batch(path: Path, batch: dict[str, Any]) -> None:
    """Write a batch or meta dict byte-compatible with the official Python 2 pickles (protocol 2)."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(batch)
    path.write_bytes(buffer.getvalue())


def split_files(tree: Path, layout: CifarLayout, split: str, *, require_all: bool) -> list[Path]:
    """The batch files of ``split`` plus the meta file; with ``require_all`` every official batch must exist."""
    names = layout.train_files if split == "train" else layout.test_files
    present = [tree / n for n in names if (tree / n).is_file()]
    missing = [n for n in (*names, layout.meta_file) if not (tree / n).is_file()]
    if missing and require_all:
        raise DatasetNotFoundError(
            f"{tree} lacks {', '.join(missing)} of the official layout; verification needs every official file: "
            "switch it off (verify=False, e.g. `--data.verify false`) to use a partial local copy"
        )
    if not present or layout.meta_file in missing:
        raise DatasetNotFoundError(
            f"{tree} lacks {', '.join(missing)}: not a {layout.folder} tree in the official layout"
        )
    if len(present) < len(names):
        log.info("%s: using %d of the %d official %s batches", tree, len(present), len(names), split)
    return [*present, tree / layout.meta_file]


def verify_files(files: list[Path], layout: CifarLayout) -> None:
    """Check each file against its official md5."""
    for path in files:
        verify_md5(path, layout.md5s[path.name])


def read_split(files: list[Path], layout: CifarLayout) -> ImageArrays:
    """Read the batches in ``files`` (as returned by :func:`split_files`) into one uint8 (N, 3, 32, 32) array."""
    *batch_files, meta_file = files
    meta = read_batch(meta_file)
    classes = _names(meta, layout.names_key, meta_file)
    coarse_classes = _names(meta, layout.coarse_names_key, meta_file) if layout.coarse_names_key else None

    images, labels, coarse = [], [], []
    for path in batch_files:
        batch = read_batch(path)
        data = _field(batch, "data", path)
        if not (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3 * IMAGE_SIZE * IMAGE_SIZE
        ):
            raise DatasetFormatError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
        images.append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
        labels.append(_labels(batch, layout.label_key, len(data), len(classes), path))
        if layout.coarse_label_key:
            coarse.append(_labels(batch, layout.coarse_label_key, len(data), len(coarse_classes), path))
    return ImageArrays(
        images=torch.from_numpy(np.concatenate(images)),  # a fresh, writable, contiguous copy
        labels=torch.cat(labels),
        classes=classes,
        coarse_labels=torch.cat(coarse) if coarse else None,
        coarse_classes=coarse_classes,
    )


def _field(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise DatasetFormatError(f"{path}: missing key {key!r} (has {', '.join(map(repr, batch))})")
    return batch[key]


def _names(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    names = _field(meta, key, path)
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise DatasetFormatError(f"{path}: {key!r} must be a non-empty list of strings")
    return names


def _labels(batch: dict[str, Any], key: str, n: int, num_classes: int, path: Path) -> torch.Tensor:
    values = _field(batch, key, path)
    if not (isinstance(values, list) and all(type(v) is int for v in values)):
        raise DatasetFormatError(f"{path}: {key!r} must be a list of ints")
    labels = torch.tensor(values, dtype=torch.int64)
    if len(labels) != n:
        raise DatasetFormatError(f"{path}: {len(labels)} {key} for {n} images")
    if n and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
        raise DatasetFormatError(f"{path}: {key!r} outside [0, {num_classes})")
    return labels
