"""`runs_per_device: k`: k concurrent runs per GPU group (simulated GPUs, fake fits) or on the CPU (real fits)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fakecuda import FakeCuda
from test_sweep_runner import FAKE_FIT, calls, write_spec
from tinyfit import OVERRIDES

from nlbench.device_share import CUDA_RESERVE, MEMORY_FRACTION_ENV, DeviceShare, apply_memory_share, memory_fraction
from nlbench.launch import child_env
from nlbench.sweep import Slot, load_spec, plan_slots, run_sweep
from nlbench.sweep.runner import LOG_MARK, run_dir_of
from nlbench.sweep.spec import SweepSpecError, spec_from_dict
from nlbench.sweep_command import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"


# ---- slots ------------------------------------------------------------------------------------------------------
def test_each_gpu_group_is_shared_by_k_slots_round_robin() -> None:
    slots = plan_slots(["0", "1", "2", "3"], devices_per_run=2, runs_per_device=3)
    assert [(s.gpus, s.index) for s in slots] == [
        (("0", "1"), 0),
        (("2", "3"), 0),
        (("0", "1"), 1),
        (("2", "3"), 1),
        (("0", "1"), 2),
        (("2", "3"), 2),
    ]
    assert len(set(slots)) == 6 and slots[2].label == "gpu 0,1 #2/3"
    env = slots[0].env()
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert float(env[MEMORY_FRACTION_ENV]) == pytest.approx((1 - CUDA_RESERVE) / 3)
    assert "--trainer.strategy=ddp" in slots[0].fit_args()  # combined with devices_per_run as before
    assert plan_slots(["0"], 1, 1)[0].env() == {"CUDA_VISIBLE_DEVICES": "0"}  # alone on its GPU: no cap


def test_packed_gpu_runs_split_the_host_cores() -> None:
    """Each of k runs per GPU kept OMP threads = all cores and Inductor's min(32, cores) compile workers."""
    slots = [dataclasses.replace(s, cpus=32) for s in plan_slots(["0", "1"], devices_per_run=1, runs_per_device=4)]
    env = slots[0].env()
    assert (env["OMP_NUM_THREADS"], env["TORCHINDUCTOR_COMPILE_THREADS"]) == ("4", "4")  # 32 cores / 8 runs
    ddp = dataclasses.replace(plan_slots(["0", "1"], devices_per_run=2, runs_per_device=2)[0], cpus=16)
    assert ddp.env()["OMP_NUM_THREADS"] == "4"  # 2 runs x 2 DDP ranks
    assert dataclasses.replace(slots[0], cpus=3).env()["TORCHINDUCTOR_COMPILE_THREADS"] == "1"  # at least one


def test_packed_and_ddp_runs_drop_an_outer_launchers_variables() -> None:
    parent = {
        "PATH": "/bin",
        "SLURM_JOB_ID": "7",
        "SLURM_NTASKS": "1",
        "MASTER_PORT": "29500",
        "RANK": "0",
        "TORCHELASTIC_RUN_ID": "x",
        "NLBENCH_X": "1",
    }
    assert child_env(parent, own_world=True) == {"PATH": "/bin", "NLBENCH_X": "1"}
    packed, ddp, alone = Slot(("0",), 2, 0), Slot(("0", "1")), Slot(("0",))
    for slot in (packed, ddp):
        env = slot.child_env(parent)
        assert not [k for k in env if k.startswith("SLURM_") or k in ("MASTER_PORT", "RANK")]
        assert env["CUDA_VISIBLE_DEVICES"] == ",".join(slot.gpus) and env["PATH"] == "/bin"
    assert alone.child_env(parent)["SLURM_JOB_ID"] == "7"  # a run alone keeps its SLURM job (requeue, signals)
    # ... but never a task's variables, by which Lightning would take the outer SLURM task for its own
    assert (
        {k: v for k, v in alone.child_env(parent).items() if k != "CUDA_VISIBLE_DEVICES"}
        == child_env(parent)
        == {k: v for k, v in parent.items() if k != "SLURM_NTASKS"}
    )


def test_cpu_slots_split_the_cores() -> None:
    slots = plan_slots([], 1, runs_per_device=2)
    assert [s.label for s in slots] == ["cpu #1/2", "cpu #2/2"]
    assert Slot((), 2, 0, cpus=16).env() == {"OMP_NUM_THREADS": "8", "TORCHINDUCTOR_COMPILE_THREADS": "8"}
    assert Slot((), 4, 1, cpus=2).env()["OMP_NUM_THREADS"] == "1"  # never below one thread
    assert Slot().env() == {}  # a run alone keeps the machine's default threads
    with pytest.raises(ValueError, match="runs_per_device must be >= 1"):
        plan_slots([], 1, runs_per_device=0)


def test_spec_key_and_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("trainer: {}\n")
    spec = spec_from_dict({"name": "t", "base": "base.yaml", "axes": {"a.b": [1]}, "runs_per_device": 4}, root=tmp_path)
    assert spec.runs_per_device == 4 and spec.as_dict()["runs_per_device"] == 4
    for bad in (0, True, "2"):
        with pytest.raises(SweepSpecError, match="'runs_per_device' must be a positive integer"):
            spec_from_dict(
                {"name": "t", "base": "base.yaml", "axes": {"a.b": [1]}, "runs_per_device": bad}, root=tmp_path
            )
    path = write_spec(tmp_path, {"axes": {"seed_everything": [0]}})
    assert sweep_main(["--config", str(path), "--runs-per-device", "0"]) == 2
    assert "--runs-per-device must be >= 1, got 0" in capsys.readouterr().err


# ---- the child's memory cap ---------------------------------------------------------------------------------------
def test_memory_cap_is_applied_on_the_runs_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda(monkeypatch, count=2)  # torch's own checks run; only the CUDA runtime is faked
    monkeypatch.delenv(MEMORY_FRACTION_ENV, raising=False)
    assert apply_memory_share(torch.device("cuda", 1)) is None and not cuda.fractions
    monkeypatch.setenv(MEMORY_FRACTION_ENV, f"{memory_fraction(4):.6f}")
    assert apply_memory_share(torch.device("cpu")) is None and not cuda.fractions  # nothing to cap on the CPU

    class Trainer:  # what DeviceShare reads: the device Lightning chose for this rank
        class strategy:  # noqa: N801
            root_device = torch.device("cuda", 1)

    DeviceShare().setup(Trainer(), None, "fit")  # type: ignore[arg-type]
    assert cuda.fractions == {1: pytest.approx(0.225)} and cuda.current == 0  # the current device is put back
    monkeypatch.setenv(MEMORY_FRACTION_ENV, "1.5")
    with pytest.raises(ValueError, match=f"{MEMORY_FRACTION_ENV}='1.5': expected a fraction in"):
        apply_memory_share(torch.device("cuda", 0))


def test_the_fake_keeps_torchs_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCuda(monkeypatch, count=1)
    with pytest.raises(ValueError, match="Expected a torch.device with a specified index"):
        torch.cuda.set_per_process_memory_fraction(0.5, torch.device("cuda"))
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.cuda.set_per_process_memory_fraction(0.5, torch.device("cuda", 3))
    with pytest.raises(TypeError, match="Invalid type for fraction"):
        torch.cuda.set_per_process_memory_fraction(1, 0)


def test_an_index_less_cuda_device_is_the_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the device check's packed children pass (``--device cuda``): it crashed for every k >= 2."""
    cuda = FakeCuda(monkeypatch, count=2)
    cuda.current = 1
    monkeypatch.setenv(MEMORY_FRACTION_ENV, "0.45")
    assert apply_memory_share(torch.device("cuda")) == 0.45 and cuda.fractions == {1: 0.45}


# ---- scheduling, with fake fits -----------------------------------------------------------------------------------
def _overlapping(launched: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pairs = [(a, b) for i, a in enumerate(launched) for b in launched[i + 1 :]]
    return [(a, b) for a, b in pairs if a["t0"] < b["t1"] and b["t0"] < a["t1"]]


def test_k_runs_share_one_simulated_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # the sweep inside a SLURM array task
    monkeypatch.setenv("MASTER_PORT", "29500")
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "overrides": {"fake.epochs": 1, "fake.sleep": 0.5},
                "axes": {"seed_everything": [0, 1, 2, 3]},
                "runs_per_device": 2,
            },
        )
    )
    slots = plan_slots(["3"], spec.devices_per_run, spec.runs_per_device)
    rows = run_sweep(spec, slots=slots, fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02)
    assert {row["status"] for row in rows} == {"finished"}
    launched = [calls(spec, run.run_id)[0] for run in spec.expand()]
    assert {(c["cuda"], c["memory_fraction"]) for c in launched} == {("3", f"{0.9 / 2:.6f}")}
    assert {c["threads"] for c in launched} == {str(max(1, len(os.sched_getaffinity(0)) // 2))}
    assert all(c["compile_threads"] == c["threads"] for c in launched)
    assert _overlapping(launched), "two runs should share the GPU at once"
    assert all(c["launcher"] == [] for c in launched)  # never the outer job's SLURM_* or MASTER_PORT
    for c in launched:  # never more than k = 2 at once
        assert sum(o["t0"] < c["t0"] < o["t1"] for o in launched) <= 1


def test_k_runs_on_the_cpu_get_their_share_of_threads(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(tmp_path, {"overrides": {"fake.epochs": 1, "fake.sleep": 0.5}, "axes": {"seed_everything": [0, 1]}})
    )
    slots = [Slot((), 2, i, cpus=8) for i in range(2)]
    run_sweep(spec, slots=slots, fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02)
    launched = [calls(spec, run.run_id)[0] for run in spec.expand()]
    assert [c["threads"] for c in launched] == ["4", "4"] and _overlapping(launched)
    assert all("--trainer.accelerator=cpu" in c["argv"] for c in launched)


# ---- real fits on the CPU -----------------------------------------------------------------------------------------
# Two epochs: the slow test compares both epochs' losses of the packed runs with the sequential ones.
TINY = {
    **OVERRIDES,
    "trainer.max_epochs": 2,
    "trainer.limit_train_batches": 3,
    "trainer.limit_val_batches": 2,
    "model.nl_stats_every_n_steps": 0,
}


def _real_sweep(tmp_path: Path, name: str, runs_per_device: int) -> tuple[Any, list[dict[str, str]]]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "base": str(DEMO),
                "output_dir": str(tmp_path / name),
                "overrides": TINY,
                "axes": {"seed_everything": [3, 4]},
            }
        )
    )
    assert sweep_main(["--config", str(path), "--devices", "cpu", "--runs-per-device", str(runs_per_device)]) == 0
    spec = load_spec(path)
    with open(spec.output_dir / "results.csv") as f:
        return spec, list(csv.DictReader(f))


def _span(spec: Any, run: Any) -> tuple[float, float]:
    """(start, end) of a real run: the sweep's launch line in its log, and its result's time of writing."""
    run_dir = run_dir_of(spec, run)
    launch = next(ln for ln in (run_dir / "stdout.log").read_text().splitlines() if ln.startswith(LOG_MARK))
    start = datetime.fromisoformat(launch.split()[2]).timestamp()
    end = datetime.fromisoformat(json.loads((run_dir / "result.json").read_text())["written_at"]).timestamp()
    return start, end


def _losses(spec: Any, run: Any) -> list[str]:
    with open(run_dir_of(spec, run) / "metrics.csv") as f:
        return [row["val/loss"] for row in csv.DictReader(f) if row.get("val/loss")]


def test_two_real_fits_run_at_once_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec, rows = _real_sweep(tmp_path, "packed", 2)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    (a0, a1), (b0, b1) = (_span(spec, run) for run in spec.expand())
    assert b0 < a1 and a0 < b1, "the two runs should overlap in time"
    for run in spec.expand():
        assert "cpu #" in (run_dir_of(spec, run) / "stdout.log").read_text()


@pytest.mark.slow
def test_packed_seeded_results_equal_sequential_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    # Same threads per run in both sweeps (the CPU's float reductions depend on the thread count, not on packing).
    monkeypatch.setenv("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
    sequential, seq_rows = _real_sweep(tmp_path, "sequential", 1)
    packed, packed_rows = _real_sweep(tmp_path, "packed", 2)
    metrics = ("status", "best_val_acc1", "final_val_acc1", "final_val_acc5", "epochs")
    assert [[r[m] for m in metrics] for r in packed_rows] == [[r[m] for m in metrics] for r in seq_rows]
    for run_s, run_p in zip(sequential.expand(), packed.expand()):
        assert _losses(packed, run_p) == _losses(sequential, run_s) and len(_losses(packed, run_p)) == 2


# ---- out of memory --------------------------------------------------------------------------------------------------
def test_a_packed_run_out_of_memory_is_retried_once_alone_on_its_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retried with the same 0.9/k cap on every rerun, such a run could never finish: it gets the GPU to itself."""
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "overrides": {"fake.epochs": 1, "fake.sleep": 0.3},
                "axes": {"seed_everything": [0, 1, 2]},
                "points": [{"fake.mode": "oom_when_packed", "seed_everything": 9}],
                "runs_per_device": 2,
            },
        )
    )
    runs = spec.expand()
    rows = run_sweep(spec, slots=plan_slots(["0"], 1, 2), fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02)
    assert [row["status"] for row in rows] == ["finished"] * 4
    big = calls(spec, runs[3].run_id)
    assert [c["memory_fraction"] for c in big] == [f"{0.9 / 2:.6f}", None]  # packed, then alone without a cap
    others = [c for run in runs[:3] for c in calls(spec, run.run_id)]
    assert not [c for c in others if c["t0"] < big[1]["t1"] and big[1]["t0"] < c["t1"]]  # nothing beside it
    assert "ran out of memory with 2 runs on gpu 0 #" in capsys.readouterr().out


def test_a_run_out_of_memory_alone_is_recorded_with_its_cap_and_advice(tmp_path: Path) -> None:
    from nlbench.out_of_memory import is_out_of_memory, message

    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "overrides": {"fake.epochs": 1, "fake.mode": "oom_when_packed"},
                "axes": {"seed_everything": [0]},
                "runs_per_device": 2,
            },
        )
    )
    slots = [dataclasses.replace(s, shared_by=2) for s in plan_slots(["0"], 1, 1)]  # a cap, but no group to free
    [row] = run_sweep(spec, slots=slots, fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02)
    assert row["status"] == "failed" and row["error"] == message(0.4, 0.9, packed=True)
    assert row["error"].startswith("out of memory (cap 0.4 GiB of 0.9 GiB): lower runs_per_device")
    assert len(calls(spec, spec.expand()[0].run_id)) == 1  # one group slot of two is not a whole device: no retry
    assert is_out_of_memory("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert not is_out_of_memory("RuntimeError: boom") and not is_out_of_memory(None)


def test_the_fit_records_a_cuda_out_of_memory_error_with_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from nlbench import callbacks, out_of_memory

    FakeCuda(monkeypatch, count=1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 80 * 2**30}))
    monkeypatch.setenv(MEMORY_FRACTION_ENV, f"{memory_fraction(4):.6f}")
    assert out_of_memory.describe(torch.device("cuda")) == out_of_memory.message(18.0, 80.0, packed=True)
    assert "cap 18.0 GiB of 80.0 GiB" in out_of_memory.describe(torch.device("cuda", 0))
    monkeypatch.delenv(MEMORY_FRACTION_ENV)
    assert out_of_memory.describe(torch.device("cuda")).startswith("out of memory (no cap, 80.0 GiB): lower data.")
    assert out_of_memory.is_out_of_memory_exception(torch.OutOfMemoryError("CUDA out of memory."))
    assert callbacks.out_of_memory is out_of_memory  # what RunResult.on_exception records through
