"""`nlbench fit --help` fits a screen or two; the full surface is one flag away (issue 20, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlbench.cli import main, parse_fit_args

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
    assert "--model.backbone.depth DEPTH" in help_of(["fit", "--model.backbone.help", "nlbench.models.PreActResNet"],
                                                      capsys)
    assert "--model.optimizer.lr LR" in help_of(["fit", "--model.optimizer.help", "SGD"], capsys)
