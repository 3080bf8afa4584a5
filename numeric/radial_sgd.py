"""Preconditioned SGD on the rotation-invariant radial model: a scalar learning rate keeps the
rotation symmetry, a matrix one breaks it.

>>> import numpy as np
>>> th0, th = radial_sgd(0.02 * np.eye(2), steps=50, n_runs=4, seed=0, device="cpu")
>>> u0, u = th0 / th0.norm(dim=-1, keepdim=True), th / th.norm(dim=-1, keepdim=True)
>>> bool((u0[:, 0] * u[:, 1] - u0[:, 1] * u[:, 0]).abs().max() < 1e-12)
True
"""

from __future__ import annotations

import math

import torch

from core.errors import InputError
from core.validation import as_numpy, check_spd

from .device import resolve_device
from .float64 import check_finite


def radial_sgd(Lam, *, steps: int, n_runs: int, noise: float = 0.5, batch: int = 1, seed: int = 0,
               device="auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Preconditioned SGD ``theta <- theta - Lam g`` on the rotation-invariant radial model
    ``l = (|theta|^2 x - y)^2``, ``y = x + noise * e`` (2-d theta, scalar x). ``Lam`` is a
    symmetric positive-definite 2x2 matrix (``eta * I`` is plain SGD). Every run starts at
    ``|theta| = 1`` with a uniformly spread angle. Returns ``(theta_0, theta_T)``, (R, 2).

    Since ``g = 4 r x theta`` is radial, a scalar learning rate never changes the direction;
    a matrix one does, and the entropic term ``(1/4) E g^T Lam g = 4 E[r^2 x^2] theta^T Lam theta``
    pulls it towards Lam's smallest-eigenvalue direction.
    """
    dev = resolve_device(device)
    L = torch.as_tensor(check_spd("Lam", as_numpy("Lam", Lam, 2)), dtype=torch.float64, device=dev)
    if L.shape != (2, 2):
        raise InputError(f"Lam must be 2x2, got {tuple(L.shape)}")
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    ang = (torch.arange(n_runs, dtype=torch.float64, device=dev) + 0.5) * (math.pi / n_runs)  # half circle
    th = torch.stack([torch.cos(ang), torch.sin(ang)], -1)
    th0 = th.clone()
    for _ in range(int(steps)):
        x = torch.randn(n_runs, batch, generator=gen, dtype=torch.float64, device=dev)
        y = x + noise * torch.randn(n_runs, batch, generator=gen, dtype=torch.float64, device=dev)
        r = th.pow(2).sum(-1, keepdim=True) * x - y  # (R,B)
        g = (4.0 * (r * x).mean(-1, keepdim=True)) * th  # (R,2) minibatch-mean gradient
        th = th - g @ L.T
    check_finite("theta", th, steps)
    return th0, th
