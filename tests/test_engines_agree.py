"""The engines agree: same deterministic trajectories, same SGD statistics.

Engines: LinearEnsemble (batched reference), FusedLinearEnsemble (backend "torch" on the
CPU - the kernel's reference; backend "triton" on a GPU, or under the Triton interpreter),
NaiveSGD (nn.Linear + optim.SGD, one run).

Tolerances
* exact GD (full-batch on the population loss, numeric.fused_linear.quadrature_batch):
  two float64 implementations differ only by round-off. The round-off amplification of
  this very trajectory is measured by running it in float32 too: the float64 gap must be
  below 100 x max(D32 eps64/eps32, N eps64), D32 the float32 gap of the same pair
  (round-off scales with the unit round-off; 100 covers different operation orders).
  A real difference (a wrong factor, sign or transposition) is O(eta) = 1e-2 after one step.
* SGD stationary averages (independent random streams): |m1 - m2| <= z sqrt(se1^2 + se2^2)
  with the CLT standard errors across independent runs and z = 5.5 (two-sided normal
  tail 3.8e-8 per component; 3 observables -> < 2e-7 per test).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from numeric.engine import choose_engine, linear_ensemble
from core.errors import DivergenceError, InputError
from numeric.fused_linear import (
    FusedLinearEnsemble,
    exact_gd_step,
    fused_unsupported_reason,
    philox4x32,
    philox_normals,
    triton_available,
)
from numeric.linear_ensemble import LinearEnsemble, LinearTeacher
from numeric.naive_sgd import NaiveSGD
from numeric.stationary import stationary_average
from numeric.strategies import full_rank_matrices, spd_matrices

EPS64, EPS32 = float(np.finfo(np.float64).eps), float(np.finfo(np.float32).eps)
Z_STAT = 5.5  # two-sided normal tail 3.8e-8


def _rel_gap(ws_a, ws_b) -> float:
    return max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(ws_a, ws_b))


def _teacher(dx=4, dy=3, seed=0, noise=0.2):
    rng = np.random.default_rng(seed)
    return LinearTeacher(rng.normal(size=(dy, dx)) / np.sqrt(dx), np.eye(dx) + 0.3 / dx, noise * np.eye(dy))


def _exact_gd_gaps(teacher, hidden, n_steps, dtype, eta=0.02, gam=0.01):
    """Gaps after n_steps of exact GD from one start: (ref vs fused-torch, ref vs naive)."""
    ref = LinearEnsemble(teacher, hidden, 2, eta, weight_decay=gam, dtype=dtype, device="cpu", seed=1)
    fused = FusedLinearEnsemble(teacher, hidden, 2, eta, weight_decay=gam, dtype=dtype, device="cpu",
                                backend="torch", gradient="exact")
    naive = NaiveSGD(teacher, hidden, eta, weight_decay=gam, dtype=dtype, gradient="exact")
    fused.load_weights(ref.weights)
    naive.load_weights([w[0] for w in ref.weights])
    for _ in range(n_steps):
        exact_gd_step(ref)
    fused.run(n_steps)
    naive.run(n_steps)
    return _rel_gap(ref.weights, fused.weights), _rel_gap([w[:1] for w in ref.weights], naive.weights)


@st.composite
def linear_problems(draw):
    """A teacher (full-rank V, SPD Sx and Se) and 1-3 hidden widths >= rank V."""
    dx, dy = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    V = draw(full_rank_matrices(dy, dx))
    teacher = LinearTeacher(V, draw(spd_matrices(dx)), draw(spd_matrices(dy)))
    hidden = draw(st.lists(st.integers(min(dx, dy), 5), min_size=1, max_size=3))
    return teacher, hidden


@given(linear_problems())
def test_exact_gd_identical_trajectories(problem):
    """Batched reference, fused reference and the naive loop: one trajectory, to round-off."""
    teacher, hidden = problem
    n = 60
    gap_f64, gap_n64 = _exact_gd_gaps(teacher, hidden, n, torch.float64)
    _, gap_n32 = _exact_gd_gaps(teacher, hidden, n, torch.float32)
    tol = 100 * max(gap_n32 * EPS64 / EPS32, n * EPS64)
    assert gap_f64 <= tol, (gap_f64, tol)
    assert gap_n64 <= tol, (gap_n64, tol)


def test_exact_gd_gap_is_roundoff_not_physics():
    """The check has power: the same comparison after perturbing eta by 1e-6 fails."""
    teacher = _teacher()
    a = LinearEnsemble(teacher, [5], 2, 0.02, device="cpu", seed=1)
    b = LinearEnsemble(teacher, [5], 2, 0.02 * (1 + 1e-6), device="cpu", seed=1)
    for _ in range(60):
        exact_gd_step(a)
        exact_gd_step(b)
    assert _rel_gap(a.weights, b.weights) > 100 * 60 * EPS64


def _stationary(ens, n_blocks_avg=10):
    def observe():
        w2 = [W.pow(2).sum(dim=(-1, -2)) for W in ens.weights]
        return {"loss": ens.population_loss(), "w1_sq": w2[0], "w2_sq": w2[1]}

    return stationary_average(ens.run, observe, block_steps=100, window=3, average_blocks=n_blocks_avg,
                              max_steps=6000, sample_every=10)


def test_sgd_stationary_averages_agree_batched_vs_fused_reference():
    """Same SGD chain, independent random streams (torch vs Philox): same stationary means."""
    teacher = _teacher(dx=3, dy=2, noise=0.25)
    kw = dict(teacher=teacher, hidden=[4], n_runs=512, eta=0.03, weight_decay=0.1, device="cpu", seed=7)
    _assert_same_stationary_means(_stationary(LinearEnsemble(**kw)), _stationary(FusedLinearEnsemble(backend="torch", **kw)))


def _assert_same_stationary_means(res_b, res_f):
    """Independent ensembles of the same chain: every mean within Z_STAT combined standard errors."""
    assert res_b.converged and res_f.converged
    for k in res_b.mean:
        gap = abs(float(res_b.mean[k] - res_f.mean[k]))
        bound = Z_STAT * math.hypot(float(res_b.stderr[k]), float(res_f.stderr[k]))
        assert gap <= bound, (k, float(res_b.mean[k]), float(res_f.mean[k]), bound)
        # the error bars are tight enough to mean something: < 1% of the value
        assert float(res_b.stderr[k]) < 0.01 * abs(float(res_b.mean[k]))


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("CI")), reason="36 CPU-s: run locally (pytest -m slow)")
def test_sgd_stationary_averages_agree_batched_vs_naive():
    """The naive loop (one run, batch-means error bars) samples the same stationary law."""
    teacher = _teacher(dx=3, dy=2, noise=0.25)
    kw = dict(eta=0.03, weight_decay=0.1, seed=7)
    res_b = _stationary(LinearEnsemble(teacher, [4], 512, device="cpu", **kw))
    naive = NaiveSGD(teacher, [4], **kw)

    def observe():
        w = naive.weights
        L = LinearEnsemble(teacher, [4], 1, kw["eta"], device="cpu")
        L.load_weights(w)
        return {"loss": L.population_loss(), "w1_sq": w[0].pow(2).sum(dim=(-1, -2)),
                "w2_sq": w[1].pow(2).sum(dim=(-1, -2))}

    res_n = stationary_average(naive.run, observe, block_steps=2000, window=3, average_blocks=40,
                               max_steps=40000, sample_every=10)
    assert res_b.converged and res_n.converged
    for k in res_b.mean:
        gap = abs(float(res_b.mean[k] - res_n.mean[k]))
        assert gap <= Z_STAT * math.hypot(float(res_b.stderr[k]), float(res_n.stderr[k])), k


def test_philox_known_answers():
    """Random123's published Philox4x32-10 test vectors (and so Triton's tl.philox)."""
    t = lambda v: torch.tensor([v], dtype=torch.int64)  # noqa: E731
    cases = [
        ((0, 0, 0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 6, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for args, want in cases:
        assert tuple(int(v) for v in philox4x32(*map(t, args))) == want


def test_philox_normals_moments():
    """Mean 0, variance 1, no correlation between neighbouring components (CLT, z = 5.5)."""
    z = philox_normals(123, torch.arange(2048), torch.arange(16), batch=1, n_quads=2).double()
    n = z.numel()
    assert abs(float(z.mean())) <= Z_STAT / math.sqrt(n)
    assert abs(float(z.var()) - 1) <= Z_STAT * math.sqrt(2.0 / n)
    corr = float((z[..., :-1] * z[..., 1:]).mean())
    assert abs(corr) <= Z_STAT / math.sqrt(z[..., 1:].numel())


def test_fused_reference_is_chunk_invariant():
    """The stream is indexed by the absolute step: 10 steps == 4 + 6 steps, bit for bit."""
    kw = dict(teacher=_teacher(), hidden=[6], n_runs=5, eta=0.01, device="cpu", backend="torch", seed=9)
    a, b = FusedLinearEnsemble(**kw), FusedLinearEnsemble(**kw)
    a.run(10)
    b.run(4)
    b.run(6)
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))


# ------------------------------------------------------------------ errors
def test_fused_engine_rejects_bad_input():
    t = _teacher()
    with pytest.raises(InputError, match="backend"):
        FusedLinearEnsemble(t, [6], 2, 0.01, backend="cuda-magic", device="cpu")
    with pytest.raises(InputError, match="gradient"):
        FusedLinearEnsemble(t, [6], 2, 0.01, backend="torch", gradient="adam", device="cpu")
    with pytest.raises(InputError, match="depth 5"):
        FusedLinearEnsemble(t, [6, 6, 6, 6], 2, 0.01, backend="torch", device="cpu")
    with pytest.raises(InputError, match="padded width 64"):
        FusedLinearEnsemble(t, [40], 2, 0.01, backend="torch", device="cpu")
    with pytest.raises(InputError, match="seed"):
        FusedLinearEnsemble(t, [6], 2, 0.01, backend="torch", seed=-1, device="cpu")
    with pytest.raises(InputError, match="below the rank"):
        FusedLinearEnsemble(t, [2], 2, 0.01, backend="torch", device="cpu")
    assert fused_unsupported_reason([6], 4, 3, batch=17) == "batch 17 outside 1..16"
    assert "float" in fused_unsupported_reason([6], 4, 3, dtype=torch.float16)
    if not triton_available():
        with pytest.raises(InputError, match="triton"):
            FusedLinearEnsemble(t, [6], 2, 0.01, backend="triton", device="cpu")


def test_divergence_is_an_error_not_a_nan():
    t = _teacher()
    with pytest.raises(DivergenceError, match="diverged"):
        FusedLinearEnsemble(t, [6], 3, 5.0, backend="torch", device="cpu", check_every=50).run(200)
    with pytest.raises(DivergenceError, match="diverged"):
        NaiveSGD(t, [6], 5.0).run(30)


def test_naive_rejects_bad_input():
    t = _teacher()
    with pytest.raises(InputError, match="eta"):
        NaiveSGD(t, [6], -0.1)
    with pytest.raises(InputError, match="batch"):
        NaiveSGD(t, [6], 0.1, batch=0)
    with pytest.raises(InputError, match="below the rank"):
        NaiveSGD(t, [1], 0.1)
    with pytest.raises(InputError, match="gradient"):
        NaiveSGD(t, [6], 0.1, gradient="newton")


# ------------------------------------------------------------------ the factory
def test_factory_never_picks_the_gpu_kernel_on_cpu_and_refuses_forced_fused():
    t = _teacher()
    ens = linear_ensemble(t, [6], 4, 0.01, device="cpu")
    assert type(ens).__name__ in ("FusedCPULinearEnsemble", "LinearEnsemble")  # the CPU auto engine
    assert choose_engine(t, [6], 4, device="cpu", cpu_engine="batched") == ("batched", "not a CUDA device")
    with pytest.raises(InputError, match="fused engine does not apply"):
        linear_ensemble(t, [6], 4, 0.01, device="cpu", engine="fused")
    with pytest.raises(InputError, match="engine must be one of"):
        linear_ensemble(t, [6], 4, 0.01, device="cpu", engine="warp-drive")


# ------------------------------------------------------------------ the kernel itself
_INTERPRET_SCRIPT = r"""
import torch, numpy as np
from numeric.fused_linear import FusedLinearEnsemble
from numeric.linear_ensemble import LinearTeacher
rng = np.random.default_rng(1)
t = LinearTeacher(rng.normal(size=(3, 4)), np.eye(4) + 0.2, 0.1 * np.eye(3))
maps = dict(Z=np.eye(4) + 0.2 * rng.normal(size=(4, 4)), M_I=np.eye(4) + 0.2 * rng.normal(size=(4, 4)),
            M_O=np.eye(3) + 0.2 * rng.normal(size=(3, 3)))
for hidden, grad, batch, extra in (([6], "sgd", 1, {}), ([5, 3], "exact", 2, maps), ([3, 4, 5], "sgd", 2, maps)):
    kw = dict(teacher=t, hidden=hidden, n_runs=19, eta=0.02, weight_decay=0.01, batch=batch,
              gradient=grad, seed=5, device="cpu", block_r=16, **extra)
    a, b = FusedLinearEnsemble(backend="torch", **kw), FusedLinearEnsemble(backend="triton", **kw)
    a.run(6); b.run(6)
    print(grad, max(float((x - y).abs().max() / x.abs().max()) for x, y in zip(a.weights, b.weights)))
"""


@pytest.mark.skipif(not triton_available(), reason="triton is not installed (pip install '.[gpu]')")
def test_triton_kernel_matches_reference_in_interpreter():
    """The Triton kernel run by Triton's CPU interpreter against its torch twin: exact GD to
    float64 round-off (1e-12), SGD on the same Philox stream to 1e-5 (float32 normals: numpy's
    and torch's log/cos may differ by an ulp, 6e-8 relative, amplified by <= 6 steps)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", _INTERPRET_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    for line in out.stdout.split("\n"):
        if line:
            grad, gap = line.split()
            assert float(gap) <= (1e-12 if grad == "exact" else 1e-5), line


@pytest.mark.gpu
def test_fused_kernel_on_gpu_matches_reference():
    """CUDA: exact GD to float64 round-off; SGD on the shared Philox stream to float32 ulps."""
    t = _teacher()
    for hidden, grad, rtol in (([6], "exact", 1e-10), ([5, 4], "exact", 1e-10), ([6], "sgd", 1e-4),
                               ([3, 4, 5], "sgd", 1e-4)):
        kw = dict(teacher=t, hidden=hidden, n_runs=1000, eta=0.02, weight_decay=0.01, batch=2, gradient=grad,
                  seed=11, device="cuda")
        a, b = FusedLinearEnsemble(backend="torch", **kw), FusedLinearEnsemble(backend="triton", **kw)
        a.run(100)
        b.run(100)
        assert _rel_gap(a.weights, b.weights) <= rtol, (hidden, grad)


@pytest.mark.gpu
def test_fused_kernel_on_gpu_stationary_agrees_with_batched():
    teacher = _teacher(dx=3, dy=2, noise=0.25)
    kw = dict(teacher=teacher, hidden=[4], n_runs=4096, eta=0.03, weight_decay=0.1, device="cuda", seed=7)
    _assert_same_stationary_means(_stationary(LinearEnsemble(**kw)),
                                  _stationary(FusedLinearEnsemble(backend="triton", **kw)))


@pytest.mark.gpu
def test_factory_picks_fused_on_gpu():
    if not triton_available():
        pytest.skip("triton is not installed")
    ens = linear_ensemble(_teacher(), [6], 64, 0.01, device="cuda")
    assert type(ens) is FusedLinearEnsemble, choose_engine(_teacher(), [6], 64, device="cuda")


def test_factory_selection_logic_on_a_pretend_gpu(monkeypatch):
    """The choice itself, CPU-checkable: pretend the device is CUDA and steer triton/self-check."""
    import numeric.engine as engine
    import numeric.fused_linear as fl

    monkeypatch.setattr(engine, "resolve_device", lambda spec: torch.device("cuda"))
    t = _teacher()
    monkeypatch.setattr(fl, "triton_available", lambda: False)
    assert choose_engine(t, [6], 8) == ("batched", "triton is not installed")
    monkeypatch.setattr(fl, "triton_available", lambda: True)
    monkeypatch.setattr(engine, "fused_self_check", lambda dev, dtype: None)
    assert choose_engine(t, [6], 8)[0] == "fused"
    assert choose_engine(t, [6], 8, dtype=torch.float32)[0] == "fused"
    assert choose_engine(t, [6, 6, 6, 6], 8) == ("batched", "depth 5 > 4 layers")
    assert choose_engine(t, [6], 8, batch=64) == ("batched", "batch 64 outside 1..16")
    assert choose_engine(t, [6], 8, M_I=np.eye(40), Z=np.eye(40, 4))[0] == "batched"  # d0 = 40 -> padded 64
    monkeypatch.setattr(engine, "fused_self_check", lambda dev, dtype: "layer 1: relative error 0.3 > 1e-10")
    engine_name, reason = choose_engine(t, [6], 8)
    assert engine_name == "batched" and "self-check" in reason


def test_self_check_failure_is_cached_and_warned(monkeypatch):
    import numeric.engine as engine

    def broken(device, dtype):
        raise RuntimeError("PTX compile error")

    monkeypatch.setattr(engine, "_run_self_check", broken)
    monkeypatch.setattr(engine, "_SELF_CHECK", {})
    with pytest.warns(UserWarning, match="fused engine disabled"):
        assert "PTX compile error" in engine.fused_self_check("cuda:0", torch.float64)
    monkeypatch.setattr(engine, "_run_self_check", lambda d, t: pytest.fail("not cached"))
    assert "PTX compile error" in engine.fused_self_check("cuda:0", torch.float64)
