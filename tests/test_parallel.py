"""Splitting a theorem into parts for worker processes (``theorems.parallel``): the parts
cover every case once, and their verdicts reassemble in registration order."""

import pytest

from theorems.checks import REGISTRY, SHARED, check, full_case, run_cases, run_checks, work_parts
from theorems.parallel import assemble, tasks_for
from theorems.verdict import Context, Verdict


def _verdict(name, x):
    return Verdict("T9", f"{name} x={x}", predicted=0.0, measured=x, tolerance=2.0, tolerance_source="test")


@pytest.fixture
def split_theorem():
    @check("T9")
    def check_first(ctx):
        return _verdict("first", 0.0)

    @check("T9", cases=[dict(x=1.0), dict(x=3.0), full_case(x=5.0)], alone=True)
    def check_study(ctx, x):
        return [_verdict("study", x), _verdict("study again", x)]

    @check("T9")
    def check_last(ctx):
        return _verdict("last", 1.0)

    yield "T9"
    REGISTRY.pop("T9")


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_parts_reassemble_in_registration_order(split_theorem, budget):
    ctx = Context(budget=budget)
    parts = work_parts(split_theorem, ctx)
    alone = [("check_study", "x=1.0"), ("check_study", "x=3.0")] + ([("check_study", "x=5.0")] if ctx.full else [])
    assert parts == [SHARED] + alone
    pieces = {p: run_cases(split_theorem, ctx, p) for p in parts}
    assert [v.claim for v in assemble(split_theorem, pieces, ctx)] == [v.claim for v in run_checks(split_theorem, ctx)]


def test_alone_cases_become_tasks_of_their_own(split_theorem):
    tasks = tasks_for([["L1"], ["T9", "B1"]], Context())
    assert tasks == [[("T9", SHARED), ("B1", None)], [("L1", None)],
                     [("T9", ("check_study", "x=1.0"))], [("T9", ("check_study", "x=3.0"))]]


def test_a_theorem_of_alone_checks_only_has_no_shared_part():
    @check("T8", cases=[dict(x=1.0)], alone=True)
    def check_only(ctx, x):
        return _verdict("only", x)

    try:
        assert work_parts("T8", Context()) == [("check_only", "x=1.0")]
        assert tasks_for([["T8"]], Context()) == [[("T8", ("check_only", "x=1.0"))]]
    finally:
        REGISTRY.pop("T8")

