"""Verdict table (rich) and report folder (Markdown + figures + JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from .verdict import Verdict, _fmt, display_name


def summary_counts(verdicts: list) -> dict:
    """Counts of the suite's verdicts (PASS/FAIL) and of the paper column (holds/wrong/none).

    >>> summary_counts([Verdict("1", "a", passed=True, paper_holds=False), Verdict("1", "b", passed=False)])
    {'PASS': 1, 'FAIL': 1, 'paper holds': 0, 'paper wrong': 1, 'paper not stated': 1}
    """
    return {"PASS": sum(v.passed for v in verdicts), "FAIL": sum(not v.passed for v in verdicts),
            "paper holds": sum(v.paper_holds is True for v in verdicts),
            "paper wrong": sum(v.paper_holds is False for v in verdicts),
            "paper not stated": sum(v.paper_holds is None for v in verdicts)}


def summary_line(verdicts: list) -> str:
    """One line for the top of a report: ``126 verdicts: 126 PASS, 0 FAIL; paper holds 90, ...``."""
    c = summary_counts(verdicts)
    return (f"{len(verdicts)} verdicts: {c['PASS']} PASS, {c['FAIL']} FAIL; paper holds {c['paper holds']}, "
            f"paper wrong {c['paper wrong']}, no paper claim {c['paper not stated']}")


def _num(x) -> str:
    return "" if x is None else _fmt(float(x))


COLUMNS = ("theorem", "claim", "symbolic (residual)", "predicted", "measured", "tolerance",
           "tolerance source", "paper", "verdict")


def verdict_row(v: Verdict) -> tuple:
    """The table cells of one verdict, as plain strings (shared by terminal and Markdown)."""
    paper = "" if v.paper_holds is None else ("holds" if v.paper_holds else "wrong")
    sym = v.symbolic + (f" ({v.residual})" if v.residual else "")
    return (v.theorem, v.claim, sym, _num(v.predicted), _num(v.measured), _num(v.tolerance),
            v.tolerance_source, paper, "PASS" if v.passed else "FAIL")


def verdict_table(verdicts: list):
    from rich.table import Table

    t = Table(title="Neural Thermodynamics: verdicts", show_lines=False)
    for col in COLUMNS:
        t.add_column(col, overflow="fold")
    colour = {"PASS": "[green]PASS[/green]", "FAIL": "[red]FAIL[/red]", "wrong": "[red]wrong[/red]"}
    for v in verdicts:
        t.add_row(*(colour.get(c, c) for c in verdict_row(v)))
    return t


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def write_report(out: Path, verdicts: list, meta: dict) -> None:
    """``report.md`` (table + figures), ``verdicts.json`` (every number in the table)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdicts.json").write_text(json.dumps({"meta": meta, "verdicts": [v.to_json() for v in verdicts]}, indent=2))
    lines = ["# Verification report", "",
             f"device `{meta.get('device')}`, budget `{meta.get('budget')}`, seed {meta.get('seed')}, torch {meta.get('torch')}", "",
             f"**{summary_line(verdicts)}**", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    bold = {"FAIL": "**FAIL**", "wrong": "**wrong**"}
    for v in verdicts:
        lines.append("| " + " | ".join(_md_escape(bold.get(c, c)) for c in verdict_row(v)) + " |")
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
