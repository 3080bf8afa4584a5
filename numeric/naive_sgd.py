"""The naive baseline: ONE SGD run of the linear network, written the textbook way
(``nn.Linear`` layers without bias, ``torch.optim.SGD``, autograd, one step per Python
iteration). It is the denominator of every speed-up in ``python -m numeric.bench`` and a
third, independent implementation for the engine-agreement tests.

Same model, data and update as :class:`numeric.linear_ensemble.LinearEnsemble` (one run):
loss ``mean_b |M_O W_D ... W_1 u_b - y_b|^2`` and ``torch.optim.SGD(weight_decay=2 gam)``,
which is the gradient of ``gam |theta|^2``.

>>> import numpy as np
>>> from numeric.linear_ensemble import LinearTeacher
>>> net = NaiveSGD(LinearTeacher(np.eye(2), np.eye(2), 0.1 * np.eye(2)), hidden=[3], eta=0.01)
>>> net.run(20); net.step_count, [tuple(w.shape) for w in net.weights]
(20, [(1, 3, 2), (1, 2, 3)])
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .device import resolve_device
from core.errors import DivergenceError, InputError
from .linear_ensemble import LinearTeacher, _sqrtm_psd
from core.validation import check_positive, check_width


class NaiveSGD:
    """One run: ``nn.Sequential`` of bias-free ``nn.Linear`` layers trained by
    ``torch.optim.SGD`` on fresh Gaussian data every step.

    ``gradient="exact"`` trains on the quadrature batch ``xi_b = sqrt(dx) e_b`` without label
    noise, i.e. full-batch GD on the population loss (see numeric.fused_linear).
    """

    def __init__(self, teacher: LinearTeacher, hidden: Sequence[int], eta: float, *, batch: int = 1,
                 weight_decay: float = 0.0, device="cpu", dtype=torch.float64, seed: int = 0,
                 gradient: str = "sgd", init_scale: float = 1.0):
        self.teacher = teacher
        self.eta = check_positive("eta", eta)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        if int(batch) < 1:
            raise InputError(f"batch size must be >= 1, got {batch}")
        if gradient not in ("sgd", "exact"):
            raise InputError(f"gradient must be 'sgd' or 'exact', got {gradient!r}")
        self.batch, self.gradient = int(batch), gradient
        self.hidden = [check_width(f"hidden width {i + 1}", h, teacher.rank) for i, h in enumerate(hidden)]
        if not self.hidden:
            raise InputError("hidden widths must be a non-empty list of positive ints")
        self.device, self.dtype = resolve_device(device), dtype
        self.dims = [teacher.dx, *self.hidden, teacher.dy]
        self._gen = torch.Generator(device=self.device).manual_seed(int(seed))
        layers = [nn.Linear(i, o, bias=False) for i, o in zip(self.dims[:-1], self.dims[1:])]
        self.net = nn.Sequential(*layers).to(device=self.device, dtype=dtype)
        with torch.no_grad():
            for layer, fan_in in zip(layers, self.dims[:-1]):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=self._gen, device=self.device,
                                               dtype=dtype) * (init_scale / math.sqrt(fan_in)))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=self.eta, weight_decay=2.0 * self.weight_decay)
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)  # noqa: E731
        self._sx_half = as_t(_sqrtm_psd(teacher.Sx))
        self._se_half = as_t(_sqrtm_psd(teacher.Se))
        self._V = as_t(teacher.V)
        self.step_count = 0

    @property
    def weights(self) -> list:
        """Detached weights shaped like an ensemble of one: (1, out_i, in_i)."""
        return [layer.weight.detach()[None] for layer in self.net]

    def load_weights(self, weights) -> None:
        with torch.no_grad():
            for layer, W in zip(self.net, weights):
                W = torch.as_tensor(W, dtype=self.dtype, device=self.device)
                layer.weight.copy_(W.reshape(layer.weight.shape))

    def _data(self):
        t = self.teacher
        if self.gradient == "exact":
            x = math.sqrt(t.dx) * torch.eye(t.dx, dtype=self.dtype, device=self.device) @ self._sx_half.T
            return x, x @ self._V.T
        x = torch.randn(self.batch, t.dx, generator=self._gen, device=self.device, dtype=self.dtype) @ self._sx_half.T
        e = torch.randn(self.batch, t.dy, generator=self._gen, device=self.device, dtype=self.dtype) @ self._se_half.T
        return x, x @ self._V.T + e

    def step(self) -> None:
        x, y = self._data()
        self.opt.zero_grad(set_to_none=True)
        loss = (self.net(x) - y).pow(2).sum(-1).mean()
        loss.backward()
        self.opt.step()
        self.step_count += 1

    def run(self, n_steps: int, progress=None) -> None:
        """``n_steps`` SGD steps; DivergenceError when the weights blow up or turn NaN."""
        for _ in range(int(n_steps)):
            self.step()
            if progress is not None:
                progress(1)
        norm = float(sum(w.pow(2).sum() for w in self.weights))
        if not math.isfinite(norm) or norm > 1e16:
            raise DivergenceError(
                f"naive SGD diverged by step {self.step_count} (|theta|^2 = {norm:.3g}); eta = {self.eta:g} "
                "is past the stability limit", runs=[0], steps=[self.step_count])
