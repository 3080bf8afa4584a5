"""Unit and property tests of the symmetry toolkit (symbolic/symmetry.py) and the numeric models of the
symmetry results (numeric/two_layer_linear.py, normalised_linear.py, two_layer_tanh.py, float64.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import DivergenceError, InputError
from numeric.strategies import dims, seeds
from numeric.float64 import roundoff_tolerance
from numeric.normalised_linear import NormalisedLinear
from numeric.sharpness import flatten, hessian_diagonal, hessian_trace, two_layer_population_loss, unflatten
from numeric.two_layer_linear import TwoLayerLinear, neuron_generator_diag, ratio_with_stderr
from numeric.two_layer_tanh import TwoLayerTanh
from symbolic.symmetry import (ETA, GAMMA, Undecided, balance_residual_from_loss, convexity_residual_from_loss,
                               entropic_integrand, generic_symmetric_matrix, invariant_under, is_exponential_symmetry,
                               is_identically_zero, is_lie_symmetry, master_balance_condition, orbit_point,
                               sgd_balance_condition)

x, y = sp.symbols("x y", real=True)


def _two_layer_scalar(h: int):
    """f = sum_k u_k w_k x (dx = dy = 1, width h) and its parameter list [w..., u...]."""
    w = sp.symbols(f"w0:{h}", real=True)
    u = sp.symbols(f"u0:{h}", real=True)
    return (sum(a * b for a, b in zip(u, w)) * x - y) ** 2, list(w) + list(u)


# ------------------------------------------------------------------------------ symbolic
def test_rescaling_is_exponential_rotation_is_only_lie():
    u, w = sp.symbols("u w", real=True)
    assert is_exponential_symmetry((u * w * x - y) ** 2, [u, w], sp.diag(1, -1))
    radial = ((u**2 + w**2) * x - y) ** 2
    rot = sp.Matrix([[0, -1], [1, 0]])
    assert is_lie_symmetry(radial, [u, w], rot)
    assert not is_exponential_symmetry(radial, [u, w], rot)  # antisymmetric: not exponential
    assert not is_exponential_symmetry(radial, [u, w], sp.diag(1, -1))


def test_generator_shape_is_checked():
    u, w = sp.symbols("u w", real=True)
    with pytest.raises(ValueError, match="generator must be 2x2"):
        is_lie_symmetry(u * w, [u, w], sp.eye(3))


def test_entropic_integrand_rejects_bad_preconditioner():
    u, w = sp.symbols("u w", real=True)
    with pytest.raises(ValueError, match="symmetric"):
        entropic_integrand(u * w, [u, w], Lam=sp.Matrix([[1, 2], [0, 1]]))
    with pytest.raises(ValueError, match="2x2"):
        entropic_integrand(u * w, [u, w], Lam=sp.eye(3))


def test_finite_orbit_invariance_matches_infinitesimal():
    u, w = sp.symbols("u w", real=True)
    lam = sp.Symbol("lam", real=True)
    l = (u * w * x - y) ** 2
    A = sp.diag(1, -1)
    pt = orbit_point([u, w], A, lam)
    assert invariant_under(l, [u, w], lambda p: pt)
    assert not invariant_under(entropic_integrand(l, [u, w]), [u, w], lambda p: pt)


def test_is_identically_zero_refutes_with_witness():
    a = sp.Symbol("a", real=True)
    assert is_identically_zero(sp.cosh(a) ** 2 - sp.sinh(a) ** 2 - 1)
    assert not is_identically_zero(sp.cosh(a) - 1)


def test_generic_symmetric_matrix():
    L = generic_symmetric_matrix(3)
    assert L == L.T and len(L.free_symbols) == 6


@given(dims(1, 5))
def test_master_balance_coefficient_any_dim(n):
    assert sp.simplify(master_balance_condition(n).coefficient - 4 * GAMMA * (1 + ETA * GAMMA)) == 0
    assert sp.simplify(sgd_balance_condition(n).coefficient - 4 * GAMMA * (1 - ETA * GAMMA)) == 0


@settings(max_examples=3)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=2))
def test_neuron_rescaling_laws_from_loss(d):
    h = len(d)
    l, params = _two_layer_scalar(h)
    A = sp.diag(*d, *[-v for v in d])
    assert is_exponential_symmetry(l, params, A)
    assert is_identically_zero(balance_residual_from_loss(l, params, A))
    assert is_identically_zero(convexity_residual_from_loss(l, params, A))
    # A generator that rescales only the incoming weights is not a symmetry (unless d = 0)
    B = sp.diag(*d, *[0] * h)
    assert is_exponential_symmetry(l, params, B) == all(v == 0 for v in d)


# ------------------------------------------------------------------------------- numeric
@given(dx=dims(1, 4), dy=dims(1, 3), h=dims(1, 3), batch=dims(1, 4), seed=seeds(),
       eta=st.floats(0.001, 0.05), gamma=st.floats(0.0, 1.0))
def test_one_step_identity_random_nets(dx, dy, h, batch, seed, eta, gamma):
    """The exact one-step law holds for minibatch gradients of any batch size."""
    net = TwoLayerLinear(dx=dx, dy=dy, hidden=h, n_runs=4, eta=eta, gamma=gamma, batch=batch, seed=seed,
                         device="cpu")
    d = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, h))
    rec = net.run(30, d)
    bound = roundoff_tolerance(2 * net.n_params, rec["step_scale"])
    assert bool((rec["step_residual"].abs() <= bound).all())
    assert bool((rec["cross"].abs() <= 1e-12 * rec["step_scale"]).all())


@given(dx=dims(1, 3), dy=dims(1, 3), h=dims(1, 3), seed=seeds(), lam=st.floats(-2, 2))
def test_orbit_sharpness_law_random(dx, dy, h, seed, lam):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(dy, h, generator=g, dtype=torch.float64)
    W = torch.randn(h, dx, generator=g, dtype=torch.float64)
    V = torch.randn(dy, dx, generator=g, dtype=torch.float64)
    Sx, Se = torch.eye(dx, dtype=torch.float64), torch.eye(dy, dtype=torch.float64)
    d = torch.rand(h, generator=g, dtype=torch.float64) * 2 - 1
    a = neuron_generator_diag(d, dy, dx)

    def L(th):
        Wm, Um = unflatten(th, [(h, dx), (dy, h)])
        return two_layer_population_loss(Um, Wm, V, Sx, Se)

    th = flatten([W, U])
    moved = torch.exp(lam * a) * th
    assert abs(float(L(moved) - L(th))) <= 1e-11 * float(L(th))
    pred = float((torch.exp(-2 * lam * a) * hessian_diagonal(L, th)).sum())
    assert abs(float(hessian_trace(L, moved)) - pred) <= 1e-11 * pred


def test_input_errors():
    with pytest.raises(InputError, match="eta must be positive"):
        TwoLayerLinear(dx=2, dy=1, hidden=2, n_runs=2, eta=-0.1, device="cpu")
    with pytest.raises(InputError, match="hidden must be a positive integer"):
        TwoLayerLinear(dx=2, dy=1, hidden=0, n_runs=2, eta=0.1, device="cpu")
    net = TwoLayerLinear(dx=2, dy=1, hidden=2, n_runs=2, eta=0.01, device="cpu")
    with pytest.raises(InputError, match="must have 2 entries"):
        net.run(1, torch.ones(3, dtype=torch.float64))
    with pytest.raises(InputError, match="NaN"):
        net.run(1, torch.tensor([1.0, math.nan], dtype=torch.float64))
    with pytest.raises(InputError, match="V must be 1x2"):
        TwoLayerLinear(dx=2, dy=1, hidden=2, n_runs=2, eta=0.1, V=np.ones((2, 2)), device="cpu")
    with pytest.raises(InputError, match="need dim >= 2"):
        NormalisedLinear(dim=1, n_runs=2, eta=0.1, device="cpu")
    tanh = TwoLayerTanh(dim=2, hidden=2, n_runs=2, eta=0.1, teacher_W=torch.eye(2), teacher_a=torch.ones(2),
                        device="cpu")
    with pytest.raises(InputError, match="call init"):
        tanh.run(1)
    with pytest.raises(InputError, match="init shapes"):
        tanh.init(torch.eye(3), torch.ones(3))
    with pytest.raises(InputError, match="denominator"):
        ratio_with_stderr(torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))


def test_divergence_is_reported():
    net = TwoLayerLinear(dx=4, dy=2, hidden=3, n_runs=4, eta=5.0, seed=0, device="cpu")
    with pytest.raises(DivergenceError, match="stability limit"):
        net.run(200)


def test_undecided_is_an_error_type():
    assert issubclass(Undecided, RuntimeError)


# ------------------------------------------------------------ orbit minimiser and its accuracy
from numeric.orbit import newton_polish, orbit_minimiser, orbit_minimum  # noqa: E402
from theorems.tolerances import student_t  # noqa: E402


@given(a=st.floats(0.05, 20.0), b=st.floats(0.05, 20.0), c=st.floats(0.0, 3.0))
def test_newton_polish_reaches_a_known_convex_minimum(a, b, c):
    """phi(lam) = a e^{2 lam} + b e^{-2 lam} + c lam^2 is convex; with c = 0 its minimiser is
    ln(b/a)/4. The polished minimiser is within its own error bound of the true one, which is at
    float64 resolution; Brent's bracket alone is far coarser."""
    phi = lambda lam: a * torch.exp(2 * lam) + b * torch.exp(-2 * lam) + c * lam**2  # noqa: E731
    m = orbit_minimum(phi, -6.0, 6.0)
    if c == 0:
        truth = math.log(b / a) / 4
    else:  # the root of phi', bracketed and refined to round-off by bisection in exact float64 steps
        dphi = lambda t: 2 * a * math.exp(2 * t) - 2 * b * math.exp(-2 * t) + 2 * c * t  # noqa: E731
        lo, hi = -6.0, 6.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if dphi(mid) < 0 else (lo, mid)
        truth = (lo + hi) / 2
    assert abs(m.lam - truth) <= m.lam_error + 4 * EPS * (1 + abs(truth)), (m, truth)
    assert m.lam_error <= 1e-12 * (1 + abs(truth))
    assert abs(m.slope) <= m.curvature * m.lam_error


EPS = float(np.finfo(np.float64).eps)


def test_newton_polish_stops_on_round_off_and_on_non_convexity():
    # quadratic: one step is exact, the next step is round-off and the polish stops
    lam, s1, s2, step, taken = newton_polish(lambda t: 3.0 * (t - 0.7) ** 2, 0.0)
    assert abs(lam - 0.7) <= 4 * EPS and len(taken) <= 3 and s2 > 0
    # concave: no Newton step is taken
    lam, _, s2, _, taken = newton_polish(lambda t: -(t**2), 0.3)
    assert lam == 0.3 and taken == () and s2 < 0
    # on top of a large constant Brent's search (values only) stops about sqrt(eps |phi| / phi'')
    # short of the minimum; Newton on autograd derivatives does not see the constant
    phi = lambda t: 1e3 + torch.cosh(2 * (t - 0.3))  # noqa: E731
    assert abs(orbit_minimiser(lambda t: float(phi(torch.tensor(t))), -1, 1, tol=1e-14) - 0.3) > 1e-9
    m = orbit_minimum(phi, -1.0, 1.0)
    assert abs(m.lam - 0.3) <= m.lam_error <= 1e-14


def test_ratio_interval_rejects_a_ratio_a_few_errors_off():
    """Theorem 4's comparison (ratio of ensemble means, delta-method standard error, Student-t over
    the runs): runs whose ratio is truly r pass at r and fail at r shifted by the bound + 3 se."""
    g = torch.Generator().manual_seed(3)
    R = 48
    den = 2.0 + 0.3 * torch.randn(R, generator=g, dtype=torch.float64)
    num = 0.97 * den + 0.05 * torch.randn(R, generator=g, dtype=torch.float64)
    r, se = ratio_with_stderr(num, den)
    b = student_t(se, R)
    assert abs(r - 0.97) <= b.value
    assert abs(r - (0.97 + b.value + 3 * se)) > b.value
