r"""Theorem 11 (polynomial nets). With an activation homogeneous of degree $\beta$
($s(cz) = c^\beta s(z)$, $c>0$; here $s(z) = z|z|^{\beta-1}$), at every local minimum of the
entropic loss with $\gamma = 0$, for consecutive layers $i, i+1$ separated by $s$:

$$\mathbb E|\nabla_{W_i} l_B|^2 = \beta\,\mathbb E|\nabla_{W_{i+1}} l_B|^2 ,$$

so gradient noise grows like $\beta^D$ towards the input (the paper's "gradient explosion").

Derivation (symbolic/layer_symmetries.py, residual 0): the generator is +1 on layer i and
$-\beta$ on layer i+1 (not -1: the suite checks that -1 is NOT a symmetry of a polynomial
net); then $g^TAg = |g_i|^2 - \beta|g_{i+1}|^2$ and the Theorem-4 law follows. Direction: the
layer BEFORE the activation carries $\beta$ times the gradient second moment of the layer after
(docs/theory.md §4 has it right). For SGD at stationarity the law is exact (minibatch gradients).

Numeric witness: a 2-layer polynomial net ($\beta = 2$) in a teacher-student task, 32 runs;
measured ratio $\mathbb E|g_1|^2/\mathbb E|g_2|^2$ with a Student-t CI (one comparison at the suite's
per-comparison probability) of the paired residual $G_1 - \beta G_2$ divided by $\mathbb E G_2$. The plain
layer balance ($\beta = 1$) is tested on the same runs and must be rejected.
"""

from __future__ import annotations

from numeric.balance import generator_law, mlp_stationary
from symbolic.layer_symmetries import derivation_summary
from theorems.checks import check, pytest_cases, verifier
from theorems.settings.balance import ETA_MARGIN, P_LAW, POLY, law_source, stationary_budget
from theorems.verdict import Context, Criterion, Verdict, exact_identity_verdict

THEOREM = "11"
TITLE = "Polynomial nets: gradient second moments scale by beta per layer"


@check(THEOREM)
def check_symbolic(ctx: Context) -> Verdict:
    """The generator (+1, -beta) is a symmetry of a beta = 2 net and (+1, -1) is not (SymPy)."""
    s = derivation_summary()
    law = s["poly"]
    res = [*law.residuals, s["poly_diff"]]
    wrong = s["poly_wrong_beta_invariance"]
    return exact_identity_verdict(
        THEOREM, "generator (+1, -beta) is a symmetry of a beta=2 net; (+1,-1) is not",
        f"g^T A g = |g_i|^2 - beta|g_i+1|^2; SGD: E G = {law.sgd_coefficient} E Q", res,
        what="invariance, phi and SGD residuals of (+1, -beta) simplify to 0",
        extra=(Criterion.holds("the (+1, -1) invariance residual is not 0", wrong != 0, "SymPy, exact"),),
        details={"(+1,-1) invariance residual": str(wrong)[:80]})


@check(THEOREM)
def check_ratio(ctx: Context, dims=POLY["dims"], eta=POLY["eta"], beta=POLY["beta"], seed=None) -> Verdict:
    """SGD at stationarity: E|g_1|^2 / E|g_2|^2 = beta for a polynomial net."""
    seed = ctx.seed if seed is None else seed
    _, res, first = mlp_stationary(tuple(dims), "poly", eta, 0.0, beta=beta, n_runs=32, seed=seed, p=P_LAW,
                                   eta_margin=ETA_MARGIN,
                                   teacher_scale=POLY["teacher_scale"], init_scale=POLY["init_scale"],
                                   device=str(ctx.device), **stationary_budget(ctx, (26, 120)))
    eta = res.eta  # capped at a quarter of GD's stability limit
    law = generator_law(res.per_run, [1.0, -beta], eta, 0.0, p=P_LAW)
    layer1 = generator_law(res.per_run, [1.0, -1.0], eta, 0.0, p=P_LAW)
    source = law_source(law.n_runs, 1, "paired residual G1 - beta G2, divided by E G2")
    G2 = float(res.mean["gsq"][1])
    ratio = beta + law.residual / G2
    ci = law.halfwidth / G2
    return Verdict(THEOREM, f"E|g_1|^2 / E|g_2|^2 = beta, poly beta={beta:g} {list(dims)}, eta={eta:g}",
                   symbolic="ratio = beta (SGD-exact at stationarity)", predicted=beta, measured=ratio,
                   tolerance=ci, tolerance_source=source,
                   paper="supports",
                   criteria=[Criterion.holds("the drift test declared the runs stationary", res.converged,
                                             "numeric.stationary drift test"),
                             Criterion.holds("the plain layer balance (beta = 1) is rejected on the same runs",
                                             not layer1.consistent, law_source(layer1.n_runs, 1))],
                   details={"beta=1 balance rejected": not layer1.consistent,
                            "beta=1 residual / CI": abs(layer1.residual) / layer1.halfwidth,
                            "ratio_first_block": float(first["gsq"][:, 0].mean() / first["gsq"][:, 1].mean()),
                            "steps_to_stationary": res.steps_to_stationary, "converged": res.converged})


verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)
