"""The device check's phases, each run in a process of its own by :mod:`nlbench.bench.device_check`.

``python -m nlbench.bench.device_phases PHASE --out OUT --deadline T [--smoke] [--device D]`` runs one phase and
writes its rows to ``OUT/.work/phase-PHASE.json`` after every row (atomically), so a phase killed at its deadline
still returns every row it finished. A row that would not finish before the deadline is recorded as skipped, with
the reason. ``--child JSON`` is one process of the packed phase. Everything is written under OUT.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from nlbench.bench.device_check import WORK, phase_file
from nlbench.bench.timing import synchronize
from nlbench.bench.train import SGD, _model, _StepTimer
from nlbench.classifier import ImageClassifier
from nlbench.data import SAMPLE_ROOT, CIFAR10DataModule
from nlbench.data.synthetic import write_cifar10
from nlbench.device_share import apply_memory_share, share_env
from nlbench.io import atomic_write_json

# Seconds from the phase process's start to its first line of work (interpreter, torch, Lightning): part of every
# run's start-up (set by main from --spawned).
PROCESS_START_S: float | None = None
REDUCTIONS = (1, 2, 4, 8, 16)  # the paper's; PreResNet-20's NL block (stage 2): C = 32 at 16 x 16, one head
NL_CHANNELS, NL_SIDE = 32, 16


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real check and the smoke run."""

    train_images: int
    test_images: int
    paper_epochs: int  # the paper's set-up: the first epoch warms up, the last is timed
    fast_epochs: int  # the fast path: compiling epoch, sync-count epoch, timed epoch
    compile: bool  # torch.compile where experiments/gpu.yaml does (off in the CPU smoke run: minutes on a CPU)
    packed_k: tuple[int, ...]
    mps_k: tuple[int, ...]  # packed runs measured again under MPS (CUDA, with nvidia-cuda-mps-control only)
    packed_seconds: float
    packed_warmup: int
    precision_epochs: int
    precision_batch: int
    precision_subset: int | None  # training images of the sample used (None: all 1,000)
    seeds: tuple[int, ...]
    mode_steps: int  # timed training steps per compile mode / determinism setting
    mode_warmup: int
    block_sizes: tuple[int, ...]
    block_batch: int
    block_dtypes: tuple[str, ...]
    block_reps: int
    sdpa_batch: int


FULL = Sizes(
    train_images=50_000,
    test_images=10_000,
    paper_epochs=2,
    fast_epochs=3,
    compile=True,
    packed_k=(1, 2, 4, 8),
    mps_k=(8, 4),
    packed_seconds=6.0,
    packed_warmup=30,
    precision_epochs=30,
    precision_batch=128,
    precision_subset=None,
    seeds=(0, 1),
    mode_steps=200,
    mode_warmup=30,
    block_sizes=(16, 32, 56, 112),
    block_batch=16,
    block_dtypes=("float32", "bfloat16"),
    block_reps=10,
    sdpa_batch=128,
)
SMOKE = Sizes(
    train_images=256,
    test_images=64,
    paper_epochs=1,
    fast_epochs=1,
    compile=False,
    packed_k=(1, 2),
    mps_k=(2,),
    packed_seconds=1.0,
    packed_warmup=1,
    precision_epochs=1,
    precision_batch=32,
    precision_subset=64,
    seeds=(0, 1),
    mode_steps=2,
    mode_warmup=1,
    block_sizes=(16,),
    block_batch=2,
    block_dtypes=("float32",),
    block_reps=1,
    sdpa_batch=2,
)


class Rows:
    """A phase's output file: rows appended one at a time (each write atomic), plus the phase's info."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.path, self.deadline = path, deadline
        self.rows: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.started: float = time.time()

    @property
    def left(self) -> float:
        return self.deadline - time.time()

    def fits(self, estimate_s: float) -> bool:
        return self.left >= estimate_s

    def skipped(self, row: dict[str, Any], estimate_s: float) -> dict[str, Any]:
        return {
            **row,
            "skipped": f"would not finish before the phase's deadline ({max(0, self.left):.0f} s left, "
            f"about {estimate_s:.0f} s needed)",
        }

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()
        print(f"[device-check] {json.dumps(row, default=str)}", flush=True)

    def write(self, **extra: Any) -> None:
        atomic_write_json(self.path, {"rows": self.rows, "info": self.info, **extra})


def release(device: torch.device) -> None:
    """Give cached allocator blocks back between rows, so one row's reserved memory never crowds the next."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:300]


# ---- data ---------------------------------------------------------------------------------------------------------
def synthetic_data(out: Path, sizes: Sizes) -> Path:
    """CIFAR-10-size generated data under OUT/.work (once; a marker says it is complete)."""
    root = out / WORK / "cifar10"
    if not (root / "complete").exists():
        write_cifar10(root, train=sizes.train_images, test=sizes.test_images)
        (root / "complete").touch()
    return root


def sample_data(out: Path) -> Path:
    """A copy of the embedded real CIFAR-10 sample under OUT/.work: its uint8 cache is written there, not into the
    package."""
    root = out / WORK / "sample"
    if not (root / "complete").exists():
        shutil.copytree(SAMPLE_ROOT, root, dirs_exist_ok=True)
        (root / "complete").touch()
    return root


def trainer(device: torch.device, out: Path, **options: Any) -> L.Trainer:
    base = dict(
        accelerator=device.type,
        devices=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
        default_root_dir=str(out / WORK),
    )
    return L.Trainer(**{**base, **options})


def fast_path(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """experiments/gpu.yaml's settings on a GPU (bf16-mixed, channels-last, compile "default", GPU cache); fp32
    eager on the CPU smoke run (bf16 and compile are GPU features)."""
    gpu = device.type == "cuda"
    return {
        "precision": "bf16-mixed" if gpu else "32-true",
        "channels_last": gpu,
        "compile": "default" if gpu and sizes.compile else False,
        "device_cache": gpu,
        "benchmark": gpu,
    }


# The paper's set-up as experiments/sweeps/cifar10.yaml runs it: base/paper.yaml + cifar10.yaml.
PAPER = {"precision": "32-true", "channels_last": False, "compile": False, "device_cache": False, "benchmark": None}


# ---- kernels: device, versions, SDPA kernel per reduction and dtype ----------------------------------------------
def versions() -> dict[str, str | None]:
    import torchmetrics
    import torchvision

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "torchmetrics": torchmetrics.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()),
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
    }


def tf32_state() -> dict[str, bool]:
    return {"matmul": bool(torch.backends.cuda.matmul.allow_tf32), "cudnn": bool(torch.backends.cudnn.allow_tf32)}


def kernels_phase(device: torch.device, sizes: Sizes, out: Path, rows: Rows) -> None:
    from nlbench.nn.attention import softmax_attention
    from nlbench.nn.sdpa import kernels_in, sdpa_kernel_for

    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30 if gpu else None
    rows.info.update(
        device_name=name,
        device=str(device),
        memory_gib=memory,
        versions=versions(),
        tf32_defaults=tf32_state(),
        cpus=os.cpu_count(),
        machine=f"{platform.node()} ({platform.processor() or platform.machine()})",
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )
    rows.write()
    for dtype in (torch.float32, torch.bfloat16):
        for r in REDUCTIONS:
            width = NL_CHANNELS // r
            shape = (sizes.sdpa_batch, 1, NL_SIDE * NL_SIDE, width)
            row: dict[str, Any] = {
                "reduction": r,
                "head_width": width,
                "dtype": str(dtype).removeprefix("torch."),
                "kernel": sdpa_kernel_for(shape, dtype, device),
            }
            q, k, v = (torch.randn(shape, dtype=dtype, device=device, requires_grad=True) for _ in range(3))
            before = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True)
            try:  # what trainer.deterministic: true runs (nlbench.nn.attention.softmax_attention)
                row["deterministic"] = "+".join(kernels_in(lambda q=q, k=k, v=v: softmax_attention(q, k, v)))
            finally:
                torch.use_deterministic_algorithms(before)
            rows.add(row)


# ---- (a) epoch time: the fast path and the paper's set-up --------------------------------------------------------
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
        self.epochs.append(
            {"train_s": self._val_start - self._start, "val_s": end - self._val_start, "epoch_s": end - self._start}
        )


class SyncDebugEpoch(L.Callback):
    """``torch.cuda.set_sync_debug_mode("warn")`` during one epoch only (default the second: the first compiles,
    and its one-off work is not what a run repeats): every implicit host sync then warns, and the warning
    machinery (a Python stack per sync) stays out of the timed epochs."""

    def __init__(self, set_mode: Callable[[int | str], None] | None, epoch: int = 1) -> None:
        self.set_mode, self.epoch, self.epochs, self._on = set_mode, epoch, [], False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.set_mode is not None and trainer.current_epoch == self.epoch:
            self.set_mode("warn")
            self._on = True
            self.epochs.append(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.off()  # before EpochClock starts the next (timed) epoch: this callback is listed first

    def off(self) -> None:
        if self._on and self.set_mode is not None:
            self.set_mode(0)
        self._on = False


def epoch_row(
    device: torch.device, sizes: Sizes, out: Path, setup: str, settings: dict[str, Any], epochs: int
) -> dict[str, Any]:
    """Epochs of PreResNet-20 + scale NL on CIFAR-10-size data through ImageClassifier and a Lightning Trainer."""
    data = synthetic_data(out, sizes)
    dm = CIFAR10DataModule(
        data_dir=str(data), verify=False, batch_size=128, eval_batch_size=100, device_cache=settings["device_cache"]
    )
    model = ImageClassifier(
        _model("scale"), optimizer=SGD, channels_last=settings["channels_last"], compile=settings["compile"]
    )
    clock = EpochClock()
    sync_debug = SyncDebugEpoch(torch.cuda.set_sync_debug_mode if device.type == "cuda" and epochs > 2 else None)
    fit = trainer(
        device,
        out,
        max_epochs=epochs,
        precision=settings["precision"],
        benchmark=settings["benchmark"],
        callbacks=[sync_debug, clock],
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit.fit(model, datamodule=dm)
        finally:
            sync_debug.off()
    syncs = sum("synchroniz" in str(w.message) for w in caught) if sync_debug.epochs else None
    last = clock.epochs[-1]
    return {
        "setup": setup,
        "settings": settings,
        "train_images": sizes.train_images,
        "val_images": sizes.test_images,
        "process_s": PROCESS_START_S,
        "host_syncs": syncs,
        "sync_epoch": sync_debug.epochs[0] if sync_debug.epochs else None,
        "steps_per_epoch": fit.global_step // len(clock.epochs),
        "fit_s": time.perf_counter() - start,
        "epochs": clock.epochs,
        **last,
        "train_images_per_s": sizes.train_images / last["train_s"],
    }


def epoch_phase(device: torch.device, sizes: Sizes, out: Path, rows: Rows) -> None:
    plan = [("fast", fast_path(device, sizes), sizes.fast_epochs), ("paper", PAPER, sizes.paper_epochs)]
    for setup, settings, epochs in plan:
        try:
            rows.add(epoch_row(device, sizes, out, setup, settings, epochs))
        except Exception as err:  # noqa: BLE001 - one set-up failing must not cost the other
            rows.add({"setup": setup, "settings": settings, "error": _error(err)})
        release(device)


# ---- (b) packed runs ---------------------------------------------------------------------------------------------
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

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, idx: int
    ) -> None:
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
    steps_per_epoch = -(-sizes.train_images // 128)  # the batch of experiments/cifar10.yaml
    return max(sizes.packed_warmup, steps_per_epoch + 1)


def child_main(job: dict[str, Any]) -> int:
    """One packed process (``--child JSON``): the fast path's fit settings, timed in a window shared with the
    others."""
    device = child_device(job["device"])
    sizes = SMOKE if job["smoke"] else FULL
    settings = fast_path(device, sizes)
    dm = CIFAR10DataModule(
        data_dir=job["data_dir"],
        verify=False,
        batch_size=128,
        eval_batch_size=100,
        device_cache=settings["device_cache"],
    )
    model = ImageClassifier(
        _model("scale", seed=job["index"]),
        optimizer=SGD,
        channels_last=settings["channels_last"],
        compile=settings["compile"],
    )
    window = _Window(packed_warmup(sizes), sizes.packed_seconds, Path(job["ready"]), Path(job["go"]))
    fit = trainer(
        device,
        Path(job["out_dir"]),
        max_epochs=10**6,
        limit_val_batches=0,
        precision=settings["precision"],
        benchmark=settings["benchmark"],
        callbacks=[window],
    )
    fit.fit(model, datamodule=dm)
    atomic_write_json(job["out"], {"images": window.images, "seconds": window.end - window.start})
    return 0


def mps_unavailable(device: torch.device) -> str | None:
    """Why packed runs cannot be measured under MPS here (None: they can)."""
    from nlbench.sweep import mps

    if device.type != "cuda":
        return "MPS is a CUDA feature"
    if shutil.which(mps.CONTROL) is None:
        return f"{mps.CONTROL} not on PATH"
    return None


def packed_phase(device: torch.device, sizes: Sizes, out: Path, rows: Rows) -> None:
    """k = 1, 2, 4, 8 time-sliced, on the compile cache the epoch phase filled; then, where the MPS control daemon
    exists (CUDA only), the largest k again under a private MPS daemon (``nlbench sweep --mps``)."""
    data = synthetic_data(out, sizes)
    why_not_mps = mps_unavailable(device)
    estimate = 10.0 if rows.rows else 60.0
    for k, mps in [(k, False) for k in sizes.packed_k] + [(k, True) for k in sizes.mps_k]:
        row: dict[str, Any] = {"k": k, "mps": mps}
        if mps and why_not_mps:
            rows.add({**row, "skipped": why_not_mps})
            continue
        if not rows.fits(estimate):
            rows.add(rows.skipped(row, estimate))
            continue
        start = time.monotonic()
        try:
            rows.add({**row, **_packed_run(device, k, data, out, sizes, under_mps=mps)})
        except Exception as err:  # noqa: BLE001 - one k failing (e.g. out of memory) must not lose the others
            rows.add({**row, "error": _error(err)})
        estimate = (time.monotonic() - start) * 1.3  # the next (larger) k takes at least as long


def _packed_run(
    device: torch.device, k: int, data: Path, out: Path, sizes: Sizes, *, under_mps: bool
) -> dict[str, Any]:
    from nlbench.sweep import devices, mps

    work = Path(tempfile.mkdtemp(prefix=f"packed-{k}-", dir=out / WORK))
    try:
        # The env a sweep's `runs_per_device: k` gives: memory cap, and cores / k threads and compile workers.
        env = {**os.environ, **share_env(k, gpu=device.type == "cuda", concurrent=k), "PYTHONUNBUFFERED": "1"}
        if under_mps:
            why = mps.start(work / "mps")
            if why:
                return {"error": f"MPS: {why}"}
            env.update(devices.client_env(work / "mps"))
        try:
            return _packed_processes(k, device, data, out, sizes, work, env)
        finally:
            if under_mps:
                mps.stop(work / "mps")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _packed_processes(
    k: int, device: torch.device, data: Path, out: Path, sizes: Sizes, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    procs = []
    go = work / "go"
    spawned = time.perf_counter()
    for i in range(k):
        job = {
            "device": str(device),
            "data_dir": str(data),
            "smoke": sizes is SMOKE,
            "index": i,
            "out_dir": str(out),
            "ready": str(work / f"ready{i}"),
            "go": str(go),
            "out": str(work / f"out{i}.json"),
        }
        log = open(work / f"log{i}.txt", "wb")
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "nlbench.bench.device_phases", "--child", json.dumps(job)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                ),
                log,
            )
        )
    try:
        deadline = time.monotonic() + 300
        while not all((work / f"ready{i}").exists() for i in range(k)):
            dead = [i for i, (p, _) in enumerate(procs) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"process {dead[0]} exited early" if dead else "timed out waiting for the processes"
                tail = (work / f"log{dead[0] if dead else 0}.txt").read_text(errors="replace").strip()
                return {"error": f"{why}: {tail.splitlines()[-1] if tail else ''}"}
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
        return {"error": f"process {failed[0]} failed: {tail[-1] if tail else 'no output'}"}
    outs = [json.loads((work / f"out{i}.json").read_text()) for i in range(k)]
    rates = [o["images"] / o["seconds"] for o in outs]
    return {"images_per_s": sum(rates), "per_run_images_per_s": sum(rates) / k, "startup_s": startup}


# ---- (c) precision: bf16-mixed vs fp32 on real images ------------------------------------------------------------
def precision_phase(device: torch.device, sizes: Sizes, out: Path, rows: Rows) -> None:
    """bf16-mixed vs 32-true on the real CIFAR-10 sample, compiled as experiments/gpu.yaml does, 2 seeds each; the
    two fp32 seeds' difference is the noise floor the bf16 difference is read against. TF32 off (matmul and cuDNN),
    so "fp32" is fp32."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows.info["tf32"] = tf32_state()
    data = sample_data(out)
    fast = fast_path(device, sizes)
    rows.info.update(train_images=sizes.precision_subset or 1000, batch=sizes.precision_batch)
    estimate = 90.0 if device.type == "cuda" else 30.0  # the first: compilation; later ones: measured
    for seed in sizes.seeds:
        for precision in ("32-true", "bf16-mixed"):
            row: dict[str, Any] = {
                "precision": precision,
                "seed": seed,
                "epochs": sizes.precision_epochs,
                "compile": fast["compile"],
                "tf32": tf32_state(),
            }
            if not rows.fits(estimate):
                rows.add(rows.skipped(row, estimate))
                continue
            start = time.perf_counter()
            try:
                L.seed_everything(seed, workers=True, verbose=False)
                # drop_last: only full batches of 128, the shapes the epoch phase compiled (its cache serves them).
                dm = CIFAR10DataModule(
                    data_dir=str(data),
                    verify=False,
                    batch_size=sizes.precision_batch,
                    eval_batch_size=100,
                    device_cache=fast["device_cache"],
                    drop_last=True,
                    subset=sizes.precision_subset,
                )
                model = ImageClassifier(
                    _model("scale", seed=seed),
                    optimizer=SGD,
                    channels_last=fast["channels_last"],
                    compile=fast["compile"],
                )
                fit = trainer(
                    device, out, max_epochs=sizes.precision_epochs, precision=precision, benchmark=fast["benchmark"]
                )
                fit.fit(model, datamodule=dm)
                metrics = fit.callback_metrics
                row.update(val_acc1=float(metrics["val/acc1"]), val_loss=float(metrics["val/loss"]))
            except Exception as err:  # noqa: BLE001
                row["error"] = _error(err)
            row["fit_s"] = time.perf_counter() - start
            rows.add(row)
            estimate = row["fit_s"] * 1.2 if "error" not in row else estimate
            release(device)


# ---- (d) compile modes and determinism through the same Lightning harness ----------------------------------------
def cudagraph_skips() -> int:
    """Inductor's count of graphs it did not CUDA-graph (mode "reduce-overhead": a CPU tensor, a mutated input,
    dynamic shapes, ...). A private counter: tests/test_bench_device_check.py breaks when it moves."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def steps_row(
    device: torch.device, sizes: Sizes, out: Path, settings: dict[str, Any], *, deterministic: bool = False
) -> dict[str, Any]:
    """Training images/s of ImageClassifier + a Lightning Trainer over `mode_steps` steps after `mode_warmup`
    (compilation and CUDA-graph recording in the warm-up)."""
    data = synthetic_data(out, sizes)
    dm = CIFAR10DataModule(data_dir=str(data), verify=False, batch_size=128, device_cache=settings["device_cache"])
    model = ImageClassifier(
        _model("scale"), optimizer=SGD, channels_last=settings["channels_last"], compile=settings["compile"]
    )
    timer = _StepTimer(sizes.mode_warmup)
    skips = cudagraph_skips()
    fit = trainer(
        device,
        out,
        max_steps=sizes.mode_warmup + sizes.mode_steps,
        limit_val_batches=0,
        precision=settings["precision"],
        callbacks=[timer],
        deterministic=deterministic,
        benchmark=False if deterministic else settings["benchmark"],
    )
    start = time.perf_counter()
    try:
        fit.fit(model, datamodule=dm)
    finally:
        torch.use_deterministic_algorithms(False)
    return {
        "images_per_s": timer.images / (timer.end - timer.start),
        "warmup_s": timer.start - start,
        "cudagraph_skips": cudagraph_skips() - skips,
    }


def compile_phase(device: torch.device, sizes: Sizes, out: Path, rows: Rows) -> None:
    fast = fast_path(device, sizes)
    plan: list[tuple[str, dict[str, Any], bool]] = []
    if device.type == "cuda" and sizes.compile:
        plan += [
            (f"fast path, compile {mode}", {**fast, "compile": mode}, False) for mode in ("default", "reduce-overhead")
        ]
    else:
        rows.add(
            {
                "setting": "fast path, compile default / reduce-overhead",
                "skipped": "smoke run: compilation takes minutes on a CPU, and CUDA graphs need CUDA",
            }
        )
    plan += [("paper set-up, deterministic: false", PAPER, False), ("paper set-up, deterministic: true", PAPER, True)]
    estimate = 60.0 if plan[0][1]["compile"] else 15.0
    for setting, settings, deterministic in plan:
        row: dict[str, Any] = {"setting": setting, "settings": settings, "deterministic": deterministic}
        if not rows.fits(estimate):
            rows.add(rows.skipped(row, estimate))
            continue
        start = time.monotonic()
        try:
            torch.compiler.reset()  # each compiled row starts from a clean slate (the on-disk cache stays warm)
            row.update(steps_row(device, sizes, out, settings, deterministic=deterministic))
        except Exception as err:  # noqa: BLE001 - e.g. a compile mode that fails on this machine
            row["error"] = _error(err)
        rows.add(row)
        estimate = max(15.0, (time.monotonic() - start) * 1.2) if settings["compile"] else 15.0
        release(device)


# ---- (e) the NL block --------------------------------------------------------------------------------------------
def block_phase(device: torch.device, sizes: Sizes, out: Path, rows: Rows) -> None:
    from nlbench.bench.block import block_records

    for dtype in sizes.block_dtypes:
        block_records(
            device,
            list(sizes.block_sizes),
            batch=sizes.block_batch,
            dtype=dtype,
            reps=sizes.block_reps,
            warmup=2,
            max_gflop=4000.0,
            max_gib=40.0 if device.type == "cuda" else 8.0,
            on_record=rows.add,
        )
        release(device)


PHASES: dict[str, Callable[[torch.device, Sizes, Path, Rows], None]] = {
    "kernels": kernels_phase,
    "epoch": epoch_phase,
    "packed": packed_phase,
    "precision": precision_phase,
    "compile": compile_phase,
    "block": block_phase,
}


def run_phase(name: str, out: Path, *, smoke: bool, device: torch.device, deadline: float) -> int:
    rows = Rows(phase_file(out, name), deadline)
    rows.write()
    try:
        PHASES[name](device, SMOKE if smoke else FULL, out, rows)
    except BaseException as err:  # noqa: BLE001 - recorded for the parent, which reads this file
        rows.write(
            error=_error(err) if not isinstance(err, SystemExit) else "stopped at the phase's deadline",
            where=traceback.format_exc().strip().splitlines()[-3:],
        )
        return 1
    rows.write(done=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(json.loads(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m nlbench.bench.device_phases", description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=list(PHASES))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, required=True, help="time.time() by which the phase must end")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--spawned", type=float, default=None, help="time.time() at which the parent started it")
    args = parser.parse_args(argv)
    global PROCESS_START_S
    PROCESS_START_S = time.time() - args.spawned if args.spawned else None
    # The parent stops a phase at its deadline with SIGTERM: exit through the finally blocks (child processes,
    # the MPS daemon), then the file written so far is what the phase returns.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run_phase(args.phase, args.out, smoke=args.smoke, device=torch.device(args.device), deadline=args.deadline)


if __name__ == "__main__":
    raise SystemExit(main())
