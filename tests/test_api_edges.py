"""Bad input at the API's edge: a clear InputError naming the problem, never a silent
truncation, a raw TypeError/IndexError/ZeroDivisionError, or a NaN reported as converged."""

import numpy as np
import pytest
import torch

from core.errors import DivergenceError, InputError
from core.validation import as_numpy, check_int, check_number, check_spd, check_width
from numeric.stationary import fit_eta_ladder, stationary_average
from symbolic import deep_linear as dl
from symbolic.two_layer import entropic_optimum

V = np.array([[1.0, 0.3], [0.2, 0.8]])


def test_complex_input_is_refused_not_cast():
    with pytest.raises(InputError, match="must be real"):
        as_numpy("V", np.eye(2) + 1j)
    with pytest.raises(InputError, match="must be real"):
        check_spd("Sx", [[1 + 0j, 0], [0, 1]])


@pytest.mark.parametrize("value", [2.5, "2", True, None])
def test_whole_numbers(value):
    with pytest.raises(InputError, match="whole number"):
        check_int("n_runs", value)


def test_float_widths_are_not_truncated():
    with pytest.raises(InputError, match="whole number"):
        check_width("width", 2.7, 2)
    with pytest.raises(InputError, match="whole number"):
        dl.entropic_minimum(dl.EmbeddedProblem(V, np.eye(2), np.eye(2)), [2.9])
    with pytest.raises(InputError, match="whole number"):
        entropic_optimum(V, np.eye(2), np.eye(2), width=2.7)


def test_a_string_learning_rate_is_refused():
    with pytest.raises(InputError, match="real number"):
        check_number("eta", "0.1")


def test_low_precision_is_refused():
    with pytest.raises(InputError, match="dps must be at least 15"):
        entropic_optimum(V, np.eye(2), np.eye(2), dps=0)


def test_rank_thresholds_agree():
    # a V one rounding error from rank 1: both closed forms must see the same rank
    Vr = np.outer([1.0, 2.0], [1.0, 1.0]) + 1e-17 * np.eye(2)
    prob = dl.EmbeddedProblem(Vr, np.eye(2), np.eye(2))
    opt = entropic_optimum(Vr, np.eye(2), np.eye(2))
    assert prob.rank == opt.rank == 1


def test_empty_and_degenerate_inputs():
    with pytest.raises(InputError, match="empty"):
        check_spd("Sx", np.zeros((0, 0)))
    with pytest.raises(InputError, match="at least one hidden layer"):
        dl.entropic_minimum(dl.EmbeddedProblem(V, np.eye(2), np.eye(2)), [])
    with pytest.raises(InputError, match="depth D must be at least 2"):
        dl.EmbeddedProblem(V, np.eye(2), np.eye(2)).equipartition_value(0)


def test_eta_ladder_fit_refuses_non_positive_eta():
    with pytest.raises(InputError, match="positive"):
        fit_eta_ladder([-0.01, 0.02, 0.04], [[0.0]] * 3, [[1.0]] * 3)


def test_a_nan_observable_is_never_a_converged_mean():
    state = {"x": torch.zeros(4, dtype=torch.float64)}

    def advance(n):
        state["x"] = state["x"] + float("nan")

    with pytest.raises(DivergenceError, match="'x' became non-finite"):
        stationary_average(advance, lambda: {"x": state["x"]}, block_steps=2, window=1, average_blocks=1,
                           max_steps=10)
