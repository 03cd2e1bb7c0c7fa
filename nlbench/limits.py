"""Limits on received files, in one place: what nlbench reads from files it did not write (a sweep directory, a
spec, a result.json, a metrics.csv, a benchmark file) and what of it reaches a figure or a terminal.

Every reader goes through :func:`nlbench.io.read_bounded` with one of the byte limits below (a 1 GB result.json is
refused before it is read, never held twice in memory), parses JSON with :func:`loads_json` and checks the nesting
of anything it parsed with :func:`check_depth` (a result.json nested 100k deep, or a YAML config nested 990 deep,
gives one line instead of a RecursionError). Received text is shortened where it is drawn (:func:`shorten`: a
100k-character label would exhaust memory in matplotlib) and made printable where it reaches a terminal
(:func:`terminal`: control characters such as ANSI escapes are shown escaped, an echoed value is cut). Tables keep
values whole. Light on imports: no torch, no yaml.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_YAML_BYTES = 4 * 2**20  # a config or spec is a few KB; the paper's largest is under 10 KB
MAX_JSON_BYTES = 4 * 2**20  # a result.json is a few KB (its flat config the largest part); a benchmark file too
MAX_CSV_BYTES = 256 * 2**20  # metrics.csv: a 300-epoch run logging every step with NL statistics stays far below
MAX_CSV_LINE = 2**20  # one metrics.csv row: a few hundred bytes; a 1 GB file of one line must not be held as a row
MAX_EPOCHS = 50_000  # distinct epochs in one metrics.csv (the paper's runs: 300); each is a dict in memory
MAX_SMALL_BYTES = 64 * 2**10  # small bookkeeping files: a run's wandb-id
MAX_JOBS_BYTES = 64 * 2**20  # a sweep's slurm/jobs.txt: a line of run ids per array task
MAX_DEPTH = 64  # nesting of a parsed JSON/YAML value; nlbench's configs and records nest under 10 deep
MAX_LABEL_CHARS = 60  # a value drawn in a figure (tick labels, legends, titles)
MAX_ECHO_CHARS = 200  # a received value quoted in an error line
MAX_LINE_CHARS = 2000  # a whole message line printed to a terminal
MAX_WORD_CHARS = 500  # one word of such a line (a path is shorter; a value echoed whole by a library is not)
_LONG_WORD = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")


class LimitError(ValueError):
    """A received file or value over one of nlbench's limits: bad input, one line naming the file."""


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse (LimitError) a parsed value (dicts and lists) nested deeper than ``limit``; iterative, so a value of
    any depth is checked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            raise LimitError(f"{where}: nested more than {limit} levels deep; not nlbench's format")
        stack.extend((child, depth + 1) for child in children)


def loads_json(text: str | bytes, where: str, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` of a received text, refused in one line (LimitError) when nested deeper than ``limit``
    (Python's parser would raise RecursionError). Raises json.JSONDecodeError for text that is not JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise LimitError(f"{where}: nested too deeply to read; not nlbench's format") from None
    check_depth(value, where, limit)
    return value


def shorten(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut (for figures and echoed values)."""
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def echo(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """A received value as an error line quotes it: its ``repr``, cut to ``limit`` characters with the length said."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def printable(text: str) -> str:
    """``text`` with every control or format character (ANSI escapes, carriage returns, bidi overrides, newlines)
    shown as its escape, so received text cannot move the cursor, recolour or rewrite a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def terminal(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """A message line for a terminal: :func:`printable`, each word (a value echoed by a library's message) cut to
    :data:`MAX_WORD_CHARS`, and the line cut in the middle when still longer than ``limit`` (the start names the
    option or file, the end says what to do)."""
    text = printable(text)
    if len(text) > MAX_WORD_CHARS:
        text = _LONG_WORD.sub(lambda m: f"{m.group()[:MAX_WORD_CHARS]}… ({len(m.group()):,} characters)", text)
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 4) :]
    return f"{head} … ({len(text) - len(head) - len(tail):,} characters left out) … {tail}"
