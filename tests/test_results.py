"""The one reader (nlbench.results.load): identity from the config, groups that differ only in the seed, the same
table from a sweep directory, run directories and W&B, status decided once (a killed fit is "interrupted"
everywhere), and runs whose files are torn or foreign."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tinyfit import FAST_DEMO

from nlbench import results, schema
from nlbench.record import RunRecord, identity_from_config, read_record, write_record
from nlbench.report import collect
from nlbench.report_command import main as report_main
from nlbench.sweep.spec import spec_from_dict
from nlbench.sweep.table import read_state, write_results

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


# ---- lr x normalization x 2 seeds: 4 groups, 4 configurations, from any source --------------------------------------
@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A sweep over lr x normalization x seed written the way `nlbench sweep` and `nlbench fit` write it: the spec's
    run ids and results export, each run's record built from its real parsed fit config and command line."""
    from nlbench.lightning_cli import parse_fit_args

    root = tmp_path_factory.mktemp("lr") / "sweep"
    spec = spec_from_dict(
        {
            "name": "lr",
            "base": "experiments/demo.yaml",
            "axes": {
                "model.optimizer.init_args.lr": [0.05, 0.1],
                "model.backbone.nl.normalization": ["softmax", "scale"],
                "seed_everything": [0, 1],
            },
        },
        root=REPO,
        output_dir=root,
    )
    runs = spec.expand()
    made = []
    for point in runs:
        args = spec.fit_args(point.params)
        config = parse_fit_args(args)
        identity = identity_from_config(config, schema.command_line_keys(args))
        lr, norm, seed = (point.params[k] for k in spec.axes)
        acc = 0.6 + (0.05 if norm == "scale" else 0.0) + (0.1 if lr == 0.1 else 0.0) + 0.01 * seed
        record = RunRecord(
            status="finished",
            run_name=identity.name,
            group=identity.group,
            hparams=identity.hparams,
            config=identity.config,
            differs=identity.differs,
            metrics={schema.BEST_ACC1: acc, schema.FINAL_ACC1: acc, "epochs": 4},
        )
        write_record(root / "runs" / point.run_id, record)
        made.append({"identity": identity, "record": record, "config": config.as_dict(), "run_id": point.run_id})
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec.as_dict(), sort_keys=False))
    write_results(spec, runs)
    return root, made


def _check_four_groups(df) -> None:
    assert len(df) == 8
    assert set(results.config_keys(df)) == {"lr", "normalization"}
    assert df["group"].nunique() == 4 and df.groupby("group")["seed"].apply(sorted).tolist() == [[0, 1]] * 4
    assert sorted(df["lr"].unique()) == [0.05, 0.1]
    assert (df["optimizer"] == "SGD").all() and (df["max_epochs"] == 4).all()  # the recipe, stated per run


def test_the_name_and_group_come_from_what_differs(lr_sweep) -> None:
    _, made = lr_sweep
    names = {m["identity"].name for m in made}
    groups = {m["identity"].group for m in made}
    assert len(names) == 8 and len(groups) == 4  # before: lr was invisible, 4 names and 2 groups
    assert "softmax-r2-h1-normal-lr0.05-s0" in names
    assert "cifar10_sample-preactresnet20-scale-r2-h1-normal-lr0.1" in groups
    [one] = [m for m in made if m["identity"].name == "softmax-r2-h1-normal-lr0.05-s0"]
    assert one["identity"].differs == [
        "model.optimizer.init_args.lr",
        "model.backbone.init_args.nl.normalization",
        "seed_everything",
    ]
    assert one["identity"].config["model.optimizer.init_args.lr"] == 0.05
    assert not any(schema.is_volatile(key) for key in one["identity"].config)


def test_load_gives_four_groups_from_a_sweep_dir(lr_sweep) -> None:
    root, _ = lr_sweep
    _check_four_groups(results.load(root))


def test_load_gives_four_groups_from_run_dirs(lr_sweep) -> None:
    root, _ = lr_sweep
    _check_four_groups(results.load(*sorted((root / "runs").iterdir())))


def test_load_gives_four_groups_from_wandb(lr_sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    _, made = lr_sweep

    class Run:
        def __init__(self, m: dict) -> None:
            identity = m["identity"]
            self.id, self.name, self.group, self.state = (
                m["run_id"][-8:] + identity.name,
                identity.name,
                identity.group,
                "finished",
            )
            # What nlbench.lightning_cli.ConfigSaver uploads: the NL vocabulary at the top, the resolved config and
            # differs.
            self.config = {**identity.hparams, "config": m["config"], "differs": identity.differs}
            self.summary = {k: v for k, v in m["record"].metrics.items() if v is not None}

        def scan_history(self, keys=None, page_size=1000, min_step=None, max_step=None):
            return iter([])

    class Api:  # wandb.Api's signature; refuses what the real one refuses (a path that is not ENTITY/PROJECT)
        def __init__(self, overrides=None, timeout=None, api_key=None) -> None:
            pass

        def runs(self, path=None, filters=None, order="+created_at", per_page=50, include_sweeps=True):
            if not path or path.count("/") != 1:
                raise ValueError(f"Invalid path: {path}")
            return [Run(m) for m in made]

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", Api)
    _check_four_groups(results.load("wandb:me/lr"))


def test_the_report_compares_lr_and_normalization(lr_sweep, tmp_path: Path) -> None:
    root, _ = lr_sweep
    assert report_main([str(root), "--out", str(tmp_path / "r"), "--compare", "lr", "normalization"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "**lr** against 0.05" in md and "**normalization** against softmax" in md
    assert "**Recipe** (every configuration) optimizer=SGD" in md and "max_epochs=4" in md
    assert report_main([str(root), "--out", str(tmp_path / "r"), "--compare", "heads"]) == 2


# ---- status: decided once ------------------------------------------------------------------------------------------
def test_a_killed_plain_fit_reads_interrupted_everywhere(tmp_path: Path) -> None:
    run_dir = tmp_path / "fit"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nlbench", "fit", *FAST_DEMO, "--trainer.max_epochs=200", f"--run_dir={run_dir}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while (
            (read_record(run_dir) is None or read_record(run_dir).metrics["epochs"] < 1)
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert proc.poll() is None, "the fit ended before it could be killed"
        assert results.load(run_dir)["status"].tolist() == ["running"]  # the fit holds its run's lock
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read_record(run_dir).status == "running"  # what the dead process left
    assert results.load(run_dir)["status"].tolist() == ["interrupted"]
    assert [r["status"] for r in collect.load_sweep(run_dir).runs] == ["interrupted"]
    assert read_state(run_dir).status == "interrupted"
    assert report_main([str(run_dir)]) == 0
    assert "| fit | interrupted |" in (run_dir / "report" / "report.md").read_text()


# ---- torn and foreign files --------------------------------------------------------------------------------------
def test_a_torn_result_json_is_rebuilt_not_recorded_with_null_accuracy(tmp_path: Path) -> None:
    from nlbench.lightning_cli import main

    run_dir = tmp_path / "fit"
    assert main(["fit", *FAST_DEMO, f"--run_dir={run_dir}"]) == 0
    done = read_record(run_dir)
    assert done is not None and done.metrics[schema.FINAL_ACC1] is not None
    text = (run_dir / "result.json").read_text()
    (run_dir / "result.json").write_text(text[: len(text) // 2])  # torn
    # The reader rebuilds the accuracy from metrics.csv ...
    [torn] = results.load(run_dir).to_dict("records")
    assert torn[schema.BEST_ACC1] == pytest.approx(done.metrics[schema.BEST_ACC1])
    assert torn[schema.FINAL_ACC1] == pytest.approx(done.metrics[schema.FINAL_ACC1])
    # ... and the sweep's resume from the end checkpoint records the checkpoint's metrics, not nulls.
    assert main(["fit", *FAST_DEMO, f"--run_dir={run_dir}", "--ckpt_path=last"]) == 0
    again = read_record(run_dir)
    assert again is not None and again.status == "finished"
    assert again.metrics[schema.FINAL_ACC1] == pytest.approx(done.metrics[schema.FINAL_ACC1])
    assert again.metrics[schema.BEST_ACC1] == pytest.approx(done.metrics[schema.BEST_ACC1])


def _sweep_with_foreign_files(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    from tests.test_report import write_sweep

    root = write_sweep(tmp_path / "sweep")
    dirs = sorted((root / "runs").iterdir())
    bad = {
        "metrics": dirs[0] / "metrics.csv",
        "config": dirs[1] / "config.yaml",
        "tag": dirs[2] / "config.yaml",
        "yaml": dirs[3] / "config.yaml",
    }
    bad["metrics"].write_bytes(b"epoch,val/acc1\n0,\xff\xfe0.5\n")  # not UTF-8
    bad["config"].write_bytes(b"seed_everything: \xe9\n")
    bad["tag"].write_text("seed_everything: !!python/object/apply:os.system ['echo pwned']\n")
    bad["yaml"].write_text("seed_everything: [unclosed\n")
    for key in ("config", "tag", "yaml"):
        (bad[key].parent / "result.json").unlink()  # so the config is what describes the run
    return root, bad


def test_unreadable_runs_are_listed_naming_the_file(tmp_path: Path) -> None:
    root, bad = _sweep_with_foreign_files(tmp_path)
    df = results.load(root, curves=True)  # metrics.csv is read with the curves
    unreadable = df[df["status"] == "unreadable"]
    assert sorted(unreadable["error"].str.split(":").str[0]) == sorted(str(p) for p in bad.values())
    assert {e.split(": ", 1)[1].split(" (")[0] for e in unreadable["error"]} == {"not UTF-8 text", "not valid YAML"}
    assert results.config_keys(df) == ["normalization", "reduction", "init"]  # the others still compare
    assert report_main([str(root)]) == 0
    md = (root / "report" / "report.md").read_text()
    section = md.split("## Unreadable runs")[1].split("\n## ")[0]
    assert all(str(path) in section for path in bad.values())


def test_a_sweep_yaml_that_is_not_yaml_is_listed(tmp_path: Path) -> None:
    from tests.test_report import write_sweep

    root = write_sweep(tmp_path / "sweep")
    (root / "sweep.yaml").write_text("name: !!python/name:os.system\n")
    df = results.load(root)
    assert len(df[df["status"] != "unreadable"]) == 16
    [error] = df.loc[df["status"] == "unreadable", "error"]
    assert error.startswith(f"{root / 'sweep.yaml'}: not valid YAML")
    assert report_main([str(root)]) == 0


def test_received_yaml_bombs_are_listed_not_expanded(tmp_path: Path) -> None:
    """A received run's config.yaml with an alias bomb, and a sweep.yaml whose axes make 10^12 runs: the reader
    lists both as unreadable, naming the file, instead of expanding them (nlbench.yamlsafe's limits)."""
    from tests.test_report import write_sweep

    root = write_sweep(tmp_path / "sweep")
    run_dir = sorted((root / "runs").iterdir())[0]
    (run_dir / "result.json").unlink()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    (run_dir / "config.yaml").write_text(bomb)
    df = results.load(root)
    [error] = df.loc[df["status"] == "unreadable", "error"]
    assert error.startswith(str(run_dir / "config.yaml"))
    spec = yaml.safe_load((root / "sweep.yaml").read_text())
    spec["axes"] = {f"k{i}": list(range(1000)) for i in range(4)}
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec))
    df = results.load(root)
    assert any("axes make over" in str(e) for e in df.loc[df["status"] == "unreadable", "error"])


def test_math_text_in_a_received_record_is_plain_text(tmp_path: Path) -> None:
    from tests.test_report import write_run

    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"a{seed}", "softmax", 2, "normal", seed, epochs=2, status="finished")
        write_run(tmp_path / "runs" / f"b{seed}", r"$\frac{$", 2, "normal", seed, epochs=2, status="finished")
    assert report_main([*map(str, sorted((tmp_path / "runs").iterdir())), "--out", str(tmp_path / "r")]) == 0
    assert r"$\frac{$" in (tmp_path / "r" / "report.md").read_text()
