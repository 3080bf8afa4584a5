r"""The small-learning-rate limit of SGD on linear nets, measured against the entropic optimum.

A :class:`LimitProblem` is a teacher ``y = V x + e`` (``x ~ N(0, Sx)``, ``e ~ N(0, Se)``), the
hidden widths of a linear net ``f = W_D ... W_1 x`` (depth ``D = len(hidden) + 1``) and the
batch size. Its closed-form prediction comes from :mod:`symbolic.deep_linear` (the global
minimiser of the entropic loss, :func:`symbolic.deep_linear.entropic_minimum`, whose
Q-free invariants are the prediction; at depth 2 they are Theorem 12's ``W^T W`` and
``U U^T``):

* ``K1 .. K{D-1}``: hidden kernels ``K_k = B_k^T B_k``, ``B_k = W_k ... W_1`` (``K1 = W^T W``);
* ``WDWDt``: ``W_D W_D^T`` (``U U^T`` at depth 2).

:func:`run_rung` runs an ensemble at one learning rate on the compiled engine
(:func:`numeric.engine.linear_ensemble`), from the closed form or from a far start (a
random point of the minimum manifold, moved along the balance directions of the layer
symmetry), for a burn-in of ``burn_in * B / eta^2`` steps (motion along the symmetry orbit
relaxes at a rate ~ eta^2 / B per step), then until the drift test of
:func:`numeric.stationary.stationary_average` passes, then averages: means and CLT
standard errors across the independent runs. :func:`run_ladder` repeats it over learning
rates (each rung from its own start and with its own seed, so rungs are independent) and
fits every invariant by :func:`numeric.stationary.fit_eta_ladder`.

**Rotation of the hidden basis.** The loss and the label noise are invariant under
``B_k -> O B_k`` (O orthogonal), so a steady motion of the hidden basis leaves every
invariant stationary. Its rate is measured with the input-frame generator

    A_k = antisym(B_k(t)^T B_k(t + Delta)) / Delta,

averaged over ``Delta``-spaced snapshots (``Delta`` a fraction ``1/rotation_chunks`` of a
block). If ``B_k(t + Delta) = (I + Delta (Omega + S)) B_k(t)`` with ``Omega`` antisymmetric
(rotation) and ``S`` symmetric (balance), then ``A_k = B_k^T Omega B_k``: the rotation seen
from the input space, invariant under ``B_k -> O B_k`` (so meaningful across runs). The
reported rate is ``|E A_k|_F / |E K_k|_F`` per step (for ``B = c O`` it is the Frobenius
rate ``|Omega|_F / sqrt(dx)``). The estimator is exact to first order in ``Delta``; its
relative error is of second order, ``O(|Omega Delta|^2 + |S Delta| |Omega Delta|)``, with
``|Omega Delta| <= 0.05`` at the snapshot spacing used (``Delta = B / (20 eta^2)`` steps and
rates up to ~0.9 eta^2 / B per step).

>>> p = LimitProblem("tiny", V=np.eye(2), Sx=np.eye(2), Se=np.diag([1.0, 0.5]), hidden=(2,))
>>> sorted(p.prediction()), p.depth
(['K1', 'WDWDt'], 2)
>>> r = run_rung(p, 0.008, n_runs=16, burn_in=0.2, block=0.05, window=2, average_blocks=2, sample_every=5)
>>> r.converged is not None, sorted(r.mean)[:2], r.rotation_rate.shape
(True, ['K1', 'WDWDt'], (1,))
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch

from core.errors import InputError
from core.validation import numerical_rank
from symbolic import deep_linear as dl

from . import engine
from .linear_ensemble import LinearTeacher
from .stationary import fit_eta_ladder, stationary_average

STARTS = ("closed_form", "far")
STREAM_OFFSETS = {"closed_form": 0, "far": 500_009, "given": 1_000_003}  # seed offsets per start
# eta * T (T = Tr hess L at the start) above which a rung is refused: gradient descent is
# stable below eta * lambda_max = 2 <= 2 T / lambda_max; batch-1 SGD on Gaussian data loses
# runs near eta * T ~ 0.5 (theorems/settings/platonic.py records losses at 0.49, none at
# 0.34), so 0.15 keeps a margin above 3 against that.
STABILITY_MARGIN = 0.15


@dataclass
class LimitProblem:
    """A teacher, the hidden widths of ``f = W_D ... W_1 x`` and the batch size."""

    name: str
    V: np.ndarray
    Sx: np.ndarray
    Se: np.ndarray
    hidden: tuple
    batch: int = 1
    Z: np.ndarray | None = None
    M_I: np.ndarray | None = None
    M_O: np.ndarray | None = None

    def __post_init__(self):
        # The embedded problem validates V, Sx, Se (symmetric positive definite, matching
        # shapes) and the fixed maps; the problem keeps its validated arrays.
        self._embedded = dl.EmbeddedProblem(self.V, self.Sx, self.Se, self.Z, self.M_I, self.M_O)
        self.V, self.Sx, self.Se = self._embedded.V, self._embedded.Sx, self._embedded.Se
        self.teacher = LinearTeacher(self.V, self.Sx, self.Se)
        self.hidden = tuple(int(h) for h in self.hidden)
        r = numerical_rank("V", self.V)
        if not self.hidden or any(h < r for h in self.hidden):
            raise InputError(f"hidden widths {self.hidden} must be non-empty and each >= rank V = {r}")
        if len(self.hidden) > 3:
            raise InputError(f"depth {len(self.hidden) + 1} > 4: the compiled engine runs at most 4 layers")
        if int(self.batch) != self.batch or self.batch < 1:
            raise InputError(f"batch must be a positive integer, got {self.batch!r}")
        self.batch = int(self.batch)

    @property
    def depth(self) -> int:
        return len(self.hidden) + 1

    @property
    def embedded(self) -> dl.EmbeddedProblem:
        """The teacher with its fixed maps ``f = M_O W_D ... W_1 M_I Z x`` (identity when None)."""
        return self._embedded

    def closed_form_weights(self, seed: int = 0) -> list:
        """One representative ``[W_1, ..., W_D]`` of the entropic optimum."""
        return dl.entropic_minimum(self.embedded, list(self.hidden), seed=seed)

    def prediction(self) -> dict:
        """The closed form's Q-free invariants: ``K1 .. K{D-1}`` and ``WDWDt``."""
        return invariants(self.closed_form_weights(), self.embedded.G)

    def sharpness(self, weights) -> float:
        """``Tr hess L`` at ``weights`` (population loss, exact for a linear net: the sum of
        ``|prefix|^2 |suffix|^2``-type terms evaluated by autograd on the quadratic form)."""
        return total_sharpness(self.embedded, weights)

    def far_start(self, seed: int, scale: float = 0.5, max_sharpness: float | None = None) -> list:
        """A point of the minimum manifold far along the balance directions: the closed
        form with ``W_{k+1} -> W_{k+1} E_k^{-1}``, ``W_k -> E_k W_k`` at every hidden layer,
        ``E_k = expm(scale * symmetric Gaussian)`` (the same for every run). With
        ``max_sharpness``, the scale shrinks by 0.8 until ``Tr hess L`` at the start is
        at most that (so that the ladder's largest eta stays stable there)."""
        rng = np.random.default_rng(10_000 + int(seed))
        ws0 = self.closed_form_weights(seed)
        moves = [rng.standard_normal((h, h)) for h in self.hidden]
        for _ in range(60):
            ws = [w.copy() for w in ws0]
            for k, A in enumerate(moves):
                E = scipy.linalg.expm(scale * (A + A.T) / 2)
                ws[k] = E @ ws[k]
                ws[k + 1] = ws[k + 1] @ np.linalg.inv(E)
            if max_sharpness is None or self.sharpness(ws) <= max_sharpness:
                return ws
            scale *= 0.8
        raise InputError(f"no far start with Tr hess L <= {max_sharpness:g} (the closed form has "
                         f"{self.sharpness(ws0):.4g})")

    def at_rank(self) -> "LimitProblem":
        """The same teacher with every hidden width cut to rank V (hidden units beyond the
        rank carry nothing at the entropic optimum, and in SGD they decay)."""
        r = self.embedded.rank
        return LimitProblem(self.name, self.V, self.Sx, self.Se, tuple(min(h, r) for h in self.hidden), self.batch,
                            self.Z, self.M_I, self.M_O)

    def spec(self) -> dict:
        """A JSON-ready description."""
        e = self.embedded
        return {"name": self.name, "V": self.V.tolist(), "Sx": self.Sx.tolist(), "Se": self.Se.tolist(),
                "Z": e.Z.tolist(), "M_I": e.M_I.tolist(), "M_O": e.M_O.tolist(),
                "hidden": list(self.hidden), "batch": self.batch, "depth": self.depth,
                "cond Sx": float(np.linalg.cond(self.Sx)), "cond Se": float(np.linalg.cond(self.Se))}


def total_sharpness(problem: dl.EmbeddedProblem, weights) -> float:
    """``Tr hess L`` of the population loss ``L = E|M_O W_D ... W_1 G x - y|^2`` at ``weights``:
    L is quadratic in each layer, so ``d^2 L / dW_i^2 = 2 (A_i^T A_i) (x) (B_{i-1} Su B_{i-1}^T)``
    and its trace is ``2 |A_i|_F^2 Tr(B_{i-1} Su B_{i-1}^T)`` (``A_i = M_O W_D .. W_{i+1}``,
    ``B_{i-1} = W_{i-1} .. W_1``, ``Su = G Sx G^T``).

    >>> total_sharpness(dl.EmbeddedProblem(np.eye(2), np.eye(2), np.eye(2)), [np.eye(2), np.eye(2)])
    16.0
    """
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    total = 0.0
    for i in range(len(ws)):
        below = np.eye(ws[0].shape[1])
        for w in ws[:i]:
            below = w @ below
        above = np.eye(ws[i].shape[0])
        for w in ws[i + 1:]:
            above = w @ above
        above = problem.M_O @ above
        total += 2 * float(np.sum(above**2)) * float(np.trace(below @ problem.Su @ below.T))
    return total


def invariants(weights, G=None) -> dict:
    """Q-free invariants of one net ``[W_1, ..., W_D]``: hidden kernels ``K1 .. K{D-1}`` in
    input coordinates (``(B_k G)^T (B_k G)``, G = M_I Z, identity when None) and ``WDWDt``."""
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    out, B = {}, ws[0] if G is None else ws[0] @ np.asarray(G, dtype=np.float64)
    for k in range(1, len(ws)):
        out[f"K{k}"] = B.T @ B
        B = ws[k] @ B
    out["WDWDt"] = ws[-1] @ ws[-1].T
    return out


def frobenius_weights(d: int) -> np.ndarray:
    """Weights of the :func:`upper` components in the Frobenius norm of the full symmetric
    matrix: 1 on the diagonal, sqrt 2 off it (each off-diagonal entry appears twice).

    >>> frobenius_weights(2).round(4).tolist()
    [1.0, 1.4142, 1.0]
    """
    i, j = np.triu_indices(int(d))
    return np.where(i == j, 1.0, math.sqrt(2.0))


def upper(m) -> np.ndarray:
    """The upper triangle (with the diagonal) of a symmetric matrix, row by row: its
    independent components (a fit of both off-diagonal copies would count them twice)."""
    m = np.asarray(m, dtype=np.float64)
    return m[np.triu_indices(m.shape[-1])]


# ------------------------------------------------------------------------------------ one rung


@dataclass
class RungResult:
    """Stationary averages at one learning rate. ``mean`` / ``stderr``: invariant name ->
    (d, d) array (CLT over runs); ``rotation``: per hidden layer the ensemble mean of
    ``A_k`` (dx, dx) and ``rotation_se`` its standard error; ``rotation_rate``:
    ``|E A_k|_F / |E K_k|_F`` per step, and ``rotation_rate_se`` its standard error."""

    eta: float
    start: str
    n_runs: int
    seed: int
    mean: dict
    stderr: dict
    rotation: list
    rotation_se: list
    rotation_rate: np.ndarray
    rotation_rate_se: np.ndarray
    burn_in_steps: int
    steps_to_stationary: int
    total_steps: int
    converged: bool
    start_sharpness: float
    wall_s: float

    def record(self) -> dict:
        """A JSON-ready summary."""
        return {"eta": self.eta, "start": self.start, "n_runs": self.n_runs, "seed": self.seed,
                "mean": {k: v.tolist() for k, v in self.mean.items()},
                "stderr": {k: v.tolist() for k, v in self.stderr.items()},
                "rotation": [a.tolist() for a in self.rotation], "rotation_se": [a.tolist() for a in self.rotation_se],
                "rotation_rate": self.rotation_rate.tolist(), "rotation_rate_se": self.rotation_rate_se.tolist(),
                "burn_in_steps": self.burn_in_steps, "steps_to_stationary": self.steps_to_stationary,
                "total_steps": self.total_steps, "converged": self.converged,
                "start_sharpness": self.start_sharpness, "wall_s": self.wall_s}


def _representations(ens, G: torch.Tensor) -> list:
    """``B_k G = W_k ... W_1 G`` (the hidden representation of x) for every hidden layer k,
    per run, float64 (R, h_k, dx)."""
    ws = [w.to(torch.float64) for w in ens.weights]
    out, B = [], ws[0] @ G
    for k in range(1, len(ws)):
        out.append(B.clone())
        B = ws[k] @ B
    return out


def _rotation_accumulator(ens, chunks: int, G: np.ndarray):
    """``accumulate(n, k)`` for :func:`stationary_average`: ``ens.run_accumulate`` in
    ``chunks`` pieces, with the rotation generators ``A1 ..`` of the pieces added."""
    G = torch.as_tensor(np.asarray(G, dtype=np.float64))
    prev = [_representations(ens, G)]

    def accumulate(n_steps: int, sample_every: int) -> dict:
        # equal pieces (multiples of sample_every; the last takes the remainder)
        piece = max(1, n_steps // (chunks * sample_every)) * sample_every
        sizes = [piece] * (chunks - 1)
        sizes.append(n_steps - sum(sizes))
        sizes = [m for m in sizes if m > 0]
        total, out = sum(sizes), {}
        for m in sizes:
            obs = ens.run_accumulate(m, sample_every)
            now = _representations(ens, G)
            for k, (b0, b1) in enumerate(zip(prev[0], now)):
                g = b0.transpose(-1, -2) @ b1
                obs[f"A{k + 1}"] = (g - g.transpose(-1, -2)) / (2.0 * m)
            prev[0] = now
            for name, v in obs.items():
                w = v.to(torch.float64) * (m / total)
                out[name] = out[name] + w if name in out else w
        return out

    return accumulate


def run_rung(problem: LimitProblem, eta: float, *, start="closed_form", label: str | None = None,
             n_runs: int = 256, seed: int = 0,
             burn_in: float = 3.0, block: float = 0.25, window: int = 2, average_blocks: int = 4,
             max_blocks: int = 40, sample_every: int = 10, rotation_chunks: int = 5,
             threads: int | None = 1) -> RungResult:
    """Run ``n_runs`` SGD runs at ``eta`` from ``start`` to stationarity and average.

    ``start``: "closed_form", "far" (:meth:`LimitProblem.far_start`) or a list of weights.
    Step counts are in units of ``B / eta^2`` (B the batch): ``burn_in`` of them first
    (discarded), then blocks of ``block`` until the trend drift test (z = 4 over
    ``2 * window`` blocks) passes or ``max_blocks`` blocks ran (``converged`` False), then
    ``average_blocks`` blocks averaged. Raises InputError when ``eta * Tr hess L`` at the
    start exceeds :data:`STABILITY_MARGIN`, DivergenceError when a run diverges anyway.
    """
    eta = float(eta)
    if not eta > 0:
        raise InputError(f"eta must be positive, got {eta}")
    if isinstance(start, str):
        if start not in STARTS:
            raise InputError(f"start must be one of {STARTS} or a list of weights, got {start!r}")
        label = start
        weights = (problem.closed_form_weights(seed) if start == "closed_form"
                   else problem.far_start(seed, max_sharpness=STABILITY_MARGIN / eta))
    else:
        label, weights = label or "given", [np.asarray(w, dtype=np.float64) for w in start]
    for name, v in (("burn_in", burn_in), ("block", block)):
        if not v > 0:
            raise InputError(f"{name} must be positive, got {v}")
    sharp = problem.sharpness(weights)
    if eta * sharp > STABILITY_MARGIN:
        raise InputError(f"eta = {eta:g} times Tr hess L = {sharp:.4g} at the start is {eta * sharp:.3g} > "
                         f"{STABILITY_MARGIN} (the stability margin): lower eta")
    t0 = time.perf_counter()
    unit = problem.batch / eta**2
    ens = engine.linear_ensemble(problem.teacher, list(problem.hidden), int(n_runs), eta, batch=problem.batch,
                                 seed=int(seed), device="cpu", engine="fused-cpu", threads=threads,
                                 Z=problem.Z, M_I=problem.M_I, M_O=problem.M_O)
    ens.load_weights(weights)
    burn = int(math.ceil(burn_in * unit / sample_every)) * sample_every
    ens.run(burn)
    block_steps = max(rotation_chunks * sample_every, int(math.ceil(block * unit / sample_every)) * sample_every)
    res = stationary_average(None, None, accumulate=_rotation_accumulator(ens, rotation_chunks, problem.embedded.G),
                             block_steps=block_steps, window=window, average_blocks=average_blocks,
                             max_steps=max_blocks * block_steps, sample_every=sample_every, drift_test="trend")
    mean = {k: res.mean[k].numpy() for k in res.mean if k.startswith("K") or k == "WDWDt"}
    stderr = {k: res.stderr[k].numpy() for k in mean}
    rot, rot_se, rate, rate_se = [], [], [], []
    for k in range(1, problem.depth):
        a_runs = res.per_run[f"A{k}"].numpy()  # (R, dx, dx)
        a = a_runs.mean(0)
        rot.append(a)
        rot_se.append(a_runs.std(0, ddof=1) / math.sqrt(a_runs.shape[0]))
        kn = float(np.linalg.norm(mean[f"K{k}"]))
        rate.append(float(np.linalg.norm(a)) / kn)
        # delta method: the rate's fluctuation is the projection of each run's A_k on E A_k
        unit_a = a / (np.linalg.norm(a) or 1.0)
        proj = np.einsum("rij,ij->r", a_runs, unit_a) / kn
        rate_se.append(float(proj.std(ddof=1) / math.sqrt(len(proj))))
    return RungResult(eta, label, int(n_runs), int(seed), mean, stderr, rot, rot_se, np.array(rate),
                      np.array(rate_se), burn, res.steps_to_stationary, burn + res.total_steps,
                      bool(res.converged), sharp, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ a ladder


@dataclass
class LadderStudy:
    """Rungs (largest eta first), the closed-form prediction and one fit per invariant."""

    problem: LimitProblem
    start: str
    rungs: list
    prediction: dict
    fits: dict = field(default_factory=dict)
    start_distance: dict = field(default_factory=dict)  # invariant -> relative Frobenius distance of the start

    @property
    def etas(self) -> list:
        return [r.eta for r in self.rungs]

    def offset(self, name: str) -> tuple[float, float]:
        """``(|c0 - prediction|_F / |prediction|_F, |se(c0)|_F / |prediction|_F)``, Frobenius
        norms of the full symmetric matrices (off-diagonal standard errors counted twice)."""
        w = frobenius_weights(self.prediction[name].shape[0])
        pred = upper(self.prediction[name])
        f = self.fits[name]
        n = float(np.linalg.norm(w * pred))
        return float(np.linalg.norm(w * (f.c0 - pred))) / n, float(np.linalg.norm(w * f.se0)) / n

    def offset_z(self, name: str) -> float:
        """The offset in standard errors along its own direction: ``|d|^2 / sqrt(sum d_j^2
        se_j^2)`` (d = c0 - prediction; the projection of the independent component errors
        on d), so that one number states how many standard errors the limit sits away."""
        d = self.fits[name].c0 - upper(self.prediction[name])
        se = self.fits[name].se0
        return float(np.sum(d**2) / math.sqrt(np.sum(d**2 * se**2))) if np.any(d) else 0.0

    def rung_errors(self, name: str) -> list:
        """Relative Frobenius error of each rung's mean against the prediction."""
        p = self.prediction[name]
        return [float(np.linalg.norm(r.mean[name] - p) / np.linalg.norm(p)) for r in self.rungs]

    def record(self) -> dict:
        """A JSON-ready summary (problem, rungs, fits, offsets)."""
        fits = {}
        for name, f in self.fits.items():
            off, off_se = self.offset(name)
            fits[name] = {"c0": f.c0.tolist(), "se0": f.se0.tolist(), "c1": f.c1.tolist(), "chi2": f.chi2,
                          "dof": f.dof, "order": f.order, "prediction": upper(self.prediction[name]).tolist(),
                          "relative_offset": off, "relative_se": off_se, "offset_z": self.offset_z(name),
                          "rung_errors": self.rung_errors(name)}
        return {"problem": self.problem.spec(), "start": self.start, "etas": self.etas,
                "start_distance": self.start_distance,
                "rungs": [r.record() for r in self.rungs], "fits": fits,
                "wall_s": sum(r.wall_s for r in self.rungs)}


def fit_ladder(rungs: list, prediction: dict, order: int | None = None) -> dict:
    """One :class:`~numeric.stationary.LadderFit` per invariant (upper triangles)."""
    etas = [r.eta for r in rungs]
    return {name: fit_eta_ladder(etas, [upper(r.mean[name]) for r in rungs], [upper(r.stderr[name]) for r in rungs],
                                 order=order) for name in prediction}


def run_ladder(problem: LimitProblem, etas, *, start="closed_form", n_runs: int = 256, seed: int = 0,
               order: int | None = None, progress=None, **rung_options) -> LadderStudy:
    """:func:`run_rung` at every eta (largest first, each with its own seed and from
    ``start``), then :func:`fit_ladder`. ``progress(rung)`` is called after each rung."""
    etas = sorted((float(e) for e in etas), reverse=True)
    if len(etas) < 3:
        raise InputError(f"a ladder needs at least three learning rates, got {etas}")
    label = start if isinstance(start, str) else "given"
    if start == "far":  # one far start for every rung, stable at the largest eta
        start = problem.far_start(seed, max_sharpness=STABILITY_MARGIN / etas[0])
    elif start == "closed_form":
        start = problem.closed_form_weights(seed)
    # each rung and each start its own Philox streams: ladders from different starts are independent
    first = int(seed) + STREAM_OFFSETS.get(label, STREAM_OFFSETS["given"])
    rungs = []
    for k, eta in enumerate(etas):
        rungs.append(run_rung(problem, eta, start=start, label=label, n_runs=n_runs, seed=first + 7919 * (k + 1),
                              **rung_options))
        if progress is not None:
            progress(rungs[-1])
    pred = problem.prediction()
    at_start = invariants(start, problem.embedded.G)
    distance = {n: float(np.linalg.norm(at_start[n] - pred[n]) / np.linalg.norm(pred[n])) for n in pred}
    return LadderStudy(problem, label, rungs, pred, fit_ladder(rungs, pred, order), distance)



# ------------------------------------------------------------------ the slow flow on the manifold
#
# Near the minimum manifold Gamma = {W_D ... W_1 = V}, SGD with step eta and per-sample gradient
# covariance Sigma moves along Gamma on the time scale tau = eta^2 k / B (k steps, batch B).
# To leading order in eta (Katzenberger 1991; Li, Wang & Arora 2022, "What happens after SGD
# reaches zero loss?") the motion is the flow
#
#     d theta / d tau = 1/2 d^2 Phi[Sigma] = -1/2 P_T grad_theta Tr(H(theta) Lam),
#     H Lam + Lam H = Sigma  (Lam fixed while differentiating),
#
# with Phi the gradient-flow limit map, H the Hessian of L and P_T the projection on the
# tangent space of Gamma (its kernel). No tangent noise enters: a per-sample gradient
# -2 J^T e is orthogonal to every tangent vector t (J t = 0 on Gamma). When Sigma is
# proportional to H (isotropic label noise), Lam is proportional to the normal projector and
# the flow is the projected gradient of -Tr H, i.e. of the entropy: the closed form is its
# fixed point. Otherwise the flow is not a gradient flow; its fixed points modulo the
# orthogonal symmetry of each hidden layer (the invariants stationary while the hidden basis
# may rotate) are the eta -> 0 limit of the stationary state.


def _flat(weights) -> tuple:
    shapes = [tuple(np.shape(w)) for w in weights]
    theta = torch.cat([torch.as_tensor(np.asarray(w, dtype=np.float64)).reshape(-1) for w in weights])
    return theta, shapes


def _unflat(theta, shapes) -> list:
    sizes = [int(np.prod(s)) for s in shapes]
    return [t.reshape(s) for t, s in zip(torch.split(theta, sizes), shapes)]


def _population_loss(problem: LimitProblem, shapes):
    e = problem.embedded
    V, Sx, G, M_O = (torch.as_tensor(a) for a in (e.V, e.Sx, e.G, e.M_O))

    def loss(theta):
        P = None
        for W in _unflat(theta, shapes):
            P = W if P is None else W @ P
        R = M_O @ P @ G - V
        return torch.trace(R @ Sx @ R.T)  # E|f - y|^2 - Tr Se

    return loss


def gradient_noise_covariance(problem: LimitProblem, weights) -> np.ndarray:
    """Per-sample gradient covariance on the manifold (``f = V x``, residual ``-e``):
    ``grad_{W_i} l = -2 A_i^T M_O^T e (B_{i-1} G x)^T``, so the (i, j) block is
    ``4 (A_i^T N A_j) (x) (B_{i-1} Su B_{j-1}^T)`` (row-major vec; ``N = M_O^T Se M_O``,
    ``Su = G Sx G^T``).

    >>> p = LimitProblem("s", np.eye(1), np.eye(1), np.eye(1), (1,))
    >>> gradient_noise_covariance(p, [np.ones((1, 1)), np.ones((1, 1))]).tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    D = len(ws)
    above, below = [], []
    for i in range(D):
        b = np.eye(ws[0].shape[1])
        for w in ws[:i]:
            b = w @ b
        a = np.eye(ws[-1].shape[0])
        for w in ws[i + 1:][::-1]:
            a = a @ w
        above.append(a)
        below.append(b)
    N, Su = problem.embedded.N, problem.embedded.Su
    blocks = [[4 * np.kron(above[i].T @ N @ above[j], below[i] @ Su @ below[j].T)
               for j in range(D)] for i in range(D)]
    return np.block(blocks)


def manifold_drift(problem: LimitProblem, weights) -> list:
    """``d W_i / d tau`` of the slow flow at a point of the minimum manifold (see above;
    per step it is ``eta^2 / B`` times this)."""
    from torch.func import grad, hessian

    theta, shapes = _flat(weights)
    loss = _population_loss(problem, shapes)
    H = hessian(loss)(theta)
    lam, Q = torch.linalg.eigh(H)
    normal = lam > 1e-9 * lam.max()
    Qn, Qt = Q[:, normal], Q[:, ~normal]
    Sigma = torch.as_tensor(gradient_noise_covariance(problem, weights))
    Sn = Qn.T @ Sigma @ Qn
    Lam = Qn @ (Sn / (lam[normal][:, None] + lam[normal][None, :])) @ Qn.T
    g3 = grad(lambda t: (hessian(loss)(t) * Lam).sum())(theta)
    drift = -0.5 * (Qt @ (Qt.T @ g3))
    return [d.numpy() for d in _unflat(drift, shapes)]


def _orbit_weights(problem: LimitProblem, base: list, moves) -> list:
    """The net whose layer-k representation is ``B_k = M_k^{1/2} B_k^0`` (``B_k^0`` that of
    ``base``, ``M_k`` SPD): ``W_1 = B_1``, ``W_k = B_k B_{k-1}^+``, ``W_D = P B_{D-1}^+``
    (``P = M_O^{-1} V G^{-1}``). With every width equal to rank V these points, modulo the
    hidden rotations, are the whole minimum manifold."""
    Bs, B = [], base[0]
    for k, M in enumerate(moves):
        Bs.append(np.real(scipy.linalg.sqrtm(M)) @ B)
        B = base[k + 1] @ B
    ws = [Bs[0]] + [Bs[k] @ np.linalg.pinv(Bs[k - 1]) for k in range(1, len(Bs))]
    return ws + [problem.embedded.P @ np.linalg.pinv(Bs[-1])]


def _kernel_rates(problem: LimitProblem, weights) -> tuple[list, list]:
    """``dK_k/dtau`` and the input-frame rotation ``antisym((B_k G)^T d(B_k G)/dtau)`` per
    hidden layer."""
    dws = manifold_drift(problem, weights)
    G = problem.embedded.G
    dK, rot = [], []
    B, dB = weights[0], dws[0]
    for k in range(1, len(weights)):
        g = G.T @ B.T @ dB @ G
        dK.append(g + g.T)
        rot.append((g - g.T) / 2)
        B, dB = weights[k] @ B, dws[k] @ B + weights[k] @ dB
    return dK, rot


@dataclass
class SlowFlowLimit:
    """Fixed point of the slow flow modulo hidden-layer rotations (every width = rank V).

    ``prediction``: the invariants there (as :meth:`LimitProblem.prediction`);
    ``rotation``: per hidden layer the input-frame rotation generator per step divided by
    eta^2 (comparable with :attr:`RungResult.rotation` / eta^2); ``rotation_rate`` its
    ``|A|_F / |K|_F``; ``closed_form_rates``: ``|dK_k/dtau|_F / |K_k|_F`` at the closed form
    (zero iff the closed form is a fixed point); ``residual``: ``max |dK/dtau|`` at the
    solution."""

    prediction: dict
    rotation: list
    rotation_rate: np.ndarray
    closed_form_rates: np.ndarray
    residual: float
    weights: list = field(default_factory=list)  # a representative of the fixed point


def slow_flow_limit(problem: LimitProblem, xtol: float = 1e-13) -> SlowFlowLimit:
    """Solve ``dK_k/dtau = 0`` for the fixed point of the slow flow modulo hidden rotations
    (scipy fsolve over the SPD moves ``M_k`` of :func:`_orbit_weights`, from the closed form).

    Every hidden width must equal rank V (then the minimum manifold is the orbit of the
    layer symmetries and ``M_1 .. M_{D-1}`` fix a point modulo rotations); InputError
    otherwise. The equations are ``dK_k/dtau`` seen from the hidden layer,
    ``(B_k G)^{+T} dK_k (B_k G)^{+}``, which loses nothing as ``K_k`` lives on the row space of
    ``B_k G``.
    """
    r = problem.embedded.rank
    if any(h != r for h in problem.hidden):
        raise InputError(f"the slow-flow limit is computed for widths equal to rank V = {r}, got {problem.hidden}")
    import scipy.optimize

    iu = np.triu_indices(r)
    base = problem.closed_form_weights()
    G = problem.embedded.G
    L = problem.depth - 1

    def unpack(z):
        Ms = []
        for k in range(L):
            M = np.zeros((r, r))
            M[iu] = z[k * len(iu[0]):(k + 1) * len(iu[0])]
            Ms.append(M + np.triu(M, 1).T)
        return Ms

    def hidden_rates(ws):
        dK, rot = _kernel_rates(problem, ws)
        out, B = [], ws[0]
        for k in range(L):
            Bi = np.linalg.pinv(B @ G)
            out.append(Bi.T @ dK[k] @ Bi)
            B = ws[k + 1] @ B
        return out, dK, rot

    def residual(z):
        return np.concatenate([m[iu] for m in hidden_rates(_orbit_weights(problem, base, unpack(z)))[0]])

    z0 = np.concatenate([np.eye(r)[iu] for _ in range(L)])
    z, info, ok, msg = scipy.optimize.fsolve(residual, z0, xtol=xtol, full_output=True)
    if ok != 1:
        raise InputError(f"the slow-flow fixed point was not found: {msg}")
    ws = _orbit_weights(problem, base, unpack(z))
    pred = problem.prediction()
    out = invariants(ws, G)
    _, dK0, _ = hidden_rates(base)
    _, dK, rot = hidden_rates(ws)
    rot = [a / problem.batch for a in rot]
    return SlowFlowLimit(out, rot,
                         np.array([np.linalg.norm(a) / np.linalg.norm(out[f"K{k + 1}"]) for k, a in enumerate(rot)]),
                         np.array([np.linalg.norm(m) / np.linalg.norm(pred[f"K{k + 1}"]) for k, m in enumerate(dK0)]),
                         float(max(np.abs(m).max() for m in dK)), ws)


def balance_rates(problem: LimitProblem, weights) -> list:
    """Per hidden layer k, ``(E[g_k g_k^T - g_{k+1}^T g_{k+1}], dC_k/dtau)`` at a point of the
    minimum manifold: the per-sample matrix balance defect (from
    :func:`gradient_noise_covariance`) and the rate of change of
    ``C_k = W_k W_k^T - W_{k+1}^T W_{k+1}`` along the slow flow (:func:`manifold_drift`).

    Gradient flow conserves every ``C_k`` exactly, so ``C_k`` at the gradient-flow limit of a
    point equals ``C_k`` at the point, and SGD's exact identity
    ``C_k' - C_k = eta^2 (g_k g_k^T - g_{k+1}^T g_{k+1})`` makes the two equal (per tau) for the
    true slow flow: a check of the flow's evaluation that does not use its derivation. At a
    fixed point modulo rotations ``dC_k/dtau = [Omega_k, C_k]`` with the hidden rotation
    ``Omega_k``: the defect is zero (the closed form's balance) only if the basis stands still.
    """
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    S = gradient_noise_covariance(problem, ws)
    dws = manifold_drift(problem, ws)
    sizes = np.cumsum([0] + [w.size for w in ws])
    second = []  # E[g_i g_i^T] and E[g_i^T g_i] per layer
    for i, w in enumerate(ws):
        block = S[sizes[i]:sizes[i + 1], sizes[i]:sizes[i + 1]].reshape(w.shape + w.shape)  # [a, b, c, d]
        second.append((np.einsum("abcb->ac", block), np.einsum("abad->bd", block)))
    out = []
    for k in range(len(ws) - 1):
        defect = second[k][0] - second[k + 1][1]
        W, Wn, dW, dWn = ws[k], ws[k + 1], dws[k], dws[k + 1]
        dC = dW @ W.T + W @ dW.T - dWn.T @ Wn - Wn.T @ dWn
        out.append((defect, dC))
    return out
