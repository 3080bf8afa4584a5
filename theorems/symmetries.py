r"""Find a model's linear parameter symmetries, emit the balance law of each, and check it along SGD.

``python -m theorems.symmetries path/to/model.py:make_model`` loads a factory from a file and
prints, for the model it returns,

* the algebra of linear parameter symmetries (``grad l(theta; x)^T A theta = 0`` for every
  sample and theta, block ansatz; numeric/symmetry_finder.py explains the search, the derived
  rank threshold and what the ansatz cannot see), its dimension, and its split into the
  symmetric part (exponential symmetries, broken by the entropic loss, docs/theory.md §2) and
  the antisymmetric part (rotations, kept for a scalar learning rate);
* every generator, as the matrices it applies to each parameter tensor, and a float64 check of
  its orbit ``theta -> expm(lam A) theta`` (the per-sample loss does not move beyond round-off);
* the balance law of every symmetric generator A, for SGD with weight decay in the loss
  (``theta <- theta - eta (g_B + 2 gam theta)``, docs/theory.md §3)::

      eta E[g_B^T A g_B] = 4 gam (1 - eta gam) E[theta^T A theta]     (gam = 0: E[g_B^T A g_B] = 0)

  and its SGD verdict: an ensemble of independent runs, per-run averages after a burn-in, the
  paired residual ``LHS - RHS`` against a Student-t bound across runs at the suite's
  per-comparison false-failure probability (theorems/tolerances.py), Bonferroni over the
  generators. The runs start where a gradient-descent pilot settles, and ``--eta`` is a design
  value capped at a quarter of batch-B SGD's mean-square stability limit there
  (numeric.symmetry_finder.stable_start; the burn-in and window stretch with the cap), so that
  no seed puts the runs past the limit (a run that diverges anyway raises: none is dropped).
  A cap more than 50 times below ``--eta`` is refused, naming the limit: a scale-invariant
  weight (a normalisation layer) stabilises itself, a kick that grows it lowers its curvature,
  and its linearised limit can sit thousands of times too low; ``--no-stability-cap`` runs such
  a model at ``--eta`` from its own point.

The factory
-----------
``make_model()`` (optionally ``make_model(seed=...)``) returns one of

* ``(model, sampler)``: an ``nn.Module`` and ``sampler(n, generator) -> (x, y)`` (leading
  dimension n); the per-sample loss is the squared error ``|model(x) - y|^2``;
* ``(model, sampler, loss)``: the same with ``loss(output, *targets) -> scalar``;
* a ``numeric.symmetry_finder.Problem`` (e.g. ``Problem(loss, params, sampler)`` for a loss
  written as a plain function of named parameter tensors).

Options: ``--eta``, ``--gamma`` (weight decay, default 0.05; 0 checks the gam = 0 law only),
``--zero-decay`` (also check the gam = 0 law), ``--runs``, ``--steps``, ``--burn-in``,
``--batch``, ``--seed``, ``--no-sgd``, ``--no-stability-cap``, ``--ansatz full``, ``--json``. At gam = 0 a semidefinite
generator (a scaling) is not run: ``g^T A g`` has one sign, so there is no stationary state
(its reason is printed). ``--list-examples`` runs the known models of
numeric/symmetry_finder.py (bias-free ReLU MLP, deep linear net, self-attention,
normalisations, tanh MLP, ReLU MLP with biases) with each example's own SGD settings
(``--zero-decay``: and its gam = 0 settings, where it has them), and compares each with its
derived answer. Exit status 0 when every check passes, 1 when one fails, 2 for bad input (one
line).

``finder_verdicts(ctx)`` returns the same checks for the known models as
:class:`theorems.verdict.Verdict` rows: recovered dimension, split and span (principal
angles against the known basis, tolerance Wedin's bound from the derived rank threshold),
the orbit check, the exact SymPy algebra of a small two-layer linear and ReLU net
(symbolic/symmetry_check.py) against the numeric one, the full-ansatz cross-check, and the
SGD balance-law verdicts.

>>> from numeric.symmetry_finder import examples
>>> rep = analyse(examples()["deep_linear"].problem(0), sgd=False)
>>> rep.algebra.dim, rep.algebra.dim_symmetric, rep.algebra.dim_antisymmetric
(13, 9, 4)
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.errors import DivergenceError, InputError
from numeric.symmetry_finder import (BalanceResult, Example, OrbitCheck, Problem, StableStart, SymmetryAlgebra,
                                     default_burn_in, examples, find_symmetries, is_semidefinite, kept_orbit_starts,
                                     orthonormal_span, rational_basis, sgd_balance, split_parts, stable_start,
                                     subspace_angle, verify_orbits)
from theorems.settings.symmetry import SGD_STABILITY_MARGIN
from theorems.tolerances import P_COMPARISON, t_quantile
from theorems.verdict import Context, Criterion, Verdict

RESULT = "4"  # the finder generalises Theorem 4 (every exponential symmetry gives a balance law)
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


# =============================================================================== analysis
@dataclass
class LawVerdict:
    """One generator's SGD law: per-run paired residual against its Student-t bound."""

    index: int
    lhs: float  # eta E[g^T A g] (ensemble mean of the per-run averages)
    rhs: float  # 4 gam (1 - eta gam) E[theta^T A theta]
    residual: float
    bound: float  # t x standard error of the paired residual
    scale: float  # eta E|g^T A g|: the size of the noise the law balances
    t: float
    decay_ratio: float = 0.0  # the exact decay identity's residual / its bound (numeric.symmetry_finder)

    @property
    def inactive(self) -> bool:
        """No gradient noise reaches this generator (a unit that weight decay is pruning): the
        noise it balances, ``eta E|g^T A g|``, is below a tenth of the law's own interval (the
        balance cannot be resolved) or below a tenth of the decay ``4 gam (1 - eta gam) |E Q|`` it
        would have to balance (``|LHS| <= eta E|g^T A g|``, so Q can only decay). The law then
        reduces to E[Q] -> 0, which a finite run only approaches exponentially; what is checked
        instead is the exact decay identity of Q."""
        return self.scale < 0.1 * self.bound or self.scale < 0.1 * abs(self.rhs)

    @property
    def resolved(self) -> bool:
        """The interval is at most half the gradient noise the law balances, so the check can tell
        a balance from its absence (a residual of the size of the noise would fall outside it)."""
        return self.bound <= 0.5 * self.scale

    @property
    def passed(self) -> bool:
        """Inactive: the exact decay identity holds. Otherwise: the residual lies within its
        interval. An interval too wide to resolve the balance decides nothing by itself (a unit
        half pruned by decay, whose noise is weak but not negligible: measured relu_mlp_bias,
        seed 1, eta E|gAg| 2.7e-7 against an interval of 1.7e-7); the run's report then needs
        another generator that is resolved (:attr:`SGDReport.passed`)."""
        if self.inactive:
            return self.decay_ratio <= 1.0
        return abs(self.residual) <= self.bound


@dataclass
class SGDReport:
    result: BalanceResult
    laws: list  # LawVerdict per generator
    indices: list  # which symmetric generators were run
    skipped: dict = field(default_factory=dict)  # index -> reason
    seconds: float = 0.0
    start: StableStart | None = None  # the runs' start point and learning rate
    uncapped: str | None = None  # why the learning rate was not capped (None: it was)

    @property
    def passed(self) -> bool:
        if self.result is None:  # every generator skipped (semidefinite at gam = 0): nothing was claimed
            return True
        return self.resolves_one and all(v.passed and (v.inactive or abs(b) <= 0.1 * v.bound)
                                         for v, b in zip(self.laws, self.result.cross_bias))

    @property
    def resolves_one(self) -> bool:
        """At least one generator's balance is resolved (a report of unresolved laws only says nothing)."""
        return any(v.resolved and not v.inactive for v in self.laws)


@dataclass
class Report:
    algebra: SymmetryAlgebra
    orbit: OrbitCheck | None
    sgd: SGDReport | None = None
    sgd_zero: SGDReport | None = None
    seconds: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        ok = self.orbit is None or self.orbit.max_ratio <= 1.0
        return ok and all(r is None or r.passed for r in (self.sgd, self.sgd_zero))


def law_verdicts(res: BalanceResult, p: float = P_COMPARISON) -> list:
    """Student-t verdict of each generator's law from the per-run averages in ``res``:
    ``t_{R-1}`` at two-sided ``p`` split over the k generators (Bonferroni)."""
    k, R = res.lhs_runs.shape
    t = t_quantile(R, p, comparisons=k)
    out = []
    for j in range(k):
        d = res.lhs_runs[j] - res.rhs_runs[j]
        se = float(np.std(d, ddof=1) / math.sqrt(R))
        out.append(LawVerdict(j, float(res.lhs_runs[j].mean()), float(res.rhs_runs[j].mean()), float(d.mean()), t * se,
                              float(res.scale_runs[j].mean()), t,
                              float(res.decay_ratio[j]) if res.decay_ratio is not None else 0.0))
    return out


def stretched(steps: int, burn_in: int | None, eta: float, start: StableStart, gamma: float) -> tuple:
    """``(steps, burn_in)`` at the capped learning rate from those designed for ``eta``: both
    cover the same number of relaxation times of the orbit coordinate, whose rate is
    ``4 eta gam`` for gam > 0 (window and burn-in scale as ``eta / eta_capped``) and
    ``~ eta^2 |g|^2 / |theta|^2`` for gam = 0 (the burn-in as its square; the window, whose
    interval shrinks as ``1 / T``, as ``eta / eta_capped``). No burn-in given:
    :func:`numeric.symmetry_finder.default_burn_in` at the capped rate.

    Rotations of a hidden basis (antisymmetric generators) relax only through the noise, at
    ``~ eta^2`` per step, at any gam; :func:`run_sgd` starts its runs spread over their orbits
    (:func:`numeric.symmetry_finder.kept_orbit_starts`), so nothing needs to relax along them."""
    r = eta / start.eta
    slow = r if gamma else r * r
    burn = default_burn_in(start.eta, gamma) if burn_in is None else math.ceil(int(burn_in) * slow)
    return math.ceil(int(steps) * r), burn


MAX_CAP_STRETCH = 50  # the most a stability cap may stretch a run (self-attention at seed 0: 5.3)


def run_sgd(problem: Problem, algebra: SymmetryAlgebra, *, eta: float, gamma: float, steps: int,
            burn_in: int | None = None, n_runs: int = 32, batch: int = 1, seed: int = 0,
            margin: float = SGD_STABILITY_MARGIN, uncapped: str | None = None, progress=None) -> SGDReport:
    """The SGD witness of every symmetric generator's law (gam = 0: semidefinite ones are
    skipped, with the reason: they have no stationary state).

    ``eta`` and the step counts are the design; the runs start where a gradient-descent pilot of
    the burn-in's length settles and at ``eta`` capped ``margin`` times below batch-B SGD's
    stability limit there (:func:`numeric.symmetry_finder.stable_start`), the steps stretched to
    the capped rate (:func:`stretched`), each run rotated by its own draw from the group of the
    model's antisymmetric generators (:func:`numeric.symmetry_finder.kept_orbit_starts`).

    ``uncapped``: why this model's runs need no cap (a scale-invariant weight stabilises itself,
    :data:`numeric.symmetry_finder.SELF_STABILISING`); they then start at the model's own point,
    without a pilot, at ``eta``. A cap more than ``MAX_CAP_STRETCH`` times below ``eta`` is refused
    with an InputError that names it, rather than started as a run of millions of steps."""
    gens = algebra.readable("symmetric")
    idx = list(range(gens.shape[0]))
    skipped = {}
    if gamma == 0:
        for j in list(idx):
            if is_semidefinite(gens[j], rtol=max(algebra.span_error_bound, 1e-12) * 10):
                skipped[j] = ("semidefinite: g^T A g has one sign, so E[g^T A g] = 0 has no stationary state at gam = 0 "
                              "(theta^T A theta grows by eta^2 g^T A g per step)")
                idx.remove(j)
    if not idx:
        return SGDReport(None, [], [], skipped)
    t0 = time.perf_counter()
    pilot = default_burn_in(eta, gamma) if burn_in is None else int(burn_in)
    start = stable_start(problem, eta=eta, gamma=gamma, batch=batch, pilot_steps=0 if uncapped else pilot,
                         margin=margin, seed=seed, cap=not uncapped)
    if start.eta * MAX_CAP_STRETCH < eta:
        raise InputError(f"{problem.name}: batch-{batch} SGD's linearised stability limit where the runs settle, "
                         f"{start.sgd_limit:.3g}, caps eta at {start.eta:.3g}, {eta / start.eta:.0f} times below the "
                         f"requested {eta:g} (more than {MAX_CAP_STRETCH}x): the steps would stretch as much. A model "
                         "that stabilises itself (a scale-invariant weight) may run uncapped; otherwise ask for a "
                         "smaller eta")
    steps, burn = stretched(steps, burn_in, eta, start, gamma)
    theta0 = kept_orbit_starts(start.theta, algebra.antisymmetric, n_runs, torch.Generator().manual_seed(seed + 7919))
    res = sgd_balance(problem, gens[idx], eta=start.eta, gamma=gamma, steps=steps, burn_in=burn, n_runs=n_runs,
                      batch=batch, seed=seed, p_fail=P_COMPARISON, theta0=theta0, progress=progress)
    return SGDReport(res, law_verdicts(res), idx, skipped, time.perf_counter() - t0, start, uncapped or None)


def analyse(problem: Problem, *, ansatz: str = "block", seed: int = 0, orbit: bool = True, sgd: bool = True,
            zero_decay: bool = False, eta: float = 0.05, gamma: float = 0.05, steps: int = 1500,
            burn_in: int | None = None, n_runs: int = 32, batch: int = 1, zero_decay_burn_in: int | None = None,
            uncapped: str | None = None, progress=None) -> Report:
    """Find, classify, verify, and (``sgd=True``) check the balance laws of ``problem``
    (``uncapped``: :func:`run_sgd`'s)."""
    secs = {}
    t0 = time.perf_counter()
    alg = find_symmetries(problem, ansatz=ansatz, seed=seed)
    secs["find"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    orb = verify_orbits(alg, seed=seed + 1) if orbit and alg.dim else None
    secs["orbit"] = time.perf_counter() - t0
    rep = Report(alg, orb, seconds=secs)
    if not (math.isfinite(gamma) and gamma >= 0):
        raise InputError(f"gamma (weight decay) must be non-negative, got {gamma!r}")
    if sgd and alg.dim_symmetric:
        if gamma > 0:
            rep.sgd = run_sgd(problem, alg, eta=eta, gamma=gamma, steps=steps, burn_in=burn_in, n_runs=n_runs,
                              batch=batch, seed=seed + 2, uncapped=uncapped, progress=progress)
            secs["sgd"] = rep.sgd.seconds
        if zero_decay or gamma == 0:
            burn0 = zero_decay_burn_in if zero_decay_burn_in is not None else (burn_in if gamma == 0 else None)
            rep.sgd_zero = run_sgd(problem, alg, eta=eta, gamma=0.0, steps=steps, burn_in=burn0,
                                   n_runs=n_runs, batch=batch, seed=seed + 3, uncapped=uncapped, progress=progress)
            secs["sgd gam=0"] = rep.sgd_zero.seconds
    return rep


# ============================================================================== presentation
def generator_actions(alg: SymmetryAlgebra, A: np.ndarray, tol: float = 1e-9) -> dict:
    """``{tensor: {"L": matrix, "R": matrix}}`` (matrices; ``M0, M1, ...`` per axis for other
    ranks, ``c`` for scalars): how A acts on each tensor, ``W -> L W + W R``. The identity
    part of the per-axis actions (``L = I`` and ``R = I`` act alike) is shifted between the
    axes so that the description is sparse: the multiple c is chosen to minimise the sum of |diagonal entries|
    (a median), which makes a one-sided action (``R = -E_kk`` alone) show as such. Tensors A
    does not touch are left out. Block ansatz only."""
    ans = alg.ansatz
    if ans.kind != "block":
        raise InputError("generator_actions describes block-ansatz generators only")
    c = ans.T @ ans.coordinates(A[None])[:, 0]
    out, j = {}, 0
    prob = alg.problem
    per_tensor: dict = {}
    for off, shape, mode in ans._modes:
        name = prob.names[prob.offsets.index(off)]
        if mode is None:
            per_tensor.setdefault(name, {})["c"] = float(c[j])
            j += 1
            continue
        nm = shape[mode]
        per_tensor.setdefault(name, {})[mode] = c[j:j + nm * nm].reshape(nm, nm)
        j += nm * nm
    for name, acts in per_tensor.items():
        if "c" in acts:
            if abs(acts["c"]) > tol:
                out[name] = {"c": acts["c"]}
            continue
        modes = sorted(acts)
        for m in modes[1:]:  # move c I between axis 0 and axis m: the c with the fewest non-zeros (an L1 median)
            cands = np.concatenate([-np.diag(acts[modes[0]]), np.diag(acts[m])])
            c = float(np.median(cands)) if cands.size % 2 else float(np.sort(cands)[cands.size // 2 - 1])
            acts[modes[0]] = acts[modes[0]] + c * np.eye(acts[modes[0]].shape[0])
            acts[m] = acts[m] - c * np.eye(acts[m].shape[0])
        named = {}
        for m in modes:
            if np.abs(acts[m]).max() <= tol:
                continue
            if len(modes) == 2:
                named["L" if m == 0 else "R"] = acts[m] if m == 0 else acts[m].T
            else:
                named[f"M{m}"] = acts[m]
        if named:
            out[name] = named
    return out


def _num(v: float) -> str:
    from fractions import Fraction

    f = Fraction(v).limit_denominator(12)
    if abs(float(f) - v) <= 1e-9 * max(1.0, abs(v)):
        return str(f)
    return f"{v:.4g}"


def _mat(M: np.ndarray) -> str:
    """A matrix, compactly: ``c I`` for a multiple of the identity, else its rows."""
    M = np.where(np.abs(M) < 5e-9, 0.0, np.atleast_2d(M))
    if M.shape[0] == M.shape[1] and np.allclose(M, M[0, 0] * np.eye(M.shape[0]), atol=5e-9, rtol=0):
        return f"{_num(M[0, 0])} I"
    return "[" + ", ".join("[" + ", ".join(_num(v) for v in row) + "]" for row in M) + "]"


def quadratic_form(alg: SymmetryAlgebra, A: np.ndarray, v: str = "g") -> str:
    """``v^T A v`` for symmetric A, written per tensor: ``|g_W[k,:]|^2`` for ``L = E_kk``,
    ``<g_W[:,a], g_W[:,b]>`` terms for a right action, ``c |g_W|^2`` for a multiple of I
    (``v = "g"``: the gradient; ``v = "theta"``: the parameters themselves)."""
    if alg.ansatz.kind != "block":
        return f"{v}^T A {v}"
    terms = []
    prob = alg.problem
    for name, acts in generator_actions(alg, A).items():
        X = f"g_{name}" if v == "g" else name
        vec = len(prob.shapes[prob.names.index(name)]) == 1
        for key, M in acts.items():
            if key == "c":
                terms.append((M, f"|{X}|^2"))
                continue
            M = 0.5 * (M + M.T)
            if np.allclose(M, M[0, 0] * np.eye(M.shape[0]), atol=5e-9, rtol=0):
                terms.append((M[0, 0], f"|{X}|^2"))
                continue
            if key not in ("L", "R") and not vec:
                terms.append((1.0, f"<{X}, {X} x_{key[1:]} {_mat(M)}>"))
                continue
            sl = (lambda a: f"[{a}]") if vec else ((lambda a: f"[{a},:]") if key == "L" else (lambda a: f"[:,{a}]"))
            for a in range(M.shape[0]):
                for b in range(a, M.shape[0]):
                    coef = M[a, a] if a == b else 2 * M[a, b]
                    if abs(coef) > 5e-9:
                        terms.append((coef, f"|{X}{sl(a)}|^2" if a == b else f"<{X}{sl(a)}, {X}{sl(b)}>"))
    if not terms:
        return "0"
    out = ""
    for coef, t in terms:
        mag = _num(abs(coef))
        sign = "-" if coef < 0 else "+"
        out += f" {sign} " + ("" if mag == "1" else f"{mag} ") + t
    return out.strip()[2:] if out.strip().startswith("+") else "-" + out.strip()[1:]


def describe(alg: SymmetryAlgebra, A: np.ndarray) -> str:
    if alg.ansatz.kind != "block":
        nz = np.argwhere(np.abs(A) > 1e-9)
        return f"{len(nz)} non-zero entries"
    parts = []
    for name, acts in generator_actions(alg, A).items():
        parts.append(f"{name}: " + ", ".join(f"{k} = {_num(v)}" if k == "c" else f"{k} = {_mat(v)}"
                                             for k, v in acts.items()))
    return "; ".join(parts) if parts else "0"


def format_report(rep: Report, title: str = "") -> str:
    alg = rep.algebra
    p = alg.problem
    s = alg.null.singular_values
    smax = float(s[0])
    lines = [f"== {title or p.name}: {p.n_params} parameters in {len(p.names)} tensors ("
             + ", ".join(f"{n} {tuple(sh)}" for n, sh in zip(p.names, p.shapes)) + ")"]
    lines.append(f"ansatz {alg.ansatz.kind}: {alg.ansatz.n_unknowns} unknowns, {alg.n_rows} rows; singular values / "
                 f"sigma_max: zero <= {alg.null.threshold / smax:.2g} (largest {alg.null.largest_zero / smax:.2g}), "
                 f"non-zero >= {alg.null.nonzero_floor / smax:.2g} (smallest {alg.null.smallest_nonzero / smax:.2g}); "
                 f"held-out rows / threshold {alg.held_out_ratio:.2g}; span error bound {alg.span_error_bound:.2g}")
    neither = alg.dim - alg.dim_symmetric - alg.dim_antisymmetric
    lines.append(f"algebra: dim {alg.dim} = symmetric {alg.dim_symmetric} (exponential: broken by the entropic loss)"
                 f" + antisymmetric {alg.dim_antisymmetric} (rotations: kept) + neither {neither}; closed under "
                 f"A -> A^T: {'yes' if alg.closed_under_transpose else 'no'}")
    for tag, mats in (("S", alg.readable("symmetric")), ("R", alg.readable("antisymmetric"))):
        for j, A in enumerate(mats):
            lines.append(f"  {tag}{j}: {describe(alg, A)}")
    if rep.orbit is not None:
        o = rep.orbit
        lines.append(f"orbit check (theta -> expm(lam A) theta, lam in {list(o.lambdas)}): max |dl| / round-off bound "
                     f"= {o.max_ratio:.3g} over {o.n_evaluations} evaluations per generator "
                     f"({'PASS' if o.max_ratio <= 1 else 'FAIL'}); a non-symmetry direction: {o.control_ratio:.3g}")
    if alg.dim_symmetric:
        lines.append("balance laws (SGD, theta <- theta - eta (g_B + 2 gam theta)); eta E[g^T S g] = 4 gam (1 - eta gam) "
                     "E[theta^T S theta], at gam = 0 E[g^T S g] = 0, with")
        for j, A in enumerate(alg.readable("symmetric")):
            lines.append(f"  S{j}: g^T S{j} g = {quadratic_form(alg, A, 'g')};  theta^T S{j} theta = "
                         f"{quadratic_form(alg, A, 'theta')}")
    for r in (rep.sgd, rep.sgd_zero):
        if r is None:
            continue
        for j, why in r.skipped.items():
            lines.append(f"  S{j} at gam = 0: not run ({why})")
        if r.result is None:
            continue
        b = r.result
        lines.append(f"SGD: eta {b.eta:.4g}, gam {b.gamma:g}, {b.n_runs} runs, batch {b.batch}, burn-in {b.burn_in}, "
                     f"{b.steps} averaged steps ({r.seconds:.1f} s); max |g^T A theta| / (|g| |A theta|) "
                     f"{b.max_cross_ratio:.2g}")
        if r.start is not None and not r.start.capped:
            st = r.start
            lines.append(f"  start: the model's own point, eta = {st.requested_eta:g} uncapped (batch-{b.batch} SGD's "
                         f"linearised limit there {st.sgd_limit:.3g}): {r.uncapped}")
        elif r.start is not None:
            st = r.start
            lines.append(f"  start: a {st.pilot_steps}-step gradient-descent pilot; there GD's stability limit "
                         f"{st.gd_limit:.3g} (at the given point {st.start_gd_limit:.3g}), batch-{b.batch} SGD's "
                         f"{st.sgd_limit:.3g}: eta = min({st.requested_eta:g}, {st.sgd_limit:.3g} / {st.margin:g})")
        for j, v, x in zip(r.indices, r.laws, b.cross_bias):
            if v.inactive:
                lines.append(f"  S{j}: no gradient reaches it (eta E|gAg| = {v.scale:.2g} < max(bound, |RHS|)/10 = "
                             f"{max(v.bound, abs(v.rhs)) / 10:.2g}): "
                             f"Q decays, exact decay identity residual / bound {v.decay_ratio:.2g}  "
                             f"{'PASS' if v.passed else 'FAIL'}")
                continue
            ok = v.passed and abs(x) <= 0.1 * v.bound
            if not v.resolved:
                lines.append(f"  S{j}: unresolved: the bound {v.bound:.3g} exceeds half the noise it balances "
                             f"(eta E|gAg| = {v.scale:.3g}); it decides nothing by itself (run longer or with more "
                             "runs)")
            lines.append(f"  S{j}: LHS {v.lhs:+.4g}  RHS {v.rhs:+.4g}  residual {v.residual:+.3g} +- {v.bound:.3g} "
                         f"(t = {v.t:.2f}; |residual| / eta E|gAg| = {abs(v.residual) / max(v.scale, 1e-300):.2g}; "
                         f"symmetry bias "
                         f"{abs(x):.2g})  {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)


def report_json(rep: Report) -> dict:
    alg = rep.algebra
    out = dict(alg.summary())
    out["symmetric"] = [describe(alg, A) for A in alg.readable("symmetric")]
    out["antisymmetric"] = [describe(alg, A) for A in alg.readable("antisymmetric")]
    if rep.orbit is not None:
        out["orbit"] = {"max_ratio": rep.orbit.max_ratio, "control_ratio": rep.orbit.control_ratio}
    for key, r in (("sgd", rep.sgd), ("sgd_zero_decay", rep.sgd_zero)):
        if r is None:
            continue
        out[key] = {"skipped": {str(k): v for k, v in r.skipped.items()},
                    "laws": [dict(generator=j, lhs=v.lhs, rhs=v.rhs, residual=v.residual, bound=v.bound, t=v.t,
                                  passed=v.passed) for j, v in zip(r.indices, r.laws)]}
        if r.result is not None:
            out[key].update(eta=r.result.eta, gamma=r.result.gamma, runs=r.result.n_runs, steps=r.result.steps,
                            burn_in=r.result.burn_in, max_cross_ratio=r.result.max_cross_ratio)
    out["passed"] = rep.passed
    return out


# ========================================================================= loading a factory
def load_problem(spec: str, seed: int = 0) -> Problem:
    """``path/to/file.py:factory`` -> a :class:`Problem` (see the module docstring)."""
    if ":" not in spec:
        raise InputError(f"expected path/to/model.py:factory, got {spec!r}")
    path, _, name = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise InputError(f"no such file: {path}")
    if not name.isidentifier():
        raise InputError(f"{name!r} is not a Python name")
    mod_name = f"_symmetry_model_{abs(hash(str(file.resolve())))}"
    spec_ = importlib.util.spec_from_file_location(mod_name, file)
    if spec_ is None or spec_.loader is None:
        raise InputError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec_)
    try:
        spec_.loader.exec_module(mod)
    except Exception as exc:
        raise InputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(mod, name, None)
    if not callable(factory):
        raise InputError(f"{path} defines no callable {name!r}")
    try:
        takes_seed = "seed" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_seed = False
    try:
        made = factory(seed=seed) if takes_seed else factory()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{name}() failed: {type(exc).__name__}: {exc}") from exc
    return as_problem(made, name=name)


def as_problem(made, name: str = "model") -> Problem:
    if isinstance(made, Problem):
        return made
    if isinstance(made, (tuple, list)) and len(made) in (2, 3):
        model, sampler = made[0], made[1]
        loss = made[2] if len(made) == 3 else None
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"{name}() must return (nn.Module, sampler[, loss]) or a Problem; the first item is a "
                             f"{type(model).__name__}")
        return Problem.from_module(model, sampler, loss, name=type(model).__name__)
    raise InputError(f"{name}() must return (model, sampler), (model, sampler, loss) or a Problem, got "
                     f"{type(made).__name__}")


# ================================================================================= verdicts
def _dimension_verdict(ex: Example, alg: SymmetryAlgebra) -> Verdict:
    prob = alg.problem
    known = ex.known(prob)
    kb = orthonormal_span(known) if known.shape[0] else known
    # the known algebra's own symmetric / antisymmetric parts, from the exact spanning set
    ks, ka, _, _ = split_parts(kb, 0.0, prob) if kb.shape[0] else (kb, kb, 0.0, 0.0)
    bound = max(alg.span_error_bound, prob.n_params * 1.2e-16)
    ang = subspace_angle(alg.basis, kb)
    ang_s = subspace_angle(alg.symmetric, ks)
    ang_a = subspace_angle(alg.antisymmetric, ka)
    src = "Wedin: tau / smallest non-zero singular value of the rows (derived float64 threshold)"
    return Verdict(RESULT, f"{ex.name}: the finder recovers the derived algebra (dim {ex.expected_dim})",
                   symbolic=ex.derivation, predicted=float(ex.expected_dim), measured=float(alg.dim), tolerance=0.0,
                   tolerance_source="a dimension: exact integer",
                   criteria=[Criterion.within("symmetric part (exponential symmetries)", alg.dim_symmetric,
                                              ex.expected_symmetric, ex.expected_symmetric, "derived"),
                             Criterion.within("antisymmetric part (rotations)", alg.dim_antisymmetric,
                                              ex.expected_antisymmetric, ex.expected_antisymmetric, "derived"),
                             Criterion.at_most("largest principal angle to the known algebra (rad)", ang, bound, src),
                             Criterion.at_most("... to its symmetric part", ang_s, bound, src),
                             Criterion.at_most("... to its antisymmetric part", ang_a, bound, src),
                             Criterion.at_most("fresh rows / round-off threshold (held-out validation)",
                                               alg.held_out_ratio, 1.0, "tau = sqrt(N) rho eps sigma_max")],
                   details={**alg.summary(), "description": ex.description})


def _orbit_verdict(ex: Example, orb: OrbitCheck) -> Verdict:
    return Verdict(RESULT, f"{ex.name}: the per-sample loss is constant along every generator's orbit expm(lam A) theta",
                   predicted=0.0, measured=orb.max_ratio, tolerance=1.0,
                   tolerance_source="|dl| / ((n + 8) u (|l| + |l_lam| + |grad l| |theta| e^|lam|)): forward pass "
                                    "backward stable, expm to a few u",
                   criteria=[Criterion.above("a direction outside the algebra moves the loss beyond that bound "
                                             "(median ratio)", orb.control_ratio, 1.0, "non-vacuous tolerance")],
                   details={"per generator": orb.per_generator, "lambdas": list(orb.lambdas),
                            "evaluations per generator": orb.n_evaluations})


def _sgd_verdict(ex: Example, rep: SGDReport) -> Verdict:
    b = rep.result
    k = len(rep.laws)
    src = (f"Student-t over {b.n_runs} runs, t = {rep.laws[0].t:.2f} (two-sided p = {P_COMPARISON:g}, Bonferroni over "
           f"{k} generators) x standard error of the paired per-run residual")
    law = "E[g^T A g] = 0" if b.gamma == 0 else "eta E[g^T A g] = 4 gam (1 - eta gam) E[theta^T A theta]"
    crit = []
    for j, v, x in zip(rep.indices, rep.laws, b.cross_bias):
        if v.inactive:
            crit.append(Criterion.at_most(f"S{j} (no gradient reaches it: eta E|gAg| {v.scale:.2g} < max(bound, |RHS|)/10): "
                                          "exact decay identity of Q per run / its bound", v.decay_ratio, 1.0,
                                          "eta^2 sum|gAg| + 2 eta sum|g^T A theta| + float64 round-off"))
            continue
        weak = "" if v.resolved else f" (not resolved: bound > eta E|gAg| / 2 = {0.5 * v.scale:.2g})"
        crit.append(Criterion.at_most(f"S{j}: |paired residual| <= its bound{weak}", abs(v.residual), v.bound,
                                      "Student-t"))
        crit.append(Criterion.at_most(f"S{j}: the symmetry's bias 2(1 - 2 eta gam)|E g^T A theta| <= bound / 10", abs(x),
                                      0.1 * v.bound, "exact finite-window identity; a tenth: negligible beside the CI"))
    resolved = sum(v.resolved and not v.inactive for v in rep.laws)
    crit.append(Criterion.holds(f"at least one generator's balance is resolved (bound <= eta E|g^T A g| / 2): "
                                f"{resolved} of {k}", resolved > 0,
                                "power: a residual of the size of the noise would be caught"))
    active = [v for v in rep.laws if not v.inactive] or rep.laws
    worst = max(active, key=lambda v: abs(v.residual) / v.bound if v.bound > 0 else math.inf)
    design = rep.start.requested_eta
    capped = f" (design {design:g}, stability-capped)" if b.eta < design else ""
    cap = f"eta capped at the SGD stability limit / {rep.start.margin:g}" if rep.start.capped else \
        f"uncapped, no pilot: {rep.uncapped}"
    return Verdict(RESULT, f"{ex.name}, eta {b.eta:.3g}{capped}, gam {b.gamma:g}: {law} for every exponential generator "
                           f"(worst shown: S{rep.indices[rep.laws.index(worst)]})",
                   symbolic="Q' - Q = eta^2 g^T A g - 4 eta gam (1 - eta gam) Q exactly when g^T A theta = 0 "
                            "(symbolic/symmetry.py sgd_balance_condition); E[Q' - Q] = 0 at stationarity",
                   predicted=worst.rhs, measured=worst.lhs, tolerance=worst.bound, tolerance_source=src, criteria=crit,
                   comparison="within" if not worst.inactive else "none",
                   details={"generators": k, "skipped": rep.skipped, "runs": b.n_runs, "batch": b.batch,
                            "burn-in": b.burn_in, "steps": b.steps, "seconds": rep.seconds,
                            "lhs": [v.lhs for v in rep.laws], "rhs": [v.rhs for v in rep.laws],
                            "residual": [v.residual for v in rep.laws], "bound": [v.bound for v in rep.laws],
                            "relative residual (/ eta E|gAg|)": [abs(v.residual) / v.scale if v.scale > 0 else float("nan")
                                                                for v in rep.laws],
                            "drift (Q_T - Q_0)/(eta T)": b.drift, "eta": b.eta,
                            "design eta": rep.start.requested_eta, "stability cap": cap,
                            "SGD stability limit": rep.start.sgd_limit,
                            "GD stability limit": rep.start.gd_limit, "GD limit at the given point":
                            rep.start.start_gd_limit})


def _exact_verdicts(ctx: Context) -> list:
    """SymPy: the exact block-ansatz algebra of 2-2-2 linear and ReLU nets against the finder's."""
    import sympy as sp

    from numeric.symmetry_finder import MLP, teacher_sampler
    from symbolic.layer_symmetries import derive_balance_law, mlp_loss
    from symbolic.symmetry_check import exact_algebra, is_symmetry_exact, relu_gains

    out = []
    for act in ("linear", "relu"):
        net = mlp_loss((2, 2, 2), act)
        binary = relu_gains(net) if act == "relu" else []
        exact = exact_algebra(net.loss, net.theta, [W.shape for W in net.layers], binary=binary)
        torch.manual_seed(ctx.seed)
        model = MLP((2, 2, 2), act).to(torch.float64)
        torch.manual_seed(ctx.seed + 1)
        prob = Problem.from_module(model, teacher_sampler(MLP((2, 2, 2), act), (2,), seed=ctx.seed), name=f"{act} 2-2-2")
        alg = find_symmetries(prob, seed=ctx.seed)
        E = np.array([[[float(v) for v in M.row(i)] for i in range(M.rows)] for M in exact]) if exact else \
            np.zeros((0, prob.n_params, prob.n_params))
        ang = subspace_angle(alg.basis, orthonormal_span(E) if E.shape[0] else E)
        rat = rational_basis(alg)
        exact_ok = rat is not None and all(is_symmetry_exact(net.loss, net.theta, sp.Matrix(R), binary) for R in rat)
        sym = [sp.Matrix(R) for R in (rat or []) if sp.Matrix(R) == sp.Matrix(R).T]
        laws = [derive_balance_law(net, A).sgd_residual for A in sym]
        bound = max(alg.span_error_bound, 1e-14)
        out.append(Verdict(RESULT, f"bias-free {act} 2-2-2 net: the finder's algebra is the exact SymPy algebra",
                           symbolic=f"exact_algebra: {len(exact)} rational generators (g^T A(c) theta = 0 as a polynomial "
                                    f"identity{', multilinear in the ReLU gains' if binary else ''})",
                           predicted=float(len(exact)), measured=float(alg.dim), tolerance=0.0,
                           tolerance_source="a dimension: exact integer",
                           criteria=[Criterion.at_most("largest principal angle to the exact span (rad)", ang, bound,
                                                       "Wedin bound of the finder"),
                                     Criterion.holds("the finder's rationalised generators are exact symmetries (SymPy)",
                                                     exact_ok, "symbolic/symmetry_check.is_symmetry_exact"),
                                     Criterion.holds("each symmetric one gives the SGD one-step identity exactly "
                                                     f"({len(sym)} generators)", len(sym) > 0 and all(r == 0 for r in laws),
                                                     "symbolic/layer_symmetries.derive_balance_law: residual 0")],
                           residual="0" if exact_ok else "a rationalised generator is not an exact symmetry"))
    return out


def _full_ansatz_verdicts(ctx: Context) -> list:
    """What the block ansatz misses, measured: a scalar-output deep linear net has
    d h (h-1)/2 cross-tensor shears on top of GL(h); the attention layer has nothing more."""
    from numeric.symmetry_finder import MLP, teacher_sampler

    out = []
    d, h = 2, 2
    torch.manual_seed(ctx.seed)
    model = MLP((d, h, 1), "linear").to(torch.float64)
    prob = Problem.from_module(model, teacher_sampler(MLP((d, h, 1), "linear"), (d,), seed=ctx.seed),
                               name="linear 2-2-1")
    full = find_symmetries(prob, ansatz="full", seed=ctx.seed)
    block = find_symmetries(prob, seed=ctx.seed)
    inside = subspace_angle(block.basis, _project(full.basis, block.basis))
    out.append(Verdict(RESULT, "full ansatz, linear 2-2-1 (scalar output): GL(h) plus d h(h-1)/2 shears "
                               "delta W1 = [S_1 w2, ..., S_d w2] that the block ansatz cannot see",
                       symbolic="w2^T F(w2) = 0 for all w2 forces F(w2) = [S_1 w2, ..., S_d w2], S_j antisymmetric: "
                                "h^2 + d h (h-1)/2 = 6",
                       predicted=float(h * h + d * h * (h - 1) // 2), measured=float(full.dim), tolerance=0.0,
                       tolerance_source="a dimension: exact integer",
                       criteria=[Criterion.within("block ansatz finds GL(h) only", block.dim, h * h, h * h, "derived"),
                                 Criterion.at_most("block algebra lies inside the full one (angle, rad)", inside,
                                                   max(full.span_error_bound, 1e-14) * 2, "Wedin")]))
    ex = examples()["self_attention"]
    pa = ex.problem(ctx.seed)
    fa = find_symmetries(pa, ansatz="full", seed=ctx.seed)
    ba = find_symmetries(pa, seed=ctx.seed)
    out.append(Verdict(RESULT, "full ansatz, self-attention: no linear symmetry beyond the block ansatz's GL(d_k)",
                       predicted=float(ba.dim), measured=float(fa.dim), tolerance=0.0,
                       tolerance_source="a dimension: exact integer",
                       criteria=[Criterion.at_most("principal angle between the two algebras (rad)",
                                                   subspace_angle(fa.basis, ba.basis),
                                                   max(fa.span_error_bound, ba.span_error_bound, 1e-14) * 2, "Wedin")]))
    return out


def _project(big: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Orthogonal projection of span(small) onto span(big), as (k_small, n, n)."""
    B = big.reshape(big.shape[0], -1)
    S = small.reshape(small.shape[0], -1)
    P = (S @ B.T) @ B
    return P.reshape(small.shape)


# The main job's SGD checks by budget (the full budget runs them with twice the steps and runs).
# The gam = 0 law is full-budget only: without decay the orbit relaxes only through the noise,
# at a rate that depends on the drawn problem (at seed 6902 the deep linear net's weakest
# generator still drifted after 11206 steps: residual 1.9x its bound; with the burn-in tripled it
# passes), while with decay it relaxes at 4 eta gam per step whatever the draw. Theorem 4's own
# gam = 0 witness, with its drift test, stays in the quick budget. The ReLU net's law
# (relu_mlp_bias) is in neither: a ReLU student with decay has absorbing states (a unit that
# stops firing is pruned), and a unit on its way there balances at a vanishing scale for tens of
# thousands of steps, so its E[theta^T A theta] still moves after any fixed burn-in at some draws.
# Measured at gam 0.1, the full budget's size (64 runs, 3000 steps), seeds 0-12: worst residual
# 1.28 of its interval at seed 7 and 1.09 at seed 8 (0.99 and 0.94 at seeds 1 and 12) with three
# burn-ins; with ten, seed 7 still 1.06, on a unit whose theta^T A theta is 3.5e-8 (the others'
# 1e-3 to 0.08), while the symmetry's bias stayed ~1e-19. It is the stationarity, not the law,
# that no fixed budget can promise there; Theorems 5 and 6 verify ReLU neuron balance on
# drift-tested runs, and ``python -m theorems.symmetries --list-examples`` still runs this law.
MAIN_JOB_SGD = {
    "quick": {"deep_linear": ("sgd",), "self_attention": ("sgd",)},
    "full": {"deep_linear": ("sgd", "sgd_zero_decay"), "self_attention": ("sgd",), "normalised_linear": ("sgd",),
             "rms_norm": ("sgd",)},
}


def exact_verdicts(ctx: Context) -> list:
    """The exact SymPy algebra of the small instances against the finder's, and the full-ansatz
    cross-check: what no single known model's verdicts cover."""
    return _exact_verdicts(ctx) + _full_ansatz_verdicts(ctx)


def finder_verdicts(ctx: Context, names=None, sgd: bool = True, exact: bool = True) -> list:
    """Verdicts for the known models ``names`` (default all): recovered algebra, orbit check and
    SGD balance laws (those of ``MAIN_JOB_SGD`` for ``ctx.budget``); ``exact``: then
    :func:`exact_verdicts`."""
    exs = examples()
    names = list(exs) if names is None else list(names)
    out = []
    advance = ctx.task("symmetry finder: " + (", ".join(names) if len(names) <= 2 else "known models"), len(names))
    for name in names:
        ex = exs[name]
        prob = ex.problem(ctx.seed)
        alg = find_symmetries(prob, seed=ctx.seed)
        out.append(_dimension_verdict(ex, alg))
        if alg.dim:
            out.append(_orbit_verdict(ex, verify_orbits(alg, seed=ctx.seed + 1)))
        if sgd:
            wanted = MAIN_JOB_SGD["full" if ctx.full else "quick"].get(name, ())
            for key in wanted:
                cfg = getattr(ex, key)
                if cfg is None:
                    continue
                cfg = dict(cfg)
                if ctx.full:
                    cfg["steps"] = 2 * cfg["steps"]
                    cfg["n_runs"] = 2 * cfg.get("n_runs", 32)
                try:
                    rep = run_sgd(prob, alg, seed=ctx.seed + 2, **cfg)
                except (DivergenceError, InputError) as exc:
                    out.append(Verdict(RESULT, f"{name}: SGD balance laws", error=f"{type(exc).__name__}: {exc}"))
                    continue
                if rep.result is not None:
                    out.append(_sgd_verdict(ex, rep))
        advance(1)
    if exact:
        out += exact_verdicts(ctx)
    return out


# ======================================================================================= CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"python -m theorems.symmetries: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m theorems.symmetries", description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", help="path/to/model.py:factory (see the module docstring)")
    p.add_argument("--list-examples", action="store_true", help="run the known models and compare with their answers")
    p.add_argument("--examples", default=None, help="comma-separated subset of the known models (with --list-examples)")
    p.add_argument("--ansatz", default="block", choices=("block", "full"))
    p.add_argument("--eta", type=float, default=0.05,
                   help="design learning rate, capped at a quarter of SGD's stability limit where the runs start")
    p.add_argument("--no-stability-cap", action="store_true",
                   help="run at --eta from the model's own point, no pilot, no cap: for a model that stabilises "
                        f"itself (a scale-invariant weight), whose linearised limit would stretch the run past "
                        f"{MAX_CAP_STRETCH}x")
    p.add_argument("--gamma", type=float, default=0.05,
                   help="weight decay in the loss, default 0.05 (0: check the gam = 0 law only)")
    p.add_argument("--zero-decay", action="store_true", help="also check the gam = 0 law")
    p.add_argument("--runs", type=int, default=32)
    p.add_argument("--steps", type=int, default=1500, help="averaged SGD steps after the burn-in")
    p.add_argument("--burn-in", type=int, default=None,
                   help="default: 20 / (4 eta gam (1 - eta gam)) (10 / eta^2 at gam = 0), at least 500")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sgd", action="store_true", help="find and verify the algebra only")
    p.add_argument("--json", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_default_dtype(torch.float64)
    try:
        return _main(args)
    except (InputError, DivergenceError) as exc:
        sys.stderr.write(f"python -m theorems.symmetries: error: {exc}\n")
        return EXIT_USAGE


def _main(args) -> int:
    if args.list_examples == bool(args.spec):
        raise InputError("give either path/to/model.py:factory or --list-examples")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    reports = []
    if args.spec:
        prob = load_problem(args.spec, seed=args.seed)
        rep = analyse(prob, ansatz=args.ansatz, seed=args.seed, sgd=not args.no_sgd, zero_decay=args.zero_decay,
                      eta=args.eta, gamma=args.gamma, steps=args.steps, burn_in=args.burn_in, n_runs=args.runs,
                      batch=args.batch, uncapped="--no-stability-cap" if args.no_stability_cap else None)
        reports.append((prob.name, rep, None))
    else:
        exs = examples()
        names = list(exs) if args.examples is None else [n.strip() for n in args.examples.split(",") if n.strip()]
        unknown = [n for n in names if n not in exs]
        if unknown:
            raise InputError(f"unknown example {', '.join(unknown)}; known: {', '.join(exs)}")
        for n in names:
            ex = exs[n]
            cfg = ex.sgd or {}
            zero = ex.sgd_zero_decay if args.zero_decay else None
            rep = analyse(ex.problem(args.seed), ansatz=args.ansatz, seed=args.seed,
                          sgd=not args.no_sgd and ex.sgd is not None, zero_decay=zero is not None,
                          eta=cfg.get("eta", args.eta), gamma=cfg.get("gamma", args.gamma),
                          steps=cfg.get("steps", args.steps), burn_in=cfg.get("burn_in", args.burn_in),
                          n_runs=cfg.get("n_runs", args.runs), batch=cfg.get("batch", args.batch),
                          zero_decay_burn_in=(zero or {}).get("burn_in"), uncapped=cfg.get("uncapped"))
            reports.append((n, rep, ex))
    ok = True
    payload = []
    for name, rep, ex in reports:
        passed = rep.passed
        if ex is not None:
            alg = rep.algebra
            match = (alg.dim, alg.dim_symmetric, alg.dim_antisymmetric) == (
                ex.expected_dim, ex.expected_symmetric, ex.expected_antisymmetric)
            known = ex.known(alg.problem)
            ang = subspace_angle(alg.basis, orthonormal_span(known) if known.shape[0] else known)
            span_ok = ang <= max(alg.span_error_bound, 1e-14)
            passed = passed and match and span_ok
        ok = ok and passed
        if args.json:
            d = report_json(rep)
            d["name"] = name
            if ex is not None:
                d.update(expected=[ex.expected_dim, ex.expected_symmetric, ex.expected_antisymmetric],
                         angle_to_known=ang, passed=passed)
            payload.append(d)
        else:
            print(format_report(rep, name))
            if ex is not None:
                print(f"expected (derived): dim {ex.expected_dim} = {ex.expected_symmetric} symmetric + "
                      f"{ex.expected_antisymmetric} antisymmetric; largest principal angle to the known algebra "
                      f"{ang:.2g} (bound {max(alg.span_error_bound, 1e-14):.2g}): {'PASS' if passed else 'FAIL'}")
                print(f"  why: {ex.derivation}")
            print()
    if args.json:
        print(json.dumps(payload, indent=2, default=float))
    return EXIT_OK if ok else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
