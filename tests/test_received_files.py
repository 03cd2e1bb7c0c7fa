"""Issue 26, items 1, 6, 7, 8 and 9: what a received sweep directory, spec, result file or fit config can do.

Each finding of the attack is replayed: symbolic links in a sweep or run directory to files *outside* it (which must
stay intact), FIFOs where the readers look, a sweep directory matched on its base file's name, a spec with fewer
axes, result files too large or nested too deeply, a huge label, the unreadable list's lookup, configs nested 990
deep, fits that train no step, terminal escapes in a lock's owner, a 99k-character value echoed, HTML in report.md.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shutil
import signal
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tinyfit import REPO, TINY

from nlbench import limits, results, schema, sweepdir
from nlbench.io import UnsafeFileError, atomic_write_text, open_append
from nlbench.record import RunDir, RunRecord, Unreadable, identify, read_record, write_record
from nlbench.runlock import RunLock, owner
from nlbench.sweep import Slot, load_spec, run_sweep
from nlbench.sweep.runner import SweepDirError, claim_path, run_dir_of

# A fake `nlbench fit` (no torch): writes result.json as the fit does, its config and differing keys included.
FAKE_FIT = [
    sys.executable,
    "-c",
    """
import json, sys
from pathlib import Path
opts = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith("--") and "=" in arg)
run_dir = Path(opts["run_dir"])
run_dir.mkdir(parents=True, exist_ok=True)
seed = int(opts.get("seed_everything", "0"))
metrics = {"val/acc1_best": 0.5 + seed / 100, "epochs": 1, "global_step": 10}
record = {"status": "finished", "run_name": run_dir.name, "hparams": {"seed": seed}, "metrics": metrics,
          "config": {"seed_everything": seed, "trainer.max_epochs": int(opts.get("trainer.max_epochs", "1"))},
          "differs": [key for key in ("seed_everything", "trainer.max_epochs") if key in opts]}
(run_dir / "result.json").write_text(json.dumps(record))
""",
    "fit",
]


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the test run) when the block blocks longer than ``seconds``, e.g. on a FIFO."""

    def expired(signum: int, frame: Any) -> None:
        raise AssertionError(f"blocked for more than {seconds} s (a FIFO opened for reading?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_spec(folder: Path, body: dict[str, Any], *, base_text: str = "trainer: {}\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(base_text)
    spec = folder / "sweep.yaml"
    spec.write_text(json.dumps({"name": "t", "base": "base.yaml", **body}))
    return spec


def sweep(spec_path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    return run_sweep(
        load_spec(spec_path), slots=[Slot()], fit_command=FAKE_FIT, progress=False, poll_interval_s=0.02, **kwargs
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every sweep and run directory of the test, holding files that must stay intact."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("precious.txt", "config.yaml", "metrics.csv", "result.json", "hparams.yaml", "stdout.log"):
        (folder / name).write_text(f"{name}: keep me\n")
    return folder


def intact(folder: Path) -> bool:
    return {p.name: p.read_text() for p in folder.iterdir()} == {
        p.name: f"{p.name}: keep me\n" for p in folder.iterdir()
    }


# ---- item 1: no file in a sweep or run directory is written through a link ---------------------------------------
@pytest.mark.parametrize(
    "where",
    [
        "claims/RUN.lock",
        "runs/RUN/.lock",
        "runs/RUN/stdout.log",
        "runs/RUN/result.json",
        "runs/RUN",
        "claims",
        "runs",
        "results.csv",
        "results.json",
        "sweep.yaml",
        "slurm",
    ],
)
def test_a_sweep_never_writes_through_a_link_in_its_directory(tmp_path: Path, outside: Path, where: str) -> None:
    spec_path = write_spec(tmp_path / "spec", {"output_dir": str(tmp_path / "out"), "axes": {"seed_everything": [0]}})
    spec = load_spec(spec_path)
    sweep(spec_path)  # a finished sweep directory: sweep.yaml, results, claims/, runs/<id>/
    (run,) = spec.expand()
    (spec.output_dir / "runs" / run.run_id / "result.json").unlink()  # so the run is started again
    path = spec.output_dir / where.replace("RUN", run.run_id)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(outside if where in ("runs/RUN", "claims", "runs", "slurm") else outside / "precious.txt")
    with pytest.raises(SweepDirError, match="symbolic link"):
        sweep(spec_path)
    assert intact(outside)
    from nlbench.sweep_command import main

    # --dry-run and --status say so too, before listing a directory that is not what it seems.
    for flags in (["--status"], ["--dry-run"]):
        assert main(["--config", str(spec_path), *flags]) == 2
    assert intact(outside)


def test_a_sweep_command_refuses_a_linked_run_directory_in_one_line(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end, with the real fit parser: exit code 2, one line, the other directory's files untouched."""
    spec_path = write_spec(
        tmp_path / "spec",
        {
            "base": str(REPO / "experiments" / "demo.yaml"),
            "output_dir": str(tmp_path / "out"),
            "axes": {"seed_everything": [0]},
        },
    )
    spec = load_spec(spec_path)
    (run,) = spec.expand()
    run_dir_of(spec, run).parent.mkdir(parents=True)
    run_dir_of(spec, run).symlink_to(outside)
    from nlbench.sweep_command import main

    assert main(["--config", str(spec_path), "--max-runs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    (line,) = [line for line in err if "error" in line]
    assert line.startswith("nlbench sweep: error: ") and "symbolic link" in line and str(run_dir_of(spec, run)) in line
    assert intact(outside)


@pytest.mark.parametrize(
    "name", ["config.yaml", "metrics.csv", "hparams.yaml", "result.json", ".lock", "wandb-id", "checkpoints"]
)
def test_a_fit_never_writes_through_a_link_in_its_run_directory(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from nlbench.lightning_cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / name).symlink_to(outside if name == "checkpoints" else outside / "precious.txt")
    assert main(["fit", *TINY, "--trainer.limit_train_batches=1", f"--run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nlbench fit: error: ") and "symbolic link" in err[-1], err
    assert intact(outside) and sorted(p.name for p in outside.iterdir()) == sorted(
        ["precious.txt", "config.yaml", "metrics.csv", "result.json", "hparams.yaml", "stdout.log"]
    )


def test_a_run_directory_that_is_a_link_is_refused(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nlbench.lightning_cli import main

    linked = tmp_path / "linked"
    linked.symlink_to(outside)  # --run_dir pointing at another run's folder
    for command in ("fit", "validate"):
        assert main([command, *TINY, "--trainer.limit_train_batches=1", f"--run_dir={linked}"]) == 2
        assert "is a symbolic link" in capsys.readouterr().err
    assert intact(outside) and len(list(outside.iterdir())) == 6


@pytest.mark.parametrize("where", ["report", "report/report.md", "report/learning_curves.png"])
def test_a_report_is_never_written_through_a_link_in_the_sweep_directory(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    from nlbench.report_command import main as report_main

    spec_path = write_spec(tmp_path / "spec", {"output_dir": str(tmp_path / "out"), "axes": {"seed_everything": [0]}})
    sweep(spec_path)
    path = tmp_path / "out" / where
    path.parent.mkdir(exist_ok=True)
    path.symlink_to(outside if where == "report" else outside / "precious.txt")
    assert report_main([str(tmp_path / "out")]) == 2  # the default output folder: <sweep_dir>/report
    assert "symbolic link" in capsys.readouterr().err
    assert intact(outside) and len(list(outside.iterdir())) == 6


def test_nlbench_writers_refuse_links(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "file"
    link.symlink_to(outside / "precious.txt")
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        atomic_write_text(link, "x")  # a rename over the link would not write through it, but hides it: refused
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        open_append(link)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        RunLock(tmp_path, path=link).acquire()  # O_RDWR|O_CREAT would have truncated it to 0 bytes
    from nlbench.sweep import slurm

    spec = load_spec(
        write_spec(tmp_path / "spec", {"output_dir": str(tmp_path / "out"), "axes": {"seed_everything": [0]}})
    )
    (spec.output_dir / sweepdir.SLURM).mkdir(parents=True)
    (spec.output_dir / sweepdir.SLURM / slurm.JOBS_FILE).symlink_to(outside / "precious.txt")
    assert slurm.submitted_jobs(spec) == {}  # read neither through the link ...
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        open_append(spec.output_dir / sweepdir.SLURM / slurm.JOBS_FILE)  # ... nor appended to (slurm.submit)
    assert intact(outside)


def test_a_checkpoint_linked_beside_its_target_is_allowed(tmp_path: Path) -> None:
    """Lightning's ``save_last: link`` makes last.ckpt a link to a checkpoint beside it: not a link elsewhere."""
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "epoch3.ckpt").write_bytes(b"x")
    (checkpoints / "last.ckpt").symlink_to("epoch3.ckpt")
    RunDir(tmp_path / "run").check_files()
    (checkpoints / "best.ckpt").symlink_to(tmp_path / "elsewhere.ckpt")
    with pytest.raises(UnsafeFileError, match="best.ckpt: a symbolic link"):
        RunDir(tmp_path / "run").check_files()


# ---- item 1 (readers) and 7: a reader never blocks on a FIFO ------------------------------------------------------
@pytest.mark.parametrize(
    "where",
    [
        "runs/RUN/.lock",
        "claims/RUN.lock",
        "runs/RUN/result.json",
        "runs/RUN/metrics.csv",
        "runs/RUN/config.yaml",
        "runs/RUN/stdout.log",
        "sweep.yaml",
        "slurm/jobs.txt",
    ],
)
def test_readers_never_block_on_a_fifo(tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write_spec(
        tmp_path / "spec", {"output_dir": str(tmp_path / "out"), "axes": {"seed_everything": [0, 1]}}
    )
    spec = load_spec(spec_path)
    sweep(spec_path)
    run = spec.expand()[0]
    path = spec.output_dir / where.replace("RUN", run.run_id)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    from nlbench.report_command import main as report_main
    from nlbench.sweep_command import print_status

    with deadline(60):
        frame = results.load(spec.output_dir, curves=True)
        assert len(frame) >= 2
        assert report_main([str(spec.output_dir), "--out", str(tmp_path / "report")]) == 0
        if where != "sweep.yaml":
            print_status(spec, spec.expand())
    assert "Traceback" not in capsys.readouterr().err


# ---- item 6: a sweep directory is its spec's content ---------------------------------------------------------------
def test_a_same_named_spec_over_another_base_config_is_another_sweep(tmp_path: Path) -> None:
    out = tmp_path / "out"
    victim = write_spec(
        tmp_path / "a",
        {"output_dir": str(out), "axes": {"seed_everything": [0, 1]}},
        base_text="trainer: {max_epochs: 300}\n",
    )
    sweep(victim)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # Same spec name, same base file name (base.yaml), same overrides: a different demo.yaml.
    attacker = write_spec(
        tmp_path / "b",
        {"output_dir": str(out), "axes": {"seed_everything": [0, 1]}},
        base_text="trainer: {max_epochs: 1}\n",
    )
    with pytest.raises(SweepDirError, match="differs in base config content"):
        sweep(attacker, max_runs=0)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # sweep.yaml, results kept
    # The same content under another layout (comments, key order) is the same sweep: adopted.
    same = write_spec(
        tmp_path / "c",
        {"output_dir": str(out), "axes": {"seed_everything": [0, 1, 2]}},
        base_text="# the same experiment\ntrainer:\n  max_epochs: 300\n",
    )
    assert [row["status"] for row in sweep(same)] == ["finished"] * 3


def test_an_earlier_versions_sweep_directory_says_how_to_adopt_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec_path = write_spec(tmp_path / "a", {"output_dir": str(out), "axes": {"seed_everything": [0]}})
    sweep(spec_path)
    stored = yaml.safe_load((out / "sweep.yaml").read_text())
    digest = stored.pop("base_digest")
    (out / "sweep.yaml").write_text(yaml.safe_dump(stored))  # as nlbench wrote it before issue 26
    with pytest.raises(SweepDirError, match=f"add the line 'base_digest: {digest}'"):
        sweep(spec_path)


def test_a_spec_with_fewer_axes_keeps_every_finished_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep(
        write_spec(
            tmp_path / "a", {"output_dir": str(out), "axes": {"seed_everything": [0, 1], "trainer.max_epochs": [1, 2]}}
        )
    )
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 4
    rows = sweep(write_spec(tmp_path / "b", {"output_dir": str(out), "axes": {"seed_everything": [0]}}))
    table = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(table) == 5  # the new run (max_epochs from the base), then the four finished ones
    assert all(row["status"] == "finished" for row in table)
    assert sorted((row["seed"], row["max_epochs"]) for row in table[1:]) == [
        ("0", "1"),
        ("0", "2"),
        ("1", "1"),
        ("1", "2"),
    ]
    assert len(json.loads((out / "results.json").read_text())) == 5


# ---- item 7: received-file limits ----------------------------------------------------------------------------------
def _one_run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_record(run_dir, RunRecord(status="finished", run_name="r", hparams={"seed": 0}))
    return run_dir


def test_a_result_json_nested_100k_deep_is_unreadable_not_a_traceback(tmp_path: Path) -> None:
    run_dir = _one_run_dir(tmp_path)
    (run_dir / "result.json").write_text('{"status": "finished", "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (row,) = results.load(run_dir).to_dict("records")
    assert row["status"] == "unreadable" and "nested too deeply" in row["error"]
    with pytest.raises(Unreadable, match="nested too deeply"):  # the sweep's reader too: one answer, one policy
        read_record(run_dir)
    deep = json.loads("[" * 500 + "]" * 500)  # parses, but nests past the limit every later step assumes
    (run_dir / "result.json").write_text(json.dumps({"status": "finished", "config": {"a": [[[0]]], "b": deep}}))
    (row,) = results.load(run_dir).to_dict("records")
    assert row["status"] == "unreadable" and f"nested more than {limits.MAX_DEPTH} levels" in row["error"]


@pytest.mark.parametrize("name", ["result.json", "metrics.csv"])
def test_a_huge_received_file_is_refused_before_it_is_read(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's 1 GB file took 2 GB of memory: past the per-file limit it is refused unread (a sparse file)."""
    run_dir = _one_run_dir(tmp_path)
    limit = limits.MAX_JSON_BYTES if name == "result.json" else limits.MAX_CSV_BYTES
    with open(run_dir / name, "wb") as f:
        f.truncate(limit + 2**20)  # sparse: no disk space, no time
    tracemalloc.start()
    try:
        (row,) = results.load(run_dir, curves=True).to_dict("records")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert row["status"] == "unreadable" and "limit" in row["error"] and name in row["error"], row["error"]
    assert peak < 16 * 2**20  # far below the file's size: nothing of it was read


def test_metrics_csv_is_streamed_within_line_and_epoch_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _one_run_dir(tmp_path)
    (run_dir / "metrics.csv").write_text("epoch,step,val/acc1\n" + "1," * (limits.MAX_CSV_LINE // 2 + 1) + "\n")
    (row,) = results.load(run_dir, curves=True).to_dict("records")
    assert row["status"] == "unreadable" and "a line longer than" in row["error"]
    monkeypatch.setattr(limits, "MAX_EPOCHS", 100)
    (run_dir / "metrics.csv").write_text("epoch,step,val/acc1\n" + "".join(f"{e},{e},0.5\n" for e in range(101)))
    (row,) = results.load(run_dir, curves=True).to_dict("records")
    assert row["status"] == "unreadable" and "more than 100 epochs" in row["error"]
    (run_dir / "metrics.csv").write_text("epoch,step,val/acc1\n" + "".join(f"{e},{e},0.5\n" for e in range(100)))
    assert results.load(run_dir, curves=True)["status"].tolist() == ["finished"]


def test_a_huge_label_is_cut_in_figures_and_whole_in_tables(tmp_path: Path) -> None:
    from nlbench.report import collect, plots, render

    long = "x" * 100_000
    for i, normalization in enumerate(["softmax", long]):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / f"r{i}{seed}"
            run_dir.mkdir(parents=True)
            write_record(
                run_dir,
                RunRecord(
                    status="finished",
                    run_name=f"r{i}{seed}",
                    hparams={"normalization": normalization, "reduction": 2, "seed": seed},
                    metrics={schema.BEST_ACC1: 0.5 + i / 10, schema.FINAL_ACC1: 0.5, schema.IMAGES_PER_S: 10.0 + seed},
                ),
            )
    swept = collect.load_sweep(tmp_path)
    for figure in (plots.error_by_configuration(swept), plots.throughput_and_params(swept)):
        texts = [
            t.get_text()
            for ax in figure.axes
            for t in [*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts, ax.title]
        ]
        texts += [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert texts and max(map(len, texts)) <= 4 * limits.MAX_LABEL_CHARS
        assert any(text.startswith("x" * 10) and text.endswith("…") for text in texts)
    table = render.configuration_table(swept)
    assert any(long in cell for row in table.rows for cell in row)  # the table holds the whole value


def test_the_unreadable_runs_are_looked_up_once_per_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26: `run not in sweep.unreadable` rebuilt the list for every run (a stored spec of 316 x 316 runs with one
    real run was still reporting after 400 s). Counted, not timed: the list is built a fixed number of times."""
    from nlbench.report import collect, render

    spec = {
        "name": "big",
        "base": ["base.yaml"],
        "axes": {"seed_everything": list(range(300)), "trainer.max_epochs": [1, 2]},
    }
    (tmp_path / "runs").mkdir()
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    write_record(
        tmp_path / "runs" / "real", RunRecord(status="finished", hparams={"seed": 0}, metrics={schema.BEST_ACC1: 0.5})
    )
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "result.json").write_bytes(b"\xff\xfe")
    swept = collect.load_sweep(tmp_path)
    assert len(swept.runs) == 602 and len(swept.unreadable) == 1
    calls = []
    real = collect.Sweep.unreadable

    def counted(self: collect.Sweep) -> list[dict[str, Any]]:
        calls.append(1)
        return real.fget(self)

    monkeypatch.setattr(collect.Sweep, "unreadable", property(counted))
    title, sections = render.build_report(swept)
    assert len(calls) <= 5, len(calls)
    assert "Runs left out of the statistics" in [section.title for section in sections]


@pytest.mark.parametrize("what", ["spec", "fit config", "command-line value"])
def test_yaml_nested_990_deep_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    deep = "[" * 990 + "]" * 990
    if what == "spec":
        from nlbench.sweep_command import main

        spec = write_spec(tmp_path, {"axes": {"seed_everything": [0]}})
        spec.write_text(f"base: base.yaml\naxes: {{seed_everything: [0]}}\noverrides: {{trainer.x: {deep}}}\n")
        assert main(["--config", str(spec), "--dry-run"]) == 2
        program = "nlbench sweep"
    else:
        from nlbench.lightning_cli import main

        config = tmp_path / "deep.yaml"
        config.write_text(f"trainer:\n  plugins: {deep}\n")
        args = [f"--config={config}"] if what == "fit config" else [f"--trainer.plugins={deep}"]
        assert main(["fit", *TINY, *args, f"--run_dir={tmp_path / 'run'}"]) == 2
        program = "nlbench fit"
    err = capsys.readouterr().err.strip().splitlines()
    (line,) = [line for line in err if line.startswith(f"{program}: error: ")]
    assert "nested" in line, err
    assert "Traceback" not in "\n".join(err) and "RecursionError" not in "\n".join(err)


# ---- item 8: a fit that trains no step -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option",
    [
        "--trainer.max_epochs=0",
        "--trainer.max_steps=0",
        "--trainer.max_time=00:00:00:00",
        "--trainer.limit_train_batches=0.0",
    ],
)
def test_a_fit_that_trains_no_step_is_refused_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    from nlbench.lightning_cli import ConfigError, main, parse_fit_args

    key = option[2:].split("=")[0]
    run_dir = tmp_path / "run"
    assert main(["fit", *TINY, option, f"--run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"nlbench fit: error: {key}: "), err
    assert not run_dir.exists()  # nothing recorded, so nothing a sweep could count as finished
    with pytest.raises(ConfigError, match=key):  # the sweep's up-front check refuses such a spec too
        parse_fit_args([*TINY, option])


def test_a_fit_that_stopped_before_its_first_step_is_recorded_failed(tmp_path: Path) -> None:
    """What the CLI's check does not see (a Trainer built otherwise) still never reads "finished"."""
    import lightning as L
    import torch

    from nlbench.callbacks import RunResult

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2), torch.zeros(4)), batch_size=2)
    identity = identify(nl=None, dataset="d", backbone="B")
    trainer = L.Trainer(
        max_epochs=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RunResult(str(tmp_path), identity)],
    )
    trainer.fit(Tiny(), data)
    record = read_record(tmp_path)
    assert record is not None and record.status == "failed" and "trained no step" in (record.error or "")


# ---- item 9: received text reaching a terminal or a report -------------------------------------------------------
def test_a_claims_owner_text_is_printed_without_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nlbench.sweep_command import print_status

    spec = load_spec(
        write_spec(tmp_path / "spec", {"output_dir": str(tmp_path / "out"), "axes": {"seed_everything": [0]}})
    )
    (run,) = spec.expand()
    lock = claim_path(spec, run)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": "\x1b[2J", "host": "\x1b]0;owned\x07\x1b[31mhost", "command": "a\rb\nc"}))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live owner, as far as the reader can tell
        who = owner(run_dir_of(spec, run), path=lock)
        print_status(spec, [run])
    out = capsys.readouterr().out
    assert who is not None and who.pid is None and "\x1b" not in (who.host or "")
    assert "running" in out and "\\x1b[31mhost" in out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out


def test_a_rejected_99k_character_value_is_not_echoed_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nlbench.lightning_cli import main as fit_main
    from nlbench.sweep_command import main as sweep_main

    value = "q" * 99_000
    spec = write_spec(tmp_path, {"axes": {"seed_everything": [0]}})
    spec.write_text(f"base: base.yaml\naxes: {{seed_everything: [0, !!binary {'QUFB' * 24_000}]}}\n")
    assert sweep_main(["--config", str(spec), "--dry-run"]) == 2  # refused by the spec's own checks
    spec.write_text(
        f"base: {REPO / 'experiments' / 'demo.yaml'}\naxes: {{model.backbone.nl.normalization: [softmax, {value}]}}\n"
    )
    assert sweep_main(["--config", str(spec), "--dry-run"]) == 2  # refused by the fit parser
    assert fit_main(["fit", *TINY, f"--model.backbone.nl.normalization={value}"]) == 2  # not a method
    err = capsys.readouterr().err.strip().splitlines()
    assert all(len(line) <= limits.MAX_LINE_CHARS + 200 for line in err), [len(line) for line in err]
    sweep_lines = [line for line in err if line.startswith("nlbench sweep: error: ")]
    (fit_line,) = [line for line in err if line.startswith("nlbench fit: error: ")]
    assert len(sweep_lines) == 2 and all("characters)" in line for line in sweep_lines)
    assert "unknown normalization" in fit_line and "characters)" in fit_line


def test_report_md_escapes_html_from_received_values(tmp_path: Path) -> None:
    from nlbench.report_command import main as report_main

    for i, normalization in enumerate(["softmax", "<script>alert(1)</script>", "[x](javascript:alert(3))"]):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / f"r{i}{seed}"
            run_dir.mkdir(parents=True)
            write_record(
                run_dir,
                RunRecord(
                    status="finished" if seed == 0 else "failed",
                    run_name=f"r{i}{seed}",
                    hparams={"normalization": normalization, "seed": seed},
                    metrics={schema.BEST_ACC1: 0.5},
                    error=None if seed == 0 else "<img src=x onerror=alert(2)>",
                ),
            )
    assert report_main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(2)&gt;" in md
    assert "[x](javascript" not in md and "[x]\\(javascript:alert(3))" in md  # literal text, not a link
