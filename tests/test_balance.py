"""Unit and property tests of numeric/ensemble.py, numeric/deep_nets.py, numeric/balance.py, numeric/attention.py."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DivergenceError, InputError
from numeric.attention import AttentionEnsemble, attention_forward
from numeric.balance import gram_law, law_check, sgd_balance_coefficient, entropic_balance_coefficient, t_quantile
from numeric.deep_nets import MLPEnsemble


@given(depth=st.integers(2, 4), width=st.integers(1, 4), batch=st.integers(1, 3),
       activation=st.sampled_from(["relu", "linear", "poly"]), seed=st.integers(0, 2**16))
def test_autograd_batch_gradient_equals_mean_of_torch_func_per_sample(depth, width, batch, activation, seed):
    """The engine's summed-over-runs autograd gives each run's minibatch gradient: it equals the
    mean of torch.func (vmap+grad) per-sample gradients to float64 precision."""
    net = MLPEnsemble([3, *([width] * (depth - 1)), 2], activation=activation, n_runs=3, batch=batch,
                      seed=seed, device="cpu", init_scale=0.7, teacher_scale=0.7)
    x, y = net.sample()
    _, gB = net.gradients(x, y)
    per = net.per_sample_grads(x, y)
    for a, b in zip(gB, per):
        assert torch.allclose(a, b.mean(1), rtol=1e-10, atol=1e-12)


def test_law_check_detects_a_real_gap():
    g = torch.Generator().manual_seed(0)
    lhs = 1.0 + 0.01 * torch.randn(32, generator=g, dtype=torch.float64)
    assert law_check(lhs, torch.ones(32, dtype=torch.float64)).consistent
    assert not law_check(lhs + 0.1, torch.ones(32, dtype=torch.float64)).consistent


def test_law_check_rejects_bad_input():
    with pytest.raises(InputError, match="one value per run"):
        law_check(torch.ones(3), torch.ones(4))
    with pytest.raises(InputError, match="non-finite"):
        law_check(torch.tensor([1.0, float("nan")]), torch.ones(2))
    with pytest.raises(InputError, match=">= 2 runs"):
        t_quantile(1)


def test_coefficients_agree_to_first_order():
    eta, gam = 1e-4, 0.3
    assert abs(sgd_balance_coefficient(eta, gam) / entropic_balance_coefficient(eta, gam) - 1) < 3 * eta * gam


def test_gram_law_zero_and_nonzero():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(16, 3, 3, generator=g, dtype=torch.float64)
    M = A @ A.transpose(-1, -2)
    assert gram_law(M, M)["relative_gap"] == 0.0
    assert not gram_law(M + 5 * torch.eye(3), M)["all_entries_consistent"]


def test_engine_input_errors():
    with pytest.raises(InputError, match="dims"):
        MLPEnsemble([3, 2])
    with pytest.raises(InputError, match="beta"):
        MLPEnsemble([3, 2, 1], activation="poly", beta=0.5)
    with pytest.raises(InputError, match="digits"):
        MLPEnsemble([3, 2, 1], inputs="digits")
    with pytest.raises(InputError, match="teacher dims"):
        MLPEnsemble([3, 2, 1], teacher_dims=[4, 2, 1])


def test_digits_inputs_run():
    net = MLPEnsemble([61, 8, 8, 8, 10], inputs="digits", n_runs=2, eta=0.001, device="cpu")
    net.run(3)
    assert np.isfinite(net.observe()["loss"].numpy()).all()


def test_mlp_bad_inputs_and_divergence():
    with pytest.raises(InputError, match="eta"):
        MLPEnsemble([2, 3, 1], eta=-0.1)
    with pytest.raises(InputError, match="overshoots"):
        MLPEnsemble([2, 3, 1], eta=0.5, weight_decay=1.0)
    with pytest.raises(InputError, match="activation"):
        MLPEnsemble([2, 3, 1], activation="tanh")
    net = MLPEnsemble([3, 4, 4, 2], activation="linear", eta=5.0, teacher_scale=3.0, n_runs=4, device="cpu")
    with pytest.raises(DivergenceError, match="diverged") as err:
        net.run(200)
    # every diverged run is named with the first step it was seen bad (<= the step that raised)
    assert err.value.runs and len(err.value.steps) == len(err.value.runs)
    assert all(1 <= s <= net.step_count for s in err.value.steps)


def test_nan_initial_state_is_an_input_error_not_a_divergence():
    net = MLPEnsemble([3, 4, 2], n_runs=3, device="cpu")
    net.rescale_layers([1.0, float("inf")])
    with pytest.raises(InputError, match=r"W_2 .* NaN or infinite in runs \[0, 1, 2\]"):
        net.run(1)
    att = AttentionEnsemble(d=3, h=2, n_tokens=3, n_runs=2, device="cpu")
    att.weights[1][1, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"W_K .* runs \[1\]"):
        att.run(1)


def test_attention_bad_inputs_and_divergence():
    with pytest.raises(InputError, match="eta"):
        AttentionEnsemble(eta=0.0)
    with pytest.raises(InputError, match=">= 1"):
        AttentionEnsemble(h=0)
    att = AttentionEnsemble(d=3, h=2, n_tokens=3, n_runs=3, eta=1e3, teacher_scale=5.0, init_scale=5.0,
                            train_value=True, device="cpu")
    with pytest.raises(DivergenceError, match="attention layer") as err:
        att.run(100)
    assert err.value.runs and len(err.value.steps) == len(err.value.runs)


def test_observe_and_load_weights():
    net = MLPEnsemble([3, 4, 2], n_runs=2, device="cpu")
    with pytest.raises(RuntimeError, match="observe"):
        net.observe()
    net.run(3, record=False)
    with pytest.raises(RuntimeError, match="observe"):
        net.observe()
    net.load_weights([torch.ones(4, 3), torch.ones(2, 2, 4)])  # a single net is broadcast over the runs
    assert torch.equal(net.weights[0], torch.ones(2, 4, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="W_2 has shape"):
        net.load_weights([torch.ones(4, 3), torch.ones(3, 4)])


@given(seed=st.integers(0, 2**16))
def test_attention_symmetry_numerically(seed):
    """The attention output is unchanged by W_Q -> e^{-C} W_Q, W_K -> e^{C} W_K (C symmetric:
    K = W_Q^T W_K fixed)."""
    import scipy.linalg

    g = torch.Generator().manual_seed(seed)
    WQ, WK, WV = (torch.randn(1, 2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    X = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64)
    C = torch.randn(2, 2, generator=g, dtype=torch.float64)
    E = torch.as_tensor(scipy.linalg.expm(0.3 * (C + C.T).numpy()))
    # U = W_Q^T -> U e^{-C}  <=>  W_Q -> e^{-C} W_Q (C symmetric);  W_K -> e^{C} W_K
    out0 = attention_forward(WQ, WK, WV, X)
    out1 = attention_forward(torch.linalg.inv(E) @ WQ, E @ WK, WV, X)
    assert torch.allclose(out0, out1, rtol=1e-10, atol=1e-12)
