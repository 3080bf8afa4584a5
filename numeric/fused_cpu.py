"""Compiled CPU engine for ensemble SGD on linear nets (numba): ``engine="fused-cpu"``.

The batched reference (:class:`numeric.linear_ensemble.LinearEnsemble`) spends a CPU step
on a dozen small batched matmuls and their memory traffic. Here one compiled kernel
(numba, ``nogil=True``, ``fastmath=False``, ``cache=True``) advances a whole call of ``n``
steps without returning to Python:

* runs are split into blocks of :data:`BLOCK` runs; each thread of a small pool takes a
  contiguous range of blocks (the kernel releases the GIL; numba's ``parallel=True`` would
  do the same split but added ~20 s to the first compilation);
* a block copies its runs' weights into a local array laid out ``[parameter, run]`` and
  keeps them there (L1) for all ``n`` steps: every row holds one value per run, and every
  SGD operation is an explicit SIMD operation on a row (an LLVM vector of BLOCK lanes), so
  no two runs ever mix and the accumulators stay in registers;
* each step draws the data in-kernel from the fused GPU kernel's counter-based stream
  (:mod:`numeric.fused_linear`: Philox4x32-10, the same key/counter layout and the same
  float32 Box-Muller), then runs the forward pass, the backward pass and the update
  ``W <- W - eta ((2/B) sum_b delta_b h_b^T + 2 gam W)`` of ``f = M_O W_D ... W_1 M_I Z x``
  (D <= 4 layers, any widths and batch, float32 or float64);
* after every update the kernel checks ``|theta|^2`` of every run (non-finite or above
  ``blowup_norm^2``) and records the first bad step; Python raises DivergenceError naming
  runs and steps, or InputError when the state was already bad before the first step;
* :meth:`FusedCPULinearEnsemble.run_accumulate` also averages the observables the theorems
  use in-kernel (Gram matrices, hidden kernels, per-sample gradient second moments, loss).

Reproducibility. A run's data depend only on (seed, run index, step, sample), and the
arithmetic is IEEE float32/float64 with explicit FMAs (no fast-math): results are the same
for any thread count and any chunking of the steps into calls, bit for bit. The Philox
words and the uniforms equal the torch twin's (``FusedLinearEnsemble(backend="torch")``)
bit for bit. The float32 normals are ``r cos(theta)``, ``r sin(theta)`` with
``r = sqrt(-2 log u1)``, evaluated with the twin's float32 operations; log, sin and cos are
the kernel's own vectorised float32 routines (max error 0.83, 1.5, 1.5 ulp). torch's
float32 log/sin/cos (MKL or SLEEF) and the GPU's are no more exact, so about a third of the
normals differ from the twin's by 1-3 float32 ulps (a relative 1e-7); SGD trajectories
agree with the twin to that level, and to float64 round-off when the twin is given this
kernel's normals (:func:`philox_normals`, :func:`reference_run`). Weights start from the
same torch generator draws as LinearEnsemble with the same seed.

Weights live in the kernel's layout; ``weights`` returns torch views of it ``(R, out, in)``
(made once, no copy), which an in-place change writes through, as with LinearEnsemble.

>>> import numpy as np
>>> from numeric.linear_ensemble import LinearTeacher
>>> t = LinearTeacher(np.ones((2, 3)), np.eye(3), 0.1 * np.eye(2))
>>> unsupported_reason([4, 4, 4, 4], dx=3, dy=2)
'depth 5 > 4 layers'
>>> sgd_flops(dx=4, dy=3, hidden=[6])["flops"]
449
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import DivergenceError, InputError

from .fused_linear import GRADIENTS, MAX_LAYERS, padded, twin_steps
from .linear_ensemble import LinearEnsemble

try:  # optional at import time: the engine factory falls back to the batched engine without it
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

BLOCK = 16  # runs per SIMD block: 2 AVX-512 / 4 AVX2 registers of float64 per row
_MASK32 = 0xFFFFFFFF
# The observables run_accumulate averages, in the kernel's accumulator order ("K" stands for
# the hidden kernels K1 .. K{D-1}; see LinearEnsemble.observables for their definitions).
OBSERVABLES = ("W1tW1", "WDWDt", "K", "grad_sq", "loss", "population_loss")


def numba_available() -> bool:
    """True when numba imported (the engine needs it; the factory checks this)."""
    return numba is not None


def unsupported_reason(hidden, dx: int, dy: int, d0: int | None = None, batch: int = 1, n_runs: int = 1,
                       dtype=torch.float64, device="cpu", gradient: str = "sgd") -> str | None:
    """Why the compiled CPU engine cannot run this problem, or None when it can.

    >>> unsupported_reason([6], dx=4, dy=3) is None
    True
    >>> unsupported_reason([6], dx=4, dy=3, dtype=torch.float16)
    'dtype torch.float16 (float32 or float64 only)'
    """
    if len(hidden) + 1 > MAX_LAYERS:
        return f"depth {len(hidden) + 1} > {MAX_LAYERS} layers"
    if dtype not in (torch.float32, torch.float64):
        return f"dtype {dtype} (float32 or float64 only)"
    if torch.device(device).type != "cpu":
        return f"device {device} (the compiled engine runs on the CPU)"
    B = dx if gradient == "exact" else int(batch)
    n_quads = (padded(dx) + padded(dy)) // 4
    if _padded_runs(n_runs) * max(B, 1) * n_quads >= 2**31:
        return "n_runs * batch * quads >= 2^31 (Philox counter c0 overflows)"
    return None


def _padded_runs(n_runs: int) -> int:
    return -(-int(n_runs) // BLOCK) * BLOCK


def sgd_flops(dx: int, dy: int, hidden, batch: int = 1, out_identity: bool = True, d0: int | None = None) -> dict:
    """Floating-point operations of one SGD run-step of the problem, counted on the
    reference formula (the same count for every engine; the fused-cpu kernel folds the
    update of a batch of one without weight decay into one FMA per weight, i.e. does less).

    A multiply-add counts 2. Per sample: ``u = A xi`` and ``y = V xi + E zeta`` (data
    maps), the forward pass, the residual (and ``M_O``, ``M_O^T`` when it is not the
    identity), the backward pass (all layers but the first); per step: the gradient outer
    products (B products per weight; the first is a multiply) and the update
    ``g = (2/B) G; g += 2 gam W; W -= eta g`` (5 per weight). Not counted: the random
    numbers (``philox_calls`` Philox4x32-10 calls and ``box_muller_pairs`` log/sqrt/sin/cos
    pairs, mostly integer and special-function work) and the divergence monitor.

    >>> c = sgd_flops(4, 3, [6]); c["flops"], c["weights"], c["philox_calls"], c["box_muller_pairs"]
    (449, 42, 2, 4)
    """
    d0 = dx if d0 is None else int(d0)
    dims = [d0, *[int(h) for h in hidden], dy]
    mat = sum(o * i for i, o in zip(dims[:-1], dims[1:]))
    data = 2 * (d0 * dx + dy * dx + dy * dy)
    forward = 2 * mat
    head = dy + (0 if out_identity else 4 * dy * dims[-1])
    backward = 2 * (mat - dims[1] * dims[0])
    B = int(batch)
    flops = B * (data + forward + head + backward) + (2 * B - 1) * mat + 5 * mat
    quads = B * (-(-dx // 4) + -(-dy // 4))
    return {"flops": flops, "weights": mat, "philox_calls": quads, "box_muller_pairs": 2 * quads}


# =====================================================================================
# The kernel (only defined where numba is installed)
# =====================================================================================
if numba is not None:
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic, models, register_model

    @intrinsic
    def _fma(typingctx, a, b, c):
        """Fused multiply-add ``a b + c`` with one rounding (llvm.fma: an FMA instruction,
        or an exact software emulation where the CPU has none - the same bits everywhere)."""
        if not (isinstance(a, types.Float) and a == b and b == c):
            return None

        def codegen(context, builder, sig, args):
            ty = args[0].type
            name = "llvm.fma.f64" if isinstance(ty, ir.DoubleType) else "llvm.fma.f32"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]), name)
            return builder.call(fn, args)

        return a(a, a, a), codegen

    @intrinsic
    def _split_f32(typingctx, x):
        """(m, e) with x = m 2^e, m in [1, 2), both float32, for a positive normal float32
        (32-bit integer operations on the IEEE bits, so float32 lanes stay 32-bit wide)."""
        if not (isinstance(x, types.Float) and x.bitwidth == 32):
            return None
        pair = types.UniTuple(types.float32, 2)

        def codegen(context, builder, sig, args):
            i32 = ir.IntType(32)
            bits = builder.bitcast(args[0], i32)
            m = builder.bitcast(builder.or_(builder.and_(bits, ir.Constant(i32, 0x7FFFFF)), ir.Constant(i32, 0x3F800000)),
                                ir.FloatType())
            e = builder.sub(builder.and_(builder.lshr(bits, ir.Constant(i32, 23)), ir.Constant(i32, 0xFF)),
                            ir.Constant(i32, 127))
            return context.make_tuple(builder, pair, [m, builder.sitofp(e, ir.FloatType())])

        return pair(x), codegen

    # ---- Philox4x32-10 on uint64 lanes holding 32-bit values (Random123, as tl.philox)
    _M32 = np.uint64(_MASK32)
    _S32 = np.uint64(32)
    _RA, _RB = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    _KA, _KB = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
    _SIGN32 = np.uint64(0x80000000)
    _U0 = np.uint64(0)

    @njit(inline="always")
    def _philox(c0, c1, c2, c3, k0, k1):
        for _ in range(10):
            p0 = c0 * _RA
            p1 = c2 * _RB
            n0 = (p1 >> _S32) ^ c1 ^ k0
            n2 = (p0 >> _S32) ^ c3 ^ k1
            c1 = p1 & _M32
            c3 = p0 & _M32
            c0 = n0
            c2 = n2
            k0 = (k0 + _KA) & _M32
            k1 = (k1 + _KB) & _M32
        return c0, c1, c2, c3

    # ---- log, sin, cos in float32, vectorisable (no table, no branch): fdlibm's logf reduction
    # and minimax polynomial; sin/cos by a three-part Cody-Waite reduction by pi/2 and degree
    # 7/8 polynomials. Measured over 4e6 Box-Muller arguments: max error 0.83 ulp (log),
    # 1.5 ulp (sin, cos) against the correctly rounded values.
    _F = np.float32
    _LN2_HI, _LN2_LO = _F(6.9313812256e-01), _F(9.0580006145e-06)
    _LG1, _LG2, _LG3, _LG4 = _F(0.66666662693), _F(0.40000972152), _F(0.28498786688), _F(0.24279078841)
    _HALF, _ONE, _TWO, _THREE, _SQRT2 = _F(0.5), _F(1.0), _F(2.0), _F(3.0), _F(1.4142135)
    _TWO_OVER_PI = _F(0.63661977236758134308)
    _PIO2_1, _PIO2_2, _PIO2_3 = _F(1.5703125), _F(4.837512969970703125e-4), _F(7.54978995489188216e-8)
    _S1, _S2, _S3 = _F(-0.16666655242443085), _F(0.008332183584570885), _F(-0.0001951805897988379)
    _C1, _C2, _C3 = _F(0.04166664555668831), _F(-0.0013887316454201937), _F(2.443335142743308e-05)

    @njit(inline="always")
    def _logf(x):
        """log(x) for a positive normal float32 ``x``, in float32."""
        m, e = _split_f32(x)  # mantissa in [1, 2)
        big = m > _SQRT2
        m = m * _HALF if big else m  # [sqrt(2)/2, sqrt(2))
        e = e + _ONE if big else e
        f = m - _ONE
        s = f / (_TWO + f)
        z = s * s
        w = z * z
        r = z * _fma(w, _LG3, _LG1) + w * _fma(w, _LG4, _LG2)
        hfsq = _HALF * f * f
        return e * _LN2_HI - ((hfsq - _fma(s, hfsq + r, e * _LN2_LO)) - f)

    @njit(inline="always")
    def _sincosf(th):
        """(sin th, cos th) in float32 for 0 <= th < 8."""
        qf = np.floor(_fma(th, _TWO_OVER_PI, _HALF))
        x = _fma(-qf, _PIO2_3, _fma(-qf, _PIO2_2, _fma(-qf, _PIO2_1, th)))  # th - q pi/2
        z = x * x
        s = _fma(z * x, _fma(z, _fma(z, _S3, _S2), _S1), x)
        c = _fma(z * z, _fma(z, _fma(z, _C3, _C2), _C1), _fma(-_HALF, z, _ONE))
        odd = (qf == _ONE) | (qf == _THREE)  # q = qf in 0..4: float tests keep the lanes 32-bit
        s1 = c if odd else s
        c1 = -s if odd else c
        neg = (qf == _TWO) | (qf == _THREE)
        return (-s1 if neg else s1), (-c1 if neg else c1)

    _SCALE32 = np.float32(4.6566127342e-10)  # Triton's uint_to_uniform_float scale
    _TWO_PI32 = np.float32(6.283185307179586)
    _U1_MIN = np.float32(1.0e-7)
    _MINUS_TWO32 = np.float32(-2.0)

    @njit(inline="always")
    def _uniform(x):
        """Triton's uint_to_uniform_float: fold the negative int32 half (~x), scale in float32."""
        x = (_M32 - x) if x >= _SIGN32 else x
        return np.float32(x) * _SCALE32

    @njit(inline="always")
    def _box_muller(u1, u2):
        """Triton's pair_uniform_to_normal with the twin's float32 operations."""
        u1 = _U1_MIN if u1 < _U1_MIN else u1
        th = _TWO_PI32 * u2
        r = np.sqrt(_MINUS_TWO32 * _logf(u1))
        s, c = _sincosf(th)
        return r * c, r * s

    @njit(inline="always")
    def _quad(c0, c1, k0, k1):
        """The four float32 normals of Philox counter (c0, c1, 0, 0), key (k0, k1)."""
        x0, x1, x2, x3 = _philox(c0, c1, _U0, _U0, k0, k1)
        n0, n1 = _box_muller(_uniform(x0), _uniform(x1))
        n2, n3 = _box_muller(_uniform(x2), _uniform(x3))
        return n0, n1, n2, n3

    @njit(error_model="numpy", cache=True)
    def _normals_kernel(k0, k1, runs, steps, batch, n_quads):
        """Normals of ``runs`` x ``steps``: (T, R, batch, 4 n_quads) float32 (philox_normals)."""
        out = np.empty((steps.shape[0], runs.shape[0], batch, 4 * n_quads), np.float32)
        for t in range(steps.shape[0]):
            c1 = np.uint64(steps[t] & _MASK32)
            for i in range(runs.shape[0]):
                for b in range(batch):
                    for q in range(n_quads):
                        c0 = np.uint64(((runs[i] * batch + b) * n_quads + q) & _MASK32)
                        n0, n1, n2, n3 = _quad(c0, c1, k0, k1)
                        out[t, i, b, 4 * q] = n0
                        out[t, i, b, 4 * q + 1] = n1
                        out[t, i, b, 4 * q + 2] = n2
                        out[t, i, b, 4 * q + 3] = n3
        return out

    # ---- explicit SIMD: a LaneVec holds one value per run of a block (an LLVM vector of
    # BLOCK lanes). The weights of different runs never mix, so every SGD operation is a
    # lane-wise vector operation; writing them explicitly keeps accumulators in registers
    # (LLVM cannot prove the local arrays do not alias, and would not vectorise).
    class LaneVec(types.Type):
        def __init__(self, dtype):
            self.dtype = dtype
            super().__init__(name=f"LaneVec({dtype} x {BLOCK})")

    @register_model(LaneVec)
    class _LaneVecModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            element = ir.DoubleType() if fe_type.dtype == types.float64 else ir.FloatType()
            super().__init__(dmm, fe_type, ir.VectorType(element, BLOCK))

    def _lane_ptr(context, builder, arrty, arr, offset):
        data = context.make_array(arrty)(context, builder, arr).data
        vty = ir.VectorType(context.get_data_type(arrty.dtype), BLOCK)
        return builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())

    def _is_float_array(a):
        return isinstance(a, types.Array) and a.layout == "C" and a.dtype in (types.float32, types.float64)

    @intrinsic
    def _vload(typingctx, arr, offset):
        """Elements ``offset .. offset + BLOCK - 1`` of a C-contiguous array (flat index)."""
        if not (_is_float_array(arr) and isinstance(offset, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            offset = context.cast(builder, args[1], sig.args[1], types.intp)
            return builder.load(_lane_ptr(context, builder, sig.args[0], args[0], offset), align=arr.dtype.bitwidth // 8)

        return LaneVec(arr.dtype)(arr, offset), codegen

    @intrinsic
    def _vstore(typingctx, arr, offset, v):
        if not (_is_float_array(arr) and isinstance(offset, types.Integer) and isinstance(v, LaneVec)
                and v.dtype == arr.dtype):
            return None

        def codegen(context, builder, sig, args):
            offset = context.cast(builder, args[1], sig.args[1], types.intp)
            builder.store(args[2], _lane_ptr(context, builder, sig.args[0], args[0], offset), align=arr.dtype.bitwidth // 8)
            return context.get_dummy_value()

        return types.none(arr, offset, v), codegen

    @intrinsic
    def _vsplat(typingctx, x):
        """A LaneVec with ``x`` in every lane."""
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            vty = ir.VectorType(args[0].type, BLOCK)
            one = builder.insert_element(ir.Constant(vty, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), BLOCK), [0] * BLOCK))

        return LaneVec(x)(x), codegen

    def _lane_binop(opname):
        @intrinsic
        def op(typingctx, a, b):
            if not (isinstance(a, LaneVec) and a == b):
                return None

            def codegen(context, builder, sig, args):
                return getattr(builder, opname)(args[0], args[1])

            return a(a, b), codegen

        return op

    _vadd, _vsub, _vmul = _lane_binop("fadd"), _lane_binop("fsub"), _lane_binop("fmul")

    @intrinsic
    def _vfma(typingctx, a, b, c):
        """``a b + c`` lane-wise with one rounding (llvm.fma on vectors)."""
        if not (isinstance(a, LaneVec) and a == b and b == c):
            return None

        def codegen(context, builder, sig, args):
            ty = args[0].type
            name = f"llvm.fma.v{BLOCK}f{64 if isinstance(ty.element, ir.DoubleType) else 32}"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]), name)
            return builder.call(fn, args)

        return a(a, b, c), codegen

    @intrinsic
    def _vany_not_le(typingctx, v, x):
        """True when some lane of ``v`` is not <= x (greater, or NaN)."""
        if not (isinstance(v, LaneVec) and x == v.dtype):
            return None

        def codegen(context, builder, sig, args):
            bound = _vsplat_ir(builder, args[1])
            bad = builder.fcmp_unordered(">", args[0], bound)
            bits = builder.bitcast(bad, ir.IntType(BLOCK))
            return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(BLOCK), 0))

        return types.boolean(v, x), codegen

    def _vsplat_ir(builder, x):
        vty = ir.VectorType(x.type, BLOCK)
        one = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), BLOCK), [0] * BLOCK))

    @intrinsic
    def _v64(typingctx, v):
        """A LaneVec in float64 (exact widening of a float32 one)."""
        if not isinstance(v, LaneVec):
            return None

        def codegen(context, builder, sig, args):
            if v.dtype == types.float64:
                return args[0]
            return builder.fpext(args[0], ir.VectorType(ir.DoubleType(), BLOCK))

        return LaneVec(types.float64)(v), codegen

    # ---- observables (float64 row vectors; evaluated only at sample steps)
    @njit(error_model="numpy", cache=True)
    def _lane_matmul(w, wo, dout, din, P, Q, ncol):
        """Q[i, c] = sum_j W[i, j] P[j, c] for every lane; W (dout, din) at rows wo.. of w,
        P and Q float64 (row i * ncol + c)."""
        B = BLOCK
        for i in range(dout):
            for c in range(ncol):
                a = _vmul(_v64(_vload(w, (wo + i * din) * B)), _vload(P, c * B))
                for j in range(1, din):
                    a = _vfma(_v64(_vload(w, (wo + i * din + j) * B)), _vload(P, (j * ncol + c) * B), a)
                _vstore(Q, (i * ncol + c) * B, a)

    @njit(error_model="numpy", cache=True)
    def _gram(P, n, ncol, lacc, o):
        """lacc[o + a ncol + b] += sum_i P[i, a] P[i, b] (P^T P of an (n, ncol) matrix per lane)."""
        B = BLOCK
        for a in range(ncol):
            for b in range(ncol):
                s = _vmul(_vload(P, a * B), _vload(P, b * B))
                for i in range(1, n):
                    s = _vfma(_vload(P, (i * ncol + a) * B), _vload(P, (i * ncol + b) * B), s)
                _vstore(lacc, (o + a * ncol + b) * B, _vadd(_vload(lacc, (o + a * ncol + b) * B), s))

    @njit(error_model="numpy", cache=True)
    def _observe_state(w, dims, woff, Gm, A, Vm, MO, out_identity, e_sq, P, Q, lacc, o_w1, o_wd, o_k, o_pop):
        """Add the state observables of the pre-step weights to ``lacc``: W_1^T W_1, W_D W_D^T,
        the hidden kernels (B_k G)^T (B_k G) with G = M_I Z, and the population loss.
        ``P``, ``Q``: float64 scratch (max width * max(dx, width), BLOCK)."""
        B = BLOCK
        L = dims.shape[0] - 1
        d0, dL, dx, dy = dims[0], dims[L], Gm.shape[1], Vm.shape[0]
        # W_1^T W_1 = P^T P with P = W_1 (d1, d0); W_D W_D^T = P^T P with P = W_D^T (d_{D-1}, dL)
        for r in range(dims[1] * d0):
            _vstore(P, r * B, _v64(_vload(w, r * B)))
        _gram(P, dims[1], d0, lacc, o_w1)
        dl1 = dims[L - 1]
        for j in range(dl1):
            for a in range(dL):
                _vstore(P, (j * dL + a) * B, _v64(_vload(w, (woff[L - 1] + a * dl1 + j) * B)))
        _gram(P, dl1, dL, lacc, o_wd)
        # hidden kernels: P_k = W_k ... W_1 G (d_k, dx), K_k = P_k^T P_k
        for i in range(d0):
            for c in range(dx):
                _vstore(P, (i * dx + c) * B, _vsplat(Gm[i, c]))
        for k in range(1, L):
            _lane_matmul(w, woff[k - 1], dims[k], dims[k - 1], P, Q, dx)
            P, Q = Q, P
            _gram(P, dims[k], dx, lacc, o_k + (k - 1) * dx * dx)
        # population loss |M_O W_D .. W_1 A - V|_F^2 + |E|_F^2 (A, V, E act on xi ~ N(0, I))
        for i in range(d0):
            for c in range(dx):
                _vstore(P, (i * dx + c) * B, _vsplat(np.float64(A[i, c])))
        for k in range(1, L + 1):
            _lane_matmul(w, woff[k - 1], dims[k], dims[k - 1], P, Q, dx)
            P, Q = Q, P
        s = _vsplat(e_sq)
        for i in range(dy):
            for c in range(dx):
                if out_identity:
                    f = _vload(P, (i * dx + c) * B)
                else:
                    f = _vmul(_vsplat(np.float64(MO[i, 0])), _vload(P, c * B))
                    for j in range(1, dL):
                        f = _vfma(_vsplat(np.float64(MO[i, j])), _vload(P, (j * dx + c) * B), f)
                diff = _vsub(f, _vsplat(np.float64(Vm[i, c])))
                s = _vfma(diff, diff, s)
        _vstore(lacc, o_pop * B, _vadd(_vload(lacc, o_pop * B), s))

    @njit(error_model="numpy", cache=True)
    def _observe_sample(h, d, res, dims, hoff, inv_b, lacc, o_gs, o_loss):
        """Add ``|grad_{W_k} l|^2 = 4 |delta_k|^2 |h_{k-1}|^2`` of every layer and ``|f - y|^2``
        of one sample, times 1/B (batch means), to ``lacc``."""
        B = BLOCK
        four_over_b = _vsplat(4.0 * inv_b)
        for k in range(dims.shape[0] - 1):
            x = _v64(_vload(d, hoff[k + 1] * B))
            dsq = _vmul(x, x)
            for i in range(1, dims[k + 1]):
                x = _v64(_vload(d, (hoff[k + 1] + i) * B))
                dsq = _vfma(x, x, dsq)
            x = _v64(_vload(h, hoff[k] * B))
            hsq = _vmul(x, x)
            for j in range(1, dims[k]):
                x = _v64(_vload(h, (hoff[k] + j) * B))
                hsq = _vfma(x, x, hsq)
            _vstore(lacc, (o_gs + k) * B, _vfma(four_over_b, _vmul(dsq, hsq), _vload(lacc, (o_gs + k) * B)))
        x = _v64(_vload(res, 0))
        rsq = _vmul(x, x)
        for i in range(1, res.shape[0]):
            x = _v64(_vload(res, i * B))
            rsq = _vfma(x, x, rsq)
        _vstore(lacc, o_loss * B, _vfma(_vsplat(inv_b), rsq, _vload(lacc, o_loss * B)))

    # ---- the SGD kernel: runs in [parameter, run] layout; every array row holds BLOCK runs
    @njit(nogil=True, fastmath=False, error_model="numpy", cache=True)
    def _sgd_blocks(b_lo, b_hi, W, dims, A, Vm, Em, MO, Gm, hyper, e_sq, k0, k1, dx, dy, batch, exact, out_identity,
                    step0, n_steps, sample_every, n_quads, nq_x, q_y0, nq_y, acc, first_bad, init_bad):
        """Advance the runs of blocks ``b_lo .. b_hi - 1`` (BLOCK runs each) of ``W`` (P, R_padded)
        by ``n_steps`` SGD steps, in place.

        ``hyper`` = [eta, 2 gam, 2/B, sqrt(dx) (exact batch), blowup_norm^2] in the weight
        dtype. ``sample_every`` > 0 also adds the observables of the states after every
        ``sample_every`` steps (and of the state after the call when it divides n_steps)
        to the running sums ``acc`` (n_obs, R_padded), in time order. ``first_bad``
        (R_padded,) keeps the first step whose update left a run non-finite or beyond the
        blow-up norm; ``init_bad`` flags runs that were so before the first step. Blocks are
        independent: any split of the blocks over threads gives the same bits.
        """
        L = dims.shape[0] - 1
        P = W.shape[0]
        Rp = W.shape[1]
        woff = np.zeros(L + 1, np.int64)
        hoff = np.zeros(L + 2, np.int64)
        dmax = max(dx, dy)
        for k in range(L):
            woff[k + 1] = woff[k] + dims[k + 1] * dims[k]
        for k in range(L + 1):
            hoff[k + 1] = hoff[k] + dims[k]
            dmax = max(dmax, dims[k])
        d0, dL = dims[0], dims[L]
        neg_eta, decay2, two_over_b = _vsplat(-hyper[0]), _vsplat(hyper[1]), _vsplat(hyper[2])
        quad_scale, blowup2 = hyper[3], hyper[4]
        decay = hyper[1] != 0
        inv_b = 1.0 / batch
        n_obs = acc.shape[0]
        o_w1 = 0
        o_wd = o_w1 + d0 * d0
        o_k = o_wd + dL * dL
        o_gs = o_k + (L - 1) * dx * dx
        o_loss = o_gs + L
        o_pop = o_loss + 1
        observing = sample_every > 0
        n_iter = n_steps + 1 if (observing and n_steps % sample_every == 0) else n_steps
        nq = nq_x + nq_y
        zo = 4 * nq_x  # first row of zeta in z
        lane_stride = batch * n_quads  # Philox counter c0 from one run to the next
        B = BLOCK
        w = np.empty((P, B), W.dtype)
        g = np.empty((P, B), W.dtype)
        h = np.empty((hoff[L + 1], B), W.dtype)  # h_0 = u, h_1, ..., h_L
        d = np.empty((hoff[L + 1], B), W.dtype)  # delta_k at the rows of h_k (k >= 1)
        z = np.zeros((4 * nq, B), W.dtype)  # xi (rows 0 .. dx-1), zeta (rows zo .. zo+dy-1)
        uq = np.empty((4, B), np.float32)  # one quad's uniforms
        y = np.empty((dy, B), W.dtype)
        res = np.empty((dy, B), W.dtype)
        nrm_out = np.empty(B, W.dtype)
        fb = np.empty(B, np.int64)
        lacc = np.zeros((n_obs, B))
        Ps = np.zeros((dmax * dmax, B))
        Qs = np.zeros((dmax * dmax, B))
        zero = _vsplat(W.dtype.type(0.0))
        for blk in range(b_lo, b_hi):
            r0 = blk * B
            nrm = zero
            for p in range(P):
                wp = _vload(W, p * Rp + r0)
                _vstore(w, p * B, wp)
                nrm = _vfma(wp, wp, nrm)
            _vstore(nrm_out, 0, nrm)
            for l in range(B):
                fb[l] = first_bad[r0 + l]
                if not nrm_out[l] <= blowup2:
                    init_bad[r0 + l] = 1
            for o in range(n_obs):  # continue the running sums: chunking does not change the bits
                for l in range(B):
                    lacc[o, l] = acc[o, r0 + l]
            for t in range(n_iter):
                s = step0 + t
                update = t < n_steps
                observe = observing and t > 0 and t % sample_every == 0
                if observe:
                    _observe_state(w, dims, woff, Gm, A, Vm, MO, out_identity, e_sq, Ps, Qs, lacc,
                                   o_w1, o_wd, o_k, o_pop)
                c1 = np.uint64(s & _MASK32)
                nrm = zero
                nrm2 = zero
                for b in range(batch):
                    # ---- the sample's data for every lane: xi ~ N(0, I_dx), zeta ~ N(0, I_dy)
                    if exact:
                        for j in range(dx):
                            for l in range(B):
                                z[j, l] = quad_scale if j == b else 0.0
                    else:
                        for q in range(nq):
                            # separate lane loops: the Philox words (64-bit integer lanes) as uniforms,
                            # Box-Muller on float32 lanes only (twice as many per instruction), the copy
                            qc = (q if q < nq_x else q_y0 + q - nq_x) + (r0 * batch + b) * n_quads
                            for l in range(B):
                                x0, x1, x2, x3 = _philox(np.uint64((qc + l * lane_stride) & _MASK32), c1, _U0, _U0,
                                                         k0, k1)
                                uq[0, l] = _uniform(x0)
                                uq[1, l] = _uniform(x1)
                                uq[2, l] = _uniform(x2)
                                uq[3, l] = _uniform(x3)
                            for l in range(B):
                                n0, n1 = _box_muller(uq[0, l], uq[1, l])
                                n2, n3 = _box_muller(uq[2, l], uq[3, l])
                                uq[0, l] = n0
                                uq[1, l] = n1
                                uq[2, l] = n2
                                uq[3, l] = n3
                            for m in range(4):
                                for l in range(B):
                                    z[4 * q + m, l] = uq[m, l]
                    # ---- u = A xi (rows of h_0), y = V xi + E zeta; two output rows per pass,
                    # so every input row is loaded once per pair (accumulators stay in registers)
                    i = 0
                    while i < d0:
                        i2 = min(i + 1, d0 - 1)
                        x = _vload(z, 0)
                        a = _vmul(_vsplat(A[i, 0]), x)
                        c = _vmul(_vsplat(A[i2, 0]), x)
                        for j in range(1, dx):
                            x = _vload(z, j * B)
                            a = _vfma(_vsplat(A[i, j]), x, a)
                            c = _vfma(_vsplat(A[i2, j]), x, c)
                        _vstore(h, i * B, a)
                        _vstore(h, i2 * B, c)
                        i += 2
                    i = 0
                    while i < dy:
                        i2 = min(i + 1, dy - 1)
                        x = _vload(z, 0)
                        a = _vmul(_vsplat(Vm[i, 0]), x)
                        c = _vmul(_vsplat(Vm[i2, 0]), x)
                        for j in range(1, dx):
                            x = _vload(z, j * B)
                            a = _vfma(_vsplat(Vm[i, j]), x, a)
                            c = _vfma(_vsplat(Vm[i2, j]), x, c)
                        if not exact:
                            for j in range(dy):
                                x = _vload(z, (zo + j) * B)
                                a = _vfma(_vsplat(Em[i, j]), x, a)
                                c = _vfma(_vsplat(Em[i2, j]), x, c)
                        _vstore(y, i * B, a)
                        _vstore(y, i2 * B, c)
                        i += 2
                    # ---- forward: h_k = W_k h_{k-1}, two output rows per pass
                    for k in range(L):
                        din, dout, hi, ho = dims[k], dims[k + 1], hoff[k], hoff[k + 1]
                        i = 0
                        while i < dout:
                            i2 = min(i + 1, dout - 1)  # an odd last row is computed twice (same bits)
                            p, q = woff[k] + i * din, woff[k] + i2 * din
                            x = _vload(h, hi * B)
                            a = _vmul(_vload(w, p * B), x)
                            c = _vmul(_vload(w, q * B), x)
                            for j in range(1, din):
                                x = _vload(h, (hi + j) * B)
                                a = _vfma(_vload(w, (p + j) * B), x, a)
                                c = _vfma(_vload(w, (q + j) * B), x, c)
                            _vstore(h, (ho + i) * B, a)
                            _vstore(h, (ho + i2) * B, c)
                            i += 2
                    # ---- residual f - y and delta_D = M_O^T (f - y)
                    ho = hoff[L]
                    if out_identity:
                        for i in range(dy):
                            r = _vsub(_vload(h, (ho + i) * B), _vload(y, i * B))
                            _vstore(res, i * B, r)
                            _vstore(d, (ho + i) * B, r)
                    else:
                        for i in range(dy):
                            a = _vmul(_vsplat(MO[i, 0]), _vload(h, ho * B))
                            for j in range(1, dL):
                                a = _vfma(_vsplat(MO[i, j]), _vload(h, (ho + j) * B), a)
                            _vstore(res, i * B, _vsub(a, _vload(y, i * B)))
                        for j in range(dL):
                            a = _vmul(_vsplat(MO[0, j]), _vload(res, 0))
                            for i in range(1, dy):
                                a = _vfma(_vsplat(MO[i, j]), _vload(res, i * B), a)
                            _vstore(d, (ho + j) * B, a)
                    # ---- backward with the pre-step weights: delta_{k-1} = W_k^T delta_k, two rows per pass
                    for k in range(L - 1, 0, -1):
                        din, dout, di, do = dims[k], dims[k + 1], hoff[k + 1], hoff[k]
                        j = 0
                        while j < din:
                            j2 = min(j + 1, din - 1)
                            x = _vload(d, di * B)
                            a = _vmul(_vload(w, (woff[k] + j) * B), x)
                            c = _vmul(_vload(w, (woff[k] + j2) * B), x)
                            for i in range(1, dout):
                                x = _vload(d, (di + i) * B)
                                a = _vfma(_vload(w, (woff[k] + i * din + j) * B), x, a)
                                c = _vfma(_vload(w, (woff[k] + i * din + j2) * B), x, c)
                            _vstore(d, (do + j) * B, a)
                            _vstore(d, (do + j2) * B, c)
                            j += 2
                    if observe:
                        _observe_sample(h, d, res, dims, hoff, inv_b, lacc, o_gs, o_loss)
                    if not update:
                        continue
                    # ---- gradient G_k = sum_b delta_k h_{k-1}^T. A batch of one updates at once,
                    # W <- W - eta ((2/B) delta h^T + 2 gam W), two rows of W per pass (h_{k-1} loaded
                    # once per pair); without weight decay as one FMA per weight, W + (-eta (2/B) delta) h.
                    # |theta|^2 is summed in two chains (one per row of the pair).
                    for k in range(L):
                        din, dout, hk = dims[k], dims[k + 1], hoff[k]
                        i = 0
                        while i < dout:
                            two = i + 1 < dout
                            p = woff[k] + i * din
                            q = p + din
                            da = _vload(d, (hoff[k + 1] + i) * B)
                            dc = _vload(d, (hoff[k + 1] + i + 1) * B) if two else da
                            if batch > 1:
                                for j in range(din):
                                    hj = _vload(h, (hk + j) * B)
                                    if b == 0:
                                        _vstore(g, (p + j) * B, _vmul(da, hj))
                                        if two:
                                            _vstore(g, (q + j) * B, _vmul(dc, hj))
                                    else:
                                        _vstore(g, (p + j) * B, _vfma(da, hj, _vload(g, (p + j) * B)))
                                        if two:
                                            _vstore(g, (q + j) * B, _vfma(dc, hj, _vload(g, (q + j) * B)))
                            elif decay:
                                da = _vmul(two_over_b, da)
                                dc = _vmul(two_over_b, dc)
                                for j in range(din):
                                    hj = _vload(h, (hk + j) * B)
                                    wv = _vload(w, (p + j) * B)
                                    wn = _vfma(neg_eta, _vfma(decay2, wv, _vmul(da, hj)), wv)
                                    _vstore(w, (p + j) * B, wn)
                                    nrm = _vfma(wn, wn, nrm)
                                    if two:
                                        wv = _vload(w, (q + j) * B)
                                        wn = _vfma(neg_eta, _vfma(decay2, wv, _vmul(dc, hj)), wv)
                                        _vstore(w, (q + j) * B, wn)
                                        nrm2 = _vfma(wn, wn, nrm2)
                            else:
                                da = _vmul(neg_eta, _vmul(two_over_b, da))
                                dc = _vmul(neg_eta, _vmul(two_over_b, dc))
                                for j in range(din):
                                    hj = _vload(h, (hk + j) * B)
                                    wn = _vfma(da, hj, _vload(w, (p + j) * B))
                                    _vstore(w, (p + j) * B, wn)
                                    nrm = _vfma(wn, wn, nrm)
                                    if two:
                                        wn = _vfma(dc, hj, _vload(w, (q + j) * B))
                                        _vstore(w, (q + j) * B, wn)
                                        nrm2 = _vfma(wn, wn, nrm2)
                            i += 2
                if update and batch > 1:
                    for p in range(0, P - 1, 2):
                        for pp in range(p, p + 2):
                            wv = _vload(w, pp * B)
                            gr = _vmul(two_over_b, _vload(g, pp * B))
                            if decay:
                                gr = _vfma(decay2, wv, gr)
                            wn = _vfma(neg_eta, gr, wv)
                            _vstore(w, pp * B, wn)
                            if pp == p:
                                nrm = _vfma(wn, wn, nrm)
                            else:
                                nrm2 = _vfma(wn, wn, nrm2)
                    if P % 2:
                        wv = _vload(w, (P - 1) * B)
                        gr = _vmul(two_over_b, _vload(g, (P - 1) * B))
                        if decay:
                            gr = _vfma(decay2, wv, gr)
                        wn = _vfma(neg_eta, gr, wv)
                        _vstore(w, (P - 1) * B, wn)
                        nrm = _vfma(wn, wn, nrm)
                nrm = _vadd(nrm, nrm2)
                if update and _vany_not_le(nrm, blowup2):
                    _vstore(nrm_out, 0, nrm)
                    for l in range(B):
                        if fb[l] < 0 and not nrm_out[l] <= blowup2:
                            fb[l] = s + 1
            for p in range(P):
                _vstore(W, p * Rp + r0, _vload(w, p * B))
            for l in range(B):
                first_bad[r0 + l] = fb[l]
            for o in range(n_obs):
                for l in range(B):
                    acc[o, r0 + l] = lacc[o, l]


# =====================================================================================
# The engine
# =====================================================================================
def _require_numba() -> None:
    if numba is None:
        raise InputError("the fused-cpu engine needs numba (pip install numba)")


def philox_normals(seed: int, runs: torch.Tensor, steps: torch.Tensor, batch: int, n_quads: int) -> torch.Tensor:
    """The compiled kernel's normals: the call and layout of
    :func:`numeric.fused_linear.philox_normals` (T, R, batch, 4 n_quads) float32, computed
    by the kernel's own code (its float32 log/sin/cos; see the module docstring for how
    they relate to torch's)."""
    _require_numba()
    key = int(seed)
    out = _normals_kernel(np.uint64(key & _MASK32), np.uint64((key >> 32) & _MASK32),
                          np.ascontiguousarray(runs.cpu().numpy(), dtype=np.int64),
                          np.ascontiguousarray(steps.cpu().numpy(), dtype=np.int64), int(batch), int(n_quads))
    return torch.from_numpy(out).to(runs.device)


def default_threads() -> int:
    """Kernel threads when the engine is not told: torch's CPU thread count
    (``torch.set_num_threads`` / OMP_NUM_THREADS), so one setting governs both engines."""
    return max(1, int(torch.get_num_threads()))


INLINE_RUN_STEPS = 2**18  # calls smaller than this run in the calling thread (see _launch)
_POOL: dict = {}  # the worker threads: "pool", its "size", and the "pid" that made it


def _launch(args: tuple, n_blocks: int, threads: int, n_steps: int) -> None:
    """Run the kernel over ``n_blocks`` blocks of runs on ``threads`` threads (the kernel
    releases the GIL). The blocks are cut into up to 4 chunks per thread, which the threads
    take in turn, so a thread the OS pauses (a busy machine) delays the call by one chunk,
    not by half of it. A call under INLINE_RUN_STEPS (a few ms) runs in the calling thread:
    dispatching would cost more than it saves. Blocks are independent, so neither the split
    nor the order changes anything in the result."""
    threads = max(1, min(int(threads), n_blocks))
    if threads == 1 or n_blocks * BLOCK * max(int(n_steps), 1) < INLINE_RUN_STEPS:
        _sgd_blocks(0, n_blocks, *args)
        return
    if _POOL.get("pid") != os.getpid() or _POOL["size"] < threads:  # a forked child needs its own threads
        if _POOL.get("pid") == os.getpid():
            _POOL["pool"].shutdown(wait=False)
        _POOL.update(pool=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fused-cpu"), size=threads,
                     pid=os.getpid())
    n_chunks = min(n_blocks, 4 * threads)
    bounds = [n_blocks * i // n_chunks for i in range(n_chunks + 1)]
    futures = [_POOL["pool"].submit(_sgd_blocks, lo, hi, *args) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for f in futures:
        f.result()


class _WeightViews(list):
    """The engine's weight views: a list whose items cannot be replaced (a replaced item would
    no longer be the kernel's state)."""

    def __setitem__(self, index, value):
        raise InputError("the fused-cpu engine's weights are views of its kernel state: assign the whole list "
                         "(ens.weights = [...]) or use load_weights; in-place tensor writes go through")


@dataclass
class FusedCPULinearEnsemble(LinearEnsemble):
    """LinearEnsemble advanced by the compiled CPU kernel (see the module docstring).

    Same arguments, attributes, statistics and methods as LinearEnsemble, plus
    ``gradient="exact"`` (full-batch GD on the quadrature batch, as FusedLinearEnsemble),
    ``threads`` (kernel threads; default :func:`default_threads`) and the in-kernel
    :meth:`run_accumulate`. ``sample()`` draws fresh data from the torch generator (as
    every engine's does; the SGD stream is Philox), ``next_batch()`` returns the minibatch
    the next step will use. Divergence is checked after every step whatever
    ``track_every`` says (the check is part of the update's loop, at no extra memory
    traffic); ``check_every`` is the number of steps per kernel call.

    >>> import numpy as np
    >>> from numeric.linear_ensemble import LinearTeacher
    >>> ens = FusedCPULinearEnsemble(LinearTeacher(np.eye(2), np.eye(2), np.eye(2)), [3], n_runs=5, eta=0.01, seed=1)
    >>> ens.run(20); ens.step_count, tuple(ens.weights[1].shape)
    (20, (5, 2, 3))
    >>> obs = ens.run_accumulate(20, sample_every=5); sorted(obs), tuple(obs["grad_sq"].shape)
    (['K1', 'W1tW1', 'WDWDt', 'grad_sq', 'loss', 'population_loss'], (5, 2))
    """

    gradient: str = "sgd"
    threads: int | None = None

    def __post_init__(self):
        _require_numba()
        if self.gradient not in GRADIENTS:
            raise InputError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        if not 0 <= int(self.seed) < 2**64:
            raise InputError(f"seed must be in [0, 2^64) for the Philox key, got {self.seed}")
        if self.threads is not None and int(self.threads) < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")
        if self.device == "auto" or self.device is None:
            self.device = "cpu"  # a CPU engine: "auto" must not pick a GPU for it
        self._store = None
        t = self.teacher
        super().__post_init__()  # validates, builds the fixed maps, draws the initial weights
        why = unsupported_reason(self.hidden, t.dx, t.dy, self.dims[0], self.batch, self.n_runs, self.dtype,
                                 self.device, self.gradient)
        if why:
            raise InputError(f"the fused-cpu engine does not support this problem: {why}")
        npt = np.float64 if self.dtype == torch.float64 else np.float32
        as_np = lambda a: np.ascontiguousarray(a.detach().cpu().numpy(), dtype=npt)
        self._A, self._Vm, self._Em, self._MO = (as_np(self._in_map), as_np(self._V_map), as_np(self._e_map),
                                                 as_np(self._M_O))
        Z = np.eye(t.dx) if self.Z is None else np.asarray(self.Z, dtype=np.float64)
        M_I = np.eye(Z.shape[0]) if self.M_I is None else np.asarray(self.M_I, dtype=np.float64)
        self._G = np.ascontiguousarray(M_I @ Z)  # net input u = G x: the hidden kernels' coordinates
        self._e_sq = float(np.sum(self._Em.astype(np.float64) ** 2))
        self._dims = np.asarray(self.dims, dtype=np.int64)
        self._DXP, self._DYP = padded(t.dx), padded(t.dy)
        self._n_quads = (self._DXP + self._DYP) // 4
        self._fb = np.full(self._store.shape[1], -1, dtype=np.int64)

    # ------------------------------------------------------------------ weights
    @property
    def weights(self) -> list:
        """Views ``(R, out, in)`` of the kernel's weight store (no copy; writes go through)."""
        return self._views

    @weights.setter
    def weights(self, ws) -> None:
        ws = list(ws)
        if self._store is None:
            shapes = [tuple(w.shape[-2:]) for w in ws]
            R = int(self.n_runs)
            npt = np.float64 if self.dtype == torch.float64 else np.float32
            self._store = np.zeros((sum(o * i for o, i in shapes), _padded_runs(R)), dtype=npt)
            views, off = [], 0
            for o, i in shapes:
                block = torch.from_numpy(self._store[off:off + o * i].reshape(o, i, -1))
                views.append(block[:, :, :R].permute(2, 0, 1))
                off += o * i
            self._views = _WeightViews(views)
        if len(ws) != len(self._views):
            raise InputError(f"expected {len(self._views)} weight matrices, got {len(ws)}")
        for i, (view, w) in enumerate(zip(self._views, ws)):
            w = torch.as_tensor(w, dtype=self.dtype)
            if w.dim() == 2:
                w = w.expand_as(view)
            if w.shape != view.shape:
                raise InputError(f"layer {i + 1} weight has shape {tuple(w.shape)}, expected {tuple(view.shape)}")
            if w.data_ptr() != view.data_ptr():
                view.copy_(w)

    def load_weights(self, weights) -> None:
        """Set every run's weights (broadcast a single net over the ensemble). Non-finite
        weights are an InputError naming the layer and the runs."""
        ws = []
        for i, (W, view) in enumerate(zip(weights, self._views)):
            W = torch.as_tensor(W, dtype=self.dtype).cpu()
            if W.dim() == 2:
                W = W.expand_as(view)
            if W.shape != view.shape:
                raise InputError(f"layer {i + 1} weight has shape {tuple(W.shape)}, expected {tuple(view.shape)}")
            bad = ~torch.isfinite(W).reshape(W.shape[0], -1).all(-1)
            if bool(bad.any()):
                raise InputError(f"W_{i + 1} loaded into the ensemble is NaN or infinite in runs "
                                 f"{torch.nonzero(bad).flatten().tolist()[:8]}")
            ws.append(W)
        self.weights = ws
        self._fb[:] = -1
        self._first_bad.fill_(-1)

    # ------------------------------------------------------------------ stepping
    def step(self):
        """One SGD step (a divergence is recorded; ``run`` and ``raise_if_diverged`` raise it)."""
        self._advance(1)

    def run(self, n_steps: int, progress=None):
        """Advance every run by ``n_steps``; one kernel call per ``check_every`` steps."""
        self._run_in_calls(n_steps, progress)

    def _track_divergence(self):  # the kernel tracks every step
        pass

    def _advance(self, n: int, acc: np.ndarray | None = None, sample_every: int = 0) -> None:
        if self.step_count + n >= 2**32:
            raise InputError("the Philox step counter is 32-bit: at most 2^32 steps per ensemble")
        t = self.teacher
        exact = self.gradient == "exact"
        B = t.dx if exact else int(self.batch)
        npt = self._store.dtype
        hyper = np.array([self.eta, 2.0 * self.weight_decay, 2.0 / B, math.sqrt(t.dx), self.blowup_norm**2], dtype=npt)
        if acc is None:
            acc = np.zeros((0, self._store.shape[1]))
        init_bad = np.zeros(self._store.shape[1], dtype=np.uint8)
        key = int(self.seed)
        _launch((self._store, self._dims, self._A, self._Vm, self._Em, self._MO, self._G, hyper, self._e_sq,
                 np.uint64(key & _MASK32), np.uint64((key >> 32) & _MASK32), t.dx, t.dy, B, exact,
                 bool(self._out_identity), int(self.step_count), int(n), int(sample_every), self._n_quads,
                 -(-t.dx // 4), self._DXP // 4, -(-t.dy // 4), acc, self._fb, init_bad),
                self._store.shape[1] // BLOCK, int(self.threads) if self.threads else default_threads(), int(n))
        step0 = self.step_count
        self.step_count += n
        R = int(self.n_runs)
        bad = np.nonzero(init_bad[:R] & (self._fb[:R] < 0) | init_bad[:R] & (self._fb[:R] > step0))[0]
        if bad.size:
            self._fb[bad] = -1
            raise InputError(
                f"the weights of runs {bad.tolist()[:8]}{' ...' if bad.size > 8 else ''} were NaN, infinite or beyond "
                f"blowup_norm = {self.blowup_norm:g} before step {step0 + 1}: bad input (weights set by load_weights or "
                "in place), not a learning-rate problem")

    def raise_if_diverged(self):
        """DivergenceError naming every run whose update left it non-finite or beyond
        ``blowup_norm``, with the exact first such step."""
        fb = self._fb[: int(self.n_runs)]
        runs = np.nonzero(fb >= 0)[0]
        if runs.size:
            steps = fb[runs]
            shown = ", ".join(f"run {r} at step {s}" for r, s in list(zip(runs, steps))[:8])
            more = f" (+{runs.size - 8} more)" if runs.size > 8 else ""
            raise DivergenceError(
                f"SGD diverged in {runs.size}/{self.n_runs} runs (|theta| > {self.blowup_norm:g} or NaN): "
                f"{shown}{more}; eta = {self.eta:g} is past the stability limit for this problem/initialisation",
                runs=runs.tolist(), steps=steps.tolist())

    # ------------------------------------------------------------------ observables
    def run_accumulate(self, n_steps: int, sample_every: int = 1, progress=None) -> dict:
        """Advance ``n_steps`` and return per-run averages over the states after every
        ``sample_every`` steps, accumulated in-kernel (float64; see
        :meth:`LinearEnsemble.run_accumulate` for the observables and their definition)."""
        n, k = _check_accumulate(n_steps, sample_every)
        acc = np.zeros((self._obs_size(), self._store.shape[1]))
        chunk = max(k, (int(self.check_every) // k) * k)  # a multiple of k: samples fall where they would in one call
        left = n
        while left > 0:
            m = min(left, chunk)
            self._advance(m, acc, k)
            left -= m
            self.raise_if_diverged()
            if progress is not None:
                progress(m)
        return self._unpack(acc[:, : int(self.n_runs)] / (n // k))

    def _obs_size(self) -> int:
        d, dx, L = self.dims, self.teacher.dx, len(self.dims) - 1
        return d[0] ** 2 + d[-1] ** 2 + (L - 1) * dx * dx + L + 2

    def _unpack(self, a: np.ndarray) -> dict:
        d, dx, L, R = self.dims, self.teacher.dx, len(self.dims) - 1, int(self.n_runs)
        out, o = {}, 0

        def take(name, shape):
            nonlocal o
            size = int(np.prod(shape))
            out[name] = torch.from_numpy(np.ascontiguousarray(a[o:o + size].T.reshape(R, *shape)))
            o += size

        take("W1tW1", (d[0], d[0]))
        take("WDWDt", (d[-1], d[-1]))
        for k in range(1, L):
            take(f"K{k}", (dx, dx))
        take("grad_sq", (L,))
        out["loss"] = torch.from_numpy(a[o].copy())
        out["population_loss"] = torch.from_numpy(a[o + 1].copy())
        return out

    def next_batch(self):
        """The minibatch the next SGD step will use (input ``u`` (R,B,d0), label ``y``
        (R,B,dy)), without advancing: the step's Philox draws, mapped as in the kernel."""
        from .fused_linear import quadrature_batch

        if self.gradient == "exact":
            return quadrature_batch(self)
        t = self.teacher
        z = philox_normals(self.seed, torch.arange(int(self.n_runs)), torch.tensor([self.step_count]),
                           int(self.batch), self._n_quads)[0].to(self.dtype)
        xi, zeta = z[..., : t.dx], z[..., self._DXP: self._DXP + t.dy]
        return xi @ self._in_map.T, xi @ self._V_map.T + zeta @ self._e_map.T


def _check_accumulate(n_steps, sample_every) -> tuple[int, int]:
    n, k = int(n_steps), int(sample_every)
    if k < 1:
        raise InputError(f"sample_every must be >= 1, got {sample_every}")
    if n < k:
        raise InputError(f"n_steps = {n_steps} gives no sample (sample_every = {sample_every})")
    return n, k


def reference_run(ens: LinearEnsemble, n_steps: int, seed: int | None = None) -> None:
    """Advance any LinearEnsemble ``n_steps`` SGD steps with the torch twin's arithmetic
    (``FusedLinearEnsemble(backend="torch")``) on this kernel's stream: the same step as
    the compiled engine, evaluated by torch - the reference its float64 results must
    match to round-off. ``seed``: the Philox key (default: ``ens.seed``)."""
    t = ens.teacher
    DXP, DYP = padded(t.dx), padded(t.dy)
    steps = torch.arange(ens.step_count, ens.step_count + int(n_steps))
    z = philox_normals(ens.seed if seed is None else seed, torch.arange(int(ens.n_runs)), steps, int(ens.batch),
                       (DXP + DYP) // 4).to(ens.dtype)
    twin_steps(ens, z, DXP)
