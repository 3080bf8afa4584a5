"""Unit and property tests of symbolic.backward_error and symbolic.stochastic (exact SymPy)."""

import time

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from symbolic import backward_error as be
from symbolic import stochastic as sto


def test_order_three_generic_runs_in_seconds():
    t0 = time.process_time()  # CPU time: robust to a loaded machine
    l, xs = be.generic_loss(2)
    fs = be.euler_modified_field(-be.gradient(l, xs), xs, 3)
    assert len(fs) == 4 and all(f.shape == (2, 1) for f in fs)
    assert time.process_time() - t0 < 10.0


def test_quadratic_1d_matches_the_log_series():
    # Euler on l = a x^2/2 is x -> (1 - h a) x: exact modified field log(1 - h a)/h x = -sum (h a)^j a x/(j+1)
    x, a = sp.symbols("x a")
    fs = be.euler_modified_field(sp.Matrix([-a * x]), (x,), 5)
    for j, f in enumerate(fs):
        assert sp.simplify(f[0] + a ** (j + 1) * x / (j + 1)) == 0


def test_second_order_closed_form_generic_3d():
    l, xs = be.generic_loss(3)
    f2 = be.euler_modified_field(-be.gradient(l, xs), xs, 2)[2]
    assert sp.expand(f2 - be.second_order_closed_form(l, xs)) == sp.zeros(3, 1)


def test_matrix_learning_rate_second_order_closed_form():
    # f = -P g: f'f'f = -PHPHPg, f''(f,f) = -P T[Pg, Pg]  =>  f2 = -(1/3) PHPHPg - (1/12) P T[Pg,Pg]
    l, xs = be.generic_loss(2)
    P = be.symmetric_matrix(2)
    g, H = be.gradient(l, xs), be.hessian(l, xs)
    f2 = be.euler_modified_field(-P * g, xs, 2)[2]
    Pg = P * g
    target = -(P * H * P * H * P * g) / 3 - P * be.third_contract(l, xs, Pg, Pg) / 12
    assert sp.expand(f2 - target) == sp.zeros(2, 1)


def test_elementary_differential_coefficients_third_order():
    c = be.elementary_differential_coefficients(3)
    assert c == {"f'f'f'f": sp.Rational(-1, 4), "f'f''(f,f)": sp.Rational(-1, 12),
                 "f''(f,f'f)": sp.Rational(-1, 12), "f'''(f,f,f)": 0}


def test_quadratic_has_modified_loss_to_order_three():
    q, xs = be.quadratic_loss(2)
    h = sp.Symbol("h")
    phi = be.modified_loss(q, xs, 3, h)
    F = sum((h**j * f for j, f in enumerate(be.euler_modified_field(-be.gradient(q, xs), xs, 3))), sp.zeros(2, 1))
    assert sp.expand(-be.gradient(phi, xs) - F) == sp.zeros(2, 1)
    g, H = be.gradient(q, xs), be.hessian(q, xs)
    phi2 = sp.expand(phi.coeff(h, 2))
    # potentials are defined up to a constant: compare gradients
    assert sp.expand(be.gradient(phi2 - (g.T * H * g)[0] / 6, xs)) == sp.zeros(2, 1)


def test_counterexample_has_no_second_order_loss():
    l, xs, pt, curl = be.nonpotential_counterexample()
    assert curl == sp.Rational(-11, 12)
    with pytest.raises(ValueError, match="order-2 term"):
        be.modified_loss(l, xs, 2)
    be.modified_loss(l, xs, 1)  # first order always exists


def test_potential_refuses_a_rotation_field():
    x, y = sp.symbols("x y")
    with pytest.raises(ValueError, match="no potential"):
        be.potential(sp.Matrix([-y, x]), (x, y))


def test_curl_formula_and_one_dimensional_case():
    l, xs = be.generic_loss(2)
    f2 = be.euler_modified_field(-be.gradient(l, xs), xs, 2)[2]
    assert sp.expand(be.jacobian_antisymmetric_part(f2, xs) - be.second_order_curl_formula(l, xs)) == sp.zeros(2, 2)
    l1, x1 = be.generic_loss(1)
    assert be.is_gradient_field(be.euler_modified_field(-be.gradient(l1, x1), x1, 2)[2], x1)


def test_finite_n_obstruction_vanishes_only_for_one_step():
    assert be.second_order_obstruction_finite_n(1) == 0
    assert all(be.second_order_obstruction_finite_n(n) != 0 for n in range(2, 6))
    n = sp.Symbol("n", positive=True)
    assert sp.limit(be.second_order_obstruction_finite_n(n), n, sp.oo) == sp.Rational(-1, 6)


def test_cn_mechanical_matches_formula_in_1d():
    assert be.first_order_coefficient_finite_n(5, dim=1) == sp.Rational(1, 5)


def test_bad_orders_are_refused():
    x = sp.Symbol("x")
    with pytest.raises(ValueError, match="order k"):
        be.euler_modified_field(sp.Matrix([-x]), (x,), -1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        be.first_order_coefficient_finite_n(0)
    with pytest.raises(ValueError, match="order must be"):
        be.elementary_differential_coefficients(5)


@given(coeffs=st.lists(st.integers(-3, 3), min_size=7, max_size=7))
def test_random_cubic_polynomials_second_order(coeffs):
    x, y = sp.symbols("x y")
    mons = [x, y, x**2, x * y, y**2, x**3, x * y**2]
    l = sum(c * m for c, m in zip(coeffs, mons)) + x**2 * y**2 / 4
    f2 = be.euler_modified_field(-be.gradient(l, (x, y)), (x, y), 2)[2]
    assert sp.expand(f2 - be.second_order_closed_form(l, (x, y))) == sp.zeros(2, 1)
    assert sp.expand(be.jacobian_antisymmetric_part(f2, (x, y)) - be.second_order_curl_formula(l, (x, y))) == sp.zeros(2, 2)


@given(N=st.integers(2, 4), B=st.integers(1, 3))
def test_noise_split_enumeration(N, B):
    assert sto.with_replacement_enumeration(N, 2, B) == 0
    if B <= N:
        assert sto.without_replacement_enumeration(N, 2, B) == 0


def test_without_replacement_breaks_the_one_over_b_law():
    assert sto.without_replacement_enumeration(4, 2, 2, sp.Rational(1, 2)) != 0
