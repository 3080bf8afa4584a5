"""Tests of numeric.modified_flow: the numeric BEA recursion against closed forms and SymPy,
the integrator's order, the slope machinery, and clear errors on bad input."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from numeric import modified_flow as mf
from core.errors import DivergenceError, InputError
from numeric.strategies import seeds, spd_matrices
from symbolic import backward_error as be


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_closed_forms_match_the_generic_recursion_on_an_mlp():
    loss, y0, _ = mf.random_loss("tanh_mlp", 2, 3)
    f0 = mf.gradient_field(loss)
    closed, generic = mf.low_order_terms(f0, 3), mf.modified_field_terms(f0, 3)
    for j in range(4):
        # both are exact formulas evaluated in float64: agreement to round-off (1e-10 relative
        # leaves room for the ~1e3 condition of nested jvps)
        assert _rel(closed[j](y0), generic[j](y0)) < 1e-10


def test_numeric_terms_match_sympy_on_a_quartic():
    rng = np.random.default_rng(4)
    n = 2
    cs = [rng.integers(-2, 3, size=(n,) * o).astype(float) for o in (1, 2, 3, 4)]  # exact in SymPy
    cs[1] = (cs[1] + cs[1].T) / 2
    loss = mf.quartic_loss(*cs)
    xs = sp.symbols("x1:3")
    X = sp.Matrix(xs)
    Q = [np.vectorize(lambda v: sp.Rational(str(v)), otypes=[object])(c) for c in cs]  # exact rationals
    cs = Q
    expr = (sum(cs[0][i] * xs[i] for i in range(n)) + (X.T * sp.Matrix(cs[1]) * X)[0] / 2
            + sum(cs[2][i, j, k] * xs[i] * xs[j] * xs[k] for i in range(n) for j in range(n) for k in range(n)) / 6
            + sum(cs[3][i, j, k, m] * xs[i] * xs[j] * xs[k] * xs[m]
                  for i in range(n) for j in range(n) for k in range(n) for m in range(n)) / 24)
    sym = be.euler_modified_field(-be.gradient(expr, xs), xs, 3)
    pt = [0.3, -0.7]
    num = mf.low_order_terms(mf.gradient_field(loss), 3)
    for j in range(4):
        exact = torch.tensor([float(e.subs(dict(zip(xs, pt)))) for e in sym[j]])
        assert _rel(num[j](torch.tensor(pt)), exact) < 1e-10


def test_rk4_is_fourth_order():
    # y' = -y: the RK4 global error at t = 1 is e^{-1} e^{dt} (dt^4/120)(1 - dt/6 + ...), whose
    # local log-log slope is 4 + (5/6) dt + O(dt^2) <= 4.06 for dt <= 1/16; tolerance 0.1
    f = lambda y: -y  # noqa: E731
    y0 = torch.tensor([1.0])
    ms = (16, 32, 64)
    errs = [abs(float(mf.rk4_flow(f, y0, 1.0, m)[0]) - math.exp(-1.0)) for m in ms]
    slope = mf.fit_loglog_slope([1 / m for m in ms], errs).slope
    assert abs(slope - 4) < 0.1


@given(seed=seeds(), k=st.integers(0, 1), P=spd_matrices(2, 0.5, 1.5))
def test_matrix_learning_rate_slopes(seed, k, P):
    loss, y0, _ = mf.random_loss("quartic", 2, seed)
    fit = mf.bea_slope(mf.preconditioned_gradient_field(loss, P), y0, k)
    assert fit.details["slope_ok"] and fit.details["const_ok"], fit.details


def test_quadratic_expansion_matches_generic():
    loss, y0, info = mf.random_loss("quadratic", 3, 9)
    u, v = mf.quadratic_expansion(info["A"], info["b"], y0, 1)
    ug, vg = mf.gap_expansion(mf.gradient_field(loss), y0, 1)
    assert _rel(u, ug) < 1e-12 and _rel(v, vg) < 1e-12


def test_finite_n_gap_scales_as_eta_cubed_with_cn_and_eta_squared_without():
    loss, y0, _ = mf.random_loss("quartic", 2, 2)
    P = torch.eye(2)
    hs = [0.02, 0.01, 0.005]
    good = [float(torch.linalg.vector_norm(mf.finite_n_gap(loss, h * P, y0, 3, 1 / 6))) for h in hs]
    bad = [float(torch.linalg.vector_norm(mf.finite_n_gap(loss, h * P, y0, 3, 0.25))) for h in hs]
    # slopes are 3 and 2 up to O(h) corrections; the two orders are 1 apart, 0.3 separates them
    assert abs(mf.fit_loglog_slope(hs, good).slope - 3) < 0.3
    assert abs(mf.fit_loglog_slope(hs, bad).slope - 2) < 0.3


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="unknown loss family"):
        mf.random_loss("cubic", 2, 0)
    with pytest.raises(InputError, match="not symmetric"):
        mf.quadratic_loss(np.array([[1.0, 2.0], [0.0, 1.0]]), np.zeros(2))
    with pytest.raises(InputError, match="not positive definite"):
        mf.preconditioned_gradient_field(lambda t: (t**2).sum(), -np.eye(2))
    with pytest.raises(InputError, match="substeps"):
        mf.rk4_flow(lambda y: -y, torch.ones(1), 1.0, 0)
    with pytest.raises(InputError, match="positive"):
        mf.fit_loglog_slope([0.1, 0.05], [1e-3, 0.0])
    with pytest.raises(InputError, match="hidden width"):
        mf.tanh_mlp_loss(np.zeros((3, 2)), np.zeros(3), 0)
    with pytest.raises(InputError, match="order k"):
        mf.modified_field_terms(lambda y: -y, -1)


def test_critical_point_is_refused():
    A = np.diag([1.0, 2.0])
    loss = mf.quadratic_loss(A, np.zeros(2))
    with pytest.raises(InputError, match="vanishes"):
        mf.bea_slope(mf.gradient_field(loss), torch.zeros(2), 1)


def test_nan_during_a_step_is_an_error():
    loss = lambda t: torch.sqrt(t).sum()  # noqa: E731  (NaN gradient once a coordinate is negative)
    with pytest.raises(DivergenceError, match="non-finite"):
        mf.n_gd_steps(mf.gradient_field(loss), torch.tensor([0.5]), 10.0, 2)
