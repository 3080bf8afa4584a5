"""The main job ``python -m theorems``: options, errors, verdict table and report folder."""

import json
import subprocess
import sys
import types

import pytest

from theorems import __main__ as cli
from theorems.verdict import Context, Verdict


def _fake_module(tid: str, passed: bool, raises: bool = False):
    def verify(ctx: Context):
        assert isinstance(ctx, Context)
        if raises:
            raise RuntimeError("boom")
        return [Verdict(theorem=tid, claim="x = 1", symbolic="exact", residual="0",
                        predicted=1.0, measured=1.0 if passed else 2.0, tolerance=1e-12,
                        tolerance_source="float64", details={"n": 3})]

    return types.SimpleNamespace(THEOREM=tid, TITLE=f"fake {tid}", verify=verify, __name__=f"fake{tid}")


@pytest.fixture
def fake_theorems(monkeypatch):
    mods = {"1": _fake_module("1", True), "2": _fake_module("2", False), "3": _fake_module("3", True, raises=True)}
    monkeypatch.setattr("theorems.verdict.theorem_modules", lambda: mods)
    return mods


def test_passing_theorem_writes_report_and_exits_zero(fake_theorems, tmp_path, capsys):
    assert cli.main(["--theorem", "1", "--out", str(tmp_path), "--device", "cpu"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| 1 | x = 1 |" in report and "PASS" in report
    data = json.loads((tmp_path / "verdicts.json").read_text())
    assert data["meta"]["device"] == "cpu"
    assert data["verdicts"][0]["details"] == {"n": 3}


def test_failing_or_crashing_theorem_gives_exit_one(fake_theorems, tmp_path):
    assert cli.main(["-t", "2", "--out", str(tmp_path)]) == 1
    assert cli.main(["-t", "3", "--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "verdicts.json").read_text())
    assert "boom" in data["verdicts"][0]["details"]["error"]


def test_json_output(fake_theorems, tmp_path, capsys):
    assert cli.main(["-t", "1", "-t", "2", "--json", "--out", str(tmp_path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [v["passed"] for v in data["verdicts"]] == [True, False]


@pytest.mark.parametrize("argv, message", [
    (["--theorem", "99"], "unknown theorem 99"),
    (["--device", "tpu"], "unknown device"),
    (["--budget", "huge"], "invalid choice"),
    (["--seed", "-1"], "--seed must be non-negative"),
    (["--seed", "x"], "invalid int value"),
])
def test_bad_options_give_one_line_error_and_exit_two(fake_theorems, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        sys.exit(cli.main([*argv, "--out", str(tmp_path)]))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cuda_without_gpu_is_an_error(fake_theorems, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cli.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_list_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "theorems", "--list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_log_output_has_a_line_per_theorem_and_a_wide_table(fake_theorems, tmp_path, capsys):
    """Captured output is not a terminal (CI logs): no progress bar, one line per theorem, and
    the verdict table is not folded into 80 columns."""
    assert cli.main(["-t", "1", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "Theorem 1: 1/1 verdicts passed" in captured.err
    assert max(len(line) for line in captured.out.splitlines()) > 80
