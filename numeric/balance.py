"""Balance laws of SGD measured at stationarity, with confidence intervals.

The law being measured (derived exactly in symbolic/layer_symmetries.py). Let the
per-sample loss have an exponential symmetry ``l(e^{lam A} theta) = l(theta)`` with ``A``
symmetric, so ``theta^T A g = 0`` for every sample and every minibatch. One SGD step
``theta' = (1 - 2 eta gam) theta - eta g_B`` changes ``Q = theta^T A theta`` by exactly

    Q' - Q = eta^2 g_B^T A g_B - 4 eta gam (1 - eta gam) Q.

In a stationary state ``E[Q' - Q] = 0``, hence, with NO truncation in eta,

    E[g_B^T A g_B] = (4 gam (1 - eta gam) / eta) E[Q]          (SGD, exact)

where ``g_B`` is the MINIBATCH gradient of the batch size SGD uses (per-sample only for
B = 1) evaluated at the pre-step weights, and E is over the stationary law of theta and the
batch. The paper's Theorem 4/5 (local minima of the entropic loss phi) has the coefficient
``4 gam (1 + eta gam) / eta``; the two agree to leading order in eta and differ at relative
order ``2 eta gam``.

Error bars: each run's time average over the averaging window is one independent draw;
the law is checked per run (paired: ``residual_r = LHS_r - RHS_r``), and the half-width is
``t_{1 - p/2, R-1} * sd_runs / sqrt(R)``: Student t, so a correct implementation fails with
probability about ``p`` when the per-run averages are near-normal. ``p`` is the caller's (the
theorem modules pass the suite's per-comparison probability, ``theorems.tolerances.P_COMPARISON``);
nothing here has a default.

Why stationarity matters, exactly: summing the one-step identity over the ``T`` steps of the
averaging window, per run, gives ``mean_t (eta^2 G - 4 eta gam (1 - eta gam) Q) = (Q_end -
Q_start) / T``. The paired residual of the time-averaged law IS the drift of the orbit
coordinate ``Q`` over the window, ``(Q_end - Q_start) / (eta^2 T)`` (for gam = 0): a run still
relaxing along the orbit fails the law by exactly its drift (:func:`stationary_run` tests the
drift of the law's own observables for that reason).

>>> import torch
>>> lhs = torch.tensor([1.0, 1.1, 0.9, 1.0]); rhs = torch.tensor([1.0, 1.0, 1.0, 1.0])
>>> c = law_check(lhs, rhs, p=1e-7)
>>> c.consistent, round(c.residual, 6)
(True, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import scipy.stats
import torch

from core.errors import InputError
from .sharpness import capped_learning_rate
from .stationary import StationaryResult, stationary_average

def t_quantile(n_runs: int, p: float, n_tests: int = 1) -> float:
    """Two-sided Student-t factor for ``n_runs`` independent runs at false-alarm probability ``p``,
    Bonferroni over ``n_tests`` (the same quantile as ``theorems.tolerances.t_quantile``, which
    this floor cannot import).

    >>> round(t_quantile(10**6, 1e-7), 2)  # the normal limit of a 1e-7 two-sided bound
    5.33
    """
    if n_runs < 2:
        raise InputError(f"a confidence interval across runs needs >= 2 runs, got {n_runs}")
    return float(scipy.stats.t.isf(p / (2.0 * n_tests), n_runs - 1))


def sgd_balance_coefficient(eta: float, gam: float) -> float:
    """``4 gam (1 - eta gam) / eta``: the exact SGD-stationary coefficient (see module doc)."""
    return 4.0 * gam * (1.0 - eta * gam) / eta


def entropic_balance_coefficient(eta: float, gam: float) -> float:
    """``4 gam (1 + eta gam) / eta``: the paper's coefficient (local minima of phi)."""
    return 4.0 * gam * (1.0 + eta * gam) / eta


@dataclass
class LawCheck:
    """Both sides of a law ``LHS = RHS`` with CIs, and the paired residual ``LHS - RHS``."""

    lhs: float
    lhs_halfwidth: float
    rhs: float
    rhs_halfwidth: float
    residual: float
    halfwidth: float  # CI half-width of the paired residual
    scale: float  # a natural size of the two sides (for relative gaps)
    n_runs: int
    t_factor: float

    @property
    def consistent(self) -> bool:
        """Is 0 inside the CI of the residual?"""
        return abs(self.residual) <= self.halfwidth

    @property
    def relative_gap(self) -> float:
        return abs(self.residual) / self.scale if self.scale > 0 else float("nan")

    @property
    def relative_halfwidth(self) -> float:
        return self.halfwidth / self.scale if self.scale > 0 else float("nan")

    def as_dict(self) -> dict:
        return {"lhs": self.lhs, "lhs_ci": self.lhs_halfwidth, "rhs": self.rhs, "rhs_ci": self.rhs_halfwidth,
                "residual": self.residual, "residual_ci": self.halfwidth, "relative_gap": self.relative_gap,
                "relative_ci": self.relative_halfwidth, "runs": self.n_runs, "t": self.t_factor}


def law_check(lhs_runs, rhs_runs, scale_runs=None, *, p: float, n_tests: int = 1) -> LawCheck:
    """Compare per-run time averages ``lhs_runs`` and ``rhs_runs`` (shape (R,)) with a Student-t
    interval at false-alarm probability ``p`` (Bonferroni over ``n_tests``).

    ``scale_runs`` (R,) sets the relative scale (default ``|lhs| + |rhs|`` averaged).
    """
    lhs = torch.as_tensor(lhs_runs, dtype=torch.float64).detach().cpu().reshape(-1)
    rhs = torch.as_tensor(rhs_runs, dtype=torch.float64).detach().cpu().reshape(-1)
    if lhs.shape != rhs.shape:
        raise InputError(f"lhs and rhs need one value per run, got {tuple(lhs.shape)} and {tuple(rhs.shape)}")
    if not (torch.isfinite(lhs).all() and torch.isfinite(rhs).all()):
        raise InputError("non-finite per-run averages: a run diverged or produced NaN")
    R = lhs.numel()
    t = t_quantile(R, p, n_tests)
    res = lhs - rhs
    se = lambda v: float(v.std() / math.sqrt(R))  # noqa: E731
    scale = (lhs.abs() + rhs.abs()).mean() if scale_runs is None else torch.as_tensor(scale_runs).detach().cpu().abs().mean()
    return LawCheck(float(lhs.mean()), t * se(lhs), float(rhs.mean()), t * se(rhs), float(res.mean()),
                    t * se(res), float(scale), R, t)


def generator_law(per_run: dict, coeffs, eta: float, gam: float, coefficient=sgd_balance_coefficient, *,
                  p: float, n_tests: int = 1) -> LawCheck:
    """The balance law of a layer-diagonal generator ``A = diag(coeffs[k] * I_{layer k})``.

    ``g^T A g = sum_k coeffs[k] |g_k|^2`` and ``theta^T A theta = sum_k coeffs[k] |W_k|^2``:
    LHS = ``E sum_k coeffs[k] |g_{B,k}|^2``, RHS = ``coefficient(eta, gam) E sum_k coeffs[k] |W_k|^2``.
    Scale: ``E sum_k |coeffs[k]| |g_{B,k}|^2`` (the gradient noise the law balances).
    """
    c = torch.as_tensor(coeffs, dtype=torch.float64)
    g, w = per_run["gsq"].detach().cpu().double(), per_run["wsq"].detach().cpu().double()
    if g.shape[-1] != c.numel():
        raise InputError(f"{c.numel()} generator coefficients for a {g.shape[-1]}-layer net")
    rhs = coefficient(eta, gam) * (w @ c) if gam else torch.zeros(g.shape[0], dtype=g.dtype)
    return law_check(g @ c, rhs, g @ c.abs(), p=p, n_tests=n_tests)


def neuron_laws(per_run: dict, layer: int, eta: float, gam: float, coefficient=sgd_balance_coefficient, *,
                p: float) -> list[LawCheck]:
    """Theorem 6 for every neuron of hidden layer ``layer`` (1-based): the generator is +1 on
    the neuron's incoming row, -1 on its outgoing column; each neuron one comparison at ``p``."""
    diag = lambda k: torch.diagonal(per_run[k].detach().cpu().double(), dim1=-2, dim2=-1)  # noqa: E731
    gi, go = diag(f"gram_in_{layer}"), diag(f"gram_out_{layer}")
    wi, wo = diag(f"wgram_in_{layer}"), diag(f"wgram_out_{layer}")
    h = gi.shape[-1]
    k = coefficient(eta, gam)
    return [law_check(gi[:, j] - go[:, j], k * (wi[:, j] - wo[:, j]) if gam else torch.zeros_like(gi[:, j]),
                      gi[:, j] + go[:, j], p=p) for j in range(h)]


def gram_law(gram_in, gram_out, *, p: float) -> dict:
    """Theorem 7 (gam = 0): ``E[gram_in] = E[gram_out]`` entrywise, (R,h,h) per-run averages.

    Returns the relative Frobenius gap ``|E in - E out|_F / |E in|_F``, its noise floor (the
    Frobenius norm of the entrywise CI half-widths over ``|E in|_F``; each of the ``h(h+1)/2``
    distinct entries one comparison at ``p``) and whether every entry's residual CI covers 0.
    """
    gram_in, gram_out = gram_in.detach().cpu().double(), gram_out.detach().cpu().double()
    R, h, _ = gram_in.shape
    iu = torch.triu_indices(h, h)
    d = (gram_in - gram_out)[:, iu[0], iu[1]]
    t = t_quantile(R, p)
    mean, hw = d.mean(0), t * d.std(0) / math.sqrt(R)
    full = lambda v: torch.zeros(h, h, dtype=v.dtype).index_put_((iu[0], iu[1]), v)  # noqa: E731
    sym = lambda m: m + m.T - torch.diag(torch.diagonal(m))  # noqa: E731
    ref = gram_in.mean(0).norm()
    return {"relative_gap": float(sym(full(mean)).norm() / ref), "relative_noise_floor": float(sym(full(hw)).norm() / ref),
            "all_entries_consistent": bool((mean.abs() <= hw).all()), "max_z": float((mean.abs() / (hw / t)).max()),
            "t": t, "entries": int(d.shape[1]), "runs": R}


def orbit_coordinates(obs: dict, degree: float = 1.0, grams: bool = False) -> dict:
    """The symmetry-orbit coordinates ``Q = theta^T A theta`` of an MLP's balance laws, per run,
    from its recorded observables (:class:`numeric.deep_nets.MLPEnsemble`):

    * ``Q_layers`` (R, D-1): ``|W_i|^2 - degree |W_{i+1}|^2`` for every adjacent layer pair;
    * ``Q_neurons_l`` (R, h_l): ``|w_j|^2 - degree |u_j|^2`` for every neuron of hidden layer l;
    * with ``grams`` (linear nets): ``D_l`` (R, h_l, h_l) = ``W_l W_l^T - W_{l+1}^T W_{l+1}``, the
      coordinate of the double rotation (Theorem 7).

    ``degree`` is the activation's homogeneity degree (1 for linear and ReLU, beta for ``poly``).
    The time-averaged residual of each law is exactly the drift of its coordinate over the
    averaging window divided by ``eta^2 T`` (module docstring): these are what a drift test of a
    balance law must watch.
    """
    w = obs["wsq"]
    out = {"Q_layers": w[..., :-1] - degree * w[..., 1:]}
    for key in obs:
        if key.startswith("wgram_in_"):
            layer = key[len("wgram_in_"):]
            w_in, w_out = obs[key], obs[f"wgram_out_{layer}"]
            diag = lambda m: torch.diagonal(m, dim1=-2, dim2=-1)  # noqa: E731
            out[f"Q_neurons_{layer}"] = diag(w_in) - degree * diag(w_out)
            if grams:
                out[f"D_{layer}"] = w_in - w_out
    return out


def stationary_run(net, *, block_steps: int, max_steps: int, window: int = 4, average_blocks: int = 10,
                   drift_keys=("gsq", "wsq"), drift_of=None, drift_z: float = 4.0, drift_test: str = "halves",
                   progress=None) -> StationaryResult:
    """Run ``net`` (an engine with ``run(n)``/``observe()``) to stationarity, then average.

    Stationarity is detected on ``drift_of(observables)`` (a dict of (R, ...) tensors: e.g. the
    law's orbit coordinates, :func:`orbit_coordinates`) or, without it, on ``drift_keys``; the
    test is :func:`numeric.stationary.stationary_average`'s (``window``, ``drift_z``,
    ``drift_test``). Every recorded observable is averaged. ``converged=False`` in the result
    when ``max_steps`` is hit.
    """

    def advance(n):
        net.run(n, progress=progress)

    # stationary_average tests drift on every key it sees: hand it the drift observables only, and
    # collect the recorded observables block by block alongside.
    blocks: list = []

    def observe_drift():
        obs = net.observe()
        blocks.append(obs)
        return drift_of(obs) if drift_of is not None else {k: obs[k] for k in drift_keys}

    res = stationary_average(advance, observe_drift, block_steps=block_steps, sample_every=block_steps,
                             window=window, average_blocks=average_blocks, max_steps=max_steps, drift_z=drift_z,
                             drift_test=drift_test)
    avg = blocks[-average_blocks:]
    per_run = {k: torch.stack([b[k] for b in avg]).mean(0) for k in avg[0]}
    res.per_run.update(per_run)
    res.blocks = blocks  # every block's per-run averages, transient included (for trajectories)
    for k, v in per_run.items():
        res.mean.setdefault(k, v.mean(0))
        res.stderr.setdefault(k, v.std(0) / math.sqrt(v.shape[0]))
    return res


def drift_window(average_blocks: int, t: float, z: float) -> int:
    """Half-span ``w`` (blocks) of the trend test that licenses an average over ``average_blocks``
    blocks for a law checked at Student-t quantile ``t``, with the test at ``z`` standard errors.

    The law's residual is the drift of its orbit coordinate over the averaging window (module
    docstring). Worst case, the coordinate moves like a random walk over the span (per-block
    step ``s``): the least-squares slope over ``L`` blocks then has standard error
    ``s sqrt(1.2 / L)``, and a drift just below the test's threshold moves the coordinate by
    ``z s sqrt(1.2 / L) m`` over the ``m`` averaging blocks, while the verdict's standard error is
    ``s sqrt(m)``. Keeping that bias within half the verdict's interval, ``t/2`` standard errors,
    needs ``L >= 1.2 m (2 z / t)^2``; ``w = ceil(L / 2)``, at least 2.

    >>> drift_window(10, t=6.0, z=2.5)
    5
    """
    span = 1.2 * average_blocks * (2.0 * z / t) ** 2
    return max(2, math.ceil(span / 2.0))


DRIFT_Z = 2.5  # the trend test's threshold per component (a false "still drifting" only costs a block)


def mlp_stationary(dims, activation: str, eta: float, gam: float = 0.0, *, n_runs: int = 64, batch: int = 1,
                   noise_std: float = 0.5, teacher_scale: float = 1.0, teacher_snr: float | None = None,
                   beta: float = 2.0, seed: int = 0, device: str = "cpu", block_steps: int = 500,
                   max_steps: int = 20_000, average_blocks: int = 10, p: float, eta_margin: float,
                   init_factors=None, init_scale: float = 1.0, burn_in: int = 0, start_at_teacher: bool = False,
                   gram_drift: bool = False):
    """An MLPEnsemble run to stationarity (``stationary_run``) -> ``(net, result, first_block)``.

    The learning rate is ``min(eta, limit / eta_margin)`` (:func:`~numeric.sharpness.capped_learning_rate`)
    with ``limit`` gradient descent's stability limit at the balanced teacher
    (:meth:`~numeric.deep_nets.MLPEnsemble.stability_limit`):
    a teacher's curvature varies by orders of magnitude with its seed, and a fixed ``eta`` past
    the limit diverges (never dropped: the run raises). ``result.eta`` and ``result.eta_limit``
    record both. Stationarity is tested on the laws' orbit coordinates (:func:`orbit_coordinates`;
    with ``gram_drift`` the full Gram coordinates of Theorem 7, linear nets) by a trend over
    ``2 drift_window(average_blocks, t, DRIFT_Z)`` blocks, ``t`` the Student-t quantile of
    ``n_runs`` runs at false-alarm probability ``p`` (the verdicts').

    ``first_block`` holds the per-run averages of the first ``block_steps`` steps (the balance
    gap at the start of training). ``start_at_teacher``: every run starts at the teacher moved to
    equal layer norms (:meth:`~numeric.deep_nets.MLPEnsemble.balanced_teacher`: a global minimum
    of the loss, weight-balanced, not gradient-balanced). ``init_factors`` rescales the layers before the
    first step (an imbalanced start on the symmetry orbit); ``burn_in`` steps run unrecorded after
    the first block. Not cached: theorem modules share runs through ``theorems.cache.shared_run``.
    """
    from .deep_nets import MLPEnsemble

    kw = dict(activation=activation, batch=batch, weight_decay=float(gam), noise_std=noise_std,
              teacher_scale=teacher_scale, teacher_snr=teacher_snr, beta=beta, seed=seed, device=device,
              init_scale=init_scale)
    dims = [int(d) for d in dims]
    limit = MLPEnsemble(dims, n_runs=1, eta=float(eta), **kw).stability_limit()  # the same teacher (drawn first)
    net = MLPEnsemble(dims, n_runs=n_runs, eta=capped_learning_rate(eta, limit, eta_margin), **kw)
    if start_at_teacher:
        net.load_weights([W[0] for W in net.balanced_teacher()])
    if init_factors is not None:
        net.rescale_layers(init_factors)
    net.run(block_steps)  # the first block: the balance gap at the start of training
    first = net.observe()
    # Unrecorded burn-in: any leftover relaxation of Q biases the law by exactly (Q_end - Q_start) / (eta^2 T).
    net.run(burn_in, record=False)
    degree = beta if activation == "poly" else 1.0
    window = drift_window(average_blocks, t_quantile(n_runs, p), DRIFT_Z)
    res = stationary_run(net, block_steps=block_steps, max_steps=max_steps, window=window,
                         average_blocks=average_blocks, drift_test="trend", drift_z=DRIFT_Z,
                         drift_of=lambda obs: orbit_coordinates(obs, degree, grams=gram_drift))
    res.eta, res.eta_limit, res.drift_window = net.eta, limit, window
    return net, res, first


def layer_pairs(depth: int) -> list:
    """Generator coefficients (+1 on layer i, -1 on layer i+1) of every adjacent layer pair.

    >>> layer_pairs(3)
    [[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]]
    """
    out = []
    for i in range(depth - 1):
        c = [0.0] * depth
        c[i], c[i + 1] = 1.0, -1.0
        out.append(c)
    return out


def neuron_quad(layer: int, unit: int):
    """``v^T A v`` of the neuron generator of hidden ``layer`` (1-based), neuron ``unit``, on
    a layer list: +|row ``unit`` of W_layer|^2 - |column ``unit`` of W_{layer+1}|^2 per run."""
    return lambda ts: ts[layer - 1][:, unit, :].pow(2).sum(-1) - ts[layer][:, :, unit].pow(2).sum(-1)


def per_step_identity_error(net, coeffs=None, n_steps: int = 20, quad=None) -> float:
    """Largest relative violation of ``Q' - Q = eta^2 G - 4 eta gam (1 - eta gam) Q`` over
    ``n_steps`` real SGD steps of ``net`` (layer-diagonal generator ``coeffs``).

    Exact algebra plus ``theta^T A g_B = 0`` (the symmetry); a nonzero value beyond float64
    round-off means the generator is not a symmetry of the net or the gradient is wrong.
    Relative to ``eta^2 |G| + |Q| + |Q'|``. ``quad(tensors) -> (R,)`` gives any other
    quadratic form ``v^T A v`` on the layer list (e.g. a neuron generator) instead of ``coeffs``.
    """
    if quad is None:
        c = torch.as_tensor(coeffs, dtype=net.dtype, device=net.device)
        quad = lambda ts: torch.stack([t.pow(2).sum((-1, -2)) for t in ts], -1) @ c  # noqa: E731
    eta, gam = net.eta, net.weight_decay
    worst = 0.0
    for _ in range(n_steps):
        x, y = net.sample()
        _, grads = net.gradients(x, y)
        Q, G = quad(net.weights), quad(grads)
        net.weights = [W - eta * (g + 2 * gam * W) for W, g in zip(net.weights, grads)]
        Q1 = quad(net.weights)
        err = (Q1 - Q - (eta**2 * G - 4 * eta * gam * (1 - eta * gam) * Q)).abs()
        worst = max(worst, float((err / (eta**2 * G.abs() + Q.abs() + Q1.abs())).max()))
    return worst
