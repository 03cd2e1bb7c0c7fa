"""Training-step benchmark: images/s of `nlbench fit`'s Lightning path against a plain PyTorch loop.

Both paths train the same backbone on the same in-memory data with the same batched augmentation, so the
difference is what Lightning and our module add (logging, metrics, hooks). ``--grid`` measures the paper's
backbones with softmax vs scale NL blocks across reduction ratios and head counts instead.

    python -m nlbench.bench.train                       # overhead table on the embedded CIFAR-10 sample
    python -m nlbench.bench.train --grid --device cuda  # throughput/memory grid
"""

from __future__ import annotations

import functools
import itertools
import platform
import statistics
import time
from datetime import datetime, timezone
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from nlbench.bench.block import peak_bytes
from nlbench.bench.timing import synchronize
from nlbench.classifier import ImageClassifier
from nlbench.data import CIFAR10SampleDataModule
from nlbench.io import atomic_write_json
from nlbench.models import PreActResNet
from nlbench.nn import NLConfig

SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)


def _batches(dm: CIFAR10SampleDataModule):
    while True:
        yield from dm.train_dataloader()


def plain_loop(
    model: nn.Module,
    dm: CIFAR10SampleDataModule,
    device: torch.device,
    steps: int,
    warmup: int,
    autocast: bool,
    *,
    channels_last: bool = False,
    compile: str | None = None,
) -> float:
    """Images/s of a hand-written loop: transfer, batched augmentation, forward, backward, SGD step.

    `channels_last` and `compile` (a ``torch.compile`` mode) as ``ImageClassifier`` applies them; the warm-up
    steps then include the compilation."""
    model = model.to(device).train()
    optimizer = SGD(model.parameters())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model, mode=compile) if compile else model
    batches = _batches(dm)
    images = 0
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start, images = time.perf_counter(), 0
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = dm.batch_transform(x, train=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(y)
    synchronize(device)
    return images / (time.perf_counter() - start)


class _StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.images, self.start, self.end = warmup, 0, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup:
            synchronize(pl_module.device)
            self.start, self.images = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, idx: int
    ) -> None:
        self.images += len(batch[1])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        self.end = time.perf_counter()


def lightning_loop(
    model: nn.Module, dm: CIFAR10SampleDataModule, device: torch.device, steps: int, warmup: int, autocast: bool
) -> float:
    """Images/s of the same training through ImageClassifier and a Lightning Trainer (as `nlbench fit` runs it)."""
    timer = _StepTimer(warmup)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision="bf16-mixed" if autocast else "32-true",
        callbacks=[timer],
        log_every_n_steps=50,
    )
    trainer.fit(ImageClassifier(model, optimizer=SGD), datamodule=dm)
    return timer.images / (timer.end - timer.start)


def _model(normalization: str, reduction: int = 2, heads: int = 1, depth: int = 20, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    nl = NLConfig(normalization=normalization, reduction=reduction, heads=heads)
    return PreActResNet(num_classes=10, depth=depth, nl=nl, nl_stages=[2])


def _datamodule(batch_size: int) -> CIFAR10SampleDataModule:
    dm = CIFAR10SampleDataModule(batch_size=batch_size)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def overhead_table(device: torch.device, batch_size: int, steps: int, warmup: int, repeats: int, autocast: bool) -> str:
    dm = _datamodule(batch_size)
    rows = ["| normalization | plain loop (img/s) | Lightning / nlbench (img/s) | overhead |", "|---|---:|---:|---:|"]
    for norm in ("scale", "softmax"):
        plain, light = [], []
        for _ in range(repeats):  # interleaved, so drifting machine load hits both paths alike
            plain.append(plain_loop(_model(norm), dm, device, steps, warmup, autocast))
            light.append(lightning_loop(_model(norm), dm, device, steps, warmup, autocast))
        p, q = statistics.median(plain), statistics.median(light)
        rows.append(f"| {norm} | {p:.0f} | {q:.0f} | {100 * (p - q) / p:+.1f}% |")
    return "\n".join(rows)


def training_step_peak_mib(
    model: nn.Module, dm: CIFAR10SampleDataModule, device: torch.device, autocast: bool
) -> float:
    """Peak memory of one training step (allocations during the step, on CPU via the profiler's memory events)."""
    model = model.to(device).train()
    x, y = next(iter(dm.train_dataloader()))
    x, y = dm.batch_transform(x.to(device), train=True), y.to(device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()

    step()  # allocate the gradients once, so the peak is the step's working memory
    return peak_bytes(step, device) / 2**20


def grid_records(
    device: torch.device,
    batch_size: int,
    steps: int,
    warmup: int,
    depths: list[int],
    reductions: list[int],
    heads: list[int],
    autocast: bool,
    methods: list[str] = ("softmax", "scale"),
) -> list[dict[str, Any]]:
    """Images/s and peak memory of PreResNet training steps per depth x normalization x reduction x heads;
    ``methods`` are registered normalization names or class paths."""
    dm = _datamodule(batch_size)
    records = []
    for depth, norm, r, h in itertools.product(depths, methods, reductions, heads):
        try:
            model = _model(norm, r, h, depth)
        except ValueError:  # the width C / r does not split into h heads
            continue
        rate = plain_loop(model, dm, device, steps, warmup, autocast)
        peak = training_step_peak_mib(_model(norm, r, h, depth), dm, device, autocast)
        records.append(
            {
                "backbone": f"PreResNet-{depth}",
                "depth": depth,
                "normalization": norm,
                "reduction": r,
                "heads": h,
                "images_per_s": rate,
                "peak_mib": peak,
            }
        )
    return records


def grid_table(records: list[dict[str, Any]]) -> str:
    rows = ["| backbone | normalization | reduction | heads | img/s | peak MiB |", "|---|---|---:|---:|---:|---:|"]
    rows += [
        f"| {r['backbone']} | {r['normalization']} | {r['reduction']} | {r['heads']} | "
        f"{r['images_per_s']:.0f} | {r['peak_mib']:.0f} |"
        for r in records
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from jsonargparse import ActionYesNo, ArgumentParser  # the CLI only: the device check imports this module

    parser = ArgumentParser(prog="nlbench bench train", description=__doc__)
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="overhead mode: measurements per path (median)")
    parser.add_argument("--bf16", action=ActionYesNo, default=False, help="bf16 autocast (bf16-mixed in Lightning)")
    parser.add_argument("--grid", action=ActionYesNo, default=False, help="throughput/memory grid, not overhead")
    parser.add_argument("--depths", type=list[int], default=[20, 56])
    parser.add_argument("--reductions", type=list[int], default=[1, 2, 4, 8, 16])
    parser.add_argument("--heads", type=list[int], default=[1, 2, 4])
    parser.add_argument(
        "--methods",
        type=list[str],
        default=["softmax", "scale"],
        help="grid mode: normalizations (registered names, e.g. linear, efficient, or class paths)",
    )
    parser.add_argument(
        "--out",
        type=str | None,
        default=None,
        help="grid mode: also write the records as JSON (`nlbench report --bench FILE` plots them)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# training-step benchmark on {name}, batch {args.batch_size}, PreResNet, NL block in stage 2\n")
    if args.grid:
        records = grid_records(
            device,
            args.batch_size,
            args.steps,
            args.warmup,
            args.depths,
            args.reductions,
            args.heads,
            args.bf16,
            methods=args.methods,
        )
        print(grid_table(records))
        if args.out:
            atomic_write_json(
                args.out,
                {
                    "machine": f"{platform.node()} ({name})",
                    "device": device.type,
                    "batch_size": args.batch_size,
                    "bf16": args.bf16,
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "records": records,
                },
            )
    else:
        print(overhead_table(device, args.batch_size, args.steps, args.warmup, args.repeats, args.bf16))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
