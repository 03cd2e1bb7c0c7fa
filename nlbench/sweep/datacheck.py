"""The sweep's data check: is every dataset its runs read on disk, checked once before any run starts.

Without it a sweep whose data is missing (no network, no archive) fails every run one by one, each after its own
start-up. `check_data` looks at the parsed configs (base and probes, see `spec.validate_runs`) for the DataModule
and its ``data_dir``/``download``; `fetch_data` downloads and prepares a missing dataset once, in the sweep, when
the runs are allowed to download it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataNeed:
    """A dataset the runs read: where, whether they may download it, and whether it is on disk now."""

    dataset: str
    root: Path
    download: bool
    verify: bool
    present: bool

    @property
    def describe(self) -> str:
        from nlbench.data.sources import SPECS

        spec = SPECS[self.dataset]
        if self.present:
            return f"data: {self.dataset} found in {self.root}"
        where = f"put {spec.filename} ({spec.url}) into {self.root}"
        if self.download:
            return (
                f"data: {self.dataset} missing from {self.root}; the sweep downloads it once first (offline: {where})"
            )
        return f"data: {self.dataset} missing from {self.root}; {where}, or set data.download: true"


def data_needs(configs: Iterable[Any]) -> list[DataNeed]:
    """The distinct datasets read by parsed fit configs (jsonargparse Namespaces); packaged samples are left out."""
    from nlbench.data.sources import SAMPLE_ROOT, SPECS

    needs: dict[tuple[str, Path], DataNeed] = {}
    for config in configs:
        data = config.get("data")
        if data is None or not data.get("class_path"):
            continue
        module, _, name = str(data.class_path).rpartition(".")
        dataset = getattr(getattr(importlib.import_module(module), name, None), "name", None)
        args = data.get("init_args") or {}
        if dataset not in SPECS or args.get("data_dir") is None:  # e.g. the embedded sample: always there
            continue
        root = Path(args.get("data_dir")).expanduser().absolute()
        if root == SAMPLE_ROOT or (dataset, root) in needs:
            continue
        spec = SPECS[dataset]
        present = (root / spec.folder).is_dir() or (root / spec.filename).is_file()
        needs[(dataset, root)] = DataNeed(
            dataset, root, bool(args.get("download")), bool(args.get("verify", True)), present
        )
    return list(needs.values())


def check_data(needs: Iterable[DataNeed]) -> None:
    """Raise FileNotFoundError (one line, saying where to put the archive) for data missing without download."""
    for need in needs:
        if not need.present and not need.download:
            raise FileNotFoundError(need.describe.removeprefix("data: "))


def fetch_data(needs: Iterable[DataNeed]) -> None:
    """Download, verify and cache each missing dataset once (the runs then find it); errors name where to put it."""
    from nlbench.data.errors import ArchiveError, DownloadError, IntegrityError
    from nlbench.data.sources import SPECS, prepare

    for need in needs:
        if need.present:
            continue
        spec = SPECS[need.dataset]
        print(f"nlbench sweep: downloading {need.dataset} into {need.root} once for all runs ...", flush=True)
        try:
            prepare(need.dataset, need.root, download=True, verify=need.verify)
        except (DownloadError, IntegrityError, ArchiveError) as err:
            raise FileNotFoundError(
                f"{need.dataset}: {' '.join(str(err).split())}; without network, put {spec.filename} "
                f"({spec.url}) into {need.root}"
            ) from err
