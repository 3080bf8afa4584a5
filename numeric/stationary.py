"""Stationary averages of SGD observables, with detected (not assumed) stationarity.

The runs advance in blocks. After each block, every observable is averaged over the
block (sampled every ``sample_every`` steps) separately for each run. Stationarity is
declared by a drift test over the last ``2 * window`` blocks, for every component of every
observable (the runs are independent, so standard errors come from the spread across runs):

* ``drift_test="halves"``: the per-run means of the first and second halves agree within
  ``drift_z`` standard errors;
* ``drift_test="trend"``: the per-run least-squares slope of the block means against the block
  index has an ensemble mean within ``drift_z`` standard errors of 0. It uses every block of
  the span (a linear drift is seen with about 15% less noise than by the two halves).

Averages are then collected over ``average_blocks`` more blocks. A hard cap on the number of
steps ends the search; hitting it is reported in the result (``converged=False``), never
hidden. How long a window and how small a ``drift_z`` a result needs is the caller's to
derive (numeric/balance.py does it for the balance laws, whose residual IS a drift).

Error bars: each run's time average over the averaging window is one independent sample;
``stderr = std_runs / sqrt(R)`` is the CLT standard error of the ensemble mean, valid
whatever the autocorrelation inside a run. With one run, block means are used instead
(batch means; blocks long compared with the correlation time are assumed).

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> state = {"x": torch.zeros(16, dtype=torch.float64)}
>>> def advance(n):
...     for _ in range(n):
...         state["x"] = 0.5 * state["x"] + torch.randn(16, generator=g, dtype=torch.float64)
>>> res = stationary_average(advance, lambda: {"x": state["x"]}, block_steps=50, window=4,
...                          average_blocks=8, max_steps=10_000)
>>> res.converged, abs(res.mean["x"].item()) < 5 * res.stderr["x"].item()
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict

import numpy as np
import torch

from core.errors import DivergenceError, InputError

Observables = Dict[str, torch.Tensor]


@dataclass
class StationaryResult:
    mean: Dict[str, torch.Tensor]  # ensemble + time average, shape = observable shape
    stderr: Dict[str, torch.Tensor]  # CLT standard error of ``mean``
    per_run: Dict[str, torch.Tensor]  # time average of each run, shape (R, ...)
    steps_to_stationary: int  # steps run before the averaging window began
    total_steps: int
    converged: bool  # False when the step cap was hit before the drift test passed
    history: Dict[str, list] = field(default_factory=dict)  # ensemble mean per block

    def relative_error(self, name: str, target: torch.Tensor) -> float:
        """``|mean - target|_F / |target|_F``."""
        t = torch.as_tensor(target, dtype=self.mean[name].dtype, device=self.mean[name].device)
        return float((self.mean[name] - t).norm() / t.norm())


DRIFT_TESTS = ("halves", "trend")


def _trend_ok(recent: list, z: float) -> bool:
    """Per run, the least-squares slope of the block means against the block index; every
    component's ensemble-mean slope within ``z`` standard errors of 0 (one run: the OLS
    standard error from the residuals, block means taken as independent)."""
    L = len(recent)
    t = torch.arange(L, dtype=torch.float64) - (L - 1) / 2.0
    sxx = float((t * t).sum())
    for name in recent[0]:
        x = torch.stack([b[name] for b in recent]).double()  # (L, R, ...)
        R = x.shape[1]
        x = x.reshape(L, R, -1).cpu()
        slope = torch.einsum("l,lrc->rc", t, x - x.mean(0)) / sxx  # (R, C)
        if R >= 2:
            m, se = slope.mean(0), slope.std(0) / math.sqrt(R)
        else:
            resid = x[:, 0] - x[:, 0].mean(0) - t[:, None] * slope[0]
            m, se = slope[0], torch.sqrt(resid.pow(2).sum(0) / max(L - 2, 1) / sxx)
        # A component whose fluctuations vanish identically must not drift at all.
        if bool((m.abs() > z * se + 1e-12 * (x.abs().mean((0, 1)) + 1.0) / L).any()):
            return False
    return True


def _drift_ok(blocks: list, window: int, z: float, test: str = "halves") -> bool:
    """Last ``2*window`` blocks show no drift at ``z`` standard errors (``test``: "halves" or
    "trend", see the module docstring)."""
    if len(blocks) < 2 * window:
        return False
    recent = blocks[-2 * window :]
    if test == "trend":
        return _trend_ok(recent, z)
    for name in recent[0]:
        a = torch.stack([b[name] for b in recent[:window]]).mean(0)  # (R, ...)
        R = a.shape[0]
        a = a.reshape(R, -1)
        diff = torch.stack([b[name] for b in recent[window:]]).mean(0).reshape(R, -1) - a
        if R >= 2:
            se = diff.std(0) / math.sqrt(R)
            m = diff.mean(0)
        else:  # one run: compare the two half-means with the block-to-block spread
            per_block = torch.stack([blk[name].reshape(-1) for blk in recent])
            se = per_block.std(0) * math.sqrt(2.0 / window)
            m = diff[0]
        # A component whose fluctuations vanish identically must not drift at all.
        tol = z * se + 1e-12 * (a.abs().mean(0) + 1.0)
        if bool((m.abs() > tol).any()):
            return False
    return True


def stationary_average(
    advance: Callable[[int], None] | None,
    observe: Callable[[], Observables] | None,
    *,
    accumulate: Callable[[int, int], Observables] | None = None,
    block_steps: int,
    window: int = 5,
    average_blocks: int = 10,
    max_steps: int,
    sample_every: int = 1,
    drift_z: float = 4.0,
    drift_test: str = "halves",
    progress: Callable[[int], None] | None = None,
) -> StationaryResult:
    """Run ``advance`` until ``observe()`` is stationary, then time- and ensemble-average.

    ``observe()`` returns tensors of shape (R, ...) (R independent runs). Instead of
    ``advance`` and ``observe``, an engine that averages its observables itself passes
    ``accumulate(n_steps, sample_every)`` (e.g. ``run_accumulate`` of the linear engines):
    it advances one block and returns the per-run block averages, so that a block never
    returns to Python per sample. ``drift_z = 4``
    makes a false "still drifting" verdict rare across many components, while a real drift
    larger than 4 standard errors keeps the runs going (a false alarm only costs a block).
    """
    if block_steps < sample_every:
        raise InputError("block_steps must be at least sample_every")
    if (accumulate is None) == (advance is None or observe is None):
        raise InputError("pass either advance and observe, or accumulate (not both)")
    if drift_test not in DRIFT_TESTS:
        raise InputError(f"drift_test must be one of {DRIFT_TESTS}, got {drift_test!r}")
    blocks: list = []
    steps = 0

    def require_finite(obs: Observables) -> None:
        for k, v in obs.items():
            if not bool(torch.isfinite(v).all()):  # a NaN mean must never be reported as converged
                bad = torch.nonzero(~torch.isfinite(v.reshape(v.shape[0], -1)).all(-1)).flatten().tolist()
                raise DivergenceError(f"observable {k!r} became non-finite after {steps} steps (runs {bad[:8]})")

    def one_block():
        nonlocal steps
        if accumulate is not None:
            n_block = (block_steps // sample_every) * sample_every
            obs = accumulate(n_block, sample_every)
            steps += n_block
            if progress is not None:
                progress(n_block)
            require_finite(obs)
            return obs
        acc: Observables = {}
        n = 0
        for _ in range(block_steps // sample_every):
            advance(sample_every)
            steps += sample_every
            if progress is not None:
                progress(sample_every)
            obs = observe()
            require_finite(obs)
            for k, v in obs.items():
                acc[k] = acc[k] + v if k in acc else v.clone()
            n += 1
        return {k: v / n for k, v in acc.items()}

    converged = False
    while steps < max_steps:
        blocks.append(one_block())
        if _drift_ok(blocks, window, drift_z, drift_test):
            converged = True
            break
    steps_to_stationary = steps
    avg_blocks = [one_block() for _ in range(average_blocks)]
    per_run = {k: torch.stack([b[k] for b in avg_blocks]).mean(0) for k in avg_blocks[0]}
    mean, stderr = {}, {}
    for k, v in per_run.items():
        R = v.shape[0]
        mean[k] = v.mean(0)
        if R >= 2:
            stderr[k] = v.std(0) / math.sqrt(R)
        else:
            b = torch.stack([blk[k] for blk in avg_blocks])[:, 0]
            stderr[k] = b.std(0) / math.sqrt(len(avg_blocks))
    history = {k: [b[k].mean(0) for b in blocks + avg_blocks] for k in avg_blocks[0]}
    return StationaryResult(mean, stderr, per_run, steps_to_stationary, steps, converged, history)


# ------------------------------------------------------------------ eta -> 0 extrapolation


@dataclass
class LadderFit:
    """A weighted least-squares fit ``m(eta) = c0 + c1 eta (+ c2 eta^2)`` of rung means.

    Every array has one entry per fitted component. ``c0`` is the eta -> 0 limit and ``se0``
    its standard error (from the rungs' CLT standard errors: independent runs per rung);
    ``chi2`` and ``dof`` are the summed goodness of fit over the components (each component
    has ``rungs - order - 1`` degrees of freedom).
    """

    etas: np.ndarray
    order: int
    c0: np.ndarray
    se0: np.ndarray
    c1: np.ndarray
    chi2: float
    dof: int

    @property
    def chi2_per_dof(self) -> float:
        return self.chi2 / self.dof if self.dof else float("nan")


def fit_eta_ladder(etas, means, stderrs, order: int | None = None) -> LadderFit:
    """Fit every component of the rung means by WLS in eta; ``order`` 1 (linear) or 2.

    The default order is 1 with three rungs and 2 with four or more, so that the fit
    always keeps at least one degree of freedom per component for its goodness of fit.
    Fewer than three rungs cannot separate an offset from the O(eta) term and are refused.

    >>> f = fit_eta_ladder([0.04, 0.02, 0.01], [[1.0 + 3 * e] for e in (0.04, 0.02, 0.01)], [[1e-3]] * 3)
    >>> round(float(f.c0[0]), 12), round(float(f.c1[0]), 9), round(f.chi2, 12), f.dof
    (1.0, 3.0, 0.0, 1)
    """
    etas = np.asarray(etas, dtype=np.float64)
    K = etas.size
    if K < 3:
        raise InputError(f"an eta -> 0 fit needs at least three rungs (an offset and a slope, plus one "
                         f"degree of freedom to test the fit), got {K}")
    if np.any(etas <= 0) or len(set(etas.tolist())) != K:
        raise InputError(f"learning rates must be positive and distinct, got {etas.tolist()}")
    order = (1 if K == 3 else 2) if order is None else int(order)
    if order not in (1, 2) or K - order - 1 < 1:
        raise InputError(f"order {order} with {K} rungs leaves no degree of freedom; use order 1 or more rungs")
    m = np.asarray([np.ravel(np.asarray(x, dtype=np.float64)) for x in means])  # (K, J)
    s = np.asarray([np.ravel(np.asarray(x, dtype=np.float64)) for x in stderrs])
    if m.shape != s.shape or m.shape[0] != K:
        raise InputError(f"means {m.shape} and stderrs {s.shape} must have one row per rung ({K})")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
        raise InputError("rung means and standard errors must be finite")
    # a component without fluctuations (exactly zero standard error) is weighted as if its
    # error were float64 round-off of its size, not infinitely
    s = np.maximum(s, 1e-15 * (np.abs(m) + 1.0))
    X = np.vander(etas, order + 1, increasing=True)  # columns 1, eta, eta^2
    c0, se0, c1, chi2 = [], [], [], 0.0
    for j in range(m.shape[1]):
        w = 1.0 / s[:, j] ** 2
        cov = np.linalg.inv(X.T @ (w[:, None] * X))
        beta = cov @ (X.T @ (w * m[:, j]))
        chi2 += float(np.sum(w * (m[:, j] - X @ beta) ** 2))
        c0.append(beta[0])
        c1.append(beta[1])
        se0.append(np.sqrt(cov[0, 0]))
    return LadderFit(etas, order, np.array(c0), np.array(se0), np.array(c1), chi2, m.shape[1] * (K - order - 1))
