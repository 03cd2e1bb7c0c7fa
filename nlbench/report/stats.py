"""The report's statistics, each defined once: per-configuration mean, std and 95% confidence interval over seeds,
and comparisons along any varying key: each value against a reference (paired by seed when the seeds match, Welch
otherwise), with the t interval, a bootstrap interval (scipy.stats.bootstrap), the probability of improvement
P(treatment > reference) over seeds, and a verdict, Holm-corrected when a key has more than two values; the table
of the paper's four claims reads from the same comparisons.

Accuracies are fractions in [0, 1] as the runs record them; differences are in the metric's units (the report
shows percentage points). Student t quantiles come from scipy. No torch import: the report runs on machines and in
notebooks without the training stack.
"""

from __future__ import annotations

import inspect
import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from nlbench.run import BEST_ACC1, FINAL_ACC1, IMAGES_PER_S

CONFIDENCE = 0.95
NORMALIZATION = "normalization"
# The default reference per key (else the first value the runs take): the paper's baseline normalization.
DEFAULT_REFERENCES: dict[str, Any] = {NORMALIZATION: "softmax"}
BOOTSTRAP_RESAMPLES = 2000
# What "best" means, said wherever it is shown: the paper selects the epoch on the test split.
BEST_NOTE = ("*best*: the highest top-1 over all epochs on the evaluation split; as in the paper, that split is the "
             "test set, so *best* selects on the test data and is optimistic; *final*: the last epoch")


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (scipy.stats.t.ppf), cached: a report asks for few distinct ones."""
    from scipy.stats import t

    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(t.ppf(p, df))


def t_two_sided_p(t_value: float, df: float) -> float:
    from scipy.stats import t

    return float(2.0 * t.sf(abs(t_value), df))


# ---- one configuration ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Mean, sample std and ``CONFIDENCE`` interval (Student t) of n values; std and interval need n >= 2."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def estimate(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Estimate:
    """The :class:`Estimate` of the finite, non-missing ``values``."""
    xs = [float(v) for v in values if _finite(v)]
    if not xs:
        return Estimate(0, None, None, None, None)
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Estimate(1, mean, None, None, None)
    std = statistics.stdev(xs)
    half = t_quantile(0.5 + confidence / 2, len(xs) - 1) * std / math.sqrt(len(xs))
    return Estimate(len(xs), mean, std, mean - half, mean + half)


# ---- treatment minus reference ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """treatment - reference of one metric between two sets of runs, in the metric's units."""

    metric: str
    method: str  # "paired" (by seed), "Welch", or "too few seeds"
    n_treatment: int
    n_reference: int
    mean: float | None
    low: float | None
    high: float | None
    df: float | None
    p_value: float | None  # two-sided, of the t test the interval belongs to
    treatment_values: tuple[float, ...] = field(default=(), repr=False)
    reference_values: tuple[float, ...] = field(default=(), repr=False)

    @cached_property
    def p_improvement(self) -> float | None:
        """P(treatment > reference) over seeds (ties count half): the share of seeds where the treatment wins when
        paired, else of all (treatment, reference) pairs of runs."""
        xs, ys = self.treatment_values, self.reference_values
        if not xs or not ys:
            return None
        if self.method == "paired":
            wins = [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(xs, ys)]
        else:
            wins = [1.0 if x > y else 0.5 if x == y else 0.0 for x in xs for y in ys]
        return statistics.fmean(wins)

    @cached_property
    def bootstrap(self) -> tuple[float | None, float | None]:
        """The percentile bootstrap interval of the mean difference (scipy.stats.bootstrap, fixed seed): resampling
        seeds (paired) or each side's runs (Welch). Needs two values a side."""
        xs, ys = self.treatment_values, self.reference_values
        if len(xs) < 2 or len(ys) < 2:
            return None, None
        import numpy as np
        from scipy.stats import bootstrap

        # scipy >= 1.15 names the generator `rng` (random_state is deprecated there); older ones random_state.
        seeded = {"rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state":
                  np.random.default_rng(0)}  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate (all-equal) samples warn; the interval is then a point
            if self.method == "paired":
                diffs = np.subtract(xs, ys)
                res = bootstrap((diffs,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                                method="percentile", vectorized=True, axis=-1, **seeded)
            else:
                res = bootstrap((np.asarray(xs), np.asarray(ys)),
                                lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                                confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                                vectorized=True, axis=-1, **seeded)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        return (low if math.isfinite(low) else None), (high if math.isfinite(high) else None)


def difference(
    treatment_runs: Sequence[Mapping[str, Any]], reference_runs: Sequence[Mapping[str, Any]], metric: str,
    confidence: float = CONFIDENCE,
) -> Difference:
    """treatment - reference of ``metric``: paired over seeds when both sides have the same set of seeds (>= 2),
    else Welch's unequal-variance interval (>= 2 runs a side)."""
    def by_seed(runs: Sequence[Mapping[str, Any]]) -> dict[Any, float]:
        return {run.get("seed"): float(run[metric]) for run in runs if _finite(run.get(metric))}

    a, b = by_seed(treatment_runs), by_seed(reference_runs)
    xs = [float(run[metric]) for run in treatment_runs if _finite(run.get(metric))]
    ys = [float(run[metric]) for run in reference_runs if _finite(run.get(metric))]
    paired = None not in a and set(a) == set(b) and len(a) == len(xs) == len(ys) >= 2
    if paired:
        seeds = sorted(a, key=str)
        xs, ys = [a[seed] for seed in seeds], [b[seed] for seed in seeds]
    base = {"metric": metric, "n_treatment": len(xs), "n_reference": len(ys), "treatment_values": tuple(xs),
            "reference_values": tuple(ys)}  # fmt: skip
    if paired:
        diffs = [x - y for x, y in zip(xs, ys)]
        est = estimate(diffs, confidence)
        df = len(diffs) - 1
        se = (est.std or 0.0) / math.sqrt(len(diffs))
        p = _p_value(est.mean or 0.0, se, df)
        return Difference(method="paired", mean=est.mean, low=est.low, high=est.high, df=df, p_value=p, **base)
    mean = statistics.fmean(xs) - statistics.fmean(ys) if xs and ys else None
    if len(xs) < 2 or len(ys) < 2:
        return Difference(method="too few seeds", mean=mean, low=None, high=None, df=None, p_value=None, **base)
    assert mean is not None
    va, vb = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(method="Welch", mean=mean, low=mean, high=mean, df=None,
                          p_value=1.0 if mean == 0 else 0.0, **base)  # fmt: skip
    df = (va + vb) ** 2 / (va**2 / (len(xs) - 1) + vb**2 / (len(ys) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * se
    return Difference(method="Welch", mean=mean, low=mean - half, high=mean + half, df=df,
                      p_value=_p_value(mean, se, df), **base)  # fmt: skip


def _p_value(mean: float, se: float, df: float) -> float:
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return t_two_sided_p(mean / se, df)


# ---- comparisons along any key ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """One value of a key against the key's reference, within one configuration of the other keys."""

    key: str
    treatment: Any
    reference: Any
    context: dict[str, Any]  # the other keys' values, equal on both sides
    diff: Difference
    p_adjusted: float | None  # Holm-adjusted over the family (the key's values in this context), else p_value
    family: int  # how many comparisons share the correction

    @property
    def verdict(self) -> str:
        """"<treatment> better", "<reference> better", or "no significant difference at n=..." (too few seeds)."""
        d = self.diff
        n = d.n_treatment if d.n_treatment == d.n_reference else f"{d.n_treatment}/{d.n_reference}"
        if self.p_adjusted is None or d.mean is None:
            return f"too few seeds to tell (n={n})"
        if self.p_adjusted < 1.0 - CONFIDENCE:
            return f"{self.key}={self.treatment} better" if d.mean > 0 else f"{self.key}={self.reference} better"
        return f"no significant difference at n={n}"


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
    runs: Sequence[Mapping[str, Any]], keys: Sequence[str], key: str, metric: str, reference: Any = None,
) -> list[Comparison]:
    """Each value of ``key`` against its reference (:func:`reference_of`) in every configuration of the other
    ``keys`` that ran both, over the given (finished) runs; Holm-corrected within each configuration when it
    compares more than one value."""
    others = [k for k in keys if k != key]
    values = list(dict.fromkeys(_frozen(run.get(key)) for run in runs))
    if len(values) < 2:
        return []
    ref = reference_of(key, values, reference)
    groups: dict[tuple[Any, ...], dict[Any, list[Mapping[str, Any]]]] = {}
    for run in runs:
        groups.setdefault(_config(run, others), {}).setdefault(_frozen(run.get(key)), []).append(run)
    out: list[Comparison] = []
    for config, sides in groups.items():
        if ref not in sides:
            continue
        diffs = [(value, difference(sides[value], sides[ref], metric)) for value in values
                 if value != ref and value in sides]  # fmt: skip
        adjusted = holm([d.p_value for _, d in diffs])
        out += [Comparison(key, value, ref, dict(zip(others, config)), d, p, len(diffs))
                for (value, d), p in zip(diffs, adjusted)]
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, left out of the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


# ---- the paper's claims -----------------------------------------------------------------------------------------------
CLAIMS: tuple[str, ...] = (
    "1. Softmax attention depends mostly on key magnitude; removing magnitude degrades accuracy",
    "2. Replacing softmax with a scaling factor improves accuracy",
    "3. The scaled block is robust to embedding channel reduction and to the initialisation",
    "4. Multi-head attention without additional computational cost",
)
NOT_TESTED = "not tested by this data"


def claims(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[tuple[str, str]]:
    """(claim, what the finished ``runs`` support) for each of :data:`CLAIMS`; ``keys`` are the varying keys."""
    return [
        (CLAIMS[0], _claim_magnitude(runs, keys)),
        (CLAIMS[1], _claim_scale(runs, keys)),
        (CLAIMS[2], _claim_robust(runs, keys)),
        (CLAIMS[3], _claim_heads(runs, keys)),
    ]


def _claim_magnitude(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    if "similarity" not in keys:
        return (f"{NOT_TESTED} (no similarity axis; sweep similarity dot/direction, or run `nlbench analyze` on a "
                "trained softmax run)")
    softmax = [run for run in runs if run.get(NORMALIZATION) == "softmax"]
    dot = estimate(run.get(BEST_ACC1) for run in softmax if run.get("similarity") == "dot")
    direction = estimate(run.get(BEST_ACC1) for run in softmax if run.get("similarity") == "direction")
    if not dot.n or not direction.n:
        return f"{NOT_TESTED} (needs softmax runs with similarity dot and direction)"
    return (f"softmax best top-1: dot {_pct(dot.mean)}, direction (magnitude removed) {_pct(direction.mean)} "
            f"(n={dot.n}/{direction.n}); see the similarity rows of the configuration table")


def _claim_scale(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    both = [run for run in runs if run.get(NORMALIZATION) in ("scale", "softmax")]  # the paper's two methods
    pairs = compare(both, keys, NORMALIZATION, BEST_ACC1, reference="softmax") if NORMALIZATION in keys else []
    if not pairs:
        return f"{NOT_TESTED} (no configuration run with both scale and softmax)"
    verdicts: dict[str, int] = {}
    for pair in pairs:
        verdicts[pair.verdict] = verdicts.get(pair.verdict, 0) + 1
    counts = ", ".join(f"{count} × {verdict}" for verdict, count in verdicts.items())
    datasets = sorted({str(run["dataset"]) for run in runs if run.get("dataset") is not None})
    where = f" on {', '.join(datasets)}" if datasets else ""
    return f"best top-1, {len(pairs)} scale/softmax pair(s){where}: {counts}"


def _claim_robust(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    parts = []
    for key in ("reduction", "init"):
        if key not in keys:
            continue
        spread = {}
        for normalization in ("scale", "softmax"):
            means = [estimate(run.get(BEST_ACC1) for run in group).mean for group in
                     _groups([r for r in runs if r.get(NORMALIZATION) == normalization], key).values()]
            means = [m for m in means if m is not None]
            if len(means) > 1:
                spread[normalization] = 100.0 * (max(means) - min(means))
        if spread:
            text = ", ".join(f"{norm} {value:.2f} pp" for norm, value in spread.items())
            parts.append(f"range of mean best top-1 over {key}: {text}")
    if not parts:
        return f"{NOT_TESTED} (neither reduction nor init varies)"
    return "; ".join(parts) + " (smaller = more robust; ranges of means, no test)"


def _claim_heads(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    if "heads" not in keys:
        return f"{NOT_TESTED} (heads not varied)"
    scale = _groups([run for run in runs if run.get(NORMALIZATION) == "scale"], "heads")
    if len(scale) < 2:
        return f"{NOT_TESTED} (scale runs with a single head count)"
    parts = []
    for heads, group in sorted(scale.items(), key=lambda item: str(item[0])):
        speed, acc = estimate(r.get(IMAGES_PER_S) for r in group), estimate(r.get(BEST_ACC1) for r in group)
        speed_text = "–" if speed.mean is None else f"{speed.mean:.0f} img/s"
        parts.append(f"h{heads}: {speed_text}, best top-1 {_pct(acc.mean)}")
    return "scale: " + "; ".join(parts) + " (throughput: see where it was measured)"


# ---- helpers --------------------------------------------------------------------------------------------------------
METRIC_LABELS = {BEST_ACC1: "best top-1", FINAL_ACC1: "final top-1"}


def _groups(runs: Sequence[Mapping[str, Any]], key: str) -> dict[Any, list[Mapping[str, Any]]]:
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_config(run, [key]), []).append(run)
    return groups


def _config(run: Mapping[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    return tuple(_frozen(run.get(k)) for k in keys)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _finite(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.2f}%"
