"""Verdict table (rich) and report folder (Markdown + figures + JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from .verdict import Verdict, _fmt


def _num(x) -> str:
    return "" if x is None else _fmt(float(x))


def verdict_table(verdicts: list):
    from rich.table import Table

    t = Table(title="Neural Thermodynamics: verdicts", show_lines=False)
    for col in ("thm", "claim", "symbolic (residual)", "predicted", "measured", "tolerance", "source", "paper", "verdict"):
        t.add_column(col, overflow="fold")
    for v in verdicts:
        paper = "" if v.paper_holds is None else ("holds" if v.paper_holds else "[red]wrong[/red]")
        sym = v.symbolic + (f" ({v.residual})" if v.residual else "")
        t.add_row(v.theorem, v.claim, sym, _num(v.predicted), _num(v.measured), _num(v.tolerance),
                  v.tolerance_source, paper, "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]")
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
             "| theorem | claim | symbolic (residual) | predicted | measured | tolerance | tolerance source | paper | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        paper = "" if v.paper_holds is None else ("holds" if v.paper_holds else "**wrong**")
        sym = v.symbolic + (f" ({v.residual})" if v.residual else "")
        lines.append("| " + " | ".join(_md_escape(c) for c in (
            v.theorem, v.claim, sym, _num(v.predicted), _num(v.measured), _num(v.tolerance),
            v.tolerance_source, paper, "PASS" if v.passed else "**FAIL**")) + " |")
    figs = [(v, Path(f)) for v in verdicts for f in v.figures]
    if figs:
        lines += ["", "## Figures", ""]
        for v, f in figs:
            rel = f.relative_to(out) if f.is_absolute() and out.resolve() in f.resolve().parents else f
            try:
                rel = Path(f).resolve().relative_to(out.resolve())
            except ValueError:
                pass
            lines += [f"**Theorem {v.theorem}: {v.claim}**", "", f"![{v.claim}]({rel})", ""]
    secs = meta.get("seconds", {})
    if secs:
        lines += ["", "## Wall time", "", *[f"- Theorem {k}: {s:.1f} s" for k, s in secs.items()]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
