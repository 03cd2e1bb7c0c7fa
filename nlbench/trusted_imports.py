"""Class paths that a received file names (a checkpoint's hyper-parameters, a run's config.yaml) are imported only
from the user's own environment: installed packages and PYTHONPATH, never the current folder or the file's folder.

Loading a checkpoint or a run rebuilds its model from the class paths it stores (``model.backbone.class_path``, a
normalization ``my_pkg.attn.X``), and importing a module runs it. Python looks in the current folder first when it
was started as ``python -c``, ``python script.py`` or in a notebook (``python -m nlbench`` and the ``nlbench``
command drop it: nlbench.commands.drop_current_folder), so a module placed beside a received run directory, or
inside it when the current folder is that directory, would run with the user's rights. Before such a file is
loaded, every dotted name in it whose top-level module is not imported yet is looked up with
:func:`importlib.util.find_spec`: when the import would come from a ``sys.path`` entry for the current folder or the
file's folder that the user did not put on PYTHONPATH, it is refused in one line naming the class and the file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_IMPORTED_KEYS = ("class_path", "_class_path", "_instantiator")  # imported whatever the name looks like
_MAX_NAMES = 10_000  # a received file could name any number of things; a real config names a few dozen classes


class UntrustedImportError(ValueError):
    """A received file names a class whose module would be imported from outside the user's environment."""


def dotted_names(data: Any) -> list[str]:
    """The class paths ``data`` (nested mappings and lists) names, first-seen order: the values of ``class_path``
    keys, and any other string that reads as ``module.Class`` (a dotted path whose last part is capitalised, as a
    normalization ``my_pkg.attn.Sigmoid``); file names such as ``demo.yaml`` are not class paths."""
    found: dict[str, None] = {}
    stack: list[tuple[Any, Any]] = [(None, data)]
    while stack and len(found) < _MAX_NAMES:
        key, item = stack.pop()
        if isinstance(item, str):
            if _DOTTED.fullmatch(item) and (key in _IMPORTED_KEYS or item.rsplit(".", 1)[-1][:1].isupper()):
                found[item] = None
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((key, value) for value in reversed(item))
    return list(found)


def received_folders(path: str | os.PathLike[str]) -> list[Path]:
    """The folders a received file came with: its own, and for a checkpoint (``<run>/checkpoints/x.ckpt``) its run
    directory."""
    folder = Path(path).resolve().parent
    return [folder, folder.parent] if folder.name == "checkpoints" else [folder]


def check_file(data: Any, path: str | os.PathLike[str] | None, what: str | None = None) -> None:
    """Refuse (UntrustedImportError) when a class path named in ``data`` (read from ``path``; None: a file object)
    would be imported from the current folder or ``path``'s folders rather than from the user's environment.
    ``what`` names the file in the message (default: its path)."""
    untrusted = [Path.cwd().resolve(), *(received_folders(path) if path is not None else [])]
    for name in dotted_names(data):
        where = untrusted_origin(name.split(".", 1)[0], untrusted)
        if where is not None:
            raise UntrustedImportError(
                f"{what or path}: refused to import {name}: its module would come from {where}, the current folder or "
                "the file's own, not from an installed package or PYTHONPATH (install it, or add its folder to "
                "PYTHONPATH if you trust it)"
            )


def untrusted_origin(module: str, untrusted: Iterable[Path]) -> str | None:
    """Where importing top-level ``module`` would load it from, when that is only through a ``sys.path`` entry for one
    of the ``untrusted`` folders that PYTHONPATH does not list; None when the import would come from the user's
    environment (or the module is already imported, or does not exist: the import then fails as usual)."""
    if module in sys.modules:
        return None
    folders = {p.resolve() for p in untrusted}
    chosen = {_resolve(p) for p in _pythonpath()}
    entries = [p for p in sys.path if _resolve(p) in folders and _resolve(p) not in chosen]
    if not entries:
        return None
    found = _locations(module, sys.path)
    if not found or found == _locations(module, [p for p in sys.path if p not in entries]):
        return None
    return found[0]


def _locations(module: str, path: list[str]) -> list[str]:
    """The files or folders importing ``module`` would use with ``sys.path`` set to ``path`` (also the finders on
    sys.meta_path, such as an editable install's)."""
    with _sys_path(path):
        importlib.invalidate_caches()
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return []
    if spec is None:
        return []
    origin = [spec.origin] if spec.origin and spec.origin not in ("built-in", "frozen") else []
    return [*origin, *(str(p) for p in spec.submodule_search_locations or [])]


@contextlib.contextmanager
def _sys_path(path: list[str]) -> Iterator[None]:
    saved = sys.path[:]
    sys.path[:] = path
    try:
        yield
    finally:
        sys.path[:] = saved


def _pythonpath() -> list[str]:
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def _resolve(entry: str) -> Path:
    return Path(entry or ".").resolve()
