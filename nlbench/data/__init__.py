"""Datasets for nlbench: acquisition and uint8 caches (``sources``) and the LightningDataModules built on them."""

from nlbench.data.datamodules import (
    CIFAR10DataModule,
    CIFAR10SampleDataModule,
    CIFAR100DataModule,
    CIFARDataModule,
    ImageDataModule,
    TinyImageNetDataModule,
)
from nlbench.data.sources import DATASETS, SAMPLE_ROOT, ImageArrays, load, prepare

__all__ = [
    "DATASETS",
    "SAMPLE_ROOT",
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CIFAR10SampleDataModule",
    "CIFARDataModule",
    "ImageArrays",
    "ImageDataModule",
    "TinyImageNetDataModule",
    "load",
    "prepare",
]
