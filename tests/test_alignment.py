"""Unit and property tests of numeric.alignment (Gram cosine, linear CKA, mutual kNN)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numeric import strategies as nst
from numeric.alignment import alignment_matrix, gram_cosine, linear_cka, mutual_knn
from core.errors import InputError


@given(seed=nst.seeds(), n=st.integers(12, 40), p=st.integers(1, 6), c=st.floats(0.1, 10.0))
def test_invariant_under_scaled_rotation(seed, n, p, c):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, p))
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    G = c * F @ Q
    assert gram_cosine(F, G) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(F, G) == pytest.approx(1.0, abs=1e-12)
    assert mutual_knn(F, G, k=5) == 1.0


@given(seed=nst.seeds(), p=st.integers(1, 5), q=st.integers(1, 5))
def test_bounds_and_symmetry(seed, p, q):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((30, p)), rng.standard_normal((30, q))
    for f in (gram_cosine, linear_cka):
        v = f(A, B)
        assert 0.0 <= v <= 1.0 + 1e-12
        assert v == pytest.approx(f(B, A), abs=1e-12)
    assert 0.0 <= mutual_knn(A, B, 3) <= 1.0


def test_gram_cosine_matches_explicit_gram_matrices():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((25, 3)), rng.standard_normal((25, 4))
    Ka, Kb = A @ A.T, B @ B.T
    explicit = np.sum(Ka * Kb) / (np.linalg.norm(Ka) * np.linalg.norm(Kb))
    assert gram_cosine(A, B) == pytest.approx(explicit, rel=1e-12)


def test_independent_features_have_low_cka_and_knn():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    # E[CKA] for independent Gaussian features ~ p/n scale; mutual kNN ~ k/(n-1) at chance
    assert linear_cka(A, B) < 0.1
    assert mutual_knn(A, B, k=10) < 0.1


def test_alignment_matrix_shape_and_errors():
    rng = np.random.default_rng(2)
    layers = [rng.standard_normal((20, 3)) for _ in range(3)]
    M = alignment_matrix(layers, layers[:2], "gram_cosine")
    assert M.shape == (3, 2) and M[0, 0] == pytest.approx(1.0)
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
    with pytest.raises(InputError, match="k must be"):
        mutual_knn(np.eye(10), np.eye(10), k=10)
    with pytest.raises(InputError, match="NaN"):
        gram_cosine(np.full((10, 2), np.nan), a)
    z = np.eye(10)
    z[3] = 0
    with pytest.raises(InputError, match="all-zero representation"):
        mutual_knn(z, np.eye(10), k=2)
