"""Tests of numeric.minibatch_noise: per-sample gradients, the noise split on sampled batches
(CLT bounds at the suite's z, theorems.tolerances.Z), and input errors."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InputError
from theorems.tolerances import Z
from numeric.minibatch_noise import (gradient_moments, noise_split, per_sample_gradients,
                                     sample_batch_grad_sq, tanh_mlp_per_sample)


def _problem(seed, N=12, d=2, hidden=2):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    y = torch.cos(X[:, 0]) + 0.2 * torch.randn(N, generator=g, dtype=torch.float64)
    loss, npar = tanh_mlp_per_sample(hidden, d)
    th = torch.randn(npar, generator=g, dtype=torch.float64)
    return loss, th, X, y


def test_per_sample_gradients_average_to_the_full_gradient():
    loss, th, X, y = _problem(0)
    G = per_sample_gradients(loss, th, X, y)
    full = torch.func.grad(lambda t: torch.stack([loss(t, X[i], y[i]) for i in range(len(y))]).mean())(th)
    assert torch.allclose(G.mean(0), full, rtol=0, atol=1e-14)


def test_full_batch_without_replacement_has_no_noise():
    loss, th, X, y = _problem(1)
    sq = sample_batch_grad_sq(loss, th, X, y, batch=len(y), n_batches=5, replace=False)
    mu2, _ = gradient_moments(per_sample_gradients(loss, th, X, y))
    # every batch is the whole data set: |grad L|^2 up to float64 summation round-off
    assert torch.allclose(sq, torch.full_like(sq, mu2), rtol=1e-12, atol=0)


@given(seed=st.integers(0, 10**6), batch=st.integers(1, 8), replace=st.booleans())
def test_noise_split_within_clt_bound(seed, batch, replace):
    loss, th, X, y = _problem(seed)
    r = noise_split(loss, th, X, y, batch, n_batches=3000, seed=seed + 1, replace=replace, z=Z)
    assert abs(r["measured"] - r["predicted"]) <= r["bound"], r


def test_noise_split_bound_rejects_a_prediction_a_few_errors_off():
    """The CLT comparison fails when the prediction is off by the bound plus 3 standard errors
    (e.g. the 1/B law applied without replacement, which is off by far more)."""
    loss, th, X, y = _problem(4)
    r = noise_split(loss, th, X, y, 4, n_batches=4000, seed=5, z=Z)
    assert abs(r["measured"] - r["predicted"]) <= r["bound"] and r["bound"] == Z * r["se"]
    assert abs(r["measured"] - (r["predicted"] + r["bound"] + 3 * r["se"])) > r["bound"]
    wo = noise_split(loss, th, X, y, 4, n_batches=4000, seed=5, replace=False, z=Z)
    one_over_b = wo["grad_L_sq"] + wo["trace_sigma"] / 4
    assert abs(wo["measured"] - one_over_b) > wo["bound"]


def test_bad_inputs_are_named():
    loss, th, X, y = _problem(2)
    with pytest.raises(InputError, match="exceeds the data set size"):
        noise_split(loss, th, X, y, batch=50, n_batches=10, replace=False, z=Z)
    with pytest.raises(InputError, match="must be"):
        noise_split(loss, th, X, y[:-1], batch=2, n_batches=10, z=Z)
    with pytest.raises(InputError, match="n_batches"):
        noise_split(loss, th, X, y, batch=2, n_batches=1, z=Z)
    with pytest.raises(InputError, match="hidden"):
        tanh_mlp_per_sample(0, 2)
    with pytest.raises(InputError, match="non-finite"):
        sample_batch_grad_sq(loss, th * float("nan"), X, y, 2, 4)
