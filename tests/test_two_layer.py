"""Unit and property tests of symbolic.two_layer (closed forms of the two-layer linear net)."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from numeric import strategies as nst
from core.errors import InputError
from symbolic.two_layer import (diagonal_case, entropic_optimum, entropy_on_manifold, expectation_over_data,
                                total_sharpness)


def test_expectation_refuses_higher_moments():
    x = sp.symbols("x0:1")
    with pytest.raises(ValueError, match="higher moments"):
        expectation_over_data(x[0] ** 4, x, [], sp.Matrix([[1]]), sp.Matrix(0, 0, []))


def test_diagonal_case_3x3_exact():
    dc = diagonal_case(3)
    assert all(r == 0 for r in dc.residuals.values()), dc.residuals


@st.composite
def problems(draw):
    dx, dy = draw(nst.dims(1, 3)), draw(nst.dims(1, 3))
    V = draw(nst.full_rank_matrices(dy, dx, 0.4, 1.6))
    return V, draw(nst.spd_matrices(dx, 0.3, 2.0)), draw(nst.spd_matrices(dy, 0.3, 2.0)), draw(st.integers(0, 2))


@given(problems(), nst.seeds())
def test_invariants_do_not_depend_on_Q(prob, seed):
    """Any Q with orthonormal columns gives the same W^T W, U U^T, entropy and sharpness."""
    V, Sx, Se, extra = prob
    base = entropic_optimum(V, Sx, Se, width=min(V.shape) + extra)
    h, r = base.W.shape[0], base.rank
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((h, h)))
    other = entropic_optimum(V, Sx, Se, width=h, Q=Q[:, :r])
    scale = lambda A: 1e-12 * max(1.0, np.abs(A).max())  # noqa: E731  float64 round-off of 40-digit values
    assert np.abs(other.U @ other.W - V).max() < scale(V)
    assert np.abs(other.W.T @ other.W - base.WtW).max() < scale(base.WtW)
    assert np.abs(other.U @ other.U.T - base.UUt).max() < scale(base.UUt)
    e1 = entropy_on_manifold(other.U, other.W, Sx, Se)
    assert abs(e1 - base.min_entropy) < 1e-12 * base.min_entropy
    assert abs(total_sharpness(other.U, other.W, Sx) - base.sharpness) < 1e-12 * base.sharpness


@given(problems())
def test_spectrum_and_equipartition(prob):
    V, Sx, Se, extra = prob
    o = entropic_optimum(V, Sx, Se, width=min(V.shape) + extra)
    eig = np.sort(np.linalg.eigvalsh(o.W @ Sx @ o.W.T))[::-1][: o.rank]
    assert np.allclose(eig, o.WSxWt_spectrum, rtol=1e-12, atol=1e-14)
    gU = 4 * np.trace(Se) * np.trace(o.W @ Sx @ o.W.T)
    gW = 4 * np.trace(Sx) * np.trace(o.U.T @ Se @ o.U)
    assert abs(gU - gW) < 1e-12 * gU and abs(gU - o.grad_moment) < 1e-12 * gU


def test_rank_deficient_target():
    V = np.outer([1.0, 2.0], [0.5, -1.0, 1.0])  # rank 1
    o = entropic_optimum(V, np.eye(3), np.diag([1.0, 0.5]), width=3)
    assert o.rank == 1 and o.W.shape == (3, 3)
    assert np.linalg.matrix_rank(o.WtW, tol=1e-10) == 1
    assert np.abs(o.U @ o.W - V).max() < 1e-12


def test_precision_is_stable():
    rng = np.random.default_rng(3)
    V, A = rng.standard_normal((2, 3)), rng.standard_normal((3, 3))
    Sx = A @ A.T + 0.2 * np.eye(3)
    lo = entropic_optimum(V, Sx, np.diag([1.0, 0.3]), dps=30)
    hi = entropic_optimum(V, Sx, np.diag([1.0, 0.3]), dps=60)
    assert np.abs(lo.WtW - hi.WtW).max() < 1e-14 and abs(lo.sharpness - hi.sharpness) < 1e-13


def test_bad_inputs():
    with pytest.raises(InputError, match="not positive definite"):
        entropic_optimum(np.eye(2), np.eye(2), np.diag([1.0, 0.0]))
    with pytest.raises(InputError, match="orthonormal"):
        entropic_optimum(np.eye(2), np.eye(2), np.eye(2), width=3, Q=np.ones((3, 2)))
    with pytest.raises(InputError, match="NaN"):
        entropic_optimum(np.array([[np.nan]]), np.eye(1), np.eye(1))


# ------------------------------------------------------------- the SGD witness's statistics
import torch  # noqa: E402

from numeric.stationary import fit_eta_ladder  # noqa: E402
from numeric.two_layer_witness import TwoLayerProblem, eta_ladder, rung_seed, spectrum_of_mean  # noqa: E402
from theorems.two_layer_checks import limit_difference_criteria, offset_criteria  # noqa: E402


def test_spectrum_of_mean_is_the_spectrum_of_the_mean_gram_matrix():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    Sx = A @ A.T + 0.5 * np.eye(3)
    W = torch.as_tensor(rng.standard_normal((64, 2, 3)))
    WtW = W.transpose(-1, -2) @ W
    mean, se = spectrum_of_mean(WtW, Sx, 2)
    S = torch.as_tensor(Sx)
    direct = torch.linalg.eigvalsh(W.mean(0) @ S @ W.mean(0).T)  # not the same: W's mean is not W^T W's
    exact = np.sort(np.linalg.eigvals(WtW.mean(0).numpy() @ Sx).real)[::-1][:2]
    assert np.allclose(mean.numpy(), exact, rtol=1e-12) and bool((se > 0).all())
    assert not np.allclose(np.sort(direct.numpy())[::-1], exact)


def test_rung_seeds_are_distinct_across_rungs_roles_and_streams():
    seeds = {rung_seed(s, st, k, r) for s in range(3) for st in (1, 2, 101) for k in range(5) for r in (0, 1)}
    assert len(seeds) == 3 * 3 * 5 * 2


def test_an_offset_is_resolved_and_a_difference_of_limits_is_not():
    etas = [0.04, 0.02, 0.01]
    se = [np.full(2, 1e-4)] * 3
    fit = fit_eta_ladder(etas, [np.array([1.01, 2.0]) + 3 * e for e in etas], se)
    crit = offset_criteria(fit, [1.0, 2.0], "x")
    assert all(c.passed for c in crit)
    crit = offset_criteria(fit_eta_ladder(etas, [np.array([1.0, 2.0]) + 3 * e for e in etas], se), [1.0, 2.0], "x")
    assert not crit[0].passed
    other = fit_eta_ladder(etas, [np.array([1.01, 2.0]) - 5 * e for e in etas], se)
    crit, rel, bound = limit_difference_criteria(fit, other, "x")
    assert all(c.passed for c in crit) and rel < bound


def test_isotropic_noise_ladder_meets_the_closed_form():
    """A small ladder on an isotropic-noise problem: every invariant's eta -> 0 fit is the closed form."""
    from theorems.two_layer_checks import invariant_verdicts

    p = TwoLayerProblem(V=np.array([[1.0, 0.3], [0.0, 0.8]]), Sx=np.diag([1.0, 0.5]), Se=0.7 * np.eye(2), width=2)
    lad = eta_ladder(p, [0.02, 0.01, 0.005], seed=3, n_runs=128, block_steps=100, window=3, average_blocks=6,
                     max_steps=5_000_000, drift_test="trend", device="cpu")
    assert len({id(r.final_weights[0]) for r in lad.rungs}) == 3
    for v in invariant_verdicts(lad):
        assert v.passed, v.explain()
