"""Unit and property tests of numeric/deep_nets.py, numeric/balance.py, numeric/attention.py."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from numeric.balance import gram_law, law_check, sgd_balance_coefficient, entropic_balance_coefficient, t_quantile
from numeric.deep_nets import MLPEnsemble
from core.errors import InputError


@given(depth=st.integers(2, 4), width=st.integers(1, 4), batch=st.integers(1, 3),
       activation=st.sampled_from(["relu", "linear", "poly"]), seed=st.integers(0, 2**16))
def test_autograd_batch_gradient_equals_mean_of_torch_func_per_sample(depth, width, batch, activation, seed):
    """The engine's summed-over-runs autograd gives each run's minibatch gradient: it equals the
    mean of torch.func (vmap+grad) per-sample gradients to float64 precision."""
    net = MLPEnsemble([3, *([width] * (depth - 1)), 2], activation=activation, n_runs=3, batch=batch,
                      seed=seed, device="cpu", init_scale=0.7, teacher_scale=0.7)
    x, y = net.sample()
    _, gB = net.batch_loss_and_grads(x, y)
    per = net.per_sample_grads(x, y)
    for a, b in zip(gB, per):
        assert torch.allclose(a, b.mean(1), rtol=1e-10, atol=1e-12)


def test_law_check_detects_a_real_gap():
    g = torch.Generator().manual_seed(0)
    lhs = 1.0 + 0.01 * torch.randn(32, generator=g, dtype=torch.float64)
    assert law_check(lhs, torch.ones(32, dtype=torch.float64)).consistent
    assert not law_check(lhs + 0.1, torch.ones(32, dtype=torch.float64)).consistent


def test_law_check_rejects_bad_input():
    with pytest.raises(InputError, match="one value per run"):
        law_check(torch.ones(3), torch.ones(4))
    with pytest.raises(InputError, match="non-finite"):
        law_check(torch.tensor([1.0, float("nan")]), torch.ones(2))
    with pytest.raises(InputError, match=">= 2 runs"):
        t_quantile(1)


def test_coefficients_agree_to_first_order():
    eta, gam = 1e-4, 0.3
    assert abs(sgd_balance_coefficient(eta, gam) / entropic_balance_coefficient(eta, gam) - 1) < 3 * eta * gam


def test_gram_law_zero_and_nonzero():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(16, 3, 3, generator=g, dtype=torch.float64)
    M = A @ A.transpose(-1, -2)
    assert gram_law(M, M)["relative_gap"] == 0.0
    assert not gram_law(M + 5 * torch.eye(3), M)["all_entries_consistent"]


def test_engine_input_errors():
    with pytest.raises(InputError, match="dims"):
        MLPEnsemble([3, 2])
    with pytest.raises(InputError, match="beta"):
        MLPEnsemble([3, 2, 1], activation="poly", beta=0.5)
    with pytest.raises(InputError, match="digits"):
        MLPEnsemble([3, 2, 1], inputs="digits")
    with pytest.raises(InputError, match="teacher dims"):
        MLPEnsemble([3, 2, 1], teacher_dims=[4, 2, 1])


def test_digits_inputs_run():
    net = MLPEnsemble([61, 8, 8, 8, 10], inputs="digits", n_runs=2, eta=0.001, device="cpu")
    net.run(3)
    assert np.isfinite(net.observe()["loss"].numpy()).all()
