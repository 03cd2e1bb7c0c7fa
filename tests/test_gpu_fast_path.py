"""The GPU fast path (experiments/gpu.yaml), checked on the CPU: the overlay parses, compile modes, the device cache
option, and a training loop that makes no host syncs between logging steps.

Host syncs are found with a TorchDispatchMode: every way of reading a tensor's value on the host (``.item()``,
``float(t)``, ``bool(t)``, ``if t:``) dispatches ``aten._local_scalar_dense``, and the ops whose output size depends
on the data (``nonzero``, boolean-mask indexing, ``unique``, ...) must read a count back too. On the CPU these
cost nothing, but the same Python on a GPU blocks the host until the queued kernels finish, so counting them here
says what ``torch.cuda.set_sync_debug_mode("error")`` would say there (device-to-host copies aside: on the CPU
``.cpu()`` does not dispatch at all).

Host-to-device copies of Python data are counted too: ``torch.tensor``/``torch.as_tensor`` of a list or number
dispatch ``aten.lift_fresh``, and on a GPU that is a blocking copy from pageable memory (torchvision's
``F.normalize(x, mean=list, std=list)`` built mean and std that way at every batch: torchvision issue 9576).
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nlbench.callbacks import RunResult
from nlbench.classifier import COMPILE_MODES, ImageClassifier
from nlbench.data import CIFAR10SampleDataModule, TinyImageNetDataModule
from nlbench.data.loaders import BatchedImageDataset
from nlbench.lightning_cli import parse_fit_args
from nlbench.models import PreActResNet
from nlbench.nn import NLConfig
from nlbench.record import identify

REPO = Path(__file__).resolve().parents[1]
SYNCING_OPS = {
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "repeat_interleave",
    "masked_scatter",
    "lift_fresh",
}


class HostSyncs(TorchDispatchMode):
    """Counts syncing ops per training step (``step`` is set by `StepMarker`; -1 before the first step)."""

    def __init__(self) -> None:
        super().__init__()
        self.step = -1
        self.counts: collections.Counter[tuple[int, str]] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func._schema.name.split("::")[-1]
        if name in SYNCING_OPS:
            self.counts[(self.step, name)] += 1
        return func(*args, **(kwargs or {}))


class StepMarker(L.Callback):
    def __init__(self, probe: HostSyncs) -> None:
        self.probe = probe

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.probe.step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.probe.step = -2  # epoch end: validation, checkpoints, epoch metrics may sync


def _model(normalization: str, **kwargs: Any) -> ImageClassifier:
    torch.manual_seed(0)
    backbone = PreActResNet(num_classes=10, depth=8, nl=NLConfig(normalization=normalization), nl_stages=[2])
    sgd = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4)
    step_lr = functools.partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[1])
    return ImageClassifier(backbone, optimizer=sgd, scheduler=step_lr, **kwargs)


def test_the_overlay_turns_the_fast_path_on() -> None:
    config = parse_fit_args(
        ["--config", str(REPO / "experiments/cifar10.yaml"), "--config", str(REPO / "experiments/gpu.yaml")]
    )
    assert (config.trainer.precision, config.trainer.enable_progress_bar) == ("bf16-mixed", False)
    assert (config.model.channels_last, config.model.compile) == (True, "default")
    assert config.data.class_path == "nlbench.data.CIFAR10DataModule"  # the base's data module, one option more
    assert config.data.init_args.device_cache and config.data.init_args.batch_size == 128
    overridden = parse_fit_args(
        [
            "--config",
            str(REPO / "experiments/demo.yaml"),
            "--config",
            str(REPO / "experiments/gpu.yaml"),
            "--model.compile=reduce-overhead",
        ]
    )
    assert overridden.model.compile == "reduce-overhead"


def test_compile_modes() -> None:
    assert COMPILE_MODES == ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    assert _model("scale").model._compiled_call_impl is None
    assert _model("scale", compile=True).model._compiled_call_impl is not None  # true = "default", as before
    with pytest.raises(ValueError, match="model.compile must be false or one of default, reduce-overhead"):
        _model("scale", compile="fast")


def test_device_cache_option() -> None:
    with pytest.raises(ValueError, match="device_cache needs loader='tensor' and num_workers=0"):
        CIFAR10SampleDataModule(device_cache=True, num_workers=2)
    with pytest.raises(ValueError, match="device_cache needs loader='tensor'"):
        CIFAR10SampleDataModule(device_cache=True, loader="torchvision")
    # Without a GPU the cache stays where it is and the batches are those of the plain tensor path.
    plain, cached = CIFAR10SampleDataModule(subset=40), CIFAR10SampleDataModule(subset=40, device_cache=True)
    for dm in (plain, cached):
        dm.setup("fit")
    a, b = next(iter(plain.val_dataloader())), next(iter(cached.val_dataloader()))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    images, labels = BatchedImageDataset(plain._arrays["train"].images, plain._arrays["train"].labels).__getitems__(
        [3, 1]
    )
    assert images.shape == (2, 3, 32, 32) and labels.dtype == torch.long


@pytest.mark.parametrize("normalization", ["softmax", "scale"])
def test_training_makes_no_host_syncs_between_logging_steps(tmp_path: Path, normalization: str) -> None:
    probe = HostSyncs()
    dm = CIFAR10SampleDataModule(batch_size=16, subset=160, device_cache=True)  # 10 steps
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        precision="bf16-mixed",
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=5,
        callbacks=[
            StepMarker(probe),
            RunResult(str(tmp_path), identify(nl=None, dataset="cifar10_sample", backbone="PreActResNet")),
            L.pytorch.callbacks.LearningRateMonitor(logging_interval="epoch"),
        ],
    )
    with probe:
        trainer.fit(_model(normalization, channels_last=True, nl_stats_every_n_steps=0), datamodule=dm)
    assert trainer.global_step == 10
    # The sampler's indices are host data by nature: BatchedImageDataset copies them from pinned memory without
    # blocking. Any other tensor built from Python data in a step (e.g. F.normalize's mean/std) is a blocking copy.
    logging_steps = {4, 9}  # Lightning logs (and the divergence check reads the loss) every log_every_n_steps
    built = {
        step: n
        for (step, op), n in probe.counts.items()
        if op == "lift_fresh" and step >= 0 and step not in logging_steps
    }
    assert built == dict.fromkeys(set(range(10)) - logging_steps, 1), f"tensors from host data per step: {built}"
    per_step = {(step, op): n for (step, op), n in probe.counts.items() if step >= 0 and op != "lift_fresh"}
    assert {step for step, _ in per_step} <= logging_steps, f"host syncs inside the training loop: {per_step}"


def test_normalisation_builds_nothing_from_host_data_per_batch() -> None:
    """Train and eval transforms of the fast path, batch after batch: mean/std live on the device already."""
    for dm in (CIFAR10SampleDataModule(device_cache=True), TinyImageNetDataModule(data_dir="unused", verify=False)):
        images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
        for train in (True, False):  # the first batches on a device may build the constants
            dm.batch_transform(images, train=train)
        probe = HostSyncs()
        with probe:
            for train in (True, False, True):
                dm.batch_transform(images, train=train)
        assert not probe.counts, f"{type(dm).__name__}: {dict(probe.counts)}"


def test_a_progress_bar_is_what_costs_a_sync_per_step(tmp_path: Path) -> None:
    """The probe does see per-step syncs: with a progress bar, the step loss is read back after every batch."""
    probe = HostSyncs()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=50,
        callbacks=[StepMarker(probe)],
    )
    with probe:
        trainer.fit(_model("scale"), datamodule=CIFAR10SampleDataModule(batch_size=16, subset=64))
    assert all(probe.counts[(step, "_local_scalar_dense")] >= 1 for step in range(3))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default"])
def test_compiled_training_matches_eager(mode: str) -> None:
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    losses = []
    for compile_mode in (False, mode):
        model = _model("scale", compile=compile_mode, channels_last=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        run = []
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[1] == pytest.approx(losses[0], rel=1e-3, abs=1e-4)


# Lightning's model summary counts bf16 parameters as 32-bit and says so: true, and not what this test checks.
@pytest.mark.filterwarnings("ignore:Precision bf16-mixed is not supported by the model summary")
def test_nlbench_fit_with_the_overlay_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tinyfit import DEMO, FAST

    from nlbench.lightning_cli import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path / "run"
    code = main(
        [
            "fit",
            f"--config={DEMO}",
            f"--config={REPO / 'experiments/gpu.yaml'}",
            *FAST,
            "--model.compile=false",  # compiling takes a minute on this CPU: the slow test covers it
            f"--run_dir={run_dir}",
        ]
    )
    assert code == 0
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"
    config = (run_dir / "config.yaml").read_text()
    assert "precision: bf16-mixed" in config and "device_cache: true" in config and "channels_last: true" in config
