r"""Find the linear parameter symmetries of a model, classify them, emit and check their balance laws.

A researcher hands over a per-sample loss ``l(theta; x)`` (a torch ``nn.Module`` with a
per-sample loss, or a plain function of named parameter tensors), a data sampler and the
parameters. This module returns

1. the **algebra** of linear parameter symmetries: every matrix ``A`` acting on the flattened
   parameter vector with ``grad l(theta; x)^T A theta = 0`` for every sample and every theta
   (the infinitesimal form of ``l(e^{lam A} theta) = l(theta)`` for every lam; see
   symbolic/symmetry.py), restricted to the *block ansatz* below, as a Frobenius-orthonormal
   basis;
2. its **classification**: the algebra intersected with the symmetric matrices (exponential
   symmetries, broken by the entropic loss, docs/theory.md §2) and with the antisymmetric ones
   (rotations, kept for a scalar learning rate); the algebra is closed under transposition only
   in some models, so the two dimensions need not add up to the total;
3. for every symmetric generator the **balance law** of SGD with weight decay in the loss
   (``theta <- theta - eta (g_B + 2 gam theta)``, docs/theory.md §0 and §3)::

       eta E[g_B^T A g_B] = 4 gam (1 - eta gam) E[theta^T A theta]       (gam = 0: E[g_B^T A g_B] = 0)

   and an SGD witness of it (an ensemble of independent runs, per-run stationary averages,
   a Student-t interval across runs; numeric/balance.py explains the law and its exactness).

How the algebra is found
------------------------
The condition is linear in ``A``: ``g^T A theta = sum_pq A_pq g_p theta_q`` is the inner
product of ``vec(A)`` with ``kron(g, theta)``. Per-sample gradients (``torch.func.vmap(grad)``,
``functional_call`` for a module) at random ``theta`` and random samples give one row each;
the algebra is the null space of the stacked rows. ``A`` is restricted to an ansatz (a linear
subspace of matrices with an orthonormal basis), so a row has as many entries as the ansatz
has unknowns, and at least ``3 x`` that many rows are drawn, each at a fresh random theta (rows
sharing one theta span only the directions the gradient takes as x varies, which can be few).
Rows with a zero gradient (a dead ReLU layer at that sample) are drawn again. The null space
is then validated on fresh rows (a held-out set must satisfy every found generator to the same
round-off threshold; otherwise the rows are enlarged and the search repeated).

The result is a Frobenius-orthonormal basis; ``SymmetryAlgebra.readable`` gives an echelon
basis of each part with pivots on entries that single out one generator (each element then
is one neuron rescaling, one ``E_ab + E_ba`` double rotation, ...), entries snapped to small
fractions where they are within round-off of one.

*Block ansatz* (the default). ``A`` acts on each parameter tensor separately, by a free square
matrix along every axis ("mode") of the tensor:

    W (p x q)        ->  L W + W R                 (L: p x p, R: q x q; left and right actions)
    b (vector, p)    ->  M b                       (M: p x p; contains scalar multiples and
                                                    per-entry scalings, e.g. of a bias)
    T (k axes)       ->  sum_m T x_m M_m           (one matrix per axis; a conv kernel, ...)
    s (scalar)       ->  c s

and ``A`` is block diagonal over the tensors. Couplings between tensors arise through the
loss: a neuron rescaling is ``L = E_kk`` on the incoming matrix and ``R = -E_kk`` on the
outgoing one, the double rotation of a factorisation ``W_2 W_1`` is ``L_1 = C``, ``R_2 = -C``.
The redundancy of the parametrisation (``L = I`` and ``R = I`` act alike) is removed by
orthonormalising the ansatz's generators (the eigen-decomposition of their Gram matrix, whose
entries are exact small integers).

What the block ansatz **cannot** see: (a) linear symmetries whose generator maps one tensor's
entries into *another* tensor's (off-diagonal blocks). A deep linear net with scalar output,
``f = w_2^T W_1 x``, has the shears ``delta W_1 = [S_1 w_2, ..., S_d w_2]`` (each ``S_j``
antisymmetric, so ``w_2^T S_j w_2 = 0``): ``d h (h-1)/2`` of them on top of GL(h); a layer
normalisation's shifts ``W_1 -> W_1 + 1 w^T`` may take ``w`` to be any linear function of ALL the
parameters (110 generators in the full ansatz for the layer_norm example, 8 in the block one);
the ``full`` ansatz finds these, the block ansatz does not; (b) actions on one tensor
that are not sums of per-axis matrices (a general ``pq x pq`` map on ``vec(W)``, e.g. a
rescaling of single entries that does not factor by rows and columns); (c) symmetries that
are not linear in theta (translations ``theta -> theta + t v``, which have no linear
generator, or nonlinear group actions); (d) discrete symmetries (permutations, sign flips:
docs/theory.md §2, Theorem 3); (e) symmetries that hold only on part of parameter space or
for special data (the rows come from random theta and random samples in general position, so
only identities on the whole sampled support are found). The ``full`` ansatz (every ``n x n``
matrix, ``n^2`` unknowns, small models only) removes (a) and (b).

Rank threshold (derived)
------------------------
Rows are normalised to unit length (the null space does not change). A computed row carries
float64 round-off: its entries are sums over the ansatz's ``rho`` orthonormal coordinates of
products of a float64 gradient and theta, so ``|delta r_i| <= rho eps |r_i| = rho eps``
(Higham's normwise bound for a length-``rho`` inner product, which also covers the gradient's
own relative round-off for the small networks this is meant for). Stacking ``N`` rows,
``|delta M|_2 <= |delta M|_F <= sqrt(N) rho eps <= sqrt(N) rho eps sigma_max``; by Weyl's
inequality a singular value of the exact matrix that is 0 is computed below

    tau = sqrt(N) * rho * eps * sigma_max.

A singular value is *zero* when ``<= tau`` and *non-zero* when ``>= sqrt(tau sigma_max)``
(geometric mid-point between the round-off floor and the scale); one in between cannot be
classified in float64 and the finder refuses with :class:`core.errors.InputError` (no clear
gap). Wedin's theorem then bounds the principal angles between the computed and the exact
null spaces by ``tau / sigma_min_nonzero <= sqrt(tau / sigma_max)``; the known-answer tests
use that bound as their tolerance.

>>> import torch
>>> def loss(p, x, y):                     # f = u w x: one rescaling symmetry, A = diag(1, -1)
...     return (p["u"] * p["w"] * x - y) ** 2
>>> def sampler(n, gen):
...     x = torch.randn(n, generator=gen, dtype=torch.float64)
...     return x, 2 * x + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
>>> prob = Problem(loss, {"w": torch.tensor(0.7), "u": torch.tensor(1.3)}, sampler, name="uw")
>>> alg = find_symmetries(prob, seed=0)
>>> alg.dim, alg.dim_symmetric, alg.dim_antisymmetric
(1, 1, 0)
>>> [round(float(abs(v)), 6) for v in np.diag(alg.basis[0])]
[0.707107, 0.707107]
>>> bool(alg.basis[0][0, 0] * alg.basis[0][1, 1] < 0)   # opposite signs: w -> e^lam w, u -> e^-lam u
True
>>> [float(v) for v in np.diag(alg.readable("symmetric")[0])]
[1.0, -1.0]
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse
import torch
from torch.func import functional_call, grad, hessian, vmap

from core.errors import DivergenceError, InputError
from core.validation import check_positive
from .balance import law_check
from .sharpness import capped_learning_rate, gd_stability_limit, sgd_stability_limit

EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16
U64 = EPS64 / 2  # unit round-off
ROW_FACTOR = 3  # rows drawn per ansatz unknown (at least)
MAX_UNKNOWNS = 6000  # beyond this the SVD of the row matrix is minutes of CPU: refuse instead


# =============================================================================== the problem
def _as_tuple(sample) -> tuple:
    return tuple(sample) if isinstance(sample, (tuple, list)) else (sample,)


class Problem:
    """A per-sample loss, its named parameter tensors (the point theta) and a data sampler.

    ``loss(params, *sample) -> scalar`` with ``params`` a dict ``{name: tensor}`` and ``sample``
    ONE data point (the sampler's outputs without their leading axis); ``sampler(n, generator)``
    returns a tensor or a tuple of tensors with leading dimension ``n`` (e.g. ``(x, y)``),
    drawing its randomness from the ``torch.Generator`` it is given. Everything is float64.
    Flattening: tensors in the order given, each row-major (``tensor.reshape(-1)``).

    Bad input is refused here, before any work: no parameters, non-floating or non-finite
    parameters, a sampler that is not callable or returns NaN/inf or the wrong number of
    samples, a loss that is not a scalar, is not finite, or cannot be differentiated per sample
    with ``torch.func``.
    """

    def __init__(self, loss: Callable, params, sampler: Callable, *, name: str = "model"):
        if not callable(loss):
            raise InputError(f"{name}: the loss must be callable, got {type(loss).__name__}")
        if not callable(sampler):
            raise InputError(f"{name}: the sampler must be callable as sampler(n, generator), got {type(sampler).__name__}")
        if isinstance(params, Mapping):
            items = list(params.items())
        elif isinstance(params, (list, tuple)):
            items = [(f"p{k}", p) for k, p in enumerate(params)]
        else:
            raise InputError(f"{name}: params must be a dict name -> tensor (or a list of tensors), got "
                             f"{type(params).__name__}")
        if not items:
            raise InputError(f"{name} has no parameters: there is nothing for a symmetry to act on")
        self.name = str(name)
        self._loss = loss
        self._sampler = sampler
        self.names, self.shapes, self.offsets, self.sizes = [], [], [], []
        flat, off = [], 0
        for key, p in items:
            if isinstance(p, np.ndarray):
                p = torch.as_tensor(p)
            if not isinstance(p, torch.Tensor):
                raise InputError(f"{name}: parameter {key!r} is a {type(p).__name__}, not a tensor")
            if not (p.is_floating_point()):
                raise InputError(f"{name}: parameter {key!r} has dtype {p.dtype}; parameters must be real floating point")
            p = p.detach().to("cpu", torch.float64)
            if not bool(torch.isfinite(p).all()):
                raise InputError(f"{name}: parameter {key!r} contains NaN or infinite entries")
            self.names.append(str(key))
            self.shapes.append(tuple(p.shape))
            self.offsets.append(off)
            self.sizes.append(p.numel())
            off += p.numel()
            flat.append(p.reshape(-1))
        if off == 0:
            raise InputError(f"{name} has no parameters: every parameter tensor is empty")
        self.n_params = off
        self.theta0 = torch.cat(flat)
        self._probe()

    # -- construction from a module ------------------------------------------------------------
    @classmethod
    def from_module(cls, model, sampler: Callable, loss: Callable | None = None, *, name: str | None = None):
        """Wrap an ``nn.Module``: its trainable parameters (``requires_grad``) are theta; buffers
        and frozen parameters are constants. The module is copied and cast to float64 (the
        caller's model is left alone). One sample ``x`` is fed as a batch of one,
        ``model(x[None])[0]``; ``loss(output, *targets)`` defaults to the squared error
        ``|f(x) - y|^2`` (no factor 1/2, docs/theory.md §0)."""
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
        name = name or type(model).__name__
        m = copy.deepcopy(model).to(torch.float64)
        params = {k: p.detach() for k, p in m.named_parameters() if p.requires_grad}
        if not params:
            raise InputError(f"{name} has no trainable parameters (requires_grad): there is nothing for a symmetry to "
                             f"act on")
        frozen = {k: p.detach() for k, p in m.named_parameters() if not p.requires_grad}
        consts = {**dict(m.named_buffers()), **frozen}
        out_loss = _squared_error if loss is None else loss
        if not callable(out_loss):
            raise InputError(f"{name}: the loss must be callable as loss(output, *targets)")

        def per_sample(p, x, *targets):
            out = functional_call(m, {**p, **consts}, (x.unsqueeze(0),))
            if isinstance(out, (tuple, list)):
                raise InputError(f"{name}: the module returns a {type(out).__name__}; wrap it so that it returns one tensor")
            return out_loss(out[0], *targets)

        prob = cls(per_sample, params, sampler, name=name)
        prob.module = m
        return prob

    # -- flattening -----------------------------------------------------------------------------
    def unflatten(self, theta: torch.Tensor) -> dict:
        return {k: theta[o:o + n].reshape(s) for k, o, n, s in zip(self.names, self.offsets, self.sizes, self.shapes)}

    def flat_loss(self, theta: torch.Tensor, *sample) -> torch.Tensor:
        """``l(theta; sample)`` for a flat parameter vector (one sample)."""
        return self._loss(self.unflatten(theta), *sample)

    def block(self, name: str) -> slice:
        k = self.names.index(name)
        return slice(self.offsets[k], self.offsets[k] + self.sizes[k])

    # -- data ------------------------------------------------------------------------------------
    def sample(self, n: int, gen: torch.Generator) -> tuple:
        """``n`` samples from the sampler, validated (tuple of tensors, leading dim n, finite)."""
        try:
            raw = self._sampler(int(n), gen)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self.name}: the sampler failed when asked for {n} samples: "
                             f"{type(exc).__name__}: {exc}") from exc
        out = []
        for k, t in enumerate(_as_tuple(raw)):
            if isinstance(t, np.ndarray):
                t = torch.as_tensor(t)
            if not isinstance(t, torch.Tensor):
                raise InputError(f"{self.name}: sampler output {k} is a {type(t).__name__}, not a tensor")
            if t.dim() == 0 or t.shape[0] != n:
                raise InputError(f"{self.name}: sampler output {k} must have leading dimension {n} (one row per "
                                 f"sample), got shape {tuple(t.shape)}")
            if t.is_complex():
                raise InputError(f"{self.name}: sampler output {k} is complex; the suite verifies real losses")
            if t.is_floating_point():
                t = t.to(torch.float64)
                if not bool(torch.isfinite(t).all()):
                    raise InputError(f"{self.name}: the sampler returned NaN or infinite values (output {k})")
            out.append(t.to("cpu"))
        if not out:
            raise InputError(f"{self.name}: the sampler returned nothing")
        return tuple(out)

    def random_thetas(self, k: int, gen: torch.Generator) -> torch.Tensor:
        """``k`` random parameter vectors: each tensor's entries i.i.d. normal with the RMS of
        that tensor at the given point (1 where the given tensor is zero)."""
        cols = []
        for o, n in zip(self.offsets, self.sizes):
            rms = float(self.theta0[o:o + n].pow(2).mean().sqrt())
            cols.append(torch.randn(k, n, generator=gen, dtype=torch.float64) * (rms if rms > 0 else 1.0))
        return torch.cat(cols, 1)

    # -- per-sample gradients -------------------------------------------------------------------------
    def per_sample_grads(self, thetas: torch.Tensor, batch: tuple) -> torch.Tensor:
        """Gradients for every pair (theta_i, sample_ij): thetas (k, n), batch entries (k, b, ...)
        -> (k, b, n)."""
        inner = vmap(grad(self.flat_loss), in_dims=(None,) + (0,) * len(batch))
        return vmap(inner, in_dims=(0,) + (0,) * len(batch))(thetas, *batch)

    def per_sample_losses(self, thetas: torch.Tensor, batch: tuple) -> torch.Tensor:
        inner = vmap(self.flat_loss, in_dims=(None,) + (0,) * len(batch))
        return vmap(inner, in_dims=(0,) + (0,) * len(batch))(thetas, *batch)

    def per_sample_hessians(self, theta: torch.Tensor, batch: tuple) -> torch.Tensor:
        """Hessians of the per-sample loss at one theta (n,) for every sample of ``batch``
        (entries with leading dimension b) -> (b, n, n)."""
        return vmap(hessian(self.flat_loss), in_dims=(None,) + (0,) * len(batch))(theta, *batch)

    def _probe(self):
        gen = torch.Generator().manual_seed(12345)
        s = self.sample(2, gen)
        one = tuple(t[0] for t in s)
        try:
            val = self.flat_loss(self.theta0, *one)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self.name}: evaluating the per-sample loss failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(val, torch.Tensor):
            raise InputError(f"{self.name}: the per-sample loss must return a tensor, got {type(val).__name__}")
        if val.dim() != 0:
            raise InputError(f"{self.name}: the per-sample loss must be a scalar (0-dimensional tensor), got shape "
                             f"{tuple(val.shape)}; reduce it (e.g. .sum()) over the output")
        if not bool(torch.isfinite(val)):
            raise InputError(f"{self.name}: the per-sample loss is not finite at the given parameters ({float(val)})")
        try:
            g = self.per_sample_grads(self.theta0.unsqueeze(0), tuple(t.unsqueeze(0) for t in s))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self.name}: per-sample gradients (torch.func.vmap(grad)) failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        if not bool(torch.isfinite(g).all()):
            raise InputError(f"{self.name}: the per-sample gradient is not finite at the given parameters")


def _squared_error(out, y=None):
    if y is None:
        raise InputError("the default squared-error loss needs samples (x, y); pass loss=... for other data")
    return (out - y).pow(2).sum()


# =============================================================================== the ansatz
@dataclass
class Ansatz:
    """A linear space of candidate generators ``A`` (n x n) with an orthonormal basis.

    ``Phi`` (sparse, n^2 x K) holds the raw generators as columns (``vec`` row-major), ``T``
    (K x rho) orthonormalises them: the columns of ``Phi T`` are a Frobenius-orthonormal basis
    of the ansatz. ``rows(G, TH)`` gives ``[g^T E_j theta]_j`` for the K raw generators.
    """

    kind: str
    n_params: int
    labels: list
    Phi: scipy.sparse.csr_matrix | None
    T: np.ndarray
    _modes: list = field(default_factory=list)  # (offset, shape, mode) per raw block; mode None: scalar

    @property
    def n_unknowns(self) -> int:
        return self.T.shape[1]

    def raw_rows(self, G: torch.Tensor, TH: torch.Tensor) -> np.ndarray:
        """``(N, K)``: row i, column j = ``g_i^T E_j theta_i``."""
        N = G.shape[0]
        if self.kind == "full":
            return (G[:, :, None] * TH[:, None, :]).reshape(N, -1).numpy()
        cols = []
        for off, shape, mode in self._modes:
            size = int(np.prod(shape)) if shape else 1
            Gt = G[:, off:off + size].reshape((N,) + shape)
            Tt = TH[:, off:off + size].reshape((N,) + shape)
            if mode is None:
                cols.append((Gt * Tt).reshape(N, 1))
                continue
            Gm = Gt.movedim(1 + mode, 1).reshape(N, shape[mode], -1)
            Tm = Tt.movedim(1 + mode, 1).reshape(N, shape[mode], -1)
            cols.append((Gm @ Tm.transpose(1, 2)).reshape(N, -1))
        return torch.cat(cols, 1).numpy()

    def rows(self, G: torch.Tensor, TH: torch.Tensor) -> np.ndarray:
        """Rows in the orthonormal coordinates (N, rho)."""
        return self.raw_rows(G, TH) @ self.T

    def matrices(self, Z: np.ndarray) -> np.ndarray:
        """Orthonormal coordinates ``Z`` (rho, k) -> generators (k, n, n)."""
        Z = np.asarray(Z, dtype=np.float64).reshape(self.n_unknowns, -1)
        n = self.n_params
        C = self.T @ Z
        V = C if self.Phi is None else self.Phi @ C
        return np.ascontiguousarray(np.asarray(V).T.reshape(-1, n, n))

    def coordinates(self, A: np.ndarray) -> np.ndarray:
        """Orthogonal projection of generators (k, n, n) onto the ansatz, in its coordinates (rho, k)."""
        A = np.asarray(A, dtype=np.float64).reshape(-1, self.n_params ** 2).T
        raw = A if self.Phi is None else self.Phi.T @ A
        return self.T.T @ raw


def block_ansatz(problem: Problem) -> Ansatz:
    """The block ansatz (module docstring): one free square matrix per axis of every tensor."""
    n = problem.n_params
    rows, cols, labels, modes = [], [], [], []
    j = 0
    for name, off, shape in zip(problem.names, problem.offsets, problem.shapes):
        size = int(np.prod(shape)) if shape else 1
        idx = np.arange(size).reshape(shape) if shape else np.arange(1)
        if not shape:
            rows.append(np.array([off * n + off]))
            cols.append(np.array([j]))
            labels.append(f"{name}: scalar")
            modes.append((off, shape, None))
            j += 1
            continue
        for m, nm in enumerate(shape):
            modes.append((off, shape, m))
            side = {0: "L"} if len(shape) == 2 else {}
            side.update({1: "R"} if len(shape) == 2 else {})
            for a in range(nm):
                ia = np.take(idx, a, axis=m).reshape(-1)
                for b in range(nm):
                    ib = np.take(idx, b, axis=m).reshape(-1)
                    # raw generator: (A theta)[slice a of axis m] = theta[slice b of axis m]
                    rows.append((off + ia) * n + (off + ib))
                    cols.append(np.full(ia.size, j))
                    tag = side.get(m, f"M{m}")
                    labels.append(f"{name}: {tag}[{a},{b}]" if tag != "R" else f"{name}: R[{b},{a}]")
                    j += 1
    K = j
    if K > MAX_UNKNOWNS * 4:
        raise InputError(f"{problem.name}: the block ansatz has {K} raw unknowns; the finder is meant for small models "
                         f"(at most about {MAX_UNKNOWNS} unknowns)")
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    Phi = scipy.sparse.csr_matrix((np.ones(r.size), (r, c)), shape=(n * n, K))
    T = _orthonormaliser(Phi, problem)
    return Ansatz("block", n, labels, Phi, T, modes)


def full_ansatz(problem: Problem) -> Ansatz:
    """Every n x n matrix (``n^2`` unknowns): finds cross-tensor symmetries; tiny models only."""
    n = problem.n_params
    if n * n > MAX_UNKNOWNS:
        raise InputError(f"{problem.name}: the full ansatz needs n^2 = {n * n} unknowns for n = {n} parameters "
                         f"(limit {MAX_UNKNOWNS}); use the block ansatz")
    labels = [f"A[{p},{q}]" for p in range(n) for q in range(n)]
    return Ansatz("full", n, labels, None, np.eye(n * n))


def _orthonormaliser(Phi, problem: Problem) -> np.ndarray:
    """``T`` with ``Phi T`` orthonormal, spanning ``range(Phi)``.

    ``Phi^T Phi`` has exact small-integer entries (counts of shared positions). Its non-zero
    eigenvalues are at least 1 (per tensor they are the sizes of the complementary axes and
    their sums), and its zero eigenvalues - one per axis beyond the first of every tensor with
    two or more axes (``L = I`` and ``R = I`` both act as the identity) - are computed as
    ``O(K eps |Gram|)``, far below the cut at 1/2. The count of zeros is checked exactly.
    """
    gram = (Phi.T @ Phi).toarray()
    lam, V = np.linalg.eigh(gram)
    keep = lam > 0.5
    expected_zero = sum(max(len(s) - 1, 0) for s in problem.shapes if len(s) >= 1)
    if int((~keep).sum()) != expected_zero:  # pragma: no cover - a bug in the ansatz, not bad input
        raise AssertionError(f"ansatz Gram has {(~keep).sum()} zero eigenvalues, expected {expected_zero}")
    return V[:, keep] / np.sqrt(lam[keep])


# ========================================================================= null space with a gap
@dataclass
class NullSpace:
    basis: np.ndarray  # (cols, k) orthonormal
    singular_values: np.ndarray
    threshold: float  # tau: zero below
    nonzero_floor: float  # sqrt(tau sigma_max): non-zero above
    largest_zero: float  # largest singular value counted as zero (0 if none)
    smallest_nonzero: float  # smallest counted as non-zero (inf if none)

    @property
    def span_error_bound(self) -> float:
        """Wedin: sin of the largest principal angle between computed and exact null space."""
        return self.threshold / self.smallest_nonzero if math.isfinite(self.smallest_nonzero) else 0.0


def null_space_with_gap(M: np.ndarray, tau: float, scale: float, what: str) -> NullSpace:
    """Null space of ``M`` (rows x cols): singular values ``<= tau`` count as zero, those
    ``>= sqrt(tau * scale)`` as non-zero (``scale``: the size of a typical non-zero singular
    value, e.g. sigma_max); one in between is refused (InputError: no clear gap)."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape[1] == 0:
        return NullSpace(np.zeros((0, 0)), np.zeros(0), 0.0, 0.0, 0.0, math.inf)
    _, s, Vt = np.linalg.svd(M, full_matrices=True)
    s_full = np.concatenate([s, np.zeros(M.shape[1] - s.size)])  # fewer rows than columns: extra zeros
    floor = math.sqrt(tau * scale)
    zero = s_full <= tau
    between = (s_full > tau) & (s_full < floor)
    if between.any():
        bad = ", ".join(f"{v / scale:.3g}" for v in s_full[between][:5])
        raise InputError(f"{what}: no clear gap in the singular values: {int(between.sum())} lie between the "
                         f"round-off threshold {tau / scale:.3g} and the non-zero floor {floor / scale:.3g} "
                         f"(relative to the scale: {bad}); float64 cannot tell whether these directions are "
                         f"symmetries (an approximate symmetry, e.g. a normalisation with eps > 0, or too few rows)")
    k = int(zero.sum())
    return NullSpace(Vt[M.shape[1] - k:].T.copy(), s_full, tau, floor,
                     float(s_full[zero].max()) if k else 0.0,
                     float(s_full[~zero].min()) if (~zero).any() else math.inf)


def orthonormal_span(mats: np.ndarray) -> np.ndarray:
    """Orthonormal basis (Frobenius) of the span of (k, n, n) matrices that are independent.

    >>> B = orthonormal_span(np.stack([np.eye(2), np.diag([1.0, 0.0])]))
    >>> bool(np.allclose(np.einsum("ipq,jpq->ij", B, B), np.eye(2), atol=1e-14))
    True
    """
    if mats.shape[0] == 0:
        return mats
    V = mats.reshape(mats.shape[0], -1).T
    Q, _ = np.linalg.qr(V)
    return Q.T.reshape(mats.shape)


# ====================================================================== the symmetry algebra
@dataclass
class SymmetryAlgebra:
    """The found algebra with its classification (see the module docstring)."""

    problem: Problem
    ansatz: Ansatz
    basis: np.ndarray  # (k, n, n), Frobenius-orthonormal
    null: NullSpace  # the row matrix's spectrum and thresholds
    n_rows: int
    symmetric: np.ndarray  # (k_s, n, n): the algebra intersected with symmetric matrices
    antisymmetric: np.ndarray  # (k_a, n, n)
    transpose_angle: float  # largest principal angle between span(A) and span(A^T)
    transpose_tolerance: float
    held_out_ratio: float = 0.0  # max |fresh rows . generator| / threshold on rows not used to find it

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def dim_symmetric(self) -> int:
        return int(self.symmetric.shape[0])

    @property
    def dim_antisymmetric(self) -> int:
        return int(self.antisymmetric.shape[0])

    @property
    def closed_under_transpose(self) -> bool:
        return self.transpose_angle <= self.transpose_tolerance

    @property
    def span_error_bound(self) -> float:
        return self.null.span_error_bound

    def readable(self, part: str = "symmetric") -> np.ndarray:
        """An echelon basis (small rational entries where they are within round-off) of the
        ``symmetric``, ``antisymmetric`` or ``all`` part: for display and for the balance laws
        (each law is linear in A, so any basis of the symmetric part gives the same laws)."""
        mats = {"symmetric": self.symmetric, "antisymmetric": self.antisymmetric, "all": self.basis}.get(part)
        if mats is None:
            raise InputError(f"part must be symmetric, antisymmetric or all, got {part!r}")
        out = echelon_basis(mats, self.span_error_bound)[0]
        if part == "symmetric":
            out = 0.5 * (out + out.transpose(0, 2, 1))
        elif part == "antisymmetric":
            out = 0.5 * (out - out.transpose(0, 2, 1))
        return out

    def summary(self) -> dict:
        return {"model": self.problem.name, "parameters": self.problem.n_params, "ansatz": self.ansatz.kind,
                "unknowns": self.ansatz.n_unknowns, "rows": self.n_rows, "dim": self.dim,
                "dim_symmetric": self.dim_symmetric, "dim_antisymmetric": self.dim_antisymmetric,
                "closed_under_transpose": self.closed_under_transpose,
                "threshold/sigma_max": self.null.threshold / float(self.null.singular_values[0]),
                "largest zero/threshold": self.null.largest_zero / self.null.threshold,
                "smallest non-zero/threshold": self.null.smallest_nonzero / self.null.threshold,
                "span error bound": self.span_error_bound}


def _draw_rows(problem: Problem, ans: Ansatz, n_rows: int, rows_per_theta: int, gen: torch.Generator) -> np.ndarray:
    """``n_rows`` informative rows (unit norm) in the ansatz's orthonormal coordinates."""
    b = int(rows_per_theta)
    # Rows whose gradient vanishes (a ReLU net with a dead layer at that sample) carry no
    # information: draw more until n_rows informative rows are in, for at most 8 rounds.
    blocks, live_rows, drawn = [], 0, 0
    for _ in range(8):
        frac = max(live_rows / drawn, 0.05) if drawn else 1.0  # informative fraction so far
        k = -(-int(math.ceil(1.25 * (n_rows - live_rows) / frac)) // b)
        drawn += k * b
        thetas = problem.random_thetas(k, gen)
        batch = problem.sample(k * b, gen)
        batch = tuple(t.reshape((k, b) + tuple(t.shape[1:])) for t in batch)
        G = problem.per_sample_grads(thetas, batch).reshape(k * b, -1)
        if not bool(torch.isfinite(G).all()):
            raise InputError(f"{problem.name}: non-finite per-sample gradients at random parameters (the loss is "
                             f"singular somewhere on the sampled support)")
        TH = thetas.unsqueeze(1).expand(k, b, -1).reshape(k * b, -1)
        Mb = ans.rows(G, TH)
        norms = np.linalg.norm(Mb, axis=1)
        live = norms > 0
        blocks.append(Mb[live] / norms[live, None])
        live_rows += int(live.sum())
        if live_rows >= n_rows:
            return np.vstack(blocks)
        if live_rows == 0:
            raise InputError(f"{problem.name}: the per-sample gradient is zero at every one of {drawn} sampled points: the "
                             f"loss does not depend on the parameters")
    raise InputError(f"{problem.name}: only {live_rows} informative rows (non-zero gradient) after 8 rounds of "
                     f"sampling; need {n_rows}: the gradient vanishes at most sampled points")


def _row_threshold(M: np.ndarray, rho: int) -> tuple[float, float]:
    """``(tau, sigma_max)`` for unit rows: ``tau = sqrt(N) rho eps sigma_max`` (module docstring)."""
    smax = float(np.linalg.norm(M, 2))
    return math.sqrt(M.shape[0]) * rho * EPS64 * smax, smax


def find_symmetries(problem: Problem, *, ansatz: str | Ansatz = "block", n_rows: int | None = None,
                    rows_per_theta: int = 1, seed: int = 0) -> SymmetryAlgebra:
    """Find the algebra of linear symmetries of ``problem`` within ``ansatz`` ("block" or "full").

    ``n_rows`` (default ``3 x`` the unknowns, at least 24) informative rows are drawn,
    ``rows_per_theta`` samples at each random parameter point (default 1: every row at a fresh
    theta; several samples at one theta span only the directions ``grad l(theta; x)`` takes as x
    varies, which can be few - a linear net's gradient is linear in x - and would leave spurious
    null directions). The null space is then validated on ``n_rows / 2`` fresh rows: every
    found generator must satisfy them to the same round-off threshold, otherwise the rows are
    doubled (twice at most) and the search repeated, and the finder refuses when that fails.
    """
    if not isinstance(problem, Problem):
        raise InputError(f"find_symmetries needs a Problem (Problem(...) or Problem.from_module(...)), got "
                         f"{type(problem).__name__}")
    if isinstance(ansatz, str):
        if ansatz not in ("block", "full"):
            raise InputError(f"unknown ansatz {ansatz!r}; choose 'block' or 'full'")
        ans = block_ansatz(problem) if ansatz == "block" else full_ansatz(problem)
    else:
        ans = ansatz
    rho = ans.n_unknowns
    if rho > MAX_UNKNOWNS:
        raise InputError(f"{problem.name}: {rho} unknowns in the {ans.kind} ansatz (limit {MAX_UNKNOWNS}); the finder is "
                         f"meant for small models")
    need = max(ROW_FACTOR * rho, 24)
    n_rows = need if n_rows is None else int(n_rows)
    if n_rows < need:
        raise InputError(f"{problem.name}: n_rows = {n_rows} is below {ROW_FACTOR} x the {rho} unknowns ({need})")
    if int(rows_per_theta) != rows_per_theta or int(rows_per_theta) < 1:
        raise InputError(f"rows_per_theta must be a positive integer, got {rows_per_theta!r}")
    gen = torch.Generator().manual_seed(int(seed))
    M = _draw_rows(problem, ans, n_rows, rows_per_theta, gen)
    for attempt in range(3):
        tau, smax = _row_threshold(M, rho)
        null = null_space_with_gap(M, tau, smax, f"{problem.name}: symmetry rows")
        if null.basis.shape[1] == rho:
            raise InputError(f"{problem.name}: every direction of the ansatz is a symmetry: the loss does not depend on "
                             f"the parameters")
        fresh = _draw_rows(problem, ans, max(n_rows // 2, 24), rows_per_theta, gen)
        tau_f, _ = _row_threshold(fresh, rho)
        held_out = float(np.linalg.norm(fresh @ null.basis, axis=0).max()) if null.basis.shape[1] else 0.0
        if held_out <= tau_f:
            break
        M = np.vstack([M, fresh, _draw_rows(problem, ans, M.shape[0], rows_per_theta, gen)])
    else:
        raise InputError(f"{problem.name}: the null space is not stable under fresh samples (a found generator "
                         f"violates new rows by {held_out:.3g} > {tau_f:.3g}) even with {M.shape[0]} rows; the "
                         f"sampler or the parameter draws do not explore enough of the data/parameter space")
    basis = ans.matrices(null.basis)
    sym, anti, angle, ttol = split_parts(basis, null.span_error_bound, problem)
    return SymmetryAlgebra(problem, ans, basis, null, M.shape[0], sym, anti, angle, ttol, held_out / tau_f)


def split_parts(basis: np.ndarray, span_err: float, problem: Problem):
    """Algebra intersected with symmetric and with antisymmetric matrices, and closure under A -> A^T:
    ``(symmetric basis, antisymmetric basis, largest angle between span(A) and span(A^T), its tolerance)``.

    An element ``sum_j z_j B_j`` is symmetric iff ``sum_j z_j (B_j - B_j^T) = 0``: a null space
    in z. The computed ``B_j`` are off the exact algebra by at most ``span_err`` each (Wedin),
    so an exactly symmetric combination (|z| = 1) has a computed skew part of size at most
    ``2 sqrt(k) (span_err + n u)`` (n u: the round-off of forming the combination); that is the
    threshold, with the same no-gap refusal as the rows.
    """
    k = basis.shape[0]
    n = problem.n_params
    if k == 0:
        empty = np.zeros((0, n, n))
        return empty, empty, 0.0, 0.0
    flat = basis.reshape(k, -1)
    tol = 2 * math.sqrt(k) * (span_err + n * U64)
    out = []
    for sign in (-1.0, 1.0):  # symmetric part: null of (B - B^T); antisymmetric: null of (B + B^T)
        D = (basis + sign * basis.transpose(0, 2, 1)).reshape(k, -1).T  # (n^2, k)
        # scale 2: |B - B^T|_F <= 2 for a unit B, the size of a generic non-symmetric element's skew part
        ns = null_space_with_gap(D, tol, 2.0, f"{problem.name}: {'symmetric' if sign < 0 else 'antisymmetric'} part")
        Z = ns.basis
        mats = np.einsum("jk,jpq->kpq", Z, basis)
        mats = 0.5 * (mats - sign * mats.transpose(0, 2, 1))
        out.append(orthonormal_span(mats))
    sym, anti = out
    # closure under transposition: principal angles between span{B_j} and span{B_j^T}
    angle = float(np.max(scipy.linalg.subspace_angles(flat.T, basis.transpose(0, 2, 1).reshape(k, -1).T)))
    return sym, anti, angle, 2 * (span_err + n * U64)


# ========================================================================== comparison helpers
def subspace_angle(found: np.ndarray, known: np.ndarray) -> float:
    """Largest principal angle (radians) between span(found) and span(known), (k, n, n) each;
    pi/2 when the dimensions differ (one space has a direction orthogonal to the other)."""
    if found.shape[0] != known.shape[0]:
        return math.pi / 2
    if found.shape[0] == 0:
        return 0.0
    a = found.reshape(found.shape[0], -1).T
    b = known.reshape(known.shape[0], -1).T
    return float(np.max(scipy.linalg.subspace_angles(a, b)))


def mode_action(problem: Problem, actions: Mapping[str, Mapping[int, np.ndarray]]) -> np.ndarray:
    """The generator (n x n) acting on tensor ``name`` by ``sum_m T x_m M_m`` for
    ``actions = {name: {axis: M}}`` (axis 0 of a matrix: ``L W``; axis 1: ``W M^T``, so a right
    action ``W R`` is ``{1: R.T}``); a scalar tensor takes ``{None: c}``."""
    n = problem.n_params
    A = np.zeros((n, n))
    for name, acts in actions.items():
        if name not in problem.names:
            raise InputError(f"{problem.name} has no parameter {name!r}; it has {', '.join(problem.names)}")
        k = problem.names.index(name)
        off, shape = problem.offsets[k], problem.shapes[k]
        size = problem.sizes[k]
        for m, Mm in acts.items():
            if m is None:
                A[off:off + size, off:off + size] += float(Mm) * np.eye(size)
                continue
            Mm = np.asarray(Mm, dtype=np.float64)
            eye = [np.eye(s) for s in shape]
            eye[m] = Mm
            K = eye[0]
            for e in eye[1:]:
                K = np.kron(K, e)
            A[off:off + size, off:off + size] += K
    return A


def _sparse_pivots(B: np.ndarray, floor: float = 1e-3) -> list:
    """k pivot columns of B (k x m, independent rows) that make the echelon basis sparse.

    Entries moved by ONE element of a sparse basis (the incoming row of one neuron, say) all
    have parallel columns in B; an entry moved by two (a weight between two rescaled neurons)
    has a column that is a combination. So columns are grouped by direction (|cos| > 1 - 1e-9,
    norms above ``floor`` x the largest), the largest groups first, and one pivot is taken per
    group while it raises the rank; the rest greedily by largest residual norm."""
    k = B.shape[0]
    norms = np.linalg.norm(B, axis=0)
    live = np.flatnonzero(norms > floor * norms.max())
    U = B[:, live] / norms[live]
    groups: list = []
    for j in range(U.shape[1]):
        for g in groups:
            if abs(float(U[:, g[0]] @ U[:, j])) > 1 - 1e-9:
                g.append(j)
                break
        else:
            groups.append([j])
    groups.sort(key=len, reverse=True)
    piv: list = []
    basis = np.zeros((k, 0))
    for g in groups + [[j] for j in range(U.shape[1])]:
        if len(piv) == k:
            break
        v = U[:, g[0]]
        r = v - basis @ (basis.T @ v)
        if np.linalg.norm(r) > floor:
            piv.append(int(live[g[0]]))
            basis = np.column_stack([basis, r / np.linalg.norm(r)])
    if len(piv) < k:  # pragma: no cover - B has full row rank, so the loop always completes
        raise AssertionError("could not find k independent pivot columns")
    return piv


def echelon_basis(mats: np.ndarray, err: float, max_denominator: int = 12):
    """A readable basis of span(mats) ((k, n, n), orthonormal or not): ``(float basis, exact)``.

    Pivot entries by :func:`_sparse_pivots`, then ``R = B_P^{-1} B`` (the identity on the
    pivot entries: each element is "its own" on one entry, as a neuron rescaling is on one
    weight). Every entry is snapped to the nearest fraction with denominator at most
    ``max_denominator`` when that moves it by at most ``8 cond(B_P) (err + n^2 u)`` (the float
    error of R, ``err`` the error of the input basis). ``exact`` is the list of k nested lists
    of Fractions when every entry snapped, else None; the float basis holds the snapped values
    where they snapped.
    """
    k = mats.shape[0]
    if k == 0:
        return mats.copy(), []
    n = mats.shape[1]
    B = mats.reshape(k, -1)
    BP = B[:, _sparse_pivots(B)]
    R = np.linalg.solve(BP, B)
    tol = 8 * max(np.linalg.cond(BP), 1.0) * (err + n * n * U64)
    fr = [[Fraction(float(v)).limit_denominator(max_denominator) for v in row] for row in R]
    snapped = np.array([[float(f) for f in row] for row in fr])
    close = np.abs(snapped - R) <= tol
    out = np.where(close, snapped, R).reshape(k, n, n)
    if not close.all():
        return out, None
    return out, [[row[p * n:(p + 1) * n] for p in range(n)] for row in fr]


def rational_basis(alg: SymmetryAlgebra, max_denominator: int = 12):
    """The algebra's echelon basis with exact Fraction entries (n x n nested lists), or None
    when some entry is not within round-off of a small fraction (:func:`echelon_basis`)."""
    return echelon_basis(alg.basis, alg.span_error_bound, max_denominator)[1]


# ===================================================================== orbit verification
@dataclass
class OrbitCheck:
    max_ratio: float  # max over generators, lambdas, thetas, samples of |l(e^{lam A} theta) - l(theta)| / tol
    control_ratio: float  # the same for a direction of the ansatz orthogonal to the algebra (should be >> 1)
    per_generator: list
    lambdas: tuple
    n_evaluations: int


def verify_orbits(alg: SymmetryAlgebra, *, lambdas=(-1.0, -0.5, 0.5, 1.0), n_theta: int = 3, n_samples: int = 8,
                  seed: int = 1) -> OrbitCheck:
    """Move along every generator's orbit, ``theta -> expm(lam A / |A|_2) theta``, and compare
    the per-sample loss with its value at theta.

    Tolerance (float64, derived): a forward pass through matrix products and componentwise
    activations is backward stable (the computed loss is the exact loss at parameters
    perturbed by at most ``gamma_n`` relative, n the number of parameters, plus ``gamma_n``
    relative in the final sum), and ``scipy.linalg.expm`` returns ``e^{lam A}`` to a few ``u``
    relative to its norm ``<= e^{|lam|}``. To first order

        |l(theta_lam) - l(theta)| <= (n + 8) u (|l(theta)| + |l(theta_lam)|
                                      + |grad l(theta_lam)| |theta_lam| e^{|lam|}).

    A control direction of the ansatz orthogonal to the algebra shows the tolerance is not
    vacuous: its loss changes by many tolerances.
    """
    prob = alg.problem
    n = prob.n_params
    gen = torch.Generator().manual_seed(int(seed))
    thetas = prob.random_thetas(n_theta, gen)
    batch = prob.sample(n_theta * n_samples, gen)
    batch = tuple(t.reshape((n_theta, n_samples) + tuple(t.shape[1:])) for t in batch)
    l0 = prob.per_sample_losses(thetas, batch)

    def ratios(A: np.ndarray) -> np.ndarray:
        A = A / max(np.linalg.norm(A, 2), 1e-300)
        out = []
        for lam in lambdas:
            E = torch.as_tensor(scipy.linalg.expm(lam * A))
            th = thetas @ E.T
            l1 = prob.per_sample_losses(th, batch)
            g1 = prob.per_sample_grads(th, batch)
            grow = g1.norm(dim=-1) * th.norm(dim=-1, keepdim=True) * math.exp(abs(lam))
            tol = (n + 8) * U64 * (l0.abs() + l1.abs() + grow)
            out.append(((l1 - l0).abs() / tol).numpy())
        return np.stack(out)

    per = [float(ratios(A).max()) for A in alg.basis]
    # control: the ansatz direction orthogonal to the algebra with the largest row singular value
    ans = alg.ansatz
    Zc = ans.coordinates(alg.basis) if alg.dim else np.zeros((ans.n_unknowns, 0))
    rng = np.random.default_rng(int(seed))
    z = rng.normal(size=ans.n_unknowns)
    if Zc.shape[1]:
        Q, _ = np.linalg.qr(Zc)
        z = z - Q @ (Q.T @ z)
    ctrl = ans.matrices(z / np.linalg.norm(z))[0]
    ctrl = 0.5 * (ctrl + ctrl.T)  # a symmetric control: its orbit stays bounded in the same way
    control = float(np.median(ratios(ctrl)))
    return OrbitCheck(max(per) if per else 0.0, control, per, tuple(lambdas), n_theta * n_samples * len(lambdas))


# ============================================================================ balance laws
def balance_law_text(j: int, gamma: float | None = None) -> str:
    """The law emitted for symmetric generator ``A_j``."""
    if gamma == 0:
        return f"E[g^T A{j} g] = 0"
    return f"eta E[g^T A{j} g] = 4 gam (1 - eta gam) E[theta^T A{j} theta]"


def is_semidefinite(A: np.ndarray, rtol: float | None = None) -> bool:
    """``A`` (symmetric) has eigenvalues of one sign only, up to round-off ``n u |A|_2`` (or
    ``rtol |A|_2``). For such a generator ``g^T A g`` has one sign, ``E[g^T A g] = 0`` forces
    the gradient into ker A, and at gam = 0 SGD has no stationary state along the orbit
    (``theta^T A theta`` grows by ``eta^2 g^T A g`` every step: Appendix B.1's norm growth).

    >>> is_semidefinite(np.eye(3)), is_semidefinite(np.diag([1.0, -1.0, 0.0]))
    (True, False)
    """
    ev = np.linalg.eigvalsh(0.5 * (A + A.T))
    scale = max(abs(ev[0]), abs(ev[-1]))
    tol = (A.shape[0] * U64 if rtol is None else rtol) * scale
    return bool(ev[0] >= -tol or ev[-1] <= tol)


@dataclass
class BalanceResult:
    """SGD witness of the balance laws of the symmetric generators of one model."""

    eta: float
    gamma: float
    steps: int
    burn_in: int
    n_runs: int
    batch: int
    coefficient: float  # 4 gam (1 - eta gam)
    lhs_runs: np.ndarray  # (k, R): eta x each run's average of g_B^T A g_B
    rhs_runs: np.ndarray  # (k, R): coefficient x each run's average of theta^T A theta
    scale_runs: np.ndarray  # (k, R): eta x each run's average of |g_B^T A g_B|
    laws: list  # LawCheck per generator (numeric.balance.law_check at p_fail, Bonferroni over k)
    max_cross_ratio: float  # max |g_B^T A theta| / (|g_B| |A theta|) along the run (a cosine)
    cross_bias: np.ndarray  # (k,): 2 (1 - 2 eta gam) x ensemble mean of mean_t(g_B^T A theta)
    drift: np.ndarray  # (k,) ensemble mean of (Q_T - Q_0)/(eta T): the law's exact finite-T residual
    generators: np.ndarray
    p_fail: float
    decay_ratio: np.ndarray | None = None  # (k,): max over runs of |Q_T - (1 - rho)^T Q_0| / its bound (<= 1)

    @property
    def consistent(self) -> bool:
        """Every law inside its interval, and the symmetry's bias at most a tenth of it."""
        return all(c.consistent and abs(b) <= 0.1 * c.halfwidth for c, b in zip(self.laws, self.cross_bias))


def sgd_balance(problem: Problem, generators: np.ndarray, *, eta: float, gamma: float, steps: int, burn_in: int,
                p_fail: float, n_runs: int = 16, batch: int = 1, seed: int = 0, theta0: torch.Tensor | None = None,
                progress=None) -> BalanceResult:
    """Run ``n_runs`` independent SGD runs of ``problem`` (each from ``theta0``, default the
    problem's parameter point, or from its own row of an ``(n_runs, n)`` ``theta0``; independent
    data) and check
    ``eta E[g_B^T A g_B] = 4 gam (1 - eta gam) E[theta^T A theta]`` for every generator ``A`` in
    ``generators`` (k, n, n), symmetric. ``p_fail`` is the caller's false-alarm probability.

    Each run's average over the ``steps`` steps after ``burn_in`` is one independent draw; the
    paired per-run residual ``LHS_r - RHS_r`` is tested with a two-sided Student-t interval at
    ``p_fail`` split over the k generators (Bonferroni): numeric.balance.law_check.

    The law rests on ``g_B^T A theta = 0``. Summing one step's exact change of
    ``Q = theta^T A theta`` over the window gives, per run,

        LHS - RHS = (Q_T - Q_0) / (eta T) + 2 (1 - 2 eta gam) mean_t(g_B^T A theta),

    so the run records ``mean_t(g_B^T A theta)``: ``cross_bias`` is the second term (ensemble
    mean), the bias a failing symmetry would put into the law, and ``max_cross_ratio`` the
    largest ``|g_B^T A theta| / (|g_B| |A theta|)`` met (a cosine; float64 round-off keeps it
    near 1e-16 times the conditioning of the gradient for a true symmetry, O(1) otherwise).

    A generator that (almost) no gradient reaches - a ReLU unit that weight decay is pruning -
    has no stationary balance at a finite time: its ``Q`` only decays, as
    ``Q_T = (1 - rho)^T Q_0 + sum_t (1 - rho)^(T-1-t) (eta^2 g^T A g - 2 eta (1 - 2 eta gam) g^T A theta)_t``
    with ``rho = 4 eta gam (1 - eta gam)``, exactly. ``decay_ratio`` checks that identity per run
    against ``eta^2 sum|g^T A g| + 2 eta |1 - 2 eta gam| sum|g^T A theta|`` plus float64
    round-off ``4 (T + n) u |A|_2 max_t |theta|^2`` (``(1 - rho)^s <= 1``): <= 1 always.
    """
    check_positive("eta", eta)
    check_positive("gamma", gamma, allow_zero=True)
    for nm, v, lo in (("steps", steps, 1), ("burn_in", burn_in, 0), ("n_runs", n_runs, 2), ("batch", batch, 1)):
        if int(v) != v or int(v) < lo:
            raise InputError(f"{nm} must be an integer >= {lo}, got {v!r}")
    Gs = np.asarray(generators, dtype=np.float64)
    if Gs.ndim != 3 or Gs.shape[1:] != (problem.n_params, problem.n_params) or Gs.shape[0] == 0:
        raise InputError(f"generators must have shape (k, {problem.n_params}, {problem.n_params}) with k >= 1, got "
                         f"{Gs.shape}")
    if np.abs(Gs - Gs.transpose(0, 2, 1)).max() > 1e-12 * max(np.abs(Gs).max(), 1.0):
        raise InputError("the balance law is for symmetric generators (exponential symmetries); got a non-symmetric one")
    n, R, B, k = problem.n_params, int(n_runs), int(batch), Gs.shape[0]
    A = torch.as_tensor(Gs)
    gen = torch.Generator().manual_seed(int(seed))

    def batch_loss(theta, *sample):
        return vmap(problem.flat_loss, in_dims=(None,) + (0,) * len(sample))(theta, *sample).mean()

    start = problem.theta0 if theta0 is None else torch.as_tensor(theta0, dtype=torch.float64)
    if start.shape not in ((n,), (R, n)) or not bool(torch.isfinite(start).all()):
        raise InputError(f"theta0 must be finite, one vector of {n} parameters or one per run ({R}, {n}); got shape "
                         f"{tuple(start.shape)}")
    theta = start.expand(R, n).clone()
    sum_g = torch.zeros(k, R, dtype=torch.float64)
    sum_a = torch.zeros(k, R, dtype=torch.float64)
    sum_t = torch.zeros(k, R, dtype=torch.float64)
    sum_x = torch.zeros(k, R, dtype=torch.float64)
    sum_xa = torch.zeros(k, R, dtype=torch.float64)
    theta_max = torch.zeros(R, dtype=torch.float64)
    worst_cross = 0.0
    q_start = None
    decay = 1.0 - 2.0 * eta * gamma
    step_grad = None
    for t in range(int(burn_in) + int(steps)):
        s = problem.sample(R * B, gen)
        s = tuple(x.reshape((R, B) + tuple(x.shape[1:])) for x in s)
        if step_grad is None:
            step_grad = vmap(grad(batch_loss), in_dims=(0,) + (0,) * len(s))
        g = step_grad(theta, *s)
        if t >= burn_in:
            At = torch.einsum("kpq,rq->krp", A, theta)
            Ag = torch.einsum("kpq,rq->krp", A, g)
            tAt = (theta * At).sum(-1)
            if q_start is None:
                q_start = tAt.clone()
            sum_t += tAt
            gAg = (g * Ag).sum(-1)
            sum_g += gAg
            sum_a += gAg.abs()
            cross = (g * At).sum(-1)
            sum_x += cross
            sum_xa += cross.abs()
            theta_max = torch.maximum(theta_max, theta.pow(2).sum(-1))
            cos = cross.abs() / (g.norm(dim=-1) * At.norm(dim=-1)).clamp_min(1e-300)
            worst_cross = max(worst_cross, float(cos.max()))
        theta = decay * theta - eta * g
        if t % 100 == 99 or t == burn_in + steps - 1:
            _check_finite_runs(theta, problem, t, eta)
        if progress is not None:
            progress(1)
    T = int(steps)
    At = torch.einsum("kpq,rq->krp", A, theta)
    q_end = (theta * At).sum(-1)
    coef = 4.0 * gamma * (1.0 - eta * gamma)
    lhs = eta * sum_g / T
    rhs = coef * sum_t / T
    scale = eta * sum_a / T
    laws = [law_check(lhs[j], rhs[j], scale[j], p=p_fail, n_tests=k) for j in range(k)]
    drift = ((q_end - q_start) / (eta * T)).mean(-1).numpy()
    cross_bias = (2 * (1 - 2 * eta * gamma) * sum_x / T).mean(-1).numpy()
    # the decay identity of a generator that (almost) no gradient reaches, per run (see BalanceResult.decay_ratio)
    rho = 4 * eta * gamma * (1 - eta * gamma)
    theta_max = torch.maximum(theta_max, theta.pow(2).sum(-1))
    a_norm = torch.as_tensor(np.linalg.norm(Gs, 2, axis=(1, 2)))[:, None]
    slack = (eta**2 * sum_a + 2 * eta * abs(1 - 2 * eta * gamma) * sum_xa
             + 4 * (T + n) * U64 * a_norm * theta_max[None, :])
    decay = ((q_end - (1 - rho) ** T * q_start).abs() / slack.clamp_min(1e-300)).amax(-1).numpy()
    return BalanceResult(float(eta), float(gamma), T, int(burn_in), R, B, coef, lhs.numpy(), rhs.numpy(), scale.numpy(),
                         laws, worst_cross, cross_bias, drift, Gs, p_fail, decay)


def kept_orbit_starts(theta: torch.Tensor, rotations: np.ndarray, n_runs: int, generator: torch.Generator,
                      rounds: int = 8) -> torch.Tensor:
    """``n_runs`` starts spread over the orbit of ``theta`` under the rotations the entropic loss
    keeps: ``(n_runs, n)``, run r at ``O_r theta`` with ``O_r`` a near-Haar draw from the group
    that the antisymmetric generators ``rotations`` (k, n, n) generate.

    Why: neither the loss nor the decay ``gam |theta|^2`` changes along these orbits, so one SGD
    step commutes with every ``O = e^K`` (``K`` antisymmetric, ``O`` orthogonal): an ensemble
    whose start is invariant under the group stays invariant at every step. Started at one point,
    the ensemble would spread along the orbits only through the noise, at ``~ eta^2`` per step,
    and ``E[theta^T A theta]`` of a symmetric generator that the rotations mix would drift all
    that time; started spread, it has nothing to relax along them. Each ``O_r`` is a product of
    ``rounds`` exponentials ``e^K``, ``K = sum_i c_i K_i / |K_i|_2``, ``c_i ~ N(0, pi^2)``: a
    random walk on a compact group with steps of a few radians, whose law approaches Haar's
    geometrically in ``rounds``. ``k = 0``: every run starts at ``theta``.

    >>> K = np.zeros((1, 2, 2)); K[0, 0, 1], K[0, 1, 0] = 1.0, -1.0
    >>> th = kept_orbit_starts(torch.tensor([3.0, 4.0], dtype=torch.float64), K, 5, torch.Generator().manual_seed(0))
    >>> th.shape, bool(torch.allclose(th.norm(dim=1), torch.full((5,), 5.0, dtype=torch.float64)))
    (torch.Size([5, 2]), True)
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    R, n = int(n_runs), theta.shape[0]
    Ks = torch.as_tensor(np.asarray(rotations, dtype=np.float64)).reshape(-1, n, n)
    if Ks.shape[0] == 0:
        return theta.unsqueeze(0).expand(R, n).clone()
    if float((Ks + Ks.transpose(1, 2)).abs().max()) > 1e-12 * max(float(Ks.abs().max()), 1.0):
        raise InputError("kept_orbit_starts needs antisymmetric generators (rotations); got a non-antisymmetric one")
    Ks = Ks / torch.linalg.matrix_norm(Ks, ord=2).clamp_min(1e-300)[:, None, None]
    out = theta.unsqueeze(0).expand(R, n).clone()
    for _ in range(int(rounds)):
        c = math.pi * torch.randn(R, Ks.shape[0], generator=generator, dtype=torch.float64)
        O = torch.linalg.matrix_exp(torch.einsum("rk,kpq->rpq", c, Ks))
        out = torch.einsum("rpq,rq->rp", O, out)
    return out


def _check_finite_runs(theta: torch.Tensor, problem: Problem, t: int, eta: float):
    bad = torch.nonzero(~torch.isfinite(theta).all(-1)).reshape(-1).tolist()
    if bad:
        raise DivergenceError(f"{problem.name}: SGD diverged by step {t} (eta = {eta:g}) in {len(bad)} runs; lower eta",
                              runs=bad, steps=[t] * len(bad))


@dataclass
class StableStart:
    """Where an SGD witness starts and at which learning rate (:func:`stable_start`)."""

    theta: torch.Tensor  # the pilot's end point: every run starts here
    eta: float  # the requested eta, capped at sgd_limit / margin
    requested_eta: float
    gd_limit: float  # gradient descent's 2 / lambda_max(E H) at theta
    sgd_limit: float  # batch-B SGD's mean-square limit at theta (numeric.sharpness.sgd_stability_limit)
    start_gd_limit: float  # gradient descent's limit at the problem's own point, before the pilot
    margin: float
    pilot_steps: int
    capped: bool = True  # False: eta is the requested one, the limits are reported only


PILOT_MARGIN = 4.0  # the pilot's gradient-descent step: a quarter of the limit, stable through a twofold sharpening
PILOT_CHECK_EVERY = 250  # pilot steps between measurements of the curvature


def stable_start(problem: Problem, *, eta: float, gamma: float, batch: int, pilot_steps: int, margin: float,
                 n_samples: int = 512, seed: int = 0, cap: bool = True) -> StableStart:
    """The start point and learning rate of an SGD witness that stays stable for every seed.

    A seeded parameter point can sit in a region far sharper than the one the runs settle in
    (measured, deep linear net: lambda_max(E H) 46 at seed 6's start, 6.7 after the pilot) or
    far flatter (seed 4: 3.7, then 7.1), so the curvature at the start says little about the
    runs. A pilot of ``pilot_steps`` full-batch gradient-descent steps on the regularised loss
    ``mean_i l(theta; x_i) + gam |theta|^2`` over ``n_samples`` fixed samples (a generator of its
    own) takes the point to where the runs settle; its step is a quarter of gradient descent's
    limit (``PILOT_MARGIN``), measured again every ``PILOT_CHECK_EVERY`` steps. There the
    learning rate is capped at ``sgd_limit / margin`` (:func:`numeric.sharpness.capped_learning_rate`),
    ``sgd_limit`` the mean-square stability limit of batch-``batch`` SGD: for batch 1 it lies
    several times below gradient descent's (the per-sample curvature fluctuates), and a
    learning rate capped by gradient descent's limit alone still diverges (measured: deep
    linear net, seed 4, eta = GD limit / 5.6). The pilot only chooses the start: the law is
    checked on the SGD runs from there, none of which is dropped. Without noise a
    scale-invariant weight (a normalisation layer) shrinks under decay, so for those models the
    pilot ends sharper than the runs settle and the cap is conservative (slow, not unstable).
    ``cap=False``: ``eta`` as requested (the limits are measured and reported all the same), for a
    model whose runs stabilise themselves where the linearised criterion does not apply.
    """
    check_positive("eta", eta)
    check_positive("gamma", gamma, allow_zero=True)
    samples = problem.sample(int(n_samples), torch.Generator().manual_seed(int(seed) + 104729))
    n_in = (None,) + (0,) * len(samples)
    decay = 2.0 * gamma * torch.eye(problem.n_params, dtype=torch.float64)

    def regularised(theta):
        return vmap(problem.flat_loss, in_dims=n_in)(theta, *samples).mean() + gamma * theta.pow(2).sum()

    def curvature(theta):
        Hs = problem.per_sample_hessians(theta, samples)
        return Hs, gd_stability_limit(Hs.mean(0) + decay)

    step = grad(regularised)
    theta = problem.theta0.clone()
    Hs, start_limit = curvature(theta)
    limit = gd_limit = start_limit
    for t in range(int(pilot_steps)):
        if t and t % PILOT_CHECK_EVERY == 0:
            _check_finite_pilot(theta, problem, t)
            _, limit = curvature(theta)
        theta = theta - min(eta, limit / PILOT_MARGIN) * step(theta)
    if pilot_steps:  # without a pilot the start's curvature is the end's
        _check_finite_pilot(theta, problem, int(pilot_steps))
        Hs, gd_limit = curvature(theta)
    sgd_limit = sgd_stability_limit(Hs + decay, batch)
    run_eta = capped_learning_rate(eta, sgd_limit, margin) if cap else float(eta)
    return StableStart(theta, run_eta, float(eta), gd_limit, sgd_limit, start_limit, float(margin), int(pilot_steps),
                       bool(cap))


def _check_finite_pilot(theta: torch.Tensor, problem: Problem, t: int):
    if not bool(torch.isfinite(theta).all()):
        raise DivergenceError(f"{problem.name}: the gradient-descent pilot diverged by step {t}")


def default_burn_in(eta: float, gamma: float, floor: int = 500) -> int:
    """Steps for the runs to forget their start. With decay, ``Q = theta^T A theta`` relaxes at
    rate ``4 eta gam (1 - eta gam)`` per step (numeric/balance.py's one-step identity), but the
    mean of theta along a direction that the loss does not curve, restored by the decay alone,
    relaxes by the factor ``1 - 2 eta gam`` per step, the square root of Q's: and ``E[Q]`` picks
    up that mean's offset linearly (``2 mu^T A (mu - mu_inf)``). ``20 / (4 eta gam (1 - eta gam))``
    steps leave ``<= e^-10`` of it (measured, deep linear net, seed 7306, eta 0.0099: with half
    of this burn-in one law's residual was 0.57 of its interval, with 1.5 times it 0.18). Without
    decay only the entropic force moves the orbit coordinate, at a rate ~ ``eta^2 |g|^2 / |theta|^2``
    per step: ``10 / eta^2`` steps is the default (enough when ``|g| ~ |theta|``; a slower model
    needs an explicit burn_in).

    >>> default_burn_in(0.05, 0.05), default_burn_in(0.05, 0.0)
    (2006, 4000)
    """
    rate = 4 * eta * gamma * (1 - eta * gamma)
    return int(max(floor, math.ceil(20 / rate))) if rate > 0 else int(max(floor, math.ceil(10 / eta**2)))


# ================================================================================= examples
class MLP(torch.nn.Module):
    """``f(x) = W_D s(... s(W_1 x + b_1) ...) + b_D`` with ``s`` relu, tanh or the identity."""

    def __init__(self, dims: Sequence[int], activation: str = "relu", bias: bool = False):
        super().__init__()
        if activation not in ("relu", "tanh", "linear"):
            raise InputError(f"unknown activation {activation!r}; choose relu, tanh or linear")
        self.activation = activation
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for k, lin in enumerate(self.layers):
            x = lin(x)
            if k < len(self.layers) - 1:
                x = torch.relu(x) if self.activation == "relu" else torch.tanh(x) if self.activation == "tanh" else x
        return x


class SelfAttention(torch.nn.Module):
    """One self-attention layer on a sequence ``X`` (tokens x d):
    ``softmax(Q K^T / sqrt(d_k)) V`` with ``Q = X W_Q^T``, ``K = X W_K^T``, ``V = X W_V^T``."""

    def __init__(self, d: int, d_k: int, d_v: int):
        super().__init__()
        self.q = torch.nn.Linear(d, d_k, bias=False)
        self.k = torch.nn.Linear(d, d_k, bias=False)
        self.v = torch.nn.Linear(d, d_v, bias=False)
        self.d_k = d_k

    def forward(self, X):
        s = self.q(X) @ self.k(X).transpose(-1, -2) / math.sqrt(self.d_k)
        return torch.softmax(s, dim=-1) @ self.v(X)


class NormalisedLinear(torch.nn.Module):
    """``f(x) = (theta / |theta|)^T x``: weight normalisation followed by a linear map."""

    def __init__(self, d: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.randn(d) / math.sqrt(d))

    def forward(self, x):
        return (x @ self.theta / self.theta.norm()).unsqueeze(-1)


class NormNet(torch.nn.Module):
    """``f(x) = W_2 N(W_1 x)`` with ``N`` an RMS normalisation ``z / sqrt(mean z^2)`` or a layer
    normalisation ``(z - mean z) / std z``, both without eps and without affine parameters."""

    def __init__(self, d: int, h: int, o: int, norm: str = "rms"):
        super().__init__()
        if norm not in ("rms", "layer"):
            raise InputError(f"unknown normalisation {norm!r}; choose rms or layer")
        self.lin1 = torch.nn.Linear(d, h, bias=False)
        self.lin2 = torch.nn.Linear(h, o, bias=False)
        self.norm = norm
        self.ln = torch.nn.LayerNorm(h, eps=0.0, elementwise_affine=False)

    def forward(self, x):
        z = self.lin1(x)
        z = z / z.pow(2).mean(-1, keepdim=True).sqrt() if self.norm == "rms" else self.ln(z)
        return self.lin2(z)


def redraw_parameters(module: torch.nn.Module, gain: float, seed: int) -> torch.nn.Module:
    """Redraw every parameter in place: matrices (and higher) i.i.d. ``N(0, gain^2 / fan_in)``
    (fan_in = the last axis), vectors ``N(0, (gain / 2)^2)``; returns the module."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            std = gain / math.sqrt(p.shape[-1]) if p.dim() >= 2 else gain / 2
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return module


def _dead_relu_units(model: torch.nn.Module, x_shape: tuple, n_probe: int = 512) -> int:
    """Hidden units of a ReLU :class:`MLP` that are inactive on all of ``n_probe`` Gaussian inputs."""
    if not isinstance(model, MLP) or model.activation != "relu":
        return 0
    x = torch.randn((n_probe,) + tuple(x_shape), generator=torch.Generator().manual_seed(4242), dtype=torch.float64)
    dead = 0
    with torch.no_grad():
        for lin in model.layers[:-1]:
            x = torch.relu(lin(x))
            dead += int((x.amax(0) <= 0).sum())
    return dead


TEACHER_PROBES = 512  # inputs on which a drawn teacher's signal is measured (teacher_sampler)


def teacher_sampler(teacher: torch.nn.Module, x_shape: tuple, noise: float = 0.5, gain: float = 1.5,
                    seed: int = 0) -> Callable:
    """``sampler(n, gen)``: ``x ~ N(0, I)`` of shape ``(n,) + x_shape``, ``y = teacher(x) + noise e``.

    The teacher's parameters are redrawn (seeded): matrices i.i.d. ``N(0, gain^2 / fan_in)``
    (fan_in = the last axis), vectors ``N(0, (gain / 2)^2)``, so that its output carries a
    signal of order one whatever the module's own initialisation. A draw whose output falls
    below half the label noise (``E|teacher(x)|^2 / d_out < (noise / 2)^2`` over
    ``TEACHER_PROBES`` inputs) is drawn again: a student of so faint a teacher decays to (near)
    zero under weight decay, and its balance laws are not resolved at any finite length
    (measured: deep linear net, seed 7394, signal power 0.075 of the noise's; every law at
    ~1e-7, below its own interval).
    """
    teacher = copy.deepcopy(teacher).to(torch.float64)
    probe = torch.randn((TEACHER_PROBES,) + tuple(x_shape), dtype=torch.float64,
                        generator=torch.Generator().manual_seed(int(seed) + 15485863))
    for k in range(50):
        redraw_parameters(teacher, gain, seed=int(seed) + 7919 + 104729 * k)
        with torch.no_grad():
            out = teacher(probe)
        if float(out.pow(2).mean()) >= (noise / 2) ** 2:
            break
    else:
        raise InputError(f"no teacher of {type(teacher).__name__} at gain {gain} carries a signal of half the label "
                         f"noise {noise} in 50 draws; raise the gain or lower the noise")
    for p in teacher.parameters():
        p.requires_grad_(False)

    def sampler(n, gen):
        x = torch.randn((n,) + tuple(x_shape), generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y = teacher(x)
        return x, y + noise * torch.randn(y.shape, generator=gen, dtype=torch.float64)

    return sampler


def _E(n, a, b):
    E = np.zeros((n, n))
    E[a, b] = 1.0
    return E


def _antisym_basis(h: int, fix_ones: bool = False) -> list:
    """Antisymmetric h x h matrices (E_ab - E_ba); with ``fix_ones`` a basis of those with S 1 = 0."""
    basis = [_E(h, a, b) - _E(h, b, a) for a in range(h) for b in range(a + 1, h)]
    if not fix_ones:
        return basis
    P = np.eye(h) - np.ones((h, h)) / h
    mats = np.stack([P @ S @ P for S in basis]).reshape(len(basis), -1)
    U, s, Vt = np.linalg.svd(mats, full_matrices=False)
    r = int((s > 1e-12 * s[0]).sum())
    return list(Vt[:r].reshape(r, h, h))


@dataclass
class Example:
    """A known model: a factory, the expected algebra (dimension, split, a spanning set), the
    derivation of that answer, and SGD settings for its balance laws."""

    name: str
    description: str
    module: Callable  # () -> nn.Module (float64, seeded by the caller)
    x_shape: tuple
    expected_dim: int
    expected_symmetric: int
    expected_antisymmetric: int
    known: Callable  # Problem -> (k, n, n) spanning set of the expected algebra
    derivation: str
    teacher_gain: float = 1.0
    sgd: dict | None = None  # eta, gamma (> 0), steps, burn_in, n_runs, batch[, uncapped: why no stability cap]
    sgd_zero_decay: dict | None = None  # the gam = 0 law's settings; None: not run (see derivation)

    def make(self, seed: int = 0):
        """``(model, sampler)``: the student (parameters drawn as the teacher's, with
        ``redraw_parameters`` at ``teacher_gain``, another seed; a ReLU student is drawn again
        while some hidden unit is inactive on every probe input, since such a unit never
        receives a gradient and its weights only decay, never reaching a stationary state at a
        finite time) and a teacher-student sampler (a teacher of the same architecture, label
        noise 0.5)."""
        model = self.module().to(torch.float64)
        for k in range(50):  # a ReLU student with a neuron dead on every input trains it never: draw again
            redraw_parameters(model, self.teacher_gain, seed=int(seed) + 1 + 7919 * k)
            if not _dead_relu_units(model, self.x_shape):
                break
        teacher = self.module().to(torch.float64)
        return model, teacher_sampler(teacher, self.x_shape, gain=self.teacher_gain, seed=seed)

    def problem(self, seed: int = 0) -> Problem:
        model, sampler = self.make(seed)
        return Problem.from_module(model, sampler, name=self.name)


def _relu_known(prob: Problem, dims, bias=False) -> np.ndarray:
    out = []
    for i, h in enumerate(dims[1:-1]):
        for k in range(h):
            act = {f"layers.{i}.weight": {0: _E(h, k, k)}, f"layers.{i + 1}.weight": {1: -_E(h, k, k)}}
            if bias:
                act[f"layers.{i}.bias"] = {0: _E(h, k, k)}
            out.append(mode_action(prob, act))
    return np.stack(out)


def _linear_known(prob: Problem, dims) -> np.ndarray:
    out = []
    for i, h in enumerate(dims[1:-1]):
        for a in range(h):
            for b in range(h):
                C = _E(h, a, b)
                out.append(mode_action(prob, {f"layers.{i}.weight": {0: C}, f"layers.{i + 1}.weight": {1: -C.T}}))
    return np.stack(out)


def _attention_known(prob: Problem, d_k: int) -> np.ndarray:
    return np.stack([mode_action(prob, {"k.weight": {0: _E(d_k, a, b)}, "q.weight": {0: -_E(d_k, a, b).T}})
                     for a in range(d_k) for b in range(d_k)])


def _norm_known(prob: Problem, h: int, norm: str) -> np.ndarray:
    out = [mode_action(prob, {"lin1.weight": {0: np.eye(h)}})]
    ones = np.ones((h, 1))
    for S in _antisym_basis(h, fix_ones=norm == "layer"):
        out.append(mode_action(prob, {"lin1.weight": {0: S}, "lin2.weight": {1: S}}))  # W2 -> W2 - W2 S = W2 S^T
    if norm == "layer":
        for j in range(h):
            e = np.zeros((h, 1))
            e[j] = 1.0
            out.append(mode_action(prob, {"lin1.weight": {0: ones @ e.T}}))  # z -> z + (e_j^T z) 1
            out.append(mode_action(prob, {"lin2.weight": {1: ones @ e.T}}))  # W2 -> W2 + W2 e_j 1^T
    return np.stack(out)


RELU_DIMS, LINEAR_DIMS, TANH_DIMS, RELU_BIAS_DIMS = (3, 4, 3, 2), (3, 3, 2, 2), (3, 4, 2), (3, 4, 2)


# Why the normalisation examples' SGD runs are not capped at batch-B SGD's linearised stability
# limit (:func:`stable_start`): that limit is the wrong yardstick for a scale-invariant weight.
SELF_STABILISING = (
    "scale-invariant weight: the curvature along it falls as 1/|W|^2, and a step changes |W|^2 only by "
    "eta^2 |g|^2 - 4 eta gam (1 - eta gam) |W|^2 (g is orthogonal to W), so a large kick grows |W| and "
    "lowers the curvature it met. The linearised mean-square limit does not see that: after the noise-free "
    "pilot has shrunk |W| under decay, or with samples where W x nears 0 (RMS: E[1/|W x|^4] diverges for "
    "h = 3), it put eta thousands of times below the design (measured, seed 0: 4.9e-4 for weight "
    "normalisation, 3.0e-6 for RMS, a 50-million-step run). At the design eta from the model's own point, "
    "seeds 0-7, 64 runs, one default burn-in: every run finite, every law within 0.28 of its interval "
    "(a non-finite run still raises DivergenceError)")


def examples() -> dict:
    """The known models, by name (small, so that every check runs in seconds on a CPU)."""
    ex = [
        Example(
            "relu_mlp", "bias-free ReLU MLP 3-4-3-2", lambda: MLP(RELU_DIMS, "relu"), (3,), 7, 7, 0,
            lambda p: _relu_known(p, RELU_DIMS),
            "relu(c z) = c relu(z) for c > 0: scaling hidden neuron k's incoming row by c and its outgoing column "
            "by 1/c leaves f unchanged, generator E_kk on the incoming side and -E_kk on the outgoing side (one "
            "per hidden neuron, 4 + 3 = 7). A left action L on a hidden layer must commute with relu on every "
            "activation pattern, so L is diagonal: nothing else. All 7 are diagonal, hence symmetric, and none "
            "is semidefinite (+ on one side, - on the other). No SGD check by default: with weight decay this "
            "small bias-free student prunes hidden units (a unit whose incoming weights are all negative on the "
            "non-negative outputs of the layer below never fires again), and the slow approach of a dying unit's "
            "theta^T A theta to 0 is a genuine non-stationarity that a finite window resolves (measured: a "
            "residual 1.3 x its bound for one unit at eta = 0.02, gam = 0.05, 32 runs); without decay the orbit "
            "relaxes at ~eta^2 |g|^2 / |theta|^2 per step (~1e-4). relu_mlp_bias carries the ReLU SGD check; "
            "theorems 5 and 6 check ReLU layer and neuron balance on a wider net.",
            teacher_gain=2.0),
        Example(
            "deep_linear", "deep linear net 3-3-2-2", lambda: MLP(LINEAR_DIMS, "linear"), (3,), 13, 9, 4,
            lambda p: _linear_known(p, LINEAR_DIMS),
            "f = W3 W2 W1 x depends on adjacent pairs only through products: W_i -> C W_i, W_{i+1} -> -W_{i+1} C "
            "for any h_i x h_i matrix C at each hidden layer (GL(h_i)): 3^2 + 2^2 = 13. The generator is symmetric "
            "iff C is (3*4/2 + 2*3/2 = 9), antisymmetric iff C is (3 + 1 = 4); 9 + 4 = 13 (closed under A -> A^T).",
            teacher_gain=1.0,
            sgd=dict(eta=0.05, gamma=0.05, steps=1500, n_runs=32, batch=1),
            sgd_zero_decay=dict(eta=0.05, gamma=0.0, steps=1500, burn_in=9000, n_runs=32, batch=1)),
        Example(
            "self_attention", "one self-attention layer, d = 3, d_k = 2, d_v = 2, 4 tokens",
            lambda: SelfAttention(3, 2, 2), (4, 3), 4, 3, 1, lambda p: _attention_known(p, 2),
            "The scores X W_Q^T W_K X^T depend on (W_Q, W_K) only through W_Q^T W_K: W_K -> C W_K, W_Q -> -C^T W_Q "
            "for any d_k x d_k C (GL(d_k), 4). Nothing else: a right action on W_Q or W_K changes the bilinear "
            "form on generic tokens unless it is a multiple of the identity (already C = cI); softmax's row-shift "
            "invariance would need W_Q^T (delta W_K) = 0, impossible for d_k <= d; W_V enters the output linearly. "
            "Symmetric iff C is (3), antisymmetric iff C is (1). No gam = 0 SGD check by default: in 3000 + 1500 "
            "steps the per-run averages spread wider than the gradient noise they balance (measured: interval "
            "14 against eta E|g^T A g| ~ 3 for one generator), an inconclusive test.",
            teacher_gain=1.0,
            sgd=dict(eta=0.05, gamma=0.05, steps=1500, n_runs=32, batch=1)),
        Example(
            "normalised_linear", "weight normalisation followed by a linear map, f = (theta/|theta|)^T x, d = 4",
            lambda: NormalisedLinear(4), (4,), 1, 1, 0, lambda p: np.stack([mode_action(p, {"theta": {0: np.eye(4)}})]),
            "g = 2 r (x - (theta.x / |theta|^2) theta) / |theta|, so g^T M theta = 0 for all x needs "
            "M theta = (theta^T M theta / |theta|^2) theta for every theta, i.e. M = c I: the scaling A = I only. "
            "It is positive definite: at gam = 0 there is no stationary state (|theta| grows, Appendix B.1).",
            teacher_gain=1.0, sgd=dict(eta=0.05, gamma=0.1, steps=1500, n_runs=32, batch=1, uncapped=SELF_STABILISING)),
        Example(
            "rms_norm", "linear map, RMS normalisation, linear readout: f = W2 N(W1 x), d = 4, h = 3, o = 2",
            lambda: NormNet(4, 3, 2, "rms"), (4,), 4, 1, 3, lambda p: _norm_known(p, 3, "rms"),
            "N(c z) = N(z) for c > 0: the scaling W1 -> c W1 (A = I on W1; positive semidefinite, so only gam > 0 "
            "has a stationary state). N commutes with rotations, N(O z) = O N(z), so W1 -> O W1, W2 -> W2 O^T is a "
            "symmetry: h(h-1)/2 = 3 antisymmetric generators (rotations, kept by the entropic loss). Total 1 + 3 = 4.",
            teacher_gain=1.0, sgd=dict(eta=0.05, gamma=0.1, steps=1500, n_runs=32, batch=1,
                                        uncapped=SELF_STABILISING)),
        Example(
            "layer_norm", "linear map, layer normalisation (centred), linear readout, d = 4, h = 3, o = 2",
            lambda: NormNet(4, 3, 2, "layer"), (4,), 8, 3, 1, lambda p: _norm_known(p, 3, "layer"),
            "N(z) = sqrt(h) P z / |P z|, P = I - 11^T/h. Symmetries: W1 -> c W1 (1); W1 -> W1 + 1 (w^T W1) for any "
            "w (shifts z along 1, removed by centring; h = 3); W2 -> W2 + W2 v 1^T for any v (N(z) is orthogonal "
            "to 1; h = 3); rotations of the plane orthogonal to 1, W1 -> O W1, W2 -> W2 O^T ((h-1)(h-2)/2 = 1). "
            "Total 1 + 2h + (h-1)(h-2)/2 = 8. Symmetric: I and 11^T on W1, 11^T on W2 (3); antisymmetric: the "
            "rotation (1); the other 4 are neither: the algebra is not closed under transposition (w 1^T is not a "
            "symmetry). The full ansatz finds 110: the shifts may be any linear function of all 18 parameters "
            "(W1 -> W1 + 1 w(theta)^T: 4 x 18, W2 -> W2 + u(theta) 1^T: 2 x 18), plus the scaling and the rotation.",
            teacher_gain=1.0),
        Example(
            "tanh_mlp", "tanh MLP 3-4-2 with biases", lambda: MLP(TANH_DIMS, "tanh", bias=True), (3,), 0, 0, 0,
            lambda p: np.zeros((0, p.n_params, p.n_params)),
            "tanh is not homogeneous and the biases pin every pre-activation: no left action on the hidden layer "
            "commutes with tanh (only the discrete sign flips and permutations do, Theorem 3), a right action on W1 "
            "changes W1 x, and the output layer is a free linear map. Dimension 0 within the ansatz (and within "
            "the full ansatz).", teacher_gain=1.0),
        Example(
            "relu_mlp_bias", "ReLU MLP 3-4-2 with biases", lambda: MLP(RELU_BIAS_DIMS, "relu", bias=True), (3,), 4, 4, 0,
            lambda p: _relu_known(p, RELU_BIAS_DIMS, bias=True),
            "as relu_mlp, with the hidden bias b_k scaled with neuron k's incoming row (the vector ansatz M b "
            "contains per-entry scalings); the output bias is pinned: one per hidden neuron, 4. SGD at gam = 0.1 "
            "and three default burn-ins: a ReLU student's units change their role slowly (a unit recruited or "
            "retired drifts its theta^T A theta for tens of thousands of steps at gam = 0.05: measured, seed 2, "
            "the ensemble mean still moving after 32000 steps, residual 1.1 of its interval); the stronger decay "
            "restores those directions twice as fast (seed 2 at 0.14 of the interval, seed 3 at 0.05 after three "
            "burn-ins, 1.33 after one), but not at every draw (seed 7: 1.01; at the full budget's size "
            "1.28, and 1.06 after ten burn-ins, on a unit on its way to being pruned), so the main job does not "
            "check this law (theorems/symmetries.py MAIN_JOB_SGD).",
            teacher_gain=1.5, sgd=dict(eta=0.05, gamma=0.1, steps=1500, burn_in=3 * 1006, n_runs=32, batch=4)),
    ]
    return {e.name: e for e in ex}
