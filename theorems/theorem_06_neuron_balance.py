r"""Theorem 6 (neuron balance). For every hidden neuron $j$ of a bias-free ReLU (or linear)
net, with incoming weights $w_j$ (row $j$ of $W_i$) and outgoing weights $u_j$ (column $j$ of
$W_{i+1}$), at every local minimum of the entropic loss with $\gamma = 0$:

$$\mathbb E|\nabla_{w_j} l_B|^2 = \mathbb E|\nabla_{u_j} l_B|^2 .$$

Derivation (symbolic/layer_symmetries.py, residual 0): the generator +1 on $w_j$, -1 on $u_j$
is a symmetry of $l$ (positive homogeneity of ReLU); the same two identities as Theorem 5
follow, with $g^TAg = |g_{w_j}|^2 - |g_{u_j}|^2$. For SGD at stationarity the law is exact
(minibatch gradients; with weight decay the coefficient is $4\gamma(1-\eta\gamma)/\eta$, the
paper's $\phi$ gives $4\gamma(1+\eta\gamma)/\eta$ - see Theorem 5).

Numeric witness: the same stationary 4-layer ReLU runs as Theorem 5 (shared through
theorems/settings/balance.py); every neuron of every hidden layer is checked; CI: Student-t
across 64 runs, each neuron one comparison at the suite's per-comparison probability.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from numeric.balance import neuron_laws, neuron_quad, per_step_identity_error
from numeric.deep_nets import MLPEnsemble
from symbolic.layer_symmetries import derivation_summary
from theorems.checks import check, pytest_cases, verifier
from theorems.settings.balance import P_LAW, RELU_DIMS, RELU_ETAS, gam0_activation, law_source, relu_balance_run
from theorems.verdict import Context, Criterion, Verdict, exact_identity_verdict

THEOREM = "6"
TITLE = "Neuron balance"

ROUNDOFF_TOL = 1e-10  # float64: a few hundred ops per identity, 1e-10 is a >1e4 ulp margin


@check(THEOREM)
def check_symbolic(ctx: Context) -> Verdict:
    """The neuron generator is a symmetry; the stationarity laws follow (SymPy, exact)."""
    s = derivation_summary()
    laws = [v for k, v in s.items() if k.startswith("neuron[")]
    res = [r for v in laws for r in v.residuals]
    return exact_identity_verdict(THEOREM, "neuron generator is a symmetry; stationarity laws (exact)",
                                  f"phi: G = {laws[0].phi_coefficient} Q; SGD: E G = {laws[0].sgd_coefficient} E Q",
                                  res)


@check(THEOREM, slow=True)
def check_neuron_per_step_identity(ctx: Context, dims=RELU_DIMS, activation="relu", seed=None, gam=0.2,
                                   eta=0.01) -> Verdict:
    """One torch SGD step changes every neuron's |w_j|^2 - |u_j|^2 by exactly eta^2 G - 4 eta gam(1 - eta gam) Q."""
    seed = ctx.seed if seed is None else seed
    net = MLPEnsemble(list(dims), activation=activation, n_runs=4, eta=eta, weight_decay=gam, seed=seed,
                      device=ctx.device)
    worst = max(per_step_identity_error(net, quad=neuron_quad(layer, j), n_steps=5)
                for layer in range(1, len(dims) - 1) for j in range(dims[layer]))
    return Verdict(THEOREM, f"per-neuron step identity dQ = eta^2 G - 4 eta gam(1-eta gam) Q, {activation} {list(dims)}",
                   symbolic="exact algebra + theta^T A g_B = 0", predicted=0.0, measured=worst,
                   tolerance=ROUNDOFF_TOL, tolerance_source="float64 round-off (1e4 ulp margin)")


@check(THEOREM)
def check_neuron_balance(ctx: Context, dims=RELU_DIMS, activation=None, n_runs: int = 64) -> list[Verdict]:
    """gam = 0: E|g_w|^2 = E|g_u|^2 for every hidden neuron at stationarity, at each eta of the ladder."""
    return [_neuron_balance(ctx, eta, dims, activation, n_runs)
            for eta in ctx.pick(RELU_ETAS["quick"], RELU_ETAS["full"])]


def _neuron_balance(ctx: Context, eta: float, dims, activation, n_runs: int) -> Verdict:
    _, res, first = relu_balance_run(ctx, eta, dims, activation, n_runs)
    activation = gam0_activation(ctx, activation)
    eta = res.eta  # the design eta, capped at a quarter of GD's stability limit
    hidden = len(dims) - 2
    n_neurons = sum(dims[1:-1])
    checks, start = [], []
    for layer in range(1, hidden + 1):
        checks += neuron_laws(res.per_run, layer, eta, 0.0, p=P_LAW)
        start += neuron_laws(first, layer, eta, 0.0, p=P_LAW)
    dead = [c.scale == 0 for c in checks]  # a dead ReLU unit: both sides 0 exactly
    live = [c for c, d in zip(checks, dead) if not d]
    source = law_source(n_runs, n_neurons)
    return Verdict(THEOREM, f"gam=0 neuron balance, all {n_neurons} hidden neurons, {activation} {list(dims)}, eta={eta:g}",
                   symbolic="E|g_w|^2 = E|g_u|^2 per neuron",
                   predicted=0.0, measured=max(c.relative_gap for c in live),
                   tolerance=max(c.relative_halfwidth for c in live), tolerance_source=source, paper="supports",
                   criteria=[Criterion.holds("every neuron's paired residual is inside its CI",
                                             all(c.consistent for c in checks), source),
                             Criterion.holds("the drift test declared the runs stationary", res.converged,
                                             "numeric.stationary drift test")],
                   details={"eta": eta, "dead_units": sum(dead),
                            "neurons_outside_ci": sum(not c.consistent for c in checks),
                            "relative_gap": [c.relative_gap for c in live],
                            "relative_ci": [c.relative_halfwidth for c in live],
                            "relative_gap_first_block_max": max(s.relative_gap for s in start if s.scale > 0)})


verify = verifier(THEOREM)
test_checks = pytest_cases(THEOREM)


@given(depth=st.integers(2, 4), width=st.integers(1, 5), d_in=st.integers(1, 4),
       activation=st.sampled_from(["relu", "linear"]), seed=st.integers(0, 2**16))
def test_neuron_identity_random_nets(depth, width, d_in, activation, seed):
    """Hypothesis: random architectures; the per-neuron law holds step by step in torch SGD."""
    dims = (d_in, *([width] * (depth - 1)), 2)
    v = check_neuron_per_step_identity(Context(), dims, activation, seed)
    assert v.passed, v.explain()
