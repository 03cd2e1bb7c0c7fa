"""Issue 26 item 5: launcher variables are honoured only as a set Lightning detects (nlbench.launch); any other
combination is refused in one line before anything is written, so every rank that writes holds the run lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyfit import TINY

from nlbench import launch
from nlbench.lightning_cli import main

# Whatever the test machine's shell has set, each case starts from none of these.
LAUNCHER_ENV = (
    *launch.RANK_VARS,
    "TORCHELASTIC_RUN_ID",
    "SLURM_NTASKS",
    "SLURM_JOB_NAME",
    "MASTER_ADDR",
    "MASTER_PORT",
    launch.DDP_RUN_DIR_ENV,
    "LSB_JOBID",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCHER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        # The two: NODE_RANK alone skipped the run directory's lock; LOCAL_RANK=1 next to SLURM_PROCID=0 ran
        # as a worker and ended "finished" without metrics.csv.
        ({"NODE_RANK": "1"}, [], "NODE_RANK=1 set in the environment, but no launcher Lightning detects"),
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, [], "LOCAL_RANK=1 set in the environment, but no launcher"),
        (
            {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "interactive"},
            [],
            "SLURM_PROCID=1 set in the environment",
        ),  # Lightning ignores SLURM in an interactive job
        (
            {"TORCHELASTIC_RUN_ID": "x", "RANK": "1"},
            [],
            "torchrun (TORCHELASTIC_RUN_ID is set) needs RANK, LOCAL_RANK, WORLD_SIZE, but LOCAL_RANK is not set",
        ),
        (
            {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "LOCAL_RANK": "1"},
            [],
            "LOCAL_RANK=1 disagrees with SLURM's rank (0)",
        ),
        (
            {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "NODE_RANK": "1"},
            [],
            "NODE_RANK=1 but --trainer.num_nodes is 1",
        ),
        ({"OMPI_COMM_WORLD_RANK": "1"}, [], "OMPI_COMM_WORLD_RANK=1 set in the environment"),
    ],
)
def test_launcher_variables_that_are_not_a_launchers_set_are_refused(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, "--trainer.limit_train_batches=1", f"--run_dir={run_dir}", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nlbench fit: error: ") and message in err[0], err
    assert not run_dir.exists()  # nothing written, nothing recorded as "finished"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, launch.Launch()),
        (
            {"LOCAL_RANK": "0", "RANK": "0", "SLURM_PROCID": "0", "WORLD_SIZE": "1"},
            launch.Launch(),
        ),  # rank 0 of nothing
        (
            {
                "TORCHELASTIC_RUN_ID": "j",
                "RANK": "3",
                "LOCAL_RANK": "1",
                "GROUP_RANK": "1",
                "LOCAL_WORLD_SIZE": "2",
                "WORLD_SIZE": "4",
            },
            launch.Launch("torchelastic", 3),
        ),
        (
            {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "1"},
            launch.Launch("slurm", 2),
        ),
        ({"MASTER_ADDR": "h", "MASTER_PORT": "1", "NODE_RANK": "0"}, launch.Launch("nodes", 0, 0)),
        ({"MASTER_ADDR": "h", "MASTER_PORT": "1", "NODE_RANK": "1", "WORLD_SIZE": "2"}, launch.Launch("nodes", 1, 1)),
        (
            {
                launch.DDP_RUN_DIR_ENV: "/r",
                "LOCAL_RANK": "1",
                "WORLD_SIZE": "2",
                "NODE_RANK": "0",
                "MASTER_ADDR": "h",
                "MASTER_PORT": "1",
            },
            launch.Launch("ddp-worker", 1, 0),
        ),
    ],
)
def test_a_launchers_complete_set_is_honoured(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: launch.Launch
) -> None:
    assert launch.detect(env) == expected
    assert expected.writes == (expected.global_rank == 0)


def test_nodes_started_by_hand_name_one_of_num_nodes(clean_env: pytest.MonkeyPatch) -> None:
    node = launch.detect({"MASTER_ADDR": "h", "MASTER_PORT": "1", "NODE_RANK": "1"})
    launch.check_num_nodes(node, 2)
    with pytest.raises(launch.LaunchError, match="NODE_RANK=1 but --trainer.num_nodes is 1"):
        launch.check_num_nodes(node, 1)
