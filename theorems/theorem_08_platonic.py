r"""Theorem 8 (perfect Platonic representation of embedded deep linear networks).

Two embedded deep linear networks ``f_A(x) = M_O^A W_D^A ... W_1^A M_I^A Z^A x`` and
``f_B`` (any depths, any widths >= r = rank V, any invertible ``M_I, M_O, Z``) trained on
``y = V x + e``. At the global minimum of the entropic loss (gam = 0) every hidden layer of
A is perfectly aligned with every hidden layer of B:

.. math::  h_i^A(x)^\top h_i^A(x') = c_{ij}\, h_j^B(x)^\top h_j^B(x') \quad \forall x, x'.

The suite derives (``symbolic.deep_linear``) the kernel itself,
``K_k = s_k\, S_x^{-1} \# (V^\top S_e V)`` (matrix geometric mean), from the balance
conditions through the Riccati equation ``K_k S_x K_k = c_k V^T S_e V`` in which the
embeddings, widths, depth and layer index cancel; the scales ``s_k`` and equipartition value
``E|grad_{W_i} l|^2 = 4 (ab)^{1/D} (Tr S)^{2(D-1)/D}`` (with ``a = Tr M_O^T S_e M_O``,
``b = Tr M_I Z S_x Z^T M_I^T``). Numerically: SGD ensembles for D = 2, 3, 4 with three
different random embeddings; the time-averaged kernels are fitted on an eta ladder
(c0 + c1 eta) and their eta -> 0 limit c0 is compared with the closed form - for this
anisotropic design it is offset from it, by 0.25-2% (measured, stated as such); every layer
pair across the three nets aligns (paper's Gram cosine, linear CKA, mutual kNN), to a floor
set by those offsets. The Fig. 4 nonlinear check (digits MLPs) is here too.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from numeric.figures import plot_error_ladder, plot_matrix
from numeric.platonic_sgd import alignment_across_nets, gradient_second_moments, held_out_alignment
from numeric.deep_linear_min import orbit_minimum
from symbolic import deep_linear as dl
from theorems.checks import check, pytest_cases, slow_case, verifier
from theorems.settings.platonic import (ALIGNMENT_REFERENCE_ETA, D_X, ETAS, SE, SX, V_TEACHER, WIDTHS, design,
                                        design_for_depth, ladder_details, ladder_layers, offset_criteria, run_sgd,
                                        upper_triangle)
from theorems.tolerances import Z
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "8"
TITLE = "Perfect Platonic representation (embedded deep linear nets, any depth)"


# ----------------------------------------------------------------------------- symbolic
@check(THEOREM)
def check_symbolic(ctx: Context) -> Verdict:
    """SymPy: balance condition, Riccati reduction (embeddings cancel), equipartition for
    symbolic depth D and layer k - every residual exactly 0."""
    eq = dl.prove_equipartition()
    bal = dl.prove_balance_condition(2)
    ric = dl.prove_riccati_invariance(2)
    zero = lambda v: v.is_zero_matrix if isinstance(v, sp.MatrixBase) else v == 0  # noqa: E731
    residuals = {**{f"equipartition.{k}": zero(v) for k, v in eq.items()}, "balance_condition": zero(bal),
                 **{f"riccati.{k}": zero(v) for k, v in ric.items()}}
    return Verdict(THEOREM, "closed form: balance -> Riccati K Sx K = c V^T Se V (no M_I, M_O, Z, width, depth); "
                   "equipartition for symbolic D",
                   symbolic="K_k = s_k Sx^{-1} # (V^T Se V); s_k = b^{(D-k)/D} a^{-k/D} tau^{2k/D-1}; "
                            "T = (ab)^{1/D} tau^{2(D-1)/D}",
                   residual="0" if all(residuals.values()) else "nonzero", paper="supports",
                   criteria=[Criterion.holds("every residual simplifies to 0", all(residuals.values()), "SymPy, exact")],
                   details=residuals)


@check(THEOREM)
def check_two_layer_agreement(ctx: Context) -> Verdict:
    """At D = 2 (identity embeddings) the any-depth closed form reproduces
    symbolic.two_layer.entropic_optimum (another derivation): W^T W, U U^T, E|grad|^2."""
    from symbolic.two_layer import entropic_optimum

    prob = dl.EmbeddedProblem(V_TEACHER, SX, SE)
    ws = dl.entropic_minimum(prob, [D_X], seed=0)
    opt = entropic_optimum(V_TEACHER, SX, SE)
    e1 = np.linalg.norm(ws[0].T @ ws[0] - opt.WtW) / np.linalg.norm(opt.WtW)
    e2 = np.linalg.norm(ws[1] @ ws[1].T - opt.UUt) / np.linalg.norm(opt.UUt)
    g = dl.layer_second_moments(prob, ws)
    e3 = float(np.max(np.abs(g - opt.grad_moment)) / opt.grad_moment)
    worst = max(e1, e2, e3)
    return Verdict(THEOREM, "D=2 limit agrees with the two-layer closed form (symbolic.two_layer)",
                   predicted=0.0, measured=worst, tolerance=1e-10, tolerance_source="float64 round-off",
                   paper="supports", details={"WtW": e1, "UUt": e2, "grad_moment": e3})


@check(THEOREM, cases=[dict(D=2), dict(D=3), dict(D=4)])
def check_closed_form_global_min(ctx: Context, D: int, design_seed: int | None = None, seed: int = 0) -> Verdict:
    """The closed form is a global minimum of the entropy on the minimum manifold.

    BFGS over the whole minimum manifold (square widths: the GL orbit) from random starts
    finds no lower entropy and the same kernels. Tolerance: BFGS stops at |grad| <= 1e-11;
    F is quadratic near the minimum, so values agree to ~1e-9 relative and kernels to ~1e-5
    (sqrt of the value tolerance)."""
    problem = design(10 + D if design_seed is None else design_seed)
    ws = dl.entropic_minimum(problem, [problem.V.shape[0]] * (D - 1), seed=seed)
    F_closed = dl.entropy_on_manifold(problem, ws)
    wo, F_num = orbit_minimum(problem, D, 0.0, seed=seed, starts=ctx.pick(2, 5))
    Kc, Ko = dl.hidden_kernels(problem, ws), dl.hidden_kernels(problem, wo)
    kerr = max(np.linalg.norm(a - b) / np.linalg.norm(a) for a, b in zip(Kc, Ko))
    rel = (F_num - F_closed) / F_closed
    bal = max(dl.balance_residuals(problem, ws))
    src = "BFGS gtol 1e-11, float64"
    return Verdict(THEOREM, f"D={D}: closed form = global minimum of the entropy on the manifold (numerical search)",
                   predicted=F_closed, measured=F_num, tolerance=1e-8 * F_closed, tolerance_source=src,
                   paper="supports", comparison="none",
                   criteria=[Criterion.at_least("relative entropy gap of the search's minimum (none lower)", rel, -1e-9,
                                                src),
                             Criterion.at_most("|relative entropy gap|", abs(rel), 1e-8, src),
                             Criterion.at_most("kernel relative error, search vs closed form", kerr, 1e-4,
                                               "sqrt of the value tolerance"),
                             Criterion.at_most("balance residual of the closed form", bal, 1e-9, "float64 round-off")],
                   details={"relative_gap": rel, "kernel_rel_error": kerr, "balance_residual": bal})


@check(THEOREM)
def check_equipartition_monte_carlo(ctx: Context, D: int = 3) -> list:
    """Per-sample gradient second moments at the closed-form minimum equal 4T for every layer.

    Estimated by the SGD engine's own gradients on fresh samples, with the embedded traces
    a, b. The embedding-free value (a = Tr Se, b = Tr Sx) holds only for identity
    embeddings: a second verdict shows it is rejected. That value is a restatement, not the
    paper's claim (the paper leaves a constant c_i per layer), so the second verdict says
    nothing about the paper. Tolerance: CLT, z = 5.33 (theorems.tolerances.Z).
    Returns (embedding-free verdict, equipartition verdict)."""
    prob = design_for_depth(D)
    ws = dl.entropic_minimum(prob, WIDTHS[D], seed=1)
    mean, se = gradient_second_moments(prob, ws, WIDTHS[D], ctx.pick(4000, 40000), seed=ctx.seed, device=ctx.device)
    pred = 4 * prob.equipartition_value(D)
    naive = 4 * (np.trace(SE) * np.trace(SX)) ** (1 / D) * prob.tau ** (2 * (D - 1) / D)
    worst = int(np.argmax(np.abs(mean - pred) / se))
    embedding_free = Verdict(
        THEOREM, f"D={D}: the identity-embedding equipartition value (a = Tr Se, b = Tr Sx) "
        "does not carry over to embedded nets (the paper's c_i absorbs the scale)", predicted=naive,
        measured=float(mean.mean()), tolerance=Z * float(se.max()),
        tolerance_source=f"CLT, z = {Z:.2f}: measured differs",
        comparison="none",
        criteria=[Criterion.above("smallest |layer mean - embedding-free value| / its z-bound",
                                  float(np.min(np.abs(mean - naive) / (Z * se))), 1.0,
                                  f"CLT, z = {Z:.2f}, every layer must differ")],
        details={"correct_value": pred, "a_Tr_Se": float(np.trace(SE)), "b_Tr_Sx": float(np.trace(SX)),
                 "a_embedded": prob.a, "b_embedded": prob.b})
    return [embedding_free, Verdict(
        THEOREM, f"D={D}: equipartition E|grad W_i l|^2 = 4 (ab)^(1/D) (Tr S)^(2(D-1)/D), a, b of the embedded problem",
        symbolic="T_i = Tr(A_i^T N A_i) Tr(B_{i-1} Su B_{i-1}^T) all equal",
        predicted=pred, measured=float(mean[worst]), tolerance=Z * float(se[worst]),
        tolerance_source=f"CLT over fresh samples, z = {Z:.2f}", paper="supports",
        details={"per_layer": mean, "stderr": se, "embedding_free_value": naive,
                 "a_embedded": prob.a, "b_embedded": prob.b})]


# ----------------------------------------------------------------------------- SGD witness
@check(THEOREM, cases=[dict(D=2), dict(D=3), slow_case(D=4)])
def check_kernel_convergence(ctx: Context, D: int) -> list:
    """Time-averaged SGD kernels on an eta ladder, fitted to eta -> 0, against the closed form.

    Every hidden layer's kernel entries (upper triangle) are fitted by weighted least squares
    ``K(eta) = c0 + c1 eta`` (three rungs; ``+ c2 eta^2`` with four), weights the rungs' CLT
    standard errors over independent runs (numeric.stationary.fit_eta_ladder). Two verdicts:

    1. the ladder follows the model: chi^2 below its p = 1e-7 quantile for every layer (the
       "closes linearly in eta" test: a stall or a curve fails it), every rung stationary by
       the drift test; fewer than three rungs are refused (an offset and a slope need a
       degree of freedom left to be tested);
    2. the eta -> 0 limit c0 against the closed form. Measured: for this design
       (anisotropic Sx and Se) SGD's limit is offset from the closed form - by ~0.25%
       (D = 2) to ~1-2% (first hidden layer of D = 3, 4), resolved at 10-40 standard errors
       with a good fit, from a misaligned start and from a start AT the closed form alike;
       with isotropic Se the same ladder finds no offset. The verdict states the offset:
       its largest component is at least z = 5.33 standard errors of c0 from the closed form.
    """
    etas = ETAS[ctx.budget][D]
    prob = design_for_depth(D)
    pred = [prob.kernel(D, k) for k in range(1, D)]
    ms = [run_sgd(ctx, D, eta) for eta in etas]
    errs = np.array([m.relative_error(pred)[0] for m in ms])  # (n_eta, D-1)
    ses = np.array([m.relative_error(pred)[1] for m in ms])
    layers = ladder_layers(etas, [[upper_triangle(K) for K in m.kernel_mean] for m in ms],
                           [[upper_triangle(S) for S in m.kernel_stderr] for m in ms],
                           [upper_triangle(K) for K in pred], [f"layer {k} kernel" for k in range(1, D)])
    figs = []
    path = ctx.figure_path(f"thm08_kernel_gap_D{D}.png")
    if path is not None:
        figs.append(plot_error_ladder(path, etas, errs, ses, f"D = {D}", "|K_sgd - K*| / |K*|"))
    stationary = [m.converged for m in ms]
    per_rung = {"etas": list(etas), "rel_error": errs, "stderr": ses, "cpu_seconds": [m.cpu_seconds for m in ms],
                "steps": [m.total_steps for m in ms], "steps_to_stationary": [m.steps_to_stationary for m in ms],
                "converged": stationary, "n_runs": ms[0].kernel_per_run[0].shape[0],
                "cosine_to_closed_form": [m.cosine_mean for m in ms]}
    model = " + c2 eta^2" if layers[0]["fit"].order == 2 else ""
    fit_verdict = Verdict(
        THEOREM, f"D={D}: SGD kernels over the eta ladder {list(etas)} follow c0 + c1 eta{model} (WLS, chi^2), "
        "every layer", symbolic="leading order in eta: K(eta) = K(0) + O(eta)", figures=figs, comparison="none",
        criteria=[Criterion.holds("the drift test declared every rung stationary", all(stationary),
                                  "numeric.stationary drift test"), *[L["criteria"][1] for L in layers]],
        details={**per_rung, **ladder_details(layers)})
    worst = max(layers, key=lambda L: float(L["z"].max()))
    offset = Verdict(
        THEOREM, f"D={D}: SGD's eta -> 0 limit kernel (ladder fit) is offset from the closed form Sx^-1 # V^T Se V "
        "(anisotropic Se)", predicted=0.0, measured=worst["rel"], tolerance=worst["rel_bound"],
        tolerance_source=f"relative offset of c0 against Z = {Z:.2f} standard errors of c0 (WLS over independent rungs)",
        paper="refutes", comparison="none", criteria=offset_criteria(layers),
        details={"etas": list(etas), **ladder_details(layers), "rel_error_smallest_eta": errs[-1]})
    return [fit_verdict, offset]


@check(THEOREM, slow=True)
def check_cross_alignment(ctx: Context) -> Verdict:
    """Every hidden layer of the D = 2, 3, 4 nets aligns with every other, more so as eta shrinks.

    Three different random embeddings and widths; population Gram cosine of the per-run
    time-averaged kernels, at eta = 0.01 (ALIGNMENT_REFERENCE_ETA) and at the eta ladder's
    smallest rung (a factor 8 in the quick budget, 10 in the full). The worst misalignment
    1 - min C must shrink between them by at least the factor 3/4 (one-sided; a gap linear in
    eta would give 1/8 or 1/10). It does not close to 0: the eta -> 0 limit kernels are
    offset from the closed form (check_kernel_convergence), differently per layer, so the
    misalignment levels off (measured, seed 0, 256 runs: 1.2e-3 at eta = 0.01, 2.7e-4 at
    0.00125, worst pair D = 4 layers 1 and 3) - the paper's perfect alignment holds for the
    entropic minimum, for SGD only to that floor.
    The paper's test-set measures (Gram cosine, linear CKA - the biased estimator, and the
    unbiased one beside it - and mutual kNN on held-out x, final weights, D=2 net vs D=4
    net) are reported in the details."""
    etas = (ALIGNMENT_REFERENCE_ETA, ETAS[ctx.budget][2][-1])
    Cs = []
    for eta in etas:
        ms = {D: run_sgd(ctx, D, eta) for D in (2, 3, 4)}
        C, labels = alignment_across_nets(ms, SX)
        Cs.append(C)
    gaps = [float(1 - C.min()) for C in Cs]
    ratio = gaps[-1] / gaps[0]
    rng = np.random.default_rng(ctx.seed + 11)
    X = rng.standard_normal((ctx.pick(200, 1000), D_X)) @ np.sqrt(SX)
    test_set = held_out_alignment(ms[2], ms[4], X, ("gram_cosine", "linear_cka", "linear_cka_unbiased", "mutual_knn"))
    figs = []
    path = ctx.figure_path("thm08_alignment_matrix.png")
    if path is not None:
        figs.append(plot_matrix(path, Cs[-1], labels, "population Gram cosine, time-averaged SGD kernels"))
    spread = etas[0] / etas[-1]
    src = f"ratio of 1 - min cos at eta = {etas[-1]:g} to eta = {etas[0]:g}; 1/{spread:g} for a linear gap, <= 3/4 required"
    return Verdict(THEOREM, "every hidden layer of every net aligns with every other (D = 2, 3, 4; different "
                   "M_I, M_O, Z, widths): misalignment shrinks with eta, to a floor",
                   predicted=1 / spread, measured=ratio, tolerance_source=src, paper="partly",
                   paper_condition="alignment improves as eta shrinks, but SGD's eta -> 0 limit is not perfectly "
                                   f"aligned: 1 - min cos levels off near {gaps[-1]:.1e} (the limit kernels' offsets)",
                   figures=figs, comparison="none",
                   criteria=[Criterion.at_most(f"misalignment ratio, eta = {etas[-1]:g} to {etas[0]:g}", ratio, 0.75,
                                               src)],
                   details={"etas": list(etas), "one_minus_min_cos": gaps, "matrix_smallest_eta": Cs[-1], "labels": labels,
                            "test_set_min": {k: float(v.min()) for k, v in test_set.items()},
                            "test_set_D2_vs_D4": test_set})


@check(THEOREM)
def check_batch_independence(ctx: Context) -> Verdict:
    """Batch size does not move the limit kernel (Fig. 10/12): D = 2, batch 4 vs 1 at the top
    of the eta ladder (the batch-1 run is its first rung).

    The gap is O(eta/B) (temperature eta/B), so it must be no larger than the batch-1 gap at
    the same eta (plus z = 5.33 CLT)."""
    D = 2
    prob = design_for_depth(D)
    pred = [prob.kernel(D, 1)]
    eta = ETAS[ctx.budget][D][0]
    m1 = run_sgd(ctx, D, eta, 1)
    m4 = run_sgd(ctx, D, eta, 4)
    e1, s1 = m1.relative_error(pred)
    e4, s4 = m4.relative_error(pred)
    return Verdict(THEOREM, f"batch size does not change the limit kernel (D=2, B=4 vs B=1, eta={eta:g})",
                   predicted=0.0, measured=float(e4[0]), tolerance=float(e1[0] + Z * np.hypot(s1[0], s4[0])),
                   tolerance_source=f"gap O(eta/B) <= batch-1 gap; z = {Z:.2f} CLT", paper="supports",
                   details={"gap_B1": e1[0], "gap_B4": e4[0], "cos_B4": m4.cosine_mean})


# The dynamics along the orbit (leaving a misaligned minimum, the 1/eta^2 relaxation) and the
# nonlinear check (Fig. 4, digits MLPs) register their checks here, in this order.
from theorems import theorem_08_platonic_dynamics  # noqa: E402,F401
from theorems import theorem_08_platonic_digits  # noqa: E402,F401

verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)


def test_global_min_random_problem(ctx):
    v = check_closed_form_global_min(ctx, 3, design_seed=99, seed=3)
    assert v.passed, v.explain()
