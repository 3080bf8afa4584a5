"""Verdict table (rich) and report folder (Markdown + figures + JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errata_links import ERRATA_FILE, errata_anchor
from .report_html import write_html
from .verdict import Verdict, _fmt, display_name

REPO_ROOT = Path(__file__).resolve().parents[1]


def summary_counts(verdicts: list) -> dict:
    """Counts of the suite's verdicts (PASS/FAIL/ERROR) and of the paper column.

    >>> from theorems.verdict import Criterion
    >>> ok = Criterion.holds("c", True)
    >>> summary_counts([Verdict("1", "a", criteria=[ok], paper="refutes"),
    ...                 Verdict("1", "b", criteria=[Criterion.holds("c", False)]), Verdict("1", "c", error="boom")])
    {'PASS': 1, 'FAIL': 1, 'ERROR': 1, 'paper holds': 0, 'paper partly': 0, 'paper wrong': 1, 'no paper verdict': 2}
    """
    return {"PASS": sum(v.status == "PASS" for v in verdicts), "FAIL": sum(v.status == "FAIL" for v in verdicts),
            "ERROR": sum(v.status == "ERROR" for v in verdicts),
            "paper holds": sum(v.paper_holds is True for v in verdicts),
            "paper partly": sum(v.paper_holds == "partly" for v in verdicts),
            "paper wrong": sum(v.paper_holds is False for v in verdicts),
            "no paper verdict": sum(v.paper_holds is None for v in verdicts)}


def summary_line(verdicts: list) -> str:
    """One line for the top of a report: ``126 verdicts: 126 PASS, 0 FAIL, 0 ERROR; paper ...``."""
    c = summary_counts(verdicts)
    return (f"{len(verdicts)} verdicts: {c['PASS']} PASS, {c['FAIL']} FAIL, {c['ERROR']} ERROR; "
            f"paper holds {c['paper holds']}, partly {c['paper partly']}, wrong {c['paper wrong']}, "
            f"no paper verdict {c['no paper verdict']}")


def _num(x) -> str:
    return "" if x is None else _fmt(float(x))


COLUMNS = ("theorem", "claim", "symbolic (residual)", "predicted", "measured", "tolerance",
           "tolerance source", "paper", "verdict")


def paper_cell(v: Verdict) -> str:
    """``holds``, ``wrong``, ``partly: <condition>``, or empty (no paper claim or nothing settled)."""
    if v.paper_holds is None:
        return ""
    if v.paper_holds == "partly":
        return f"partly: {v.paper_condition}"
    return "holds" if v.paper_holds else "wrong"


def verdict_cell(v: Verdict) -> str:
    """``PASS``; ``FAIL`` with the criteria that failed; ``ERROR`` with the exception."""
    if v.error:
        return f"ERROR: {v.error}"
    if v.passed:
        return "PASS"
    return "FAIL: " + "; ".join(c.describe() for c in v.failed_criteria)


def verdict_row(v: Verdict) -> tuple:
    """The table cells of one verdict, as plain strings (shared by terminal and Markdown)."""
    sym = v.symbolic + (f" ({v.residual})" if v.residual else "")
    return (v.theorem, v.claim, sym, _num(v.predicted), _num(v.measured), _num(v.tolerance),
            v.tolerance_source, paper_cell(v), verdict_cell(v))


def verdict_table(verdicts: list):
    from rich.table import Table

    t = Table(title="Neural Thermodynamics: verdicts", show_lines=False)
    for col in COLUMNS:
        t.add_column(col, overflow="fold")
    for v in verdicts:
        cells = [c.replace("[", "\\[") for c in verdict_row(v)]
        if v.status != "PASS":
            cells[-1] = f"[red]{cells[-1]}[/red]"
        if v.paper_holds is False:
            cells[-2] = f"[red]{cells[-2]}[/red]"
        t.add_row(*cells)
    return t


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def write_report(out: Path, verdicts: list, meta: dict) -> None:
    """``report.md`` (summary, table, every criterion, figures), ``verdicts.json`` (every
    number) and ``report.html`` (one self-contained page: filterable table, figures embedded)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    errata = os.path.relpath(REPO_ROOT / ERRATA_FILE, out.resolve())  # the folder may be moved later: see JSON
    rows = []
    for v in verdicts:
        row = v.to_json()
        anchor = errata_anchor(v.theorem, v.check)
        row["errata"] = f"{ERRATA_FILE}#{anchor}" if anchor else None  # relative to the repository root
        rows.append(row)
    (out / "verdicts.json").write_text(json.dumps({"meta": meta, "verdicts": rows}, indent=2))
    lines = ["# Verification report", "",
             f"device `{meta.get('device')}`, budget `{meta.get('budget')}`, seed {meta.get('seed')}, "
             f"torch {meta.get('torch')}", "",
             f"**{summary_line(verdicts)}**", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for v in verdicts:
        cells = [_md_escape(c) for c in verdict_row(v)]
        if v.status != "PASS":
            cells[-1] = f"**{cells[-1]}**"
        if v.paper_holds is False:
            cells[-2] = f"**{cells[-2]}**"
        anchor = errata_anchor(v.theorem, v.check)
        if anchor:
            cells[-2] = f"{cells[-2]} ([errata]({errata}#{anchor}))"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Criteria", "", "Every condition each verdict had to meet (a verdict passes when all hold).", ""]
    for v in verdicts:
        lines.append(f"- **{display_name(v.theorem)}: {_md_escape(v.claim)}** ({v.status})")
        lines += [f"  - {_md_escape(c.describe())}" for c in v.criteria]
        if v.paper_criteria:
            lines += [f"  - paper's claim: {_md_escape(c.describe())}" for c in v.paper_criteria]
        if v.error:
            lines.append(f"  - error: {_md_escape(v.error)}")
    figs = [(v, Path(f)) for v in verdicts for f in v.figures]
    if figs:
        lines += ["", "## Figures", ""]
        for v, f in figs:
            try:  # link figures relative to the report so the folder can be moved
                f = f.resolve().relative_to(out.resolve())
            except ValueError:
                pass
            lines += [f"**{display_name(v.theorem)}: {v.claim}**", "", f"![{v.claim}]({f})", ""]
    secs = meta.get("seconds", {})
    if secs:
        lines += ["", "## Wall time", "", *[f"- {display_name(k)}: {s:.1f} s" for k, s in secs.items()]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    write_html(out, verdicts, meta)
