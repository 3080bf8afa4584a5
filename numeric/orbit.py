"""Exponential-symmetry orbits of a fixed state on a finite data set: the entropic loss along
the orbit, ``g^T A g``, and the orbit's minimiser.

On a fixed finite data set the expectations are exact means over the samples; per-sample
gradients come from ``torch.func`` (:func:`numeric.minibatch_noise.per_sample_gradients`).

>>> import torch
>>> X, Y = torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.tensor([1.0, 3.0], dtype=torch.float64)
>>> l = lambda th, x, y: (th[0] * th[1] * x[0] - y) ** 2      # rescaling symmetry, A = diag(1, -1)
>>> th, a = torch.tensor([1.0, 1.2], dtype=torch.float64), torch.tensor([1.0, -1.0], dtype=torch.float64)
>>> phi = lambda lam: float(empirical_entropic_loss(torch.exp(lam * a) * th, l, X, Y, eta=0.1, gamma=0.01))
>>> lam = orbit_minimiser(phi, -3.0, 3.0, tol=1e-10)
>>> th_star = torch.exp(lam * a) * th                       # Eq. 4 holds at the orbit's minimum
>>> lhs = 0.1 * float(per_sample_gAg(th_star, l, X, Y, a))
>>> rhs = 4 * 0.01 * (1 + 0.1 * 0.01) * float((a * th_star ** 2).sum())
>>> abs(lhs - rhs) < 1e-6
True
"""

from __future__ import annotations

import scipy.optimize
from torch.func import vmap

from .minibatch_noise import per_sample_gradients


def empirical_entropic_loss(theta, loss_per_sample, X, Y, eta: float, gamma: float = 0.0, Lam=None):
    """``phi = mean_i l_gam(theta; x_i, y_i) + (eta/4) mean_i |grad l_gam(theta; x_i, y_i)|^2``
    on a fixed finite data set (the expectation is then exact); with a matrix learning rate
    ``Lam`` the noise term is ``(1/4) mean_i grad l_gam^T Lam grad l_gam`` (``eta`` unused)."""

    def lg(th, x, y):
        return loss_per_sample(th, x, y) + gamma * th.pow(2).sum()

    g = per_sample_gradients(lg, theta, X, Y)
    noise = g.pow(2).sum(-1) if Lam is None else ((g @ Lam) * g).sum(-1)
    lr = eta if Lam is None else 1.0
    return vmap(lg, in_dims=(None, 0, 0))(theta, X, Y).mean() + lr / 4 * noise.mean()


def per_sample_gAg(theta, loss_per_sample, X, Y, a_diag):
    """``mean_i g_i^T A g_i`` (no weight decay in g) for a diagonal generator."""
    g = per_sample_gradients(loss_per_sample, theta, X, Y)
    return (g.pow(2) * a_diag).sum(-1).mean()


def orbit_minimiser(phi_of_lam, lo: float = -6.0, hi: float = 6.0, tol: float = 1e-12) -> float:
    """The minimiser of a function of one variable on ``[lo, hi]`` by the bounded Brent search of
    ``scipy.optimize.minimize_scalar`` (golden section with parabolic steps), to ``xatol = tol``.

    For a convex ``phi_of_lam`` it is the unique minimiser in ``[lo, hi]``, or an end point when
    the minimum lies outside (the caller checks that it is interior)."""
    res = scipy.optimize.minimize_scalar(lambda t: float(phi_of_lam(t)), bounds=(lo, hi), method="bounded",
                                         options={"xatol": tol})
    return float(res.x)
