"""Ensemble SGD for (embedded) deep linear networks on online Gaussian data.

Many independent SGD runs advance together as one tensor program: every weight has a
leading ensemble dimension ``R`` and every product is a batched matmul, so the same code
runs on the GPU when there is one and on the CPU otherwise.

Model (docs/theory.md §6-7):  ``f(x) = M_O W_D ... W_1 M_I Z x``, target ``y = V x + e`` with
``x ~ N(0, Sx)`` and ``e ~ N(0, Se)`` drawn fresh every step (online SGD), per-sample loss
``l = |f(x) - y|^2`` and weight decay ``gam |theta|^2``. One SGD step with batch size B is

    W_i <- W_i - eta * ( (1/B) sum_b grad_{W_i} l(x_b, y_b) + 2 gam W_i ).

``Z`` (a view of the input), ``M_I`` and ``M_O`` (fixed embeddings) default to identity.

>>> import numpy as np
>>> teacher = LinearTeacher(V=np.eye(2), Sx=np.eye(2), Se=0.1 * np.eye(2))
>>> ens = LinearEnsemble(teacher, hidden=[3], n_runs=4, eta=0.01, seed=0, device="cpu")
>>> [tuple(w.shape) for w in ens.weights]
[(4, 3, 2), (4, 2, 3)]
>>> ens.run(10)
>>> ens.step_count
10
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.linalg
import torch

from .ensemble import EnsembleSGD
from core.errors import InputError
from core.validation import as_numpy, check_invertible, check_spd, check_width


@dataclass(frozen=True)
class LinearTeacher:
    """The data model ``y = V x + e``; ``x ~ N(0, Sx)``, ``e ~ N(0, Se)``, independent."""

    V: np.ndarray
    Sx: np.ndarray
    Se: np.ndarray

    def __post_init__(self):
        V = as_numpy("V", self.V, ndim=2)
        Sx = check_spd("Sx", self.Sx)
        Se = check_spd("Se", self.Se)
        if Sx.shape[0] != V.shape[1]:
            raise InputError(f"Sx is {Sx.shape} but V has {V.shape[1]} input columns")
        if Se.shape[0] != V.shape[0]:
            raise InputError(f"Se is {Se.shape} but V has {V.shape[0]} output rows")
        object.__setattr__(self, "V", V)
        object.__setattr__(self, "Sx", Sx)
        object.__setattr__(self, "Se", Se)

    @property
    def dx(self) -> int:
        return self.V.shape[1]

    @property
    def dy(self) -> int:
        return self.V.shape[0]

    @property
    def rank(self) -> int:
        return int(np.linalg.matrix_rank(self.V))


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    return np.real(scipy.linalg.sqrtm((a + a.T) / 2))


@dataclass
class LinearEnsemble(EnsembleSGD):
    """``n_runs`` independent SGD runs of a deep linear network, advanced together.

    Seeding, ``run``, divergence tracking and ``load_weights`` are
    :class:`~numeric.ensemble.EnsembleSGD`'s. The step is this model's own: the gradient of
    a linear net is a closed form (back-propagated residuals times activations), applied
    with the update as one fused in-place batched matmul per layer - the speed the
    theorems' long runs need, which a generic ``vmap(grad)`` step does not reach.

    ``hidden`` lists the hidden widths (``[h]`` is the two-layer net ``U W``); ``Z`` maps
    the teacher's input to the net's input view, ``M_I`` embeds that view before ``W_1``,
    ``M_O`` embeds the last layer's output into label space. ``weights[i]`` has shape
    ``(n_runs, out_i, in_i)``. ``init_scale`` is the std of each weight entry times
    ``sqrt(fan_in)``. Blow-ups (NaN or ``|theta| > blowup_norm``) are recorded every
    ``track_every`` steps (1: the exact first step; k > 1 is cheaper and names the first
    checked step) and raised as DivergenceError every ``check_every`` steps and at the end of
    ``run``.
    """

    teacher: LinearTeacher
    hidden: Sequence[int]
    n_runs: int
    eta: float
    batch: int = 1
    weight_decay: float = 0.0
    Z: np.ndarray | None = None
    M_I: np.ndarray | None = None
    M_O: np.ndarray | None = None
    device: "str | torch.device | None" = "auto"
    dtype: torch.dtype = torch.float64
    seed: int = 0
    init_scale: float = 1.0
    check_every: int = 200
    track_every: int = 1  # record blow-ups every k steps (k > 1: cheaper, step known to within k)
    blowup_norm: float = 1e8
    weights: list = field(init=False)
    step_count: int = field(init=False, default=0)
    model_name = "linear network"

    def __post_init__(self):
        if int(self.batch) < 1:
            raise InputError(f"batch size must be >= 1, got {self.batch}")
        self.init_ensemble()  # device, eta, weight decay, run counts; seeds the generator
        self.hidden = [int(h) for h in self.hidden]
        if not self.hidden or min(self.hidden) < 1:
            raise InputError(f"hidden widths must be a non-empty list of positive ints, got {self.hidden}")
        t = self.teacher
        for i, h in enumerate(self.hidden):
            check_width(f"hidden width {i + 1}", h, t.rank)
        Z = np.eye(t.dx) if self.Z is None else check_invertible("Z", self.Z)
        if Z.shape[1] != t.dx:
            raise InputError(f"Z must have {t.dx} columns, got shape {Z.shape}")
        M_I = np.eye(Z.shape[0]) if self.M_I is None else check_invertible("M_I", self.M_I)
        if M_I.shape[1] != Z.shape[0]:
            raise InputError(f"M_I must have {Z.shape[0]} columns, got shape {M_I.shape}")
        M_O = np.eye(t.dy) if self.M_O is None else check_invertible("M_O", self.M_O)
        if M_O.shape[0] != t.dy:
            raise InputError(f"M_O must have {t.dy} rows, got shape {M_O.shape}")
        self.dims = [M_I.shape[0], *self.hidden, M_O.shape[1]]
        as_t = lambda a: torch.as_tensor(a, dtype=self.dtype, device=self.device)  # noqa: E731
        # The net sees u = M_I Z x; draw x = Sx^{1/2} xi and fold every fixed map into one.
        self._in_map = as_t(M_I @ Z @ _sqrtm_psd(t.Sx))  # u = in_map @ xi
        self._V_map = as_t(t.V @ _sqrtm_psd(t.Sx))  # y - e = V_map @ xi
        self._e_map = as_t(_sqrtm_psd(t.Se))
        self._M_O = as_t(M_O)
        self._out_identity = bool(np.array_equal(M_O, np.eye(M_O.shape[0])))  # skip the M_O matmuls
        self.weights = [
            torch.randn(self.n_runs, o, i, generator=self._gen, device=self.device, dtype=self.dtype)
            * (self.init_scale / np.sqrt(i))
            for i, o in zip(self.dims[:-1], self.dims[1:])
        ]

    # ----------------------------------------------------------------------------- data
    def sample(self, batch: int | None = None):
        """Fresh data for every run: net input ``u`` (R,B,d0) and label ``y`` (R,B,dy)."""
        B = self.batch if batch is None else int(batch)
        t = self.teacher
        xi = torch.randn(self.n_runs, B, t.dx, generator=self._gen, device=self.device, dtype=self.dtype)
        zeta = torch.randn(self.n_runs, B, t.dy, generator=self._gen, device=self.device, dtype=self.dtype)
        u = xi @ self._in_map.T
        y = xi @ self._V_map.T + zeta @ self._e_map.T
        return u, y

    # -------------------------------------------------------------------- forward/back
    def forward(self, u: torch.Tensor):
        """Hidden activations ``[u, h_1, ..., h_D]`` and the output ``M_O h_D``."""
        hs = [u]
        for W in self.weights:
            hs.append(hs[-1] @ W.transpose(-1, -2))
        return hs, (hs[-1] if self._out_identity else hs[-1] @ self._M_O.T)

    def backward(self, hs, out, y):
        """Per-sample back-propagated residuals ``delta_i = d l / d h_i / 2`` (R,B,h_i)."""
        delta = out - y
        if not self._out_identity:
            delta = delta @ self._M_O  # d(|f-y|^2)/d h_D = 2 M_O^T (f - y); keep the 1/2
        deltas = [delta]
        for W in reversed(self.weights[1:]):
            delta = delta @ W
            deltas.append(delta)
        return deltas[::-1]

    def batch_gradients(self, u, y):
        """Minibatch-mean gradients of ``l`` (no weight decay), one (R,out,in) per layer."""
        hs, out = self.forward(u)
        deltas = self.backward(hs, out, y)
        B = u.shape[1]
        return [(2.0 / B) * d.transpose(-1, -2) @ h for d, h in zip(deltas, hs[:-1])]

    def per_sample_grad_sq(self, u, y) -> torch.Tensor:
        """``|grad_{W_i} l(x_b)|^2`` averaged over the batch: shape (R, D).

        A per-sample gradient is the outer product ``2 delta_i h_{i-1}^T``, so its squared
        Frobenius norm is ``4 |delta_i|^2 |h_{i-1}|^2`` - no per-sample backward needed.
        """
        hs, out = self.forward(u)
        deltas = self.backward(hs, out, y)
        sq = [4.0 * (d.pow(2).sum(-1) * h.pow(2).sum(-1)).mean(-1) for d, h in zip(deltas, hs[:-1])]
        return torch.stack(sq, dim=-1)

    # ---------------------------------------------------------------------------- SGD
    def step(self, record: bool = True):
        """One SGD step of every run (this model records no per-step observables)."""
        u, y = self.sample()
        hs, out = self.forward(u)
        deltas = self.backward(hs, out, y)  # every delta uses the pre-step weights
        decay = 2.0 * self.weight_decay
        B = u.shape[1]
        for W, d, h in zip(self.weights, deltas, hs[:-1]):
            # W <- W - eta (2/B) delta^T h - eta decay W, as one fused in-place batched matmul
            W.baddbmm_(d.transpose(-1, -2), h, beta=1.0 - self.eta * decay, alpha=-2.0 * self.eta / B)
        self.step_count += 1
        if self.step_count % self.track_every == 0:
            self._track_divergence()

    def _run_in_calls(self, n_steps: int, progress=None):
        """``run`` for an engine whose ``_advance(n)`` takes ``n`` steps in one call (the
        fused kernels): calls of at most ``check_every`` steps, a divergence check after each."""
        left = int(n_steps)
        while left > 0:
            n = min(left, int(self.check_every))
            self._advance(n)
            left -= n
            self.raise_if_diverged()
            if progress is not None:
                progress(n)

    # -------------------------------------------------------------------- observables
    def observables(self, u: torch.Tensor, y: torch.Tensor) -> dict:
        """The per-run observables that :meth:`run_accumulate` averages, for the current
        weights and the data ``u``, ``y`` (R,B,.), in float64:

        * ``W1tW1`` = W_1^T W_1 (R,d0,d0) and ``WDWDt`` = W_D W_D^T (R,dD,dD) (for the
          two-layer net ``U W``: W^T W and U U^T);
        * ``K1 .. K{D-1}``: hidden kernels ``(B_k G)^T (B_k G)`` (R,dx,dx), ``B_k = W_k..W_1``,
          ``G = M_I Z`` (``h_k(x)^T h_k(x') = x^T K_k x'``);
        * ``grad_sq`` (R,D): per-sample ``|grad_{W_i} l|^2`` averaged over the batch;
        * ``loss`` (R,): ``|f(x) - y|^2`` averaged over the batch;
        * ``population_loss`` (R,): ``E|f(x) - y|^2`` in closed form.
        """
        f64 = lambda t: t.to(torch.float64)
        ws = [f64(W) for W in self.weights]
        _, out = self.forward(u)
        obs = {"W1tW1": ws[0].transpose(-1, -2) @ ws[0], "WDWDt": ws[-1] @ ws[-1].transpose(-1, -2)}
        Z = np.eye(self.teacher.dx) if self.Z is None else np.asarray(self.Z, dtype=np.float64)
        M_I = np.eye(Z.shape[0]) if self.M_I is None else np.asarray(self.M_I, dtype=np.float64)
        P = ws[0] @ torch.as_tensor(M_I @ Z, dtype=torch.float64, device=ws[0].device)
        for k in range(1, len(ws)):
            obs[f"K{k}"] = P.transpose(-1, -2) @ P
            P = ws[k] @ P
        obs["grad_sq"] = f64(self.per_sample_grad_sq(u, y))
        obs["loss"] = f64((out - y).pow(2).sum(-1).mean(-1))
        obs["population_loss"] = f64(self.population_loss())
        return obs

    def run_accumulate(self, n_steps: int, sample_every: int = 1, progress=None) -> dict:
        """Advance ``n_steps`` SGD steps and return per-run averages (float64) of
        :meth:`observables` over the states after every ``sample_every`` steps
        (``n_steps // sample_every`` samples), each with a fresh minibatch from
        :meth:`sample` for the data-dependent ones (``grad_sq``, ``loss``). Computed here
        in Python; the compiled CPU engine accumulates the same averages in-kernel.

        >>> teacher = LinearTeacher(V=np.eye(2), Sx=np.eye(2), Se=0.1 * np.eye(2))
        >>> ens = LinearEnsemble(teacher, hidden=[3], n_runs=4, eta=0.01, seed=0, device="cpu")
        >>> obs = ens.run_accumulate(20, sample_every=5)
        >>> ens.step_count, tuple(obs["W1tW1"].shape), tuple(obs["grad_sq"].shape)
        (20, (4, 2, 2), (4, 2))
        """
        n, k = int(n_steps), int(sample_every)
        if k < 1:
            raise InputError(f"sample_every must be >= 1, got {sample_every}")
        if n < k:
            raise InputError(f"n_steps = {n_steps} gives no sample (sample_every = {sample_every})")
        total = None
        for _ in range(n // k):
            self.run(k, progress=progress)
            obs = self.observables(*self.sample())
            total = obs if total is None else {key: total[key] + v for key, v in obs.items()}
        if n % k:
            self.run(n % k, progress=progress)
        return {key: v / (n // k) for key, v in total.items()}

    # ---------------------------------------------------------------------- utilities
    def end_to_end(self) -> torch.Tensor:
        """The trained product ``W_D ... W_1`` for every run, shape (R, h_D, d_0)."""
        P = self.weights[0]
        for W in self.weights[1:]:
            P = W @ P
        return P

    def population_loss(self) -> torch.Tensor:
        """``L = E|f(x) - y|^2`` in closed form for every run, shape (R,).

        f(x) - y = (M_O P M_I Z - V) x - e, so L = Tr(D Sx D^T) + Tr Se with D the map error.
        """
        P = self._M_O @ self.end_to_end() @ self._in_map  # acts on xi
        D = P - self._V_map
        return D.pow(2).sum(dim=(-1, -2)) + self._e_map.pow(2).sum()
