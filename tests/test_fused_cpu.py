"""numeric.fused_cpu: the compiled CPU engine against the batched engine and the torch twin.

Tolerances
* exact GD (full batch, ``gradient="exact"``): the batched engine's ``exact_gd_step`` and the
  kernel compute the same trajectory with different operation orders (and FMAs), so they
  differ by round-off: a few ulps per step, ~1e-15 relative after 40 steps of these
  well-conditioned problems (measured <= 5e-16; the float32 run of the same pair stays at
  float32 round-off, so nothing amplifies it). 1e-12 leaves the margin of a deeper or
  longer run; a real error (a factor, a sign, a transposition) is O(eta) = 1e-2.
* SGD against the twin fed the kernel's normals: the same arithmetic on the same data,
  round-off again: 1e-12 after 50 steps.
* SGD against the plain twin: its normals come from torch's float32 log/sin/cos (MKL or
  SLEEF), the kernel's from its own; each is within 2 ulps of the correctly rounded value,
  so a normal differs by at most a few float32 ulps (measured <= 3, relative 4e-7). The
  data enter the step linearly; after 50 steps of eta = 0.02 the weights differ by
  ~1e-8 (measured 1e-8 .. 1e-6): bound 1e-5.
* stationary averages (independent streams, torch's vs Philox): |m1 - m2| <= z sqrt(se1^2 +
  se2^2), CLT standard errors across independent runs; z for a false-failure budget of 1e-4
  per test, split over the compared components (Bonferroni).
"""

from __future__ import annotations

import math

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm

import numeric.engine as engine
import numeric.fused_cpu as fused_cpu
import numeric.fused_linear as fused_linear
from core.errors import DivergenceError, InputError
from numeric.fused_cpu import FusedCPULinearEnsemble, philox_normals, reference_run
from numeric.fused_linear import FusedLinearEnsemble, exact_gd_step
from numeric.linear_ensemble import LinearEnsemble, LinearTeacher

pytestmark = pytest.mark.skipif(not fused_cpu.numba_available(), reason="numba is not installed")

FALSE_FAILURE = 1e-4  # per statistical test
EPS32 = float(np.finfo(np.float32).eps)


def _rel_gap(ws_a, ws_b) -> float:
    return max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(ws_a, ws_b))


def _teacher(dx=4, dy=3, seed=1, noise=0.1):
    rng = np.random.default_rng(seed)
    return LinearTeacher(rng.normal(size=(dy, dx)) / np.sqrt(dx), np.eye(dx) + 0.2, noise * np.eye(dy))


def _maps(dx=4, dy=3, seed=2, scale=0.2):
    rng = np.random.default_rng(seed)
    return dict(Z=np.eye(dx) + scale * rng.normal(size=(dx, dx)), M_I=np.eye(dx) + scale * rng.normal(size=(dx, dx)),
                M_O=np.eye(dy) + scale * rng.normal(size=(dy, dy)))


# ------------------------------------------------------------------ exact GD vs the batched engine
@pytest.mark.parametrize("hidden, embedded", [([5], False), ([5, 3], True), ([3, 4, 5], True)])
def test_exact_gd_matches_batched_engine(hidden, embedded):
    """D = 2, 3, 4; full batch of dx = 4 samples (the kernel's batch > 1 path), weight decay,
    non-identity M_I, Z, M_O; 37 runs (a partial last block)."""
    kw = dict(teacher=_teacher(), hidden=hidden, n_runs=37, eta=0.01, weight_decay=0.01, device="cpu", seed=5,
              **(_maps() if embedded else {}))
    ref, cpu = LinearEnsemble(**kw), FusedCPULinearEnsemble(gradient="exact", **kw)
    cpu.load_weights(ref.weights)
    for _ in range(40):
        exact_gd_step(ref)
    cpu.run(40)
    assert _rel_gap(ref.weights, cpu.weights) <= 1e-12


def test_exact_gd_check_has_power():
    """A 1e-9 relative change of eta already moves the trajectory far beyond 1e-12."""
    kw = dict(teacher=_teacher(), hidden=[5, 3], n_runs=3, weight_decay=0.01, device="cpu", seed=5, **_maps())
    a, b = (FusedCPULinearEnsemble(eta=eta, gradient="exact", **kw) for eta in (0.01, 0.01 * (1 + 1e-9)))
    a.run(40)
    b.run(40)
    assert _rel_gap(a.weights, b.weights) > 1e-10


# ------------------------------------------------------------------ SGD on the Philox stream
@pytest.mark.parametrize("hidden, batch, embedded", [([6], 1, False), ([5, 3], 3, True)])
def test_sgd_matches_twin_fed_the_kernel_normals(hidden, batch, embedded, monkeypatch):
    """The torch twin (FusedLinearEnsemble, backend "torch") with the kernel's normals: one
    trajectory to float64 round-off. Both start from the same torch-generator weights."""
    monkeypatch.setattr(fused_linear, "philox_normals", philox_normals)
    kw = dict(teacher=_teacher(), hidden=hidden, n_runs=21, eta=0.01, weight_decay=0.01, batch=batch, device="cpu",
              seed=2**40 + 7, **(_maps() if embedded else {}))
    twin, cpu = FusedLinearEnsemble(backend="torch", **kw), FusedCPULinearEnsemble(**kw)
    assert all(torch.equal(a, b) for a, b in zip(twin.weights, cpu.weights))
    twin.run(50)
    cpu.run(50)
    assert _rel_gap(twin.weights, cpu.weights) <= 1e-12


def test_sgd_matches_plain_twin_to_normal_roundoff():
    kw = dict(teacher=_teacher(), hidden=[5, 3], n_runs=21, eta=0.01, batch=2, device="cpu", seed=9, **_maps())
    twin, cpu = FusedLinearEnsemble(backend="torch", **kw), FusedCPULinearEnsemble(**kw)
    twin.run(50)
    cpu.run(50)
    assert _rel_gap(twin.weights, cpu.weights) <= 1e-5


def test_normals_are_the_twin_stream():
    """Same counters and key: every normal within a few float32 ulps of the twin's (and most
    equal); a wrong counter, key or Box-Muller would differ by O(1)."""
    runs, steps = torch.arange(0, 3000, 7), torch.tensor([0, 1, 5, 2**32 - 1])
    a = philox_normals(2**40 + 3, runs, steps, 3, 2)
    b = fused_linear.philox_normals(2**40 + 3, runs, steps, 3, 2)
    assert a.shape == b.shape and a.dtype == torch.float32
    ulps = (a - b).abs() / (torch.maximum(a.abs(), b.abs()) * EPS32)
    assert float(ulps.max()) <= 8
    assert float((a == b).double().mean()) > 0.5
    z = philox_normals(123, torch.arange(4096), torch.arange(8), 1, 2).double()  # N(0, 1): CLT, z = 5.5
    assert abs(float(z.mean())) <= 5.5 / math.sqrt(z.numel())
    assert abs(float(z.var()) - 1) <= 5.5 * math.sqrt(2.0 / z.numel())


def test_reference_run_is_the_kernel_step():
    """fused_cpu.reference_run (the twin's arithmetic on the kernel's stream, used by the
    factory's self-check) advances a batched engine along the kernel's trajectory."""
    kw = dict(teacher=_teacher(), hidden=[6], n_runs=5, eta=0.02, batch=2, device="cpu", seed=4)
    ref, cpu = LinearEnsemble(**kw), FusedCPULinearEnsemble(**kw)
    reference_run(ref, 30, seed=4)
    cpu.run(30)
    assert ref.step_count == cpu.step_count == 30 and _rel_gap(ref.weights, cpu.weights) <= 1e-12


# ------------------------------------------------------------------ reproducibility
def test_bits_do_not_depend_on_threads_or_chunking(monkeypatch):
    """Blocks of runs are independent and the data depend on (seed, run, step, sample) only:
    1, 2 or 3 kernel threads (5 blocks cut into chunks the threads take in turn), one call
    or several - same bits, also for the in-kernel averages (running sums in time order)."""
    monkeypatch.setattr(fused_cpu, "INLINE_RUN_STEPS", 0)  # dispatch even these small calls to the threads
    kw = dict(teacher=_teacher(), hidden=[5, 3], n_runs=70, eta=0.01, batch=2, device="cpu", seed=11, **_maps())
    ens = [FusedCPULinearEnsemble(threads=k, **kw) for k in (1, 2, 3)]
    obs = [e.run_accumulate(30, sample_every=5) for e in ens]
    chunked = FusedCPULinearEnsemble(threads=2, check_every=7, **kw)
    obs.append(chunked.run_accumulate(30, sample_every=5))
    ens.append(chunked)
    for e, o in zip(ens[1:], obs[1:]):
        assert all(torch.equal(a, b) for a, b in zip(ens[0].weights, e.weights))
        assert all(torch.equal(obs[0][k], o[k]) for k in obs[0])


# ------------------------------------------------------------------ in-kernel observables
def test_in_kernel_observables_equal_the_python_average_of_the_same_trajectory():
    """run_accumulate's in-kernel averages against the same states and data evaluated in
    torch (LinearEnsemble.observables on the weights after every k steps and on the next
    step's minibatch, next_batch()): equal to round-off (different summation orders)."""
    kw = dict(teacher=_teacher(), hidden=[5, 3], n_runs=19, eta=0.01, weight_decay=0.01, batch=2, device="cpu",
              seed=3, **_maps())
    a, b = FusedCPULinearEnsemble(**kw), FusedCPULinearEnsemble(**kw)
    n, k = 40, 5
    got = a.run_accumulate(n, sample_every=k)
    total = None
    for _ in range(n // k):
        b.run(k)
        obs = b.observables(*b.next_batch())
        total = obs if total is None else {key: total[key] + v for key, v in obs.items()}
    assert sorted(got) == sorted(total) == ["K1", "K2", "W1tW1", "WDWDt", "grad_sq", "loss", "population_loss"]
    for key, v in total.items():
        want = v / (n // k)
        assert got[key].shape == want.shape and got[key].dtype == torch.float64, key
        assert torch.allclose(got[key], want, rtol=1e-10, atol=1e-12 * float(want.abs().max())), key
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))  # accumulation does not touch the chain


def test_batched_run_accumulate_has_the_same_observables():
    ens = LinearEnsemble(_teacher(), [5, 3], 4, 0.01, device="cpu", seed=0, **_maps())
    obs = ens.run_accumulate(7, sample_every=3)
    assert ens.step_count == 7 and sorted(obs) == ["K1", "K2", "W1tW1", "WDWDt", "grad_sq", "loss", "population_loss"]
    assert tuple(obs["K2"].shape) == (4, 4, 4) and tuple(obs["WDWDt"].shape) == (4, 3, 3)
    with pytest.raises(InputError, match="sample_every"):
        ens.run_accumulate(10, sample_every=0)
    with pytest.raises(InputError, match="no sample"):
        FusedCPULinearEnsemble(_teacher(), [5], 4, 0.02, device="cpu").run_accumulate(3, sample_every=5)


# ------------------------------------------------------------------ divergence and bad input
def test_divergence_names_runs_and_their_first_step():
    kw = dict(teacher=_teacher(), hidden=[6], n_runs=20, eta=0.6, device="cpu", seed=0, check_every=50)
    with pytest.raises(DivergenceError, match=r"diverged in \d+/20 runs.*run \d+ at step \d+.*stability") as info:
        FusedCPULinearEnsemble(**kw).run(400)
    runs, steps = info.value.runs, info.value.steps
    assert runs and len(runs) == len(steps)
    # the same chain one step at a time: each named run first exceeds the bound at its step
    ens = FusedCPULinearEnsemble(**kw)
    first = {}
    for s in range(1, max(steps) + 1):
        try:
            ens.run(1)
        except DivergenceError as exc:
            first.update({r: t for r, t in zip(exc.runs, exc.steps) if r not in first})
    assert [first[r] for r in runs] == steps


def test_nan_initial_state_is_an_input_error_not_a_divergence():
    ens = FusedCPULinearEnsemble(_teacher(), [6], 20, 0.01, device="cpu")
    W = ens.weights[0].clone()
    W[17, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"W_1 .* NaN or infinite in runs \[17\]"):
        ens.load_weights([W, ens.weights[1]])
    ens.weights[1][3, 0, 0] = float("inf")  # an in-place write goes through the view
    with pytest.raises(InputError, match=r"runs \[3\].*before step 1.*not a learning-rate problem"):
        ens.run(5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(gradient="adam"), "gradient"), (dict(seed=-1), "seed"), (dict(seed=2**64), "seed"),
    (dict(hidden=[6, 6, 6, 6]), "depth 5"), (dict(dtype=torch.float16), "float32 or float64"),
    (dict(eta=0.0), "eta"), (dict(threads=0), "threads"),
])
def test_bad_input(kwargs, match):
    args = dict(teacher=_teacher(), hidden=[6], n_runs=4, eta=0.01, device="cpu")
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        FusedCPULinearEnsemble(**args)


# ------------------------------------------------------------------ the same statistics
def test_stationary_statistics_agree_with_the_batched_engine():
    """Same SGD chain, independent random streams: the time averages over the stationary
    window agree within the CLT bound (runs are independent: one time average per run)."""
    teacher = _teacher(dx=3, dy=2, noise=0.25)
    kw = dict(teacher=teacher, hidden=[4], n_runs=512, eta=0.03, weight_decay=0.1, device="cpu", seed=7)
    res = []
    for ens in (LinearEnsemble(**kw), FusedCPULinearEnsemble(**kw)):
        ens.run(600)  # burn-in: the slowest mode relaxes at rate >= 2 eta gam = 6e-3 per step
        obs = ens.run_accumulate(1500, sample_every=10)
        per_run = torch.stack([obs["population_loss"], obs["W1tW1"].diagonal(dim1=-2, dim2=-1).sum(-1),
                               obs["WDWDt"].diagonal(dim1=-2, dim2=-1).sum(-1), *obs["grad_sq"].T], -1)
        res.append((per_run.mean(0), per_run.std(0) / math.sqrt(per_run.shape[0])))
    (m1, s1), (m2, s2) = res
    z = float(norm.isf(FALSE_FAILURE / (2 * m1.numel())))  # two-sided, Bonferroni over components
    assert bool(((m1 - m2).abs() <= z * torch.sqrt(s1**2 + s2**2)).all()), (m1, m2, s1, s2, z)
    assert bool((s1 < 0.01 * m1.abs()).all())  # the error bars are tight enough to mean something


# ------------------------------------------------------------------ interface and factory
def test_weights_are_views_of_the_kernel_state():
    t = _teacher()
    ens = FusedCPULinearEnsemble(t, [6], 5, 0.01, device="cpu", seed=3)
    ref = LinearEnsemble(t, [6], 5, 0.01, device="cpu", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(ens.weights, ref.weights))  # same initial draws
    assert [tuple(w.shape) for w in ens.weights] == [(5, 6, 4), (5, 3, 6)]
    ens.load_weights([w[0] for w in ref.weights])  # a single net broadcast over the runs
    assert torch.equal(ens.weights[1][4], ref.weights[1][0])
    assert torch.allclose(ens.population_loss(), ens.observables(*ens.sample())["population_loss"])
    with pytest.raises(InputError, match="expected"):
        ens.load_weights([torch.zeros(5, 4, 4), torch.zeros(5, 3, 6)])
    with pytest.raises(InputError, match="views of its kernel state"):
        ens.weights[0] = torch.zeros(5, 6, 4)
    ens.weights = [torch.zeros(5, 6, 4), ref.weights[1]]  # a whole new list is copied in
    assert float(ens.weights[0].abs().max()) == 0.0 and torch.equal(ens.weights[1], ref.weights[1])


def test_factory_switch_and_fallbacks(monkeypatch):
    t = _teacher()
    monkeypatch.delenv(engine.CPU_ENGINE_ENV, raising=False)
    monkeypatch.setattr(engine, "_CPU_AUTO", [None])
    assert engine.cpu_auto_engine() == "fused-cpu" and not engine.cpu_engine_named()  # the default
    monkeypatch.setattr(engine, "fused_cpu_self_check", lambda dtype: None)
    assert type(engine.linear_ensemble(t, [6], 4, 0.01, device="cpu")) is FusedCPULinearEnsemble
    with warnings.catch_warnings():  # by default, a problem the kernel cannot take falls back silently
        warnings.simplefilter("error")
        assert type(engine.linear_ensemble(t, [6, 6, 6, 6], 4, 0.01, device="cpu")) is LinearEnsemble
    monkeypatch.setenv(engine.CPU_ENGINE_ENV, "batched")
    assert type(engine.linear_ensemble(t, [6], 4, 0.01, device="cpu")) is LinearEnsemble
    monkeypatch.setenv(engine.CPU_ENGINE_ENV, "fused-cpu")
    assert engine.choose_engine(t, [6], 4, device="cpu")[0] == "fused-cpu"
    assert type(engine.linear_ensemble(t, [6], 4, 0.01, device="cpu")) is FusedCPULinearEnsemble
    engine.set_cpu_auto_engine("batched")  # the in-process setting wins over the environment
    assert engine.choose_engine(t, [6], 4, device="cpu") == ("batched", "not a CUDA device")
    engine.set_cpu_auto_engine("fused-cpu")
    with pytest.warns(UserWarning, match="depth 5"):
        assert type(engine.linear_ensemble(t, [6, 6, 6, 6], 4, 0.01, device="cpu")) is LinearEnsemble
    monkeypatch.setattr(engine, "fused_cpu_self_check", lambda dtype: "SGD: relative error 0.3 > 1e-12")
    with pytest.warns(UserWarning, match="self-check"):
        assert type(engine.linear_ensemble(t, [6], 4, 0.01, device="cpu")) is LinearEnsemble
    monkeypatch.setattr(fused_cpu, "numba_available", lambda: False)
    with pytest.warns(UserWarning, match="numba is not installed"):
        assert type(engine.linear_ensemble(t, [6], 4, 0.01, device="cpu")) is LinearEnsemble
    with pytest.raises(InputError, match="fused-cpu engine does not apply.*numba"):
        engine.linear_ensemble(t, [6], 4, 0.01, device="cpu", engine="fused-cpu")
    with pytest.raises(InputError, match="CPU auto engine must be one of"):
        engine.set_cpu_auto_engine("warp")
    engine.set_cpu_auto_engine(None)
    monkeypatch.setenv(engine.CPU_ENGINE_ENV, "warp")
    with pytest.raises(InputError, match="NTV_CPU_ENGINE must be one of"):
        engine.cpu_auto_engine()


def test_forced_engine_and_self_check(monkeypatch):
    t = _teacher()
    ens = engine.linear_ensemble(t, [6], 4, 0.01, device="cpu", engine="fused-cpu", seed=1)
    assert type(ens) is FusedCPULinearEnsemble
    with pytest.raises(InputError, match="fused engine does not apply"):  # the GPU kernel, on the CPU
        engine.linear_ensemble(t, [6], 4, 0.01, device="cpu", engine="fused")
    assert engine.fused_cpu_self_check(torch.float64) is None
    monkeypatch.setattr(engine, "_CPU_SELF_CHECK", {})
    monkeypatch.setattr(engine, "_run_cpu_self_check", lambda dtype: 1 / 0)
    with pytest.warns(UserWarning, match="fused-cpu engine disabled"):
        assert "ZeroDivisionError" in engine.fused_cpu_self_check(torch.float64)
    monkeypatch.setattr(engine, "_run_cpu_self_check", lambda dtype: pytest.fail("not cached"))
    assert "ZeroDivisionError" in engine.fused_cpu_self_check(torch.float64)


def test_witnesses_run_on_the_compiled_engine(monkeypatch):
    """The two SGD witnesses, unchanged, on the compiled engine (tiny budgets)."""
    from numeric.two_layer_witness import TwoLayerProblem, measure_invariants
    from numeric.platonic_sgd import measure_kernels
    from symbolic.deep_linear import EmbeddedProblem

    monkeypatch.setattr(engine, "_CPU_AUTO", ["fused-cpu"])
    monkeypatch.setattr(engine, "fused_cpu_self_check", lambda dtype: None)
    p = TwoLayerProblem(V=np.eye(2), Sx=np.eye(2), Se=0.5 * np.eye(2), width=2)
    m = measure_invariants(p, eta=0.02, n_runs=16, block_steps=100, window=2, average_blocks=2, max_steps=20_000,
                           device="cpu")
    assert m.converged and m.final_weights[0].shape == (16, 2, 2)
    prob = EmbeddedProblem(V=np.eye(2), Sx=np.eye(2), Se=0.5 * np.eye(2))
    k = measure_kernels(prob, hidden=[2], eta=0.02, n_runs=4, block_steps=100, window=2, average_blocks=2,
                        max_steps=400, device="cpu")
    assert k.kernel_mean[0].shape == (2, 2)
