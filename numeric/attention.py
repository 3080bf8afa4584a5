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

from core.errors import InputError

from .ensemble import EnsembleSGD


def attention_forward(WQ, WK, WV, X):
    """``softmax(X W_Q^T W_K X^T / sqrt(h)) X W_V^T`` for (R,h,d),(R,h,d),(R,o,d),(R,B,n,d)."""
    h = WQ.shape[-2]
    q = X @ WQ.transpose(-1, -2).unsqueeze(1)  # (R,B,n,h)
    k = X @ WK.transpose(-1, -2).unsqueeze(1)
    v = X @ WV.transpose(-1, -2).unsqueeze(1)  # (R,B,n,o)
    att = torch.softmax(q @ k.transpose(-1, -2) / h**0.5, dim=-1)
    return att @ v


@dataclass
class AttentionEnsemble(EnsembleSGD):
    """``n_runs`` SGD runs of one self-attention layer; ``d`` token dim, ``h`` query/key dim.

    ``weights = [W_Q, W_K, W_V]`` ((R,h,d), (R,h,d), (R,d_out,d)). Seeding, the SGD step,
    divergence errors and ``run``/``observe`` are :class:`~numeric.ensemble.EnsembleSGD`'s.
    """

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
    weights: list = field(init=False)
    model_name = "attention layer"

    def __post_init__(self):
        self.d_out = self.d if self.d_out is None else int(self.d_out)
        if min(self.d, self.h, self.n_tokens, self.d_out, self.n_runs, self.batch) < 1:
            raise InputError("d, h, n_tokens, d_out, n_runs and batch must all be >= 1")
        self.init_ensemble()
        s = 1.0 / np.sqrt(self.d)
        self.teacher = [self.randn(1, self.h, self.d) * s * self.teacher_scale,
                        self.randn(1, self.h, self.d) * s * self.teacher_scale,
                        self.randn(1, self.d_out, self.d) * s]
        self.weights = [self.randn(self.n_runs, self.h, self.d) * s * self.init_scale,
                        self.randn(self.n_runs, self.h, self.d) * s * self.init_scale,
                        self.randn(self.n_runs, self.d_out, self.d) * s * self.init_scale]
        if not self.train_value:
            self.weights[2] = self.teacher[2].expand(self.n_runs, -1, -1).clone()

    def weight_names(self) -> list:
        return ["W_Q", "W_K", "W_V"]

    def sample(self, batch: int | None = None):
        """Token sequences ``X`` (R,B,n,d) on the sphere ``|x|^2 = d`` and noisy teacher labels."""
        B = self.batch if batch is None else int(batch)
        X = self.randn(self.n_runs, B, self.n_tokens, self.d)
        X = X * (self.d**0.5 / X.norm(dim=-1, keepdim=True))
        y = attention_forward(*self.teacher, X)
        return X, y + self.noise_std * self.randn(*y.shape)

    def gradients(self, X, y):
        """Per-run minibatch loss (R,) and gradients ``(g_Q, g_K, g_V)`` by autograd of the
        summed per-run losses (the runs share no parameter)."""
        ps = [p.detach().requires_grad_(True) for p in self.weights]
        loss = (attention_forward(*ps, X) - y).pow(2).sum((-1, -2)).mean(-1)
        return loss.detach(), [g.detach() for g in torch.autograd.grad(loss.sum(), ps)]

    def record(self, batch, loss, grads) -> dict:
        """``gram_q``, ``gram_k``, ``wgram_q``, ``wgram_k`` (R,h,h), ``gsq`` (R,3) and ``loss`` (R,)."""
        gQ, gK, gV = grads
        WQ, WK = self.weights[0], self.weights[1]
        return {"loss": loss, "gram_q": gQ @ gQ.transpose(-1, -2), "gram_k": gK @ gK.transpose(-1, -2),
                "wgram_q": WQ @ WQ.transpose(-1, -2), "wgram_k": WK @ WK.transpose(-1, -2),
                "gsq": torch.stack([g.pow(2).sum((-1, -2)) for g in (gQ, gK, gV)], -1)}

    def update(self, grads) -> None:
        """SGD on ``(W_Q, W_K)``, and on ``W_V`` only when ``train_value`` (its decay applies either way)."""
        gQ, gK, gV = grads
        if not self.train_value:
            gV = torch.zeros_like(gV)
        super().update([gQ, gK, gV])


def teacher_hessians(n_samples: int = 1000, **kwargs) -> torch.Tensor:
    """Per-sample Hessians ``(n_samples, n, n)`` of the loss in the trained weights (``W_Q``, ``W_K``;
    and ``W_V`` when ``train_value``) at the teacher of ``AttentionEnsemble(**kwargs)``, on fresh
    noisy samples (their mean's largest eigenvalue sets gradient descent's stability limit).

    The teacher is the one the ensemble of the same ``seed`` trains towards (it is drawn first);
    the samples come from a one-run ensemble of its own, so the training runs' random stream is
    untouched.
    """
    from torch.func import hessian, vmap

    att = AttentionEnsemble(**{**kwargs, "n_runs": 1, "device": "cpu"})
    WQ, WK, WV = (t[0] for t in att.teacher)
    X, y = (t[0] for t in att.sample(int(n_samples)))  # (N, n, d), (N, n, d_out)
    h, d = WQ.shape
    trained = [WQ, WK] + ([WV] if att.train_value else [])
    sizes = [w.numel() for w in trained]

    def loss(p, x, yb):
        ws = [c.reshape(w.shape) for c, w in zip(torch.split(p, sizes), trained)]
        wv = ws[2] if att.train_value else WV
        return (attention_forward(ws[0][None], ws[1][None], wv[None], x[None, None])[0, 0] - yb).pow(2).sum()

    p = torch.cat([w.reshape(-1) for w in trained])
    return vmap(hessian(loss), in_dims=(None, 0, 0))(p, X, y)
