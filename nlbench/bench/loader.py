"""Loader throughput: the fast path (uint8 batches + batched augmentation on the device) vs the torchvision path.

    python -m nlbench.bench.loader                                  # CPU, generated data of the real sizes
    python -m nlbench.bench.loader --device cuda --data_dir data    # real datasets already prepared in data/

Measures training batches as a training step receives them: DataLoader, transfer to ``--device`` and, for the
fast path, the DataModule's ``batch_transform`` there (the work ``on_after_batch_transfer`` does). The torchvision
path is timed with each of ``--workers``. Each configuration runs for at least ``--seconds`` after one untimed
warm-up batch (which also starts the workers), cycling epochs. Without ``--data_dir`` the data are random uint8
images of the real sizes in memory (CIFAR: 50,000 of 32x32; Tiny-ImageNet: 10,000 of 64x64, a tenth of its
training split, which only shortens epochs). Prints a markdown table.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import torch
from jsonargparse import ArgumentParser

from nlbench.bench.timing import synchronize
from nlbench.data import (
    DATASETS,
    CIFAR10DataModule,
    CIFAR100DataModule,
    ImageArrays,
    ImageDataModule,
    TinyImageNetDataModule,
    prepare,
)
from nlbench.data.sources import SPECS

MODULES: dict[str, type[ImageDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "tiny_imagenet": TinyImageNetDataModule,
}
SYNTHETIC_SIZES = {"cifar10": (50_000, 32), "cifar100": (50_000, 32), "tiny_imagenet": (10_000, 64)}


def parse_args(argv: list[str] | None) -> object:
    parser = ArgumentParser(prog="nlbench bench loader", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        type=list[str],
        default=["cifar10", "tiny_imagenet"],
        help=f"datasets to measure, from {', '.join(DATASETS)}",
    )
    parser.add_argument(
        "--data_dir",
        type=str | None,
        default=None,
        help="a data root holding the real datasets (default: generated data in memory)",
    )
    parser.add_argument("--verify", type=bool, default=True, help="check checksums when preparing --data_dir")
    parser.add_argument("--device", type=str, default="cpu", help="where the fast path augments (cpu, cuda)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument(
        "--workers", type=list[int], default=[0, 2], help="DataLoader worker counts for the torchvision path"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed duration per configuration")
    parser.add_argument(
        "--threads",
        type=int | None,
        default=None,
        help="torch intra-op threads of the main process (default: torch's choice)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def synthetic_arrays(name: str, *, seed: int) -> ImageArrays:
    n, size = SYNTHETIC_SIZES[name]
    generator = torch.Generator().manual_seed(seed)
    num_classes = SPECS[name].num_classes
    return ImageArrays(
        images=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator),
        labels=torch.randint(0, num_classes, (n,), generator=generator),
        classes=[f"class {k}" for k in range(num_classes)],
    )


def _forever(loader: torch.utils.data.DataLoader) -> Iterator:
    while True:
        yield from loader


def images_per_second(dm: ImageDataModule, arrays: ImageArrays, device: torch.device, seconds: float) -> float:
    """Training images/s through ``dm``'s loader, the transfer to ``device`` and (fast path) ``batch_transform``."""
    loader = dm.make_dataloader(arrays, train=True, pin_memory=device.type == "cuda")
    batches = _forever(loader)

    def step() -> int:
        images, labels = next(batches)
        images, _ = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if dm.loader == "tensor":
            images = dm.batch_transform(images, train=True)
        return len(images)

    step()  # warm-up: starts the workers, first-call allocations
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += step()
    synchronize(device)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = [name for name in args.datasets if name not in MODULES]
    if unknown:
        raise ValueError(f"--datasets: unknown {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    source = f"data from {args.data_dir}" if args.data_dir else "generated in-memory data of the real sizes"
    print(
        f"Training-loader throughput: device={device}, batch={args.batch_size}, {source}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load}\n"
    )
    print("| dataset | loader | workers | images/s | vs torchvision, 0 workers |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        module = MODULES[name]
        if args.data_dir:
            prepare(name, args.data_dir, download=False, verify=args.verify)
            arrays = load(name, args.data_dir, "train", verify=args.verify)
        else:
            arrays = synthetic_arrays(name, seed=args.seed)
        configs = [("tensor", 0)] + [("torchvision", w) for w in args.workers]
        rates = {}
        for loader, workers in configs:
            torch.manual_seed(args.seed)
            dm = module(
                data_dir=args.data_dir or "unused", batch_size=args.batch_size, loader=loader, num_workers=workers
            )
            rates[loader, workers] = images_per_second(dm, arrays, device, args.seconds)
        baseline = rates.get(("torchvision", 0))
        for (loader, workers), rate in rates.items():
            ratio = f"{rate / baseline:.1f}x" if baseline else "n/a"
            print(f"| {name} | {loader} | {workers} | {rate:,.0f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
