"""The main job ``python -m theorems``: options, errors, verdict table and report folder."""

import json
import os
import signal
import subprocess
import sys
import time
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


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    """The fake modules live in this process only: verify them here, not in workers."""
    monkeypatch.setattr("theorems.parallel.cores", lambda: 1)


@pytest.fixture
def fake_theorems(monkeypatch):
    mods = {"1": _fake_module("1", True), "2": _fake_module("2", False), "3": _fake_module("3", True, raises=True)}
    monkeypatch.setattr("theorems.verdict.theorem_modules", lambda broken=None: mods)
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
    v = data["verdicts"][0]
    assert v["status"] == "ERROR" and "boom" in v["error"]
    assert "ERROR: RuntimeError: boom" in (tmp_path / "report.md").read_text()


def test_json_output(fake_theorems, tmp_path, capsys):
    assert cli.main(["-t", "1", "-t", "2", "--json", "--out", str(tmp_path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [v["passed"] for v in data["verdicts"]] == [True, False]


@pytest.mark.parametrize("argv, message", [
    (["--theorem", "99"], "unknown theorem 99"),
    (["--device", "tpu"], "unknown device"),
    (["--budget", "huge"], "invalid choice"),
    (["--seed", "-1"], "--seed must be non-negative"),
    (["--seed", str(2**32)], "at most 4294967295"),
    (["--seed", "x"], "invalid int value"),
    (["--jobs", "0"], "argument --jobs/-j: expected a positive integer, got '0'"),
    (["-j", "two"], "argument --jobs/-j: expected a positive integer, got 'two'"),
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


def test_seed_at_the_top_of_the_range_is_accepted(fake_theorems, tmp_path):
    assert cli.main(["-t", "1", "--seed", str(2**32 - 1), "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize("make_out, message", [
    (lambda tmp: "", "--out must name a folder"),
    (lambda tmp: "   ", "--out must name a folder"),
    (lambda tmp: str(tmp / "a_file" / "reports"), "cannot write the report folder"),  # parent is a file
    (lambda tmp: str(tmp / "a_file"), "cannot write the report folder"),  # the folder is a file
])
def test_unusable_out_folder_exits_two_before_any_theorem(monkeypatch, tmp_path, capsys, make_out, message):
    ran = []
    mod = _fake_module("1", True)
    verify = mod.verify
    mod.verify = lambda ctx: ran.append(1) or verify(ctx)
    monkeypatch.setattr("theorems.verdict.theorem_modules", lambda broken=None: {"1": mod})
    (tmp_path / "a_file").write_text("not a folder")
    assert cli.main(["-t", "1", "--out", make_out(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert ran == []


def test_read_only_out_folder_exits_two(fake_theorems, tmp_path, capsys):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root)")
        assert cli.main(["-t", "1", "--out", str(ro / "report")]) == 2
        assert cli.main(["-t", "1", "--out", str(ro)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all("cannot write the report folder" in e for e in err)
    finally:
        ro.chmod(0o700)


def test_repeated_theorem_runs_once_in_first_seen_order(fake_theorems, tmp_path, capsys):
    assert cli.main(["-t", "2", "-t", "1", "-t", "2", "--json", "--out", str(tmp_path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [v["theorem"] for v in data["verdicts"]] == ["2", "1"]
    assert list(data["meta"]["seconds"]) == ["2", "1"]


def test_ctrl_c_exits_130_with_one_line_and_keeps_the_old_report(monkeypatch, tmp_path, capsys):
    def interrupted(ctx):
        raise KeyboardInterrupt

    mods = {"1": _fake_module("1", True), "2": types.SimpleNamespace(THEOREM="2", TITLE="slow", verify=interrupted,
                                                                    __name__="fake2")}
    monkeypatch.setattr("theorems.verdict.theorem_modules", lambda broken=None: mods)
    (tmp_path / "report.md").write_text("old report\n")
    (tmp_path / "verdicts.json").write_text("{}")
    assert cli.main(["-t", "1", "-t", "2", "--out", str(tmp_path)]) == 130
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[-1] == "python -m theorems: interrupted; report not written"
    assert "Traceback" not in captured.err + captured.out
    assert (tmp_path / "report.md").read_text() == "old report\n"
    assert (tmp_path / "verdicts.json").read_text() == "{}"


def test_one_check_raising_keeps_the_other_checks_verdicts(monkeypatch, tmp_path, capsys):
    from theorems.checks import REGISTRY, check, verifier

    @check("T9")
    def check_fine(ctx):
        """x equals 1."""
        return Verdict("T9", "x = 1", predicted=1.0, measured=1.0, tolerance=0.0, tolerance_source="exact")

    @check("T9")
    def check_broken(ctx):
        """y is computable."""
        raise ZeroDivisionError("division by zero in y")

    try:
        mod = types.SimpleNamespace(THEOREM="T9", TITLE="t", verify=verifier("T9"), __name__="fake9")
        monkeypatch.setattr("theorems.verdict.theorem_modules", lambda broken=None: {"T9": mod})
        assert cli.main(["-t", "T9", "--json", "--out", str(tmp_path)]) == 1
        out = capsys.readouterr()
        data = json.loads(out.out)
        assert [v["status"] for v in data["verdicts"]] == ["PASS", "ERROR"]
        assert "division by zero in y" in data["verdicts"][1]["error"] and "division by zero in y" in out.err
    finally:
        REGISTRY.pop("T9", None)


def test_a_module_that_cannot_load_is_an_error_row_and_the_others_run(monkeypatch, tmp_path, capsys):
    def loader(broken=None):
        broken["4"] = ImportError("cannot import name 'gone'")
        return {"1": _fake_module("1", True)}

    monkeypatch.setattr("theorems.verdict.theorem_modules", loader)
    assert cli.main(["--json", "--out", str(tmp_path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(v["theorem"], v["status"]) for v in data["verdicts"]] == [("1", "PASS"), ("4", "ERROR")]


def test_a_new_report_replaces_stale_figures(fake_theorems, tmp_path):
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "old.png").write_bytes(b"stale")
    assert cli.main(["-t", "1", "--out", str(out)]) == 0
    assert not (out / "figures" / "old.png").exists() and (out / "report.md").exists()


def test_out_folder_with_other_files_is_refused(fake_theorems, tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("mine")
    assert cli.main(["-t", "1", "--out", str(tmp_path)]) == 2
    assert "thesis.tex" in capsys.readouterr().err and (tmp_path / "thesis.tex").exists()


def test_seed_sweep_prints_a_failure_table(fake_theorems, tmp_path, capsys):
    assert cli.main(["-t", "1", "-t", "2", "--seeds", "3-4", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "seed 3" in out and "seed 4" in out and "1 FAIL" in out
    assert (tmp_path / "seed-3" / "verdicts.json").exists() and (tmp_path / "seed-4" / "report.md").exists()


@pytest.mark.parametrize("text", ["", "a-b", "5-", str(2**32)])
def test_bad_seed_range_exits_two(fake_theorems, tmp_path, capsys, text):
    with pytest.raises(SystemExit) as e:
        cli.main(["--seeds", text, "--out", str(tmp_path)])
    assert e.value.code == 2 and "seeds" in capsys.readouterr().err


def test_worker_processes_give_the_verdicts_of_one_process(tmp_path):
    """Two results in two worker processes: the same verdicts, number for number, as in one."""
    argv = ["-t", "L1", "-t", "B1", "--device", "cpu", "--json"]
    runs = {}
    for jobs in ("1", "2"):
        out = subprocess.run([sys.executable, "-m", "theorems", *argv, "-j", jobs, "--out", str(tmp_path / jobs)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        runs[jobs] = json.loads(out.stdout)["verdicts"]
    keys = ("theorem", "claim", "predicted", "measured", "tolerance", "status")
    assert [[v[k] for k in keys] for v in runs["2"]] == [[v[k] for k in keys] for v in runs["1"]]
    assert {v["theorem"] for v in runs["2"]} == {"L1", "B1"}


def _children(pid: int) -> dict:
    """``{pid: command line}`` of ``pid``'s child processes."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in out.strip().splitlines()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has stopped computing
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_workers_and_keeps_the_old_report(tmp_path):
    """A killed runner (SIGTERM: a job scheduler, a time limit) takes its workers with it: one
    line, exit 143, no orphan left computing, the previous report untouched."""
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("old report\n")
    proc = subprocess.Popen([sys.executable, "-m", "theorems", "-t", "4", "-j", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _terminate_and_check(proc, out)
    finally:  # a failing check leaves nothing computing
        for pid in [proc.pid, *_children(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def _terminate_and_check(proc, out):
    children, deadline = {}, time.time() + 120
    while sum("spawn_main" in c for c in children.values()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        children = _children(proc.pid)
    workers = [p for p in children if _alive(p)]  # the two workers (and the resource tracker)
    assert sum("spawn_main" in children[p] for p in workers) == 2, f"the runner started no workers: {children}"
    time.sleep(2)  # the workers are computing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "python -m theorems: terminated; report not written"
    deadline = time.time() + 10
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "a worker outlived the runner"
    assert (out / "report.md").read_text() == "old report\n"
    assert os.listdir(out) == ["report.md"]
