"""The report's statistics, each defined once: per-configuration mean, std and 95% confidence interval over seeds,
the scale-minus-softmax difference of every pair of configurations that differ only in normalization (paired by
seed when the seeds match, Welch otherwise) with a plain verdict, and the table of the paper's four claims.

Accuracies are fractions in [0, 1] as the runs record them; differences are reported in percentage points of
top-1 accuracy (positive: scale is better). The Student t quantile is computed here exactly (bisection on the
regularised incomplete beta function) rather than with scipy, which is not a dependency: the report needs only
this one quantile, and a 40-line function tested against table values beats a 40 MB install.
No torch import: the report runs on machines and in notebooks without the training stack.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlbench.run import BEST_ACC1, FINAL_ACC1, IMAGES_PER_S

CONFIDENCE = 0.95
NORMALIZATION = "normalization"
# What "best" means, said wherever it is shown: the paper selects the epoch on the test split.
BEST_NOTE = ("*best*: the highest top-1 over all epochs on the evaluation split; as in the paper, that split is the "
             "test set, so *best* selects on the test data and is optimistic; *final*: the last epoch")


# ---- Student t ----------------------------------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily integer) degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (e.g. p=0.975, df=2 -> 4.303), to about 1e-12."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return Estimate(0, None, None, None, None)
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Estimate(1, mean, None, None, None)
    std = statistics.stdev(xs)
    half = t_quantile(0.5 + confidence / 2, len(xs) - 1) * std / math.sqrt(len(xs))
    return Estimate(len(xs), mean, std, mean - half, mean + half)


# ---- scale minus softmax --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """scale - softmax of one metric for one pair of configurations, in the metric's units."""

    metric: str
    config: dict[str, Any]  # the configuration without its normalization
    method: str  # "paired" (by seed), "Welch", or "too few seeds"
    n_scale: int
    n_softmax: int
    mean: float | None
    low: float | None
    high: float | None
    df: float | None

    @property
    def verdict(self) -> str:
        """"scale better", "softmax better", or "no significant difference at n=..." (or too few seeds)."""
        n = self.n_scale if self.n_scale == self.n_softmax else f"{self.n_scale}/{self.n_softmax}"
        if self.low is None or self.high is None:
            return f"too few seeds to tell (n={n})"
        if self.low > 0:
            return "scale better"
        if self.high < 0:
            return "softmax better"
        return f"no significant difference at n={n}"


def difference(
    scale_runs: Sequence[Mapping[str, Any]], softmax_runs: Sequence[Mapping[str, Any]], metric: str,
    config: Mapping[str, Any] | None = None, confidence: float = CONFIDENCE,
) -> Difference:
    """scale - softmax of ``metric``: paired over seeds when both sides have the same set of seeds (>= 2), else
    Welch's unequal-variance interval (>= 2 runs a side)."""
    def by_seed(runs: Sequence[Mapping[str, Any]]) -> dict[Any, float]:
        return {run.get("seed"): float(run[metric]) for run in runs if _finite(run.get(metric))}

    a, b = by_seed(scale_runs), by_seed(softmax_runs)
    xs = [float(run[metric]) for run in scale_runs if _finite(run.get(metric))]
    ys = [float(run[metric]) for run in softmax_runs if _finite(run.get(metric))]
    base = {"metric": metric, "config": dict(config or {}), "n_scale": len(xs), "n_softmax": len(ys)}
    paired = None not in a and set(a) == set(b) and len(a) == len(xs) == len(ys) >= 2
    if paired:
        diffs = estimate([a[seed] - b[seed] for seed in a], confidence)
        return Difference(method="paired", mean=diffs.mean, low=diffs.low, high=diffs.high, df=len(a) - 1, **base)
    mean = statistics.fmean(xs) - statistics.fmean(ys) if xs and ys else None
    if len(xs) < 2 or len(ys) < 2:
        return Difference(method="too few seeds", mean=mean, low=None, high=None, df=None, **base)
    va, vb = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(method="Welch", mean=mean, low=mean, high=mean, df=None, **base)
    df = (va + vb) ** 2 / (va**2 / (len(xs) - 1) + vb**2 / (len(ys) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * se
    return Difference(method="Welch", mean=mean, low=mean - half, high=mean + half, df=df, **base)


def normalization_pairs(
    runs: Sequence[Mapping[str, Any]], keys: Sequence[str], metric: str
) -> list[Difference]:
    """For each configuration (values of ``keys`` other than normalization) run with both scale and softmax, the
    difference scale - softmax of ``metric`` over the given (finished) runs."""
    others = [key for key in keys if key != NORMALIZATION]
    groups: dict[tuple[Any, ...], dict[str, list[Mapping[str, Any]]]] = {}
    for run in runs:
        groups.setdefault(_config(run, others), {}).setdefault(str(run.get(NORMALIZATION)), []).append(run)
    return [difference(sides["scale"], sides["softmax"], metric, dict(zip(others, config)))
            for config, sides in groups.items() if "scale" in sides and "softmax" in sides]


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
    pairs = normalization_pairs(runs, keys, BEST_ACC1)
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
    return tuple(tuple(run[k]) if isinstance(run.get(k), list) else run.get(k) for k in keys)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.2f}%"
