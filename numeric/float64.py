"""Float64 round-off bounds, and the finiteness check of the SGD models that run their own loop.

>>> round(roundoff_tolerance(10, 1.0) / EPS64, 6)
7.0
"""

from __future__ import annotations

import numpy as np
import torch

from core.errors import DivergenceError

EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16, unit round-off u = EPS64 / 2


def roundoff_tolerance(n_terms: int, scale, ops: int = 4):
    """Float64 bound for a difference of sums of ``n_terms`` products.

    Higham's bound for a recursively summed dot product of length n is
    ``gamma_n = n u / (1 - n u)`` times the sum of |terms| (u = 2^-53); ``ops`` covers the
    few extra rounded operations per term (the update ``theta - eta g``, the squares, the
    final subtractions), each contributing at most ``u`` relative. Returned: ``(n_terms +
    ops) * u / (1 - (n_terms + ops) u) * scale``.
    """
    u = EPS64 / 2
    k = n_terms + ops
    return k * u / (1 - k * u) * scale


def check_finite(name: str, t: torch.Tensor, step: int) -> None:
    """DivergenceError naming the runs (leading axis of ``t``) that are NaN/inf after ``step`` steps."""
    bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(-1)
    if bool(bad.any()):
        runs = torch.nonzero(bad).flatten().tolist()
        raise DivergenceError(f"{name} became NaN/inf at step {step} in runs {runs[:8]}"
                              f"{' ...' if len(runs) > 8 else ''}: eta is past the stability limit",
                              runs=runs, steps=[step] * len(runs))
