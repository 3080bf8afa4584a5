"""Two-layer tanh net ``f(x) = a^T tanh(W x)`` trained by ensemble SGD on a tanh teacher.

Its hidden-neuron permutations and sign flips are discrete orthogonal symmetries. Seeding,
the run loop and divergence errors are :class:`~numeric.ensemble.EnsembleSGD`'s; the
generator is seeded with ``data_seed``, so two ensembles see the same minibatches exactly
when their ``data_seed`` agree.

>>> W, a = torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
>>> A = TwoLayerTanh(dim=2, hidden=2, n_runs=3, eta=0.05, teacher_W=W, teacher_a=a, device="cpu").init(W, a).run(20)
>>> B = TwoLayerTanh(dim=2, hidden=2, n_runs=3, eta=0.05, teacher_W=W, teacher_a=a, device="cpu").init(W[[1, 0]], a).run(20)
>>> bool((B.W - A.W[:, [1, 0]]).abs().max() < 1e-14)   # same minibatches: permutation equivariant
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import InputError

from .ensemble import EnsembleSGD


@dataclass
class TwoLayerTanh(EnsembleSGD):
    """``R`` SGD runs of ``f(x) = a^T tanh(W x)`` (W: h x d, a: h) on a tanh teacher with
    label noise, loss ``l = (f(x) - y)^2``. Every run starts from the same (W, a): :meth:`init`."""

    dim: int
    hidden: int
    n_runs: int
    eta: float
    teacher_W: torch.Tensor
    teacher_a: torch.Tensor
    noise: float = 0.1
    batch: int = 4
    data_seed: int = 0
    device: "str | torch.device" = "auto"

    model_name = "tanh net"

    def __post_init__(self):
        self.init_ensemble()
        self.tW = torch.as_tensor(self.teacher_W, device=self.device, dtype=torch.float64)
        self.ta = torch.as_tensor(self.teacher_a, device=self.device, dtype=torch.float64)
        self.W = None
        self.a = None

    @property
    def seed(self) -> int:
        return self.data_seed

    @property
    def weights(self) -> list:
        return [self.W, self.a]

    @weights.setter
    def weights(self, ws) -> None:
        self.W, self.a = ws

    def weight_names(self) -> list:
        return ["W", "a"]

    def init(self, W: torch.Tensor, a: torch.Tensor):
        """Every run starts from the same (W, a), broadcast over the ensemble."""
        W = torch.as_tensor(W, device=self.device, dtype=torch.float64)
        a = torch.as_tensor(a, device=self.device, dtype=torch.float64)
        if W.shape != (self.hidden, self.dim) or a.shape != (self.hidden,):
            raise InputError(f"init shapes must be ({self.hidden},{self.dim}) and ({self.hidden},), got "
                             f"{tuple(W.shape)}, {tuple(a.shape)}")
        self.W = W.expand(self.n_runs, -1, -1).clone()
        self.a = a.expand(self.n_runs, -1).clone()
        return self

    def sample(self, batch: int | None = None):
        B = self.batch if batch is None else int(batch)
        x = self.randn(self.n_runs, B, self.dim)
        y = torch.tanh(x @ self.tW.T) @ self.ta + self.noise * self.randn(self.n_runs, B)
        return x, y

    def gradients(self, x, y):
        """No loss; the minibatch-mean gradients ``[g_W, g_a]`` per run, in closed form."""
        hdn = torch.tanh(x @ self.W.transpose(-1, -2))  # (R,B,h)
        r = (hdn * self.a.unsqueeze(1)).sum(-1) - y  # (R,B)
        B = x.shape[1]
        ga = (2.0 / B) * (r.unsqueeze(-1) * hdn).sum(1)
        delta = r.unsqueeze(-1) * self.a.unsqueeze(1) * (1 - hdn.pow(2))  # (R,B,h)
        gW = (2.0 / B) * delta.transpose(-1, -2) @ x
        return None, [gW, ga]

    def run(self, n_steps: int, progress=None):
        """``n_steps`` SGD steps of every run (see :meth:`EnsembleSGD.run`); returns the model."""
        if self.W is None:
            raise InputError("call init(W, a) before run()")
        super().run(n_steps, progress, record=False)
        return self

    def population_loss(self, n_eval: int = 4096, seed: int = 12345) -> torch.Tensor:
        """Monte-Carlo test loss per run on a fixed evaluation set (common random numbers)."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        x = torch.randn(n_eval, self.dim, generator=g, device=self.device, dtype=torch.float64)
        f_t = torch.tanh(x @ self.tW.T) @ self.ta
        f = (torch.tanh(torch.einsum("nd,rhd->rnh", x, self.W)) * self.a.unsqueeze(1)).sum(-1)
        return (f - f_t).pow(2).mean(-1) + self.noise**2
