r"""Theorem 9 (weight decay breaks the universal representation).

With weight decay ``gam > 0`` the entropic loss of the embedded deep linear net is, on the
minimum manifold and to leading order in (eta, gam),

.. math::  \phi \simeq \frac{\eta}{B}\Big[\sum_i T_i + \kappa \sum_i |W_i|^2\Big],
           \qquad \kappa = \frac{\gamma B}{\eta},

(``T_i = E|grad_{W_i} l|^2 / 4``). At ``kappa = 0`` the hidden kernels are the universal
``s_k Sx^{-1} # V^T Se V`` (Theorem 8). As ``kappa -> inf`` (eta -> 0 at fixed gam) weight
balance takes over and ``K_k = G^T (P^T P)^{k/D} G`` with ``G = M_I Z``,
``P = M_O^{-1} V G^{-1}``: the kernel now depends on the embeddings and on the layer, so
two nets with different M_I / Z are no longer perfectly aligned. The suite quantifies how:
the cross-net alignment as a function of kappa (numerical minimisation over the manifold,
``numeric.deep_linear_min.orbit_minimum``), an exact SymPy example, and SGD runs with weight
decay whose measured alignment follows the predicted curve.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from numeric.figures import saved_figure
from numeric.platonic_sgd import cross_kernel_alignment, measure_kernels
from numeric.deep_linear_min import orbit_minimum
from symbolic import deep_linear as dl
from theorems.cache import shared_run
from theorems.checks import check, pytest_cases, verifier
from theorems.settings.platonic import KAPPAS_CURVE, NET_A, NET_B, SE, SX, predicted_alignment
from theorems.tolerances import Z
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "9"
TITLE = "Weight decay destroys the universal (Platonic) representation"



def symbolic_example():
    """Exact example: d = 2, V = Sx = Se = I, M_O = Z = I, ``M_I = diag(m, 1)``, depth D,
    hidden layer k. Weight-balanced kernel ``diag(m^{2 - 2k/D}, 1)``; Platonic kernel I.
    Returns (kernel, cosine with the Platonic kernel, cosine at m = 1)."""
    m, D, k = sp.symbols("m D k", positive=True)
    G = sp.diag(m, 1)
    P = G.inv()  # M_O^{-1} V G^{-1}
    PtP = P.T * P  # diagonal: powers act entrywise
    Pk = sp.diag(*[PtP[i, i] ** (k / D) for i in range(2)])
    K = sp.simplify(G.T * Pk * G)
    cos = sp.simplify((K.trace()) / sp.sqrt(2 * (K * K).trace()))  # Sx = I, K_platonic = I
    return K, cos, sp.simplify(cos.subs(m, 1))


@check(THEOREM)
def check_symbolic(ctx: Context) -> Verdict:
    """kappa -> inf (weight balance): the kernel G^T (P^T P)^{k/D} G depends on M_I and on k (SymPy)."""
    K, cos, cos_at_1 = symbolic_example()
    m, D, k = sp.symbols("m D k", positive=True)
    expected = sp.diag(m ** (2 - 2 * k / D), 1)
    res = sp.simplify(K - expected)
    val = float(cos.subs({m: 2, D: 3, k: 1}))
    return Verdict(THEOREM, "kappa -> inf (weight balance): kernel G^T (P^T P)^{k/D} G depends on M_I and on k",
                   symbolic=f"M_I = diag(m,1): K_k = diag(m^(2-2k/D), 1); cos with Platonic I = {cos}",
                   residual="0" if res.is_zero_matrix else str(res), paper="supports",
                   criteria=[Criterion.holds("K_k - diag(m^(2-2k/D), 1) simplifies to 0", res.is_zero_matrix,
                                             "SymPy, exact"),
                             Criterion.holds("cosine with the Platonic kernel is 1 at m = 1", cos_at_1 == 1, "SymPy, exact"),
                             Criterion.at_most("cosine at m = 2, D = 3, k = 1 (below 1: misaligned)", val, 1.0 - 1e-12,
                                               "exact value, float64")],
                   details={"cos_m2_D3_k1": val, "cos_at_m1": str(cos_at_1)})


@check(THEOREM, cases=[dict(D=2), dict(D=3)])
def check_alignment_curve(ctx: Context, D: int) -> Verdict:
    """The predicted cross-net alignment falls from 1 (kappa = 0) toward the weight-balanced
    limit (kappa -> inf); at kappa = 1000 it is within 1% of that closed-form limit
    (the approach is O(1/kappa))."""
    curve = np.array([predicted_alignment(ctx, D, k) for k in KAPPAS_CURVE])
    limit = np.array([dl.population_cosine(dl.weight_balanced_kernel(NET_A, D, k), dl.weight_balanced_kernel(NET_B, D, k),
                                           SX) for k in range(1, D)])
    rise = float(np.diff(curve, axis=0).max())
    at0 = float(np.abs(curve[0] - 1).max())
    gap_inf = float(np.abs(curve[-1] - limit).max())
    monotone = rise <= 1e-9
    src = "O(1/kappa) approach at kappa = 1000"
    return Verdict(THEOREM, f"D={D}: alignment(kappa) decreases from 1 to the weight-balanced limit",
                   predicted=float(limit.min()), measured=float(curve[-1].min()), tolerance=0.01,
                   tolerance_source=src, paper="supports", comparison="none",
                   criteria=[Criterion.at_most("largest rise of the curve between kappas", rise, 1e-9,
                                               "BFGS minimiser precision"),
                             Criterion.at_most("|alignment - 1| at kappa = 0", at0, 1e-8, "BFGS minimiser precision"),
                             Criterion.at_most("max |alignment - balanced limit| at kappa = 1000", gap_inf, 0.01, src)],
                   details={"kappas": KAPPAS_CURVE, "curve": curve, "balanced_limit": limit, "monotone": monotone})


@shared_run
def sgd_pair(ctx: Context, D: int, eta: float, kappa: float):
    """Nets A and B trained by SGD with weight decay gam = kappa eta (batch 1): the cross-net
    alignment per hidden layer, its CLT standard error over runs, and the CPU time."""
    gam = kappa * eta  # batch 1: kappa = gam B / eta
    kw = dict(n_runs=ctx.pick(64, 256), weight_decay=gam, seed=ctx.seed, device=str(ctx.device),
              block_steps=int(round(10 / eta)), window=3, average_blocks=ctx.pick(6, 20),
              max_steps=int(round(600 / eta)), sample_every=20)
    ma = measure_kernels(NET_A, [3] * (D - 1), eta, **kw)
    mb = measure_kernels(NET_B, [3] * (D - 1), eta, **kw)
    C = cross_kernel_alignment(ma, mb, SX)
    per_run = []
    for r in range(ma.kernel_per_run[0].shape[0]):
        per_run.append([dl.population_cosine(ma.kernel_per_run[k][r], mb.kernel_per_run[k][r], SX) for k in range(D - 1)])
    return np.diag(C), np.array(per_run).std(0) / np.sqrt(len(per_run)), ma.cpu_seconds + mb.cpu_seconds


@check(THEOREM, slow=True)
def check_sgd_weight_decay(ctx: Context) -> list[Verdict]:
    """SGD (D = 2, batch 1) with weight decay gam = kappa * eta: the cross-net alignment drops
    significantly below its gam = 0 value and follows the leading-order prediction.

    Tolerances: (i) the drop must exceed z = 5.33 (theorems.tolerances.Z) standard errors (CLT over runs);
    (ii) the measured drop 1 - cos must agree with the predicted one within 50%: the
    prediction neglects relative corrections O(eta + gam) (here gam = kappa eta = 0.1 at
    eta = 0.01), so 50% is a 5x margin; in the full budget the gap is shown to close as eta halves."""
    D = 2
    etas = ctx.pick((0.01,), (0.01, 0.005, 0.0025))
    kappa = 10.0
    out = []
    c0, s0, t0 = sgd_pair(ctx, D, etas[0], 0.0)
    rows = []
    for eta in etas:
        ck, sk, tk = sgd_pair(ctx, D, eta, kappa)
        rows.append((eta, ck, sk, tk))
    pred = predicted_alignment(ctx, D, kappa)
    eta, ck, sk, _ = rows[0]
    drop_meas = float(1 - ck[0])
    drop_pred = float(1 - pred[0])
    drop_src = f"drop > z = {Z:.2f} CLT standard errors"
    out.append(Verdict(THEOREM, f"SGD, D=2, eta={eta}: weight decay (kappa=10, gam={kappa * eta:g}) lowers cross-net "
                       "alignment (significant drop)", predicted=float(pred[0]), measured=float(ck[0]),
                       tolerance=None, tolerance_source=drop_src, paper="supports",
                       criteria=[Criterion.above("alignment drop cos(gam=0) - cos(gam)", float(c0[0] - ck[0]),
                                                 float(Z * np.hypot(s0[0], sk[0])), drop_src)],
                       details={"cos_gam0": c0, "cos_gam": ck, "stderr": (s0, sk), "cpu_seconds": t0}))
    gaps = [abs(float(1 - r[1][0]) - drop_pred) for r in rows]
    shrinks = [Criterion.above("gap to the prediction shrinks from the largest to the smallest eta", gaps[0],
                               gaps[-1], "neglected corrections are O(eta + gam)")] if len(rows) > 1 else []
    figs = []
    path = ctx.figure_path("thm09_alignment_vs_weight_decay.png")
    if path is not None:
        figs.append(_plot(path, rows, c0, ctx))
    out.append(Verdict(THEOREM, "SGD alignment drop matches the leading-order kappa = gam B/eta prediction",
                       predicted=drop_pred, measured=drop_meas, tolerance=0.5 * drop_pred,
                       tolerance_source="neglected O(eta + gam) relative corrections (gam = 0.1): 50% = 5x margin",
                       paper="supports", criteria=shrinks, figures=figs,
                       details={"etas": [r[0] for r in rows], "measured_cos": [r[1] for r in rows],
                                "gap_to_prediction": gaps, "predicted_cos": pred}))
    return out


@check(THEOREM)
def check_batch_dependence(ctx: Context) -> Verdict:
    """With weight decay the limit depends on the batch size through kappa = gam B / eta.

    (Paper Fig. 10/12 show batch-independence at gam = 0, which Theorem 8 predicts; with
    gam > 0 the suite predicts a batch dependence - not a paper claim). Prediction:
    B = 1 vs B = 4 at the same (eta, gam) = (0.01, 0.1) gives kappa = 10 vs 40. The full
    budget confirms with SGD (difference of the measured alignments beyond z = 5.33 (theorems.tolerances.Z) CLT)."""
    eta, gam = 0.01, 0.1
    p1, p4 = predicted_alignment(ctx, 2, gam * 1 / eta)[0], predicted_alignment(ctx, 2, gam * 4 / eta)[0]
    details = {"predicted_B1": p1, "predicted_B4": p4}
    criteria = [Criterion.above("predicted alignment difference B = 1 minus B = 4", float(p1 - p4), 0.01,
                                "larger than the 1% precision of the kappa curve")]
    measured = None
    if ctx.full:
        kw = dict(n_runs=256, weight_decay=gam, seed=ctx.seed, device=ctx.device, block_steps=1000, window=3,
                  average_blocks=20, max_steps=60000, sample_every=20)
        cos, se = [], []
        for B in (1, 4):
            ma = measure_kernels(NET_A, [3], eta, batch=B, **kw)
            mb = measure_kernels(NET_B, [3], eta, batch=B, **kw)
            pr = [dl.population_cosine(ma.kernel_per_run[0][r], mb.kernel_per_run[0][r], SX)
                  for r in range(ma.kernel_per_run[0].shape[0])]
            cos.append(float(np.mean(pr)))
            se.append(float(np.std(pr) / np.sqrt(len(pr))))
        measured = cos[0] - cos[1]
        details.update(measured_B1=cos[0], measured_B4=cos[1], stderr=se)
        criteria.append(Criterion.above("measured alignment difference B = 1 minus B = 4", measured,
                                        Z * float(np.hypot(*se)), f"z = {Z:.2f} CLT"))
    return Verdict(THEOREM, "with weight decay the batch size changes the representation (kappa = gam B / eta)",
                   predicted=float(p1 - p4), measured=measured, criteria=criteria,
                   tolerance_source=f"prediction (quick); SGD difference > z = {Z:.2f} CLT (full)", details=details)


def _plot(path, rows, c0, ctx):
    ks = np.array(KAPPAS_CURVE[1:])
    with saved_figure(path, figsize=(4.5, 3.2), dpi=100) as (fig, ax):
        for D, style in ((2, "-"), (3, "--")):
            curve = np.array([predicted_alignment(ctx, D, k) for k in ks])
            for j in range(curve.shape[1]):
                ax.plot(ks, curve[:, j], style, label=f"theory D={D} layer {j + 1}")
        ax.errorbar([1e-1], [c0[0]], fmt="ko", label="SGD gam=0 (at 0.1)")
        for eta, ck, sk, _ in rows:
            ax.errorbar([10.0], [ck[0]], yerr=[Z * sk[0]], fmt="s", label=f"SGD D=2 eta={eta}")
        ax.set(xscale="log", xlabel="kappa = gam B / eta", ylabel="cross-net alignment (Gram cosine)")
        ax.legend(fontsize=6)
    return path


# The exception (orthogonal embeddings keep the alignment) registers its check here.
from theorems import theorem_09_weight_decay_orthogonal  # noqa: E402,F401

verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)


def test_kappa_validation():
    from core.errors import InputError

    with pytest.raises(InputError, match="kappa"):
        orbit_minimum(NET_A, 2, -1.0)
    with pytest.raises(InputError, match="square invertible"):
        orbit_minimum(dl.EmbeddedProblem(np.ones((3, 3)), SX, SE), 2)
