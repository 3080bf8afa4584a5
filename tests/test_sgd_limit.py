"""Unit tests of numeric.sgd_limit (small problems, few steps) and of the criteria that
decide the SGD-limit verdicts (synthetic eta ladders of the showcase's shape)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from numeric.sgd_limit import (LimitProblem, balance_rates, gradient_noise_covariance, invariants, run_ladder, run_rung,
                               slow_flow_limit, total_sharpness, upper)
from numeric.stationary import fit_eta_ladder
from symbolic import deep_linear as dl
from symbolic.two_layer import entropic_optimum
from theorems.settings import sgd_limit as settings
from theorems.theorem_12_sgd_limit import offset_criteria
from theorems.tolerances import eta_limit_criteria

TINY = dict(burn_in=0.2, block=0.05, window=2, average_blocks=2, sample_every=5)


def small(**kw) -> LimitProblem:
    base = dict(name="small", V=np.array([[1.0, 0.2], [0.1, 0.9]]), Sx=np.diag([1.2, 0.8]),
                Se=np.array([[1.0, 0.3], [0.3, 0.6]]), hidden=(2,))
    return LimitProblem(**{**base, **kw})


# ------------------------------------------------------------------------------ problems
def test_prediction_is_the_closed_form():
    p = small()
    opt = entropic_optimum(p.V, p.Sx, p.Se)
    pred = p.prediction()
    assert np.allclose(pred["K1"], opt.WtW, atol=1e-12) and np.allclose(pred["WDWDt"], opt.UUt, atol=1e-12)
    deep = small(hidden=(2, 3))
    assert np.allclose(deep.prediction()["K2"], deep.embedded.kernel(3, 2), atol=1e-12)


def test_far_start_is_on_the_manifold_and_far():
    p = small(hidden=(2, 2))
    ws = p.far_start(0)
    assert np.allclose(dl.end_to_end(ws), p.V, atol=1e-12)
    far, pred = invariants(ws), p.prediction()
    assert np.linalg.norm(far["K1"] - pred["K1"]) / np.linalg.norm(pred["K1"]) > 0.1
    capped = p.far_start(0, max_sharpness=1.2 * p.sharpness(p.closed_form_weights()))
    assert p.sharpness(capped) <= 1.2 * p.sharpness(p.closed_form_weights())


def test_bad_problems_raise():
    with pytest.raises(InputError, match="rank"):
        small(hidden=(1,))
    with pytest.raises(InputError, match="batch"):
        small(batch=0)
    with pytest.raises(InputError, match="depth 5"):
        small(hidden=(2, 2, 2, 2))
    with pytest.raises(InputError, match="positive definite"):
        small(Sx=np.diag([1.0, -1.0]))


def test_sharpness_formula_matches_autograd():
    from numeric.deep_linear_min import population_sharpness  # largest eigenvalue, for a bound

    p = small(hidden=(2, 2))
    ws = p.far_start(1)
    T = total_sharpness(p.embedded, ws)
    assert population_sharpness(p.embedded, ws) <= T + 1e-9  # lambda_max <= trace for a PSD Hessian


# ------------------------------------------------------------------------------ runs
def test_one_rung_and_bad_inputs():
    p = small()
    r = run_rung(p, 0.008, n_runs=16, **TINY)
    assert r.n_runs == 16 and r.total_steps >= r.burn_in_steps and set(r.mean) == {"K1", "WDWDt"}
    assert r.rotation[0].shape == (2, 2) and np.allclose(r.rotation[0], -r.rotation[0].T)
    with pytest.raises(InputError, match="stability margin"):
        run_rung(p, 0.05, n_runs=4, **TINY)
    with pytest.raises(InputError, match="start"):
        run_rung(p, 0.008, start="nowhere", n_runs=4, **TINY)
    with pytest.raises(InputError, match="positive"):
        run_rung(p, -0.01, n_runs=4, **TINY)
    with pytest.raises(InputError, match="three"):
        run_ladder(p, [0.008, 0.004], n_runs=4, **TINY)


def test_ladder_records_fits():
    lad = run_ladder(small(), [0.008, 0.006, 0.004], n_runs=8, **TINY)
    rec = lad.record()
    assert rec["etas"] == [0.008, 0.006, 0.004] and set(rec["fits"]) == {"K1", "WDWDt"}
    assert rec["fits"]["K1"]["dof"] == 3  # 3 independent components x (3 rungs - 2 parameters)


# ------------------------------------------------------------------------------ slow flow
def test_gradient_noise_covariance_trace_is_the_entropy():
    p = small(hidden=(2, 2))
    ws = p.far_start(2)
    S = gradient_noise_covariance(p, ws)
    sizes = np.cumsum([0] + [w.size for w in ws])
    blocks = [float(np.trace(S[a:b, a:b])) for a, b in zip(sizes[:-1], sizes[1:])]
    assert np.allclose(blocks, dl.layer_second_moments(p.embedded, ws), rtol=1e-12)
    assert np.allclose(S, S.T, atol=1e-12)


def test_slow_flow_fixed_point_is_the_closed_form_for_isotropic_noise():
    p = small(Se=0.7 * np.eye(2), hidden=(2, 2))
    f = slow_flow_limit(p)
    pred = p.prediction()
    for name in pred:
        assert np.allclose(f.prediction[name], pred[name], atol=1e-10)
    assert np.max(f.closed_form_rates) < 1e-10 and np.max(f.rotation_rate) < 1e-10


def test_slow_flow_offset_for_anisotropic_noise():
    f = slow_flow_limit(small())
    assert f.residual < 1e-12 and f.closed_form_rates[0] > 1e-3 and f.rotation_rate[0] > 1e-3
    with pytest.raises(InputError, match="rank V"):
        slow_flow_limit(small(hidden=(3,)))


# ------------------------------------------------------------------------------ criteria
def _synthetic_fit(etas, limit, slope, curve, rel_se):
    """Noise-free rung means ``limit + slope eta + curve eta^2`` with per-rung standard errors
    scaled so that the fit's |se(c0)|_F is ``rel_se`` of |limit|."""
    etas = np.asarray(etas)
    unit = np.full(limit.size, 1.0)
    probe = fit_eta_ladder(etas, [limit] * len(etas), [unit] * len(etas))
    scale = rel_se * np.linalg.norm(limit) / np.linalg.norm(probe.se0)
    means = [limit + slope * e + curve * e**2 for e in etas]
    return fit_eta_ladder(etas, means, [scale * unit] * len(etas))


@pytest.mark.parametrize(("etas", "curve"), [(settings.QUICK_ETAS, 0.0), (settings.FULL_ETAS, 40.0)])
def test_one_percent_offset_is_detected(etas, curve):
    p = settings.problem("base")
    pred = np.concatenate([upper(p.prediction()[n]) for n in ("K1", "WDWDt")])
    slope = np.linspace(-2.0, 3.0, pred.size)
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(pred.size)
    offset = 0.01 * np.linalg.norm(pred) * direction / np.linalg.norm(direction)
    shifted = _synthetic_fit(etas, pred + offset, slope, curve * slope, rel_se=0.0015)
    exact = _synthetic_fit(etas, pred, slope, curve * slope, rel_se=0.0015)
    passes = lambda crits: all(c.passed for c in crits)  # noqa: E731
    assert not passes(eta_limit_criteria(shifted, pred, "K")[0])  # "limit = closed form" fails
    assert passes(offset_criteria(shifted, pred, "K"))  # "offset" passes
    assert passes(eta_limit_criteria(exact, pred, "K")[0])  # a pure c1 eta (+ c2 eta^2) law: the opposite
    assert not passes(offset_criteria(exact, pred, "K"))


def test_offset_criteria_refuse_mismatched_prediction():
    fit = fit_eta_ladder([0.004, 0.002, 0.001], [[1.0, 2.0]] * 3, [[0.01, 0.01]] * 3)
    with pytest.raises(InputError, match="components"):
        offset_criteria(fit, [1.0], "x")


@pytest.mark.parametrize("hidden", [(2,), (2, 2)])
def test_slow_flow_moves_c_by_the_exact_balance_identity(hidden):
    """dC_k/dtau of the evaluated slow flow equals E[g_k g_k^T - g_{k+1}^T g_{k+1}] (SGD's exact
    identity, C conserved by gradient flow), at a point far from the closed form."""
    p = small(hidden=hidden, M_O=np.array([[1.1, 0.2], [0.0, 0.9]]))
    for defect, dC in balance_rates(p, p.far_start(3)):
        assert np.allclose(dC, defect, atol=1e-9 * np.abs(defect).max())


def test_aligned_diagonal_noise_keeps_the_closed_form():
    """Anisotropic but aligned (V = Sx = I, Se diagonal): reflection symmetry keeps the closed
    form a fixed point, with no rotation - anisotropy alone is not enough for an offset."""
    f = slow_flow_limit(LimitProblem("aligned", np.eye(2), np.eye(2), np.diag([1.0, 0.3]), (2,)))
    assert np.max(f.closed_form_rates) < 1e-10 and np.max(f.rotation_rate) < 1e-10
