"""Shared fixtures: small generated datasets in the official formats (see fakedata.py), one fresh copy per test, and
the fixtures that several test files apply to all their tests (`pytestmark = pytest.mark.usefixtures(...)`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # lets tests `import fakedata` (tests/ is not a package)

import fakedata  # noqa: E402


@pytest.fixture
def no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B disabled for the test (fits of experiments/demo.yaml would otherwise log offline: slow, and files in the
    run directory). W&B is exercised in its own tests. Not autouse: those tests and the ones of "auto" choose the mode
    themselves; a file that fits applies it with `pytestmark = pytest.mark.usefixtures("no_wandb")`."""
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture
def seeded() -> None:
    """torch's global generator at seed 0, so a test's random tensors (and a failure) are the same on every run."""
    import torch  # here, not at the top: a conftest import is paid by every test, also those without torch

    torch.manual_seed(0)


@pytest.fixture
def fake_cifar10(tmp_path: Path) -> fakedata.FakeDataset:
    """CIFAR-10 as its .tar.gz under a fresh data root (md5s differ from the official ones: verify=False)."""
    return fakedata.write_cifar10(tmp_path / "cifar10")


@pytest.fixture
def fake_cifar100(tmp_path: Path) -> fakedata.FakeDataset:
    return fakedata.write_cifar100(tmp_path / "cifar100")


@pytest.fixture
def fake_tiny_imagenet(tmp_path: Path) -> fakedata.FakeDataset:
    return fakedata.write_tiny_imagenet(tmp_path / "tiny_imagenet")


@pytest.fixture
def cifar10_root(fake_cifar10: fakedata.FakeDataset) -> Path:
    """A data root holding a generated cifar-10-python.tar.gz."""
    return fake_cifar10.root


@pytest.fixture
def cifar100_root(fake_cifar100: fakedata.FakeDataset) -> Path:
    return fake_cifar100.root


@pytest.fixture
def tiny_imagenet_root(fake_tiny_imagenet: fakedata.FakeDataset) -> Path:
    return fake_tiny_imagenet.root
