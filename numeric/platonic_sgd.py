r"""SGD witness for Theorems 8/9/12: train embedded deep linear nets, measure hidden kernels.

An ensemble of ``n_runs`` independent SGD runs of ``f(x) = M_O W_D ... W_1 M_I Z x`` (the
shared engine, :func:`numeric.engine.linear_ensemble`) is run to stationarity
(:func:`numeric.stationary.stationary_average`, drift test) and then time-averaged. The
observables are, per run and per hidden layer k,

* the kernel matrix ``K_k = (W_k ... W_1 M_I Z)^T (W_k ... W_1 M_I Z)`` in input coordinates
  (``h_k(x)^T h_k(x') = x^T K_k x'``), and
* its population cosine with a reference kernel ``K_ref`` (the closed-form Platonic kernel):
  ``Tr(K Sx K_ref Sx) / sqrt(Tr((K Sx)^2) Tr((K_ref Sx)^2))`` - the large-test-set limit of
  the paper's Gram-matrix cosine. The engine averages the kernels in-kernel over a block
  (``run_accumulate``: no return to Python per sample), so the cosine is that of each run's
  *block-averaged* kernel, not the mean of the instantaneous cosines: the SGD fluctuations
  inside a block are averaged out before the cosine is taken, which makes it slightly
  larger (closer to 1) than the mean instantaneous cosine, the more so the longer the block.

>>> import numpy as np
>>> from symbolic.deep_linear import EmbeddedProblem
>>> prob = EmbeddedProblem(V=np.eye(2), Sx=np.eye(2), Se=0.5 * np.eye(2))
>>> m = measure_kernels(prob, hidden=[2], eta=0.02, n_runs=4, block_steps=100, window=2,
...                     average_blocks=2, max_steps=400, device="cpu")
>>> len(m.kernel_mean), m.kernel_mean[0].shape
(1, (2, 2))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .engine import linear_ensemble
from core.errors import InputError
from .linear_ensemble import LinearTeacher
from .stationary import stationary_average


def kernel_cosine_torch(K: torch.Tensor, K_ref: torch.Tensor, Sx: torch.Tensor) -> torch.Tensor:
    """Population Gram cosine of (batched) linear kernels ``K`` (R,d,d) with ``K_ref``."""
    KS = K @ Sx
    RS = K_ref @ Sx
    num = (KS * RS.transpose(-1, -2)).sum((-1, -2))  # Tr(K Sx K_ref Sx)
    den = torch.sqrt((KS * KS.transpose(-1, -2)).sum((-1, -2)) * (RS * RS.T).sum())
    return num / den


@dataclass
class KernelMeasurement:
    """Stationary hidden kernels of one ensemble (one network design)."""

    depth: int
    eta: float
    batch: int
    weight_decay: float
    kernel_mean: list  # per hidden layer: ensemble + time average (d, d)
    kernel_stderr: list  # CLT standard error of each entry (across independent runs)
    kernel_per_run: list  # per hidden layer: (R, d, d) time averages
    cosine_mean: np.ndarray  # (D-1,) mean over runs and averaging blocks of the block-averaged kernel's cosine
    cosine_stderr: np.ndarray  # its CLT standard error (across independent runs)
    history_steps: np.ndarray  # block ends
    history_cosine: np.ndarray  # (blocks, D-1) per block: mean over runs of the block-averaged kernel's cosine
    steps_to_stationary: int
    total_steps: int
    converged: bool
    cpu_seconds: float
    final_maps: list = field(default_factory=list)  # per hidden layer (R, h_k, dx): B_k M_I Z

    def relative_error(self, predicted: list) -> tuple[np.ndarray, np.ndarray]:
        """``|K_mean - K_pred|_F / |K_pred|_F`` per layer and its CLT standard error
        ``sqrt(sum stderr_ij^2) / |K_pred|_F`` (the noise part of the numerator)."""
        err, se = [], []
        for Km, Ks, Kp in zip(self.kernel_mean, self.kernel_stderr, predicted):
            n = np.linalg.norm(Kp)
            err.append(np.linalg.norm(Km - Kp) / n)
            se.append(np.sqrt(np.sum(Ks**2)) / n)
        return np.array(err), np.array(se)


def measure_kernels(problem, hidden, eta: float, *, n_runs: int = 32, batch: int = 1, weight_decay: float = 0.0,
                    seed: int = 0, device="auto", block_steps: int = 1000, window: int = 3,
                    average_blocks: int = 10, max_steps: int = 50_000, sample_every: int = 10,
                    reference=None, init_weights=None, init_scale: float = 1.0, progress=None) -> KernelMeasurement:
    """Train ``n_runs`` SGD runs of ``problem`` (an :class:`symbolic.deep_linear.EmbeddedProblem`)
    to stationarity and time-average the hidden kernels.

    ``reference`` is the kernel the cosine is taken with (default: the Platonic kernel
    ``Sx^{-1} # V^T Se V``). ``init_weights``: start every run from these weights (a list of
    2-D arrays) instead of the random initialisation.
    """
    from symbolic.deep_linear import platonic_kernel

    hidden = [int(h) for h in hidden]
    if not hidden:
        raise InputError("an embedded deep linear net needs at least one hidden layer (depth >= 2)")
    teacher = LinearTeacher(problem.V, problem.Sx, problem.Se)
    ens = linear_ensemble(teacher, hidden, n_runs, eta, batch=batch, weight_decay=weight_decay, Z=problem.Z,
                          M_I=problem.M_I, M_O=problem.M_O, device=device, seed=seed,
                         init_scale=init_scale)
    if init_weights is not None:
        ens.load_weights(init_weights)
    Sx = torch.as_tensor(problem.Sx, dtype=torch.float64)
    K_ref = torch.as_tensor(platonic_kernel(problem.V, problem.Sx, problem.Se) if reference is None else reference,
                            dtype=torch.float64)
    L = len(hidden)

    def block_average(n_steps: int, every: int) -> dict:
        """One block's per-run averages: the hidden kernels (averaged by the engine, no
        return to Python per sample) and the cosine of each run's block-averaged kernel."""
        acc = ens.run_accumulate(n_steps, every)
        obs = {f"K{k}": acc[f"K{k}"].to(torch.float64).cpu() for k in range(1, L + 1)}
        for k in range(1, L + 1):
            obs[f"cos{k}"] = kernel_cosine_torch(obs[f"K{k}"], K_ref, Sx)
        return obs

    t0 = time.process_time()
    res = stationary_average(None, None, accumulate=block_average, block_steps=block_steps, window=window,
                             average_blocks=average_blocks, max_steps=max_steps, sample_every=sample_every,
                             progress=progress)
    cpu = time.process_time() - t0
    to_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
    hist = np.array([[float(res.history[f"cos{k + 1}"][b]) for k in range(L)] for b in range(len(res.history["cos1"]))])
    G = torch.as_tensor(problem.G, dtype=ens.dtype, device=ens.device)
    maps, P = [], None
    for W in ens.weights[:L]:
        P = W @ G if P is None else W @ P
        maps.append(to_np(P))
    return KernelMeasurement(
        depth=L + 1, eta=float(eta), batch=int(batch), weight_decay=float(weight_decay),
        kernel_mean=[to_np(res.mean[f"K{k + 1}"]) for k in range(L)],
        kernel_stderr=[to_np(res.stderr[f"K{k + 1}"]) for k in range(L)],
        kernel_per_run=[to_np(res.per_run[f"K{k + 1}"]) for k in range(L)],
        cosine_mean=np.array([float(res.mean[f"cos{k + 1}"]) for k in range(L)]),
        cosine_stderr=np.array([float(res.stderr[f"cos{k + 1}"]) for k in range(L)]),
        history_steps=(block_steps // sample_every) * sample_every * np.arange(1, hist.shape[0] + 1),
        history_cosine=hist,
        steps_to_stationary=res.steps_to_stationary, total_steps=res.total_steps, converged=res.converged,
        cpu_seconds=cpu, final_maps=maps,
    )


def cross_kernel_alignment(m_a: KernelMeasurement, m_b: KernelMeasurement, Sx) -> np.ndarray:
    """Population cosine between every hidden layer of net A and every hidden layer of net B:
    ``C[i, j]`` = mean over paired runs r of ``cos(K_i^A[r], K_j^B[r])`` (time-averaged kernels)."""
    Sx = torch.as_tensor(np.asarray(Sx, dtype=np.float64))
    R = min(m_a.kernel_per_run[0].shape[0], m_b.kernel_per_run[0].shape[0])
    C = np.zeros((len(m_a.kernel_per_run), len(m_b.kernel_per_run)))
    for i, Ka in enumerate(m_a.kernel_per_run):
        for j, Kb in enumerate(m_b.kernel_per_run):
            c = [float(kernel_cosine_torch(torch.as_tensor(Ka[r])[None], torch.as_tensor(Kb[r]), Sx)[0]) for r in range(R)]
            C[i, j] = np.mean(c)
    return C


def alignment_across_nets(measurements: dict, Sx) -> tuple[np.ndarray, list]:
    """Every hidden layer of every net against every other: ``(C, labels)`` with ``C`` the
    :func:`cross_kernel_alignment` blocks of the nets ``{depth: KernelMeasurement}`` and
    labels ``"D3.h2"`` (depth 3, hidden layer 2)."""
    per = [(D, k) for D in sorted(measurements) for k in range(D - 1)]
    C = np.zeros((len(per), len(per)))
    for i, (Da, ka) in enumerate(per):
        for j, (Db, kb) in enumerate(per):
            C[i, j] = cross_kernel_alignment(measurements[Da], measurements[Db], Sx)[ka, kb]
    return C, [f"D{D}.h{k + 1}" for D, k in per]


def held_out_alignment(m_a: KernelMeasurement, m_b: KernelMeasurement, X: np.ndarray, measures, runs: int = 4) -> dict:
    """The paper's test-set measures (``numeric.alignment``) between the final hidden
    features of nets A and B on inputs ``X``, averaged over the first ``runs`` runs:
    ``{measure: layer-by-layer matrix}``."""
    from .alignment import alignment_matrix

    fa, fb = layer_features(m_a.final_maps, X), layer_features(m_b.final_maps, X)
    return {meas: np.mean([alignment_matrix([f[r] for f in fa], [f[r] for f in fb], meas) for r in range(runs)], 0)
            for meas in measures}


def layer_features(maps: list, X: np.ndarray) -> list:
    """Hidden activations ``h_k(x) = B_k M_I Z x`` of every run on test inputs X (n, dx):
    a list over hidden layers of (R, n, h_k) arrays."""
    return [np.einsum("rhd,nd->rnh", P, X) for P in maps]


def gradient_second_moments(problem, weights, hidden, n_samples: int, *, n_runs: int = 8, seed: int = 0,
                            device="auto") -> tuple[np.ndarray, np.ndarray]:
    """Per-layer ``E|grad_{W_i} l|^2`` at fixed ``weights``, by Monte Carlo over fresh samples.

    The engine's own per-sample gradients (``|grad_{W_i} l|^2 = 4 |delta_i|^2 |h_{i-1}|^2``)
    over ``n_runs x n_samples`` independent samples; returns the mean and its CLT standard
    error per layer.
    """
    t = LinearTeacher(problem.V, problem.Sx, problem.Se)
    ens = linear_ensemble(t, hidden, n_runs=n_runs, eta=0.01, Z=problem.Z, M_I=problem.M_I, M_O=problem.M_O,
                          device=device, seed=seed)
    ens.load_weights(weights)
    u, y = ens.sample(n_samples)
    hs, out = ens.forward(u)
    deltas = ens.backward(hs, out, y)
    per = torch.stack([4.0 * d.pow(2).sum(-1) * h.pow(2).sum(-1) for d, h in zip(deltas, hs[:-1])], -1)  # (R,n,D)
    per = per.reshape(-1, len(weights)).cpu().numpy()
    return per.mean(0), per.std(0) / np.sqrt(per.shape[0])
