"""Numeric witnesses for the symmetry results: orbits, sharpness along orbits, SGD balance.

Everything is float64 and batched over ``R`` independent runs (leading dimension), so the
same code runs on the GPU when there is one (``device="auto"``) and on the CPU otherwise.

Models
------
* :class:`TwoLayerLinear` - ``f(x) = U W x`` on teacher data ``y = V x + e`` (online
  Gaussian data). Its exponential symmetries are the neuron rescalings
  ``W_k. -> e^{lam d_k} W_k.``, ``U_.k -> e^{-lam d_k} U_.k`` (generator ``A = diag`` with
  ``+d_k`` on row k of W and ``-d_k`` on column k of U; layer rescaling is ``d = 1``).
* :class:`NormalisedLinear` - ``f(x) = theta^T x / |theta|``: scale invariant (A = I).
* :class:`TwoLayerTanh` - ``f(x) = a^T tanh(W x)``: the hidden-neuron permutations and sign
  flips are discrete orthogonal symmetries.

>>> net = TwoLayerLinear(dx=3, dy=2, hidden=3, n_runs=4, eta=0.01, seed=0, device="cpu")
>>> d = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
>>> rec = net.run(20, d)
>>> sorted(rec)
['cross', 'gAg', 'step_residual', 'step_scale', 'tAt']
>>> bool(rec["step_residual"].abs().max() <= 1e-12)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import grad, hessian, vmap

from .device import resolve_device
from core.errors import DivergenceError, InputError
from core.validation import as_numpy, check_positive, check_spd

EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16, unit round-off u = EPS64 / 2


def _check_finite(name: str, t: torch.Tensor, step: int):
    if not bool(torch.isfinite(t).all()):
        raise DivergenceError(f"{name} became NaN/inf at step {step}: eta is past the stability limit")


# ======================================================================= two-layer linear net
@dataclass
class TwoLayerLinear:
    """``R`` SGD runs of ``f = U W x`` (or ``U relu(W x)``; U: dy x h, W: h x dx) on ``y = V x + e``.

    ``Sx``/``Se`` default to ``sx_scale * I`` / ``se_scale * I``; ``V`` to a seeded random
    matrix. One step: ``theta <- theta - eta (g_B + 2 gam theta)``, ``g_B`` the minibatch
    mean gradient of ``l = |U W x - y|^2``.
    """

    dx: int
    dy: int
    hidden: int
    n_runs: int
    eta: float
    gamma: float = 0.0
    batch: int = 1
    sx_scale: float = 1.0
    se_scale: float = 0.25
    V: np.ndarray | None = None
    seed: int = 0
    init_scale: float = 1.0
    activation: str = "linear"  # or "relu": f = U relu(W x), the same neuron-rescaling symmetry
    device: "str | torch.device" = "auto"
    U: torch.Tensor = field(init=False)
    W: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.device = resolve_device(self.device)
        check_positive("eta", self.eta)
        check_positive("gamma", self.gamma, allow_zero=True)
        for name in ("dx", "dy", "hidden", "n_runs", "batch"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.activation not in ("linear", "relu"):
            raise InputError(f"activation must be 'linear' or 'relu', got {self.activation!r}")
        check_positive("sx_scale", self.sx_scale)
        check_positive("se_scale", self.se_scale)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.seed))
        rng = np.random.default_rng(self.seed)
        if self.V is None:  # a seeded direction with a fixed Frobenius norm 1.5 (well above the noise)
            V = rng.normal(size=(self.dy, self.dx))
            V = 1.5 * V / np.linalg.norm(V)
        else:
            V = as_numpy("V", self.V, 2)
        if V.shape != (self.dy, self.dx):
            raise InputError(f"V must be {self.dy}x{self.dx}, got {V.shape}")
        self.V_t = torch.as_tensor(V, device=self.device)
        R, h = self.n_runs, self.hidden
        self.W = torch.randn(R, h, self.dx, generator=self._gen, device=self.device, dtype=torch.float64) * self.init_scale / math.sqrt(self.dx)
        self.U = torch.randn(R, self.dy, h, generator=self._gen, device=self.device, dtype=torch.float64) * self.init_scale / math.sqrt(h)
        self.step_count = 0

    # -- data and gradients ------------------------------------------------------------
    def sample(self):
        R, B = self.n_runs, self.batch
        x = torch.randn(R, B, self.dx, generator=self._gen, device=self.device, dtype=torch.float64) * math.sqrt(self.sx_scale)
        e = torch.randn(R, B, self.dy, generator=self._gen, device=self.device, dtype=torch.float64) * math.sqrt(self.se_scale)
        return x, x @ self.V_t.T + e

    def grads(self, x, y):
        """Minibatch-mean gradients ``(g_U, g_W)`` of ``l = |U s(W x) - y|^2`` per run."""
        pre = x @ self.W.transpose(-1, -2)  # (R,B,h)
        hdn = pre.clamp_min(0.0) if self.activation == "relu" else pre
        r = hdn @ self.U.transpose(-1, -2) - y  # (R,B,dy)
        B = x.shape[1]
        gU = (2.0 / B) * r.transpose(-1, -2) @ hdn
        back = r @ self.U
        if self.activation == "relu":
            back = back * (pre > 0)
        gW = (2.0 / B) * back.transpose(-1, -2) @ x
        return gU, gW

    # -- the generator A of a neuron rescaling -------------------------------------------
    def _check_d(self, d) -> torch.Tensor:
        d = torch.as_tensor(d, device=self.device, dtype=torch.float64).reshape(-1)
        if d.numel() != self.hidden:
            raise InputError(f"neuron-rescaling vector d must have {self.hidden} entries, got {d.numel()}")
        if not bool(torch.isfinite(d).all()):
            raise InputError("neuron-rescaling vector d contains NaN/inf")
        return d

    @staticmethod
    def quad_A(d, U, W):
        """``theta^T A theta = sum_k d_k (|W_k.|^2 - |U_.k|^2)`` per run."""
        return (W.pow(2).sum(-1) * d).sum(-1) - (U.pow(2).sum(-2) * d).sum(-1)

    @staticmethod
    def abs_quad_A(d, U, W):
        """``theta^T |A| theta``: the scale against which round-off in quad_A is measured."""
        return (W.pow(2).sum(-1) * d.abs()).sum(-1) + (U.pow(2).sum(-2) * d.abs()).sum(-1)

    @staticmethod
    def bilinear_A(d, U1, W1, U2, W2):
        """``theta_1^T A theta_2`` per run."""
        return ((W1 * W2).sum(-1) * d).sum(-1) - ((U1 * U2).sum(-2) * d).sum(-1)

    def step(self, d=None):
        """One SGD step; with ``d`` return the pre-step ``g^T A g``, ``theta^T A theta``,
        ``g^T A theta`` and the exact one-step identity's residual (see :meth:`run`)."""
        x, y = self.sample()
        gU, gW = self.grads(x, y)
        U0, W0 = self.U, self.W
        lr, gam = self.eta, self.gamma
        self.U = U0 - lr * (gU + 2 * gam * U0)
        self.W = W0 - lr * (gW + 2 * gam * W0)
        self.step_count += 1
        if d is None:
            return None
        tAt0 = self.quad_A(d, U0, W0)
        gAg = self.quad_A(d, gU, gW)
        tAt1 = self.quad_A(d, self.U, self.W)
        # derived in symbolic.symmetry.sgd_balance_condition: the symmetry kills g^T A theta
        predicted = tAt0 + lr**2 * gAg - 4 * lr * gam * (1 - lr * gam) * tAt0
        scale = (self.abs_quad_A(d, U0, W0) + self.abs_quad_A(d, self.U, self.W)
                 + lr**2 * self.abs_quad_A(d, gU, gW))
        return {"gAg": gAg, "tAt": tAt0, "cross": self.bilinear_A(d, gU, gW, U0, W0),
                "step_residual": tAt1 - predicted, "step_scale": scale}

    def run(self, n_steps: int, d=None, progress=None):
        """Advance every run; with ``d``, return per-step records stacked to shape (T, R).

        ``step_residual`` is ``theta'^T A theta' - [theta^T A theta + eta^2 g^T A g -
        4 eta gam (1 - eta gam) theta^T A theta]``: zero in exact arithmetic.
        """
        d = None if d is None else self._check_d(d)
        recs = []
        for _ in range(int(n_steps)):
            r = self.step(d)
            if r is not None:
                recs.append(r)
            if progress is not None:
                progress(1)
        _check_finite("U", self.U, self.step_count)
        _check_finite("W", self.W, self.step_count)
        if not recs:
            return {}
        return {k: torch.stack([r[k] for r in recs]) for k in recs[0]}

    @property
    def n_params(self) -> int:
        return self.hidden * (self.dx + self.dy)


def roundoff_tolerance(n_terms: int, scale, ops: int = 4):
    """Float64 bound for a difference of sums of ``n_terms`` products.

    Higham's bound for a recursively summed dot product of length n is
    ``gamma_n = n u / (1 - n u)`` times the sum of |terms| (u = 2^-53); ``ops`` covers the
    few extra rounded operations per term (the update ``theta - eta g``, the squares, the
    final subtractions), each contributing at most ``u`` relative. Returned: ``(n_terms +
    ops) * u / (1 - (n_terms + ops) u) * scale``.
    """
    u = EPS64 / 2
    k = n_terms + ops
    return k * u / (1 - k * u) * scale


def balance_witness(eta: float, gamma: float, d, *, steps: int, burn_in: int, n_runs: int = 64,
                    seed: int = 0, device="auto", **net_kwargs) -> dict:
    """Run SGD on the two-layer linear net and measure the master balance law for the
    neuron-rescaling generator ``d``.

    Returns the per-run time averages over the window after ``burn_in`` (each run one
    independent sample: the CLT standard error is the run-to-run spread / sqrt(R)) and the
    largest per-step round-off residual of the exact one-step identity relative to its bound.
    """
    net = TwoLayerLinear(n_runs=n_runs, eta=eta, gamma=gamma, seed=seed, device=device, **net_kwargs)
    net.run(burn_in)
    rec = net.run(steps, d)
    tol = roundoff_tolerance(2 * net.n_params, rec["step_scale"])
    mg = rec["gAg"].mean(0)  # per-run time averages (R,)
    mt = rec["tAt"].mean(0)
    out = {
        "eta": eta, "gamma": gamma, "steps": steps, "burn_in": burn_in, "n_runs": n_runs,
        "gAg_runs": mg, "tAt_runs": mt,
        "step_residual_over_bound": float((rec["step_residual"].abs() / tol).max()),
        "cross_over_scale": float((rec["cross"].abs() / rec["step_scale"].clamp_min(1e-300)).max()),
    }
    return out


def ratio_with_stderr(num_runs: torch.Tensor, den_runs: torch.Tensor) -> tuple[float, float]:
    """Ratio of ensemble means ``mean(num)/mean(den)`` and its delta-method standard error
    (runs independent): ``se = sqrt(var(num - r den) / R) / |mean(den)|``."""
    R = num_runs.numel()
    n, dnm = float(num_runs.mean()), float(den_runs.mean())
    if dnm == 0.0:
        raise InputError("ratio_with_stderr: the denominator's mean is exactly zero")
    r = n / dnm
    resid = num_runs - r * den_runs
    se = float(resid.std() / math.sqrt(R)) / abs(dnm)
    return r, se


# ============================================================== orbits of the two-layer net
def population_loss(U: torch.Tensor, W: torch.Tensor, V: torch.Tensor, Sx: torch.Tensor, Se: torch.Tensor):
    """``L = E|U W x - y|^2 = Tr((UW - V) Sx (UW - V)^T) + Tr Se`` (single net)."""
    D = U @ W - V
    return torch.trace(D @ Sx @ D.T) + torch.trace(Se)


def flatten_uw(U: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    return torch.cat([W.reshape(-1), U.reshape(-1)])


def unflatten_uw(theta: torch.Tensor, dy: int, h: int, dx: int):
    return theta[dx * h:].reshape(dy, h), theta[: dx * h].reshape(h, dx)


def neuron_generator_diag(d: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Diagonal of the generator A on ``flatten_uw`` order: ``+d_k`` on W's row k, ``-d_k``
    on U's column k."""
    h = d.numel()
    aW = d.reshape(h, 1).expand(h, dx).reshape(-1)
    aU = (-d).reshape(1, h).expand(dy, h).reshape(-1)
    return torch.cat([aW, aU])


def total_sharpness(theta: torch.Tensor, loss_fn) -> torch.Tensor:
    """``Tr hess loss`` at theta (torch.func.hessian, exact up to round-off)."""
    return torch.diagonal(hessian(loss_fn)(theta)).sum()


def hessian_diagonal(theta: torch.Tensor, loss_fn) -> torch.Tensor:
    return torch.diagonal(hessian(loss_fn)(theta))


def two_layer_sharpness_formula(U, W, Sx) -> torch.Tensor:
    """docs/theory.md §6: ``T = 2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|_F^2`` (derived in the tests)."""
    return 2 * U.shape[0] * torch.trace(W @ Sx @ W.T) + 2 * torch.trace(Sx) * U.pow(2).sum()


# ---------------------------------------------------------------- entropic loss on an orbit
def empirical_entropic_loss(theta, loss_per_sample, X, Y, eta: float, gamma: float):
    """``phi = mean_i l_gam(theta; x_i, y_i) + (eta/4) mean_i |grad l_gam(theta; x_i, y_i)|^2``
    on a fixed finite data set (the expectation is then exact), per-sample gradients by
    torch.func.vmap(grad)."""

    def lg(th, x, y):
        return loss_per_sample(th, x, y) + gamma * th.pow(2).sum()

    g = vmap(grad(lg), in_dims=(None, 0, 0))(theta, X, Y)
    return vmap(lg, in_dims=(None, 0, 0))(theta, X, Y).mean() + eta / 4 * g.pow(2).sum(-1).mean()


def per_sample_gAg(theta, loss_per_sample, X, Y, a_diag):
    """``mean_i g_i^T A g_i`` (no weight decay in g) for a diagonal generator."""
    g = vmap(grad(loss_per_sample), in_dims=(None, 0, 0))(theta, X, Y)
    return (g.pow(2) * a_diag).sum(-1).mean()


def orbit_minimiser(phi_of_lam, lo: float = -6.0, hi: float = 6.0, tol: float = 1e-12) -> float:
    """Minimise a convex function of one variable on [lo, hi] (golden section then a few
    Newton steps with central differences)."""
    import scipy.optimize

    res = scipy.optimize.minimize_scalar(lambda t: float(phi_of_lam(t)), bounds=(lo, hi), method="bounded",
                                         options={"xatol": tol})
    return float(res.x)


# ======================================================================= scale invariance
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
        x = torch.randn(self.n_runs, self.batch, self.dim, generator=self._gen, device=self.device, dtype=torch.float64)
        y = x @ self.v + self.noise * torch.randn(self.n_runs, self.batch, generator=self._gen, device=self.device, dtype=torch.float64)
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
        _check_finite("theta", self.theta, self.step_count)
        return {k: torch.stack(v) for k, v in recs.items()}


def normalised_sharpness(theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Total sharpness ``Tr hess`` of the empirical loss of :class:`NormalisedLinear` at one
    theta (torch.func.hessian)."""

    def L(th):
        return vmap(NormalisedLinear.loss, in_dims=(None, 0, 0))(th, X, Y).mean()

    return total_sharpness(theta, L)


# ======================================================================= discrete symmetry
@dataclass
class TwoLayerTanh:
    """``R`` SGD runs of ``f(x) = a^T tanh(W x)`` (W: h x d, a: h) on a tanh teacher with
    label noise. ``data_seed`` drives the data stream, so two ensembles can see the same or
    independent minibatches."""

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

    def __post_init__(self):
        self.device = resolve_device(self.device)
        check_positive("eta", self.eta)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.data_seed))
        self.tW = torch.as_tensor(self.teacher_W, device=self.device, dtype=torch.float64)
        self.ta = torch.as_tensor(self.teacher_a, device=self.device, dtype=torch.float64)
        self.W = None
        self.a = None
        self.step_count = 0

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

    def sample(self):
        x = torch.randn(self.n_runs, self.batch, self.dim, generator=self._gen, device=self.device, dtype=torch.float64)
        y = torch.tanh(x @ self.tW.T) @ self.ta + self.noise * torch.randn(
            self.n_runs, self.batch, generator=self._gen, device=self.device, dtype=torch.float64)
        return x, y

    def step(self):
        x, y = self.sample()
        hdn = torch.tanh(x @ self.W.transpose(-1, -2))  # (R,B,h)
        r = (hdn * self.a.unsqueeze(1)).sum(-1) - y  # (R,B)
        B = x.shape[1]
        ga = (2.0 / B) * (r.unsqueeze(-1) * hdn).sum(1)
        delta = r.unsqueeze(-1) * self.a.unsqueeze(1) * (1 - hdn.pow(2))  # (R,B,h)
        gW = (2.0 / B) * delta.transpose(-1, -2) @ x
        self.a = self.a - self.eta * ga
        self.W = self.W - self.eta * gW
        self.step_count += 1

    def run(self, n_steps: int, progress=None):
        if self.W is None:
            raise InputError("call init(W, a) before run()")
        for _ in range(int(n_steps)):
            self.step()
            if progress is not None:
                progress(1)
        _check_finite("W", self.W, self.step_count)
        _check_finite("a", self.a, self.step_count)
        return self

    def population_loss(self, n_eval: int = 4096, seed: int = 12345) -> torch.Tensor:
        """Monte-Carlo test loss per run on a fixed evaluation set (common random numbers)."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        x = torch.randn(n_eval, self.dim, generator=g, device=self.device, dtype=torch.float64)
        f_t = torch.tanh(x @ self.tW.T) @ self.ta
        f = (torch.tanh(torch.einsum("nd,rhd->rnh", x, self.W)) * self.a.unsqueeze(1)).sum(-1)
        return (f - f_t).pow(2).mean(-1) + self.noise**2


# ================================================================ rotation vs matrix learning rate
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
    for k in range(int(steps)):
        x = torch.randn(n_runs, batch, generator=gen, dtype=torch.float64, device=dev)
        y = x + noise * torch.randn(n_runs, batch, generator=gen, dtype=torch.float64, device=dev)
        r = th.pow(2).sum(-1, keepdim=True) * x - y  # (R,B)
        g = (4.0 * (r * x).mean(-1, keepdim=True)) * th  # (R,2) minibatch-mean gradient
        th = th - g @ L.T
    _check_finite("theta", th, steps)
    return th0, th
