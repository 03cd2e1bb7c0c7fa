"""Dataset sources: acquisition, verification, safe extraction, format readers and the uint8 cache, run offline on
datasets generated in the official formats (fakedata.py)."""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import pickle
import shutil
import stat
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import fakedata
import numpy as np
import pytest
import torch

from nlbench.data import archives, cifar, sources
from nlbench.data.errors import (
    ArchiveError,
    DatasetFormatError,
    DatasetNotFoundError,
    DownloadError,
    IntegrityError,
    UnsafeArchiveError,
    UnsafePickleError,
)
from nlbench.data.sources import SAMPLE_ROOT, load, prepare

WRITERS = {
    "cifar10": fakedata.write_cifar10,
    "cifar100": fakedata.write_cifar100,
    "tiny_imagenet": fakedata.write_tiny_imagenet,
}


def trust(monkeypatch: pytest.MonkeyPatch, fake: fakedata.FakeDataset) -> None:
    """Make the generated files the 'official' ones, so verify=True paths run."""
    spec = sources.SPECS[fake.name]
    changes = {"md5": fake.md5}
    if fake.file_md5s:
        layout = dataclasses.replace(
            {"cifar10": cifar.CIFAR10, "cifar100": cifar.CIFAR100}[fake.name], md5s=fake.file_md5s
        )
        changes["open_split"] = functools.partial(sources._open_cifar, layout)
    monkeypatch.setitem(sources.SPECS, fake.name, dataclasses.replace(spec, **changes))


def leftovers(root: Path) -> list[str]:
    """Temporary download/extraction folders or files left under root."""
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


def assert_split_equal(arrays: sources.ImageArrays, expected: fakedata.FakeSplit, classes: list[str]) -> None:
    assert arrays.images.dtype == torch.uint8 and arrays.images.is_contiguous()
    assert torch.equal(arrays.images, expected.images)
    assert arrays.labels.dtype == torch.int64 and torch.equal(arrays.labels, expected.labels)
    assert arrays.classes == classes


# ---- round trip -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sources.DATASETS)
def test_prepare_then_load_round_trips_pixels_and_labels(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = WRITERS[name](tmp_path)
    trust(monkeypatch, fake)
    prepare(name, tmp_path, download=False, verify=True)
    assert fake.tree.is_dir() and leftovers(tmp_path) == []
    for split in sources.SPLITS:
        assert sources.cache_path(name, tmp_path, split).is_file()
        arrays = load(name, tmp_path, split, verify=True)
        expected = getattr(fake, split)
        assert_split_equal(arrays, expected, fake.classes)
        if name == "cifar100":
            assert torch.equal(arrays.coarse_labels, expected.coarse_labels)
            assert arrays.coarse_classes == fake.coarse_classes
        else:
            assert arrays.coarse_labels is None


def test_load_reads_the_cache_without_touching_the_source(
    fake_cifar10: fakedata.FakeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare("cifar10", fake_cifar10.root, download=False, verify=False)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the source was read although the cache is valid")

    monkeypatch.setattr(cifar, "read_split", fail)
    assert_split_equal(
        load("cifar10", fake_cifar10.root, "train", verify=False), fake_cifar10.train, fake_cifar10.classes
    )


def test_greyscale_jpegs_become_rgb(fake_tiny_imagenet: fakedata.FakeDataset) -> None:
    train = load("tiny_imagenet", fake_tiny_imagenet.root, "train", verify=False)
    test = load("tiny_imagenet", fake_tiny_imagenet.root, "test", verify=False)
    per_class = len(train) // len(train.classes)
    for image in (train.images[per_class], test.images[0]):  # written as greyscale JPEGs by fakedata
        assert image.shape == (3, 64, 64)
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert not torch.equal(train.images[0][0], train.images[0][1])  # a colour one stays colour


def test_class_index_follows_wnids_order_not_sorting(fake_tiny_imagenet: fakedata.FakeDataset) -> None:
    prepare("tiny_imagenet", fake_tiny_imagenet.root, download=False, verify=False)
    wnids = (fake_tiny_imagenet.tree / "wnids.txt").read_text().split()
    assert wnids != sorted(wnids)  # so sorting the folders would give other labels
    arrays = load("tiny_imagenet", fake_tiny_imagenet.root, "train", verify=False)
    assert torch.equal(arrays.labels, fake_tiny_imagenet.train.labels)
    assert arrays.classes == fake_tiny_imagenet.classes == [f"fake class {k}, synonym {k}" for k in range(3)]


# ---- missing data, checksums, download --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sources.DATASETS)
def test_missing_data_without_download_says_where_and_how(name: str, tmp_path: Path) -> None:
    spec = sources.SPECS[name]
    with pytest.raises(DatasetNotFoundError) as info:
        prepare(name, tmp_path, download=False, verify=True)
    message = str(info.value)
    assert "\n" not in message
    for needle in (str(tmp_path / spec.folder), str(tmp_path / spec.filename), spec.url, "--data.download true"):
        assert needle in message
    with pytest.raises(FileNotFoundError):
        load(name, tmp_path, "train")


def test_archive_md5_mismatch_is_refused_before_extraction(fake_cifar10: fakedata.FakeDataset) -> None:
    with pytest.raises(IntegrityError, match="md5 mismatch for .*cifar-10-python.tar.gz.*expected c58f30"):
        prepare("cifar10", fake_cifar10.root, download=False, verify=True)
    assert not fake_cifar10.tree.exists() and leftovers(fake_cifar10.root) == []
    prepare("cifar10", fake_cifar10.root, download=False, verify=False)  # a local copy the user trusts
    assert fake_cifar10.tree.is_dir()


def test_cifar_batch_md5_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakedata.write_cifar10(tmp_path, archive=False)  # an extracted tree: the per-file md5s guard it
    with pytest.raises(IntegrityError, match="data_batch_1"):
        load("cifar10", tmp_path, "train", verify=True)
    trust(monkeypatch, fake)
    assert len(load("cifar10", tmp_path, "train", verify=True)) == len(fake.train.labels)


def test_verify_requires_every_official_batch(tmp_path: Path) -> None:
    fake = fakedata.write_cifar10(tmp_path, num_batches=2, archive=False)
    with pytest.raises(DatasetNotFoundError, match="data_batch_3.*verify=False"):
        load("cifar10", tmp_path, "train", verify=True)
    assert len(load("cifar10", tmp_path, "train", verify=False)) == len(fake.train.labels)


def test_offline_download_through_the_torchvision_fetcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakedata.write_cifar100(tmp_path / "origin")
    trust(monkeypatch, fake)
    calls = []

    def fetch(url: str, root: str, filename: str) -> None:
        calls.append(url)
        shutil.copy(fake.archive, Path(root) / filename)

    monkeypatch.setattr(archives, "download_url", fetch)
    root = tmp_path / "data"
    prepare("cifar100", root, download=True, verify=True)
    assert calls == [sources.SPECS["cifar100"].url]
    assert (root / "cifar-100-python.tar.gz").is_file() and leftovers(root) == []
    assert_split_equal(load("cifar100", root, "test"), fake.test, fake.classes)
    prepare("cifar100", root, download=True, verify=True)
    assert len(calls) == 1  # present data is not fetched again


def test_corrupted_download_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch(url: str, root: str, filename: str) -> None:
        (Path(root) / filename).write_bytes(b"<html>503 Service Unavailable</html>")

    monkeypatch.setattr(archives, "download_url", fetch)
    with pytest.raises(IntegrityError, match="md5 mismatch"):
        prepare("cifar10", tmp_path, download=True, verify=True)
    assert list(tmp_path.iterdir()) == []


def test_failed_download_says_which_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch(url: str, root: str, filename: str) -> None:
        (Path(root) / filename).write_bytes(b"partial")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(archives, "download_url", fetch)
    with pytest.raises(DownloadError, match="tiny-imagenet-200.zip.*Name or service not known"):
        prepare("tiny_imagenet", tmp_path, download=True, verify=True)
    assert list(tmp_path.iterdir()) == []


# ---- corrupted and malicious input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "tiny_imagenet"])
def test_truncated_archive(name: str, tmp_path: Path) -> None:
    fake = WRITERS[name](tmp_path)
    data = fake.archive.read_bytes()
    fake.archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=f"{fake.archive.name}: truncated or corrupted"):
        prepare(name, tmp_path, download=False, verify=False)
    assert not fake.tree.exists() and leftovers(tmp_path) == []


def test_truncated_and_garbage_pickles_name_the_file(tmp_path: Path) -> None:
    fake = fakedata.write_cifar10(tmp_path, archive=False)
    batch = fake.tree / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DatasetFormatError, match="data_batch_2: truncated or corrupted pickle"):
        load("cifar10", tmp_path, "train", verify=False)
    batch.write_bytes(os.urandom(4096))
    with pytest.raises(DatasetFormatError, match="data_batch_2"):
        load("cifar10", tmp_path, "train", verify=False)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    fake = fakedata.write_cifar10(tmp_path, archive=False)
    marker = tmp_path / "pwned"
    batch = {"evil": _Exploit(marker), "data": np.zeros((1, 3072), np.uint8), "labels": [0]}
    (fake.tree / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"test_batch: refusing to unpickle (posix|os)\.system"):
        load("cifar10", tmp_path, "test", verify=False)
    assert not marker.exists()


def test_python3_pickles_of_the_same_content_are_read(tmp_path: Path) -> None:
    fake = fakedata.write_cifar10(tmp_path, archive=False)
    path = fake.tree / "test_batch"
    batch = pickle.load(io.BytesIO(path.read_bytes()), encoding="latin1")
    for protocol in (4, 5):
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
        assert torch.equal(load("cifar10", tmp_path, "test", verify=False, cache=False).images, fake.test.images)


def test_batch_with_wrong_contents(tmp_path: Path) -> None:
    fake = fakedata.write_cifar10(tmp_path, archive=False)
    path = fake.tree / "test_batch"
    cifar.write_batch(path, {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})
    with pytest.raises(DatasetFormatError, match=r"test_batch: 'labels' outside \[0, 10\)"):
        load("cifar10", tmp_path, "test", verify=False)
    cifar.write_batch(path, {"data": np.zeros((2, 1024), np.uint8), "labels": [0, 1]})
    with pytest.raises(DatasetFormatError, match=r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\)"):
        load("cifar10", tmp_path, "test", verify=False)


def test_written_batches_match_the_official_pickle_format(fake_cifar100: fakedata.FakeDataset) -> None:
    """What torchvision's CIFAR reader does: plain pickle with latin1, keys and arrays as in the official files."""
    prepare("cifar100", fake_cifar100.root, download=False, verify=False)
    with open(fake_cifar100.tree / "train", "rb") as f:
        raw = f.read()
    assert raw[:2] == b"\x80\x02" and b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    batch = pickle.loads(raw, encoding="latin1")
    assert set(batch) == {"filenames", "batch_label", "fine_labels", "coarse_labels", "data"}
    assert np.array_equal(batch["data"].reshape(-1, 3, 32, 32), fake_cifar100.train.images.numpy())


def _tar_with(path: Path, bad: tarfile.TarInfo) -> None:
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        good.size = 4
        tar.addfile(good, io.BytesIO(b"meta"))  # a good member first: extraction is under way when the bad one comes
        bad.size = 0 if bad.type != tarfile.REGTYPE else 4
        tar.addfile(bad, io.BytesIO(b"evil") if bad.type == tarfile.REGTYPE else None)


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        (_tar_member("cifar-10-batches-py/../../evil"), "'..' component"),
        (_tar_member("/tmp/nlbench-evil"), "absolute path"),
        (_tar_member("elsewhere/evil"), "outside the expected folder"),
        (_tar_member("cifar-10-batches-py/evil", tarfile.SYMTYPE, "/etc/passwd"), "link or special file"),
        (
            _tar_member("cifar-10-batches-py/evil", tarfile.LNKTYPE, "cifar-10-batches-py/batches.meta"),
            "link or special file",
        ),
        (_tar_member("cifar-10-batches-py/evil", tarfile.CHRTYPE), "link or special file"),
    ],
)
def test_unsafe_tar_members_are_refused(member: tarfile.TarInfo, reason: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    _tar_with(root / "cifar-10-python.tar.gz", member)
    with pytest.raises(UnsafeArchiveError, match=reason):
        prepare("cifar10", root, download=False, verify=False)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]  # no tree, no temp folder
    assert not (tmp_path / "evil").exists() and not Path("/tmp/nlbench-evil").exists()


@pytest.mark.parametrize(
    "name, mode, reason",
    [
        ("tiny-imagenet-200/../evil", stat.S_IFREG | 0o644, "'..' component"),
        ("/tmp/nlbench-evil", stat.S_IFREG | 0o644, "absolute path"),
        ("tiny-imagenet-200\\..\\..\\evil", stat.S_IFREG | 0o644, "'..' component"),
        ("tiny-imagenet-200/link", stat.S_IFLNK | 0o777, "link or special file"),
    ],
)
def test_unsafe_zip_members_are_refused(name: str, mode: int, reason: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n00000001\n")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=reason):
        prepare("tiny_imagenet", root, download=False, verify=False)
    assert sorted(p.name for p in root.iterdir()) == ["tiny-imagenet-200.zip"]
    assert not (tmp_path / "evil").exists() and not Path("/tmp/nlbench-evil").exists()


def test_extracting_onto_an_existing_tree_keeps_it(fake_cifar10: fakedata.FakeDataset) -> None:
    """Two processes extracting at once: the second finds the first's tree in place and keeps it."""
    root = fake_cifar10.root
    first = archives.extract(fake_cifar10.archive, root, folder="cifar-10-batches-py")
    marker = first / "marker"
    marker.touch()
    assert archives.extract(fake_cifar10.archive, root, folder="cifar-10-batches-py") == first
    assert marker.exists() and leftovers(root) == []


# ---- Tiny-ImageNet layout errors --------------------------------------------------------------------------------


@pytest.fixture
def tiny_tree(tmp_path: Path) -> fakedata.FakeDataset:
    return fakedata.write_tiny_imagenet(tmp_path, archive=False)


def test_tiny_missing_val_annotations(tiny_tree: fakedata.FakeDataset) -> None:
    (tiny_tree.tree / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetFormatError, match="missing .*val/val_annotations.txt"):
        load("tiny_imagenet", tiny_tree.root, "test", verify=False)
    assert len(load("tiny_imagenet", tiny_tree.root, "train", verify=False)) == len(tiny_tree.train.labels)


def test_tiny_class_folder_not_in_wnids(tiny_tree: fakedata.FakeDataset) -> None:
    stray = tiny_tree.tree / "train" / "n99999999" / "images"
    stray.mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="train/n99999999 is a class folder not listed in .*wnids.txt"):
        load("tiny_imagenet", tiny_tree.root, "train", verify=False)


@pytest.mark.parametrize(
    "line, message",
    [
        ("val_0.JPEG\tn99999999\t0\t0\t63\t63", r"val_annotations.txt:1: class id 'n99999999' is not listed"),
        ("val_missing.JPEG\t{wnid}\t0\t0\t63\t63", r"val_annotations.txt:1: image .*val_missing.JPEG does not exist"),
        ("val_0.JPEG", r"val_annotations.txt:1: expected tab-separated"),
    ],
)
def test_tiny_bad_annotation(tiny_tree: fakedata.FakeDataset, line: str, message: str) -> None:
    annotations = tiny_tree.tree / "val" / "val_annotations.txt"
    wnid = (tiny_tree.tree / "wnids.txt").read_text().split()[0]
    rest = annotations.read_text().splitlines()[1:]
    annotations.write_text("\n".join([line.format(wnid=wnid), *rest]) + "\n")
    with pytest.raises(DatasetFormatError, match=message):
        load("tiny_imagenet", tiny_tree.root, "test", verify=False)


def test_tiny_undecodable_jpeg_is_named(tiny_tree: fakedata.FakeDataset) -> None:
    (tiny_tree.tree / "val" / "images" / "val_1.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetFormatError, match="val_1.JPEG: not a decodable JPEG"):
        load("tiny_imagenet", tiny_tree.root, "test", verify=False)


# ---- cache ------------------------------------------------------------------------------------------------------


def test_cache_is_rebuilt_when_the_source_changes(tmp_path: Path) -> None:
    fakedata.write_cifar10(tmp_path, archive=False, seed=0)
    first = load("cifar10", tmp_path, "test", verify=False)
    shutil.rmtree(tmp_path / "cifar-10-batches-py")
    changed = fakedata.write_cifar10(tmp_path, archive=False, seed=1, test_size=12)
    second = load("cifar10", tmp_path, "test", verify=False)
    assert_split_equal(second, changed.test, changed.classes)
    assert len(first) == 10 and len(second) == 12
    # The same size and an older timestamp still count as a change.
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    stamp = path.stat()
    cifar.write_batch(path, {**pickle.loads(path.read_bytes(), encoding="latin1"), "labels": [9] * 12})
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 10**9))
    assert torch.equal(load("cifar10", tmp_path, "test", verify=False).labels, torch.full((12,), 9))


def test_cache_sees_a_same_size_edit_that_kept_its_timestamp(tmp_path: Path) -> None:
    fakedata.write_cifar10(tmp_path, archive=False, seed=0)
    load("cifar10", tmp_path, "test", verify=False)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    stamp, size = path.stat(), path.stat().st_size
    cifar.write_batch(path, {**pickle.loads(path.read_bytes(), encoding="latin1"), "labels": [9] * 10})
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_size == size and path.stat().st_mtime_ns == stamp.st_mtime_ns
    assert torch.equal(load("cifar10", tmp_path, "test", verify=False).labels, torch.full((10,), 9))


def test_unverified_cache_is_not_trusted_for_verified_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakedata.write_cifar10(tmp_path, archive=False)
    load("cifar10", tmp_path, "test", verify=False)
    with pytest.raises(IntegrityError):  # the cache exists, but the files were never checked
        load("cifar10", tmp_path, "test", verify=True)
    trust(monkeypatch, fake)
    load("cifar10", tmp_path, "test", verify=True)


def test_corrupted_cache_is_rebuilt(fake_cifar10: fakedata.FakeDataset) -> None:
    prepare("cifar10", fake_cifar10.root, download=False, verify=False)
    path = sources.cache_path("cifar10", fake_cifar10.root, "train")
    path.write_bytes(path.read_bytes()[:100])
    assert_split_equal(
        load("cifar10", fake_cifar10.root, "train", verify=False), fake_cifar10.train, fake_cifar10.classes
    )
    assert path.stat().st_size > 100


def test_cache_false_writes_nothing(fake_cifar10: fakedata.FakeDataset) -> None:
    load("cifar10", fake_cifar10.root, "test", verify=False, cache=False)
    assert not sources.cache_path("cifar10", fake_cifar10.root, "test").parent.exists()


# ---- embedded sample and argument checks ------------------------------------------------------------------------


def test_embedded_sample_is_real_balanced_and_never_cached() -> None:
    before = sorted(p.relative_to(SAMPLE_ROOT) for p in SAMPLE_ROOT.rglob("*"))
    sizes = {"train": 1000, "test": 500}
    for split, size in sizes.items():
        arrays = load("cifar10", SAMPLE_ROOT, split, verify=False)
        assert arrays.images.shape == (size, 3, 32, 32)
        assert torch.equal(torch.bincount(arrays.labels, minlength=10), torch.full((10,), size // 10))
        assert arrays.classes == fakedata.CIFAR10_CLASSES
        assert 0.35 < arrays.images.float().mean() / 255 < 0.6  # natural images, not noise or zeros
    assert sorted(p.relative_to(SAMPLE_ROOT) for p in SAMPLE_ROOT.rglob("*")) == before
    disk = sum(p.stat().st_size for p in SAMPLE_ROOT.rglob("*") if p.is_file())
    assert disk <= 5 * 2**20


def test_unknown_dataset_and_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; choose one of cifar10, cifar100, tiny_imagenet"):
        load("mnist", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load("cifar10", tmp_path, "val")
