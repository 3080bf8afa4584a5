"""``python -m numeric.bench``: time the ensemble-SGD engines side by side on one problem.

Default problem (issue 6): two-layer linear net, dx=4, dy=3, width 6, batch 1, label
noise, float32. Engines:

* ``naive``       - one run, nn.Linear + torch.optim.SGD (numeric.naive_sgd); the baseline;
* ``batched``     - LinearEnsemble, every run advanced by batched matmuls (the reference);
* ``fused-torch`` - the fused kernel's pure-torch twin (same Philox stream; a check, not
                    meant to be fast);
* ``fused``       - the Triton kernel (CUDA + triton only): weights in registers, data
                    drawn in-kernel, one launch per ``--launch-steps`` steps. A few
                    (BLOCK_R, num_warps) configurations are tried; the best is reported.

Each engine is warmed up, then timed ``--repeats`` times; the best time counts (the
least-disturbed measurement). Throughput is run-steps/s = runs x steps / seconds.

Run as a command, the bench sets ``OMP_WAIT_POLICY=PASSIVE`` unless the caller set it: with
OpenMP's default spin-waiting, two torch threads on a busy 2-core machine made the batched
engine 4-20x slower (measured: 3.4e5 and 5.2e4 run-steps/s against 1.1e6 passive); with
passive waiting the threads sleep instead of fighting the other processes for the cores.
The policy in force is reported with every row.

>>> rows = main_rows(["--quick", "--device", "cpu", "--engines", "naive,batched", "--repeats", "1"])
>>> [r["name"] for r in rows], rows[0]["speedup_vs_naive"]
(['naive', 'batched'], 1.0)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

EXIT_USAGE = 2
ENGINE_NAMES = ("naive", "batched", "fused-torch", "fused")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"python -m numeric.bench: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


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
    p.add_argument("--quick", action="store_true", help="short CPU-sized run (seconds)")
    p.add_argument("--json", action="store_true", help="print a JSON list of engines instead of a table")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: auto, a GPU when there is one)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="default: float32 (as in issue 6)")
    p.add_argument("--engines", type=_engine_list, default=None,
                   help=f"comma-separated subset of {','.join(ENGINE_NAMES)} (default: all that apply)")
    p.add_argument("--dx", type=_positive_int, default=4)
    p.add_argument("--dy", type=_positive_int, default=3)
    p.add_argument("--hidden", type=_hidden_list, default=[6], help="hidden widths, e.g. 6 or 6,6 (default: 6)")
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("--eta", type=_positive_float, default=0.01)
    p.add_argument("--runs", type=_positive_int, default=None, help="ensemble size of the batched engines")
    p.add_argument("--fused-runs", type=_positive_int, default=None, help="ensemble size of the fused kernel")
    p.add_argument("--steps", type=_positive_int, default=None, help="timed steps of the ensemble engines")
    p.add_argument("--naive-steps", type=_positive_int, default=None, help="timed steps of the naive loop")
    p.add_argument("--launch-steps", type=_positive_int, default=1000, help="steps per fused-kernel launch")
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed repeats per engine; the best counts")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    return p


def _plan(args, device) -> dict:
    """Sizes per engine: (runs, steps). --quick keeps the whole CPU run to a few seconds."""
    cuda = device.type == "cuda"
    if args.quick:
        runs, steps, naive_steps, fused_runs, fused_steps = 4096, 30, 200, 2**16, 200
    elif cuda:
        runs, steps, naive_steps, fused_runs, fused_steps = 65536, 300, 2000, 2**20, 3000
    else:
        runs, steps, naive_steps, fused_runs, fused_steps = 16384, 200, 2000, 2**16, 200
    runs = args.runs or runs
    steps = args.steps or steps
    return {
        "naive": (1, args.naive_steps or naive_steps),
        "batched": (runs, steps),
        "fused-torch": (runs, max(1, steps // 3)),
        "fused": (args.fused_runs or fused_runs, args.steps or fused_steps),
    }


def teacher_for(dx: int, dy: int, noise: float = 0.5):
    """The benchmark's teacher: a fixed random V, Sx = I, label noise Se = noise^2 I."""
    import numpy as np

    from .linear_ensemble import LinearTeacher

    rng = np.random.default_rng(0)
    return LinearTeacher(rng.normal(size=(dy, dx)) / np.sqrt(dx), np.eye(dx), noise**2 * np.eye(dy))


def op_counts(dx: int, dy: int, hidden, batch: int = 1) -> dict:
    """Work per run-step of the fused kernel on the padded shapes it really computes:
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


def _time(fn, repeats: int, sync) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _bench_engine(name, args, device, dtype, runs, steps, teacher, sync) -> dict:
    """Build, warm up and time one engine; returns its row (without the speed-up)."""
    common = dict(batch=args.batch, device=device, dtype=dtype, seed=0)
    extra = {}
    if name == "naive":
        from .naive_sgd import NaiveSGD

        eng = NaiveSGD(teacher, args.hidden, args.eta, **common)
        eng.run(min(50, steps))
    elif name == "batched":
        from .linear_ensemble import LinearEnsemble

        eng = LinearEnsemble(teacher, args.hidden, runs, args.eta, check_every=10**9, **common)
        eng.run(min(5, steps))
    elif name == "fused-torch":
        from .fused_linear import FusedLinearEnsemble

        eng = FusedLinearEnsemble(teacher, args.hidden, runs, args.eta, backend="torch", check_every=steps, **common)
        eng.run(min(2, steps))
    else:  # fused: try a few launch configurations, keep the fastest (one under the interpreter)
        from .engine import fused_self_check
        from core.errors import InputError
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
    seconds = _time(lambda: eng.run(steps), args.repeats, sync)
    import torch

    return {"name": name, "device": str(device), "dtype": str(dtype).replace("torch.", ""), "runs": runs,
            "steps": steps, "seconds": seconds, "run_steps_per_s": runs * steps / seconds,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), **extra}


def main_rows(argv=None, progress=None) -> list:
    """Parse ``argv``, run the benchmark, return the rows (the JSON list)."""
    args = build_parser().parse_args(argv)
    import torch

    from .device import resolve_device
    from core.errors import DivergenceError, InputError
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
    names = args.engines or [n for n in ENGINE_NAMES if n != "fused" or (not why and not interpret)]
    if "fused" in names and why:
        raise _UsageError(f"engine 'fused' is not available here: {why}")
    if "naive" not in names:
        names = ["naive", *names]  # the baseline of every ratio
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for name in names:
        if progress is not None:
            progress(f"{name}: {plan[name][0]} runs x {plan[name][1]} steps")
        try:
            rows.append(_bench_engine(name, args, device, dtype, *plan[name], teacher, sync))
        except InputError as exc:
            raise _UsageError(f"{name}: {exc}") from None
        except DivergenceError as exc:  # e.g. --eta past the stability limit: bad input, not a crash
            msg = " ".join(str(exc).split())
            raise _UsageError(f"{name}: {msg} (try a smaller --eta)") from None
    base = rows[0]["run_steps_per_s"]
    for r in rows:
        r["speedup_vs_naive"] = r["run_steps_per_s"] / base
    return rows


class _UsageError(Exception):
    pass


def format_table(rows, counts: dict | None = None) -> str:
    head = f"{'engine':<12} {'device':<7} {'dtype':<8} {'runs':>8} {'steps':>6} {'seconds':>8} {'run-steps/s':>12} {'x naive':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:<12} {r['device']:<7} {r['dtype']:<8} {r['runs']:>8} {r['steps']:>6} "
                     f"{r['seconds']:>8.3f} {r['run_steps_per_s']:>12.3g} {r['speedup_vs_naive']:>9.3g}")
    first = rows[0]
    if first.get("threads"):
        lines.append(f"CPU threads: {first['threads']}, OMP_WAIT_POLICY: {first['omp_wait_policy']}")
    if counts:
        lines.append(f"fused kernel work per run-step: {counts['fma']} FMA ({counts['useful_fma']} unpadded) + {counts['update_flops']} update flops, "
                     f"{counts['philox_calls']} Philox calls (~{counts['int_ops']} int ops), {counts['sfu']} SFU ops")
    return "\n".join(lines)


def main(argv=None) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        with console.status("benchmarking") as status:
            rows = main_rows(argv, progress=lambda msg: status.update(f"benchmarking {msg}"))
    except _UsageError as exc:
        sys.stderr.write(f"python -m numeric.bench: error: {exc}\n")
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, op_counts(args.dx, args.dy, args.hidden, args.batch)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch (and its OpenMP) loads
    sys.exit(main())
