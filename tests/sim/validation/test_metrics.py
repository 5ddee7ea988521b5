"""The metric battery on samples whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from flashlink.sim.validation.metrics import (
    c2st_auc,
    clopper_pearson,
    correlation_difference,
    efficiency_table,
    ks,
    robust_width,
    w1_core,
    w1_floor,
    w1_standardised,
)
from flashlink.sim.validation.oversampling import oversampling_study


def test_w1_is_in_units_of_the_reference_width() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 7, 200_000)
    assert w1_standardised(ref + 0.7, ref) == pytest.approx(0.1, abs=0.002)
    assert w1_standardised(ref, ref) == 0.0
    # the floor of two independent samples of 20k is ~1% of a width, and it is not zero
    floor = w1_floor(ref[:20_000], 20_000)
    assert 0.003 < floor < 0.02
    assert np.isnan(w1_standardised([], ref))
    # one failed fit at 1e9 rules the plain W1 (via the std), not the core W1
    spoiled = np.r_[ref[:20_000], 1e9]
    assert w1_standardised(ref[20_000:40_000] + 0.7, spoiled) < 0.02
    assert w1_core(ref[20_000:40_000] + 0.7, spoiled) == pytest.approx(0.1, abs=0.02)


def test_ks_and_correlations() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5000, 2))
    stat, p = ks(a[:, 0], rng.normal(size=5000))
    assert p > 0.001
    stat_shift, p_shift = ks(a[:, 0] + 0.5, rng.normal(size=5000))
    assert stat_shift > stat
    assert p_shift < 1e-10
    b = a.copy()
    b[:, 1] = 0.8 * b[:, 0] + 0.6 * b[:, 1]  # correlation 0.8 instead of 0
    diff = correlation_difference(b, a)
    assert diff["pearson"] == pytest.approx(np.sqrt(2) * 0.8, abs=0.05)
    assert correlation_difference(a, a)["spearman"] == 0.0


def test_c2st_separates_only_different_samples() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(4000, 3))
    same = c2st_auc(rng.normal(size=(4000, 3)), ref, seed=1)
    assert same["auc"] < 0.55
    assert 0 < same["auc_err"] < 0.03
    shifted = rng.normal(size=(4000, 3))
    shifted[:, 2] *= 2.0  # a wider third feature
    assert c2st_auc(shifted, ref, seed=1)["auc"] > 0.6
    assert np.isnan(c2st_auc(ref[:10], ref[:10])["auc"])


def test_clopper_pearson_matches_the_beta_quantiles() -> None:
    lo, hi = clopper_pearson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo[0] == 0.0
    assert hi[2] == 1.0
    assert lo[1] == pytest.approx(beta.ppf(0.15865, 5, 6), rel=1e-6)
    assert hi[1] == pytest.approx(beta.ppf(0.84135, 6, 5), rel=1e-6)


def test_efficiency_table_pulls() -> None:
    rng = np.random.default_rng(3)
    n = 40_000
    p, eta = rng.uniform(1, 100, n), rng.uniform(2, 5, n)
    eff = 0.5 + 0.4 * (eta - 2) / 3
    a, b = rng.random(n) < eff, rng.random(n) < eff
    pe, ee = np.array([1, 10, 100.0]), np.array([2, 3, 4, 5.0])
    same = efficiency_table(a, p, eta, b, p, eta, p_edges=pe, eta_edges=ee)
    assert same["bins"] == 6
    assert same["within_2sigma"] >= 0.8
    worse = efficiency_table(a & (rng.random(n) < 0.9), p, eta, b, p, eta, p_edges=pe, eta_edges=ee)
    assert worse["within_2sigma"] < 0.2


def test_robust_width_ignores_tails() -> None:
    rng = np.random.default_rng(4)
    x = np.r_[rng.normal(0, 2, 10_000), rng.normal(0, 200, 300)]
    assert robust_width(x) == pytest.approx(2.0, rel=0.05)


def test_oversampling_error_levels_off_at_the_generator_term() -> None:
    """Yield = generator part (per event) + detector part (per replica): the bootstrap error
    over generated events falls with replicas and then levels off, the naive one does not."""
    rng = np.random.default_rng(5)
    events, k = 2000, 8
    mu = rng.poisson(2.0, events)  # generator: how many candidates an event can give
    ids = []
    reps = []
    for e in range(events):
        for r in range(k):
            kept = rng.binomial(mu[e], 0.5)  # detector: each reconstructed with 50%
            ids += [e] * kept
            reps += [r] * kept
    n = len(ids)
    tracks = {
        "gen_event_id": np.asarray(ids),
        "replica": np.asarray(reps),
        "type": np.ones(n, int),
        "p": np.full(n, 20.0),
        "is_muon": np.ones(n, int),
    }
    study = oversampling_study(tracks, events=np.arange(events), bootstrap=300)
    err = np.asarray(study["error"])
    assert err[-1] < err[0]
    # generator variance of 0.5 * Poisson(2) = 0.5; the error cannot fall below sqrt(0.5 / N)
    assert err[-1] > 0.9 * np.sqrt(0.25 * 2.0 / events)
    assert study["naive"][-1] < err[-1]
    assert study["generator_variance"] == pytest.approx(0.5, rel=0.2)


def test_c2st_on_paired_samples_needs_the_groups() -> None:
    """Flash and reference of the same generated particles share the condition exactly: with
    a random split the twins leak across it and the AUC falls below 0.5."""
    rng = np.random.default_rng(6)
    cond = rng.normal(size=(4000, 3))
    flash = np.c_[cond, rng.normal(size=4000)]
    ref = np.c_[cond, rng.normal(size=4000)]
    ids = np.arange(4000)
    paired = c2st_auc(flash, ref, seed=2, groups=(ids, ids))
    assert abs(paired["auc"] - 0.5) < 0.04
    assert c2st_auc(flash, ref, seed=2)["auc"] < 0.45
