r"""Theorem 12 (depth 2): the global minimum of the entropic loss of a two-layer linear net.

Model: $\ell = \|U W x - y\|^2$, $y = V x + \epsilon$, $\epsilon$ independent of $x$,
$\Sigma_x = E[xx^\top]$, $\Sigma_\epsilon = E[\epsilon\epsilon^\top]$ invertible, width $h \ge r =
\operatorname{rank} V$. With $a = \operatorname{Tr}\Sigma_\epsilon$, $b = \operatorname{Tr}\Sigma_x$ and
$M = \Sigma_\epsilon^{1/2} V \Sigma_x^{1/2} = P S R^\top$ (thin SVD), the minimiser of
$\phi = L + \frac{\eta}{4} E_B\|\nabla \ell_B\|^2$ to leading order in $\eta$ (the per-sample
entropy $E\|\nabla\ell\|^2 = 4(a\operatorname{Tr} W\Sigma_x W^\top + b \operatorname{Tr} U^\top\Sigma_\epsilon U)$
minimised on the manifold $UW = V$) is

$$U = (a/b)^{1/4}\Sigma_\epsilon^{-1/2} P S^{1/2} Q^\top,\qquad
  W = (b/a)^{1/4} Q S^{1/2} R^\top \Sigma_x^{-1/2},\qquad Q^\top Q = I_r,$$

with $Q$-free invariants $W^\top W = \sqrt{b/a}\,\Sigma_x^{-1/2} R S R^\top \Sigma_x^{-1/2}$,
$UU^\top = \sqrt{a/b}\,\Sigma_\epsilon^{-1/2} P S P^\top \Sigma_\epsilon^{-1/2}$,
$\operatorname{spec}(W\Sigma_x W^\top) = \sqrt{b/a}\,S$, minimal entropy $8\sqrt{ab}\operatorname{Tr}S$
and equal layer gradient moments $E\|\nabla_U\ell\|^2 = E\|\nabla_W\ell\|^2 = 4\sqrt{ab}\operatorname{Tr}S$.
The batch size B divides the entropy by B and so does not move the minimiser.

Derivation: ``symbolic.two_layer`` (SymPy: entropy from the loss, convex Riccati
characterisation, exact diagonal cases, 40-digit evaluation for concrete matrices).
Witness: ``numeric.two_layer_witness`` (ensemble online SGD to a detected stationary
regime, an eta ladder Richardson-extrapolated to eta = 0).
Tolerances: the extrapolated error is bounded by ``z * stderr`` (CLT across independent
runs) plus the estimated O(eta^2) remainder (linear minus quadratic extrapolation, with its
own ``z * stderr``); z = 6 makes a false failure < 1e-6 by a union bound over <= 16
components per invariant and the two noise terms (2 * 16 * 2 Phi(-6) = 6e-8).

**Any depth** (the paper's Theorem 12 proper, its Eqs. 59-60, for the embedded net
$f = M_O W_D \cdots W_1 M_I Z x$ of Theorem 8; ``symbolic.deep_linear``). With
$N = M_O^\top\Sigma_\epsilon M_O$, $\Sigma_u = G\Sigma_x G^\top$ ($G = M_I Z$),
$N^{1/2} P \Sigma_u^{1/2} = U_s S R_s^\top$ and layer scales
$s_k = b^{(D-k)/D} a^{-k/D} (\operatorname{Tr}S)^{2k/D-1}$ ($a = \operatorname{Tr}N$,
$b = \operatorname{Tr}\Sigma_u$), the global minimum of the entropic loss is

$$W_1 = s_1^{1/2} Q_1 S^{1/2} R_s^\top \Sigma_u^{-1/2},\quad
  W_k = (s_k/s_{k-1})^{1/2} Q_k Q_{k-1}^\top,\quad
  W_D = s_{D-1}^{-1/2} N^{-1/2} U_s S^{1/2} Q_{D-1}^\top,$$

$Q_k^\top Q_k = I_r$: the first and last layers carry $S^{1/2}$, the middle layers are
scaled partial isometries, and every layer has $E\|\nabla_{W_i}\ell\|^2 =
4 (ab)^{1/D} (\operatorname{Tr}S)^{2(D-1)/D}$ (Eq. 60: equipartition). The Q-free content
checked: $\operatorname{spec}(W_1\Sigma_u W_1^\top) = s_1 S$, the singular values of every
middle layer all equal $(s_k/s_{k-1})^{1/2}$, $\operatorname{spec}(W_D^\top N W_D) = S/s_{D-1}$,
on a minimiser found by BFGS over the whole minimum manifold (independent of the
construction); and in SGD, the whitened hidden kernels
$\operatorname{spec}(\Sigma_x^{1/2} K_k \Sigma_x^{1/2}) = s_k S$ at every layer (Richardson,
eta -> 0), on Theorem 8's runs (shared, not repeated).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from numeric import strategies as nst
from numeric.device import resolve_device
from core.errors import DivergenceError, InputError
from numeric.stationary import extrapolated_relative_error
from numeric.two_layer_witness import TwoLayerProblem, default_etas, eta_ladder, measure_invariants, showcase_problem
from symbolic import deep_linear as dl
from symbolic.two_layer import (derive_entropy_on_manifold, diagonal_case, entropic_optimum,
                                entropy_on_manifold, random_feasible_point)
from theorems.theorem_08_platonic import ETAS, Z_SIGMA, design, design_for_depth, fit_slope, run_sgd
from theorems.two_layer_checks import SGD_CLAIMS, Z, invariant_verdicts, showcase_ladder  # noqa: F401
from theorems.verdict import Context, Verdict

THEOREM = "12"
TITLE = "Entropic optimum of linear nets (closed form vs SGD; depth 2 in full, any depth)"

# ------------------------------------------------------------------------------- symbolic
def check_entropy_derivation(ctx: Context, dims=((2, 2, 2), (1, 3, 2))) -> Verdict:
    """SymPy: E|grad_U l|^2 = 4 a Tr(W Sx W^T), E|grad_W l|^2 = 4 b Tr(U^T Se U) on UW = V."""
    res = {}
    for dx, h, dy in dims:
        d = derive_entropy_on_manifold(dx, h, dy)
        res[f"{dx}x{h}x{dy}"] = (str(d.residual_U), str(d.residual_W))
    ok = all(r == ("0", "0") for r in res.values())
    return Verdict(THEOREM, "per-sample entropy on UW = V is 4(a Tr W Sx W^T + b Tr U^T Se U)",
                   symbolic="derived from l by SymPy (generic symbolic U, W, Sx, Se)", residual="0" if ok else str(res),
                   passed=ok, paper_holds=ok, details={"residuals (U, W) by dx x h x dy": res})


def check_diagonal_case(ctx: Context, n: int) -> Verdict:
    """Exact closed form for symbolic diagonal n x n data: every residual simplifies to 0."""
    dc = diagonal_case(n)
    bad = {k: str(v) for k, v in dc.residuals.items() if v != 0}
    return Verdict(THEOREM, f"closed-form optimum exact for symbolic diagonal {n}x{n} data",
                   symbolic="UW=V, Riccati, Lagrange, dF/dw=0 root, equipartition, 8 sqrt(ab) Tr S",
                   residual="0" if not bad else str(bad), passed=not bad, paper_holds=not bad,
                   details={"checks": list(dc.residuals), "min entropy": str(dc.min_entropy)})


def check_concrete_optimum(ctx: Context, problem: TwoLayerProblem, n_points: int = 200) -> Verdict:
    """40-digit residuals of the closed form, and no random feasible point has lower entropy."""
    opt = problem.closed_form()
    rng = np.random.default_rng(ctx.seed)
    gaps = []
    for k in range(n_points):
        U, W = random_feasible_point(opt, rng, scale=0.05 + 0.5 * k / n_points)
        gaps.append(entropy_on_manifold(U, W, problem.Sx, problem.Se) - opt.min_entropy)
    res = max(opt.riccati_residual, opt.lagrange_residual, opt.manifold_residual)
    eq = abs(entropy_on_manifold(opt.U, opt.W, problem.Sx, problem.Se) - opt.min_entropy) / opt.min_entropy
    # float64 re-evaluation of a 40-digit optimum: relative round-off ~ 1e-15 per flop, so
    # a feasible point beats the optimum only if its gap < -1e-12 * F*.
    min_gap = min(gaps) / opt.min_entropy
    ok = res < 1e-30 and min_gap > -1e-12 and eq < 1e-12
    return Verdict(THEOREM, "closed form solves the Riccati/Lagrange conditions; no feasible point does better",
                   symbolic="X Sx X = (b/a) V^T Se V, Y Se Y = (a/b) V Sx V^T (40 digits)", residual=f"{res:.1e}",
                   passed=ok, paper_holds=ok,
                   details={"min relative entropy gap over random feasible points": min_gap, "points": n_points,
                            "riccati": opt.riccati_residual, "lagrange": opt.lagrange_residual,
                            "entropy at optimum vs 8 sqrt(ab) Tr S (rel)": eq})


# ------------------------------------------------------------------------------- numeric
def check_sgd_invariants(ctx: Context) -> list:
    _, ladder = showcase_ladder(ctx)
    return invariant_verdicts(ladder)


def check_batch_independence(ctx: Context, batch: int | None = None) -> list:
    """Batch B divides the entropy by B: the eta -> 0 optimum must not move; only the time
    to reach it grows (the balance mode relaxes at a rate ~ eta^2 / B)."""
    batch = batch if batch is not None else ctx.pick(2, 4)
    p, lad1 = showcase_ladder(ctx, batch=1)
    # the slow balance mode relaxes B times slower: in CI a smaller ensemble pays for it
    _, ladB = showcase_ladder(ctx, batch=batch, **({} if ctx.full else dict(n_runs=256, block_steps=150)))
    out = []
    for name in ("WtW", "UUt"):
        d = (lad1.extrapolated[name].estimate - ladB.extrapolated[name].estimate).norm()
        tol = lad1.extrapolated[name].tolerance(Z).norm() + ladB.extrapolated[name].tolerance(Z).norm()
        t = lad1.targets[name].norm()
        out.append(Verdict(
            THEOREM, f"batch {batch} vs batch 1: same eta->0 limit of {name}", symbolic="entropy / B: same argmin",
            predicted=0.0, measured=float(d / t), tolerance=float(tol / t),
            tolerance_source="sum of the two extrapolations' bounds (z=6 CLT + O(eta^2) remainder)",
            details={"batch-B extrapolated rel. error vs closed form": ladB.extrapolated_error(name),
                     "batch-1 extrapolated rel. error": lad1.extrapolated_error(name),
                     "steps to stationary B=1": [r.steps_to_stationary for r in lad1.rungs],
                     f"steps to stationary B={batch}": [r.steps_to_stationary for r in ladB.rungs],
                     "note": "block lengths follow the predicted relaxation time ~ B/eta^2, so the step "
                             "counts show the cost of a larger batch, not an independent measurement of it"}))
        if not all(r.converged for r in lad1.rungs + ladB.rungs):
            out[-1].passed = False
            out[-1].details["error"] = "step cap hit before the drift test passed"
    return out


# ------------------------------------------------------------------------------- any depth
# Tolerance of the BFGS checks: BFGS stops at |grad| <= 1e-11, where the entropy agrees with
# its minimum to ~1e-9 relative; near a quadratic minimum the coordinates transverse to the
# rotation orbit (and so every Q-free invariant) are then good to ~sqrt(1e-9) ~ 3e-5.
BFGS_INVARIANT_TOL = 1e-4


def layer_structure(problem: "dl.EmbeddedProblem", weights) -> dict:
    """Q-free layer invariants of a global minimum (Eq. 59), each divided by its predicted
    value so that every entry should be 1: ``first`` = spec(W_1 Su W_1^T) / (s_1 S),
    ``middle`` = singular values of W_k / (s_k/s_{k-1})^{1/2}, ``last`` = spec(W_D^T N W_D)
    / (S / s_{D-1}); ``moments`` = E|grad_{W_i} l|^2 / (4 T) (Eq. 60)."""
    D = len(weights)
    _, S, _ = problem.whitened_svd()
    r = len(S)
    sc = [problem.layer_scale(D, k) for k in range(1, D)]
    top = lambda M: np.sort(np.linalg.eigvalsh((M + M.T) / 2))[::-1][:r]  # noqa: E731
    W1, WD = weights[0], weights[-1]
    out = {"first": top(W1 @ problem.Su @ W1.T) / (sc[0] * S),
           "last": top(WD.T @ problem.N @ WD) / (S / sc[-1]),
           "moments": dl.layer_second_moments(problem, weights) / (4 * problem.equipartition_value(D))}
    out["middle"] = np.concatenate([np.linalg.svd(weights[k], compute_uv=False)[:r] / np.sqrt(sc[k] / sc[k - 1])
                                    for k in range(1, D - 1)]) if D > 2 else np.ones(0)
    return out


def check_any_depth_structure(ctx: Context, D: int) -> Verdict:
    """Eqs. 59-60 on a numerically found global minimum (BFGS over the minimum manifold of
    an embedded net with random M_I, M_O, Z; it never sees the closed form)."""
    problem = design(20 + D)
    ws, _ = dl.orbit_minimum(problem, D, 0.0, seed=ctx.seed, starts=ctx.pick(2, 5))
    parts = layer_structure(problem, ws)
    dev = {k: float(np.max(np.abs(v - 1))) if v.size else 0.0 for k, v in parts.items()}
    worst = max(dev, key=dev.get)
    return Verdict(THEOREM, f"D={D}: global minimum (BFGS) has Eq. 59's layers: W_1, W_D carry S^(1/2), middle layers "
                   "scaled partial isometries; Eq. 60 equipartition",
                   symbolic="s_k = b^((D-k)/D) a^(-k/D) (Tr S)^(2k/D-1) solves the balance conditions for symbolic D "
                            "(symbolic.deep_linear.prove_equipartition)",
                   predicted=0.0, measured=dev[worst], tolerance=BFGS_INVARIANT_TOL,
                   tolerance_source="BFGS gtol 1e-11: invariants to ~sqrt(1e-9)", paper_holds=True,
                   details={"max |ratio - 1| per part": dev, "ratios": parts, "a": problem.a, "b": problem.b})


def whitened_spectrum(per_run_kernels: np.ndarray, Sx: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Top r eigenvalues of ``Sx^{1/2} K Sx^{1/2}`` for the ensemble-mean kernel K, and their
    CLT standard errors by the delta method: ``d lambda_i = u_i^T dM u_i`` (u_i the
    eigenvectors of the mean), so each run contributes ``u_i^T M_r u_i`` and the spread of
    those over the independent runs is the error bar."""
    h = np.real(scipy.linalg.sqrtm(Sx))
    M_runs = h @ per_run_kernels @ h  # (R, d, d) whitened per-run time-averaged kernels
    M = M_runs.mean(0)
    lam, u = np.linalg.eigh((M + M.T) / 2)
    idx = np.argsort(lam)[::-1][:r]
    u = u[:, idx]
    proj = np.einsum("di,rde,ei->ri", u, M_runs, u)  # (R, r); its mean is lam[idx]
    return lam[idx], proj.std(0, ddof=1) / np.sqrt(proj.shape[0])


def check_any_depth_sgd(ctx: Context, D: int) -> Verdict:
    """SGD (Theorem 8's runs, three random embeddings): ``spec(Sx^{1/2} K_k Sx^{1/2}) -> s_k S``
    for every hidden layer k - the first layer carries S^{1/2} with scale s_1, each middle
    layer multiplies the scale by s_k/s_{k-1} without distorting the spectrum.

    Error bars: CLT over the independent runs, propagated to the eigenvalues by the delta
    method (:func:`whitened_spectrum`). Bound: z = 5.3 CLT + the O(eta^2) remainder
    (numeric.stationary.extrapolated_relative_error); with two rungs it is meaningful jointly
    with Theorem 8's first-order slope verdict on the same runs."""
    problem = design_for_depth(D)
    _, S, _ = problem.whitened_svd()
    etas = ETAS[ctx.budget][D]
    ms = [run_sgd(ctx, D, eta) for eta in etas]
    errs, bounds, singles = [], [], []
    for k in range(1, D):
        target = problem.layer_scale(D, k) * S
        spectra, ses = zip(*(whitened_spectrum(m.kernel_per_run[k - 1], problem.Sx, len(S)) for m in ms))
        e, bound, source = extrapolated_relative_error(etas, spectra, ses, target, Z_SIGMA)
        errs.append(e)
        bounds.append(bound)
        singles.append([float(np.linalg.norm(sp_ - target) / np.linalg.norm(target)) for sp_ in spectra])
    worst = int(np.argmax(np.array(errs) - np.array(bounds)))
    return Verdict(THEOREM, f"D={D}: SGD hidden kernels have spectrum s_k S at every layer (eta -> 0)",
                   symbolic="spec(Sx^(1/2) K_k Sx^(1/2)) = s_k S (Eq. 59)", predicted=0.0, measured=errs[worst],
                   tolerance=bounds[worst], tolerance_source=source + " (delta-method CLT over runs)",
                   passed=all(e <= b for e, b in zip(errs, bounds)), paper_holds=True,
                   details={"etas": list(etas), "single-eta rel. error per layer": singles,
                            "log-log slope per layer": [fit_slope(etas, e_) for e_ in singles],
                            "extrapolated rel. error per layer": errs, "bound per layer": bounds,
                            "predicted s_k": [problem.layer_scale(D, k) for k in range(1, D)], "S": S})


# ------------------------------------------------------------------------------- runner
def verify(ctx: Context) -> list:
    vs = [check_entropy_derivation(ctx), check_diagonal_case(ctx, 2)]
    if ctx.full:
        vs.append(check_diagonal_case(ctx, 3))
    vs.append(check_concrete_optimum(ctx, showcase_problem(ctx.seed)))
    vs += check_sgd_invariants(ctx)
    vs += check_batch_independence(ctx)
    vs += [check_any_depth_structure(ctx, D) for D in (2, 3, 4)]
    vs += [check_any_depth_sgd(ctx, D) for D in (2, 3, 4)]
    return vs


# ------------------------------------------------------------------------------- tests
def test_entropy_derivation(ctx):
    v = check_entropy_derivation(ctx)
    assert v.passed, v.explain()


def test_diagonal_case(ctx):
    v = check_diagonal_case(ctx, 2)
    assert v.passed, v.explain()


def test_concrete_optimum(ctx):
    v = check_concrete_optimum(ctx, showcase_problem(ctx.seed))
    assert v.passed, v.explain()


def test_sgd_invariants_match_closed_form(ctx):
    for v in check_sgd_invariants(ctx):
        assert v.passed, v.explain()


@pytest.mark.slow  # verify() runs it in CI (python -m theorems); here it would only repeat it
def test_batch_does_not_move_the_optimum(ctx):
    for v in check_batch_independence(ctx):
        assert v.passed, v.explain()


@pytest.mark.parametrize("D", [2, 3, 4])
def test_any_depth_structure(ctx, D):
    v = check_any_depth_structure(ctx, D)
    assert v.passed, v.explain()


# D = 2, 3 share Theorem 8's runs within a process; D = 4 (the long ladder) runs in verify()
@pytest.mark.parametrize("D", [2, 3, pytest.param(4, marks=pytest.mark.slow)])
def test_any_depth_sgd_spectra(ctx, D):
    v = check_any_depth_sgd(ctx, D)
    assert v.passed, v.explain()


@st.composite
def two_layer_problems(draw, min_dim: int = 1, max_extra_width: int = 1):
    """Small random problems: dims min_dim..3, width rank..rank+max_extra_width, well-conditioned Sx, Se, V."""
    dx, dy = draw(nst.dims(min_dim, 3)), draw(nst.dims(min_dim, 3))
    V = draw(nst.full_rank_matrices(dy, dx, min_sv=0.5, max_sv=1.5))
    r = min(dx, dy)
    width = draw(st.integers(r, r + max_extra_width))
    return TwoLayerProblem(V, draw(nst.spd_matrices(dx, 0.3, 1.5)), draw(nst.spd_matrices(dy, 0.3, 1.5)), width)


@given(two_layer_problems())
def test_closed_form_random_draws(problem):
    """Hypothesis: 40-digit residuals vanish and random feasible points never beat the optimum."""
    v = check_concrete_optimum(Context(), problem, n_points=50)
    assert v.passed, v.explain()


@settings(max_examples=2)  # lowers CI cost (each draw is a full SGD eta ladder); `thorough` runs 200
@given(two_layer_problems(min_dim=2, max_extra_width=0), nst.seeds())
def test_sgd_matches_closed_form_random_draws(problem, seed):
    """Hypothesis: the SGD eta ladder extrapolates to the closed form for random problems.

    dx, dy >= 2: in 1-d problems the per-sample Hessian of batch-1 SGD is rank one with a
    chi^2_1-tailed size, and even at eta = 0.28/T* (started at the optimum) a few of 1024 runs
    blow up within 2000 steps (DivergenceError, measured for V = [1, 0], Sx = I, Se = 1). The
    relaxation budget of CI needs eta ~ 0.4/T*, so such draws are left to the closed-form tests.
    Width = rank here: hidden units beyond the rank relax ~4x slower (balance_relaxation_steps),
    which quadruples the cost; width > rank is covered by the full-budget showcase (width 4) and
    by the closed-form draws.
    """
    ctx = Context(seed=seed % 1000, device=resolve_device("auto"))
    ladder = eta_ladder(problem, default_etas(problem), seed=seed % 1000, n_runs=256, block_steps=150,
                        window=2, average_blocks=5, device=ctx.device)
    for v in invariant_verdicts(ladder, names=("WtW", "UUt")):
        assert v.passed, v.explain()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InputError, match="not positive definite"):
        TwoLayerProblem(np.eye(2), np.diag([1.0, -1.0]), np.eye(2), 2)
    with pytest.raises(InputError, match="not symmetric"):
        entropic_optimum(np.eye(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.eye(2))
    with pytest.raises(InputError, match="below the rank"):
        entropic_optimum(np.eye(3), np.eye(3), np.eye(3), width=2)
    with pytest.raises(InputError, match="below the rank"):
        TwoLayerProblem(np.eye(3), np.eye(3), np.eye(3), 2)
    with pytest.raises(InputError, match="shapes do not match"):
        entropic_optimum(np.ones((2, 3)), np.eye(2), np.eye(2))
    with pytest.raises(InputError, match="rank 0"):
        entropic_optimum(np.zeros((2, 2)), np.eye(2), np.eye(2))


def test_learning_rate_past_stability_raises():
    p = TwoLayerProblem(np.eye(2), np.eye(2), np.eye(2), 2)
    with pytest.raises(DivergenceError, match="diverged") as info:
        measure_invariants(p, eta=2.0, n_runs=8, block_steps=50, window=2, average_blocks=1, max_steps=500,
                           device="cpu")
    assert info.value.runs and len(info.value.runs) == len(info.value.steps)
