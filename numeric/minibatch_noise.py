r"""Witness for the SGD noise split on sampled minibatches.

For a finite data set ``{(x_i, y_i)}_{i<N}`` and per-sample gradients ``g_i = grad l(theta; x_i)``
(mean ``mu = grad L``, population covariance ``Sigma``), a minibatch of ``B`` indices drawn
*with replacement* has

.. math:: E_B|\nabla l_B|^2 = |\nabla L|^2 + \mathrm{Tr\,Cov}(\nabla l_B),
          \qquad \mathrm{Tr\,Cov}(\nabla l_B) = \mathrm{Tr}\,\Sigma / B

(without replacement: ``Tr Sigma (N-B)/(B(N-1))``; :mod:`symbolic.stochastic`). Here the left
side is *measured*: ``R`` batches are drawn, ``grad l_B`` is computed by autograd on each batch
loss (``torch.func.vmap`` over batches) and ``|grad l_B|^2`` averaged; the CLT gives the
confidence bound ``z * sd / sqrt(R)``, with the normal quantile ``z`` chosen by the caller (the
theorem modules pass the suite's, ``theorems.tolerances.Z``).

>>> import torch
>>> X = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> y = X[:, 0] - X[:, 1]
>>> loss, npar = tanh_mlp_per_sample(hidden=2, d=2)
>>> th = torch.full((npar,), 0.3, dtype=torch.float64)
>>> r = noise_split(loss, th, X, y, batch=4, n_batches=4000, seed=1, z=5.327)
>>> abs(r["measured"] - r["predicted"]) <= r["bound"]
True
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.func import grad, vmap

from core.errors import InputError
from .modified_flow import fit_loglog_slope, slope_tolerance

__all__ = ["tanh_mlp_per_sample", "per_sample_gradients", "gradient_moments",
           "sample_batch_grad_sq", "noise_split", "one_over_b_law"]


def tanh_mlp_per_sample(hidden: int, d: int):
    """Per-sample loss ``l(th; x, y) = (1/2)(w2 . tanh(W1 x) - y)^2``; returns ``(l, n_params)``."""
    if hidden < 1 or d < 1:
        raise InputError(f"tanh MLP needs hidden >= 1 and d >= 1, got {hidden}, {d}")

    def loss(th, x, y):
        W1 = th[: hidden * d].reshape(hidden, d)
        w2 = th[hidden * d:]
        return 0.5 * (torch.tanh(W1 @ x) @ w2 - y) ** 2

    return loss, hidden * d + hidden


def per_sample_gradients(loss, th, X, y) -> torch.Tensor:
    """``(N, n_params)`` matrix of per-sample gradients (``vmap(grad)``)."""
    return vmap(grad(loss), in_dims=(None, 0, 0))(th, X, y)


def gradient_moments(G: torch.Tensor):
    """``(|mu|^2, Tr Sigma)`` of the rows of G (population covariance, 1/N)."""
    mu = G.mean(0)
    return float(mu @ mu), float(((G - mu) ** 2).sum(1).mean())


def _check_inputs(X, y, batch, n_batches, replace):
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise InputError(f"X must be (N, d) and y (N,), got {tuple(X.shape)}, {tuple(y.shape)}")
    N = X.shape[0]
    if batch < 1 or n_batches < 2:
        raise InputError(f"batch must be >= 1 and n_batches >= 2, got {batch}, {n_batches}")
    if not replace and batch > N:
        raise InputError(f"batch {batch} exceeds the data set size {N} (sampling without replacement)")
    return N


def sample_batch_grad_sq(loss, th, X, y, batch: int, n_batches: int, seed: int = 0,
                         replace: bool = True, chunk: int = 4096) -> torch.Tensor:
    """``|grad l_B|^2`` for ``n_batches`` random batches (autograd on each batch loss)."""
    N = _check_inputs(X, y, batch, n_batches, replace)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if replace:
        idx = torch.randint(N, (n_batches, batch), generator=gen)
    else:
        idx = torch.argsort(torch.rand(n_batches, N, generator=gen), dim=1)[:, :batch]
    idx = idx.to(X.device)

    def batch_loss(t, xb, yb):
        return vmap(loss, in_dims=(None, 0, 0))(t, xb, yb).mean()

    batch_grad = vmap(grad(batch_loss), in_dims=(None, 0, 0))
    out = []
    for s in range(0, n_batches, chunk):
        sl = idx[s: s + chunk]
        gB = batch_grad(th, X[sl], y[sl])
        out.append((gB ** 2).sum(1))
    sq = torch.cat(out)
    if not torch.all(torch.isfinite(sq)):
        raise InputError("non-finite minibatch gradients: check the parameters and data")
    return sq


def noise_split(loss, th, X, y, batch: int, n_batches: int, seed: int = 0, replace: bool = True, *,
                z: float) -> dict:
    """Measured ``E_B|grad l_B|^2`` versus ``|grad L|^2 + factor * Tr Sigma`` with the CLT bound
    ``z * se`` (``z``: the caller's two-sided normal quantile)."""
    N = _check_inputs(X, y, batch, n_batches, replace)
    G = per_sample_gradients(loss, th, X, y)
    mu2, tr = gradient_moments(G)
    factor = 1.0 / batch if replace else (N - batch) / (batch * (N - 1)) if N > 1 else 0.0
    sq = sample_batch_grad_sq(loss, th, X, y, batch, n_batches, seed, replace)
    mean, sd = float(sq.mean()), float(sq.std())
    se = sd / math.sqrt(n_batches)
    return dict(batch=batch, replace=replace, measured=mean, predicted=mu2 + factor * tr,
                grad_L_sq=mu2, trace_sigma=tr, trace_cov_measured=mean - mu2,
                trace_cov_predicted=factor * tr, se=se, z=z, bound=z * se, n_batches=n_batches)


def one_over_b_law(loss, th, X, y, batches=(1, 2, 4, 8, 16), n_batches: int = 4000, seed: int = 0, *,
                   z: float) -> dict:
    """``Tr Cov(grad l_B)`` measured for several ``B`` (with replacement) and its log-log slope
    against ``B`` (predicted -1). Slope tolerance: each point's log deviation is at most
    ``2 z se_i / TrCov_i`` (CLT, ``|log(1+x)| <= 2|x|`` for ``|x| <= 1/2``), propagated through
    the least-squares slope (:func:`numeric.modified_flow.slope_tolerance`)."""
    rows = [noise_split(loss, th, X, y, B, n_batches, seed + i, True, z=z) for i, B in enumerate(batches)]
    tc = np.array([r["trace_cov_measured"] for r in rows])
    rel = np.array([r["bound"] / r["trace_cov_predicted"] for r in rows])
    if np.any(tc <= 0) or np.any(rel > 0.5):
        raise InputError(f"too few batches for a 1/B slope: relative CLT bounds {rel.round(3)}; raise n_batches")
    fit = fit_loglog_slope(batches, tc)
    return dict(rows=rows, slope=fit.slope, slope_tol=slope_tolerance(batches, 2 * rel),
                batches=list(batches), trace_cov=tc.tolist())
