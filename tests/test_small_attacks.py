"""Smaller findings of issue 20, item 16: a fit of no batches, stray rank variables, cache file permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from tinyfit import FAST_DEMO

from nlbench.data.cache import ImageArrays, write_cache
from nlbench.lightning_cli import ConfigError, main, parse_fit_args

REPO = Path(__file__).resolve().parents[1]
# With the demo's schedule: a test is parametrized over it. Every test gives its limit_train_batches.
TINY = [*FAST_DEMO, "--trainer.logger=false"]


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


@pytest.mark.parametrize("scheduler", [[], ["--model.scheduler=null"]], ids=["one-cycle", "no-scheduler"])
def test_a_fit_of_no_batches_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: list[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, "--trainer.limit_train_batches", "0", *scheduler, f"--run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nlbench fit: error: trainer.limit_train_batches: 0 trains no batch"), err
    assert not run_dir.exists()  # nothing recorded as "finished"
    with pytest.raises(ConfigError, match="trainer.limit_train_batches: 0"):  # the sweep's dry run refuses it too
        parse_fit_args([*TINY, "--trainer.limit_train_batches=0.0", *scheduler])


def test_stray_rank_variables_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "NLBENCH_DDP_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, "--trainer.limit_train_batches=1", f"--run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "nlbench fit: error: RANK=1 LOCAL_RANK=1 set in the environment, but no launcher "
        "Lightning detects started this process; unset them"
    )
    assert not run_dir.exists()


def test_cache_files_follow_the_umask(tmp_path: Path) -> None:
    arrays = ImageArrays(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ["a"])
    old = os.umask(0o002)  # a shared data folder's group-writable umask
    try:
        write_cache(tmp_path / "split.pt", arrays, fingerprint="x", verified=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "split.pt").stat().st_mode) == 0o664


def test_every_skip_says_what_it_needs_and_that_it_is_optional() -> None:
    """Item 5: a skip names what the skipped test needs and that the test is optional (no bare "no sample in ...")."""
    import re

    reasons = []
    for path in sorted((REPO / "tests").glob("*.py")):
        text = path.read_text()
        reasons += [(path.name, m) for m in re.findall(r'reason=f?"([^"]*)"', text)]
        reasons += [(path.name, m) for m in re.findall(r'pytest\.skip\(f?"([^"]*)"', text)]
    assert reasons
    assert [r for r in reasons if not r[1].startswith("optional: needs")] == []
