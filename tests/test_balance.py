"""Unit and property tests of numeric/ensemble.py, numeric/deep_nets.py, numeric/balance.py, numeric/attention.py."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DivergenceError, InputError
from numeric.attention import AttentionEnsemble, attention_forward
from numeric.balance import (drift_window, entropic_balance_coefficient, gram_law, law_check, orbit_coordinates,
                              sgd_balance_coefficient, t_quantile)
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
    assert law_check(lhs, torch.ones(32, dtype=torch.float64), p=1e-7).consistent
    assert not law_check(lhs + 0.1, torch.ones(32, dtype=torch.float64), p=1e-7).consistent


def test_law_check_rejects_bad_input():
    with pytest.raises(InputError, match="one value per run"):
        law_check(torch.ones(3), torch.ones(4), p=1e-7)
    with pytest.raises(InputError, match="non-finite"):
        law_check(torch.tensor([1.0, float("nan")]), torch.ones(2), p=1e-7)
    with pytest.raises(InputError, match=">= 2 runs"):
        t_quantile(1, 1e-7)


def test_coefficients_agree_to_first_order():
    eta, gam = 1e-4, 0.3
    assert abs(sgd_balance_coefficient(eta, gam) / entropic_balance_coefficient(eta, gam) - 1) < 3 * eta * gam


def test_gram_law_zero_and_nonzero():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(16, 3, 3, generator=g, dtype=torch.float64)
    M = A @ A.transpose(-1, -2)
    assert gram_law(M, M, p=1e-7)["relative_gap"] == 0.0
    assert not gram_law(M + 5 * torch.eye(3), M, p=1e-7)["all_entries_consistent"]


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


# ------------------------------------------------- the balance comparisons against counterexamples
from theorems.settings.balance import P_LAW  # noqa: E402
from theorems.tolerances import t_quantile as policy_t  # noqa: E402


def _runs(R, mean, sd, seed):
    g = torch.Generator().manual_seed(seed)
    return mean + sd * torch.randn(R, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("R", [32, 64])
def test_law_interval_is_the_policy_quantile_and_rejects_an_offset_beyond_it(R):
    """A paired residual offset by (t + 3) standard errors fails; a null one passes. The interval is
    the suite's Student-t quantile at P_COMPARISON, one comparison per component (no Bonferroni)."""
    rhs = torch.ones(R, dtype=torch.float64)
    null = _runs(R, 1.0, 0.05, seed=R)
    c = law_check(null, rhs, p=P_LAW)
    assert abs(c.t_factor - policy_t(R)) < 1e-9
    assert c.consistent
    se = c.halfwidth / c.t_factor
    shifted = null - float(null.mean()) + 1.0 + (c.t_factor + 3.0) * se  # same spread, offset mean
    assert not law_check(shifted, rhs, p=P_LAW).consistent


def test_gram_law_rejects_one_entry_offset_beyond_its_interval():
    g = torch.Generator().manual_seed(5)
    R, h = 32, 2
    A = torch.randn(R, h, 3, generator=g, dtype=torch.float64)
    gram = A @ A.transpose(-1, -2)
    noise = 0.05 * torch.randn(R, h, h, generator=g, dtype=torch.float64)
    other = gram + (noise + noise.transpose(-1, -2)) / 2
    law = gram_law(gram, other, p=P_LAW)
    assert law["all_entries_consistent"] and abs(law["t"] - policy_t(R)) < 1e-9
    d = (gram - other)[:, 0, 1]
    bump = torch.zeros(h, h, dtype=torch.float64)
    bump[0, 1] = bump[1, 0] = float(d.mean()) + (law["t"] + 3) * float(d.std()) / R**0.5
    assert not gram_law(gram - bump, other, p=P_LAW)["all_entries_consistent"]


def test_orbit_coordinates_drift_is_the_law_residual():
    """Summed over a window, eta^2 G - 4 eta gam (1 - eta gam) Q equals the change of Q: the layer and
    neuron coordinates' drift over T steps is the time-averaged residual times eta^2 T."""
    net = MLPEnsemble([3, 4, 4, 2], activation="relu", n_runs=3, eta=0.02, seed=1, device="cpu")
    q0 = orbit_coordinates({"wsq": torch.stack([W.pow(2).sum((-1, -2)) for W in net.weights], -1),
                            **_weight_grams(net)})
    net.run(50)
    obs = net.observe()
    q1 = orbit_coordinates({"wsq": torch.stack([W.pow(2).sum((-1, -2)) for W in net.weights], -1),
                            **_weight_grams(net)})
    G = obs["gsq"][:, :-1] - obs["gsq"][:, 1:]
    assert torch.allclose(q1["Q_layers"] - q0["Q_layers"], 0.02**2 * 50 * G, rtol=1e-9, atol=1e-12)
    Gn = torch.diagonal(obs["gram_in_1"], dim1=-2, dim2=-1) - torch.diagonal(obs["gram_out_1"], dim1=-2, dim2=-1)
    assert torch.allclose(q1["Q_neurons_1"] - q0["Q_neurons_1"], 0.02**2 * 50 * Gn, rtol=1e-9, atol=1e-12)


def _weight_grams(net):
    out = {}
    for i in range(1, net.depth):
        W_in, W_out = net.weights[i - 1], net.weights[i]
        out[f"wgram_in_{i}"] = W_in @ W_in.transpose(-1, -2)
        out[f"wgram_out_{i}"] = W_out.transpose(-1, -2) @ W_out
    return out


def test_drift_window_bounds_the_bias_of_an_undetected_random_walk_drift():
    """The derivation behind drift_window: a random walk's least-squares slope over L blocks has
    variance 1.2 s^2 / L; the window keeps z sd(slope) m within t/2 of sd(Q_end - Q_start) = s sqrt(m)."""
    rng = np.random.default_rng(0)
    L = 400
    x = rng.standard_normal((20000, L)).cumsum(1)
    t = np.arange(L) - (L - 1) / 2
    slopes = (x - x.mean(1, keepdims=True)) @ t / (t @ t)
    assert abs(slopes.var() * L / 1.2 - 1) < 0.05
    for m, t_q in ((10, 6.0), (26, 6.9), (10, 6.9)):
        w = drift_window(m, t_q, z=2.5)
        assert 2.5 * (1.2 / (2 * w)) ** 0.5 * m <= t_q / 2 * m**0.5 + 1e-12


def test_mlp_stability_limit_caps_the_learning_rate():
    """A sharper teacher has a lower gradient-descent limit; mlp_stationary's eta stays below a quarter of it."""
    from numeric.balance import mlp_stationary

    soft = MLPEnsemble([3, 4, 2], activation="linear", n_runs=1, seed=0, device="cpu", teacher_scale=1.0)
    sharp = MLPEnsemble([3, 4, 2], activation="linear", n_runs=1, seed=0, device="cpu", teacher_scale=3.0)
    assert sharp.stability_limit() < soft.stability_limit()
    _, res, _ = mlp_stationary((3, 4, 2), "linear", 10.0, n_runs=4, teacher_scale=3.0, seed=0, p=1e-7, eta_margin=4.0,
                               block_steps=50, max_steps=200, average_blocks=2)
    assert res.eta <= res.eta_limit / 4 + 1e-15 and res.eta < 10.0


def test_teacher_snr_sets_the_output_power():
    from numeric.deep_nets import mlp_forward

    for act in ("relu", "linear"):
        net = MLPEnsemble([4, 5, 5, 2], activation=act, n_runs=1, seed=3, device="cpu", teacher_snr=2.0, noise_std=0.5)
        x, _ = net.sample(20000)
        power = float(mlp_forward(net.teacher, x, act).pow(2).sum(-1).mean())
        assert abs(power / (2.0 * 2 * 0.25) - 1) < 0.05
