"""Ensemble SGD for a single self-attention layer (query/key/value) in a teacher-student task.

``R`` independent runs advance together (one autograd backward of the summed per-run
minibatch losses gives each run its own gradient). A sequence ``X`` (n tokens x d) maps to

    f(X) = softmax(X W_Q^T W_K X^T / sqrt(h)) X W_V^T,

rows of the softmax over keys; labels ``y = f_teacher(X) + noise_std * e``; tokens are drawn
fresh every step on the sphere ``|x|^2 = d``. The loss depends on (W_Q, W_K) only through
``K = W_Q^T W_K``: with ``U = W_Q^T`` and ``W = W_K`` the double rotation ``W -> e^{lam C} W``,
``U -> U e^{-lam C}`` (i.e. ``W_Q -> e^{-lam C^T} W_Q``) leaves it unchanged.

Recorded every step (pre-step weights, the step's minibatch gradient): ``gram_q =
g_Q g_Q^T``, ``gram_k = g_K g_K^T`` (h x h), the weight Grams ``W_Q W_Q^T``, ``W_K W_K^T``,
the squared gradient norm of every parameter block (``gsq``: Q, K, V) and the loss.
Theorem 7 at gam = 0 reads ``E[gram_k] = E[gram_q]`` (numeric/balance.py: gram_law).

>>> att = AttentionEnsemble(d=3, h=2, n_tokens=4, n_runs=2, eta=0.01, device="cpu")
>>> att.run(3); sorted(att.observe())
['gram_k', 'gram_q', 'gsq', 'loss', 'wgram_k', 'wgram_q']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .device import resolve_device
from core.errors import DivergenceError, InputError
from core.validation import check_positive


def attention_forward(WQ, WK, WV, X):
    """``softmax(X W_Q^T W_K X^T / sqrt(h)) X W_V^T`` for (R,h,d),(R,h,d),(R,o,d),(R,B,n,d)."""
    h = WQ.shape[-2]
    q = X @ WQ.transpose(-1, -2).unsqueeze(1)  # (R,B,n,h)
    k = X @ WK.transpose(-1, -2).unsqueeze(1)
    v = X @ WV.transpose(-1, -2).unsqueeze(1)  # (R,B,n,o)
    att = torch.softmax(q @ k.transpose(-1, -2) / h**0.5, dim=-1)
    return att @ v


@dataclass
class AttentionEnsemble:
    """``n_runs`` SGD runs of one self-attention layer; ``d`` token dim, ``h`` query/key dim."""

    d: int = 4
    h: int = 3
    n_tokens: int = 4
    d_out: int | None = None
    n_runs: int = 16
    eta: float = 0.02
    batch: int = 1
    weight_decay: float = 0.0
    noise_std: float = 0.5
    teacher_scale: float = 2.0
    init_scale: float = 1.0
    train_value: bool = False  # False: W_V is the teacher's, only (W_Q, W_K) learn (less noise)
    seed: int = 0
    device: "str | torch.device | None" = "auto"
    dtype: torch.dtype = torch.float64
    blowup_norm: float = 1e6
    params: list = field(init=False)
    step_count: int = field(init=False, default=0)

    def __post_init__(self):
        self.device = resolve_device(self.device)
        check_positive("eta", self.eta)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        self.d_out = self.d if self.d_out is None else int(self.d_out)
        if min(self.d, self.h, self.n_tokens, self.d_out, self.n_runs, self.batch) < 1:
            raise InputError("d, h, n_tokens, d_out, n_runs and batch must all be >= 1")
        if self.eta * 2.0 * self.weight_decay >= 1.0:
            raise InputError(f"eta * 2 * weight_decay = {2 * self.eta * self.weight_decay:g} >= 1: the decay step overshoots")
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(self.seed))
        s = 1.0 / np.sqrt(self.d)
        self.teacher = [self._randn(1, self.h, self.d) * s * self.teacher_scale,
                        self._randn(1, self.h, self.d) * s * self.teacher_scale,
                        self._randn(1, self.d_out, self.d) * s]
        self.params = [self._randn(self.n_runs, self.h, self.d) * s * self.init_scale,
                       self._randn(self.n_runs, self.h, self.d) * s * self.init_scale,
                       self._randn(self.n_runs, self.d_out, self.d) * s * self.init_scale]
        if not self.train_value:
            self.params[2] = self.teacher[2].expand(self.n_runs, -1, -1).clone()
        self._acc, self._n = {}, 0

    def _randn(self, *shape):
        return torch.randn(*shape, generator=self._gen, device=self.device, dtype=self.dtype)

    def sample(self, batch: int | None = None):
        B = self.batch if batch is None else int(batch)
        X = self._randn(self.n_runs, B, self.n_tokens, self.d)
        X = X * (self.d**0.5 / X.norm(dim=-1, keepdim=True))
        y = attention_forward(*self.teacher, X)
        return X, y + self.noise_std * self._randn(*y.shape)

    def batch_loss_and_grads(self, X, y):
        ps = [p.detach().requires_grad_(True) for p in self.params]
        loss = (attention_forward(*ps, X) - y).pow(2).sum((-1, -2)).mean(-1)
        return loss.detach(), [g.detach() for g in torch.autograd.grad(loss.sum(), ps)]

    def step(self, record: bool = True):
        X, y = self.sample()
        loss, (gQ, gK, gV) = self.batch_loss_and_grads(X, y)
        if record:
            WQ, WK = self.params[0], self.params[1]
            obs = {"loss": loss, "gram_q": gQ @ gQ.transpose(-1, -2), "gram_k": gK @ gK.transpose(-1, -2),
                   "wgram_q": WQ @ WQ.transpose(-1, -2), "wgram_k": WK @ WK.transpose(-1, -2),
                   "gsq": torch.stack([g.pow(2).sum((-1, -2)) for g in (gQ, gK, gV)], -1)}
            for k, v in obs.items():
                self._acc[k] = self._acc[k] + v if k in self._acc else v.clone()
            self._n += 1
        if not self.train_value:
            gV = torch.zeros_like(gV)
        self.params = [p - self.eta * (g + 2.0 * self.weight_decay * p) for p, g in zip(self.params, (gQ, gK, gV))]
        self.step_count += 1

    def run(self, n_steps: int, record: bool = True, progress=None):
        for _ in range(int(n_steps)):
            self.step(record)
            if progress is not None:
                progress(1)
        norm = sum(p.pow(2).sum((-1, -2)) for p in self.params)
        bad = ~torch.isfinite(norm) | (norm > self.blowup_norm**2)
        if bool(bad.any()):
            raise DivergenceError(f"attention SGD diverged in {int(bad.sum())}/{self.n_runs} runs by step "
                                  f"{self.step_count}; eta = {self.eta:g} is past the stability limit",
                                  runs=torch.nonzero(bad).flatten().tolist())

    def observe(self) -> dict:
        if self._n == 0:
            raise RuntimeError("observe() before any recorded step: call run(n) first")
        out = {k: v / self._n for k, v in self._acc.items()}
        self._acc, self._n = {}, 0
        return out
