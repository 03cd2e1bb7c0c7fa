"""The sweep runner against a fake `nlbench fit` (this file run as a script), so runs take milliseconds.

The fake honours the fit contract the sweep relies on (docs/design.md): ``--run_dir``, ``--ckpt_path last``,
refusing a run directory with checkpoints otherwise, result.json (finished / failed / diverged) and
checkpoints/last.ckpt after every epoch. ``fake.*`` overrides steer it: mode (ok, fail, fail_result, diverge,
killed, oom_when_packed: fails out of memory when given a memory cap), epochs, sleep (per epoch), hang_once=PATH
(the first fit to find no PATH writes its pid there and hangs after its first checkpoint until killed). Every call
is appended to ``<run_dir>/calls.jsonl`` so the tests can see how each run was launched.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FAKE_FIT = [sys.executable, str(Path(__file__).resolve()), "fit"]


# ---- the fake `nlbench fit` -----------------------------------------------------------------------------------------
def _parse_cli(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        key, sep, value = arg[2:].partition("=")
        opts[key] = value if sep else next(it)
    return opts


def fake_fit(argv: list[str]) -> int:
    from nlbench.io import atomic_write_json  # lean on purpose: no torch, starts in milliseconds

    opts = _parse_cli(argv)
    run_dir = Path(opts["run_dir"])
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    resumed = opts.get("ckpt_path") == "last"
    if ckpt.exists() and not resumed:
        print(f"nlbench fit: error: --run_dir {run_dir} already holds checkpoints", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    start = json.loads(ckpt.read_text())["epoch"] + 1 if resumed and ckpt.exists() else 0
    call = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "ckpt_path": opts.get("ckpt_path"),
        "start_epoch": start,
        "t0": time.time(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "argv": argv,
        "memory_fraction": os.environ.get("NLBENCH_CUDA_MEMORY_FRACTION"),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "compile_threads": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS"),
        "mps_pipe": os.environ.get("CUDA_MPS_PIPE_DIRECTORY"),
        "launcher": sorted(k for k in os.environ if k.startswith("SLURM_") or k == "MASTER_PORT"),
    }
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY")
    if pipe and os.path.exists(os.path.join(pipe, "server_devices")):
        # An MPS client: its CUDA_VISIBLE_DEVICES indexes the server's devices, which the server renumbered 0..n-1
        # from the daemon's own CUDA_VISIBLE_DEVICES (all 8 GPUs of this fake node when the daemon had none).
        with open(os.path.join(pipe, "server_devices")) as f:
            server = f.read().strip()
        devices = [str(i) for i in range(8)] if server == "*" else server.split(",")
        try:
            call["mps_devices"] = [devices[int(i)] for i in (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")]
        except (ValueError, IndexError):
            print("RuntimeError: CUDA error: invalid device ordinal", file=sys.stderr)
            return 1
    mode, epochs = opts.get("fake.mode", "ok"), int(opts.get("fake.epochs", "2"))
    seed = int(opts.get("seed_everything", "0"))
    acc = float(opts.get("fake.acc", "0.5")) + 0.01 * seed
    # result.json in the record's layout (nlbench.record.RunRecord), written by hand: importing it pulls in torch.
    metrics = {
        "val/acc1_best": acc,
        "val/acc1": acc - 0.01,
        "val/acc5_at_best": 0.9,
        "val/acc5": 0.89,
        "best_epoch": epochs - 1,
        "epochs": epochs,
        "global_step": 10 * epochs,
        "time_s": 2.0 * epochs,
        "train/images_per_s": 100.0,
        "params": 1000,
        "nl_params": 100,
    }
    result = {
        "status": "finished",
        "run_name": run_dir.name,
        "group": "",
        "hparams": {"seed": seed},
        "metrics": metrics,
        "error": None,
    }
    print(f"fake fit {run_dir.name} from epoch {start}", flush=True)
    try:
        if mode == "fail":
            print("Traceback (most recent call last):\nRuntimeError: boom from the fake fit", file=sys.stderr)
            return 1
        if mode == "killed":  # e.g. by the OOM killer: no result, no traceback
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "oom_when_packed" and os.environ.get("NLBENCH_CUDA_MEMORY_FRACTION"):  # over its cap
            from nlbench.out_of_memory import message  # torch-free: the line the real fit records

            error = message(0.4, 0.9, packed=True)
            atomic_write_json(run_dir / "result.json", {**result, "status": "failed", "error": error})
            return 1
        if mode == "fail_result":
            atomic_write_json(run_dir / "result.json", {**result, "status": "failed", "error": "ValueError: bad"})
            return 1
        for epoch in range(start, epochs):
            time.sleep(float(opts.get("fake.sleep", "0")))
            ckpt.parent.mkdir(exist_ok=True)
            atomic_write_json(ckpt, {"epoch": epoch})
            if mode == "diverge":
                atomic_write_json(
                    run_dir / "result.json",
                    {**result, "status": "diverged", "metrics": {**metrics, "epochs": epoch + 1}},
                )
                return 0
            hang_marker = Path(opts.get("fake.hang_once", run_dir / "no-hang"))
            if "fake.hang_once" in opts and not resumed and not hang_marker.exists():
                hang_marker.write_text(str(os.getpid()))
                time.sleep(60)  # "hangs" until killed; bounded so a broken test cannot stall forever
                return 3
        atomic_write_json(run_dir / "result.json", result)
        return 0
    finally:
        call["t1"] = time.time()
        with open(run_dir / "calls.jsonl", "a") as f:
            f.write(json.dumps(call) + "\n")


def drive_sweep(spec_path: str) -> int:
    """A sweep process for the kill test: the real runner with the fake fit, on the CPU slot."""
    from nlbench.sweep import Slot, load_spec, run_sweep

    run_sweep(load_spec(spec_path), slots=[Slot()], fit_command=FAKE_FIT, progress=False, poll_interval_s=0.05)
    return 0


if __name__ == "__main__":
    sys.exit(fake_fit(sys.argv[2:]) if sys.argv[1] == "fit" else drive_sweep(sys.argv[2]))

# ---- the tests ----------------------------------------------------------------------------------------------------
import pytest  # noqa: E402
import yaml  # noqa: E402

from nlbench import results  # noqa: E402
from nlbench.report import collect  # noqa: E402
from nlbench.runlock import RunLock  # noqa: E402
from nlbench.sweep import Slot, SweepSpec, load_spec, plan_slots, run_sweep  # noqa: E402
from nlbench.sweep.runner import SweepDirError, claim_path, fit_command_of, plan, run_dir_of  # noqa: E402


def write_spec(tmp_path: Path, body: dict[str, Any]) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text("trainer: {}\n")
    spec = tmp_path / "sweep.yaml"
    spec.write_text(json.dumps({"name": "t", "base": "base.yaml", "output_dir": str(tmp_path / "out"), **body}))
    return spec


def calls(spec: SweepSpec, run_id: str) -> list[dict[str, Any]]:
    path = spec.output_dir / "runs" / run_id / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sweep(spec: SweepSpec, **kwargs: Any) -> list[dict[str, Any]]:
    return run_sweep(spec, fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02, **kwargs)


def test_outcomes_are_recorded_and_a_rerun_only_retries_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "overrides": {"fake.epochs": 2},
                "axes": {"seed_everything": [0, 1, 2]},
                "points": [{"fake.mode": m} for m in ("fail", "fail_result", "diverge", "killed")],
            },
        )
    )
    runs = spec.expand()
    rows = sweep(spec, slots=[Slot()])
    # The progress lines name each outcome, the one the fit recorded itself included (this process still held the
    # run's claim then, which the reader would have read as "running").
    ends = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert ends == ["finished"] * 3 + ["failed", "failed", "diverged", "failed"]
    by_id = {row["run_id"]: row for row in rows}
    assert [row["status"] for row in rows] == ["finished"] * 3 + ["failed", "failed", "diverged", "failed"]
    assert by_id[runs[3].run_id]["error"] == "RuntimeError: boom from the fake fit"  # last line of its log
    assert by_id[runs[4].run_id]["error"] == "ValueError: bad"  # the fit's own result.json
    assert by_id[runs[5].run_id]["error"] is None and by_id[runs[5].run_id]["epochs"] == 1
    assert by_id[runs[6].run_id]["error"] == "killed by SIGKILL"
    assert by_id[runs[1].run_id]["val/acc1_best"] == pytest.approx(0.51) and rows[0]["seed"] == 0
    # CPU slot: sequential runs, told to use the CPU.
    starts = sorted((c["t0"], c["t1"]) for run in runs for c in calls(spec, run.run_id))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(starts, starts[1:]))
    assert "--trainer.accelerator=cpu" in calls(spec, runs[0].run_id)[0]["argv"]

    # Tables: one row per run, and mean/sample-std over seeds for the seed-swept configuration.
    with open(spec.output_dir / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in csv_rows] == [run.run_id for run in runs]
    assert list(csv_rows[0])[:4] == ["run_id", "status", "seed", "mode"]  # then the recipe and the metrics
    assert {"optimizer", "lr", "limit_train_batches", "val/acc1_best", "test/acc1_at_best_val"} <= set(csv_rows[0])
    assert [r["epochs"] for r in csv_rows[:3]] == ["2", "2", "2"]  # whole numbers, though failed runs have none
    # One summarize: statistics over seeds are the report's, computed from the same table.
    assert not (spec.output_dir / "summary.json").exists() and not (spec.output_dir / "summary.csv").exists()
    summary = collect.summarize(collect.load_sweep(spec.output_dir))
    grid = next(s for s in summary if s["mode"] is None)
    assert grid["n"] == 3 and grid["val/acc1_best_mean"] == pytest.approx(0.51)
    assert grid["val/acc1_best_std"] == pytest.approx(0.01)  # sample std (n - 1) of 0.50, 0.51, 0.52
    singles = [s for s in summary if s["mode"] is not None]
    assert [(s["n"], s["n_unfinished"], s["val/acc1_best_std"]) for s in singles] == [(0, 1, None)] * 4

    # Re-running: finished and diverged runs are skipped, failed ones retried; rows stay unique.
    rows = sweep(spec, slots=[Slot()])
    assert [len(calls(spec, run.run_id)) for run in runs] == [1, 1, 1, 2, 2, 1, 0]  # "killed" never logs a call
    assert (run_dir_of(spec, runs[6]) / "stdout.log").read_text().count("[nlbench sweep]") == 2
    assert sorted(r["run_id"] for r in rows) == sorted(run.run_id for run in runs)
    assert yaml.safe_load((spec.output_dir / "sweep.yaml").read_text()) == spec.as_dict()


def test_gpu_slots_run_concurrently_and_are_pinned(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "overrides": {"fake.epochs": 1, "fake.sleep": 0.4},
                "axes": {"seed_everything": [0, 1, 2, 3, 4]},
                "devices_per_run": 2,
            },
        )
    )
    slots = plan_slots(["0", "1", "2", "3", "4"], spec.devices_per_run)  # 5 simulated GPUs -> 2 slots of 2
    rows = sweep(spec, slots=slots)
    assert {row["status"] for row in rows} == {"finished"}
    launched = [calls(spec, run.run_id)[0] for run in spec.expand()]
    assert {c["cuda"] for c in launched} == {"0,1", "2,3"}
    for c in launched:
        assert {"--trainer.accelerator=gpu", "--trainer.devices=2", "--trainer.strategy=ddp"} <= set(c["argv"])
    pairs = [(a, b) for i, a in enumerate(launched) for b in launched[i + 1 :]]
    overlaps = [(a, b) for a, b in pairs if a["t0"] < b["t1"] and b["t0"] < a["t1"]]
    assert overlaps, "two slots should run two runs at once"
    assert all(a["cuda"] != b["cuda"] for a, b in overlaps)  # never two runs on the same GPUs
    for c in launched:  # never more than 2 at once
        assert sum(o["t0"] < c["t0"] < o["t1"] for o in launched) <= 1


def test_max_runs_and_resume_of_an_interrupted_run(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, {"overrides": {"fake.epochs": 3}, "axes": {"seed_everything": [0, 1]}}))
    first, second = spec.expand()
    # An interrupted attempt: a checkpoint after epoch 0 and no result.
    ckpt = run_dir_of(spec, first) / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text(json.dumps({"epoch": 0}))
    assert "--ckpt_path=last" in fit_command_of(spec, first, Slot(), resume=True)
    rows = sweep(spec, slots=[Slot()], max_runs=1)
    assert [row["status"] for row in rows] == ["finished", "new"]
    (call,) = calls(spec, first.run_id)
    assert call["ckpt_path"] == "last" and call["start_epoch"] == 1
    rows = sweep(spec, slots=[Slot()])
    assert [row["status"] for row in rows] == ["finished", "finished"]
    assert calls(spec, second.run_id)[0]["ckpt_path"] is None


@pytest.mark.parametrize("content", [b'{"status": "finished", "error": "\xff"}', b'["a list, not a record"]'])
def test_an_unreadable_result_json_is_moved_aside_not_run_over(tmp_path: Path, content: bytes) -> None:
    spec = load_spec(write_spec(tmp_path, {"overrides": {"fake.epochs": 1}, "axes": {"seed_everything": [0, 1]}}))
    first, _ = spec.expand()
    run_dir = run_dir_of(spec, first)
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_bytes(content)
    [(_, state), _] = plan(spec, [first, spec.expand()[1]])
    assert state.status == "unreadable" and state.action == "run" and "result.json" in state.error
    rows = sweep(spec, slots=[Slot()])
    assert [row["status"] for row in rows] == ["finished", "finished"]
    assert (run_dir / "result.json.unreadable").read_bytes() == content  # kept for a person to look at
    assert "moved to result.json.unreadable" in (run_dir / "stdout.log").read_text()
    (run_dir / "result.json").write_bytes(content)  # again: the first one aside is never overwritten
    (run_dir / "calls.jsonl").unlink()
    sweep(spec, slots=[Slot()])
    assert (run_dir / "result.json.unreadable-2").read_bytes() == content and len(calls(spec, first.run_id)) == 1


def test_two_sweep_processes_on_one_directory_run_each_run_once(tmp_path: Path) -> None:
    spec_path = write_spec(
        tmp_path, {"overrides": {"fake.epochs": 1, "fake.sleep": 0.3}, "axes": {"seed_everything": list(range(6))}}
    )
    spec = load_spec(spec_path)
    sweepers = [subprocess.Popen([sys.executable, __file__, "sweep", str(spec_path)]) for _ in range(2)]
    try:
        assert [p.wait(timeout=60) for p in sweepers] == [0, 0]
    finally:
        for p in sweepers:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    runs = spec.expand()
    assert [len(calls(spec, run.run_id)) for run in runs] == [1] * 6  # never started twice
    assert {calls(spec, run.run_id)[0]["ppid"] for run in runs} == {p.pid for p in sweepers}  # both worked
    rows = json.loads((spec.output_dir / "results.json").read_text())
    assert [row["status"] for row in rows] == ["finished"] * 6  # the last writer saw every run


def test_a_dead_owners_run_is_resumed_by_a_sweep_still_running(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path, {"overrides": {"fake.epochs": 2, "fake.sleep": 0.4}, "axes": {"seed_everything": [0, 1, 2]}}
        )
    )
    first = spec.expand()[0]
    ckpt = run_dir_of(spec, first) / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text(json.dumps({"epoch": 0}))
    code = (
        "import sys, time; from nlbench.runlock import RunLock; "
        "RunLock(sys.argv[1], path=sys.argv[2]).acquire(); print('ok', flush=True); time.sleep(60)"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir_of(spec, first)), str(claim_path(spec, first))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ok"
        with pytest.raises(Exception, match="in use"):  # the claim is held: nobody else may take the run
            RunLock(run_dir_of(spec, first), path=claim_path(spec, first)).acquire(timeout_s=0)
        import threading

        threading.Timer(0.3, owner.kill).start()  # the owner dies while this sweep runs the other runs
        rows = sweep(spec, slots=[Slot()], rescan_s=0.1)
    finally:
        owner.kill()
        owner.wait()
    assert [row["status"] for row in rows] == ["finished"] * 3
    (call,) = calls(spec, first.run_id)
    assert (call["ckpt_path"], call["start_epoch"]) == ("last", 1)  # resumed from the dead owner's checkpoint


def test_index_runs_exactly_the_chosen_points_and_status_shows_every_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nlbench.sweep_command import parse_index, print_status

    assert parse_index("0-2,5, 4", 6) == [0, 1, 2, 4, 5]
    for bad, message in (
        ("7", "7 is out of range; the sweep has 6 runs"),
        ("2-1", "increasing range"),
        ("a", "'a' is not an index"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_index(bad, 6)
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "overrides": {"fake.epochs": 1},
                "axes": {"seed_everything": [0, 1, 2]},
                "points": [{"fake.mode": "fail"}],
            },
        )
    )
    runs = spec.expand()
    rows = sweep(spec, slots=[Slot()], runs=runs, todo=[runs[i] for i in parse_index("1,3", 4)])
    assert [len(calls(spec, run.run_id)) for run in runs] == [0, 1, 0, 1]  # what an array task with --index does
    assert [row["status"] for row in rows] == ["new", "finished", "new", "failed"]  # the table has every run
    claim = RunLock(run_dir_of(spec, runs[2]), path=claim_path(spec, runs[2]), command="nlbench sweep (SLURM job 7_2)")
    capsys.readouterr()
    with claim:
        print_status(spec, runs)
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["pending", runs[0].run_id, "new"]
    assert out[2].split() == ["finished", runs[1].run_id, "best", "val", "acc1", "0.5100"]
    assert out[3].split()[:5] == ["running", runs[2].run_id, "pid", str(os.getpid()), "on"]
    assert out[3].endswith("nlbench sweep (SLURM job 7_2)")  # where it runs, across jobs
    assert out[4].split(None, 2) == ["failed", runs[3].run_id, "RuntimeError: boom from the fake fit"]
    assert out[5] == "1 pending, 1 finished, 1 running, 1 failed"
    assert calls(spec, runs[2].run_id) == []  # --status starts nothing


def test_a_run_whose_directory_a_fit_holds_is_left_alone(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, {"overrides": {"fake.epochs": 1}, "axes": {"seed_everything": [0, 1]}}))
    first, second = spec.expand()
    with RunLock(run_dir_of(spec, first), command="nlbench fit"):  # e.g. `nlbench fit --run_dir ...` by hand
        rows = sweep(spec, slots=[Slot()])
        live = results.load(spec.output_dir).set_index("run_id")["status"]
    assert [row["status"] for row in rows] == ["unfinished", "finished"]  # the export never says running
    assert live[first.run_id] == "running" and live[second.run_id] == "finished"  # the reader asks the lock
    assert calls(spec, first.run_id) == [] and len(calls(spec, second.run_id)) == 1


def test_a_spec_cannot_overwrite_another_sweeps_directory(tmp_path: Path) -> None:
    """Issue 20 item 12: `output_dir` (or a name leading) into another sweep's directory, and --max-runs 0 on it."""
    victim = load_spec(write_spec(tmp_path, {"overrides": {"fake.epochs": 1}, "axes": {"seed_everything": [0, 1]}}))
    sweep(victim, slots=[Slot()])
    (victim.output_dir / "summary.csv").write_text("kept\n")  # e.g. an older version's table, or the user's
    before = {p.name: p.read_bytes() for p in victim.output_dir.iterdir() if p.is_file()}
    attacker_dir = tmp_path / "attacker"
    attacker_dir.mkdir()
    attacker = load_spec(
        write_spec(
            attacker_dir, {"name": "other", "output_dir": str(victim.output_dir), "axes": {"seed_everything": [7]}}
        )
    )
    with pytest.raises(SweepDirError, match="holds another sweep"):
        sweep(attacker, slots=[Slot()], max_runs=0)
    from nlbench.sweep_command import main

    assert main(["--config", str(attacker_dir / "sweep.yaml"), "--max-runs", "0"]) == 2
    after = {p.name: p.read_bytes() for p in victim.output_dir.iterdir() if p.is_file()}
    assert after == before  # results.csv/json, sweep.yaml and summary.csv untouched
    # The same sweep, extended by a seed, is the same sweep: allowed.
    grown = load_spec(write_spec(tmp_path, {"overrides": {"fake.epochs": 1}, "axes": {"seed_everything": [0, 1, 2]}}))
    assert [row["status"] for row in sweep(grown, slots=[Slot()])] == ["finished"] * 3
    # A directory that is not a sweep's is not taken over either.
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    with pytest.raises(SweepDirError, match="not a sweep directory"):
        sweep(
            load_spec(write_spec(tmp_path, {"output_dir": str(elsewhere), "axes": {"seed_everything": [0]}})),
            slots=[Slot()],
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="optional: needs Linux (PR_SET_PDEATHSIG)")
def test_kill_9_mid_run_then_rerun_completes_without_duplicates(tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    overrides = {"fake.epochs": 2, "fake.hang_once": str(marker)}
    spec_path = write_spec(tmp_path, {"overrides": overrides, "axes": {"seed_everything": [0, 1, 2]}})
    spec = load_spec(spec_path)
    runs = spec.expand()
    sweeper = subprocess.Popen([sys.executable, __file__, "sweep", str(spec_path)], start_new_session=True)
    try:
        _wait_for(marker.exists, 60, "the first run to hang after its first checkpoint")
        child = int(marker.read_text())
        os.kill(sweeper.pid, signal.SIGKILL)  # the sweep alone: its child must not be left running
        sweeper.wait(timeout=10)
        _wait_for(lambda: not _alive(child), 10, "the orphaned fit process to exit")
    finally:  # whatever happened, leave no process of this test behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweeper.pid, signal.SIGKILL)
    # The export never claims a dead run alive (it said "running" until the next sweep); the reader says why.
    assert json.loads((spec.output_dir / "results.json").read_text())[0]["status"] == "unfinished"
    assert "running" not in (spec.output_dir / "results.csv").read_text()
    assert results.load(spec.output_dir)["status"].tolist()[0] == "interrupted"

    rows = sweep(spec, slots=[Slot()])
    assert [row["status"] for row in rows] == ["finished"] * 3
    assert len({row["run_id"] for row in rows}) == 3
    attempts = calls(spec, runs[0].run_id)
    assert [(c["ckpt_path"], c["start_epoch"]) for c in attempts][-1] == ("last", 1)  # resumed from its checkpoint
    assert all(len(calls(spec, run.run_id)) == 1 for run in runs[1:])
    log = (run_dir_of(spec, runs[0]) / "stdout.log").read_text()
    assert log.count("[nlbench sweep]") == 2  # both attempts in one log


def test_sigterm_stops_the_runs_and_leaves_a_consistent_table(tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    overrides = {"fake.epochs": 2, "fake.hang_once": str(marker)}
    spec_path = write_spec(tmp_path, {"overrides": overrides, "axes": {"seed_everything": [0, 1]}})
    spec = load_spec(spec_path)
    sweeper = subprocess.Popen([sys.executable, __file__, "sweep", str(spec_path)], start_new_session=True)
    try:
        _wait_for(marker.exists, 60, "the first run to hang")
        child = int(marker.read_text())
        sweeper.send_signal(signal.SIGTERM)  # e.g. a batch scheduler ending the job
        sweeper.wait(timeout=20)
        assert not _alive(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweeper.pid, signal.SIGKILL)
    rows = json.loads((spec.output_dir / "results.json").read_text())
    assert [row["status"] for row in rows] == ["unfinished", "new"]  # rebuilt on the way out, nothing "running"
    assert results.load(spec.output_dir)["status"].tolist() == ["interrupted", "new"]
