"""Bad input gets a clear error naming the problem."""

import numpy as np
import pytest
from hypothesis import given

from core.errors import InputError
from numeric.strategies import spd_matrices
from core.validation import check_invertible, check_positive, check_spd, check_width


@given(spd_matrices(3))
def test_spd_matrices_pass(S):
    assert check_spd("S", S) is not None


@pytest.mark.parametrize("M, msg", [
    (np.array([[1.0, 0.5], [0.0, 1.0]]), "not symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),
    (np.zeros((2, 2)), "not positive definite"),
    (np.array([[np.nan, 0.0], [0.0, 1.0]]), "NaN"),
    (np.ones((2, 3)), "must be square"),
])
def test_bad_covariances_are_named(M, msg):
    with pytest.raises(InputError, match=msg):
        check_spd("Sx", M)


def test_singular_width_and_rate_errors():
    with pytest.raises(InputError, match="singular"):
        check_invertible("Z", np.array([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(InputError, match="below the rank"):
        check_width("hidden width", 1, 2)
    with pytest.raises(InputError, match="eta must be positive"):
        check_positive("eta", 0.0)
    with pytest.raises(InputError, match="eta must be positive"):
        check_positive("eta", float("nan"))
