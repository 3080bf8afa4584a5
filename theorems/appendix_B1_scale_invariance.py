r"""Appendix B.1: scale invariance leads to norm growth and progressive flattening.

Paper: if $\ell(c\theta) = \ell(\theta)$ for all $c > 0$ (generator $A = I$), then
$g^\top\theta = 0$, so every SGD step (no weight decay) obeys exactly

$$\|\theta_{t+1}\|^2 = \|\theta_t - \eta g_t\|^2 = \|\theta_t\|^2 + \eta^2\|g_t\|^2,$$

the norm grows for ever, and since $\nabla^2\ell(c\theta) = c^{-2}\nabla^2\ell(\theta)$ the total
sharpness $T = \operatorname{Tr}\nabla^2 L$ falls like $\|\theta\|^{-2}$ (progressive flattening).
(With $A = I$ Theorem 4's orbit function at $\gamma = 0$ is $\frac\eta4 e^{-2\lambda}\mathbb E\|g\|^2$:
strictly decreasing, no balanced point - the orbit runs to infinity; checked in Theorem 4.)

Derivation (``symbolic.symmetry``): for the normalised linear model
$\ell = (\theta^\top x/\|\theta\| - y)^2$ SymPy proves $A = I$ is an exponential symmetry,
$\|\theta - \eta g\|^2 - \|\theta\|^2 - \eta^2\|g\|^2 \equiv 0$ and
$c^2\operatorname{Tr}\nabla^2\ell(c\theta) - \operatorname{Tr}\nabla^2\ell(\theta) \equiv 0$.

Numeric witness (``numeric.normalised_linear.NormalisedLinear``, float64 SGD, R runs): per step the
residual of the norm law against its round-off bound (Higham's $\gamma_{n+4}$ times the sizes
that enter before cancellation, $\|\theta\|^2 + \|\theta'\|^2 + \eta^2\|g\|^2 + 2\eta\|\theta\|\,|g|_{raw}$);
the cumulative law $\|\theta_T\|^2 - \|\theta_0\|^2 = \eta^2\sum_t\|g_t\|^2$ (bound: sum of the
per-step bounds); $T(c\theta)c^2 = T(\theta)$ with torch.func.hessian (64 n u relative); and
along training $T(\theta_t) = T(\hat\theta_t)/\|\theta_t\|^2$ falls while $\|\theta_t\|$ grows.
With weight decay the norm equilibrates instead: the exact step law
$\|\theta'\|^2 = (1-2\eta\gamma)^2\|\theta\|^2 + \eta^2\|g\|^2$ gives
$\eta\mathbb E\|g\|^2 = 4\gamma(1-\eta\gamma)\mathbb E\|\theta\|^2$ (Theorem 4's SGD law, $A = I$),
measured with a Student-t bound over the runs (``theorems.tolerances``).
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
import torch

from numeric.figures import saved_figure
from numeric.float64 import roundoff_tolerance
from numeric.normalised_linear import NormalisedLinear, normalised_sharpness
from symbolic.symmetry import gradient, is_exponential_symmetry, is_identically_zero
from theorems.checks import check, pytest_cases, verifier
from theorems.settings.symmetry import scale_invariant_run
from theorems.tolerances import EPS64, student_t
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "B1"
TITLE = "Scale invariance: norm growth and flattening"
EXACT = "SymPy, exact"


# ------------------------------------------------------------------------------- symbolic
@check(THEOREM)
def check_symbolic(ctx: Context, n: int = 2) -> Verdict:
    """l(theta/|theta|): A = I is a symmetry, the step keeps |theta|^2 + eta^2|g|^2, Tr H is homogeneous (SymPy)."""
    th = sp.symbols(f"theta0:{n}", real=True)
    xs = sp.symbols(f"x0:{n}", real=True)
    y, eta = sp.symbols("y eta", real=True)
    c = sp.Symbol("c", positive=True)
    nrm = sp.sqrt(sum(t**2 for t in th))
    l = (sum(t * x for t, x in zip(th, xs)) / nrm - y) ** 2
    sym = is_exponential_symmetry(l, th, sp.eye(n))
    g = gradient(l, th)
    tv = sp.Matrix(th)
    step = tv - eta * g
    norm_law = is_identically_zero((step.T * step)[0, 0] - (tv.T * tv)[0, 0] - eta**2 * (g.T * g)[0, 0])
    trH = sum(sp.diff(l, t, 2) for t in th)
    homog = is_identically_zero(c**2 * trH.subs({t: c * t for t in th}, simultaneous=True) - trH)
    ok = sym and norm_law and homog
    return Verdict(THEOREM, "l(theta/|theta|): A = I symmetry; |theta - eta g|^2 = |theta|^2 + eta^2|g|^2; "
                            "Tr H(c theta) = Tr H / c^2",
                   symbolic=f"exponential symmetry {sym}, norm law {norm_law}, Hessian homogeneity {homog}",
                   residual="0" if ok else "non-zero", paper="supports",
                   criteria=[Criterion.holds("A = I is an exponential symmetry of l", sym, EXACT),
                             Criterion.holds("|theta - eta g|^2 - |theta|^2 - eta^2 |g|^2 simplifies to 0", norm_law, EXACT),
                             Criterion.holds("c^2 Tr H(c theta) - Tr H(theta) simplifies to 0", homog, EXACT)],
                   details={"dim": n})


# -------------------------------------------------------------------------------- numeric
def _norm_figure(ctx: Context, rec: dict) -> list:
    path = ctx.figure_path("appendix_B1_norm_growth.png")
    if path is None:
        return []
    with saved_figure(path, figsize=(5, 3.5), dpi=120) as (fig, ax):
        t = np.arange(1, rec["n1"].shape[0] + 1)
        for r in range(min(4, rec["n1"].shape[1])):
            ax.plot(t, rec["n1"][:, r].cpu().numpy(), lw=1.5, label="|theta_t|^2" if r == 0 else None)
            pred = (rec["n0"][0, r] + rec["eta2g2"][:, r].cumsum(0)).cpu().numpy()
            ax.plot(t, pred, "k:", lw=1, label="|theta_0|^2 + sum eta^2|g|^2" if r == 0 else None)
        ax.set_xlabel("SGD step")
        ax.set_ylabel("|theta|^2")
        ax.legend(fontsize=8)
    return [path]


@check(THEOREM)
def check_norm_law(ctx: Context) -> Verdict:
    """Every SGD step obeys |theta'|^2 = |theta|^2 + eta^2 |g|^2, so the norm never decreases."""
    net, _, rec = scale_invariant_run(ctx)
    resid = (rec["n1"] - rec["n0"] - rec["eta2g2"]).abs()
    bound = roundoff_tolerance(net.dim, rec["scale"])
    worst = float((resid / bound).max())
    cum = (rec["n1"][-1] - rec["n0"][0] - rec["eta2g2"].sum(0)).abs()
    cum_worst = float((cum / bound.sum(0)).max())
    monotone = bool((rec["n1"] >= rec["n0"] - bound).all())
    growth = float((rec["n1"][-1] / rec["n0"][0]).mean())
    return Verdict(THEOREM, "every step: |theta'|^2 = |theta|^2 + eta^2 |g|^2 (norm never decreases)",
                   figures=_norm_figure(ctx, rec), predicted=0.0, measured=worst, tolerance=1.0,
                   tolerance_source="residual / float64 bound gamma_{n+4} x un-cancelled size (<= 1)", paper="supports",
                   criteria=[Criterion.at_most("cumulative residual |theta_T|^2 - |theta_0|^2 - eta^2 sum|g|^2 / bound",
                                               cum_worst, 1.0, "sum of the per-step float64 bounds"),
                             Criterion.holds("|theta_t|^2 never decreases by more than the round-off bound", monotone,
                                             "per-step float64 bound")],
                   details={"steps": rec["n0"].shape[0], "runs": rec["n0"].shape[1],
                            "max per-step residual / bound": worst, "cumulative residual / bound": cum_worst,
                            "max per-step residual": float(resid.max()), "mean |theta_T|^2 / |theta_0|^2": growth})


@check(THEOREM)
def check_hessian_homogeneity(ctx: Context, dim: int = 4, n_data: int = 64) -> Verdict:
    """torch.func: c^2 Tr hess L(c theta) = Tr hess L(theta) for the scale-invariant loss."""
    g = torch.Generator().manual_seed(ctx.seed + 5)
    X = torch.randn(n_data, dim, generator=g, dtype=torch.float64)
    Y = torch.randn(n_data, generator=g, dtype=torch.float64)
    th = torch.randn(dim, generator=g, dtype=torch.float64)
    T1 = float(normalised_sharpness(th, X, Y))
    cs = [0.25, 0.5, 2.0, 8.0, 32.0]
    rel = [abs(float(normalised_sharpness(c * th, X, Y)) * c**2 - T1) / abs(T1) for c in cs]
    tol = 64 * n_data * dim * EPS64 / 2
    return Verdict(THEOREM, "torch.func: c^2 Tr hess L(c theta) = Tr hess L(theta)", predicted=0.0, measured=max(rel),
                   tolerance=tol, tolerance_source="float64: 64 N n u relative (N samples, n parameters)",
                   paper="supports", details={"c": cs, "relative errors": rel})


@check(THEOREM)
def check_flattening(ctx: Context, n_data: int = 256) -> Verdict:
    """Along SGD T(theta_t) = T(theta_t/|theta_t|) / |theta_t|^2, and T falls in every run (flattening)."""
    net, th0, _ = scale_invariant_run(ctx)
    g = torch.Generator().manual_seed(ctx.seed + 6)
    X = torch.randn(n_data, net.dim, generator=g, dtype=torch.float64).to(net.theta.device)
    Y = X @ net.v + net.noise * torch.randn(n_data, generator=g, dtype=torch.float64).to(net.theta.device)
    sharpness = lambda thetas: torch.stack([normalised_sharpness(t, X, Y) for t in thetas])  # noqa: E731
    T0, T1 = sharpness(th0), sharpness(net.theta)
    T1_unit = sharpness(t / t.norm() for t in net.theta)
    n1 = net.theta.pow(2).sum(-1)
    ident = float(((T1 * n1 - T1_unit).abs() / T1_unit.abs()).max())
    tol = 64 * n_data * net.dim * EPS64 / 2
    frac_fell = float((T1 < T0).double().mean())
    ratio = float((T1 / T0).mean())
    # Prediction for the fall: T_end/T_start = (|theta_0|^2/|theta_T|^2) * T(hat theta_T)/T(hat theta_0)
    T0_unit = sharpness(t / t.norm() for t in th0)
    pred = (th0.pow(2).sum(-1) / n1) * (T1_unit / T0_unit)
    pred_err = float(((T1 / T0 - pred).abs() / pred.abs()).max())
    fell = Criterion.at_least("fraction of runs whose T fell", frac_fell, 1.0, "every run")
    return Verdict(THEOREM, "along SGD: T(theta_t) = T(theta_t/|theta_t|) / |theta_t|^2 and T falls in every run",
                   predicted=0.0, measured=ident, tolerance=tol, tolerance_source="float64: 64 N n u relative",
                   paper="supports", paper_criteria=[fell],
                   criteria=[Criterion.at_most("max rel. error of the predicted ratio T_end / T_start", pred_err, 4 * tol,
                                               "float64: 4 x 64 N n u relative"), fell],
                   details={"fraction of runs whose T fell": frac_fell, "max rel. error of predicted T ratio": pred_err,
                            "mean |theta_0|^2/|theta_T|^2": float((th0.pow(2).sum(-1) / n1).mean()),
                            "mean T_end / T_start": ratio,
                            "mean |theta_end|^2": float(n1.mean()), "runs": net.n_runs})


@check(THEOREM)
def check_weight_decay_equilibrium(ctx: Context, eta: float = 0.1, gamma: float = 0.05) -> Verdict:
    """With weight decay the norm stops growing: the exact one-step law
    |theta'|^2 = (1 - 2 eta gam)^2 |theta|^2 + eta^2 |g|^2 gives, at stationarity,
    eta E|g|^2 = 4 gam (1 - eta gam) E|theta|^2 (Theorem 4's SGD law with A = I)."""
    steps, R = ctx.pick(3000, 20000), ctx.pick(32, 128)
    net = NormalisedLinear(dim=4, n_runs=R, eta=eta, noise=0.5, seed=ctx.seed + 3, init_spread=0.2, gamma=gamma,
                           device=ctx.device)
    net.run(int(10 / (4 * eta * gamma)))  # burn-in: |theta|^2 relaxes at rate ~4 eta gam per step
    rec = net.run(steps)
    k = (1 - 2 * eta * gamma) ** 2
    resid = (rec["n1"] - k * rec["n0"] - rec["eta2g2"]).abs()
    step_ok = bool((resid <= roundoff_tolerance(net.dim, rec["scale"])).all())
    num = rec["eta2g2"].mean(0) / eta  # eta |g|^2 per run (time average)
    den = 4 * gamma * rec["n0"].mean(0)
    r = num / den
    m, se = float(r.mean()), float(r.std() / math.sqrt(R))
    b = student_t(se, R, what="standard error of the per-run time-average ratios")
    return Verdict(THEOREM, f"weight decay gam={gamma:g}, eta={eta:g}: eta E|g|^2 / (4 gam E|theta|^2) = 1 - eta gam",
                   predicted=1 - eta * gamma, measured=m, tolerance=b.value, tolerance_source=b.source,
                   criteria=[Criterion.holds("every step obeys the weight-decay norm law within float64 round-off",
                                             step_ok, "Higham gamma_{n+4} x un-cancelled size")],
                   details={"Eq. 4 (1 + eta gam) predicts": 1 + eta * gamma, "se": se,
                            "one-step identity within round-off": step_ok, "mean |theta|^2": float(rec["n0"].mean())})


verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)
