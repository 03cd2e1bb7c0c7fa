"""`nlbench fit --help` fits a screen or two; the full surface is one flag away (issue 20, item 6)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nlbench import commands, fit_help
from nlbench.lightning_cli import main, parse_fit_args

REPO = Path(__file__).resolve().parents[1]


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_default_fit_help_is_short_and_says_where_the_rest_is(capsys: pytest.CaptureFixture[str]) -> None:
    short = help_of(["fit", "--help"], capsys)
    assert len(short.splitlines()) < 300, len(short.splitlines())
    assert "--help=full" in short and "--trainer.max_epochs" in short and "--model.optimizer" in short
    assert "--trainer.gradient_clip_val" not in short
    full = help_of(["fit", "--help=full"], capsys)
    assert "--trainer.gradient_clip_val" in full and len(full.splitlines()) > len(short.splitlines()) + 100


def test_hidden_options_still_parse_and_readme_help_examples_work(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = parse_fit_args([f"--config={REPO / 'experiments' / 'demo.yaml'}", "--trainer.gradient_clip_val=1.0"])
    assert cfg.trainer.gradient_clip_val == 1.0
    assert "--model.backbone.depth DEPTH" in help_of(
        ["fit", "--model.backbone.help", "nlbench.models.PreActResNet"], capsys
    )
    assert "--model.optimizer.lr LR" in help_of(["fit", "--model.optimizer.help", "SGD"], capsys)


def test_the_recorded_fit_help_is_what_the_parser_prints() -> None:
    """`nlbench fit --help` prints nlbench/fit_help.txt without importing Lightning (issue 26 item 12): it must be
    the parser's own text. After changing an option or a docstring the help shows: `make fit-help`."""
    assert fit_help.recorded() is not None, "fit_help.txt was recorded with other versions: run `make fit-help`"
    # In a fresh process, as `nlbench fit --help` runs: the help lists the subclasses imported so far.
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from nlbench.fit_help import live; sys.stdout.write(live())"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert fit_help.recorded() == done.stdout, "fit_help.txt is out of date: run `make fit-help`"


def test_fit_help_and_a_misspelt_method_answer_without_torch() -> None:
    """What makes them fast (no torch, no Lightning) is checked here; their time is BENCHMARKS.md's."""
    code = (
        "import sys, contextlib, io\n"
        "from nlbench.commands import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['fit', '--help']) == 0\n"
        "assert 'usage: nlbench [options] fit' in out.getvalue()\n"
        "assert main(['fit', '--model.backbone.nl.normalization', 'sigmoid']) == 2\n"
        "print(sorted(m for m in ('torch', 'lightning', 'jsonargparse') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr.strip() == (
        "nlbench fit: error: model.backbone.nl.normalization: unknown normalization "
        "'sigmoid': use one of softmax, scale, linear, efficient or a class path "
        "(package.module.Class) importable from the Python path"
    )


def test_the_readme_error_example_is_what_nlbench_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's example of a bad option, printed by nlbench itself, through the fast path and the parser."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```console\n$ nlbench fit ", 1)[1].split("```", 1)[0]
    command, *printed = block.strip().splitlines()
    args = ["fit", *shlex.split(command)]
    assert commands.main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == printed
    assert commands.unknown_method(args[1:]) is not None
    assert main(args) == 2  # the parser's own answer is the same line
    assert capsys.readouterr().err.strip().splitlines() == printed


def test_limit_options_count_batches_as_an_int_and_take_a_fraction_as_a_float(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--trainer.limit_train_batches 1` is one batch, as Lightning documents an int; it was 1.0, all of them
    (issue 26 item 13): jsonargparse tried float first. The short help says which is which."""
    config = f"--config={REPO / 'experiments' / 'demo.yaml'}"
    for text, value in (("1", 1), ("2", 2), ("1.0", 1.0), ("0.25", 0.25)):
        cfg = parse_fit_args([config, f"--trainer.limit_train_batches={text}", f"--trainer.limit_val_batches={text}"])
        assert (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches) == (value, value)
        assert type(cfg.trainer.limit_train_batches) is type(value)
    short = " ".join(help_of(["fit", "--help"], capsys).split())
    for option in ("limit_train_batches", "limit_val_batches"):
        text = short.rsplit(f"--trainer.{option} {option.upper()}", 1)[1].split("--trainer.", 1)[0]
        assert "An int counts batches (1 = one batch), a float is a fraction of them (1.0 = all" in text
