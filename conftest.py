"""Shared pytest set-up: Hypothesis profiles, the verification context, GPU skips.

Profiles (select with HYPOTHESIS_PROFILE=name; CI=true selects ``ci``):
- ``ci``: few examples, fixed seed (derandomize) so statistical tests never flake;
- ``dev`` (default): a few more, still derandomized;
- ``thorough``: many examples, random seeds, no deadline - for long local runs.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_default_dtype(torch.float64)  # verification is float64 throughout

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=4, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=8, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=200, derandomize=False, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config):
    # Two CPU cores in CI: one intra-op thread per worker avoids oversubscription.
    if os.environ.get("CI"):
        torch.set_num_threads(max(1, int(os.environ.get("TORCH_NUM_THREADS", "1"))))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def ctx():
    """The CI-budget verification context (CPU unless a GPU is present)."""
    from numeric.device import resolve_device
    from theorems.verdict import Context

    return Context(budget="quick", device=resolve_device("auto"), seed=0, out=None)
