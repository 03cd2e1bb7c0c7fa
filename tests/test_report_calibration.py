"""Issue 24: the report's verdicts calibrated by simulation (docs/statistics.md, "Calibration").

Simulated sweeps whose truth is set in advance: 10 configurations (reduction 1-16 x init normal/zeros) x 3 seeds,
two arms with unequal epoch-to-epoch noise (the noisier arm's best epoch is higher by chance alone). Each check
calls the decision functions the report calls (nlbench.report.stats, nlbench.report.claims) on numpy arrays, all
sweeps at once where the functions are vectorised. Fixed random seeds: the rates below are what these seeds give,
and the bounds are the nominal level plus twice its Monte Carlo standard error.
"""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from nlbench.report import claims, stats

SWEEPS = 1000  # null sweeps for the families (vectorised tests)
CLAIM_SWEEPS = 1000  # null sweeps for the claims (one OLS fit per claim and sweep)
REDUCTIONS, INITS, SEEDS, EPOCHS = (1, 2, 4, 8, 16), ("normal", "zeros"), 3, 8
CONFIGS = [(r, i) for r in REDUCTIONS for i in INITS]
MARGIN = stats.DEFAULT_MARGIN
DECISIVE = (stats.BETTER, stats.WORSE)


def bound(sweeps: int, level: float = stats.ALPHA) -> float:
    """The nominal level plus twice its Monte Carlo standard error."""
    return level + 2 * math.sqrt(level * (1 - level) / sweeps)


@pytest.fixture(scope="module", autouse=True)
def _fast_holm():
    # statsmodels' Holm (multipletests) calls gc.collect() on every call, which walks every object the test process
    # holds (25 ms here); frozen objects are skipped, so thousands of families take milliseconds. Everything the
    # decisions import (scipy, statsmodels) is imported first, so that it is frozen too.
    stats.family(stats.paired_test([[0.1, 0.2, 0.4]], [[0.0, 0.3, 0.1]]))
    stats.interaction({(level, 0): [0.1 * level, 0.2, 0.4] for level in (1, 2)})
    claims.decide_no_cost([stats.stratified([[0.1, 0.2, 0.4]])], [stats.stratified([[0.1, 0.2, 0.3]])], MARGIN)
    gc.freeze()
    yield
    gc.unfreeze()


def simulate(
    rng: np.random.Generator,
    sweeps: int,
    noisy: int,
    effect: float = 0.0,
    seeds: int = SEEDS,
    seed_sd: float = 0.004,
    epoch_sd: tuple[float, float] = (0.002, 0.008),
    flat: bool = False,
) -> dict[str, np.ndarray]:
    """Final and best top-1 of two arms (0, 1), shape (sweeps, configurations, seeds): a level per configuration
    (one level for all when ``flat``), a seed effect shared by both arms, per-epoch noise of sd ``epoch_sd[arm]``
    (arm ``noisy`` gets the larger), and ``effect`` added to arm 1 (the treatment)."""
    level = np.array(
        [0.80 - (0.0 if flat else 0.01 * math.log2(r) + (0.02 if i == "zeros" else 0.0)) for r, i in CONFIGS]
    )
    shared = level[None, :, None] + seed_sd * rng.standard_normal((sweeps, len(CONFIGS), seeds))
    climb = np.linspace(-0.002, 0.0, EPOCHS)  # the plateau of the learning curve: its last epochs
    out = {}
    for arm in (0, 1):
        sd = epoch_sd[1] if arm == noisy else epoch_sd[0]
        curve = shared[..., None] + climb + sd * rng.standard_normal((*shared.shape, EPOCHS))
        curve += effect if arm == 1 else 0.0
        out[f"final{arm}"], out[f"best{arm}"] = curve[..., -1], curve.max(axis=-1)
    return out


def family_wise(codes: np.ndarray) -> float:
    """The share of sweeps in which a family says better or worse anywhere."""
    return float(np.isin(codes, DECISIVE).any(axis=-1).mean())


# ---- the comparisons section: one family per key, family-wise at most 5% ------------------------------------------
def test_each_family_is_wrong_somewhere_in_at_most_5_percent_of_null_sweeps() -> None:
    """Nothing has an effect: normalization (scale noisier between epochs than softmax), reduction and init."""
    sim = simulate(np.random.default_rng(1), SWEEPS, noisy=1, flat=True)
    x, y = sim["final1"], sim["final0"]  # scale, softmax
    normalization = stats.family(stats.paired_test(x, y, MARGIN))
    assert (normalization.size == len(CONFIGS)).all()  # Holm over the 10 tests made: one family per key
    assert family_wise(normalization.codes) <= bound(SWEEPS)
    # The reduction family: each reduction against r1 within (normalization, init), 16 tests; init: 10 tests.
    arms = np.stack([y, x], axis=1)  # (sweeps, arm, configuration, seed)
    index = {config: k for k, config in enumerate(CONFIGS)}
    for pairs, size in (
        ([(index[(r, i)], index[(1, i)]) for r in REDUCTIONS[1:] for i in INITS], 16),
        ([(index[(r, "zeros")], index[(r, "normal")]) for r in REDUCTIONS], 10),
    ):
        treatment = np.concatenate([arms[:, :, a] for a, _ in pairs], axis=1)
        reference = np.concatenate([arms[:, :, b] for _, b in pairs], axis=1)
        found = stats.family(stats.paired_test(treatment, reference, MARGIN))
        assert (found.size == size).all() and family_wise(found.codes) <= bound(SWEEPS)
    # The same sweeps decided on best top-1 (the former rule): the noisier arm "wins" far more often than 5%.
    assert family_wise(stats.family(stats.paired_test(sim["best1"], sim["best0"])).codes) > 0.2
    # A family per configuration (the former rule: Holm within one configuration) is wrong somewhere in ~40%.
    per_configuration = stats.family(stats.paired_test(x[..., None, :], y[..., None, :]))
    assert family_wise(per_configuration.codes[..., 0]) > 0.25


# ---- the claims: each says "better" (its false verdict) in at most 5% of null sweeps -------------------------------
def _claim_rates(x: np.ndarray, y: np.ndarray, sign: int) -> float:
    verdicts = [claims.decide_directional(stats.stratified(list(x[s] - y[s]), MARGIN), sign) for s in range(len(x))]
    return float(np.mean([v == claims.SUPPORTED for v in verdicts]))


def test_claims_1_and_2_are_supported_in_at_most_5_percent_of_null_sweeps() -> None:
    sim = simulate(np.random.default_rng(3), CLAIM_SWEEPS, noisy=1)
    assert _claim_rates(sim["final1"], sim["final0"], +1) <= bound(CLAIM_SWEEPS)  # claim 2: scale better
    assert _claim_rates(sim["best1"], sim["best0"], +1) > 0.5  # on best top-1, the noisier scale "wins"
    # Claim 1 (direction - dot < 0): dot is the noisier arm here, so best top-1 would "support" it.
    sim = simulate(np.random.default_rng(4), CLAIM_SWEEPS, noisy=0)
    assert _claim_rates(sim["final1"], sim["final0"], -1) <= bound(CLAIM_SWEEPS)
    assert _claim_rates(sim["best1"], sim["best0"], -1) > 0.5


def test_claim_3_is_contradicted_in_at_most_5_percent_of_null_sweeps() -> None:
    sim = simulate(np.random.default_rng(5), CLAIM_SWEEPS, noisy=1)
    d = sim["final1"] - sim["final0"]
    verdicts = []
    for s in range(CLAIM_SWEEPS):
        cells = {config: d[s, k] for k, config in enumerate(CONFIGS)}
        over_r = stats.interaction({(r, i): cells[(r, i)] for r in REDUCTIONS for i in INITS})
        over_init = stats.interaction({(i, r): cells[(r, i)] for i in INITS for r in REDUCTIONS})
        verdicts.append(claims.decide_robust([over_r, over_init], math.nan, MARGIN, True)[0])
    assert np.mean([v == claims.CONTRADICTED for v in verdicts]) <= bound(CLAIM_SWEEPS)


def test_claim_4_at_the_margin_is_supported_in_at_most_5_percent() -> None:
    """No cost is an equivalence claim: at a true cost of exactly the margin (0.5 pt), or of exactly the throughput
    tolerance (5% slower), it must read supported in at most 5% of sweeps."""
    rng = np.random.default_rng(6)
    floor = math.log1p(-claims.THROUGHPUT_TOLERANCE)
    rates = []
    for cost, slower in ((-MARGIN, 0.0), (0.0, floor)):
        acc = simulate(rng, CLAIM_SWEEPS, noisy=1, effect=cost, seed_sd=0.002, epoch_sd=(0.0005, 0.0005))
        ips = simulate(rng, CLAIM_SWEEPS, noisy=1, effect=slower, seed_sd=0.0, epoch_sd=(0.002, 0.002))
        supported = 0
        for s in range(CLAIM_SWEEPS):
            a = stats.stratified(list(acc["final1"][s] - acc["final0"][s]), MARGIN)
            v = stats.stratified(list(ips["final1"][s] - ips["final0"][s]), MARGIN)  # log images/s
            supported += claims.decide_no_cost([a], [v], MARGIN)[0] == claims.SUPPORTED
        rates.append(supported / CLAIM_SWEEPS)
    assert max(rates) <= bound(CLAIM_SWEEPS)
    # Well inside both bounds it is found.
    acc = simulate(rng, 100, noisy=1, seed_sd=0.002, epoch_sd=(0.0005, 0.0005))
    ips = simulate(rng, 100, noisy=1, seed_sd=0.0, epoch_sd=(0.002, 0.002))
    found = [
        claims.decide_no_cost(
            [stats.stratified(list(acc["final1"][s] - acc["final0"][s]), MARGIN)],
            [stats.stratified(list(ips["final1"][s] - ips["final0"][s]), MARGIN)],
            MARGIN,
        )[0]
        for s in range(100)
    ]
    assert np.mean([v == claims.SUPPORTED for v in found]) >= 0.8


# ---- power: a true +1 pt is found ------------------------------------------------------------------------------------
def test_a_true_one_point_effect_with_five_seeds_is_found() -> None:
    """+1 pt, seed sd 0.3 pt per run, 5 seeds: one comparison says better in at least 80% of sweeps, and claim 2
    (the same effect in 10 configurations) is supported in at least 80%."""
    rng = np.random.default_rng(7)
    softmax = 0.75 + 0.003 * rng.standard_normal((SWEEPS, 1, 5))
    scale = 0.76 + 0.003 * rng.standard_normal((SWEEPS, 1, 5))
    one = stats.family(stats.paired_test(scale, softmax))
    assert np.mean(one.codes == stats.BETTER) >= 0.8
    sim = simulate(rng, 200, noisy=1, effect=0.01, seeds=5, seed_sd=0.0, epoch_sd=(0.003, 0.003))
    assert _claim_rates(sim["final1"], sim["final0"], +1) >= 0.8
    # The power the report states for that comparison: detectable at 80% is below the true effect.
    assert stats.detectable_difference(0.003 * math.sqrt(2), 5) < 0.01


# ---- intervals: the t interval covers --------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(2, 11))
def test_t_intervals_cover_95_percent(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    truth, draws = 0.004, 4000
    d = truth + 0.005 * rng.standard_normal((draws, n))
    tested = stats.paired_test(d, np.zeros_like(d))
    covered = (tested.low <= truth) & (truth <= tested.high)
    assert 0.93 <= covered.mean() <= 0.97
    # One configuration's accuracy interval (stats.estimate), as in the configuration table.
    accs = 0.7 + 0.01 * rng.standard_normal((1000, n))
    hits = []
    for row in accs:
        est = stats.estimate(row, bounds=(0.0, 1.0))
        hits.append(est.low <= 0.7 <= est.high)
    assert 0.93 <= np.mean(hits) <= 0.97
