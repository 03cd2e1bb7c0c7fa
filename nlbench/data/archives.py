"""Download, md5 verification and safe, atomic extraction of dataset archives.

Nothing here leaves a partial result under its final name: downloads and extractions happen in a temporary
folder next to the destination and are renamed into place only once complete, so a later run never trusts a
half-written archive or a half-extracted tree.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from torchvision.datasets.utils import calculate_md5, download_url

from nlbench.data.errors import ArchiveError, DownloadError, IntegrityError, UnsafeArchiveError

log = logging.getLogger(__name__)

# Python >= 3.10.12 / 3.11.4 ship tarfile extraction filters; "data" also drops unsafe permission bits.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def verify_md5(path: Path, md5: str) -> None:
    """Raise IntegrityError unless the file's md5 is ``md5``."""
    actual = calculate_md5(path)
    if actual != md5:
        raise IntegrityError(
            f"md5 mismatch for {path}: expected {md5}, got {actual}; replace it with the official file, or switch "
            "verification off (verify=False, e.g. `--data.verify false`) for a local copy you trust"
        )


def download(url: str, dest: Path, *, md5: str | None) -> None:
    """Download ``url`` to ``dest`` (checking ``md5`` unless None); ``dest`` appears only when complete and valid."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.download-") as tmp:
        partial = Path(tmp) / dest.name
        log.info("downloading %s to %s", url, dest)
        try:
            download_url(url, tmp, dest.name)
        except OSError as e:  # urllib's URLError is an OSError
            raise DownloadError(f"downloading {url} to {dest} failed: {e}") from e
        if md5 is not None:
            verify_md5(partial, md5)
        os.replace(partial, dest)


def extract(archive: Path, root: Path, *, folder: str) -> Path:
    """Extract ``archive`` (.zip or .tar[.gz]) whose members all live under ``folder/`` to ``root/folder``.

    Refuses absolute paths, ``..`` components, links, devices and anything outside ``folder/`` before writing
    a byte. The tree is built in a temporary folder under ``root`` and renamed into place when complete; if
    another process got there first, its (identical) tree is kept.
    """
    dest = root / folder
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.extracting-"))
    log.info("extracting %s to %s", archive, dest)
    try:
        if archive.name.endswith(".zip"):
            _extract_zip(archive, tmp, folder=folder)
        else:
            _extract_tar(archive, tmp, folder=folder)
        staged = tmp / folder
        if not staged.is_dir():
            raise ArchiveError(f"{archive} does not contain the folder {folder}/")
        try:
            os.rename(staged, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _check_member_name(archive: Path, name: str, *, folder: str, dest: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component")
    if not parts or parts[0] != folder:
        raise UnsafeArchiveError(f"{archive}: member {name!r} is outside the expected folder {folder}/")
    # Belt and braces: the normalised target must stay inside the extraction folder. Lexical normalisation is
    # exact here because the folder is fresh and no link is ever extracted into it.
    if not os.path.normpath(os.path.join(dest, name)).startswith(os.path.join(dest, "")):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside the extraction folder")


def _extract_tar(archive: Path, dest: Path, *, folder: str) -> None:
    try:
        with tarfile.open(archive) as tar:
            # One streaming pass: check each member, then extract it; a bad member aborts before it is written.
            for member in tar:
                _check_member_name(archive, member.name, folder=folder, dest=dest)
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(
                        f"{archive}: member {member.name!r} is a link or special file; only files and folders "
                        "are allowed"
                    )
                tar.extract(member, dest, **_TAR_FILTER)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ArchiveError(
            f"cannot extract {archive}: truncated or corrupted archive ({e}); delete it and download it again"
        ) from e


def _extract_zip(archive: Path, dest: Path, *, folder: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member_name(archive, info.filename, folder=folder, dest=dest)
                kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type; 0 when the writer recorded none
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} is a link or special file; only files and folders "
                        "are allowed"
                    )
            for info in members:  # names are checked, so write them as they are (faster than zf.extract)
                target = os.path.join(dest, info.filename)
                if info.is_dir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ArchiveError(
            f"cannot extract {archive}: truncated or corrupted archive ({e}); delete it and download it again"
        ) from e
