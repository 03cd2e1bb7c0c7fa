"""The run-directory lock: one owner at a time, freed when its process dies (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlbench.runlock import RunLock, RunLockedError, is_alive, owner


def test_lock_is_exclusive_and_names_its_owner(tmp_path):
    run = tmp_path / "run"
    assert owner(run) is None
    with RunLock(run, command="nlbench fit") as lock:
        assert lock.held
        who = owner(run)
        assert who is not None and who.pid == os.getpid() and who.command == "nlbench fit"
        with pytest.raises(RunLockedError, match=r"in use by nlbench fit \(pid \d+"):
            RunLock(run).acquire(timeout_s=0.1)
    assert owner(run) is None and not is_alive(run)
    RunLock(run).acquire(timeout_s=0.1).release()  # free again


def test_a_killed_owner_frees_the_lock(tmp_path):
    run = tmp_path / "run"
    code = (
        "import sys, time; from nlbench.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('ok', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        assert is_alive(run) and owner(run).pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while is_alive(run) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(run)


def test_a_lock_kept_outside_the_run_directory(tmp_path: Path) -> None:
    """A sweep's claim (path=) and the run directory's own lock are independent: the child fit can take its own."""
    run_dir, claim = tmp_path / "run", tmp_path / "claims" / "run.lock"
    with RunLock(run_dir, path=claim, command="nlbench sweep"):
        assert is_alive(run_dir, path=claim) and not is_alive(run_dir)
        assert owner(run_dir, path=claim).command == "nlbench sweep"
        with RunLock(run_dir):  # the fit's lock on its run directory
            assert is_alive(run_dir)
        with pytest.raises(RunLockedError, match="in use by nlbench sweep"):
            RunLock(run_dir, path=claim).acquire(timeout_s=0)
    assert not is_alive(run_dir, path=claim)
