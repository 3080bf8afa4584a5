"""ERRATA.md and theorems/errata_links.py stay in step with each other and with the theorem modules.

Every ERRATA.md entry (a ``##`` heading) has the five parts a reviewer reads - Paper,
Convention, Suite, Evidence, Verdict rows - and names at least one verdict row as
``- <theorem>, `<check function>`: "<claim>"``. Every named row is linked back to an entry that
names it, every link points at an existing heading, every linked check is defined in a theorem
module, and every check that can report the paper as wrong is linked.
"""

import ast
import re
from pathlib import Path

import pytest

from theorems.errata_links import ERRATA_LINKS, errata_anchor, errata_link, github_anchor, heading_anchors

ROOT = Path(__file__).resolve().parent.parent
ERRATA = (ROOT / "ERRATA.md").read_text()
PARTS = ("**Paper.**", "**Convention.**", "**Suite.**", "**Evidence.**", "**Verdict rows.**")
ROW = re.compile(r"^- (\w+), `(check_\w+)`", re.MULTILINE)
MODULE_PREFIXES = ("theorem_", "lemma_", "appendix_")


def entries() -> dict:
    """``{anchor: body}`` for every ``##`` entry of ERRATA.md."""
    out, anchor, body = {}, None, []
    anchors = iter(heading_anchors(ERRATA, level=2))
    for line in ERRATA.splitlines():
        if line.startswith("# ") or line.startswith("## "):
            if anchor is not None:
                out[anchor] = "\n".join(body)
            anchor, body = (next(anchors), []) if line.startswith("## ") else (None, [])
        elif anchor is not None:
            body.append(line)
    if anchor is not None:
        out[anchor] = "\n".join(body)
    return out


def named_rows(body: str) -> set:
    return {(m.group(1), m.group(2)) for m in ROW.finditer(body)}


def defined_checks() -> dict:
    """``{(theorem, check function): source}`` for every ``check_*`` function of a theorem module,
    the theorem taken from its ``@check(...)`` registration or else from the module's THEOREM."""
    found = {}
    for path in sorted((ROOT / "theorems").glob("*.py")):
        if not path.name.startswith(MODULE_PREFIXES):
            continue
        src = path.read_text()
        tree = ast.parse(src)
        module_id = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "THEOREM" for t in node.targets):
                if isinstance(node.value, ast.Constant):
                    module_id = str(node.value.value)
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("check_")):
                continue
            tid = module_id
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "check" and dec.args:
                    arg = dec.args[0]
                    tid = str(arg.value) if isinstance(arg, ast.Constant) else module_id
            if tid is not None:
                found[(tid, node.name)] = ast.get_source_segment(src, node) or ""
    return found


ENTRIES = entries()


def test_errata_has_entries_in_both_sections():
    assert "# Errata of the paper" in ERRATA and "# Notes" in ERRATA
    assert len(ENTRIES) >= 10


@pytest.mark.parametrize("anchor", list(ENTRIES))
def test_entry_has_every_part_and_names_a_verdict_row(anchor):
    body = ENTRIES[anchor]
    missing = [p for p in PARTS if p not in body]
    assert not missing, f"entry #{anchor} lacks {missing}"
    rows = named_rows(body.split("**Verdict rows.**", 1)[1])
    assert rows, f"entry #{anchor} names no verdict row (- <theorem>, `check_...`: \"claim\")"


def test_every_link_points_at_an_entry_heading():
    anchors = set(heading_anchors(ERRATA, level=2))
    broken = {k: a for k, a in ERRATA_LINKS.items() if a not in anchors}
    assert not broken, f"anchors that are not ERRATA.md headings: {broken}"


def test_every_named_row_is_linked_to_an_entry_naming_it():
    naming = {}
    for anchor, body in ENTRIES.items():
        for row in named_rows(body):
            naming.setdefault(row, set()).add(anchor)
    unlinked = sorted(r for r in naming if r not in ERRATA_LINKS)
    assert not unlinked, f"rows named in ERRATA.md but missing from ERRATA_LINKS: {unlinked}"
    wrong = {r: ERRATA_LINKS[r] for r in naming if ERRATA_LINKS[r] not in naming[r]}
    assert not wrong, f"rows linked to an entry that does not name them: {wrong}"
    orphans = sorted(r for r in ERRATA_LINKS if r not in naming)
    assert not orphans, f"rows linked but named by no entry: {orphans}"


def test_every_linked_check_is_defined_in_a_theorem_module():
    defined = defined_checks()
    missing = sorted(k for k in ERRATA_LINKS if k not in defined)
    assert not missing, ("linked (theorem, check) pairs with no such check function in theorems/ "
                         "(a renamed check: rename it in ERRATA.md and theorems/errata_links.py too; a missing one: add the "
                         f"check to its theorem module): {missing}")


def test_every_check_that_can_refute_the_paper_is_linked():
    refuting = re.compile(r"paper\s*=\s*[\"']refutes[\"']|paper_holds\s*=\s*False")
    unlinked = sorted(k for k, src in defined_checks().items() if refuting.search(src) and k not in ERRATA_LINKS)
    assert not unlinked, f"checks that report the paper wrong but have no ERRATA entry: {unlinked}"


def test_lookup_functions():
    key = next(iter(ERRATA_LINKS))
    assert errata_anchor(*key) == ERRATA_LINKS[key]
    assert errata_anchor(int(key[0]) if key[0].isdigit() else key[0], key[1]) == ERRATA_LINKS[key]
    assert errata_link(*key) == f"ERRATA.md#{ERRATA_LINKS[key]}"
    assert errata_anchor("1", "check_no_such_check") is None and errata_link("1", "check_no_such_check") is None


def test_github_anchors():
    assert github_anchor("Theorem 10 — for full-row-rank V, T* = T_min iff the *label noise* is isotropic") == (
        "theorem-10--for-full-row-rank-v-t--t_min-iff-the-label-noise-is-isotropic")
    assert github_anchor("Appendix B.1 — x") == "appendix-b1--x"
    doc = "# A\n## Same\ntext\n```\n## not a heading\n```\n## Same\n### Sub\n"
    assert heading_anchors(doc) == ["a", "same", "same-1", "sub"]
    assert heading_anchors(doc, level=2) == ["same", "same-1"]
