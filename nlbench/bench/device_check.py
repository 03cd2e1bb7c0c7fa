"""The device check: what nlbench does on a (lent) GPU, in phases that each keep their own deadline, in 480 s.

    bash dist/gpu-bundle/run.sh OUT          # on a GPU node without network (make gpu-bundle builds it)
    nlbench bench device-check --out OUT     # where nlbench is installed; --smoke: the CPU at tiny sizes

Downloads nothing and writes only under OUT: ``device-check.json`` and ``device-check.md`` after every phase (a kill
loses at most the phase in flight), ``logs/<phase>.log``, and generated data, compile caches and temporary files
under ``OUT/.work`` (removed at the end). Each phase runs in a process of its own
(:mod:`nlbench.bench.device_phases`) in its own session: at its deadline the parent stops it (SIGTERM, then SIGKILL
for the whole process group), keeps the rows it finished, says so and goes on; the GPU memory a phase held goes
with its process, and phases that run several things release cached memory between them. The phases, in order of
value, each with a share of the 480 s that unused time of earlier phases adds to:

0. kernels (30 s): device, versions, TF32 defaults, and the SDPA kernel for the NL block of PreResNet-20 (C = 32 at
   16 x 16, one head) per reduction 1..16 and dtype, also under ``trainer.deterministic: true``.
a. epoch (145 s): PreResNet-20 + NL CIFAR-10 epochs (50,000 + 10,000 generated images, official format) through
   ImageClassifier + Lightning, on the fast path (experiments/gpu.yaml: bf16-mixed, channels-last, compile
   "default", GPU cache; epoch 1 compiles, epoch 2 counts host syncs with CUDA's sync-debug mode, epoch 3 is
   timed) and on the paper's set-up (experiments/sweeps/cifar10.yaml: 32-true, eager, host loader; epoch 2 timed).
b. packed (110 s): aggregate images/s of k = 1, 2, 4, 8 concurrent fast-path processes on the one GPU, each with
   what ``runs_per_device: k`` gives (memory cap, cores / k), on the compile cache phase (a) filled, timed in one
   common window after the first epoch; then under a private MPS daemon where ``nvidia-cuda-mps-control`` exists.
c. precision (105 s): bf16-mixed vs fp32 on the real CIFAR-10 sample shipped in the package, compiled as
   experiments/gpu.yaml, 2 seeds each, TF32 off; the fp32 seeds' difference is the noise floor.
d. compile (70 s): compile "default" vs "reduce-overhead" through the same Lightning harness, with Inductor's
   CUDA-graph skip count; and the paper's set-up with ``deterministic: false`` vs ``true`` (its cost).
e. block (20 s): the NL block benchmark (every method, 16x16 to 112x112, fp32 and bf16), the SDPA kernel per row.

Then the projected wall time of the paper's CIFAR-10 grid (90 runs x 300 epochs) for both set-ups, labelled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nlbench.io import atomic_write_json, atomic_write_text

GRID_RUNS, GRID_EPOCHS = 90, 300  # experiments/sweeps/cifar10.yaml
FULL_EPOCH_IMAGES = (50_000, 10_000)  # a CIFAR-10 epoch: training + validation images
BUDGET_S = 480.0
RESULTS_JSON, RESULTS_MD = "device-check.json", "device-check.md"
WORK, LOGS = ".work", "logs"
MIN_PHASE_S = 15.0  # a phase with less time left than this is not started
GRACE_S = 10.0  # after SIGTERM at a deadline, before SIGKILL


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    share_s: float  # its share of the full check's budget
    smoke_s: float  # its share in the CPU smoke run (only a guard against a hung phase)


PHASES = (
    Phase("kernels", "device, versions and SDPA kernels", 30, 120),
    Phase("epoch", "(a) epoch time: fast path and paper set-up", 145, 180),
    Phase("packed", "(b) packed runs", 110, 180),
    Phase("precision", "(c) bf16-mixed vs fp32 on real images", 105, 180),
    Phase("compile", "(d) compile modes and determinism", 70, 120),
    Phase("block", "(e) NL block", 20, 120),
)


# ---- running the phases ------------------------------------------------------------------------------------------
def phase_file(out: Path, name: str) -> Path:
    """Where a phase's process writes its rows (nlbench.bench.device_phases.Rows)."""
    return out / WORK / f"phase-{name}.json"


def child_env(out: Path) -> dict[str, str]:
    """The phases' environment: every cache and temporary file under OUT/.work, shared by all phases (so the
    compile cache phase (a) fills serves (b)-(d))."""
    work = out / WORK
    folders = {
        "TMPDIR": work / "tmp",
        "TORCHINDUCTOR_CACHE_DIR": work / "inductor",
        "TRITON_CACHE_DIR": work / "triton",
        "CUDA_CACHE_PATH": work / "nv",
        "MPLCONFIGDIR": work / "mpl",
        "XDG_CACHE_HOME": work / "cache",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **{k: str(v) for k, v in folders.items()}, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


def run_phase(phase: Phase, out: Path, *, smoke: bool, device: str, seconds: float) -> dict[str, Any]:
    """Run one phase in its own process session for at most `seconds`; its rows, status and time."""
    path = phase_file(out, phase.name)
    path.unlink(missing_ok=True)
    deadline = time.time() + seconds
    command = [
        sys.executable,
        "-m",
        "nlbench.bench.device_phases",
        phase.name,
        "--out",
        str(out),
        "--deadline",
        str(deadline),
        "--device",
        device,
        "--spawned",
        str(time.time()),
        *(["--smoke"] if smoke else []),
    ]
    start = time.monotonic()
    with open(out / LOGS / f"{phase.name}.log", "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=child_env(out), start_new_session=True
        )
        status = "done"
        try:
            proc.wait(timeout=max(1.0, seconds))
        except subprocess.TimeoutExpired:
            status = "deadline"
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc.pid, signal.SIGKILL)  # whatever it left behind (packed children) goes too
        proc.wait()
    result: dict[str, Any] = {
        "title": phase.title,
        "status": status,
        "deadline_s": round(seconds, 1),
        "seconds": round(time.monotonic() - start, 1),
        "rows": [],
        "info": {},
    }
    try:
        written = json.loads(path.read_text())
    except (OSError, ValueError):
        written = {}
    result.update(rows=written.get("rows", []), info=written.get("info", {}))
    if status == "deadline":
        result["why"] = f"stopped at its deadline ({seconds:.0f} s); {len(result['rows'])} row(s) kept"
    elif written.get("error") or proc.returncode:
        result["status"] = "error"
        tail = _log_tail(out / LOGS / f"{phase.name}.log")
        result["why"] = f"error: {written.get('error') or tail}"
        result["where"] = written.get("where")
    return result


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else f"exited without output (log {path})"


def run_check(out: Path, *, smoke: bool, device: str, budget_s: float | None = None) -> dict[str, Any]:
    """Every phase in order, each until its deadline; results written after every phase."""
    out.mkdir(parents=True, exist_ok=True)
    (out / LOGS).mkdir(exist_ok=True)
    shares = [phase.smoke_s if smoke else phase.share_s for phase in PHASES]
    total = budget_s if budget_s is not None else sum(shares)
    scale = total / sum(shares)
    results: dict[str, Any] = {
        "smoke": smoke,
        "device": device,
        "budget_s": total,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "phases": {},
    }
    start = time.monotonic()
    try:
        for i, phase in enumerate(PHASES):
            # A phase ends by its cumulative share of the budget: time earlier phases left unused carries forward.
            end = start + scale * sum(shares[: i + 1])
            left = min(end, start + total) - time.monotonic()
            if left < MIN_PHASE_S * (0.2 if smoke else 1.0):
                results["phases"][phase.name] = {
                    "title": phase.title,
                    "status": "not run",
                    "rows": [],
                    "info": {},
                    "why": f"{max(0.0, left):.0f} s left of the {total:.0f} s budget",
                }
            else:
                print(f"[device-check] {phase.name}: up to {left:.0f} s", file=sys.stderr, flush=True)
                results["phases"][phase.name] = run_phase(phase, out, smoke=smoke, device=device, seconds=left)
            summarise(results)
            results["total_s"] = round(time.monotonic() - start, 1)
            write_results(out, results)
            print("\n".join(phase_lines(results, phase.name)), flush=True)
    finally:
        shutil.rmtree(out / WORK, ignore_errors=True)
    return results


def write_results(out: Path, results: dict[str, Any]) -> None:
    atomic_write_json(out / RESULTS_JSON, results)
    atomic_write_text(out / RESULTS_MD, markdown(results))


# ---- what the rows add up to -------------------------------------------------------------------------------------
def _rows(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return results.get("phases", {}).get(name, {}).get("rows") or []


def summarise(results: dict[str, Any]) -> None:
    """Derived figures: packed speed-ups, the precision verdict, the determinism cost, both projections."""
    packed = _rows(results, "packed")
    base = next((r["images_per_s"] for r in packed if r["k"] == 1 and not r.get("mps") and r.get("images_per_s")), None)
    for row in packed:
        row["speedup"] = row["images_per_s"] / base if row.get("images_per_s") and base else None
    results["precision"] = precision_summary(_rows(results, "precision"))
    modes = {r["setting"]: r for r in _rows(results, "compile")}
    free, fixed = (modes.get(f"paper set-up, deterministic: {v}", {}).get("images_per_s") for v in ("false", "true"))
    results["determinism_cost"] = (free / fixed - 1) if free and fixed else None
    epochs = {r["setup"]: r for r in _rows(results, "epoch") if "epoch_s" in r}
    results["projections"] = {
        "paper": projection(epochs.get("paper"), []),
        "fast": projection(epochs.get("fast"), packed),
    }


def precision_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """bf16 minus fp32 per seed (mean over seeds) against the fp32 seed-to-seed difference, for top-1 and loss."""
    runs = {(r["precision"], r["seed"]): r for r in rows if "val_acc1" in r}
    seeds = sorted({seed for _, seed in runs})
    paired = [s for s in seeds if ("32-true", s) in runs and ("bf16-mixed", s) in runs]
    fp32 = [s for s in seeds if ("32-true", s) in runs]
    summary: dict[str, Any] = {"seeds_paired": paired}
    for metric in ("val_acc1", "val_loss"):
        effect = (
            sum(runs[("bf16-mixed", s)][metric] - runs[("32-true", s)][metric] for s in paired) / len(paired)
            if paired
            else None
        )
        floor = abs(runs[("32-true", fp32[0])][metric] - runs[("32-true", fp32[1])][metric]) if len(fp32) > 1 else None
        verdict = None
        if effect is not None and floor is not None:
            verdict = "within the fp32 noise floor" if abs(effect) <= floor else "beyond the fp32 noise floor"
        summary[metric] = {"bf16_minus_fp32": effect, "fp32_seed_difference": floor, "verdict": verdict}
    return summary


def projection(epoch: dict[str, Any] | None, packed: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time of GRID_RUNS x GRID_EPOCHS CIFAR-10 epochs (50k + 10k images, at the measured per-image times, so
    a smoke run's small epoch scales up), sped up by the best measured packing when `packed` has any."""
    if not epoch or "epoch_s" not in epoch:
        return {"error": "no epoch time measured"}
    epoch_s = (
        FULL_EPOCH_IMAGES[0] * epoch["train_s"] / epoch["train_images"]
        + FULL_EPOCH_IMAGES[1] * epoch["val_s"] / epoch["val_images"]
    )
    measured = [r for r in packed if r.get("speedup")]
    best = max(measured, key=lambda r: r["speedup"], default={"k": 1, "speedup": 1.0, "startup_s": None})
    # A run's start-up (process and imports, data, compilation): packed runs start k at a time, so k overlap.
    startup = best.get("startup_s") or (epoch.get("process_s") or 0.0) + max(
        0.0, epoch["fit_s"] - sum(e["epoch_s"] for e in epoch["epochs"])
    )
    total = GRID_RUNS * GRID_EPOCHS * epoch_s / best["speedup"] + GRID_RUNS * startup / best["k"]
    return {
        "runs": GRID_RUNS,
        "epochs": GRID_EPOCHS,
        "epoch_s": epoch_s,
        "best_k": best["k"],
        "speedup": best["speedup"],
        "startup_s": startup,
        "hours": total / 3600,
        "hours_one_run_per_gpu": GRID_RUNS * (GRID_EPOCHS * epoch_s + startup) / 3600,
    }


# ---- the report --------------------------------------------------------------------------------------------------
PROJECTION_LABELS = {
    "paper": "paper set-up as experiments/sweeps/cifar10.yaml runs it (32-true, eager, host loader, one run per GPU)",
    "fast": "fast path (experiments/gpu.yaml: bf16-mixed, compile default, GPU cache), best measured packing",
}


def _num(value: Any, spec: str = ".0f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _why(row: dict[str, Any]) -> str:
    return str(row.get("skipped") or row.get("error") or "–")


def headline(results: dict[str, Any], name: str) -> str:
    """A phase's figure in one cell, or why it has none."""
    phase = results["phases"].get(name) or {}
    rows = phase.get("rows") or []
    if not rows:
        return phase.get("why") or "not run"
    if name == "kernels":
        kernels = {}
        for r in rows:
            kernels.setdefault(r["dtype"], []).append(f"r{r['reduction']} {r['kernel']}")
        return "; ".join(f"{dtype}: {', '.join(v)}" for dtype, v in kernels.items())
    if name == "epoch":
        cells = []
        for r in rows:
            figure = f"{r['epoch_s']:.2f} s" if "epoch_s" in r else _why(r)
            cells.append(f"{r['setup']} {figure}")
        return "; ".join(cells)
    if name == "packed":
        best = max((r for r in rows if r.get("speedup")), key=lambda r: r["speedup"], default=None)
        return (
            f"best k = {best['k']}{' + MPS' if best.get('mps') else ''}: {best['speedup']:.2f}x"
            if best
            else "; ".join(f"k={r['k']}: {_why(r)}" for r in rows)
        )
    if name == "precision":
        acc = results.get("precision", {}).get("val_acc1", {})
        if acc.get("verdict"):
            return (
                f"bf16 - fp32 top-1 {acc['bf16_minus_fp32']:+.4f}, fp32 seeds differ by "
                f"{acc['fp32_seed_difference']:.4f}: {acc['verdict']}"
            )
        return f"{sum('val_acc1' in r for r in rows)} of {len(rows)} runs; no verdict"
    if name == "compile":
        cells = [
            f"{r['setting']}: {_num(r.get('images_per_s'))} img/s"
            if r.get("images_per_s")
            else f"{r['setting']}: {_why(r)}"
            for r in rows
        ]
        return "; ".join(cells)
    return f"{len(rows)} rows (below)"


def summary_table(results: dict[str, Any]) -> list[str]:
    info = (results["phases"].get("kernels") or {}).get("info") or {}
    versions = info.get("versions") or {}
    table = [
        ("device", f"{info.get('device_name', '–')} ({results['device']}, {_num(info.get('memory_gib'), '.1f')} GiB)"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "–"),
        (
            "TF32 defaults",
            ", ".join(f"{k} {'on' if v else 'off'}" for k, v in (info.get("tf32_defaults") or {}).items()) or "–",
        ),
    ]
    for phase in PHASES:
        state = results["phases"].get(phase.name)
        status = "" if state is None else f" [{state['status']}, {_num(state.get('seconds'), '.0f')} s]"
        table.append((f"{phase.title}{status}", headline(results, phase.name) if state else "not reached"))
    epoch = {r["setup"]: r for r in _rows(results, "epoch")}.get("fast", {})
    table.append(
        (
            "host syncs in fast-path epoch 2 (after the compiling one)",
            _num(epoch.get("host_syncs"))
            if epoch.get("host_syncs") is not None
            else "not counted (sync-debug mode is CUDA only, and needs the third epoch)",
        )
    )
    cost = results.get("determinism_cost")
    table.append(
        (
            "cost of deterministic: true (paper set-up)",
            f"{100 * cost:+.0f} % step time" if cost is not None else "not measured",
        )
    )
    for key, label in PROJECTION_LABELS.items():
        grid = (results.get("projections") or {}).get(key, {})
        table.append(
            (
                f"CIFAR-10 grid, {label}, hours",
                _num(grid.get("hours"), ".1f") if "hours" in grid else grid.get("error", "–"),
            )
        )
    return ["| check | figure, or why there is none |", "|---|---|", *(f"| {k} | {v} |" for k, v in table)]


def phase_lines(results: dict[str, Any], name: str) -> list[str]:
    """A phase's own section of the report."""
    phase = results["phases"].get(name)
    if phase is None:
        return []
    lines = [
        f"## {phase['title']}",
        "",
        f"Status: {phase['status']}" + (f" ({phase['why']})" if phase.get("why") else "") + ".",
        "",
    ]
    rows = phase.get("rows") or []
    if name == "kernels" and rows:
        lines += [
            "SDPA kernel for PreResNet-20's NL block (C = 32 at 16 x 16, one head, batch of training, grads "
            "on), by reduction (head width) and dtype; the last column is what `trainer.deterministic: true` "
            "runs (nlbench switches SDPA to its math kernel on CUDA).",
            "",
            "| dtype | reduction | head width | kernel | deterministic |",
            "|---|---:|---:|---|---|",
        ]
        lines += [
            f"| {r['dtype']} | {r['reduction']} | {r['head_width']} | {r['kernel']} | {r['deterministic']} |"
            for r in rows
        ]
    elif name == "epoch" and rows:
        lines += [
            "| set-up | settings | epoch s (last) | training s | img/s | validation s | whole fit s |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            if "epoch_s" in r:
                lines.append(
                    f"| {r['setup']} | {r['settings']} | {r['epoch_s']:.2f} | {r['train_s']:.2f} | "
                    f"{r['train_images_per_s']:.0f} | {r['val_s']:.2f} | {r['fit_s']:.1f} |"
                )
            else:
                lines.append(f"| {r['setup']} | {r.get('settings')} | {_why(r)} | | | | |")
        fast = next((r for r in rows if r.get("setup") == "fast" and "epoch_s" in r), None)
        if fast:
            lines += [
                "",
                f"{fast['train_images']} training + {fast['val_images']} validation images per epoch, "
                f"{fast['steps_per_epoch']} steps. Implicit host syncs (torch.cuda.set_sync_debug_mode, on "
                f"in epoch {_num(fast['sync_epoch'])} only, validation and logging steps included): "
                f"{_num(fast['host_syncs'])}.",
            ]
    elif name == "packed" and rows:
        lines += [
            "| k | MPS | total img/s | per run img/s | speed-up vs k=1 | start-up s |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            mps = "yes" if r.get("mps") else "no"
            if r.get("images_per_s"):
                lines.append(
                    f"| {r['k']} | {mps} | {r['images_per_s']:.0f} | {r['per_run_images_per_s']:.0f} | "
                    f"{_num(r.get('speedup'), '.2f')}x | {_num(r['startup_s'], '.1f')} |"
                )
            else:
                lines.append(f"| {r['k']} | {mps} | {_why(r)} | | | |")
    elif name == "precision" and rows:
        tf32 = phase.get("info", {}).get("tf32")
        info = phase.get("info", {})
        lines += [
            f"PreResNet-20 + scale NL on the real CIFAR-10 sample ({_num(info.get('train_images'))} training "
            f"images in full batches of {_num(info.get('batch'))}; 500 validation), compiled as "
            f"experiments/gpu.yaml; TF32 {tf32} (off: fp32 is fp32). Noise floor: fp32 seed 0 vs seed 1.",
            "",
            "| precision | seed | epochs | val top-1 | val loss | fit s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            if "val_acc1" in r:
                lines.append(
                    f"| {r['precision']} | {r['seed']} | {r['epochs']} | {r['val_acc1']:.4f} | "
                    f"{r['val_loss']:.4f} | {r['fit_s']:.1f} |"
                )
            else:
                lines.append(f"| {r['precision']} | {r['seed']} | {_why(r)} | | | |")
        summary = results.get("precision") or {}
        for metric in ("val_acc1", "val_loss"):
            m = summary.get(metric) or {}
            lines.append(
                f"\n{metric}: bf16 - fp32 (mean over paired seeds) {_num(m.get('bf16_minus_fp32'), '+.4f')}; "
                f"fp32 seed 0 vs seed 1 (noise floor) {_num(m.get('fp32_seed_difference'), '.4f')}: "
                f"{m.get('verdict') or 'no verdict (runs missing)'}."
            )
    elif name == "compile" and rows:
        lines += ["| setting | img/s | warm-up s (compilation included) | CUDA-graph skips |", "|---|---:|---:|---:|"]
        lines += [
            f"| {r['setting']} | {_num(r['images_per_s'])} | {_num(r.get('warmup_s'), '.1f')} | "
            f"{_num(r.get('cudagraph_skips'))} |"
            if r.get("images_per_s")
            else f"| {r['setting']} | {_why(r)} | | |"
            for r in rows
        ]
    elif name == "block" and rows:
        from nlbench.bench.block import BLOCK_HEADER, block_row  # noqa: PLC0415 - torch: only for this section

        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            lines += [f"{dtype}, batch {rows[0]['batch']}:", "", BLOCK_HEADER]
            lines += [block_row(r) for r in rows if r["dtype"] == dtype] + [""]
    if phase.get("where"):
        lines += ["", "```", *phase["where"], "```"]
    return lines + [""]


def markdown(results: dict[str, Any]) -> str:
    info = (results["phases"].get("kernels") or {}).get("info") or {}
    lines = [
        f"# nlbench device check ({'smoke run, ' if results['smoke'] else ''}{results['date']})",
        "",
        f"Machine: {info.get('machine', '–')}; {info.get('cpus', '–')} CPUs; budget {results['budget_s']:.0f} s, "
        f"used {_num(results.get('total_s'), '.0f')} s.",
        "",
        *summary_table(results),
        "",
    ]
    for phase in PHASES:
        lines += phase_lines(results, phase.name)
    lines += ["## Projected CIFAR-10 grid (90 runs x 300 epochs) on this device", ""]
    for key, label in PROJECTION_LABELS.items():
        grid = (results.get("projections") or {}).get(key, {})
        if "hours" in grid:
            packing = (
                f"k = {grid['best_k']} runs per device ({grid['speedup']:.2f}x the throughput of one), "
                if key == "fast"
                else ""
            )
            lines.append(
                f"- {label}: **{grid['hours']:.1f} h**: {packing}50k+10k-image epoch {grid['epoch_s']:.2f} s, "
                f"start-up {grid['startup_s']:.0f} s per run."
            )
        else:
            lines.append(f"- {label}: {grid.get('error', '–')}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlbench bench device-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("device-check"), help="the only folder written to")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (a minute or two)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"seconds for all phases (default {BUDGET_S:.0f}; the smoke run's is generous)",
    )
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.smoke else "cuda")
    if not device.startswith(("cpu", "cuda")):
        print(f"nlbench bench device-check: error: --device {device!r}: expected cpu or cuda", file=sys.stderr)
        return 2
    if args.budget is not None and args.budget <= 0:
        print("nlbench bench device-check: error: --budget must be positive", file=sys.stderr)
        return 2
    if device.startswith("cuda") and not _cuda_available():
        print(
            "nlbench bench device-check: error: no CUDA device visible; --smoke runs the check on the CPU",
            file=sys.stderr,
        )
        return 2
    results = run_check(args.out, smoke=args.smoke, device=device, budget_s=args.budget)
    print("\n".join(summary_table(results)))
    print(f"wrote {args.out / RESULTS_JSON} and {args.out / RESULTS_MD}", file=sys.stderr)
    return exit_code(results)


def exit_code(results: dict[str, Any]) -> int:
    """0 when no phase failed (a full check may leave phases at their deadline: their rows are kept, and say so);
    the smoke run, which has time to spare, passes only when every phase ran to its end."""
    statuses = [phase["status"] for phase in results["phases"].values()]
    if "error" in statuses or (results["smoke"] and set(statuses) != {"done"}):
        return 1
    return 0


def _cuda_available() -> bool:
    """Asked in a process of its own: the check's own process keeps no CUDA state (each phase has the GPU)."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


if __name__ == "__main__":
    raise SystemExit(main())
