"""Two-layer linear nets (Theorems 10 and 12 at depth 2): the showcase problem, the SGD
ladder settings by budget, the data-balance problems and the shared eta ladder.

>>> p = showcase_problem(0)
>>> p.V.shape, p.width, data_balance_problem(0.5).Se.tolist()
((2, 3), 2, [[1.0, 0.0], [0.0, 0.5]])
"""

from __future__ import annotations

import numpy as np

from numeric.two_layer_witness import TwoLayerProblem, default_etas, eta_ladder, gd_stability_limit
from theorems.cache import shared_run

# label-noise balances rho of the data-balance sweep (paper Fig. 5-6), by budget
DATA_BALANCE_RHOS = {"quick": (0.3, 0.6, 1.0), "full": (0.2, 0.4, 0.7, 1.0)}

# The showcase is one fixed problem whatever the run's seed (the seed changes only the SGD
# noise): a verdict about one problem must hold for every seed.
SHOWCASE_SEED = 0

# What the suite finds on the showcase (anisotropic label noise, Se eigenvalues 0.95 and
# 3.15): the eta -> 0 limits of these invariants are off the closed form, resolved at every
# seed with good fits (W^T W ~0.35%, U U^T ~0.4%, spectrum ~0.15%, sharpness ~0.1% relative),
# while the gradient moments' equipartition holds. The same ladder on the showcase's V and Sx
# with isotropic Se of the same trace finds no offset (|c0 - closed form| <= 2.4 se(c0)).
SHOWCASE_OFFSETS = ("WtW", "UUt", "spectrum", "sharpness")

# eta_0 = KAPPA / T*: the ladder halves down from there. 0.1 / T* is 1.8% of gradient
# descent's stability limit on the showcase (gd_stability_limit: 0.361; T* = 15.7); 0.2 / T*
# is at most 3.5% of it for the data-balance problems (rho >= 0.2): far below the quarter the
# suite allows elsewhere. No run of the quick budget's seeds 0-3 diverged (a divergence raises, never passes).
SHOWCASE_KAPPA = 0.1
DATA_BALANCE_KAPPA = 0.2


def showcase_problem(seed: int = SHOWCASE_SEED, dx: int = 3, dy: int = 2, width: int = 2) -> TwoLayerProblem:
    """A fixed random problem (anisotropic Sx and Se, generic V) used by Theorems 10 and 12."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((dx, dx))
    B = rng.standard_normal((dy, dy))
    return TwoLayerProblem(V=rng.standard_normal((dy, dx)), Sx=A @ A.T / dx + 0.3 * np.eye(dx),
                           Se=B @ B.T / dy + 0.2 * np.eye(dy), width=width)


def ladder_settings(ctx) -> dict:
    """SGD ladder sizes by budget (quick: CI on 2 CPU cores; full: tighter verdicts).

    Blocks are at least half the predicted balance relaxation time (numeric.two_layer_witness.
    eta_ladder), so the trend drift test over 2 x 3 blocks spans three relaxation times and
    the 16 averaging blocks eight.
    """
    return dict(n_runs=ctx.pick(1024, 2048), block_steps=200, window=3, average_blocks=16, max_steps=50_000_000,
                drift_test="trend", device=ctx.device)


def showcase_etas(ctx, problem: TwoLayerProblem) -> list:
    """Quick: 3 rungs, 0.1/T* halved down to 0.025/T* (~1.6e-3), fitted linearly; full: 4
    rungs down to 0.0125/T* (~8e-4), fitted with an eta^2 term."""
    return default_etas(problem, SHOWCASE_KAPPA, ctx.pick(3, 4))


@shared_run
def showcase_ladder(ctx, batch: int = 1, **overrides):
    """The showcase problem's eta ladder, ``(problem, LadderResult)`` (shared by Theorems 10
    and 12); ``overrides`` replace :func:`ladder_settings` entries.

    Width 2 = rank V: hidden units beyond the rank relax only through the entropy at a rate
    ~ 2 eta^2 a s_min / B (numeric.two_layer_witness.balance_relaxation_steps), which more than
    doubles the cost of every rung.
    """
    p = showcase_problem()
    settings = {**ladder_settings(ctx), **overrides}
    return p, eta_ladder(p, showcase_etas(ctx, p), seed=ctx.seed, stream=batch, batch=batch,
                         progress=ctx.task(f"SGD eta ladder, batch {batch}", None), **settings)


def data_balance_problem(rho: float, width: int = 2) -> TwoLayerProblem:
    """Paper Fig. 5-6 set-up: 2-d labels, x ~ N(0, I_2), Se = diag(1, rho), V = I_2."""
    return TwoLayerProblem(V=np.eye(2), Sx=np.eye(2), Se=np.diag([1.0, rho]), width=width)


def data_balance_settings(ctx) -> dict:
    """SGD ladder sizes of the data-balance sweep by budget (blocks as in ladder_settings)."""
    return dict(n_runs=ctx.pick(512, 1024), block_steps=200, window=3, average_blocks=ctx.pick(12, 16),
                max_steps=50_000_000, drift_test="trend", device=ctx.device)


def data_balance_etas(ctx, problem: TwoLayerProblem) -> list:
    """0.2/T* halved: quick 3 rungs (to 0.05/T*, linear fit); full 4 (to 0.025/T*, eta^2 term)."""
    return default_etas(problem, DATA_BALANCE_KAPPA, ctx.pick(3, 4))


def stability_margin(problem: TwoLayerProblem, etas) -> float:
    """The largest eta of a ladder as a fraction of gradient descent's stability limit."""
    return max(etas) / gd_stability_limit(problem)
