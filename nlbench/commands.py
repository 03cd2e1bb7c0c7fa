"""The ``nlbench`` command's table of subcommands and its dispatcher.

Kept free of heavy imports: a subcommand's module (and with it torch, Lightning or matplotlib) is imported only
when that subcommand runs, so ``nlbench --help`` and a usage error answer in well under a second
(``nlbench bench imports`` measures it).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

# Subcommands implemented outside LightningCLI: name -> (module with main(argv), one-line help).
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("nlbench.sweep_command", "run a grid of fit runs (resumable), or export it as a W&B sweep"),
    "report": ("nlbench.report_command", "write report.md/report.html/PNGs for a sweep directory"),
    "analyze": ("nlbench.analysis", "the paper's key magnitude/direction analysis of a trained run"),
    "bench": ("nlbench.bench", "benchmarks: block, loader, train, imports, sweep, device-check"),
}
# LightningCLI subcommands, run by nlbench.lightning_cli.
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a model (one run directory per run)",
    "validate": "evaluate on the validation split",
    "test": "evaluate on the test split",
    "predict": "class probabilities for the test split, written to <run_dir>/predict/predictions.csv",
}


def print_overview() -> None:
    print("usage: nlbench <command> [options]   (nlbench <command> --help for a command's options)\n")
    print("Training (LightningCLI; --config experiments/<name>.yaml, dotted overrides, --print_config):")
    for name, text in LIGHTNING_COMMANDS.items():
        print(f"  {name:<10} {text}")
    print("\nStudy:")
    for name, (_, text) in EXTRA_COMMANDS.items():
        print(f"  {name:<10} {text}")


def drop_current_folder() -> None:
    """Under ``python -m nlbench``, take the current folder off the import path, as ``python -P`` does: a module in
    it (beside a received run directory, or inside one) must not be what a class path from that run imports. Only the
    entry Python put first; a folder listed in PYTHONPATH stays. (The package itself is already imported by then:
    start `nlbench` or `python -P -m nlbench` where a folder named nlbench is in the current folder.)"""
    if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


def main(argv: list[str] | None = None) -> int:
    """The ``nlbench`` entry point. ``argv=None`` reads ``sys.argv`` (LightningCLI then reads it too: DDP workers
    re-run the same command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print_overview()
        return 0
    if args[0] in EXTRA_COMMANDS:
        entry: Callable[[list[str]], int] = importlib.import_module(EXTRA_COMMANDS[args[0]][0]).main
        return entry(args[1:])
    if args[0] not in LIGHTNING_COMMANDS:
        choices = ", ".join([*LIGHTNING_COMMANDS, *EXTRA_COMMANDS])
        print(f"nlbench: error: unknown command {args[0]!r}; choose from {choices}", file=sys.stderr)
        return 2
    if args[0] == "fit" and args[1:] in (["--help"], ["-h"]):
        from nlbench.fit_help import recorded

        text = recorded()  # the parser's own text, recorded: no torch or Lightning import (nlbench.fit_help)
        if text is not None:
            sys.stdout.write(text)
            return 0
    unknown = unknown_method(args[1:])
    if unknown:  # a misspelt method answers at once, not after the seconds Lightning's import takes
        print(f"nlbench {args[0]}: error: {unknown}", file=sys.stderr)
        return 2
    from nlbench.lightning_cli import main as lightning_main  # torch and Lightning: only for the training commands

    return lightning_main(argv)


# Command-line options naming a method by registered name (nlbench.nn.registry), with or without init_args.
_METHOD_OPTIONS = {
    "--model.backbone.nl.normalization": "NORMALIZATIONS",
    "--model.backbone.init_args.nl.normalization": "NORMALIZATIONS",
    "--model.backbone.block": "BLOCKS",
    "--model.backbone.init_args.block": "BLOCKS",
}


def unknown_method(args: list[str]) -> str | None:
    """The one-line error for a method option given a plain name that is not registered (a class path is left to the
    parser, which imports it), as the parser would report it; None when there is none. Torch-free."""
    for i, arg in enumerate(args):
        option, eq, value = arg.partition("=")
        if option not in _METHOD_OPTIONS or (not eq and i + 1 >= len(args)):
            continue
        value = value if eq else args[i + 1]
        if value and "." not in value and not value.startswith(("{", "[")):
            from nlbench.nn import registry

            methods = getattr(registry, _METHOD_OPTIONS[option])
            if value not in methods and not (methods is registry.BLOCKS and value in registry.RESIDUAL_KINDS):
                return str(registry.UnknownMethodError(methods.unknown(value)))
    return None
