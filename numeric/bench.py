"""``python -m numeric.bench``: time the ensemble-SGD engines side by side on one problem.

Default problem: two-layer linear net, dx=4, dy=3, width 6, batch 1, label noise,
float32 (``--dtype float64`` for the verification precision). Engines:

* ``naive``       - one run, nn.Linear + torch.optim.SGD (numeric.naive_sgd); the baseline;
* ``batched``     - LinearEnsemble, every run advanced by batched matmuls (the reference);
* ``compiled``    - the batched step (data maps, forward, backward, update) under
                    ``torch.compile``; skipped, with the reason, where compilation fails;
                    left out of ``--quick`` (compiling takes a minute or more);
* ``fused-torch`` - the fused kernel's pure-torch twin (same Philox stream; a check, not
                    meant to be fast);
* ``fused``       - the Triton kernel (CUDA + triton only): weights in registers, data
                    drawn in-kernel, one launch per ``--launch-steps`` steps. A few
                    (BLOCK_R, num_warps) configurations are tried; the best is reported;
* ``fused-cpu``   - the compiled CPU kernel (numba, numeric.fused_cpu): runs in SIMD lanes,
                    data drawn in-kernel on the fused kernel's Philox stream, one call per
                    timed run (needs numba);
* ``jax``         - the same SGD step as single-run functions, ``vmap`` over runs,
                    ``lax.scan`` over steps, ``jit`` (only where jax is installed:
                    ``pip install -e '.[bench]'``).

Each engine is warmed up, then timed ``--repeats`` times; the best time counts (the
least-disturbed measurement). Throughput is run-steps/s = runs x steps / seconds, reported
with its ratio to ``naive`` and to ``batched`` and, on the CPU, as a fraction of the
machine's peak: ``flops per run-step x run-steps/s`` over ``cores x clock x FMA lanes x 2
x FMA units`` (:func:`cpu_peak`, read from /proc/cpuinfo; the flops are the problem's SGD
arithmetic, :func:`numeric.fused_cpu.sgd_flops`, the same for every engine).

Run as a command, the bench sets ``OMP_WAIT_POLICY=PASSIVE`` unless the caller set it: with
OpenMP's default spin-waiting, two torch threads on a busy 2-core machine made the batched
engine 4-20x slower (measured: 3.4e5 and 5.2e4 run-steps/s against 1.1e6 passive); with
passive waiting the threads sleep instead of fighting the other processes for the cores.
The policy in force is reported with every row.

>>> rows = main_rows(["--quick", "--device", "cpu", "--engines", "naive,batched", "--repeats", "1"])
>>> [r["name"] for r in rows], rows[0]["speedup_vs_naive"], rows[1]["speedup_vs_batched"]
(['naive', 'batched'], 1.0, 1.0)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from core.validation import positive_int_arg

EXIT_USAGE = 2
ENGINE_NAMES = ("naive", "batched", "compiled", "fused-torch", "fused", "fused-cpu", "jax")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"python -m numeric.bench: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _engine_list(text: str) -> list:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in ENGINE_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {bad or text!r}; choose from {', '.join(ENGINE_NAMES)}")
    return names


def _hidden_list(text: str) -> list:
    try:
        widths = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden widths must be comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m numeric.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short CPU-sized run (seconds; leaves out 'compiled')")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: auto, a GPU when there is one)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="default: float32")
    p.add_argument("--engines", type=_engine_list, default=None,
                   help=f"comma-separated subset of {','.join(ENGINE_NAMES)} (default: all that apply); "
                        "naive and batched always run (the baselines of the ratios)")
    p.add_argument("--dx", type=positive_int_arg, default=4)
    p.add_argument("--dy", type=positive_int_arg, default=3)
    p.add_argument("--hidden", type=_hidden_list, default=[6], help="hidden widths, e.g. 6 or 6,6 (default: 6)")
    p.add_argument("--batch", type=positive_int_arg, default=1)
    p.add_argument("--eta", type=_positive_float, default=0.01)
    p.add_argument("--runs", type=positive_int_arg, default=None, help="ensemble size of the batched engines")
    p.add_argument("--fused-runs", type=positive_int_arg, default=None,
                   help="ensemble size of the fused kernels (fused, fused-cpu) and of jax")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="timed steps of the ensemble engines")
    p.add_argument("--naive-steps", type=positive_int_arg, default=None, help="timed steps of the naive loop")
    p.add_argument("--launch-steps", type=positive_int_arg, default=1000, help="steps per fused-kernel launch")
    p.add_argument("--repeats", type=positive_int_arg, default=3, help="timed repeats per engine; the best counts")
    p.add_argument("--threads", type=positive_int_arg, default=None,
                   help="CPU threads of torch and of the fused-cpu kernel (default: torch's)")
    return p


def _plan(args, device) -> dict:
    """Sizes per engine: (runs, steps). --quick keeps the whole CPU run to a few seconds."""
    cuda = device.type == "cuda"
    if args.quick:
        runs, steps, naive_steps, fused_runs, fused_steps, cpu_steps = 4096, 30, 200, 2**16, 200, 100
    elif cuda:
        runs, steps, naive_steps, fused_runs, fused_steps, cpu_steps = 65536, 300, 2000, 2**20, 3000, 300
    else:
        runs, steps, naive_steps, fused_runs, fused_steps, cpu_steps = 16384, 200, 2000, 2**16, 200, 400
    runs = args.runs or runs
    steps = args.steps or steps
    fruns = args.fused_runs or fused_runs
    return {
        "naive": (1, args.naive_steps or naive_steps),
        "batched": (runs, steps),
        "compiled": (runs, steps),
        "fused-torch": (runs, max(1, steps // 3)),
        "fused": (fruns, args.steps or fused_steps),
        "fused-cpu": (args.fused_runs or (2**14 if args.quick else fused_runs), args.steps or cpu_steps),
        "jax": (args.fused_runs or (4096 if args.quick else 2**14), args.steps or cpu_steps),
    }


def teacher_for(dx: int, dy: int, noise: float = 0.5):
    """The benchmark's teacher: a fixed random V, Sx = I, label noise Se = noise^2 I."""
    import numpy as np

    from .linear_ensemble import LinearTeacher

    rng = np.random.default_rng(0)
    return LinearTeacher(rng.normal(size=(dy, dx)) / np.sqrt(dx), np.eye(dx), noise**2 * np.eye(dy))


def op_counts(dx: int, dy: int, hidden, batch: int = 1) -> dict:
    """Work per run-step of the fused GPU kernel on the padded shapes it really computes:
    multiply-adds (data maps, forward, output, backward, gradients), update flops, Philox
    calls (10 rounds of 2 mul-hi + 2 mul-lo + 4 xor + 2 key adds) and special-function ops
    (per Box-Muller pair: log, sqrt, sin, cos).

    >>> c = op_counts(4, 3, [6]); c["fma"], c["useful_fma"], c["philox_calls"], c["sfu"]
    (240, 157, 2, 16)
    """
    from .fused_linear import padded

    dims = [dx, *hidden, dy]
    P = [padded(d) for d in dims]
    dxp, dyp = padded(dx), padded(dy)

    def fmas(P, dxp, dyp):
        mats = sum(o * i for i, o in zip(P[:-1], P[1:]))  # one pass over every weight
        data = P[0] * dxp + dyp * dxp + dyp * dyp  # u = A xi, y = V xi + E zeta
        head = 2 * dyp * P[-1]  # out = M_O h_D, delta_D = M_O^T (out - y)
        back = mats - P[1] * P[0]  # delta through every layer but the first
        return batch * (data + mats + head + back + mats), mats  # ... + forward + gradients

    fma, mats = fmas(P, dxp, dyp)
    useful, _ = fmas(dims, dx, dy)
    philox = batch * (dxp + dyp) // 4
    return {
        "fma": fma,
        "useful_fma": useful,
        "update_flops": 4 * mats,
        "philox_calls": philox,
        "int_ops": philox * 10 * 10,
        "sfu": philox * 2 * 4,
    }


# ------------------------------------------------------------------ the machine's peak
def _cpuinfo() -> list:
    """/proc/cpuinfo as one dict per logical CPU ([] where it cannot be read)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                entry[k.strip()] = v.strip()
        if entry:
            cpus.append(entry)
    return cpus


def _lscpu_max_mhz() -> float | None:
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"CPU max MHz:\s*([0-9.]+)", out)
    return float(m.group(1)) if m else None


def cpu_peak(dtype: str = "float64", cpuinfo: list | None = None, max_mhz: float | None = None) -> dict:
    """Peak floating-point rate of the CPUs this process may use, and how it was computed:
    ``cores x clock x FMA lanes x 2 (an FMA is two flops) x FMA units``.

    * cores: distinct (physical id, core id) among the CPUs of this process's affinity (an
      SMT sibling shares its core's FMA units);
    * clock: ``CPU max MHz`` from lscpu when it reports one, else the largest ``cpu MHz``
      of /proc/cpuinfo (a VM often shows only the nominal clock);
    * FMA lanes: the FMA datapath width over the dtype's bits - 512-bit with ``avx512f``
      (but 256-bit on AMD family 0x19, Zen 3/4, which splits 512-bit FMAs into two halves),
      256-bit with ``avx2``/``fma`` (128-bit on AMD family 0x17 models < 0x30, Zen 1),
      128-bit otherwise;
    * FMA units: 2 per core (every x86 core with FMA since 2013; a few Intel AVX-512 parts
      have one 512-bit unit, for which this is an upper estimate).

    >>> info = [{"processor": "0", "physical id": "0", "core id": "0", "cpu MHz": "2500.000",
    ...          "vendor_id": "GenuineIntel", "cpu family": "6", "model": "85", "flags": "fma avx2"}]
    >>> p = cpu_peak("float64", cpuinfo=info, max_mhz=None); p["gflops"], p["lanes"]
    (40.0, 4)
    """
    import numpy as np

    cpus = _cpuinfo() if cpuinfo is None else cpuinfo
    try:
        allowed = os.sched_getaffinity(0) if cpuinfo is None else None
    except AttributeError:  # pragma: no cover - not Linux
        allowed = None
    mine = [c for c in cpus if allowed is None or int(c.get("processor", -1)) in allowed] or cpus
    cores = len({(c.get("physical id", "0"), c.get("core id", c.get("processor"))) for c in mine}) or (os.cpu_count() or 1)
    flags = set((mine[0].get("flags", "") if mine else "").split())
    vendor = mine[0].get("vendor_id", "") if mine else ""
    family = int(mine[0].get("cpu family", "0") or 0) if mine else 0
    model = int(mine[0].get("model", "0") or 0) if mine else 0
    mhz_max = _lscpu_max_mhz() if (max_mhz is None and cpuinfo is None) else max_mhz
    mhz_info = max((float(c["cpu MHz"]) for c in mine if "cpu MHz" in c), default=None)
    mhz, clock_src = (mhz_max, "CPU max MHz, lscpu") if mhz_max else (mhz_info, "cpu MHz, /proc/cpuinfo")
    amd = vendor == "AuthenticAMD"
    if "avx512f" in flags and not (amd and family == 0x19):
        bits, why = 512, "avx512f"
    elif "avx512f" in flags:
        bits, why = 256, "avx512f, but AMD family 0x19 executes 512-bit FMAs on 256-bit units"
    elif "fma" in flags and amd and family == 0x17 and model < 0x30:
        bits, why = 128, "fma, AMD family 0x17 model < 0x30 (128-bit FMA units)"
    elif "fma" in flags or "avx2" in flags:
        bits, why = 256, "avx2/fma"
    else:
        bits, why = 128, "no fma/avx2 flag (128-bit SSE; an FMA-free core does a multiply and an add)"
    lanes = bits // (64 if dtype == "float64" else 32)
    units = 2
    if not mhz:
        return {"gflops": None, "how": "no CPU clock found in /proc/cpuinfo or lscpu", "cores": cores}
    gflops = float(np.round(cores * mhz / 1000 * lanes * 2 * units, 1))
    how = (f"{cores} cores x {mhz / 1000:.3f} GHz ({clock_src}) x {lanes} {dtype} lanes ({bits}-bit FMA: {why}) "
           f"x 2 flops/FMA x {units} FMA units = {gflops:g} GFLOP/s")
    return {"gflops": gflops, "how": how, "cores": cores, "ghz": mhz / 1000, "lanes": lanes, "fma_bits": bits,
            "fma_units": units, "flags": sorted(flags & {"avx2", "fma", "avx512f"})}


# ------------------------------------------------------------------ engines
def _time(fn, repeats: int, sync, cpu: list | None = None) -> float:
    """Best wall time of ``repeats`` calls; ``cpu`` (a list) receives the process CPU time of
    that best call (every thread's: the work done, whatever else the machine was doing)."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best:
            best = t
            if cpu is not None:
                cpu[:] = [c]
    return best


class _Skip(Exception):
    """An engine that cannot run here (the reason is reported, the bench goes on)."""


def _step_math(in_map, V_map, e_map, M_O, eta, decay, batch):
    """One SGD step as a pure function of the weights and the draws (the batched engine's
    arithmetic): operators only, so torch tensors (every run at once) and jax arrays (one
    run, under ``vmap``) both go through it."""

    def step(ws, xi, zeta):
        u = xi @ in_map.T
        y = xi @ V_map.T + zeta @ e_map.T
        hs = [u]
        for W in ws:
            hs.append(hs[-1] @ W.transpose(-1, -2))
        out = hs[-1] if M_O is None else hs[-1] @ M_O.T
        delta = out - y if M_O is None else (out - y) @ M_O
        deltas = [delta]
        for W in reversed(ws[1:]):
            delta = delta @ W
            deltas.append(delta)
        new = []
        for W, d, h in zip(ws, deltas[::-1], hs[:-1]):
            g = (2.0 / batch) * d.transpose(-1, -2) @ h
            new.append(W - eta * (g + decay * W) if decay else W - eta * g)
        return new

    return step


class _CompiledBatched:
    """The batched engine's step under torch.compile; data drawn eagerly from its generator."""

    def __init__(self, eng):
        import torch

        self.eng = eng
        M_O = None if eng._out_identity else eng._M_O
        step = _step_math(eng._in_map, eng._V_map, eng._e_map, M_O, eng.eta, 2.0 * eng.weight_decay,
                          eng.batch)
        try:
            self.step = torch.compile(step, fullgraph=True, dynamic=False)
            xi, zeta = self._draw()
            got = self.step(list(eng.weights), xi, zeta)
        except Exception as exc:  # no C++ compiler, an unsupported build: report, do not crash
            raise _Skip(f"torch.compile failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
        want = step(list(eng.weights), xi, zeta)
        err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, want))
        tol = 1e-10 if eng.dtype == torch.float64 else 1e-4
        if not err <= tol:
            raise _Skip(f"torch.compile's step differs from the eager step by {err:.3g} (> {tol:g})")
        self.ws = list(eng.weights)

    def _draw(self):
        import torch

        e, t = self.eng, self.eng.teacher
        xi = torch.randn(e.n_runs, e.batch, t.dx, generator=e._gen, dtype=e.dtype)
        zeta = torch.randn(e.n_runs, e.batch, t.dy, generator=e._gen, dtype=e.dtype)
        return xi, zeta

    def run(self, n):
        import torch

        for _ in range(n):
            self.ws = self.step(self.ws, *self._draw())
        norm = sum(W.pow(2).sum(dim=(-1, -2)) for W in self.ws)
        if not bool(torch.isfinite(norm).all()) or bool((norm > self.eng.blowup_norm**2).any()):
            from core.errors import DivergenceError

            raise DivergenceError(f"SGD diverged (compiled engine): |theta| > {self.eng.blowup_norm:g} or NaN in "
                                  f"{int((~(norm <= self.eng.blowup_norm**2)).sum())} runs")


class _JaxEnsemble:
    """The SGD step for one run, ``vmap`` over runs, ``lax.scan`` over steps, ``jit``."""

    def __init__(self, teacher, hidden, n_runs, eta, batch, dtype, seed, init):
        try:
            import jax
        except ImportError:
            raise _Skip("jax is not installed (pip install -e '.[bench]')") from None
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", dtype == "float64")
        jdt = jnp.float64 if dtype == "float64" else jnp.float32
        in_map, V_map, e_map = (jnp.asarray(a.numpy(), dtype=jdt) for a in init["maps"])
        M_O = None if init["out_identity"] else jnp.asarray(init["M_O"].numpy(), dtype=jdt)
        dx, dy = teacher.dx, teacher.dy
        B = int(batch)

        step_math = _step_math(in_map, V_map, e_map, M_O, eta, 0.0, B)

        def step_one(ws, xi, zeta):  # one run: ws = tuple of (out, in) matrices, xi (B, dx)
            return tuple(step_math(ws, xi, zeta))

        def body(carry, _):
            ws, key = carry
            key, k1, k2 = jax.random.split(key, 3)
            xi = jax.random.normal(k1, (n_runs, B, dx), dtype=jdt)
            zeta = jax.random.normal(k2, (n_runs, B, dy), dtype=jdt)
            return (jax.vmap(step_one)(ws, xi, zeta), key), None

        def run_n(ws, key, n):
            (ws, key), _ = jax.lax.scan(body, (ws, key), None, length=n)
            return ws, key

        self._run = jax.jit(run_n, static_argnums=2)
        self.ws = tuple(jnp.asarray(W.numpy(), dtype=jdt) for W in init["weights"])
        self.key = jax.random.PRNGKey(seed)
        self.blowup = init["blowup_norm"]
        self.jnp = jnp

    def run(self, n):
        self.ws, self.key = self._run(self.ws, self.key, int(n))
        norm = sum(self.jnp.sum(W * W, axis=(-1, -2)) for W in self.ws)
        bad = int(self.jnp.sum(~(norm <= self.blowup**2)))
        if bad:
            from core.errors import DivergenceError

            raise DivergenceError(f"SGD diverged (jax engine): |theta| > {self.blowup:g} or NaN in {bad} runs")


def _bench_engine(name, args, device, dtype, runs, steps, teacher, sync) -> dict:
    """Build, warm up and time one engine; returns its row (without the ratios)."""
    import torch

    common = dict(batch=args.batch, device=device, dtype=dtype, seed=0)
    extra = {}
    threads = torch.get_num_threads() if device.type == "cpu" else None
    if name == "naive":
        from .naive_sgd import NaiveSGD

        eng = NaiveSGD(teacher, args.hidden, args.eta, **common)
        eng.run(min(50, steps))
    elif name == "batched":
        from .linear_ensemble import LinearEnsemble

        eng = LinearEnsemble(teacher, args.hidden, runs, args.eta, check_every=10**9, **common)
        eng.run(min(5, steps))
    elif name == "compiled":
        from .linear_ensemble import LinearEnsemble

        t0 = time.perf_counter()
        eng = _CompiledBatched(LinearEnsemble(teacher, args.hidden, runs, args.eta, **common))
        eng.run(2)
        extra = {"first_call_s": time.perf_counter() - t0}
    elif name == "fused-torch":
        from .fused_linear import FusedLinearEnsemble

        eng = FusedLinearEnsemble(teacher, args.hidden, runs, args.eta, backend="torch", check_every=steps, **common)
        eng.run(min(2, steps))
    elif name == "fused-cpu":
        from core.errors import InputError

        from . import fused_cpu
        from .engine import fused_cpu_self_check

        if not fused_cpu.numba_available():
            raise _Skip("numba is not installed (pip install numba)")
        t0 = time.perf_counter()
        eng = fused_cpu.FusedCPULinearEnsemble(teacher, args.hidden, runs, args.eta, check_every=steps,
                                               threads=args.threads, **common)
        eng.run(1)  # compile, or load the compiled kernel from numba's cache
        first = time.perf_counter() - t0
        # Time a verified kernel only: the engine factory's agreement check (exact GD against
        # the batched engine, SGD against the twin's arithmetic on the same stream).
        failure = fused_cpu_self_check(dtype)
        if failure:
            raise InputError(f"the fused-cpu kernel failed its self-check, no timing reported: {failure}")
        threads = int(args.threads) if args.threads else fused_cpu.default_threads()
        extra = {"first_call_s": first, "self_check": "passed"}
    elif name == "jax":
        from .linear_ensemble import LinearEnsemble

        ref = LinearEnsemble(teacher, args.hidden, runs, args.eta, **common)  # the same initial weights
        init = {"maps": (ref._in_map, ref._V_map, ref._e_map), "M_O": ref._M_O, "out_identity": ref._out_identity,
                "weights": ref.weights, "blowup_norm": ref.blowup_norm}
        t0 = time.perf_counter()
        eng = _JaxEnsemble(teacher, args.hidden, runs, args.eta, args.batch, args.dtype, 0, init)
        eng.run(steps)  # jit compiles for this number of steps
        import jax

        extra = {"first_call_s": time.perf_counter() - t0, "jax": jax.__version__}
        threads = None
    else:  # fused: try a few launch configurations, keep the fastest (one under the interpreter)
        from core.errors import InputError

        from .engine import fused_self_check
        from .fused_linear import FusedLinearEnsemble

        interpreted = os.environ.get("TRITON_INTERPRET") == "1"
        # Time a verified kernel only: the engine factory's agreement check against the torch
        # reference (exact GD to round-off, SGD on the same Philox stream). Skipped under the
        # interpreter (minutes there; the interpreter test covers the same comparison).
        failure = None if interpreted else fused_self_check(device, dtype)
        if failure:
            raise InputError(f"the fused kernel failed its self-check, no timing reported: {failure}")
        best = None
        configs = ((32, 1), (64, 2), (128, 4), (256, 4), (128, 2), (64, 1))
        if interpreted:
            configs = configs[:1]
        for block_r, warps in configs:
            cand = FusedLinearEnsemble(teacher, args.hidden, runs, args.eta, backend="triton", block_r=block_r,
                                       num_warps=warps, check_every=args.launch_steps, **common)
            cand.run(2)  # compile
            t = _time(lambda: cand.run(min(steps, args.launch_steps)), 1, sync)
            if best is None or t < best[0]:
                best = (t, cand, block_r, warps)
        _, eng, block_r, warps = best
        extra = {"block_r": block_r, "num_warps": warps, "launch_steps": args.launch_steps,
                 "interpreted": interpreted, "self_check": "skipped (interpreter)" if interpreted else "passed"}
        threads = None
    cpu = []
    seconds = _time(lambda: eng.run(steps), args.repeats, sync, cpu)
    per_cpu_s = runs * steps / cpu[0] if device.type == "cpu" and cpu and cpu[0] > 0 else None
    return {"name": name, "device": str(device), "dtype": str(dtype).replace("torch.", ""), "runs": runs,
            "steps": steps, "seconds": seconds, "run_steps_per_s": runs * steps / seconds,
            "cpu_seconds": cpu[0] if cpu else None, "run_steps_per_cpu_s": per_cpu_s, "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), **extra}


def _default_engines(args, device, fused_why, interpret) -> list:
    from . import fused_cpu

    names = ["naive", "batched"]
    if not args.quick:
        names.append("compiled")
    names.append("fused-torch")
    if device.type == "cpu" and fused_cpu.numba_available():
        names.append("fused-cpu")
    if not fused_why and not interpret:
        names.append("fused")
    try:
        import jax  # noqa: F401

        names.append("jax")
    except ImportError:
        pass
    return names


def main_report(argv=None, progress=None) -> dict:
    """Parse ``argv``, run the benchmark, return everything the JSON output holds: the
    problem and its flop count, the CPU peak estimate, the engine rows and skipped engines."""
    args = build_parser().parse_args(argv)
    import torch

    from core.errors import DivergenceError, InputError

    from .device import resolve_device
    from .fused_cpu import sgd_flops
    from .fused_linear import fused_unsupported_reason, triton_available

    try:
        device = resolve_device(args.device)
        teacher = teacher_for(args.dx, args.dy)
    except InputError as exc:
        raise _UsageError(str(exc)) from None
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = _plan(args, device)
    # The kernel runs on CUDA; on the CPU only under Triton's interpreter (TRITON_INTERPRET=1:
    # a correctness run of this code path, far too slow to mean anything as a timing).
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    kernel_device = device.type == "cuda" or interpret
    why = ("needs a CUDA device (or TRITON_INTERPRET=1)" if not kernel_device else "needs triton"
           if not triton_available() else fused_unsupported_reason(
               args.hidden, args.dx, args.dy, batch=args.batch, n_runs=plan["fused"][0], dtype=dtype))
    names = list(args.engines) if args.engines else _default_engines(args, device, why, interpret)
    if "fused" in names and why:
        raise _UsageError(f"engine 'fused' is not available here: {why}")
    if "fused-cpu" in names and device.type != "cpu":
        raise _UsageError("engine 'fused-cpu' runs on the CPU: use --device cpu")
    names = ["naive", "batched", *[n for n in names if n not in ("naive", "batched")]]  # the baselines
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows, skipped = [], []
    for name in names:
        if progress is not None:
            progress(f"{name}: {plan[name][0]} runs x {plan[name][1]} steps")
        try:
            rows.append(_bench_engine(name, args, device, dtype, *plan[name], teacher, sync))
        except _Skip as exc:
            skipped.append({"name": name, "reason": str(exc)})
        except InputError as exc:
            raise _UsageError(f"{name}: {exc}") from None
        except DivergenceError as exc:  # e.g. --eta past the stability limit: bad input, not a crash
            msg = " ".join(str(exc).split())
            raise _UsageError(f"{name}: {msg} (try a smaller --eta)") from None
    flops = sgd_flops(args.dx, args.dy, args.hidden, args.batch)
    peak = cpu_peak(args.dtype)
    naive, batched = rows[0]["run_steps_per_s"], rows[1]["run_steps_per_s"]
    for r in rows:
        r["speedup_vs_naive"] = r["run_steps_per_s"] / naive
        r["speedup_vs_batched"] = r["run_steps_per_s"] / batched
        r["gflops"] = r["run_steps_per_s"] * flops["flops"] / 1e9
        r["fraction_of_peak"] = (r["gflops"] / peak["gflops"]
                                 if r["device"] == "cpu" and peak.get("gflops") else None)
    problem = {"dx": args.dx, "dy": args.dy, "hidden": args.hidden, "batch": args.batch, "eta": args.eta,
               "dtype": args.dtype, "label_noise": True}
    counted = ("multiply-adds (2 flops) of the data maps, forward, backward and gradient, and the update "
               f"(5 flops per weight); not counted: {flops['philox_calls']} Philox calls and "
               f"{flops['box_muller_pairs']} Box-Muller pairs (random numbers), the divergence check")
    return {"problem": problem, "flops_per_run_step": flops["flops"], "flops_counted": counted, "peak": peak,
            "engines": rows, "skipped": skipped}


def main_rows(argv=None, progress=None) -> list:
    """Parse ``argv``, run the benchmark, return the engine rows."""
    return main_report(argv, progress)["engines"]


class _UsageError(Exception):
    pass


def format_report(report: dict, counts: dict | None = None) -> str:
    rows = report["engines"]
    head = (f"{'engine':<12} {'device':<7} {'dtype':<8} {'runs':>8} {'steps':>6} {'seconds':>8} {'run-steps/s':>12} "
            f"{'x naive':>9} {'x batched':>9} {'% peak':>7} {'per CPU-s':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        frac = f"{100 * r['fraction_of_peak']:>6.1f}%" if r.get("fraction_of_peak") is not None else f"{'n/a':>7}"
        per_cpu = f"{r['run_steps_per_cpu_s']:>10.3g}" if r.get("run_steps_per_cpu_s") else f"{'n/a':>10}"
        lines.append(f"{r['name']:<12} {r['device']:<7} {r['dtype']:<8} {r['runs']:>8} {r['steps']:>6} "
                     f"{r['seconds']:>8.3f} {r['run_steps_per_s']:>12.3g} {r['speedup_vs_naive']:>9.3g} "
                     f"{r['speedup_vs_batched']:>9.3g} {frac} {per_cpu}")
    for s in report["skipped"]:
        lines.append(f"{s['name']:<12} skipped: {s['reason']}")
    lines.append("per CPU-s: run-steps per second of process CPU time (all threads): the rate on an otherwise idle "
                 "core, whatever else the machine was running")
    first = rows[0]
    if first.get("threads"):
        lines.append(f"CPU threads: {first['threads']}, OMP_WAIT_POLICY: {first['omp_wait_policy']}")
    for r in rows:
        if "first_call_s" in r:
            lines.append(f"{r['name']}: first call (compile or cache load) {r['first_call_s']:.2f} s")
    peak = report["peak"]
    lines.append(f"peak estimate: {peak['how']}")
    lines.append(f"flops per run-step: {report['flops_per_run_step']} ({report['flops_counted']})")
    if counts:
        lines.append(f"fused kernel work per run-step: {counts['fma']} FMA ({counts['useful_fma']} unpadded) + "
                     f"{counts['update_flops']} update flops, {counts['philox_calls']} Philox calls "
                     f"(~{counts['int_ops']} int ops), {counts['sfu']} SFU ops")
    return "\n".join(lines)


def main(argv=None) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        with console.status("benchmarking") as status:
            report = main_report(argv, progress=lambda msg: status.update(f"benchmarking {msg}"))
    except _UsageError as exc:
        sys.stderr.write(f"python -m numeric.bench: error: {exc}\n")
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, op_counts(args.dx, args.dy, args.hidden, args.batch)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch (and its OpenMP) loads
    sys.exit(main())
