r"""Witness for backward-error analysis: one GD step versus the flow of the modified field.

The modified field of the Euler step ``y + h f0(y)`` is built numerically by the same
recursion as :mod:`symbolic.backward_error` (nested Lie derivatives ``D_A B = B' A``, each a
``torch.func.jvp``), so it works for any differentiable torch loss:

.. math:: f_j = -\sum_{m=2}^{j+1}\frac1{m!}\sum_{i_1+\dots+i_m=j+1-m} D_{f_{i_m}}\cdots D_{f_{i_2}} f_{i_1}.

The truncated field ``F_k = sum_{j<=k} h^j f_j`` is integrated for time ``h`` with classical
RK4 (``substeps`` steps, float64; a run with twice the substeps estimates the integration
error, Richardson). The one-step gap then has the predicted expansion

.. math:: \theta_{GD} - \varphi_h^{F_k}(\theta_0) = h^{k+2}\,u + h^{k+3}\,v + O(h^{k+4}),\quad
          u = f_{k+1},\ v = f_{k+2} + \tfrac12\,(f_{k+1}' f_0 + f_0' f_{k+1})

(the flows of two fields differing by :math:`\delta` differ by
:math:`h\delta + \frac{h^2}2(\delta' F + F'\delta) + \dots`), which fixes both the slope
``k + 2`` of ``log|gap|`` versus ``log h`` and the tolerance of its fit.

>>> import torch
>>> loss = lambda th: 0.5 * (th ** 2).sum()
>>> th0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
>>> fs = modified_field_terms(gradient_field(loss), 2)
>>> [round(float(f(th0)[0]), 6) for f in fs]                  # -x, -x/2, -x/3
[-1.0, -0.5, -0.333333]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import grad, jvp

from symbolic.backward_error import compositions  # the same ordered splits as the symbolic recursion

from core.errors import DivergenceError, InputError
from core.validation import check_spd

VectorField = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "gradient_field", "preconditioned_gradient_field", "lie_derivative", "modified_field_terms",
    "truncated_field", "rk4_flow", "gd_step", "one_step_gap", "gap_expansion", "SlopeFit",
    "fit_loglog_slope", "slope_tolerance", "quadratic_loss", "quartic_loss", "tanh_mlp_loss",
    "entropic_loss", "n_gd_steps", "low_order_terms", "FAMILIES", "random_loss", "quadratic_expansion", "bea_slope",
    "finite_n_gap", "measured_cn", "random_loss_slope", "second_order_loss_slope", "plot_slope_fits",
]


# ----------------------------------------------------------------------------- fields
def gradient_field(loss) -> VectorField:
    """``f0 = -grad l`` (GD with a scalar learning rate ``h``)."""
    g = grad(loss)
    return lambda th: -g(th)


def preconditioned_gradient_field(loss, P) -> VectorField:
    """``f0 = -P grad l`` (GD with the matrix learning rate ``Lam = h P``; P symmetric PD)."""
    P = torch.as_tensor(check_spd("P", P))
    g = grad(loss)
    return lambda th: -(P.to(th) @ g(th))


def lie_derivative(A: VectorField, B: VectorField) -> VectorField:
    """``D_A B (y) = B'(y) A(y)`` as a Jacobian-vector product."""
    return lambda y: jvp(B, (y,), (A(y),))[1]


def modified_field_terms(f0: VectorField, k: int) -> list[VectorField]:
    """``[f_0, ..., f_k]`` as callables (the BEA recursion, see the module docstring)."""
    if k < 0:
        raise InputError(f"order k must be >= 0, got {k}")
    fs: list[VectorField] = [f0]
    nested_cache: dict = {}

    def nested(idx):
        if idx not in nested_cache:
            nested_cache[idx] = fs[idx[0]] if len(idx) == 1 else lie_derivative(fs[idx[-1]], nested(idx[:-1]))
        return nested_cache[idx]

    for j in range(1, k + 1):
        terms = [(nested(idx), 1.0 / math.factorial(m))
                 for m in range(2, j + 2) for idx in compositions(j + 1 - m, m)]
        fs.append(lambda y, terms=terms: -sum(w * t(y) for t, w in terms))
    return fs


def low_order_terms(f0: VectorField, k: int) -> list[VectorField]:
    r"""``[f_0, ..., f_k]`` for ``k <= 3`` in closed form (a few jvps), valid for any field f0:

    :math:`f_1 = -\tfrac12 f'f`, :math:`f_2 = \tfrac13 f'f'f + \tfrac1{12} f''(f, f)`,
    :math:`f_3 = -\tfrac14 f'f'f'f - \tfrac1{12} f'f''(f,f) - \tfrac1{12} f''(f, f'f)`
    (``f = f0``; coefficients derived in :func:`symbolic.backward_error.elementary_differential_coefficients`;
    for ``f0 = -g``: ``f_2 = -(1/3) H^2 g - (1/12) T[g,g]``). The tests compare these with
    :func:`modified_field_terms` (the generic recursion).
    """
    if not 0 <= k <= 3:
        raise InputError(f"closed forms exist here for k <= 3; got {k} (use modified_field_terms)")

    def J(y, w):
        return jvp(f0, (y,), (w,))[1]

    def d2(y, a, b):  # f''(a, b)
        return jvp(lambda z: jvp(f0, (z,), (a,))[1], (y,), (b,))[1]

    def f1(y):
        return -0.5 * J(y, f0(y))

    def f2(y):
        a = f0(y)
        return J(y, J(y, a)) / 3.0 + d2(y, a, a) / 12.0

    def f3(y):
        a = f0(y)
        Ja = J(y, a)
        return -J(y, J(y, Ja)) / 4.0 - J(y, d2(y, a, a)) / 12.0 - d2(y, a, Ja) / 12.0

    return [f0, f1, f2, f3][: k + 1]


def truncated_field(fs: Sequence[VectorField], h: float) -> VectorField:
    """``F = sum_j h^j f_j``."""
    return lambda y: sum((h ** j) * f(y) for j, f in enumerate(fs))


# ----------------------------------------------------------------------------- integrators
def _check_finite(name, t):
    if not torch.all(torch.isfinite(t)):
        raise DivergenceError(f"{name} produced non-finite values")
    return t


def rk4_flow(field: VectorField, y0: torch.Tensor, time: float, substeps: int) -> torch.Tensor:
    """Classical RK4 for ``y' = field(y)`` over ``[0, time]`` in ``substeps`` equal steps."""
    if substeps < 1:
        raise InputError(f"substeps must be >= 1, got {substeps}")
    dt = time / substeps
    y = y0
    for _ in range(substeps):
        k1 = field(y)
        k2 = field(y + 0.5 * dt * k1)
        k3 = field(y + 0.5 * dt * k2)
        k4 = field(y + dt * k3)
        y = y + (dt / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return _check_finite("RK4 flow", y)


def _rk4_batched(field, Y0, H, substeps: int):
    """RK4 on a batch of states ``Y0`` (rows), each over its own time ``H[i]``."""
    dt = (H / substeps)[:, None]
    Y = Y0
    for _ in range(substeps):
        k1 = field(Y, H)
        k2 = field(Y + 0.5 * dt * k1, H)
        k3 = field(Y + 0.5 * dt * k2, H)
        k4 = field(Y + dt * k3, H)
        Y = Y + (dt / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return _check_finite("RK4 flow", Y)


def gd_step(f0: VectorField, y0: torch.Tensor, h: float) -> torch.Tensor:
    """One explicit Euler / GD step ``y0 + h f0(y0)``."""
    return _check_finite("GD step", y0 + h * f0(y0))


def n_gd_steps(f0: VectorField, y0: torch.Tensor, h: float, n: int) -> torch.Tensor:
    """``n`` GD steps of size ``h / n`` on the field f0."""
    y = y0
    for _ in range(n):
        y = y + (h / n) * f0(y)
    return _check_finite(f"{n} GD steps", y)


def one_step_gap(f0: VectorField, y0, h: float, k: int, substeps: int = 8, fs=None):
    """``(gap, integration_error)``: ``theta_GD - flow_h(F_k)(theta0)`` with RK4 on
    ``2*substeps`` steps, and the Richardson estimate of that run's error
    ``|flow(substeps) - flow(2*substeps)| / 15`` (RK4 is 4th order: halving the step divides
    the error by 16)."""
    fs = modified_field_terms(f0, k) if fs is None else fs[: k + 1]
    F = truncated_field(fs, h)
    coarse = rk4_flow(F, y0, h, substeps)
    fine = rk4_flow(F, y0, h, 2 * substeps)
    gap = gd_step(f0, y0, h) - fine
    return gap, float(torch.linalg.vector_norm(coarse - fine)) / 15.0


def gap_expansion(f0: VectorField, y0, k: int, fs=None):
    """``(u, v)``: the predicted ``h^{k+2}`` and ``h^{k+3}`` coefficients of the one-step gap
    (generic recursion; closed forms where ``k + 2 <= 2``)."""
    if fs is None or len(fs) < k + 3:
        fs = low_order_terms(f0, k + 2) if k <= 1 else modified_field_terms(f0, k + 2)
    u = fs[k + 1](y0)
    dfk1_f0 = lie_derivative(f0, fs[k + 1])(y0)     # f_{k+1}' f_0
    df0_fk1 = jvp(f0, (y0,), (u,))[1]                # f_0' f_{k+1}
    v = fs[k + 2](y0) + 0.5 * (dfk1_f0 + df0_fk1)
    return u, v


# ----------------------------------------------------------------------------- slope fit


class GapBelowRoundoff(InputError):
    """The drawn point's leading gap is too small against float64 round-off for a slope fit:
    its next orders force the ladder's top step down to where the gap is round-off."""

@dataclass
class SlopeFit:
    """Least-squares fit of ``log|gap|`` against ``log h``."""

    h: np.ndarray
    err: np.ndarray
    slope: float
    intercept: float
    details: dict = field(default_factory=dict)


def fit_loglog_slope(h, err) -> SlopeFit:
    """Slope and intercept of the least-squares line through ``(log h, log err)``.

    >>> fit_loglog_slope([0.1, 0.05, 0.025], [1e-3, 1.25e-4, 1.5625e-5]).slope
    3.0
    """
    h, err = np.asarray(h, float), np.asarray(err, float)
    if np.any(err <= 0) or np.any(h <= 0):
        raise InputError("log-log fit needs positive step sizes and errors")
    x, y = np.log(h), np.log(err)
    slope, intercept = np.polyfit(x, y, 1)
    return SlopeFit(h, err, round(float(slope), 12), float(intercept))


def slope_tolerance(h, rel_dev) -> float:
    r"""Bound on ``|fitted slope - p|`` when ``|log err_i - (c + p log h_i)| <= rel_dev_i``.

    The least-squares slope of the deviations ``e_i`` is
    :math:`\sum (x_i-\bar x) e_i / \sum (x_i-\bar x)^2`, bounded by
    :math:`\max|e_i| \sum|x_i-\bar x| / \sum (x_i-\bar x)^2`.

    >>> round(slope_tolerance([0.1, 0.05, 0.025, 0.0125, 0.00625], [0.01] * 5), 5)
    0.00866
    """
    x = np.log(np.asarray(h, float))
    dx = x - x.mean()
    return float(np.max(rel_dev) * np.abs(dx).sum() / (dx ** 2).sum())


# ----------------------------------------------------------------------------- loss families
def quadratic_loss(A, b):
    """``l = (1/2) th^T A th + b^T th`` (A symmetric)."""
    A = torch.as_tensor(A, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or b.shape != (A.shape[0],):
        raise InputError(f"quadratic loss needs a square A and a matching b, got {tuple(A.shape)}, {tuple(b.shape)}")
    if not torch.allclose(A, A.T, atol=1e-12):
        raise InputError("quadratic loss: A is not symmetric")
    return lambda th: 0.5 * th @ (A.to(th) @ th) + b.to(th) @ th


def quartic_loss(c1, c2, c3, c4):
    """``l = c1.th + (1/2) c2[th,th] + (1/6) c3[th,th,th] + (1/24) c4[th,th,th,th]``:
    a general quartic polynomial (coefficient tensors of order 1..4; only their symmetric
    parts matter)."""
    c1, c2, c3, c4 = (torch.as_tensor(c, dtype=torch.float64) for c in (c1, c2, c3, c4))
    n = c1.shape[0]
    if c2.shape != (n, n) or c3.shape != (n,) * 3 or c4.shape != (n,) * 4:
        raise InputError("quartic loss: coefficient tensors must have shapes (n,), (n,n), (n,n,n), (n,n,n,n)")

    def loss(th):
        t2 = torch.einsum("i,j->ij", th, th)
        return (c1.to(th) @ th + 0.5 * (c2.to(th) * t2).sum()
                + (torch.einsum("ijk,ij,k->", c3.to(th), t2, th)) / 6
                + (torch.einsum("ijkl,ij,kl->", c4.to(th), t2, t2)) / 24)

    return loss


def tanh_mlp_loss(X, y, hidden: int):
    """Mean-squared error of ``x -> w2 . tanh(W1 x)`` on data ``(X, y)``; ``th`` packs
    ``W1`` (hidden x d, row-major) then ``w2`` (hidden). Returns ``(loss, n_params)``."""
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise InputError(f"tanh MLP: X must be (N, d) and y (N,), got {tuple(X.shape)}, {tuple(y.shape)}")
    if hidden < 1:
        raise InputError(f"tanh MLP: hidden width must be >= 1, got {hidden}")
    d = X.shape[1]

    def loss(th):
        W1 = th[: hidden * d].reshape(hidden, d)
        w2 = th[hidden * d:]
        pred = torch.tanh(X.to(th) @ W1.T) @ w2
        return 0.5 * ((pred - y.to(th)) ** 2).mean()

    return loss, hidden * d + hidden


def entropic_loss(loss, Lam, c: float = 0.25, second_order: float = 0.0):
    r"""``phi = l + c g^T Lam g`` (+ ``second_order * g^T Lam H Lam g``, a candidate
    second-order potential: for quadratics with ``Lam = eta I`` the value 1/6 is exact).

    ``Lam`` is a float (scalar learning rate) or a symmetric matrix.
    """
    g = grad(loss)

    def apply(v):
        return Lam * v if not torch.is_tensor(Lam) else Lam.to(v) @ v

    def phi(th):
        gv = g(th)
        val = loss(th) + c * gv @ apply(gv)
        if second_order:
            Hg = jvp(g, (th,), (apply(gv),))[1]
            val = val + second_order * apply(gv) @ Hg
        return val

    return phi


# ----------------------------------------------------------------------------- the experiment
_ULP = 2.0 ** -52


def _roundoff_bound(y0, substeps: int) -> float:
    """Generous float64 round-off bound on the gap: each of the ~2*substeps RK4 steps and the
    GD step perturbs ``y`` by at most ~20 ulps of ``max(|y|, 1)`` (a few flops per stage)."""
    return 20.0 * (2 * substeps + 1) * _ULP * max(float(torch.linalg.vector_norm(y0)), 1.0)


def bea_slope(f0: VectorField, y0: torch.Tensor, k: int, *, levels: int = 5, h_cap: float = 0.1,
              rho_max: float = 0.05, substeps: int = 4, flow_field=None, expansion=None) -> SlopeFit:
    r"""Fit the slope of ``|theta_GD - flow_h(F_k)(theta0)|`` over a geometric ladder of ``h``
    (halving, or finer where float64 round-off would otherwise reach the gap).

    The ladder tops at ``h_max = min(h_cap, rho_max / max(|v|/|u|, |f0'|_2))`` so that the
    next-order term is at most ``rho_max`` of the leading one. ``details`` holds the derived slope tolerance

        ``tol = slope_tolerance(h, 2 rho_i + int_i + round_i)``

    with ``rho_i = h_i max(|v|/|u|, |f0'|_2)`` (first neglected order, floored by the Lipschitz
    rate so that an accidentally small ``v`` cannot hide the O(h^2) rest; the factor 2 covers
    ``|log(1+x)| <= 2|x|`` for ``|x| <= 1/2`` and that rest, ``O(rho^2)``), ``int_i`` the Richardson RK4
    error and ``round_i`` the float64 round-off bound, both relative to the gap; plus the leading-constant check
    ``|gap(h_min)/h_min^p - u| / |u|`` against ``2 rho_min + int + round``.

    ``flow_field(h)`` (optional) replaces the truncated modified field by another field to
    integrate, e.g. ``-grad phi`` of a candidate entropic loss; ``u, v`` still come from the
    BEA so the leading-constant check then tests the candidate too. ``expansion=(u, v)``
    supplies them in closed form (quadratics) instead of the generic recursion.
    """
    if levels < 3:
        raise InputError(f"a slope fit needs at least 3 step sizes, got {levels}")
    p = k + 2
    if expansion is None:
        u, v = gap_expansion(f0, y0, k)
    else:
        u, v = expansion
    fs = low_order_terms(f0, k) if k <= 3 else modified_field_terms(f0, k)
    nu, nv = float(torch.linalg.vector_norm(u)), float(torch.linalg.vector_norm(v))
    if not math.isfinite(nu) or nu == 0.0:
        raise InputError(f"the order-{k + 1} term vanishes at theta0 (|u| = {nu}): no slope to fit; "
                         "pick a point away from critical points")
    # relative size of the next orders: |v|/|u| for the first, and - lest an accidentally small v
    # hide the O(h^2) rest - at least the Lipschitz rate |f0'(theta0)|_2 (successive BEA
    # coefficients grow like powers of it)
    lip = float(torch.linalg.matrix_norm(torch.func.jacrev(f0)(y0), ord=2))
    rate = max(nv / nu, lip)
    h_max = min(h_cap, rho_max / rate) if rate > 0 else h_cap
    rnd = _roundoff_bound(y0, substeps)
    # smallest step: the predicted gap |u| h^p must stay >= 1e3 x the round-off bound, so that
    # round-off adds <= 1e-3 to each point's relative deviation; otherwise halve down from h_max
    h_floor = (1e3 * rnd / nu) ** (1.0 / p)
    if h_floor >= h_max / 2:
        raise GapBelowRoundoff(f"order {k}: the gap (|u| = {nu:.3g}) is too close to float64 round-off for a "
                         f"slope fit below h = {h_max:.3g}")
    hs = np.geomspace(h_max, max(h_floor, h_max * 0.5 ** (levels - 1)), levels)
    errs, rel_dev, consts = [], [], []
    # the whole ladder is integrated at once: one vmapped field evaluation per RK4 stage
    if flow_field is None:
        fv = [torch.vmap(f) for f in fs]

        def batched_field(Y, H):
            return sum(H[:, None] ** j * f(Y) for j, f in enumerate(fv))
    else:
        fields = [flow_field(float(h)) for h in hs]

        def batched_field(Y, H):
            return torch.stack([F(Y[i]) for i, F in enumerate(fields)])

    H = torch.as_tensor(hs, dtype=y0.dtype, device=y0.device)
    Y0 = y0.expand(levels, -1).clone()
    coarse = _rk4_batched(batched_field, Y0, H, substeps)
    fine = _rk4_batched(batched_field, Y0, H, 2 * substeps)
    gd = Y0 + H[:, None] * torch.vmap(f0)(Y0)
    for i, h in enumerate(hs):
        h = float(h)
        gap = gd[i] - fine[i]
        interr = float(torch.linalg.vector_norm(coarse[i] - fine[i])) / 15.0
        ng = float(torch.linalg.vector_norm(gap))
        if ng <= 0:
            raise InputError(f"gap is exactly 0 at h = {h}: nothing to fit")
        rho = h * rate
        rel_dev.append(2 * rho + (interr + rnd) / ng)
        errs.append(ng)
        consts.append(float(torch.linalg.vector_norm(gap / h ** p - u)) / nu)
    fit = fit_loglog_slope(hs, errs)
    tol = slope_tolerance(hs, rel_dev)
    fit.details = dict(order=k, predicted_slope=p, slope_tol=tol, h_max=h_max, u_norm=nu, v_norm=nv,
                       lipschitz=lip, rho_max=float(hs[0] * rate), const_rel_err=consts[-1],
                       const_tol=float(rel_dev[-1]), rel_dev_max=float(max(rel_dev)),
                       slope_ok=bool(abs(fit.slope - p) <= tol), const_ok=bool(consts[-1] <= rel_dev[-1]))
    return fit


def finite_n_gap(loss, Lam, y0, n: int, c: float) -> torch.Tensor:
    """``n`` GD steps with ``Lam/n`` on ``phi = l + c g^T Lam g`` minus one GD step with Lam on l."""
    phi = entropic_loss(loss, Lam, c)
    gphi, gl = grad(phi), grad(loss)

    def apply(v):
        return Lam * v if not torch.is_tensor(Lam) else Lam.to(v) @ v

    y = y0
    for _ in range(n):
        y = y - apply(gphi(y)) / n
    return _check_finite("finite-n gap", y - (y0 - apply(gl(y0))))


def measured_cn(loss, P, y0, n: int, hs) -> np.ndarray:
    r"""``c_n`` read off the ``Lam^2`` gap at ``Lam = h P``: with ``c = 0`` the gap is
    ``2 c_n w + O(h^3)``, ``w = Lam H Lam g``, so ``c(h) = gap.w / (2 w.w) = c_n + O(h)``."""
    gl = grad(loss)
    out = []
    for h in hs:
        Lam = h * torch.as_tensor(P, dtype=torch.float64)
        Lg = Lam @ gl(y0)
        w = Lam @ jvp(gl, (y0,), (Lg,))[1]
        gap = finite_n_gap(loss, Lam, y0, n, 0.0)
        out.append(float(gap @ w / (2 * w @ w)))
    return np.array(out)


# ----------------------------------------------------------------------------- random instances
FAMILIES = ("quadratic", "quartic", "tanh_mlp")


def random_loss(family: str, dim: int, seed: int):
    """A random loss of the family and a starting point: ``(loss, theta0, info)``.

    quadratic: ``A`` symmetric with N(0,1/dim) entries, ``b ~ N(0,1)``; quartic: coefficient
    tensors N(0,1) scaled by ``1/dim^{order-1}`` (comparable terms at ``|theta| ~ 1``);
    tanh_mlp: ``dim`` hidden units, 2 inputs, 8 random data points, ``y = sin(x_1) + noise``.
    ``info`` carries ``A``/``b`` for quadratics (closed-form expansion).
    """
    if family not in FAMILIES:
        raise InputError(f"unknown loss family {family!r}; choose one of {', '.join(FAMILIES)}")
    if dim < 1:
        raise InputError(f"dimension must be >= 1, got {dim}")
    rng = np.random.default_rng(seed)
    if family == "quadratic":
        A = rng.normal(size=(dim, dim)) / math.sqrt(dim)
        A = (A + A.T) / 2
        b = rng.normal(size=dim)
        return quadratic_loss(A, b), torch.tensor(rng.normal(size=dim)), dict(A=A, b=b)
    if family == "quartic":
        cs = [rng.normal(size=(dim,) * o) / dim ** (o - 1) for o in (1, 2, 3, 4)]
        return quartic_loss(*cs), torch.tensor(rng.normal(size=dim) / math.sqrt(dim)), {}
    X = rng.normal(size=(8, 2))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=8)
    loss, npar = tanh_mlp_loss(X, y, dim)
    return loss, torch.tensor(rng.normal(size=npar) / math.sqrt(2)), {}


def quadratic_expansion(A, b, y0, k: int):
    """Closed-form ``(u, v)`` for ``l = th^T A th / 2 + b.th``: ``f_j = -A^j g/(j+1)``, so
    ``u = -A^{k+1} g/(k+2)`` and ``v = (1/(k+2) - 1/(k+3)) A^{k+2} g``."""
    A = torch.as_tensor(A, dtype=torch.float64).to(y0)
    g = A @ y0 + torch.as_tensor(b, dtype=torch.float64).to(y0)
    Ak1 = torch.linalg.matrix_power(A, k + 1)
    return -(Ak1 @ g) / (k + 2), (1.0 / (k + 2) - 1.0 / (k + 3)) * (A @ Ak1 @ g)


# ----------------------------------------------------------------------------- experiments on random losses
def random_loss_slope(family: str, k: int, dim: int, seed: int, *, P=None, levels: int = 5,
                      device="cpu") -> SlopeFit:
    """:func:`bea_slope` of GD against the flow of the order-``k`` modified field for
    :func:`random_loss` ``(family, dim, seed)``: scalar learning rate, or ``Lam = eta P``.

    Quadratics with a scalar learning rate use the closed-form expansion and set their own time
    scale ``1/|A|``: ``eta |A| <= 1/4`` keeps GD far from its stability edge 2.
    """
    loss, y0, info = random_loss(family, dim, seed)
    y0 = y0.to(device)
    f0 = gradient_field(loss) if P is None else preconditioned_gradient_field(loss, P)
    expansion = quadratic_expansion(info["A"], info["b"], y0, k) if family == "quadratic" and P is None else None
    h_cap = 0.25 / float(np.linalg.norm(info["A"], 2)) if family == "quadratic" else 0.1
    return bea_slope(f0, y0, k, levels=levels, expansion=expansion, h_cap=h_cap)


def second_order_loss_slope(family: str, dim: int, seed: int, *, levels: int = 5, device="cpu") -> SlopeFit:
    r"""One GD step against gradient flow on the *loss* ``phi_2 = l + (eta/4)|g|^2 + (eta^2/6) g^T H g``
    for :func:`random_loss` ``(family, dim, seed)``; ``details["order"]`` is the order it matches.

    Quadratic: it is the exact order-2 entropic loss, slope 4 (order 2). Otherwise the flow field
    differs from ``F_2`` by ``eta^2 delta``, ``delta = (1/12) T[g,g]``, so the gap is
    ``eta^3 delta + eta^4 (f_3 + (delta' f_0 + f_0' delta)/2) + ...``: slope 3 (order 1), not 4.
    """
    loss, y0, info = random_loss(family, dim, seed)
    y0 = y0.to(device)
    f0 = gradient_field(loss)

    def flow_field(h):
        return gradient_field(entropic_loss(loss, h, 0.25, second_order=1.0 / 6.0))

    if family == "quadratic":
        k, expansion = 2, quadratic_expansion(info["A"], info["b"], y0, 2)
    else:
        k = 1  # slope 3
        g = grad(loss)

        def delta(y):
            gy = g(y)
            return jvp(lambda z: jvp(g, (z,), (gy,))[1], (y,), (gy,))[1] / 12.0

        f3 = low_order_terms(f0, 3)[3]
        u = delta(y0)
        v = f3(y0) + 0.5 * (jvp(delta, (y0,), (f0(y0),))[1] + jvp(f0, (y0,), (u,))[1])
        expansion = (u, v)
    return bea_slope(f0, y0, k, levels=levels, flow_field=flow_field, expansion=expansion)


def plot_slope_fits(path, fits, title: str):
    """Log-log plot of the one-step gaps of labelled fits ``[(label, SlopeFit), ...]``, each with
    its predicted line ``eta^{k+2} |f_{k+1}|`` (dotted)."""
    from .figures import saved_figure

    with saved_figure(path, figsize=(6, 4.5), dpi=120) as (fig, ax):
        for label, fit in fits:
            line, = ax.loglog(fit.h, fit.err, "o-", label=f"{label}: slope {fit.slope:.3f}")
            p = fit.details["predicted_slope"]
            ax.loglog(fit.h, fit.details["u_norm"] * fit.h ** p, ":", color=line.get_color())
        ax.set_xlabel("learning rate eta")
        ax.set_ylabel("|theta_GD - flow(phi_k)|")
        ax.set_title(title + "\n(dotted: predicted eta^{k+2} |f_{k+1}|)")
        ax.legend(fontsize=7)
    return path
