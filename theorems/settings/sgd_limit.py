"""SGD's small-learning-rate limit against the entropic optimum (Theorem 12 companion): the
problems, the eta ladders and the run sizes by budget.

Every problem is a variation of one base problem, one thing changed at a time: a 2 x 2
teacher ``V``, anisotropic input covariance ``Sx`` (condition number 2) and anisotropic
label noise ``Se`` (condition number 4), width 2 = rank V, depth 2, batch 1. The label
noise always has determinant 0.64 (``Se = 0.8 R diag(sqrt k, 1/sqrt k) R^T``), so only its
shape changes with the condition number k.

Which verdict a problem gets follows from the derivation, not from a run
(:func:`expects_offset`): with isotropic label noise (``Se`` proportional to I) the SGD noise
covariance at the minimum manifold is proportional to the Hessian (``Sigma = 2 (Tr Se / dy) H``),
the slow flow is the entropy's gradient flow and the limit is the closed form ("limit = closed
form", paper="supports"); with generic anisotropic label noise ``Sigma`` and ``H`` do not
commute, the closed form is not a fixed point of the slow flow, the hidden basis rotates, and
the limit is offset from the closed form ("offset", paper="refutes"; docs/theory.md §6b).

>>> sorted(PROBLEMS)[:3], problem("base").hidden, problem("batch 4").batch
(['D=3', 'D=4', 'D=4, Se = I'], (2,), 4)
>>> expects_offset(problem("Se = I")), expects_offset(problem("base"))
(False, True)
"""

from __future__ import annotations

import numpy as np

from numeric.sgd_limit import LimitProblem, run_ladder, slow_flow_limit
from theorems.cache import shared_run

V_BASE = np.array([[1.0, 0.3], [-0.2, 0.8]])
SX_ANGLE, SE_ANGLE = 0.4, 1.1  # eigenbases of Sx and Se: generic, not aligned with V or each other
SE_SCALE = 0.8


def rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def covariance(cond: float, angle: float, scale: float = 1.0) -> np.ndarray:
    """``scale R(angle) diag(sqrt cond, 1/sqrt cond) R(angle)^T``: determinant scale^2."""
    R = rotation(angle)
    return scale * R @ np.diag([np.sqrt(cond), 1 / np.sqrt(cond)]) @ R.T


def make(name: str, cond_x: float = 2.0, cond_e: float = 4.0, hidden=(2,), batch: int = 1) -> LimitProblem:
    return LimitProblem(name, V_BASE, covariance(cond_x, SX_ANGLE), covariance(cond_e, SE_ANGLE, SE_SCALE),
                        tuple(hidden), batch)


PROBLEMS = {
    "base": dict(),
    "Se = I": dict(cond_e=1.0),
    "cond Se = 2": dict(cond_e=2.0),
    "cond Se = 10": dict(cond_e=10.0),
    "Sx = I": dict(cond_x=1.0),
    "width 3": dict(hidden=(3,)),
    "batch 4": dict(batch=4),
    "D=3": dict(hidden=(2, 2)),
    "D=4": dict(hidden=(2, 2, 2)),
    "D=4, Se = I": dict(hidden=(2, 2, 2), cond_e=1.0),
}


def theorem8_design(D: int) -> LimitProblem:
    """Theorem 8's embedded design at depth D (theorems.settings.platonic.design_for_depth),
    with square hidden layers (width 3 = rank; the ERRATA's depth-4 study found widths
    [4, 3, 4] and [3, 3, 3] to give the same numbers)."""
    from theorems.settings.platonic import design_for_depth

    e = design_for_depth(D)
    return LimitProblem(f"Theorem 8 design, D={D}", e.V, e.Sx, e.Se, (e.V.shape[0],) * (D - 1), 1, e.Z, e.M_I, e.M_O)


# Seed offsets of a problem's Philox streams. A net wider than the rank started from the same
# streams retraces the width-rank runs exactly: its extra hidden units decay, and SGD
# trajectories from different starts driven by the same noise synchronise (the far starts of
# the width-2 and the width-3 net, on one stream, gave stationary means equal to 6 digits). So that
# problem gets streams of its own, and its runs are independent of the base problem's.
STREAMS = {"width 3": 1_000_037}


def problem(name: str) -> LimitProblem:
    if name.startswith("Theorem 8 design, D="):
        return theorem8_design(int(name.rsplit("=", 1)[1]))
    return make(name, **PROBLEMS[name])


def isotropic_noise(p: LimitProblem) -> bool:
    """Label noise proportional to the identity."""
    Se = p.Se
    return bool(np.allclose(Se, np.trace(Se) / Se.shape[0] * np.eye(Se.shape[0]), rtol=0, atol=1e-12))


# The slow flow's rates are sums over ~10^4 float64 operations on O(1) numbers (Hessian, its
# derivative, eigendecomposition and Lyapunov solve of <= 16 x 16 matrices): round-off 2.2e-12.
FLOW_OPS = 10_000
FLOW_ROUNDOFF = FLOW_OPS * float(np.finfo(np.float64).eps)


def expects_offset(p: LimitProblem) -> bool:
    """Whether SGD's eta -> 0 limit is predicted off the closed form: the closed form is not a
    fixed point of the slow flow (numeric.sgd_limit.slow_flow_limit; deterministic, no SGD).
    Isotropic label noise never offsets it; generic anisotropic label noise does, but not
    every anisotropic problem (Se diagonal in the eigenbases of V = Sx = I keeps it)."""
    return bool(np.max(slow_flow_limit(p.at_rank()).closed_form_rates) > FLOW_ROUNDOFF)


# eta ladders, largest first. Batch B: the limit is governed by eta^2 / B (relaxation) and
# eta / B (fluctuations), so the batch-4 ladder sits at larger eta at equal cost.
FULL_ETAS = (0.004, 0.0028, 0.002, 0.0014, 0.001)
FULL_ETAS_BATCH4 = (0.006, 0.004, 0.0028, 0.002)
QUICK_ETAS = (0.004, 0.0028, 0.002)

# Run sizes (numeric.sgd_limit.run_rung; step counts in units of B / eta^2). The closed-form
# start carries the precision; the far start shows the same state is reached from far away.
FULL_RUNS = dict(closed_form=384, far=128)
QUICK_RUNS = dict(closed_form=512)
RUNG_OPTIONS = {"quick": dict(burn_in=3.0, block=0.25, window=2, average_blocks=4),
                "full": dict(burn_in=3.0, block=0.25, window=2, average_blocks=8)}
QUICK_PROBLEMS = ("base", "Se = I")  # the showcase (anisotropic Se) and its isotropic control


def etas_for(p: LimitProblem, budget: str) -> tuple:
    if budget == "quick":
        return QUICK_ETAS
    return FULL_ETAS_BATCH4 if p.batch == 4 else FULL_ETAS


@shared_run
def study_ladder(ctx, name: str, start: str = "closed_form"):
    """The eta ladder of problem ``name`` from ``start`` at the context's budget
    (:func:`numeric.sgd_limit.run_ladder`; shared by every verdict on that problem)."""
    p = problem(name)
    runs = (QUICK_RUNS if ctx.budget == "quick" else FULL_RUNS)[start]
    etas = etas_for(p, ctx.budget)
    advance = ctx.task(f"SGD limit ladder: {name} ({start})", len(etas))
    return run_ladder(p, etas, start=start, n_runs=runs, seed=ctx.seed + STREAMS.get(name, 0),
                      progress=lambda rung: advance(1),
                      **RUNG_OPTIONS[ctx.budget])
