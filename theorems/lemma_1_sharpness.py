r"""Lemma 1 (sharpness lemma): along an exponential-symmetry orbit the loss is constant while the
total sharpness is unbounded.

Paper: if $\ell$ has the $A$-exponential symmetry ($A$ symmetric), every point (in particular
every minimum) is connected without a barrier - along $\lambda\mapsto e^{\lambda A}\theta$ - to
points of arbitrarily large total sharpness $T = \operatorname{Tr}\nabla^2 L$.

Derivation (``symbolic.symmetry.sharpness_along_orbit``): differentiating
$g(e^{\lambda A}\theta) = e^{-\lambda A}g(\theta)$ once more gives
$H(e^{\lambda A}\theta) = e^{-\lambda A}H(\theta)e^{-\lambda A}$, so in $A$'s eigenbasis
$T(\lambda) = \sum_i e^{-2\lambda a_i}H_{ii}(\theta)$ with $H_{ii}\ge 0$ at a minimum:
$T\to\infty$ (as $\lambda\to\mp\infty$) as soon as one $H_{ii} > 0$ has $a_i \ne 0$ (if all such
$H_{ii}$ vanish, $T$ is constant on the orbit - the lemma's non-degeneracy assumption).
Two-layer linear net, SymPy: $T(U, W) = 2d_y\operatorname{Tr}(W\Sigma_xW^\top) + 2\operatorname{Tr}(\Sigma_x)\|U\|_F^2$,
so $T(cW, U/c) = 2d_y c^2\operatorname{Tr}(W\Sigma_xW^\top) + 2\operatorname{Tr}(\Sigma_x)\|U\|_F^2/c^2$ and
$L(cW, U/c) = L(W, U)$.

Numeric witness (``numeric.sharpness``, torch.func.hessian in float64) on a ladder
$c = 2^{-6}\dots2^{6}$: $L$ constant and $T$ equal to the formula up to round-off
(tolerance $64\,n\,u$ relative, $n$ the number of parameters, $u = 2^{-53}$: each Hessian
entry is a sum of $O(n)$ rounded products), the log-log slope of $T(c)$ tends to $+2$ and
$-2$ at the two ends, and for a random neuron-rescaling generator
$T(e^{\lambda A}\theta) = \sum_i e^{-2\lambda a_i}H_{ii}(\theta)$ to the same tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
import torch

from numeric.figures import saved_figure
from numeric.sharpness import (flatten, hessian_diagonal, hessian_trace, two_layer_population_loss,
                               two_layer_sharpness_formula, unflatten)
from numeric.two_layer_linear import neuron_generator_diag
from symbolic.symmetry import LAM, is_identically_zero, sharpness_along_orbit
from theorems.checks import check, pytest_cases, verifier
from theorems.settings.symmetry import two_layer_population_problem
from theorems.tolerances import EPS64
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "L1"
TITLE = "Sharpness lemma: flat orbit, unbounded sharpness"
EXACT = "SymPy, exact"


# ------------------------------------------------------------------------------- symbolic
def two_layer_symbolic(dx: int = 2, h: int = 2, dy: int = 2):
    """SymPy: L(U, W) and T = Tr hess L for a generic SPD-parametrised Sx (Cholesky factor)."""
    W = sp.Matrix(h, dx, sp.symbols(f"w0:{h * dx}", real=True))
    U = sp.Matrix(dy, h, sp.symbols(f"u0:{dy * h}", real=True))
    V = sp.Matrix(dy, dx, sp.symbols(f"v0:{dy * dx}", real=True))
    Lc = sp.Matrix(dx, dx, lambda i, j: sp.Symbol(f"l{i}{j}", real=True) if j <= i else 0)
    Sx = Lc * Lc.T
    se = sp.Symbol("trSe", positive=True)
    D = U * W - V
    L = (D * Sx * D.T).trace() + se
    params = list(W) + list(U)
    T = sum(sp.diff(L, p, 2) for p in params)
    formula = 2 * dy * (W * Sx * W.T).trace() + 2 * Sx.trace() * sum(u**2 for u in U)
    return L, T, formula, W, U


@check(THEOREM)
def check_sharpness_formula_symbolic(ctx: Context) -> Verdict:
    """Two-layer linear net: L is constant on the orbit (cW, U/c) and T = alpha c^2 + beta c^-2 (SymPy)."""
    L, T, formula, W, U = two_layer_symbolic()
    c = sp.Symbol("c", positive=True)
    sub = {**{w: c * w for w in W}, **{u: u / c for u in U}}
    ok_T = is_identically_zero(T - formula)
    ok_L = is_identically_zero(L.subs(sub, simultaneous=True) - L)
    Tc = sp.expand(T.subs(sub, simultaneous=True))
    alpha = sp.simplify(Tc.coeff(c, 2))
    beta = sp.simplify(Tc.coeff(c, -2))
    ok_form = is_identically_zero(Tc - alpha * c**2 - beta / c**2)
    # Unbounded: alpha > 0 unless W Sx W^T = 0, beta > 0 unless U = 0 (Sx SPD).
    return Verdict(THEOREM, "two-layer linear: L(cW, U/c) = L; T(cW, U/c) = alpha c^2 + beta c^-2",
                   symbolic="T = 2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|^2 (derived by SymPy)",
                   residual="0" if ok_T and ok_L and ok_form else "non-zero", paper="supports",
                   criteria=[Criterion.holds("Tr hess L - (2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|^2) simplifies to 0", ok_T,
                                             EXACT),
                             Criterion.holds("L(cW, U/c) - L(W, U) simplifies to 0", ok_L, EXACT),
                             Criterion.holds("T(cW, U/c) - alpha c^2 - beta c^-2 simplifies to 0", ok_form, EXACT)],
                   details={"dims dx,h,dy": (2, 2, 2), "alpha = 2 d_y Tr(W Sx W^T)": str(sp.factor(alpha))[:80]})


@check(THEOREM)
def check_orbit_law_symbolic(ctx: Context) -> Verdict:
    """H(e^{lam A} theta) = e^{-lam A} H e^{-lam A} on the rescaling loss, and the orbit
    formula's limits."""
    u, w, x, y = sp.symbols("u w x y", real=True)
    l = (u * w * x - y) ** 2
    Hs = sp.hessian(l, [u, w])
    Einv = sp.diag(sp.exp(-LAM), sp.exp(LAM))  # e^{-lam A}, A = diag(1, -1)
    moved = Hs.subs({u: sp.exp(LAM) * u, w: sp.exp(-LAM) * w}, simultaneous=True)
    ok = all(is_identically_zero(e) for e in (moved - Einv * Hs * Einv))
    T, (a, h) = sharpness_along_orbit(2)
    Tsub = T.subs({a[0]: 1, a[1]: -1})
    lim_plus = sp.limit(Tsub.subs(h[1], 1), LAM, sp.oo)  # h_1 > 0 on a_1 = -1
    lim_minus = sp.limit(Tsub.subs(h[0], 1), LAM, -sp.oo)  # h_0 > 0 on a_0 = +1
    return Verdict(THEOREM, "Hessian transforms as e^{-lam A} H e^{-lam A}; Tr H = sum e^{-2 lam a_i} H_ii -> oo",
                   symbolic=f"T(lam) = {T}", residual="0" if ok else "non-zero", paper="supports",
                   criteria=[Criterion.holds("H(e^{lam A} theta) - e^{-lam A} H e^{-lam A} simplifies to 0", ok, EXACT),
                             Criterion.holds("T(lam) -> oo as lam -> +oo (H_ii > 0 on a_i = -1)", lim_plus == sp.oo,
                                             EXACT),
                             Criterion.holds("T(lam) -> oo as lam -> -oo (H_ii > 0 on a_i = +1)", lim_minus == sp.oo,
                                             EXACT)],
                   details={"lim lam->+oo": str(lim_plus), "lim lam->-oo": str(lim_minus)})


# -------------------------------------------------------------------------------- numeric
def _population_loss(V, Sx, Se, shapes):
    """L as a function of the flat ``[W, U]`` vector (the order of ``neuron_generator_diag``)."""

    def L(th):
        Wm, Um = unflatten(th, shapes)
        return two_layer_population_loss(Um, Wm, V, Sx, Se)

    return L


@check(THEOREM)
def check_orbit_numeric(ctx: Context, ks=tuple(range(-6, 7))) -> Verdict:
    """torch.func on the orbit (cW, U/c): L constant, T equal to the formula, log-log slopes of T -> +2 / -2."""
    U, W, V, Sx, Se = two_layer_population_problem(ctx.seed)
    L = _population_loss(V, Sx, Se, [tuple(W.shape), tuple(U.shape)])
    n = U.numel() + W.numel()
    rel_tol = 64 * n * EPS64 / 2  # Hessian entries: O(n)-term sums of rounded products
    L0 = float(L(flatten([W, U])))
    cs = [2.0**k for k in ks]
    T_num, T_form, L_err = [], [], []
    for c in cs:
        th = flatten([c * W, U / c])
        T_num.append(float(hessian_trace(L, th)))
        T_form.append(float(two_layer_sharpness_formula(U / c, c * W, Sx)))
        L_err.append(abs(float(L(th)) - L0) / L0)
    T_num, T_form = np.array(T_num), np.array(T_form)
    T_rel = np.abs(T_num - T_form) / T_form
    logc = np.log(cs)
    slope_hi = (math.log(T_num[-1]) - math.log(T_num[-2])) / (logc[-1] - logc[-2])
    slope_lo = (math.log(T_num[1]) - math.log(T_num[0])) / (logc[1] - logc[0])
    # predicted end slopes from the exact formula alpha c^2 + beta c^-2
    sl_hi_pred = (math.log(T_form[-1]) - math.log(T_form[-2])) / (logc[-1] - logc[-2])
    sl_lo_pred = (math.log(T_form[1]) - math.log(T_form[0])) / (logc[1] - logc[0])
    figs = []
    path = ctx.figure_path("lemma_1_sharpness_orbit.png")
    if path is not None:
        with saved_figure(path, figsize=(5, 3.5), dpi=120) as (fig, ax):
            ax.loglog(cs, T_num, "o", label="Tr hess L (torch.func)")
            ax.loglog(cs, T_form, "-", label="2 d_y c^2 Tr(W Sx W^T) + 2 Tr(Sx)|U|^2 / c^2")
            ax.set_xlabel("c  (theta = (c W, U / c), L constant)")
            ax.set_ylabel("total sharpness T")
            ax.legend(fontsize=8)
        figs.append(path)
    ends = "the exact formula's end slope, to 1e-6"
    return Verdict(THEOREM, "torch.func: L constant, T(cW, U/c) = formula, log-log slopes -> +2 / -2", figures=figs,
                   predicted=0.0, measured=float(T_rel.max()), tolerance=rel_tol,
                   tolerance_source="float64: 64 n u relative (n-term sums of rounded products)", paper="supports",
                   criteria=[Criterion.at_most("max relative |L(c) - L(1)|", max(L_err), rel_tol * 16,
                                               "float64: 16 x 64 n u relative"),
                             Criterion.at_most("|slope at c -> oo - formula's|", abs(slope_hi - sl_hi_pred), 1e-6, ends),
                             Criterion.at_most("|slope at c -> 0 - formula's|", abs(slope_lo - sl_lo_pred), 1e-6, ends),
                             Criterion.above("log-log slope of T at c -> oo (tends to +2)", slope_hi, 1.99,
                                             "Lemma 1: T ~ alpha c^2"),
                             Criterion.above("minus the log-log slope of T at c -> 0 (tends to +2)", -slope_lo, 1.99,
                                             "Lemma 1: T ~ beta c^-2")],
                   details={"c": cs, "T": T_num, "max rel |L(c) - L(1)|": max(L_err), "slope at c -> oo": slope_hi,
                            "slope at c -> 0": slope_lo, "T(2^6)/T(1)": T_num[-1] / T_num[len(cs) // 2]})


@check(THEOREM)
def check_generator_law_numeric(ctx: Context, lams=(-2.0, -1.0, 0.5, 1.5, 3.0)) -> Verdict:
    """For a random neuron-rescaling generator T(e^{lam A} theta) = sum_i e^{-2 lam a_i} H_ii(theta) (torch.func)."""
    U, W, V, Sx, Se = two_layer_population_problem(ctx.seed + 1)
    dy, h = U.shape
    dx = W.shape[1]
    g = torch.Generator().manual_seed(ctx.seed + 3)
    d = torch.rand(h, generator=g, dtype=torch.float64) * 2 - 1
    a = neuron_generator_diag(d, dy, dx)
    L = _population_loss(V, Sx, Se, [tuple(W.shape), tuple(U.shape)])
    th0 = flatten([W, U])
    H0 = hessian_diagonal(L, th0)
    n = th0.numel()
    rel = []
    for lam in lams:
        T = float(hessian_trace(L, torch.exp(lam * a) * th0))
        pred = float((torch.exp(-2 * lam * a) * H0).sum())
        rel.append(abs(T - pred) / pred)
    tol = 64 * n * EPS64 / 2 * math.exp(2 * max(abs(x) for x in lams) * float(d.abs().max()))
    return Verdict(THEOREM, "random neuron generator: T(e^{lam A} theta) = sum_i e^{-2 lam a_i} H_ii(theta)",
                   predicted=0.0, measured=max(rel), tolerance=tol,
                   tolerance_source="float64 64 n u, times the largest e^{2|lam a|} (terms of both sizes summed)",
                   paper="supports", details={"lambdas": lams, "d": d, "relative errors": rel})


verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)
