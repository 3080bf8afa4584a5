r"""Theorem 12, SGD's small-learning-rate limit: is the stationary state of SGD at
$\eta \to 0$ the entropic optimum (the closed form of
:mod:`theorems.theorem_12_entropic_optimum`)?

Part of Theorem 12: registers its checks under "12" after the closed-form and any-depth
checks (its name sorts after theirs, so discovery imports it later); no ``THEOREM`` of its own.

**Derivation.** Near the minimum manifold $\Gamma = \{W_D\cdots W_1 = V\}$ SGD with step
$\eta$ and batch $B$ moves along $\Gamma$ on the time scale $\tau = \eta^2 k/B$; to leading
order in $\eta$ (Katzenberger 1991; Li, Wang and Arora 2022) it follows the flow

$$\frac{d\theta}{d\tau} = -\tfrac12 P_T \nabla_\theta \operatorname{Tr}\big(H(\theta)\Lambda\big),\qquad
  H\Lambda + \Lambda H = \Sigma ,$$

$\Sigma$ the per-sample gradient covariance ($4 (A_i^\top\Sigma_\epsilon A_j)\otimes(B_{i-1}\Sigma_x
B_{j-1}^\top)$ on $\Gamma$), $P_T$ the projection on the tangent space. If
$\Sigma_\epsilon \propto I$ then $\Sigma \propto H$, $\Lambda$ is a multiple of the normal projector,
and the flow is the projected gradient flow of $-\operatorname{Tr} H \propto -E\|\nabla\ell\|^2$:
its fixed point is the closed form. If $\Sigma_\epsilon$ is anisotropic, $[\Sigma, H]\neq 0$, the
flow is not a gradient flow and, for generic data, the closed form is not its fixed point (a
symmetric arrangement can keep it fixed: $V = \Sigma_x = I$ with a diagonal $\Sigma_\epsilon$, by
reflections); at its fixed point modulo the hidden layers' rotations the
invariants ($K_k$, $W_D W_D^\top$) are stationary while the hidden basis rotates at a
constant rate $\Omega = O(\eta^2/B)$ per step. Through the exact identity
$C' - C = \eta^2(g_W g_W^\top - g_U^\top g_U)$ ($C = WW^\top - U^\top U$) the rotation keeps
$E[g_W g_W^\top - g_U^\top g_U] = [\Omega, C]/\eta^2 \neq 0$: the matrix balance that defines
the closed form fails at every $\eta$, and the $\eta \to 0$ limit sits at the flow's fixed
point (:func:`numeric.sgd_limit.slow_flow_limit`), not at the closed form.

**Witness.** Ensembles of SGD runs on the compiled CPU engine (:mod:`numeric.sgd_limit`),
started at the closed form (and, in the full budget, far from it), burn-in $3B/\eta^2$
steps plus a passed drift test, stationary means with CLT standard errors, a weighted
least-squares fit $c_0 + c_1\eta\,(+c_2\eta^2)$ over the rungs. Which verdict a problem
gets follows from the derivation (:func:`theorems.settings.sgd_limit.expects_offset`: is the
closed form a fixed point of the slow flow?), not from a run: "limit = closed form"
(paper="supports") where it is (isotropic label noise); "offset of the eta -> 0 limit from the
closed form" (paper="refutes") where it is not (the anisotropic problems),
whose criterion is an offset of at least Z standard errors with a good fit (so it fails when
the offset is absent); in both cases "limit = slow-flow fixed point" and "rotation rate =
slow-flow rotation" (Z-standard-error criteria, :func:`theorems.tolerances.eta_limit_criteria`).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from core.errors import InputError
from numeric.sgd_limit import LimitProblem, balance_rates, frobenius_weights, slow_flow_limit, upper
from numeric.stationary import fit_eta_ladder
from theorems.checks import REGISTRY, check, full_case
from theorems.settings import sgd_limit as settings
from theorems.two_layer_checks import converged_criterion
from theorems.tolerances import Z, chi2_bound, eta_limit_criteria, offset_criteria, roundoff
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "12"
FLOW_DERIVATION = "slow flow of SGD on the minimum manifold (Katzenberger; Li, Wang & Arora), evaluated numerically"


def flow_limit(p: LimitProblem):
    """The slow flow's fixed point (at width = rank: hidden units beyond the rank carry
    nothing there)."""
    return slow_flow_limit(p.at_rank())


def _vector(invariants: dict, names) -> np.ndarray:
    return np.concatenate([upper(invariants[n]) for n in names])


def _weights(invariants: dict, names) -> np.ndarray:
    """Frobenius weights of :func:`_vector`'s components (full-matrix norms)."""
    return np.concatenate([frobenius_weights(np.shape(invariants[n])[0]) for n in names])


def _names(p: LimitProblem) -> list:
    return [f"K{k}" for k in range(1, p.depth)] + ["WDWDt"]


def _joint_fit(lad, names):
    """One WLS fit of every invariant's independent components together."""
    return fit_eta_ladder(lad.etas, [_vector(r.mean, names) for r in lad.rungs],
                          [_vector(r.stderr, names) for r in lad.rungs])


def _rotation_fit(lad):
    """WLS fit of the input-frame rotation generators per step / eta^2 (strict upper
    triangle of every hidden layer's A_k) over the rungs."""
    iu = lambda a: np.asarray(a)[np.triu_indices(np.shape(a)[0], 1)]  # noqa: E731
    means = [np.concatenate([iu(a) / r.eta**2 for a in r.rotation]) for r in lad.rungs]
    ses = [np.concatenate([iu(s) / r.eta**2 for s in r.rotation_se]) for r in lad.rungs]
    return fit_eta_ladder(lad.etas, means, ses)


def _ladder_details(lad, names) -> dict:
    offs = {n: lad.offset(n) for n in names}
    return {"etas": lad.etas, "runs": lad.rungs[0].n_runs, "steps per rung": [r.total_steps for r in lad.rungs],
            "wall s": round(sum(r.wall_s for r in lad.rungs), 1),
            "relative offset |c0 - closed form| / |closed form| (+- se) per invariant":
                {n: (round(o, 5), round(s, 5)) for n, (o, s) in offs.items()},
            "single-rung relative errors": {n: [round(e, 5) for e in lad.rung_errors(n)] for n in names},
            "rotation rate / eta^2 per rung": [np.round(r.rotation_rate / r.eta**2, 4).tolist() for r in lad.rungs]}


def _spectrum_ratios(p: LimitProblem, kernels: dict) -> list:
    """Per hidden layer: eigenvalues of ``Sx^{1/2} K_k Sx^{1/2}`` (descending) over the
    closed form's ``s_k S`` (the quantity of Theorem 12's any-depth SGD check)."""
    e = p.embedded
    _, S, _ = e.whitened_svd()
    h = np.real(scipy.linalg.sqrtm(e.Sx))
    out = []
    for k in range(1, p.depth):
        lam = np.sort(np.linalg.eigvalsh(h @ kernels[f"K{k}"] @ h))[::-1][:len(S)]
        out.append(np.round(lam / (e.layer_scale(p.depth, k) * S), 5).tolist())
    return out


# ------------------------------------------------------------------------------ derivation
@check(THEOREM, cases=[dict(name="Se = I"), dict(name="base"), dict(name="D=4, Se = I"), dict(name="D=4"),
                       dict(name="Theorem 8 design, D=4")])
def check_slow_flow_fixed_point(ctx: Context, name: str) -> Verdict:
    """The closed form is a fixed point of SGD's slow flow for isotropic label noise, not for
    generic anisotropic label noise."""
    p = settings.problem(name)
    f = flow_limit(p)
    tol = roundoff(1.0, settings.FLOW_OPS, "float64 round-off of the slow-flow evaluation")
    drift, rot = float(np.max(f.closed_form_rates)), float(np.max(f.rotation_rate))
    pred = p.prediction()
    offsets = {n: float(np.linalg.norm(f.prediction[n] - pred[n]) / np.linalg.norm(pred[n])) for n in pred}
    details = {"|dK/dtau| / |K| at the closed form per layer": f.closed_form_rates.tolist(),
               "fixed point: whitened kernel spectrum / closed form's, per layer": _spectrum_ratios(p, f.prediction),
               "fixed point: relative offset from the closed form": offsets,
               "fixed point: rotation rate per step / (eta^2/B) per layer": f.rotation_rate.tolist(),
               "fixed-point residual max |dK/dtau|": f.residual, "problem": p.spec()}
    fixed = Criterion.at_most("slow-flow fixed point found: max |dK/dtau|", f.residual, tol.value, tol.source)
    # SGD's exact identity C' - C = eta^2 (g_k g_k^T - g_{k+1}^T g_{k+1}) with C conserved by gradient flow:
    # the evaluated flow must move C_k by the balance defect (a check independent of its derivation)
    rates = balance_rates(p.at_rank(), f.weights)
    scale = max(float(np.abs(d).max()) for d, _ in rates) + 1.0
    identity = max(float(np.abs(dC - d).max()) for d, dC in rates) / scale
    defect = max(float(np.linalg.norm(d)) for d, _ in rates)
    details["fixed point: |E[g_k g_k^T - g_(k+1)^T g_(k+1)]|_F per sample (= |[Omega, C]|)"] = defect
    fixed = [fixed, Criterion.at_most("dC_k/dtau of the flow = E[g_k g_k^T - g_(k+1)^T g_(k+1)] at the fixed point "
                                      "(SGD's exact balance identity), relative", identity, tol.value, tol.source)]
    if not settings.isotropic_noise(p):
        return Verdict(THEOREM, f"{name}: anisotropic label noise - the closed form is not a fixed point of SGD's "
                       "slow flow; the fixed point is offset and its hidden basis rotates", symbolic=FLOW_DERIVATION,
                       paper="refutes", comparison="none", details=details,
                       criteria=[Criterion.above("max |dK/dtau| / |K| at the closed form", drift, tol.value,
                                                 tol.source),
                                 Criterion.above("rotation rate at the fixed point, per eta^2", rot, tol.value,
                                                 tol.source),
                                 Criterion.above("matrix balance defect at the fixed point (per sample)", defect,
                                                 tol.value, tol.source)] + fixed)
    return Verdict(THEOREM, f"{name}: isotropic label noise - the closed form is the fixed point of SGD's slow flow, "
                   "without rotation", symbolic=FLOW_DERIVATION, paper="supports", comparison="none",
                   details=details,
                   criteria=[Criterion.at_most("max |dK/dtau| / |K| at the closed form", drift, tol.value, tol.source),
                             Criterion.at_most("rotation rate at the fixed point, per eta^2", rot, tol.value,
                                               tol.source),
                             Criterion.at_most("matrix balance defect at the fixed point (per sample)", defect,
                                               tol.value * scale, tol.source)] + fixed)


# ------------------------------------------------------------------------------ SGD
QUICK_CASES = [dict(name=n) for n in settings.QUICK_PROBLEMS]
FULL_CASES = [full_case(name=n) for n in settings.PROBLEMS if n not in settings.QUICK_PROBLEMS]


# verify() runs it (python -m theorems); pytest would only repeat the same ensembles. Each problem's
# ladders are its own (alone): with --jobs a worker process verifies each problem by itself.
@check(THEOREM, cases=QUICK_CASES + FULL_CASES, slow=True, alone=True)
def check_sgd_limit(ctx: Context, name: str) -> list:
    """SGD's eta -> 0 limit: the closed form for isotropic label noise, offset from it (at the
    slow flow's fixed point, with a rotating hidden basis) for anisotropic label noise."""
    p = settings.problem(name)
    lad = settings.study_ladder(ctx, name)
    names = _names(p)
    fit = _joint_fit(lad, names)
    closed = _vector(lad.prediction, names)
    flow = flow_limit(p)
    slow = _vector(flow.prediction, names)
    w = _weights(lad.prediction, names)
    rel = float(np.linalg.norm(w * (fit.c0 - closed)) / np.linalg.norm(w * closed))
    rel_se = float(np.linalg.norm(w * fit.se0) / np.linalg.norm(w * closed))
    details = {**_ladder_details(lad, names), "fit": f"c0 + c1 eta{' + c2 eta^2' if fit.order == 2 else ''}",
               "chi2 / dof": f"{fit.chi2:.1f} / {fit.dof}", "problem": p.spec(),
               "slow-flow fixed point: relative offset from the closed form":
                   float(np.linalg.norm(w * (slow - closed)) / np.linalg.norm(w * closed)),
               "c0 - slow-flow fixed point (relative Frobenius)":
                   float(np.linalg.norm(w * (fit.c0 - slow)) / np.linalg.norm(w * closed))}
    conv = converged_criterion(lad)
    out = []
    if settings.expects_offset(p):
        out.append(Verdict(
            THEOREM, f"{name}: offset of the eta -> 0 limit of SGD from the closed form ({', '.join(names)})",
            symbolic="anisotropic label noise: the closed form is not a fixed point of the slow flow",
            predicted=0.0, measured=rel, tolerance=Z * rel_se, comparison="beyond",
            tolerance_source=f"z = {Z:.2f} x |se(c0)| / |closed form| (CLT over runs, WLS fit)", paper="refutes",
            criteria=offset_criteria(fit, closed, "c0 vs the closed form") + [conv],
            details=details))
        crit, err, bound = eta_limit_criteria(fit, slow, "c0 vs the slow-flow fixed point")
        out.append(Verdict(
            THEOREM, f"{name}: the eta -> 0 limit of SGD is the slow flow's fixed point (not the closed form)",
            symbolic=FLOW_DERIVATION, predicted=0.0, measured=err, tolerance=bound, comparison="none",
            tolerance_source=f"z = {Z:.2f} x se(c0) per component", paper="refutes", criteria=crit + [conv],
            details=details))
    else:
        crit, err, bound = eta_limit_criteria(fit, closed, "c0 vs the closed form")
        out.append(Verdict(
            THEOREM, f"{name}: the eta -> 0 limit of SGD is the closed form ({', '.join(names)})",
            symbolic="isotropic label noise: Sigma proportional to H, the slow flow is the entropy's gradient flow",
            predicted=0.0, measured=err, tolerance=bound, comparison="none",
            tolerance_source=f"z = {Z:.2f} x se(c0) per component", paper="supports", criteria=crit + [conv],
            details=details))
    out.append(_rotation_verdict(p, lad, flow, conv))
    if ctx.full:
        out.append(_far_start_verdict(ctx, p, lad, fit, names))
    return out


def _rotation_verdict(p: LimitProblem, lad, flow, conv: Criterion) -> Verdict:
    """The measured rotation of the hidden basis (per step / eta^2, eta -> 0) against the
    slow flow's rotation at its fixed point (zero for isotropic label noise)."""
    iu = lambda a: np.asarray(a)[np.triu_indices(np.shape(a)[0], 1)]  # noqa: E731
    pred = np.concatenate([iu(a) for a in flow.rotation])
    rfit = _rotation_fit(lad)
    crit, err, bound = eta_limit_criteria(rfit, pred, "rotation generator / eta^2")
    aniso = not settings.isotropic_noise(p)
    return Verdict(
        THEOREM, f"{p.name}: the hidden basis rotates at the slow flow's rate "
                 f"({'non-zero' if aniso else 'zero'} for {'anisotropic' if aniso else 'isotropic'} label noise)",
        symbolic=FLOW_DERIVATION, comparison="none", paper="refutes" if aniso else "supports",
        criteria=crit + [conv],
        details={"predicted A_k / eta^2 (input frame, per step)": pred.tolist(), "fitted c0": rfit.c0.tolist(),
                 "se(c0)": rfit.se0.tolist(), "predicted rate |A|/|K| / eta^2": flow.rotation_rate.tolist(),
                 "measured rate / eta^2 per rung": [np.round(r.rotation_rate / r.eta**2, 4).tolist()
                                                    for r in lad.rungs],
                 "estimator": "A_k = antisym(B_k(t)^T B_k(t + Delta)) / Delta, ensemble mean (numeric.sgd_limit)"})


def _far_start_verdict(ctx: Context, p: LimitProblem, lad, fit, names) -> Verdict:
    """Runs started far from the closed form (along the balance directions) reach the same
    eta -> 0 limit as runs started at it."""
    far = settings.study_ladder(ctx, p.name, "far")
    ffit = _joint_fit(far, names)
    z = np.abs(ffit.c0 - fit.c0) / np.sqrt(ffit.se0**2 + fit.se0**2)
    worst = int(np.argmax(z))
    gof = chi2_bound(ffit.dof)
    closed = _vector(lad.prediction, names)
    w = _weights(lad.prediction, names)
    rel = lambda c0: float(np.linalg.norm(w * (c0 - closed)) / np.linalg.norm(w * closed))  # noqa: E731
    return Verdict(
        THEOREM, f"{p.name}: SGD started far from the closed form settles at the same eta -> 0 limit",
        symbolic="a unique attracting fixed point of the slow flow", comparison="none", paper=None,
        criteria=[Criterion.at_most(f"largest |c0(far) - c0(closed-form start)| / combined se (component {worst})",
                                    float(z[worst]), Z, f"CLT of two independent fits, z = {Z:.2f}"),
                  Criterion.at_most(f"chi^2 of the far-start fit ({ffit.dof} dof)", ffit.chi2, gof.value,
                                    gof.source), converged_criterion(far)],
        details={"far-start runs": far.rungs[0].n_runs, "far-start steps per rung": [r.total_steps for r in far.rungs],
                 "far-start relative offset from the closed form": rel(ffit.c0),
                 "closed-form-start relative offset": rel(fit.c0),
                 "far start: relative distance of each invariant from the closed form": far.start_distance,
                 "Tr hess L at the far start / at the closed form": far.rungs[0].start_sharpness
                 / lad.rungs[0].start_sharpness})


# ------------------------------------------------------------------------------ pytest
_OWN = [c for c in REGISTRY[THEOREM] if c.fn.__module__ == __name__]


@pytest.mark.parametrize(("registered", "case"), [
    pytest.param(c, case, id=f"{c.name}[{case.id}]", marks=[pytest.mark.slow] if case.slow else [])
    for c in _OWN for case in c.cases])
def test_sgd_limit_checks(registered, case, ctx):
    if not case.runs_under(ctx):
        pytest.skip("runs under the full budget only (python -m theorems --budget full)")
    failed = [v.explain() for v in registered.run(ctx, case) if not v.passed]
    assert not failed, "\n".join(failed)


def test_slow_flow_refuses_widths_above_rank():
    with pytest.raises(InputError, match="rank V"):
        slow_flow_limit(settings.make("width 3", hidden=(3,)))
