"""The entropic loss (Theorem 1): the backward-error slope ladders (loss families, orders, seeds,
the matrix learning rate), the c_n preconditioner and the minibatch-noise problem, and the
shared slope fits.

>>> [(c["family"], c["dim"]) for c in BEA_CASES]
[('quadratic', 3), ('quartic', 2), ('tanh_mlp', 2)]
>>> matrix_lr_P(0).shape, cn_preconditioner(0, 4).shape
((2, 2), (4, 4))
"""

from __future__ import annotations

import numpy as np
import torch

from numeric import modified_flow as mf
from numeric.minibatch_noise import tanh_mlp_per_sample
from theorems.cache import shared_run

# The slope ladders: loss family, dimension, and the orders k of the modified field by budget
# (tanh_mlp k = 2: no potential exists, the modified vector field itself is tested).
BEA_CASES = [dict(family="quadratic", dim=3), dict(family="quartic", dim=2), dict(family="tanh_mlp", dim=2)]
BEA_ORDERS = {"quadratic": {"quick": (0, 1, 2), "full": (0, 1, 2, 3)},
              "quartic": {"quick": (0, 1), "full": (0, 1, 2)},
              "tanh_mlp": {"quick": (0, 1, 2), "full": (0, 1, 2)}}
MATRIX_LR_ORDERS = (0, 1)  # quartic, dim 2, Lam = eta P
SEED_SCALAR, SEED_MATRIX, SEED_SECOND_ORDER = 11, 12, 13  # offsets of the random losses from ctx.seed


def bea_orders(ctx, family: str) -> tuple:
    return BEA_ORDERS[family][ctx.budget]


def matrix_lr_P(seed: int) -> np.ndarray:
    """The matrix learning rate's shape ``P`` (``Lam = eta P``): diagonal, entries in [0.5, 1.5]."""
    return np.diag(np.random.default_rng(seed).uniform(0.5, 1.5, 2))


def cn_preconditioner(seed: int, n_params: int) -> np.ndarray:
    """A random symmetric ``P`` with eigenvalues in [0.5, 1.5] (the c_n measurement's ``Lam = h P``)."""
    rng = np.random.default_rng(seed + 100)
    Q, _ = np.linalg.qr(rng.normal(size=(n_params,) * 2))
    return (Q * rng.uniform(0.5, 1.5, n_params)) @ Q.T


@shared_run
def bea_fit(ctx, family: str, k: int, dim: int, seed: int, P=None) -> mf.SlopeFit:
    """GD vs the flow of the order-k modified field on one random loss (``numeric.modified_flow``)."""
    return mf.random_loss_slope(family, k, dim, seed, P=P, levels=ctx.pick(5, 7), device=ctx.device)


@shared_run
def second_order_fit(ctx, family: str, dim: int, seed: int) -> mf.SlopeFit:
    """GD vs gradient flow on the candidate second-order entropic loss (``numeric.modified_flow``)."""
    return mf.second_order_loss_slope(family, dim, seed, levels=ctx.pick(5, 7), device=ctx.device)


def noise_problem(seed: int, device):
    """A tanh MLP (3 inputs, 3 hidden units) at a random point on 32 data ``y = sin(x_1) + 0.3 noise``:
    ``(per-sample loss, theta, X, y)``."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 3, generator=g, dtype=torch.float64)
    y = torch.sin(X[:, 0]) + 0.3 * torch.randn(32, generator=g, dtype=torch.float64)
    loss, npar = tanh_mlp_per_sample(3, 3)
    th = 0.5 * torch.randn(npar, generator=g, dtype=torch.float64)
    return loss, th.to(device), X.to(device), y.to(device)
