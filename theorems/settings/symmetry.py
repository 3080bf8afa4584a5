"""Symmetries (Theorems 2, 3, 4, Lemma 1, Appendix B.1): the symmetry families and their exact
invariance rows, the master-balance net and its SGD runs, the two-layer problems whose orbits
are followed, and the scale-invariant SGD run.

>>> [f.name for f in discrete_families()]
['permutation', 'sign flip', 'partial sign flip']
>>> BALANCE_NET["dx"], tuple(neuron_rates(0).shape)
(6, (2,))
"""

from __future__ import annotations

import math

import sympy as sp
import torch

from numeric.normalised_linear import NormalisedLinear
from numeric.two_layer_linear import balance_witness, neuron_generator_diag, ratio_with_stderr
from symbolic.symmetry import SymmetryFamily, family_table, standard_families
from theorems.cache import shared_run


# ------------------------------------------------------------ symmetry families (Thms 2, 3)
def partial_sign_flip() -> SymmetryFamily:
    """Flip one of two tanh neurons: orthogonal, but not the global sign flip."""
    x, y = sp.symbols("x y", real=True)
    a1, w1, a2, w2 = sp.symbols("a1 w1 a2 w2", real=True)
    return SymmetryFamily("partial sign flip", "discrete", [a1, w1, a2, w2],
                          (a1 * sp.tanh(w1 * x) + a2 * sp.tanh(w2 * x) - y) ** 2,
                          lambda p: [-p[0], -p[1], p[2], p[3]], [], {}, "flip neuron 1 of two tanh neurons", "kept")


def discrete_families() -> list[SymmetryFamily]:
    """Theorem 3's families: the discrete standard families and the partial sign flip."""
    return [f for f in standard_families() if f.kind == "discrete"] + [partial_sign_flip()]


def family(name: str) -> SymmetryFamily:
    return next(f for f in standard_families() + [partial_sign_flip()] if f.name == name)


@shared_run
def family_row(ctx, name: str) -> dict:
    """The exact invariance row of one family: ``{"family", "kind", setting: kept?}`` for every
    setting of ``symbolic.symmetry.SETTINGS`` (SymPy; Theorems 2 and 3 share the rows)."""
    return family_table([family(name)])[0]


# ------------------------------------------------------------- master balance (Theorem 4)
# Many inputs, one output: the W side carries more gradient noise than the U side, so the
# balanced state sits far from theta^T A theta = 0 and the balance ratio is well resolved.
BALANCE_NET = dict(dx=6, dy=1, hidden=2, sx_scale=1.0, se_scale=1.0)
BALANCE_GAMMA = 0.5

# The symmetry finder's SGD witnesses (theorems/symmetries.py): learning rates stay a quarter of
# batch-B SGD's mean-square stability limit at the settled start (numeric.symmetry_finder.stable_start);
# that limit already lies 3-8x below gradient descent's for batch 1 on these models. Along a run the
# per-point limit falls far below the start's: a rare large input sample throws one run into a sharper
# region (measured, deep linear net, seed 7307: 0.019 at the sharpest point its 32 runs visited against
# 0.073 at the start). With half the limit one of those runs diverged (step 799; 1 of the 40 seeds
# 7300-7339); with a quarter none of the 120 seeds 7300-7419 did.
SGD_STABILITY_MARGIN = 4.0


def balance_etas(ctx) -> tuple:
    """The eta ladder of the stationary balance ratio, by budget."""
    return ctx.pick((0.01, 0.02, 0.03), (0.005, 0.01, 0.015, 0.02, 0.025))


def neuron_rates(seed: int) -> torch.Tensor:
    """A neuron-rescaling generator: neuron 1 at rate 1, neuron 2 at a seeded rate in [0.3, 0.7]."""
    g = torch.Generator().manual_seed(seed + 101)
    return torch.tensor([1.0, 0.3 + 0.4 * float(torch.rand(1, generator=g, dtype=torch.float64))], dtype=torch.float64)


@shared_run
def balance_run(ctx, eta: float, gamma: float, seed_offset: int, steps: int, burn_in: int, n_runs: int,
                activation: str = "linear") -> dict:
    """SGD on :data:`BALANCE_NET` with the generator :func:`neuron_rates`: per-run time averages
    of ``g^T A g`` and ``theta^T A theta`` (``numeric.two_layer_linear.balance_witness``); for
    ``gamma > 0`` also ``ratio = eta E[gAg] / (4 gam E[tAt])`` and its delta-method ``ratio_se``."""
    w = balance_witness(eta, gamma, neuron_rates(ctx.seed), steps=steps, burn_in=burn_in, n_runs=n_runs,
                        seed=ctx.seed + seed_offset, device=ctx.device, activation=activation, **BALANCE_NET)
    if gamma > 0:
        w["ratio"], w["ratio_se"] = ratio_with_stderr(eta * w["gAg_runs"], 4 * gamma * w["tAt_runs"])
    return w


def ladder_run(ctx, k: int, eta: float) -> dict:
    """Rung ``k`` of the eta ladder (seed offset k); burn-in 10 relaxation times of the orbit
    coordinate, which relaxes at rate 4 eta gam per step."""
    gamma = BALANCE_GAMMA
    return balance_run(ctx, eta, gamma, k, steps=ctx.pick(2500, 10000), burn_in=int(10 / (4 * eta * max(gamma, 0.05))),
                       n_runs=ctx.pick(48, 256))


def orbit_state(seed: int, n_data: int = 48):
    """A fixed two-layer linear state on a finite data set and a neuron-rescaling generator:
    ``(theta, a, per-sample loss, X, Y)`` with theta on the flat order ``[W, U]``."""
    g = torch.Generator().manual_seed(seed + 7)
    dx, h, dy = 3, 3, 2
    X = torch.randn(n_data, dx, generator=g, dtype=torch.float64)
    V = torch.randn(dy, dx, generator=g, dtype=torch.float64)
    Y = X @ V.T + 0.5 * torch.randn(n_data, dy, generator=g, dtype=torch.float64)
    W = torch.randn(h, dx, generator=g, dtype=torch.float64)
    U = torch.randn(dy, h, generator=g, dtype=torch.float64)
    theta = torch.cat([W.reshape(-1), U.reshape(-1)])
    a = neuron_generator_diag(torch.tensor([1.0, -0.7, 0.4], dtype=torch.float64), dy, dx)

    def loss(th, x, y):
        Wm, Um = th[: dx * h].reshape(h, dx), th[dx * h:].reshape(dy, h)
        return (Um @ (Wm @ x) - y).pow(2).sum()

    return theta, a, loss, X, Y


# ---------------------------------------------------------------- sharpness lemma (Lemma 1)
def two_layer_population_problem(seed: int, dx: int = 3, h: int = 3, dy: int = 2):
    """``(U, W, V, Sx, Se)``: a seeded two-layer linear net on an anisotropic Gaussian problem."""
    g = torch.Generator().manual_seed(seed + 17)
    f64 = dict(generator=g, dtype=torch.float64)
    B = torch.randn(dx, dx, **f64)
    Sx = B @ B.T / dx + 0.3 * torch.eye(dx, dtype=torch.float64)
    Se = 0.25 * torch.eye(dy, dtype=torch.float64)
    V = torch.randn(dy, dx, **f64)
    W = torch.randn(h, dx, **f64) / math.sqrt(dx)
    U = torch.randn(dy, h, **f64) / math.sqrt(h)
    return U, W, V, Sx, Se


# --------------------------------------------------------------- scale invariance (App. B.1)
@shared_run
def scale_invariant_run(ctx, steps: int | None = None, n_runs: int | None = None, dim: int = 4, eta: float = 0.2):
    """Scale-invariant SGD without weight decay: ``(net, theta_0, per-step records)``.

    It starts near the learned direction (spread 0.2): the flattening is then the norm growth
    alone, ``T(theta) = T(theta_hat) / |theta|^2`` with ``T(theta_hat) > 0`` near the minimum."""
    steps = ctx.pick(1500, 10000) if steps is None else steps
    R = ctx.pick(32, 128) if n_runs is None else n_runs
    net = NormalisedLinear(dim=dim, n_runs=R, eta=eta, batch=1, noise=0.5, seed=ctx.seed, init_spread=0.2,
                           device=ctx.device)
    th0 = net.theta.clone()
    rec = net.run(steps, progress=ctx.task("B.1: scale-invariant SGD", steps))
    return net, th0, rec
