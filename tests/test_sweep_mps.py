"""`nlbench sweep --mps`: a private MPS control daemon for the sweep's lifetime, with a fake
``nvidia-cuda-mps-control`` on PATH that behaves like the real one's command line: ``-d`` starts the daemon (refused
when its pipe directory is missing or a daemon already listens there), ``quit`` on standard input stops it
(refused when none runs), and its server renumbers the devices the daemon was started with, which the fake fit's
``CUDA_VISIBLE_DEVICES`` then indexes (an id past them: "invalid device ordinal")."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from test_sweep_runner import FAKE_FIT, calls, write_spec

from nlbench.sweep import load_spec, plan_slots, run_sweep
from nlbench.sweep.devices import LOG_ENV, PIPE_ENV, client_env
from nlbench.sweep.mps import mps_slots

FAKE_CONTROL = f"""#!{sys.executable}
import os, sys
pipe = os.environ.get("{PIPE_ENV}", "/tmp/nvidia-mps")
log = os.environ.get("{LOG_ENV}", "/var/log/nvidia-mps")
control = os.path.join(pipe, "control")
def record(line):
    with open(os.path.join(log, "control.log"), "a") as f:
        f.write(line + "\\n")
if sys.argv[1:] == ["-d"]:
    if not os.path.isdir(pipe) or not os.path.isdir(log):
        sys.exit("Failed to start MPS control daemon: cannot open " + (pipe if not os.path.isdir(pipe) else log))
    if os.path.exists(control):
        sys.exit("An instance of this daemon is already running")
    open(control, "w").close()
    # The server will renumber the devices the daemon sees (tests/test_sweep_runner.py's fake fit reads this).
    with open(os.path.join(pipe, "server_devices"), "w") as f:
        f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "*"))
    record("Startup")
    sys.exit(0)
if sys.argv[1:]:
    sys.exit("usage: nvidia-cuda-mps-control [-d]")
if not os.path.exists(control):
    sys.exit("Cannot find MPS control daemon process")
for command in sys.stdin.read().split("\\n"):
    if command.strip() == "quit":
        os.remove(control)
        record("Shutdown")
"""


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "nvidia-cuda-mps-control"
    program.write_text(FAKE_CONTROL)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return program


def _spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_spec(
        write_spec(
            tmp_path, {"overrides": {"fake.epochs": 1}, "axes": {"seed_everything": [0, 1]}, "runs_per_device": 2}
        )
    )


def test_packed_runs_share_a_private_daemon_for_the_sweeps_lifetime(tmp_path: Path, control: Path) -> None:
    spec = _spec(tmp_path)
    mps_dir = spec.output_dir / "mps"
    with mps_slots(plan_slots(["3"], 1, 2), spec.output_dir, enabled=True) as slots:
        assert (mps_dir / "pipe" / "control").exists()  # running while the runs run
        run_sweep(spec, slots=slots, fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02)
    launched = [calls(spec, run.run_id)[0] for run in spec.expand()]
    assert {c["mps_pipe"] for c in launched} == {client_env(mps_dir)[PIPE_ENV]}
    assert not (mps_dir / "pipe" / "control").exists()  # stopped at the end
    assert (mps_dir / "log" / "control.log").read_text().split() == ["Startup", "Shutdown"]


def test_the_daemon_is_stopped_when_the_sweep_fails(tmp_path: Path, control: Path) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(KeyboardInterrupt), mps_slots(plan_slots(["0"], 1, 2), spec.output_dir, enabled=True):
        raise KeyboardInterrupt
    assert not (spec.output_dir / "mps" / "pipe" / "control").exists()


def test_no_daemon_means_one_warning_and_time_slicing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    slots = plan_slots(["0"], 1, 2)
    with mps_slots(slots, tmp_path, enabled=True) as given:
        assert given == slots and all(PIPE_ENV not in s.env() for s in given)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "(nvidia-cuda-mps-control is not on PATH); running without MPS" in err


def test_a_refusing_daemon_means_one_warning(tmp_path: Path, control: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mps" / "pipe").mkdir(parents=True)
    (tmp_path / "mps" / "pipe" / "control").touch()  # someone's daemon already listens on this pipe directory
    with mps_slots(plan_slots(["0"], 1, 2), tmp_path, enabled=True) as given:
        assert all(s.mps_dir is None for s in given)
    assert "An instance of this daemon is already running); running without MPS" in capsys.readouterr().err
    assert (tmp_path / "mps" / "pipe" / "control").exists()  # not ours: never stopped


def test_mps_without_packing_is_a_warning(tmp_path: Path, control: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for slots in (plan_slots(["0", "1"], 1, 1), plan_slots([], 1, 2)):
        with mps_slots(slots, tmp_path, enabled=True) as given:
            assert given == slots
        assert "--mps has no effect" in capsys.readouterr().err
    assert not (tmp_path / "mps").exists()


def test_the_fake_refuses_what_the_real_control_refuses(tmp_path: Path, control: Path) -> None:
    import subprocess

    env = {**os.environ, **client_env(tmp_path / "nowhere")}
    assert subprocess.run([str(control), "-d"], env=env, capture_output=True).returncode == 1  # no pipe directory
    quit_ = subprocess.run([str(control)], input=b"quit\n", env=env, capture_output=True)
    assert quit_.returncode == 1 and b"Cannot find MPS control daemon" in quit_.stderr


def test_clients_ids_mean_what_they_say_when_the_sweep_has_cuda_visible_devices(
    tmp_path: Path, control: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon started with the sweep's CUDA_VISIBLE_DEVICES=2,3 would serve those GPUs as 0 and 1, and runs
    pinned to 2 and 3 would fail (NVIDIA: the MPS server renumbers the devices)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # e.g. a SLURM allocation
    spec = load_spec(
        write_spec(
            tmp_path, {"overrides": {"fake.epochs": 1}, "axes": {"seed_everything": [0, 1, 2, 3]}, "runs_per_device": 2}
        )
    )
    with mps_slots(plan_slots(["2", "3"], 1, 2), spec.output_dir, enabled=True) as slots:
        rows = run_sweep(spec, slots=slots, fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02)
    assert [row["status"] for row in rows] == ["finished"] * 4
    launched = [calls(spec, run.run_id)[0] for run in spec.expand()]
    assert {(c["cuda"], tuple(c["mps_devices"])) for c in launched} == {("2", ("2",)), ("3", ("3",))}
