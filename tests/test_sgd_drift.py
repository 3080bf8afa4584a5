"""Tests of symbolic.sgd_epoch and numeric.sgd_drift (SGD in expectation: one epoch against the
expected entropic loss; the drift along flat directions), and synthetic counterexamples that the
comparisons of theorems/theorem_01_entropic_loss_sgd.py must reject."""

import math

import numpy as np
import pytest
import sympy as sp
import torch

from core.errors import DivergenceError, InputError
from numeric import sgd_drift as sd
from symbolic import sgd_epoch as se
from numeric.sgd_drift import paired_drift, slope_check
from theorems.theorem_01_entropic_loss_sgd import drift_tolerance, drift_verdict
from theorems.tolerances import Z


# ----------------------------------------------------------------------------- symbolic
def test_closed_form_is_checked_against_brute_force():
    assert se.epoch_gap_residual("without", "phi", 3) == {"lower_orders": 0, "leading": 0}
    wrong = dict(se.epoch_gap_coefficients("with", "phi"))
    wrong["terms"] = {"<e'e>": sp.Symbol("n", positive=True, integer=True) / 4}   # half the true coefficient
    assert se.epoch_gap_residual("with", "phi", 2, coefficients=wrong)["leading"] != 0
    too_high = {"order": 3, "terms": {}}                 # claims no eta^2 gap with replacement
    assert se.epoch_gap_residual("with", "phi", 2, coefficients=too_high)["lower_orders"] != 0


def test_expression_path_agrees_with_the_closed_form_on_a_concrete_loss():
    """The general SymPy path (undefined-function-free, concrete polynomial batch losses) gives the
    same eta^2 gap as the closed form, independently of the polynomial-ring brute force."""
    x1, x2 = xs = sp.symbols("x1 x2", real=True)
    losses = [x1**2 * x2 + x2**2 / 2, x1**4 / 4 - x1 * x2, (x1 - x2) ** 2 + x2**3 / 3]
    fields = [-sp.Matrix([sp.diff(l, v) for v in xs]) for l in losses]
    E = se.expected_epoch_expansion(fields, xs, 2, "with")
    fbar = sum(fields, sp.zeros(2, 1)) / 3
    flow = se.flow_expansion([fbar, se.phi_first_order_field(fields, xs)], xs, 3, 2)
    vec = se.basis_vectors(fields, xs)["<e'e>"]
    assert sp.simplify(E[2] - flow[2] - sp.Rational(3, 2) * vec) == sp.zeros(2, 1)
    assert sp.simplify(E[1] - flow[1]) == sp.zeros(2, 1)


def test_toy_and_orbit_derivations():
    r = se.toy_valley_drift()
    eta, s, t2 = r["symbols"]
    assert sp.simplify(r["drift"] + eta**2 * sp.exp(2 * t2) * s**2 / (2 * (2 - eta * sp.exp(t2)))) == 0
    assert sp.simplify(r["drift_lwa"] + eta**2 * sp.exp(2 * t2) * s**2 / 4) == 0
    assert sp.simplify(r["drift_phi"] + eta**2 * sp.exp(2 * t2) * (2 * s**2 + s**4) / 4) == 0
    o = se.scalar_net_orbit()
    assert o["step_residual"] == 0 and sp.simplify(o["on_manifold"]["sgd"] - o["on_manifold"]["phi"]) == 0


# ----------------------------------------------------------------------------- one epoch
def test_batch_sequences_are_equally_likely_partitions():
    seqs = sd.batch_sequences(4, 2, replace=False)
    assert seqs.shape == (24, 2, 2)
    parts = {}
    for s in seqs:
        key = tuple(tuple(sorted(b.tolist())) for b in s)
        parts[key] = parts.get(key, 0) + 1
    assert len(parts) == 6 and set(parts.values()) == {4}
    assert sd.batch_sequences(3, 1, replace=True).shape == (27, 3, 1)
    with pytest.raises(InputError, match="divisible"):
        sd.batch_sequences(5, 2, replace=False)
    with pytest.raises(InputError, match="too many"):
        sd.batch_sequences(12, 1, replace=False)
    with pytest.raises(InputError, match="positive integer"):
        sd.batch_sequences(4, 0, replace=True)


def _epoch_problem(seed=0, N=4):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, 2, generator=g, dtype=torch.float64)
    y = torch.cos(X[:, 1]) + 0.2 * torch.randn(N, generator=g, dtype=torch.float64)
    loss, P = sd.tanh_regression(2, 2)
    return loss, 0.6 * torch.randn(P, generator=g, dtype=torch.float64), X, y


def test_sampled_shuffles_agree_with_the_exact_average():
    loss, th0, X, y = _epoch_problem(1)
    exact = sd.epoch_mean(loss, th0, X, y, 0.1, sd.batch_sequences(4, 1, replace=False)).mean(0)
    runs = sd.epoch_mean(loss, th0, X, y, 0.1, sd.sample_batch_sequences(4, 1, False, 4000, seed=3))
    se_ = runs.std(0) / math.sqrt(len(runs))
    assert bool(((runs.mean(0) - exact).abs() <= Z * se_ + 1e-12).all())


def test_partitions_of_two_without_replacement_match_the_closed_form():
    loss, th0, X, y = _epoch_problem(2)
    c = sd.epoch_gap_taylor(loss, th0, X, y, batch=2, replace=False, target="phi", order=3)
    p, u = sd.epoch_leading_term(loss, th0, X, y, batch=2, replace=False, target="phi")
    assert p == 3 and float(c[2].abs().max()) < 1e-13
    assert torch.allclose(c[3], u, rtol=1e-10, atol=1e-13)


def test_epoch_input_errors():
    loss, th0, X, y = _epoch_problem(3)
    with pytest.raises(InputError, match="eta"):
        sd.epoch_gap(loss, th0, X, y, -0.1, 1, True)
    with pytest.raises(InputError, match="target"):
        sd.expected_phi_field(loss, X, y, 1, True, target="sgd")
    with pytest.raises(InputError, match="NaN"):
        sd.epoch_gap(loss, th0, X * float("nan"), y, 0.1, 1, True)
    with pytest.raises(InputError, match="order"):
        sd.epoch_gap_taylor(loss, th0, X, y, 1, True, order=5)


# ----------------------------------------------------------------------------- flat directions
def test_closed_form_gradients_and_quadrature():
    m = sd.scalar_net(1.0, 0.5)
    th = torch.tensor([[1.3, 0.4], [0.2, -0.7]], dtype=torch.float64)
    z = m.sampler(torch.Generator().manual_seed(0), 2)
    assert torch.allclose(m.grad_batch(th, z), m.autograd_batch(th, z), rtol=0, atol=1e-14)
    t = sd.toy_valley(0.7)
    p = torch.tensor([0.3, -0.4], dtype=torch.float64)
    assert math.isclose(float(t.risk(p)), 0.5 * math.exp(-0.4) * 0.09, rel_tol=1e-13)
    cov = se.toy_valley_drift()["cov"]
    t1, t2, s = sp.symbols("t1 t2 s", real=True)
    sub = {sp.Symbol("t1", real=True): 0.3, sp.Symbol("t2", real=True): -0.4, sp.Symbol("s", positive=True): 0.7}
    mu, M2 = t.grad_moments(p)
    C = M2 - torch.outer(mu, mu)
    exact = torch.tensor([[float(cov[i, j].subs(sub)) for j in range(2)] for i in range(2)], dtype=torch.float64)
    assert torch.allclose(C, exact, rtol=1e-12, atol=1e-14)


def test_predictions_match_the_toy_derivation():
    r = se.toy_valley_drift()
    eta_s, s_s, t2_s = r["symbols"]
    for s, eta, t2 in ((1.0, 0.05, 0.0), (0.4, 0.3, -0.5)):
        m = sd.toy_valley(s)
        p = sd.drift_predictions(m, torch.tensor([0.0, t2], dtype=torch.float64), eta)
        sub = {s_s: s, eta_s: eta, t2_s: t2}
        for key, name in (("drift", "lyapunov_t"), ("drift_lwa", "lwa_t"), ("drift_phi", "phi_t")):
            assert math.isclose(float(p[name]), float(r[key].subs(sub)), rel_tol=1e-10), key


def test_discrete_lyapunov():
    H = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    C = torch.tensor([[1.0, 0.2], [0.2, 0.5]], dtype=torch.float64)
    S = sd.discrete_lyapunov(H, C, 0.3)
    A = torch.eye(2, dtype=torch.float64) - 0.3 * H
    assert torch.allclose(S, A @ S @ A + 0.09 * C, rtol=0, atol=1e-15)
    with pytest.raises(InputError, match="outside"):
        sd.discrete_lyapunov(H, C, 1.0)


def test_orbit_prediction_identity_and_general_formula():
    m = sd.scalar_net(1.0, 0.5)
    th = torch.tensor([1.5, 2.0 / 3.0], dtype=torch.float64)
    p = sd.orbit_rate_prediction(m, th, 0.01)
    assert math.isclose(p["phi"], p["leading"], rel_tol=1e-12)
    assert math.isclose(p["leading"], -4 * 0.01**2 * 0.5**2, rel_tol=1e-12)
    A = m.info["generator"]
    lwa = float((2 * A * th) @ p["prediction"]["lwa"] / (th**2 @ A))
    assert math.isclose(lwa, p["leading"], rel_tol=1e-10)


def test_geometry_input_errors():
    m = sd.toy_valley(1.0)
    with pytest.raises(InputError, match="critical point"):
        sd.valley_geometry(m, torch.tensor([0.5, 0.0], dtype=torch.float64))
    with pytest.raises(InputError, match="shape"):
        sd.run_drift_ensemble(m, torch.zeros(3, dtype=torch.float64), 0.1, 8, 1, 1)
    with pytest.raises(InputError, match="eta"):
        sd.drift_predictions(m, torch.zeros(2, dtype=torch.float64), float("nan"))
    with pytest.raises(InputError, match="s must"):
        sd.toy_valley(0.0)
    with pytest.raises(InputError, match="no flat manifold"):
        sd.tanh_interpolation([0.1, 0.5, 0.9], [1.0, 0.2, 0.5], [0.1, 0.1, 0.1])
    with pytest.raises(DivergenceError):
        sd.run_drift_ensemble(sd.scalar_net(1.0, 0.5), torch.tensor([1.5, 2.0 / 3.0], dtype=torch.float64),
                              2.0, 8, 300, 1)


def test_runs_are_reproducible_from_the_seed():
    m = sd.tanh_interpolation([0.0, 0.8], [1.2, 0.3, 1.0], [0.05, 0.15])
    th = torch.tensor([1.2, 0.3, 1.0], dtype=torch.float64)
    a = sd.run_drift_ensemble(m, th, 0.05, 16, 10, 10, seed=5)
    b = sd.run_drift_ensemble(m, th, 0.05, 16, 10, 10, seed=5)
    c = sd.run_drift_ensemble(m, th, 0.05, 16, 10, 10, seed=6)
    assert torch.equal(a.raw, b.raw) and not torch.equal(a.raw, c.raw)


# ----------------------------------------------------------------------------- synthetic counterexamples
def _synthetic(offset, n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 1.0 + offset + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)


def test_drift_comparison_rejects_an_offset_drift():
    ok = paired_drift(_synthetic(0.0), 1.0)
    assert drift_verdict("true drift", ok, drift_tolerance(ok, 0.01, "O(eta)")).passed
    se_ = 0.3 / math.sqrt(2000)
    bad = paired_drift(_synthetic(0.01 + 10 * Z * se_), 1.0)        # past CLT + the O(eta) allowance
    assert not drift_verdict("offset drift", bad, drift_tolerance(bad, 0.01, "O(eta)")).passed


def test_refutation_needs_a_real_difference():
    same = paired_drift(_synthetic(0.0), 1.0)
    assert not drift_verdict("phi", same, drift_tolerance(same, 0.01, "O(eta)"), comparison="beyond").passed
    far = paired_drift(_synthetic(0.0), 3.0)
    assert drift_verdict("phi", far, drift_tolerance(far, 0.01, "O(eta)"), comparison="beyond").passed


def test_slope_comparison_rejects_a_wrong_order():
    hs = 0.005 * 0.5 ** np.arange(5)
    rel = [0.1] * 5
    assert slope_check(hs, 3.0 * hs**3 * (1 + 0.01 * hs / hs[0]), 3, rel)["ok"]
    assert not slope_check(hs, 3.0 * hs**2, 3, rel)["ok"]
    assert not slope_check(hs, 3.0 * hs**4, 3, rel)["ok"]


def test_orbit_identity_catches_a_wrong_generator():
    m = sd.scalar_net(1.0, 0.5)
    th = torch.tensor([1.5, 2.0 / 3.0], dtype=torch.float64)
    good = sd.orbit_rate_run(m, th, 0.01, 64, 10, 20, seed=0)
    assert good["identity_residual"] <= 4.0
    m.info["generator"] = torch.tensor([1.0, 1.0], dtype=torch.float64)   # |theta|^2 is not conserved by GD
    bad = sd.orbit_rate_run(m, th, 0.01, 64, 10, 20, seed=0)
    assert bad["identity_residual"] > 1e6


def test_paired_drift_refuses_fewer_than_two_runs():
    with pytest.raises(InputError, match="at least 2 per-run values"):
        paired_drift(torch.tensor([1.0]), 1.0)


def test_epoch_problem_is_seeded():
    a, b = sd.epoch_problem(3, 4)[1:], sd.epoch_problem(3, 4)[1:]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(sd.epoch_problem(4, 4)[1], a[0])


def test_taylor_summary_reads_the_orders():
    c = [torch.zeros(2), torch.tensor([0.0, 1e-17]), torch.tensor([2.0, -3.0])]
    t = sd.taylor_summary(c, torch.tensor([2.0, -2.5]), 2)
    assert (t["largest"], t["below"], t["closed"]) == (3.0, 1e-17, 0.5)
