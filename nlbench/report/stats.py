"""The report's statistics on arrays, each defined once (docs/statistics.md says what each one estimates and when
each verdict is given). Everything here is vectorised: the last axis holds the seeds, any leading axes are
independent comparisons, so the report (one comparison at a time) and the calibration tests (thousands of simulated
sweeps at once) call the same functions.

- :func:`estimate`: mean, std and Student t interval of one configuration over seeds (clipped to the metric's range).
- :func:`paired_test` / :func:`welch_test`: treatment - reference, paired on shared seeds, else Welch; the t test
  and its interval (scipy), the TOST equivalence test within +-margin (statsmodels ``ttost_paired``/``ttost_ind``),
  and why a comparison is *undetermined* (fewer than :data:`MIN_SEEDS` seeds an arm, zero variance, missing values).
- :func:`holm` (statsmodels ``multipletests``) over the tests a family actually made, and :func:`decide`: better,
  worse, equivalent, inconclusive or undetermined.
- :func:`stratified` (one paired estimate over matched configurations) and :func:`interaction` (does the paired
  difference change with a key's level?): ordinary least squares on the per-seed differences with one mean per
  configuration (statsmodels OLS, t and F tests of its contrasts); :func:`more_failures` (Fisher's exact test).
- :func:`bootstrap_interval` (BCa, scipy; from :data:`BOOTSTRAP_MIN_SEEDS` seeds), :func:`p_improvement` (the paired
  share of seeds won, ties half, with its Wilson interval), :func:`detectable_difference` and :func:`seeds_needed`
  (statsmodels ``TTestPower``/``TTestIndPower``).

Accuracies are fractions in [0, 1] as the runs record them; differences and margins are in the same units (the
report prints percentage points). No torch import: the report runs without the training stack.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

ALPHA = 0.05  # every test's level: family-wise (Holm) for verdicts, per claim for the claims
CONFIDENCE = 0.95  # intervals
POWER = 0.8
MIN_SEEDS = 3  # per arm (or pairs): fewer gives "undetermined", never a verdict
BOOTSTRAP_MIN_SEEDS = 10  # below, percentile/BCa intervals under-cover badly: the t interval is the interval
P_BETTER_MIN_PAIRS = 3
DEFAULT_MARGIN = 0.005  # the equivalence margin (0.5 pt): `nlbench report --margin`
# A standard deviation below this (1e-4 pt, less than one image of any test set nlbench reads) is zero: identical
# per-seed values (e.g. a difference quantised by a small test set) make t infinite, which is no evidence.
NEAR_ZERO_SD = 1e-6
BOOTSTRAP_RESAMPLES = 2000
MAX_SEEDS = 10_000  # seeds_needed says "more than this" beyond it

# Verdict codes (:func:`decide`); the report words them (nlbench.report.compare.Comparison.verdict).
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, UNDETERMINED = "better", "worse", "equivalent", "inconclusive", "undetermined"


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (scipy.stats.t.ppf), cached: a report asks for few distinct ones."""
    from scipy.stats import t

    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(t.ppf(p, df))


# ---- one configuration ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Mean, sample std and ``CONFIDENCE`` interval (Student t) of n values; std and interval need n >= 2."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def estimate(
    values: Iterable[float | None], confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> Estimate:
    """The :class:`Estimate` of the finite, non-missing ``values``; the interval is clipped to ``bounds`` (e.g. an
    accuracy's [0, 1]: the mean of accuracies cannot leave it, whatever t says at n = 2)."""
    xs = [float(v) for v in values if finite(v)]
    if not xs:
        return Estimate(0, None, None, None, None)
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Estimate(1, mean, None, None, None)
    std = statistics.stdev(xs)
    half = t_quantile(0.5 + confidence / 2, len(xs) - 1) * std / math.sqrt(len(xs))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, float(bounds[0])), min(high, float(bounds[1]))
    return Estimate(len(xs), mean, std, low, high)


# ---- treatment minus reference ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tested:
    """A t test of treatment - reference and its TOST, one element per comparison (arrays of the leading shape).

    ``sd``: of the per-seed differences (paired), or sqrt((s_t^2 + s_r^2) / 2) (Welch), for power. ``p`` and
    ``p_equivalent`` (TOST within +-margin) are NaN where ``undetermined`` gives a reason; the interval is NaN where
    it would be a point (zero variance) or undefined."""

    method: str  # "paired" or "Welch"
    n_treatment: np.ndarray
    n_reference: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    df: np.ndarray
    p: np.ndarray
    p_equivalent: np.ndarray
    undetermined: np.ndarray  # str per comparison; "" when the test was made


def paired_test(x: Any, y: Any, margin: float = DEFAULT_MARGIN) -> Tested:
    """Paired t test of ``x - y`` over the last axis (the shared seeds, in the same order on both sides)."""
    from scipy.stats import ttest_rel
    from statsmodels.stats.weightstats import ttost_paired

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.shape[-1]
    d = x - y
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # n < 2 and zero variance warn; they are undetermined below
        res = ttest_rel(x, y, axis=-1)
        ci = res.confidence_interval(CONFIDENCE)
        sd = d.std(axis=-1, ddof=1) if n >= 2 else np.full(d.shape[:-1], np.nan)
        # statsmodels takes observations on axis 0 and comparisons as columns.
        p_eq = ttost_paired(_columns(x), _columns(y), -margin, margin)[0] if n >= 2 else np.nan
    p_eq = np.reshape(p_eq, d.shape[:-1]) if np.ndim(p_eq) else np.full(d.shape[:-1], p_eq, dtype=float)
    mean = d.mean(axis=-1) if n else np.full(d.shape[:-1], np.nan)
    reason = _why_undetermined(np.full(d.shape[:-1], n), np.full(d.shape[:-1], n), d, d, sd, sd, "pair")
    return _tested(
        "paired", n, n, mean, sd, ci.low, ci.high, np.broadcast_to(res.df, mean.shape), res.pvalue, p_eq, reason
    )


def row(tested: Tested, i: int) -> Tested:
    """Comparison ``i`` of a test made over many (its fields as 0-d arrays, as a test of one comparison has them)."""
    fields = {f.name: np.asarray(getattr(tested, f.name))[i] for f in dataclasses.fields(Tested) if f.name != "method"}
    return dataclasses.replace(tested, **{name: np.asarray(value) for name, value in fields.items()})


def welch_test(x: Any, y: Any, margin: float = DEFAULT_MARGIN) -> Tested:
    """Welch's unequal-variance t test of mean(x) - mean(y) over the last axis (no seed shared)."""
    from scipy.stats import ttest_ind
    from statsmodels.stats.weightstats import ttost_ind

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    nx, ny = x.shape[-1], y.shape[-1]
    shape = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = ttest_ind(x, y, axis=-1, equal_var=False)
        ci = res.confidence_interval(CONFIDENCE)
        sx = x.std(axis=-1, ddof=1) if nx >= 2 else np.full(x.shape[:-1], np.nan)
        sy = y.std(axis=-1, ddof=1) if ny >= 2 else np.full(y.shape[:-1], np.nan)
        p_eq = (
            ttost_ind(_columns(x), _columns(y), -margin, margin, usevar="unequal")[0] if nx >= 2 and ny >= 2 else np.nan
        )
        mean = x.mean(axis=-1) - y.mean(axis=-1) if nx and ny else np.full(shape, np.nan)
    p_eq = np.reshape(p_eq, shape) if np.ndim(p_eq) else np.full(shape, p_eq, dtype=float)
    sd = np.sqrt((sx**2 + sy**2) / 2)
    reason = _why_undetermined(np.full(shape, nx), np.full(shape, ny), x, y, sx, sy, "run")
    return _tested("Welch", nx, ny, mean, sd, ci.low, ci.high, res.df, res.pvalue, p_eq, reason)


def _columns(a: np.ndarray) -> np.ndarray:
    """(..., n) -> (n, prod(...)): statsmodels' layout."""
    return np.moveaxis(a, -1, 0).reshape(a.shape[-1], -1)


def _why_undetermined(
    nx: np.ndarray, ny: np.ndarray, x: np.ndarray, y: np.ndarray, sx: np.ndarray, sy: np.ndarray, unit: str
) -> np.ndarray:
    n = np.minimum(nx, ny)
    missing = (
        ~(np.isfinite(x).all(axis=-1) & np.isfinite(y).all(axis=-1))
        if x.shape[-1] and y.shape[-1]
        else np.zeros(n.shape, dtype=bool)
    )
    flat = ~(np.nan_to_num(sx, nan=np.inf) >= NEAR_ZERO_SD) | ~(np.nan_to_num(sy, nan=np.inf) >= NEAR_ZERO_SD)
    word = "seed pairs" if unit == "pair" else "runs an arm"
    few = np.char.add(np.char.add("n=", n.astype(str)), f"; {MIN_SEEDS} {word} needed")
    what = "of the per-seed differences" if unit == "pair" else "within an arm"
    return np.select(
        [n < MIN_SEEDS, missing, flat],
        [few, "missing values", f"zero variance {what}: identical values are no evidence"],
        "",
    )


def _tested(
    method: str,
    nx: Any,
    ny: Any,
    mean: Any,
    sd: Any,
    low: Any,
    high: Any,
    df: Any,
    p: Any,
    p_eq: Any,
    reason: np.ndarray,
) -> Tested:
    undetermined = reason != ""
    shape = reason.shape
    arrays = [np.array(np.broadcast_to(v, shape), dtype=float) for v in (mean, sd, low, high, df, p, p_eq)]
    mean, sd, low, high, df, p, p_eq = arrays
    p[undetermined], p_eq[undetermined] = np.nan, np.nan
    pointless = ~(high - low > NEAR_ZERO_SD)  # zero variance or undefined: a point is not an interval
    low[pointless], high[pointless] = np.nan, np.nan
    low, high = np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)  # differences of accuracies
    return Tested(
        method, np.broadcast_to(nx, shape), np.broadcast_to(ny, shape), mean, sd, low, high, df, p, p_eq, reason
    )


# ---- families and verdicts -------------------------------------------------------------------------------------------
def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment along the last axis over the tests made (finite p); NaN stays NaN (no test)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    if p.size == 0:
        return out
    rows, flat = p.reshape(-1, p.shape[-1]), out.reshape(-1, p.shape[-1])
    for row, adjusted in zip(rows, flat):
        made = np.isfinite(row)
        if made.any():
            adjusted[made] = multipletests(row[made], alpha=ALPHA, method="holm")[1]
    return out


def decide(p_adjusted: Any, p_equivalent_adjusted: Any, mean: Any, undetermined: Any) -> np.ndarray:
    """The verdict codes: better / worse (adjusted p < ALPHA, by the sign of the mean difference), else
    equivalent (adjusted TOST p < ALPHA), else inconclusive; undetermined wherever a reason is given."""
    p, p_eq, mean = (np.asarray(v, dtype=float) for v in (p_adjusted, p_equivalent_adjusted, mean))
    significant = np.nan_to_num(p, nan=1.0) < ALPHA
    return np.select(
        [
            np.asarray(undetermined) != "",
            significant & (mean > 0),
            significant & (mean < 0),
            np.nan_to_num(p_eq, nan=1.0) < ALPHA,
        ],
        [UNDETERMINED, BETTER, WORSE, EQUIVALENT],
        INCONCLUSIVE,
    ).astype(object)


@dataclass(frozen=True)
class FamilyResult:
    """The verdicts of one family of tests (the last axis): Holm-adjusted p and TOST p, codes, and how many tests
    were made (the family's size: undetermined comparisons make none)."""

    p_adjusted: np.ndarray
    p_equivalent_adjusted: np.ndarray
    codes: np.ndarray
    size: np.ndarray


def family(tested: Tested) -> FamilyResult:
    """Holm over the tests ``tested`` made along its last axis (better/worse and, separately, equivalence)."""
    p_adj, p_eq_adj = holm(tested.p), holm(tested.p_equivalent)
    return FamilyResult(
        p_adj, p_eq_adj, decide(p_adj, p_eq_adj, tested.mean, tested.undetermined), np.isfinite(tested.p).sum(axis=-1)
    )


# ---- one estimate over matched configurations, and interactions -----------------------------------------------------
@dataclass(frozen=True)
class Stratified:
    """One paired estimate over configurations: the mean over configurations of each one's mean paired difference,
    with its t interval, two-sided p, TOST p within +-margin (scalars; NaN where undetermined)."""

    mean: float
    low: float
    high: float
    se: float
    df: float
    p: float
    p_equivalent: float
    n_pairs: int
    n_configs: int
    undetermined: str = ""

    @classmethod
    def undetermined_by(cls, reason: str, n_pairs: int = 0, n_configs: int = 0, mean: float = math.nan) -> Stratified:
        """No test made (``reason``): every statistic but the mean NaN."""
        nan = math.nan
        return cls(mean, nan, nan, nan, nan, nan, nan, n_pairs, n_configs, reason)

    def p_above(self, bound: float) -> float:
        """One-sided p of H0: the difference <= ``bound`` (e.g. a non-inferiority bound)."""
        from scipy.stats import t

        return float(t.sf((self.mean - bound) / self.se, self.df)) if not self.undetermined else math.nan

    def p_below(self, bound: float) -> float:
        """One-sided p of H0: the difference >= ``bound``."""
        from scipy.stats import t

        return float(t.cdf((self.mean - bound) / self.se, self.df)) if not self.undetermined else math.nan


def _cell_ols(cells: Sequence[np.ndarray]) -> Any:
    """OLS of the per-seed differences on one indicator per cell (configuration): each coefficient is that cell's
    mean, the residual variance is pooled within cells (df = pairs - cells)."""
    from statsmodels.regression.linear_model import OLS

    y = np.concatenate(cells)
    design = np.zeros((len(y), len(cells)))
    start = 0
    for j, cell in enumerate(cells):
        design[start : start + len(cell), j] = 1.0
        start += len(cell)
    return OLS(y, design).fit()


def stratified(cells: Sequence[Any], margin: float = DEFAULT_MARGIN) -> Stratified:
    """The mean paired difference over configurations (each configuration's per-seed differences one array in
    ``cells``; configurations weigh equally), pooled within-configuration variance: one test, however many
    configurations (no pooling across configurations, so no Simpson's reversal)."""
    cells = [np.asarray(c, dtype=float) for c in cells if len(c)]
    n_pairs, k = sum(len(c) for c in cells), len(cells)
    nan = math.nan
    if not k:
        return Stratified.undetermined_by("no seed ran both")
    if any(not np.isfinite(c).all() for c in cells):
        return Stratified.undetermined_by("missing values", n_pairs, k)
    mean = float(np.mean([c.mean() for c in cells]))
    if n_pairs - k < MIN_SEEDS - 1:
        return Stratified.undetermined_by(
            f"{n_pairs} seed pair(s) in {k} configuration(s): too few seeds, {MIN_SEEDS} pairs in one "
            "configuration or more in several needed",
            n_pairs,
            k,
            mean,
        )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = _cell_ols(cells)
        if not math.sqrt(max(float(fit.scale), 0.0)) >= NEAR_ZERO_SD:
            return Stratified.undetermined_by(
                "zero variance of the per-seed differences: identical values are no evidence",
                n_pairs,
                k,
                mean,
            )
        test = fit.t_test(np.full((1, k), 1.0 / k))
    se, df = float(np.squeeze(test.sd)), float(test.df_denom)
    low, high = (float(v) for v in np.squeeze(test.conf_int(alpha=1 - CONFIDENCE)))
    result = Stratified(mean, max(low, -1.0), min(high, 1.0), se, df, float(np.squeeze(test.pvalue)), nan, n_pairs, k)
    p_eq = max(result.p_above(-margin), result.p_below(margin))  # TOST on the contrast
    return dataclasses.replace(result, p_equivalent=p_eq)


@dataclass(frozen=True)
class Interaction:
    """Does the paired difference change with a key's level? ``level_means``: the mean difference at each level
    (over the other keys' configurations present at every level); ``effects``/``se``: each later level's mean minus
    the first level's (a difference of differences), with ``df`` pooled within cells; ``f``/``p``: the F test that
    all level means are equal (statsmodels OLS ``f_test``)."""

    levels: tuple[Any, ...]
    level_means: tuple[float, ...]
    effects: tuple[float, ...]
    se: tuple[float, ...]
    df: float
    f: float
    df_num: float
    p: float
    n_pairs: int
    undetermined: str = ""

    def interval(self, i: int) -> tuple[float, float]:
        """The ``CONFIDENCE`` t interval of ``effects[i]``."""
        half = t_quantile(0.5 + CONFIDENCE / 2, self.df) * self.se[i]
        return self.effects[i] - half, self.effects[i] + half

    def p_loss(self) -> tuple[float, ...]:
        """Per later level, the one-sided p of H0: its difference is not below the first level's."""
        from scipy.stats import t

        return tuple(float(t.cdf(e / s, self.df)) for e, s in zip(self.effects, self.se))

    def p_within(self, margin: float) -> float:
        """The one-sided p (intersection-union: the largest) of H0: some later level's difference is below the
        first level's by ``margin`` or more (non-inferiority of every level; no correction needed)."""
        from scipy.stats import t

        if self.undetermined or not self.effects:
            return math.nan
        return max(float(t.sf((e + margin) / s, self.df)) for e, s in zip(self.effects, self.se))


def interaction(cells: Mapping[tuple[Any, Any], Any]) -> Interaction:
    """``cells``: (level, other configuration) -> per-seed paired differences, levels in the order given (the
    first is the reference level). Only other configurations present at every level are used, so each level mean
    averages the same configurations."""
    levels = tuple(dict.fromkeys(level for level, _ in cells))
    others = [
        o for o in dict.fromkeys(other for _, other in cells) if all(len(cells.get((level, o), ())) for level in levels)
    ]
    nan = math.nan
    arrays = [np.asarray(cells[(level, other)], dtype=float) for level in levels for other in others]
    n_pairs = sum(len(a) for a in arrays)

    def undetermined(reason: str, means: tuple[float, ...] = ()) -> Interaction:
        return Interaction(levels, means, (), (), nan, nan, nan, nan, n_pairs, reason)

    if len(levels) < 2 or not others:
        return undetermined("no configuration ran at two levels")
    if any(not np.isfinite(a).all() for a in arrays):
        return undetermined("missing values")
    k = len(others)
    means = tuple(float(np.mean([a.mean() for a in arrays[i * k : (i + 1) * k]])) for i in range(len(levels)))
    if n_pairs - len(arrays) < MIN_SEEDS - 1:
        return undetermined(f"{n_pairs} pairs in {len(arrays)} cells: too few seeds", means)
    contrast = np.zeros((len(levels) - 1, len(arrays)))
    for i in range(1, len(levels)):
        contrast[i - 1, i * k : (i + 1) * k] = 1.0 / k
        contrast[i - 1, :k] = -1.0 / k
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = _cell_ols(arrays)
        if not math.sqrt(max(float(fit.scale), 0.0)) >= NEAR_ZERO_SD:
            return undetermined("zero variance of the per-seed differences: identical values are no evidence", means)
        ftest, ttest = fit.f_test(contrast), fit.t_test(contrast)
    effects = tuple(float(e) for e in np.atleast_1d(np.squeeze(ttest.effect)))
    se = tuple(float(s) for s in np.atleast_1d(np.squeeze(ttest.sd)))
    return Interaction(
        levels,
        means,
        effects,
        se,
        float(ttest.df_denom),
        float(np.squeeze(ftest.fvalue)),
        float(ftest.df_num),
        float(np.squeeze(ftest.pvalue)),
        n_pairs,
    )


def more_failures(failed_treatment: int, runs_treatment: int, failed_reference: int, runs_reference: int) -> float:
    """One-sided p (Fisher's exact test) that the treatment fails (fails or diverges) more often than the reference;
    NaN when neither failed (no test made)."""
    from scipy.stats import fisher_exact

    if not failed_treatment and not failed_reference:
        return math.nan
    table = [
        [failed_treatment, runs_treatment - failed_treatment],
        [failed_reference, runs_reference - failed_reference],
    ]
    return float(fisher_exact(table, alternative="greater").pvalue)


# ---- intervals, probability of improvement, power -----------------------------------------------------------------
def bootstrap_interval(x: Sequence[float], y: Sequence[float], paired: bool) -> tuple[float, float] | None:
    """The BCa bootstrap interval (scipy.stats.bootstrap, fixed seed) of the mean difference, resampling seeds
    (paired) or each arm's runs; None below :data:`BOOTSTRAP_MIN_SEEDS` a side, where it under-covers."""
    if min(len(x), len(y)) < BOOTSTRAP_MIN_SEEDS:
        return None
    from scipy.stats import bootstrap

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (all-equal) samples warn; the interval is then NaN
        if paired:
            res = bootstrap(
                (np.subtract(x, y),),
                np.mean,
                confidence_level=CONFIDENCE,
                n_resamples=BOOTSTRAP_RESAMPLES,
                method="BCa",
                rng=rng,
            )
        else:
            res = bootstrap(
                (np.asarray(x), np.asarray(y)),
                lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
                confidence_level=CONFIDENCE,
                n_resamples=BOOTSTRAP_RESAMPLES,
                method="BCa",
                rng=rng,
            )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


@dataclass(frozen=True)
class Share:
    """P(treatment beats reference on a seed): the paired share of seeds won (ties half), its Wilson interval."""

    value: float
    low: float
    high: float
    n: int


def p_improvement(x: Sequence[float], y: Sequence[float]) -> Share | None:
    """The paired share of seeds on which x beats y (ties count half), with its Wilson ``CONFIDENCE`` interval
    (statsmodels proportion_confint); None below :data:`P_BETTER_MIN_PAIRS` pairs."""
    if len(x) != len(y) or len(x) < P_BETTER_MIN_PAIRS:
        return None
    from statsmodels.stats.proportion import proportion_confint

    d = np.subtract(x, y)
    won = float((d > 0).sum() + 0.5 * (d == 0).sum())
    low, high = proportion_confint(won, len(d), alpha=1 - CONFIDENCE, method="wilson")
    return Share(won / len(d), float(low), float(high), len(d))


def _power(effect: float, n_treatment: int, n_reference: int | None, alpha: float) -> float:
    """The power of the two-sided t test at ``alpha`` for a standardised difference (statsmodels ``TTestPower`` /
    ``TTestIndPower``: the noncentral t distribution)."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_reference is None:
            value = TTestPower().power(effect_size=effect, nobs=n_treatment, alpha=alpha)
        else:
            value = TTestIndPower().power(
                effect_size=effect, nobs1=n_treatment, alpha=alpha, ratio=n_reference / n_treatment
            )
    value = float(np.squeeze(value))
    if math.isnan(value) and effect > 0:
        # statsmodels adds the lower tail, scipy's noncentral t cdf far below its centre, which is NaN at some
        # effects (n = 4, effect 4.0 with scipy 1.17); for a positive effect that tail is below alpha / 2 and
        # shrinking, so the upper tail alone is the power to the precision that matters here.
        from scipy.stats import nct, t

        df = n_treatment - 1 if n_reference is None else n_treatment + n_reference - 2
        scale = (
            math.sqrt(n_treatment)
            if n_reference is None
            else math.sqrt(n_treatment * n_reference / (n_treatment + n_reference))
        )
        value = float(nct.sf(t.ppf(1 - alpha / 2, df), df, effect * scale))
    return value


@lru_cache(maxsize=4096)
def detectable_effect(n_treatment: int, n_reference: int | None, alpha: float) -> float:
    """The standardised difference (in standard deviations) detectable at :data:`POWER` with a two-sided level
    ``alpha``: paired over ``n_treatment`` pairs (``n_reference`` None), else two independent arms. The root of
    statsmodels' power function (scipy ``brentq``): statsmodels' own ``solve_power`` returns non-solutions without a
    word at small levels (n = 4, alpha = 0.005: an effect whose power is 0.52)."""
    from scipy.optimize import brentq

    def short(effect: float) -> float:
        return _power(effect, n_treatment, n_reference, alpha) - POWER

    high = 1.0
    while not short(high) >= 0:  # double until the power is reached; NaN: beyond the noncentral t's numerics
        if math.isnan(short(high)) or high > 1e6:
            return math.inf
        high *= 2
    return float(brentq(short, high / 2 if high > 1 else 1e-9, high, xtol=1e-10))


def detectable_difference(
    sd: float, n_treatment: int, n_reference: int | None = None, alpha: float = ALPHA
) -> float | None:
    """The smallest difference detectable at :data:`POWER` with these seeds and this seed standard deviation (of
    the paired differences, or of the runs for two arms); None without a usable sd or seeds."""
    if not (finite(sd) and sd >= NEAR_ZERO_SD) or n_treatment < 2 or (n_reference is not None and n_reference < 2):
        return None
    return detectable_effect(n_treatment, n_reference, alpha) * sd


def seeds_needed(sd: float, difference: float, paired: bool = True, alpha: float = ALPHA) -> int | None:
    """The fewest seeds (pairs, or per arm; at least :data:`MIN_SEEDS`) whose power to detect ``difference`` at this
    seed standard deviation reaches :data:`POWER` (power rises with n: doubling, then bisection); None without a
    usable sd, or beyond :data:`MAX_SEEDS`."""
    if not (finite(sd) and sd >= NEAR_ZERO_SD) or not difference > 0:
        return None

    def enough(n: int) -> bool:
        return _power(difference / sd, n, None if paired else n, alpha) >= POWER

    low, high = MIN_SEEDS, MIN_SEEDS
    while not enough(high):
        if high >= MAX_SEEDS:
            return None
        low, high = high + 1, min(2 * high, MAX_SEEDS)
    while low < high:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle + 1
    return high


# ---- helpers --------------------------------------------------------------------------------------------------------
def finite(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
