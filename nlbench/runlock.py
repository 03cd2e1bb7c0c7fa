"""Who owns a run directory right now: one lock per run, the one answer to "is this run's process alive?".

A `nlbench fit` holds an exclusive ``flock`` on ``<run_dir>/.lock`` for as long as it works there (NLBenchCLI
takes it before writing anything); a sweep process claims a grid point with the same kind of lock kept outside the
run directory, ``<sweep_dir>/claims/<run_id>.lock`` (:func:`claim_path`), and hands it to the fit it starts. The
kernel drops a lock when its process dies (kill -9 included), so a reader that finds both free knows nobody is
working on the run, whatever result.json says: a record still saying "running" then belongs to a dead process and
reads "interrupted" (:func:`nlbench.results.resolve_status`). The lock file holds
the owner's pid, host, command and start time as JSON, so status listings can say where a run is running.

flock works between processes of one machine and, on Linux NFS v4 / Lustre / GPFS, between machines sharing the
directory (the kernel maps it to POSIX byte-range locks there). A received directory's lock file may be a symbolic
link or a FIFO: the lock is opened without following links (a link is refused, never truncated through) and only
as a regular file, and a reader never blocks on it (:func:`nlbench.io.open_file`). Light on imports: the CLI
imports it before torch.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlbench.io import UnsafeFileError, open_file, refuse_link
from nlbench.limits import printable, shorten

LOCK_NAME = ".lock"
CLAIMS = "claims"  # <sweep_dir>/claims/<run_id>.lock: a sweep process's claim on <sweep_dir>/runs/<run_id>


def claim_path(run_dir: str | os.PathLike[str]) -> Path:
    """Where a sweep process claims the run directory ``<sweep_dir>/runs/<run_id>`` (nlbench.sweep.runner)."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent / CLAIMS / f"{run_dir.name}.lock"


class RunLockedError(RuntimeError):
    """The run directory is owned by another live process."""


@dataclass(frozen=True)
class Owner:
    """The process that holds a run directory's lock."""

    pid: int | None
    host: str | None
    command: str | None
    since: str | None

    def where(self) -> str:
        return f"pid {self.pid} on {self.host}" if self.host else f"pid {self.pid}"


def lock_path(run_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """The lock file: ``<run_dir>/.lock``, or `path` for a lock kept elsewhere (a sweep's claim on a run whose
    directory the child fit locks itself, see nlbench.sweep.runner)."""
    return Path(path) if path is not None else Path(run_dir) / LOCK_NAME


class RunLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` until :meth:`release` (or process exit).

    ``acquire`` waits up to ``timeout_s`` (a reader's brief shared probe must not make a starting owner fail), then
    raises :class:`RunLockedError` naming the owner. Creates the directory when missing. A lock file, or the folder
    holding it, that is a symbolic link or not a regular file: :class:`nlbench.io.UnsafeFileError`."""

    def __init__(
        self, run_dir: str | os.PathLike[str], *, command: str = "", path: str | os.PathLike[str] | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir, path)
        self.command = command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:2])
        self._fd: int | None = None

    @property
    def fd(self) -> int | None:
        """The lock's file descriptor while held: a child process given it (``pass_fds``) keeps the lock held
        until it exits too."""
        return self._fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout_s: float = 2.0) -> RunLock:
        if self._fd is not None:
            return self
        fd = self._open()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not _is_current(fd, self.path):
                    # The owner removed the run directory (a failed fit cleaning up) while we waited: this lock
                    # is on a deleted file; start over on the directory as it is now.
                    os.close(fd)
                    fd = self._open()
                    continue
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(fd)
                    if err.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    who = owner(self.run_dir, path=self.path)
                    by = f" by {who.command or 'another process'} ({who.where()})" if who else ""
                    raise RunLockedError(f"{self.run_dir}: in use{by}; wait for it to finish or stop it") from None
                time.sleep(0.05)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        refuse_link(self.path.parent)  # e.g. a received claims/ or runs/<id> linked to another folder
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open_file(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a free lock names no owner
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _is_current(fd: int, path: Path) -> bool:
    """Whether the open lock file ``fd`` is still the file at ``path`` (not unlinked or replaced)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def owner(run_dir: str | os.PathLike[str], *, path: str | os.PathLike[str] | None = None) -> Owner | None:
    """The live process holding the run directory's lock, or None when nobody holds it (no lock file, or its
    owner has exited or died). Never blocks and never takes the lock for longer than a probe. A lock file that is a
    link or not a regular file (a received directory's FIFO) names no owner: no nlbench process can hold it."""
    path = lock_path(run_dir, path)
    try:
        fd = open_file(path)
    except (OSError, UnsafeFileError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                return None
            try:
                data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except (OSError, ValueError):
                data = {}
            data = data if isinstance(data, dict) else {}
            pid = data.get("pid")
            return Owner(
                pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                *(_text(data.get(key)) for key in ("host", "command", "since")),
            )
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _text(value: Any) -> str | None:
    """An owner's field as status lines print it: a received lock file's text is data (no terminal escapes)."""
    return printable(shorten(value, 200)) if isinstance(value, str) else None


def is_alive(run_dir: str | os.PathLike[str], *, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether a live process works on the run directory now."""
    return owner(run_dir, path=path) is not None
