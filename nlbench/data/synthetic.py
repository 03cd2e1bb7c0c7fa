"""CIFAR-size data sets generated on the spot, in the official on-disk format, for benchmarks that must not download.

    python -m nlbench.data.synthetic --out /tmp/cifar10-synthetic [--train 50000 --test 10000]

The files are what the real loader reads (``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``,
Python-2 pickles with uint8 CHW-planar rows), so a benchmark on them exercises the real reading, caching and
augmentation code at the real sizes. The pixels are noise around a per-class colour, so a network can learn a
little from them; they say nothing about accuracy. Load with ``verify=False`` (the official md5s do not match).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlbench.data.cifar import CIFAR10, write_batch

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10(root: str | Path, *, train: int = 50_000, test: int = 10_000, seed: int = 0) -> Path:
    """Write a CIFAR-10-format tree of `train` training images (over the 5 official batch files) and `test` test
    images under `root`; returns `root` (the ``data_dir`` to give the DataModule)."""
    if train < len(CIFAR10.train_files) or test < 1:
        raise ValueError(f"need at least {len(CIFAR10.train_files)} training and 1 test image, got {train}, {test}")
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, size=(len(CIFAR10_CLASSES), 3, 1), dtype=np.int16)
    tree = Path(root) / CIFAR10.folder
    tree.mkdir(parents=True, exist_ok=True)
    sizes = np.diff(np.linspace(0, train, len(CIFAR10.train_files) + 1).astype(int))
    files = [(name, int(n), "training") for name, n in zip(CIFAR10.train_files, sizes)]
    for k, (name, n, kind) in enumerate([*files, (CIFAR10.test_files[0], test, "testing")], start=1):
        labels = rng.integers(0, len(CIFAR10_CLASSES), size=n)
        noise = rng.integers(-40, 40, size=(n, 3, 1024), dtype=np.int16)
        data = np.clip(colours[labels] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
        write_batch(
            tree / name,
            {
                "batch_label": f"synthetic {kind} batch {k}",
                "labels": labels.tolist(),
                "data": data,
                "filenames": [f"synthetic_{k}_{i}.png" for i in range(n)],
            },
        )
    write_batch(
        tree / CIFAR10.meta_file,
        {"num_cases_per_batch": int(sizes[0]), "label_names": list(CIFAR10_CLASSES), "num_vis": 3072},
    )
    return Path(root)


def main(argv: list[str] | None = None) -> int:
    from jsonargparse import ArgumentParser  # the CLI only: the device check imports this module

    parser = ArgumentParser(prog="python -m nlbench.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="data_dir to write cifar-10-batches-py/ into")
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {write_cifar10(args.out, train=args.train, test=args.test, seed=args.seed) / CIFAR10.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
