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
different random embeddings; the time-averaged kernels approach the closed form with a
gap linear in eta, and every layer pair across the three nets aligns (paper's Gram cosine,
linear CKA, mutual kNN). The Fig. 4 nonlinear check (digits MLPs) is here too.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from numeric import strategies as nst
from numeric.alignment import alignment_matrix
from core.errors import InputError
from numeric.figures import saved_figure
from numeric.platonic_sgd import cross_kernel_alignment, layer_features, measure_kernels
from numeric.stationary import extrapolated_relative_error
from symbolic import deep_linear as dl
from theorems.verdict import Context, Verdict

THEOREM = "8"
TITLE = "Perfect Platonic representation (embedded deep linear nets, any depth)"

# ----------------------------------------------------------------------------- the setting
# One teacher, three embedding designs (one per depth). d = 3, full-rank V.
D_X = 3
V_TEACHER = np.array([[1.0, 0.3, 0.0], [0.2, 0.8, 0.4], [0.0, -0.3, 0.6]])
SX = np.diag([1.0, 0.6, 1.4])
SE = np.diag([0.5, 1.0, 0.8])
WIDTHS = {2: [4], 3: [3, 5], 4: [4, 3, 4]}  # widths differ on purpose (all >= rank 3)
# eta ladders: the leading-order theory predicts a kernel gap linear in eta. D = 4 is
# stable but far from the leading-order regime at eta = 0.02 (gap 0.4-0.5), so its ladder
# starts lower.
ETAS = {"quick": {2: (0.02, 0.01), 3: (0.02, 0.01), 4: (0.01, 0.005)},
        "full": {2: (0.02, 0.01, 0.005), 3: (0.02, 0.01, 0.005), 4: (0.01, 0.005, 0.0025)}}
Z_SIGMA = 5.3  # two-sided normal quantile for p ~ 1e-7: CLT bounds below fail w.p. < 1e-6


def random_invertible(rng, d=D_X, lo=0.5, hi=2.0):
    """Orthogonal times a diagonal with entries in [lo, hi]: condition number <= hi/lo."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q @ np.diag(rng.uniform(lo, hi, d))


def design(seed: int) -> dl.EmbeddedProblem:
    """The teacher seen through random embeddings ``Z, M_I, M_O`` (seeded)."""
    rng = np.random.default_rng(1000 + seed)
    # singular values in [0.7, 1.4]: condition number <= 2 keeps eta = 0.02 inside the
    # stability region of every design from a random initialisation
    emb = lambda: random_invertible(rng, D_X, 0.7, 1.4)  # noqa: E731
    return dl.EmbeddedProblem(V_TEACHER, SX, SE, Z=emb(), M_I=emb(), M_O=emb())


def design_for_depth(D: int) -> dl.EmbeddedProblem:
    return design(D)


# ----------------------------------------------------------------------------- symbolic
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
                   residual="0" if all(residuals.values()) else "nonzero", passed=all(residuals.values()),
                   paper_holds=True, details=residuals)


def check_closed_form_global_min(ctx: Context, problem: dl.EmbeddedProblem, D: int, seed: int = 0) -> Verdict:
    """The closed form is a global minimum: BFGS over the whole minimum manifold (square
    widths: the GL orbit) from random starts finds no lower entropy and the same kernels.
    Tolerance: BFGS stops at |grad| <= 1e-11; F is quadratic near the minimum, so values
    agree to ~1e-9 relative and kernels to ~1e-5 (sqrt of the value tolerance)."""
    ws = dl.entropic_minimum(problem, [problem.V.shape[0]] * (D - 1), seed=seed)
    F_closed = dl.entropy_on_manifold(problem, ws)
    wo, F_num = dl.orbit_minimum(problem, D, 0.0, seed=seed, starts=ctx.pick(2, 5))
    Kc, Ko = dl.hidden_kernels(problem, ws), dl.hidden_kernels(problem, wo)
    kerr = max(np.linalg.norm(a - b) / np.linalg.norm(a) for a, b in zip(Kc, Ko))
    rel = (F_num - F_closed) / F_closed
    bal = max(dl.balance_residuals(problem, ws))
    passed = rel > -1e-9 and abs(rel) < 1e-8 and kerr < 1e-4 and bal < 1e-9
    return Verdict(THEOREM, f"D={D}: closed form = global minimum of the entropy on the manifold (numerical search)",
                   predicted=F_closed, measured=F_num, tolerance=1e-8 * F_closed,
                   tolerance_source="BFGS gtol 1e-11, float64", passed=passed, paper_holds=True,
                   details={"relative_gap": rel, "kernel_rel_error": kerr, "balance_residual": bal})


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
                   paper_holds=True, details={"WtW": e1, "UUt": e2, "grad_moment": e3})


def check_equipartition_monte_carlo(ctx: Context, D: int = 3) -> Verdict:
    """Per-sample gradient second moments at the closed-form minimum, estimated by the SGD
    engine's own gradients (fresh samples), equal ``4T`` for every layer - with the
    embedded traces a, b. The embedding-free value (a = Tr Se, b = Tr Sx) holds only for
    identity embeddings: a second verdict shows it is rejected. That value is a restatement,
    not the paper's claim (the paper leaves a constant c_i per layer), so the second verdict
    says nothing about the paper (``paper_holds=None``). Tolerance: CLT, z = 5.3.
    Returns (embedding-free verdict, equipartition verdict)."""
    import torch

    from numeric.engine import linear_ensemble
    from numeric.linear_ensemble import LinearTeacher

    prob = design_for_depth(D)
    ws = dl.entropic_minimum(prob, WIDTHS[D], seed=1)
    ens = linear_ensemble(LinearTeacher(V_TEACHER, SX, SE), WIDTHS[D], n_runs=8, eta=0.01, Z=prob.Z, M_I=prob.M_I,
                          M_O=prob.M_O, device=ctx.device, seed=ctx.seed)
    ens.load_weights(ws)
    n = ctx.pick(4000, 40000)
    u, y = ens.sample(n)
    hs, out = ens.forward(u)
    deltas = ens.backward(hs, out, y)
    per = torch.stack([4.0 * d.pow(2).sum(-1) * h.pow(2).sum(-1) for d, h in zip(deltas, hs[:-1])], -1)  # (R,n,D)
    per = per.reshape(-1, D).cpu().numpy()
    mean = per.mean(0)
    se = per.std(0) / np.sqrt(per.shape[0])
    pred = 4 * prob.equipartition_value(D)
    naive = 4 * (np.trace(SE) * np.trace(SX)) ** (1 / D) * prob.tau ** (2 * (D - 1) / D)
    worst = int(np.argmax(np.abs(mean - pred) / se))
    refuted = bool(np.all(np.abs(mean - naive) > Z_SIGMA * se))
    embedding_free = Verdict(THEOREM, f"D={D}: the identity-embedding equipartition value (a = Tr Se, b = Tr Sx) "
                        "does not carry over to embedded nets (the paper's c_i absorbs the scale)", predicted=naive, measured=float(mean.mean()),
                        tolerance=Z_SIGMA * float(se.max()), tolerance_source="CLT, z = 5.3: measured differs",
                        passed=refuted, paper_holds=None,
                        details={"correct_value": pred, "a_Tr_Se": float(np.trace(SE)), "b_Tr_Sx": float(np.trace(SX)),
                                 "a_embedded": prob.a, "b_embedded": prob.b})
    return embedding_free, Verdict(THEOREM, f"D={D}: equipartition E|grad W_i l|^2 = 4 (ab)^(1/D) (Tr S)^(2(D-1)/D), a, b of the "
                   "embedded problem",
                   symbolic="T_i = Tr(A_i^T N A_i) Tr(B_{i-1} Su B_{i-1}^T) all equal",
                   predicted=pred, measured=float(mean[worst]), tolerance=Z_SIGMA * float(se[worst]),
                   tolerance_source="CLT over fresh samples, z = 5.3", paper_holds=True,
                   details={"per_layer": mean, "stderr": se, "embedding_free_value": naive,
                            "a_embedded": prob.a, "b_embedded": prob.b})


# ----------------------------------------------------------------------------- SGD witness
def misaligned_start(problem: dl.EmbeddedProblem, D: int, seed: int = 0) -> list:
    """A global minimum of L that is *not* aligned: the closed form with every hidden layer
    transformed by an invertible X (singular values in [0.3, 3]), the paper's
    counterexample; SGD must leave it."""
    ws = dl.entropic_minimum(problem, WIDTHS[D], seed=seed)
    rng = np.random.default_rng(seed + 7)
    for k in range(D - 1):  # every hidden layer k+1: W_{k+1} -> X W_{k+1}, W_{k+2} -> W_{k+2} X^{-1}
        X = random_invertible(rng, WIDTHS[D][k], 0.3, 3.0)
        ws[k] = X @ ws[k]
        ws[k + 1] = ws[k + 1] @ np.linalg.inv(X)
    return ws


@functools.lru_cache(maxsize=None)
def _run(D: int, eta: float, batch: int, budget: str, device: str, seed: int):
    prob = design_for_depth(D)
    init = misaligned_start(prob, D, seed) if D == 3 else None
    n_runs = 64 if budget == "quick" else 256
    # Blocks of 10/eta steps: long compared with the relaxation time ~ 1/(eta * curvature)
    # of the fast directions; the drift test (4 standard errors over 2x3 blocks) decides
    # when the slow orbit directions have settled.
    return measure_kernels(prob, WIDTHS[D], eta, n_runs=n_runs, batch=batch, seed=seed, device=device,
                           block_steps=int(round(10 / eta)), window=3, average_blocks=6 if budget == "quick" else 20,
                           max_steps=int(round(600 / eta)), sample_every=20, init_weights=init)


def run_sgd(ctx: Context, D: int, eta: float, batch: int = 1):
    return _run(D, float(eta), int(batch), ctx.budget, str(ctx.device), int(ctx.seed))


def fit_slope(etas, errs) -> float:
    """Least-squares slope of log(err) against log(eta)."""
    return float(np.polyfit(np.log(etas), np.log(errs), 1)[0])


def check_kernel_convergence(ctx: Context, D: int) -> list[Verdict]:
    """Time-averaged SGD kernels vs the closed form over an eta ladder.

    1. the relative error at the smallest eta, against Richardson's extrapolation: with
       err(eta) = c1 eta + O(eta^2), the error ratio between successive rungs is 2, so the
       slope of log err vs log eta must be 1; we accept [0.4, 1.6]: the CLT error of a
       2-point slope is ~ sqrt(se1^2/e1^2 + se2^2/e2^2) / ln 2 <= 0.1 here (z ~ 5).
    2. the Richardson-extrapolated kernel (2 K(eta/2) - K(eta)) matches the closed form
       within z = 5.3 CLT standard errors plus the O(eta^2) remainder
       (numeric.stationary.extrapolated_relative_error: with three rungs estimated from the
       third, with two from what is left of the linear law - meaningful jointly with 1.).
    """
    etas = ETAS[ctx.budget][D]
    prob = design_for_depth(D)
    pred = [prob.kernel(D, k) for k in range(1, D)]
    ms = [run_sgd(ctx, D, eta) for eta in etas]
    errs = np.array([m.relative_error(pred)[0] for m in ms])  # (n_eta, D-1)
    ses = np.array([m.relative_error(pred)[1] for m in ms])
    slopes = [fit_slope(etas, errs[:, k]) for k in range(D - 1)]
    out = []
    figs = []
    path = ctx.figure_path(f"thm08_kernel_gap_D{D}.png")
    if path is not None:
        figs.append(_plot_gap(path, etas, errs, ses, D))
    out.append(Verdict(THEOREM, f"D={D}: SGD kernel gap |K_sgd - K_closed|/|K_closed| closes linearly in eta",
                       symbolic="leading order in eta: gap = O(eta)", predicted=1.0, measured=float(np.mean(slopes)),
                       tolerance=0.6, tolerance_source="log-log slope over the eta ladder; CLT slope error <= 0.1",
                       passed=all(0.4 <= s <= 1.6 for s in slopes), paper_holds=True, figures=figs,
                       details={"etas": list(etas), "rel_error": errs, "stderr": ses, "slopes": slopes,
                                "cpu_seconds": [m.cpu_seconds for m in ms], "steps": [m.total_steps for m in ms],
                                "converged": [m.converged for m in ms], "cosine_to_closed_form": [m.cosine_mean for m in ms]}))
    # Richardson (eta -> 0) per layer: shared with Theorem 12 (numeric.stationary)
    rich, tol_parts = [], []
    for k in range(D - 1):
        e, bound, source = extrapolated_relative_error(etas, [m.kernel_mean[k] for m in ms],
                                                        [m.kernel_stderr[k] for m in ms], pred[k], Z_SIGMA)
        rich.append(e)
        tol_parts.append(bound)
    worst = int(np.argmax(np.array(rich) - np.array(tol_parts)))
    out.append(Verdict(THEOREM, f"D={D}: Richardson-extrapolated (eta -> 0) SGD kernels = closed form, every layer",
                       predicted=0.0, measured=float(rich[worst]), tolerance=float(tol_parts[worst]),
                       tolerance_source=source, paper_holds=True,
                       passed=all(r <= t for r, t in zip(rich, tol_parts)),
                       details={"extrapolated_rel_error": rich, "tolerance_per_layer": tol_parts,
                                "rel_error_smallest_eta": errs[-1]}))
    return out


def _cross_matrix(ms: dict) -> tuple[np.ndarray, list]:
    per = [(D, k) for D in sorted(ms) for k in range(D - 1)]
    C = np.zeros((len(per), len(per)))
    for i, (Da, ka) in enumerate(per):
        for j, (Db, kb) in enumerate(per):
            C[i, j] = cross_kernel_alignment(ms[Da], ms[Db], SX)[ka, kb]
    return C, [f"D{D}.h{k + 1}" for D, k in per]


def check_cross_alignment(ctx: Context) -> Verdict:
    """Every hidden layer of the D = 2, 3, 4 nets (three different random embeddings and
    widths) against every other: population Gram cosine of the per-run time-averaged
    kernels, on each depth's eta ladder (rung by rung). Predicted: 1 - O(eta). Verdict: the
    worst misalignment 1 - min C must shrink when eta halves - by the factor 1/2 for a
    linear gap (1/4 if the bias enters squared); we require at most 3/4 (one-sided).
    The paper's test-set measures (Gram cosine, linear CKA, mutual kNN on held-out x,
    final weights, D=2 net vs D=4 net) are reported in the details."""
    rungs = len(ETAS[ctx.budget][2])
    Cs = []
    for i in range(rungs):
        ms = {D: run_sgd(ctx, D, ETAS[ctx.budget][D][i]) for D in (2, 3, 4)}
        C, labels = _cross_matrix(ms)
        Cs.append(C)
    gaps = [float(1 - C.min()) for C in Cs]
    ratio = gaps[-1] / gaps[-2]
    rng = np.random.default_rng(ctx.seed + 11)
    X = rng.standard_normal((ctx.pick(200, 1000), D_X)) @ np.sqrt(SX)
    fa, fb = layer_features(ms[2].final_maps, X), layer_features(ms[4].final_maps, X)
    test_set = {}
    for meas in ("gram_cosine", "linear_cka", "mutual_knn"):
        test_set[meas] = np.mean([alignment_matrix([f[r] for f in fa], [f[r] for f in fb], meas) for r in range(4)], 0)
    figs = []
    path = ctx.figure_path("thm08_alignment_matrix.png")
    if path is not None:
        figs.append(_plot_matrix(path, Cs[-1], labels, "population Gram cosine, time-averaged SGD kernels"))
    return Verdict(THEOREM, "every hidden layer of every net aligns with every other (D = 2, 3, 4; different "
                   "M_I, M_O, Z, widths): misalignment shrinks with eta",
                   predicted=0.5, measured=ratio, tolerance=0.25,
                   tolerance_source="ratio of 1 - min cos between ladder rungs; 1/2 (linear) or 1/4 predicted, <= 3/4 "
                                    "required", passed=bool(ratio <= 0.75), paper_holds=True, figures=figs,
                   details={"one_minus_min_cos_per_rung": gaps, "matrix_smallest_eta": Cs[-1], "labels": labels,
                            "test_set_min": {k: float(v.min()) for k, v in test_set.items()},
                            "test_set_D2_vs_D4": test_set})


def check_batch_independence(ctx: Context) -> Verdict:
    """Batch size does not move the limit (Fig. 10/12): D = 2, batch 4 at eta = 0.02; its
    kernel matches the same closed form. The gap is O(eta/B) (temperature eta/B), so it
    must be no larger than the batch-1 gap at the same eta (plus z=5.3 CLT)."""
    D = 2
    prob = design_for_depth(D)
    pred = [prob.kernel(D, 1)]
    m1 = run_sgd(ctx, D, 0.02, 1)
    m4 = run_sgd(ctx, D, 0.02, 4)
    e1, s1 = m1.relative_error(pred)
    e4, s4 = m4.relative_error(pred)
    return Verdict(THEOREM, "batch size does not change the limit kernel (D=2, B=4 vs B=1, eta=0.02)",
                   predicted=0.0, measured=float(e4[0]), tolerance=float(e1[0] + Z_SIGMA * np.hypot(s1[0], s4[0])),
                   tolerance_source="gap O(eta/B) <= batch-1 gap; z=5.3 CLT", paper_holds=True,
                   details={"gap_B1": e1[0], "gap_B4": e4[0], "cos_B4": m4.cosine_mean})


def check_convergence_curve(ctx: Context) -> Verdict:
    """D = 3 from a misaligned global minimum of L: the alignment with the closed form must
    rise from its start value to within the O(eta) stationary gap. Reports the curve."""
    D = 3
    eta = ETAS[ctx.budget][D][-1]
    m = run_sgd(ctx, D, eta)
    prob = design_for_depth(D)
    ws0 = misaligned_start(prob, D, ctx.seed)
    K0 = dl.hidden_kernels(prob, ws0)
    Kp = dl.platonic_kernel(V_TEACHER, SX, SE)
    cos0 = np.array([dl.population_cosine(K, Kp, SX) for K in K0])
    figs = []
    path = ctx.figure_path("thm08_convergence_D3.png")
    if path is not None:
        figs.append(_plot_curve(path, m, cos0, eta))
    return Verdict(THEOREM, f"D=3: SGD leaves a misaligned global minimum of L and aligns (eta={eta})",
                   predicted=1.0, measured=float(m.cosine_mean.min()), tolerance=float(1 - cos0.min()) / 2,
                   tolerance_source="must close at least half the initial misalignment", paper_holds=True,
                   passed=bool(m.converged and np.all(1 - m.cosine_mean < (1 - cos0) / 2)),
                   details={"start_cosine": cos0, "final_cosine": m.cosine_mean,
                            "steps_to_stationary": m.steps_to_stationary, "history_steps": m.history_steps,
                            "history_cosine": m.history_cosine})


def check_relaxation_time(ctx: Context) -> Verdict:
    """D = 3 from a random initialisation (entries N(0, 0.25/fan_in)): steps until both
    hidden kernels are within 1.5x of their stationary misalignment. The approach to the
    L-manifold takes O(1/eta) steps, but the drift *along* the symmetry orbit is driven by
    the entropic force, O(eta) in a step of size eta: relaxation time ~ 1/eta^2 (slope -2
    of log t vs log eta, versus -1 for an ordinary gradient-flow relaxation). The time is
    resolved to one block (2/eta steps, ~10%), so a 2-rung slope is good to ~0.3; we accept
    [-2.5, -1.5]."""
    D = 3
    prob = design_for_depth(D)
    etas = ctx.pick((0.01, 0.005), (0.01, 0.005, 0.0025))
    times, finals, curves = [], [], []
    for eta in etas:
        m = measure_kernels(prob, WIDTHS[D], eta, n_runs=32, block_steps=int(round(2 / eta)), window=3,
                            average_blocks=10, max_steps=int(round(300 / eta)), sample_every=10,
                            device=ctx.device, seed=ctx.seed + 1, init_scale=0.5)
        h = 1 - m.history_cosine
        fin = 1 - m.cosine_mean
        times.append(int(m.history_steps[int(np.argmax(np.all(h <= 1.5 * fin, axis=1)))]))
        finals.append(fin)
        curves.append(h)
    slope = fit_slope(etas, times)
    return Verdict(THEOREM, "D=3 (random init): relaxation along the symmetry orbit takes ~1/eta^2 steps",
                   predicted=-2.0, measured=slope, tolerance=0.5,
                   tolerance_source="block resolution 2/eta steps (~10%) on a factor-2 ladder", paper_holds=None,
                   details={"etas": etas, "relaxation_steps": times, "eta2_times_t": [e * e * t for e, t in zip(etas, times)],
                            "stationary_one_minus_cos": finals, "curves_one_minus_cos": curves})


def check_digits(ctx: Context) -> list[Verdict]:
    """Fig. 4 (nonlinear): see numeric.digits_mlp; verdicts built there."""
    from numeric.digits_mlp import digits_verdicts

    return digits_verdicts(ctx, THEOREM)


# ----------------------------------------------------------------------------- figures
def _plot_gap(path, etas, errs, ses, D):
    with saved_figure(path, figsize=(4, 3), dpi=100) as (fig, ax):
        for k in range(errs.shape[1]):
            ax.errorbar(etas, errs[:, k], yerr=ses[:, k], marker="o", label=f"layer {k + 1}")
        ax.plot(etas, errs[0, 0] * np.array(etas) / etas[0], "k--", label="slope 1")
        ax.set(xscale="log", yscale="log", xlabel="eta", ylabel="|K_sgd - K*| / |K*|", title=f"D = {D}")
        ax.legend(fontsize=7)
    return path


def _plot_matrix(path, C, labels, title):
    with saved_figure(path, figsize=(5, 4), dpi=100) as (fig, ax):
        im = ax.imshow(C, vmin=min(0.9, C.min()), vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im)
    return path


def _plot_curve(path, m, cos0, eta):
    with saved_figure(path, figsize=(4.5, 3), dpi=100) as (fig, ax):
        steps = np.concatenate([[0], m.history_steps])
        for k in range(m.history_cosine.shape[1]):
            ax.plot(steps, 1 - np.concatenate([[cos0[k]], m.history_cosine[:, k]]), label=f"layer {k + 1}")
        ax.set(yscale="log", xlabel="SGD step", ylabel="1 - cos(K, K*)", title=f"D = 3, eta = {eta}")
        ax.legend(fontsize=7)
    return path


# ----------------------------------------------------------------------------- runner
def verify(ctx: Context) -> list[Verdict]:
    vs = [check_symbolic(ctx), check_two_layer_agreement(ctx)]
    vs += [check_closed_form_global_min(ctx, design(10 + D), D) for D in (2, 3, 4)]
    vs += list(check_equipartition_monte_carlo(ctx, 3))
    for D in (2, 3, 4):
        vs += check_kernel_convergence(ctx, D)
    vs.append(check_cross_alignment(ctx))
    vs.append(check_batch_independence(ctx))
    vs.append(check_convergence_curve(ctx))
    vs.append(check_relaxation_time(ctx))
    vs += check_digits(ctx)
    return vs


# ----------------------------------------------------------------------------- tests
# CI budget: verify() (run by `python -m theorems` in CI) exercises every check; the tests
# below repeat the cheap ones and the D = 2, 3 SGD ladders, and leave the D = 4 ladder, the
# cross-depth alignment (needs D = 4) and the digits MLPs to verify() (marked slow here).
def _assert_all(vs):
    vs = [vs] if isinstance(vs, Verdict) else list(vs)
    failed = [v.explain() for v in vs if not v.passed]
    assert not failed, "\n".join(failed)


def test_symbolic(ctx):
    _assert_all(check_symbolic(ctx))


def test_two_layer_agreement(ctx):
    _assert_all(check_two_layer_agreement(ctx))


@pytest.mark.parametrize("D", [2, 3, 4])
def test_closed_form_is_global_min(ctx, D):
    _assert_all(check_closed_form_global_min(ctx, design(10 + D), D))


def test_equipartition_monte_carlo(ctx):
    _assert_all(check_equipartition_monte_carlo(ctx, 3))


@pytest.mark.parametrize("D", [2, 3, pytest.param(4, marks=pytest.mark.slow)])
def test_sgd_kernels_converge_to_closed_form(ctx, D):
    _assert_all(check_kernel_convergence(ctx, D))


def test_sgd_leaves_misaligned_minimum(ctx):
    _assert_all(check_convergence_curve(ctx))


def test_batch_does_not_move_the_limit(ctx):
    _assert_all(check_batch_independence(ctx))


@pytest.mark.slow
def test_cross_depth_alignment(ctx):
    _assert_all(check_cross_alignment(ctx))


@pytest.mark.slow
def test_relaxation_time(ctx):
    _assert_all(check_relaxation_time(ctx))


@pytest.mark.slow
def test_digits(ctx):
    _assert_all(check_digits(ctx))


@given(Sx=nst.spd_matrices(2), Se=nst.spd_matrices(2), V=nst.invertible_matrices(2), Z=nst.invertible_matrices(2),
       M_I=nst.invertible_matrices(2), M_O=nst.invertible_matrices(2), D=st.integers(2, 4),
       widths=st.lists(st.integers(2, 4), min_size=3, max_size=3), seed=nst.seeds())
def test_closed_form_random_problems(Sx, Se, V, Z, M_I, M_O, D, widths, seed):
    """Random data and embeddings: the closed form realises P, is balanced, equipartitioned,
    and every hidden kernel is s_k times the embedding-free Platonic kernel."""
    prob = dl.EmbeddedProblem(V, Sx, Se, Z=Z, M_I=M_I, M_O=M_O)
    ws = dl.entropic_minimum(prob, widths[: D - 1], seed=seed % 1000)
    scale = np.linalg.norm(prob.P)
    assert np.linalg.norm(dl.end_to_end(ws) - prob.P) < 1e-9 * scale
    assert max(dl.balance_residuals(prob, ws)) < 1e-8
    g = dl.layer_second_moments(prob, ws)
    assert np.allclose(g, 4 * prob.equipartition_value(D), rtol=1e-9)
    Kp = dl.platonic_kernel(V, Sx, Se)
    for k, K in enumerate(dl.hidden_kernels(prob, ws), start=1):
        assert np.allclose(K, prob.layer_scale(D, k) * Kp, rtol=1e-7, atol=1e-9 * np.abs(Kp).max())


def test_global_min_random_problem(ctx):
    v = check_closed_form_global_min(ctx, design(99), 3, seed=3)
    assert v.passed, v.explain()


def test_bad_inputs():
    with pytest.raises(InputError, match="not positive definite"):
        dl.EmbeddedProblem(V_TEACHER, -SX, SE)
    with pytest.raises(InputError, match="singular"):
        dl.EmbeddedProblem(V_TEACHER, SX, SE, Z=np.zeros((3, 3)))
    with pytest.raises(InputError, match="below the rank"):
        dl.entropic_minimum(dl.EmbeddedProblem(V_TEACHER, SX, SE), [2, 3])
    with pytest.raises(InputError, match="hidden layer index"):
        dl.EmbeddedProblem(V_TEACHER, SX, SE).layer_scale(3, 3)
    with pytest.raises(InputError, match="at least one hidden layer"):
        measure_kernels(dl.EmbeddedProblem(V_TEACHER, SX, SE), [], 0.01, max_steps=10, device="cpu")
