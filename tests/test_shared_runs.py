"""The table of shared runs (``theorems.settings.SHARED_RUNS``) matches the code: every run
that two results use sits in one group of ``run_groups``, so that worker processes never
compute a shared run twice, and every entry names a real shared run."""

import ast
import re
from pathlib import Path

import pytest

from theorems.settings import SHARED_RUNS, run_groups
from theorems.verdict import module_id, theorem_modules

THEOREMS = Path(__file__).resolve().parent.parent / "theorems"


def shared_run_functions() -> dict:
    """``{"family.function": function name}`` for every ``@shared_run`` in theorems/settings."""
    found = {}
    for path in sorted((THEOREMS / "settings").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                    getattr(d, "id", None) == "shared_run" for d in node.decorator_list):
                found[f"{path.stem}.{node.name}"] = node.name
    return found


def users(function: str) -> set:
    """The ids of the results whose modules (a result's companion files included) call ``function``."""
    call = re.compile(rf"\b{function}\(")
    ids = set()
    for path in THEOREMS.glob("*.py"):
        if path.name.startswith(("theorem_", "lemma_", "appendix_")) and call.search(path.read_text()):
            ids.add(module_id(path.stem))
    return ids


@pytest.mark.parametrize("run", sorted(shared_run_functions()))
def test_every_shared_run_used_by_several_results_is_in_the_table(run):
    who = users(shared_run_functions()[run])
    if len(who) > 1:
        assert run in SHARED_RUNS, f"{run} is used by {sorted(who)}: add it to SHARED_RUNS"
        assert who <= set(SHARED_RUNS[run]), f"{run} is used by {sorted(who)}, the table says {SHARED_RUNS[run]}"
    groups = run_groups(list(theorem_modules()))
    assert any(who <= set(g) for g in groups), f"{run}'s users {sorted(who)} are split across {groups}"


def test_every_table_entry_is_a_shared_run():
    assert set(SHARED_RUNS) <= set(shared_run_functions())
