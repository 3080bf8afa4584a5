"""Two-layer linear (or ReLU) net ``f(x) = U W x`` trained by ensemble SGD, and its master-balance witness.

``R`` float64 runs (leading dimension) on online Gaussian teacher data ``y = V x + e``. Its
exponential symmetries are the neuron rescalings ``W_k. -> e^{lam d_k} W_k.``,
``U_.k -> e^{-lam d_k} U_.k`` (generator ``A = diag`` with ``+d_k`` on row k of W and ``-d_k``
on column k of U; layer rescaling is ``d = 1``); :func:`neuron_generator_diag` writes that
diagonal on the flat order ``numeric.sharpness.flatten([W, U])``.

>>> net = TwoLayerLinear(dx=3, dy=2, hidden=3, n_runs=4, eta=0.01, seed=0, device="cpu")
>>> d = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
>>> rec = net.run(20, d)
>>> sorted(rec)
['cross', 'gAg', 'step_residual', 'step_scale', 'tAt']
>>> bool(rec["step_residual"].abs().max() <= 1e-12)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from core.errors import InputError
from core.validation import as_numpy, check_positive

from .ensemble import EnsembleSGD, named_tensor, weight_decay_named_gamma
from .float64 import roundoff_tolerance


@dataclass
class TwoLayerLinear(EnsembleSGD):
    """``R`` SGD runs of ``f = U W x`` (or ``U relu(W x)``; U: dy x h, W: h x dx) on ``y = V x + e``.

    ``Sx``/``Se`` default to ``sx_scale * I`` / ``se_scale * I``; ``V`` to a seeded random
    matrix. One step: ``theta <- theta - eta (g_B + 2 gam theta)``, ``g_B`` the minibatch
    mean gradient of ``l = |U W x - y|^2``. Seeding, the step, ``run`` and divergence errors
    are :class:`~numeric.ensemble.EnsembleSGD`'s; ``weights = [U, W]``.
    """

    dx: int
    dy: int
    hidden: int
    n_runs: int
    eta: float
    gamma: float = 0.0
    batch: int = 1
    sx_scale: float = 1.0
    se_scale: float = 0.25
    V: np.ndarray | None = None
    seed: int = 0
    init_scale: float = 1.0
    activation: str = "linear"  # or "relu": f = U relu(W x), the same neuron-rescaling symmetry
    device: "str | torch.device" = "auto"
    weights: list = field(init=False, repr=False)
    blowup_norm = 1e8
    model_name = "two-layer net"
    tensor_names = ("U", "W")
    U, W = named_tensor(0), named_tensor(1)
    weight_decay = weight_decay_named_gamma()

    def __post_init__(self):
        check_positive("gamma", self.gamma, allow_zero=True)
        for name in ("dx", "dy", "hidden", "n_runs", "batch"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.activation not in ("linear", "relu"):
            raise InputError(f"activation must be 'linear' or 'relu', got {self.activation!r}")
        check_positive("sx_scale", self.sx_scale)
        check_positive("se_scale", self.se_scale)
        self.init_ensemble()  # device, eta, run counts; seeds the generator
        rng = np.random.default_rng(self.seed)
        if self.V is None:  # a seeded direction with a fixed Frobenius norm 1.5 (well above the noise)
            V = rng.normal(size=(self.dy, self.dx))
            V = 1.5 * V / np.linalg.norm(V)
        else:
            V = as_numpy("V", self.V, 2)
        if V.shape != (self.dy, self.dx):
            raise InputError(f"V must be {self.dy}x{self.dx}, got {V.shape}")
        self.V_t = torch.as_tensor(V, device=self.device)
        R, h = self.n_runs, self.hidden
        W = self.randn(R, h, self.dx) * self.init_scale / math.sqrt(self.dx)
        U = self.randn(R, self.dy, h) * self.init_scale / math.sqrt(h)
        self.weights = [U, W]
        self._trace = None  # per-step records while run(n, d) is recording

    # -- data and gradients ------------------------------------------------------------
    def sample(self, batch: int | None = None):
        R, B = self.n_runs, self.batch if batch is None else int(batch)
        x = self.randn(R, B, self.dx) * math.sqrt(self.sx_scale)
        e = self.randn(R, B, self.dy) * math.sqrt(self.se_scale)
        return x, x @ self.V_t.T + e

    def gradients(self, x, y):
        """No loss record; the closed-form minibatch gradients ``[g_U, g_W]``."""
        return None, list(self.grads(x, y))

    def grads(self, x, y):
        """Minibatch-mean gradients ``(g_U, g_W)`` of ``l = |U s(W x) - y|^2`` per run."""
        pre = x @ self.W.transpose(-1, -2)  # (R,B,h)
        hdn = pre.clamp_min(0.0) if self.activation == "relu" else pre
        r = hdn @ self.U.transpose(-1, -2) - y  # (R,B,dy)
        B = x.shape[1]
        gU = (2.0 / B) * r.transpose(-1, -2) @ hdn
        back = r @ self.U
        if self.activation == "relu":
            back = back * (pre > 0)
        gW = (2.0 / B) * back.transpose(-1, -2) @ x
        return gU, gW

    # -- the generator A of a neuron rescaling -------------------------------------------
    def _check_d(self, d) -> torch.Tensor:
        d = torch.as_tensor(d, device=self.device, dtype=torch.float64).reshape(-1)
        if d.numel() != self.hidden:
            raise InputError(f"neuron-rescaling vector d must have {self.hidden} entries, got {d.numel()}")
        if not bool(torch.isfinite(d).all()):
            raise InputError("neuron-rescaling vector d contains NaN/inf")
        return d

    @staticmethod
    def quad_A(d, U, W):
        """``theta^T A theta = sum_k d_k (|W_k.|^2 - |U_.k|^2)`` per run."""
        return (W.pow(2).sum(-1) * d).sum(-1) - (U.pow(2).sum(-2) * d).sum(-1)

    @staticmethod
    def abs_quad_A(d, U, W):
        """``theta^T |A| theta``: the scale against which round-off in quad_A is measured."""
        return (W.pow(2).sum(-1) * d.abs()).sum(-1) + (U.pow(2).sum(-2) * d.abs()).sum(-1)

    @staticmethod
    def bilinear_A(d, U1, W1, U2, W2):
        """``theta_1^T A theta_2`` per run."""
        return ((W1 * W2).sum(-1) * d).sum(-1) - ((U1 * U2).sum(-2) * d).sum(-1)

    def stepped(self, before, grads):
        """Record the pre-step ``g^T A g``, ``theta^T A theta``, ``g^T A theta`` and the exact
        one-step identity's residual against the weights the step wrote (see :meth:`run`)."""
        if self._trace is None:
            return
        d = self._d
        (U0, W0), (gU, gW) = before, grads
        lr, gam = self.eta, self.gamma
        tAt0 = self.quad_A(d, U0, W0)
        gAg = self.quad_A(d, gU, gW)
        tAt1 = self.quad_A(d, self.U, self.W)
        # derived in symbolic.symmetry.sgd_balance_condition: the symmetry kills g^T A theta
        predicted = tAt0 + lr**2 * gAg - 4 * lr * gam * (1 - lr * gam) * tAt0
        scale = (self.abs_quad_A(d, U0, W0) + self.abs_quad_A(d, self.U, self.W)
                 + lr**2 * self.abs_quad_A(d, gU, gW))
        self._trace.append({"gAg": gAg, "tAt": tAt0, "cross": self.bilinear_A(d, gU, gW, U0, W0),
                            "step_residual": tAt1 - predicted, "step_scale": scale})

    def run(self, n_steps: int, d=None, progress=None):
        """Advance every run; with ``d``, return per-step records stacked to shape (T, R).

        ``step_residual`` is ``theta'^T A theta' - [theta^T A theta + eta^2 g^T A g -
        4 eta gam (1 - eta gam) theta^T A theta]``: zero in exact arithmetic.
        """
        if d is None:
            super().run(n_steps, progress, record=False)
            return {}
        self._d, self._trace = self._check_d(d), []
        try:
            super().run(n_steps, progress, record=True)
            recs = self._trace
        finally:
            self._trace = None
        if not recs:
            return {}
        return {k: torch.stack([r[k] for r in recs]) for k in recs[0]}

    @property
    def n_params(self) -> int:
        return self.hidden * (self.dx + self.dy)


def balance_witness(eta: float, gamma: float, d, *, steps: int, burn_in: int, n_runs: int = 64,
                    seed: int = 0, device="auto", **net_kwargs) -> dict:
    """Run SGD on the two-layer linear net and measure the master balance law for the
    neuron-rescaling generator ``d``.

    Returns the per-run time averages over the window after ``burn_in`` (each run one
    independent sample: the CLT standard error is the run-to-run spread / sqrt(R)) and the
    largest per-step round-off residual of the exact one-step identity relative to its bound.
    """
    net = TwoLayerLinear(n_runs=n_runs, eta=eta, gamma=gamma, seed=seed, device=device, **net_kwargs)
    net.run(burn_in)
    rec = net.run(steps, d)
    tol = roundoff_tolerance(2 * net.n_params, rec["step_scale"])
    mg = rec["gAg"].mean(0)  # per-run time averages (R,)
    mt = rec["tAt"].mean(0)
    out = {
        "eta": eta, "gamma": gamma, "steps": steps, "burn_in": burn_in, "n_runs": n_runs,
        "gAg_runs": mg, "tAt_runs": mt,
        "step_residual_over_bound": float((rec["step_residual"].abs() / tol).max()),
        "cross_over_scale": float((rec["cross"].abs() / rec["step_scale"].clamp_min(1e-300)).max()),
    }
    return out


def ratio_with_stderr(num_runs: torch.Tensor, den_runs: torch.Tensor) -> tuple[float, float]:
    """Ratio of ensemble means ``mean(num)/mean(den)`` and its delta-method standard error
    (runs independent): ``se = sqrt(var(num - r den) / R) / |mean(den)|``."""
    R = num_runs.numel()
    n, dnm = float(num_runs.mean()), float(den_runs.mean())
    if dnm == 0.0:
        raise InputError("ratio_with_stderr: the denominator's mean is exactly zero")
    r = n / dnm
    resid = num_runs - r * den_runs
    se = float(resid.std() / math.sqrt(R)) / abs(dnm)
    return r, se


def neuron_generator_diag(d: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Diagonal of the generator A on the flat order ``flatten([W, U])``: ``+d_k`` on W's row k, ``-d_k``
    on U's column k."""
    h = d.numel()
    aW = d.reshape(h, 1).expand(h, dx).reshape(-1)
    aU = (-d).reshape(1, h).expand(dy, h).reshape(-1)
    return torch.cat([aW, aU])
