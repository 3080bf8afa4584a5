"""What every notebook shares: run a result's registered checks (all of them, or a named subset
where the full set is too slow for a notebook), show the verdicts as a table, and set the
paper's claims beside the suite's findings with links to ERRATA.md.

Not a notebook (it has no jupytext header, so it has no paired .ipynb). The notebooks import
it from their own folder (Jupyter, nbmake and ``notebooks/execute.py`` all run a notebook
with its folder as the working directory). It holds no theorem code and no settings: the
checks come from ``theorems.checks.REGISTRY``, the table cells from
``theorems.report.verdict_row``, the ERRATA anchors from ``theorems.errata_links``.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from IPython.display import HTML

from theorems.checks import REGISTRY, run_checks
from theorems.errata_links import ERRATA_FILE, errata_anchor, heading_anchors
from theorems.report import COLUMNS, summary_line, verdict_row
from theorems.verdict import display_name

REPO_ROOT = Path(__file__).resolve().parents[1]
ERRATA_FROM_NOTEBOOKS = f"../{ERRATA_FILE}"  # notebooks/ is one level below the repository root


def run(theorem: str, ctx, select=None) -> list:
    """The verdicts of ``theorem``'s registered checks, in registration order.

    ``select=None`` runs every check and case, exactly as ``python -m theorems -t N`` does
    (``theorems.checks.run_checks``). ``select(check, case)`` (a registered
    ``theorems.checks.Check`` and one of its ``Case``s) keeps only the cases for which it
    returns True; :func:`quick` keeps the ones pytest runs by default."""
    if select is None:
        return run_checks(theorem, ctx)
    out = []
    for check, case in _cases(theorem, ctx):
        if select(check, case):
            out += check.run(ctx, case)
    return out


def quick(check, case) -> bool:
    """The cases pytest runs by default: every case not marked slow (``slow_case``, ``slow=True``)."""
    return not case.slow


def left_out(theorem: str, ctx, select) -> list[str]:
    """``name(case)`` of every check case ``select`` leaves out (those the main job still runs)."""
    return [f"{c.name}({case.id})" if case.id else c.name for c, case in _cases(theorem, ctx) if not select(c, case)]


def _cases(theorem: str, ctx):
    if str(theorem) not in REGISTRY:
        raise KeyError(f"no checks registered for {theorem!r}: import its theorem module first")
    for check in REGISTRY[str(theorem)]:
        for case in check.cases:
            if case.full_only and not ctx.full:
                continue
            yield check, case


def _from_check(v, name: str) -> bool:
    """Did check ``name`` produce verdict ``v``? (A case that raised is labelled ``name(case)``.)"""
    return v.check == name or v.check.startswith(name + "(")


def by_check(verdicts: list, name: str, theorem: str | None = None) -> list:
    """The verdicts a check produced (all its cases, an error row included), e.g. to plot their details."""
    out = [v for v in verdicts if _from_check(v, name) and (theorem is None or v.theorem == str(theorem))]
    if not out:
        raise KeyError(f"no verdict from {name!r}" + (f" of theorem {theorem}" if theorem else ""))
    return out


def usable(verdicts: list) -> list:
    """The verdicts of ``verdicts`` that did not error. For each one that did, says which check
    raised (its row in the verdict table shows the exception): a plot built on the rest is drawn
    without it, and a plot with nothing left is skipped, not broken."""
    for v in verdicts:
        if v.error:
            print(f"{display_name(v.theorem)}, {v.claim}: the check raised ({v.error}); left out of the plot")
    return [v for v in verdicts if not v.error]


def _errata_link(v) -> str:
    anchor = errata_anchor(v.theorem, v.check)
    return f' (<a href="{ERRATA_FROM_NOTEBOOKS}#{anchor}">errata</a>)' if anchor else ""


def table(verdicts: list) -> HTML:
    """The verdict table (the report's columns, ``theorems.report.verdict_row``) as HTML, with the
    report's summary line above it and a link to the ERRATA.md entry of every row that has one."""
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    rows = []
    for v in verdicts:
        cells = [escape(c) for c in verdict_row(v)]
        cells[0] = escape(display_name(v.theorem))
        cells[-2] += _errata_link(v)
        if v.paper_holds is False:
            cells[-2] = f"<b>{cells[-2]}</b>"
        if v.status != "PASS":
            cells[-1] = f'<b style="color:#b00">{cells[-1]}</b>'
        rows.append("<tr>" + "".join(f'<td style="text-align:left">{c}</td>' for c in cells) + "</tr>")
    return HTML(f"<p><b>{escape(summary_line(verdicts))}</b></p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _paper_column(vs: list) -> str:
    if not vs:
        return "not run here"
    cells = {verdict_row(v)[-2] or "-" for v in vs}
    status = {v.status for v in vs}
    return f"{', '.join(sorted(cells))} ({'/'.join(sorted(status))}, {len(vs)} row{'s' if len(vs) > 1 else ''})"


def paper_vs_suite(verdicts: list, entries: list) -> HTML:
    """What the paper says beside what the suite finds, one row per entry.

    Each entry is ``(theorem, check, paper, suite)``: the check whose verdict rows settle it, the
    paper's claim and the suite's finding, in words. The paper column of those rows (and their
    status) is read off ``verdicts``; the ERRATA.md link comes from ``theorems.errata_links``
    and must be a heading of ERRATA.md (a stale anchor raises, so executing the notebook
    checks every link)."""
    headings = set(heading_anchors((REPO_ROOT / ERRATA_FILE).read_text()))
    rows = []
    for theorem, check, paper, suite in entries:
        vs = [v for v in verdicts if v.theorem == str(theorem) and _from_check(v, check)]
        anchor = errata_anchor(theorem, check)
        if anchor is not None and anchor not in headings:
            raise KeyError(f"ERRATA.md has no heading #{anchor} (theorem {theorem}, {check})")
        link = f'<a href="{ERRATA_FROM_NOTEBOOKS}#{anchor}">ERRATA.md</a>' if anchor else "-"
        rows.append(f"<tr><td>{escape(display_name(str(theorem)))}</td><td>{escape(paper)}</td><td>{escape(suite)}</td>"
                    f"<td><code>{escape(check)}</code>: {escape(_paper_column(vs))}</td><td>{link}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("result", "the paper says", "the suite finds", "verdict rows (paper column)",
                                              "entry"))
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def log_axis(ax, which: str = "x", max_ticks: int = 7) -> None:
    """Readable labels on a log axis, set after plotting: the coarsest of 10^k, {1, 2, 5} x 10^k,
    {1, 2, 3, 5} x 10^k or every integer multiple that puts at least two labels in range (thinned to
    ``max_ticks``), plain numbers between 1e-3 and 1e4, powers of ten outside; minor ticks unlabelled."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatterSciNotation, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for subs in ((1,), (1, 2, 5), (1, 2, 3, 5), tuple(range(1, 10))):
        ticks = [m * 10.0**e for e in decades for m in subs if lo <= m * 10.0**e <= hi]
        if len(ticks) >= 2:
            break
    else:  # less than one integer multiple wide: matplotlib's own ticks
        return
    ticks = ticks[::math.ceil(len(ticks) / max_ticks)]
    axis.set_major_locator(FixedLocator(ticks))
    if 1e-3 <= min(ticks) and max(ticks) < 1e4:
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    axis.set_minor_formatter(NullFormatter())


def measured_against_two_laws(v, sgd: tuple, paper: tuple, xlabel: str, title: str) -> None:
    """One measured value with its check's bound (``v.measured`` +- ``v.tolerance``) beside the
    value SGD's exact law predicts and the paper's: ``sgd`` and ``paper`` are ``(value, label)``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.4))
    ax.errorbar([v.measured], [0], xerr=[v.tolerance], fmt="o", color="k", capsize=4, label="SGD, measured")
    ax.axvline(sgd[0], color="C0", label=sgd[1])
    ax.axvline(paper[0], color="C1", ls="--", label=paper[1])
    ax.set(yticks=[], ylim=(-1, 1.2), xlabel=xlabel, title=title)
    ax.legend(fontsize=7, loc="upper center", ncol=3, columnspacing=0.8)
    plt.show()
