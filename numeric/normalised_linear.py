"""The scale-invariant model ``f(x) = theta^T x / |theta|`` (generator ``A = I``) trained by ensemble SGD.

``R`` float64 runs (leading dimension); every step records what the exact norm law
``|theta'|^2 = (1 - 2 eta gam)^2 |theta|^2 + eta^2 |g|^2`` needs, and
:func:`normalised_sharpness` measures the total sharpness of the empirical loss.

>>> net = NormalisedLinear(dim=3, n_runs=4, eta=0.1, seed=0, device="cpu")
>>> rec = net.run(10)
>>> bool(((rec["n1"] - rec["n0"] - rec["eta2g2"]).abs() <= 1e-12 * rec["scale"]).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import vmap

from core.errors import InputError
from core.validation import check_positive

from .device import resolve_device
from .float64 import check_finite
from .sharpness import hessian_trace


@dataclass
class NormalisedLinear:
    """``R`` SGD runs of the scale-invariant model ``f(x) = theta^T x / |theta|``, loss
    ``l = (f(x) - y)^2`` on ``y = v^T x / |v| + noise`` (``x ~ N(0, I_d)``)."""

    dim: int
    n_runs: int
    eta: float
    batch: int = 1
    noise: float = 0.3
    seed: int = 0
    init_norm: float = 1.0
    init_spread: float | None = None  # None: random directions; s: teacher direction + s * noise
    gamma: float = 0.0  # weight decay: theta <- theta - eta (g + 2 gam theta)
    device: "str | torch.device" = "auto"

    def __post_init__(self):
        self.device = resolve_device(self.device)
        check_positive("eta", self.eta)
        check_positive("init_norm", self.init_norm)
        check_positive("gamma", self.gamma, allow_zero=True)
        if int(self.dim) < 2 or int(self.n_runs) < 1 or int(self.batch) < 1:
            raise InputError(f"need dim >= 2, n_runs >= 1, batch >= 1; got {self.dim}, {self.n_runs}, {self.batch}")
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.seed))
        v = torch.randn(self.dim, generator=self._gen, device=self.device, dtype=torch.float64)
        self.v = v / v.norm()
        th = torch.randn(self.n_runs, self.dim, generator=self._gen, device=self.device, dtype=torch.float64)
        if self.init_spread is not None:
            th = self.v + check_positive("init_spread", self.init_spread, allow_zero=True) * th
        self.theta = th / th.norm(dim=-1, keepdim=True) * self.init_norm
        self.step_count = 0

    @staticmethod
    def loss(theta, x, y):
        """Per-sample loss of one net (theta: (d,), x: (d,), y: ())."""
        return (theta @ x / theta.norm() - y) ** 2

    def sample(self):
        f64 = dict(generator=self._gen, device=self.device, dtype=torch.float64)
        x = torch.randn(self.n_runs, self.batch, self.dim, **f64)
        y = x @ self.v + self.noise * torch.randn(self.n_runs, self.batch, **f64)
        return x, y

    def grads(self, x, y):
        """Minibatch-mean gradient per run, closed form (R, d):
        ``g = (2/B) sum_b r_b (x_b - (theta.x_b / |theta|^2) theta) / |theta|``."""
        nrm = self.theta.norm(dim=-1, keepdim=True)  # (R,1)
        proj = (x @ self.theta.unsqueeze(-1)).squeeze(-1)  # (R,B) theta.x
        r = proj / nrm - y  # residual
        perp = x - (proj / nrm.pow(2)).unsqueeze(-1) * self.theta.unsqueeze(1)
        return (2.0 / x.shape[1]) * (r.unsqueeze(-1) * perp).sum(1) / nrm

    def run(self, n_steps: int, progress=None) -> dict:
        """SGD steps; records per step ``|theta|^2`` before/after, ``eta^2 |g|^2`` and the
        round-off scale of the norm identity (shape (T, R)). With weight decay the exact
        identity is ``|theta'|^2 = (1 - 2 eta gam)^2 |theta|^2 + eta^2 |g|^2``."""
        recs = {"n0": [], "n1": [], "eta2g2": [], "scale": []}
        for _ in range(int(n_steps)):
            x, y = self.sample()
            g = self.grads(x, y)
            th0 = self.theta
            self.theta = th0 - self.eta * (g + 2 * self.gamma * th0)
            n0 = th0.pow(2).sum(-1)
            n1 = self.theta.pow(2).sum(-1)
            e2g2 = self.eta**2 * g.pow(2).sum(-1)
            # |theta.g| is 0 exactly; its float value is bounded by the un-cancelled sizes:
            # the step writes theta' = theta - eta g, so round-off enters at the scale of
            # |theta|^2 + 2 eta |theta||g|_raw + eta^2 |g|^2, |g|_raw the pre-projection size.
            nrm0 = th0.norm(dim=-1, keepdim=True)
            r = (x @ th0.unsqueeze(-1)).squeeze(-1) / nrm0 - y  # (R,B)
            # two un-cancelled pieces of size |r||x|/|theta| per sample before projection
            graw = (2.0 / x.shape[1]) * (r.abs() * x.norm(dim=-1)).sum(1) * 2.0 / nrm0.squeeze(-1)
            scale = n0 + n1 + e2g2 + 2 * self.eta * th0.norm(dim=-1) * graw
            for k, v in zip(recs, (n0, n1, e2g2, scale)):
                recs[k].append(v)
            self.step_count += 1
            if progress is not None:
                progress(1)
        check_finite("theta", self.theta, self.step_count)
        return {k: torch.stack(v) for k, v in recs.items()}


def normalised_sharpness(theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Total sharpness ``Tr hess`` of the empirical loss of :class:`NormalisedLinear` at one
    theta (torch.func.hessian)."""

    def L(th):
        return vmap(NormalisedLinear.loss, in_dims=(None, 0, 0))(th, X, Y).mean()

    return hessian_trace(L, theta)
