"""Verifying theorems in worker processes: what ``python -m theorems --jobs N`` runs.

A worker verifies one group of theorems that share runs (:func:`theorems.settings.run_groups`)
at a time, so each shared run is computed once. Every run depends only on its seed and
settings (the compiled engine's draws are independent of the thread count), so the verdicts
are those of a single process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def verify_one(tid, modules, broken, ctx) -> list:
    """One result's verdicts; an ERROR row for a module that cannot load or a verify() that raises."""
    from .verdict import display_name, error_verdict

    if tid in broken:
        return [error_verdict(tid, "import", f"{display_name(tid)}: the module loads", broken[tid])]
    try:  # each registered check's exception is already its own ERROR row
        return list(modules[tid].verify(ctx))
    except Exception as exc:  # a verify() outside the registry: one ERROR row, the others still run
        return [error_verdict(tid, "verify", f"{display_name(tid)}: verify() completes", exc)]


def worker_start() -> None:
    """A verifying process: float64, Ctrl-C left to the parent (which stops every worker and
    keeps the previous report). Thread counts stay at their defaults: the summation order of
    torch's reductions depends on them, and a verdict must not change in its last digit with
    ``--jobs``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_default_dtype(torch.float64)


def verify_group(task) -> list:
    """``[(tid, verdicts, seconds), ...]`` for one group of theorems, in a worker process."""
    tids, budget, device, seed, staging = task
    import torch

    from .verdict import Context, theorem_modules

    broken: dict = {}
    modules = theorem_modules(broken)
    out = []
    for tid in tids:
        t0 = time.perf_counter()
        ctx = Context(budget=budget, device=torch.device(device), seed=seed, out=Path(staging))
        vs = verify_one(tid, modules, broken, ctx)
        out.append((tid, vs, time.perf_counter() - t0))
    return out


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
