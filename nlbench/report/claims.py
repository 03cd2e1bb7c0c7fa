"""The paper's four claims, each decided by a test of the claim on the deciding metric (docs/statistics.md):

1. removing magnitude degrades softmax attention: direction - dot within matched configurations (one stratified
   paired estimate, :func:`nlbench.report.stats.stratified`; never pooled across other keys);
2. scale improves on softmax: one stratified paired estimate over every matched configuration, and "better in k of
   m configurations" read from the normalization family of the comparisons section (Holm over that family);
3. the scaled block is robust to the reduction ratio and the initialisation: per level, does scale - softmax change
   against the first level (interaction contrasts, :func:`nlbench.report.stats.interaction`), with failed and
   diverged runs counted per arm and level and tested (:func:`nlbench.report.stats.more_failures`);
4. multi-head attention at no cost: per head count against the fewest heads, the accuracy within +-margin (TOST)
   and the throughput ratio with its interval, no slower than :data:`THROUGHPUT_TOLERANCE` (one-sided).

Each claim is one family: Holm over the tests it makes. The ``decide_*`` functions take the tests' results, so the
calibration tests call exactly what the report calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nlbench.report import stats
from nlbench.report.compare import NORMALIZATION, Families, NoSeed, config_of, frozen, values_by_seed
from nlbench.schema import IMAGES_PER_S

CLAIMS: tuple[str, ...] = (
    "1. Softmax attention depends mostly on key magnitude; removing magnitude degrades accuracy",
    "2. Replacing softmax with a scaling factor improves accuracy",
    "3. The scaled block is robust to embedding channel reduction and to the initialisation",
    "4. Multi-head attention without additional computational cost",
)
SUPPORTED, CONTRADICTED, NO_EFFECT = "supported", "contradicted", "not supported: no effect beyond the margin"
INCONCLUSIVE, UNDETERMINED, NOT_TESTED = "inconclusive", "undetermined", "not tested by this data"
# Claim 4: "no cost" in throughput means at most this much slower (images/s ratio >= 1 - tolerance).
THROUGHPUT_TOLERANCE = 0.05
FAILED = ("failed", "diverged")  # outcomes of a run that trained and did not finish: counted, never dropped


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    verdict: str  # SUPPORTED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, UNDETERMINED or NOT_TESTED
    evidence: str


def claims(runs: Sequence[Mapping[str, Any]], keys: Sequence[str], families: Families) -> list[ClaimResult]:
    """Each of :data:`CLAIMS` and what ``runs`` (every run: finished ones are measured, failed and diverged ones
    counted) support; ``keys`` are the varying keys, ``families`` the report's comparison families."""
    finished = [run for run in runs if run.get("status") == "finished"]
    return [
        claim_magnitude(finished, keys, families),
        claim_scale(finished, keys, families),
        claim_robust(runs, keys, families),
        claim_heads(finished, keys, families),
    ]


# ---- decisions (on test results; the calibration tests call these) ---------------------------------------------------
def decide_directional(result: stats.Stratified, sign: int) -> str:
    """A claim that the difference has ``sign`` (+1: positive): supported or contradicted by the two-sided
    stratified test at ALPHA, "no effect" when TOST puts it within the margin, else inconclusive."""
    if result.undetermined:
        return UNDETERMINED
    if result.p < stats.ALPHA:
        return SUPPORTED if np.sign(result.mean) == sign else CONTRADICTED
    if result.p_equivalent < stats.ALPHA:
        return NO_EFFECT
    return INCONCLUSIVE


def decide_robust(
    interactions: Sequence[stats.Interaction], p_failures: float, margin: float, failures_at_most_reference: bool
) -> tuple[str, np.ndarray]:
    """Claim 3 from its tests: contradicted when, after Holm over the claim's tests (each later level's one-sided
    loss of scale - softmax against the first level, for every key, and the failure test), any rejects; supported
    when every level of every key is within ``margin`` of the first (intersection-union) and scale failed no more
    often than softmax at any level; else inconclusive. Returns the verdict and the adjusted p-values (the loss
    tests in order, then the failure test)."""
    p = [value for inter in interactions for value in (inter.p_loss() if not inter.undetermined else ())]
    adjusted = stats.holm(np.array([*p, p_failures], dtype=float))
    if not any(not inter.undetermined for inter in interactions) and not math.isfinite(p_failures):
        return UNDETERMINED, adjusted
    if np.nan_to_num(adjusted, nan=1.0).min(initial=1.0) < stats.ALPHA:
        return CONTRADICTED, adjusted
    within = [inter.p_within(margin) for inter in interactions]
    if within and all(w < stats.ALPHA for w in within) and failures_at_most_reference:
        return SUPPORTED, adjusted
    return INCONCLUSIVE, adjusted


def decide_no_cost(
    accuracy: Sequence[stats.Stratified], speed: Sequence[stats.Stratified], margin: float
) -> tuple[str, np.ndarray]:
    """Claim 4 from its tests, per head count: supported when every accuracy is within ``margin`` (TOST) and every
    throughput ratio is above 1 - THROUGHPUT_TOLERANCE (one-sided), all of them (intersection-union); contradicted
    when, after Holm over the claim's tests (accuracy two-sided with a loss, throughput one-sided below the
    tolerance), any rejects; else inconclusive. Returns the verdict and the adjusted p-values."""
    floor = math.log1p(-THROUGHPUT_TOLERANCE)
    loss = [a.p if not a.undetermined and a.mean < 0 else (math.nan if a.undetermined else 1.0) for a in accuracy]
    slower = [s.p_below(floor) for s in speed]
    adjusted = stats.holm(np.array([*loss, *slower], dtype=float))
    if all(a.undetermined for a in accuracy) and all(s.undetermined for s in speed):
        return UNDETERMINED, adjusted
    if np.nan_to_num(adjusted, nan=1.0).min(initial=1.0) < stats.ALPHA:
        return CONTRADICTED, adjusted
    equivalent = all(not a.undetermined and a.p_equivalent < stats.ALPHA for a in accuracy)
    fast = all(not s.undetermined and s.p_above(floor) < stats.ALPHA for s in speed)
    return (SUPPORTED if equivalent and fast and accuracy else INCONCLUSIVE), adjusted


# ---- the claims on runs ----------------------------------------------------------------------------------------------
def paired_cells(
    runs: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    key: str,
    treatment: Any,
    reference: Any,
    metric: str,
    transform: Any = None,
) -> dict[tuple[Any, ...], np.ndarray]:
    """Per configuration of the other ``keys``: treatment - reference of ``metric`` on each seed both ran (the mean
    of a seed that ran twice), ``transform`` applied to the values first (e.g. log for a ratio)."""
    others = [k for k in keys if k != key]
    groups: dict[tuple[Any, ...], dict[Any, list[Mapping[str, Any]]]] = {}
    for run in runs:
        groups.setdefault(config_of(run, others), {}).setdefault(str(frozen(run.get(key))), []).append(run)
    cells = {}
    for config, sides in groups.items():
        if str(treatment) not in sides or str(reference) not in sides:
            continue
        a, _ = values_by_seed(sides[str(treatment)], metric)
        b, _ = values_by_seed(sides[str(reference)], metric)
        seeds = [s for s in a if not isinstance(s, NoSeed) and s in b]
        if seeds:
            x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
            if transform is not None:
                with np.errstate(all="ignore"):
                    x, y = transform(x), transform(y)
            cells[config] = x - y
    return cells


def claim_magnitude(finished: Sequence[Mapping[str, Any]], keys: Sequence[str], families: Families) -> ClaimResult:
    if "similarity" not in keys:
        return ClaimResult(
            CLAIMS[0],
            NOT_TESTED,
            "no similarity axis; sweep similarity dot/direction, or run `nlbench analyze` on a trained softmax run",
        )
    softmax = [run for run in finished if run.get(NORMALIZATION) == "softmax"]
    cells = paired_cells(softmax, keys, "similarity", "direction", "dot", families.metric)
    if not cells:
        return ClaimResult(
            CLAIMS[0],
            NOT_TESTED,
            "needs softmax runs of similarity dot and direction in the same configuration and seeds",
        )
    result = stats.stratified(list(cells.values()), families.margin)
    family = families.get("similarity", reference="dot")
    rows = [c for c in family.of("direction") if c.context.get(NORMALIZATION, "softmax") == "softmax"]
    evidence = (
        f"softmax, direction (magnitude removed) − dot, {_estimate_text(result, families)}; "
        "per configuration " + _per_configuration(family, rows, "direction", "dot")
    )
    return ClaimResult(CLAIMS[0], decide_directional(result, -1), evidence)


def claim_scale(finished: Sequence[Mapping[str, Any]], keys: Sequence[str], families: Families) -> ClaimResult:
    if NORMALIZATION not in keys:
        return ClaimResult(CLAIMS[1], NOT_TESTED, "normalization does not vary")
    both = [run for run in finished if run.get(NORMALIZATION) in ("scale", "softmax")]
    cells = paired_cells(both, keys, NORMALIZATION, "scale", "softmax", families.metric)
    if not cells:
        return ClaimResult(CLAIMS[1], NOT_TESTED, "no configuration ran both scale and softmax on a shared seed")
    result = stats.stratified(list(cells.values()), families.margin)
    family = families.get(NORMALIZATION, reference="softmax")
    datasets = sorted({str(run["dataset"]) for run in both if run.get("dataset") is not None})
    where = f" on {', '.join(datasets)}" if datasets else ""
    evidence = f"scale − softmax{where}, {_estimate_text(result, families)}; per configuration " + _per_configuration(
        family, family.of("scale"), "scale", "softmax"
    )
    return ClaimResult(CLAIMS[1], decide_directional(result, +1), evidence)


def claim_robust(runs: Sequence[Mapping[str, Any]], keys: Sequence[str], families: Families) -> ClaimResult:
    factors = [key for key in ("reduction", "init") if key in keys]
    if not factors or NORMALIZATION not in keys:
        return ClaimResult(CLAIMS[2], NOT_TESTED, "needs scale and softmax runs over several reductions or inits")
    arms = [run for run in runs if run.get(NORMALIZATION) in ("scale", "softmax")]
    finished = [run for run in arms if run.get("status") == "finished"]
    interactions, parts, levels_of = [], [], {}
    for factor in factors:
        levels = _levels(factor, arms)
        levels_of[factor] = levels
        others = [k for k in keys if k not in (NORMALIZATION, factor)]
        by_level = {
            level: paired_cells(
                [r for r in finished if frozen(r.get(factor)) == level],
                [*others, NORMALIZATION],
                NORMALIZATION,
                "scale",
                "softmax",
                families.metric,
            )
            for level in levels
        }
        cells = {(level, other): d for level, configs in by_level.items() for other, d in configs.items()}
        interactions.append(stats.interaction(cells))
    counted = [run for run in arms if run.get("status") in ("finished", *FAILED)]
    failures = {
        arm: sum(r.get("status") in FAILED for r in counted if r.get(NORMALIZATION) == arm)
        for arm in ("scale", "softmax")
    }
    totals = {arm: sum(r.get(NORMALIZATION) == arm for r in counted) for arm in ("scale", "softmax")}
    p_fail = stats.more_failures(failures["scale"], totals["scale"], failures["softmax"], totals["softmax"])
    at_most = all(
        _failed(counted, "scale", f, level) <= _failed(counted, "softmax", f, level)
        for f in factors
        for level in levels_of[f]
    )
    verdict, adjusted = decide_robust(interactions, p_fail, families.margin, at_most)
    family_size = int(np.isfinite(adjusted).sum())
    k = 0
    for factor, inter in zip(factors, interactions):
        levels = levels_of[factor]
        text = (
            f"over {factor}, scale − softmax by level: "
            + ", ".join(f"{_level(factor, level)} {_pt(mean)}" for level, mean in zip(inter.levels, inter.level_means))
            if inter.level_means
            else f"over {factor}: "
        )
        if inter.undetermined:
            text += f" (interaction undetermined: {inter.undetermined})"
        else:
            changes = []
            for i, level in enumerate(inter.levels[1:]):
                low, high = inter.interval(i)
                changes.append(
                    f"{_level(factor, level)} {_pt(inter.effects[i])} [{_pt(low)}, {_pt(high)}]"
                    f" (Holm p{_p(adjusted[k])})"
                )
                k += 1
            text += (
                f"; change against {_level(factor, inter.levels[0])}: "
                + ", ".join(changes)
                + f"; interaction F({inter.df_num:.0f}, {inter.df:.0f})={inter.f:.2f}, p{_p(inter.p)}"
            )
        text += "; failed or diverged: " + _failure_text(counted, factor, levels)
        parts.append(text)
    fail = f"scale failed {failures['scale']}/{totals['scale']}, softmax {failures['softmax']}/{totals['softmax']}" + (
        "" if not math.isfinite(p_fail) else f" (Fisher p{_p(p_fail)}, Holm p{_p(adjusted[-1])})"
    )
    evidence = (
        "; ".join(parts) + f"; {fail}. {families.label}; one family of {family_size} test(s), Holm; robust "
        f"= every level within ±{100 * families.margin:g} pt of the first"
    )
    return ClaimResult(CLAIMS[2], verdict, evidence)


def claim_heads(finished: Sequence[Mapping[str, Any]], keys: Sequence[str], families: Families) -> ClaimResult:
    if "heads" not in keys:
        return ClaimResult(CLAIMS[3], NOT_TESTED, "heads not varied")
    scale = [run for run in finished if run.get(NORMALIZATION, "scale") == "scale"]
    heads = _levels("heads", scale)
    if len(heads) < 2:
        return ClaimResult(CLAIMS[3], NOT_TESTED, "scale runs with a single head count")
    reference = heads[0]
    accuracy, speed, parts = [], [], []
    for h in heads[1:]:
        acc = stats.stratified(
            list(paired_cells(scale, keys, "heads", h, reference, families.metric).values()), families.margin
        )
        fast = stats.stratified(
            list(paired_cells(scale, keys, "heads", h, reference, IMAGES_PER_S, transform=np.log).values()),
            families.margin,
        )
        accuracy.append(acc)
        speed.append(fast)
        ratio = (
            "–"
            if fast.undetermined
            else (f"{math.exp(fast.mean):.2f}× [{math.exp(fast.low):.2f}, {math.exp(fast.high):.2f}]")
        )
        parts.append(f"h{h} − h{reference}: {_estimate_text(acc, families, tost=True)}; images/s ratio {ratio}")
    verdict, adjusted = decide_no_cost(accuracy, speed, families.margin)
    evidence = (
        "scale: " + "; ".join(parts) + f". No cost = accuracy within ±{100 * families.margin:g} pt (TOST) "
        f"and at most {100 * THROUGHPUT_TOLERANCE:g}% slower (throughput where the runs trained, see "
        f"Throughput); one family of {int(np.isfinite(adjusted).sum())} test(s), Holm"
    )
    return ClaimResult(CLAIMS[3], verdict, evidence)


# ---- helpers --------------------------------------------------------------------------------------------------------
def _levels(key: str, runs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The key's values, numbers ascending (the first is the reference level), others in the runs' order."""
    values = list(dict.fromkeys(frozen(run.get(key)) for run in runs if run.get(key) is not None))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return values


def _failed(runs: Sequence[Mapping[str, Any]], arm: str, key: str, level: Any) -> int:
    return sum(r.get("status") in FAILED for r in runs if r.get(NORMALIZATION) == arm and frozen(r.get(key)) == level)


def _failure_text(runs: Sequence[Mapping[str, Any]], key: str, levels: Sequence[Any]) -> str:
    parts = []
    for arm in ("scale", "softmax"):
        cells = []
        for level in levels:
            total = sum(r.get(NORMALIZATION) == arm and frozen(r.get(key)) == level for r in runs)
            cells.append(f"{_level(key, level)} {_failed(runs, arm, key, level)}/{total}")
        parts.append(f"{arm} " + " ".join(cells))
    return ", ".join(parts)


def _per_configuration(family: Any, rows: Sequence[Any], treatment: str, reference: str) -> str:
    """ "better in k of m configurations after Holm" from the shared family."""
    counts = family.counts(rows)
    made = sum(n for code, n in counts.items() if code != stats.UNDETERMINED)
    words = {
        stats.BETTER: f"{treatment} better",
        stats.WORSE: f"{reference} better",
        stats.EQUIVALENT: f"equivalent within ±{100 * family.margin:g} pt",
        stats.INCONCLUSIVE: "inconclusive",
        stats.UNDETERMINED: "undetermined",
    }
    listed = ", ".join(f"{n} {words[code]}" for code, n in counts.items())
    if not made:
        return f"({len(rows)}): none tested ({listed or 'no comparison'}; see Comparisons)"
    return (
        f"({len(rows)}, {made} tested): {treatment} better in {counts.get(stats.BETTER, 0)} of {made} after Holm "
        f"over the {family.key} family of {family.size} test(s) (see Comparisons): {listed}"
    )


def _estimate_text(result: stats.Stratified, families: Families, tost: bool = False) -> str:
    where = f"{result.n_configs} configuration(s), {result.n_pairs} seed pair(s)"
    if result.undetermined:
        mean = "" if not math.isfinite(result.mean) else f" {_pt(result.mean)} pt,"
        counted = "" if "seed pair(s) in" in result.undetermined else f"; {where}"
        return f"{families.label}:{mean} undetermined ({result.undetermined}{counted})"
    text = (
        f"{families.label}: {_pt(result.mean)} pt [{_pt(result.low)}, {_pt(result.high)}] over {where} "
        f"(stratified paired t, df={result.df:.0f}, p{_p(result.p)}"
    )
    if tost:
        text += f", TOST ±{100 * families.margin:g} pt p{_p(result.p_equivalent)}"
    return text + ")"


def _level(key: str, value: Any) -> str:
    return {"reduction": f"r{value}", "heads": f"h{value}"}.get(key, str(value))


def _pt(value: float) -> str:
    text = f"{100 * value:+.2f}"
    return text[1:] if float(text) == 0 else text


def _p(value: float) -> str:
    """``=0.123`` or ``<0.001``, to follow "p"."""
    if not math.isfinite(value):
        return "=–"
    return "<0.001" if value < 0.001 else f"={value:.3f}"
