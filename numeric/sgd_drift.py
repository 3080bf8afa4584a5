r"""SGD in expectation, measured: one epoch against the expected entropic loss, and the long-time
drift along flat directions.

**One epoch** (:func:`epoch_gap`). From a fixed ``theta0``, ``n`` SGD steps on ``n`` minibatches
of a finite data set - one epoch without replacement (a random partition in a random order) or
``n`` i.i.d. batches with replacement - are averaged over **every** equally likely batch sequence
(:func:`batch_sequences`: the exact expectation, no sampling noise) and compared with the
time-``n eta`` flow (RK4) of the expected entropic loss
``phi = L + (eta/4) E_B|grad l_B|^2`` (or of GD's ``L + (eta/4)|grad L|^2``). The gap's Taylor
coefficients in eta are computed exactly by forward-mode differentiation through the whole
computation (:func:`epoch_gap_taylor`), its leading term in closed form from
:mod:`symbolic.sgd_epoch` (:func:`epoch_leading_term`).

>>> X = torch.tensor([[1.0, 0.3], [-0.5, 0.8], [0.2, -1.0]], dtype=torch.float64)
>>> y = torch.tensor([0.5, -0.2, 0.9], dtype=torch.float64)
>>> loss, npar = tanh_regression(hidden=2, d=2)
>>> th0 = torch.linspace(-0.6, 0.7, npar, dtype=torch.float64)
>>> c = epoch_gap_taylor(loss, th0, X, y, batch=1, replace=False, target="phi", order=3)
>>> bool(c[1].abs().max() < 1e-12 and c[2].abs().max() < 1e-12)   # no eta, eta^2 gap
True
>>> p, u = epoch_leading_term(loss, th0, X, y, batch=1, replace=False, target="phi")
>>> p, bool(torch.allclose(u, c[3], rtol=1e-9, atol=1e-12))         # eta^3: the closed form
(3, True)

**Drift along flat directions** (:func:`run_drift_ensemble`, :func:`drift_predictions`). Near a
manifold of minima (tangent projector ``P_T``, Hessian ``H``, third derivative ``T`` of the risk,
gradient-noise covariance ``C``), once the normal fluctuations are stationary the mean SGD step
is ``E Delta theta = -eta E grad L(theta)`` exactly, hence along the manifold

.. math:: P_T\,E\Delta\theta = -\frac\eta2 P_T T[S] + O(\eta^3),\qquad
          S_{NN} = (I-\eta H)S_{NN}(I-\eta H) + \eta^2 C_{NN},\quad S_{TN} = \eta\,C_{TN}H^+,

(the discrete Lyapunov equation on the normal space; ``P_T T[t, t'] = 0`` for tangent t, t', so
the growing tangential spread does not enter). Its ``eta -> 0`` limit is the drift of Li, Wang
and Arora (2022), ``(eta^2/2) d^2Phi[C]`` (:func:`drift_predictions` ``"lwa"``); phi predicts
``-eta P_T grad phi = -(eta^2/4) P_T grad E|g_B|^2``.

Everything is float64 on the CPU (the ensembles are small); runs are reproducible from the seed;
bad input raises :class:`core.errors.InputError`, a run that leaves the stable region
:class:`core.errors.DivergenceError`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy as sp
import torch
from torch.func import grad, hessian, jacfwd, vmap

from core.errors import DivergenceError, InputError
from numeric.modified_flow import fit_loglog_slope, rk4_flow, slope_tolerance
from symbolic.sgd_epoch import epoch_gap_coefficients, toy_valley_drift

__all__ = [
    "tanh_regression", "batch_sequences", "sample_batch_sequences", "epoch_mean", "expected_phi_field",
    "epoch_gap", "epoch_gap_taylor", "epoch_leading_term", "basis_vectors_numeric", "NoisyModel",
    "toy_valley", "scalar_net", "tanh_interpolation", "valley_geometry", "discrete_lyapunov",
    "drift_predictions", "DriftRun", "run_drift_ensemble", "snapshot_average", "order_eta_scales",
    "orbit_rate_prediction", "orbit_rate_run", "per_sample_derivatives", "epoch_problem", "epoch_gap_ladder",
    "slope_check", "taylor_summary", "paired_drift", "transient_left", "toy_valley_path_predictions",
    "toy_valley_experiment", "orbit_experiment", "tanh_experiment",
]

MAX_SEQUENCES = 200_000
DTYPE = torch.float64


# ============================================================================ one epoch
def tanh_regression(hidden: int, d: int):
    """Per-sample ``l(th; x, y) = (w2 . tanh(W1 x) - y)^2`` (squared error without 1/2, the suite's
    convention); returns ``(loss, n_params)``."""
    if hidden < 1 or d < 1:
        raise InputError(f"tanh regression needs hidden >= 1 and d >= 1, got {hidden}, {d}")

    def loss(th, x, y):
        W1 = th[: hidden * d].reshape(hidden, d)
        return (torch.tanh(W1 @ x) @ th[hidden * d:] - y) ** 2

    return loss, hidden * d + hidden


def _check_data(X, y):
    if not (torch.is_tensor(X) and torch.is_tensor(y)) or X.ndim != 2 or y.shape != (X.shape[0],):
        raise InputError(f"X must be an (N, d) tensor and y an (N,) tensor, got {getattr(X, 'shape', X)}, "
                         f"{getattr(y, 'shape', y)}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise InputError("the data contain NaN or infinite entries")
    return X.shape[0]


def _epoch_shape(N, batch, replace, n_steps):
    if int(batch) != batch or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    if not replace:
        if N % batch:
            raise InputError(f"without replacement an epoch needs N = {N} divisible by the batch size {batch}")
        if n_steps is not None and n_steps != N // batch:
            raise InputError(f"an epoch without replacement has N / batch = {N // batch} steps, not {n_steps}")
        return N // batch
    n = N // batch if n_steps is None else int(n_steps)
    if n < 1:
        raise InputError(f"an epoch needs at least one step, got {n}")
    return n


def batch_sequences(N: int, batch: int, replace: bool, n_steps: int | None = None) -> torch.Tensor:
    """Every equally likely batch sequence of one epoch, ``(S, n, batch)`` sample indices.

    Without replacement: the ``N!`` orderings cut into ``n = N / batch`` batches (each ordered
    partition appears equally often). With replacement: the ``N^(n batch)`` sequences of
    i.i.d. uniform indices (``n = N / batch`` unless ``n_steps`` is given).

    >>> batch_sequences(3, 1, replace=False).shape, batch_sequences(2, 1, replace=True, n_steps=3).shape
    (torch.Size([6, 3, 1]), torch.Size([8, 3, 1]))
    """
    n = _epoch_shape(N, batch, replace, n_steps)
    count = math.factorial(N) if not replace else N ** (n * batch)
    if count > MAX_SEQUENCES:
        raise InputError(f"{count} batch sequences are too many to enumerate (limit {MAX_SEQUENCES}); "
                         "use sample_batch_sequences")
    it = itertools.permutations(range(N)) if not replace else itertools.product(range(N), repeat=n * batch)
    return torch.tensor(list(it), dtype=torch.long).reshape(-1, n, batch)


def sample_batch_sequences(N: int, batch: int, replace: bool, n_shuffles: int, seed: int = 0,
                           n_steps: int | None = None) -> torch.Tensor:
    """``n_shuffles`` random batch sequences (reproducible from ``seed``), ``(S, n, batch)``."""
    n = _epoch_shape(N, batch, replace, n_steps)
    if n_shuffles < 2:
        raise InputError(f"need at least 2 shuffles for a mean and its error, got {n_shuffles}")
    gen = torch.Generator().manual_seed(int(seed))
    if replace:
        return torch.randint(N, (n_shuffles, n, batch), generator=gen)
    return torch.argsort(torch.rand(n_shuffles, N, generator=gen), dim=1).reshape(n_shuffles, n, batch)


def _batch_grad(loss):
    def batch_loss(th, xb, yb):
        return vmap(loss, in_dims=(None, 0, 0))(th, xb, yb).mean()

    return vmap(grad(batch_loss), in_dims=(0, 0, 0))


def epoch_mean(loss, th0, X, y, eta, seqs) -> torch.Tensor:
    """``theta_n`` after the SGD steps of each batch sequence, ``(S, P)`` (differentiable in eta)."""
    bg = _batch_grad(loss)
    th = th0.expand(seqs.shape[0], -1)
    for k in range(seqs.shape[1]):
        idx = seqs[:, k, :]
        th = th - eta * bg(th, X[idx], y[idx])
    return th


def _kappa(N, batch, replace):
    """Tr Cov(g_B) / Tr Sigma: 1/B with replacement, (N-B)/(B(N-1)) without."""
    if replace:
        return 1.0 / batch
    return (N - batch) / (batch * (N - 1)) if N > 1 else 0.0


def expected_phi_field(loss, X, y, batch: int, replace: bool, target: str = "phi"):
    r"""``eta -> F_eta``, the field ``-grad phi`` of ``phi = L + (eta/4) E_B|grad l_B|^2`` (target
    ``"phi"``, the expectation exact: ``|grad L|^2 + kappa Tr Sigma``) or of
    ``L + (eta/4)|grad L|^2`` (target ``"gd"``)."""
    if target not in ("phi", "gd"):
        raise InputError(f"target must be 'phi' or 'gd', got {target!r}")
    N = _check_data(X, y)
    kappa = _kappa(N, batch, replace)
    per = vmap(grad(loss), in_dims=(None, 0, 0))

    def risk(th):
        return vmap(loss, in_dims=(None, 0, 0))(th, X, y).mean()

    def energy(th):
        G = per(th, X, y)
        mu = G.mean(0)
        e = mu @ mu
        if target == "phi":
            e = e + kappa * ((G - mu) ** 2).sum(1).mean()
        return e

    gL, gE = grad(risk), grad(energy)
    return lambda eta: (lambda th: -gL(th) - (eta / 4) * gE(th))


def _gap_fn(loss, th0, X, y, batch, replace, target, seqs, substeps):
    F = expected_phi_field(loss, X, y, batch, replace, target)
    n = seqs.shape[1]

    def gap(eta):
        return epoch_mean(loss, th0, X, y, eta, seqs).mean(0) - rk4_flow(F(eta), th0, n * eta, substeps)

    return gap


def epoch_gap(loss, th0, X, y, eta: float, batch: int, replace: bool, target: str = "phi",
              substeps: int = 8, seqs=None):
    """``(gap, integration_error)``: the exact mean ``E[theta_n]`` over every batch sequence minus
    the RK4 flow (``2 substeps``) of the target field for time ``n eta``; the RK4 error estimate
    is ``|flow(substeps) - flow(2 substeps)| / 15`` (Richardson)."""
    N = _check_data(X, y)
    if not (eta > 0 and math.isfinite(eta)):
        raise InputError(f"eta must be positive and finite, got {eta!r}")
    seqs = batch_sequences(N, batch, replace) if seqs is None else seqs
    F = expected_phi_field(loss, X, y, batch, replace, target)(eta)
    n = seqs.shape[1]
    mean = epoch_mean(loss, th0, X, y, eta, seqs).mean(0)
    coarse, fine = rk4_flow(F, th0, n * eta, substeps), rk4_flow(F, th0, n * eta, 2 * substeps)
    gap = mean - fine
    if not torch.isfinite(gap).all():
        raise DivergenceError(f"the epoch or its flow produced non-finite values at eta = {eta}")
    return gap, float(torch.linalg.vector_norm(coarse - fine)) / 15.0


def epoch_gap_taylor(loss, th0, X, y, batch: int, replace: bool, target: str = "phi", order: int = 4,
                     substeps: int = 2, seqs=None) -> list:
    r"""``[c_0, ..., c_order]``: the Taylor coefficients of the gap in eta at 0, exact (nested
    forward-mode derivatives through the enumerated SGD steps and the RK4 flow; RK4 is a
    fourth-order method, so its map agrees with the exact flow through eta^4 and ``order <= 4``
    is exact)."""
    N = _check_data(X, y)
    if not 1 <= order <= 4:
        raise InputError(f"order must be 1..4 (RK4 is exact through eta^4), got {order}")
    seqs = batch_sequences(N, batch, replace) if seqs is None else seqs
    f = _gap_fn(loss, th0, X, y, batch, replace, target, seqs, substeps)
    e0 = torch.zeros((), dtype=th0.dtype, device=th0.device)
    out, d = [f(e0)], f
    for k in range(1, order + 1):
        d = jacfwd(d)
        out.append(d(e0) / math.factorial(k))
    return out


def basis_vectors_numeric(G, H, T, groups) -> dict:
    """:data:`symbolic.sgd_epoch.BASIS` for the batch fields ``f_a = -grad l_{B_a}``.

    ``G, H, T``: per-sample gradients ``(N, P)``, Hessians ``(N, P, P)`` and third derivatives
    ``(N, P, P, P)``; ``groups``: ``(m, B)`` sample indices of the ``m`` batches (``<.>`` is the
    uniform mean over them)."""
    f, J, D = -G[groups].mean(1), -H[groups].mean(1), -T[groups].mean(1)
    fb, Jb, Db = f.mean(0), J.mean(0), D.mean(0)
    e, E, De = f - fb, J - Jb, D - Db

    def sec(Dm, u, v):
        return torch.einsum("ijk,j,k->i", Dm, u, v)

    ee = torch.einsum("aij,aj->i", E, e) / len(e)
    return {
        "f'f": Jb @ fb, "<e'e>": ee, "f'f'f": Jb @ (Jb @ fb), "f''(f,f)": sec(Db, fb, fb),
        "f'<e'e>": Jb @ ee, "<e'f'e>": torch.einsum("aij,jk,ak->i", E, Jb, e) / len(e),
        "<e'e'>f": torch.einsum("aij,ajk,k->i", E, E, fb) / len(e),
        "f''<e,e>": torch.einsum("ijk,aj,ak->i", Db, e, e) / len(e),
        "<e''(e,f)>": torch.einsum("aijk,aj,k->i", De, e, fb) / len(e),
        "<e'e'e>": torch.einsum("aij,ajk,ak->i", E, E, e) / len(e),
        "<e''(e,e)>": torch.einsum("aijk,aj,ak->i", De, e, e) / len(e),
    }


def per_sample_derivatives(loss, th, X, y):
    """Per-sample gradients, Hessians and third derivatives (torch.func)."""
    g = vmap(grad(loss), in_dims=(None, 0, 0))(th, X, y)
    h = vmap(hessian(loss), in_dims=(None, 0, 0))(th, X, y)
    t = vmap(jacfwd(hessian(loss)), in_dims=(None, 0, 0))(th, X, y)
    return g, h, t


def epoch_leading_term(loss, th0, X, y, batch: int, replace: bool, target: str = "phi",
                       n_steps: int | None = None):
    r"""``(p, u)``: the predicted order and leading coefficient of the gap, ``gap = eta^p u + ...``,
    from the closed form of :func:`symbolic.sgd_epoch.epoch_gap_coefficients` evaluated on the
    batch fields. With replacement ``<.>`` runs over the ``N^batch`` equally likely batches;
    without, over the ``n`` batches of a partition, averaged over every partition."""
    N = _check_data(X, y)
    n = _epoch_shape(N, batch, replace, n_steps)
    c = epoch_gap_coefficients("with" if replace else "without", target)
    G, H, T = per_sample_derivatives(loss, th0, X, y)
    if replace:
        if N ** batch > MAX_SEQUENCES:
            raise InputError("too many distinct batches to enumerate")
        groups_list = [torch.tensor(list(itertools.product(range(N), repeat=batch)), dtype=torch.long)]
    else:
        seqs = batch_sequences(N, batch, replace=False)
        groups_list = list(seqs) if batch > 1 else [seqs[0]]
    u = torch.zeros_like(th0)
    for groups in groups_list:
        vecs = basis_vectors_numeric(G, H, T, groups)
        u = u + sum(float(coef.subs({s: n for s in coef.free_symbols})) * vecs[name]
                    for name, coef in c["terms"].items())
    return c["order"], u / len(groups_list)


def epoch_problem(seed: int, N: int, d: int = 2, hidden: int = 2):
    """A seeded one-epoch problem: ``(loss, theta0, X, y)`` with ``N`` points ``x ~ N(0, I_d)``,
    ``y = sin(x_1) + 0.3 e`` and a :func:`tanh_regression` net started at ``theta0 ~ N(0, 0.49 I)``."""
    g = torch.Generator().manual_seed(1000 + int(seed))
    X = torch.randn(N, d, generator=g, dtype=DTYPE)
    y = torch.sin(X[:, 0]) + 0.3 * torch.randn(N, generator=g, dtype=DTYPE)
    loss, P = tanh_regression(hidden, d)
    th0 = 0.7 * torch.randn(P, generator=g, dtype=DTYPE)
    return loss, th0, X, y


def epoch_gap_ladder(loss, th0, X, y, batch: int, replace: bool, target: str, *, seqs, levels: int,
                     rho_max: float, roundoff: float) -> dict:
    r"""The one-epoch gap on a halving eta ladder, its exact Taylor coefficients and the closed-form
    leading term ``u`` (``gap = eta^p u + ...``), with each rung's derived relative deviation
    from ``eta^p u``.

    The ladder starts at ``h_max = rho_max / rate``, ``rate = max(|c_{p+1}| / |c_p|, n |H|_max)``
    (the next order's size against the leading one, or the per-epoch curvature), and stops
    where the predicted gap ``|u| h^p`` would come within ``1e3 x roundoff`` (the caller's
    float64 round-off bound of the mean; round-off then adds <= 1e-3 to a rung's relative
    deviation). A rung's deviation: the next order ``2 h rate`` plus the RK4 Richardson error
    and the round-off, over the gap.
    """
    n = seqs.shape[1]
    p, u = epoch_leading_term(loss, th0, X, y, batch, replace, target)
    taylor = epoch_gap_taylor(loss, th0, X, y, batch, replace, target, order=min(p + 1, 4), seqs=seqs)
    H = vmap(hessian(loss), in_dims=(None, 0, 0))(th0, X, y)
    lip = float(torch.linalg.matrix_norm(H, 2).max())
    nu, nv = float(u.norm()), float(taylor[p + 1].norm()) if p + 1 < len(taylor) else 0.0
    rate = max(nv / nu, n * lip)
    h_max = rho_max / rate
    h_min = max(h_max * 0.5 ** (levels - 1), (1e3 * roundoff / nu) ** (1.0 / p))
    hs = np.geomspace(h_max, h_min, levels)
    gaps, rel, consts = [], [], []
    for h in hs:
        gap, interr = epoch_gap(loss, th0, X, y, float(h), batch, replace, target, seqs=seqs)
        ng = float(gap.norm())
        gaps.append(ng)
        rel.append(2 * h * rate + (interr + roundoff) / ng)
        consts.append(float((gap / h**p - u).norm()) / nu)
    return dict(hs=hs, gaps=np.array(gaps), rel=np.array(rel), order=p, u=u, taylor=taylor, rate=rate,
                const_err=consts[-1], n=n, N=X.shape[0], sequences=len(seqs))



def taylor_summary(taylor, u, order: int) -> dict:
    """Sizes of the gap's exact Taylor coefficients ``c_1, c_2, ...`` (``taylor[k]``): ``largest``
    (max entry over every order), ``below`` (max entry below ``order``: 0 in exact arithmetic)
    and ``closed`` (max entry of ``c_order - u``, ``u`` the closed-form leading term)."""
    return dict(largest=max(float(c.abs().max()) for c in taylor[1:]),
                below=max([float(c.abs().max()) for c in taylor[1:order]], default=0.0),
                closed=float((taylor[order] - u).abs().max()))

def slope_check(hs, gaps, order: int, rel_dev) -> dict:
    """Least-squares slope of ``log|gap|`` on ``log eta`` against the predicted ``order``; the
    tolerance propagates per-point relative deviations ``rel_dev`` (derived) through the fit
    (:func:`numeric.modified_flow.slope_tolerance`).

    >>> hs = 0.01 * 0.5 ** np.arange(5)
    >>> r = slope_check(hs, 2.0 * hs**3, 3, [0.01] * 5)
    >>> r["ok"], r["slope"]
    (True, 3.0)
    >>> slope_check(hs, 2.0 * hs**4, 3, [0.01] * 5)["ok"]
    False
    """
    fit = fit_loglog_slope(hs, gaps)
    tol = slope_tolerance(hs, rel_dev)
    return dict(slope=fit.slope, tol=tol, ok=bool(abs(fit.slope - order) <= tol), intercept=fit.intercept)


# ============================================================================ flat directions
def _gauss_hermite(k: int):
    """Nodes and weights of the k-point Gauss-Hermite rule for N(0, 1) (exact to degree 2k - 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    return torch.tensor(z, dtype=DTYPE), torch.tensor(w / w.sum(), dtype=DTYPE)


@dataclass
class NoisyModel:
    """A per-sample loss with its sample law, for SGD with one fresh sample per step.

    ``loss(theta, sample)``: per-sample loss (``theta (P,)``, ``sample (k,)``; torch.func-friendly).
    ``sampler(generator, R)``: ``(R, k)`` i.i.d. samples. ``nodes, weights``: a quadrature of the
    sample law, exact for every expectation used here (the risk and its derivatives, the
    gradient covariance and its derivatives). ``grad_batch(theta (R, P), samples (R, k))``: an
    optional closed-form batched gradient (checked against autograd in the tests).
    ``project(theta)``: the nearest point of the flat manifold (rows of ``theta``).
    """

    name: str
    dim: int
    loss: Callable
    sampler: Callable
    nodes: torch.Tensor
    weights: torch.Tensor
    project: Callable
    grad_batch: Callable | None = None
    info: dict = field(default_factory=dict)

    def risk(self, th):
        return (self.weights * vmap(self.loss, in_dims=(None, 0))(th, self.nodes)).sum()

    def autograd_batch(self, th, samples):
        return vmap(grad(self.loss))(th, samples)

    def grads(self, th, samples):
        return self.grad_batch(th, samples) if self.grad_batch is not None else self.autograd_batch(th, samples)

    def mean_grads(self, th):
        """``grad L`` at every row of ``th`` (the quadrature of the per-sample gradients)."""
        out = torch.zeros_like(th)
        for z, w in zip(self.nodes, self.weights):
            out = out + w * self.grads(th, z.expand(th.shape[0], -1))
        return out

    def grad_moments(self, th):
        """``(mean gradient, second moment E g g^T)`` at one point (quadrature)."""
        G = vmap(grad(self.loss), in_dims=(None, 0))(th, self.nodes)
        mu = self.weights @ G
        return mu, torch.einsum("q,qi,qj->ij", self.weights, G, G)

    def noise_energy(self, th):
        """``E|g|^2`` (the noise term of phi is ``(eta/4)`` times it)."""
        G = vmap(grad(self.loss), in_dims=(None, 0))(th, self.nodes)
        return self.weights @ (G ** 2).sum(1)


def toy_valley(s: float = 1.0) -> NoisyModel:
    r"""``l = (1/2) e^{t2} (t1 - xi)^2 - (1/2) s^2 e^{t2}``, ``xi ~ N(0, s^2)``: ``L = (1/2) e^{t2} t1^2``
    is flat along ``t2`` at ``t1 = 0``, and the valley is not a symmetry of the per-sample loss.

    >>> m = toy_valley(1.0)
    >>> th = torch.tensor([0.3, -0.2], dtype=torch.float64)
    >>> xi = torch.tensor([[0.7]], dtype=torch.float64)
    >>> bool(torch.allclose(m.grad_batch(th[None], xi), m.autograd_batch(th[None], xi), rtol=0, atol=1e-15))
    True
    """
    if not (s > 0 and math.isfinite(s)):
        raise InputError(f"the noise scale s must be positive and finite, got {s!r}")

    def loss(th, z):
        a = torch.exp(th[1])
        return 0.5 * a * (th[0] - z[0]) ** 2 - 0.5 * s**2 * a

    def grad_batch(th, z):
        a = torch.exp(th[:, 1])
        r = th[:, 0] - z[:, 0]
        return torch.stack([a * r, 0.5 * a * (r**2 - s**2)], dim=1)

    def sampler(gen, R):
        return s * torch.randn(R, 1, generator=gen, dtype=DTYPE)

    def project(th):
        out = th.clone()
        out[..., 0] = 0.0
        return out

    z, w = _gauss_hermite(4)
    return NoisyModel("toy valley", 2, loss, sampler, (s * z)[:, None], w, project, grad_batch, dict(s=s))


def scalar_net(v: float = 1.0, sigma: float = 0.5) -> NoisyModel:
    r"""``f = u w x``, ``l = (u w x - y)^2`` with ``y = v x + e``, ``x ~ N(0,1)``, ``e ~ N(0, sigma^2)``:
    the minima ``u w = v`` form one orbit of the rescaling ``(u, w) -> (e^lam u, e^-lam w)``
    (generator ``A = diag(1, -1)``, ``Q = u^2 - w^2``)."""
    if not (sigma > 0 and math.isfinite(sigma) and math.isfinite(v) and v != 0):
        raise InputError(f"scalar net needs v != 0 and sigma > 0, got v={v!r}, sigma={sigma!r}")

    def loss(th, z):
        return (th[0] * th[1] * z[0] - v * z[0] - z[1]) ** 2

    def grad_batch(th, z):
        r = 2 * (th[:, 0] * th[:, 1] * z[:, 0] - v * z[:, 0] - z[:, 1]) * z[:, 0]
        return torch.stack([r * th[:, 1], r * th[:, 0]], dim=1)

    def sampler(gen, R):
        return torch.stack([torch.randn(R, generator=gen, dtype=DTYPE),
                            sigma * torch.randn(R, generator=gen, dtype=DTYPE)], dim=1)

    def project(th):
        out = th.clone()
        for _ in range(30):  # Newton on u w = v along the normal (w, u)
            u, w = out[..., 0], out[..., 1]
            r = u * w - v
            nrm = u**2 + w**2
            out = torch.stack([u - r * w / nrm, w - r * u / nrm], dim=-1)
        return out

    zx, wx = _gauss_hermite(6)
    ze, we = _gauss_hermite(3)
    nodes = torch.stack(torch.meshgrid(zx, sigma * ze, indexing="ij"), -1).reshape(-1, 2)
    weights = (wx[:, None] * we[None, :]).reshape(-1)
    return NoisyModel("scalar net u*w", 2, loss, sampler, nodes, weights, project, grad_batch,
                      dict(v=v, sigma=sigma, generator=torch.tensor([1.0, -1.0], dtype=DTYPE)))


def tanh_interpolation(x, theta_star, sigmas) -> NoisyModel:
    r"""``f(theta, x) = sum_j v_j tanh(w_j x + b_j)`` (``theta = (w, b, v)``, ``3 h`` parameters)
    fitted exactly on the points ``x_i`` (labels ``y_i = f(theta*, x_i)``) with label noise of
    per-point scale ``sigma_i``: a step draws a point uniformly and a fresh
    ``e ~ N(0, sigma_i^2)``; ``l = (f(theta, x_i) - y_i - e)^2``. With fewer points than
    parameters the interpolants form a manifold that is not an orbit of any continuous symmetry
    (tanh has only the discrete sign flip); ``C = (4/N) sum sigma_i^2 J_i J_i^T`` is a multiple of
    ``H = (2/N) sum J_i J_i^T`` only when the sigma_i are equal.

    >>> m = tanh_interpolation([1.6, -0.6], [1.0, 0.6, -0.9], [0.05, 0.15])
    >>> th = torch.tensor([[0.9, 0.5, -1.0]], dtype=torch.float64)
    >>> z = m.sampler(torch.Generator().manual_seed(0), 1)
    >>> bool(torch.allclose(m.grad_batch(th, z), m.autograd_batch(th, z), rtol=0, atol=1e-14))
    True
    """
    x = torch.as_tensor(x, dtype=DTYPE)
    th_star = torch.as_tensor(theta_star, dtype=DTYPE)
    sig = torch.as_tensor(sigmas, dtype=DTYPE)
    if x.ndim != 1 or sig.shape != x.shape or th_star.ndim != 1 or th_star.numel() % 3:
        raise InputError("tanh interpolation needs x (N,), sigmas (N,) and theta* = (w, b, v) of length 3h")
    if not (torch.isfinite(x).all() and torch.isfinite(th_star).all() and (sig > 0).all()):
        raise InputError("tanh interpolation: non-finite data or non-positive noise scales")
    h = th_star.numel() // 3
    if x.numel() >= 3 * h:
        raise InputError(f"{x.numel()} points and {3 * h} parameters: no flat manifold of interpolants")

    def f(th, xv):
        return torch.tanh(th[:h] * xv + th[h:2 * h]) @ th[2 * h:]

    y = torch.stack([f(th_star, xi) for xi in x])

    def loss(th, z):
        return (f(th, z[0]) - z[1] - z[2]) ** 2

    def grad_batch(th, z):
        t = torch.tanh(th[:, :h] * z[:, :1] + th[:, h:2 * h])
        r = 2 * ((t * th[:, 2 * h:]).sum(1) - z[:, 1] - z[:, 2])
        dpre = r[:, None] * th[:, 2 * h:] * (1 - t**2)
        return torch.cat([dpre * z[:, :1], dpre, r[:, None] * t], dim=1)

    def sampler(gen, R):
        i = torch.randint(x.numel(), (R,), generator=gen)
        return torch.stack([x[i], y[i], sig[i] * torch.randn(R, generator=gen, dtype=DTYPE)], dim=1)

    def residuals(th):
        return torch.stack([f(th, xi) - yi for xi, yi in zip(x, y)])

    def project(th):
        rows = th.reshape(-1, th.shape[-1]).clone()
        for _ in range(30):  # Gauss-Newton, minimum-norm steps onto f(theta, x_i) = y_i
            J = vmap(torch.func.jacrev(residuals))(rows)
            rows = rows - (torch.linalg.pinv(J) @ vmap(residuals)(rows)[..., None])[..., 0]
        return rows.reshape(th.shape)

    ze, we = _gauss_hermite(3)
    nodes = torch.stack([torch.stack([xi, yi, si * zz]) for xi, yi, si in zip(x, y, sig) for zz in ze])
    weights = torch.cat([we / x.numel() for _ in x])
    return NoisyModel("tanh interpolation", 3 * h, loss, sampler, nodes, weights, project, grad_batch,
                      dict(x=x, y=y, sigmas=sig, theta_star=th_star))


# ----------------------------------------------------------------------------- geometry and predictions
def valley_geometry(model: NoisyModel, th, null_tol: float = 1e-9) -> dict:
    """Hessian, third derivative, noise covariance and the tangent / normal split at a point of
    the flat manifold (``InputError`` when ``th`` is not a minimum with a flat direction)."""
    th = torch.as_tensor(th, dtype=DTYPE)
    g = grad(model.risk)(th)
    H = hessian(model.risk)(th)
    scale = float(torch.linalg.matrix_norm(H, 2))
    if not math.isfinite(scale) or scale == 0:
        raise InputError("the Hessian vanishes or is not finite at this point")
    if float(g.norm()) > 1e-8 * max(scale, 1.0) * max(float(th.norm()), 1.0):
        raise InputError(f"not a critical point of the risk (|grad L| = {float(g.norm()):.3g}); project first")
    lam, V = torch.linalg.eigh(H)
    null = lam.abs() <= null_tol * scale
    if not bool(null.any()):
        raise InputError("no flat direction at this point (the Hessian is non-singular)")
    if bool((lam[~null] < 0).any()):
        raise InputError(f"not a minimum: Hessian eigenvalues {lam.tolist()}")
    T = jacfwd(hessian(model.risk))(th)
    mu, M2 = model.grad_moments(th)
    C = M2 - torch.outer(mu, mu)
    Ut, Un = V[:, null], V[:, ~null]
    # a reproducible orientation of the tangent basis: each vector's largest entry positive
    Ut = Ut * torch.sign(Ut.gather(0, Ut.abs().argmax(0, keepdim=True)))
    return dict(theta=th, H=H, T=T, C=C, Ut=Ut, Un=Un, lam=lam[~null], PT=Ut @ Ut.T,
                Hpinv=Un @ torch.diag(1 / lam[~null]) @ Un.T)


def discrete_lyapunov(Hn, Cn, eta: float) -> torch.Tensor:
    """``S = (I - eta H) S (I - eta H) + eta^2 C`` for symmetric ``H`` with ``0 < eta lam < 2``."""
    lam, V = torch.linalg.eigh(Hn)
    if bool(((eta * lam <= 0) | (eta * lam >= 2)).any()):
        raise InputError(f"eta * eigenvalues {(eta * lam).tolist()} outside (0, 2): no stationary covariance")
    Ct = V.T @ Cn @ V
    a = 1 - eta * lam
    return V @ (eta**2 * Ct / (1 - a[:, None] * a[None, :])) @ V.T


def drift_predictions(model: NoisyModel, th, eta: float, geometry: dict | None = None) -> dict:
    r"""Per-step drift along the flat directions at a point ``th`` of the manifold, as vectors
    (``"lyapunov"``, ``"lwa"``, ``"phi"``) and as tangent-basis coordinates (``"*_t"``):

    * ``lyapunov``: ``-(eta/2) P_T T[S_NN + S_TN + S_NT]`` with the discrete stationary
      covariance (module docstring);
    * ``lwa``: ``(eta^2/2) d^2Phi[C]`` of the gradient-flow projection (the eta -> 0 limit):
      ``-(eta^2/2) (P_T T[L_H^{-1} C_NN] + 2 P_T T[P_T C H^+] + H^+ T[C_TT])``,
      ``L_H S = H S + S H``;
    * ``phi``: ``-eta P_T grad phi = -(eta^2/4) P_T grad E|g|^2``.
    """
    geo = valley_geometry(model, th) if geometry is None else geometry
    if not (eta > 0 and math.isfinite(eta)):
        raise InputError(f"eta must be positive and finite, got {eta!r}")
    T, C, PT, Un, Hp = geo["T"], geo["C"], geo["PT"], geo["Un"], geo["Hpinv"]
    lam = geo["lam"]
    Cn = Un.T @ C @ Un
    Snn = Un @ discrete_lyapunov(torch.diag(lam), Cn, eta) @ Un.T
    Stn = eta * PT @ C @ Hp
    S = Snn + Stn + Stn.T

    def contract(M):
        return torch.einsum("ijk,jk->i", T, M)

    lyap = -(eta / 2) * PT @ contract(S)
    Lc = Un @ (Cn / (lam[:, None] + lam[None, :])) @ Un.T          # L_H^{-1} C_NN
    lwa = -(eta**2 / 2) * (PT @ contract(Lc) + 2 * PT @ contract(PT @ C @ Hp) + Hp @ contract(PT @ C @ PT))
    phi = -(eta**2 / 4) * PT @ grad(model.noise_energy)(geo["theta"])
    Ut = geo["Ut"]
    return dict(lyapunov=lyap, lwa=lwa, phi=phi, lyapunov_t=Ut.T @ lyap, lwa_t=Ut.T @ lwa, phi_t=Ut.T @ phi,
                S=S, geometry=geo, eta=eta)


# ----------------------------------------------------------------------------- ensembles
@dataclass
class DriftRun:
    """Per-run window averages of the mean step: ``raw`` (``(theta_end - theta_start)/window``)
    and ``conditional`` (``-eta grad L(theta_k)`` averaged over the window: the same expectation,
    the minibatch martingale averaged out exactly), both ``(R, P)``; ``snapshots``: the ensemble
    mean at ``snapshot_steps`` (window steps); ``path``: each named path prediction averaged along
    every run's window, ``(R, P)``."""

    raw: torch.Tensor
    conditional: torch.Tensor
    snapshots: torch.Tensor
    snapshot_steps: list
    path: dict
    eta: float
    burn: int
    window: int
    seconds: float = 0.0

    def mean_se(self, which: str = "conditional", basis=None):
        """Ensemble mean and CLT standard error of the per-run averages (optionally in a basis)."""
        x = getattr(self, which) if which in ("raw", "conditional") else self.path[which]
        if basis is not None:
            x = x @ basis
        return x.mean(0), x.std(0) / math.sqrt(x.shape[0])


def run_drift_ensemble(model: NoisyModel, theta0, eta: float, n_runs: int, burn: int, window: int,
                       seed: int = 0, n_snapshots: int = 3, path_predictions: dict | None = None) -> DriftRun:
    """``n_runs`` independent SGD runs (one fresh sample per step) from ``theta0``: ``burn`` steps
    to reach the stationary normal fluctuations, then a ``window`` over which the mean step is
    measured (:class:`DriftRun`). ``path_predictions``: ``{name: f(theta (R, P)) -> (R, P)}``,
    predictions that move with each run, averaged along its window.

    >>> m = toy_valley(0.5)
    >>> run = run_drift_ensemble(m, torch.zeros(2, dtype=torch.float64), 0.1, 64, 50, 50, seed=0)
    >>> run.raw.shape, run.snapshot_steps
    (torch.Size([64, 2]), [0, 25, 50])
    """
    import time

    t0 = time.perf_counter()
    if not (eta > 0 and math.isfinite(eta)):
        raise InputError(f"eta must be positive and finite, got {eta!r}")
    if n_runs < 2 or burn < 0 or window < 1 or n_snapshots < 2:
        raise InputError(f"need n_runs >= 2, burn >= 0, window >= 1, n_snapshots >= 2; got "
                         f"{n_runs}, {burn}, {window}, {n_snapshots}")
    gen = torch.Generator().manual_seed(int(seed))
    th = torch.as_tensor(theta0, dtype=DTYPE)
    if th.ndim != 1 or th.shape[0] != model.dim:
        raise InputError(f"theta0 must have shape ({model.dim},), got {tuple(th.shape)}")
    th = th.expand(n_runs, -1).clone()
    check_every = 256

    def step(th, k):
        th = th - eta * model.grads(th, model.sampler(gen, n_runs))
        if k % check_every == 0 and not bool(torch.isfinite(th).all()):
            raise DivergenceError(f"SGD diverged at step {k} (eta = {eta})")
        return th

    for k in range(burn):
        th = step(th, k)
    start = th.clone()
    cond = torch.zeros_like(th)
    paths = {name: torch.zeros_like(th) for name in (path_predictions or {})}
    snap_at = sorted({int(round(i * window / (n_snapshots - 1))) for i in range(n_snapshots)})
    snaps = []
    for k in range(window + 1):
        if k in snap_at:
            snaps.append(th.mean(0))
        if k == window:
            break
        cond = cond - eta * model.mean_grads(th)
        for name, fn in (path_predictions or {}).items():
            paths[name] = paths[name] + fn(th)
        th = step(th, burn + k)
    if not bool(torch.isfinite(th).all()):
        raise DivergenceError(f"SGD diverged in the measuring window (eta = {eta})")
    return DriftRun(raw=(th - start) / window, conditional=cond / window, snapshots=torch.stack(snaps),
                    snapshot_steps=snap_at, path={k: v / window for k, v in paths.items()},
                    eta=eta, burn=burn, window=window, seconds=time.perf_counter() - t0)


def snapshot_average(model: NoisyModel, run: DriftRun, predict: Callable) -> torch.Tensor:
    """A prediction averaged along the ensemble's path: ``predict`` at the manifold points nearest
    to the ensemble mean at each snapshot, combined by the trapezoid rule."""
    vals = torch.stack([predict(model.project(s)) for s in run.snapshots])
    t = torch.tensor(run.snapshot_steps, dtype=DTYPE)
    w = torch.zeros_like(t)
    w[1:] += (t[1:] - t[:-1]) / 2
    w[:-1] += (t[1:] - t[:-1]) / 2
    return (w[:, None] * vals).sum(0) / w.sum()


def order_eta_scales(model: NoisyModel, prediction: dict) -> dict:
    r"""Sizes of the relative corrections the leading-order drift neglects, all ``O(eta)``:

    * ``eta_lam``: ``eta lam_max`` (the discreteness of the steps; included exactly by the
      discrete Lyapunov covariance, neglected by its ``eta -> 0`` limit);
    * ``nonlinear``: ``|S| (|T|^2 / lam_min^2 + |grad^4 L| / lam_min)``: fluctuations of size
      ``|S|^(1/2)`` against the scales on which the Hessian changes (mean offset, higher
      moments, the fluctuations' own nonlinear relaxation);
    * ``noise``: ``|(1/2) grad^2 C [S]| / c_min``: the noise covariance averaged over the
      fluctuations instead of taken at the manifold point (``c_min``: the smallest normal
      eigenvalue of C).
    """
    geo = prediction["geometry"]
    th, S, lam = geo["theta"], prediction["S"], geo["lam"]
    Q4 = jacfwd(jacfwd(hessian(model.risk)))(th)
    nS = float(torch.linalg.matrix_norm(S, 2))
    nonlinear = nS * (float(torch.linalg.vector_norm(geo["T"])) ** 2 / float(lam.min()) ** 2
                      + float(torch.linalg.vector_norm(Q4)) / float(lam.min()))

    def cov(t):
        mu, M2 = model.grad_moments(t)
        return M2 - torch.outer(mu, mu)

    d2C = jacfwd(jacfwd(cov))(th)
    corr = 0.5 * torch.einsum("ijkl,kl->ij", d2C, S)
    Cn = geo["Un"].T @ geo["C"] @ geo["Un"]
    cmin = float(torch.linalg.eigvalsh(Cn).min())
    if cmin <= 0:
        raise InputError("the gradient noise vanishes in some normal direction: no stationary fluctuations there")
    eta_lam = float(prediction["eta"] * lam.max())
    return dict(eta_lam=eta_lam, nonlinear=nonlinear, noise=float(torch.linalg.matrix_norm(corr, 2)) / cmin)


def orbit_rate_prediction(model: NoisyModel, th, eta: float) -> dict:
    r"""The relative drift of ``Q = theta^T A theta`` per step along a symmetry orbit, at a point
    of the manifold: ``leading = eta^2 E[g^T A g] / Q`` (the exact step identity, which phi's
    ``-eta grad Q . grad phi / Q`` equals there: ``phi``), and its first correction from the
    stationary fluctuations, ``grad rho . dbar + (1/2) grad^2 rho [S]`` with
    ``rho = eta^2 E[g^T A g] / Q``, ``S`` the stationary covariance and
    ``dbar = -(1/2) H^+ T[S]`` the mean offset of the normal coordinates."""
    A = model.info.get("generator")
    if A is None:
        raise InputError(f"model {model.name!r} has no symmetry generator")
    th = torch.as_tensor(th, dtype=DTYPE)
    pred = drift_predictions(model, th, eta)
    geo, S = pred["geometry"], pred["S"]

    def rho(t):
        G = vmap(grad(model.loss), in_dims=(None, 0))(t, model.nodes)
        return eta**2 * (model.weights @ (G**2 @ A)) / (t**2 @ A)

    def phi(t):
        return model.risk(t) + eta / 4 * model.noise_energy(t)

    Qg = 2 * A * th
    phi_rate = float(-eta * Qg @ grad(phi)(th) / (th**2 @ A))
    dbar = -0.5 * geo["Hpinv"] @ torch.einsum("ijk,jk->i", geo["T"], S)
    first = float(grad(rho)(th) @ dbar + 0.5 * (hessian(rho)(th) * S).sum())
    pred["eta"] = eta
    return dict(leading=float(rho(th)), phi=phi_rate, first_order=first, refined=float(rho(th)) + first,
                prediction=pred, scales=order_eta_scales(model, pred))


def orbit_rate_run(model: NoisyModel, theta0, eta: float, n_runs: int, burn: int, window: int,
                   seed: int = 0) -> dict:
    r"""The relative drift of ``Q = theta^T A theta`` along a symmetry orbit (``model.info
    ['generator']`` = diag A): per run, the window mean of ``Delta Q_k / Q_k``, and the largest
    deviation from the exact step identity ``Delta Q = eta^2 g^T A g`` relative to
    ``eta^2 |g|^2`` (float64 round-off)."""
    A = model.info.get("generator")
    if A is None:
        raise InputError(f"model {model.name!r} has no symmetry generator")
    gen = torch.Generator().manual_seed(int(seed))
    th = torch.as_tensor(theta0, dtype=DTYPE).expand(n_runs, -1).clone()
    rate = torch.zeros(n_runs, dtype=DTYPE)
    worst = 0.0
    for k in range(burn + window):
        g = model.grads(th, model.sampler(gen, n_runs))
        new = th - eta * g
        if k >= burn:
            Q, Qn = (th**2 * A).sum(1), (new**2 * A).sum(1)
            ident = eta**2 * (g**2 * A).sum(1)
            scale = eta**2 * (g**2).sum(1) + (th**2).sum(1) * torch.finfo(DTYPE).eps
            worst = max(worst, float(((Qn - Q - ident).abs() / scale).max()))
            rate = rate + (Qn - Q) / Q
        th = new
        if k % 256 == 0 and not bool(torch.isfinite(th).all()):
            raise DivergenceError(f"SGD diverged at step {k} (eta = {eta})")
    rate = rate / window
    return dict(rate=rate, mean=float(rate.mean()), se=float(rate.std() / math.sqrt(n_runs)),
                identity_residual=worst, theta_end=th)


# ----------------------------------------------------------------------------- experiments
def paired_drift(measured, predicted, scale: float = 1.0) -> dict:
    r"""Per-run measured drifts against a prediction (per run, or one number): the mean of the
    paired differences and its standard error, in units of ``scale``.

    >>> d = paired_drift(torch.tensor([1.0, 1.2, 0.9, 1.1]), 1.0)
    >>> round(d["gap"], 3), round(d["measured"], 3)
    (0.05, 1.05)
    """
    m = torch.as_tensor(measured, dtype=DTYPE)
    p = torch.as_tensor(predicted, dtype=DTYPE).expand_as(m)
    if m.ndim != 1 or m.numel() < 2:
        raise InputError(f"need a 1-D tensor of at least 2 per-run values, got shape {tuple(m.shape)}")
    diff = (m - p) / scale
    n = m.numel()
    return dict(measured=float(m.mean() / scale), predicted=float(p.mean() / scale),
                gap=float(diff.mean().abs()), se=float(diff.std() / math.sqrt(n)), n=n)


def transient_left(eta: float, lam_min: float, burn: int) -> float:
    """``(1 - eta lam_min)^(2 burn)``: the part of the normal covariance's initial offset a burn-in
    of ``burn`` steps leaves (the slowest normal mode relaxes by ``1 - eta lam_min`` per step)."""
    return (1 - eta * lam_min) ** (2 * burn)


def toy_valley_path_predictions(s: float, eta: float) -> dict:
    """Per-run predictions of the toy valley's drift along t2 at each run's own t2, from the SymPy
    closed forms of :func:`symbolic.sgd_epoch.toy_valley_drift`: ``lyapunov`` (discrete
    Lyapunov), ``lwa`` (its eta -> 0 limit) and ``phi`` (phi's noise term)."""
    r = toy_valley_drift()
    eta_s, s_s, t2_s = r["symbols"]
    out = {}
    for name, key in (("lyapunov", "drift"), ("lwa", "drift_lwa"), ("phi", "drift_phi")):
        f = sp.lambdify((eta_s, s_s, t2_s), r[key], modules=[{"exp": torch.exp}, "math"])

        def pred(th, f=f):
            out_ = torch.zeros_like(th)
            out_[:, 1] = f(eta, s, th[:, 1])
            return out_

        out[name] = pred
    return out


def toy_valley_experiment(s: float, eta: float, burn: int, window: int, runs: int, seed: int) -> dict:
    """SGD on :func:`toy_valley` from the origin: the ensemble (with the per-run path predictions of
    :func:`toy_valley_path_predictions`), the predictions at the origin, the ``O(eta)`` scales the
    leading order neglects and the transient the burn-in leaves."""
    m = toy_valley(s)
    th0 = torch.zeros(2, dtype=DTYPE)
    run = run_drift_ensemble(m, th0, eta, runs, burn, window, seed=seed,
                             path_predictions=toy_valley_path_predictions(s, eta))
    pred = drift_predictions(m, th0, eta)
    return dict(run=run, pred=pred, scales=order_eta_scales(m, pred),
                transient=transient_left(eta, float(pred["geometry"]["lam"].min()), burn))


def orbit_experiment(v: float, sigma: float, theta, eta: float, burn: int, window: int, runs: int, seed: int) -> dict:
    """SGD along the rescaling orbit of :func:`scalar_net` from ``theta``: the predicted relative
    drift of ``Q`` (:func:`orbit_rate_prediction`), the measured one (:func:`orbit_rate_run`), the
    transient, and the general drift predictions projected on ``grad Q / Q`` (``general``)."""
    m = scalar_net(v, sigma)
    th = torch.tensor(theta, dtype=DTYPE)
    pred = orbit_rate_prediction(m, th, eta)
    meas = orbit_rate_run(m, th, eta, runs, burn, window, seed=seed)
    transient = transient_left(eta, float(pred["prediction"]["geometry"]["lam"].min()), burn)
    A = m.info["generator"]
    general = {k: float((2 * A * th) @ pred["prediction"][k] / (th**2 @ A)) for k in ("lyapunov", "lwa")}
    return dict(pred=pred, meas=meas, transient=transient, general=general)


def tanh_experiment(x, theta, sigmas, eta: float, burn: int, window: int, runs: int, seed: int) -> dict:
    """SGD on :func:`tanh_interpolation` from ``theta``: the drift along the flat curve's tangent
    ``Ut[:, 0]`` per run (``measured``: conditional, ``raw``), the predictions averaged along the
    ensemble's path (``path``), the ``O(eta)`` scales and the transient."""
    m = tanh_interpolation(x, theta, sigmas)
    th = torch.tensor(theta, dtype=DTYPE)
    pred = drift_predictions(m, th, eta)
    run = run_drift_ensemble(m, th, eta, runs, burn, window, seed=seed)
    Ut = pred["geometry"]["Ut"]
    path = {k: float(Ut[:, 0] @ snapshot_average(m, run, lambda q, k=k: drift_predictions(m, q, eta)[k]))
            for k in ("lyapunov", "lwa", "phi")}
    return dict(run=run, pred=pred, path=path, scales=order_eta_scales(m, pred),
                transient=transient_left(eta, float(pred["geometry"]["lam"].min()), burn),
                measured=run.conditional @ Ut[:, 0], raw=run.raw @ Ut[:, 0])
