"""Tests of the symmetry finder: numeric/symmetry_finder.py (search, classification, orbits, SGD
balance laws), symbolic/symmetry_check.py (the exact algebra) and theorems/symmetries.py (the
entry point and its verdicts).

Known answers (derivations in numeric.symmetry_finder.examples): bias-free ReLU MLP, one
rescaling per hidden neuron; deep linear net, GL(h_i) per hidden layer; self-attention, GL(d_k)
on (W_Q, W_K); normalisations, the scaling (and the rotations that commute with the norm);
tanh MLP with biases, nothing. Each is checked by dimension, split and span (principal angles
against the known basis, tolerance Wedin's bound from the derived rank threshold).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InputError
from numeric.strategies import dims
from numeric.symmetry_finder import (MLP, Problem, default_burn_in, split_parts, orthonormal_span, echelon_basis,
                                     examples, find_symmetries, is_semidefinite, kept_orbit_starts, mode_action,
                                     rational_basis,
                                     sgd_balance, stable_start, subspace_angle, teacher_sampler, verify_orbits)
from symbolic.layer_symmetries import derive_balance_law, mlp_loss
from symbolic.symmetry_check import block_generator, exact_algebra, is_symmetry_exact, relu_gains
from theorems import symmetries as cli
from theorems.tolerances import P_COMPARISON
from theorems.verdict import Context

EXAMPLES = examples()
_CACHE: dict = {}


def algebra(name: str):
    """The finder's algebra of a known model (seed 0), computed once per test session."""
    if name not in _CACHE:
        _CACHE[name] = find_symmetries(EXAMPLES[name].problem(0), seed=0)
    return _CACHE[name]


def _span_bound(alg) -> float:
    return max(alg.span_error_bound, 1e-14)


def _mlp_problem(dims_, activation="linear", bias=False, seed=0):
    torch.manual_seed(seed)
    model = MLP(dims_, activation, bias).to(torch.float64)
    return Problem.from_module(model, teacher_sampler(MLP(dims_, activation, bias), (dims_[0],), seed=seed),
                               name=f"{activation} {dims_}")


# ================================================================================ known answers
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_known_model_dimension_split_and_span(name):
    ex, alg = EXAMPLES[name], algebra(name)
    assert (alg.dim, alg.dim_symmetric, alg.dim_antisymmetric) == (
        ex.expected_dim, ex.expected_symmetric, ex.expected_antisymmetric), alg.summary()
    known = ex.known(alg.problem)
    kb = orthonormal_span(known) if known.shape[0] else known
    ks, ka, _, _ = split_parts(kb, 0.0, alg.problem) if kb.shape[0] else (kb, kb, 0, 0)
    bound = _span_bound(alg)
    assert subspace_angle(alg.basis, kb) <= bound
    assert subspace_angle(alg.symmetric, ks) <= bound
    assert subspace_angle(alg.antisymmetric, ka) <= bound
    # a clear gap: the zero singular values sit at round-off, the others far above the floor
    assert alg.null.largest_zero <= alg.null.threshold < alg.null.nonzero_floor <= alg.null.smallest_nonzero
    assert alg.n_rows >= 3 * alg.ansatz.n_unknowns and alg.held_out_ratio <= 1.0


def test_basis_is_frobenius_orthonormal_and_every_element_annihilates_fresh_rows():
    alg = algebra("deep_linear")
    B = alg.basis.reshape(alg.dim, -1)
    assert np.abs(B @ B.T - np.eye(alg.dim)).max() < 1e-12
    prob = alg.problem
    gen = torch.Generator().manual_seed(99)
    th = prob.random_thetas(16, gen)
    batch = tuple(t.reshape((16, 1) + tuple(t.shape[1:])) for t in prob.sample(16, gen))
    g = prob.per_sample_grads(th, batch)[:, 0]
    cross = torch.einsum("rp,kpq,rq->kr", g, torch.as_tensor(alg.basis), th)
    assert float(cross.abs().max()) <= 1e-12 * float(g.norm(dim=-1).max() * th.norm(dim=-1).max())


def test_closure_under_transposition():
    assert algebra("deep_linear").closed_under_transpose and algebra("self_attention").closed_under_transpose
    ln = algebra("layer_norm")  # W1 -> W1 + 1 w^T W1 is a symmetry, its transpose w 1^T is not
    assert not ln.closed_under_transpose
    assert ln.dim - ln.dim_symmetric - ln.dim_antisymmetric == 4


def test_readable_basis_is_the_neuron_rescalings():
    alg = algebra("relu_mlp")
    R = alg.readable("symmetric")
    known = EXAMPLES["relu_mlp"].known(alg.problem)
    # each readable element is exactly one neuron rescaling (up to sign)
    for A in R:
        assert min(min(np.abs(A - K).max(), np.abs(A + K).max()) for K in known) < 1e-12
    with pytest.raises(InputError, match="part must be"):
        alg.readable("diagonal")


@given(hidden=st.lists(dims(1, 3), min_size=1, max_size=2), d_in=dims(2, 3), d_out=dims(2, 3))
def test_deep_linear_block_algebra_is_gl_per_hidden_layer(hidden, d_in, d_out):
    alg = find_symmetries(_mlp_problem((d_in, *hidden, d_out), "linear"), seed=1)
    assert alg.dim == sum(h * h for h in hidden)
    assert alg.dim_symmetric == sum(h * (h + 1) // 2 for h in hidden)


@given(hidden=st.lists(dims(1, 3), min_size=1, max_size=2), d_in=dims(2, 3), d_out=dims(1, 2))
def test_relu_algebra_is_one_rescaling_per_hidden_neuron(hidden, d_in, d_out):
    alg = find_symmetries(_mlp_problem((d_in, *hidden, d_out), "relu"), seed=2)
    assert (alg.dim, alg.dim_symmetric) == (sum(hidden), sum(hidden))


# ================================================================= what the block ansatz misses
@pytest.mark.parametrize("h", [2, 3])
def test_full_ansatz_finds_the_cross_tensor_shears_of_a_scalar_output_linear_net(h):
    """f = w2^T W1 x: delta W1 = [S_1 w2, ..., S_d w2] with S_j antisymmetric keeps f (w2^T S w2 = 0):
    d h (h-1)/2 shears on top of GL(h), outside the block ansatz."""
    d = 2
    prob = _mlp_problem((d, h, 1), "linear")
    full, block = find_symmetries(prob, ansatz="full", seed=0), find_symmetries(prob, seed=0)
    assert block.dim == h * h
    assert full.dim == h * h + d * h * (h - 1) // 2
    F = full.basis.reshape(full.dim, -1)
    B = block.basis.reshape(block.dim, -1)
    assert np.abs(B - (B @ F.T) @ F).max() < 1e-10  # the block algebra lies inside the full one


def test_full_ansatz_on_layer_norm_finds_shifts_by_any_linear_function_of_theta():
    alg = find_symmetries(EXAMPLES["layer_norm"].problem(0), ansatz="full", seed=0)
    assert alg.dim == 4 * 18 + 2 * 18 + 1 + 1  # W1 + 1 w(theta)^T, W2 + u(theta) 1^T, scaling, rotation


def test_full_ansatz_agrees_with_the_block_ansatz_on_self_attention():
    fa = find_symmetries(EXAMPLES["self_attention"].problem(0), ansatz="full", seed=0)
    assert subspace_angle(fa.basis, algebra("self_attention").basis) < 1e-10


def test_too_few_parameter_draws_leave_spurious_directions_that_fresh_rows_catch():
    """8 samples per theta: a linear net's gradient is linear in x, so 8 rows at one theta span
    only d of them; the first null space is too big, fresh rows reject it, more rows fix it."""
    prob = _mlp_problem((2, 2, 1), "linear")
    alg = find_symmetries(prob, ansatz="full", rows_per_theta=8, seed=0)
    assert alg.dim == 6
    assert alg.n_rows > 3 * alg.ansatz.n_unknowns  # the rows were enlarged


def test_an_approximate_symmetry_is_refused_for_want_of_a_gap():
    """theta^T x / sqrt(|theta|^2 + eps) is scale invariant only up to eps / |theta|^2 ~ 1e-10:
    a singular value between the round-off threshold and the non-zero floor."""

    def loss(p, x, y):
        th = p["theta"]
        return (th @ x / torch.sqrt(th @ th + 1e-10) - y) ** 2

    def sampler(n, gen):
        x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
        return x, x[:, 0] + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)

    prob = Problem(loss, {"theta": torch.ones(4)}, sampler)
    with pytest.raises(InputError, match="no clear gap"):
        find_symmetries(prob)


# ============================================================================ orbit verification
@pytest.mark.parametrize("name", [n for n in EXAMPLES if EXAMPLES[n].expected_dim])
def test_loss_is_constant_along_every_orbit_and_the_tolerance_is_not_vacuous(name):
    orb = verify_orbits(algebra(name), seed=3)
    assert orb.max_ratio <= 1.0, orb.per_generator
    assert orb.control_ratio > 1e3  # a non-symmetry moves the loss by many round-off bounds


# ============================================================================= exact (SymPy)
@pytest.mark.parametrize("act", ["linear", "relu"])
def test_finder_matches_the_exact_sympy_algebra(act):
    net = mlp_loss((2, 2, 2), act)
    binary = relu_gains(net) if act == "relu" else []
    exact = exact_algebra(net.loss, net.theta, [W.shape for W in net.layers], binary=binary)
    assert len(exact) == (4 if act == "linear" else 2)
    alg = find_symmetries(_mlp_problem((2, 2, 2), act), seed=0)
    E = np.array([np.array(M.tolist(), dtype=float) for M in exact])
    assert subspace_angle(alg.basis, orthonormal_span(E)) <= _span_bound(alg)
    rat = rational_basis(alg)
    assert rat is not None and len(rat) == alg.dim
    for R in rat:
        assert is_symmetry_exact(net.loss, net.theta, sp.Matrix(R), binary)
    sym = [A for A in (sp.Matrix(R) for R in rat) if A == A.T]
    assert sym and derive_balance_law(net, sym[0]).sgd_residual == 0  # the law's one-step identity, exactly


def test_exact_check_refutes_a_non_symmetry_and_the_ansatz_has_the_finders_redundancy():
    net = mlp_loss((2, 2, 2), "relu")
    assert not is_symmetry_exact(net.loss, net.theta, sp.diag(1, 1, 0, 0, 1, 0, 1, 0), relu_gains(net))
    A, cs = block_generator([(2, 2), (2, 2)])
    assert A.shape == (8, 8) and len(cs) == 16
    vecs = sp.Matrix([[sp.diff(a, c) for a in A] for c in cs])  # rank 14: L = I and R = I act alike per tensor
    assert vecs.rank() == 14


def test_echelon_basis_snaps_only_within_round_off():
    A = np.zeros((1, 2, 2))
    A[0, 0, 0], A[0, 1, 1] = 1.0, 1.0 / 3.0 + 1e-4  # 1e-4 off a small fraction: not snapped
    basis, exact = echelon_basis(A, 1e-14)
    assert exact is None and abs(basis[0, 1, 1] - (1 / 3 + 1e-4)) < 1e-12
    A[0, 1, 1] = 1.0 / 3.0 + 1e-17
    basis, exact = echelon_basis(A, 1e-14)
    assert exact is not None and str(exact[0][1][1]) == "1/3"


# ============================================================================ SGD balance laws
def test_sgd_balance_law_deep_linear_with_decay():
    alg = algebra("deep_linear")
    res = sgd_balance(alg.problem, alg.readable("symmetric"), eta=0.05, gamma=0.05, steps=400, burn_in=600, n_runs=16,
                      seed=5, p_fail=P_COMPARISON)
    verdicts = cli.law_verdicts(res)
    assert res.consistent and res.max_cross_ratio < 1e-10  # |g^T A theta| / (|g| |A theta|): round-off
    assert all(v.passed for v in verdicts), [(v.residual, v.bound) for v in verdicts]
    # the exact finite-window identity: per run, LHS - RHS = (Q_T - Q_0) / (eta T)
    assert np.allclose((res.lhs_runs - res.rhs_runs).mean(-1), res.drift, rtol=1e-8, atol=1e-12)


def test_sgd_check_has_power_against_a_generator_that_is_not_a_symmetry():
    alg = algebra("deep_linear")
    prob = alg.problem
    fake = mode_action(prob, {"layers.0.weight": {0: np.eye(3)}})  # scales W1 alone: not a symmetry
    res = sgd_balance(prob, fake[None], eta=0.05, gamma=0.05, steps=150, burn_in=100, n_runs=8, seed=0, p_fail=P_COMPARISON)
    assert res.max_cross_ratio > 1e-3 and not res.consistent
    assert abs(res.cross_bias[0]) > res.laws[0].halfwidth  # the criterion asks for <= a tenth of it


def test_semidefinite_generators_are_skipped_at_zero_decay():
    alg = algebra("normalised_linear")
    assert is_semidefinite(alg.readable("symmetric")[0])
    rep = cli.run_sgd(alg.problem, alg, eta=0.05, gamma=0.0, steps=10)
    assert rep.result is None and 0 in rep.skipped
    assert not is_semidefinite(algebra("deep_linear").readable("symmetric")[0] + 0)


def test_law_verdict_rules():
    """A unit that weight decay prunes balances no gradient noise: its law cannot be resolved,
    so the verdict rests on the exact decay identity of Q instead (ratio <= 1); a live
    generator passes when its residual lies within its interval; a report needs one resolved generator."""
    v = cli.LawVerdict(0, lhs=0.0, rhs=1e-6, residual=-1e-6, bound=1e-7, scale=1e-12, t=5.0, decay_ratio=0.3)
    assert v.inactive and v.passed
    assert not cli.LawVerdict(0, 0.0, 1e-6, -1e-6, 1e-7, 1e-12, 5.0, decay_ratio=2.0).passed
    live = cli.LawVerdict(0, lhs=1.0, rhs=1.0, residual=1e-3, bound=1e-2, scale=1.0, t=5.0)
    assert not live.inactive and live.passed
    wide = cli.LawVerdict(0, lhs=1.0, rhs=1.0, residual=1e-3, bound=0.8, scale=1.0, t=5.0)
    assert not wide.resolved and wide.passed  # an interval wider than half the noise decides nothing by itself
    assert not cli.LawVerdict(0, 1.0, 1.0, 0.9, 0.8, 1.0, 5.0).passed  # but a residual outside it fails
    dying = cli.LawVerdict(0, lhs=3e-14, rhs=8e-10, residual=-8e-10, bound=3.6e-13, scale=4e-14, t=7.4,
                           decay_ratio=0.5)  # measured: relu_mlp_bias, seed 5, a unit that decay prunes
    assert dying.inactive and dying.passed


def test_a_report_of_unresolved_laws_only_fails():
    from types import SimpleNamespace

    wide = cli.LawVerdict(0, lhs=1.0, rhs=1.0, residual=1e-3, bound=0.8, scale=1.0, t=5.0)
    live = cli.LawVerdict(1, lhs=1.0, rhs=1.0, residual=1e-3, bound=1e-2, scale=1.0, t=5.0)
    result = SimpleNamespace(cross_bias=np.zeros(2))
    assert cli.SGDReport(result, [wide, live], [0, 1]).passed
    assert not cli.SGDReport(result, [wide, wide], [0, 1]).passed


def test_problem_accepts_a_list_of_arrays_and_scalar_parameters():
    prob = Problem(lambda p, x, y: (p["p0"] * (p["p1"] @ x) - y) ** 2, [np.array(0.5), np.ones(2)],
                   lambda n, g: (torch.randn(n, 2, generator=g, dtype=torch.float64),
                                 torch.randn(n, generator=g, dtype=torch.float64)))
    alg = find_symmetries(prob, seed=0)  # f = c (v . x): c -> e^lam c, v -> e^-lam v
    assert (alg.dim, alg.dim_symmetric) == (1, 1)
    A = alg.readable("symmetric")[0]
    assert np.allclose(np.diag(A), [1, -1, -1]) or np.allclose(np.diag(A), [-1, 1, 1])


@pytest.mark.slow
@pytest.mark.parametrize("name,key", [(n, k) for n, ex in EXAMPLES.items() for k in ("sgd", "sgd_zero_decay")
                                      if getattr(ex, k) is not None])
def test_sgd_balance_law_of_every_example(name, key):
    alg = algebra(name)
    rep = cli.run_sgd(alg.problem, alg, seed=2, **getattr(EXAMPLES[name], key))
    assert rep.result is not None and rep.passed, [(v.residual, v.bound) for v in rep.laws]


# ================================================================================ verdicts / CLI
def test_finder_verdicts_without_sgd_all_pass():
    ctx = Context(budget="quick", seed=0)
    vs = cli.finder_verdicts(ctx, names=["layer_norm", "tanh_mlp"], sgd=False)
    failed = [v.explain() for v in vs if not v.passed]
    assert not failed, "\n".join(failed)
    assert len(vs) == 2 + 1 + 2 + 2  # dimension x2, orbit (layer_norm), exact x2, full ansatz x2


@pytest.mark.slow
def test_finder_verdicts_quick_budget_all_pass(ctx):
    vs = cli.finder_verdicts(ctx)
    failed = [v.explain() for v in vs if not v.passed]
    assert not failed, "\n".join(failed)


FACTORY = """
import torch

def make_model(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Linear(2, 2, bias=False)).double()

    def sampler(n, gen):
        x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        return x, x[:, :2] + 0.5 * torch.randn(n, 2, generator=gen, dtype=torch.float64)

    return model, sampler
"""


def test_cli_on_a_factory_file(tmp_path, capsys):
    f = tmp_path / "model.py"
    f.write_text(textwrap.dedent(FACTORY))
    assert cli.main([f"{f}:make_model", "--no-sgd"]) == 0
    out = capsys.readouterr().out
    assert "algebra: dim 4 = symmetric 3" in out and "antisymmetric 1" in out
    assert cli.main([f"{f}:make_model", "--steps", "200", "--burn-in", "200", "--runs", "8", "--json"]) in (0, 1)
    assert '"dim": 4' in capsys.readouterr().out


SCALE_FACTORY = """
import torch
from numeric.symmetry_finder import Problem

def make():
    def loss(p, x, y):
        return (p["theta"] @ x / p["theta"].norm() - y) ** 2

    def sampler(n, gen):
        x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        return x, x[:, 0] + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)

    return Problem(loss, {"theta": torch.tensor([1.0, 0.5, -0.2], dtype=torch.float64)}, sampler, name="scale")
"""


def test_cli_zero_decay_skips_a_semidefinite_generator(tmp_path, capsys):
    f = tmp_path / "scale.py"
    f.write_text(textwrap.dedent(SCALE_FACTORY))
    assert cli.main([f"{f}:make", "--gamma", "0", "--steps", "20", "--burn-in", "0", "--runs", "4"]) == 0
    out = capsys.readouterr().out
    assert "algebra: dim 1 = symmetric 1" in out and "not run (semidefinite" in out
    assert cli.main([f"{f}:make", "--gamma", "-1", "--no-sgd"]) == 2


def test_cli_list_examples_without_sgd(capsys):
    assert cli.main(["--list-examples", "--examples", "tanh_mlp,self_attention", "--no-sgd"]) == 0
    out = capsys.readouterr().out
    assert "self_attention" in out and "PASS" in out


def test_cli_runs_a_normalisation_model_uncapped(capsys):
    """The known RMS-normalised net runs its law at the design eta (its config says why), and a
    user's model may ask for the same: capped, this one would be refused (see above)."""
    assert cli.main(["--list-examples", "--examples", "rms_norm"]) == 0
    out = capsys.readouterr().out
    assert "eta = 0.05 uncapped" in out and "FAIL" not in out


@pytest.mark.parametrize("argv,msg", [
    (["nowhere.py:make"], "no such file"),
    (["model_without_colon"], "expected path/to/model.py:factory"),
    ([], "give either"),
    (["--list-examples", "--examples", "resnet"], "unknown example"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, msg, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_load_problem_rejects_bad_factories(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def nothing():\n    return 3\n\ndef boom():\n    raise RuntimeError('no data')\n")
    with pytest.raises(InputError, match="defines no callable"):
        cli.load_problem(f"{f}:make_model")
    with pytest.raises(InputError, match="must return"):
        cli.load_problem(f"{f}:nothing")
    with pytest.raises(InputError, match="no data"):
        cli.load_problem(f"{f}:boom")


# ===================================================================================== bad input
def _sampler(n, gen):
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return x, x.sum(-1, keepdim=True)


def _loss(p, x, y):
    return ((p["W"] @ x).sum() - y.sum()) ** 2


def test_problem_rejects_bad_input():
    W = torch.ones(1, 2)
    with pytest.raises(InputError, match="has no parameters"):
        Problem(_loss, {}, _sampler)
    with pytest.raises(InputError, match="NaN or infinite"):
        Problem(_loss, {"W": torch.tensor([[float("nan"), 1.0]])}, _sampler)
    with pytest.raises(InputError, match="real floating point"):
        Problem(_loss, {"W": torch.ones(1, 2, dtype=torch.int64)}, _sampler)
    with pytest.raises(InputError, match="sampler must be callable"):
        Problem(_loss, {"W": W}, 3)
    with pytest.raises(InputError, match="sampler returned NaN"):
        Problem(_loss, {"W": W}, lambda n, g: (torch.full((n, 2), float("nan")), torch.zeros(n, 1)))
    with pytest.raises(InputError, match="leading dimension 2"):
        Problem(_loss, {"W": W}, lambda n, g: (torch.zeros(n + 1, 2), torch.zeros(n + 1, 1)))
    with pytest.raises(InputError, match="sampler failed"):
        Problem(_loss, {"W": W}, lambda n, g: 1 / 0)
    with pytest.raises(InputError, match="must be a scalar"):
        Problem(lambda p, x, y: p["W"] @ x, {"W": W}, _sampler)
    with pytest.raises(InputError, match="not finite"):
        Problem(lambda p, x, y: (p["W"] @ x).sum() / 0.0 * 0.0, {"W": W}, _sampler)
    with pytest.raises(InputError, match="does not depend on the parameters|every row is zero"):
        find_symmetries(Problem(lambda p, x, y: (x.sum() - y.sum()) ** 2 + 0 * p["W"].sum(), {"W": W}, _sampler))


def test_module_input_is_checked():
    with pytest.raises(InputError, match="expected a torch.nn.Module"):
        Problem.from_module(lambda x: x, _sampler)
    with pytest.raises(InputError, match="no trainable parameters"):
        Problem.from_module(torch.nn.ReLU(), _sampler)
    frozen = torch.nn.Linear(2, 1)
    frozen.requires_grad_(False)
    with pytest.raises(InputError, match="no trainable parameters"):
        Problem.from_module(frozen, _sampler)

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x), x

    with pytest.raises(InputError, match="returns a tuple"):
        Problem.from_module(Pair(), _sampler)
    with pytest.raises(InputError, match="needs samples"):
        Problem.from_module(torch.nn.Linear(2, 1), lambda n, g: torch.randn(n, 2, generator=g))


def test_finder_and_sgd_arguments_are_checked():
    prob = _mlp_problem((2, 2, 2))
    with pytest.raises(InputError, match="needs a Problem"):
        find_symmetries("model")
    with pytest.raises(InputError, match="unknown ansatz"):
        find_symmetries(prob, ansatz="diagonal")
    with pytest.raises(InputError, match="below 3 x"):
        find_symmetries(prob, n_rows=10)
    with pytest.raises(InputError, match="rows_per_theta"):
        find_symmetries(prob, rows_per_theta=0)
    with pytest.raises(InputError, match="full ansatz needs"):
        find_symmetries(_mlp_problem((8, 8, 2)), ansatz="full")
    with pytest.raises(InputError, match="has no parameter"):
        mode_action(prob, {"W9": {0: np.eye(2)}})
    A = np.zeros((1, prob.n_params, prob.n_params))
    A[0, 0, 1] = 1.0
    with pytest.raises(InputError, match="symmetric generators"):
        sgd_balance(prob, A, eta=0.1, gamma=0.1, steps=5, burn_in=0, p_fail=P_COMPARISON)
    with pytest.raises(InputError, match="eta must be positive"):
        sgd_balance(prob, A + A.transpose(0, 2, 1), eta=0.0, gamma=0.1, steps=5, burn_in=0, p_fail=P_COMPARISON)
    with pytest.raises(InputError, match="n_runs must be an integer >= 2"):
        sgd_balance(prob, A + A.transpose(0, 2, 1), eta=0.1, gamma=0.1, steps=5, burn_in=0, n_runs=1,
                    p_fail=P_COMPARISON)
    with pytest.raises(InputError, match="generators must have shape"):
        sgd_balance(prob, np.eye(3)[None], eta=0.1, gamma=0.1, steps=5, burn_in=0, p_fail=P_COMPARISON)


def test_divergence_is_reported():
    from core.errors import DivergenceError

    alg = algebra("deep_linear")
    with pytest.raises(DivergenceError, match="diverged"):
        sgd_balance(alg.problem, alg.readable("symmetric"), eta=5.0, gamma=0.0, steps=200, burn_in=0, n_runs=2,
                    p_fail=P_COMPARISON)
    assert math.isfinite(alg.span_error_bound)


# ======================================================================= stable learning rates
def test_stable_start_leaves_a_sharp_start_and_caps_eta_below_the_sgd_limit():
    """Seed 6's deep linear student starts where lambda_max(E H) ~ 46 (a fixed eta = 0.05 diverged);
    the pilot settles in a flatter region, and eta stays half of batch-1 SGD's limit there."""
    prob = EXAMPLES["deep_linear"].problem(6)
    st = stable_start(prob, eta=0.05, gamma=0.05, batch=1, pilot_steps=600, margin=2.0, seed=0)
    assert st.start_gd_limit < 0.05 < st.gd_limit  # eta = 0.05 is past GD's limit at the given point only
    assert st.sgd_limit < st.gd_limit and st.eta == pytest.approx(min(0.05, st.sgd_limit / 2.0))
    assert torch.isfinite(st.theta).all() and not torch.equal(st.theta, prob.theta0)


def test_a_cap_far_below_the_design_eta_is_refused_and_a_self_stabilising_model_runs_uncapped():
    """RMS normalisation: after the noise-free pilot, the linearised limit would stretch the run
    thousands of times (a 50-million-step run at seed 0); the model's own config says why it
    runs uncapped, and then it starts at its own point at the design eta."""
    cfg = dict(EXAMPLES["rms_norm"].sgd)
    reason = cfg.pop("uncapped")
    alg = algebra("rms_norm")
    with pytest.raises(InputError, match=r"caps eta at .* times below the requested 0\.05"):
        cli.run_sgd(alg.problem, alg, seed=2, **cfg)
    st = stable_start(alg.problem, eta=0.05, gamma=0.1, batch=1, pilot_steps=0, margin=4.0, seed=2, cap=False)
    assert st.eta == 0.05 and not st.capped and torch.equal(st.theta, alg.problem.theta0)
    assert st.sgd_limit / 4.0 < 0.05 and "scale-invariant" in reason  # a cap would have applied here too


def test_stretched_steps_cover_the_same_relaxation_times():
    st = cli.StableStart(torch.zeros(1), 0.025, 0.05, 1.0, 0.1, 1.0, 2.0, 10)
    assert cli.stretched(1500, None, 0.05, st, 0.05) == (3000, default_burn_in(0.025, 0.05))
    assert cli.stretched(1500, 3000, 0.05, st, 0.0) == (3000, 12000)  # gam = 0: the orbit relaxes as eta^2
    assert cli.stretched(1500, 3000, 0.05, st, 0.05) == (3000, 6000)  # gam > 0: as eta (runs start spread)


def test_sgd_balance_refuses_a_start_of_the_wrong_size():
    alg = algebra("deep_linear")
    with pytest.raises(InputError, match="theta0 must be finite"):
        sgd_balance(alg.problem, alg.readable("symmetric"), eta=0.05, gamma=0.05, steps=5, burn_in=0,
                    p_fail=P_COMPARISON, theta0=torch.zeros(3))


def so3_generators() -> np.ndarray:
    K = np.zeros((3, 3, 3))
    for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        K[k, i, j], K[k, j, i] = 1.0, -1.0
    return K


def test_kept_orbit_starts_are_uniform_on_the_orbit():
    """The rotations of R^3 spread (1, 0, 0) uniformly over the sphere: E[x x^T] = I / 3 and, as
    x_1 is uniform on [-1, 1] (Archimedes), E[x_1^4] = 1 / 5. Each sample mean is of terms in
    [-1, 1]: Hoeffding's bound sqrt(2 ln(2 m / p) / R) at p = 1e-6 over its m = 7 means. Without
    the spread (rounds = 0) E[x_1^2] is 1."""
    R, p = 20000, 1e-6
    x = kept_orbit_starts(torch.tensor([1.0, 0.0, 0.0]), so3_generators(), R, torch.Generator().manual_seed(3))
    bound = math.sqrt(2 * math.log(2 * 7 / p) / R)
    assert torch.allclose(x.norm(dim=1), torch.ones(R, dtype=torch.float64), atol=1e-13, rtol=0)
    second = (x.T @ x / R).numpy()
    assert np.abs(second - np.eye(3) / 3).max() <= bound
    assert abs(float(x[:, 0].pow(4).mean()) - 0.2) <= bound
    still = kept_orbit_starts(torch.tensor([1.0, 0.0, 0.0]), so3_generators(), 50, torch.Generator(), rounds=0)
    assert float(still[:, 0].pow(2).mean()) == 1.0


def test_kept_orbit_starts_leave_the_loss_unchanged():
    """Every spread start of the deep linear net has its per-sample losses (float64 round-off)."""
    alg = algebra("deep_linear")
    prob = alg.problem
    starts = kept_orbit_starts(prob.theta0, alg.antisymmetric, 16, torch.Generator().manual_seed(1))
    samples = prob.sample(64, torch.Generator().manual_seed(2))
    per_sample = torch.func.vmap(torch.func.vmap(prob.flat_loss, in_dims=(None, 0, 0)), in_dims=(0, None, None))
    losses = per_sample(starts, *samples)
    ref = torch.func.vmap(prob.flat_loss, in_dims=(None, 0, 0))(prob.theta0, *samples)
    assert float((starts - prob.theta0).norm(dim=1).min()) > 0.1  # the starts did move
    assert torch.allclose(losses, ref.expand_as(losses), rtol=1e-10, atol=1e-12)


def test_kept_orbit_starts_refuse_a_generator_that_is_not_a_rotation():
    with pytest.raises(InputError, match="antisymmetric"):
        kept_orbit_starts(torch.ones(3), np.eye(3)[None], 4, torch.Generator())


def test_a_teacher_fainter_than_half_the_label_noise_is_drawn_again():
    """Seed 7394's first deep linear teacher carries 0.075 of the label noise's power: its student
    decays to ~0 under weight decay and no balance law resolves. The redraw keeps the signal at
    >= (noise / 2)^2 per output, and a teacher that cannot carry one is refused by name."""
    ex = examples()["deep_linear"]
    _, sampler = ex.make(7394)
    _, y = sampler(100_000, torch.Generator().manual_seed(0))
    signal = float(y.pow(2).mean()) - 0.5**2  # E|y|^2 per output = signal + noise^2
    assert signal > 2 * 0.075 * 0.5**2  # the faint first draw's, twice over (CLT error of the mean ~1e-3)
    with pytest.raises(InputError, match="half the label noise"):
        teacher_sampler(MLP((2, 2, 1), "linear"), (2,), gain=1e-3)
