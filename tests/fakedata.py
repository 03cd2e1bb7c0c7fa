"""Small datasets written in the exact official on-disk formats, so the real acquisition and reading code runs
offline: CIFAR-10/100 Python-2 pickles in their .tar.gz, and the Tiny-ImageNet-200 zip layout.

Each writer returns what ``nlbench.data.sources.load`` must give back (pixels, labels, class names) plus the md5s
of what it wrote (the official md5s do not match, so load with ``verify=False`` or patch the specs).
Import as ``import fakedata`` (tests/conftest.py puts this folder on sys.path).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nlbench.data.cifar import write_batch

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class FakeSplit:
    """What ``load`` must return for one split."""

    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,)
    coarse_labels: torch.Tensor | None = None


@dataclass
class FakeDataset:
    name: str
    root: Path  # the data root to pass to prepare/load
    tree: Path  # the extracted folder (present only when written with archive=False)
    archive: Path | None  # the archive under root (None when written with archive=False)
    train: FakeSplit
    test: FakeSplit
    classes: list[str]
    coarse_classes: list[str] | None = None
    md5: str | None = None  # md5 of ``archive``
    file_md5s: dict[str, str] = field(default_factory=dict)  # md5 of each file in the tree, by name (CIFAR)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _random_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


def _finish(tree: Path, root: Path, archive_name: str, archive: bool) -> tuple[Path | None, str | None]:
    """Move the staged ``tree`` under ``root``, or pack it into ``root/archive_name`` the way the official one is."""
    root.mkdir(parents=True, exist_ok=True)
    if not archive:
        shutil.move(tree, root / tree.name)
        return None, None
    path = root / archive_name
    if archive_name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for member in sorted([tree, *tree.rglob("*")]):
                zf.write(member, member.relative_to(tree.parent).as_posix())
    else:
        with tarfile.open(path, "w:gz") as tar:
            tar.add(tree, arcname=tree.name)
    return path, md5_of(path)


def write_cifar10(
    root: Path, *, num_batches: int = 5, batch_size: int = 8, test_size: int = 10, seed: int = 0, archive: bool = True
) -> FakeDataset:
    """CIFAR-10: ``cifar-10-batches-py/{data_batch_1..num_batches, test_batch, batches.meta}`` (or its .tar.gz)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    with tempfile.TemporaryDirectory() as staging:
        tree = Path(staging) / "cifar-10-batches-py"
        tree.mkdir()
        splits = {}
        for split, names, size in (
            ("train", [f"data_batch_{k}" for k in range(1, num_batches + 1)], batch_size),
            ("test", ["test_batch"], test_size),
        ):
            images, labels = [], []
            for k, name in enumerate(names, start=1):
                batch_images = _random_images(rng, size, 32)
                batch_labels = rng.integers(0, 10, size=size).tolist()
                write_batch(
                    tree / name,
                    {
                        "batch_label": f"{'training' if split == 'train' else 'testing'} batch {k} of {len(names)}",
                        "labels": batch_labels,
                        "data": batch_images.reshape(size, -1),
                        "filenames": [f"fake_{name}_{i}.png" for i in range(size)],
                    },
                )
                images.append(batch_images)
                labels += batch_labels
            splits[split] = FakeSplit(torch.from_numpy(np.concatenate(images)), torch.tensor(labels))
        write_batch(
            tree / "batches.meta", {"num_cases_per_batch": batch_size, "label_names": CIFAR10_CLASSES, "num_vis": 3072}
        )
        file_md5s = {p.name: md5_of(p) for p in tree.iterdir()}
        path, md5 = _finish(tree, root, "cifar-10-python.tar.gz", archive)
    return FakeDataset(
        "cifar10",
        root,
        root / "cifar-10-batches-py",
        path,
        splits["train"],
        splits["test"],
        CIFAR10_CLASSES,
        md5=md5,
        file_md5s=file_md5s,
    )


def write_cifar100(
    root: Path, *, train_size: int = 30, test_size: int = 10, seed: int = 0, archive: bool = True
) -> FakeDataset:
    """CIFAR-100: ``cifar-100-python/{train, test, meta}`` with fine and coarse labels (or its .tar.gz)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    fine_names = [f"fine_{i:02d}" for i in range(100)]
    coarse_names = [f"coarse_{i:02d}" for i in range(20)]
    with tempfile.TemporaryDirectory() as staging:
        tree = Path(staging) / "cifar-100-python"
        tree.mkdir()
        splits = {}
        for split, size in (("train", train_size), ("test", test_size)):
            images = _random_images(rng, size, 32)
            fine = rng.integers(0, 100, size=size)
            coarse = fine // 5
            write_batch(
                tree / split,
                {
                    "filenames": [f"fake_{split}_{i}.png" for i in range(size)],
                    "batch_label": f"{split}ing batch 1 of 1",
                    "fine_labels": fine.tolist(),
                    "coarse_labels": coarse.tolist(),
                    "data": images.reshape(size, -1),
                },
            )
            splits[split] = FakeSplit(torch.from_numpy(images), torch.from_numpy(fine), torch.from_numpy(coarse))
        write_batch(tree / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
        file_md5s = {p.name: md5_of(p) for p in tree.iterdir()}
        path, md5 = _finish(tree, root, "cifar-100-python.tar.gz", archive)
    return FakeDataset(
        "cifar100",
        root,
        root / "cifar-100-python",
        path,
        splits["train"],
        splits["test"],
        fine_names,
        coarse_classes=coarse_names,
        md5=md5,
        file_md5s=file_md5s,
    )


def _jpeg(pixels: np.ndarray, *, greyscale: bool) -> tuple[bytes, torch.Tensor]:
    """Encode (3, H, W) pixels as JPEG with PIL; return the bytes and their decoding as RGB (the expected image)."""
    image = Image.fromarray(pixels.transpose(1, 2, 0))
    if greyscale:
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return buffer.getvalue(), torch.from_numpy(decoded.transpose(2, 0, 1).copy())


def write_tiny_imagenet(
    root: Path,
    *,
    num_classes: int = 3,
    train_per_class: int = 3,
    val_per_class: int = 2,
    test_size: int = 2,
    seed: int = 0,
    archive: bool = True,
) -> FakeDataset:
    """Tiny-ImageNet-200 layout with ``num_classes`` classes (or its zip), 64x64 JPEGs, some greyscale.

    The first train image of the second class and the first val image are greyscale JPEGs. ``wnids.txt`` is not
    in sorted order, so the class index must come from it.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    # Descending, so that sorting instead of following wnids.txt would get the labels wrong.
    wnids = [f"n{n:08d}" for n in sorted(rng.choice(10**8, size=num_classes, replace=False), reverse=True)]
    names = [f"fake class {k}, synonym {k}" for k in range(num_classes)]
    with tempfile.TemporaryDirectory() as staging:
        tree = Path(staging) / "tiny-imagenet-200"
        (tree / "val" / "images").mkdir(parents=True)
        (tree / "test" / "images").mkdir(parents=True)
        (tree / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
        words = [(w, n) for w, n in zip(wnids, names)] + [("n00000001", "entity"), ("n00000002", "thing")]
        (tree / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in sorted(words)))

        train_images, train_labels = [], []
        for label, wnid in enumerate(wnids):
            folder = tree / "train" / wnid / "images"
            folder.mkdir(parents=True)
            files = sorted(f"{wnid}_{k}.JPEG" for k in range(train_per_class))
            for k, name in enumerate(files):
                data, expected = _jpeg(_random_images(rng, 1, 64)[0], greyscale=label == 1 and k == 0)
                (folder / name).write_bytes(data)
                train_images.append(expected)
                train_labels.append(label)
            (tree / "train" / wnid / f"{wnid}_boxes.txt").write_text(
                "".join(f"{name}\t0\t0\t63\t63\n" for name in files)
            )

        val_labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class)).tolist()
        val_images, lines = [], []
        for k, label in enumerate(val_labels):
            data, expected = _jpeg(_random_images(rng, 1, 64)[0], greyscale=k == 0)
            (tree / "val" / "images" / f"val_{k}.JPEG").write_bytes(data)
            val_images.append(expected)
            lines.append(f"val_{k}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
        (tree / "val" / "val_annotations.txt").write_text("".join(lines))
        for k in range(test_size):
            (tree / "test" / "images" / f"test_{k}.JPEG").write_bytes(
                _jpeg(_random_images(rng, 1, 64)[0], greyscale=False)[0]
            )
        path, md5 = _finish(tree, root, "tiny-imagenet-200.zip", archive)
    return FakeDataset(
        "tiny_imagenet",
        root,
        root / "tiny-imagenet-200",
        path,
        FakeSplit(torch.stack(train_images), torch.tensor(train_labels)),
        FakeSplit(torch.stack(val_images), torch.tensor(val_labels)),
        names,
        md5=md5,
    )
