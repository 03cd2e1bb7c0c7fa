"""One-line messages for the errors a user can fix: bad options, bad files, missing or corrupt data, a read-only or
full disk. `nlbench` prints them as ``nlbench <command>: error: <line>`` with exit code 2 instead of a traceback.

The line names what is at fault: the dotted option (``model.backbone.nl.heads: ...``), found by matching the names
an error message mentions against the parsed config's keys, or the file. Light on imports (the CLI's error path
must not load torch): library exception classes are looked up only once their module is loaded, since an exception
of a class whose module was never imported cannot have been raised.
"""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Iterable
from pathlib import Path

# Library exceptions that mean "bad input", by module and class name.
_USER_EXCEPTIONS = (
    ("jsonargparse", "ArgumentError"),
    ("lightning.fabric.utilities.exceptions", "MisconfigurationException"),
    ("nlbench.data.errors", "DownloadError"),
    ("nlbench.data.errors", "IntegrityError"),
    ("nlbench.data.errors", "ArchiveError"),  # includes UnsafeArchiveError
)
# OS errors the user fixes on their side (permissions, a read-only mount, a full disk or quota).
_DISK_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
}
# Phrases of library messages that stand for an option name.
_ALIASES = {"learning rate": "lr"}
_KEY = re.compile(r'^(?:- )?Parser key "([^"]+)":?$')
_NOISE = (
    "Problem with given class_path",
    "Does not validate against",
    "Subtypes:",
    "Errors:",
    "Given value",
    "- Expected a <class 'NoneType'>",
)


def _loaded(module: str, name: str) -> type[BaseException] | None:
    return getattr(sys.modules.get(module), name, None)


def is_user_error(err: BaseException) -> bool:
    """Whether `err` is bad input (options, files, data, disk) rather than a bug or a failure during training."""
    if isinstance(err, OSError) and (err.errno in _DISK_ERRNOS or err.errno == errno.ENAMETOOLONG):
        return True
    if isinstance(err, (ValueError, FileNotFoundError)):
        return True
    return any(cls is not None and isinstance(err, cls) for cls in (_loaded(m, n) for m, n in _USER_EXCEPTIONS))


def is_disk_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _DISK_ERRNOS


def os_error_line(err: OSError, *, where: str | Path | None = None) -> str:
    """``PATH: read-only file system (...)``: the file at fault, what is wrong and what to do."""
    path = err.filename or where
    what = _DISK_ERRNOS.get(err.errno or 0, err.strerror or str(err))
    hint = (
        "; free some space or write elsewhere"
        if err.errno in (errno.ENOSPC, errno.EDQUOT)
        else ("; choose a writable directory" if err.errno in _DISK_ERRNOS else "")
    )
    return f"{path}: cannot write: {what}{hint}" if path else f"{what}{hint}"


def one_line(err: BaseException, keys: Iterable[str] = ()) -> str:
    """The error as one line; `keys` (the parsed config's dotted keys) let it name the option at fault."""
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.errno in _DISK_ERRNOS:
        return os_error_line(err)
    if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:  # a received value in a run's name, e.g.
        return (
            f"{err.filename}: file name too long; a value the run is named by (its method, an option) is "
            "longer than the file system allows: shorten it, or pass --run_dir"
        )
    if isinstance(err, UnicodeDecodeError):
        return f"not a text file ({err.reason} at byte {err.start})"
    text = str(err)
    if "Parser key" in text or "Union subtypes" in text:
        return _jsonargparse_line(text, keys)
    message = " ".join(text.split()) or type(err).__name__
    key = find_option(message, keys)
    return f"{key}: {message}" if key else message


def find_option(message: str, keys: Iterable[str]) -> str | None:
    """The option a library message is about, as users type it (``init_args`` left out), e.g. "NonLocal2d: width 4
    is not divisible by heads=3" -> ``model.backbone.nl.heads``; None when it names none or already starts with it."""
    if re.match(r"^[A-Za-z_]\w*(\.\w+)+[:\s]", message):  # already "model.x: ..." or "model.x must ..."
        return None
    names = re.findall(r"`(\w+)`", message) + re.findall(r"\b(\w+)=", message)
    names += re.findall(r"^(?:\w+: )?(\w+) must be", message)
    names += [alias for phrase, alias in _ALIASES.items() if phrase in message.lower()]
    leaves: dict[str, str] = {}
    for key in keys:
        leaves.setdefault(key.rsplit(".", 1)[-1], key)
    for name in names:
        if name in leaves:
            return leaves[name].replace(".init_args.", ".")
    return None


def _jsonargparse_line(text: str, config_keys: Iterable[str] = ()) -> str:
    """Condense jsonargparse's nested multi-line errors to "<full.dotted.key>: <what is wrong>"."""
    return _condense([line for line in text.splitlines() if line.strip()], [], list(config_keys))


def _condense(lines: list[str], keys: list[str], config_keys: list[str]) -> str:
    keys = list(keys)
    while lines and _KEY.match(lines[0].strip()):
        keys.append(_KEY.match(lines[0].strip()).group(1))  # type: ignore[union-attr]
        lines = lines[1:]
    key = ".".join(keys)
    stripped = [line.strip() for line in lines]
    if any(line.startswith("Does not validate against any of the Union subtypes") for line in stripped):
        # Drop the branches that merely are other types (another backbone class, None), then follow the one that
        # complains about the given value: a class_path's nested error, or its __init__'s own message.
        entries = [e for e in _union_entries(lines) if not e[0].startswith(_OTHER_BRANCH)]
        nested = next((e for e in entries if e[0].startswith("Problem with given class_path")), None)
        if nested is not None and len(nested) > 1:
            return _condense(nested[1:], keys, config_keys)
        raised = [e for e in entries if not e[0].startswith("Expected a")]
        if raised:
            detail = " ".join(line.strip() for line in raised[0])
            named = find_option(detail, config_keys)
            return f"{named or key}: {detail}" if (named or key) else detail
        subtypes = next((line for line in stripped if line.startswith("Subtypes:")), None)
        given = next((line.split(":", 1)[1].strip() for line in stripped if line.startswith("Given value:")), None)
        if subtypes and given is not None:  # list every accepted form, not the first branch's complaint
            return f"{key}: got {given!r}; expected {_describe_union(subtypes)}"
    for line in stripped:
        if not line.lstrip("- ").startswith(_NOISE) and not line.startswith(_NOISE):
            detail = line.lstrip("- ").replace("Expected a typing.Literal[", "expected one of [")
            return f"{key}: {detail}" if key else detail
    return key or "invalid arguments"


_OTHER_BRANCH = ("Expected a <class 'NoneType'>", "Import path ")


def _union_entries(lines: list[str]) -> list[list[str]]:
    """The items of a union error's "Errors:" list, each as its stripped lines ("- " removed from the first)."""
    start = next((i for i, line in enumerate(lines) if line.strip() == "Errors:"), None)
    if start is None:
        return []
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries: list[list[str]] = []
    entries_depth = 0
    for line in lines[start + 1 :]:
        depth = len(line) - len(line.lstrip())
        if depth <= indent:  # "Given value type: ..." ends the list
            break
        if line.strip().startswith("- ") and (not entries or depth <= entries_depth):
            entries_depth = depth
            entries.append([line.strip()[2:]])
        elif entries:
            entries[-1].append(line)
    return entries


def _describe_union(subtypes: str) -> str:
    """ "Subtypes: [<class 'bool'>, typing.Literal[64, 32], <class 'NoneType'>]" -> "a bool, one of 64, 32, or null"."""
    parts: list[str] = []
    choices: list[str] = []
    for literal, cls in re.findall(r"typing\.Literal\[([^\]]*)\]|<class '([\w.]+)'>", subtypes):
        if literal:
            choices += [c.strip() for c in literal.split(",")]
        elif cls == "NoneType":
            continue
        else:
            name = cls.rsplit(".", 1)[-1]
            parts.append(f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
    if choices:
        parts.append("one of " + ", ".join(dict.fromkeys(choices)))
    if "NoneType" in subtypes:
        parts.append("null")
    return " or ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " or " + parts[-1]
