"""SGD witness for the two-layer linear net: stationary invariants, eta ladders.

``measure_invariants`` runs an ensemble of SGD runs of ``l = |U W x - y|^2`` (through
``numeric.engine.linear_ensemble``; the engine averages its observables itself, block by
block, ``run_accumulate``) until the drift test declares the observables stationary, then
time- and ensemble-averages the Q-free invariants

* ``WtW`` = W^T W, ``UUt`` = U U^T,
* ``spectrum`` = top-r eigenvalues of ``Sx^{1/2} E[W^T W] Sx^{1/2}`` (those of W Sx W^T at
  the stationary mean; their standard errors by the delta method, see
  :func:`spectrum_of_mean`),
* ``sharpness`` = Tr hess L = 2 d_y Tr(Sx W^T W) + 2 Tr(Sx) Tr(U U^T) (the closed-form
  identity of symbolic.two_layer, linear in the two Gram matrices; cross-checked against
  torch.func's exact Hessian on the final weights: ``hessian_check``),
* ``grad_moments`` = per-sample E|grad_W l|^2, E|grad_U l|^2,

with CLT standard errors across runs. ``eta_ladder`` repeats this over learning rates, each
rung with its own runs (own seed, own random start), and fits every invariant by weighted
least squares in eta (:func:`numeric.stationary.fit_eta_ladder`): the fit's ``c0`` is the
eta -> 0 limit, its standard error comes from the rungs' CLT standard errors alone.

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
from .linear_ensemble import LinearTeacher, _sqrtm_psd
from .modified_flow import fit_loglog_slope
from .sharpness import two_layer_flat_loss, two_layer_sharpness_exact, two_layer_sharpness_formula
from .stationary import fit_eta_ladder, stationary_average

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


def _invariant_blocks(ens, Sx: torch.Tensor):
    """``accumulate(n, k)`` for numeric.stationary: per-run block averages of the invariants
    that are linear in the state (the Gram matrices, the sharpness identity, the gradient
    moments), from the engine's own accumulated averages."""
    dy, b = ens.teacher.dy, float(torch.diagonal(Sx).sum())

    def accumulate(n_steps: int, sample_every: int) -> dict:
        obs = ens.run_accumulate(n_steps, sample_every)
        WtW, UUt = obs["W1tW1"], obs["WDWDt"]
        sharp = 2 * dy * (WtW * Sx).sum(dim=(-1, -2)) + 2 * b * torch.diagonal(UUt, dim1=-2, dim2=-1).sum(-1)
        return {"WtW": WtW, "UUt": UUt, "sharpness": sharp, "grad_moments": obs["grad_sq"]}

    return accumulate


def spectrum_of_mean(per_run_WtW: torch.Tensor, Sx, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``rank`` eigenvalues of ``M = Sx^{1/2} mean_r(W^T W)_r Sx^{1/2}`` (the nonzero
    spectrum of W Sx W^T at the mean) and their standard errors.

    Each run's time average ``M_r`` is projected on the eigenvectors ``v_i`` of the mean:
    ``v_i^T M_r v_i`` averages to ``lambda_i`` exactly, and its spread over the independent runs
    is the delta-method (first-order) standard error of ``lambda_i``; the neglected second
    order is ~ stderr^2 / (eigenvalue gap).

    >>> W = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[4.0, 0.0], [0.0, 3.0]]], dtype=torch.float64)
    >>> m, s = spectrum_of_mean(W, np.eye(2), 2)
    >>> m.tolist(), s.tolist()
    ([3.0, 2.0], [1.0, 1.0])
    """
    half = torch.as_tensor(_sqrtm_psd(np.asarray(Sx, dtype=np.float64)), dtype=torch.float64)
    M_r = half @ per_run_WtW.to(torch.float64) @ half
    _, vecs = torch.linalg.eigh(M_r.mean(0))
    top = vecs.flip(-1)[:, :rank]  # (dx, rank), descending eigenvalues
    proj = torch.einsum("ai,rab,bi->ri", top, M_r, top)  # (R, rank)
    R = proj.shape[0]
    return proj.mean(0), proj.std(0) / np.sqrt(R) if R >= 2 else torch.full((rank,), float("nan"))


def measure_invariants(problem: TwoLayerProblem, eta: float, *, batch: int = 1, n_runs: int = 256,
                       seed: int = 0, device="auto", init=None, block_steps: int = 500, window: int = 4,
                       average_blocks: int = 8, max_steps: int = 400_000, sample_every: int = 10,
                       init_scale: float = 1.0, drift_test: str = "trend", progress=None) -> InvariantMeasurement:
    """Stationary averages of the two-layer invariants for one (eta, batch).

    ``init`` (a [W, U] pair, batched or single) warm-starts the runs. Raises
    DivergenceError (runs and steps named) when eta is past the stability limit.
    """
    t0 = time.perf_counter()
    ens = engine.linear_ensemble(problem.teacher, [problem.width], n_runs, eta, batch=batch, seed=seed,
                                 device=device, track_every=10, init_scale=init_scale)
    if init is not None:
        ens.load_weights(init)
    Sx = torch.as_tensor(problem.Sx, dtype=torch.float64)
    res = stationary_average(None, None, accumulate=_invariant_blocks(ens, Sx), block_steps=block_steps,
                             window=window, average_blocks=average_blocks, max_steps=max_steps,
                             sample_every=sample_every, drift_test=drift_test, progress=progress)
    mean = {k: v.cpu() for k, v in res.mean.items()}
    stderr = {k: v.cpu() for k, v in res.stderr.items()}
    mean["spectrum"], stderr["spectrum"] = spectrum_of_mean(res.per_run["WtW"].cpu(), problem.Sx, problem.teacher.rank)
    W, U = (w.detach().clone() for w in ens.weights)
    exact = two_layer_sharpness_exact(U, W, problem.V, problem.Sx, problem.Se)
    formula = two_layer_sharpness_formula(U, W, Sx.to(W.device))
    check = float(((exact - formula).abs() / formula.abs()).max())
    return InvariantMeasurement(
        eta=float(eta), batch=int(batch), n_runs=int(n_runs), mean=mean, stderr=stderr,
        converged=res.converged, steps_to_stationary=res.steps_to_stationary, total_steps=res.total_steps,
        wall_s=time.perf_counter() - t0, hessian_check=check, final_weights=[W, U],
    )


@dataclass
class LadderResult:
    rungs: list  # InvariantMeasurement per eta, largest eta first
    fits: dict  # name -> numeric.stationary.LadderFit (c0: the eta -> 0 limit)
    targets: dict

    @property
    def etas(self):
        return [r.eta for r in self.rungs]

    def single_eta_error(self, name: str, which: int = -1) -> float:
        """Relative error at one rung (default: the smallest eta)."""
        return self.rungs[which].relative_error(name, self.targets[name])

    def limit(self, name: str) -> torch.Tensor:
        """The fitted eta -> 0 limit ``c0``, in the invariant's shape."""
        return torch.as_tensor(self.fits[name].c0).reshape(self.targets[name].shape)

    def limit_error(self, name: str) -> float:
        """``|c0 - target|_F / |target|_F``."""
        t = self.targets[name]
        return float((self.limit(name) - t).norm() / t.norm())

    def precision(self, name: str, z: float) -> float:
        """``z |se(c0)|_F / |target|_F``: the relative offset the ladder can resolve."""
        return float(z * np.linalg.norm(self.fits[name].se0) / self.targets[name].norm())

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


def gd_stability_limit(problem: TwoLayerProblem) -> float:
    """Gradient descent's stability limit ``2 / lambda_max(hess L)`` at the closed-form optimum
    (exact Hessian of the population loss by torch.func; the optimum's Q is immaterial: the
    Hessian spectrum is invariant under the hidden rotations).

    >>> round(gd_stability_limit(TwoLayerProblem(np.eye(2), np.eye(2), np.eye(2), 2)), 12)
    0.5
    """
    o = problem.closed_form()
    U = torch.as_tensor(np.asarray(o.U, dtype=np.float64))
    W = torch.as_tensor(np.asarray(o.W, dtype=np.float64))
    L = two_layer_flat_loss([tuple(U.shape), tuple(W.shape)], problem.V, problem.Sx, problem.Se)
    H = torch.func.hessian(L)(torch.cat([U.reshape(-1), W.reshape(-1)]))
    return 2.0 / float(torch.linalg.eigvalsh((H + H.T) / 2)[-1])


def rung_seed(seed: int, stream: int, rung: int, role: int) -> int:
    """An independent 32-bit seed for one ensemble: ``stream`` tells ladders apart (a batch
    size, a data-balance problem), ``role`` the burn-in (0) from the measurement (1)."""
    return int(np.random.SeedSequence([int(seed), int(stream), int(rung), int(role)]).generate_state(1)[0])


def eta_ladder(problem: TwoLayerProblem, etas, *, seed: int = 0, stream: int = 0, progress=None,
               relaxation_blocks: float = 0.5, order: int | None = None, **kwargs) -> LadderResult:
    """``measure_invariants`` at each eta (largest first), each rung with its own runs, then a
    weighted least-squares fit of every invariant in eta (:func:`fit_eta_ladder`; ``order``
    None: linear with three rungs, quadratic with four or more).

    Every rung starts from its own random initialisation (weight std 0.5/sqrt(fan_in)), burns
    in at ``max(etas)`` until the drift test passes (the balance mode relaxes at a rate
    ~ eta^2, so this is the cheapest learning rate to relax at; its averages are discarded),
    and continues with fresh data (its own seed) at its own eta, where stationarity is
    detected afresh. The rungs share no runs and no data, so their means are independent,
    as the fit assumes.

    Block length: fast modes relax at a rate ~ eta (blocks grow as 1/eta from ``block_steps``
    at the largest eta); the slow balance mode at ~ eta^2 / B (balance_relaxation_steps): a
    block is at least ``relaxation_blocks`` of that time, so the drift test's 2 x window
    blocks span several relaxation times and cannot pass early.
    """
    etas = sorted((float(e) for e in etas), reverse=True)
    base_block = kwargs.pop("block_steps", 500)
    batch = kwargs.get("batch", 1)
    burn_opts = {k: v for k, v in kwargs.items() if k in ("batch", "n_runs", "device", "window", "max_steps",
                                                          "sample_every", "drift_test")}

    def block(eta):
        return int(round(max(base_block * etas[0] / eta, relaxation_blocks * balance_relaxation_steps(problem, eta, batch))))

    rungs = []
    for k, eta in enumerate(etas):
        start = measure_invariants(problem, etas[0], seed=rung_seed(seed, stream, k, 0), average_blocks=1,
                                   init_scale=0.5, block_steps=block(etas[0]), progress=progress,
                                   **burn_opts).final_weights
        rungs.append(measure_invariants(problem, eta, seed=rung_seed(seed, stream, k, 1), init=start,
                                        block_steps=block(eta), progress=progress, **kwargs))
    fits = {name: fit_eta_ladder([r.eta for r in rungs], [r.mean[name].numpy() for r in rungs],
                                 [r.stderr[name].numpy() for r in rungs], order=order) for name in INVARIANTS}
    return LadderResult(rungs, fits, problem.targets())


def default_etas(problem: TwoLayerProblem, kappa: float = 0.4, rungs: int = 3) -> list:
    """``eta_0 = kappa / T*`` halved ``rungs - 1`` times. T* (the optimum's total sharpness)
    sets the curvature scale, so the relative O(eta) bias is comparable across problems;
    kappa = 0.4 keeps eta_0 well inside the stability limit in every draw
    tried (divergence would raise, never pass silently)."""
    eta0 = kappa / problem.closed_form().sharpness
    return [eta0 / 2**k for k in range(rungs)]
