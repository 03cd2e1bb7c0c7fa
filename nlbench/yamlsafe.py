"""YAML from files nlbench did not write (a received config or sweep spec), read within bounds.

PyYAML's safe loader builds an alias (``*a``) as a reference to the anchored object, so a "billion laughs" file of
a few hundred bytes loads instantly -- and expands to gigabytes the moment anything copies, prints or validates it
(jsonargparse, a sweep's run table). So before anything is built, the file's node graph is composed (linear in its
size) and the size it would have with every alias expanded is counted; past :data:`MAX_NODES`, or with an alias
that contains itself, the file is refused in one line. Files over :data:`MAX_FILE_BYTES` are refused before they
are read (a 50 MB file of comments took 27 s and 1 GB), without blocking on a FIFO, and, for files inside a
received run or sweep directory, without following links (:func:`nlbench.io.read_bounded`). A file nested deeper
than :data:`nlbench.limits.MAX_DEPTH` is refused in one line too (990 levels gave a RecursionError traceback). The
limits themselves live in :mod:`nlbench.limits`. Light on imports: no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nlbench import limits
from nlbench.io import UnsafeFileError, read_bounded

MAX_FILE_BYTES = limits.MAX_YAML_BYTES
MAX_NODES = 200_000  # expanded YAML nodes (every alias counted at each use); a sweep spec of 1e4 runs is far below

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLimitError(limits.LimitError):
    """A YAML text over nlbench's limits (an alias bomb, a huge or deeply nested file, a FIFO, a link inside a
    received directory): bad input, one line."""


def read_text(path: str | os.PathLike[str], what: str = "config file", *, follow_links: bool = True) -> str:
    """The text of a YAML file, refused (YamlLimitError) when larger than :data:`MAX_FILE_BYTES` or not a regular
    file (a FIFO would block the reader forever), and when a symbolic link unless ``follow_links`` (a file the user
    named may be a link; one inside a received run or sweep directory is not followed)."""
    path = Path(path)
    try:
        data = read_bounded(path, MAX_FILE_BYTES, what=what, follow_links=follow_links)
    except limits.LimitError as err:
        raise YamlLimitError(f"{err} for YAML files; is it the right file?") from None
    except UnsafeFileError as err:
        raise YamlLimitError(str(err)) from None
    return data.decode("utf-8")


def check_expansion(text: str, where: str, limit: int = MAX_NODES) -> None:
    """Refuse (YamlLimitError) a YAML text whose aliases expand past ``limit`` nodes or refer to themselves.

    Raises yaml.YAMLError for text that is not YAML, as yaml.safe_load would."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlLimitError(
            f"{where}: {len(text) / 2**20:.1f} MB of YAML is over the {MAX_FILE_BYTES // 2**20} MB limit"
        )
    if "*" not in text:  # no alias: nothing can expand beyond the text itself
        return
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlLimitError(f"{where}: a YAML alias refers to the node that contains it (infinite expansion)")
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(expanded(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(expanded(k) + expanded(v) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > limit:
            raise YamlLimitError(
                f"{where}: YAML aliases expand to more than {limit:,} values (an alias bomb?); "
                "refused before building anything"
            )
        sizes[key] = total
        return total

    try:
        for document in yaml.compose_all(text, Loader=_Loader):
            if document is not None:
                expanded(document)
    except RecursionError:
        raise YamlLimitError(f"{where}: YAML nested too deeply") from None


def safe_load(text: str, where: str) -> Any:
    """``yaml.safe_load`` after :func:`check_expansion`, refused when nested deeper than
    :data:`nlbench.limits.MAX_DEPTH` (YamlLimitError)."""
    check_expansion(text, where)
    try:
        data = yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise YamlLimitError(f"{where}: YAML nested too deeply") from None
    try:
        limits.check_depth(data, where)
    except limits.LimitError as err:
        raise YamlLimitError(str(err)) from None
    return data


def load_file(path: str | os.PathLike[str], what: str = "config file", *, follow_links: bool = True) -> Any:
    """A YAML file's content, within the size, nesting and expansion limits (YamlLimitError, naming the file).
    ``follow_links=False`` for a file inside a received run or sweep directory."""
    return safe_load(read_text(path, what, follow_links=follow_links), str(path))


def guard_jsonargparse() -> None:
    """Put :func:`check_expansion` in front of jsonargparse's YAML loader (config files it includes itself, such
    as ``config: base/paper.yaml``, and values on the command line). Idempotent."""
    from jsonargparse import get_loader, set_loader

    loader = get_loader("yaml")
    if getattr(loader, "nlbench_guarded", False):
        return

    def guarded(stream: Any) -> Any:
        if isinstance(stream, str):
            check_expansion(stream, "a YAML config")
        try:
            data = loader(stream)
        except RecursionError:
            raise YamlLimitError("a YAML value: nested too deeply") from None
        try:
            limits.check_depth(data, "a YAML value")
        except limits.LimitError as err:
            raise YamlLimitError(str(err)) from None
        return data

    guarded.nlbench_guarded = True  # type: ignore[attr-defined]
    set_loader("yaml", guarded, exceptions=(yaml.YAMLError,))
