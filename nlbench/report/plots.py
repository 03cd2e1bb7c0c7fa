"""The report's figures, drawn on plain ``matplotlib.figure.Figure`` objects with the Agg canvas.

No pyplot: figures hold no global state, so the report can run in threads or inside a notebook without touching
its backend. Every function returns None when the sweep has nothing to draw (e.g. no finished run).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from nlbench.limits import MAX_LABEL_CHARS, shorten
from nlbench.report import style
from nlbench.report.collect import (
    Benchmark,
    Sweep,
    config_of,
    group_runs,
    mean_curve,
    mean_std,
    summarize,
    top1_error,
)
from nlbench.schema import BEST_ACC1, FINAL_ACC1, IMAGES_PER_S

MARKERS, LINESTYLES = style.MARKERS, style.LINESTYLES
# Panels: the final epoch first (unbiased), then the best epoch, which selects on the test split (optimistic).
METRICS = {"final": FINAL_ACC1, "best (optimistic)": BEST_ACC1}


def config_label(config: Mapping[str, Any]) -> str:
    """:func:`nlbench.report.style.config_label` cut to :data:`nlbench.limits.MAX_LABEL_CHARS`: a received
    100k-character value (a method's name) would exhaust matplotlib's memory; the report's tables keep it whole."""
    return shorten(style.config_label(config))


def _label(key: str, value: Any) -> str:
    """:func:`nlbench.report.style.label`, cut as :func:`config_label` is."""
    return shorten(style.label(key, value))


# Per-configuration figures (one panel, point or bar per configuration) show at most this many configurations, the
# best first, with a note saying how many more the table holds: a 2,000-configuration report stays seconds long.
MAX_CONFIGS = 24


def to_png(fig: Figure, *, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def top_configurations(sweep: Sweep, keys: Sequence[str], limit: int = MAX_CONFIGS) -> set[tuple[Any, ...]] | None:
    """The values of ``keys`` of the ``limit`` configurations with the best mean best top-1 (None: all fit)."""
    rows = [row for row in summarize(sweep) if row["n"] > 0]
    configs: dict[tuple[Any, ...], float] = {}
    for row in rows:
        value = row[f"{BEST_ACC1}_mean"]
        config = config_of(row, keys)
        configs[config] = max(configs.get(config, -math.inf), -math.inf if value is None else value)
    if len(configs) <= limit:
        return None
    return set(sorted(configs, key=lambda c: -configs[c])[:limit])


def capped_note(sweep: Sweep, limit: int = MAX_CONFIGS) -> str:
    """The sentence under a capped per-configuration figure ('' when every configuration is drawn)."""
    n = len({config_of(row, sweep.config_keys) for row in summarize(sweep) if row["n"] > 0})
    if n <= limit:
        return ""
    return (
        f" Per-configuration figures show the {limit} configurations with the best mean best top-1 of {n}; the "
        "table below holds them all."
    )


def reduction_is_swept(sweep: Sweep) -> bool:
    """Whether the finished NL runs take more than one reduction ratio (the x axis of :func:`error_vs_reduction`)."""
    return (
        len(
            {
                run.get("reduction")
                for run in sweep.finished
                if run.get("normalization") != "none" and run.get("reduction") is not None
            }
        )
        > 1
    )


def headline(sweep: Sweep) -> tuple[str, Figure | None]:
    """The report's first figure and its title: error against the reduction ratio when the sweep varies it, else
    error per configuration (:func:`error_by_configuration`), so the figure never has an empty axis."""
    if reduction_is_swept(sweep):
        return "Top-1 error against the reduction ratio", error_vs_reduction(sweep)
    compared = " × ".join(sweep.config_keys) or "the configuration"
    return f"Top-1 error per {compared}", error_by_configuration(sweep)


def error_by_configuration(sweep: Sweep) -> Figure | None:
    """Top-1 error (%) mean +- std over seeds as points with error bars: panels final / best epoch, one x position
    per configuration without its normalization, the normalizations side by side at each position (softmax and
    scale in their colours, the baseline grey)."""
    rows = [row for row in summarize(sweep) if row["n"] > 0]
    if not rows:
        return None
    keys = sweep.config_keys
    x_keys = [key for key in keys if key != "normalization"]
    # Runs without an NL block are a horizontal band (their NL options mean nothing), unless they are all there is.
    baseline = [run for run in sweep.finished if run.get("normalization") == "none"]
    if len(baseline) < len(sweep.finished):
        rows = [row for row in rows if row.get("normalization") != "none"]
    else:
        baseline = []
    shown = top_configurations(sweep, x_keys)
    if shown is not None:
        rows = [row for row in rows if config_of(row, x_keys) in shown]
    colors = style.order(sweep.runs, "normalization")
    positions = list(dict.fromkeys(config_of(row, x_keys) for row in rows))
    normalizations = list(dict.fromkeys(str(row.get("normalization")) for row in rows))
    alone = not x_keys  # only the normalization varies: one position per normalization, named under it
    if alone:
        positions = [(n,) for n in normalizations]
    width = 0.6 / max(1, len(normalizations))
    fig = _figure(ncols=len(METRICS), nrows=1, width=max(3.6, 1.2 * len(positions) + 1.8), height=3.4, sharey=False)
    for ax, (which, metric) in zip(fig.axes, METRICS.items()):
        for s, normalization in enumerate(normalizations):
            points = [
                (positions.index((normalization,) if alone else config_of(row, x_keys)), row)
                for row in rows
                if str(row.get("normalization")) == normalization and row[f"{metric}_mean"] is not None
            ]
            if not points:
                continue
            offset = 0.0 if alone else (s - (len(normalizations) - 1) / 2) * width
            config = {"normalization": normalization} if "normalization" in keys or normalization != "None" else {}
            look = _style(config, s, colors)
            label = _label("normalization", normalization) if config else "runs"
            ax.errorbar(
                [x + offset for x, _ in points],
                [top1_error(row[f"{metric}_mean"]) for _, row in points],
                yerr=[100.0 * (row[f"{metric}_std"] or 0.0) for _, row in points],
                capsize=4,
                linestyle="none",
                marker=look["marker"],
                color=look["color"],
                markersize=7,
                label=label,
            )
        _baseline_band(ax, baseline, metric)
        if alone:
            labels = [_label("normalization", n) for n in normalizations]
        else:
            labels = [config_label(dict(zip(x_keys, values))) for values in positions]
        _category_ticks(ax, labels)
        ax.set_xlim(-0.6, len(positions) - 0.4)
        ax.set_title(f"{which} epoch", fontsize=10)
        ax.set_ylabel(f"{which} top-1 error (%)")
        ax.grid(True, axis="y", alpha=0.3)
    _legend(fig.axes[0])
    return fig


def error_vs_reduction(sweep: Sweep) -> Figure | None:
    """Top-1 error (%) mean +- std over seeds against the reduction ratio: rows best / final epoch, one column per
    ``init`` (one column when init is not swept), one line per remaining configuration (softmax vs scale, ...).
    Runs without an NL block (normalization "none") are drawn as a horizontal band in every panel."""
    rows = [row for row in summarize(sweep) if row["n"] > 0]
    if not rows:
        return None
    keys = sweep.config_keys
    panel_key = "init" if "init" in keys else None
    has_x = any(run.get("reduction") is not None for run in sweep.finished)
    series_keys = [key for key in keys if key not in ("init", "reduction")]
    nl_rows = [row for row in rows if row.get("normalization") != "none"]
    # Panels in the sweep's own order (its axis as written), e.g. normal, zeros, kaiming.
    panels = list(dict.fromkeys(run.get(panel_key) for run in sweep.finished if run.get("normalization") != "none"))
    panels = panels if panel_key and panels else [None]
    baseline = [run for run in sweep.finished if run.get("normalization") == "none"]
    series = list(dict.fromkeys(config_of(row, series_keys) for row in nl_rows))
    shown = top_configurations(sweep, series_keys)
    if shown is not None:
        series = [values for values in series if values in shown]
    colors = style.order(sweep.runs, "normalization")

    # Rows final / best, a column per panel; a single panel puts final and best side by side instead.
    single = len(panels) == 1
    fig = _figure(
        ncols=len(METRICS) if single else len(panels),
        nrows=1 if single else len(METRICS),
        width=4.2,
        height=3.2,
        sharey=False if single else "row",
    )
    for r, (which, metric) in enumerate(METRICS.items()):
        for c, panel in enumerate(panels):
            ax = fig.axes[r * len(panels) + c]
            for s, values in enumerate(series):
                points = [
                    row
                    for row in nl_rows
                    if config_of(row, series_keys) == values and (panel_key is None or row.get(panel_key) == panel)
                ]
                if not points:
                    continue
                points.sort(key=lambda row: row.get("reduction") or 0)
                xs = [row.get("reduction") for row in points] if has_x else [s] * len(points)
                ys = [top1_error(row[f"{metric}_mean"]) for row in points]
                errs = [100.0 * (row[f"{metric}_std"] or 0.0) for row in points]
                config = dict(zip(series_keys, values))
                ax.errorbar(xs, ys, yerr=errs, capsize=3, label=config_label(config), **_style(config, s, colors))
            _baseline_band(ax, baseline, metric)
            reductions = sorted({row["reduction"] for row in nl_rows if row.get("reduction")}) if has_x else None
            _reduction_axis(ax, reductions, [config_label(dict(zip(series_keys, v))) for v in series])
            title = shorten(f"init={panel}") if panel_key else ""
            ax.set_title(f"{title}  ({which} epoch)".strip(), fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{which} top-1 error (%)")
            ax.grid(True, alpha=0.3)
    _legend(fig.axes[0])
    return fig


def learning_curves(sweep: Sweep) -> Figure | None:
    """Validation top-1 error per epoch, mean over seeds (band: +- std): one panel per configuration without its
    normalisation, one line per normalisation, so softmax and scale share each panel. Runs without an NL block
    (normalization "none") are a grey reference line in every panel."""
    if not any(sweep.curves.get(run["run_id"]) for run in sweep.finished):
        return None
    keys = sweep.config_keys
    panel_keys = [key for key in keys if key != "normalization"]
    line_key = ["normalization"] if "normalization" in keys else []
    baseline = [run for run in sweep.finished if run.get("normalization") == "none"]
    panels = group_runs([run for run in sweep.finished if run.get("normalization") != "none"], panel_keys)
    shown = top_configurations(sweep, panel_keys)
    if shown is not None:
        panels = {values: runs for values, runs in panels.items() if values in shown}
    if not panels:  # a sweep of baselines only
        panels, baseline = {(): baseline}, []
    colors = style.order(sweep.runs, "normalization")
    all_epochs: set[int] = set()
    ncols = min(4, len(panels))
    fig = _figure(ncols=ncols, nrows=math.ceil(len(panels) / ncols), width=3.6, height=2.8, sharey=True)
    for ax, (values, runs) in zip(fig.axes, panels.items()):
        lines = [(dict(zip(line_key, line)), line_runs) for line, line_runs in group_runs(runs, line_key).items()]
        if baseline:
            lines.append(({"normalization": "none"}, baseline))
        for s, (config, line_runs) in enumerate(lines):
            curve = mean_curve(sweep, line_runs, FINAL_ACC1)
            if not curve:
                continue
            epochs = [epoch for epoch, _, _ in curve]
            errors = [top1_error(mean) for _, mean, _ in curve]
            spread = [100.0 * (std or 0.0) for _, _, std in curve]
            look = _style(config, s, colors)
            label = config_label(config)
            all_epochs.update(epochs)
            ax.plot(
                epochs,
                errors,
                label=f"{label} (n={len(line_runs)})",
                color=look["color"],
                linestyle=look["linestyle"],
                marker=look["marker"] if len(epochs) < 15 else None,
                markersize=3,
            )
            ax.fill_between(
                epochs,
                [e - d for e, d in zip(errors, spread)],
                [e + d for e, d in zip(errors, spread)],
                color=look["color"],
                alpha=0.15,
                linewidth=0,
            )
        ax.set_title(config_label(dict(zip(panel_keys, values))), fontsize=9)
        ax.set_xlabel("epoch")
        _epoch_axis(ax, sorted(all_epochs))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in fig.axes[len(panels) :]:
        ax.set_visible(False)
    for row_start in range(0, len(panels), ncols):
        fig.axes[row_start].set_ylabel("val top-1 error (%)")
    return fig


def params_differ(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the configurations' NL parameter counts differ (else a parameter panel shows identical bars)."""
    return len({row.get("nl_params_mean") for row in rows if row.get("nl_params_mean") is not None}) > 1


def throughput_and_params(sweep: Sweep, where: str = "") -> Figure | None:
    """Training throughput (images/s, mean +- std over seeds) per configuration, titled with ``where`` it was
    measured; beside it the NL blocks' parameters with their share of the model, only when they differ."""
    rows = [row for row in summarize(sweep) if row["n"] > 0]
    if not rows or all(row[f"{IMAGES_PER_S}_mean"] is None for row in rows):
        return None
    keys = sweep.config_keys
    shown = top_configurations(sweep, keys)
    if shown is not None:
        rows = [row for row in rows if config_of(row, keys) in shown]
    labels = [config_label({key: row.get(key) for key in keys}) for row in rows]
    order = style.order(sweep.runs, "normalization")
    colors = [style.color("normalization", row.get("normalization"), order) for row in rows]
    positions = list(range(len(rows)))
    with_params = params_differ(rows)
    fig = _figure(
        ncols=2 if with_params else 1, nrows=1, width=5.0, height=max(2.4, 0.28 * len(rows) + 1.2), sharey=True
    )
    speed = fig.axes[0]
    speed.barh(
        positions,
        [row[f"{IMAGES_PER_S}_mean"] or 0.0 for row in rows],
        xerr=[row[f"{IMAGES_PER_S}_std"] or 0.0 for row in rows],
        color=colors,
        capsize=2,
    )
    speed.set_xlabel("training images/s")
    if where:
        speed.set_title(shorten(where, 4 * MAX_LABEL_CHARS), fontsize=8)
    if with_params:
        params = fig.axes[1]
        nl = [(row["nl_params_mean"] or 0.0) / 1e3 for row in rows]
        params.barh(positions, nl, color=colors)
        for y, (value, row) in enumerate(zip(nl, rows)):
            share = (row["nl_params_mean"] or 0.0) / row["params_mean"] if row.get("params_mean") else None
            text = f"{value:.1f}k" + (f" ({100 * share:.1f}% of the model)" if share is not None else "")
            params.text(value, y, " " + text, va="center", fontsize=7)
        params.set_xlim(0, max(nl) * 1.9 or 1)
        params.set_xlabel("parameters in NL blocks (thousands)")
    speed.set_yticks(positions, labels, fontsize=8)
    speed.invert_yaxis()
    for ax in fig.axes:
        ax.grid(True, axis="x", alpha=0.3)
    return fig


# The rows of the benchmark figure: record field -> y-axis label.
BENCH_ROWS = {"images_per_s": "training images/s", "peak_mib": "peak memory (MiB)"}


def training_benchmark(bench: Benchmark) -> Figure:
    """Images/s (top row) and peak memory (bottom row) of training steps against the reduction ratio: one column
    per backbone, colour by normalisation (softmax vs scale), one line style and marker per head count."""
    backbones = bench.backbones
    normalizations = list(dict.fromkeys(record["normalization"] for record in bench.records))
    heads = sorted({record["heads"] for record in bench.records})
    reductions = sorted({record["reduction"] for record in bench.records})
    fig = _figure(ncols=len(backbones), nrows=len(BENCH_ROWS), width=4.2, height=3.0, sharey=False)
    for r, (metric, ylabel) in enumerate(BENCH_ROWS.items()):
        for c, backbone in enumerate(backbones):
            ax = fig.axes[r * len(backbones) + c]
            for normalization in normalizations:
                for h, head_count in enumerate(heads):
                    points = sorted(
                        (record["reduction"], record[metric])
                        for record in bench.records
                        if (record["backbone"], record["normalization"], record["heads"])
                        == (backbone, normalization, head_count)
                    )
                    if not points:  # e.g. C / r does not split into this many heads
                        continue
                    color = style.color("normalization", normalization, normalizations)
                    ax.plot(
                        [x for x, _ in points],
                        [y for _, y in points],
                        color=color,
                        linestyle=LINESTYLES[h % len(LINESTYLES)],
                        marker=MARKERS[h % len(MARKERS)],
                        label=config_label({"normalization": normalization, "heads": head_count}),
                    )
            # From zero, so the gap between the lines reads as the ratio it is.
            ax.set_ylim(bottom=0)
            _reduction_axis(ax, reductions, [])
            if r == 0:
                ax.set_title(shorten(str(backbone)), fontsize=10)
            if c == 0:
                ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
    _legend(fig.axes[0])
    return fig


def _baseline_band(ax: Any, baseline: Sequence[Mapping[str, Any]], metric: str) -> None:
    """The runs without an NL block as a dashed line at their mean top-1 error and a +- std band."""
    mean, std, _ = mean_std(top1_error(run.get(metric)) for run in baseline)
    if mean is not None:
        ax.axhline(mean, color=style.BASELINE_COLOR, linestyle="--", label=_label(style.METHOD, style.BASELINE))
        if std:
            ax.axhspan(mean - std, mean + std, color=style.BASELINE_COLOR, alpha=0.15)


def _figure(*, ncols: int, nrows: int, width: float, height: float, sharey: bool | str) -> Figure:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    return fig


def _style(config: Mapping[str, Any], index: int, order: Sequence[Any]) -> dict[str, Any]:
    """Colour by normalisation when it is part of the configuration (:func:`nlbench.report.style.color`), else by
    series; marker and line style by series index, so series sharing a normalisation (e.g. several head counts)
    stay apart, also in greyscale."""
    if "normalization" in config:
        color = style.color("normalization", config["normalization"], order)
    else:
        color = style.PALETTE[index % len(style.PALETTE)]
    return {"color": color, "marker": MARKERS[index % len(MARKERS)], "linestyle": LINESTYLES[index % len(LINESTYLES)]}


def _category_ticks(ax: Any, labels: Sequence[str]) -> None:
    """One tick per category; labels rotate when they would not fit side by side (e.g. "sigmoid" / "softmax")."""
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    width_in = ax.get_figure().get_figwidth() / max(1, len(ax.get_figure().axes))
    chars_per_slot = 12 * width_in / max(1, len(labels))  # about 12 characters of 8 pt text per inch
    if max((len(label) for label in labels), default=0) > 0.8 * chars_per_slot:
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")


def _epoch_axis(ax: Any, epochs: Sequence[int]) -> None:
    """Whole epochs only: a tick per epoch when few (one epoch gives one tick, not -0.045 ... 0.045)."""
    if not epochs:
        return
    if len(epochs) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(list(epochs)))
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)


def _reduction_axis(ax: Any, reductions: Sequence[int] | None, series_labels: Sequence[str]) -> None:
    if reductions is None:
        # No reduction ratio recorded: one categorical position per series.
        ax.set_xticks(range(len(series_labels)), series_labels, rotation=30, ha="right", fontsize=8)
        return
    if len(reductions) > 1 and min(reductions) > 0:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(reductions)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(r) for r in reductions])
    ax.set_xlabel("reduction ratio r (d = C / r)")


def _legend(ax: Any) -> None:
    """A legend when anything in ``ax`` is labelled (matplotlib warns on an empty one)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
