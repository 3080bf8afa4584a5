"""Checks shared by the two-layer theorem modules (10, 12): SGD ladders and their verdicts.

Not a theorem module (its name has no theorem_/lemma_/appendix_ prefix): ``python -m theorems``
and pytest do not collect it.

Tolerance of every SGD verdict: the Richardson-extrapolated (eta -> 0) relative error must lie
within ``z * stderr`` (CLT across independent runs) plus the estimated O(eta^2) remainder
(linear minus quadratic extrapolation, itself with ``z * stderr``); z = 6 makes a false failure
< 1e-6 by a union bound over <= 16 components and the two noise terms (2 * 16 * 2 Phi(-6) = 6e-8).
"""

from __future__ import annotations

from numeric.two_layer_witness import cached_ladder, default_etas, showcase_problem
from theorems.verdict import Context, Verdict

Z = 6.0  # union bound (module docstring): false-failure probability < 1e-6
SGD_CLAIMS = {  # invariant -> claim text
    "WtW": "W^T W at the SGD stationary state -> closed form (eta -> 0)",
    "UUt": "U U^T at the SGD stationary state -> closed form (eta -> 0)",
    "spectrum": "spectrum of W Sx W^T -> sqrt(b/a) S (eta -> 0)",
    "grad_moments": "per-layer E|grad l|^2 -> 4 sqrt(ab) Tr S each (equipartition, eta -> 0)",
}


def ladder_settings(ctx: Context) -> dict:
    """SGD ladder sizes by budget (quick: CI on 2 CPU cores; full: tighter verdicts)."""
    return dict(n_runs=ctx.pick(512, 4096), block_steps=ctx.pick(200, 600), window=3,
                average_blocks=ctx.pick(6, 12), device=ctx.device)


def invariant_verdicts(ladder, names=tuple(SGD_CLAIMS), claims=SGD_CLAIMS, theorem="12") -> list:
    """One Verdict per invariant: Richardson-extrapolated relative error vs its derived bound."""
    out = []
    for name in names:
        single = [r.relative_error(name, ladder.targets[name]) for r in ladder.rungs]
        out.append(Verdict(
            theorem, claims[name], symbolic="closed form (symbolic.two_layer.entropic_optimum)",
            predicted=0.0, measured=ladder.extrapolated_error(name), tolerance=ladder.tolerance(name, Z),
            tolerance_source=f"z={Z:g} x CLT stderr of the eta->0 extrapolation + estimated O(eta^2) remainder",
            details={"etas": ladder.etas, "single-eta relative errors": single,
                     "extrapolated relative error": ladder.extrapolated_error(name),
                     "log-log slope of error vs eta": ladder.slope(name),
                     "converged (drift test)": [r.converged for r in ladder.rungs],
                     "steps to stationary": [r.steps_to_stationary for r in ladder.rungs],
                     "wall s": ladder.wall_s, "n_runs": ladder.rungs[0].n_runs, "batch": ladder.rungs[0].batch}))
        if not all(r.converged for r in ladder.rungs):
            out[-1].passed = False
            out[-1].details["error"] = "step cap hit before the drift test passed"
    return out


def showcase_ladder(ctx: Context, batch: int = 1, **overrides):
    """The fixed random problem's eta ladder (shared with Theorem 10 through the cache).

    Width: 2 = rank V in the quick budget; 4 in the full one. Hidden units beyond the rank
    relax only through the entropy at a rate ~ 2 eta^2 a s_min / B (numeric.two_layer_witness.
    balance_relaxation_steps), which more than doubles the CI cost; the Hypothesis draws
    (width rank or rank + 1) and the full budget cover width > rank.
    """
    p = showcase_problem(ctx.seed, width=ctx.pick(2, 4))
    settings = {**ladder_settings(ctx), **overrides}
    return p, cached_ladder(p, default_etas(p), key=("showcase", ctx.seed, batch, ctx.budget, str(ctx.device)),
                            seed=ctx.seed, batch=batch, progress=ctx.task(f"SGD eta ladder, batch {batch}", None),
                            **settings)


