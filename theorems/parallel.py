"""Verifying theorems in worker processes: what ``python -m theorems --jobs N`` runs.

A worker verifies one task at a time: a group of theorems that share runs
(:func:`theorems.settings.run_groups`), so each shared run is computed once, or one case of a
check whose runs are its own (``@check(..., alone=True)``, :func:`theorems.checks.work_parts`),
so that a long study does not keep its theorem's other checks waiting. Every run depends only
on its seed and settings (the compiled engine's draws are independent of the thread count), so
the verdicts are those of a single process, in the same order (:func:`assemble`).
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


# One intra-op thread in every verifying process, whatever ``--jobs``: the problems are small
# (tensors of tens to thousands of entries), where a second thread only contends with the other
# processes (measured, 2 cores, two other processes running: 600 SGD steps of the symmetry
# finder's self-attention model took 32 s with two threads and 6.8 s with one), and the
# summation order of torch's reductions, which depends on the thread count, is then the same
# for every ``--jobs`` and every machine: the verdicts do not change in their last digit.
THREADS_PER_PROCESS = 1


def verifying_process() -> None:
    """Set up a process that verifies: float64 and :data:`THREADS_PER_PROCESS`."""
    import torch

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(THREADS_PER_PROCESS)


def worker_start() -> None:
    """A verifying worker (:func:`verifying_process`), Ctrl-C left to the parent (which stops
    every worker and keeps the previous report)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    verifying_process()


def tasks_for(groups, ctx) -> list:
    """Worker tasks ``[[(tid, part), ...], ...]``: each group of theorems that share runs, with
    every ``alone`` case of its theorems split off as a task of its own (``part`` as in
    :func:`theorems.checks.work_parts`: ``None`` for a whole theorem). The groups come first,
    the largest first, so that the split-off cases fill in beside them.

    >>> from theorems.verdict import Context
    >>> tasks_for([["2", "3"], ["L1"]], Context())
    [[('2', None), ('3', None)], [('L1', None)]]
    """
    from .checks import work_parts

    main, alone = [], []
    for group in sorted(groups, key=len, reverse=True):
        task = []
        for tid in group:
            parts = work_parts(tid, ctx)
            task += [(tid, p) for p in parts if p is None or isinstance(p, str)]
            alone += [[(tid, p)] for p in parts if isinstance(p, tuple)]
        if task:
            main.append(task)
    return main + alone


def verify_task(task) -> list:
    """``[(tid, part, result, seconds), ...]`` for one worker task (see :func:`tasks_for`):
    ``result`` a verdict list for a whole theorem, else ``[(case key, verdicts), ...]``."""
    units, budget, device, seed, staging = task
    import torch

    from .checks import run_cases
    from .verdict import Context, theorem_modules

    broken: dict = {}
    modules = theorem_modules(broken)
    out = []
    for tid, part in units:
        t0 = time.perf_counter()
        ctx = Context(budget=budget, device=torch.device(device), seed=seed, out=Path(staging))
        result = verify_one(tid, modules, broken, ctx) if part is None else run_cases(tid, ctx, part)
        out.append((tid, part, result, time.perf_counter() - t0))
    return out


def assemble(tid: str, pieces: dict, ctx) -> list:
    """One theorem's verdicts from its parts' ``[(case key, verdicts), ...]`` (``pieces``:
    part -> that list), in registration order: as :func:`theorems.checks.run_checks` gives them."""
    from .checks import REGISTRY

    by_key = {key: vs for cases in pieces.values() for key, vs in cases}
    order = [(c.name, case.id) for c in REGISTRY.get(str(tid), []) for case in c.cases if case.runs_under(ctx)]
    return [v for key in order for v in by_key[key]]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
