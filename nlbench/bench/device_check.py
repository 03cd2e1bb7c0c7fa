"""The device check: one script that says how fast nlbench trains on a (lent) GPU, in under 8 minutes.

    make device-check                 # = nlbench bench device-check --out device-check   (one GPU)
    make device-check SMOKE=1         # the same script on the CPU at tiny sizes, in well under a minute

Downloads nothing (it generates CIFAR-10-size data in the official format, nlbench.data.synthetic), installs
nothing, and writes ``OUT/device_check.json`` and ``OUT/device_check.md``. It measures, in this order (each phase
is skipped, and says so, once the time budget is spent; an error in one phase is recorded and the next runs):

1. train_step: training-step images/s of PreResNet-20 + NL (scale vs softmax): first one bf16 + torch.compile
   "reduce-overhead" row (experiments/gpu.yaml's mode choice rests on it, so the budget never skips it), then fp32,
   bf16 and bf16 + compile "default" (channels-last; nlbench.bench.train's plain loop).
2. block: the NL block benchmark (softmax fused and unfused, scale in both orders), 16x16 to 112x112, fp32 and
   bf16 (nlbench.bench.block).
3. epoch: the time of CIFAR-10-size epochs (50,000 training + 10,000 validation images) through ImageClassifier and
   a Lightning Trainer with the experiments/gpu.yaml settings (GPU-resident cache); the last epoch is reported.
   Host syncs are counted with CUDA's sync-debug mode in the first, untimed epoch only.
4. precision: the same seeded run of the real model for 2 epochs in fp32 and in bf16-mixed, validation top-1 and
   loss side by side.
5. packed: aggregate training images/s of k = 1, 2, 4, 8 concurrent processes on the one GPU (each with what a
   sweep's ``runs_per_device: k`` gives: memory cap and cores / k threads, nlbench.device_share; the device passed
   to the children exactly as given, ``cuda``), all training for the same fixed time after a common start signal
   and after a warm-up past the first epoch's last, shorter batch; then k = 4, 8 again under a private MPS daemon
   (``nlbench sweep --mps``) where ``nvidia-cuda-mps-control`` exists. The speed-up is against k = 1.
6. grid: the projected wall time of the paper's CIFAR-10 grid (90 runs x 300 epochs) on this one GPU: epochs x
   the epoch time / the best packing speed-up, plus each run's start-up (process, data, compilation) divided by k.

The markdown starts with one table: the device, the versions, and each phase's figure or why it has none.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import ActionYesNo, ArgumentParser

from nlbench.bench.block import BLOCK_HEADER, block_records, block_row
from nlbench.bench.timing import synchronize
from nlbench.bench.train import SGD, _model, plain_loop
from nlbench.classifier import ImageClassifier
from nlbench.data import CIFAR10DataModule
from nlbench.data.synthetic import write_cifar10
from nlbench.device_share import apply_memory_share, share_env
from nlbench.io import atomic_write_json, atomic_write_text

GRID_RUNS, GRID_EPOCHS = 90, 300  # experiments/sweeps/cifar10.yaml


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real check and the smoke run."""

    train_images: int
    test_images: int
    block_sizes: tuple[int, ...]
    block_batch: int
    block_dtypes: tuple[str, ...]
    block_reps: int
    step_batch: int
    steps: int
    step_warmup: int
    compile_modes: tuple[str, ...]
    epochs: int
    packed_k: tuple[int, ...]
    mps_k: tuple[int, ...]  # packed runs measured again under MPS (CUDA, with nvidia-cuda-mps-control only)
    precision_epochs: int  # of the bf16-vs-fp32 comparison (same seed, the real model)
    packed_seconds: float
    packed_warmup: int
    budget_s: float
    reserve_s: float  # kept for the epoch and packed phases while the optional compile modes are measured


FULL = Sizes(train_images=50_000, test_images=10_000, block_sizes=(16, 32, 56, 112), block_batch=16,
             block_dtypes=("float32", "bfloat16"), block_reps=10, step_batch=128, steps=50, step_warmup=10,
             compile_modes=("default", "reduce-overhead"), epochs=3, packed_k=(1, 2, 4, 8), mps_k=(4, 8),
             precision_epochs=2, packed_seconds=8.0, packed_warmup=30, budget_s=420.0, reserve_s=240.0)  # fmt: skip
# Compilation takes a minute on a CPU, so the smoke run leaves it out (and says so in the table).
SMOKE = Sizes(train_images=256, test_images=64, block_sizes=(16,), block_batch=2, block_dtypes=("float32",),
              block_reps=1, step_batch=32, steps=2, step_warmup=1, compile_modes=(), epochs=1, packed_k=(1, 2),
              mps_k=(2,), precision_epochs=1, packed_seconds=1.0, packed_warmup=1, budget_s=300.0,
              reserve_s=0.0)  # fmt: skip
# (The smoke budget only guards against a hung phase: on a loaded CPU the phases may take longer than usual.)


class Budget:
    """Wall-clock budget of the whole check: phases ask before starting whether their estimate still fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.monotonic()

    @property
    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def allows(self, estimate_s: float, *, reserve_s: float = 0.0) -> bool:
        """Whether a step of `estimate_s` fits while keeping `reserve_s` for the phases after it."""
        return self.left - reserve_s >= estimate_s


def _phase(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Run one phase; its error (one line plus the traceback's last frame) is recorded instead of stopping."""
    start = time.monotonic()
    try:
        results[name] = fn()
    except Exception as err:  # noqa: BLE001 - a failed phase must not cost the others
        results[name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0],
                         "where": traceback.format_exc().strip().splitlines()[-3:]}  # fmt: skip
    results.setdefault("phase_seconds", {})[name] = round(time.monotonic() - start, 1)
    print(f"[device-check] {name}: {results['phase_seconds'][name]} s", file=sys.stderr, flush=True)


# ---- 1. block ---------------------------------------------------------------------------------------------------
def block_phase(device: torch.device, sizes: Sizes) -> list[dict[str, Any]]:
    records = []
    for dtype in sizes.block_dtypes:
        records += block_records(device, list(sizes.block_sizes), batch=sizes.block_batch, dtype=dtype,
                                 reps=sizes.block_reps, warmup=2, max_gflop=4000.0,
                                 max_gib=40.0 if device.type == "cuda" else 8.0)  # fmt: skip
    return records


# ---- 2. training step -----------------------------------------------------------------------------------------
def train_step_phase(device: torch.device, sizes: Sizes, data_dir: Path, budget: Budget) -> list[dict[str, Any]]:
    dm = _datamodule(data_dir, sizes.step_batch, device_cache=False)
    # experiments/gpu.yaml's choice of compile mode rests on the reduce-overhead rows: the first of them is measured
    # before anything else, so a spent budget can never skip them all.
    overhead = "reduce-overhead"
    first = [(f"bf16+compile({overhead})", True, overhead)] if overhead in sizes.compile_modes else []
    settings: list[tuple[str, bool, str | None]] = first + [("fp32", False, None), ("bf16", True, None)]
    settings += [(f"bf16+compile({mode})", True, mode) for mode in sizes.compile_modes if mode != overhead]
    records = []
    for label, bf16, mode in settings:
        for norm in ("scale", "softmax"):
            record: dict[str, Any] = {"setting": label, "normalization": norm, "images_per_s": None}
            if mode and records and not budget.allows(60, reserve_s=sizes.reserve_s):
                record["skipped"] = "time budget"
            else:
                try:
                    torch._dynamo.reset()  # each compiled row starts from a clean slate (same cost for every row)
                    record["images_per_s"] = plain_loop(_model(norm), dm, device, sizes.steps, sizes.step_warmup,
                                                        bf16, channels_last=True, compile=mode)  # fmt: skip
                except Exception as err:  # noqa: BLE001 - e.g. a compile mode that fails on this machine
                    record["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
            records.append(record)
    return records


def _datamodule(data_dir: Path, batch_size: int, *, device_cache: bool) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(data_dir), verify=False, batch_size=batch_size, device_cache=device_cache)
    dm.prepare_data()
    dm.setup("fit")
    return dm


# ---- 3. one epoch -----------------------------------------------------------------------------------------------
class EpochClock(L.Callback):
    """Wall time of each epoch's training part and of its validation (synchronised: queued GPU work counted)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._start = self._val_start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        self._start = self._val_start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        self._val_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        end = time.perf_counter()
        self.epochs.append({"train_s": self._val_start - self._start, "val_s": end - self._val_start,
                            "epoch_s": end - self._start})  # fmt: skip


class SyncDebugFirstEpoch(L.Callback):
    """``torch.cuda.set_sync_debug_mode("warn")`` during the first (untimed, compiling) epoch only: every implicit
    host sync then warns, and the warning machinery (a Python stack per sync) stays out of the timed epochs."""

    def __init__(self, set_mode: Callable[[int | str], None] | None) -> None:
        self.set_mode, self.epochs, self._on = set_mode, [], False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.set_mode is not None and trainer.current_epoch == 0:
            self.set_mode("warn")
            self._on = True
            self.epochs.append(0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.off()  # before EpochClock starts the next (timed) epoch: this callback is listed first

    def off(self) -> None:
        if self._on and self.set_mode is not None:
            self.set_mode(0)
        self._on = False


def fast_path(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """The experiments/gpu.yaml settings on a GPU; fp32 eager on the CPU (bf16 and compile are GPU features)."""
    gpu = device.type == "cuda"
    return {"precision": "bf16-mixed" if gpu else "32-true", "channels_last": gpu,
            "compile": "default" if gpu and sizes.compile_modes else False, "device_cache": gpu}  # fmt: skip


def epoch_phase(device: torch.device, sizes: Sizes, data_dir: Path) -> dict[str, Any]:
    settings = fast_path(device, sizes)
    dm = CIFAR10DataModule(data_dir=str(data_dir), verify=False, device_cache=settings["device_cache"])
    model = ImageClassifier(_model("scale"), optimizer=SGD, channels_last=settings["channels_last"],
                            compile=settings["compile"])  # fmt: skip
    clock = EpochClock()
    sync_debug = SyncDebugFirstEpoch(torch.cuda.set_sync_debug_mode if device.type == "cuda" else None)
    trainer = L.Trainer(accelerator=device.type, devices=1, max_epochs=sizes.epochs, num_sanity_val_steps=0,
                        precision=settings["precision"], benchmark=device.type == "cuda", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[sync_debug, clock], log_every_n_steps=50)  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.fit(model, datamodule=dm)
        finally:
            sync_debug.off()
    syncs = sum("synchroniz" in str(w.message) for w in caught) if device.type == "cuda" else None
    last = clock.epochs[-1]
    return {"settings": settings, "train_images": sizes.train_images, "val_images": sizes.test_images,
            "host_syncs": syncs, "sync_debug_epochs": sync_debug.epochs, "steps": trainer.global_step,
            "fit_s": time.perf_counter() - start,
            "epochs": clock.epochs, **last,
            "train_images_per_s": sizes.train_images / last["train_s"]}  # fmt: skip


# ---- 3b. bf16 vs fp32 -----------------------------------------------------------------------------------------
def precision_phase(device: torch.device, sizes: Sizes, data_dir: Path, budget: Budget) -> list[dict[str, Any]]:
    """The same seeded run of the real model (PreResNet-20 + scale NL, SGD) for `precision_epochs` epochs in fp32
    and in bf16-mixed (experiments/gpu.yaml's precision): validation top-1 and loss side by side, so the overlay's
    precision is checked before a grid runs in it. Eager, so compilation is not what is compared."""
    records = []
    for precision in ("32-true", "bf16-mixed"):
        if records and not budget.allows(records[0]["fit_s"], reserve_s=sizes.reserve_s / 2):
            records.append({"precision": precision, "skipped": "time budget"})
            continue
        L.seed_everything(0, workers=True, verbose=False)
        dm = CIFAR10DataModule(data_dir=str(data_dir), verify=False, device_cache=device.type == "cuda")
        model = ImageClassifier(_model("scale"), optimizer=SGD)
        trainer = L.Trainer(accelerator=device.type, devices=1, max_epochs=sizes.precision_epochs,
                            num_sanity_val_steps=0, precision=precision, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, deterministic=False)  # fmt: skip
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        metrics = trainer.callback_metrics
        records.append({"precision": precision, "epochs": sizes.precision_epochs,
                        "val_acc1": float(metrics["val/acc1"]), "val_loss": float(metrics["val/loss"]),
                        "fit_s": time.perf_counter() - start})  # fmt: skip
    return records


# ---- 4. packed runs ---------------------------------------------------------------------------------------------
class _Window(L.Callback):
    """Child side of the packed measurement: warm up, report ready, wait for the common start, train for a while."""

    def __init__(self, warmup: int, seconds: float, ready: Path, go: Path) -> None:
        self.warmup, self.seconds, self.ready, self.go = warmup, seconds, ready, go
        self.images, self.start, self.end = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup and not self.start:
            synchronize(pl_module.device)
            self.ready.touch()
            deadline = time.monotonic() + 900
            while not self.go.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("no start signal from the device check")
                time.sleep(0.005)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any,
                           idx: int) -> None:
        if not self.start or self.end:
            return
        self.images += len(batch[1])
        if time.perf_counter() - self.start >= self.seconds:
            synchronize(pl_module.device)
            self.end = time.perf_counter()
            trainer.should_stop = True


def child_device(text: str) -> torch.device:
    """The packed child's device, given exactly as the parent was (``cuda``, no index, on a GPU), with the memory
    cap `runs_per_device: k` gives each run (from the environment) applied to it."""
    device = torch.device(text)
    apply_memory_share(device)
    return device


def packed_warmup(sizes: Sizes) -> int:
    """Steps before the timed window: past the first epoch's last, shorter batch (its recompile and the epoch
    restart land in the warm-up of every k, not in the window of k = 1 only)."""
    steps_per_epoch = -(-sizes.train_images // 128)  # CIFAR10DataModule's default batch
    return max(sizes.packed_warmup, steps_per_epoch + 1)


def child_main(job: dict[str, Any]) -> int:
    """One packed process (``--child JSON``): the sweep's fit settings, timed in a window shared with the others."""
    device = child_device(job["device"])
    sizes = FULL if not job["smoke"] else SMOKE
    settings = fast_path(device, sizes)
    dm = CIFAR10DataModule(data_dir=job["data_dir"], verify=False, device_cache=settings["device_cache"])
    model = ImageClassifier(_model("scale", seed=job["index"]), optimizer=SGD,
                            channels_last=settings["channels_last"], compile=settings["compile"])  # fmt: skip
    window = _Window(packed_warmup(sizes), sizes.packed_seconds, Path(job["ready"]), Path(job["go"]))
    trainer = L.Trainer(accelerator=device.type, devices=1, max_epochs=10**6, limit_val_batches=0,
                        num_sanity_val_steps=0, precision=settings["precision"], benchmark=device.type == "cuda",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[window], log_every_n_steps=50)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    atomic_write_json(job["out"], {"images": window.images, "seconds": window.end - window.start})
    return 0


def packed_phase(device: torch.device, sizes: Sizes, data_dir: Path, budget: Budget, smoke: bool) -> list[dict]:
    """k = 1, 2, ... time-sliced; then, where the MPS control daemon exists (CUDA only), each k > 1 again under a
    private MPS daemon (``nlbench sweep --mps``)."""
    mps_why = _mps_unavailable(device)
    plan = [(k, False) for k in sizes.packed_k] + [(k, True) for k in sizes.mps_k]
    records: list[dict[str, Any]] = []
    for k, mps in plan:
        if mps and mps_why:
            records.append({"k": k, "mps": True, "skipped": mps_why})
            continue
        estimate = 30.0 + sizes.packed_seconds + packed_warmup(sizes) * 0.02 * k if not smoke else 8.0
        if not budget.allows(estimate):
            records.append({"k": k, "mps": mps, "skipped": "time budget"})
            continue
        try:
            records.append({**_packed_run(device, k, data_dir, smoke, mps=mps), "mps": mps})
        except Exception as err:  # noqa: BLE001 - one k failing (e.g. out of memory) must not lose the others
            records.append({"k": k, "mps": mps, "error": f"{type(err).__name__}: {err}".splitlines()[0]})
        print(f"[device-check] packed k={k}{' mps' if mps else ''}: {records[-1]}", file=sys.stderr, flush=True)
    base = next((r["images_per_s"] for r in records if r["k"] == 1 and not r["mps"] and r.get("images_per_s")), None)
    for record in records:
        rate = record.get("images_per_s")
        record["speedup"] = rate / base if rate and base else None
    return records


def _mps_unavailable(device: torch.device) -> str | None:
    """Why packed runs cannot be measured under MPS here (None: they can)."""
    from nlbench.sweep import mps

    if device.type != "cuda":
        return "MPS is a CUDA feature"
    if shutil.which(mps.CONTROL) is None:
        return f"{mps.CONTROL} not on PATH"
    return None


def _packed_run(device: torch.device, k: int, data_dir: Path, smoke: bool, *, mps: bool = False) -> dict[str, Any]:
    from nlbench.sweep import mps as mps_daemon

    with tempfile.TemporaryDirectory(prefix=f"nlbench-packed-{k}-") as tmp:
        work = Path(tmp)
        go = work / "go"
        # The env a sweep's `runs_per_device: k` gives: memory cap, and cores / k threads and compile workers.
        env = {**os.environ, **share_env(k, gpu=device.type == "cuda", concurrent=k), "PYTHONUNBUFFERED": "1"}
        if mps:
            why = mps_daemon.start(work / "mps")
            if why:
                return {"k": k, "error": f"MPS: {why}"}
            env.update(mps_daemon.client_env(work / "mps"))
        try:
            return _packed_processes(k, device, data_dir, smoke, work, go, env)
        finally:
            if mps:
                mps_daemon.stop(work / "mps")


def _packed_processes(k: int, device: torch.device, data_dir: Path, smoke: bool, work: Path, go: Path,
                      env: dict[str, str]) -> dict[str, Any]:
    procs = []
    spawned = time.perf_counter()
    for i in range(k):
        job = {"device": str(device), "data_dir": str(data_dir), "smoke": smoke, "index": i,
               "ready": str(work / f"ready{i}"), "go": str(go), "out": str(work / f"out{i}.json")}  # fmt: skip
        log = open(work / f"log{i}.txt", "wb")
        procs.append((subprocess.Popen([sys.executable, "-m", "nlbench.bench.device_check", "--child",
                                        json.dumps(job)], stdout=log, stderr=subprocess.STDOUT, env=env),
                      log))  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not all((work / f"ready{i}").exists() for i in range(k)):
            dead = [i for i, (p, _) in enumerate(procs) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"process {dead[0]} exited early" if dead else "timed out waiting for the processes"
                tail = (work / f"log{dead[0] if dead else 0}.txt").read_text(errors="replace").strip()
                return {"k": k, "error": f"{why}: {tail.splitlines()[-1] if tail else ''}"}
            time.sleep(0.05)
        startup = time.perf_counter() - spawned  # process start, imports, data, compilation, warm-up steps
        go.touch()
        for proc, _ in procs:
            proc.wait(timeout=600)
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    failed = [i for i in range(k) if not (work / f"out{i}.json").is_file()]
    if failed:
        tail = (work / f"log{failed[0]}.txt").read_text(errors="replace").strip().splitlines()
        return {"k": k, "error": f"process {failed[0]} failed: {tail[-1] if tail else 'no output'}"}
    outs = [json.loads((work / f"out{i}.json").read_text()) for i in range(k)]
    rates = [o["images"] / o["seconds"] for o in outs]
    return {"k": k, "images_per_s": sum(rates), "per_run_images_per_s": sum(rates) / k,
            "startup_s": startup}  # fmt: skip


# ---- 5. projection ----------------------------------------------------------------------------------------------
def grid_projection(epoch: dict[str, Any], packed: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time of GRID_RUNS x GRID_EPOCHS CIFAR-10 epochs (50k training + 10k validation images, at the measured
    per-image times, so a smoke run's small epoch scales up), sped up by the best measured packing."""
    if not isinstance(epoch, dict) or "epoch_s" not in epoch:
        return {"error": "no epoch time measured"}
    epoch_s = (FULL.train_images * epoch["train_s"] / epoch["train_images"]
               + FULL.test_images * epoch["val_s"] / epoch["val_images"])  # fmt: skip
    measured = [r for r in packed if isinstance(r, dict) and r.get("speedup")] if isinstance(packed, list) else []
    best = max(measured, key=lambda r: r["speedup"], default={"k": 1, "speedup": 1.0, "startup_s": None})
    # A run's start-up (imports, data, compilation): packed runs start k at a time, so k overlap.
    startup = best.get("startup_s") or max(0.0, epoch["fit_s"] - sum(e["epoch_s"] for e in epoch["epochs"]))
    train_s = GRID_RUNS * GRID_EPOCHS * epoch_s / best["speedup"]
    total = train_s + GRID_RUNS * startup / best["k"]
    return {"runs": GRID_RUNS, "epochs": GRID_EPOCHS, "epoch_s": epoch_s, "best_k": best["k"],
            "speedup": best["speedup"], "startup_s": startup, "hours": total / 3600,
            "hours_one_run_per_gpu": GRID_RUNS * (GRID_EPOCHS * epoch_s + startup) / 3600}  # fmt: skip


# ---- the report -------------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".0f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "–"


def _why_not(value: Any) -> str | None:
    """A phase's error, or None when it produced records."""
    if isinstance(value, dict) and "error" in value:
        return f"error: {value['error']}"
    return None if value else "not run"


def summary_table(results: dict[str, Any]) -> list[str]:
    """One table with everything a reviewer needs: device, versions, and each phase's figure or why it has none."""
    v = results.get("versions", {})
    rows = [("device", f"{results['device_name']} ({results['device']})"),
            ("versions", ", ".join(f"{k} {val}" for k, val in v.items() if val)),]  # fmt: skip
    steps = results.get("train_step")
    if _why_not(steps) is None:
        for r in steps:
            if r["normalization"] == "scale":
                rows.append((f"train step, {r['setting']}, img/s",
                             _fmt(r["images_per_s"]) if r["images_per_s"] else r.get("skipped") or r.get("error")))
        if not any(r["setting"].startswith("bf16+compile") for r in steps):
            rows.append(("train step, bf16+compile", "skipped (smoke run: compilation takes minutes on a CPU)"))
    else:
        rows.append(("train step", _why_not(steps)))
    block = results.get("block")
    rows.append(("NL block", f"{len(block)} rows (below)" if _why_not(block) is None else _why_not(block)))
    epoch = results.get("epoch", {})
    rows.append(("epoch s (last)", f"{epoch['epoch_s']:.2f}" if "epoch_s" in epoch else _why_not(epoch)))
    rows.append(("host syncs, first epoch", _fmt(epoch.get("host_syncs")) if "epoch_s" in epoch and
                 epoch.get("host_syncs") is not None else "not counted (sync-debug mode is CUDA only)"))  # fmt: skip
    precision = results.get("precision")
    if _why_not(precision) is None:
        for r in precision:
            rows.append((f"{r['precision']}: val top-1 / loss", f"{r['val_acc1']:.4f} / {r['val_loss']:.4f}"
                         if "val_acc1" in r else r.get("skipped") or r.get("error")))  # fmt: skip
    else:
        rows.append(("bf16 vs fp32", _why_not(precision)))
    packed = results.get("packed")
    if _why_not(packed) is None:
        for r in packed:
            label = f"packed k={r['k']}{' + MPS' if r.get('mps') else ''}, speed-up"
            rows.append((label, f"{r['speedup']:.2f}x" if r.get("speedup") else r.get("skipped") or r.get("error")))
    else:
        rows.append(("packed", _why_not(packed)))
    grid = results.get("grid", {})
    rows.append(("CIFAR-10 grid, hours", f"{grid['hours']:.1f}" if "hours" in grid else grid.get("error")))
    return ["| check | figure, or why there is none |", "|---|---|"] + [f"| {k} | {val} |" for k, val in rows]


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# nlbench device check ({'smoke run, ' if results['smoke'] else ''}{results['date']})", "",
             f"Machine: {results['machine']}; device: {results['device_name']}; torch {results['torch']}; "
             f"{results['cpus']} CPUs.", "", *summary_table(results), ""]  # fmt: skip
    block = results.get("block")
    lines += ["## NL block, forward + backward", ""]
    if isinstance(block, list):
        for dtype in dict.fromkeys(r["dtype"] for r in block):
            lines += [f"{dtype}, batch {block[0]['batch']}:", "", BLOCK_HEADER]
            lines += [block_row(r) for r in block if r["dtype"] == dtype] + [""]
    else:
        lines += [f"error: {block}", ""]
    steps = results.get("train_step")
    lines += ["## Training step, PreResNet-20 + NL (stage 2), channels-last, plain loop", "",
              "| setting | softmax img/s | scale img/s |", "|---|---:|---:|"]  # fmt: skip
    if isinstance(steps, list):
        for setting in dict.fromkeys(r["setting"] for r in steps):
            cells = []
            for norm in ("softmax", "scale"):
                r = next(r for r in steps if r["setting"] == setting and r["normalization"] == norm)
                cells.append(_fmt(r["images_per_s"]) if r["images_per_s"] else r.get("skipped") or r.get("error"))
            lines.append(f"| {setting} | {cells[0]} | {cells[1]} |")
        if not any(r["setting"].startswith("bf16+compile") for r in steps):
            lines.append("| bf16+compile | skipped (smoke run) | skipped (smoke run) |")
    else:
        lines.append(f"| error | {steps} | |")
    epoch = results.get("epoch", {})
    lines += ["", "## Epoch (through ImageClassifier + Lightning, scale)", ""]
    if "epoch_s" in epoch:
        lines += [f"Settings {epoch['settings']}; {epoch['train_images']} training + {epoch['val_images']} "
                  f"validation images; last of {len(epoch['epochs'])} epochs: **{epoch['epoch_s']:.2f} s** "
                  f"({epoch['train_s']:.2f} s training at {epoch['train_images_per_s']:.0f} img/s, "
                  f"{epoch['val_s']:.2f} s validation); whole fit {epoch['fit_s']:.1f} s. Implicit host syncs "
                  f"(torch.cuda.set_sync_debug_mode, on in the first, untimed epoch only), validation and logging "
                  f"steps included: {_fmt(epoch['host_syncs'])} in {epoch['steps'] // len(epoch['epochs'])} "
                  "training steps."]  # fmt: skip
    else:
        lines.append(f"error: {epoch}")
    precision = results.get("precision")
    lines += ["", "## bf16-mixed vs fp32 (same seed, PreResNet-20 + scale NL, eager)", "",
              "| precision | epochs | val top-1 | val loss | fit s |", "|---|---:|---:|---:|---:|"]
    if isinstance(precision, list):
        for r in precision:
            if "val_acc1" in r:
                lines.append(f"| {r['precision']} | {r['epochs']} | {r['val_acc1']:.4f} | {r['val_loss']:.4f} | "
                             f"{r['fit_s']:.1f} |")  # fmt: skip
            else:
                lines.append(f"| {r['precision']} | {r.get('skipped') or r.get('error')} | | | |")
    else:
        lines.append(f"| error | {precision} | | | |")
    packed = results.get("packed")
    lines += ["", "## Packed runs (k processes on one device, same fixed window, after a warm-up past the first "
              "epoch)", "", "| k | MPS | total img/s | per run img/s | speed-up vs k=1 | start-up s |",
              "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    if isinstance(packed, list):
        for r in packed:
            mps = "yes" if r.get("mps") else "no"
            if r.get("images_per_s"):
                lines.append(f"| {r['k']} | {mps} | {r['images_per_s']:.0f} | {r['per_run_images_per_s']:.0f} | "
                             f"{_fmt(r['speedup'], '.2f')}x | {_fmt(r['startup_s'], '.1f')} |")  # fmt: skip
            else:
                lines.append(f"| {r['k']} | {mps} | {r.get('skipped') or r.get('error')} | | | |")
    else:
        lines.append(f"| error | {packed} | | | |")
    grid = results.get("grid", {})
    lines += ["", f"## Projected CIFAR-10 grid ({GRID_RUNS} runs x {GRID_EPOCHS} epochs) on this device", ""]
    if "hours" in grid:
        lines.append(f"**{grid['hours']:.1f} h** with k = {grid['best_k']} runs per device "
                     f"({grid['speedup']:.2f}x the throughput of one; 50k+10k-image epoch {grid['epoch_s']:.2f} s, start-up "
                     f"{grid['startup_s']:.0f} s per run); one run at a time: {grid['hours_one_run_per_gpu']:.1f} h.")
    else:
        lines.append(f"error: {grid}")
    lines += ["", f"Phase times (s): {results.get('phase_seconds')}; total {results['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def versions() -> dict[str, str | None]:
    """What a reviewer needs to reproduce the figures: library and CUDA stack versions."""
    import torchvision

    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": L.__version__, "cuda": torch.version.cuda, "cudnn": str(torch.backends.cudnn.version()),
            "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None}  # fmt: skip


def run_check(out: Path, *, smoke: bool, device: torch.device) -> dict[str, Any]:
    sizes = SMOKE if smoke else FULL
    budget = Budget(sizes.budget_s)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    results: dict[str, Any] = {
        "smoke": smoke, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()})", "device": str(device),
        "device_name": name, "torch": torch.__version__, "cpus": os.cpu_count(), "versions": versions(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="nlbench-device-check-") as tmp:
        data_dir = write_cifar10(Path(tmp) / "cifar10", train=sizes.train_images, test=sizes.test_images)
        # The training-step rows first: the first reduce-overhead row must not wait for the block benchmark.
        _phase(results, "train_step", lambda: train_step_phase(device, sizes, data_dir, budget))
        _phase(results, "block", lambda: block_phase(device, sizes))
        _phase(results, "epoch", lambda: epoch_phase(device, sizes, data_dir))
        _phase(results, "precision", lambda: precision_phase(device, sizes, data_dir, budget))
        _phase(results, "packed", lambda: packed_phase(device, sizes, data_dir, budget, smoke))
    results["grid"] = grid_projection(results.get("epoch"), results.get("packed"))
    results["total_s"] = time.monotonic() - budget.start
    atomic_write_json(out / "device_check.json", results)
    atomic_write_text(out / "device_check.md", markdown(results))
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(json.loads(argv[1]))
    parser = ArgumentParser(prog="nlbench bench device-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=str, default="device-check", help="folder for device_check.json/.md")
    parser.add_argument("--smoke", action=ActionYesNo, default=False, help="tiny sizes on the CPU (under a minute)")
    parser.add_argument("--device", type=str | None, default=None, help="default: cuda, or cpu for --smoke")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("nlbench bench device-check: error: no CUDA device visible; use --smoke for the CPU smoke run",
              file=sys.stderr)
        return 2
    results = run_check(Path(args.out), smoke=args.smoke, device=device)
    print(markdown(results))
    print(f"wrote {Path(args.out) / 'device_check.json'} and {Path(args.out) / 'device_check.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
