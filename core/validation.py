"""Input checks shared by every numeric routine (numpy or torch arrays).

>>> import numpy as np
>>> check_spd("Sx", np.eye(2)).shape
(2, 2)
>>> check_spd("Sx", np.array([[1.0, 2.0], [0.0, 1.0]]))
Traceback (most recent call last):
...
core.errors.InputError: Sx is not symmetric (max |A - A^T| = 2)
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError


def as_numpy(name: str, a, ndim: int | None = None) -> np.ndarray:
    """Return ``a`` as a float64 numpy array, refusing NaN/inf and wrong rank."""
    try:
        import torch

        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if np.iscomplexobj(a) or (isinstance(a, (list, tuple)) and np.iscomplexobj(np.asarray(a))):
        raise InputError(f"{name} must be real, got complex entries")
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an array of real numbers, got {type(a).__name__}") from None
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite entries")
    return arr


def check_square(name: str, a) -> np.ndarray:
    arr = as_numpy(name, a, ndim=2)
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    if arr.shape[0] != arr.shape[1]:
        raise InputError(f"{name} must be square, got shape {arr.shape}")
    return arr


def check_symmetric(name: str, a, rtol: float = 1e-10) -> np.ndarray:
    """Symmetric up to float64 round-off relative to the matrix scale."""
    arr = check_square(name, a)
    asym = float(np.max(np.abs(arr - arr.T))) if arr.size else 0.0
    scale = max(1.0, float(np.max(np.abs(arr))) if arr.size else 1.0)
    if asym > rtol * scale:
        raise InputError(f"{name} is not symmetric (max |A - A^T| = {asym:.3g})")
    return arr


def check_spd(name: str, a, min_eig: float = 0.0) -> np.ndarray:
    """Symmetric positive definite: smallest eigenvalue strictly above ``min_eig``
    (and above round-off, 1e-12 of the largest)."""
    arr = check_symmetric(name, a)
    eig = np.linalg.eigvalsh((arr + arr.T) / 2)
    lo, hi = float(eig[0]), float(eig[-1])
    if lo <= max(min_eig, 1e-12 * max(abs(hi), 1.0)):
        raise InputError(
            f"{name} is not positive definite (smallest eigenvalue {lo:.3g}, largest {hi:.3g})"
        )
    return arr


def check_invertible(name: str, a, cond_max: float = 1e12) -> np.ndarray:
    arr = check_square(name, a)
    cond = np.linalg.cond(arr)
    if not math.isfinite(cond) or cond > cond_max:
        raise InputError(f"{name} is singular or nearly so (condition number {cond:.3g})")
    return arr


def check_number(name: str, value) -> float:
    """A real number (not a string, not a bool), as float.

    >>> check_number("eta", "0.1")
    Traceback (most recent call last):
    ...
    core.errors.InputError: eta must be a real number, got '0.1'
    """
    if isinstance(value, (str, bytes, bool)) or np.iscomplexobj(value):
        raise InputError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a real number, got {value!r}") from None


def check_int(name: str, value, minimum: int | None = None) -> int:
    """A whole number (2.0 is accepted, 2.5 and "2" are not), at least ``minimum``.

    >>> check_int("n_runs", 2.5)
    Traceback (most recent call last):
    ...
    core.errors.InputError: n_runs must be a whole number, got 2.5
    """
    if isinstance(value, (str, bytes, bool)):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    try:
        ok = float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be a whole number, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {v}")
    return v


def numerical_rank(name: str, a) -> int:
    """The rank of a matrix, with the one threshold the whole suite uses: singular values
    above ``max(shape) * eps * sigma_max`` (numpy's default, float64 round-off)."""
    arr = as_numpy(name, a, ndim=2)
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    return int(np.linalg.matrix_rank(arr))


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    v = check_number(name, value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return v


def check_width(name: str, width: int, rank: int) -> int:
    width = check_int(name, width, 1)
    if width < int(rank):
        raise InputError(f"{name} = {width} is below the rank {rank} of the target map")
    return int(width)


def positive_int_arg(text: str) -> int:
    """An ``argparse`` type: a positive integer, or a one-line usage error naming the value.

    >>> positive_int_arg("3")
    3
    >>> positive_int_arg("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    """
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v
