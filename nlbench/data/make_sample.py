"""Build the real CIFAR-10 sample shipped in nlbench/data/sample from a CIFAR-10 copy in the official layout.

    python -m nlbench.data.make_sample --source ../shared/data/cifar10-sample

Takes a class-balanced subset of data_batch_1 and test_batch with a fixed seed (images keep their order in the
source batch, which is already shuffled) and writes cifar-10-batches-py/{data_batch_1, test_batch, batches.meta}
in the official Python 2 pickle format, plus a README with the provenance and md5s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from jsonargparse import ArgumentParser
from torchvision.datasets.utils import calculate_md5

from nlbench.data.cifar import CIFAR10, read_batch, write_batch
from nlbench.data.sources import SAMPLE_ROOT


def _balanced_subset(
    batch: dict[str, Any], size: int, num_classes: int, rng: np.random.Generator, batch_label: str
) -> dict[str, Any]:
    if size % num_classes:
        raise ValueError(f"sample size {size} is not a multiple of the {num_classes} classes")
    labels = np.asarray(batch["labels"])
    picked = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == c), size=size // num_classes, replace=False)
                for c in range(num_classes)
            ]
        )
    )
    subset = {"batch_label": batch_label, "labels": labels[picked].tolist(), "data": batch["data"][picked]}
    if "filenames" in batch:
        subset["filenames"] = [batch["filenames"][i] for i in picked]
    return subset


def make_sample(source: Path, out: Path, *, train: int, test: int, seed: int) -> Path:
    """Write the sample tree under ``out`` and return it."""
    src, dst = Path(source) / CIFAR10.folder, Path(out) / CIFAR10.folder
    meta = read_batch(src / CIFAR10.meta_file)
    classes = meta[CIFAR10.names_key]
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True, exist_ok=True)
    for name, size, kind in (("data_batch_1", train, "training"), ("test_batch", test, "testing")):
        label = f"nlbench sample: {size} {kind} images from {name} (seed {seed})"
        write_batch(dst / name, _balanced_subset(read_batch(src / name), size, len(classes), rng, label))
    write_batch(dst / CIFAR10.meta_file, {"num_cases_per_batch": train, "label_names": classes, "num_vis": 3072})

    files = sorted(p.name for p in dst.iterdir())
    (Path(out) / "README.md").write_text(
        "# Embedded CIFAR-10 sample\n\n"
        f"Real CIFAR-10 images in the official `cifar-10-batches-py` layout: {train} training images (data_batch_1) "
        f"and {test} test images (test_batch), class-balanced, drawn with seed {seed} from a copy of the official "
        "batches by `python -m nlbench.data.make_sample`. The CIFAR-10 data set is by Alex Krizhevsky, Vinod Nair "
        "and Geoffrey Hinton (https://www.cs.toronto.edu/~kriz/cifar.html). The bytes differ from the official "
        "files: load with `verify=False`.\n\nmd5:\n\n"
        + "".join(f"- `{name}`: `{calculate_md5(dst / name)}`\n" for name in files)
    )
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nlbench.data.make_sample", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--out", type=Path, default=SAMPLE_ROOT, help="folder to write cifar-10-batches-py/ into")
    parser.add_argument("--train", type=int, default=1000, help="training images (a multiple of 10)")
    parser.add_argument("--test", type=int, default=500, help="test images (a multiple of 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tree = make_sample(args.source, args.out, train=args.train, test=args.test, seed=args.seed)
    print(f"wrote {tree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
