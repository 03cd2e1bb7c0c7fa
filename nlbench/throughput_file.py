"""The file ``nlbench bench train --grid --out FILE`` writes, and its one reader: images/s and peak memory of training
steps per backbone x normalization x reduction x heads, validated on load. Used by ``nlbench report --bench`` and
the sweep's dry-run ETA; light (no torch, no matplotlib).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nlbench import limits
from nlbench.io import UnsafeFileError, read_bounded


class BenchFileError(ValueError):
    """A benchmark file is not JSON or not in the schema ``nlbench bench train --grid --out`` writes."""


def config_of(record: dict[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(record.get(key) for key in keys)


# Record fields that say which configuration was measured, and the measurements; all required.
BENCH_CONFIG: tuple[str, ...] = ("backbone", "normalization", "reduction", "heads")
BENCH_METRICS: tuple[str, ...] = ("images_per_s", "peak_mib")


@dataclass
class Benchmark:
    """The records of one training-throughput benchmark file and the machine they were measured on."""

    source: str
    machine: str
    date: datetime
    records: list[dict[str, Any]]
    device: str | None = None
    batch_size: int | None = None
    bf16: bool | None = None

    @property
    def backbones(self) -> list[str]:
        """Backbones in the order the benchmark measured them (e.g. PreResNet-20, PreResNet-56)."""
        return list(dict.fromkeys(record["backbone"] for record in self.records))

    @property
    def when(self) -> str:
        return self.date.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def load_benchmark(path: str | os.PathLike[str]) -> Benchmark:
    """Read and validate a benchmark file; raises FileNotFoundError or :class:`BenchFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"benchmark file {path} does not exist (write one with nlbench bench train --grid --out FILE)"
        )
    try:  # a received file: bounded, nested within limits, the user's own link followed, never a FIFO
        data = limits.loads_json(
            read_bounded(path, limits.MAX_JSON_BYTES, what="benchmark file", follow_links=True),
            f"benchmark file {path}",
        )
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchFileError(f"benchmark file {path} is not valid JSON: {err}") from err
    except (limits.LimitError, UnsafeFileError) as err:
        raise BenchFileError(str(err)) from err

    def bad(what: str) -> BenchFileError:
        return BenchFileError(f"benchmark file {path}: {what} (expected the JSON of nlbench bench train --grid --out)")

    if not isinstance(data, dict):
        raise bad(f"expected an object, got {type(data).__name__}")
    missing = [key for key in ("machine", "date", "records") if key not in data]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    if not isinstance(data["machine"], str):
        raise bad("machine is not a string")
    try:
        date = datetime.fromisoformat(data["date"])
    except (TypeError, ValueError):
        raise bad(f"date {data['date']!r} is not an ISO 8601 date") from None
    if date.tzinfo is None:  # the benchmark writes UTC; a bare date is read as UTC too
        date = date.replace(tzinfo=timezone.utc)
    records = data["records"]
    if not isinstance(records, list) or not records:
        raise bad("records is not a non-empty list")
    seen: set[tuple[Any, ...]] = set()
    for i, record in enumerate(records):
        problem = _bench_record_problem(record)
        if problem:
            raise bad(f"records[{i}] {problem}")
        config = config_of(record, BENCH_CONFIG)
        if config in seen:
            raise bad(f"records[{i}] repeats {dict(zip(BENCH_CONFIG, config))}")
        seen.add(config)
    return Benchmark(
        source=str(path),
        machine=data["machine"],
        date=date,
        records=records,
        device=data.get("device"),
        batch_size=data.get("batch_size"),
        bf16=data.get("bf16"),
    )


def _bench_record_problem(record: Any) -> str | None:
    """What is wrong with one benchmark record, or None."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    missing = [key for key in (*BENCH_CONFIG, *BENCH_METRICS) if key not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in ("backbone", "normalization"):
        if not isinstance(record[key], str):
            return f"{key} {record[key]!r} is not a string"
    for key in ("reduction", "heads"):
        if not isinstance(record[key], int) or isinstance(record[key], bool) or record[key] < 1:
            return f"{key} {record[key]!r} is not a positive integer"
    for key in BENCH_METRICS:
        value = record[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            return f"{key} {value!r} is not a non-negative number"
    return None
