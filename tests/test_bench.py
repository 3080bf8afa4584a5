"""``python -m numeric.bench``: the CLI contract, the op counts, the peak estimate, and the
CPU speed-ups.

The speed-up requirement: on the CPU the batched engine runs >= 50x the naive loop's
run-steps/s in ``--quick``. Measured here (2 cores shared with other jobs, load ~7):
670-910x with one thread, 670-715x with two threads (OMP_WAIT_POLICY=PASSIVE, the bench's
default; with OpenMP spin-waiting two threads fell to 33-230x). Each engine's time is the best
of three repeats, so a transient stall of one repeat does not decide the ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import numeric.bench as bench
from numeric.bench import ENGINE_NAMES, cpu_peak, main, main_report, main_rows, op_counts
from numeric.fused_cpu import numba_available
from numeric.fused_linear import triton_available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_json_cli_smoke():
    """The real command line: JSON with the engine rows (name, run_steps_per_s, the ratios,
    the fraction of the peak), the peak estimate and the flops per run-step."""
    out = subprocess.run([sys.executable, "-m", "numeric.bench", "--quick", "--json", "--device", "cpu"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    rows = report["engines"]
    names = [r["name"] for r in rows]
    assert names[:2] == ["naive", "batched"] and "fused-torch" in names
    assert "compiled" not in names  # --quick leaves torch.compile out
    assert "fused" not in names  # no kernel without CUDA
    assert ("fused-cpu" in names) == numba_available()
    for r in rows:
        assert r["run_steps_per_s"] > 0 and r["speedup_vs_naive"] > 0 and r["speedup_vs_batched"] > 0
        assert r["device"] == "cpu" and r["dtype"] == "float32"
        assert r["omp_wait_policy"] == "PASSIVE"
        assert 0 < r["fraction_of_peak"] < 1
    assert rows[0]["threads"] == 1
    assert rows[0]["speedup_vs_naive"] == 1.0 and rows[1]["speedup_vs_batched"] == 1.0
    batched = rows[names.index("batched")]
    assert batched["speedup_vs_naive"] >= 50, rows
    assert report["flops_per_run_step"] == 449 and "Philox" in report["flops_counted"]
    assert report["peak"]["gflops"] > 0 and "cores x" in report["peak"]["how"]
    assert all(set(s) == {"name", "reason"} for s in report["skipped"])


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_fused_cpu_engine_row():
    """The compiled CPU engine: a verified kernel (the factory's self-check), its first-call
    time, and a speed-up over the batched engine (measured 24x with one thread on a busy
    2-core machine; >= 5 leaves room for a slower or busier one)."""
    report = main_report(["--quick", "--device", "cpu", "--engines", "fused-cpu", "--dtype", "float64", "--repeats", "3",
                          "--threads", "1"])
    rows = report["engines"]
    assert [r["name"] for r in rows] == ["naive", "batched", "fused-cpu"]
    cpu = rows[2]
    assert cpu["self_check"] == "passed" and cpu["first_call_s"] > 0 and cpu["threads"] == 1
    assert cpu["speedup_vs_batched"] >= 5, rows


def test_compiled_engine_is_skipped_with_a_reason_when_compilation_fails(monkeypatch, capsys):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("no working C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    assert main(["--quick", "--device", "cpu", "--engines", "compiled", "--repeats", "1"]) == 0
    text = capsys.readouterr().out
    assert "compiled     skipped: torch.compile failed: RuntimeError: no working C++ compiler" in text


def test_jax_engine_runs_or_is_skipped(monkeypatch):
    try:
        import jax  # noqa: F401
    except ImportError:
        report = main_report(["--quick", "--device", "cpu", "--engines", "jax", "--repeats", "1"])
        assert report["skipped"] == [{"name": "jax", "reason": "jax is not installed (pip install -e '.[bench]')"}]
        return
    report = main_report(["--quick", "--device", "cpu", "--engines", "jax", "--repeats", "1", "--fused-runs", "64",
                          "--steps", "5", "--dtype", "float64"])
    assert [r["name"] for r in report["engines"]] == ["naive", "batched", "jax"]
    monkeypatch.setitem(sys.modules, "jax", None)  # as if it were not installed
    report = main_report(["--quick", "--device", "cpu", "--engines", "jax", "--repeats", "1"])
    assert report["skipped"][0]["reason"].startswith("jax is not installed")


def test_peak_estimate_from_cpuinfo():
    """cores x clock x FMA lanes x 2 x FMA units, and the Zen 4 half-width AVX-512 rule."""
    zen4 = [{"processor": str(i), "physical id": "0", "core id": str(i), "cpu MHz": "2596.128", "vendor_id": "AuthenticAMD",
             "cpu family": "25", "model": "17", "flags": "fma avx2 avx512f"} for i in range(2)]
    p = cpu_peak("float64", cpuinfo=zen4)
    assert p["cores"] == 2 and p["lanes"] == 4 and p["fma_bits"] == 256 and abs(p["gflops"] - 83.1) < 0.05
    assert cpu_peak("float32", cpuinfo=zen4)["lanes"] == 8
    intel = [dict(zen4[0], vendor_id="GenuineIntel", **{"cpu family": "6"})]
    assert cpu_peak("float64", cpuinfo=intel)["fma_bits"] == 512
    smt = [dict(zen4[0], processor="1")] + zen4[:1]  # two hyperthreads of one core
    assert cpu_peak("float64", cpuinfo=smt)["cores"] == 1
    assert cpu_peak("float64", cpuinfo=[{"processor": "0"}])["gflops"] is None


@pytest.mark.skipif(not triton_available(), reason="triton is not installed (pip install '.[gpu]')")
def test_fused_bench_path_under_the_triton_interpreter():
    """The bench's kernel path (build, compile, launch, time) on the CPU via TRITON_INTERPRET=1."""
    out = subprocess.run([sys.executable, "-W", "ignore", "-m", "numeric.bench", "--device", "cpu", "--json",
                          "--engines", "fused", "--fused-runs", "40", "--steps", "3", "--launch-steps", "2",
                          "--repeats", "1", "--naive-steps", "20"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env=dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)["engines"]
    assert [r["name"] for r in rows] == ["naive", "batched", "fused"] and rows[2]["interpreted"] is True


def test_table_output(capsys):
    assert main(["--quick", "--device", "cpu", "--engines", "batched", "--repeats", "1", "--dtype", "float64"]) == 0
    text = capsys.readouterr().out
    assert "naive" in text and "batched" in text and "run-steps/s" in text and "float64" in text
    assert "Philox" in text  # the per-run-step work estimate
    assert "x batched" in text and "% peak" in text and "peak estimate:" in text and "flops per run-step: 449" in text


@pytest.mark.parametrize("argv, message", [
    (["--runs", "0"], "positive integer"),
    (["--steps", "many"], "positive integer"),
    (["--engines", "warp"], "unknown engine"),
    (["--dtype", "float16"], "invalid choice"),
    (["--hidden", "6,x"], "comma-separated"),
    (["--eta", "-1"], "positive number"),
    (["--frobnicate"], "unrecognized"),
])
def test_bad_options_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("python -m numeric.bench: error:")


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "unknown device"),
    (["--quick", "--device", "cpu", "--engines", "fused"], "not available here"),
    (["--quick", "--device", "cpu", "--engines", "batched", "--hidden", "1"], "below the rank"),
])
def test_unusable_setups_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cuda_without_gpu_is_a_usage_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_op_counts_scale_with_batch_and_depth():
    one, two = op_counts(4, 3, [6]), op_counts(4, 3, [6], batch=2)
    assert two["fma"] == 2 * one["fma"] and two["philox_calls"] == 2 * one["philox_calls"]
    assert two["update_flops"] == one["update_flops"]  # one update per step, whatever the batch
    assert op_counts(4, 3, [6, 6])["fma"] > one["fma"]
    assert set(ENGINE_NAMES) == {"naive", "batched", "compiled", "fused-torch", "fused", "fused-cpu", "jax"}


def test_rows_in_process():
    rows = main_rows(["--quick", "--device", "cpu", "--engines", "fused-torch", "--repeats", "1", "--steps", "6"])
    assert [r["name"] for r in rows] == ["naive", "batched", "fused-torch"]  # the two baselines always run
    assert rows[2]["steps"] == 2 and rows[2]["runs"] == 4096


def test_divergence_is_a_one_line_usage_error(capsys):
    """--eta past the stability limit: the engines raise DivergenceError; the CLI says so in one line."""
    assert main(["--quick", "--device", "cpu", "--engines", "batched", "--repeats", "1", "--eta", "5"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("python -m numeric.bench: error:") and "diverged" in err and err.count("\n") == 1
    assert "Traceback" not in err and captured.out == ""


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_fused_cpu_divergence_reaches_the_cli_handler():
    """The compiled engine's row raises DivergenceError too (main turns it into the one line above)."""
    import torch

    from core.errors import DivergenceError

    args = bench.build_parser().parse_args(["--quick", "--eta", "5"])
    with pytest.raises(DivergenceError, match="diverged"):
        bench._bench_engine("fused-cpu", args, torch.device("cpu"), torch.float64, 64, 50, bench.teacher_for(4, 3),
                            lambda: None)
