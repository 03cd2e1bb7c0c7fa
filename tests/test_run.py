"""The run record (nlbench.run): one schema from result.json to results.csv to the report's records, identity from
the config's classes, a plain fit run directory, mid-sweep runs, and the same hparams from the fit and the sweep's
failure path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tinyfit import FAST

from nlbench import results, schema
from nlbench.record import RunRecord, Unreadable, identify, identity_from_config, load_record, read_record, write_record
from nlbench.report import collect
from nlbench.sweep.spec import spec_from_dict
from nlbench.sweep.table import collect_rows, write_results

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"


pytestmark = pytest.mark.usefixtures("no_wandb")  # W&B off for every test here (conftest.py)


def demo_sweep(root: Path, seeds: tuple[int, ...] = (0, 1)):
    spec = spec_from_dict(
        {
            "name": "s",
            "base": "experiments/demo.yaml",
            "axes": {"model.backbone.nl.normalization": ["scale"], "seed_everything": list(seeds)},
        },
        root=REPO,
        output_dir=root,
    )
    return spec, spec.expand()


def record(status: str = "finished", seed: int = 0, **metrics: float) -> RunRecord:
    identity = identify(
        nl=schema.NLConfig(),
        dataset="cifar10",
        backbone="PreActResNet",
        depth=20,
        nl_stages=[2],
        nl_blocks=1,
        seed=seed,
    )
    return RunRecord(
        status=status, run_name=identity.name, group=identity.group, hparams=identity.hparams, metrics=metrics
    )


# ---- identity ------------------------------------------------------------------------------------------------------
def test_identity_comes_from_the_config_classes_not_second_defaults() -> None:
    config = {
        "seed_everything": 3,
        "data": {"class_path": "nlbench.data.CIFAR100DataModule", "init_args": {"batch_size": 128}},
        "model": {
            "backbone": {
                "class_path": "nlbench.models.PreActResNet",
                "init_args": {
                    "depth": 20,
                    "nl_stages": [2],
                    "nl_blocks": 1,
                    "nl": {
                        "normalization": "scale",
                        "reduction": 8,
                        "heads": 4,
                        "init": "zeros",
                        "similarity": "direction",
                        "order": "nxn",
                    },
                },
            }
        },
    }
    identity = identity_from_config(config)
    assert identity.name == "scale-r8-h4-zeros-direction-nxn-s3"
    assert identity.group == "cifar100-preactresnet20-scale-r8-h4-zeros-direction-nxn"
    # Options the config leaves out are NLConfig's own defaults, under NLConfig's field names.
    assert identity.hparams["pos_encoding"] is schema.NLConfig().pos_encoding and identity.hparams["seed"] == 3
    assert set(identity.hparams) <= set(schema.HPARAMS)
    assert set(identity.hparams) >= {f for f in schema.NL_FIELDS if getattr(schema.NLConfig(), f) is not None}
    config["model"]["backbone"]["init_args"]["nl_stages"] = []
    baseline = identity_from_config(config)
    assert baseline.name == "baseline-s3" and baseline.hparams["normalization"] == "none"
    assert "reduction" not in baseline.hparams  # a baseline has no NL options to compare
    # The dataset is the DataModule's name: the embedded sample is never pooled with the full CIFAR-10.
    assert schema.dataset_name("nlbench.data.CIFAR10SampleDataModule") == "cifar10_sample"
    assert schema.dataset_name("nlbench.data.TinyImageNetDataModule") == "tiny_imagenet"


# ---- one schema ----------------------------------------------------------------------------------------------------
def test_a_metric_added_to_the_vocabulary_reaches_result_json_results_csv_and_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "METRICS", (*schema.METRICS, "val/extra"))
    spec, runs = demo_sweep(tmp_path / "sweep")
    for i, r in enumerate(runs):
        write_record(
            spec.output_dir / "runs" / r.run_id, record(seed=i, **{schema.BEST_ACC1: 0.5, "val/extra": 0.1 * i})
        )  # its own seed
    write_results(spec, runs)
    saved = json.loads((spec.output_dir / "runs" / runs[1].run_id / "result.json").read_text())
    assert saved["metrics"]["val/extra"] == pytest.approx(0.1)
    with open(spec.output_dir / "results.csv") as f:
        header = next(csv.reader(f))
    assert [c for c in header if c in schema.METRICS] == list(schema.METRICS)  # every metric, in vocabulary order
    sweep = collect.load_sweep(spec.output_dir)
    assert [r["val/extra"] for r in sweep.runs] == pytest.approx([0.0, 0.1])
    assert "val/extra" not in sweep.config_keys  # a metric is never mistaken for an axis
    [row] = collect.summarize(sweep)
    assert row["val/extra_mean"] == pytest.approx(0.05)


def test_reader_tells_missing_torn_and_foreign_result_json_apart(tmp_path: Path) -> None:
    assert load_record(tmp_path) == (None, False)  # missing
    (tmp_path / "result.json").write_text('{"status": "finished", "metr')  # half a file
    assert load_record(tmp_path) == (None, True) and read_record(tmp_path) is None  # torn
    (tmp_path / "result.json").write_text('{"status": "exploded"}')  # not a status of the vocabulary
    with pytest.raises(Unreadable, match=r"result.json: not a run record"):
        read_record(tmp_path)
    (tmp_path / "result.json").write_bytes(b'{"status": "finished", "error": "\xff"}')
    with pytest.raises(Unreadable, match=r"result.json: not UTF-8"):
        read_record(tmp_path)
    write_record(tmp_path, record(**{schema.BEST_ACC1: float("nan")}))
    loaded = read_record(tmp_path)
    assert (
        loaded is not None and loaded.metrics[schema.BEST_ACC1] is None and set(loaded.metrics) == set(schema.METRICS)
    )
    assert loaded.written_at and not list(tmp_path.glob(".result.json.*"))  # atomic: no temporary left behind


# ---- running runs --------------------------------------------------------------------------------------------------
def test_a_report_made_mid_sweep_shows_running_runs_as_running(tmp_path: Path) -> None:
    from nlbench.runlock import RunLock

    spec, runs = demo_sweep(tmp_path / "sweep")
    done, busy = runs
    write_record(spec.output_dir / "runs" / done.run_id, record(seed=0, **{schema.BEST_ACC1: 0.6}))
    write_record(
        spec.output_dir / "runs" / busy.run_id, record("running", seed=1, **{schema.BEST_ACC1: 0.3, "epochs": 1})
    )
    with RunLock(spec.output_dir / "runs" / busy.run_id):  # the fit's process works on it
        write_results(spec, runs)
        sweep = collect.load_sweep(spec.output_dir)
    by_id = {r["run_id"]: r for r in sweep.runs}
    assert by_id[busy.run_id]["status"] == "running" and by_id[busy.run_id]["error"] is None
    assert by_id[busy.run_id]["dataset"] == "cifar10" and "dataset" not in sweep.config_keys
    assert [r["run_id"] for r in sweep.running] == [busy.run_id] and not sweep.unfinished
    # The export written meanwhile never claims the run is alive: after a kill -9 it would still say so.
    assert [row["status"] for row in json.loads((spec.output_dir / "results.json").read_text())] == [
        "finished",
        "unfinished",
    ]
    # Its process gone (lock free), the same "running" record reads interrupted, in every reader.
    assert [r["status"] for r in collect.load_sweep(spec.output_dir).runs] == ["finished", "interrupted"]
    assert results.load(spec.output_dir)["status"].tolist() == ["finished", "interrupted"]
    assert [row["status"] for row in collect_rows(spec, runs)] == ["finished", "unfinished"]


# ---- the fit and the sweep's failure path --------------------------------------------------------------------------
def test_a_plain_fit_run_directory_loads_and_the_failure_path_writes_the_same_hparams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlbench.lightning_cli import main
    from nlbench.sweep.runner import _failed_record

    written, write = [], write_record
    monkeypatch.setattr(
        "nlbench.callbacks.write_record", lambda d, r: (written.append((r.status, r.metrics["epochs"])), write(d, r))[1]
    )
    run_dir = tmp_path / "fit"
    assert main(["fit", f"--config={DEMO}", *FAST, "--seed_everything=0", f"--run_dir={run_dir}"]) == 0
    # At the start of training, after the validation that completes epoch 1 (one epoch done, not 0), at the end.
    assert written == [("running", 0), ("running", 1), ("finished", 1)]
    fitted = read_record(run_dir)
    assert fitted is not None and fitted.status == "finished" and fitted.metrics[schema.BEST_ACC1] is not None
    # Where it trained, so the report's throughput says where it was measured.
    assert fitted.machine["device"] == "cpu" and fitted.machine["threads"] >= 1 and fitted.machine["host"]
    assert fitted.machine["sdpa"] is None  # the demo's scale block calls no SDPA kernel
    # The report reads a plain fit run directory as a one-run sweep, with its learning curve.
    sweep = collect.load_sweep(run_dir)
    [flat] = sweep.runs
    assert flat["status"] == "finished" and flat["normalization"] == "scale" and flat["run_id"] == "fit"
    assert flat[schema.BEST_ACC1] == fitted.metrics[schema.BEST_ACC1] and sweep.curves["fit"]
    # Without result.json (killed before writing it) the directory still loads, from its config.yaml.
    (run_dir / "result.json").unlink()
    [bare] = results.load(run_dir).to_dict("records")
    assert bare["status"] == "interrupted" and bare["normalization"] == fitted.hparams["normalization"]
    assert bare["reduction"] == fitted.hparams["reduction"] and bare["seed"] == fitted.hparams["seed"]

    # The sweep's failure path for the same configuration: same short names, same values.
    spec = spec_from_dict(
        {
            "name": "s",
            "base": "experiments/demo.yaml",
            "overrides": dict(arg[2:].split("=", 1) for arg in FAST[1:]),
            "axes": {"seed_everything": [0]},
        },
        root=REPO,
        output_dir=tmp_path / "sw",
    )
    [point] = spec.expand()
    failed = _failed_record(spec, point, None, "RuntimeError: boom", 1)
    assert failed.status == "failed" and failed.hparams == fitted.hparams and failed.run_name == fitted.run_name
    # A fit that died mid-training left a "running" record: the failure keeps its identity and metrics.
    running = RunRecord.from_json({**fitted.to_json(), "status": "running"})
    kept = _failed_record(spec, point, running, "killed by SIGKILL", -9)
    assert kept.hparams == fitted.hparams and kept.metrics == fitted.metrics and kept.error == "killed by SIGKILL"


def test_options_off_their_default_name_the_run_and_per_stage_counts_read() -> None:
    args = {
        "depth": 20,
        "nl_stages": None,
        "nl_blocks": [0, 1, 0],
        "nl": {
            "normalization": "scale",
            "reduction": 2,
            "heads": 1,
            "init": "normal",
            "scale": "sqrt_nd",
            "pos_encoding": False,
        },
    }
    config = {
        "seed_everything": 1,
        "data": {"class_path": "nlbench.data.CIFAR10DataModule"},
        "model": {"backbone": {"class_path": "nlbench.models.PreActResNet", "init_args": args}},
    }
    identity = identity_from_config(config)
    assert identity.name == "scale-r2-h1-normal-sqrt_nd-nopos-blocks0-1-0-s1"
    assert identity.hparams["nl_blocks"] == [0, 1, 0] and identity.hparams["normalization"] == "scale"
    args["nl_blocks"] = [0, 0, 0]
    assert identity_from_config(config).hparams["normalization"] == "none"
    args.update(nl_blocks=2, nl_stages=[1, 3], fc_init="pytorch")
    args["nl"] = {"normalization": "softmax", "reduction": 2, "heads": 1, "init": "normal"}
    assert identity_from_config(config).name == "softmax-r2-h1-normal-stages1-3-x2-fcpytorch-s1"


def test_the_wandb_summary_gets_the_record_names() -> None:
    from types import SimpleNamespace

    from nlbench.callbacks import _update_wandb_summary

    summary: dict[str, float] = {}
    trainer = SimpleNamespace(
        loggers=[SimpleNamespace(_experiment=SimpleNamespace(summary=summary)), SimpleNamespace(_experiment=None)]
    )
    metrics = record(**{schema.BEST_ACC1: 0.7, schema.BEST_ACC5: 0.9, schema.BEST_EPOCH: 3, "time_s": 5.0}).metrics
    _update_wandb_summary(trainer, metrics)  # type: ignore[arg-type]
    # Every value under the record's name, as a plain number: val/acc1_best too (issue 26 item 11: not {"max": ...}).
    assert summary == {schema.BEST_ACC1: 0.7, schema.BEST_ACC5: 0.9, schema.BEST_EPOCH: 3, "time_s": 5.0}


def test_the_record_names_the_attention_kernel_a_softmax_run_used(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """SDPA picks its kernel per device, dtype and head width (on a GPU: cuDNN, flash, memory-efficient or math);
    the record says which one trained the run, read off the ATen op one eager forward dispatched to."""
    from nlbench.lightning_cli import main

    run_dir = tmp_path / "fit"
    assert (
        main(
            [
                "fit",
                f"--config={DEMO}",
                *FAST,
                "--seed_everything=0",
                f"--run_dir={run_dir}",
                "--model.backbone.init_args.nl.normalization=softmax",
                "--trainer.logger=false",
            ]
        )
        == 0
    )
    fitted = read_record(run_dir)
    assert fitted is not None and fitted.machine["sdpa"] == "flash (cpu)" and fitted.flat()["sdpa"] == "flash (cpu)"
    assert "USDT" not in capfd.readouterr().err  # the profiler's start/stop lines stay out of the fit's output
