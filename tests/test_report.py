"""`nlbench report`: collecting a sweep directory, statistics over seeds, figures, Markdown/HTML output, and the HTML
rendered by a real headless Chromium.

The sweep directories are synthetic but written in exactly the documented layout (docs/design.md "Run directory"
and "nlbench/sweep"), with accuracies from a known formula so the aggregated numbers can be checked.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import itertools
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from nlbench import results, schema
from nlbench.record import RunRecord, read_record, write_record
from nlbench.report import collect, plots, render
from nlbench.report_command import main as report_main
from nlbench.schema import BEST_ACC1, FINAL_ACC1, IMAGES_PER_S
from nlbench.sweep.spec import spec_from_dict
from nlbench.sweep.table import write_results

REPO = Path(__file__).resolve().parents[1]

METRIC_COLUMNS = [
    "epoch",
    "step",
    "train/loss",
    "train/acc1",
    "val/loss",
    "val/acc1",
    "val/acc5",
    "lr",
    "train/images_per_s",
]


def synthetic_acc(normalization: str, reduction: int, init: str, seed: int, epoch: int, epochs: int) -> float:
    """Validation top-1 of a synthetic run: scale beats softmax, softmax degrades with r; rises then dips."""
    final = 0.80 - (0.02 * math.log2(reduction) if normalization == "softmax" else 0.0) - 0.01 * seed
    final -= {"normal": 0.0, "zeros": 0.03, "kaiming": 0.01}.get(init, 0.0)
    curve = final * (epoch + 1) / epochs
    return curve + (0.02 if epoch == epochs - 2 else 0.0)  # the best epoch is the one before last


def write_sweep(
    root: Path,
    *,
    normalizations: tuple[str, ...] = ("softmax", "scale"),
    reductions: tuple[int, ...] = (1, 4),
    inits: tuple[str, ...] | None = ("normal", "zeros"),
    seeds: tuple[int, ...] = (0, 1),
    epochs: int = 3,
    failed: tuple[tuple[str, int, str | None, int], ...] = (("softmax", 4, "zeros", 1),),
    diverged: tuple[tuple[str, int, str | None, int], ...] = (("scale", 1, "normal", 0),),
    baseline: bool = False,
    write_json: bool = True,
) -> Path:
    """Write a sweep directory the way `nlbench sweep` does (its spec expansion, run ids and results writer, with
    synthetic run directories in place of training); returns it. Runs listed in ``failed``/``diverged`` as
    (normalization, reduction, init, seed) get that status; failed ones have no metrics."""
    axes: dict[str, list] = {
        "model.backbone.nl.normalization": list(normalizations),
        "model.backbone.nl.reduction": list(reductions),
    }
    if inits:
        axes["model.backbone.nl.init"] = list(inits)
    axes["seed_everything"] = list(seeds)
    points = [{"model.backbone.nl_blocks": 0, "seed_everything": seed} for seed in seeds] if baseline else []
    spec = spec_from_dict(
        {"name": "synthetic", "base": "experiments/demo.yaml", "axes": axes, "points": points},
        root=REPO,
        output_dir=root,
    )
    runs = spec.expand()
    for run in runs:
        if "model.backbone.nl_blocks" in run.params:
            normalization, reduction, init = "none", 2, "normal"  # the base config's NL options, reported as is
        else:
            normalization = run.params["model.backbone.nl.normalization"]
            reduction = run.params["model.backbone.nl.reduction"]
            init = run.params.get("model.backbone.nl.init")
        seed = run.params["seed_everything"]
        write_run(
            root / "runs" / run.run_id,
            normalization,
            reduction,
            init,
            seed,
            epochs=epochs,
            status="failed"
            if (normalization, reduction, init, seed) in failed
            else "diverged"
            if (normalization, reduction, init, seed) in diverged
            else "finished",
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec.as_dict(), sort_keys=False))
    write_results(spec, runs)
    if not write_json:
        (root / "results.json").unlink()
    return root


def write_run(
    run_dir: Path, normalization: str, reduction: int, init: str | None, seed: int, *, epochs: int, status: str
) -> None:
    """A run directory as `nlbench fit` leaves it (result.json, CSVLogger metrics.csv, config.yaml)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    hparams = {
        "dataset": "cifar10",
        "backbone": "PreActResNet",
        "depth": 20,
        "nl_stages": [2],
        "nl_blocks": 0 if normalization == "none" else 1,
        "normalization": normalization,
        "reduction": reduction,
        "heads": 1,
        "init": init or "normal",
        "similarity": "dot",
        "order": "reassociated",
        "seed": seed,
    }
    accs = [synthetic_acc(normalization, reduction, init or "normal", seed, e, epochs) for e in range(epochs)]
    accs = {"finished": accs, "diverged": accs[:1], "failed": []}[status]
    nl_params = 0 if normalization == "none" else 4 * 32 * 32 // reduction + 64
    metrics = {
        schema.BEST_ACC1: max(accs) if accs else None,
        schema.FINAL_ACC1: accs[-1] if accs else None,
        schema.BEST_ACC5: min(1.0, max(accs) + 0.15) if accs else None,
        schema.FINAL_ACC5: min(1.0, accs[-1] + 0.15) if accs else None,
        schema.BEST_EPOCH: accs.index(max(accs)) if accs else None,
        "epochs": len(accs),
        "global_step": 10 * len(accs),
        "time_s": 12.5,
        schema.IMAGES_PER_S: 400.0 + (50.0 if normalization == "scale" else 0.0) + seed,
        "params": 270_000 + nl_params,
        "nl_params": nl_params,
    }
    write_record(
        run_dir,
        RunRecord(
            status=status,
            run_name=run_dir.name,
            group=run_dir.name.split("_seed")[0],
            hparams=hparams,
            metrics=metrics,
            error="RuntimeError: CUDA out of memory" if status == "failed" else None,
        ),
    )
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed_everything": seed}))
    (run_dir / "stdout.log").write_text("")
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, METRIC_COLUMNS)
        writer.writeheader()
        for epoch, acc in enumerate(accs):
            # CSVLogger's sparse layout: a train row and a val row per epoch.
            writer.writerow(
                {
                    "epoch": epoch,
                    "step": 10 * epoch + 9,
                    "train/loss": 2.0 - epoch * 0.1,
                    "train/acc1": acc - 0.05,
                    "lr": 0.1,
                    "train/images_per_s": 400.0,
                }
            )
            writer.writerow(
                {
                    "epoch": epoch,
                    "step": 10 * epoch + 9,
                    "val/loss": 1.5 - epoch * 0.1,
                    "val/acc1": acc,
                    "val/acc5": min(1.0, acc + 0.15),
                }
            )


def find_run(sweep: collect.Sweep, normalization: str, reduction: int, init: str | None, seed: int) -> dict:
    return next(
        r
        for r in sweep.runs
        if (r["normalization"], r["reduction"], r.get("init"), r["seed"]) == (normalization, reduction, init, seed)
    )


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "sweep")


# ---- collect -----------------------------------------------------------------------------------------------------
def test_load_sweep_records_config_keys_and_curves(sweep_dir: Path) -> None:
    sweep = collect.load_sweep(sweep_dir)
    assert sweep.name == "synthetic"
    assert len(sweep.runs) == 2 * 2 * 2 * 2
    assert sweep.config_keys == ("normalization", "reduction", "init")
    run = find_run(sweep, "scale", 4, "zeros", 1)
    assert run["status"] == "finished" and run["dataset"] == "cifar10"
    assert run[FINAL_ACC1] == pytest.approx(synthetic_acc("scale", 4, "zeros", 1, 2, 3))
    assert {r["run_id"]: r["status"] for r in sweep.unfinished} == {
        find_run(sweep, "softmax", 4, "zeros", 1)["run_id"]: "failed",
        find_run(sweep, "scale", 1, "normal", 0)["run_id"]: "diverged",
    }
    assert find_run(sweep, "softmax", 4, "zeros", 1)["error"] == "RuntimeError: CUDA out of memory"
    # Sparse CSVLogger rows collapse to one row per epoch holding both train and val metrics.
    curve = sweep.curves[run["run_id"]]
    assert [row["epoch"] for row in curve] == [0, 1, 2]
    assert curve[1]["val/acc1"] == pytest.approx(synthetic_acc("scale", 4, "zeros", 1, 1, 3))
    assert curve[1]["train/loss"] == pytest.approx(1.9)


def test_the_results_table_is_an_export_never_read_back(tmp_path: Path) -> None:
    reference = collect.load_sweep(write_sweep(tmp_path / "a"))
    root = write_sweep(tmp_path / "b")
    (root / "results.json").unlink()
    (root / "results.csv").write_text("run_id,status\nbogus,finished\n")  # a doctored export changes nothing

    def without_source(runs: list[dict]) -> list[dict]:  # the clock of each write and the folder are not data
        return [{k: v for k, v in r.items() if k not in ("written_at", "source", "run_dir")} for r in runs]

    assert without_source(collect.load_sweep(root).runs) == without_source(reference.runs)
    # Killed before writing anything, a run keeps its swept values from the sweep's spec.
    for run_dir in (root / "runs").iterdir():
        (run_dir / "result.json").unlink()
        (run_dir / "config.yaml").unlink()
    bare = collect.load_sweep(root)
    assert bare.config_keys == ("normalization", "reduction", "init")
    assert {run["status"] for run in bare.runs} == {"interrupted"}


def test_summarize_means_over_finished_seeds_only(sweep_dir: Path) -> None:
    summary = collect.summarize(collect.load_sweep(sweep_dir))
    rows = {(r["normalization"], r["reduction"], r["init"]): r for r in summary}
    assert len(rows) == 8
    row = rows[("softmax", 1, "normal")]
    bests = [max(synthetic_acc("softmax", 1, "normal", s, e, 3) for e in range(3)) for s in (0, 1)]
    assert row["n"] == 2 and row["n_unfinished"] == 0 and row["seeds"] == [0, 1]
    assert row[f"{BEST_ACC1}_mean"] == pytest.approx(statistics.fmean(bests))
    assert row[f"{BEST_ACC1}_std"] == pytest.approx(statistics.stdev(bests))
    # The failed seed is excluded from the statistics and counted; one finished seed left: no std.
    failed = rows[("softmax", 4, "zeros")]
    assert failed["n"] == 1 and failed["n_unfinished"] == 1 and failed[f"{BEST_ACC1}_std"] is None
    assert failed[f"{BEST_ACC1}_mean"] == pytest.approx(
        max(synthetic_acc("softmax", 4, "zeros", 0, e, 3) for e in range(3))
    )


def test_bad_sweep_dirs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such sweep or run directory"):
        collect.load_sweep(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(collect.SourceError, match="neither a sweep directory"):
        collect.load_sweep(tmp_path / "empty")


# ---- figures -------------------------------------------------------------------------------------------------------
def _series(ax) -> dict[str, tuple[list[float], list[float]]]:
    """Legend label -> (x, y) of the data lines of an errorbar plot."""
    handles, labels = ax.get_legend_handles_labels()
    out = {}
    for handle, label in zip(handles, labels):
        line = handle.lines[0] if hasattr(handle, "lines") else handle
        out[label] = (list(line.get_xdata()), list(line.get_ydata()))
    return out


def test_error_figure_plots_mean_error_per_reduction_and_init(sweep_dir: Path) -> None:
    sweep = collect.load_sweep(sweep_dir)
    fig = plots.error_vs_reduction(sweep)
    assert len(fig.axes) == 4  # rows final/best x columns init normal/zeros
    assert fig.axes[0].get_title() == "init=normal  (final epoch)"  # the unbiased panel first
    best_normal = fig.axes[2]
    assert best_normal.get_title() == "init=normal  (best (optimistic) epoch)"
    series = _series(best_normal)
    assert set(series) == {"softmax", "scale"}
    xs, ys = series["softmax"]
    expected = [
        100
        * (1 - statistics.fmean(max(synthetic_acc("softmax", r, "normal", s, e, 3) for e in range(3)) for s in (0, 1)))
        for r in (1, 4)
    ]
    assert xs == [1, 4] and ys == pytest.approx(expected)
    # The diverged scale r1 seed 0 is excluded: the point is seed 1 alone.
    xs, ys = series["scale"]
    assert ys[0] == pytest.approx(100 * (1 - max(synthetic_acc("scale", 1, "normal", 1, e, 3) for e in range(3))))
    final_zeros = fig.axes[1]
    assert final_zeros.get_title() == "init=zeros  (final epoch)"


def test_figures_without_init_axis_single_seed_and_baseline(tmp_path: Path) -> None:
    sweep = collect.load_sweep(
        write_sweep(tmp_path / "s", inits=None, seeds=(0,), failed=(), diverged=(), baseline=True)
    )
    assert sweep.config_keys == ("normalization", "reduction")
    fig = plots.error_vs_reduction(sweep)
    assert len(fig.axes) == 2  # one column: best and final
    series = _series(fig.axes[0])
    assert set(series) == {"softmax", "scale", "baseline (no block)"}
    baseline_error = 100 * (1 - max(synthetic_acc("none", 1, "normal", 0, e, 3) for e in range(3)))
    assert series["baseline (no block)"][1] == pytest.approx([baseline_error] * 2)
    curves = plots.learning_curves(sweep)
    assert [ax.get_title() for ax in curves.axes if ax.get_visible()] == ["r1", "r4"]
    assert {line.get_label() for line in curves.axes[1].lines} == {
        "baseline (no block) (n=1)",
        "scale (n=1)",
        "softmax (n=1)",
    }
    md = render.to_markdown(*render.build_report(sweep))
    table = md.split("## Every configuration")[1].split("##")[0]
    assert "±" not in "".join(line for line in table.splitlines() if line.startswith("|"))


def test_learning_curves_mean_over_seeds(sweep_dir: Path) -> None:
    sweep = collect.load_sweep(sweep_dir)
    fig = plots.learning_curves(sweep)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4  # reduction x init panels, softmax and scale lines in each
    ax = next(ax for ax in visible if ax.get_title() == "r1 normal")
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"softmax (n=2)", "scale (n=1)"}
    expected = [
        100 * (1 - statistics.fmean(synthetic_acc("softmax", 1, "normal", s, e, 3) for s in (0, 1))) for e in range(3)
    ]
    assert list(lines["softmax (n=2)"].get_ydata()) == pytest.approx(expected)


# ---- report files and CLI ------------------------------------------------------------------------------------------
def _png_is_drawn(path: Path) -> bool:
    pixels = matplotlib.image.imread(path)
    return pixels.shape[0] > 100 and pixels.shape[1] > 100 and float(pixels[..., :3].std()) > 0.02


def test_report_cli_writes_markdown_html_and_pngs(sweep_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert report_main([str(sweep_dir), "--out", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["error_vs_reduction.png", "learning_curves.png", "throughput_params.png"]
    assert all(_png_is_drawn(out / name) for name in pngs)

    md = (out / "report.md").read_text()
    assert md.startswith("# nlbench report: synthetic")
    assert "**Runs** 16 (14 finished, 1 diverged, 1 failed)" in md
    assert "**Compared** normalization × reduction × init; **seeds** 0, 1" in md
    assert "dataset=cifar10" in md and "depth=20" in md
    for name in pngs:
        assert f"({name})" in md
    # Every configuration's row: mean ± std of the best top-1 error in %.
    bests = [max(synthetic_acc("softmax", 1, "normal", s, e, 3) for e in range(3)) for s in (0, 1)]
    cell = f"{100 * (1 - statistics.fmean(bests)):.2f} ± {100 * statistics.stdev(bests):.2f}"
    assert re.search(rf"^\| softmax \| 1 \| normal \| 2 \| {re.escape(cell)} \|", md, re.M)
    # Failed and diverged runs are listed with their error.
    failed = md.split("## Runs left out of the statistics")[1]
    sweep = collect.load_sweep(sweep_dir)
    failed_id = find_run(sweep, "softmax", 4, "zeros", 1)["run_id"]
    diverged_id = find_run(sweep, "scale", 1, "normal", 0)["run_id"]
    assert f"| {failed_id} | failed | softmax r4 zeros | 1 | RuntimeError: CUDA out of memory |" in failed
    assert f"| {diverged_id} | diverged | scale r1 normal | 0 | – |" in failed

    page = (out / "report.html").read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(data) for data in embedded] == [
        (out / name).read_bytes() for name in ["error_vs_reduction.png", "learning_curves.png", "throughput_params.png"]
    ]
    assert 'src="http' not in page and "<script" not in page  # self-contained, static
    assert f"<td>{cell}</td>" in page


def test_report_cli_default_out_and_errors(sweep_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    assert report_main([str(sweep_dir)]) == 0
    assert (sweep_dir / "report" / "report.html").is_file()
    capsys.readouterr()
    assert report_main([str(tmp_path / "missing")]) == 2
    missing = tmp_path / "missing"
    assert capsys.readouterr().err.strip() == f"nlbench report: error: {missing}: no such sweep or run directory"
    assert report_main([]) == 2
    assert "give a sweep directory" in capsys.readouterr().err
    assert report_main(["--wandb", "entity-only", "--out", str(tmp_path / "w")]) == 2
    assert "wandb:entity-only: expected wandb:ENTITY/PROJECT" in capsys.readouterr().err
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert report_main(["--wandb", "me/nlbench", "--group", "g1", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read W&B project me/nlbench" in err and "nlbench report SWEEP_DIR" in err
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert report_main(["--wandb", "me/nlbench", "--out", str(tmp_path / "w")]) == 2
    assert "cannot read W&B project me/nlbench" in capsys.readouterr().err


class _FakeWandbRun:
    """The parts of wandb.apis.public.Run the W&B source reads, as nlbench's loggers fill them."""

    def __init__(self, normalization: str, seed: int, state: str = "finished") -> None:
        self.id, self.name, self.state = f"{normalization}{seed}", f"{normalization}-s{seed}", state
        self.group = normalization
        accs = [synthetic_acc(normalization, 2, "normal", seed, e, 3) for e in range(3)]
        # Top level: the run's headline hparams; "config": the full resolved LightningCLI config.
        self.config = {
            "normalization": normalization,
            "reduction": 2,
            "init": "normal",
            "seed": seed,
            "params": 1000,
            "nl_params": 100,
            "config": {
                "seed_everything": seed,
                "model": {"backbone": {"init_args": {"nl": {"normalization": "scale", "reduction": 2}}}},
            },
        }
        self.summary = {
            "val/acc1_best": max(accs),
            "val/acc1": accs[-1],
            "val/acc5": 0.9,
            "epoch": 2,
            "train/images_per_s": 300.0,
        }
        self._history = [{"epoch": e, "val/acc1": acc} for e, acc in enumerate(accs)]

    def scan_history(
        self,
        keys: list[str] | None = None,
        page_size: int = 1000,
        min_step: int | None = None,
        max_step: int | None = None,
    ):
        return iter([{k: row[k] for k in (keys or row) if k in row} for row in self._history])


class FakeApi:
    """wandb.Api's contract as the W&B source uses it: ``Api(overrides=None, timeout=None, api_key=None)`` and
    ``runs(path, filters, order, per_page, include_sweeps)``; a path that is not ENTITY/PROJECT is refused."""

    calls: list = []
    make_runs = staticmethod(
        lambda: [
            _FakeWandbRun(n, s, "crashed" if (n, s) == ("softmax", 1) else "finished")
            for n in ("softmax", "scale")
            for s in (0, 1)
        ]
    )

    def __init__(self, overrides: dict | None = None, timeout: int | None = None, api_key: str | None = None) -> None:
        pass

    def runs(
        self,
        path: str | None = None,
        filters: dict | None = None,
        order: str = "+created_at",
        per_page: int = 50,
        include_sweeps: bool = True,
    ):
        if not path or path.count("/") != 1:
            raise ValueError(f"Invalid path: {path}")
        FakeApi.calls.append((path, filters))
        return FakeApi.make_runs()


def test_wandb_source_reads_config_summary_and_history(tmp_path: Path, monkeypatch) -> None:
    import wandb

    FakeApi.calls = []
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", FakeApi)
    sweep = collect.load_sweep("wandb:me/nlbench", groups=["softmax", "scale"])
    assert FakeApi.calls == [("me/nlbench", {"group": {"$in": ["softmax", "scale"]}})]
    assert sweep.config_keys == ("normalization",)
    run = find_run(sweep, "scale", 2, "normal", 1)
    assert run[BEST_ACC1] == max(synthetic_acc("scale", 2, "normal", 1, e, 3) for e in range(3))
    assert run["params"] == 1000 and run[IMAGES_PER_S] == 300.0 and run["status"] == "finished"
    assert [r["status"] for r in sweep.unfinished] == ["interrupted"]  # W&B's "crashed": the process is gone
    assert [row["epoch"] for row in sweep.curves[run["run_id"]]] == [0, 1, 2]
    assert run["epochs"] == 3  # W&B's last 0-based epoch is 2; result.json counts epochs
    assert report_main(["--wandb", "me/nlbench", "--out", str(tmp_path / "w")]) == 0
    assert "**Runs** 4 (3 finished, 1 interrupted)" in (tmp_path / "w" / "report.md").read_text()


def test_report_with_no_finished_run(tmp_path: Path) -> None:
    every = tuple(itertools.product(("softmax", "scale"), (1,), ("normal",), (0,)))
    sweep = collect.load_sweep(
        write_sweep(tmp_path / "s", reductions=(1,), inits=("normal",), seeds=(0,), failed=every, diverged=())
    )
    files = render.write_report(sweep, tmp_path / "out")
    md = files.markdown.read_text()
    assert files.images == [] and "No finished run: nothing to plot." in md
    assert md.count("| failed |") == 2


# ---- training benchmark files (nlbench bench train --grid --out FILE) -----------------------------------------------
BENCH_HEADS = (1, 2, 4)
DROP = object()  # an override that removes the key


def bench_rate(depth: int, normalization: str, reduction: int, heads: int) -> float:
    """Images/s of a synthetic record: a distinct value per configuration, so mixed-up points are caught."""
    return 10_000 / depth + (100.0 if normalization == "scale" else 0.0) + 10 * reduction + heads


def bench_peak(depth: int, normalization: str, reduction: int, heads: int) -> float:
    return 2.0 * depth + (50.0 if normalization == "softmax" else 0.0) + 100 / reduction + heads / 10


def write_bench(
    path: Path,
    *,
    machine: str = "host (CPU, 2 threads)",
    depths: tuple[int, ...] = (20, 56),
    reductions: tuple[int, ...] = (1, 2, 4, 8, 16),
    **overrides,
) -> Path:
    """A benchmark file as `nlbench bench train --grid --out` writes it. As in the real grid, a configuration whose
    width C / r does not split into the heads is absent (here r16 with 4 heads)."""
    records = [
        {
            "backbone": f"PreResNet-{depth}",
            "depth": depth,
            "normalization": norm,
            "reduction": r,
            "heads": h,
            "images_per_s": bench_rate(depth, norm, r, h),
            "peak_mib": bench_peak(depth, norm, r, h),
        }
        for depth, norm, r, h in itertools.product(depths, ("softmax", "scale"), reductions, BENCH_HEADS)
        if (r, h) != (16, 4)
    ]
    data = {
        "machine": machine,
        "device": "cpu",
        "batch_size": 128,
        "bf16": False,
        "date": "2026-11-24T15:00:00+00:00",
        "records": records,
        **overrides,
    }
    data = {key: value for key, value in data.items() if value is not DROP}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_load_benchmark_reads_the_grid_file(tmp_path: Path) -> None:
    bench = collect.load_benchmark(write_bench(tmp_path / "cpu.json", date="2026-11-24T16:30:00+01:00"))
    assert bench.machine == "host (CPU, 2 threads)" and bench.device == "cpu" and bench.batch_size == 128
    assert bench.backbones == ["PreResNet-20", "PreResNet-56"]
    assert bench.when == "2026-11-24 15:30 UTC"
    assert len(bench.records) == 2 * 2 * (5 * 3 - 1)


def test_benchmark_figure_plots_the_records(tmp_path: Path) -> None:
    bench = collect.load_benchmark(write_bench(tmp_path / "cpu.json"))
    fig = plots.training_benchmark(bench)
    assert len(fig.axes) == 4  # rows images/s, peak memory x a column per backbone
    assert [ax.get_title() for ax in fig.axes[:2]] == ["PreResNet-20", "PreResNet-56"]
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["training images/s", "peak memory (MiB)"]
    for (row, value), (col, depth) in itertools.product(enumerate((bench_rate, bench_peak)), enumerate((20, 56))):
        ax = fig.axes[2 * row + col]
        assert ax.get_xscale() == "log"
        lines = {line.get_label(): line for line in ax.lines}
        assert set(lines) == {f"{norm} h{h}" for norm in ("softmax", "scale") for h in BENCH_HEADS}
        for norm, h in itertools.product(("softmax", "scale"), BENCH_HEADS):
            reductions = [1, 2, 4, 8] if h == 4 else [1, 2, 4, 8, 16]
            line = lines[f"{norm} h{h}"]
            assert list(line.get_xdata()) == reductions
            assert list(line.get_ydata()) == pytest.approx([value(depth, norm, r, h) for r in reductions])
        # Colour tells the normalisation, line style and marker the head count.
        assert lines["softmax h2"].get_color() == lines["softmax h4"].get_color() != lines["scale h2"].get_color()
        assert lines["softmax h2"].get_linestyle() == lines["scale h2"].get_linestyle()
        assert lines["scale h1"].get_linestyle() != lines["scale h2"].get_linestyle()
        assert ax.get_ylim()[0] == 0


def test_report_cli_adds_a_section_per_benchmark_file(sweep_dir: Path, tmp_path: Path, capsys) -> None:
    cpu = write_bench(tmp_path / "cpu.json")
    gpu = write_bench(tmp_path / "gpu.json", machine="gpu-host (NVIDIA H200)", depths=(20,), reductions=(2, 4))
    again = write_bench(tmp_path / "other" / "cpu.json", machine="laptop (CPU, 8 threads)", depths=(56,))
    out = tmp_path / "out"
    assert report_main([str(sweep_dir), "--out", str(out), "--bench", str(cpu), str(gpu), "--bench", str(again)]) == 0
    bench_pngs = ["bench_cpu.png", "bench_gpu.png", "bench_cpu-2.png"]
    printed = capsys.readouterr().out.splitlines()
    assert all(f"  {out / name}" in printed and _png_is_drawn(out / name) for name in bench_pngs)

    md = (out / "report.md").read_text()
    titles = re.findall(r"^## (Training throughput benchmark .*)$", md, re.M)
    assert titles == [
        "Training throughput benchmark (host (CPU, 2 threads), 2026-11-24 15:00 UTC)",
        "Training throughput benchmark (gpu-host (NVIDIA H200), 2026-11-24 15:00 UTC)",
        "Training throughput benchmark (laptop (CPU, 8 threads), 2026-11-24 15:00 UTC)",
    ]
    cpu_section = md.split(f"## {titles[0]}")[1].split("\n## ")[0]
    assert "(bench_cpu.png)" in cpu_section and f"`{cpu}`" in cpu_section and "batch 128" in cpu_section
    assert (
        "| backbone | r | heads | softmax img/s | scale img/s | softmax peak MiB | scale peak MiB "
        "| scale / softmax img/s |"
    ) in cpu_section
    rates = [bench_rate(56, norm, 8, 2) for norm in ("softmax", "scale")]
    peaks = [bench_peak(56, norm, 8, 2) for norm in ("softmax", "scale")]
    row = (
        f"| PreResNet-56 | 8 | 2 | {rates[0]:.0f} | {rates[1]:.0f} | {peaks[0]:.0f} | {peaks[1]:.0f} "
        f"| {rates[1] / rates[0]:.2f}× |"
    )
    assert row in cpu_section
    assert cpu_section.count("\n| PreResNet-") == 2 * (5 * 3 - 1)
    # Rows follow the benchmark's backbone order, then reduction and heads.
    assert cpu_section.index("| PreResNet-20 | 16 | 2 |") < cpu_section.index("| PreResNet-56 | 1 | 1 |")

    page = (out / "report.html").read_text()
    embedded = [base64.b64decode(data) for data in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]
    assert embedded[-3:] == [(out / name).read_bytes() for name in bench_pngs]
    assert f"<h2>{titles[1]}</h2>" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "expected an object, got list"),
        ({"date": DROP, "records": DROP}, "missing date, records"),
        ({"date": "yesterday"}, "date 'yesterday' is not an ISO 8601 date"),
        ({"records": []}, "records is not a non-empty list"),
        (
            {"records": [{"backbone": "PreResNet-20"}]},
            "records[0] lacks normalization, reduction, heads, images_per_s, peak_mib",
        ),
        (
            {
                "records": [
                    {
                        "backbone": "b",
                        "normalization": "scale",
                        "reduction": 0,
                        "heads": 1,
                        "images_per_s": 1.0,
                        "peak_mib": 1.0,
                    }
                ]
            },
            "records[0] reduction 0 is not a positive integer",
        ),
        (
            {
                "records": [
                    {
                        "backbone": "b",
                        "normalization": "scale",
                        "reduction": 2,
                        "heads": 1,
                        "images_per_s": "fast",
                        "peak_mib": 1.0,
                    }
                ]
            },
            "records[0] images_per_s 'fast' is not a non-negative number",
        ),
        (
            {
                "records": [
                    {
                        "backbone": "b",
                        "normalization": "scale",
                        "reduction": 2,
                        "heads": 1,
                        "images_per_s": 1.0,
                        "peak_mib": 1.0,
                    }
                ]
                * 2
            },
            "records[1] repeats",
        ),
    ],
)
def test_report_cli_rejects_a_bad_benchmark_file(sweep_dir: Path, tmp_path: Path, capsys, content, message) -> None:
    good = write_bench(tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    if isinstance(content, str):
        bad.write_text(content)
    else:
        write_bench(bad, **content)
    out = tmp_path / "out"
    assert report_main([str(sweep_dir), "--out", str(out), "--bench", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nlbench report: error: benchmark file {bad}") and message in err
    assert not out.exists()  # every input is checked before anything is written


def test_report_cli_missing_benchmark_file_and_misplaced_sweep_dir(sweep_dir: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.json"
    assert report_main([str(sweep_dir), "--bench", str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"nlbench report: error: benchmark file {missing} does not exist")
    assert not (sweep_dir / "report").exists()
    # --bench takes every argument after it, so a sweep directory written last is read as a benchmark file.
    assert report_main(["--bench", str(write_bench(tmp_path / "cpu.json")), str(sweep_dir)]) == 2
    assert "put it before --bench" in capsys.readouterr().err


@pytest.mark.slow
def test_report_of_a_real_tiny_benchmark_run(sweep_dir: Path, tmp_path: Path) -> None:
    """End to end with the benchmark itself (about a minute on 2 CPU cores): its file loads and is plotted as is."""
    from nlbench.bench.train import main as bench_main

    path = tmp_path / "tiny.json"
    assert (
        bench_main(
            [
                "--grid",
                "--device",
                "cpu",
                "--depths",
                "[8]",
                "--steps",
                "2",
                "--warmup",
                "1",
                "--reductions",
                "[2,4]",
                "--heads",
                "[1,2]",
                "--batch_size",
                "16",
                "--out",
                str(path),
            ]
        )
        == 0
    )
    records = json.loads(path.read_text())["records"]
    bench = collect.load_benchmark(path)
    fig = plots.training_benchmark(bench)
    for ax, metric in zip(fig.axes, ("images_per_s", "peak_mib")):
        for line in ax.lines:
            norm, heads = line.get_label().split(" h")
            expected = [rec[metric] for rec in records if (rec["normalization"], rec["heads"]) == (norm, int(heads))]
            assert list(line.get_ydata()) == pytest.approx(expected)
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "out"), "--bench", str(path)]) == 0
    assert "## Training throughput benchmark (" in (tmp_path / "out" / "report.md").read_text()


# ---- a real browser ------------------------------------------------------------------------------------------------
def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


# Appended to a copy of the page: once everything has loaded, record whether each image decoded, and how many pixels
# of the first image (the headline figure) have the series colours (tab:blue for scale, tab:orange for softmax).
_PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const counts = [0, 0];
  const first = imgs[0];
  if (first && first.naturalWidth > 0) {
    const canvas = document.createElement("canvas");
    canvas.width = first.naturalWidth; canvas.height = first.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(first, 0, 0);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = [[31, 119, 180], [255, 127, 14]];
    for (let i = 0; i < px.length; i += 4) {
      colours.forEach((c, k) => {
        const near = Math.abs(px[i] - c[0]) < 12 && Math.abs(px[i + 1] - c[1]) < 12;
        if (near && Math.abs(px[i + 2] - c[2]) < 12) counts[k]++;
      });
    }
  }
  document.body.setAttribute("data-probe",
    imgs.map(i => i.complete && i.naturalWidth > 0 ? i.naturalWidth + "x" + i.naturalHeight : "broken").join(","));
  document.body.setAttribute("data-series", counts.join(","));
});
</script>"""

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--virtual-time-budget=3000",
]


def _probe(html: Path, tmp_path: Path) -> tuple[list[str], list[int]]:
    """Image sizes as Chromium decoded them, and the series-colour pixel counts of the first image."""
    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text().replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run(
        [_chromium(), *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r'data-probe="([^"]*)"', dom.stdout)
    series = re.search(r'data-series="([^"]*)"', dom.stdout)
    assert match and series, f"no probe result in the DOM; stderr: {dom.stderr[-2000:]}"
    return match.group(1).split(","), [int(n) for n in series.group(1).split(",")]


@pytest.mark.skipif(
    _chromium() is None,
    reason="optional: needs a Chromium/Chrome binary on PATH to render report.html (apt-get install chromium)",
)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"reductions": (2,), "inits": None},  # one axis: the demo's softmax vs scale
        {},
    ],
)  # normalization x reduction x init
def test_headline_figure_shows_both_series_in_chromium(tmp_path: Path, kwargs) -> None:
    sweep = collect.load_sweep(write_sweep(tmp_path / "s", **kwargs))
    files = render.write_report(sweep, tmp_path / "out")
    sizes, (blue, orange) = _probe(files.html, tmp_path)
    assert "broken" not in sizes
    # Each series draws markers and error bars: hundreds of pixels; an empty axis (the old demo figure) has only
    # its two legend entries (a few dozen).
    assert blue > 300 and orange > 300, (blue, orange)


@pytest.mark.skipif(
    _chromium() is None,
    reason="optional: needs a Chromium/Chrome binary on PATH to render report.html (apt-get install chromium)",
)
def test_report_html_renders_in_headless_chromium(sweep_dir: Path, tmp_path: Path) -> None:
    bench = collect.load_benchmark(write_bench(tmp_path / "cpu.json"))
    files = render.write_report(collect.load_sweep(sweep_dir), tmp_path / "out", benchmarks=[bench])
    sizes, _ = _probe(files.html, tmp_path)
    assert len(sizes) == 4 and "broken" not in sizes
    for size, png in zip(sizes, files.images):
        height, width = matplotlib.image.imread(png).shape[:2]
        assert size == f"{width}x{height}"
    # And the page as a user sees it: a screenshot that is not blank.
    shot = tmp_path / "page.png"
    subprocess.run(
        [
            _chromium(),
            *_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            files.html.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert _png_is_drawn(shot)


# ---- statistics (nlbench.report.stats) -----------------------------------------------------------------------------
from nlbench.report import claims, compare, stats  # noqa: E402


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706205),
        (0.975, 2, 4.302653),
        (0.975, 3, 3.182446),
        (0.975, 4, 2.776445),
        (0.975, 10, 2.228139),
        (0.975, 30, 2.042272),
        (0.95, 5, 2.015048),
        (0.995, 7, 3.499483),
        (0.9, 1, 3.077684),
        (0.025, 3, -3.182446),
    ],
)
def test_t_quantile_matches_the_table(p: float, df: float, expected: float) -> None:
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=2e-6)


def test_scipy_intervals_equal_the_former_hand_written_ones() -> None:
    """The values the hand-written incomplete-beta t quantile gave (computed with it before it was removed, on this
    fixed data): the scipy-based estimate, paired and Welch intervals equal them to 1e-9."""
    xs, ys = [0.712, 0.705, 0.731, 0.698, 0.720], [0.701, 0.699, 0.715, 0.690, 0.705]
    est = stats.estimate(xs)
    assert (est.low, est.high) == (
        pytest.approx(0.6972167407713282, abs=1e-9),
        pytest.approx(0.7291832592286717, abs=1e-9),
    )
    treatment = [{"seed": i, "m": v} for i, v in enumerate(xs)]
    paired = compare.difference(treatment, [{"seed": i, "m": v} for i, v in enumerate(ys)], "m")
    assert paired.method == "paired" and paired.df == 4
    assert (paired.mean, paired.low, paired.high) == (
        pytest.approx(0.01120000000000001, abs=1e-9),
        pytest.approx(0.005830610708941, abs=1e-9),
        pytest.approx(0.01656938929105902, abs=1e-9),
    )
    welch = compare.difference(treatment, [{"seed": i + 10, "m": v} for i, v in enumerate(ys[:4])], "m")
    assert welch.method == "Welch" and welch.df == pytest.approx(6.99086560721941, abs=1e-9)
    assert (welch.low, welch.high) == (
        pytest.approx(-0.006351167293004417, abs=1e-9),
        pytest.approx(0.03025116729300445, abs=1e-9),
    )
    for (p, df), value in {
        (0.975, 2): 4.302652729749411,
        (0.975, 3.7): 2.8675207071911473,
        (0.995, 10): 3.169272672617012,
    }.items():
        assert stats.t_quantile(p, df) == pytest.approx(value, abs=1e-9)
    # The quantile with Welch's fractional degrees of freedom lies between its integer neighbours.
    assert stats.t_quantile(0.975, 3) > stats.t_quantile(0.975, 3.5) > stats.t_quantile(0.975, 4)


def test_estimate_is_the_student_t_interval() -> None:
    est = stats.estimate([0.70, 0.72, 0.77, None])
    mean, sd = statistics.fmean([0.70, 0.72, 0.77]), statistics.stdev([0.70, 0.72, 0.77])
    half = 4.302653 * sd / math.sqrt(3)
    assert (est.n, est.mean, est.std) == (3, pytest.approx(mean), pytest.approx(sd))
    assert (est.low, est.high) == (pytest.approx(mean - half, abs=1e-6), pytest.approx(mean + half, abs=1e-6))
    assert stats.estimate([0.5]) == stats.Estimate(1, 0.5, None, None, None)


def _runs(normalization: str, accs: dict[int, float]) -> list[dict]:
    return [{"normalization": normalization, "seed": seed, FINAL_ACC1: acc} for seed, acc in accs.items()]


def _verdict(scale: list[dict], softmax: list[dict]) -> str:
    [comparison] = compare.compare([*softmax, *scale], ["normalization"], "normalization").comparisons
    return comparison.verdict


def test_difference_is_paired_by_seed_when_seeds_match() -> None:
    # Seed effects larger than the normalization effect: paired, the difference is clear; unpaired it would not be.
    scale, softmax = _runs("scale", {0: 0.80, 1: 0.75, 2: 0.78}), _runs("softmax", {0: 0.78, 1: 0.725, 2: 0.765})
    diff = compare.difference(scale, softmax, FINAL_ACC1)
    d = [0.02, 0.025, 0.015]  # by hand: per-seed differences, mean 0.02, sd 0.005
    half = 4.302653 * 0.005 / math.sqrt(3)
    assert diff.method == "paired" and diff.df == 2
    assert diff.mean == pytest.approx(statistics.fmean(d))
    assert (diff.low, diff.high) == (pytest.approx(0.02 - half, abs=1e-6), pytest.approx(0.02 + half, abs=1e-6))
    assert _verdict(scale, softmax) == "normalization=scale better"
    share = diff.p_improvement  # all three seeds won, with the Wilson interval of 3/3
    assert (share.value, share.n) == (1.0, 3) and share.low == pytest.approx(0.438502, abs=1e-6) and share.high == 1
    assert diff.bootstrap is None  # three seeds: the t interval is the interval
    others = _runs("softmax", {3: 0.78, 4: 0.725, 5: 0.765})
    unpaired = compare.difference(scale, others, FINAL_ACC1)
    assert unpaired.method == "Welch" and unpaired.p_improvement is None
    assert _verdict(scale, others) == (
        f"inconclusive (n=3/3, [{100 * unpaired.low:+.2f}, {100 * unpaired.high:+.2f}] pt)"
    )


def test_difference_is_welch_when_seeds_differ_and_gives_verdicts() -> None:
    scale, softmax = _runs("scale", {0: 0.80, 1: 0.82, 2: 0.81}), _runs("softmax", {3: 0.70, 4: 0.74, 5: 0.72})
    diff = compare.difference(scale, softmax, FINAL_ACC1)
    va, vb = statistics.variance([0.80, 0.82, 0.81]) / 3, statistics.variance([0.70, 0.74, 0.72]) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t_quantile(0.975, df) * math.sqrt(va + vb)
    assert diff.method == "Welch" and diff.df == pytest.approx(df)
    assert diff.mean == pytest.approx(0.81 - 0.72)
    assert (diff.low, diff.high) == (pytest.approx(0.09 - half), pytest.approx(0.09 + half))
    assert _verdict(scale, softmax) == "normalization=scale better"
    assert _verdict(_runs("scale", {0: 0.5, 1: 0.52, 2: 0.51}), _runs("softmax", {0: 0.7, 1: 0.71, 2: 0.72})) == (
        "normalization=softmax better"
    )
    # Two seeds a side: no verdict, whatever the difference (its 95% interval spans 12.7 standard errors).
    assert _verdict(_runs("scale", {0: 0.5, 1: 0.52}), _runs("softmax", {0: 0.7, 1: 0.71})) == (
        "undetermined (n=2; 3 seed pairs needed)"
    )
    assert _verdict(_runs("scale", {0: 0.5}), _runs("softmax", {0: 0.6})) == "undetermined (n=1; 3 seed pairs needed)"
    wide = _runs("scale", {0: 0.5, 1: 0.7, 2: 0.6}), _runs("softmax", {0: 0.6, 1: 0.6, 2: 0.62})
    assert _verdict(*wide).startswith("inconclusive (n=3 pairs, [")


def test_a_heads_axis_of_four_values_gives_three_holm_corrected_comparisons() -> None:
    """Each head count against the first (h1), Holm-adjusted over the three: a difference that passes alone at
    p < 0.05 but not after the correction gets no verdict."""
    accs = {1: [0.700, 0.710, 0.705], 2: [0.712, 0.719, 0.718], 4: [0.710, 0.724, 0.712], 8: [0.690, 0.718, 0.699]}
    runs = [
        {"heads": h, "normalization": "scale", "seed": s, FINAL_ACC1: acc}
        for h, values in accs.items()
        for s, acc in enumerate(values)
    ]
    family = compare.compare(runs, ["heads"], "heads")
    found = family.comparisons
    assert [(c.treatment, c.reference, c.family) for c in found] == [(2, 1, 3), (4, 1, 3), (8, 1, 3)]
    assert family.size == 3 and family.metric == FINAL_ACC1
    raw = sorted((c.diff.p_value, c.treatment) for c in found)
    adjusted = {c.treatment: c.p_adjusted for c in found}
    # Holm by hand: the smallest p times 3, the next times 2 (never below the previous), the largest times 1.
    first = min(1.0, 3 * raw[0][0])
    second = max(first, min(1.0, 2 * raw[1][0]))
    assert adjusted[raw[0][1]] == pytest.approx(first) and adjusted[raw[1][1]] == pytest.approx(second)
    assert adjusted[raw[2][1]] == pytest.approx(max(second, raw[2][0]))
    by_heads = {c.treatment: c for c in found}
    assert by_heads[2].diff.p_value < 0.05 and by_heads[2].verdict == "heads=2 better"
    assert by_heads[4].diff.p_value < 0.05 <= by_heads[4].p_adjusted  # significant alone, not after Holm
    assert by_heads[4].verdict.startswith("inconclusive (n=3 pairs, [")
    # --compare heads=2 picks another reference; a value the runs never take is refused.
    assert {c.treatment for c in compare.compare(runs, ["heads"], "heads", reference="2").comparisons} == {1, 4, 8}
    with pytest.raises(ValueError, match="heads takes the values 1, 2, 4, 8"):
        compare.compare(runs, ["heads"], "heads", reference="3")


def test_claims_say_what_is_not_tested(sweep_dir: Path) -> None:
    sweep = collect.load_sweep(sweep_dir)
    found = {
        c.claim: c
        for c in claims.claims(sweep.runs, sweep.config_keys, compare.Families(sweep.finished, sweep.config_keys))
    }
    assert found[claims.CLAIMS[0]].verdict == found[claims.CLAIMS[3]].verdict == claims.NOT_TESTED
    scale = found[claims.CLAIMS[1]]
    assert scale.verdict == claims.UNDETERMINED and "scale − softmax on cifar10" in scale.evidence
    assert "per configuration (4): none tested (4 undetermined; see Comparisons)" in scale.evidence
    assert "over reduction" in found[claims.CLAIMS[2]].evidence and "over init" in found[claims.CLAIMS[2]].evidence


def test_report_states_differences_verdicts_and_the_test_split(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = collect.load_sweep(sweep_dir)
    md = render.to_markdown(*render.build_report(sweep))
    section = md.split("**normalization** against softmax")[1].split("**reduction**")[0]
    # softmax r4 normal: seeds 0 and 1 on both sides -> paired; the hand computation of the row:
    diffs = [
        synthetic_acc("scale", 4, "normal", s, 2, 3) - synthetic_acc("softmax", 4, "normal", s, 2, 3) for s in (0, 1)
    ]
    assert f"| 4 | normal | scale | final top-1 | 2 pairs | {100 * statistics.fmean(diffs):+.2f} |" in section
    assert "| 4 | normal | scale | best top-1 (optimistic) | 2 pairs |" in section
    # scale r1 normal lost seed 0 (diverged): one pair left, and the seed left out is named.
    assert "| 1 | normal | scale | final top-1 | 1 pair | " in section
    assert "| paired; left out: seed 0: only the reference | undetermined (n=1; 3 seed pairs needed) |" in section
    assert "selects on the test data" in md and "## The paper's claims" in md and "not tested by this data" in md


# ---- sources: run directories, mixes, a sweep in progress ------------------------------------------------------------
def test_a_plain_fit_run_directory_is_reported(tmp_path: Path, sweep_dir: Path, capsys) -> None:
    run_dir = tmp_path / "runs" / "my-fit"
    write_run(run_dir, "scale", 2, "normal", 7, epochs=3, status="finished")
    sweep = collect.load_sweep(run_dir)
    assert [run["run_id"] for run in sweep.runs] == ["my-fit"] and sweep.runs[0][BEST_ACC1] is not None
    assert report_main([str(run_dir)]) == 0
    md = (run_dir / "report" / "report.md").read_text()
    assert "**Runs** 1 (1 finished)" in md and "(error_by_configuration.png)" in md
    # A sweep and a run directory together: grouped by what varies across both (here reduction 1/4 vs 2, seed 7).
    out = tmp_path / "mixed"
    assert report_main([str(sweep_dir), str(run_dir), "--out", str(out)]) == 0
    assert "**Runs** 17 (15 finished" in (out / "report.md").read_text()
    capsys.readouterr()
    assert report_main([str(sweep_dir), str(run_dir)]) == 2
    assert "--out is required with several sources" in capsys.readouterr().err


def test_a_report_made_mid_sweep_shows_running_runs(sweep_dir: Path, tmp_path: Path) -> None:
    from nlbench.runlock import RunLock

    rows = json.loads((sweep_dir / "results.json").read_text())
    running = next(row for row in rows if row["status"] == "finished")
    run_dir = sweep_dir / "runs" / running["run_id"]
    (run_dir / "result.json").unlink()  # a first attempt has written nothing yet
    with RunLock(run_dir):  # ... and a process works on it: running, whatever the files say
        sweep = collect.load_sweep(sweep_dir)
    assert [run["run_id"] for run in sweep.running] == [running["run_id"]]
    assert running["run_id"] not in {run["run_id"] for run in sweep.unfinished}
    assert sweep.config_keys == ("normalization", "reduction", "init")  # no invented "dataset" axis
    md = render.to_markdown(*render.build_report(sweep))
    assert "**Runs** 16 (13 finished, 1 diverged, 1 failed, 1 running)" in md
    assert f"| {running['run_id']} | running |" in md.split("## Runs still running")[1].split("\n## ")[0]
    assert f"| {running['run_id']} |" not in md.split("## Runs left out of the statistics")[1]
    # Its process gone (the lock is free): interrupted, in every reader.
    after = collect.load_sweep(sweep_dir)
    assert not after.running and {r["run_id"]: r["status"] for r in after.unfinished}[running["run_id"]] == (
        "interrupted"
    )


# ---- the headline figure is never empty ------------------------------------------------------------------------------
def _plotted_points(fig) -> int:
    """Finite data points of the errorbar series (not the baseline band) in every panel of a figure."""
    return sum(
        sum(1 for x, y in zip(*container.lines[0].get_data()) if math.isfinite(x) and math.isfinite(y))
        for ax in fig.axes
        for container in ax.containers
        if container.get_label() != "baseline (no block)"
    )


@pytest.mark.parametrize(
    ("kwargs", "title", "points"),
    [
        ({"reductions": (2,), "inits": None}, "Top-1 error per normalization", 2 * 2),  # one axis, as the demo
        ({"reductions": (2,)}, "Top-1 error per normalization × init", 2 * 4),
        ({}, "Top-1 error against the reduction ratio", 2 * 8),
    ],
)
def test_headline_figure_has_data_for_one_and_many_axes(tmp_path: Path, kwargs, title, points) -> None:
    sweep = collect.load_sweep(write_sweep(tmp_path / "s", failed=(), diverged=(), **kwargs))
    got_title, fig = plots.headline(sweep)
    assert got_title == title
    assert _plotted_points(fig) == points  # best and final panels, a point per configuration


def test_throughput_says_where_it_was_measured_and_drops_identical_params(tmp_path: Path) -> None:
    sweep = collect.load_sweep(write_sweep(tmp_path / "s", reductions=(2,), inits=None, failed=(), diverged=()))
    for run in sweep.runs:
        run.update(device="cpu", threads=2, written_at="2024-01-01T00:00:10+00:00")  # all ended together: overlap
    where, caveat = render.measured_where(sweep)
    assert where == "device cpu; threads 2; host not recorded; up to 4 runs at the same time"
    assert caveat.startswith("up to 4 runs trained at the same time and shared the machine")
    fig = plots.throughput_and_params(sweep, where)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == where  # NL params identical: no parameter panel
    apart = [f"2024-01-01T00:{m:02d}:00+00:00" for m in range(len(sweep.runs))]
    for run, end in zip(sweep.runs, apart):
        run["written_at"] = end
    assert render.measured_where(sweep)[0].endswith("one run at a time")
    several = collect.load_sweep(write_sweep(tmp_path / "r", failed=(), diverged=()))
    assert len(plots.throughput_and_params(several).axes) == 2  # NL params differ with r: shown with their share
    assert any("% of the model" in text.get_text() for text in plots.throughput_and_params(several).axes[1].texts)


def test_the_report_does_not_import_torch() -> None:
    """`nlbench report` reads files and draws figures: it must start without the training stack."""
    code = "import sys, nlbench.report_command, nlbench.report.stats; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ---- report details (issue 20 items 3 and 15) ----------------------------------------------------------------------
def test_one_epoch_learning_curves_have_whole_epoch_ticks(tmp_path: Path) -> None:
    sweep = collect.load_sweep(
        write_sweep(tmp_path / "s", reductions=(2,), inits=None, epochs=1, failed=(), diverged=())
    )
    fig = plots.learning_curves(sweep)
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.get_visible():
            assert [t.get_text() for t in ax.get_xticklabels()] == ["0"]  # not -0.045, -0.030, ...


def test_differences_never_print_minus_zero() -> None:
    assert render._signed(-0.001) == "0.00" and render._signed(-0.0) == "0.00" and render._signed(0.004) == "0.00"
    assert render._signed(-0.006) == "-0.01" and render._signed(1.234) == "+1.23"


def test_category_labels_do_not_collide(tmp_path: Path) -> None:
    sweep = collect.load_sweep(
        write_sweep(
            tmp_path / "s", normalizations=("sigmoid", "softmax"), reductions=(2,), inits=None, failed=(), diverged=()
        )
    )
    fig = plots.error_by_configuration(sweep)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["sigmoid", "softmax"]
        assert all(not a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_per_configuration_figures_are_capped(tmp_path: Path) -> None:
    from nlbench.bench.report_time import write_runs

    write_runs(tmp_path / "many", runs=60, configs=60, epochs=2)
    sweep = collect.load_sweep(tmp_path / "many")
    assert len({run["group"] for run in sweep.runs}) == 60
    fig = plots.learning_curves(sweep)
    assert sum(ax.get_visible() for ax in fig.axes) == plots.MAX_CONFIGS
    bars = plots.throughput_and_params(sweep)
    assert len(bars.axes[0].patches) == plots.MAX_CONFIGS
    assert f"show the {plots.MAX_CONFIGS} configurations with the best mean best top-1 of 60" in (
        plots.capped_note(sweep)
    )


def test_every_method_of_the_rivals_sweep_is_compared_against_softmax(tmp_path: Path) -> None:
    """Issue 17 item 5: normalizations, peer blocks (GC, SE: no NL options) and no block, each against softmax, with
    the registry's labels, in the comparison table and the figures."""
    root = tmp_path / "rivals"
    methods = ["softmax", "scale", "linear", "efficient", "gc", "se", "none"]
    for method in methods:
        for seed in (0, 1, 2):
            run_dir = root / f"{method}-s{seed}"
            write_run(
                run_dir, "softmax" if method in ("gc", "se") else method, 2, "normal", seed, epochs=3, status="finished"
            )
            if method in ("gc", "se"):  # as nlbench.record.identify records a peer block
                record = read_record(run_dir)
                kept = {k: v for k, v in record.hparams.items() if k not in schema.NL_FIELDS}
                write_record(run_dir, dataclasses.replace(record, hparams={**kept, "block": method}))
    df = results.load(*sorted(root.iterdir()))
    assert set(df["normalization"]) == set(methods) and "block" not in df
    assert results.config_keys(df) == ["normalization"]  # reduction/heads/... are absent for GC/SE: determined
    out = tmp_path / "out"
    assert report_main([*map(str, sorted(root.iterdir())), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    block = md.split("**normalization** against softmax:")[1].split("\n\n")[1]
    shown = {line.split("|")[1].strip() for line in block.splitlines()[2:]}
    assert shown == {
        "scale",
        "linear (Katharopoulos)",
        "efficient (Shen)",
        "GC block",
        "SE block",
        "baseline (no block)",
    }
    assert "**normalization** against softmax: one family of" in md and "over 6 comparison(s), Holm" in md
