"""SGD witness for the two-layer linear net: stationary invariants, eta ladders.

``measure_invariants`` runs an ensemble of SGD runs of ``l = |U W x - y|^2`` (through
``numeric.engine.linear_ensemble``) until the drift test declares the observables
stationary, then time- and ensemble-averages the Q-free invariants

* ``WtW`` = W^T W, ``UUt`` = U U^T, ``spectrum`` = top-r eigenvalues of W Sx W^T,
* ``sharpness`` = Tr hess L (the closed-form identity of symbolic.two_layer, cross-checked
  against torch.func's exact Hessian on the final weights: ``hessian_check``),
* ``grad_moments`` = per-sample E|grad_W l|^2, E|grad_U l|^2,

with CLT standard errors across runs. ``eta_ladder`` repeats this over learning rates
(warm-starting each rung from the previous one's final weights; stationarity is still
detected afresh) and Richardson-extrapolates every invariant to eta = 0.

>>> import numpy as np
>>> p = TwoLayerProblem(V=np.eye(2), Sx=np.eye(2), Se=0.5 * np.eye(2), width=2)
>>> m = measure_invariants(p, eta=0.02, n_runs=16, block_steps=100, window=2, average_blocks=2,
...                        max_steps=20_000, device="cpu")
>>> m.converged, sorted(m.mean)
(True, ['UUt', 'WtW', 'grad_moments', 'sharpness', 'spectrum'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import engine
from core.errors import InputError
from .linear_ensemble import LinearTeacher
from .modified_flow import fit_loglog_slope
from .sharpness import two_layer_sharpness_exact, two_layer_sharpness_formula
from .stationary import extrapolate_to_zero, stationary_average

INVARIANTS = ("WtW", "UUt", "spectrum", "sharpness", "grad_moments")


@dataclass
class TwoLayerProblem:
    """``y = V x + e`` with ``x ~ N(0, Sx)``, ``e ~ N(0, Se)``, hidden width ``width``."""

    V: np.ndarray
    Sx: np.ndarray
    Se: np.ndarray
    width: int

    def __post_init__(self):
        self.teacher = LinearTeacher(self.V, self.Sx, self.Se)  # validates shapes and SPD-ness
        self.V, self.Sx, self.Se = self.teacher.V, self.teacher.Sx, self.teacher.Se
        if int(self.width) < self.teacher.rank:
            raise InputError(f"width = {self.width} is below the rank {self.teacher.rank} of V")
        self.width = int(self.width)

    def closed_form(self):
        """The SymPy/mpmath closed form (symbolic.two_layer.entropic_optimum)."""
        from symbolic.two_layer import entropic_optimum

        return entropic_optimum(self.V, self.Sx, self.Se, width=self.width)

    def targets(self) -> dict:
        """Closed-form values of every invariant, as float64 tensors."""
        o = self.closed_form()
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        return {"WtW": t(o.WtW), "UUt": t(o.UUt), "spectrum": t(o.WSxWt_spectrum),
                "sharpness": t(o.sharpness), "grad_moments": t([o.grad_moment, o.grad_moment])}


@dataclass
class InvariantMeasurement:
    eta: float
    batch: int
    n_runs: int
    mean: dict
    stderr: dict
    converged: bool
    steps_to_stationary: int
    total_steps: int
    wall_s: float
    hessian_check: float  # max relative |torch.func exact Tr hess L - formula| on the final weights
    final_weights: list = field(repr=False, default_factory=list)

    def relative_error(self, name: str, target) -> float:
        t = torch.as_tensor(target, dtype=torch.float64)
        return float((self.mean[name].cpu() - t).norm() / t.norm())


def _observer(ens, Sx: torch.Tensor, rank: int):
    def observe():
        W, U = ens.weights  # (R, h, dx), (R, dy, h)
        WSW = W @ Sx @ W.transpose(-1, -2)
        spec = torch.linalg.eigvalsh(WSW).flip(-1)[:, :rank]
        u, y = ens.sample()
        return {
            "WtW": W.transpose(-1, -2) @ W,
            "UUt": U @ U.transpose(-1, -2),
            "spectrum": spec,
            "sharpness": two_layer_sharpness_formula(U, W, Sx),
            "grad_moments": ens.per_sample_grad_sq(u, y),
        }

    return observe


def measure_invariants(problem: TwoLayerProblem, eta: float, *, batch: int = 1, n_runs: int = 256,
                       seed: int = 0, device="auto", init=None, block_steps: int = 500, window: int = 4,
                       average_blocks: int = 8, max_steps: int = 400_000, sample_every: int = 10,
                       init_scale: float = 1.0, progress=None) -> InvariantMeasurement:
    """Stationary averages of the two-layer invariants for one (eta, batch).

    ``init`` (a [W, U] pair, batched or single) warm-starts the runs. Raises
    DivergenceError (runs and steps named) when eta is past the stability limit.
    """
    t0 = time.perf_counter()
    ens = engine.linear_ensemble(problem.teacher, [problem.width], n_runs, eta, batch=batch, seed=seed,
                                 device=device, track_every=10, init_scale=init_scale)
    if init is not None:
        ens.load_weights(init)
    Sx = torch.as_tensor(problem.Sx, dtype=ens.dtype, device=ens.device)
    res = stationary_average(ens.run, _observer(ens, Sx, problem.teacher.rank), block_steps=block_steps,
                             window=window, average_blocks=average_blocks, max_steps=max_steps,
                             sample_every=sample_every, progress=progress)
    W, U = ens.weights
    exact = two_layer_sharpness_exact(U, W, problem.V, problem.Sx, problem.Se)
    formula = two_layer_sharpness_formula(U, W, Sx)
    check = float(((exact - formula).abs() / formula.abs()).max())
    return InvariantMeasurement(
        eta=float(eta), batch=int(batch), n_runs=int(n_runs),
        mean={k: v.cpu() for k, v in res.mean.items()}, stderr={k: v.cpu() for k, v in res.stderr.items()},
        converged=res.converged, steps_to_stationary=res.steps_to_stationary, total_steps=res.total_steps,
        wall_s=time.perf_counter() - t0, hessian_check=check, final_weights=[W.clone(), U.clone()],
    )


@dataclass
class LadderResult:
    rungs: list  # InvariantMeasurement per eta, largest eta first
    extrapolated: dict  # name -> Extrapolation
    targets: dict

    @property
    def etas(self):
        return [r.eta for r in self.rungs]

    def single_eta_error(self, name: str, which: int = -1) -> float:
        """Relative error at one rung (default: the smallest eta)."""
        return self.rungs[which].relative_error(name, self.targets[name])

    def extrapolated_error(self, name: str) -> float:
        t = self.targets[name]
        return float((self.extrapolated[name].estimate - t).norm() / t.norm())

    def tolerance(self, name: str, z: float) -> float:
        """Relative Frobenius bound: ``|tolerance vector|_F / |target|_F`` (see Extrapolation)."""
        return float(self.extrapolated[name].tolerance(z).norm() / self.targets[name].norm())

    def slope(self, name: str) -> float:
        """Log-log slope of the relative error against eta over the rungs (1 = first order)."""
        return fit_loglog_slope(self.etas, [r.relative_error(name, self.targets[name]) for r in self.rungs]).slope

    @property
    def wall_s(self) -> float:
        return sum(r.wall_s for r in self.rungs)


def balance_relaxation_steps(problem: TwoLayerProblem, eta: float, batch: int = 1) -> float:
    """Predicted relaxation time (SGD steps) of the slowest mode that only the entropy moves.

    On the minimum manifold the loss is flat and the entropic loss is ``L + (eta/B) F``,
    ``F = a Tr(W Sx W^T) + b Tr(U^T Se U)``; gradient descent with step eta moves these modes
    at rates ~ eta^2 / B:

    * balance (rescaling orbit ``w -> e^lam w, u -> e^-lam u`` of one singular direction, with
      input / label-noise variances s, rho along it): ``8 eta^2 / (B (1/(a s) + 1/(b rho)))``;
    * width above rank (h > r): a hidden unit's weights outside the active subspace decay at
      ``2 eta^2 a s / B`` (incoming) and ``2 eta^2 b rho / B`` (outgoing).

    The slowest is bounded with the smallest eigenvalues s_min of Sx and rho_min of Se.

    >>> p = TwoLayerProblem(np.eye(2), np.eye(2), np.eye(2), 2)
    >>> balance_relaxation_steps(p, 0.01)
    1250.0
    >>> balance_relaxation_steps(TwoLayerProblem(np.eye(2), np.eye(2), np.eye(2), 3), 0.01)
    2500.0
    """
    a, b = float(np.trace(problem.Se)), float(np.trace(problem.Sx))
    s, rho = float(np.linalg.eigvalsh(problem.Sx)[0]), float(np.linalg.eigvalsh(problem.Se)[0])
    rate = 8 * eta**2 / (1 / (a * s) + 1 / (b * rho))
    if problem.width > problem.teacher.rank:
        rate = min(rate, 2 * eta**2 * min(a * s, b * rho))
    return batch / rate


def eta_ladder(problem: TwoLayerProblem, etas, *, warm_start: bool = True, seed: int = 0, progress=None,
               burn_in: bool = True, init=None, **kwargs) -> LadderResult:
    """``measure_invariants`` at each eta (largest first), then extrapolate to eta = 0.

    Each rung uses its own seed. Warm starts correlate neighbouring rungs only through the
    slow balance mode, positively, which makes the assumed-independent standard error of
    ``2 m(eta/2) - m(eta)`` conservative. ``burn_in``: first relax from the random
    initialisation at ``max(etas)`` (the balance mode relaxes at a rate ~ eta^2, so this is the
    cheapest rung to relax at; a random init with weight std 0.5/sqrt(fan_in) keeps the first
    steps stable); its averages are discarded and stationarity is re-detected at every rung.
    """
    etas = sorted((float(e) for e in etas), reverse=True)
    rungs = []
    if burn_in:
        opts = {k: v for k, v in kwargs.items() if k in ("batch", "n_runs", "device", "block_steps", "window",
                                                          "max_steps", "sample_every")}
        init = measure_invariants(problem, etas[0], seed=seed, init=init, average_blocks=1, init_scale=0.5,
                                  progress=progress, **opts).final_weights
    base_block = kwargs.pop("block_steps", 500)
    batch = kwargs.get("batch", 1)
    for k, eta in enumerate(etas):
        # Fast modes relax at a rate ~ eta (blocks grow as 1/eta); the slow balance mode at
        # ~ eta^2 / B (balance_relaxation_steps): a block is at least half of that time, so the
        # drift test (2 * window blocks) spans several relaxation times and cannot pass early.
        block = int(round(max(base_block * etas[0] / eta, 0.5 * balance_relaxation_steps(problem, eta, batch))))
        m = measure_invariants(problem, eta, seed=seed + 7919 * (k + 1), init=init, progress=progress,
                               block_steps=block, **kwargs)
        rungs.append(m)
        if warm_start:
            init = m.final_weights
    ex = {name: extrapolate_to_zero([r.eta for r in rungs], [r.mean[name] for r in rungs],
                                    [r.stderr[name] for r in rungs]) for name in INVARIANTS}
    return LadderResult(rungs, ex, problem.targets())


def default_etas(problem: TwoLayerProblem, kappa: float = 0.4, rungs: int = 3) -> list:
    """``eta_0 = kappa / T*`` halved ``rungs - 1`` times. T* (the optimum's total sharpness)
    sets the curvature scale, so the relative O(eta) bias is comparable across problems;
    kappa = 0.4 keeps eta_0 well inside the stability limit in every draw
    tried (divergence would raise, never pass silently)."""
    eta0 = kappa / problem.closed_form().sharpness
    return [eta0 / 2**k for k in range(rungs)]

