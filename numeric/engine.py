"""Engine selection for the linear-network family: theorem modules call this, never an
engine class directly, so they gain nothing from knowing which engine runs.

* ``"fused"`` (numeric.fused_linear.FusedLinearEnsemble, Triton backend): picked on a CUDA
  device when Triton is installed, the problem fits the kernel (<= 4 layers, padded widths
  <= 32, batch <= 16, float32 or float64) and the kernel passed its one-time self-check
  on that device against the torch reference (exact GD to float64 round-off, SGD on the
  same Philox stream to float32 round-off).
* ``"fused-cpu"`` (numeric.fused_cpu.FusedCPULinearEnsemble, a numba kernel): on the CPU,
  when it is the CPU's auto engine (below), numba is installed, the problem fits (<= 4
  layers, float32 or float64) and the kernel passed its one-time self-check per dtype
  (exact GD against the batched engine to 1e-12 relative in float64; SGD against the torch
  twin of the fused kernel on the same Philox stream to round-off).
* ``"batched"`` (numeric.linear_ensemble.LinearEnsemble, the reference) otherwise.

Which engine ``engine="auto"`` builds on the CPU is a setting, ``"fused-cpu"`` by default
(it is 30-35x faster than the batched engine on the suite's problems):
``NTV_CPU_ENGINE=batched`` in the environment, or ``set_cpu_auto_engine("batched")`` in the
process, selects the reference instead. The two sample the same SGD chain but from
different random streams, so every stochastic number changes with the setting (each
within its error bar). Where the compiled engine cannot run (numba missing, the problem
does not fit, the self-check failed) the batched engine runs instead; ``linear_ensemble``
warns about it when the compiled engine was asked for by name (the setting, not the
default).

All engines have the same interface and statistics. The dtype is the caller's (float64
unless a caller asks for float32): the factory never lowers precision. The fused engines
run all SGD arithmetic in that dtype; only their Gaussian draws are float32 Box-Muller
values (cast up), whose deviation from N(0, 1) (truncation at 5.68 sd, mass 1.3e-8) is
far below any stationary error bar. Their random stream is Philox, not torch's
generator, so for the same seed they and the batched engine give different (equally
valid) SGD samples.

>>> import numpy as np
>>> from numeric.linear_ensemble import LinearTeacher
>>> ens = linear_ensemble(LinearTeacher(np.eye(2), np.eye(2), np.eye(2)), hidden=[2], n_runs=2, eta=0.01, device="cpu")
>>> type(ens).__name__ in ("FusedCPULinearEnsemble", "LinearEnsemble")  # the latter without numba
True
>>> choose_engine(LinearTeacher(np.eye(2), np.eye(2), np.eye(2)), [2], 2, device="cpu", cpu_engine="batched")
('batched', 'not a CUDA device')
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from core.errors import InputError

from .device import resolve_device
from .linear_ensemble import LinearEnsemble

ENGINES = ("auto", "batched", "fused", "fused-cpu")
CPU_AUTO_ENGINES = ("batched", "fused-cpu")
CPU_ENGINE_ENV = "NTV_CPU_ENGINE"
DEFAULT_CPU_ENGINE = "fused-cpu"
_SELF_CHECK: dict = {}  # (device, dtype) -> None (passed) or the failure text
_CPU_SELF_CHECK: dict = {}  # dtype -> None (passed) or the failure text
_CPU_AUTO: list = [None]  # set_cpu_auto_engine's choice; None: the environment's


def set_cpu_auto_engine(name: str | None) -> None:
    """Choose what ``engine="auto"`` builds on the CPU: ``"fused-cpu"`` (the default) or
    ``"batched"``; None returns to the environment variable ``NTV_CPU_ENGINE``."""
    if name is not None and name not in CPU_AUTO_ENGINES:
        raise InputError(f"the CPU auto engine must be one of {CPU_AUTO_ENGINES}, got {name!r}")
    _CPU_AUTO[0] = name


def cpu_engine_named() -> bool:
    """Whether the CPU auto engine was chosen by name (setting or environment), not by default."""
    return _CPU_AUTO[0] is not None or bool(os.environ.get(CPU_ENGINE_ENV, "").strip())


def cpu_auto_engine() -> str:
    """The CPU auto engine in force: :func:`set_cpu_auto_engine`'s choice, else
    ``NTV_CPU_ENGINE``, else ``"fused-cpu"``.

    >>> cpu_auto_engine() in CPU_AUTO_ENGINES
    True
    """
    if _CPU_AUTO[0] is not None:
        return _CPU_AUTO[0]
    name = os.environ.get(CPU_ENGINE_ENV, "").strip() or DEFAULT_CPU_ENGINE
    if name not in CPU_AUTO_ENGINES:
        raise InputError(f"{CPU_ENGINE_ENV} must be one of {', '.join(CPU_AUTO_ENGINES)}, got {name!r}")
    return name


def _input_width(teacher, M_I, Z) -> int:
    return teacher.dx if M_I is None and Z is None else (np.shape(M_I)[0] if M_I is not None else np.shape(Z)[0])


def choose_engine(teacher, hidden, n_runs, *, device="auto", dtype=torch.float64, batch=1, M_I=None,
                  Z=None, self_check=True, cpu_engine: str | None = None) -> tuple[str, str]:
    """``(engine, reason)``: which engine ``linear_ensemble`` builds for this problem, and why.

    ``cpu_engine`` overrides the CPU auto engine (:func:`cpu_auto_engine`) for this call.
    """
    from . import fused_linear  # light: triton is imported only if installed

    dev = resolve_device(device)
    if dev.type != "cuda":
        if (cpu_engine or cpu_auto_engine()) == "batched":
            return "batched", "not a CUDA device"
        return _choose_cpu(teacher, hidden, n_runs, dev, dtype, batch, M_I, Z, self_check)
    if not fused_linear.triton_available():
        return "batched", "triton is not installed"
    d0 = _input_width(teacher, M_I, Z)
    why = fused_linear.fused_unsupported_reason(list(hidden), teacher.dx, teacher.dy, d0, batch, n_runs, dtype)
    if why:
        return "batched", why
    if self_check:
        failure = fused_self_check(dev, dtype)
        if failure:
            return "batched", f"fused kernel failed its self-check on {dev}: {failure}"
    return "fused", "CUDA + Triton, problem fits the kernel, self-check passed"


def _choose_cpu(teacher, hidden, n_runs, dev, dtype, batch, M_I, Z, self_check) -> tuple[str, str]:
    from . import fused_cpu

    if not fused_cpu.numba_available():
        return "batched", "numba is not installed (pip install numba)"
    why = fused_cpu.unsupported_reason(list(hidden), teacher.dx, teacher.dy, _input_width(teacher, M_I, Z), batch,
                                       n_runs, dtype, dev)
    if why:
        return "batched", why
    if self_check:
        failure = fused_cpu_self_check(dtype)
        if failure:
            return "batched", f"the fused-cpu kernel failed its self-check ({dtype}): {failure}"
    return "fused-cpu", "CPU auto engine 'fused-cpu': numba, problem fits the kernel, self-check passed"


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


def fused_cpu_self_check(dtype=torch.float64) -> str | None:
    """Check the compiled CPU kernel once per dtype (cached; a failure warns): None = passed.

    * exact GD (full batch, as ``gradient="exact"``) against the batched engine's
      ``exact_gd_step``: two and three layers with weight decay, non-identity M_I, Z, M_O,
      37 runs (a partial block), 40 steps, to 1e-12 relative in float64 (the round-off of
      40 steps is ~1e-14) or 1e-4 in float32 (~40 steps x ~10 flops x 6e-8);
    * its normals against the torch twin's (``fused_linear.philox_normals``) on the same
      Philox counters: equal to within 8 float32 ulps (both evaluate log/sin/cos to
      <= 2 ulps; a wrong counter or key gives O(1) differences);
    * 40 SGD steps (batch 2, two layers) against the twin's arithmetic fed this kernel's
      normals (``fused_cpu.reference_run``): 1e-12 relative in float64, 1e-4 in float32.
    """
    if dtype not in _CPU_SELF_CHECK:
        try:
            _CPU_SELF_CHECK[dtype] = _run_cpu_self_check(dtype)
        except Exception as exc:  # a compile error must fall back, not break the theorem run
            _CPU_SELF_CHECK[dtype] = f"{type(exc).__name__}: {exc}"
        if _CPU_SELF_CHECK[dtype]:
            warnings.warn(f"fused-cpu engine disabled ({dtype}): {_CPU_SELF_CHECK[dtype]}", UserWarning)
    return _CPU_SELF_CHECK[dtype]


def _run_cpu_self_check(dtype) -> str | None:
    from .fused_cpu import FusedCPULinearEnsemble, philox_normals, reference_run
    from .fused_linear import exact_gd_step
    from .fused_linear import philox_normals as twin_normals
    from .linear_ensemble import LinearTeacher

    rng = np.random.default_rng(0)
    teacher = LinearTeacher(rng.normal(size=(3, 4)), np.eye(4) + 0.3, 0.2 * np.eye(3))
    maps = dict(Z=np.eye(4) + 0.1 * rng.normal(size=(4, 4)), M_I=np.eye(4) + 0.1 * rng.normal(size=(4, 4)),
                M_O=np.eye(3) + 0.1 * rng.normal(size=(3, 3)))
    rtol = 1e-12 if dtype == torch.float64 else 1e-4
    gap = lambda xs, ys: max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(xs, ys))
    for hidden in ([5], [5, 4]):
        kw = dict(teacher=teacher, hidden=hidden, n_runs=37, eta=0.02, weight_decay=0.01, seed=3, device="cpu",
                  dtype=dtype, **maps)
        ref, cpu = LinearEnsemble(**kw), FusedCPULinearEnsemble(gradient="exact", threads=1, **kw)
        cpu.load_weights(ref.weights)
        for _ in range(40):
            exact_gd_step(ref)
        cpu.run(40)
        err = gap(ref.weights, cpu.weights)
        if not err <= rtol:
            return f"exact GD hidden={hidden}: relative error {err:.3g} > {rtol:g} against the batched engine"
    runs, steps = torch.arange(0, 2000, 7), torch.arange(0, 40, 3)
    a, b = philox_normals(11, runs, steps, 2, 2), twin_normals(11, runs, steps, 2, 2)
    ulps = float(((a - b).abs() / torch.maximum(a.abs(), b.abs()).clamp_min(1e-30)).max()) / float(np.finfo(np.float32).eps)
    if not ulps <= 8:
        return f"normals differ from the torch twin's by {ulps:.3g} float32 ulps (> 8)"
    kw = dict(teacher=teacher, hidden=[5], n_runs=37, eta=0.02, weight_decay=0.01, batch=2, seed=3, device="cpu",
              dtype=dtype)
    ref, cpu = LinearEnsemble(**kw), FusedCPULinearEnsemble(threads=1, **kw)
    reference_run(ref, 40, seed=3)
    cpu.run(40)
    err = gap(ref.weights, cpu.weights)
    if not err <= rtol:
        return f"SGD: relative error {err:.3g} > {rtol:g} against the twin's arithmetic on this stream"
    return None


def linear_ensemble(teacher, hidden, n_runs, eta, *, engine: str = "auto", **kwargs):
    """An ensemble SGD engine for ``f = M_O W_D ... W_1 M_I Z x`` (see LinearEnsemble).

    ``engine="auto"`` picks the fused GPU engine where it applies, on the CPU the CPU auto
    engine (``"fused-cpu"`` unless ``NTV_CPU_ENGINE=batched`` or
    ``set_cpu_auto_engine("batched")``: see the module docstring and
    :func:`choose_engine`); ``"batched"``, ``"fused"`` or ``"fused-cpu"`` force one
    (forcing a fused engine where it does not apply is an InputError). Keyword arguments
    are LinearEnsemble's.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "batched":
        return LinearEnsemble(teacher, hidden, n_runs, eta, **kwargs)
    ask = dict(dtype=kwargs.get("dtype", torch.float64), batch=kwargs.get("batch", 1), M_I=kwargs.get("M_I"),
               Z=kwargs.get("Z"))
    if engine == "fused-cpu":
        device = kwargs.get("device", "auto")
        device = "cpu" if device in (None, "auto") else device
        choice, reason = choose_engine(teacher, hidden, n_runs, device=device, self_check=False, cpu_engine="fused-cpu",
                                       **ask)
        if choice != "fused-cpu":
            raise InputError(f"the fused-cpu engine does not apply here: {reason}")
        from .fused_cpu import FusedCPULinearEnsemble

        return FusedCPULinearEnsemble(teacher, hidden, n_runs, eta, **{**kwargs, "device": device})
    cpu_engine = "batched" if engine == "fused" else None
    choice, reason = choose_engine(teacher, hidden, n_runs, device=kwargs.get("device", "auto"),
                                   self_check=engine == "auto", cpu_engine=cpu_engine, **ask)
    if choice == "fused":
        from .fused_linear import FusedLinearEnsemble

        return FusedLinearEnsemble(teacher, hidden, n_runs, eta, backend="triton", **kwargs)
    if choice == "fused-cpu":
        from .fused_cpu import FusedCPULinearEnsemble

        return FusedCPULinearEnsemble(teacher, hidden, n_runs, eta, **kwargs)
    if engine == "fused":
        raise InputError(f"the fused engine does not apply here: {reason}")
    if (resolve_device(kwargs.get("device", "auto")).type != "cuda" and cpu_auto_engine() == "fused-cpu"
            and cpu_engine_named()):
        warnings.warn(f"the CPU auto engine is 'fused-cpu' but it does not apply here ({reason}); "
                      "using the batched engine", UserWarning, stacklevel=2)
    return LinearEnsemble(teacher, hidden, n_runs, eta, **kwargs)
