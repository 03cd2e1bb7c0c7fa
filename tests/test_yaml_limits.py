"""Received YAML within bounds (issue 20, item 14): alias bombs and huge files refused in one line, at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nlbench import yamlsafe
from nlbench.lightning_cli import main
from nlbench.sweep.spec import SweepSpecError, load_spec

REPO = Path(__file__).resolve().parents[1]


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """The attack's own shape: each level lists the previous one `width` times (10**9 strings when expanded)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_sweep_spec_is_refused_at_once(tmp_path: Path) -> None:
    spec = tmp_path / "bomb.yaml"
    bomb = alias_bomb().replace("a0:", "  a0:").replace("\na", "\n  a")
    spec.write_text(
        f"base: [{REPO / 'experiments' / 'demo.yaml'}]\noverrides:\n{bomb}axes:\n  seed_everything: [0, 1]\n"
    )
    start = time.perf_counter()
    with pytest.raises(SweepSpecError, match=r"bomb.yaml: YAML aliases expand to more than"):
        load_spec(spec)
    assert time.perf_counter() - start < 5


def test_alias_bomb_in_a_fit_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(
        "config: "
        + str(REPO / "experiments" / "demo.yaml")
        + "\n"
        + "model:\n  label_smoothing: 0.0\n"
        + "trainer:\n  callbacks:\n"
        + "".join(f"    {line}\n" for line in ["- " + alias_bomb()])
    )
    assert main(["fit", f"--config={config}", f"--run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"nlbench fit: error: --config {config}: YAML aliases expand to more than")
    assert not (tmp_path / "run").exists()


def test_alias_bomb_in_an_included_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inner.yaml").write_text(alias_bomb())
    outer = tmp_path / "outer.yaml"
    outer.write_text("config: inner.yaml\n")
    assert main(["fit", f"--config={outer}", f"--run_dir={tmp_path / 'run'}"]) == 2
    assert "inner.yaml: YAML aliases expand to more than" in capsys.readouterr().err


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(yamlsafe.YamlLimitError, match="refers to the node that contains it"):
        yamlsafe.safe_load("a: &a [1, *a]\n", "x.yaml")


def test_huge_config_files_are_refused_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "huge.yaml"
    with open(config, "w") as f:
        f.write("trainer:\n  max_epochs: 1\n")
        line = "# " + "x" * 1000 + "\n"
        f.write(line * (5 * 1024))  # 5,240,880 bytes of comments
    assert main(["fit", f"--config={config}"]) == 2
    assert "huge.yaml: config file of 4.9 MB is over the 4 MB limit" in capsys.readouterr().err
    spec = tmp_path / "huge_spec.yaml"
    config.rename(spec)
    with pytest.raises(SweepSpecError, match="huge_spec.yaml: sweep spec of 4.9 MB is over"):
        load_spec(spec)


def test_ordinary_aliases_still_load() -> None:
    assert yamlsafe.safe_load("a: &x {b: 1}\nc: *x\n", "ok.yaml") == {"a": {"b": 1}, "c": {"b": 1}}
