"""The readers on real data: the CIFAR-10 and Tiny-ImageNet samples in ../shared/data (skipped when absent).

Set NLBENCH_SHARED_DATA to point elsewhere. Their md5s are not the official ones, so they load with verify=False.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlbench.data import make_sample, sources
from nlbench.data.errors import DatasetNotFoundError, IntegrityError

SHARED = Path(os.environ.get("NLBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CIFAR_SAMPLE = SHARED / "cifar10-sample"
TINY_ZIP = SHARED / "tiny-imagenet-sample" / "tiny-imagenet-200.zip"

# Optional checks of the readers against real downloaded files (a clone without them loses nothing essential: the
# package's own embedded sample and generated data in the official formats cover the same code).
needs_cifar = pytest.mark.skipif(
    not (CIFAR_SAMPLE / "cifar-10-batches-py").is_dir(),
    reason=f"optional: needs real CIFAR-10 batches in {CIFAR_SAMPLE}/cifar-10-batches-py (set NLBENCH_SHARED_DATA)",
)
needs_tiny = pytest.mark.skipif(
    not TINY_ZIP.is_file(), reason=f"optional: needs the real Tiny-ImageNet zip at {TINY_ZIP} (set NLBENCH_SHARED_DATA)"
)


@needs_cifar
@pytest.mark.parametrize("split, batch", [("train", "data_batch_1"), ("test", "test_batch")])
def test_real_cifar10_batches_match_a_plain_unpickling(split: str, batch: str) -> None:
    arrays = sources.load("cifar10", CIFAR_SAMPLE, split, verify=False, cache=False)
    with open(CIFAR_SAMPLE / "cifar-10-batches-py" / batch, "rb") as f:
        reference = pickle.load(f, encoding="latin1")  # what torchvision does, trusting the file
    assert arrays.images.shape == (10000, 3, 32, 32)
    assert np.array_equal(arrays.images.numpy(), reference["data"].reshape(-1, 3, 32, 32))
    assert arrays.labels.tolist() == reference["labels"]
    assert arrays.classes[:3] == ["airplane", "automobile", "bird"] and len(arrays.classes) == 10
    assert torch.bincount(arrays.labels, minlength=10).min() > 800  # all classes present in a real batch


@needs_cifar
def test_real_cifar10_copy_fails_verification() -> None:
    with pytest.raises((IntegrityError, DatasetNotFoundError), match="verify"):
        sources.load("cifar10", CIFAR_SAMPLE, "train", verify=True, cache=False)


@needs_cifar
def test_embedded_sample_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    """make_sample.py with its defaults reproduces the sample shipped in the package, from the shared copy."""
    make_sample.main(["--source", str(CIFAR_SAMPLE), "--out", str(tmp_path)])
    for path in (sources.SAMPLE_ROOT / "cifar-10-batches-py").iterdir():
        assert (tmp_path / "cifar-10-batches-py" / path.name).read_bytes() == path.read_bytes(), path.name
    embedded = sources.load("cifar10", sources.SAMPLE_ROOT, "test", verify=False)
    full = sources.load("cifar10", CIFAR_SAMPLE, "test", verify=False, cache=False)
    rows = {bytes(image.numpy()) for image in full.images}
    assert all(bytes(image.numpy()) in rows for image in embedded.images)  # real test images, not made up


@needs_tiny
def test_real_tiny_imagenet_sample(tmp_path: Path) -> None:
    shutil.copy(TINY_ZIP, tmp_path / TINY_ZIP.name)
    with pytest.raises(IntegrityError, match="md5 mismatch"):
        sources.prepare("tiny_imagenet", tmp_path, download=False, verify=True)
    sources.prepare("tiny_imagenet", tmp_path, download=False, verify=False)
    train = sources.load("tiny_imagenet", tmp_path, "train", verify=False)
    test = sources.load("tiny_imagenet", tmp_path, "test", verify=False)

    assert len(train.classes) == 200 and train.classes == test.classes
    assert train.images.shape == (2000, 3, 64, 64) and test.images.shape == (1000, 3, 64, 64)
    assert torch.equal(torch.bincount(train.labels, minlength=200), torch.full((200,), 10))
    assert torch.equal(torch.bincount(test.labels, minlength=200), torch.full((200,), 5))
    tree = tmp_path / "tiny-imagenet-200"
    wnids = (tree / "wnids.txt").read_text().split()
    assert train.classes[wnids.index("n02124075")] == "Egyptian cat"

    # Pixels and labels agree with an independent decoding (PIL) of the files named in val_annotations.txt.
    annotations = [line.split("\t")[:2] for line in (tree / "val" / "val_annotations.txt").read_text().splitlines()]
    with zipfile.ZipFile(TINY_ZIP) as zf:
        for k in range(0, 1000, 97):
            name, wnid = annotations[k]
            image = Image.open(io.BytesIO(zf.read(f"tiny-imagenet-200/val/images/{name}")))
            assert torch.equal(test.images[k], torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))
            assert test.labels[k] == wnids.index(wnid)
        greyscale = [
            n
            for n in zf.namelist()
            if n.startswith("tiny-imagenet-200/val/images/val_") and Image.open(io.BytesIO(zf.read(n))).mode == "L"
        ]
    assert greyscale, "the sample should contain greyscale JPEGs"
    k = [name for name, _ in annotations].index(greyscale[0].rsplit("/", 1)[1])
    assert torch.equal(test.images[k][0], test.images[k][1]) and torch.equal(test.images[k][0], test.images[k][2])
