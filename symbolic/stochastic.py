r"""The SGD noise split, exactly: :math:`E_B|\nabla l_B|^2 = |\nabla L|^2 + \mathrm{Tr\,Cov}(\nabla l_B)`.

A minibatch gradient is the mean of ``B`` per-sample gradients ``g_i`` drawn from a finite data
set of ``N`` points. With replacement the draws are i.i.d., so

.. math:: E_B|\bar g_B|^2 = |\mu|^2 + \frac{\mathrm{Tr}\,\Sigma}{B},\qquad
          \mu = \frac1N\sum_i g_i,\ \Sigma = \frac1N\sum_i (g_i-\mu)(g_i-\mu)^T,

the 1/B law. Without replacement the covariance carries the finite-population factor
:math:`\frac{N-B}{B(N-1)}` instead of :math:`\frac1B`. Both are derived here two ways: by exact
enumeration of every equally likely batch (symbolic per-sample gradients), and in closed form
for a symbolic ``B``.

>>> with_replacement_enumeration(3, 2, 2)        # residual of the 1/B law: exactly 0
0
>>> B, N = sp.symbols("B N", positive=True, integer=True)
>>> sp.simplify(without_replacement_factor() - (N - B) / (B * (N - 1)))
0
"""

from __future__ import annotations

import itertools

import sympy as sp

__all__ = ["per_sample_gradients", "noise_split_target", "with_replacement_enumeration",
           "without_replacement_enumeration", "with_replacement_closed_form", "without_replacement_factor"]


def per_sample_gradients(N: int, d: int) -> list[sp.Matrix]:
    """N generic gradient vectors in R^d (symbols ``g_i_j``)."""
    return [sp.Matrix([sp.Symbol(f"g_{i}_{j}", real=True) for j in range(d)]) for i in range(N)]


def noise_split_target(gs, factor):
    """``|mu|^2 + factor * Tr Sigma`` for the per-sample gradients ``gs``."""
    N = len(gs)
    mu = sum(gs, sp.zeros(gs[0].rows, 1)) / N
    tr_sigma = sum(((g - mu).T * (g - mu))[0] for g in gs) / N
    return (mu.T * mu)[0] + factor * tr_sigma


def _batch_mean_sq(gs, batch):
    m = sum((gs[i] for i in batch), sp.zeros(gs[0].rows, 1)) / len(batch)
    return (m.T * m)[0]


def with_replacement_enumeration(N: int, d: int, B: int):
    """Residual ``E_B|g_B|^2 - (|mu|^2 + Tr Sigma / B)`` over all ``N^B`` ordered batches."""
    gs = per_sample_gradients(N, d)
    batches = list(itertools.product(range(N), repeat=B))
    mean = sum(_batch_mean_sq(gs, b) for b in batches) / len(batches)
    return sp.expand(mean - noise_split_target(gs, sp.Rational(1, B)))


def without_replacement_enumeration(N: int, d: int, B: int, factor=None):
    """Residual of the without-replacement law over all ``C(N, B)`` batches
    (``factor`` defaults to ``(N-B)/(B(N-1))``; pass ``1/B`` to see the 1/B law fail)."""
    if factor is None:
        factor = sp.Rational(N - B, B * (N - 1))
    gs = per_sample_gradients(N, d)
    batches = list(itertools.combinations(range(N), B))
    mean = sum(_batch_mean_sq(gs, b) for b in batches) / len(batches)
    return sp.expand(mean - noise_split_target(gs, factor))


def with_replacement_closed_form():
    r"""For a symbol B: ``E|g_B|^2 = (1/B^2)(B E|g|^2 + B(B-1)|mu|^2)`` (i.i.d. draws: the
    ``B`` diagonal pairs give ``E|g|^2``, the ``B(B-1)`` off-diagonal pairs ``|mu|^2``), and
    ``E|g|^2 = |mu|^2 + Tr Sigma``. Returns the coefficient of ``Tr Sigma``.

    >>> with_replacement_closed_form()
    1/B
    """
    B = sp.Symbol("B", positive=True, integer=True)
    mu2, tr = sp.symbols("mu2 trSigma", nonnegative=True)
    second = mu2 + tr                                   # E|g|^2
    total = (B * second + B * (B - 1) * mu2) / B**2
    return sp.simplify(sp.expand(total - mu2).coeff(tr))


def without_replacement_factor():
    r"""For symbols N, B: pairs ``i != j`` in a batch without replacement have
    ``E[g_i.g_j] = (N^2|mu|^2 - N E|g|^2)/(N(N-1))``; returns the coefficient of ``Tr Sigma``."""
    B, N = sp.symbols("B N", positive=True, integer=True)
    mu2, tr = sp.symbols("mu2 trSigma", nonnegative=True)
    second = mu2 + tr
    cross = (N**2 * mu2 - N * second) / (N * (N - 1))
    total = (B * second + B * (B - 1) * cross) / B**2
    return sp.factor(sp.simplify(sp.expand(total - mu2).coeff(tr)))
