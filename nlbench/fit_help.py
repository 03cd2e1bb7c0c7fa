"""``nlbench fit --help`` without importing torch and Lightning: the text LightningCLI prints, recorded.

Building the fit parser needs Lightning's Trainer, whose import alone takes over 4 s on a 2-core machine (Lightning
imports torchmetrics, which imports torchvision and torch._dynamo; BENCHMARKS.md "Start-up time"). The help it
prints depends only on nlbench's code and the installed versions of the libraries that shape it, so it is recorded
in ``fit_help.txt`` (80 columns, the width of a pipe) with those versions, and printed from there when they match;
otherwise the live parser answers. tests/test_fit_help.py checks that the recorded text is what the parser prints
(regenerate it with ``make fit-help`` after changing an option or a docstring that the help shows).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from importlib import metadata
from pathlib import Path

HELP_FILE = Path(__file__).with_name("fit_help.txt")
# The distributions whose code shapes the help (besides nlbench's own): recorded with the text.
SHAPED_BY = ("lightning", "jsonargparse", "torch", "torchvision", "torchmetrics", "docstring-parser")
COLUMNS = 80


def versions() -> dict[str, str | None]:
    """The installed versions of :data:`SHAPED_BY` (importlib.metadata: no import of the packages)."""
    found: dict[str, str | None] = {}
    for name in SHAPED_BY:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def recorded() -> str | None:
    """The recorded help, when it was recorded with the versions installed here; else None."""
    try:
        header, _, text = HELP_FILE.read_text(encoding="utf-8").partition("\n")
        return text if json.loads(header) == versions() else None
    except (OSError, ValueError):
        return None


def live() -> str:
    """What ``nlbench fit --help`` prints from the parser itself, at :data:`COLUMNS` columns (imports Lightning)."""
    from nlbench.lightning_cli import main

    out = io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(COLUMNS)  # argparse's width; a pipe's default
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["fit", "--help"])
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue()


def write() -> Path:
    """Record the live help with the installed versions (``make fit-help``)."""
    HELP_FILE.write_text(json.dumps(versions(), sort_keys=True) + "\n" + live(), encoding="utf-8")
    return HELP_FILE


if __name__ == "__main__":
    print(f"wrote {write()}")
    sys.exit(0)
