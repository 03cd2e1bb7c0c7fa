"""How long a sweep's runs would take on this machine's CPU, said before they start.

A grid meant for GPUs (the paper's CIFAR-10 grid: 90 runs of 300 epochs) started on a machine without one would
train for weeks without a word. So when the runs go to CPU slots the sweep estimates their time: from this sweep's
finished runs (their measured seconds per epoch), else from a recorded CPU training rate
(:data:`CPU_IMAGES_PER_S`, BENCHMARKS.md "CPU training rate") and each run's images per epoch; above
:data:`CONFIRM_ABOVE_S` it asks for ``--yes``. The recorded rate is PreActResNet-20's on 2 cores, scaled by the
depth of a PreActResNet and by this machine's cores: a rough guide, optimistic for wider networks and larger images.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlbench import schema
from nlbench.sweep.spec import BASE_RUN, SweepRun
from nlbench.sweep.table import RunState

# Training images per second of `nlbench fit --config experiments/demo.yaml` (PreActResNet-20, one NL block, batch
# 128) on a 2-core x86-64 CPU: result.json's train/images_per_s, 2026-12-06 (BENCHMARKS.md).
CPU_IMAGES_PER_S = 400.0
RECORDED_CORES = 2
RECORDED_DEPTH = 20
CONFIRM_ABOVE_S = 3600.0  # a grid on the CPU that would take longer asks for --yes


@dataclass(frozen=True)
class Estimate:
    """The runs' total time on their slots, in seconds, its epochs, and how it was estimated."""

    seconds: float
    epochs: int
    how: str


def estimate(
    planned: Sequence[tuple[SweepRun, RunState]], parsed: Mapping[str, Any], slots: int, max_runs: int | None = None
) -> Estimate | None:
    """The time of the runs a sweep would start (``planned``: each run with its state; the first ``max_runs`` of
    those not done) on ``slots`` CPU slots; None when no run's epochs are known."""
    todo = [(run, state) for run, state in planned if state.action != "skip"][:max_runs]
    base = {schema.canonical_key(k): v for k, v in schema.flatten(_as_dict(parsed.get(BASE_RUN))).items()}
    runs = [(_settings(run, base), state) for run, state in todo]
    runs = [(settings, state) for settings, state in runs if isinstance(settings.get("trainer.max_epochs"), int)]
    if not runs:
        return None
    epochs = [max(0, settings["trainer.max_epochs"] - _done(state)) for settings, state in runs]
    timed = [s.record.metrics for _, s in planned if s.status == "finished" and s.record and s.record.metrics["epochs"]]
    seconds, measured = sum(float(m.get("time_s") or 0.0) for m in timed), sum(int(m["epochs"]) for m in timed)
    if seconds > 0 and measured:
        per_epoch = seconds / measured
        how = f"{per_epoch:.1f} s/epoch measured over {len(timed)} finished run(s)"
        return Estimate(sum(epochs) * per_epoch / max(1, slots), sum(epochs), how)
    total = 0.0
    for (settings, _), run_epochs in zip(runs, epochs):
        images = _epoch_images(settings)
        if images is None:
            return None
        total += run_epochs * images / _rate(settings)
    cores = os.cpu_count() or RECORDED_CORES
    how = (
        f"{CPU_IMAGES_PER_S:.0f} training images/s recorded for PreActResNet-{RECORDED_DEPTH} on {RECORDED_CORES} "
        f"CPU cores, scaled to its depth and to {cores} cores; evaluation not counted"
    )
    return Estimate(total / max(1, slots), sum(epochs), how)


def _as_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return config.as_dict() if hasattr(config, "as_dict") else dict(config)


def _settings(run: SweepRun, base: Mapping[str, Any]) -> dict[str, Any]:
    """The base config's canonical flat keys with the run's own values."""
    return {**base, **{schema.canonical_key(key): value for key, value in run.params.items()}}


def _done(state: RunState) -> int:
    """Epochs a resumed run has behind it."""
    epochs = state.record.metrics.get("epochs") if state.resumable and state.record else None
    return epochs if isinstance(epochs, int) else 0


def _epoch_images(settings: Mapping[str, Any]) -> int | None:
    """Training images per epoch: the dataset's training split (less a held-out val_split, or a subset), as far as
    trainer.limit_train_batches lets it (an int counts batches, a float is a fraction)."""
    from nlbench.data.sources import SPECS

    module, _, name = str(settings.get("data.class_path") or "").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)  # the sweep's own DataModule, imported by its check
    except (ImportError, AttributeError, ValueError):
        return None
    dataset = getattr(cls, "name", None)
    images = getattr(cls, "train_images", None) or (SPECS[dataset].train_images if dataset in SPECS else 0)
    if not images:
        return None
    split = settings.get("data.val_split") or 0
    images -= round(split * images) if isinstance(split, (int, float)) and split < 1 else int(split)
    subset = settings.get("data.subset")
    images = min(images, subset) if isinstance(subset, int) else images
    limit, batch = settings.get("trainer.limit_train_batches"), settings.get("data.batch_size")
    if isinstance(limit, float):
        images = int(images * limit)
    elif isinstance(limit, int) and isinstance(batch, int):
        images = min(images, limit * batch)
    return max(0, images)


def _rate(settings: Mapping[str, Any]) -> float:
    """Training images/s expected here: the recorded rate, scaled by a PreActResNet's depth and the cores."""
    rate = CPU_IMAGES_PER_S * (os.cpu_count() or RECORDED_CORES) / RECORDED_CORES
    depth = settings.get("model.backbone.depth")
    if str(settings.get("model.backbone.class_path", "")).endswith("PreActResNet") and isinstance(depth, int) and depth:
        rate *= RECORDED_DEPTH / depth
    return rate
