"""Unit and property tests of numeric.alignment (Gram cosine, linear CKA biased and unbiased,
mutual kNN)."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from numeric import strategies as nst
from numeric.alignment import (alignment_matrix, gram_cosine, linear_cka, linear_cka_unbiased, mutual_knn,
                               MEASURES)
from core.errors import InputError

_feature_entries = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def feature_sets(draw, min_rows=6, max_rows=30, max_cols=5):
    """A (n, p) float64 feature array from hypothesis.extra.numpy, not constant over the rows."""
    n = draw(st.integers(min_rows, max_rows))
    p = draw(st.integers(1, max_cols))
    F = draw(arrays(np.float64, (n, p), elements=_feature_entries))
    assume(_well_posed(F))
    return F


def _well_posed(F) -> bool:
    """Not constant over the rows, and its unbiased self-HSIC is clearly positive (it can be
    <= 0 for a few rows of degenerate data, where the unbiased CKA is undefined)."""
    C = F - F.mean(0)
    if np.linalg.norm(C) <= 1e-3 * max(1.0, np.abs(F).max()):
        return False
    K = C @ C.T
    return bool(_hsic_unbiased_explicit(K, K) > 1e-3 * np.linalg.norm(K) ** 2 / F.shape[0] ** 2)


@given(seed=nst.seeds(), n=st.integers(12, 40), p=st.integers(1, 6), c=st.floats(0.1, 10.0))
def test_invariant_under_scaled_rotation(seed, n, p, c):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, p))
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    G = c * F @ Q
    assert gram_cosine(F, G) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(F, G) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka_unbiased(F, G) == pytest.approx(1.0, abs=1e-10)
    assert mutual_knn(F, G, k=5) == 1.0


@given(seed=nst.seeds(), p=st.integers(1, 5), q=st.integers(1, 5))
def test_bounds_and_symmetry(seed, p, q):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((30, p)), rng.standard_normal((30, q))
    for f in (gram_cosine, linear_cka):
        v = f(A, B)
        assert 0.0 <= v <= 1.0 + 1e-12
        assert v == pytest.approx(f(B, A), abs=1e-12)
    u = linear_cka_unbiased(A, B)
    assert u <= 1.0 + 1e-12  # Cauchy-Schwarz for the unbiased HSIC inner product; it may be < 0
    assert u == pytest.approx(linear_cka_unbiased(B, A), abs=1e-12)
    assert 0.0 <= mutual_knn(A, B, 3) <= 1.0


def test_gram_cosine_matches_explicit_gram_matrices():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((25, 3)), rng.standard_normal((25, 4))
    Ka, Kb = A @ A.T, B @ B.T
    explicit = np.sum(Ka * Kb) / (np.linalg.norm(Ka) * np.linalg.norm(Kb))
    assert gram_cosine(A, B) == pytest.approx(explicit, rel=1e-12)


# ----------------------------------------------------------------------------- unbiased CKA


def _hsic_unbiased_explicit(K, L):
    """Song et al. (2012), Eq. 5, written with n x n Gram matrices (the reference formula)."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))


@given(A=feature_sets(), data=st.data())
def test_unbiased_cka_matches_explicit_gram_formula(A, data):
    q = data.draw(st.integers(1, 5))
    B = data.draw(arrays(np.float64, (A.shape[0], q), elements=_feature_entries))
    assume(_well_posed(B))
    Ka, Kb = A @ A.T, B @ B.T
    kk, ll = _hsic_unbiased_explicit(Ka, Ka), _hsic_unbiased_explicit(Kb, Kb)
    explicit = _hsic_unbiased_explicit(Ka, Kb) / np.sqrt(kk * ll)
    assert linear_cka_unbiased(A, B) == pytest.approx(explicit, rel=1e-7, abs=1e-7)


@given(F=feature_sets())
def test_unbiased_cka_of_identical_features_is_one(F):
    assert linear_cka_unbiased(F, F) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(F, F) == pytest.approx(1.0, abs=1e-12)


@given(F=feature_sets(max_cols=4), G=feature_sets(max_cols=4), seed=nst.seeds(),
       c=st.floats(0.01, 100.0), shift=st.floats(-5.0, 5.0))
def test_unbiased_cka_invariances(F, G, seed, c, shift):
    """Invariant under F -> c F O + shift (orthogonal O, isotropic scale c > 0, translation)."""
    n = min(F.shape[0], G.shape[0])
    F, G = F[:n], G[:n]
    assume(_well_posed(F) and _well_posed(G))
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((F.shape[1], F.shape[1])))
    base = linear_cka_unbiased(F, G)
    moved = linear_cka_unbiased(c * F @ Q + shift, G)
    assert moved == pytest.approx(base, abs=1e-8 * max(1.0, abs(base)) + 1e-8)
    assert linear_cka(c * F @ Q, G) == pytest.approx(linear_cka(F, G), abs=1e-10)


def null_bound(n: int, p: int, q: int, x: float = 20.0) -> float:
    r"""A bound on |unbiased CKA| for independent isotropic features, exceeded with
    probability <= 2 e^{-x} (x = 20: ~4e-9) as n grows.

    Under independence ``n HSIC_1(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` tends to
    ``sum_kl w_kl (Z_kl^2 - 1)`` (a degenerate U-statistic; Z_kl iid N(0, 1)) with
    ``w_kl = lam_k mu_l / (|lam| |mu|)`` from the covariance spectra, so ``|w|_2 = 1`` and,
    for isotropic features, ``|w|_inf = 1 / sqrt(p q)``. The Laurent-Massart inequality
    bounds the upper tail by ``2 sqrt(x) |w|_2 + 2 x |w|_inf`` and the lower tail by
    ``2 sqrt(x) |w|_2``. The denominators are estimated from the same n samples (relative
    error O(sqrt((p + q)/n))): a factor 1.5 covers them at n >= 200.
    """
    return 1.5 * (2.0 * np.sqrt(x) + 2.0 * x / np.sqrt(p * q)) / n


@given(seed=nst.seeds(), n=st.integers(200, 600), p=st.integers(2, 16), q=st.integers(2, 16))
def test_unbiased_cka_of_independent_features_is_zero_within_bound(seed, n, p, q):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((n, p)), rng.standard_normal((n, q))
    assert abs(linear_cka_unbiased(A, B)) <= null_bound(n, p, q)


def test_biased_cka_floor_on_independent_features():
    """The biased estimator's floor sqrt(pq)/sqrt((n+p)(n+q)) at the digits test size (450)
    and widths (32 quick, 128 full); the unbiased one is ~0 there (sd sqrt(2/(n(n-1))))."""
    rng = np.random.default_rng(3)
    n, draws = 450, 8
    floors = {}
    for p in (32, 128):
        b = [linear_cka(rng.standard_normal((n, p)), rng.standard_normal((n, p))) for _ in range(draws)]
        u = [linear_cka_unbiased(rng.standard_normal((n, p)), rng.standard_normal((n, p))) for _ in range(draws)]
        floors[p] = p / (n + p)
        # one draw's sd is ~0.003 for both estimators here: z = 6 on the mean of 8 draws
        assert np.mean(b) == pytest.approx(floors[p], abs=6 * 0.004 / np.sqrt(draws))
        assert abs(np.mean(u)) <= 6 * np.sqrt(2 / (n * (n - 1))) * 1.2 / np.sqrt(draws)
    assert floors[32] == pytest.approx(0.066, abs=1e-3) and floors[128] == pytest.approx(0.221, abs=1e-3)


def test_independent_features_have_low_cka_and_knn():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    # biased CKA floor ~ p/(n+p) = 0.02 here; mutual kNN ~ k/(n-1) at chance
    assert linear_cka(A, B) < 0.1
    assert abs(linear_cka_unbiased(A, B)) < null_bound(400, 8, 8)
    assert mutual_knn(A, B, k=10) < 0.1


def test_mutual_knn_breaks_ties_by_index():
    """Rows 1, 2 and 3 all point the same way as row 0 (cosine 1): with k = 1 row 0's
    neighbour is row 1 (the lowest index), in both spaces, whatever their norms."""
    F = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.5, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    G = F[:, ::-1] * np.array([2.0, 1.0])  # the same directions, relabelled axes
    from numeric.alignment import _knn

    assert _knn(F, 1)[0].tolist() == [1]
    assert _knn(F, 2)[0].tolist() == [1, 2]
    assert mutual_knn(F, G, k=2) == 1.0


def test_alignment_matrix_shape_and_errors():
    rng = np.random.default_rng(2)
    layers = [rng.standard_normal((20, 3)) for _ in range(3)]
    M = alignment_matrix(layers, layers[:2], "gram_cosine")
    assert M.shape == (3, 2) and M[0, 0] == pytest.approx(1.0)
    U = alignment_matrix(layers, layers[:2], "linear_cka_unbiased")
    assert U.shape == (3, 2) and U[1, 1] == pytest.approx(1.0)
    assert set(MEASURES) == {"gram_cosine", "linear_cka", "linear_cka_unbiased", "mutual_knn"}
    with pytest.raises(InputError, match="unknown alignment measure"):
        alignment_matrix(layers, layers, "cosine")


def test_bad_inputs():
    a = np.ones((10, 2))
    with pytest.raises(InputError, match="same inputs"):
        gram_cosine(a, np.ones((9, 2)))
    with pytest.raises(InputError, match="identically zero"):
        gram_cosine(a, np.zeros((10, 2)))
    with pytest.raises(InputError, match="constant"):
        linear_cka(a, np.random.default_rng(0).standard_normal((10, 2)))
    with pytest.raises(InputError, match="constant"):
        linear_cka_unbiased(a, np.random.default_rng(0).standard_normal((10, 2)))
    with pytest.raises(InputError, match="at least 4"):
        linear_cka_unbiased(np.eye(3), np.eye(3))
    with pytest.raises(InputError, match="k must be"):
        mutual_knn(np.eye(10), np.eye(10), k=10)
    with pytest.raises(InputError, match="NaN"):
        gram_cosine(np.full((10, 2), np.nan), a)
    z = np.eye(10)
    z[3] = 0
    with pytest.raises(InputError, match="all-zero representation"):
        mutual_knn(z, np.eye(10), k=2)
