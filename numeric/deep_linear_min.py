"""Numerical minimisation of the entropy over the minimum manifold of an embedded deep
linear net (BFGS on the symmetry orbit, torch autograd for the gradient).

It is an independent numerical check of the closed form (``symbolic.deep_linear``), and
Theorem 9's knob: the weight-decay term ``kappa |theta|^2`` with ``kappa = gam B / eta``.

>>> import numpy as np
>>> from symbolic.deep_linear import EmbeddedProblem, entropic_minimum, entropy_on_manifold
>>> prob = EmbeddedProblem(V=np.eye(2), Sx=np.eye(2), Se=np.eye(2))
>>> ws, F = orbit_minimum(prob, 2, starts=1)
>>> abs(F - entropy_on_manifold(prob, entropic_minimum(prob, [2]))) < 1e-9
True
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from core.errors import InputError
from symbolic.deep_linear import EmbeddedProblem


def orbit_minimum(problem: EmbeddedProblem, D: int, kappa: float = 0.0, seed: int = 0, starts: int = 3,
                  init=None) -> tuple[list, float]:
    """Minimise ``F = sum_i T_i + kappa sum_i |W_i|^2`` over the minimum manifold of L.

    Square nets (all widths = dx = dy, P invertible): the manifold is the orbit
    ``W_1 = X_1 W1^0, W_k = X_k W_k^0 X_{k-1}^{-1}, W_D = W_D^0 X_{D-1}^{-1}``. BFGS over the
    ``X_k`` from ``starts`` random starting points (plus ``init`` if given); returns the best
    weights and F. ``kappa = gam * B / eta`` (weight decay gam, batch B) is Theorem 9's knob;
    ``kappa = 0`` is an independent numerical check of :func:`entropic_minimum`.
    """
    d = problem.V.shape[0]
    if problem.V.shape[1] != d or problem.rank != d:
        raise InputError("orbit_minimum needs a square invertible V (every width = d)")
    if not np.isfinite(float(kappa)) or kappa < 0:
        raise InputError(f"kappa must be a non-negative number, got {kappa!r}")
    W0 = [np.eye(d)] * (D - 1) + [problem.P]  # a point of the manifold: W_D = P, others I
    Su = torch.as_tensor(problem.Su)
    N = torch.as_tensor(problem.N)
    W0t = [torch.as_tensor(w) for w in W0]

    def weights_of(xflat):
        X = [xflat[i * d * d:(i + 1) * d * d].reshape(d, d) for i in range(D - 1)]
        Ws = []
        for i in range(D):
            W = W0t[i]
            if i < D - 1:
                W = X[i] @ W
            if i > 0:
                W = W @ torch.linalg.inv(X[i - 1])
            Ws.append(W)
        return Ws

    def F_torch(xflat):
        Ws = weights_of(xflat)
        B = [torch.eye(d, dtype=torch.float64)]
        for W in Ws:
            B.append(W @ B[-1])
        A = [None] * (D + 1)
        A[D] = torch.eye(d, dtype=torch.float64)
        for i in range(D - 1, -1, -1):
            A[i] = A[i + 1] @ Ws[i]
        T = sum(torch.trace(A[i].T @ N @ A[i]) * torch.trace(B[i - 1] @ Su @ B[i - 1].T) for i in range(1, D + 1))
        return T + kappa * sum((W ** 2).sum() for W in Ws)

    def fg(x):
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        f = F_torch(xt)
        (g,) = torch.autograd.grad(f, xt)
        return float(f.detach()), g.numpy().astype(np.float64)

    rng = np.random.default_rng(seed)
    cands = []
    if init is not None:
        cands.append(np.asarray(init, dtype=np.float64))
    for _ in range(starts):
        cands.append(np.concatenate([(np.eye(d) + 0.3 * rng.standard_normal((d, d))).ravel() for _ in range(D - 1)]))
    best = None
    for x0 in cands:
        res = scipy.optimize.minimize(fg, x0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 5000})
        if best is None or res.fun < best.fun:
            best = res
    Ws = [w.detach().numpy() for w in weights_of(torch.as_tensor(best.x))]
    return Ws, float(best.fun)


def population_sharpness(problem: EmbeddedProblem, weights) -> float:
    """The largest eigenvalue of the Hessian of the population loss
    ``L = E|M_O W_D ... W_1 M_I Z x - y|^2`` at ``weights`` (torch.func, float64).

    Gradient descent on L is stable only for ``eta < 2 / sharpness``; SGD's noise makes
    the limit lower, so a start for a learning-rate ladder should satisfy
    ``eta_max * sharpness <= 1`` (a margin of 2).

    >>> import numpy as np
    >>> prob = EmbeddedProblem(V=np.eye(1), Sx=np.eye(1), Se=np.eye(1))
    >>> round(population_sharpness(prob, [np.ones((1, 1)), np.ones((1, 1))]), 12)  # L = (uw - 1)^2 + 1 at u = w = 1
    4.0
    """
    from torch.func import hessian

    shapes = [np.shape(w) for w in weights]
    sizes = [int(np.prod(s)) for s in shapes]
    G = torch.as_tensor(problem.G)
    M_O = torch.as_tensor(problem.M_O)
    V = torch.as_tensor(problem.V)
    Sx = torch.as_tensor(problem.Sx)

    def loss(theta):
        Ws = [w.reshape(s) for w, s in zip(torch.split(theta, sizes), shapes)]
        P = Ws[0]
        for W in Ws[1:]:
            P = W @ P
        Dm = M_O @ P @ G - V
        return torch.trace(Dm @ Sx @ Dm.T)

    theta = torch.cat([torch.as_tensor(np.asarray(w, dtype=np.float64)).reshape(-1) for w in weights])
    H = hessian(loss)(theta)
    return float(torch.linalg.eigvalsh((H + H.T) / 2)[-1])
