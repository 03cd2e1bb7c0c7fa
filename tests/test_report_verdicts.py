"""Issue 24: verdicts that mean what they say. Each case the issue found, with its numbers, as a regression test on
synthetic run directories (written as `nlbench fit` leaves them; no training): zero variance, one missing seed,
best-on-test never deciding, Simpson's reversal for claim 1, divergence for claim 3, one family size shared by the
comparisons section and the claims table, two sources of one configuration (merged, not n=4), intervals within
[0, 100], runs at chance, the recipe in report.md, report.html and results.csv, `--margin`, and the pilot's power
table of `nlbench sweep --dry-run --pilot`."""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from nlbench import schema
from nlbench.record import RunRecord, write_record
from nlbench.report import claims, collect, compare, render, stats
from nlbench.report_command import main as report_main
from nlbench.schema import BEST_ACC1, FINAL_ACC1, SELECTED_ACC1

REPO = Path(__file__).resolve().parents[1]
KEYS = ("normalization", "reduction", "init", "similarity", "heads")


def write_runs(root: Path, runs: list[dict[str, Any]]) -> Path:
    """A folder of run directories (``root/runs/<id>``, read as a sweep directory) from dicts of hyper-parameters
    (the keys of :data:`KEYS` and ``seed``), metrics (FINAL_ACC1, BEST_ACC1, ...), ``status`` and ``config``."""
    for i, spec in enumerate(runs):
        hparams = {
            "dataset": "cifar10",
            "backbone": "PreActResNet",
            "depth": 20,
            "nl_blocks": 1,
            "normalization": "softmax",
            "reduction": 2,
            "heads": 1,
            "init": "normal",
            "similarity": "dot",
            **{k: spec[k] for k in (*KEYS, "seed") if k in spec},
        }
        final = spec.get(FINAL_ACC1)
        metrics = {
            FINAL_ACC1: final,
            BEST_ACC1: spec.get(BEST_ACC1, final),
            schema.IMAGES_PER_S: spec.get("ips", 500.0),
            "epochs": 3,
            "time_s": 10.0,
            SELECTED_ACC1: spec.get(SELECTED_ACC1),
            schema.CLASSES: spec.get("classes"),
        }
        status = spec.get("status", "finished")
        if status != "finished":
            metrics = {schema.IMAGES_PER_S: None}
        name = "-".join(f"{k}{hparams[k]}" for k in (*KEYS, "seed"))
        write_record(
            root / "runs" / f"{i:03d}-{name}",
            RunRecord(
                status=status,
                run_name=name,
                hparams=hparams,
                metrics=metrics,
                config=spec.get("config", {}),
                error="RuntimeError: loss is nan" if status != "finished" else None,
            ),
        )
    return root


def report_md(root: Path | list[Path], tmp_path: Path, *args: str) -> str:
    roots = root if isinstance(root, list) else [root]
    out = tmp_path / "out"
    assert report_main([*map(str, roots), "--out", str(out), *args]) == 0
    return (out / "report.md").read_text()


def family_section(md: str, key: str) -> str:
    return md.split(f"**{key}** against")[1].split("\n\n**")[0].split("\n## ")[0]


def rows_of(section: str, metric: str = "final top-1") -> list[list[str]]:
    return [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in section.splitlines()
        if line.startswith("|") and f"| {metric} |" in line
    ]


# ---- zero variance: never p = 0, never "better" ----------------------------------------------------------------------
def test_zero_variance_is_undetermined_not_proof(tmp_path: Path) -> None:
    """n=2 seeds with the same +0.2 pt difference (a 1,000-image test set quantises accuracy to 0.1 pt) used to read
    p = 0, "normalization=scale better", interval [+0.20, +0.20]; Welch with identical values per arm did the same."""
    soft = {0: 0.712, 1: 0.735}
    runs = [
        {"normalization": n, "seed": s, FINAL_ACC1: v + (0.002 if n == "scale" else 0.0)}
        for n in ("softmax", "scale")
        for s, v in soft.items()
    ]
    md = report_md(write_runs(tmp_path / "two", runs), tmp_path)
    [row] = rows_of(family_section(md, "normalization"))
    assert row[2:5] == ["2 pairs", "+0.20", "–"]  # no point interval
    assert row[9] == "–" and row[-1] == "undetermined (n=2; 3 seed pairs needed)"
    # Three seeds, the same +0.2 pt each: enough seeds, still no evidence.
    three = compare.difference(
        [{"seed": s, "m": v + 0.002} for s, v in enumerate([0.71, 0.73, 0.70])],
        [{"seed": s, "m": v} for s, v in enumerate([0.71, 0.73, 0.70])],
        "m",
    )
    assert three.p_value is None and three.low is None and three.undetermined.startswith("zero variance")
    # Welch (no seed shared) with identical values in each arm.
    welch = compare.difference(
        [{"seed": s, "m": 0.712} for s in (0, 1, 2)], [{"seed": s, "m": 0.710} for s in (3, 4, 5)], "m"
    )
    assert welch.method == "Welch" and welch.p_value is None and welch.undetermined.startswith("zero variance")
    family = compare.compare(
        [{"normalization": "softmax", "seed": s, FINAL_ACC1: 0.710} for s in (3, 4, 5)]
        + [{"normalization": "scale", "seed": s, FINAL_ACC1: 0.712} for s in (0, 1, 2)],
        ["normalization"],
        "normalization",
    )
    assert family.size == 0 and family.comparisons[0].code == stats.UNDETERMINED


# ---- one missing seed: pair on the seeds both arms ran ---------------------------------------------------------------
SOFTMAX = {0: 0.700, 1: 0.697, 2: 0.712, 3: 0.726, 4: 0.720}
GAIN = {0: 0.011, 1: 0.013, 2: 0.006, 3: 0.012}  # a true +1 pt (seed sd about 0.3 pt)


def test_one_missing_seed_keeps_the_pairing(tmp_path: Path) -> None:
    """Scale's seed 4 is missing (not run, or finished without a value): the former rule fell back to Welch over
    all runs, p = 0.37 "no significant difference"; paired on the 4 shared seeds, p = 0.007."""
    scale = {s: SOFTMAX[s] + GAIN[s] for s in GAIN}
    xs, ys = list(scale.values()), [SOFTMAX[s] for s in GAIN]
    assert scipy_stats.ttest_ind(xs, list(SOFTMAX.values()), equal_var=False).pvalue == pytest.approx(0.370, abs=5e-4)
    paired_p = scipy_stats.ttest_rel(xs, ys).pvalue
    assert paired_p == pytest.approx(0.0066, abs=5e-5)
    for missing in ("absent", "no value"):
        runs = [{"normalization": "softmax", "seed": s, FINAL_ACC1: v} for s, v in SOFTMAX.items()]
        runs += [{"normalization": "scale", "seed": s, FINAL_ACC1: v} for s, v in scale.items()]
        if missing == "no value":  # finished, but its metric is NaN (the record keeps it as null)
            runs.append({"normalization": "scale", "seed": 4, FINAL_ACC1: float("nan")})
        diff = compare.difference(
            [r for r in runs if r["normalization"] == "scale"],
            [r for r in runs if r["normalization"] == "softmax"],
            FINAL_ACC1,
        )
        assert diff.method == "paired" and diff.seeds == (0, 1, 2, 3)
        assert diff.p_value == pytest.approx(paired_p, rel=1e-9)
        assert diff.dropped == (
            ("seed 4: only the reference",)
            if missing == "absent"
            else ("seed 4: only the reference", "seed 4: no value")
        )
        md = report_md(write_runs(tmp_path / missing, runs), tmp_path / missing)
        [row] = rows_of(family_section(md, "normalization"))
        assert row[2] == "4 pairs" and row[-1] == "normalization=scale better"
        assert row[9] == "0.007 (0.007)" and "left out: seed 4: only the reference" in row[10]


# ---- best-on-test describes, never decides ---------------------------------------------------------------------------
def test_best_on_test_never_decides(tmp_path: Path) -> None:
    """Scale's accuracy only jumps more between epochs: its best epoch is higher, its final accuracy is not. The
    verdict and the claim follow the final top-1; best top-1 is in the table, labelled, without a verdict."""
    runs = []
    for s in range(5):
        base = 0.70 + 0.01 * s
        runs.append(
            {"normalization": "softmax", "seed": s, FINAL_ACC1: base + 0.001 * (s % 2), BEST_ACC1: base + 0.003}
        )
        runs.append({"normalization": "scale", "seed": s, FINAL_ACC1: base - 0.001 * (s % 3), BEST_ACC1: base + 0.012})
    md = report_md(write_runs(tmp_path / "jumpy", runs), tmp_path)
    section = family_section(md, "normalization")
    [final] = rows_of(section)
    [best] = rows_of(section, "best top-1 (optimistic)")
    assert best[3] == "+0.90" and best[-1] == "describes only (selects on the test split)"
    assert final[-1] != "normalization=scale better"
    assert "**Decided on** final top-1" in md
    scale_claim = md.split("| 2. Replacing softmax")[1].splitlines()[0]
    assert "| supported |" not in scale_claim and "final top-1" in scale_claim


def test_a_held_out_validation_split_decides_on_the_selected_test_top1(tmp_path: Path) -> None:
    runs = [
        {
            "normalization": n,
            "seed": s,
            FINAL_ACC1: 0.70,
            SELECTED_ACC1: 0.70 + (0.01 if n == "scale" else 0) + 0.001 * s * (1 if n == "scale" else 2),
        }
        for n in ("softmax", "scale")
        for s in range(3)
    ]
    md = report_md(write_runs(tmp_path / "val", runs), tmp_path)
    assert "**Decided on** test top-1 of the checkpoint chosen on the held-out validation split" in md
    [row] = rows_of(family_section(md, "normalization"), "test top-1 at the validation-selected epoch")
    assert row[3] == "+0.90"


# ---- Simpson's reversal: claim 1 within matched configurations -------------------------------------------------------
def test_claim_1_is_decided_within_configurations_not_pooled(tmp_path: Path) -> None:
    """Dot beats direction by 0.94 pt within every reduction; pooled over reductions (direction ran more seeds at
    the easy r1, dot more at the hard r8) the sign reverses. Claim 1 reads the within-configuration estimate."""
    noise = [0.0003, -0.0002, 0.0001, -0.0004, 0.0002, 0.0]
    runs = []
    for reduction, level, seeds in ((1, 0.80, {"dot": 3, "direction": 6}), (8, 0.70, {"dot": 6, "direction": 3})):
        for similarity, count in seeds.items():
            for s in range(count):
                acc = level + 0.003 * s + (0.0094 + noise[s] if similarity == "dot" else 0.0)
                runs.append({"similarity": similarity, "reduction": reduction, "seed": s, FINAL_ACC1: acc})
    pooled = {
        sim: statistics.fmean(r[FINAL_ACC1] for r in runs if r["similarity"] == sim) for sim in ("dot", "direction")
    }
    assert pooled["dot"] - pooled["direction"] < -0.02  # the pooled comparison is reversed
    sweep = collect.load_sweep(write_runs(tmp_path / "simpson", runs))
    result = {
        c.claim: c
        for c in claims.claims(sweep.runs, sweep.config_keys, compare.Families(sweep.finished, sweep.config_keys))
    }[claims.CLAIMS[0]]
    assert result.verdict == claims.SUPPORTED
    within = statistics.fmean(-(0.0094 + noise[s]) for s in range(3))  # direction - dot, seeds 0-2 in each
    assert f"{100 * within:+.2f} pt [" in result.evidence
    assert "over 2 configuration(s), 6 seed pair(s)" in result.evidence


# ---- divergence: claim 3 counts failures, per arm and level ----------------------------------------------------------
def test_claim_3_counts_diverged_runs_and_never_reads_robust(tmp_path: Path) -> None:
    """Scale diverged in 2 of 3 seeds at r8 and r16; its finished seeds are flat while softmax loses 1.75 pt over
    the range. The former claim read "scale 0.12 pt vs softmax 1.75 pt" spread, dropping the diverged runs."""
    runs = []
    for i, r in enumerate((1, 2, 4, 8, 16)):
        for s in range(3):
            seed = 0.004 * s + 0.0005 * ((s + i) % 2)
            runs.append(
                {"normalization": "softmax", "reduction": r, "seed": s, FINAL_ACC1: 0.80 - 0.4375 * i / 100 + seed}
            )
            diverged = r >= 8 and s < 2
            runs.append(
                {
                    "normalization": "scale",
                    "reduction": r,
                    "seed": s,
                    "status": "diverged" if diverged else "finished",
                    FINAL_ACC1: 0.80 + 0.0003 * i + seed + 0.001 * ((2 * s + i) % 3 - 1),
                }
            )
    sweep = collect.load_sweep(write_runs(tmp_path / "diverged", runs))
    result = {
        c.claim: c
        for c in claims.claims(sweep.runs, sweep.config_keys, compare.Families(sweep.finished, sweep.config_keys))
    }[claims.CLAIMS[2]]
    assert result.verdict != claims.SUPPORTED
    assert (
        "failed or diverged: scale r1 0/3 r2 0/3 r4 0/3 r8 2/3 r16 2/3, softmax r1 0/3 r2 0/3 r4 0/3 r8 0/3 "
        "r16 0/3" in result.evidence
    )
    fisher = scipy_stats.fisher_exact([[4, 11], [0, 15]], alternative="greater").pvalue
    assert f"scale failed 4/15, softmax 0/15 (Fisher p={fisher:.3f}" in result.evidence
    assert "interaction F(4, " in result.evidence and "range of mean" not in result.evidence
    # Without the divergences, the same accuracies make scale robust against softmax's loss.
    kept = [dict(r, status="finished") for r in runs]
    flat = collect.load_sweep(write_runs(tmp_path / "flat", kept))
    again = {
        c.claim: c
        for c in claims.claims(flat.runs, flat.config_keys, compare.Families(flat.finished, flat.config_keys))
    }[claims.CLAIMS[2]]
    assert again.verdict == claims.SUPPORTED


# ---- one family, one size, both sections -----------------------------------------------------------------------------
def test_the_comparisons_and_the_claims_read_one_family(tmp_path: Path) -> None:
    """Three reductions: the normalization family is the three scale/softmax tests, Holm over 3, in the
    comparisons section and in claim 2's count (formerly: Holm over 1 in one, "Holm over k" counting tests never
    made in the other)."""
    rng = np.random.default_rng(7)
    runs = []
    for r, gain in ((1, 0.012), (2, 0.001), (4, 0.009)):
        for s in range(4):
            base = 0.75 + 0.01 * rng.standard_normal()
            runs.append({"normalization": "softmax", "reduction": r, "seed": s, FINAL_ACC1: base})
            runs.append(
                {
                    "normalization": "scale",
                    "reduction": r,
                    "seed": s,
                    FINAL_ACC1: base + gain + 0.002 * rng.standard_normal(),
                }
            )
    md = report_md(write_runs(tmp_path / "three", runs), tmp_path)
    section = family_section(md, "normalization")
    assert section.startswith(" softmax: one family of 3 test(s) on final top-1 over 3 comparison(s), Holm")
    rows = rows_of(section)
    better = sum(row[-1] == "normalization=scale better" for row in rows)
    raw = [float(row[10].split(" (")[0].replace("<", "")) for row in rows]  # reduction | normalization | ...
    assert better >= 1 and len(raw) == 3
    claim = md.split("| 2. Replacing softmax")[1].splitlines()[0]
    assert (
        f"(3, 3 tested): scale better in {better} of 3 after Holm over the normalization family of 3 test(s)" in claim
    )
    sweep = collect.load_sweep(tmp_path / "three")
    families = compare.Families(sweep.finished, sweep.config_keys)
    shown = render.comparisons(sweep, None, families)[0][0]
    assert shown is families.get("normalization", reference="softmax")  # the very object the claims read


# ---- the seed is the unit: two sources of one configuration ----------------------------------------------------------
def test_one_configuration_in_two_sources_counts_each_seed_once(tmp_path: Path, capsys) -> None:
    """`nlbench report sweepA sweepB` with one configuration in both: n stayed 2 (not 4), the test stays paired, the
    interval does not shrink, and the report says how many runs it merged."""
    runs = [
        {"normalization": n, "seed": s, FINAL_ACC1: v + (0.01 * (s + 1) if n == "scale" else 0.0)}
        for n in ("softmax", "scale")
        for s, v in ((0, 0.70), (1, 0.74), (2, 0.71))
    ]
    a, b = write_runs(tmp_path / "a", runs), write_runs(tmp_path / "b", runs)
    alone = family_section(report_md(a, tmp_path / "alone"), "normalization")
    md = report_md([a, b], tmp_path / "both")
    assert "4 merged" not in md and "**Merged** 6 duplicate run(s)" in md
    assert "6 duplicate run(s) merged" in capsys.readouterr().out
    assert rows_of(family_section(md, "normalization")) == rows_of(alone)
    assert re.search(r"^\| scale \| 3 \| ", md, re.M) and re.search(r"^\| softmax \| 3 \| ", md, re.M)
    sweep = collect.load_sweep(a, b)
    assert len(sweep.runs) == 6 and len(sweep.merged) == 6


# ---- what is stated: intervals in [0, 100], chance, the recipe -------------------------------------------------------
def test_accuracy_intervals_stay_within_0_and_100(tmp_path: Path) -> None:
    runs = [{"normalization": "softmax", "seed": s, FINAL_ACC1: v} for s, v in ((0, 0.05), (1, 0.30))]
    runs += [{"normalization": "scale", "seed": s, FINAL_ACC1: v} for s, v in ((0, 0.60), (1, 0.99))]
    md = report_md(write_runs(tmp_path / "wide", runs), tmp_path)
    est = stats.estimate([0.05, 0.30], bounds=(0.0, 1.0))
    assert est.low == 0.0 < est.mean  # t says about -0.76: the mean of accuracies cannot be negative
    table = md.split("## Every configuration")[1]
    assert f"| softmax | 2 | 82.50 ± 17.68 | [{100 * (1 - est.high):.2f}, 100.00] |" in table
    assert "| scale | 2 | 20.50 ± 27.58 | [0.00, " in table
    assert "110.50" not in md


def test_runs_at_chance_are_flagged(tmp_path: Path) -> None:
    runs = [
        {"normalization": n, "seed": s, "classes": 10, FINAL_ACC1: 0.12 if n == "scale" else 0.50 + 0.01 * s}
        for n in ("softmax", "scale")
        for s in range(3)
    ]
    md = report_md(write_runs(tmp_path / "chance", runs), tmp_path)
    assert "**At chance** 3 finished run(s) below 1.5 × chance top-1 (1 / classes)" in md
    table = md.split("## Every configuration")[1]
    assert "| at chance |" in table and re.search(r"^\| scale \| 3 \|.*\| 3 \|$", table, re.M)


def test_the_recipe_states_every_option_that_shapes_training(tmp_path: Path) -> None:
    """limit_train_batches and limit_val_batches (and the rest of the recipe) in report.md, report.html and the
    sweep's results.csv."""
    from nlbench.sweep.spec import spec_from_dict
    from nlbench.sweep.table import write_results

    root = tmp_path / "sweep"
    spec = spec_from_dict(
        {
            "name": "recipe",
            "base": "experiments/demo.yaml",
            "axes": {"model.backbone.nl.normalization": ["softmax", "scale"], "seed_everything": [0, 1, 2]},
        },
        root=REPO,
        output_dir=root,
    )
    runs = spec.expand()
    config = {
        "model.optimizer.class_path": "torch.optim.SGD",
        "model.optimizer.init_args.lr": 0.2,
        "model.optimizer.init_args.momentum": 0.9,
        "model.optimizer.init_args.weight_decay": 5e-4,
        "trainer.max_epochs": 4,
        "trainer.limit_train_batches": 2,
        "trainer.limit_val_batches": 1,
        "data.init_args.batch_size": 16,
        "data.init_args.val_split": 0,
        "trainer.precision": "32-true",
    }
    for i, point in enumerate(runs):
        norm, seed = point.params["model.backbone.nl.normalization"], point.params["seed_everything"]
        write_record(
            root / "runs" / point.run_id,
            RunRecord(
                status="finished",
                run_name=point.run_id,
                hparams={"normalization": norm, "seed": seed},
                metrics={FINAL_ACC1: 0.5 + 0.01 * i},
                config=config,
            ),
        )
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec.as_dict(), sort_keys=False))
    write_results(spec, runs)
    with open(root / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert {row["limit_train_batches"] for row in table} == {"2"}
    assert {row["limit_val_batches"] for row in table} == {"1"}
    assert {row["optimizer"] for row in table} == {"SGD"} and {row["weight_decay"] for row in table} == {"0.0005"}
    out = tmp_path / "out"
    assert report_main([str(root), "--out", str(out)]) == 0
    for page in ((out / "report.md").read_text(), (out / "report.html").read_text()):
        recipe = page.split("Recipe")[1].splitlines()[0]
        for text in (
            "optimizer=SGD",
            "lr=0.2",
            "momentum=0.9",
            "max_epochs=4",
            "limit_train_batches=2",
            "limit_val_batches=1",
            "batch_size=16",
            "val_split=0",
            "subset=all",
            "precision=32-true",
        ):
            assert text in recipe, text


# ---- verdicts: equivalence and --margin ------------------------------------------------------------------------------
def test_equivalence_needs_tost_within_the_margin(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    runs = []
    for s in range(8):
        base = 0.70 + 0.01 * rng.standard_normal()
        runs.append({"normalization": "softmax", "seed": s, FINAL_ACC1: base})
        runs.append({"normalization": "scale", "seed": s, FINAL_ACC1: base + 0.0005 + 0.0008 * rng.standard_normal()})
    root = write_runs(tmp_path / "same", runs)
    [row] = rows_of(family_section(report_md(root, tmp_path / "m"), "normalization"))
    assert row[-1] == "equivalent within ±0.5 pt"
    [row] = rows_of(family_section(report_md(root, tmp_path / "n", "--margin", "0.05"), "normalization"))
    assert row[-1].startswith("inconclusive (n=8 pairs, [")
    assert report_main([str(root), "--out", str(tmp_path / "x"), "--margin", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--margin -1: expected a difference in percentage points" in err


# ---- power: in the report, and from a pilot before a sweep -----------------------------------------------------------
def test_power_in_the_report_and_from_a_pilot(tmp_path: Path, capsys) -> None:
    from statsmodels.stats.power import TTestPower

    from nlbench.sweep_command import main as sweep_main

    rng = np.random.default_rng(11)
    runs = []
    for s in range(4):
        base = 0.70 + 0.01 * rng.standard_normal()
        runs.append({"normalization": "softmax", "seed": s, FINAL_ACC1: base})
        runs.append({"normalization": "scale", "seed": s, FINAL_ACC1: base + 0.004 * rng.standard_normal()})
    pilot = write_runs(tmp_path / "pilot", runs)
    d = [b[FINAL_ACC1] - a[FINAL_ACC1] for a, b in zip(runs[::2], runs[1::2])]
    sd = statistics.stdev(d)
    [row] = rows_of(family_section(report_md(pilot, tmp_path), "normalization"))
    detect = TTestPower().solve_power(nobs=4, alpha=0.05, power=0.8) * sd
    needed = next(n for n in range(3, 1000) if TTestPower().power(0.005 / sd, n, 0.05) >= 0.8)
    assert row[7:9] == [f"{100 * detect:.2f}", str(needed)]
    # The detectable effect has 80% power, also at small levels, where statsmodels' solve_power returns a
    # non-solution (n=4, alpha=0.005: power 0.52) without a word.
    for n, alpha in ((4, 0.005), (5, 0.0005), (3, 0.05), (10, 0.005)):
        effect, critical = stats.detectable_effect(n, None, alpha), scipy_stats.t.ppf(1 - alpha / 2, n - 1)
        power = scipy_stats.nct.sf(critical, n - 1, effect * math.sqrt(n))  # the upper tail: the lower one is ~0
        assert power == pytest.approx(0.8, abs=1e-6)
    # A difference far below the noise needs more seeds than anyone runs: said, not guessed.
    assert stats.seeds_needed(0.02, 0.0005) is None and stats.seeds_needed(0.0001, 0.005) == stats.MIN_SEEDS
    # The demo sweep plans 2 seeds, one comparison of normalization: what could it detect?
    assert (
        sweep_main(
            [
                "--config",
                str(REPO / "experiments" / "sweeps" / "demo.yaml"),
                "--dry-run",
                "--pilot",
                str(pilot),
                "--output_dir",
                str(tmp_path / "planned"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("normalization"))
    detect2 = TTestPower().solve_power(nobs=2, alpha=0.05, power=0.8) * sd
    assert line.split() == [
        "normalization",
        "softmax",
        f"{100 * sd:.2f}",
        "2",
        "1",
        f"{100 * detect2:.2f}",
        str(needed),
    ]
    assert sweep_main(["--config", str(REPO / "experiments" / "sweeps" / "demo.yaml"), "--pilot", str(pilot)]) == 2
    assert "add --dry-run" in capsys.readouterr().err
    assert (
        sweep_main(
            [
                "--config",
                str(REPO / "experiments" / "sweeps" / "demo.yaml"),
                "--dry-run",
                "--pilot",
                str(tmp_path / "nope"),
            ]
        )
        == 2
    )
    assert "--pilot" in capsys.readouterr().err and math.isfinite(sd)


def test_batched_differences_equal_one_test_per_comparison() -> None:
    """compare() tests comparisons of one shape in one vectorised call (stats.row picks each): the same numbers as
    one call per comparison, for paired and Welch, several seed counts, a missing value and zero variance."""
    import dataclasses as dc

    from nlbench.report import compare as cmp
    from nlbench.report import stats as st

    rng = np.random.default_rng(0)

    def runs(seeds: list[int], offset: float, flat: bool = False) -> list[dict]:
        return [{"seed": s, FINAL_ACC1: 0.5 if flat else 0.5 + offset + 0.01 * rng.standard_normal()} for s in seeds]

    pairs = [
        (runs([0, 1, 2], 0.01), runs([0, 1, 2], 0.0)),
        (runs([0, 1, 2, 3, 4], 0.0), runs([0, 1, 2, 3, 4], 0.0)),
        (runs([0, 1, 2], 0.02), runs([0, 1, 2], 0.0)),
        (runs([0, 1], 0.0), runs([5, 6, 7], 0.0)),  # no shared seed: Welch
        (runs([0, 1, 2], 0.0, flat=True), runs([0, 1, 2], 0.0, flat=True)),  # zero variance
        ([*runs([0, 1], 0.01), {"seed": 2, FINAL_ACC1: None}], runs([0, 1, 2], 0.0)),  # a seed without a value
    ]
    batched = cmp.differences(pairs, FINAL_ACC1)
    for (treatment, reference), got in zip(pairs, batched):
        method, xs, ys, seeds, dropped = cmp._pairing(treatment, reference, FINAL_ACC1)
        test = st.paired_test if method == "paired" else st.welch_test
        alone = test(np.array(xs), np.array(ys))
        assert got.method == method and got.seeds == seeds and got.dropped == dropped
        for f in dc.fields(st.Tested):
            a, b = getattr(got.tested, f.name), getattr(alone, f.name)
            if f.name in ("method", "undetermined"):
                assert str(a) == str(b), f.name
            else:
                np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), err_msg=f.name)
