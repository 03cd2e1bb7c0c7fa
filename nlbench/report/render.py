"""Assemble the report once as sections of text, tables and figures, then write it as Markdown (PNGs beside it)
and as one self-contained HTML file (PNGs embedded as base64 data URIs, no external resources)."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from nlbench import results
from nlbench.io import atomic_write_text
from nlbench.report import plots, stats, style
from nlbench.report.claims import claims as paper_claims
from nlbench.report.collect import SEED_KEYS, Benchmark, Sweep, config_of, summarize, top1_error
from nlbench.report.compare import BEST_NOTE, METRIC_LABELS, Families, Family, reference_of
from nlbench.schema import BEST_ACC1, BEST_ACC5, FINAL_ACC1, IMAGES_PER_S, NEAR_CHANCE, RECIPE, SELECTED_ACC1

# Comparisons shown one per row, per compared key; the rest are counted by verdict (a 2,000-configuration sweep
# would otherwise give a table nobody reads, and bootstrap intervals that take longer than the report should).
MAX_COMPARISON_ROWS = 40


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    def to_markdown(self) -> str:
        lines = [_md_row(self.header), _md_row(["---"] * len(self.header))]
        return "\n".join(lines + [_md_row(row) for row in self.rows])


@dataclass
class Image:
    name: str  # file name of the PNG, also its anchor
    png: bytes
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Image] = field(default_factory=list)


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    images: list[Path]


def build_report(
    sweep: Sweep,
    benchmarks: Sequence[Benchmark] = (),
    compare: dict[str, str | None] | None = None,
    margin: float = stats.DEFAULT_MARGIN,
) -> tuple[str, list[Section]]:
    """The report's title and sections, independent of the output format; each benchmark file adds a section.
    ``compare``: key -> reference (None: the default) of the comparisons to show; default every varying key.
    ``margin``: the equivalence margin (accuracy units; 0.005 = 0.5 pt), also the difference the seed counts are
    given for. Text is drawn with matplotlib's math parsing off: a received value such as ``$\\frac{$`` is plain
    text."""
    with matplotlib.rc_context({"text.parse_math": False}):
        return _build_report(sweep, benchmarks, compare, margin)


def _build_report(
    sweep: Sweep, benchmarks: Sequence[Benchmark], compare: dict[str, str | None] | None, margin: float
) -> tuple[str, list[Section]]:
    headline_title, headline = plots.headline(sweep)
    where, caveat = measured_where(sweep)
    families = Families(sweep.finished, sweep.config_keys, margin)
    sections = [
        _header(sweep, families),
        _figure_section(
            headline_title,
            headline,
            "error_vs_reduction.png" if plots.reduction_is_swept(sweep) else "error_by_configuration.png",
            "Top-1 error in % = 100 (1 - accuracy) on the evaluation split, mean ± std over seeds (error bars; none "
            f"for a single seed). *final*: the last epoch. {BEST_NOTE}. Failed, diverged and running runs are "
            "excluded." + plots.capped_note(sweep),
            missing="No finished run: nothing to plot.",
        ),
        Section("Comparisons", comparison_blocks(sweep, compare, families)),
        Section("The paper's claims", [claims_intro(families), claims_table(sweep, families)]),
        Section(
            "Every configuration",
            [
                f"Errors: mean ± std over seeds; the 95% interval of the {families.label} error is Student's t over "
                "seeds, clipped to [0, 100] (*best* selects on the test split, see above). Each configuration's "
                "training recipe is in its row when it varies, else under **Recipe** above."
                + (
                    f" *at chance*: finished runs below {NEAR_CHANCE:g} × chance top-1 (1 / classes)."
                    if sweep.at_chance
                    else ""
                ),
                configuration_table(sweep, families),
            ],
        ),
        _figure_section(
            "Learning curves",
            plots.learning_curves(sweep),
            "learning_curves.png",
            "Validation top-1 error per epoch, mean over seeds (band: ± std), from each run's metrics.csv."
            + plots.capped_note(sweep),
            missing="No per-epoch metrics of finished runs found (runs/<run_id>/metrics.csv).",
        ),
        _figure_section(
            "Throughput",
            plots.throughput_and_params(sweep, where),
            "throughput_params.png",
            f"Training images/s as measured by the training loop (mean ± std over seeds). Measured on: {where}."
            + plots.capped_note(sweep)
            + (f" **Caveat:** {caveat}" if caveat else "")
            + (
                ""
                if plots.params_differ(summarize(sweep))
                else " The NL blocks have the same parameter count in every configuration (see the table)."
            ),
            missing="No throughput recorded.",
        ),
    ]
    if sweep.running:
        sections.append(
            Section(
                "Runs still running",
                [
                    "Still training when this report was made: left out of the statistics until they end.",
                    _run_table(sweep, sweep.running),
                ],
            )
        )
    if sweep.unreadable:
        sections.append(
            Section(
                "Unreadable runs",
                [
                    "Runs or files that could not be read (not UTF-8, not valid YAML or JSON, not nlbench's "
                    "format): left out of everything else; the error names the file.",
                    _run_table(sweep, sweep.unreadable),
                ],
            )
        )
    unreadable = {id(run) for run in sweep.unreadable}  # a set: 100k runs, one real, must not take n² compares
    unfinished = [run for run in sweep.unfinished if id(run) not in unreadable]
    if unfinished:
        sections.append(
            Section(
                "Runs left out of the statistics",
                [
                    "Failed, diverged, interrupted or not yet started runs: counted in the configuration table, never "
                    "averaged.",
                    _run_table(sweep, unfinished),
                ],
            )
        )
    names: set[str] = set()
    sections += [benchmark_section(bench, _unique_png_name(bench, names)) for bench in benchmarks]
    return f"nlbench report: {sweep.name}", sections


def _figure_section(title: str, figure: Figure | None, name: str, text: str, *, missing: str) -> Section:
    if figure is None:
        return Section(title, [missing])
    return Section(title, [text, Image(name, plots.to_png(figure), title)])


def write_report(
    sweep: Sweep,
    out_dir: str | os.PathLike[str],
    *,
    benchmarks: Sequence[Benchmark] = (),
    compare: dict[str, str | None] | None = None,
    margin: float = stats.DEFAULT_MARGIN,
) -> ReportFiles:
    """Write report.md, report.html and the figures as PNG files into ``out_dir`` (created if needed), with a
    section per training benchmark file."""
    title, sections = build_report(sweep, benchmarks, compare, margin)
    out = Path(out_dir)  # created only once everything is drawn: a failure leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for section in sections:
        for block in section.blocks:
            if isinstance(block, Image):
                (out / block.name).write_bytes(block.png)
                images.append(out / block.name)
    markdown, page = out / "report.md", out / "report.html"
    atomic_write_text(markdown, to_markdown(title, sections))
    atomic_write_text(page, to_html(title, sections))
    return ReportFiles(markdown=markdown, html=page, images=images)


# --------------------------------------------------------------------------------------------------------------
# Content


def measured_where(sweep: Sweep) -> tuple[str, str | None]:
    """Where the finished runs' throughput was measured (device, threads, host as the runs recorded them) and a
    caveat when runs overlapped in time on the machine (from each run's end time and duration) or that is unknown."""
    runs = sweep.finished
    parts = []
    for key, label in (("device", "device"), ("threads", "threads"), ("host", "host")):
        values = sorted({str(run[key]) for run in runs if run.get(key) is not None})
        parts.append(f"{label} {', '.join(values)}" if values else f"{label} not recorded")
    intervals = []
    for run in runs:
        try:
            end = datetime.fromisoformat(str(run.get("written_at"))).timestamp()
            intervals.append((end - float(run["time_s"]), end))
        except (TypeError, ValueError, KeyError):
            pass
    concurrent = max((sum(start < e and s < end for s, e in intervals) for start, end in intervals), default=0)
    caveat = "other processes on the machine are not recorded; compare images/s only between runs of one sweep."
    if len(intervals) < len(runs):
        parts.append("overlap unknown (runs without start/end times)")
        caveat = "whether runs shared the machine is unknown for some runs; " + caveat
    elif concurrent > 1:
        parts.append(f"up to {concurrent} runs at the same time")
        caveat = (
            f"up to {concurrent} runs trained at the same time and shared the machine, so their images/s are "
            "lower than a run alone would get; " + caveat
        )
    else:
        parts.append("one run at a time")
    return "; ".join(parts), caveat


def comparisons(
    sweep: Sweep, compare: dict[str, str | None] | None = None, families: Families | None = None
) -> list[tuple[Family, Family]]:
    """Every comparison family the report shows: along each key of ``compare`` (default: every varying key), each
    value against its reference over the finished runs, as (deciding-metric family, best top-1 description)."""
    families = families or Families(sweep.finished, sweep.config_keys)
    wanted = compare if compare else dict.fromkeys(sweep.config_keys)
    found = [
        (families.get(key, reference), families.get(key, reference, BEST_ACC1)) for key, reference in wanted.items()
    ]
    return [(deciding, best) for deciding, best in found if deciding.comparisons]


def comparison_blocks(
    sweep: Sweep, compare: dict[str, str | None] | None = None, families: Families | None = None
) -> list[str | Table]:
    """Per compared key, one family: treatment - reference in every configuration of the other keys that ran both,
    on the deciding metric (verdicts) and best top-1 (described), with intervals, P(better), power and verdict."""
    families = families or Families(sweep.finished, sweep.config_keys)
    found = comparisons(sweep, compare, families)
    if not found:
        return ["No key takes two values within otherwise equal configurations: nothing to compare."]
    m = 100 * families.margin
    blocks: list[str | Table] = [
        "Differences of top-1 accuracy in percentage points (treatment − reference; positive: the treatment is "
        f"better), decided on **{families.label}**. Paired on the seeds both arms ran (seeds left out of the "
        "pairing are listed under *test*); Welch's test only when they share no seed. Each compared key is **one "
        "family** over all the configurations of the other keys: Holm over the tests made (*p (Holm)*; its size is "
        "stated), the same results the claims below read. *better*: Holm-adjusted p < 0.05; *equivalent within "
        f"±{m:g} pt*: Holm-adjusted TOST p < 0.05 (`--margin`); otherwise *inconclusive*, with its n and 95% t "
        f"interval; *undetermined* (no test made) with fewer than {stats.MIN_SEEDS} seeds an arm, zero variance or "
        f"missing values. *BCa bootstrap*: only from {stats.BOOTSTRAP_MIN_SEEDS} seeds an arm (below it covers far "
        "less than 95%: the t interval is the interval). *P(better)*: the share of paired seeds the treatment wins "
        f"(ties half), Wilson 95% interval, from {stats.P_BETTER_MIN_PAIRS} pairs. *detectable*: the smallest "
        "difference this comparison detects with 80% power at Holm's first level 0.05 / family size, from its seeds "
        f"and their observed standard deviation; *seeds for ±{m:g}*: the seeds (pairs, or runs an arm) a difference "
        "of the margin needs there. Pick keys and references with `--compare KEY[=REFERENCE]`. "
        f"{BEST_NOTE}."
    ]
    for deciding, best in found:
        blocks += _family_blocks(deciding, best, families)
    return blocks


def _family_blocks(family: Family, best: Family, families: Families) -> list[str | Table]:
    key, others = family.key, list(family.others)
    counts = family.counts()
    words = {
        stats.BETTER: "better",
        stats.WORSE: "worse",
        stats.EQUIVALENT: "equivalent",
        stats.INCONCLUSIVE: "inconclusive",
        stats.UNDETERMINED: "undetermined",
    }
    tally = ", ".join(f"{n} {words[code]}" for code, n in counts.items())
    blocks: list[str | Table] = [
        f"**{key}** against {style.label(key, family.reference)}: one family of {family.size} test(s) on "
        f"{METRIC_LABELS.get(family.metric, family.metric)} over {len(family.comparisons)} comparison(s), Holm; "
        f"{tally}."
    ]
    m = 100 * family.margin
    alpha = stats.ALPHA / max(1, family.size)
    table = Table(
        [
            *others,
            key,
            "metric",
            "n",
            "difference (pt)",
            "95% interval",
            "BCa bootstrap",
            "P(better) [95%]",
            "detectable (pt)",
            f"seeds for ±{m:g}",
            "p (Holm)",
            "test",
            "verdict",
        ],
        [],
    )
    described = {(c.treatment, tuple(map(str, c.context.values()))): c for c in best.comparisons}
    for c in family.comparisons[:MAX_COMPARISON_ROWS]:
        d = c.diff
        context = [_text(c.context.get(k)) for k in others]
        detectable = d.detectable(alpha)
        seeds = d.seeds_for(family.margin, alpha)
        boot = d.bootstrap
        share = d.p_improvement
        p = "–" if d.p_value is None else f"{_p(d.p_value)} ({_p(c.p_adjusted)})"
        table.rows.append(
            [
                *context,
                style.label(key, c.treatment),
                METRIC_LABELS.get(d.metric, d.metric),
                d.n_label,
                _diff(d.mean),
                _interval(d.low, d.high),
                "–" if boot is None else _interval(*boot),
                "–" if share is None else f"{share.value:.2f} [{share.low:.2f}, {share.high:.2f}]",
                "–" if detectable is None else f"{100 * detectable:.2f}",
                str(seeds) if seeds is not None else "–" if detectable is None else f"> {stats.MAX_SEEDS:,}",
                p,
                _test(d),
                c.verdict,
            ]
        )
        optimistic = described.get((c.treatment, tuple(map(str, c.context.values()))))
        if optimistic is not None:
            o = optimistic.diff
            table.rows.append(
                [
                    *context,
                    style.label(key, c.treatment),
                    METRIC_LABELS[BEST_ACC1],
                    o.n_label,
                    _diff(o.mean),
                    _interval(o.low, o.high),
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    _test(o),
                    optimistic.verdict,
                ]
            )
    blocks.append(table)
    if len(family.comparisons) > MAX_COMPARISON_ROWS:
        rest = family.counts(family.comparisons[MAX_COMPARISON_ROWS:])
        blocks.append(
            f"{len(family.comparisons) - MAX_COMPARISON_ROWS} more comparisons along {key} not shown (same "
            "family): " + ", ".join(f"{n} {words[code]}" for code, n in rest.items()) + "."
        )
    return blocks


def _test(d: Any) -> str:
    text = d.method + ("" if d.df is None or d.df <= 0 else f", df={d.df:.1f}")
    if d.dropped:
        text += "; left out: " + ", ".join(d.dropped)
    return text


def _diff(value: float | None) -> str:
    return "–" if value is None else _signed(100 * value)


def _interval(low: float | None, high: float | None) -> str:
    return "–" if low is None or high is None else f"[{_signed(100 * low)}, {_signed(100 * high)}]"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float, digits: int = 2) -> str:
    """``+0.12`` / ``-0.12``; a value that rounds to zero is ``0.00``, never ``-0.00``."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def claims_intro(families: Families) -> str:
    return (
        f"Each claim is decided by a test of the claim on **{families.label}** (docs/statistics.md): "
        "*supported* or *contradicted* at level 0.05 within the claim's own family (Holm over the tests it "
        f"makes), *not supported: no effect beyond the margin* when TOST puts the effect within "
        f"±{100 * families.margin:g} pt, *inconclusive* otherwise, *undetermined* when the data allows no test "
        "(too few seeds, zero variance). Per-configuration counts read the comparison families above."
    )


def claims_table(sweep: Sweep, families: Families | None = None) -> Table:
    """Each of the paper's four claims, its verdict and the evidence."""
    families = families or Families(sweep.finished, sweep.config_keys)
    found = paper_claims(sweep.runs, sweep.config_keys, families)
    return Table(["claim (paper's abstract)", "verdict", "evidence"], [[c.claim, c.verdict, c.evidence] for c in found])


# What an unset recipe option means (None in the resolved config).
RECIPE_UNSET = {
    "limit_train_batches": "all",
    "limit_val_batches": "all",
    "gradient_clip_val": "none",
    "subset": "all",
    "scheduler": "none",
}
DECIDES = {
    FINAL_ACC1: "final top-1 (the last epoch; no epoch is chosen on the test split)",
    SELECTED_ACC1: "test top-1 of the checkpoint chosen on the held-out validation split (data.val_split > 0)",
}


def _header(sweep: Sweep, families: Families | None = None) -> Section:
    families = families or Families(sweep.finished, sweep.config_keys)
    counts: dict[str, int] = {}
    for run in sweep.runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    order = sorted(counts, key=lambda name: (name != "finished", name))
    status = ", ".join(f"{counts[name]} {name}" for name in order)
    fixed = _fixed_settings(sweep)
    seeds = sorted({str(run["seed"]) for run in sweep.runs if run.get("seed") is not None})
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"**Sweep** `{sweep.name}` from `{sweep.source}`",
        f"**Results written** {sweep.created or 'unknown'}; **report generated** {generated}",
        f"**Runs** {len(sweep.runs)} ({status})",
        "**Compared** "
        + (" × ".join(sweep.config_keys) or "nothing (a single configuration)")
        + (f"; **seeds** {', '.join(seeds)}" if seeds else ""),
        f"**Decided on** {DECIDES.get(families.metric, families.metric)}; *best* top-1 is shown, labelled "
        f"optimistic, and decides nothing; equivalence margin ±{100 * families.margin:g} pt",
    ]
    if sweep.merged:
        ids = ", ".join(str(run["run_id"]) for run in sweep.merged[:5]) + (" ..." if len(sweep.merged) > 5 else "")
        lines.append(
            f"**Merged** {len(sweep.merged)} duplicate run(s) of a configuration and seed already counted "
            f"(the same run read twice, or a rerun): each seed counts once, the finished (else newest) record "
            f"kept; merged: {ids}"
        )
    if sweep.at_chance:
        lines.append(
            f"**At chance** {len(sweep.at_chance)} finished run(s) below {NEAR_CHANCE:g} × chance top-1 "
            "(1 / classes): they learnt next to nothing, and comparisons of them say little (flagged in "
            "the configuration table)"
        )
    lines.append(_recipe_line(sweep))
    fixed = {key: value for key, value in fixed.items() if key not in RECIPE}
    if fixed:
        lines.append("**Fixed** " + ", ".join(f"{key}={_text(value)}" for key, value in fixed.items()))
    return Section("Summary", lines)


def _recipe_line(sweep: Sweep) -> str:
    """Every option that shapes training (:data:`nlbench.schema.RECIPE`): its one value, what unset means, or
    "varies" (then it is a compared key, in each configuration's row)."""
    known = [run for run in sweep.runs if run.get("status") not in ("unreadable", "new")]
    if not any(run.get(key) is not None for run in known for key in RECIPE):
        return "**Recipe** not recorded (runs written without their resolved config)"
    parts = []
    for key in RECIPE:
        values = {_text(run.get(key)) for run in known}
        if key in sweep.config_keys or len(values) > 1:
            parts.append(f"{key} varies")
            continue
        value = known[0].get(key) if known else None
        parts.append(f"{key}={RECIPE_UNSET.get(key, 'not recorded') if value is None else _text(value)}")
    return "**Recipe** (every configuration) " + ", ".join(parts)


def _fixed_settings(sweep: Sweep) -> dict[str, Any]:
    """Hyper-parameters with one value across all runs (what the sweep held constant)."""
    varying = set(sweep.config_keys) | SEED_KEYS | results.NOT_CONFIG
    fixed: dict[str, Any] = {}
    for run in sweep.runs:
        if run.get("status") in ("unreadable", "new"):
            continue
        for key, value in run.items():
            if key not in varying and value is not None:
                fixed.setdefault(key, value)
    known = [run for run in sweep.runs if run.get("status") not in ("unreadable", "new")]
    return {key: value for key, value in fixed.items() if all(run.get(key) == value for run in known)}


def configuration_table(sweep: Sweep, families: Families | None = None) -> Table:
    """One row per configuration: its values, n finished seeds, the deciding top-1 error (mean ± std, 95% t
    interval), best top-1/top-5 errors (optimistic), throughput and parameter counts, and (when any) how many of its
    runs are at chance, failed or diverged, or running."""
    families = families or Families(sweep.finished, sweep.config_keys)
    keys = sweep.config_keys
    rows = summarize(sweep)
    show_chance = any(row["n_chance"] for row in rows)
    show_unfinished = any(row["n_unfinished"] for row in rows)
    show_running = any(row["n_running"] for row in rows)
    label = "final top-1" if families.metric == FINAL_ACC1 else "val-selected test top-1"
    header = [
        *keys,
        "n",
        f"{label} err (%)",
        "95% interval",
        "best top-1 err (%, optimistic)",
        "best top-5 err (%)",
        "best epoch",
        "epochs",
        "images/s",
        "params",
        "NL params",
    ]
    if show_chance:
        header.append("at chance")
    if show_unfinished:
        header.append("failed/diverged")
    if show_running:
        header.append("running")
    table = Table(header, [])
    for row in rows:
        cells = [_text(row.get(key)) for key in keys]
        cells += [
            str(row["n"]),
            _error_pm(row, families.metric),
            _error_interval(row, families.metric),
            _error_pm(row, BEST_ACC1),
            _error_pm(row, BEST_ACC5),
            _pm(row["best_epoch_mean"], row["best_epoch_std"], digits=1),
            _pm(row["epochs_mean"], None, digits=0),
            _pm(row[f"{IMAGES_PER_S}_mean"], row[f"{IMAGES_PER_S}_std"], digits=0),
            _count(row["params_mean"]),
            _count(row["nl_params_mean"]),
        ]
        if show_chance:
            cells.append(str(row["n_chance"]))
        if show_unfinished:
            cells.append(str(row["n_unfinished"]))
        if show_running:
            cells.append(str(row["n_running"]))
        table.rows.append(cells)
    return table


def benchmark_section(bench: Benchmark, png_name: str) -> Section:
    """A training benchmark file: where and how it was measured, its figure, and its numbers side by side."""
    settings = [
        f"device {bench.device}" if bench.device else None,
        f"batch {bench.batch_size}" if bench.batch_size else None,
        None if bench.bf16 is None else f"bf16 autocast {'on' if bench.bf16 else 'off'}",
    ]
    text = (
        "Whole training steps (forward, backward, SGD step) measured by `nlbench bench train --grid` ("
        f"{', '.join(filter(None, settings)) or 'settings not recorded'}), read from `{bench.source}`. "
        "Peak memory: the most memory one forward + backward pass holds beyond what was allocated before it "
        "(activations, attention maps, gradients; on CPU from the profiler's allocation events)."
    )
    return Section(
        f"Training throughput benchmark ({bench.machine}, {bench.when})",
        [
            text,
            Image(
                png_name,
                plots.to_png(plots.training_benchmark(bench)),
                f"Training images/s and peak memory against the reduction ratio ({bench.machine})",
            ),
            benchmark_table(bench),
        ],
    )


def benchmark_table(bench: Benchmark) -> Table:
    """One row per backbone x reduction x heads, the normalisations side by side (images/s, then peak MiB), and
    each normalisation's speed-up over the reference one (:func:`nlbench.report.compare.reference_of`)."""
    normalizations = list(dict.fromkeys(record["normalization"] for record in bench.records))
    measured = {
        config_of(record, ("backbone", "reduction", "heads", "normalization")): record for record in bench.records
    }
    reference = reference_of("normalization", normalizations) if len(normalizations) > 1 else None
    treatments = [n for n in normalizations if reference is not None and n != reference]
    header = [
        "backbone",
        "r",
        "heads",
        *(f"{n} img/s" for n in normalizations),
        *(f"{n} peak MiB" for n in normalizations),
        *(f"{n} / {reference} img/s" for n in treatments),
    ]
    table = Table(header, [])
    configs = sorted(
        {config_of(record, ("backbone", "reduction", "heads")) for record in bench.records},
        key=lambda config: (bench.backbones.index(config[0]), *config[1:]),
    )
    for config in configs:
        records = {n: measured.get((*config, n)) for n in normalizations}
        cells = [_text(value) for value in config]
        for metric in ("images_per_s", "peak_mib"):
            cells += [_pm(None if rec is None else rec[metric], None, digits=0) for rec in records.values()]
        base = records.get(reference) if reference is not None else None
        for n in treatments:
            both = base is not None and records[n] is not None and base["images_per_s"] > 0
            cells.append(f"{records[n]['images_per_s'] / base['images_per_s']:.2f}×" if both else "–")
        table.rows.append(cells)
    return table


def _unique_png_name(bench: Benchmark, taken: set[str]) -> str:
    """``bench_<file stem>.png`` (e.g. bench_cpu.png), numbered when two benchmark files share a stem."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(bench.source).stem) or "train"
    name, k = f"bench_{stem}.png", 1
    while name in taken:
        k += 1
        name = f"bench_{stem}-{k}.png"
    taken.add(name)
    return name


def _run_table(sweep: Sweep, runs: Sequence[dict[str, Any]]) -> Table:
    keys = sweep.config_keys
    table = Table(["run_id", "status", "configuration", "seed", "error"], [])
    for run in runs:
        config = style.config_label(dict(zip(keys, config_of(run, keys))))
        table.rows.append([run["run_id"], run["status"], config, _text(run.get("seed")), _text(run.get("error"))])
    return table


def _error_pm(row: dict[str, Any], metric: str) -> str:
    std = row[f"{metric}_std"]
    return _pm(top1_error(row[f"{metric}_mean"]), None if std is None else 100.0 * std, digits=2)


def _error_interval(row: dict[str, Any], metric: str) -> str:
    low, high = row[f"{metric}_low"], row[f"{metric}_high"]
    return "–" if low is None else f"[{top1_error(high):.2f}, {top1_error(low):.2f}]"


def _pm(mean: float | None, std: float | None, *, digits: int) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _count(value: float | None) -> str:
    return "–" if value is None else f"{round(value):,}"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


# --------------------------------------------------------------------------------------------------------------
# Formats


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    """The report as Markdown. Markdown viewers render raw HTML, so ``<``, ``>`` and ``&`` of every text (received
    values: a method's name, an error, a sweep's name) are written as entities: a ``<script>`` reads as text."""
    out = [f"# {_md_escape(title)}", ""]
    for section in sections:
        out += [f"## {_md_escape(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(block.to_markdown())
            elif isinstance(block, Image):
                out.append(f"![{_md_escape(block.caption)}]({block.name})")
            else:
                # Header lines are separate paragraphs in Markdown; keep them on their own lines.
                out.append(_md_escape(block) + "  ")
            out.append("")
    return "\n".join(out)


def _md_escape(text: str) -> str:
    """Received text as literal Markdown: no HTML, and no link or image syntax (``[x](javascript:...)``)."""
    return html.escape(text, quote=False).replace("](", "]\\(")  # "[x](url)" needs "](": escaped, it is text


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md_escape(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def to_html(title: str, sections: Sequence[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode("ascii")
                body.append(
                    f'<figure id="{html.escape(block.name)}"><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(block.caption)}"><figcaption>{html.escape(block.caption)}</figcaption></figure>'
                )
            else:
                body.append(f"<p>{_inline_markdown(block)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _inline_markdown(text: str) -> str:
    """The little Markdown the report's paragraphs use (**bold**, *italic*, `code`), escaped, as HTML."""
    out, i = [], 0
    markers = (("**", "strong"), ("*", "em"), ("`", "code"))
    while i < len(text):
        for marker, tag in markers:
            end = text.find(marker, i + len(marker)) if text.startswith(marker, i) else -1
            if end > i:
                out.append(f"<{tag}>{html.escape(text[i + len(marker) : end])}</{tag}>")
                i = end + len(marker)
                break
        else:
            out.append(html.escape(text[i]))
            i += 1
    return "".join(out)
