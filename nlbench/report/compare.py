"""Comparisons along any key, and their families: each value of a key against the key's reference in every
configuration of the other keys that ran both, on the deciding metric (:func:`deciding_metric`), paired on the
seeds both arms share (Welch only when they share none), and decided together: one family per (key, metric) over
every configuration, Holm over the tests actually made (:mod:`nlbench.report.stats`). The comparisons section and
the claims table read the same :class:`Family` objects (:class:`Families`), so they never disagree.

Best top-1 (which selects the epoch on the test split) is compared too, as a description: its rows carry an
interval and no verdict.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from nlbench.report import stats
from nlbench.schema import BEST_ACC1, FINAL_ACC1, SELECTED_ACC1

NORMALIZATION = "normalization"
# The default reference per key (else the first value the runs take): the paper's baseline method and similarity.
DEFAULT_REFERENCES: dict[str, Any] = {NORMALIZATION: "softmax", "similarity": "dot"}
METRIC_LABELS = {
    BEST_ACC1: "best top-1 (optimistic)",
    FINAL_ACC1: "final top-1",
    SELECTED_ACC1: "test top-1 at the validation-selected epoch",
}
BEST_NOTE = (
    "*best top-1* is the highest top-1 over all epochs on the evaluation split; as in the paper, that split "
    "is the test set, so *best* selects on the test data: optimistic, biased toward the arm whose accuracy "
    "jumps more between epochs. It is shown, never decides"
)


def deciding_metric(runs: Sequence[Mapping[str, Any]]) -> str:
    """The metric every verdict and claim is decided on: the test top-1 at the validation-selected epoch when the
    runs recorded one (they held out a validation split, ``data.val_split > 0``), else the final top-1 (the last
    epoch's, on the test split when ``val_split`` is 0). Never best top-1."""
    return SELECTED_ACC1 if any(stats.finite(run.get(SELECTED_ACC1)) for run in runs) else FINAL_ACC1


# ---- treatment minus reference ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """treatment - reference of one metric between two sets of runs (one comparison), in the metric's units."""

    metric: str
    method: str  # "paired" (on the shared seeds) or "Welch" (no seed shared)
    tested: stats.Tested  # 0-d arrays
    treatment_values: tuple[float, ...] = field(repr=False)
    reference_values: tuple[float, ...] = field(repr=False)
    seeds: tuple[Any, ...] = ()  # the seeds paired on
    dropped: tuple[str, ...] = ()  # seeds left out, and why ("3: only treatment", "5: no value")

    @property
    def n_treatment(self) -> int:
        return len(self.treatment_values)

    @property
    def n_reference(self) -> int:
        return len(self.reference_values)

    @property
    def mean(self) -> float | None:
        return _num(self.tested.mean)

    @property
    def low(self) -> float | None:
        return _num(self.tested.low)

    @property
    def high(self) -> float | None:
        return _num(self.tested.high)

    @property
    def df(self) -> float | None:
        return _num(self.tested.df)

    @property
    def p_value(self) -> float | None:
        return _num(self.tested.p)

    @property
    def p_equivalent(self) -> float | None:
        return _num(self.tested.p_equivalent)

    @property
    def sd(self) -> float | None:
        return _num(self.tested.sd)

    @property
    def undetermined(self) -> str:
        return str(self.tested.undetermined)

    @property
    def n_label(self) -> str:
        """ "4 pairs" (paired) or "3/2" (Welch: runs an arm)."""
        if self.method == "paired":
            return f"{self.n_treatment} pair{'s' if self.n_treatment != 1 else ''}"
        return f"{self.n_treatment}/{self.n_reference}"

    @cached_property
    def bootstrap(self) -> tuple[float, float] | None:
        """The BCa bootstrap interval (:func:`nlbench.report.stats.bootstrap_interval`); None below 10 seeds."""
        return stats.bootstrap_interval(self.treatment_values, self.reference_values, self.method == "paired")

    @cached_property
    def p_improvement(self) -> stats.Share | None:
        """P(treatment beats reference on a seed): the paired share of seeds won; None unpaired or below 3 pairs."""
        if self.method != "paired":
            return None
        return stats.p_improvement(self.treatment_values, self.reference_values)

    def detectable(self, alpha: float) -> float | None:
        """The smallest difference this comparison detects at 80% power at level ``alpha`` (its seeds, its sd)."""
        if self.undetermined.startswith("zero variance") or self.sd is None:
            return None
        paired = self.method == "paired"
        return stats.detectable_difference(self.sd, self.n_treatment, None if paired else self.n_reference, alpha)

    def seeds_for(self, difference: float, alpha: float) -> int | None:
        """Seeds (pairs, or per arm) that detect ``difference`` at 80% power at level ``alpha``, at this sd."""
        if self.undetermined.startswith("zero variance") or self.sd is None:
            return None
        return stats.seeds_needed(self.sd, difference, self.method == "paired", alpha)


def difference(
    treatment_runs: Sequence[Mapping[str, Any]],
    reference_runs: Sequence[Mapping[str, Any]],
    metric: str,
    margin: float = stats.DEFAULT_MARGIN,
) -> Difference:
    """treatment - reference of ``metric``: paired on the seeds both sides ran with a value (the others listed in
    ``dropped``), Welch's test only when they share no seed. Two runs of one seed on a side (the same run read
    twice, a rerun) count once, at their mean: the seed is the unit."""
    return differences([(treatment_runs, reference_runs)], metric, margin)[0]


def differences(
    pairs: Sequence[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
    metric: str,
    margin: float = stats.DEFAULT_MARGIN,
) -> list[Difference]:
    """:func:`difference` of each (treatment runs, reference runs) pair; the tests of one shape (method and seed
    counts) are made in one vectorised call (a report of 2,000 configurations makes thousands)."""
    plans = [_pairing(treatment, reference, metric) for treatment, reference in pairs]
    groups: dict[tuple[str, int, int], list[int]] = {}
    for i, (method, xs, ys, _, _) in enumerate(plans):
        groups.setdefault((method, len(xs), len(ys)), []).append(i)
    tested: list[stats.Tested | None] = [None] * len(plans)
    for (method, nx, ny), rows in groups.items():
        x = np.array([plans[i][1] for i in rows], dtype=float).reshape(len(rows), nx)
        y = np.array([plans[i][2] for i in rows], dtype=float).reshape(len(rows), ny)
        test = stats.paired_test if method == "paired" else stats.welch_test
        many = test(x, y, margin)
        for j, i in enumerate(rows):
            tested[i] = stats.row(many, j)
    return [
        Difference(metric, method, t, xs, ys, seeds, dropped)
        for (method, xs, ys, seeds, dropped), t in zip(plans, tested)
    ]


def _pairing(
    treatment_runs: Sequence[Mapping[str, Any]], reference_runs: Sequence[Mapping[str, Any]], metric: str
) -> tuple[str, tuple[float, ...], tuple[float, ...], tuple[Any, ...], tuple[str, ...]]:
    """How one comparison is tested: (method, treatment values, reference values, seeds paired on, dropped)."""
    a, a_missing = values_by_seed(treatment_runs, metric)
    b, b_missing = values_by_seed(reference_runs, metric)
    shared = [seed for seed in a if not isinstance(seed, NoSeed) and seed in b]
    no_value = [f"{_seed_text(s)}: no value" for s in dict.fromkeys([*a_missing, *b_missing])]
    if shared:
        seeds = tuple(sorted(shared, key=_seed_order))
        dropped = (
            [f"{_seed_text(s)}: only the treatment" for s in a if s not in b]
            + [f"{_seed_text(s)}: only the reference" for s in b if s not in a]
            + no_value
        )
        xs, ys = tuple(a[s] for s in seeds), tuple(b[s] for s in seeds)
        return "paired", xs, ys, seeds, tuple(sorted(dropped, key=_dropped_order))
    return "Welch", tuple(a.values()), tuple(b.values()), (), tuple(no_value)


def values_by_seed(runs: Sequence[Mapping[str, Any]], metric: str) -> tuple[dict[Any, float], list[Any]]:
    """seed -> the metric's value (the mean when a seed ran twice; runs without a seed each count alone), and the
    seeds of runs without a finite value."""
    values: dict[Any, list[float]] = {}
    missing = []
    for i, run in enumerate(runs):
        seed = run.get("seed")
        key = seed if seed is not None else NoSeed(i)
        if stats.finite(run.get(metric)):
            values.setdefault(key, []).append(float(run[metric]))
        else:
            missing.append(key)
    return {seed: statistics.fmean(v) for seed, v in values.items()}, [s for s in missing if s not in values]


@dataclass(frozen=True, eq=False)
class NoSeed:
    """A run without a recorded seed: never paired, never merged with another."""

    index: int


def _seed_text(seed: Any) -> str:
    return "no seed" if isinstance(seed, NoSeed) else f"seed {seed}"


def _seed_order(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, (int, float)) else (1, str(seed))


def _dropped_order(text: str) -> tuple[int, str]:
    head = text.split(":")[0].removeprefix("seed ")
    return (0, f"{int(head):012d}") if head.isdigit() else (1, text)


# ---- comparisons along a key, one family per key --------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """One value of a key against the key's reference, within one configuration of the other keys."""

    key: str
    treatment: Any
    reference: Any
    context: dict[str, Any]  # the other keys' values, equal on both sides
    diff: Difference
    p_adjusted: float | None  # Holm over the family's tests; None: no test made (undetermined, or a description)
    p_equivalent_adjusted: float | None
    family: int  # the family's size: the tests it made
    code: str | None  # stats.BETTER ... stats.UNDETERMINED; None for a description (best top-1)
    margin: float = stats.DEFAULT_MARGIN

    @property
    def verdict(self) -> str:
        """What the comparison supports: "<key>=<treatment> better" / "<key>=<reference> better", "equivalent within
        ±m pt", "inconclusive (n, interval)", "undetermined (why)", or for best top-1 that it does not decide."""
        d = self.diff
        if self.code is None:
            return "describes only (selects on the test split)"
        if self.code == stats.BETTER:
            return f"{self.key}={self.treatment} better"
        if self.code == stats.WORSE:
            return f"{self.key}={self.reference} better"
        if self.code == stats.EQUIVALENT:
            return f"equivalent within ±{100 * self.margin:g} pt"
        if self.code == stats.UNDETERMINED:
            return f"undetermined ({d.undetermined})"
        interval = "" if d.low is None else f", [{_pt(d.low)}, {_pt(d.high)}] pt"
        return f"inconclusive (n={d.n_label}{interval})"


@dataclass(frozen=True)
class Family:
    """Every comparison of one key against its reference on one metric, across all configurations of the other
    keys; ``size``: the tests made (Holm's m). ``decides``: False for best top-1 (no test, no verdict)."""

    key: str
    metric: str
    reference: Any
    others: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    size: int
    decides: bool
    margin: float

    def of(self, treatment: Any) -> list[Comparison]:
        return [c for c in self.comparisons if str(c.treatment) == str(treatment)]

    def counts(self, comparisons: Sequence[Comparison] | None = None) -> dict[str, int]:
        """Verdict code -> how many (of ``comparisons``, default all), in a fixed order."""
        rows = self.comparisons if comparisons is None else comparisons
        order = (stats.BETTER, stats.WORSE, stats.EQUIVALENT, stats.INCONCLUSIVE, stats.UNDETERMINED)
        found = {code: sum(c.code == code for c in rows) for code in order}
        return {code: n for code, n in found.items() if n}


def reference_of(key: str, values: Sequence[Any], given: Any = None) -> Any:
    """The value the others are compared against: ``given`` (matched as text), else :data:`DEFAULT_REFERENCES`,
    else the first value (the runs come in the sweep's own order)."""
    if given is not None:
        for value in values:
            if str(value) == str(given):
                return value
        raise ValueError(f"--compare {key}={given}: {key} takes the values {', '.join(map(str, values))}")
    default = DEFAULT_REFERENCES.get(key)
    return default if default in values else values[0]


def compare(
    runs: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    key: str,
    metric: str | None = None,
    reference: Any = None,
    margin: float = stats.DEFAULT_MARGIN,
) -> Family:
    """Each value of ``key`` against its reference (:func:`reference_of`) in every configuration of the other
    ``keys`` that ran both, over the given (finished) runs, as one family: Holm over every test made, in every
    configuration. ``metric``: default :func:`deciding_metric`; best top-1 gives descriptions without verdicts."""
    metric = metric or deciding_metric(runs)
    others = tuple(k for k in keys if k != key)
    values = list(dict.fromkeys(frozen(run.get(key)) for run in runs))
    ref = reference_of(key, values, reference) if len(values) > 1 else None
    decides = metric != BEST_ACC1
    pending: list[tuple[Any, tuple[Any, ...], Difference]] = []
    if len(values) > 1:
        groups: dict[tuple[Any, ...], dict[Any, list[Mapping[str, Any]]]] = {}
        for run in runs:
            groups.setdefault(config_of(run, others), {}).setdefault(frozen(run.get(key)), []).append(run)
        where = [
            (value, config, (sides[value], sides[ref]))
            for config, sides in groups.items()
            if ref in sides
            for value in values
            if value != ref and value in sides
        ]
        tested = differences([pair for _, _, pair in where], metric, margin)
        pending = [(value, config, d) for (value, config, _), d in zip(where, tested)]
    p = np.array([d.tested.p for _, _, d in pending], dtype=float) if decides else np.full(len(pending), np.nan)
    p_eq = np.array([d.tested.p_equivalent for _, _, d in pending], dtype=float) if decides else p
    p_adj, p_eq_adj = stats.holm(p), stats.holm(p_eq)
    mean = np.array([d.tested.mean for _, _, d in pending], dtype=float)
    reasons = np.array([d.undetermined for _, _, d in pending], dtype=object)
    codes = stats.decide(p_adj, p_eq_adj, mean, reasons) if decides else [None] * len(pending)
    size = int(np.isfinite(p).sum())
    comparisons = tuple(
        Comparison(key, value, ref, dict(zip(others, config)), d, _num(pa), _num(pe), size, code, margin)
        for (value, config, d), pa, pe, code in zip(pending, p_adj, p_eq_adj, codes)
    )
    return Family(key, metric, ref, others, comparisons, size, decides, margin)


class Families:
    """The families of one report, each computed once: the comparisons section and the claims table ask here,
    so a comparison reads the same adjusted result in both."""

    def __init__(self, runs: Sequence[Mapping[str, Any]], keys: Sequence[str], margin: float = stats.DEFAULT_MARGIN):
        self.runs, self.keys, self.margin = list(runs), tuple(keys), margin
        self.metric = deciding_metric(self.runs)
        self._made: dict[tuple[str, str, str], Family] = {}

    @property
    def label(self) -> str:
        """The deciding metric's name as the report prints it."""
        return METRIC_LABELS.get(self.metric, self.metric)

    def get(self, key: str, reference: Any = None, metric: str | None = None) -> Family:
        metric = metric or self.metric
        values = list(dict.fromkeys(frozen(run.get(key)) for run in self.runs))
        ref = reference_of(key, values, reference) if len(values) > 1 else None
        found = self._made.get((key, str(ref), metric))
        if found is None:
            found = compare(self.runs, self.keys, key, metric, ref, self.margin)
            self._made[(key, str(ref), metric)] = found
        return found


# ---- power from a pilot sweep ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerPlan:
    """What a key's comparisons could detect with ``seeds`` seeds, from a pilot's seed variance."""

    key: str
    reference: Any
    metric: str
    sd: float | None  # pooled sd of the pilot's paired differences (the root of their mean variance)
    pilot_comparisons: int  # comparisons of the pilot with a usable sd
    seeds: int
    family: int  # the family size the planned sweep will have (Holm's first level is ALPHA / family)
    detectable: float | None
    seeds_for_margin: int | None
    margin: float


def power_plan(
    families: Sequence[Family], seeds: int, family_sizes: Mapping[str, int], margin: float = stats.DEFAULT_MARGIN
) -> list[PowerPlan]:
    """Per key: the pilot's paired seed sd (pooled over its comparisons), and with ``seeds`` seeds and the planned
    family size (``family_sizes[key]``, default the pilot's) the smallest difference detectable at 80% power at
    Holm's first level ALPHA / family, and the seeds a difference of ``margin`` needs there."""
    plans = []
    for fam in families:
        variances = [
            c.diff.sd**2
            for c in fam.comparisons
            if c.diff.method == "paired"
            and c.diff.n_treatment >= 2
            and stats.finite(c.diff.sd)
            and c.diff.sd >= stats.NEAR_ZERO_SD
        ]
        sd = math.sqrt(statistics.fmean(variances)) if variances else None
        size = max(1, family_sizes.get(fam.key, fam.size))
        alpha = stats.ALPHA / size
        plans.append(
            PowerPlan(
                fam.key,
                fam.reference,
                fam.metric,
                sd,
                len(variances),
                seeds,
                size,
                None if sd is None else stats.detectable_difference(sd, seeds, alpha=alpha),
                None if sd is None else stats.seeds_needed(sd, margin, alpha=alpha),
                margin,
            )
        )
    return plans


# ---- helpers --------------------------------------------------------------------------------------------------------
def config_of(run: Mapping[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    return tuple(frozen(run.get(k)) for k in keys)


def frozen(value: Any) -> Any:
    return tuple(frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pt(value: float) -> str:
    """A difference in percentage points: ``+0.12``, never ``-0.00``."""
    text = f"{100 * value:+.2f}"
    return text[1:] if float(text) == 0 else text
