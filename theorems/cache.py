"""The one run cache: SGD runs that several checks (or theorems) share are computed once.

:func:`shared_run` memoises ``fn(ctx, *args, **kwargs)`` on the function, its normalised
arguments (defaults filled in, numbers and arrays by value) and the context's
``(budget, device, seed)``: a check that asks for the same run with the same settings gets
the same object back, whichever theorem asked first. Which runs are shared is listed in
:mod:`theorems.settings`.

>>> from theorems.verdict import Context
>>> calls = []
>>> @shared_run
... def run(ctx, eta, steps=10):
...     calls.append(eta)
...     return eta * steps
>>> ctx = Context()
>>> run(ctx, 0.1), run(ctx, 0.1, steps=10), run(ctx, eta=0.1), len(calls)
(1.0, 1.0, 1.0, 1)
>>> run(Context(seed=1), 0.1) and len(calls)
2
>>> clear()
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

_RUNS: dict = {}


def _normalise(x):
    if isinstance(x, (bool, str)) or x is None:
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    if isinstance(x, dict):
        return tuple(sorted((str(k), _normalise(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_normalise(v) for v in x)
    if isinstance(x, np.ndarray):
        return (x.shape, x.dtype.str, x.tobytes())
    try:
        hash(x)
    except TypeError:
        raise TypeError(f"shared_run cannot key on an argument of type {type(x).__name__}") from None
    return x


def shared_run(fn):
    """Memoise ``fn(ctx, ...)`` on its normalised arguments and ``(budget, device, seed)``."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(ctx, *args, **kwargs):
        bound = sig.bind(ctx, *args, **kwargs)
        bound.apply_defaults()
        args_key = tuple((k, _normalise(v)) for k, v in list(bound.arguments.items())[1:])
        key = (fn.__module__, fn.__qualname__, args_key, ctx.budget, str(ctx.device), int(ctx.seed))
        if key not in _RUNS:
            _RUNS[key] = fn(ctx, *args, **kwargs)
        return _RUNS[key]

    return wrapper


def clear() -> None:
    """Forget every cached run (tests that must recompute)."""
    _RUNS.clear()
