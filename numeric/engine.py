"""Engine selection for the linear-network family: theorem modules call this, never an
engine class directly, so they gain nothing from knowing which engine runs.

* ``"fused"`` (numeric.fused_linear.FusedLinearEnsemble, Triton backend): picked on a CUDA
  device when Triton is installed, the problem fits the kernel (<= 4 layers, padded widths
  <= 32, batch <= 16, float32 or float64) and the kernel passed its one-time self-check
  on that device against the torch reference (exact GD to float64 round-off, SGD on the
  same Philox stream to float32 round-off). Otherwise, and always on the CPU:
* ``"batched"`` (numeric.linear_ensemble.LinearEnsemble, the reference).

Both have the same interface and statistics. The dtype is the caller's (float64 unless a
caller asks for float32): the factory never lowers precision. The fused engine runs all
SGD arithmetic in that dtype; only its Gaussian draws are float32 Box-Muller values (cast
up), whose deviation from N(0, 1) (truncation at 5.68 sd, mass 1.3e-8) is far below any
stationary error bar. Its random stream is Philox, not torch's generator, so for the same
seed the two engines give different (equally valid) SGD samples.

>>> import numpy as np
>>> from numeric.linear_ensemble import LinearTeacher
>>> ens = linear_ensemble(LinearTeacher(np.eye(2), np.eye(2), np.eye(2)), hidden=[2], n_runs=2, eta=0.01, device="cpu")
>>> type(ens).__name__
'LinearEnsemble'
>>> choose_engine(LinearTeacher(np.eye(2), np.eye(2), np.eye(2)), [2], 2, device="cpu")
('batched', 'not a CUDA device')
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .device import resolve_device
from core.errors import InputError
from .linear_ensemble import LinearEnsemble

ENGINES = ("auto", "batched", "fused")
_SELF_CHECK: dict = {}  # (device, dtype) -> None (passed) or the failure text


def choose_engine(teacher, hidden, n_runs, *, device="auto", dtype=torch.float64, batch=1, M_I=None,
                  Z=None, self_check=True) -> tuple[str, str]:
    """``(engine, reason)``: which engine ``linear_ensemble`` builds for this problem, and why."""
    from . import fused_linear  # light: triton is imported only if installed

    dev = resolve_device(device)
    if dev.type != "cuda":
        return "batched", "not a CUDA device"
    if not fused_linear.triton_available():
        return "batched", "triton is not installed"
    d0 = teacher.dx if M_I is None and Z is None else (np.shape(M_I)[0] if M_I is not None else np.shape(Z)[0])
    why = fused_linear.fused_unsupported_reason(list(hidden), teacher.dx, teacher.dy, d0, batch, n_runs, dtype)
    if why:
        return "batched", why
    if self_check:
        failure = fused_self_check(dev, dtype)
        if failure:
            return "batched", f"fused kernel failed its self-check on {dev}: {failure}"
    return "fused", "CUDA + Triton, problem fits the kernel, self-check passed"


def fused_self_check(device, dtype=torch.float64) -> str | None:
    """Run the fused kernel against its torch reference once per (device, dtype); cache.

    Exact GD (two and three layers, a partial last block of runs) must agree to 1e-10
    relative in float64 (round-off of ~40 steps: ~1e-14) or 1e-4 in float32 (~40 steps x
    ~10 flops x 6e-8); SGD on the shared Philox stream to 1e-4 relative (float32 normals
    may differ by a few ulp between the GPU's and the CPU's log/cos, ~1e-6). None = passed.
    """
    key = (str(device), dtype)
    if key not in _SELF_CHECK:
        try:
            _SELF_CHECK[key] = _run_self_check(torch.device(device), dtype)
        except Exception as exc:  # a compile error must fall back, not break the theorem run
            _SELF_CHECK[key] = f"{type(exc).__name__}: {exc}"
        if _SELF_CHECK[key]:
            warnings.warn(f"fused engine disabled on {device} ({dtype}): {_SELF_CHECK[key]}", UserWarning)
    return _SELF_CHECK[key]


def _run_self_check(device, dtype) -> str | None:
    from .fused_linear import FusedLinearEnsemble
    from .linear_ensemble import LinearTeacher

    rng = np.random.default_rng(0)
    teacher = LinearTeacher(rng.normal(size=(3, 4)), np.eye(4) + 0.3, 0.2 * np.eye(3))
    rtol_exact = 1e-10 if dtype == torch.float64 else 1e-4
    for hidden, gradient, rtol in (([5], "exact", rtol_exact), ([5, 4], "exact", rtol_exact), ([5], "sgd", 1e-4)):
        kw = dict(teacher=teacher, hidden=hidden, n_runs=77, eta=0.02, weight_decay=0.01, batch=2,
                  gradient=gradient, seed=3, device=device, dtype=dtype, block_r=32)
        ref, fused = FusedLinearEnsemble(backend="torch", **kw), FusedLinearEnsemble(backend="triton", **kw)
        ref.run(40)
        fused.run(40)
        for i, (a, b) in enumerate(zip(ref.weights, fused.weights)):
            err = float((a - b).abs().max() / a.abs().max())
            if not err <= rtol:
                return f"{gradient} hidden={hidden} layer {i + 1}: relative error {err:.3g} > {rtol:g}"
    return None


def linear_ensemble(teacher, hidden, n_runs, eta, *, engine: str = "auto", **kwargs):
    """An ensemble SGD engine for ``f = M_O W_D ... W_1 M_I Z x`` (see LinearEnsemble).

    ``engine="auto"`` picks the fused GPU engine where it applies (see the module
    docstring and :func:`choose_engine`), the batched reference otherwise; ``"batched"``
    or ``"fused"`` force one (forcing ``"fused"`` where it does not apply is an InputError).
    Keyword arguments are LinearEnsemble's.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "batched":
        return LinearEnsemble(teacher, hidden, n_runs, eta, **kwargs)
    choice, reason = choose_engine(
        teacher, hidden, n_runs, device=kwargs.get("device", "auto"), dtype=kwargs.get("dtype", torch.float64),
        batch=kwargs.get("batch", 1), M_I=kwargs.get("M_I"), Z=kwargs.get("Z"), self_check=engine == "auto",
    )
    if choice == "fused":
        from .fused_linear import FusedLinearEnsemble

        return FusedLinearEnsemble(teacher, hidden, n_runs, eta, backend="triton", **kwargs)
    if engine == "fused":
        raise InputError(f"the fused engine does not apply here: {reason}")
    return LinearEnsemble(teacher, hidden, n_runs, eta, **kwargs)
