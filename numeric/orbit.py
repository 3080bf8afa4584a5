"""Exponential-symmetry orbits of a fixed state on a finite data set: the entropic loss along
the orbit, ``g^T A g``, and the orbit's minimiser.

On a fixed finite data set the expectations are exact means over the samples; per-sample
gradients come from ``torch.func`` (:func:`numeric.minibatch_noise.per_sample_gradients`).

The minimiser (:func:`orbit_minimum`) is bracketed by scipy's bounded Brent search and then
polished by Newton steps on ``phi'`` with the first and second derivatives of ``phi`` along
the orbit taken by autograd (never by the law being tested). Newton stops on its own
evidence: when a step is below the float64 resolution of ``lambda``, or no longer shrinks by
at least half (quadratic convergence has ended: the steps are round-off in ``phi'``). The
Newton step computed at the final point, ``s = -phi'/phi''``, is the distance to the true
minimiser to first order, and the result's ``lam_error = 2|s| + eps (1 + |lambda|)`` bounds it.

>>> import torch
>>> X, Y = torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.tensor([1.0, 3.0], dtype=torch.float64)
>>> l = lambda th, x, y: (th[0] * th[1] * x[0] - y) ** 2      # rescaling symmetry, A = diag(1, -1)
>>> th, a = torch.tensor([1.0, 1.2], dtype=torch.float64), torch.tensor([1.0, -1.0], dtype=torch.float64)
>>> phi = lambda lam: empirical_entropic_loss(torch.exp(lam * a) * th, l, X, Y, eta=0.1, gamma=0.01)
>>> m = orbit_minimum(phi, -3.0, 3.0)
>>> th_star = torch.exp(m.lam * a) * th                       # Eq. 4 holds at the orbit's minimum
>>> lhs = 0.1 * float(per_sample_gAg(th_star, l, X, Y, a))
>>> rhs = 4 * 0.01 * (1 + 0.1 * 0.01) * float((a * th_star ** 2).sum())
>>> abs(lhs - rhs) < 1e-12, m.lam_error < 1e-12
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import scipy.optimize
import torch
from torch.func import grad, vmap

from .float64 import EPS64
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

    Its real accuracy is limited by the flatness of ``phi`` near the minimum (about
    ``sqrt(eps)`` relative in ``lambda``, whatever ``tol``): :func:`orbit_minimum` polishes it.
    For a convex ``phi_of_lam`` it is the unique minimiser in ``[lo, hi]``, or an end point when
    the minimum lies outside (the caller checks that it is interior)."""
    res = scipy.optimize.minimize_scalar(lambda t: float(phi_of_lam(t)), bounds=(lo, hi), method="bounded",
                                         options={"xatol": tol})
    return float(res.x)


@dataclass(frozen=True)
class OrbitMinimum:
    """The polished minimiser ``lam`` of ``phi`` along an orbit, and how well it is known.

    ``slope``/``curvature``: ``phi'`` and ``phi''`` at ``lam`` (autograd); ``last_step``: the
    Newton step ``-phi'/phi''`` at ``lam`` (not applied); ``newton_steps``: the step sizes taken.
    """

    lam: float
    slope: float
    curvature: float
    last_step: float
    newton_steps: tuple
    bracket: float  # Brent's estimate before the polish

    @property
    def lam_error(self) -> float:
        """Bound on ``|lam - lam*|``: twice the next Newton step (its first-order distance to the
        root, with a factor 2 for the neglected ``phi'''`` term) plus the float64 spacing of ``lam``."""
        return 2.0 * abs(self.last_step) + EPS64 * (1.0 + abs(self.lam))


def newton_polish(phi, lam0: float, max_steps: int = 50):
    """Newton steps ``lam <- lam - phi'/phi''`` from ``lam0`` with autograd derivatives of the
    torch function ``phi`` (a 0-d float64 tensor in, a 0-d tensor out).

    Stops when a step is below the float64 spacing of ``lam``, when it no longer shrinks by at
    least half (the quadratic phase is over: ``phi'`` is at its round-off floor), when
    ``phi'' <= 0`` (no convex minimum to polish), or after ``max_steps``. Returns
    ``(lam, phi', phi'', next_step, steps_taken)``; ``next_step`` is the step at the final point.
    """
    d1, d2 = grad(phi), grad(grad(phi))

    def newton(lam):
        t = torch.tensor(lam, dtype=torch.float64)
        s1, s2 = float(d1(t)), float(d2(t))
        return s1, s2, (-s1 / s2 if s2 > 0 else 0.0)

    lam = float(lam0)
    s1, s2, step = newton(lam)
    taken = []
    while len(taken) < max_steps and s2 > 0 and abs(step) > EPS64 * (1.0 + abs(lam)):
        if taken and abs(step) > 0.5 * abs(taken[-1]):
            break  # no longer converging quadratically: the step is round-off
        lam += step
        taken.append(step)
        s1, s2, step = newton(lam)
    return lam, s1, s2, step, tuple(taken)


def orbit_minimum(phi, lo: float = -6.0, hi: float = 6.0, bracket_tol: float = 1e-8) -> OrbitMinimum:
    """The minimiser of ``phi`` on ``[lo, hi]``: Brent's bounded search (:func:`orbit_minimiser`)
    to ``bracket_tol``, then :func:`newton_polish` with autograd derivatives of ``phi`` (a torch
    function of a 0-d float64 tensor ``lambda``). An end point of ``[lo, hi]`` is returned
    unpolished (no interior minimum: the caller checks)."""
    lam0 = orbit_minimiser(lambda t: float(phi(torch.tensor(t, dtype=torch.float64))), lo, hi, tol=bracket_tol)
    lam, s1, s2, step, taken = newton_polish(phi, lam0)
    if not lo <= lam <= hi or not math.isfinite(lam):
        lam, s1, s2, step, taken = newton_polish(phi, lam0, max_steps=0)
    return OrbitMinimum(lam, s1, s2, step, taken, lam0)
