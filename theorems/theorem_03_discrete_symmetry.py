r"""Theorem 3: discrete orthogonal symmetries survive in the entropic loss.

Paper: if $O$ is orthogonal and $\ell(O\theta) = \ell(\theta)$ for all $\theta$ and data, then
$\phi(O\theta) = \phi(\theta)$: differentiating gives $g(O\theta) = O g(\theta)$, so
$\|\nabla\ell_\gamma\|$ is unchanged (and so is $\gamma\|\theta\|^2$).

Derivation (``symbolic.symmetry``): exact invariance of $\ell, \ell_\gamma, \phi_\eta$
($\gamma = 0$ and $\gamma > 0$) and $\phi_\Lambda$ for a hidden-neuron permutation and sign
flips of a tanh net. Suite finding: with a *generic matrix* learning rate $\Lambda$ the
permutation and a partial sign flip are broken too (the theorem needs the scalar $\eta$ -
or $O^\top\Lambda O = \Lambda$); the global sign flip $\theta\to-\theta$ commutes with every
$\Lambda$ and survives.

Numeric witness ("not broken spontaneously", ``numeric.two_layer_tanh.TwoLayerTanh``): SGD from
$\theta_0$ and from the neuron-permuted $P\theta_0$.
(a) Same minibatches: the SGD map is equivariant, so $\theta'_t = P\theta_t$; the measured gap
is float64 round-off, bounded by linear accumulation of one rounding per flop,
$T\cdot c\cdot u\cdot\max\|\theta\|$ (the SGD map contracts near the minimum, so no
amplification - also checked: the gap does not grow faster than linearly).
(b) Independent minibatches, R runs each: the permutation-sensitive observable
$f(\theta) = \|W_{1\cdot}\|^2 - \|W_{2\cdot}\|^2$ has the same ensemble mean for $\theta_t$ and
$P^{-1}\theta'_t$ (equivalent states; Student-t over the R runs at the suite's per-comparison
probability, ``theorems.tolerances``) while
$f(\theta_t)$ and $f(\theta'_t)$ differ by many standard errors (distinct states: neither
ensemble drifts to the other's basin), and the test losses agree within the CLT bound.
"""

from __future__ import annotations

import math

import torch

from numeric.two_layer_tanh import TwoLayerTanh
from symbolic.symmetry import SETTINGS
from theorems.checks import check, pytest_cases, verifier
from theorems.settings.symmetry import discrete_families, family, family_row
from theorems.tolerances import EPS64, student_t
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "3"
TITLE = "Discrete symmetries survive (no spontaneous breaking)"

SCALAR_LR = {"l": "l", "l_gam": "l + gam|theta|^2", "phi_eta": "phi (scalar eta, gam = 0)",
             "phi_eta_gam": "phi (scalar eta, gam > 0)"}
MATRIX_LR_KEEPS = {"sign flip"}  # theta -> -theta commutes with every Lam; the others need O^T Lam O = Lam
EXACT = "SymPy, exact (identity or rational witness)"


@check(THEOREM, cases=[dict(name=f.name) for f in discrete_families()])
def check_discrete_family(ctx: Context, name: str) -> Verdict:
    """A discrete orthogonal symmetry of l is kept by l_gam and phi (scalar eta, gam >= 0) (SymPy)."""
    row = family_row(ctx, name)
    lam_kept = name in MATRIX_LR_KEEPS
    return Verdict(THEOREM, f"{name}: kept by l, l_gam and phi (scalar eta, gam >= 0)",
                   symbolic=", ".join(f"{s}={'kept' if row[s] else 'broken'}" for s in SETTINGS),
                   residual="exact", paper="supports",
                   criteria=[*(Criterion.holds(f"{what} keeps it", row[s], EXACT) for s, what in SCALAR_LR.items()),
                             Criterion.holds(f"phi with a generic matrix Lam {'keeps' if lam_kept else 'breaks'} it",
                                             row["phi_Lam"] == lam_kept, EXACT)],
                   details={"phi with generic matrix Lam": "kept" if row["phi_Lam"] else "broken",
                            "note": family(name).note})


# -------------------------------------------------------------------------------- numeric
def _teacher(dim: int, hidden: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(hidden, dim, generator=g, dtype=torch.float64)
    W[0] *= 2.0  # neuron 0 clearly larger than neuron 1: permutation-distinct states
    W[1] *= 0.6
    a = torch.tensor([1.0, -0.8, 0.6][:hidden] + [0.5] * max(0, hidden - 3), dtype=torch.float64)
    return W, a


def _start(tW, ta, seed: int):
    """The teacher perturbed by 0.3 N(0, 1) (seeded): the common start of the runs."""
    g = torch.Generator().manual_seed(seed)
    W0 = tW + 0.3 * torch.randn(*tW.shape, generator=g, dtype=torch.float64)
    a0 = ta + 0.3 * torch.randn(*ta.shape, generator=g, dtype=torch.float64)
    return W0, a0


def _perm(hidden: int) -> torch.Tensor:
    p = torch.arange(hidden)
    p[0], p[1] = 1, 0  # swap neurons 0 and 1
    return p


@check(THEOREM)
def same_noise_equivariance(ctx: Context, dim: int = 3, hidden: int = 3) -> Verdict:
    """With the same minibatches SGD from P theta_0 stays at P theta_t (permutation equivariance)."""
    steps = ctx.pick(1500, 6000)
    tW, ta = _teacher(dim, hidden, ctx.seed)
    W0, a0 = _start(tW, ta, ctx.seed + 1)
    P = _perm(hidden)
    kw = dict(dim=dim, hidden=hidden, n_runs=8, eta=0.02, teacher_W=tW, teacher_a=ta, data_seed=ctx.seed + 7,
              device=ctx.device)
    A = TwoLayerTanh(**kw).init(W0, a0)
    B = TwoLayerTanh(**kw).init(W0[P], a0[P])
    gaps = []
    for _ in range(2):
        A.run(steps // 2)
        B.run(steps // 2)
        gap = torch.maximum((B.W - A.W[:, P]).abs().amax(dim=(-1, -2)), (B.a - A.a[:, P]).abs().amax(-1))
        gaps.append(float(gap.max()))
    size = float(torch.maximum(A.W.abs().amax(), A.a.abs().amax()))
    flops = 20 * (dim + 2) * A.batch  # per parameter per step, generous
    tol = steps * flops * EPS64 / 2 * max(size, 1.0)
    return Verdict(THEOREM, "same minibatches: theta'_t = P theta_t (SGD is permutation equivariant)",
                   predicted=0.0, measured=gaps[1], tolerance=tol,
                   tolerance_source="float64: one rounding per flop, linear accumulation over T steps",
                   criteria=[Criterion.at_most("gap at T: at most twice the gap at T/2 plus a round-off floor "
                                               "(linear accumulation, no amplification)", gaps[1],
                                               2.0 * gaps[0] + 1e3 * EPS64 * max(size, 1.0), "float64 round-off")],
                   details={"steps": steps, "gap at T/2": gaps[0], "gap at T": gaps[1], "max |theta|": size})


@check(THEOREM)
def independent_noise_equivalence(ctx: Context, dim: int = 3, hidden: int = 3) -> Verdict:
    """With independent minibatches the P-permuted start stays in a distinct state equivalent to the original."""
    steps = ctx.pick(1500, 6000)
    R = ctx.pick(48, 256)
    tW, ta = _teacher(dim, hidden, ctx.seed)
    W0, a0 = _start(tW, ta, ctx.seed + 2)
    P = _perm(hidden)
    kw = dict(dim=dim, hidden=hidden, n_runs=R, eta=0.05, noise=0.3, teacher_W=tW, teacher_a=ta, device=ctx.device)
    A = TwoLayerTanh(data_seed=ctx.seed + 11, **kw).init(W0, a0).run(steps)
    B = TwoLayerTanh(data_seed=ctx.seed + 12, **kw).init(W0[P], a0[P]).run(steps)

    def f(W):  # permutation-sensitive observable
        return W[:, 0].pow(2).sum(-1) - W[:, 1].pow(2).sum(-1)

    def mean_se(v):
        return float(v.mean()), float(v.std() / math.sqrt(v.numel()))

    ma, sa = mean_se(f(A.W))
    mb, sb = mean_se(f(B.W[:, torch.argsort(P)]))
    md, sd = mean_se(f(B.W))
    se_eq = math.hypot(sa, sb)
    se_dist = math.hypot(sa, sd)
    (la, sla), (lb, slb) = mean_se(A.population_loss()), mean_se(B.population_loss())
    # a difference of two independent R-run means: Student-t with R - 1 dof (the smaller ensemble's)
    eq, loss, dist = (student_t(s, R, what="standard error of the difference")
                      for s in (se_eq, math.hypot(sla, slb), se_dist))
    return Verdict(THEOREM, "independent minibatches: P-permuted start stays in the distinct, equivalent state",
                   predicted=0.0, measured=ma - mb, tolerance=eq.value, tolerance_source=eq.source, paper="supports",
                   criteria=[Criterion.at_most("|test loss A - test loss B| (equivalent states)", abs(la - lb),
                                               loss.value, loss.source),
                             Criterion.above("|f(theta) - f(theta')| (distinct states: no drift to the other basin)",
                                             abs(ma - md), dist.value, dist.source)],
                   details={"runs": R, "steps": steps, "f(theta) mean": ma, "f(P^-1 theta') mean": mb,
                            "f(theta') mean": md, "distinct gap / se": abs(ma - md) / se_dist,
                            "test loss A": la, "test loss B": lb, "loss se": math.hypot(sla, slb)})


verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)
