"""Device selection: a GPU when there is one, the CPU otherwise.

>>> resolve_device("cpu").type
'cpu'
"""

from __future__ import annotations

import torch

from core.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: "str | torch.device | None" = "auto") -> torch.device:
    """Turn ``'auto' | 'cpu' | 'cuda' | 'cuda:N' | torch.device | None`` into a device.

    ``auto`` (or None) picks CUDA when available. Asking for CUDA without one is an
    error, not a silent fallback, so timings are never reported for the wrong device.
    """
    if isinstance(spec, torch.device):
        dev = spec
    elif spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(spec)
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"unknown device {spec!r}; choose one of {', '.join(DEVICE_CHOICES)}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA device is available")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {spec!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    return dev
