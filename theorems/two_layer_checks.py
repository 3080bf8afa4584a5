"""Verdicts shared by the two-layer theorem modules (10, 12): an SGD eta ladder against the
closed form.

Not a theorem module (its name has no theorem_/lemma_/appendix_ prefix): ``python -m theorems``
and pytest do not collect it. The ladders themselves are in :mod:`theorems.settings.two_layer`.

Tolerance of every SGD verdict: the Richardson-extrapolated (eta -> 0) relative error must lie
within ``z * stderr`` (CLT across independent runs) plus the estimated O(eta^2) remainder
(linear minus quadratic extrapolation, itself with ``z * stderr``); z is the suite's policy
(:mod:`theorems.tolerances`: Z = 5.33, p = 1e-7 per comparison).
"""

from __future__ import annotations

from theorems.tolerances import Z
from theorems.verdict import Criterion, Verdict

SGD_CLAIMS = {  # invariant -> claim text
    "WtW": "W^T W at the SGD stationary state -> closed form (eta -> 0)",
    "UUt": "U U^T at the SGD stationary state -> closed form (eta -> 0)",
    "spectrum": "spectrum of W Sx W^T -> sqrt(b/a) S (eta -> 0)",
    "grad_moments": "per-layer E|grad l|^2 -> 4 sqrt(ab) Tr S each (equipartition, eta -> 0)",
}


def converged_criterion(*ladders) -> Criterion:
    """Every rung of every ladder reached the stationary regime before its step cap."""
    return Criterion.holds("the drift test declared every rung stationary (step cap not hit)",
                           all(r.converged for lad in ladders for r in lad.rungs), "numeric.stationary drift test")


def invariant_verdict(ladder, name: str, claim: str, theorem: str, criteria=(), details=None,
                      figures=()) -> Verdict:
    """The Richardson-extrapolated relative error of one invariant vs its derived bound; the
    ladder must have converged at every rung. ``criteria``, ``details`` and ``figures`` are
    added to the verdict's own."""
    single = [r.relative_error(name, ladder.targets[name]) for r in ladder.rungs]
    return Verdict(
        theorem, claim, symbolic="closed form (symbolic.two_layer.entropic_optimum)",
        predicted=0.0, measured=ladder.extrapolated_error(name), tolerance=ladder.tolerance(name, Z),
        tolerance_source=f"z={Z:.2f} x CLT stderr of the eta->0 extrapolation + estimated O(eta^2) remainder",
        criteria=[converged_criterion(ladder), *criteria], figures=list(figures),
        details={"etas": ladder.etas, "single-eta relative errors": single,
                 "extrapolated relative error": ladder.extrapolated_error(name),
                 "log-log slope of error vs eta": ladder.slope(name),
                 "converged (drift test)": [r.converged for r in ladder.rungs],
                 "steps to stationary": [r.steps_to_stationary for r in ladder.rungs],
                 "wall s": ladder.wall_s, "n_runs": ladder.rungs[0].n_runs, "batch": ladder.rungs[0].batch,
                 **(details or {})})


def invariant_verdicts(ladder, names=tuple(SGD_CLAIMS), theorem: str = "12") -> list:
    """One :func:`invariant_verdict` per invariant in ``names`` (claims from ``SGD_CLAIMS``)."""
    return [invariant_verdict(ladder, name, SGD_CLAIMS[name], theorem) for name in names]
