"""Fused ensemble SGD for the linear-network family: one Triton launch for many steps.

The batched reference engine (:class:`numeric.linear_ensemble.LinearEnsemble`) issues a
dozen tiny batched matmuls per SGD step; on a GPU it is bound by kernel launches and
memory traffic, not arithmetic. Here each GPU program owns ``BLOCK_R`` runs, loads their
weights into registers once, and then, for ``n_steps`` steps without leaving the kernel,

* draws the step's Gaussian data in-kernel (Philox4x32-10, Triton's ``tl.philox``),
* forms ``u = A xi`` and ``y = V xi + E zeta`` (all fixed maps folded as in LinearEnsemble),
* runs the forward and backward pass of ``f = M_O W_D ... W_1 u`` (D <= 4 layers),
* applies ``W_i <- W_i - eta ((2/B) sum_b delta_i h_{i-1}^T + 2 gam W_i)``,

and writes the weights back once. Every dimension is padded to a power of two (>= 4);
padded rows/columns of the weights stay exactly zero because the padded entries of every
fixed map are zero.

Random-stream layout (shared by the kernel and :func:`philox_normals`, its pure-torch
twin): for run ``r``, step ``t``, sample ``b`` and quad ``q`` the Philox counter is
``(c0, c1, c2, c3) = ((r B + b) NQ + q, t, 0, 0)`` with key ``(seed mod 2^32, seed >> 32)``.
Its four 32-bit outputs become four uniforms (Triton's ``uint_to_uniform_float``) and two
Box-Muller pairs, i.e. four standard normals ``n_{4q..4q+3}``. Quads ``0 .. DXP/4 - 1``
give ``xi`` (the first ``dx`` are used), the next ``DYP/4`` quads give the label noise
``zeta``. Normals are float32 (Box-Muller clamps ``u1 >= 1e-7``, i.e. ``|n| <= 5.68``:
a truncation of mass 1.3e-8, far below any SGD error bar) and are cast to the weight dtype;
all SGD arithmetic runs in the weight dtype (float64 or float32).

Deterministic mode (``gradient="exact"``): the batch is the ``dx`` quadrature points
``xi_b = sqrt(dx) e_b`` with no label noise. The loss is quadratic in the data,
``E[e] = 0`` and ``(1/dx) sum_b xi_b xi_b^T = I = E[xi xi^T]``, so the batch-mean gradient
is exactly the population gradient: this is full-batch GD on ``L``, identical for every
engine up to floating-point rounding.

Without Triton (this module imports cleanly) the ``"torch"`` backend runs the same stream
and arithmetic in eager torch: the CPU-checkable reference of the kernel.

>>> import numpy as np
>>> from numeric.linear_ensemble import LinearTeacher
>>> teacher = LinearTeacher(np.ones((2, 3)), np.eye(3), 0.1 * np.eye(2))
>>> ens = FusedLinearEnsemble(teacher, [4], n_runs=3, eta=0.01, backend="torch", device="cpu")
>>> ens.run(5); ens.step_count
5
>>> philox4x32(*[torch.zeros(1, dtype=torch.int64)] * 6)  # Random123 known answer
(tensor([1713891541]), tensor([3781805453]), tensor([3159862348]), tensor([2600524760]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.errors import InputError
from .linear_ensemble import LinearEnsemble

try:  # optional: only the GPU path needs Triton
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent (CI)
    triton = None
    tl = None

MAX_LAYERS = 4  # weight matrices the kernel unrolls (three hidden layers)
MAX_PADDED_DIM = 32  # largest padded width kept in registers per run
MAX_BATCH = 16  # the per-step batch loop is unrolled
BACKENDS = ("triton", "torch")
GRADIENTS = ("sgd", "exact")

_MASK32 = 0xFFFFFFFF
_PHILOX_ROUND_A, _PHILOX_ROUND_B = 0xD2511F53, 0xCD9E8D57
_PHILOX_KEY_A, _PHILOX_KEY_B = 0x9E3779B9, 0xBB67AE85
_UNIFORM_SCALE = 4.6566127342e-10  # Triton's uint_to_uniform_float scale for 32-bit ints


def triton_available() -> bool:
    """True when Triton imported (it still needs a CUDA device or TRITON_INTERPRET=1)."""
    return triton is not None


def padded(n: int) -> int:
    """The kernel's padded width: the next power of two, at least 4 (one Philox quad).

    >>> [padded(n) for n in (1, 3, 4, 5, 6, 17)]
    [4, 4, 4, 8, 8, 32]
    """
    return max(4, 1 << (int(n) - 1).bit_length())


# ------------------------------------------------------------------ Philox in torch
def _umulhi32(a: torch.Tensor, b: int) -> torch.Tensor:
    """High 32 bits of ``a * b`` for 32-bit unsigned values held in int64 (no overflow:
    ``floor(a b / 2^32) = floor((a b_hi + floor(a b_lo / 2^16)) / 2^16)``)."""
    b_lo, b_hi = b & 0xFFFF, b >> 16
    return ((a * b_hi) + ((a * b_lo) >> 16)) >> 16


def philox4x32(c0, c1, c2, c3, k0, k1, n_rounds: int = 10):
    """Philox4x32-``n_rounds`` on int64 tensors holding uint32 values, exactly as
    ``triton.language.philox`` (Random123's round function and key schedule)."""
    for _ in range(n_rounds):
        _c0, _c2 = c0, c2
        c0 = _umulhi32(_c2, _PHILOX_ROUND_B) ^ c1 ^ k0
        c2 = _umulhi32(_c0, _PHILOX_ROUND_A) ^ c3 ^ k1
        c1 = (_c2 * _PHILOX_ROUND_B) & _MASK32
        c3 = (_c0 * _PHILOX_ROUND_A) & _MASK32
        k0 = (k0 + _PHILOX_KEY_A) & _MASK32
        k1 = (k1 + _PHILOX_KEY_B) & _MASK32
    return c0, c1, c2, c3


def _uint_to_uniform(x: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float`` for 32-bit values: bitcast to int32, fold the
    negative half (``~x``), scale in float32 into [0, 1)."""
    x = torch.where(x >= 2**31, x - 2**32, x)
    x = torch.where(x < 0, -x - 1, x)
    return x.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32)


def _box_muller(u1: torch.Tensor, u2: torch.Tensor):
    """Triton's ``pair_uniform_to_normal`` in float32."""
    u1 = torch.clamp(u1, min=1.0e-7)
    th = torch.tensor(6.283185307179586, dtype=torch.float32) * u2
    r = torch.sqrt(-2.0 * torch.log(u1))
    return r * torch.cos(th), r * torch.sin(th)


def philox_normals(seed: int, runs: torch.Tensor, steps: torch.Tensor, batch: int, n_quads: int) -> torch.Tensor:
    """The kernel's normals for ``runs`` x ``steps``: shape (T, R, batch, 4 n_quads), float32.

    Quad ``q`` of sample ``b`` of run ``r`` at step ``t`` uses counter
    ``((r batch + b) n_quads + q, t, 0, 0)`` and key ``(seed mod 2^32, seed >> 32)``.

    >>> z = philox_normals(0, torch.arange(64), torch.arange(64), batch=1, n_quads=2)
    >>> tuple(z.shape), abs(float(z.mean())) < 0.02, abs(float(z.var()) - 1) < 0.03
    ((64, 64, 1, 8), True, True)
    """
    dev = runs.device
    r = runs.to(torch.int64).view(1, -1, 1, 1)
    t = (steps.to(torch.int64) & _MASK32).view(-1, 1, 1, 1)
    b = torch.arange(batch, device=dev, dtype=torch.int64).view(1, 1, -1, 1)
    q = torch.arange(n_quads, device=dev, dtype=torch.int64).view(1, 1, 1, -1)
    c0 = (((r * batch + b) * n_quads + q) & _MASK32).expand(t.shape[0], -1, -1, -1)
    c1 = t.expand_as(c0)
    zero = torch.zeros_like(c0)
    key = int(seed)
    k0 = torch.full_like(c0, key & _MASK32)
    k1 = torch.full_like(c0, (key >> 32) & _MASK32)
    x0, x1, x2, x3 = philox4x32(c0, c1, zero, zero, k0, k1)
    n0, n1 = _box_muller(_uint_to_uniform(x0), _uint_to_uniform(x1))
    n2, n3 = _box_muller(_uint_to_uniform(x2), _uint_to_uniform(x3))
    return torch.stack([n0, n1, n2, n3], dim=-1).flatten(-2)  # component 4q + m <- n_m


# ------------------------------------------------------------------ exact gradient
def twin_steps(ens, z: torch.Tensor, dxp: int) -> None:
    """Advance ``ens`` (any LinearEnsemble) one SGD step per leading row of the kernel's
    normals ``z`` (steps, R, B, dxp + dyp) with the torch twin's arithmetic: the data maps
    of the kernel (``xi`` the first ``dx`` lanes, ``zeta`` lanes ``dxp .. dxp + dy``), the
    batched engine's gradients, the update ``W <- W - eta (g + 2 gam W)`` in place."""
    dx, dy = ens.teacher.dx, ens.teacher.dy
    decay = 2.0 * ens.weight_decay
    for k in range(z.shape[0]):
        xi, zeta = z[k, ..., :dx], z[k, ..., dxp : dxp + dy]
        u = xi @ ens._in_map.T
        y = xi @ ens._V_map.T + zeta @ ens._e_map.T
        for W, g in zip(ens.weights, ens.batch_gradients(u, y)):
            if decay:
                g = g + decay * W
            W.sub_(ens.eta * g)
        ens.step_count += 1


def quadrature_batch(ens) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic batch ``xi_b = sqrt(dx) e_b`` (b < dx), no label noise, mapped to
    the net input ``u`` and label ``y`` of any LinearEnsemble: shapes (R, dx, d0), (R, dx, dy).
    Its batch-mean gradient equals the population gradient exactly (module docstring)."""
    dx = ens.teacher.dx
    xi = math.sqrt(dx) * torch.eye(dx, dtype=ens.dtype, device=ens.device)
    u = (xi @ ens._in_map.T).expand(ens.n_runs, -1, -1)
    y = (xi @ ens._V_map.T).expand(ens.n_runs, -1, -1)
    return u, y


def exact_gd_step(ens) -> None:
    """One full-batch GD step on the population loss, with LinearEnsemble's arithmetic
    (``g = batch-mean gradient + 2 gam W``, ``W -= eta g``), for any LinearEnsemble."""
    grads = ens.batch_gradients(*quadrature_batch(ens))
    decay = 2.0 * ens.weight_decay
    for W, g in zip(ens.weights, grads):
        if decay:
            g = g + decay * W
        W.sub_(ens.eta * g)
    ens.step_count += 1
    ens._track_divergence()


# ------------------------------------------------------------------ applicability
def fused_unsupported_reason(hidden, dx: int, dy: int, d0: int | None = None, batch: int = 1,
                             n_runs: int = 1, dtype=torch.float64) -> str | None:
    """Why the fused kernel cannot run this problem, or None when it can.

    >>> fused_unsupported_reason([6], dx=4, dy=3) is None
    True
    >>> fused_unsupported_reason([6, 6, 6, 6], dx=4, dy=3)
    'depth 5 > 4 layers'
    """
    d0 = dx if d0 is None else d0
    dims = [d0, *hidden]
    if len(hidden) + 1 > MAX_LAYERS:
        return f"depth {len(hidden) + 1} > {MAX_LAYERS} layers"
    widest = max(padded(d) for d in [*dims, dx, dy])
    if widest > MAX_PADDED_DIM:
        return f"a padded width {widest} > {MAX_PADDED_DIM} (weights would spill from registers)"
    if not 1 <= int(batch) <= MAX_BATCH:
        return f"batch {batch} outside 1..{MAX_BATCH}"
    if dtype not in (torch.float32, torch.float64):
        return f"dtype {dtype} (float32 or float64 only)"
    n_quads = (padded(dx) + padded(dy)) // 4
    if int(n_runs) * max(int(batch), dx) * n_quads >= 2**31:
        return "n_runs * batch * quads >= 2^31 (Philox counter c0 overflows)"
    return None


# ------------------------------------------------------------------ the engine
@dataclass
class FusedLinearEnsemble(LinearEnsemble):
    """LinearEnsemble whose ``run`` is one fused kernel launch per ``check_every`` steps.

    ``backend="triton"`` runs the Triton kernel (CUDA, or the CPU interpreter under
    ``TRITON_INTERPRET=1``); ``backend="torch"`` runs the same random stream and the
    reference arithmetic in eager torch (slow; the CPU check of the kernel).
    ``gradient="exact"`` replaces the SGD batch by the quadrature batch (full-batch GD).
    Everything else (weights, observables, divergence errors) is LinearEnsemble's.
    Divergence is detected at launch boundaries: the reported step is the end of the
    launch in which the run went bad.
    """

    backend: str = "triton"
    gradient: str = "sgd"
    block_r: int = 64
    num_warps: int = 4

    def __post_init__(self):
        super().__post_init__()
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.gradient not in GRADIENTS:
            raise InputError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        if int(self.seed) < 0 or int(self.seed) >= 2**64:
            raise InputError(f"seed must be in [0, 2^64) for the Philox key, got {self.seed}")
        t = self.teacher
        why = fused_unsupported_reason(self.hidden, t.dx, t.dy, self.dims[0], self.batch, self.n_runs, self.dtype)
        if why:
            raise InputError(f"the fused engine does not support this problem: {why}")
        if self.backend == "triton" and triton is None:
            raise InputError("backend 'triton' needs the triton package (pip install '.[gpu]')")
        self.DXP, self.DYP = padded(t.dx), padded(t.dy)
        self.n_quads = (self.DXP + self.DYP) // 4
        self._maps = None

    # ------------------------------------------------------------------ stepping
    def step(self):
        self._advance(1)

    def run(self, n_steps: int, progress=None):
        """Advance every run by ``n_steps``; one launch per ``check_every`` steps."""
        self._run_in_calls(n_steps, progress)
        self.raise_if_diverged()  # also for n_steps = 0: a state loaded diverged is reported

    def _advance(self, n: int):
        if self.step_count + n >= 2**32:
            raise InputError("the Philox step counter is 32-bit: at most 2^32 steps per ensemble")
        if self.backend == "torch":
            self._advance_torch(n)
        else:
            self._advance_triton(n)
            self.step_count += n
        self._track_divergence()

    def _advance_torch(self, n: int):
        """The reference: LinearEnsemble's arithmetic on the kernel's random stream."""
        if self.gradient == "exact":
            for _ in range(n):
                exact_gd_step(self)
            return
        steps = torch.arange(self.step_count, self.step_count + n, device=self.device)
        z = philox_normals(self.seed, torch.arange(self.n_runs, device=self.device), steps,
                           self.batch, self.n_quads).to(self.dtype)
        twin_steps(self, z, self.DXP)

    def _padded_maps(self):
        """Fixed maps zero-padded to the kernel's widths (built once), and the float
        hyper-parameters as a tensor, so float64 runs get a float64 eta rather than a
        float32 kernel scalar (rebuilt when eta or weight_decay are changed)."""
        if self._maps is None:
            P = [padded(d) for d in self.dims]

            def pad(a, rows, cols):
                out = torch.zeros(rows, cols, dtype=self.dtype, device=self.device)
                out[: a.shape[0], : a.shape[1]] = a
                return out

            self._maps = (
                pad(self._in_map, P[0], self.DXP),
                pad(self._V_map, self.DYP, self.DXP),
                pad(self._e_map, self.DYP, self.DYP),
                pad(self._M_O, self.DYP, P[-1]),
            )
        key = (float(self.eta), float(self.weight_decay))
        if getattr(self, "_hyper_key", None) != key:
            self._hyper = torch.tensor(
                [self.eta, 2.0 * self.weight_decay, 2.0 / self._kernel_batch(), math.sqrt(self.teacher.dx)],
                dtype=self.dtype, device=self.device,
            )
            self._hyper_key = key
        return (*self._maps, self._hyper)

    def _kernel_batch(self) -> int:
        return self.teacher.dx if self.gradient == "exact" else int(self.batch)

    def _advance_triton(self, n: int):
        self.weights = [W.contiguous() for W in self.weights]
        A, Vm, Em, MO, hyper = self._padded_maps()
        dims = self.dims + [1] * (MAX_LAYERS + 1 - len(self.dims))
        P = [padded(d) for d in dims]
        Ws = self.weights + [self.weights[0]] * (MAX_LAYERS - len(self.weights))  # unused slots
        grid = (triton.cdiv(self.n_runs, self.block_r),)
        _fused_linear_sgd_kernel[grid](
            *Ws, A, Vm, Em, MO, hyper,
            self.n_runs, self.step_count, n, int(self.seed),
            D0=dims[0], D1=dims[1], D2=dims[2], D3=dims[3], D4=dims[4],
            P0=P[0], P1=P[1], P2=P[2], P3=P[3], P4=P[4], PL=padded(self.dims[-1]),
            DXP=self.DXP, DYP=self.DYP, NQ=self.n_quads,
            N_LAYERS=len(self.weights), BATCH=self._kernel_batch(), EXACT=self.gradient == "exact",
            BLOCK_R=int(self.block_r), num_warps=int(self.num_warps),
        )


# ------------------------------------------------------------------ the kernel
# Layout: the run index is the LAST (fastest) axis of every register tensor - weights are
# (P_out, P_in, BLOCK_R), activations (P, BLOCK_R). Triton hands the fastest axis to the
# threads first, so each thread owns whole runs: every matrix-vector product reduces over
# an axis held in that thread's registers (no shuffles, no shared memory), and the slice
# layouts of consecutive layers differ only by an in-thread register permutation.
if triton is not None:

    @triton.jit
    def _fused_linear_sgd_kernel(
        w1_ptr, w2_ptr, w3_ptr, w4_ptr,  # (R, D_i, D_{i-1}) contiguous; unused slots alias w1
        a_ptr, v_ptr, e_ptr, mo_ptr, hyper_ptr,  # padded fixed maps; [eta, 2 gam, 2/B, sqrt(dx)]
        n_runs, step0, n_steps, seed,
        D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr, D3: tl.constexpr, D4: tl.constexpr,
        P0: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr, P4: tl.constexpr,
        PL: tl.constexpr, DXP: tl.constexpr, DYP: tl.constexpr, NQ: tl.constexpr,
        N_LAYERS: tl.constexpr, BATCH: tl.constexpr, EXACT: tl.constexpr, BLOCK_R: tl.constexpr,
    ):
        pid = tl.program_id(0)
        runs = pid * BLOCK_R + tl.arange(0, BLOCK_R)
        live = runs < n_runs
        runs64 = runs.to(tl.int64)
        eta = tl.load(hyper_ptr + 0)
        decay2 = tl.load(hyper_ptr + 1)
        two_over_b = tl.load(hyper_ptr + 2)
        quad_scale = tl.load(hyper_ptr + 3)

        i0 = tl.arange(0, P0)
        i1 = tl.arange(0, P1)
        i2 = tl.arange(0, P2)
        i3 = tl.arange(0, P3)
        i4 = tl.arange(0, P4)
        iL = tl.arange(0, PL)
        kx = tl.arange(0, DXP)
        ky = tl.arange(0, DYP)
        A = tl.load(a_ptr + i0[:, None] * DXP + kx[None, :])[:, :, None]  # (P0, DXP, 1)
        Vm = tl.load(v_ptr + ky[:, None] * DXP + kx[None, :])[:, :, None]  # (DYP, DXP, 1)
        Em = tl.load(e_ptr + ky[:, None] * DYP + ky[None, :])[:, :, None]  # (DYP, DYP, 1)
        MO = tl.load(mo_ptr + ky[:, None] * PL + iL[None, :])[:, :, None]  # (DYP, PL, 1)

        # weights -> registers, once per launch
        rr = runs64[None, None, :]
        lv = live[None, None, :]
        off1 = rr * (D1 * D0) + i1[:, None, None] * D0 + i0[None, :, None]
        m1 = lv & (i1[:, None, None] < D1) & (i0[None, :, None] < D0)
        W1 = tl.load(w1_ptr + off1, mask=m1, other=0.0)  # (P1, P0, R)
        if N_LAYERS >= 2:
            off2 = rr * (D2 * D1) + i2[:, None, None] * D1 + i1[None, :, None]
            m2 = lv & (i2[:, None, None] < D2) & (i1[None, :, None] < D1)
            W2 = tl.load(w2_ptr + off2, mask=m2, other=0.0)
        if N_LAYERS >= 3:
            off3 = rr * (D3 * D2) + i3[:, None, None] * D2 + i2[None, :, None]
            m3 = lv & (i3[:, None, None] < D3) & (i2[None, :, None] < D2)
            W3 = tl.load(w3_ptr + off3, mask=m3, other=0.0)
        if N_LAYERS >= 4:
            off4 = rr * (D4 * D3) + i4[:, None, None] * D3 + i3[None, :, None]
            m4 = lv & (i4[:, None, None] < D4) & (i3[None, :, None] < D3)
            W4 = tl.load(w4_ptr + off4, mask=m4, other=0.0)

        qx = tl.arange(0, DXP // 4)
        qy = tl.arange(0, DYP // 4)
        for t in range(n_steps):
            c1 = (step0 + t).to(tl.uint32)
            G1 = tl.zeros([P1, P0, BLOCK_R], dtype=W1.dtype)
            if N_LAYERS >= 2:
                G2 = tl.zeros([P2, P1, BLOCK_R], dtype=W1.dtype)
            if N_LAYERS >= 3:
                G3 = tl.zeros([P3, P2, BLOCK_R], dtype=W1.dtype)
            if N_LAYERS >= 4:
                G4 = tl.zeros([P4, P3, BLOCK_R], dtype=W1.dtype)
            for b in tl.static_range(BATCH):
                # ---- data for sample b of every run: xi (DXP, R), zeta (DYP, R)
                if EXACT:
                    xi = tl.where((kx[:, None] == b) & live[None, :], quad_scale, 0.0).to(W1.dtype)
                    zeta = tl.zeros([DYP, BLOCK_R], dtype=W1.dtype)
                else:
                    cx = ((runs[None, :] * BATCH + b) * NQ + qx[:, None]).to(tl.uint32)
                    r0, r1, r2, r3 = tl.philox(seed, cx, cx * 0 + c1, cx * 0, cx * 0)
                    n0, n1 = tl.random.pair_uniform_to_normal(
                        tl.random.uint_to_uniform_float(r0), tl.random.uint_to_uniform_float(r1))
                    n2, n3 = tl.random.pair_uniform_to_normal(
                        tl.random.uint_to_uniform_float(r2), tl.random.uint_to_uniform_float(r3))
                    # join(join(n0, n2), join(n1, n3))[q, r, i, j] = n_{2i+j}; move r last and
                    # flatten (q, i, j): component 4q + m <- n_m
                    nx = tl.permute(tl.join(tl.join(n0, n2), tl.join(n1, n3)), (0, 2, 3, 1))
                    xi = tl.reshape(nx, [DXP, BLOCK_R]).to(W1.dtype)
                    cy = ((runs[None, :] * BATCH + b) * NQ + DXP // 4 + qy[:, None]).to(tl.uint32)
                    s0, s1, s2, s3 = tl.philox(seed, cy, cy * 0 + c1, cy * 0, cy * 0)
                    z0, z1 = tl.random.pair_uniform_to_normal(
                        tl.random.uint_to_uniform_float(s0), tl.random.uint_to_uniform_float(s1))
                    z2, z3 = tl.random.pair_uniform_to_normal(
                        tl.random.uint_to_uniform_float(s2), tl.random.uint_to_uniform_float(s3))
                    nz = tl.permute(tl.join(tl.join(z0, z2), tl.join(z1, z3)), (0, 2, 3, 1))
                    zeta = tl.reshape(nz, [DYP, BLOCK_R]).to(W1.dtype)
                u = tl.sum(A * xi[None, :, :], axis=1)  # (P0, R)
                y = tl.sum(Vm * xi[None, :, :], axis=1) + tl.sum(Em * zeta[None, :, :], axis=1)  # (DYP, R)
                # ---- forward
                h1 = tl.sum(W1 * u[None, :, :], axis=1)
                hL = h1
                if N_LAYERS >= 2:
                    h2 = tl.sum(W2 * h1[None, :, :], axis=1)
                    hL = h2
                if N_LAYERS >= 3:
                    h3 = tl.sum(W3 * h2[None, :, :], axis=1)
                    hL = h3
                if N_LAYERS >= 4:
                    h4 = tl.sum(W4 * h3[None, :, :], axis=1)
                    hL = h4
                out = tl.sum(MO * hL[None, :, :], axis=1)  # (DYP, R)
                dL = tl.sum(MO * (out - y)[:, None, :], axis=0)  # M_O^T (f - y): (PL, R)
                # ---- backward (old weights), accumulate outer products
                if N_LAYERS == 1:
                    d1 = dL
                if N_LAYERS == 2:
                    d2 = dL
                    d1 = tl.sum(W2 * d2[:, None, :], axis=0)
                if N_LAYERS == 3:
                    d3 = dL
                    d2 = tl.sum(W3 * d3[:, None, :], axis=0)
                    d1 = tl.sum(W2 * d2[:, None, :], axis=0)
                if N_LAYERS == 4:
                    d4 = dL
                    d3 = tl.sum(W4 * d4[:, None, :], axis=0)
                    d2 = tl.sum(W3 * d3[:, None, :], axis=0)
                    d1 = tl.sum(W2 * d2[:, None, :], axis=0)
                G1 += d1[:, None, :] * u[None, :, :]
                if N_LAYERS >= 2:
                    G2 += d2[:, None, :] * h1[None, :, :]
                if N_LAYERS >= 3:
                    G3 += d3[:, None, :] * h2[None, :, :]
                if N_LAYERS >= 4:
                    G4 += d4[:, None, :] * h3[None, :, :]
            # ---- SGD update with weight decay: W <- W - eta ((2/B) G + 2 gam W)
            W1 = W1 - eta * (two_over_b * G1 + decay2 * W1)
            if N_LAYERS >= 2:
                W2 = W2 - eta * (two_over_b * G2 + decay2 * W2)
            if N_LAYERS >= 3:
                W3 = W3 - eta * (two_over_b * G3 + decay2 * W3)
            if N_LAYERS >= 4:
                W4 = W4 - eta * (two_over_b * G4 + decay2 * W4)

        tl.store(w1_ptr + off1, W1, mask=m1)
        if N_LAYERS >= 2:
            tl.store(w2_ptr + off2, W2, mask=m2)
        if N_LAYERS >= 3:
            tl.store(w3_ptr + off3, W3, mask=m3)
        if N_LAYERS >= 4:
            tl.store(w4_ptr + off4, W4, mask=m4)
else:
    _fused_linear_sgd_kernel = None
