"""numeric.stationary: drift-test stationarity, error bars, eta -> 0 extrapolation."""


import numpy as np
import pytest
import torch

from numeric.stationary import stationary_average


def _ar1(R, seed, phi=0.9, mu=3.0):
    g = torch.Generator().manual_seed(seed)
    state = {"x": torch.full((R,), -20.0, dtype=torch.float64)}  # far from stationary at the start

    def advance(n):
        for _ in range(n):
            state["x"] = mu + phi * (state["x"] - mu) + torch.randn(R, generator=g, dtype=torch.float64)

    return advance, lambda: {"x": state["x"].clone()}


def test_ar1_mean_within_error_bar_and_burn_in_detected():
    advance, observe = _ar1(64, 0)
    res = stationary_average(advance, observe, block_steps=40, window=3, average_blocks=10, max_steps=50_000)
    assert res.converged and res.steps_to_stationary >= 6 * 40
    assert abs(float(res.mean["x"]) - 3.0) <= 6 * float(res.stderr["x"])  # CLT, z = 6
    # stationary std of AR(1) = 1/sqrt(1-phi^2); time-averaged over 400 steps with tau ~ 19 steps
    assert 0 < float(res.stderr["x"]) < 0.1


def test_step_cap_is_reported_not_hidden():
    x = {"v": torch.zeros(8, dtype=torch.float64)}

    def advance(n):
        x["v"] = x["v"] + n  # drifts for ever

    res = stationary_average(advance, lambda: {"v": x["v"].clone()}, block_steps=10, window=2,
                             average_blocks=2, max_steps=200)
    assert not res.converged and res.total_steps >= 200


def test_single_run_uses_batch_means():
    advance, observe = _ar1(1, 1, phi=0.5)
    res = stationary_average(advance, observe, block_steps=200, window=2, average_blocks=20, max_steps=20_000)
    assert res.converged and abs(float(res.mean["x"]) - 3.0) <= 6 * float(res.stderr["x"])


def test_accumulating_engine_gives_the_same_averages():
    """``accumulate`` (an engine that averages its own blocks) and ``advance``/``observe``
    walk the same chain: the same samples give the same means to float64 round-off."""
    advance, observe = _ar1(16, 3)
    kw = dict(block_steps=40, window=3, average_blocks=4, max_steps=20_000, sample_every=4)
    ref = stationary_average(advance, observe, **kw)

    adv2, obs2 = _ar1(16, 3)

    def accumulate(n, k):
        total = None
        for _ in range(n // k):
            adv2(k)
            x = obs2()["x"]
            total = x if total is None else total + x
        return {"x": total / (n // k)}

    res = stationary_average(None, None, accumulate=accumulate, **kw)
    assert res.steps_to_stationary == ref.steps_to_stationary and res.total_steps == ref.total_steps
    assert torch.allclose(res.mean["x"], ref.mean["x"], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="either advance and observe, or accumulate"):
        stationary_average(advance, observe, accumulate=accumulate, **kw)


def test_block_steps_must_cover_sampling():
    with pytest.raises(ValueError, match="sample_every"):
        stationary_average(lambda n: None, lambda: {}, block_steps=1, sample_every=5, max_steps=10)


# ------------------------------------------------------------- the eta -> 0 ladder fit
from core.errors import InputError  # noqa: E402
from numeric.stationary import fit_eta_ladder  # noqa: E402
from theorems.tolerances import eta_limit_criteria  # noqa: E402

ETAS4 = [0.02, 0.01, 0.005, 0.0025]


def _rungs(law, etas, se, seed=0):
    """Rung means of a 3-component observable following ``law(eta)``, with CLT noise ``se``."""
    rng = np.random.default_rng(seed)
    return [law(e) + se * rng.standard_normal(3) for e in etas], [np.full(3, se)] * len(etas)


def _passes(fit, prediction):
    crit, _, _ = eta_limit_criteria(fit, prediction, "test")
    return all(c.passed for c in crit), crit


@pytest.mark.parametrize("seed", range(5))
def test_a_pure_eta_law_passes(seed):
    truth = np.array([1.0, -0.5, 2.0])
    law = lambda e: truth + np.array([3.0, 1.0, -2.0]) * e + np.array([20.0, -5.0, 8.0]) * e * e  # noqa: E731
    means, ses = _rungs(law, ETAS4, 1e-4, seed)
    ok, crit = _passes(fit_eta_ladder(ETAS4, means, ses), truth)
    assert ok, [c.describe() for c in crit]


@pytest.mark.parametrize("seed", range(5))
def test_a_one_percent_offset_fails(seed):
    truth = np.array([1.0, -0.5, 2.0])
    law = lambda e: 1.01 * truth + np.array([3.0, 1.0, -2.0]) * e  # noqa: E731  (the limit is off by 1%)
    means, ses = _rungs(law, ETAS4, 1e-4, seed)
    ok, crit = _passes(fit_eta_ladder(ETAS4, means, ses), truth)
    assert not ok and not crit[0].passed


def test_an_offset_hidden_by_a_two_rung_estimate_is_caught_with_three():
    # e_k = d + c eta_k: the old two-rung remainder |rho e_2 - e_1| / (rho - 1) equals d, so an
    # offset always sat inside its own bound; the fit's bound comes from the standard errors alone
    truth = np.array([1.0, 1.0, 1.0])
    etas = [0.02, 0.01, 0.005]
    means, ses = _rungs(lambda e: truth + 0.01 + 2.0 * e, etas, 1e-4)
    ok, _ = _passes(fit_eta_ladder(etas, means, ses), truth)
    assert not ok


def test_a_wrong_model_of_eta_fails_the_goodness_of_fit():
    # a stall (the error levels off) fitted by a straight line: chi^2 must object
    truth = np.zeros(3)
    etas = [0.04, 0.02, 0.01, 0.005, 0.0025]
    means, ses = _rungs(lambda e: np.full(3, 0.05 * min(e, 0.01) / 0.01), etas, 1e-4)
    crit, _, _ = eta_limit_criteria(fit_eta_ladder(etas, means, ses, order=1), truth, "stall")
    assert not crit[1].passed


def test_a_short_ladder_is_refused():
    with pytest.raises(InputError, match="at least three rungs"):
        fit_eta_ladder([0.02, 0.01], [[1.0], [1.0]], [[0.1], [0.1]])
    with pytest.raises(InputError, match="positive and distinct"):
        fit_eta_ladder([0.02, 0.01, 0.01], [[1.0]] * 3, [[0.1]] * 3)
    with pytest.raises(InputError, match="no degree of freedom"):
        fit_eta_ladder([0.02, 0.01, 0.005], [[1.0]] * 3, [[0.1]] * 3, order=2)


# ------------------------------------------------------------- the drift test against a drift
from numeric.stationary import _drift_ok  # noqa: E402


def _blocks(R, n_blocks, drift_per_block, seed, phi=0.9, block=40):
    """Block means of R AR(1) runs (stationary sd ~2.3) plus a common linear drift per block."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(R, dtype=torch.float64)
    out = []
    for b in range(n_blocks):
        acc = torch.zeros(R, dtype=torch.float64)
        for _ in range(block):
            x = phi * x + torch.randn(R, generator=g, dtype=torch.float64)
            acc += x
        out.append({"x": acc / block + drift_per_block * b})
    return out


@pytest.mark.parametrize("seed", range(3))
def test_trend_test_rejects_a_drifting_series_and_accepts_a_stationary_one(seed):
    # a drift of 0.3 per block (6 over the span) against block means of sd ~1.5
    assert not _drift_ok(_blocks(32, 20, 0.3, seed), window=10, z=2.5, test="trend")
    assert _drift_ok(_blocks(32, 20, 0.0, seed + 10), window=10, z=4.0, test="trend")


def test_a_slow_drift_passes_a_short_halves_test_but_not_a_long_trend():
    """What a short two-halves window at z = 4 lets through (the old balance-run setting: 3 + 3
    blocks), a trend over 2 x 10 blocks at z = 2.5 catches: the drift is small per block but adds up
    over an averaging window of 10 blocks."""
    blocks = _blocks(32, 20, 0.06, seed=7)
    assert _drift_ok(blocks, window=3, z=4.0, test="halves")
    assert not _drift_ok(blocks, window=10, z=2.5, test="trend")


def test_trend_test_with_one_run_and_bad_option():
    assert not _drift_ok(_blocks(1, 40, 0.5, 3), window=20, z=3.0, test="trend")
    assert _drift_ok(_blocks(1, 40, 0.0, 4), window=20, z=4.0, test="trend")
    with pytest.raises(InputError, match="drift_test"):
        stationary_average(lambda n: None, lambda: {}, block_steps=1, max_steps=1, drift_test="linear")
