"""Exceptions raised while acquiring and reading datasets; each message is one line naming the file at fault."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on disk and downloading is off."""


class DownloadError(RuntimeError):
    """Fetching an archive from its URL failed."""


class IntegrityError(RuntimeError):
    """A file's md5 differs from the official one."""


class ArchiveError(RuntimeError):
    """An archive is truncated, corrupted or not laid out as the official one."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would land outside the extraction folder or is not a plain file or folder."""


class DatasetFormatError(ValueError):
    """A dataset file or folder does not follow the official format."""


class UnsafePickleError(DatasetFormatError):
    """A pickle asks to build an object the dataset format never holds."""
