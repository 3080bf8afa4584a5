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

from dataclasses import dataclass, field

import torch
from torch.func import vmap

from core.errors import InputError
from core.validation import check_positive

from .ensemble import EnsembleSGD, named_tensor, weight_decay_named_gamma
from .sharpness import hessian_trace


@dataclass
class NormalisedLinear(EnsembleSGD):
    """``R`` SGD runs of the scale-invariant model ``f(x) = theta^T x / |theta|``, loss
    ``l = (f(x) - y)^2`` on ``y = v^T x / |v| + noise`` (``x ~ N(0, I_d)``). Seeding, the
    step, ``run`` and divergence errors are :class:`~numeric.ensemble.EnsembleSGD`'s;
    ``weights = [theta]``."""

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
    weights: list = field(init=False, repr=False)
    model_name = "normalised linear model"
    tensor_names = ("theta",)
    theta = named_tensor(0)
    weight_decay = weight_decay_named_gamma()

    def __post_init__(self):
        check_positive("init_norm", self.init_norm)
        check_positive("gamma", self.gamma, allow_zero=True)
        if int(self.dim) < 2 or int(self.n_runs) < 1 or int(self.batch) < 1:
            raise InputError(f"need dim >= 2, n_runs >= 1, batch >= 1; got {self.dim}, {self.n_runs}, {self.batch}")
        self.init_ensemble()  # device, eta; seeds the generator
        v = self.randn(self.dim)
        self.v = v / v.norm()
        th = self.randn(self.n_runs, self.dim)
        if self.init_spread is not None:
            th = self.v + check_positive("init_spread", self.init_spread, allow_zero=True) * th
        self.weights = [th / th.norm(dim=-1, keepdim=True) * self.init_norm]
        self._trace = None  # per-step records while run() is recording

    @staticmethod
    def loss(theta, x, y):
        """Per-sample loss of one net (theta: (d,), x: (d,), y: ())."""
        return (theta @ x / theta.norm() - y) ** 2

    def sample(self, batch: int | None = None):
        B = self.batch if batch is None else int(batch)
        x = self.randn(self.n_runs, B, self.dim)
        y = x @ self.v + self.noise * self.randn(self.n_runs, B)
        return x, y

    def gradients(self, x, y):
        """No loss record; the closed-form minibatch gradient ``[g]``."""
        return None, [self.grads(x, y)]

    def grads(self, x, y):
        """Minibatch-mean gradient per run, closed form (R, d):
        ``g = (2/B) sum_b r_b (x_b - (theta.x_b / |theta|^2) theta) / |theta|``."""
        nrm = self.theta.norm(dim=-1, keepdim=True)  # (R,1)
        proj = (x @ self.theta.unsqueeze(-1)).squeeze(-1)  # (R,B) theta.x
        r = proj / nrm - y  # residual
        perp = x - (proj / nrm.pow(2)).unsqueeze(-1) * self.theta.unsqueeze(1)
        return (2.0 / x.shape[1]) * (r.unsqueeze(-1) * perp).sum(1) / nrm

    def record(self, batch, loss, grads):
        """Before the step: the round-off size of its un-cancelled pieces (kept for :meth:`stepped`)."""
        if self._trace is not None:
            x, y = batch
            th0 = self.theta
            # |theta.g| is 0 exactly; its float value is bounded by the un-cancelled sizes:
            # the step writes theta' = theta - eta g, so round-off enters at the scale of
            # |theta|^2 + 2 eta |theta||g|_raw + eta^2 |g|^2, |g|_raw the pre-projection size.
            nrm0 = th0.norm(dim=-1, keepdim=True)
            r = (x @ th0.unsqueeze(-1)).squeeze(-1) / nrm0 - y  # (R,B)
            # two un-cancelled pieces of size |r||x|/|theta| per sample before projection
            self._graw = (2.0 / x.shape[1]) * (r.abs() * x.norm(dim=-1)).sum(1) * 2.0 / nrm0.squeeze(-1)
        return None

    def stepped(self, before, grads):
        """After the step: ``|theta|^2`` before/after, ``eta^2 |g|^2`` and the identity's scale."""
        if self._trace is None:
            return
        (th0,), (g,) = before, grads
        n0 = th0.pow(2).sum(-1)
        n1 = self.theta.pow(2).sum(-1)
        e2g2 = self.eta**2 * g.pow(2).sum(-1)
        scale = n0 + n1 + e2g2 + 2 * self.eta * th0.norm(dim=-1) * self._graw
        self._trace.append((n0, n1, e2g2, scale))

    def run(self, n_steps: int, progress=None) -> dict:
        """SGD steps; records per step ``|theta|^2`` before/after, ``eta^2 |g|^2`` and the
        round-off scale of the norm identity (shape (T, R)). With weight decay the exact
        identity is ``|theta'|^2 = (1 - 2 eta gam)^2 |theta|^2 + eta^2 |g|^2``."""
        self._trace = []
        try:
            super().run(n_steps, progress, record=True)
            recs = self._trace
        finally:
            self._trace = None
        return {k: torch.stack([r[i] for r in recs]) for i, k in enumerate(("n0", "n1", "eta2g2", "scale"))}


def normalised_sharpness(theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Total sharpness ``Tr hess`` of the empirical loss of :class:`NormalisedLinear` at one
    theta (torch.func.hessian)."""

    def L(th):
        return vmap(NormalisedLinear.loss, in_dims=(None, 0, 0))(th, X, Y).mean()

    return hessian_trace(L, theta)
