r"""Where every numeric tolerance comes from: one z policy and named bound builders.

**The z policy.** A run of the suite must fail falsely with probability at most
``FALSE_FAILURE_BUDGET = 1e-3``. Every statistical verdict compares at most a few dozen
components (layers, neurons, rungs, matrix entries) with their predictions, and a run makes
fewer than ``MAX_COMPARISONS = 10^4`` such comparisons in all (172 verdicts in the quick budget, the largest
with tens of components). By a union bound, each single comparison may fail falsely with
probability ``P_COMPARISON = 1e-3 / 10^4 = 1e-7``: a two-sided normal interval at
``Z = 5.327`` for CLT means over many independent runs, and the Student-t quantile with
``n - 1`` degrees of freedom where the runs are few (:func:`t_quantile`).

Each builder returns a :class:`Bound`: the value and a source string generated from the
actual numbers, which the verdict shows in its tolerance-source column.

>>> round(Z, 3)
5.327
>>> b = clt(0.01)
>>> round(b.value, 5), b.source
(0.05327, 'CLT: z = 5.33 x standard error 0.01')
>>> round(t_quantile(64), 2), round(t_quantile(10**7), 2)
(6.02, 5.33)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

from core.errors import InputError
from numeric.float64 import EPS64  # one home, in the lower floor

FALSE_FAILURE_BUDGET = 1e-3  # per run of the whole suite
MAX_COMPARISONS = 10_000  # statistical comparisons per run, all verdicts together (union bound)
P_COMPARISON = FALSE_FAILURE_BUDGET / MAX_COMPARISONS  # 1e-7
Z = float(scipy.stats.norm.isf(P_COMPARISON / 2))  # two-sided normal quantile, 5.327


@dataclass(frozen=True)
class Bound:
    """A tolerance and where it comes from."""

    value: float
    source: str

    def __add__(self, other: "Bound") -> "Bound":
        return Bound(self.value + other.value, f"{self.source} + {other.source}")


def t_quantile(n: int, p: float = P_COMPARISON, comparisons: int = 1) -> float:
    """Two-sided Student-t factor for a mean over ``n`` independent samples, Bonferroni over
    ``comparisons`` components (each then at ``p / comparisons``)."""
    if int(n) != n or n < 2:
        raise InputError(f"a confidence interval needs at least 2 independent samples, got {n}")
    return float(scipy.stats.t.isf(p / (2.0 * comparisons), int(n) - 1))


def clt(stderr: float, what: str = "standard error") -> Bound:
    """``Z x stderr``: a CLT mean over many (>= 100) independent samples."""
    se = float(stderr)
    if not math.isfinite(se) or se < 0:
        raise InputError(f"a standard error must be finite and non-negative, got {stderr!r}")
    return Bound(Z * se, f"CLT: z = {Z:.2f} x {what} {se:.3g}")


def student_t(stderr: float, n: int, comparisons: int = 1, what: str = "standard error") -> Bound:
    """``t_{n-1} x stderr`` for a mean over ``n`` independent runs, Bonferroni over ``comparisons``."""
    t = t_quantile(n, comparisons=comparisons)
    se = float(stderr)
    tail = f", Bonferroni x{comparisons}" if comparisons > 1 else ""
    return Bound(t * se, f"Student-t ({n} runs{tail}): t = {t:.2f} x {what} {se:.3g}")


def roundoff(scale: float, n_ops: int, what: str = "float64 round-off") -> Bound:
    """``n_ops x eps64 x scale``: accumulated float64 round-off of ``n_ops`` operations on
    numbers of size ``scale`` (a worst-case linear accumulation, not a random walk)."""
    return Bound(float(n_ops) * EPS64 * float(scale), f"{what}: {n_ops} ops x eps x {float(scale):.3g}")


def chi2_bound(dof: int) -> Bound:
    """The chi^2 value a correct model exceeds with probability ``P_COMPARISON``."""
    q = float(scipy.stats.chi2.isf(P_COMPARISON, int(dof)))
    return Bound(q, f"chi^2 with {dof} dof at p = {P_COMPARISON:g}")


def _fit_against(fit, prediction) -> tuple:
    """``(prediction, |c0 - prediction| / se(c0), index of the largest, chi^2 bound)``."""
    pred = np.ravel(np.asarray(prediction, dtype=np.float64))
    if pred.shape != fit.c0.shape:
        raise InputError(f"prediction has {pred.size} components, the fit {fit.c0.size}")
    z_off = np.abs(fit.c0 - pred) / fit.se0
    return pred, z_off, int(np.argmax(z_off)), chi2_bound(fit.dof)


def eta_limit_criteria(fit, prediction, what: str) -> tuple:
    """Criteria that an eta -> 0 ladder fit (:func:`numeric.stationary.fit_eta_ladder`)
    meets the prediction: ``(criteria, relative_error, relative_bound)``.

    1. every component's offset ``|c0 - prediction|`` is within ``Z`` of its own standard
       error (a CLT bound from the rungs' independent runs; never from the measured error);
    2. the fit is good: chi^2 below its ``P_COMPARISON`` quantile, so a wrong model of the
       eta-dependence (a stall, a curve) fails instead of hiding in a wide error bar.

    The relative Frobenius error of ``c0`` and its ``Z``-standard-error counterpart are
    returned for the table.
    """
    from theorems.verdict import Criterion

    pred, z_off, worst, gof = _fit_against(fit, prediction)
    norm = float(np.linalg.norm(pred)) or 1.0
    rel = float(np.linalg.norm(fit.c0 - pred)) / norm
    rel_bound = Z * float(np.linalg.norm(fit.se0)) / norm
    order = "c0 + c1 eta" + (" + c2 eta^2" if fit.order == 2 else "")
    criteria = [
        Criterion.at_most(f"{what}: largest |c0 - prediction| / se(c0) over {pred.size} components "
                          f"(component {worst}: c0 = {fit.c0[worst]:.5g} +- {fit.se0[worst]:.2g}, "
                          f"c1 = {fit.c1[worst]:.4g})", float(z_off[worst]), Z,
                          f"WLS fit {order} over {fit.etas.size} rungs; CLT, z = {Z:.2f}"),
        Criterion.at_most(f"{what}: chi^2 of the fit ({fit.dof} dof)", fit.chi2, gof.value, gof.source),
    ]
    return criteria, rel, rel_bound


def offset_criteria(fit, prediction, what: str) -> list:
    """Criteria that an eta -> 0 ladder fit is *offset* from ``prediction`` (the converse of
    :func:`eta_limit_criteria`): some component's ``|c0 - prediction|`` is at least ``Z`` of its
    standard errors (a correct prediction gets there with probability at most ``P_COMPARISON``
    per component), and the fit is good (chi^2 below its ``P_COMPARISON`` quantile: the offset is
    not a curve the model missed).
    """
    from theorems.verdict import Criterion

    pred, z_off, j, gof = _fit_against(fit, prediction)
    return [Criterion.at_least(f"{what}: largest |c0 - prediction| / se(c0) over {pred.size} components (component "
                               f"{j}: c0 = {fit.c0[j]:.5g} +- {fit.se0[j]:.2g} vs {pred[j]:.5g}, c1 = {fit.c1[j]:.4g})",
                               float(z_off[j]), Z, f"an offset resolved at z = {Z:.2f} (CLT)"),
            Criterion.at_most(f"{what}: chi^2 of the fit ({fit.dof} dof)", fit.chi2, gof.value, gof.source)]
