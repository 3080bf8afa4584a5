"""The Platonic family's SGD witness: in-engine kernel averages, and the eta -> 0 ladder verdicts."""

import numpy as np
import pytest
import torch

from core.errors import InputError
from numeric.platonic_sgd import kernel_cosine_torch, measure_kernels
from symbolic.deep_linear import EmbeddedProblem, platonic_kernel
from theorems.settings.platonic import ladder_blocks, ladder_layers, offset_criteria, upper_triangle
from theorems.tolerances import Z

ETAS = (0.01, 0.005, 0.0025)


def _rungs(c0, c1, se, etas=ETAS, seed=0):
    """Rung means of a linear law in eta with Gaussian noise of standard error ``se``."""
    rng = np.random.default_rng(seed)
    return ([[c0 + c1 * e + se * rng.standard_normal(c0.shape)] for e in etas],
            [[np.full(c0.shape, se)] for _ in etas])


def test_measure_kernels_cosine_is_that_of_the_block_averaged_kernel():
    """cos{k} is the cosine of each run's block-averaged kernel: the history's last entries
    and the reported mean agree with the kernels the engine averaged."""
    prob = EmbeddedProblem(V=np.eye(2), Sx=np.diag([1.0, 0.5]), Se=np.diag([0.5, 1.0]))
    m = measure_kernels(prob, [2], 0.02, n_runs=8, block_steps=200, window=2, average_blocks=1, max_steps=800,
                        device="cpu")
    K = torch.as_tensor(m.kernel_per_run[0])  # one averaging block: the per-run block averages
    Kp = torch.as_tensor(platonic_kernel(prob.V, prob.Sx, prob.Se))
    cos = kernel_cosine_torch(K, Kp, torch.as_tensor(prob.Sx))
    assert np.isclose(m.cosine_mean[0], float(cos.mean()), rtol=1e-12)
    assert np.isclose(m.history_cosine[-1, 0], float(cos.mean()), rtol=1e-12)
    assert m.history_steps[-1] == m.total_steps and m.history_steps[0] == 200


def test_ladder_blocks_follow_the_slow_mode():
    assert ladder_blocks(0.01) == 1000  # 10/eta (fast directions) is the longer
    assert ladder_blocks(0.001) == 50000  # 0.05/eta^2 (slow orbit mode) is the longer
    assert ladder_blocks(0.0033, 20) % 20 == 0


def test_offset_is_resolved_and_a_true_limit_is_not():
    c0 = np.array([1.0, 0.5, 0.2])
    means, ses = _rungs(c0 + np.array([0.0, 0.01, 0.0]), np.array([3.0, -1.0, 2.0]), 1e-4)
    layers = ladder_layers(ETAS, means, ses, [c0], ["layer 1"])
    crit = offset_criteria(layers)
    assert all(c.passed for c in crit) and crit[0].measured > 10 * Z  # 0.01 offset at se ~ 2e-4
    means, ses = _rungs(c0, np.array([3.0, -1.0, 2.0]), 1e-4, seed=1)
    layers = ladder_layers(ETAS, means, ses, [c0], ["layer 1"])
    assert not offset_criteria(layers)[0].passed  # no offset: the offset criterion fails
    assert all(c.passed for c in layers[0]["criteria"])  # and eta_limit_criteria accept the limit


def test_a_curved_ladder_fails_the_fit():
    """A stall (c0 + c1 eta that bends at small eta) is a bad fit, not an offset."""
    c0 = np.array([1.0])
    etas = ETAS
    means = [[c0 + 0.5 * np.sqrt(e)] for e in etas]
    ses = [[np.full(1, 1e-5)] for _ in etas]
    crit = offset_criteria(ladder_layers(etas, means, ses, [c0], ["layer 1"]))
    assert not crit[1].passed


def test_too_short_a_ladder_is_refused():
    c0 = np.array([1.0])
    means, ses = _rungs(c0, c0, 1e-3, etas=(0.01, 0.005))
    with pytest.raises(InputError, match="three rungs"):
        ladder_layers((0.01, 0.005), means, ses, [c0], ["layer 1"])


def test_upper_triangle_takes_the_independent_entries():
    K = np.array([[1.0, 2.0], [2.0, 3.0]])
    assert upper_triangle(K).tolist() == [1.0, 2.0, 3.0]
