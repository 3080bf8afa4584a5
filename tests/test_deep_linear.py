"""Tests of symbolic.deep_linear (closed form at any depth) and numeric.platonic_sgd."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from numeric import strategies as nst
from core.errors import DivergenceError, InputError
from numeric.platonic_sgd import measure_kernels
from numeric.deep_linear_min import orbit_minimum
from symbolic import deep_linear as dl

# the Theorem 8 teacher (a full-rank 3x3 problem)
V_T = np.array([[1.0, 0.3, 0.0], [0.2, 0.8, 0.4], [0.0, -0.3, 0.6]])
S_X = np.diag([1.0, 0.6, 1.4])
S_E = np.diag([0.5, 1.0, 0.8])


@given(Sx=nst.spd_matrices(3), Se=nst.spd_matrices(3), V=nst.full_rank_matrices(3, 3))
def test_platonic_kernel_solves_riccati(Sx, Se, V):
    """K = Sx^{-1} # V^T Se V is PSD and solves K Sx K = V^T Se V."""
    K = dl.platonic_kernel(V, Sx, Se)
    W = V.T @ Se @ V
    assert np.allclose(K @ Sx @ K, W, rtol=1e-9, atol=1e-10 * np.abs(W).max())
    assert np.all(np.linalg.eigvalsh((K + K.T) / 2) > -1e-10)


@given(V=nst.full_rank_matrices(2, 3), Sx=nst.spd_matrices(3), Se=nst.spd_matrices(2), D=st.integers(2, 5),
       seed=nst.seeds())
def test_rank_deficient_and_rectangular(V, Sx, Se, D, seed):
    """dy = 2 < dx = 3 (rank 2): widths >= 2 suffice; the closed form still holds."""
    prob = dl.EmbeddedProblem(V, Sx, Se)
    ws = dl.entropic_minimum(prob, [2 + (i % 2) for i in range(D - 1)], seed=seed % 100)
    assert np.allclose(dl.end_to_end(ws), prob.P, atol=1e-9)
    m = dl.layer_second_moments(prob, ws)
    assert np.allclose(m, 4 * prob.equipartition_value(D), rtol=1e-9)
    for k, K in enumerate(dl.hidden_kernels(prob, ws), start=1):
        assert np.allclose(K, prob.kernel(D, k), atol=1e-9 * np.abs(prob.kernel(D, k)).max())


def test_scales_reduce_to_two_layer():
    """D = 2: s_1 = sqrt(b/a) and T = sqrt(ab) Tr S (docs/theory.md section 6)."""
    s, T = dl.layer_scales()
    a, b, tau, k, D = sp.symbols("a b tau k D", positive=True)
    assert sp.simplify(s.subs({D: 2, k: 1}) - sp.sqrt(b / a)) == 0
    assert sp.simplify(T.subs(D, 2) - sp.sqrt(a * b) * tau) == 0
    s3, T3 = dl.layer_scales(3)
    assert sp.simplify(T3 - (a * b) ** sp.Rational(1, 3) * tau ** sp.Rational(4, 3)) == 0


def test_middle_layers_are_scaled_partial_isometries():
    prob = dl.EmbeddedProblem(np.diag([2.0, 1.0, 0.5]), np.eye(3), 0.3 * np.eye(3))
    ws = dl.entropic_minimum(prob, [3, 4, 5], seed=2)
    for W in ws[1:-1]:
        sv = np.linalg.svd(W, compute_uv=False)[:3]
        assert np.allclose(sv, sv[0], rtol=1e-10)  # r = 3 equal singular values


def test_orbit_minimum_large_kappa_is_weight_balanced():
    prob = dl.EmbeddedProblem(np.array([[1.0, 0.4], [0.0, 0.7]]), np.diag([1.0, 2.0]), np.eye(2),
                              M_I=np.array([[1.5, 0.2], [0.0, 0.6]]))
    ws, _ = orbit_minimum(prob, 3, kappa=1e5, starts=2)
    for k, K in enumerate(dl.hidden_kernels(prob, ws), start=1):
        Kb = dl.weight_balanced_kernel(prob, 3, k)
        assert np.linalg.norm(dl.normalised(K) - dl.normalised(Kb)) < 1e-3  # O(1/kappa) away


def test_population_cosine_is_one_for_proportional_kernels():
    K = np.array([[2.0, 0.3], [0.3, 1.0]])
    assert dl.population_cosine(K, 5 * K, np.diag([1.0, 3.0])) == pytest.approx(1.0, abs=1e-14)


def test_bad_inputs():
    V = np.eye(2)
    with pytest.raises(InputError, match="not symmetric"):
        dl.EmbeddedProblem(V, np.array([[1.0, 0.5], [0.0, 1.0]]), np.eye(2))
    with pytest.raises(InputError, match="singular"):
        dl.EmbeddedProblem(V, np.eye(2), np.eye(2), M_O=np.array([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(InputError, match="do not match"):
        dl.EmbeddedProblem(V, np.eye(3), np.eye(2))
    with pytest.raises(InputError, match="below the rank"):
        dl.entropic_minimum(dl.EmbeddedProblem(V, np.eye(2), np.eye(2)), [1])
    with pytest.raises(InputError, match="not positive definite"):
        dl.platonic_kernel(V, np.diag([1.0, 0.0]), np.eye(2))


def test_measure_kernels_smoke_and_divergence():
    prob = dl.EmbeddedProblem(np.eye(2), np.eye(2), 0.5 * np.eye(2))
    m = measure_kernels(prob, [2, 2], 0.02, n_runs=4, block_steps=50, window=2, average_blocks=2, max_steps=200,
                        device="cpu")
    assert m.depth == 3 and len(m.kernel_mean) == 2 and m.total_steps >= 200
    err, se = m.relative_error([prob.kernel(3, 1), prob.kernel(3, 2)])
    assert err.shape == (2,) and np.all(se >= 0)
    with pytest.raises(DivergenceError, match="diverged"):
        measure_kernels(prob, [2], 5.0, n_runs=2, block_steps=200, window=2, average_blocks=1, max_steps=400,
                        device="cpu")


@given(Sx=nst.spd_matrices(2), Se=nst.spd_matrices(2), V=nst.invertible_matrices(2), Z=nst.invertible_matrices(2),
       M_I=nst.invertible_matrices(2), M_O=nst.invertible_matrices(2), D=st.integers(2, 4),
       widths=st.lists(st.integers(2, 4), min_size=3, max_size=3), seed=nst.seeds())
def test_closed_form_random_problems(Sx, Se, V, Z, M_I, M_O, D, widths, seed):
    """Random data and embeddings: the closed form realises P, is balanced, equipartitioned,
    and every hidden kernel is s_k times the embedding-free Platonic kernel."""
    prob = dl.EmbeddedProblem(V, Sx, Se, Z=Z, M_I=M_I, M_O=M_O)
    ws = dl.entropic_minimum(prob, widths[: D - 1], seed=seed % 1000)
    scale = np.linalg.norm(prob.P)
    assert np.linalg.norm(dl.end_to_end(ws) - prob.P) < 1e-9 * scale
    assert max(dl.balance_residuals(prob, ws)) < 1e-8
    g = dl.layer_second_moments(prob, ws)
    assert np.allclose(g, 4 * prob.equipartition_value(D), rtol=1e-9)
    Kp = dl.platonic_kernel(V, Sx, Se)
    for k, K in enumerate(dl.hidden_kernels(prob, ws), start=1):
        assert np.allclose(K, prob.layer_scale(D, k) * Kp, rtol=1e-7, atol=1e-9 * np.abs(Kp).max())


def test_embedded_problem_bad_inputs():
    with pytest.raises(InputError, match="not positive definite"):
        dl.EmbeddedProblem(V_T, -S_X, S_E)
    with pytest.raises(InputError, match="singular"):
        dl.EmbeddedProblem(V_T, S_X, S_E, Z=np.zeros((3, 3)))
    with pytest.raises(InputError, match="below the rank"):
        dl.entropic_minimum(dl.EmbeddedProblem(V_T, S_X, S_E), [2, 3])
    with pytest.raises(InputError, match="hidden layer index"):
        dl.EmbeddedProblem(V_T, S_X, S_E).layer_scale(3, 3)
    with pytest.raises(InputError, match="at least one hidden layer"):
        measure_kernels(dl.EmbeddedProblem(V_T, S_X, S_E), [], 0.01, max_steps=10, device="cpu")
