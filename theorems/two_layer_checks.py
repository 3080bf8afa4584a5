"""Verdicts shared by the two-layer theorem modules (10, 12): an SGD eta ladder against the
closed form.

Not a theorem module (its name has no theorem_/lemma_/appendix_ prefix): ``python -m theorems``
and pytest do not collect it. The ladders themselves are in :mod:`theorems.settings.two_layer`.

Every eta -> 0 verdict reads a weighted least-squares fit ``m(eta) = c0 + c1 eta (+ c2 eta^2)``
of the rungs' stationary means (:func:`numeric.stationary.fit_eta_ladder`; independent runs
per rung, so ``se(c0)`` comes from the rungs' CLT standard errors alone, never from the
measured error). A limit the theory predicts must lie within ``Z se(c0)`` of ``c0`` in every
component (:func:`theorems.tolerances.eta_limit_criteria`); an offset the suite finds must
exceed ``Z se(c0)`` in some component. Either way the fit's chi^2 must stay below its
``p = 1e-7`` quantile, so a wrong model of the eta-dependence fails instead of hiding in
a wide error bar. Z = 5.33 is the suite's policy (:mod:`theorems.tolerances`).
"""

from __future__ import annotations

import numpy as np

from theorems.tolerances import Z, chi2_bound, eta_limit_criteria, offset_criteria
from theorems.verdict import Criterion, Verdict

SGD_CLAIMS = {  # invariant -> claim text when SGD's limit is the closed form
    "WtW": "W^T W at the SGD stationary state -> closed form (eta -> 0)",
    "UUt": "U U^T at the SGD stationary state -> closed form (eta -> 0)",
    "spectrum": "spectrum of W Sx W^T -> sqrt(b/a) S (eta -> 0)",
    "sharpness": "Tr hess L of the SGD stationary state -> T* (eta -> 0)",
    "grad_moments": "per-layer E|grad l|^2 -> 4 sqrt(ab) Tr S each (equipartition, eta -> 0)",
}
OFFSET_CLAIMS = {  # invariant -> claim text when the suite finds SGD's limit off the closed form
    "WtW": "W^T W at the SGD stationary state: the eta -> 0 limit is off the closed form (anisotropic Se)",
    "UUt": "U U^T at the SGD stationary state: the eta -> 0 limit is off the closed form (anisotropic Se)",
    "spectrum": "spectrum of W Sx W^T: the eta -> 0 limit is off sqrt(b/a) S (anisotropic Se)",
    "sharpness": "Tr hess L of the SGD stationary state: the eta -> 0 limit is off T* (anisotropic Se)",
}
SYMBOLIC = "closed form (symbolic.two_layer.entropic_optimum)"


def converged_criterion(*ladders) -> Criterion:
    """Every rung of every ladder reached the stationary regime before its step cap."""
    bad = [r.eta for lad in ladders for r in lad.rungs if not r.converged]
    return Criterion.holds("the drift test declared every rung stationary (step cap not hit"
                           + (f"; not at eta = {bad})" if bad else ")"), not bad, "numeric.stationary drift test")


def fit_source(fit, n_runs) -> str:
    order = "c0 + c1 eta" + (" + c2 eta^2" if fit.order == 2 else "")
    return f"WLS fit {order} over {fit.etas.size} rungs ({n_runs} runs each); z = {Z:.2f} x se(c0) (CLT)"


def fit_details(ladder, name: str) -> dict:
    """The fit and the rungs behind it, for the verdict's details."""
    f, t = ladder.fits[name], ladder.targets[name]
    shape = tuple(t.shape)
    as_list = lambda a: np.asarray(a).reshape(shape).tolist() if shape else float(np.asarray(a).ravel()[0])  # noqa: E731
    return {"etas": ladder.etas, "fit order": f.order, "c0 (eta -> 0 limit)": as_list(f.c0),
            "se(c0)": as_list(f.se0), "c1 (O(eta) coefficient)": as_list(f.c1), "prediction": as_list(t.numpy()),
            "chi2 / dof": [f.chi2, f.dof], "chi2 bound (p = 1e-7)": chi2_bound(f.dof).value,
            "relative offset |c0 - prediction| / |prediction|": ladder.limit_error(name),
            "relative precision Z se(c0) / |prediction|": ladder.precision(name, Z),
            "largest |c0 - prediction| / se(c0)": float(np.max(np.abs(f.c0 - t.numpy().ravel()) / f.se0)),
            "single-eta relative errors": [r.relative_error(name, t) for r in ladder.rungs],
            "converged (drift test)": [r.converged for r in ladder.rungs],
            "steps to stationary": [r.steps_to_stationary for r in ladder.rungs],
            "total steps": [r.total_steps for r in ladder.rungs],
            "wall s": ladder.wall_s, "n_runs": ladder.rungs[0].n_runs, "batch": ladder.rungs[0].batch}


def invariant_verdict(ladder, name: str, theorem: str, *, offset: bool = False, claim: str | None = None,
                      criteria=(), details=None, figures=()) -> Verdict:
    """The eta -> 0 limit ``c0`` of one invariant against the closed form.

    ``offset=False``: the claim is that SGD's limit is the closed form (every component
    within ``Z se(c0)``; paper "supports"). ``offset=True``: the suite's finding that it is
    not (some component beyond ``Z se(c0)``; paper "refutes"). Scalars show ``c0`` against the
    prediction with ``Z se(c0)``; matrices show the relative Frobenius offset against the
    relative precision ``Z |se(c0)| / |prediction|``. ``criteria``, ``details`` and
    ``figures`` are added to the verdict's own.
    """
    fit, target = ladder.fits[name], ladder.targets[name]
    what = name
    if offset:
        crit = offset_criteria(fit, target.numpy(), what)
    else:
        crit, _, _ = eta_limit_criteria(fit, target.numpy(), what)
    scalar = target.numel() == 1
    if scalar:
        predicted, measured, tol = float(target), float(fit.c0[0]), Z * float(fit.se0[0])
    else:
        predicted, measured, tol = 0.0, ladder.limit_error(name), ladder.precision(name, Z)
    claim = claim or (OFFSET_CLAIMS if offset else SGD_CLAIMS)[name]
    return Verdict(
        theorem, claim, symbolic=SYMBOLIC, predicted=predicted, measured=measured, tolerance=tol,
        tolerance_source=fit_source(fit, ladder.rungs[0].n_runs) + ("" if scalar else ", relative Frobenius"),
        comparison="none", paper="refutes" if offset else "supports",
        criteria=[converged_criterion(ladder), *crit, *criteria], figures=list(figures),
        details={**fit_details(ladder, name), **(details or {})})


def invariant_verdicts(ladder, names=tuple(SGD_CLAIMS), theorem: str = "12", offsets=()) -> list:
    """One :func:`invariant_verdict` per invariant in ``names``; those in ``offsets`` are
    verdicts on an offset the suite finds."""
    return [invariant_verdict(ladder, name, theorem, offset=name in offsets) for name in names]


def limit_difference_criteria(fit_a, fit_b, what: str) -> tuple:
    """Two independent ladders have the same eta -> 0 limit: every component of
    ``c0_a - c0_b`` within ``Z sqrt(se_a^2 + se_b^2)``, and both fits good.
    Returns ``(criteria, relative difference, relative bound)`` (relative to ``|c0_a|``)."""
    d = fit_a.c0 - fit_b.c0
    se = np.sqrt(fit_a.se0**2 + fit_b.se0**2)
    z = np.abs(d) / se
    j = int(np.argmax(z))
    norm = float(np.linalg.norm(fit_a.c0)) or 1.0
    crit = [Criterion.at_most(f"{what}: largest |c0_a - c0_b| / se over {d.size} components (component {j}: "
                              f"{fit_a.c0[j]:.5g} +- {fit_a.se0[j]:.2g} vs {fit_b.c0[j]:.5g} +- {fit_b.se0[j]:.2g})",
                              float(z[j]), Z, f"CLT, z = {Z:.2f}, independent ladders")]
    for label, f in (("a", fit_a), ("b", fit_b)):
        gof = chi2_bound(f.dof)
        crit.append(Criterion.at_most(f"{what}: chi^2 of fit {label} ({f.dof} dof)", f.chi2, gof.value, gof.source))
    return crit, float(np.linalg.norm(d)) / norm, Z * float(np.linalg.norm(se)) / norm
