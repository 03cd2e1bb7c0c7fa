"""Small file helpers shared by the CLI, the sweep and the report: atomic writes, so readers never see half a file,
and opening files in run and sweep directories without following links or blocking.

A run or sweep directory may have been received (a tarball, a shared filesystem): a ``result.json`` or ``.lock``
there may be a symbolic link to a file elsewhere, or a FIFO. nlbench never writes through such a link (every file it
writes or locks there is opened with ``O_NOFOLLOW``, and :func:`atomic_writer` refuses to replace a link), and
never blocks on a file that is not a regular one (opened with ``O_NONBLOCK``, then checked with ``fstat``): either
is refused with :class:`UnsafeFileError`, one line naming the file. Reads are bounded (:func:`read_bounded`, with
the limits of :mod:`nlbench.limits`).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from nlbench.limits import LimitError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafeFileError(ValueError):
    """A file nlbench will not open in a run or sweep directory: a symbolic link, or not a regular file (a FIFO,
    a device, a socket, a folder). The message is one line naming it."""


def open_file(
    path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o666, *, follow_links: bool = False
) -> int:
    """``os.open`` for a file in a run or sweep directory: never through a symbolic link (unless ``follow_links``,
    for a file the user named), never blocking on a FIFO, and only a regular file (UnsafeFileError otherwise).
    Returns a blocking descriptor, closed on exec."""
    path = os.fspath(path)
    try:
        fd = os.open(path, flags | _CLOEXEC | _NONBLOCK | (0 if follow_links else _NOFOLLOW), mode)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_links:
            raise UnsafeFileError(
                f"{path}: a symbolic link; nlbench does not follow links in run and sweep "
                "directories (replace it with the file itself)"
            ) from None
        if err.errno == errno.ENXIO:  # O_WRONLY|O_NONBLOCK on a FIFO nobody reads
            raise UnsafeFileError(f"{path}: not a regular file (a FIFO); not opened") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path}: not a regular file ({_kind(info.st_mode)}); not opened")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "a special file"


def read_bounded(path: str | os.PathLike[str], limit: int, *, what: str = "file", follow_links: bool = False) -> bytes:
    """The bytes of a received file, at most ``limit`` of them: a larger file is refused (LimitError) before it is
    read, a link (unless ``follow_links``) or a file that is not a regular one with UnsafeFileError; a missing file
    raises FileNotFoundError."""
    fd = open_file(path, follow_links=follow_links)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > limit:
            raise LimitError(f"{os.fspath(path)}: {what} of {_size(size)} is over the {_size(limit)} limit")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since fstat
        raise LimitError(f"{os.fspath(path)}: {what} is over the {_size(limit)} limit")
    return data


def _size(n: int) -> str:
    """``4 MB``, ``4.9 MB``, ``64 KB``, ``12 bytes``."""
    for unit, name in ((2**20, "MB"), (2**10, "KB")):
        if n >= unit:
            return f"{n / unit:.1f}".removesuffix(".0") + f" {name}"
    return f"{n} bytes"


def open_append(path: str | os.PathLike[str], mode: int = 0o666) -> IO[bytes]:
    """A file in a run or sweep directory opened for appending (created when missing), never through a link."""
    return os.fdopen(open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode), "ab")


def refuse_link(path: str | os.PathLike[str]) -> None:
    """UnsafeFileError when ``path`` is a symbolic link (a folder nlbench would write into)."""
    if os.path.islink(path):
        raise UnsafeFileError(
            f"{os.fspath(path)}: a symbolic link; nlbench does not write through links in run and "
            "sweep directories (replace it with the folder or file itself)"
        )


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """A file object whose contents replace ``path`` only once the block completes: written to a temporary file in
    the same folder, flushed to disk, renamed over ``path`` and the rename flushed too. On any failure (a full disk,
    an interrupt) the temporary file is removed and ``path`` keeps its previous contents. A ``path`` that is a
    symbolic link is refused (UnsafeFileError): a received directory's link is not replaced silently."""
    path = Path(path)
    refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every file system opens folders; the rename is atomic all the same
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as f:
        f.write(text)


def new_file_mode() -> int:
    """The permissions ``open()`` gives a new file (0666 less the umask): for files made with ``mkstemp`` (0600),
    which on a shared data or run folder would lock out the rest of the group."""
    return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
