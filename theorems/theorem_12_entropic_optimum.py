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
regime, an eta ladder of independent rungs fitted by weighted least squares in eta).
Tolerances: the fitted eta -> 0 limit ``c0`` within (for an offset the suite finds: beyond)
``z * se(c0)`` in every component, ``se(c0)`` from the rungs' CLT standard errors alone, and
a chi^2 goodness of fit at ``p = 1e-7`` (:mod:`theorems.two_layer_checks`; z = 5.33,
:mod:`theorems.tolerances`).

Suite finding (ERRATA.md): for the showcase problem's anisotropic label noise the eta -> 0
limit of SGD's stationary W^T W, U U^T and spectrum is resolved off the closed form (~0.4%,
~0.4%, ~0.15% relative), while the gradient-moment equipartition holds; with isotropic label
noise the closed form is the limit (the property test below draws such problems).

**Any depth** (Eqs. 59-60: layer structure and equipartition of the embedded deep linear net,
BFGS minimisers and SGD whitened-kernel spectra): :mod:`theorems.theorem_12_entropic_optimum_any_depth`,
imported below where its checks come in the verdict order.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import DivergenceError, InputError
from numeric import strategies as nst
from numeric.device import resolve_device
from numeric.two_layer_witness import TwoLayerProblem, default_etas, eta_ladder, measure_invariants
from symbolic.two_layer import (derive_entropy_on_manifold, diagonal_case, entropic_optimum, entropy_on_manifold,
                                random_feasible_point)
from theorems.checks import check, full_case, pytest_cases, verifier
from theorems.settings.two_layer import SHOWCASE_OFFSETS, showcase_ladder, showcase_problem, stability_margin
from theorems.tolerances import Z
from theorems.two_layer_checks import converged_criterion, invariant_verdicts, limit_difference_criteria
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "12"
TITLE = "Entropic optimum of linear nets (closed form vs SGD; depth 2 in full, any depth)"
EXACT = "SymPy, exact"


# ------------------------------------------------------------------------------- symbolic
@check(THEOREM)
def check_entropy_derivation(ctx: Context, dims=((2, 2, 2), (1, 3, 2))) -> Verdict:
    """SymPy: E|grad_U l|^2 = 4 a Tr(W Sx W^T), E|grad_W l|^2 = 4 b Tr(U^T Se U) on UW = V."""
    res = {}
    for dx, h, dy in dims:
        d = derive_entropy_on_manifold(dx, h, dy)
        res[f"{dx}x{h}x{dy}"] = (str(d.residual_U), str(d.residual_W))
    ok = all(r == ("0", "0") for r in res.values())
    return Verdict(THEOREM, "per-sample entropy on UW = V is 4(a Tr W Sx W^T + b Tr U^T Se U)",
                   symbolic="derived from l by SymPy (generic symbolic U, W, Sx, Se)", residual="0" if ok else str(res),
                   paper="supports", criteria=[Criterion.holds("every residual simplifies to 0", ok, EXACT)],
                   details={"residuals (U, W) by dx x h x dy": res})


@check(THEOREM, cases=[dict(n=2), full_case(n=3)])
def check_diagonal_case(ctx: Context, n: int) -> list:
    """Exact closed form for symbolic diagonal n x n data: every residual simplifies to 0."""
    dc = diagonal_case(n)
    bad = {k: str(v) for k, v in dc.residuals.items() if v != 0}
    return [Verdict(THEOREM, f"closed-form optimum exact for symbolic diagonal {n}x{n} data",
                    symbolic="UW=V, Riccati, Lagrange, dF/dw=0 root, equipartition, 8 sqrt(ab) Tr S",
                    residual="0" if not bad else str(bad), paper="supports",
                    criteria=[Criterion.holds("every residual simplifies to 0", not bad, EXACT)],
                    details={"checks": list(dc.residuals), "min entropy": str(dc.min_entropy)})]


@check(THEOREM)
def check_concrete_optimum(ctx: Context, problem: TwoLayerProblem | None = None, n_points: int = 200) -> Verdict:
    """40-digit residuals of the closed form, and no random feasible point has lower entropy."""
    problem = showcase_problem() if problem is None else problem
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
    return Verdict(THEOREM, "closed form solves the Riccati/Lagrange conditions; no feasible point does better",
                   symbolic="X Sx X = (b/a) V^T Se V, Y Se Y = (a/b) V Sx V^T (40 digits)", residual=f"{res:.1e}",
                   paper="supports",
                   criteria=[Criterion.at_most("max Riccati / Lagrange / manifold residual", res, 1e-30,
                                               "40-digit arithmetic (mpmath)"),
                             Criterion.above(f"min relative entropy gap over {n_points} random feasible points",
                                             min_gap, -1e-12, "float64 round-off of a 40-digit optimum"),
                             Criterion.at_most("|entropy at the optimum - 8 sqrt(ab) Tr S| / F*", eq, 1e-12,
                                               "float64 round-off of a 40-digit optimum")],
                   details={"min relative entropy gap over random feasible points": min_gap, "points": n_points,
                            "riccati": opt.riccati_residual, "lagrange": opt.lagrange_residual,
                            "entropy at optimum vs 8 sqrt(ab) Tr S (rel)": eq})


# ------------------------------------------------------------------------------- numeric
@check(THEOREM)
def check_sgd_invariants(ctx: Context) -> list:
    """The SGD stationary invariants (W^T W, U U^T, spectrum, gradient moments) as eta -> 0
    against the closed form: the limit where the suite finds it, the resolved offset elsewhere."""
    p, ladder = showcase_ladder(ctx)
    out = invariant_verdicts(ladder, names=("WtW", "UUt", "spectrum", "grad_moments"), offsets=SHOWCASE_OFFSETS)
    for v in out:
        v.details["largest eta / GD stability limit"] = stability_margin(p, ladder.etas)
    return out


# verify() runs it in CI (python -m theorems); pytest would only repeat it
@check(THEOREM, slow=True)
def check_batch_independence(ctx: Context, batch: int = 2) -> list:
    """Batch B divides the entropy by B: the eta -> 0 limit must not move; only the time
    to reach it grows (the balance mode relaxes at a rate ~ eta^2 / B)."""
    _, lad1 = showcase_ladder(ctx, batch=1)
    # the slow balance mode relaxes B times slower: half the runs pay for it
    _, ladB = showcase_ladder(ctx, batch=batch, n_runs=lad1.rungs[0].n_runs // 2)
    out = []
    for name in ("WtW", "UUt"):
        crit, rel, bound = limit_difference_criteria(lad1.fits[name], ladB.fits[name], f"{name}, batch 1 vs {batch}")
        out.append(Verdict(
            THEOREM, f"batch {batch} vs batch 1: same eta->0 limit of {name}", symbolic="entropy / B: same argmin",
            predicted=0.0, measured=rel, tolerance=bound, comparison="none", paper="supports",
            tolerance_source=f"z={Z:.2f} x se of the difference of two WLS fits' c0 (CLT, independent ladders), "
                             "relative Frobenius",
            criteria=[converged_criterion(lad1, ladB), *crit],
            details={"c0 batch 1": lad1.limit(name).tolist(), "se(c0) batch 1": lad1.fits[name].se0.tolist(),
                     f"c0 batch {batch}": ladB.limit(name).tolist(), f"se(c0) batch {batch}": ladB.fits[name].se0.tolist(),
                     "c1 batch 1": lad1.fits[name].c1.tolist(), f"c1 batch {batch}": ladB.fits[name].c1.tolist(),
                     "etas": lad1.etas, "n_runs": [lad1.rungs[0].n_runs, ladB.rungs[0].n_runs],
                     "steps to stationary B=1": [r.steps_to_stationary for r in lad1.rungs],
                     f"steps to stationary B={batch}": [r.steps_to_stationary for r in ladB.rungs],
                     "note": "block lengths follow the predicted relaxation time ~ B/eta^2, so the step "
                             "counts show the cost of a larger batch, not an independent measurement of it"}))
    return out


# ------------------------------------------------------------------------------- any depth
# The any-depth checks (Eqs. 59-60) come last in the verdict order: importing their module here
# registers them after the depth-2 checks above. Its name extends this module's, so discovery
# and pytest, which import modules in name order, always import this one first.
importlib.import_module("theorems.theorem_12_entropic_optimum_any_depth")

verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)


# ------------------------------------------------------------------------------- property tests
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


@st.composite
def isotropic_noise_problems(draw):
    """Width-rank problems (dims 2..3) with isotropic label noise Se = s I, s in [0.3, 1.5]."""
    p = draw(two_layer_problems(min_dim=2, max_extra_width=0))
    s = draw(st.floats(0.3, 1.5))
    return TwoLayerProblem(p.V, p.Sx, s * np.eye(p.V.shape[0]), p.width)


@settings(max_examples=2)  # lowers CI cost (each draw is a full SGD eta ladder); `thorough` runs 200
@given(isotropic_noise_problems(), nst.seeds())
def test_sgd_matches_closed_form_random_draws(problem, seed):
    """Hypothesis: for isotropic label noise, the SGD eta ladder's eta -> 0 fit is the closed form.

    Anisotropic label noise is left out: there the suite resolves an offset of the limit from
    the closed form (check_sgd_invariants; ERRATA.md). dx, dy >= 2: in 1-d problems the
    per-sample Hessian of batch-1 SGD is rank one with a chi^2_1-tailed size, and even at
    eta = 0.28/T* (started at the optimum) a few of 1024 runs blow up within 2000 steps
    (DivergenceError, measured for V = [1, 0], Sx = I, Se = 1). Width = rank here: hidden units
    beyond the rank relax ~4x slower (balance_relaxation_steps).
    """
    ctx = Context(seed=seed % 1000, device=resolve_device("auto"))
    ladder = eta_ladder(problem, default_etas(problem, 0.2), seed=seed % 1000, n_runs=256, block_steps=150,
                        window=3, average_blocks=8, max_steps=20_000_000, drift_test="trend", device=ctx.device)
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
