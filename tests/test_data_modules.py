"""The DataModules on generated data in the official formats: splits, loaders, DDP sharding, the Lightning hook."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import ArgumentError, ArgumentParser
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _update_dataloader

from nlbench.bench.loader import main as loader_benchmark
from nlbench.data import (
    SAMPLE_ROOT,
    CIFAR10DataModule,
    CIFAR10SampleDataModule,
    CIFAR100DataModule,
    TinyImageNetDataModule,
)
from nlbench.data.errors import DatasetNotFoundError


def row_index(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """For each image, its index in ``reference`` (the generated images are distinct); fails if one is absent."""
    flat_ref = reference.flatten(1)
    matches = (images.flatten(1)[:, None, :] == flat_ref[None]).all(-1)
    assert matches.any(1).all(), "an image not in the reference set"
    return matches.int().argmax(1)


def cifar10(root, **options) -> CIFAR10DataModule:
    options = {"batch_size": 16, "eval_batch_size": 8, **options}
    dm = CIFAR10DataModule(data_dir=str(root), verify=False, **options)
    dm.prepare_data()
    return dm


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_num_classes_and_image_size_known_without_data(tmp_path):
    missing = str(tmp_path / "nothing-here")
    for module, num_classes in ((CIFAR10DataModule, 10), (CIFAR100DataModule, 100)):
        dm = module(data_dir=missing)
        assert (dm.num_classes, dm.image_size) == (num_classes, 32)
    tiny = TinyImageNetDataModule(data_dir=missing)
    assert (tiny.num_classes, tiny.image_size) == (200, 56)
    assert TinyImageNetDataModule(data_dir=missing, crop_size=48).image_size == 48
    assert not (tmp_path / "nothing-here").exists()


def test_cifar10_tensor_path_serves_the_splits(fake_cifar10):
    dm = cifar10(fake_cifar10.root)
    dm.setup("fit")
    images, labels = collect(dm.train_dataloader())
    train = fake_cifar10.train
    assert images.dtype == torch.uint8 and images.shape == train.images.shape
    index = row_index(images, train.images)
    assert sorted(index.tolist()) == list(range(len(train.images)))  # every image once: an epoch, shuffled
    assert torch.equal(labels, train.labels[index])
    # the validation split is the official test split, in file order
    val_images, val_labels = collect(dm.val_dataloader())
    assert torch.equal(val_images, fake_cifar10.test.images) and torch.equal(val_labels, fake_cifar10.test.labels)
    assert dm.class_names == fake_cifar10.classes
    dm.setup("test")
    test_images, _ = collect(dm.test_dataloader())
    assert torch.equal(test_images, fake_cifar10.test.images)


def test_cifar10_paths_agree_on_evaluation_batches(fake_cifar10):
    fast, slow = cifar10(fake_cifar10.root), cifar10(fake_cifar10.root, loader="torchvision")
    fast.setup("validate")
    slow.setup("validate")
    fast_images, fast_labels = fast.on_after_batch_transfer(next(iter(fast.val_dataloader())), 0)
    slow_batch, slow_labels = next(iter(slow.val_dataloader()))
    assert slow_batch.dtype == torch.float32 and slow_batch.shape == (8, 3, 32, 32)
    assert slow.on_after_batch_transfer((slow_batch, slow_labels), 0)[0] is slow_batch  # a no-op there
    assert torch.equal(fast_images, slow_batch) and torch.equal(fast_labels, slow_labels)


def test_torchvision_path_with_workers(fake_cifar10):
    dm = cifar10(fake_cifar10.root, loader="torchvision", num_workers=1)
    dm.setup("fit")
    images, labels = collect(dm.train_dataloader())
    assert images.dtype == torch.float32 and images.shape == (40, 3, 32, 32)
    assert sorted(labels.tolist()) == sorted(fake_cifar10.train.labels.tolist())


@pytest.mark.parametrize("val_split,n_val", [(0.25, 10), (7, 7)])
def test_val_split_is_seeded_and_disjoint(fake_cifar10, val_split, n_val):
    train = fake_cifar10.train

    def splits(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        dm = cifar10(fake_cifar10.root, val_split=val_split, split_seed=seed)
        dm.setup("fit")
        val_index = row_index(collect(dm.val_dataloader())[0], train.images)
        train_index = row_index(collect(dm.train_dataloader())[0], train.images)
        return val_index, train_index

    val_a, train_a = splits(0)
    val_b, _ = splits(0)
    val_c, _ = splits(1)
    assert len(val_a) == n_val and len(train_a) == 40 - n_val
    assert set(val_a.tolist()).isdisjoint(train_a.tolist())
    assert set(val_a.tolist()) | set(train_a.tolist()) == set(range(40))
    assert torch.equal(val_a, val_b)
    assert not torch.equal(val_a, val_c)


def test_subset_draws_from_the_training_split(fake_cifar10):
    dm = cifar10(fake_cifar10.root, val_split=10, subset=12)
    dm.setup("fit")
    val_index = row_index(collect(dm.val_dataloader())[0], fake_cifar10.train.images)
    train_index = row_index(collect(dm.train_dataloader())[0], fake_cifar10.train.images)
    assert len(train_index) == 12 and len(set(train_index.tolist())) == 12
    assert set(train_index.tolist()).isdisjoint(val_index.tolist())


@pytest.mark.parametrize("loader", ["tensor", "torchvision"])
def test_distributed_sampler_shards_disjointly(fake_cifar10, loader):
    """The loaders survive Lightning's DistributedSampler injection (the same private helpers the Trainer calls)
    and the two simulated ranks see disjoint halves that cover the split."""
    dm = cifar10(fake_cifar10.root, loader=loader, batch_size=8)
    dm.setup("fit")
    loader_ = dm.train_dataloader()
    seen = []
    for rank in (0, 1):
        sampler = _get_distributed_sampler(
            loader_, shuffle=True, overfit_batches=0, mode=RunningStage.TRAINING, num_replicas=2, rank=rank
        )
        sharded = _update_dataloader(loader_, sampler, mode=RunningStage.TRAINING)
        labels = [batch[1] for batch in sharded]
        assert [len(b) for b in labels] == [8, 8, 4]
        seen.append(list(sharded.sampler))  # the indices this rank's batches are built from (same seed, epoch)
        assert sorted(torch.cat(labels).tolist()) == sorted(fake_cifar10.train.labels[seen[-1]].tolist())
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == list(range(40))


def test_tensor_path_batches_follow_the_sampler(fake_cifar10):
    dm = cifar10(fake_cifar10.root, batch_size=8)
    dm.setup("fit")
    loader = dm.train_dataloader()
    sampler = _get_distributed_sampler(
        loader, shuffle=True, overfit_batches=0, mode=RunningStage.TRAINING, num_replicas=2, rank=1
    )
    sharded = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
    images = torch.cat([b[0] for b in sharded])
    assert torch.equal(images, fake_cifar10.train.images[list(sharded.sampler)])


def test_cifar100_and_tiny_imagenet_end_to_end(fake_cifar100, fake_tiny_imagenet):
    for fake, module, size in (
        (fake_cifar100, CIFAR100DataModule, 32),
        (fake_tiny_imagenet, TinyImageNetDataModule, 56),
    ):
        dm = module(data_dir=str(fake.root), verify=False, batch_size=4, eval_batch_size=4)
        dm.prepare_data()
        dm.setup("fit")
        images, labels = next(iter(dm.train_dataloader()))
        train_out = dm.batch_transform(images, train=True)
        val_images, _ = next(iter(dm.val_dataloader()))
        val_out = dm.batch_transform(val_images, train=False)
        assert train_out.shape == (4, 3, size, size) and val_out.shape == (len(val_images), 3, size, size)
        assert train_out.dtype == val_out.dtype == torch.float32
        assert labels.max() < len(fake.classes) and dm.class_names == fake.classes
        # a normalised batch: roughly zero mean, unit spread for uniform random pixels
        assert val_out.abs().max() < 3


def test_missing_data_says_where_it_looked(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        dm.prepare_data()


def test_dataloader_before_setup_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"setup\('fit'\)"):
        CIFAR10DataModule(data_dir=str(tmp_path)).train_dataloader()


@pytest.mark.parametrize(
    "options,message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"val_split": -0.1}, "val_split"),
        ({"val_split": 2.5}, "val_split"),
        ({"loader": "dali"}, "loader"),
        ({"num_workers": -1}, "num_workers"),
        ({"subset": 0}, "subset"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"crop_padding": -1}, "crop_padding"),
    ],
)
def test_bad_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule(data_dir=str(tmp_path), **options)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"crop_size": 65}, "crop_size"),
        ({"rrc_scale": (0.5, 0.1)}, "rrc_scale"),
    ],
)
def test_bad_tiny_imagenet_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        TinyImageNetDataModule(data_dir=str(tmp_path), **options)


def test_val_split_larger_than_train_is_an_error(fake_cifar10):
    dm = cifar10(fake_cifar10.root, val_split=40)
    with pytest.raises(ValueError, match="val_split"):
        dm.setup("fit")


def test_jsonargparse_signatures():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CIFAR10DataModule, "cifar")
    parser.add_class_arguments(CIFAR10SampleDataModule, "sample")
    parser.add_class_arguments(TinyImageNetDataModule, "tiny")
    cfg = parser.parse_args(
        ["--cifar.val_split=5000", "--tiny.val_split=0.1", "--tiny.rrc_scale=[0.2, 1.0]", "--cifar.loader=torchvision"]
    )
    assert cfg.cifar.val_split == 5000 and cfg.tiny.val_split == 0.1 and cfg.tiny.rrc_scale == (0.2, 1.0)
    assert cfg.cifar.mean == (0.4914, 0.4822, 0.4465) and cfg.cifar.crop_padding == 4
    assert {"data_dir", "download", "verify"}.isdisjoint(cfg.sample.keys())
    with pytest.raises(ArgumentError):
        parser.parse_args(["--cifar.loader=dali"])


class _Probe(pl.LightningModule):
    """Records what reaches training_step / validation_step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 10)
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0])
        return torch.nn.functional.cross_entropy(self.layer(batch[0].mean((2, 3))), batch[1])

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_gets_augmented_training_and_plain_validation_batches(fake_cifar10):
    dm = cifar10(fake_cifar10.root, batch_size=40, eval_batch_size=10)  # one batch holds a whole split
    probe = _Probe()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.manual_seed(0)
    trainer.fit(probe, datamodule=dm)
    (train,), (val,) = probe.seen["train"], probe.seen["val"]
    assert train.dtype == torch.float32 and train.shape == (40, 3, 32, 32)
    # validation: exactly the evaluation transform of the test split
    assert torch.equal(val, dm.batch_transform(fake_cifar10.test.images, train=False))
    # training: augmented. Random images have no all-black rows or columns, but all except the 1 in 81 left
    # untranslated show some zero padding (normalised black) after a random crop.
    black = dm.batch_transform(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), train=False)[0]
    padded = (train == black).all(dim=(1, 3)).any(dim=1) | (train == black).all(dim=(1, 2)).any(dim=1)
    assert padded.sum() >= 30


@pytest.mark.skipif(
    not SAMPLE_ROOT.is_dir(), reason="optional: needs the embedded CIFAR-10 sample (python -m nlbench.data.make_sample)"
)
def test_embedded_sample_loads_without_download_or_cache():
    dm = CIFAR10SampleDataModule(batch_size=32, subset=64)
    dm.prepare_data()
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.uint8
    assert dm.class_names[:2] == ["airplane", "automobile"] and dm.num_classes == 10
    assert len(dm.val_dataloader().dataset) > 0
    assert not any(p.name.endswith("-cache") for p in SAMPLE_ROOT.iterdir())


def test_loader_benchmark_prints_a_row_per_configuration(capsys):
    assert loader_benchmark(["--datasets=[cifar10]", "--workers=[]", "--seconds=0.05"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| cifar10 |")]
    assert len(rows) == 1 and "| tensor | 0 |" in rows[0]


def test_ranks_draw_independent_augmentations_under_ddp():
    """Every DDP rank has the same global seed; the per-rank generator must still give each rank its own crops."""
    from types import SimpleNamespace

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    batches = []
    for rank in (0, 1):
        torch.manual_seed(0)
        dm = CIFAR10DataModule(data_dir="unused")
        dm.trainer = SimpleNamespace(training=True, world_size=2, global_rank=rank)
        batches.append(dm.on_after_batch_transfer((images, torch.zeros(64)), 0)[0])
    assert not torch.equal(batches[0], batches[1])
    # A single process keeps using the global generator, so seeded runs stay reproducible as before.
    torch.manual_seed(0)
    dm = CIFAR10DataModule(data_dir="unused")
    dm.trainer = SimpleNamespace(training=True, world_size=1, global_rank=0)
    single = dm.on_after_batch_transfer((images, torch.zeros(64)), 0)[0]
    torch.manual_seed(0)
    assert torch.equal(single, dm.batch_transform(images, train=True))


def test_batch_size_is_the_global_batch_under_ddp() -> None:
    """devices_per_run: k kept batch 128 on every rank, i.e. a global batch of 128 k under the paper's lr."""
    from types import SimpleNamespace

    from nlbench.data import CIFAR10SampleDataModule

    def ddp(world_size: int) -> SimpleNamespace:
        return SimpleNamespace(world_size=world_size, strategy=SimpleNamespace(root_device=torch.device("cpu")))

    dm = CIFAR10SampleDataModule(batch_size=128, subset=512)
    dm.trainer = ddp(4)
    dm.setup("fit")
    assert dm.rank_batch_size == 32 and dm.train_dataloader().batch_size == 32
    assert dm.val_dataloader().batch_size == dm.eval_batch_size  # evaluation batches are per process
    dm.trainer = ddp(1)
    assert dm.train_dataloader().batch_size == 128
    bad = CIFAR10SampleDataModule(batch_size=130, subset=512)
    bad.trainer = ddp(4)
    with pytest.raises(
        ValueError,
        match=r"^data.batch_size=130 is the global batch and must divide evenly over the "
        r"4 DDP processes",
    ):
        bad.setup("fit")
