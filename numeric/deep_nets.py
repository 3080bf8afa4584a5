"""Ensemble SGD for bias-free deep MLPs (linear, ReLU, polynomial) in a teacher-student task.

``R`` independent SGD runs advance together: every weight has a leading run dimension, the
loss of the ensemble is the SUM over runs of each run's minibatch loss, so one autograd
backward returns every run's own minibatch gradient (the runs share no parameter). The code
runs on the GPU when there is one (``device="auto"``).

Model: ``f(x) = W_D s(W_{D-1} ... s(W_1 x))``, no biases (a bias would break the layer
rescaling symmetry), activation ``s`` one of

* ``linear``: ``s(z) = z``;
* ``relu``: ``s(z) = max(z, 0)`` - positively homogeneous of degree 1;
* ``poly``: ``s(z) = z |z|^(beta-1)`` - homogeneous of degree ``beta`` for positive scalings
  (``s(c z) = c^beta s(z)`` for ``c > 0``), the polynomial net of Theorem 11.

Data: labels ``y = f_teacher(x) + noise_std * e``, the teacher a random net of the same
architecture; inputs either fresh Gaussian ``x ~ N(0, I)`` every step (online SGD), the same
projected onto the sphere ``|x|^2 = d_in`` (``sphere``, the default: no rare huge input
pushes a step past the stability limit), or rows
of scikit-learn's bundled ``digits`` images (standardised, drawn with replacement; nothing
is downloaded). Per-sample loss ``l = |f(x) - y|^2``; one SGD step with batch ``B`` and
weight decay ``gam`` is ``W <- W - eta (g_B + 2 gam W)`` with ``g_B`` the minibatch-mean
gradient of ``l``.

Every step records, at the PRE-step weights and for the gradient ``g_B`` the step uses,
the layer quantities ``|g_{B,i}|^2`` and ``|W_i|^2`` and, for every hidden layer ``i``, the
Gram matrices ``g_{W_i} g_{W_i}^T`` (incoming side) and ``g_{W_{i+1}}^T g_{W_{i+1}}``
(outgoing side) whose diagonals are the per-neuron gradient second moments; ``observe()``
returns their averages since the previous call (see numeric/balance.py for why these are
the quantities the balance laws are exact for).

>>> net = MLPEnsemble([3, 4, 2], activation="relu", n_runs=2, eta=0.01, seed=0, device="cpu")
>>> [tuple(w.shape) for w in net.weights]
[(2, 4, 3), (2, 2, 4)]
>>> net.run(5)
>>> obs = net.observe()
>>> sorted(obs)[:3], tuple(obs["gsq"].shape)
(['gram_in_1', 'gram_out_1', 'gsq'], (2, 2))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from core.errors import InputError
from core.validation import check_positive

from .ensemble import EnsembleSGD

ACTIVATIONS = ("linear", "relu", "poly")


def activate(z: torch.Tensor, activation: str, beta: float = 2.0) -> torch.Tensor:
    """The activation ``s(z)``; ``poly`` is ``z |z|^(beta-1)`` (odd, degree-``beta`` homogeneous).

    >>> activate(torch.tensor([-2.0, 3.0]), "poly", beta=2.0).tolist()
    [-4.0, 9.0]
    """
    if activation == "linear":
        return z
    if activation == "relu":
        return torch.relu(z)
    if activation == "poly":
        return z * z.abs().pow(beta - 1.0)
    raise InputError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def mlp_forward(weights: Sequence[torch.Tensor], x: torch.Tensor, activation: str, beta: float = 2.0):
    """``f(x)`` for batched weights ``(R, out, in)`` and inputs ``(R, B, in)`` -> ``(R, B, out)``."""
    h = x
    for k, W in enumerate(weights):
        h = h @ W.transpose(-1, -2)
        if k < len(weights) - 1:
            h = activate(h, activation, beta)
    return h


def load_digits_inputs() -> np.ndarray:
    """scikit-learn's bundled 8x8 digits (1797 x 64), standardised per pixel; constant pixels dropped."""
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.float64)
    sd = X.std(0)
    keep = sd > 0
    return (X[:, keep] - X[:, keep].mean(0)) / sd[keep]


@dataclass
class MLPEnsemble(EnsembleSGD):
    """``n_runs`` independent SGD runs of a bias-free MLP with widths ``dims``.

    ``dims = [d_in, h_1, ..., h_{D-1}, d_out]`` (D = ``len(dims) - 1`` layers). The teacher
    has the same widths and activation unless ``teacher_dims`` (same d_in, d_out) is given.
    ``init_scale``: each student entry has std ``init_scale / sqrt(fan_in)``. ``teacher_snr``:
    when given, every teacher layer is rescaled by one common factor so that the teacher's output
    power ``E|f_T(x)|^2`` is ``teacher_snr`` times the label-noise power ``d_out noise_std^2``
    (a random teacher's output power otherwise varies over orders of magnitude from seed to
    seed: a teacher far below the noise leaves the student's weights nearly free, and the SGD
    runs drift instead of reaching a stationary state). Seeding, the
    SGD step, divergence errors and ``run``/``observe`` are :class:`~numeric.ensemble.EnsembleSGD`'s.
    """

    dims: Sequence[int]
    activation: str = "relu"
    n_runs: int = 8
    eta: float = 0.01
    batch: int = 1
    weight_decay: float = 0.0
    noise_std: float = 0.5
    beta: float = 2.0
    inputs: str = "sphere"
    teacher_dims: Sequence[int] | None = None
    teacher_scale: float = 1.0
    init_scale: float = 1.0
    teacher_snr: float | None = None
    seed: int = 0
    device: "str | torch.device | None" = "auto"
    dtype: torch.dtype = torch.float64
    blowup_norm: float = 1e6
    check_every: int = 100
    weights: list = field(init=False)

    def __post_init__(self):
        check_positive("noise_std", self.noise_std, allow_zero=True)
        self.dims = [int(d) for d in self.dims]
        if len(self.dims) < 3 or min(self.dims) < 1:
            raise InputError(f"dims must list >= 3 positive widths [d_in, hidden..., d_out], got {self.dims}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.activation == "poly" and not self.beta >= 1.0:
            raise InputError(f"poly activation needs beta >= 1 (differentiable at 0), got {self.beta}")
        if int(self.batch) < 1:
            raise InputError(f"batch must be >= 1, got batch={self.batch}")
        if self.inputs not in ("gaussian", "sphere", "digits"):
            raise InputError(f"inputs must be 'gaussian', 'sphere' or 'digits', got {self.inputs!r}")
        self.init_ensemble()
        self._data = None
        if self.inputs == "digits":
            X = load_digits_inputs()
            if self.dims[0] != X.shape[1]:
                raise InputError(f"digits inputs have {X.shape[1]} features; set dims[0] = {X.shape[1]}, got {self.dims[0]}")
            self._data = torch.as_tensor(X, dtype=self.dtype, device=self.device)
        tdims = list(self.dims if self.teacher_dims is None else [int(d) for d in self.teacher_dims])
        if tdims[0] != self.dims[0] or tdims[-1] != self.dims[-1]:
            raise InputError(f"teacher dims {tdims} must share d_in and d_out with the student {self.dims}")
        self.teacher = [self.randn(1, o, i) * (self.teacher_scale / np.sqrt(i)) for i, o in zip(tdims[:-1], tdims[1:])]
        if self.teacher_snr is not None:
            check_positive("teacher_snr", self.teacher_snr)
            check_positive("noise_std", self.noise_std)
            self.teacher = self._normalised_teacher(self.teacher, float(self.teacher_snr))
        self.weights = [self.randn(self.n_runs, o, i) * (self.init_scale / np.sqrt(i))
                        for i, o in zip(self.dims[:-1], self.dims[1:])]

    @property
    def depth(self) -> int:
        return len(self.dims) - 1

    @property
    def model_name(self) -> str:
        return f"{self.activation} net"

    # ----------------------------------------------------------------- data, gradients
    def sample(self, batch: int | None = None):
        """Fresh inputs ``x`` (R,B,d_in) and noisy teacher labels ``y`` (R,B,d_out)."""
        B = self.batch if batch is None else int(batch)
        if self._data is None:
            x = self.randn(self.n_runs, B, self.dims[0])
            if self.inputs == "sphere":  # |x|^2 = d_in exactly: no outlier steps past stability
                x = x * (self.dims[0] ** 0.5 / x.norm(dim=-1, keepdim=True))
        else:
            x = self._data[self.randint(self._data.shape[0], (self.n_runs, B))]
        y = mlp_forward(self.teacher, x, self.activation, self.beta)
        if self.noise_std:
            y = y + self.noise_std * self.randn(*y.shape)
        return x, y

    def forward(self, x: torch.Tensor, weights=None) -> torch.Tensor:
        return mlp_forward(self.weights if weights is None else weights, x, self.activation, self.beta)

    def gradients(self, x, y, weights=None):
        """Per-run minibatch loss ``l_B`` (R,) and gradients ``g_B`` [(R,out,in)] (no decay), by
        autograd of the summed per-run losses (the runs share no parameter)."""
        ws = [w.detach().requires_grad_(True) for w in (self.weights if weights is None else weights)]
        loss = (self.forward(x, ws) - y).pow(2).sum(-1).mean(-1)  # (R,)
        grads = torch.autograd.grad(loss.sum(), ws)  # runs share no parameter: per-run grads
        return loss.detach(), [g.detach() for g in grads]

    def per_sample_grads(self, x, y):
        """Per-sample gradients ``grad l(x_b)`` [(R,B,out,in)] via ``torch.func`` (vmap over runs and samples)."""
        from torch.func import grad, vmap

        act, beta = self.activation, self.beta

        def l_one(ws, xb, yb):  # one run, one sample
            out = mlp_forward([w.unsqueeze(0) for w in ws], xb.view(1, 1, -1), act, beta).view(-1)
            return (out - yb).pow(2).sum()

        per_sample = vmap(grad(l_one), in_dims=(None, 0, 0))  # over samples
        per_run = vmap(per_sample, in_dims=(0, 0, 0))  # over runs
        return list(per_run(tuple(self.weights), x, y))

    def record(self, batch, loss, grads) -> dict:
        """The per-step observables at the pre-step weights, for the step's gradient.

        Keys: ``loss`` (R,), ``gsq``/``wsq`` (R,D): ``|g_{B,i}|^2``, ``|W_i|^2``; for hidden
        layer i: ``gram_in_i``/``gram_out_i`` (R,h,h) gradient Grams, ``wgram_in_i``/
        ``wgram_out_i`` the weight Grams ``W_i W_i^T`` and ``W_{i+1}^T W_{i+1}``.
        """
        obs = {"loss": loss,
               "gsq": torch.stack([g.pow(2).sum((-1, -2)) for g in grads], -1),
               "wsq": torch.stack([W.pow(2).sum((-1, -2)) for W in self.weights], -1)}
        for i in range(1, self.depth):  # hidden layer i sits between W_i and W_{i+1}
            g_in, g_out = grads[i - 1], grads[i]
            W_in, W_out = self.weights[i - 1], self.weights[i]
            obs[f"gram_in_{i}"] = g_in @ g_in.transpose(-1, -2)
            obs[f"gram_out_{i}"] = g_out.transpose(-1, -2) @ g_out
            obs[f"wgram_in_{i}"] = W_in @ W_in.transpose(-1, -2)
            obs[f"wgram_out_{i}"] = W_out.transpose(-1, -2) @ W_out
        return obs

    # ------------------------------------------------------------------------ utilities
    def _degree(self, depth: int) -> float:
        """Homogeneity degree of ``f`` in a common scale of all its layers: ``sum_k beta^k``."""
        b = self.beta if self.activation == "poly" else 1.0
        return float(sum(b**k for k in range(depth)))

    def _normalised_teacher(self, teacher: list, snr: float) -> list:
        """``teacher`` with every layer scaled by one factor so that ``E|f_T|^2 = snr d_out noise^2``,
        the power measured on 8192 inputs from a generator of its own (the runs' stream is untouched)."""
        gen = torch.Generator(device=self.device).manual_seed(int(self.seed) + 1)
        if self._data is None:
            x = torch.randn(1, 8192, self.dims[0], generator=gen, device=self.device, dtype=self.dtype)
            if self.inputs == "sphere":
                x = x * (self.dims[0] ** 0.5 / x.norm(dim=-1, keepdim=True))
        else:
            x = self._data[torch.randint(0, self._data.shape[0], (1, 8192), generator=gen, device=self.device)]
        power = float(mlp_forward(teacher, x, self.activation, self.beta).pow(2).sum(-1).mean())
        if not power > 0:
            raise InputError("the teacher's output is identically zero: no signal to normalise")
        a = (snr * self.dims[-1] * self.noise_std**2 / power) ** (1.0 / (2.0 * self._degree(len(teacher))))
        return [W * a for W in teacher]

    def balanced_teacher(self) -> list:
        """The teacher moved along its layer-rescaling orbit to equal layer norms (the same function
        for linear and ReLU nets; the weight-balanced point the eta -> 0 law selects). A ``poly``
        net's orbit rescales by ``beta`` powers: its teacher is returned as drawn."""
        if self.activation == "poly":
            return [W.clone() for W in self.teacher]
        norms = torch.stack([W.norm() for W in self.teacher])
        mean = norms.log().mean().exp()
        return [W * (mean / n) for W, n in zip(self.teacher, norms)]

    def stability_limit(self, n_samples: int = 512) -> float:
        """Gradient descent's stability limit ``2 / lambda_max(E[H])`` of the loss at the balanced
        teacher (:meth:`balanced_teacher`, where the runs settle), ``E`` over ``n_samples`` noisy
        samples drawn from a generator of its own. Batch-1 SGD needs a margin below it."""
        from torch.func import hessian, vmap

        from .sharpness import gd_stability_limit

        T = [W[0] for W in self.balanced_teacher()]
        shapes, sizes = [W.shape for W in T], [W.numel() for W in T]
        gen = torch.Generator(device=self.device).manual_seed(int(self.seed) + 2)
        x = torch.randn(int(n_samples), self.dims[0], generator=gen, device=self.device, dtype=self.dtype)
        if self.inputs == "sphere":
            x = x * (self.dims[0] ** 0.5 / x.norm(dim=-1, keepdim=True))
        elif self._data is not None:
            x = self._data[torch.randint(0, self._data.shape[0], (int(n_samples),), generator=gen, device=self.device)]
        y = mlp_forward([W[None] for W in T], x[None], self.activation, self.beta)[0]
        y = y + self.noise_std * torch.randn(y.shape, generator=gen, device=self.device, dtype=self.dtype)
        act, beta = self.activation, self.beta

        def loss(p, xb, yb):
            ws = [c.reshape(sh)[None] for c, sh in zip(torch.split(p, sizes), shapes)]
            return (mlp_forward(ws, xb[None, None], act, beta)[0, 0] - yb).pow(2).sum()

        p = torch.cat([W.reshape(-1) for W in T])
        return gd_stability_limit(vmap(hessian(loss), in_dims=(None, 0, 0))(p, x, y).mean(0))

    def population_loss(self, n_samples: int = 4096) -> torch.Tensor:
        """Monte-Carlo ``E l`` per run on ``n_samples`` fresh samples (R,)."""
        with torch.no_grad():
            x, y = self.sample(n_samples)
            return (self.forward(x) - y).pow(2).sum(-1).mean(-1)

    def rescale_layers(self, factors: Sequence[float]):
        """Multiply layer i by ``factors[i]`` (an imbalanced start on the same symmetry orbit
        when the product of the factors, weighted by the homogeneity degrees, is 1)."""
        if len(factors) != self.depth:
            raise InputError(f"need {self.depth} factors, got {len(factors)}")
        self.weights = [W * float(c) for W, c in zip(self.weights, factors)]
