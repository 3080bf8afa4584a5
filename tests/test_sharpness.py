"""numeric.sharpness: exact and Hutchinson Hessian traces against closed forms."""

import numpy as np
import pytest
import torch

from core.errors import InputError
from numeric.sharpness import (flatten, hessian_trace, hutchinson_trace, two_layer_population_loss,
                               two_layer_sharpness_exact, two_layer_sharpness_formula, unflatten)
from symbolic.two_layer import total_sharpness


def test_exact_trace_of_quadratic_form():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(7, 7, generator=g, dtype=torch.float64)
    H = A @ A.T
    f = lambda th: 0.5 * th @ H @ th + th.sum() ** 3  # noqa: E731  cubic part has Hessian 6 s 11^T
    th = torch.randn(7, generator=g, dtype=torch.float64)
    expected = torch.trace(H) + 6 * th.sum() * 7
    assert abs(float(hessian_trace(f, th) - expected)) < 1e-10 * float(expected.abs())


def test_hutchinson_within_its_error_bar():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(30, 30, generator=g, dtype=torch.float64)
    H = A @ A.T
    f = lambda th: 0.5 * th @ H @ th  # noqa: E731
    est, se = hutchinson_trace(f, torch.zeros(30, dtype=torch.float64), n_probes=400, generator=g)
    assert 0 < float(se) < 0.2 * float(torch.trace(H))
    assert abs(float(est - torch.trace(H))) <= 6 * float(se)  # z = 6: false failure < 2e-9


def test_two_layer_exact_equals_formula_and_numpy():
    g = torch.Generator().manual_seed(3)
    U = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)
    W = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    Sx = np.diag([1.0, 2.0, 0.5])
    exact = two_layer_sharpness_exact(U, W, np.ones((2, 3)), Sx, np.eye(2))
    formula = two_layer_sharpness_formula(U, W, Sx)
    assert torch.allclose(exact, formula, rtol=1e-12)
    assert abs(total_sharpness(U[0].numpy(), W[0].numpy(), Sx) - float(formula[0])) < 1e-12 * float(formula[0])


def test_population_loss_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(4)
    U, W = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    V, Sx, Se = np.array([[1.0, 0.5], [0.0, 1.0]]), np.array([[1.0, 0.3], [0.3, 0.5]]), np.diag([0.2, 0.4])
    n = 200_000
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(torch.as_tensor(Sx)).T
    e = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(torch.as_tensor(Se)).T
    l = ((x @ (U @ W - torch.as_tensor(V)).T - e) ** 2).sum(-1)
    mc, se = float(l.mean()), float(l.std() / n**0.5)
    assert abs(mc - float(two_layer_population_loss(U, W, V, Sx, Se))) <= 6 * se  # CLT, z = 6


def test_flatten_roundtrip_and_errors():
    a, b = torch.arange(6.0).reshape(2, 3), torch.arange(4.0).reshape(4, 1)
    back = unflatten(flatten([a, b]), [(2, 3), (4, 1)])
    assert torch.equal(back[0], a) and torch.equal(back[1], b)
    with pytest.raises(InputError, match="entries"):
        unflatten(torch.zeros(5), [(2, 3)])
    with pytest.raises(InputError, match="n_probes"):
        hutchinson_trace(lambda t: t.sum(), torch.zeros(2), n_probes=1)


def test_hutchinson_with_mse_loss_mean_matches_exact_trace():
    # F.mse_loss (mean) broke forward-over-reverse HVPs ("ZeroTensors are immutable").
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(5)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, 1, generator=g, dtype=torch.float64)

    def L(th):
        W1, W2 = th[:12].reshape(4, 3), th[12:16].reshape(1, 4)
        return F.mse_loss(torch.tanh(X @ W1.T) @ W2.T, y)

    th = torch.randn(16, generator=g, dtype=torch.float64)
    n = 2000
    est, se = hutchinson_trace(L, th, n_probes=n, generator=g)
    exact = hessian_trace(L, th)
    H = torch.func.hessian(L)(th)
    # CLT: mean of n i.i.d. v^T H v (Rademacher v) has sd sqrt(Var / n), Var = 2 sum_{i!=j} H_ij^2.
    # Use the exact sd (not the sample se, which could be small by chance); z = 6: false failure < 2e-9.
    sd = (2 * (H.pow(2).sum() - torch.diagonal(H).pow(2).sum()) / n).sqrt()
    assert abs(float(est - exact)) <= 6 * float(sd) + 1e-12
    assert abs(float(se / sd) - 1) < 0.2  # the reported standard error estimates the same sd
