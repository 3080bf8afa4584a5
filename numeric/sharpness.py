"""Total sharpness ``Tr hess L`` of trained nets, measured with torch.func.

* ``hessian_trace`` - exact: the full Hessian of a scalar function of a flat parameter
  vector (``torch.func.hessian``), vmapped over an ensemble. For small nets.
  ``hessian_diagonal`` - the diagonal itself (per-parameter curvatures).
* ``hutchinson_trace`` - ``E[v^T H v]`` over Rademacher probes v, with Hessian-vector
  products by reverse-over-reverse (``torch.func.vjp`` of ``torch.func.grad``; forward-over-
  reverse ``jvp`` of ``grad`` hits PyTorch's "ZeroTensors are immutable" bug for mean-reduced
  ``F.mse_loss``); returns the mean and its CLT
  standard error ``std / sqrt(n_probes)``. For large nets.
* ``two_layer_population_loss`` - ``L(U, W) = Tr((UW - V) Sx (UW - V)^T) + Tr Se`` in closed
  form (the population loss of the online-Gaussian model), batched over leading dims;
  ``two_layer_flat_loss`` - the same as a function of one flat parameter vector.
* ``two_layer_sharpness_formula`` - ``Tr hess L = 2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|_F^2``
  (symbolic.two_layer.derive_total_sharpness), ``two_layer_sharpness_exact`` - the same by
  torch.func. The one home of these formulas in numeric/.
* ``gd_stability_limit``, ``sgd_stability_limit``, ``capped_learning_rate`` - the stability
  limits of a learning rate (gradient descent's ``2 / lambda_max``; batch-B SGD's mean-square
  one) and the one cap that keeps a learning rate a margin below a limit.

>>> import torch
>>> f = lambda th: (th ** 2).sum() + th[0] * th[1]   # Hessian [[2,1],[1,2]]: trace 4
>>> round(float(hessian_trace(f, torch.zeros(2, dtype=torch.float64))), 12)
4.0
>>> g = torch.Generator().manual_seed(0)
>>> est, se = hutchinson_trace(f, torch.zeros(2, dtype=torch.float64), n_probes=64, generator=g)
>>> abs(float(est) - 4.0) <= 6 * float(se) + 1e-12
True
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch.func import grad, hessian, vjp, vmap

from core.errors import InputError


def flatten(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors of shape (R, ...) into (R, P) (or (...) into (P,) without R)."""
    return torch.cat([p.reshape(p.shape[0], -1) if p.dim() > 2 else p.reshape(-1) for p in params], dim=-1)


def unflatten(theta: torch.Tensor, shapes: Sequence[tuple]) -> list:
    """Inverse of ``flatten`` for one net: a flat (P,) vector into tensors of ``shapes``."""
    need = sum(math.prod(s) for s in shapes)
    if need != theta.shape[-1]:
        raise InputError(f"flat parameter vector has {theta.shape[-1]} entries, shapes need {need}")
    out, k = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(theta[k:k + n].reshape(s))
        k += n
    return out


def hessian_diagonal(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    """Diagonal of the exact ``hess loss`` at ``theta`` (P,)."""
    return torch.diagonal(hessian(loss)(theta))


def hessian_trace(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, batched: bool = False) -> torch.Tensor:
    """Exact ``Tr hess loss`` at ``theta`` (P,), or at each row of (R, P) with ``batched``."""
    tr = lambda th: hessian_diagonal(loss, th).sum()  # noqa: E731
    return vmap(tr)(theta) if batched else tr(theta)


def hutchinson_trace(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, n_probes: int = 100,
                     generator: torch.Generator | None = None):
    """Hutchinson estimate of ``Tr hess loss`` at ``theta`` (P,): ``(mean, standard error)``.

    Rademacher probes give the smallest variance among i.i.d. probes:
    ``Var(v^T H v) = 2 sum_{i != j} H_ij^2``. ``H v`` is the vjp of ``grad(loss)`` at ``theta``
    (H symmetric), i.e. reverse-over-reverse, which also works for ``F.mse_loss`` (mean).
    """
    if n_probes < 2:
        raise InputError(f"n_probes must be >= 2 for an error bar, got {n_probes}")
    v = torch.randint(0, 2, (n_probes, theta.shape[-1]), generator=generator, device=theta.device).to(theta.dtype) * 2 - 1
    _, hvp = vjp(grad(loss), theta)

    def quad(vec):
        return (hvp(vec)[0] * vec).sum()

    q = vmap(quad)(v)
    return q.mean(), q.std() / math.sqrt(n_probes)


def two_layer_population_loss(U: torch.Tensor, W: torch.Tensor, V, Sx, Se) -> torch.Tensor:
    """``Tr((UW - V) Sx (UW - V)^T) + Tr Se`` (leading batch dims allowed on U, W).

    >>> I = torch.eye(2, dtype=torch.float64)
    >>> float(two_layer_population_loss(I, I, I, I, 0.5 * I))
    1.0
    """
    V, Sx, Se = (torch.as_tensor(z, dtype=U.dtype, device=U.device) for z in (V, Sx, Se))
    D = U @ W - V
    return ((D @ Sx) * D).sum(dim=(-1, -2)) + torch.diagonal(Se).sum()


def two_layer_flat_loss(shapes: Sequence[tuple], V, Sx, Se) -> Callable[[torch.Tensor], torch.Tensor]:
    """The population loss as a function of one flat ``[U, W]`` vector (``shapes`` of U, W).

    >>> I = torch.eye(2, dtype=torch.float64)
    >>> float(two_layer_flat_loss([(2, 2), (2, 2)], I, I, 0.5 * I)(flatten([I, I])))
    1.0
    """

    def L(theta):
        u, w = unflatten(theta, shapes)
        return two_layer_population_loss(u, w, V, Sx, Se)

    return L


def two_layer_sharpness_exact(U: torch.Tensor, W: torch.Tensor, V, Sx, Se) -> torch.Tensor:
    """Exact ``Tr hess L`` of the two-layer population loss for each run: U (R,dy,h), W (R,h,dx)."""
    L = two_layer_flat_loss([tuple(U.shape[1:]), tuple(W.shape[1:])], V, Sx, Se)
    return hessian_trace(L, flatten([U, W]), batched=True)


def two_layer_sharpness_formula(U: torch.Tensor, W: torch.Tensor, Sx) -> torch.Tensor:
    """``2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|_F^2`` (symbolic.two_layer.derive_total_sharpness)."""
    Sx = torch.as_tensor(Sx, dtype=W.dtype, device=W.device)
    dy = U.shape[-2]
    return 2 * dy * ((W @ Sx) * W).sum(dim=(-1, -2)) + 2 * torch.diagonal(Sx).sum() * U.pow(2).sum(dim=(-1, -2))


# ----------------------------------------------------------------- learning-rate stability limits
def gd_stability_limit(hessian: torch.Tensor) -> float:
    """Gradient descent's stability limit ``2 / lambda_max`` of a mean Hessian (P, P) (its
    symmetric part); ``inf`` where no direction is curved upwards.

    >>> gd_stability_limit(torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)))
    0.5
    """
    H = torch.as_tensor(hessian)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise InputError(f"a Hessian must be a square matrix, got shape {tuple(H.shape)}")
    lam = float(torch.linalg.eigvalsh((H + H.T) / 2).max())
    return 2.0 / lam if lam > 0 else math.inf


def sgd_stability_limit(hessians: torch.Tensor, batch: int = 1) -> float:
    r"""The mean-square stability limit of batch-``batch`` SGD linearised at a point, from
    per-sample Hessians (n, P, P): one step multiplies a deviation by ``I - eta H_B``, and its
    second moment contracts along a direction of curvature ``h`` iff ``E[(1 - eta h)^2] < 1``,
    i.e. ``eta < 2 E[h] / E[h^2]``. Here ``E[h] -> lambda_max(E H)`` and ``E[h^2] ->
    lambda_max(E[H_B^2])``, ``E[H_B^2] = E[H^2] / B + (1 - 1/B) (E H)^2``: exact when the
    per-sample Hessians commute (least squares on isotropic Gaussian inputs in d dimensions:
    ``1 / (d + 2)`` of gradient descent's limit, see the doctest), an estimate
    otherwise. Never above gradient descent's limit (:func:`gd_stability_limit`, the
    ``B -> inf`` case).

    >>> x = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> Hs = 2 * x[:, :, None] * x[:, None, :]           # l = (w . x - y)^2: H = 2 x x^T, E H = 2 I
    >>> round(gd_stability_limit(Hs.mean(0)), 2), round(sgd_stability_limit(Hs), 2)   # 1 and 1 / (d + 2)
    (1.0, 0.2)
    """
    Hs = torch.as_tensor(hessians)
    if Hs.ndim != 3 or Hs.shape[1] != Hs.shape[2] or Hs.shape[0] < 2:
        raise InputError(f"per-sample Hessians must have shape (n >= 2, P, P), got {tuple(Hs.shape)}")
    if int(batch) != batch or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    Hs = (Hs + Hs.transpose(1, 2)) / 2
    H = Hs.mean(0)
    lam = float(torch.linalg.eigvalsh(H).max())
    if lam <= 0:
        return math.inf
    second = torch.einsum("nij,njk->ik", Hs, Hs) / Hs.shape[0] / batch + (1 - 1 / batch) * H @ H
    return min(gd_stability_limit(H), 2.0 * lam / float(torch.linalg.eigvalsh((second + second.T) / 2).max()))


def capped_learning_rate(eta: float, limit: float, margin: float) -> float:
    """``min(eta, limit / margin)``: a learning rate kept ``margin`` times below a stability limit
    (a curvature that varies by orders of magnitude with the seed would otherwise put a fixed
    ``eta`` past it, and the run diverges).

    >>> capped_learning_rate(0.05, 0.1, 4.0), capped_learning_rate(0.01, 0.1, 4.0)
    (0.025, 0.01)
    """
    if not margin >= 1:
        raise InputError(f"a stability margin must be at least 1, got {margin!r}")
    if not (eta > 0 and limit > 0):
        raise InputError(f"the learning rate and the stability limit must be positive, got {eta!r}, {limit!r}")
    return min(float(eta), limit / margin)
