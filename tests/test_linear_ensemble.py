"""numeric.linear_ensemble: the ensemble SGD engine against autograd, and its error paths."""

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from core.errors import DivergenceError, InputError
from numeric.linear_ensemble import LinearEnsemble, LinearTeacher
from numeric.sharpness import two_layer_population_loss

TEACHER = LinearTeacher(V=np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.5]]), Sx=np.diag([1.0, 0.5, 2.0]),
                        Se=np.array([[0.3, 0.1], [0.1, 0.2]]))


def _autograd_step(weights, u, y, eta, gam, M_O):
    ws = [w.clone().requires_grad_(True) for w in weights]
    h = u
    for w in ws:
        h = h @ w.transpose(-1, -2)
    out = h @ M_O.T
    loss = ((out - y) ** 2).sum(-1).mean(-1).sum() + gam * sum((w**2).sum() for w in ws)
    gs = torch.autograd.grad(loss, ws)
    return [w.detach() - eta * g for w, g in zip(ws, gs)]


@pytest.mark.parametrize("batch,gam,M_O", [(1, 0.0, None), (4, 0.05, np.array([[1.0, 0.2], [0.0, 2.0]]))])
def test_step_matches_autograd(batch, gam, M_O):
    ens = LinearEnsemble(TEACHER, hidden=[4, 3], n_runs=5, eta=0.05, batch=batch, weight_decay=gam, M_O=M_O,
                         seed=1, device="cpu")
    before = [w.clone() for w in ens.weights]
    state = ens._gen.get_state()
    u, y = ens.sample()
    ens._gen.set_state(state)  # the step draws the same batch
    ens.step()
    expected = _autograd_step(before, u, y, ens.eta, gam, ens._M_O)
    for w, e in zip(ens.weights, expected):
        assert torch.allclose(w, e, rtol=1e-12, atol=1e-14)


def test_per_sample_grad_sq_matches_torch_func():
    ens = LinearEnsemble(TEACHER, hidden=[3], n_runs=3, eta=0.01, batch=6, seed=2, device="cpu")
    u, y = ens.sample()
    W, U = ens.weights

    def l(w, uu, x, t):  # noqa: E743 (the per-sample loss l, as in the paper)
        return ((x @ w.T @ uu.T - t) ** 2).sum()

    gW = vmap(vmap(grad(l, argnums=0), in_dims=(None, None, 0, 0)))(W, U, u, y)
    gU = vmap(vmap(grad(l, argnums=1), in_dims=(None, None, 0, 0)))(W, U, u, y)
    expected = torch.stack([gW.pow(2).sum((-1, -2)).mean(-1), gU.pow(2).sum((-1, -2)).mean(-1)], -1)
    assert torch.allclose(ens.per_sample_grad_sq(u, y), expected, rtol=1e-12)


def test_population_loss_matches_closed_form():
    ens = LinearEnsemble(TEACHER, hidden=[3], n_runs=4, eta=0.01, seed=3, device="cpu")
    W, U = ens.weights
    ref = two_layer_population_loss(U, W, TEACHER.V, TEACHER.Sx, TEACHER.Se)
    assert torch.allclose(ens.population_loss(), ref, rtol=1e-12)


@pytest.mark.parametrize("track_every", [1, 7])
def test_divergence_names_runs_and_steps(track_every):
    ens = LinearEnsemble(TEACHER, hidden=[3], n_runs=6, eta=3.0, seed=0, device="cpu", track_every=track_every,
                         check_every=50)
    with pytest.raises(DivergenceError, match=r"diverged in \d+/6 runs.*run \d+ at step \d+.*stability") as info:
        ens.run(2000)
    assert info.value.runs and all(0 < s <= 2000 for s in info.value.steps)


def test_nan_weights_are_bad_input_not_a_divergence():
    ens = LinearEnsemble(TEACHER, hidden=[3], n_runs=2, eta=0.01, seed=0, device="cpu")
    W, U = ens.weights
    W = W.clone()
    W[1, 0, 0] = float("nan")
    ens.load_weights([W, U])
    with pytest.raises(InputError, match=r"W_1 of this linear network is NaN or infinite in runs \[1\]"):
        ens.run(1)


def test_a_blow_up_names_its_runs_and_steps():
    ens = LinearEnsemble(TEACHER, hidden=[3], n_runs=3, eta=5.0, seed=0, device="cpu")
    with pytest.raises(DivergenceError, match="past the stability limit of this linear network") as info:
        ens.run(200)
    assert info.value.runs == [0, 1, 2] and all(s >= 1 for s in info.value.steps)


@pytest.mark.parametrize("kwargs,match", [
    (dict(eta=0.0), "eta must be positive"), (dict(eta=float("nan")), "eta must be positive"),
    (dict(batch=0), "batch size"), (dict(n_runs=0), "n_runs"), (dict(hidden=[1]), "below the rank"),
    (dict(track_every=0), "track_every"), (dict(weight_decay=-1.0), "non-negative"),
    (dict(M_O=np.zeros((2, 2))), "singular"),
])
def test_bad_hyperparameters(kwargs, match):
    args = dict(teacher=TEACHER, hidden=[3], n_runs=2, eta=0.01, device="cpu")
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        LinearEnsemble(**args)


def test_bad_teacher_and_weights():
    with pytest.raises(InputError, match="not positive definite"):
        LinearTeacher(np.eye(2), np.array([[1.0, 2.0], [2.0, 1.0]]), np.eye(2))
    with pytest.raises(InputError, match="not symmetric"):
        LinearTeacher(np.eye(2), np.eye(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(InputError, match="output rows"):
        LinearTeacher(np.eye(2), np.eye(2), np.eye(3))
    ens = LinearEnsemble(TEACHER, hidden=[3], n_runs=2, eta=0.01, device="cpu")
    with pytest.raises(InputError, match="expected"):
        ens.load_weights([torch.zeros(2, 4, 3), torch.zeros(2, 2, 3)])
