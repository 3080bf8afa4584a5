"""Hypothesis strategies: named, reusable generators of the suite's random inputs.

>>> from hypothesis import given, settings
>>> @settings(max_examples=3, derandomize=True)
... @given(spd_matrices(3))
... def check(S):
...     import numpy as np
...     assert np.all(np.linalg.eigvalsh(S) > 0)
>>> check()
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

_entries = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, width=64)


def dims(min_value: int = 1, max_value: int = 4):
    """A dimension (input, output or hidden width)."""
    return st.integers(min_value, max_value)


def matrices(rows: int, cols: int, elements=_entries):
    """A dense (rows, cols) float64 matrix with entries in [-1, 1]."""
    return arrays(np.float64, (rows, cols), elements=elements)


def spd_matrices(n: int, min_eig: float = 0.2, max_eig: float = 2.0):
    """A symmetric positive-definite n x n matrix with spectrum in [min_eig, max_eig]:
    a random orthogonal basis (QR of a random matrix) times a random spectrum."""

    @st.composite
    def build(draw):
        A = draw(matrices(n, n, st.floats(-1, 1, allow_nan=False, width=64)))
        A = A + 3.0 * np.eye(n)  # keep QR well conditioned
        Q, _ = np.linalg.qr(A)
        eig = draw(arrays(np.float64, (n,), elements=st.floats(min_eig, max_eig, allow_nan=False, width=64)))
        return (Q * eig) @ Q.T

    return build()


def invertible_matrices(n: int, min_sv: float = 0.3, max_sv: float = 2.0):
    """An n x n matrix with singular values in [min_sv, max_sv] (well conditioned)."""

    @st.composite
    def build(draw):
        Q1, _ = np.linalg.qr(draw(matrices(n, n)) + 3.0 * np.eye(n))
        Q2, _ = np.linalg.qr(draw(matrices(n, n)) - 3.0 * np.eye(n))
        s = draw(arrays(np.float64, (n,), elements=st.floats(min_sv, max_sv, allow_nan=False, width=64)))
        return (Q1 * s) @ Q2.T

    return build()


def full_rank_matrices(rows: int, cols: int, min_sv: float = 0.3, max_sv: float = 2.0):
    """A (rows, cols) matrix of full rank min(rows, cols), singular values in [min_sv, max_sv]."""

    @st.composite
    def build(draw):
        r = min(rows, cols)
        Q1, _ = np.linalg.qr(draw(matrices(rows, rows)) + 3.0 * np.eye(rows))
        Q2, _ = np.linalg.qr(draw(matrices(cols, cols)) - 3.0 * np.eye(cols))
        s = draw(arrays(np.float64, (r,), elements=st.floats(min_sv, max_sv, allow_nan=False, width=64)))
        return (Q1[:, :r] * s) @ Q2[:, :r].T

    return build()


def seeds():
    return st.integers(0, 2**31 - 1)
