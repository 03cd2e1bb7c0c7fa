"""`nlbench sweep --launcher slurm` on a real one-node SLURM cluster (tests/slurmcluster.py), and its dry run.

The cluster's daemons run as root in a temporary directory; without root or the packages (`.ci/run` installs
slurm-wlm and munge) the cluster tests skip with one line. The node declares 2 CPUs and each task takes one, and 4
fake GPUs (gres), which SLURM hands out to tasks that ask for them as on a GPU node.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import slurmcluster
import torch
import yaml
from tinyfit import OVERRIDES

from nlbench.record import read_record
from nlbench.sweep.runner import LOG_MARK, run_dir_of
from nlbench.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"
TINY = OVERRIDES
# What differs between two equal runs: when and where they ran, and how fast.
VOLATILE = {"written_at", "time_s", "train/images_per_s", "host", "threads", "device", "wandb_id"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    try:
        try:
            c = slurmcluster.start(tmp_path_factory.mktemp("slurm"), cpus=2, gpus=4)
        except slurmcluster.ClusterUnavailable as err:
            if "mknod" not in str(err):
                raise
            c = slurmcluster.start(tmp_path_factory.mktemp("slurm"), cpus=2)  # no fake GPUs: their test skips
    except slurmcluster.ClusterUnavailable as err:
        pytest.skip(f"optional: needs a local SLURM cluster ({err})")
    yield c
    c.stop()


def write_spec(tmp_path: Path, name: str, **body: Any) -> Path:
    path = tmp_path / f"{name}.yaml"
    spec = {"name": name, "base": str(DEMO), "output_dir": str(tmp_path / name), **body}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def nlbench_sweep(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "nlbench", "sweep", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def job_of(out: str) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("submitted job "))
    return line.split()[2].rstrip(":")


def records(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    spec = load_spec(sweep_dir / "sweep.yaml")
    out = {}
    for run in spec.expand():
        record = read_record(run_dir_of(spec, run))
        assert record is not None, run.run_id
        out[run.run_id] = {k: v for k, v in record.flat().items() if k not in VOLATILE}
    return out


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_dry_run_prints_the_sbatch_script_without_slurm(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "dry",
        overrides=TINY,
        axes={"seed_everything": [0, 1, 2]},
        slurm={"time": "2:00:00", "partition": "gpu", "additional": {"constraint": "a100"}},
    )
    done = nlbench_sweep(
        {**os.environ, "PATH": os.path.dirname(sys.executable)},
        "--config",
        str(spec),
        "--launcher",
        "slurm",
        "--dry-run",
        "--slurm.cpus_per_task",
        "4",
        "--index",
        "1-2",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "would submit 2 run(s) as 2 array task(s)" in out
    for line in (
        "#SBATCH --array=0-1%2",
        "#SBATCH --time=120",
        "#SBATCH --partition=gpu",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --constraint=a100",
        "#SBATCH --signal=USR2@90",
        f"#SBATCH --output={tmp_path / 'dry' / 'slurm'}/%A_%a/%A_%a_0_log.out",
    ):
        assert line in out
    assert not (tmp_path / "dry").exists()  # a dry run writes nothing


def test_bad_slurm_options_exit_2_with_one_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "bad", overrides=TINY, axes={"seed_everything": [0]})
    for args, message in (
        (["--slurm.time", "soon"], "--slurm.time: 'soon' is not a SLURM time"),
        ([], "--slurm.time is required"),
        (["--slurm.time", "5", "--slurm.cpus_per_task", "0"], "--slurm.cpus_per_task: must be"),
        (["--slurm.time", "5", "--mps"], "--mps runs a sweep here"),
    ):  # else silently no MPS
        done = nlbench_sweep(dict(os.environ), "--config", str(spec), "--launcher", "slurm", "--dry-run", *args)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def sbatch_arguments(text: str) -> list[str]:
    """The arguments sbatch reads from the rest of one `#SBATCH` line, as its parser does (src/sbatch/opt.c,
    _get_argument): whitespace separates them, ' and " quote, a backslash escapes, an unquoted # ends the line."""
    args: list[str] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return args
        arg, quote = "", ""
        while i < len(text) and (quote or not text[i].isspace()):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                arg, i = arg + text[i + 1], i + 2
                continue
            if quote and c == quote:
                quote = ""
            elif not quote and c in "'\"":
                quote = c
            elif not quote and c == "#":
                return args + [arg] if arg else args
            else:
                arg += c
            i += 1
        args.append(arg)


def script_of(out: str) -> tuple[dict[str, str], list[str]]:
    """The dry run's sbatch script: {option: value} of its #SBATCH lines (each must be exactly one argument), and
    the lines bash runs."""
    script = out[out.index("#!/bin/bash") :]
    options, commands = {}, []
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            (arg,) = sbatch_arguments(line[len("#SBATCH") :])  # one option per line, whatever the values held
            key, _, value = arg.removeprefix("--").partition("=")
            options[key] = value
        elif line.strip() and not line.startswith("#"):
            commands.append(line)
    return options, commands


def test_every_slurm_value_reaches_sbatch_as_one_option(tmp_path: Path) -> None:
    """Issue 26 item 2: the spec's `slurm:` section and --slurm.* values become exactly the options they name; the
    dry run shows each task's `nlbench fit` command lines (not submitit's pickled call) and asks for memory."""
    slurm = {
        "time": "1:00:00",
        "partition": "gpu-long",
        "account": "proj_1",
        "qos": "high",
        "additional": {
            "constraint": "a100|h100",
            "exclude": "node[1-3]",
            "mail-type": "END,FAIL",
            "mail_user": "me@example.org",
            "comment": "nl:scale",
            "requeue": True,
        },
    }
    spec = write_spec(tmp_path, "ok", overrides=TINY, axes={"seed_everything": [0, 1]}, slurm=slurm)
    done = nlbench_sweep(
        dict(os.environ), "--config", str(spec), "--launcher", "slurm", "--dry-run", "--slurm.cpus_per_task", "2"
    )
    assert done.returncode == 0, done.stderr
    options, commands = script_of(done.stdout)
    assert {
        k: options[k]
        for k in (
            "partition",
            "account",
            "qos",
            "constraint",
            "exclude",
            "mail-type",
            "mail-user",
            "comment",
            "requeue",
            "cpus-per-task",
            "time",
            "mem",
        )
    } == {
        "partition": "gpu-long",
        "account": "proj_1",
        "qos": "high",
        "constraint": "a100|h100",
        "exclude": "node[1-3]",
        "mail-type": "END,FAIL",
        "mail-user": "me@example.org",
        "comment": "nl:scale",
        "requeue": "",
        "cpus-per-task": "2",
        "time": "60",
        "mem": "8G",
    }
    assert commands[:2] == ["export PYTHONSAFEPATH=1", "export SUBMITIT_EXECUTOR=slurm"]
    assert len(commands) == 3 and commands[2].startswith("srun ")  # nothing else runs
    assert "each task asks for 8G of memory" in done.stdout
    fits = [line.strip() for line in done.stdout.splitlines() if " -m nlbench fit " in line]
    assert len(fits) == 2 and all(
        line.startswith(f"{sys.executable} -P -m nlbench fit --config {DEMO}") and "--run_dir=" in line for line in fits
    )
    again = nlbench_sweep(
        dict(os.environ), "--config", str(spec), "--launcher", "slurm", "--dry-run", "--slurm.mem", "2000"
    )
    assert script_of(again.stdout)[0]["mem"] == "2000"


@pytest.mark.parametrize(
    ("slurm", "args", "named"),
    [
        ({"additional": {"constraint": "a100\nrm -rf ~"}}, [], "slurm.additional.constraint"),
        ({"partition": "gpu\necho pwned"}, [], "slurm.partition"),
        ({"mem": "4G --export=ALL"}, [], "slurm.mem"),
        ({"additional": {"export": "LD_PRELOAD=/tmp/x.so"}}, [], "export is set by nlbench"),
        ({"additional": {"output": "/home/me/.bashrc"}}, [], "output is set by nlbench"),
        ({"additional": {"error": "/tmp/e"}}, [], "error is set by nlbench"),
        ({"additional": {"chdir": "/"}}, [], "chdir is set by nlbench"),
        ({"additional": {"out": "/tmp/x"}}, [], "out is not an sbatch option"),  # sbatch would take it as --output
        ({"additional": {"constraint\nid": "a"}}, [], "is not an sbatch option name"),
        ({"additional": {"export=LD_PRELOAD": "x"}}, [], "is not an sbatch option name"),
        ({"additional": {"comment": "a 'b' c"}}, [], "slurm.additional.comment"),
        ({"additional": {"partition": "gpu"}}, [], "has its own option: --slurm.partition"),
        ({"bogus\nkey": 1}, [], "unknown slurm key(s) 'bogus\\nkey'"),
        ({}, ["--slurm.partition", "gpu --export=LD_PRELOAD=/tmp/x.so"], "--slurm.partition"),
        ({}, ["--slurm.additional", '{"export": "ALL"}'], "export is set by nlbench"),
        ({}, ["--slurm.account", "a#b"], "--slurm.account"),
    ],
)
def test_a_slurm_option_that_would_not_be_one_sbatch_option_is_refused(
    tmp_path: Path, slurm: dict[str, Any], args: list[str], named: str
) -> None:
    spec = write_spec(tmp_path, "bad", overrides=TINY, axes={"seed_everything": [0]}, slurm={"time": 10, **slurm})
    done = nlbench_sweep(dict(os.environ), "--config", str(spec), "--launcher", "slurm", "--dry-run", *args)
    assert done.returncode == 2, done.stdout[-2000:]
    assert named in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "#SBATCH" not in done.stdout and not (tmp_path / "bad").exists()


def test_a_sweep_submitted_to_slurm_equals_the_same_sweep_run_locally(cluster: Any, tmp_path: Path) -> None:
    axes = {"model.backbone.nl.normalization": ["softmax", "scale"], "seed_everything": [0, 1]}
    spec = write_spec(tmp_path, "grid", overrides=TINY, axes=axes)
    options = ("--launcher", "slurm", "--slurm.time", "10", "--slurm.cpus_per_task", "1", "--slurm.mem", "1G")
    dry = nlbench_sweep(cluster.env, "--config", str(spec), *options, "--dry-run")
    done = nlbench_sweep(cluster.env, "--config", str(spec), *options)
    assert done.returncode == 0, done.stderr
    job = job_of(done.stdout)
    # The dry run printed the very script submitit submitted (sweep/slurm.py renders it with submitit's function).
    (submitted,) = (tmp_path / "grid" / "slurm").glob("*/*_submission.sh")
    assert dry.stdout[dry.stdout.index("#!/bin/bash") :].strip() == submitted.read_text().strip()
    assert "4 run(s) as 4 array task(s)" in done.stdout
    cluster.wait_idle(job, timeout=400)  # a bound, not a target: minutes on a loaded 2-core machine
    sweep_dir = tmp_path / "grid"
    logs = sorted((sweep_dir / "slurm").glob(f"{job}_*/{job}_*_0_log.out"))  # submitit's logs, one per task
    assert [p.parent.name for p in logs] == [f"{job}_{i}" for i in range(4)]
    status = nlbench_sweep(cluster.env, "--config", str(spec), "--status")
    assert status.returncode == 0 and "4 finished" in status.stdout, status.stdout + status.stderr
    for run_dir in (sweep_dir / "runs").iterdir():  # every run exactly once
        assert (run_dir / "stdout.log").read_text().count(LOG_MARK) == 1, run_dir.name
    again = nlbench_sweep(
        cluster.env, "--config", str(spec), "--launcher", "slurm", "--slurm.time", "10", "--slurm.mem", "1G"
    )
    assert again.returncode == 0 and "nothing to submit" in again.stdout  # only pending runs are submitted

    local = nlbench_sweep(
        cluster.env, "--config", str(spec), "--output_dir", str(tmp_path / "local"), "--runs-per-device", "2"
    )
    assert local.returncode == 0, local.stderr
    assert records(sweep_dir) == records(tmp_path / "local")
    results = json.loads((sweep_dir / "results.json").read_text())
    assert [row["status"] for row in results] == ["finished"] * 4


# Requeue by hand runs the same resume path as TERM (SLURM sends SIGTERM to the task): slow, to keep the default
# SLURM tests under 3 minutes on an idle 2-core machine.
@pytest.mark.parametrize(
    "interrupt", ["scancel --signal=TERM", pytest.param("scontrol requeue", marks=pytest.mark.slow)]
)
def test_an_interrupted_array_task_resumes_bit_for_bit(cluster: Any, tmp_path: Path, interrupt: str) -> None:
    # Three epochs of a few batches: long enough to interrupt after the first epoch's checkpoint.
    overrides = {**TINY, "trainer.max_epochs": 3, "trainer.limit_train_batches": 6}
    spec = write_spec(tmp_path, "resume", overrides=overrides, axes={"seed_everything": [3]})
    done = nlbench_sweep(
        cluster.env,
        "--config",
        str(spec),
        "--launcher",
        "slurm",
        "--slurm.time",
        "10",
        "--slurm.cpus_per_task",
        "1",
        "--slurm.mem",
        "1G",
    )  # fmt: skip  (the test node is small)
    assert done.returncode == 0, done.stderr
    job = job_of(done.stdout)
    run_dir = next((tmp_path / "resume" / "runs").iterdir(), None) if (tmp_path / "resume" / "runs").exists() else None
    deadline = time.monotonic() + 300
    while not (run_dir and (run_dir / "checkpoints" / "last.ckpt").exists()):
        assert time.monotonic() < deadline, cluster.run("squeue")
        time.sleep(0.2)
        runs = tmp_path / "resume" / "runs"
        run_dir = next(runs.iterdir(), None) if runs.exists() else None
    assert read_record(run_dir) is None or read_record(run_dir).status == "running"
    cluster.run(*interrupt.split(), job)  # one pending run: submitit submits one plain job, not an array
    cluster.wait_idle(job, timeout=400)  # a bound, not a target: minutes on a loaded 2-core machine
    (task,) = cluster.jobs(job)
    assert task["JobState"] == "COMPLETED" and int(task["Restarts"]) >= 1, task
    log = (run_dir / "stdout.log").read_text()
    assert log.count(LOG_MARK) == 2 and "--ckpt_path=last" in log.split(LOG_MARK)[-1]  # resumed, not restarted

    local = nlbench_sweep(cluster.env, "--config", str(spec), "--output_dir", str(tmp_path / "straight"))
    assert local.returncode == 0, local.stderr
    straight = tmp_path / "straight" / "runs" / run_dir.name
    assert records(tmp_path / "resume") == records(tmp_path / "straight")
    ours, theirs = weights(run_dir), weights(straight)
    assert [k for k in theirs if not torch.equal(ours[k], theirs[k])] == []


# ---- several GPUs per task ---------------------------------------------------------------------------------------
def packed_spec(tmp_path: Path, **body: Any) -> Any:
    from nlbench.sweep.spec import load_spec

    return load_spec(
        write_spec(
            tmp_path, "packed", overrides=TINY, axes={"seed_everything": list(range(10))}, runs_per_device=2, **body
        )
    )


@pytest.mark.parametrize(
    ("given", "devices_per_run", "per_task"),
    [
        ({"gpus_per_task": 2}, 1, 4),
        ({"gres": "gpu:a100:2"}, 1, 4),
        ({"gpus_per_task": 4}, 2, 4),
        ({"gres": "gpu:2", "gpus_per_task": 2}, 1, 4),
        ({}, 1, 1),
    ],
)
def test_a_task_holds_its_gpus_times_runs_per_device_over_devices_per_run(
    tmp_path: Path, given: dict[str, Any], devices_per_run: int, per_task: int
) -> None:
    """A task with 2 GPUs and runs_per_device 2 was given 2 runs: one GPU sat idle."""
    from nlbench.sweep import slurm

    spec = packed_spec(tmp_path, devices_per_run=devices_per_run)
    options = slurm.slurm_options(spec, {"time": "10", **given})
    assert slurm.runs_per_task(spec, options) == per_task
    tasks = slurm.task_runs(spec, spec.expand(), options)
    assert [len(t) for t in tasks] == [per_task] * (10 // per_task) + ([10 % per_task] if 10 % per_task else [])
    if given.get("gres"):
        assert f"#SBATCH --gres={given['gres']}" in slurm.sbatch_script(spec, len(tasks), options)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"gpus_per_task": 3}, "--slurm.gpus_per_task: 3 GPU(s) per task do not split into runs of devices_per_run=2"),
        ({"gres": "gpu:2", "gpus_per_task": 4}, "gives 2 GPU(s) per task but --slurm.gpus_per_task is 4; set one"),
        ({"gres": "gpu:a100"}, "--slurm.gres: 'gpu:a100' names GPUs without a count"),
    ],
)
def test_a_gpu_split_that_leaves_gpus_idle_is_refused(tmp_path: Path, given: dict[str, Any], message: str) -> None:
    from nlbench.sweep import slurm

    with pytest.raises(ValueError, match=re.escape(message)):
        slurm.slurm_options(packed_spec(tmp_path, devices_per_run=2), {"time": "10", **given})


def test_the_array_task_runs_its_pack_at_once_on_its_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's run assignment: its runs, on the slots its visible GPUs give (one slot per run)."""
    from nlbench.sweep import runner, slurm, slurm_task

    spec = packed_spec(tmp_path)
    options = slurm.slurm_options(spec, {"time": "10", "gres": "gpu:2"})
    ids = slurm.task_runs(spec, spec.expand(), options)[1]
    seen: dict[str, Any] = {}
    monkeypatch.setattr("nlbench.sweep.devices.visible_gpus", lambda: ["2", "3"])  # what SLURM's CVD gives the task
    monkeypatch.setattr(
        runner,
        "run_sweep",
        lambda spec, slots, runs, todo, progress: seen.update(slots=slots, todo=[r.run_id for r in todo]) or [],
    )
    slurm_task.ArrayTask(spec, ids)()
    assert seen["todo"] == ids and len(seen["slots"]) == len(ids) == 4
    assert sorted(s.label for s in seen["slots"]) == ["gpu 2 #1/2", "gpu 2 #2/2", "gpu 3 #1/2", "gpu 3 #2/2"]


def test_slurm_gives_each_array_task_the_gpus_its_pack_needs(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the local cluster's fake GPUs: the executor parameters the sweep submits with (--gres) give every array
    task two GPUs in CUDA_VISIBLE_DEVICES, which the task's plan turns into one slot per run of its pack."""
    import functools

    import submitit

    from nlbench.sweep import slurm
    from nlbench.sweep.devices import plan_slots

    if cluster.gpus < 4:
        pytest.skip("optional: needs a local cluster with fake GPUs (mknod refused here)")
    for key, value in cluster.env.items():
        if key.startswith("SLURM_CONF"):
            monkeypatch.setenv(key, value)
    spec = packed_spec(tmp_path)
    options = slurm.slurm_options(
        spec, {"time": "10", "gres": "gpu:2", "cpus_per_task": 1, "mem": "1G"}
    )  # the test node is small (the default: 8G a run)
    tasks = slurm.task_runs(spec, spec.expand(), options)[:2]
    executor = submitit.SlurmExecutor(folder=tmp_path / "probe" / "%j")
    executor.update_parameters(**{**slurm.executor_parameters(spec, options), "job_name": "gpu-probe"})
    with executor.batch():
        jobs = [executor.submit(functools.partial(os.getenv, "CUDA_VISIBLE_DEVICES")) for _ in tasks]
    visible = [job.result() for job in jobs]  # each array task's CUDA_VISIBLE_DEVICES
    assert all(v and len(v.split(",")) == 2 for v in visible), visible
    for ids, gpus in zip(tasks, visible):
        assert len(plan_slots(gpus.split(","), spec.devices_per_run, spec.runs_per_device)) == len(ids) == 4
