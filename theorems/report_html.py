"""``report.html``: the verification report as one self-contained page for a browser.

:func:`write_html` writes ``report.html`` beside ``report.md`` and ``verdicts.json``: one file,
with the figures embedded as base64 data URIs and its CSS and script inline, so it opens from
anywhere (a mail attachment, a CI artifact) and fetches nothing (a Content-Security-Policy
forbids it). It shows

* a header: device, budget, seed, versions (torch, python, numpy, sympy), wall time (total and
  per result), and the summary counts (PASS/FAIL/ERROR; paper holds/partly/wrong/none);
* the verdict table, filterable by result, by paper column and by verdict (the filter is kept in
  the address, e.g. ``report.html#status=FAIL&paper=wrong``, so a filtered view can be shared);
  each row expands to every criterion (name, measured, bound, source, passed), the paper's own
  criteria, and an error's text;
* each row's source: the module (``theorems/<module>.py``, found by reading the modules' source
  for the registered check, without importing them) and the check function, and the ERRATA.md
  entry that discusses the row where there is one (:func:`theorems.errata_links.errata_anchor`);
* the figures, each under the claims of the verdicts that made it (a figure shared by several
  verdicts is embedded once).

Links. The module path is shown as text, and linked only when ``repo_url`` (the repository's
base URL, e.g. ``https://github.com/OWNER/REPO/blob/main/``) is given: a report folder can be
moved anywhere, so no relative link to the source could be trusted. The ERRATA entry is shown as
``ERRATA.md#<anchor>`` and linked to ``<repo_url>ERRATA.md#<anchor>``, or, without ``repo_url``,
to ERRATA.md by its path relative to the report folder when the page is written (right for a
report left inside the repository, as ``reports/latest/`` is: ``../../ERRATA.md#...``).

Versions that ``meta`` does not carry (python, numpy, sympy) are read from the environment that
writes the page. To rebuild the page of an existing report folder from its ``verdicts.json``::

    python -m theorems.report_html reports/latest [--repo-url URL]

>>> v = Verdict("8", "x < 1 & y > 2", predicted=0.0, measured=0.5, tolerance=1.0, tolerance_source="CLT")
>>> page = render_html([v], {"device": "cpu", "budget": "quick", "seed": 0})
>>> "x &lt; 1 &amp; y &gt; 2" in page and "x < 1 &" not in page
True
>>> page.count('<tr class="row"')
1
"""

from __future__ import annotations

import argparse
import ast
import base64
import html
import json
import mimetypes
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path

from .verdict import Criterion, Verdict, _fmt, display_name

try:  # the row -> ERRATA.md entry table; without it the page simply has no errata links
    from .errata_links import errata_anchor
except Exception:  # noqa: BLE001 - a missing or broken table must not cost the report
    errata_anchor = None

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
ERRATA_FILE = "ERRATA.md"
MODULE_PREFIXES = ("theorem_", "lemma_", "appendix_")
PAPER_KEYS = ("holds", "partly", "wrong", "none")  # the paper filter's values
STATUSES = ("PASS", "FAIL", "ERROR")
COLUMNS = ("", "result", "claim", "symbolic (residual)", "predicted", "measured", "tolerance",
           "tolerance source", "paper", "verdict", "source")


def esc(x) -> str:
    """Text for HTML content or a quoted attribute value.

    >>> esc('a < b & "c"')
    'a &lt; b &amp; &quot;c&quot;'
    """
    return html.escape("" if x is None else str(x), quote=True)


def paper_key(v: Verdict) -> str:
    """The paper filter's value of a verdict: holds, partly, wrong, or none (nothing settled)."""
    if v.paper_holds is None:
        return "none"
    if v.paper_holds == "partly":
        return "partly"
    return "holds" if v.paper_holds else "wrong"


# ---------------------------------------------------------------------------- where a row comes from
@lru_cache(maxsize=1)
def _sources() -> tuple:
    """``({(theorem, check): path}, {theorem: (path, title)})`` read from the theorem modules'
    source (the ``@check(...)`` registrations, ``THEOREM``, ``TITLE``, ``verify``), not imported."""
    checks, mains = {}, {}
    for path in sorted(PACKAGE.glob("*.py")):
        try:
            tree = ast.parse(path.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        consts, has_verify = {}, False
        for node in tree.body:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant):
                        consts[t.id] = node.value.value
                    has_verify |= isinstance(t, ast.Name) and t.id == "verify"
        rel = f"{PACKAGE.name}/{path.name}"
        tid = consts.get("THEOREM")
        if tid is not None and has_verify and path.name.startswith(MODULE_PREFIXES):
            mains.setdefault(str(tid), (rel, str(consts.get("TITLE", ""))))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "check" and dec.args:
                    arg = dec.args[0]
                    owner = arg.value if isinstance(arg, ast.Constant) else consts.get(getattr(arg, "id", ""))
                    if owner is not None:
                        checks.setdefault((str(owner), node.name), rel)
    return checks, mains


def check_name(v: Verdict) -> str:
    """The check function behind a row (an error row's label ``check_x(D=4)`` -> ``check_x``)."""
    return (v.check or "").split("(", 1)[0].strip()


def module_path(v: Verdict) -> str | None:
    """``theorems/<module>.py`` that defines the row's check (else the result's main module).

    >>> module_path(Verdict("8", "c", error="boom", check="import"))
    'theorems/theorem_08_platonic.py'
    """
    checks, mains = _sources()
    return checks.get((str(v.theorem), check_name(v))) or mains.get(str(v.theorem), (None, ""))[0]


def result_title(tid: str) -> str:
    return _sources()[1].get(str(tid), (None, ""))[1]


def _errata_base(out: Path, repo_url: str | None) -> str | None:
    """What ``ERRATA.md#anchor`` is appended to in an href, or None (show the text, no link)."""
    if repo_url:
        return repo_url if repo_url.endswith("/") else repo_url + "/"
    if not (REPO / ERRATA_FILE).is_file():
        return None
    try:
        rel = Path(os.path.relpath(REPO, Path(out).resolve())).as_posix()
    except ValueError:  # another drive
        return None
    return "" if rel == "." else rel + "/"


# ---------------------------------------------------------------------------- figures
def _figure_file(f, out: Path) -> Path | None:
    """A figure's file: its recorded path, or the same name under ``out/figures`` (a report folder
    is written in a staging folder and then moved, so recorded absolute paths can be stale)."""
    p = Path(f)
    for cand in (p, Path(out) / "figures" / p.name, Path(out) / p):
        if cand.is_file():
            return cand
    return None


def _data_uri(path: Path) -> str | None:
    mime = mimetypes.guess_type(path.name)[0] or ""
    if not mime.startswith("image/"):
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figures(verdicts: list, out: Path) -> list:
    """``[(name, path or None, [row index, ...]), ...]``: each figure once, in order of first use."""
    order, rows = [], {}
    for i, v in enumerate(verdicts):
        for f in v.figures:
            key = Path(f).name
            if key not in rows:
                order.append((key, _figure_file(f, out)))
                rows[key] = []
            if i not in rows[key]:
                rows[key].append(i)
    return [(name, path, rows[name]) for name, path in order]


# ---------------------------------------------------------------------------- header
def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(meta: dict) -> dict:
    """torch, python, numpy, sympy: from ``meta`` where it says, else this environment's."""
    return {"torch": meta.get("torch") or _version("torch"),
            "python": meta.get("python") or platform.python_version(),
            "numpy": meta.get("numpy") or _version("numpy"),
            "sympy": meta.get("sympy") or _version("sympy")}


def _seconds(s) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return esc(s)
    return f"{s:.1f} s" if s < 600 else f"{s:.0f} s ({s / 60:.1f} min)"


def _header(verdicts: list, meta: dict, counts: dict) -> str:
    ver = versions(meta)
    secs = meta.get("seconds") or {}
    total = sum(float(s) for s in secs.values() if isinstance(s, (int, float)))
    facts = [("device", meta.get("device")), ("budget", meta.get("budget")), ("seed", meta.get("seed")),
             *ver.items(), ("wall time", _seconds(total) if secs else "not recorded")]
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{v if k == 'wall time' else esc(v)}</dd></div>" for k, v in facts)
    badges = [("PASS", counts["PASS"], "pass"), ("FAIL", counts["FAIL"], "fail"), ("ERROR", counts["ERROR"], "fail"),
              ("paper holds", counts["paper holds"], "pass"), ("paper partly", counts["paper partly"], "partly"),
              ("paper wrong", counts["paper wrong"], "wrong"), ("no paper verdict", counts["no paper verdict"], "none")]
    badge_html = "".join(f'<span class="badge {cls}{" zero" if n == 0 else ""}">{esc(label)} <b>{n}</b></span>'
                         for label, n, cls in badges)
    # per result: its verdicts by status, and its wall time
    tids = list(dict.fromkeys([*(str(v.theorem) for v in verdicts), *(str(k) for k in secs)]))
    per = []
    for tid in tids:
        vs = [v for v in verdicts if str(v.theorem) == tid]
        n = {s: sum(v.status == s for v in vs) for s in STATUSES}
        cells = "".join(f'<td class="num{" bad" if s != "PASS" and n[s] else ""}">{n[s]}</td>' for s in STATUSES)
        per.append(f'<tr><td>{esc(display_name(tid))}</td><td>{esc(result_title(tid))}</td>'
                   f'<td class="num">{len(vs)}</td>{cells}'
                   f'<td class="num">{_seconds(secs[tid]) if tid in secs else ""}</td></tr>')
    per_table = ('<details class="per-result" open><summary>per result</summary><table class="small">'
                 "<thead><tr><th>result</th><th>title</th><th>verdicts</th><th>PASS</th><th>FAIL</th><th>ERROR</th>"
                 f"<th>wall time</th></tr></thead><tbody>{''.join(per)}</tbody></table></details>")
    return (f'<header><h1>Neural Thermodynamics: verification report</h1><dl class="meta">{dl}</dl>'
            f'<p class="summary"><span class="total">{len(verdicts)} verdicts</span> {badge_html}</p>'
            f"{per_table}</header>")


# ---------------------------------------------------------------------------- table
def _bound(c: Criterion) -> str:
    if c.kind == "holds":
        return "is true"
    if c.kind == "within":
        lo, hi = c.bound
        return f"in [{_fmt(lo)}, {_fmt(hi)}]"
    return f"{c.kind} {_fmt(c.bound)}"


def _criteria_table(criteria: list, caption: str) -> str:
    rows = "".join(
        f'<tr class="{"ok" if c.passed else "bad"}"><td>{esc(c.name)}</td><td class="num">{esc(_fmt(c.measured))}</td>'
        f'<td class="num">{esc(_bound(c))}</td><td>{esc(c.source)}</td>'
        f'<td class="passed">{"yes" if c.passed else "FAILED"}</td></tr>' for c in criteria)
    return (f'<table class="criteria"><caption>{esc(caption)}</caption><thead><tr><th>criterion</th>'
            f"<th>measured</th><th>bound</th><th>source</th><th>passed</th></tr></thead><tbody>{rows}</tbody></table>")


def _row(i: int, v: Verdict, links: dict, fig_ids: dict) -> str:
    from .report import paper_cell, verdict_cell

    pk, status = paper_key(v), v.status
    sym = v.symbolic + (f" ({v.residual})" if v.residual else "")
    num = (lambda x: "" if x is None else _fmt(float(x)))
    paper = paper_cell(v)
    mod, chk = module_path(v), check_name(v) or v.check
    anchor = errata_anchor(v.theorem, chk) if (errata_anchor is not None and chk) else None
    errata_text = f"{ERRATA_FILE}#{anchor}" if anchor else ""
    errata_href = None if not anchor or links["errata"] is None else links["errata"] + errata_text
    mod_html = ""
    if mod:  # a line break may fall after the folder, nowhere else
        code = f"<code>{esc(mod).replace('/', '/<wbr>', 1)}</code>"
        mod_html = f'<a href="{esc(links["repo"] + mod)}">{code}</a>' if links["repo"] else code
    source = [mod_html, f"<code>{esc(chk)}</code>" if chk else ""]
    if anchor:
        source.append(f'<a class="errata" href="{esc(errata_href)}" title="{esc(errata_text)}">ERRATA</a>'
                      if errata_href else f'<span class="errata" title="{esc(errata_text)}">ERRATA</span>')
    row = (f'<tr class="row" id="row-{i}" data-idx="{i}" data-theorem="{esc(v.theorem)}" data-paper="{pk}" '
           f'data-status="{status}" aria-expanded="false">'
           f'<td><button type="button" class="toggle" aria-controls="detail-{i}" '
           f'title="every criterion">+</button></td>'
           f"<td class=\"result\">{esc(display_name(str(v.theorem)))}</td><td class=\"claim\">{esc(v.claim)}</td>"
           f'<td class="sym">{esc(sym)}</td><td class="num">{esc(num(v.predicted))}</td>'
           f'<td class="num">{esc(num(v.measured))}</td><td class="num">{esc(num(v.tolerance))}</td>'
           f'<td class="tsrc">{esc(v.tolerance_source)}</td><td class="paper {pk}">{esc(paper)}</td>'
           f'<td class="verdict {status.lower()}">{esc(verdict_cell(v))}</td>'
           f'<td class="source">{"<br>".join(s for s in source if s)}</td></tr>')
    parts = []
    if v.error:
        parts.append(f'<p><b>error</b></p><pre class="error">{esc(v.error)}</pre>')
    if v.criteria:
        parts.append(_criteria_table(v.criteria, "every criterion (the verdict passes when all hold)"))
    if v.paper_criteria:
        parts.append(_criteria_table(v.paper_criteria, "the paper's own claim, tested separately"))
    if v.paper_condition:
        parts.append(f'<p><b>paper holds under</b>: {esc(v.paper_condition)}</p>')
    where = [f"<b>module</b> {mod_html}" if mod else "", f"<b>check</b> <code>{esc(v.check)}</code>" if v.check else ""]
    if anchor:
        where.append(f'<b>errata</b> <a href="{esc(errata_href)}">{esc(errata_text)}</a>' if errata_href
                     else f"<b>errata</b> <code>{esc(errata_text)}</code>")
    figs = [f'<a href="#fig-{fig_ids[Path(f).name]}">{esc(Path(f).name)}</a>' for f in v.figures if Path(f).name in fig_ids]
    if figs:
        where.append("<b>figures</b> " + ", ".join(figs))
    parts.append(f'<p class="where">{" &middot; ".join(w for w in where if w)}</p>')
    detail = (f'<tr class="detail" id="detail-{i}" data-for="row-{i}" hidden><td></td>'
              f'<td colspan="{len(COLUMNS) - 1}">{"".join(parts)}</td></tr>')
    return row + detail


def _filters(verdicts: list, counts: dict) -> str:
    tids = list(dict.fromkeys(str(v.theorem) for v in verdicts))
    opt = (lambda value, label: f'<option value="{esc(value)}">{esc(label)}</option>')
    theorem = "".join(opt(t, f"{display_name(t)} ({sum(str(v.theorem) == t for v in verdicts)})") for t in tids)
    paper_counts = dict(zip(PAPER_KEYS, (counts["paper holds"], counts["paper partly"], counts["paper wrong"],
                                         counts["no paper verdict"])))
    paper = "".join(opt(k, f"{k} ({paper_counts[k]})") for k in PAPER_KEYS)
    status = "".join(opt(s, f"{s} ({counts[s]})") for s in STATUSES)
    return ('<form class="filters" id="filters" onsubmit="return false">'
            f'<label>result <select id="filter-theorem" data-key="theorem"><option value="">all</option>{theorem}'
            '</select></label>'
            f'<label>paper <select id="filter-paper" data-key="paper"><option value="">all</option>{paper}</select></label>'
            f'<label>verdict <select id="filter-status" data-key="status"><option value="">all</option>{status}'
            '</select></label>'
            '<button type="button" id="filter-reset">show all</button>'
            '<button type="button" id="expand-all">expand all</button>'
            '<button type="button" id="collapse-all">collapse all</button>'
            f'<span class="shown">showing <b id="shown" data-shown="{len(verdicts)}">{len(verdicts)}</b> '
            f"of {len(verdicts)}</span></form>")


def _figures_html(figs: list, verdicts: list) -> str:
    if not figs:
        return ""
    out = ['<section id="figures"><h2>Figures</h2>']
    for k, (name, path, rows) in enumerate(figs, 1):
        claims = "".join(f'<li><a href="#row-{i}">{esc(display_name(str(verdicts[i].theorem)))}</a>: '
                         f"{esc(verdicts[i].claim)} <span class=\"verdict {verdicts[i].status.lower()}\">"
                         f"{verdicts[i].status}</span></li>" for i in rows)
        uri = _data_uri(path) if path is not None else None
        body = (f'<img src="{uri}" alt="{esc(name)}">' if uri
                else f'<p class="missing">figure not embedded: <code>{esc(name)}</code> '
                     f'({"not found" if path is None else "not an image"})</p>')
        out.append(f'<figure id="fig-{k}" data-rows="{" ".join(map(str, rows))}">'
                   f"<figcaption><ul>{claims}</ul></figcaption>{body}"
                   f'<p class="figname"><code>{esc(name)}</code></p></figure>')
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------- the page
CSS = """
:root{--fg:#1d232a;--muted:#5b6670;--line:#d8dde2;--bg:#fff;--head:#f3f5f7;--pass:#1a7f37;--fail:#c0262d;
--partly:#9a6700;--wrong:#c0262d}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0 1.2rem 3rem}
h1{font-size:1.5rem;margin:1rem 0 .6rem}h2{font-size:1.2rem;margin:2rem 0 .6rem}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
dl.meta{display:flex;flex-wrap:wrap;gap:.3rem 1.4rem;margin:0 0 .6rem}
dl.meta div{display:flex;gap:.35rem}dt{color:var(--muted)}dd{margin:0;font-weight:600}
.summary{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:.4rem 0}
.total{font-weight:700;margin-right:.4rem}
.badge{border:1px solid var(--line);border-radius:1rem;padding:.1rem .65rem;background:var(--head)}
.badge.pass b{color:var(--pass)}.badge.fail b,.badge.wrong b{color:var(--fail)}.badge.partly b{color:var(--partly)}
.badge.zero{opacity:.55}
.per-result summary{cursor:pointer;color:var(--muted);margin:.3rem 0}
table{border-collapse:collapse}
table.small td,table.small th{padding:.15rem .6rem;border-bottom:1px solid var(--line);text-align:left}
.filters{position:sticky;top:0;z-index:2;background:var(--bg);display:flex;flex-wrap:wrap;gap:.6rem;
align-items:center;padding:.6rem 0;border-bottom:1px solid var(--line)}
.filters label{color:var(--muted)}.filters select{margin-left:.3rem}
.shown{margin-left:auto;color:var(--muted)}
table.verdicts{width:100%;margin-top:.4rem}
table.verdicts>thead th{position:sticky;top:2.9rem;background:var(--head);text-align:left;font-weight:600;
padding:.35rem .45rem;border-bottom:2px solid var(--line);z-index:1}
table.verdicts>tbody>tr.row>td{padding:.35rem .45rem;border-top:1px solid var(--line);vertical-align:top}
td.claim{min-width:14rem;max-width:34rem}td.sym{min-width:8rem;max-width:20rem;overflow-wrap:anywhere;color:var(--muted)}
td.result{white-space:nowrap}td.tsrc{min-width:8rem;max-width:16rem}td.paper{max-width:12rem}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.source{font-size:12px;min-width:14rem}
.verdict.pass{color:var(--pass);font-weight:600}.verdict.fail,.verdict.error{color:var(--fail);font-weight:600}
td.verdict.fail,td.verdict.error{max-width:22rem}
.paper.wrong{color:var(--wrong);font-weight:600}.paper.partly{color:var(--partly);font-weight:600}
tr.row[data-status=FAIL],tr.row[data-status=ERROR]{background:#fff5f5}
button.toggle{width:1.6rem;height:1.6rem;border:1px solid var(--line);border-radius:4px;background:var(--head);
cursor:pointer;font-weight:700}
tr.detail>td{background:#fafbfc;padding:.5rem .6rem 1rem;border-top:1px dashed var(--line)}
table.criteria{margin:.2rem 0 .6rem;font-size:13px}
table.criteria caption{text-align:left;color:var(--muted);padding:.2rem 0}
table.criteria th,table.criteria td{border:1px solid var(--line);padding:.2rem .5rem;text-align:left;vertical-align:top}
table.criteria th{background:var(--head)}
table.criteria tr.bad td{background:#fde8e8}table.criteria tr.bad td.passed{color:var(--fail);font-weight:700}
table.criteria tr.ok td.passed{color:var(--pass)}
pre.error{white-space:pre-wrap;background:#fde8e8;padding:.5rem;border-radius:4px;margin:.2rem 0 .6rem}
.where{color:var(--muted);font-size:12px}.where b{color:var(--fg);font-weight:600}
a.errata{color:var(--partly)}
figure{margin:1.4rem 0;padding:.6rem;border:1px solid var(--line);border-radius:6px;max-width:1100px}
figcaption ul{margin:0 0 .5rem;padding-left:1.2rem}
figure img{max-width:100%;height:auto;display:block}
.figname{color:var(--muted);margin:.3rem 0 0}.missing{color:var(--fail)}
footer{margin-top:2rem;color:var(--muted);font-size:12px}
"""

# Filters (kept in the address: #theorem=8&paper=wrong&status=PASS; the figures follow their
# verdicts), row expansion (#row-N opens row N), and a count
# of the embedded figures that decoded (data-images-loaded on #load-status) once the page loads.
SCRIPT = r"""
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.row"));
  var selects = Array.prototype.slice.call(document.querySelectorAll("#filters select"));
  var shown = document.getElementById("shown");
  var figures = Array.prototype.slice.call(document.querySelectorAll("figure[data-rows]"));
  function detail(r) { return document.getElementById("detail-" + r.getAttribute("data-idx")); }
  function setOpen(r, open) {
    r.setAttribute("aria-expanded", open ? "true" : "false");
    r.querySelector("button.toggle").textContent = open ? "\u2212" : "+";
    detail(r).hidden = r.hidden || !open;
  }
  function apply(keepHash) {
    var n = 0, want = {};
    selects.forEach(function (s) { want[s.getAttribute("data-key")] = s.value; });
    rows.forEach(function (r) {
      var ok = Object.keys(want).every(function (k) { return !want[k] || r.getAttribute("data-" + k) === want[k]; });
      r.hidden = !ok;
      detail(r).hidden = !ok || r.getAttribute("aria-expanded") !== "true";
      if (ok) { n++; }
    });
    shown.textContent = n;
    shown.setAttribute("data-shown", n);
    figures.forEach(function (f) {  // a figure shows while one of its verdicts does
      f.hidden = !f.getAttribute("data-rows").split(" ").some(function (i) {
        var r = document.getElementById("row-" + i); return r && !r.hidden; });
    });
    if (!keepHash && window.history && history.replaceState) {
      var q = selects.filter(function (s) { return s.value; }).map(function (s) {
        return encodeURIComponent(s.getAttribute("data-key")) + "=" + encodeURIComponent(s.value); }).join("&");
      try { history.replaceState(null, "", q ? "#" + q : location.pathname + location.search); } catch (e) {}
    }
  }
  function fromHash() {
    var h = location.hash.replace(/^#/, "");
    if (/^row-\d+$/.test(h)) {  // a link to a row: make sure it is shown, and open it
      var r = document.getElementById(h);
      if (r && r.hidden) { selects.forEach(function (s) { s.value = ""; }); apply(true); }
      if (r) { setOpen(r, true); }
      return;
    }
    if (h.indexOf("=") < 0) { return; }
    h.split("&").forEach(function (kv) {
      var p = kv.split("="), k = decodeURIComponent(p[0]), v = decodeURIComponent(p[1] || "");
      selects.forEach(function (s) {
        if (s.getAttribute("data-key") === k &&
            Array.prototype.some.call(s.options, function (o) { return o.value === v; })) { s.value = v; }
      });
    });
    apply(true);
  }
  rows.forEach(function (r) {
    r.querySelector("button.toggle").addEventListener("click", function () {
      setOpen(r, r.getAttribute("aria-expanded") !== "true");
    });
  });
  selects.forEach(function (s) { s.addEventListener("change", function () { apply(false); }); });
  document.getElementById("filter-reset").addEventListener("click", function () {
    selects.forEach(function (s) { s.value = ""; }); apply(false);
  });
  document.getElementById("expand-all").addEventListener("click", function () {
    rows.forEach(function (r) { if (!r.hidden) { setOpen(r, true); } });
  });
  document.getElementById("collapse-all").addEventListener("click", function () {
    rows.forEach(function (r) { setOpen(r, false); });
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.querySelectorAll("figure img"));
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length;
    var st = document.getElementById("load-status");
    st.setAttribute("data-images-loaded", ok);
    st.textContent = ok + " of " + imgs.length + " figures loaded";
  });
})();
"""


def render_html(verdicts: list, meta: dict, out: Path | None = None, repo_url: str | None = None) -> str:
    """The page, as a string (:func:`write_html` writes it). ``out`` is the report folder (where
    figures are looked up, and what the ERRATA link is relative to); ``repo_url`` see the module doc."""
    from .report import summary_counts

    out = Path(out) if out is not None else Path.cwd()
    counts = summary_counts(verdicts)
    figs = _figures(verdicts, out)
    fig_ids = {name: k for k, (name, _, _) in enumerate(figs, 1)}
    links = {"repo": (repo_url if not repo_url or repo_url.endswith("/") else repo_url + "/"),
             "errata": _errata_base(out, repo_url)}
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join(_row(i, v, links, fig_ids) for i, v in enumerate(verdicts))
    n_img = sum(1 for _, p, _ in figs if p is not None and _data_uri_ok(p))
    title = f"Verification report: {len(verdicts)} verdicts, {counts['FAIL']} FAIL, {counts['ERROR']} ERROR"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style>"
            "<noscript><style>tr.detail{display:table-row!important}</style></noscript></head><body>"
            f"{_header(verdicts, meta, counts)}<main><h2>Verdicts</h2>{_filters(verdicts, counts)}"
            f'<table class="verdicts" id="verdicts"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f"{_figures_html(figs, verdicts)}</main>"
            f'<footer><span id="load-status" data-images-total="{n_img}" data-images-loaded="">'
            f"{n_img} figures embedded</span> &middot; every number of every verdict is in "
            "<code>verdicts.json</code> beside this page.</footer>"
            f"<script>{SCRIPT}</script></body></html>\n")


def _data_uri_ok(path: Path) -> bool:
    return (mimetypes.guess_type(path.name)[0] or "").startswith("image/")


def write_html(out: Path, verdicts: list, meta: dict, repo_url: str | None = None) -> Path:
    """Write ``out/report.html`` (see the module doc) and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render_html(verdicts, meta, out, repo_url), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- verdicts.json -> Verdicts
def _criterion(d: dict) -> Criterion:
    m, b = d.get("measured"), d.get("bound")
    if isinstance(m, str):  # non-finite numbers are stored as "nan", "inf"
        try:
            m = float(m)
        except ValueError:
            pass
    if isinstance(b, list):
        b = tuple(b)
    return Criterion(d["name"], m, b, d.get("kind", "<="), d.get("source", ""))


def verdict_from_json(d: dict) -> Verdict:
    """A :class:`Verdict` rebuilt from its ``to_json()`` (its status and paper column as written).
    A report written before verdicts carried criteria gets one criterion: its recorded pass.

    >>> v = Verdict("4", "slope", predicted=-0.5, measured=-0.2, tolerance=0.5, tolerance_source="CLT",
    ...             paper="partly", paper_condition="gam = 0")
    >>> w = verdict_from_json(json.loads(json.dumps(v.to_json())))
    >>> (w.status, w.paper_holds, len(w.criteria)) == (v.status, v.paper_holds, len(v.criteria))
    True
    """
    if "criteria" in d:
        criteria = [_criterion(c) for c in d["criteria"]]
        paper, cond = d.get("paper"), d.get("paper_condition", "")
    else:
        criteria = [] if d.get("error") else [Criterion.holds("recorded verdict", d.get("passed", False))]
        paper = {True: "supports", False: "refutes", "partly": "partly"}.get(d.get("paper_holds"))
        cond = d.get("paper_condition") or ("recorded as partly" if paper == "partly" else "")
    v = Verdict(theorem=str(d["theorem"]), claim=d.get("claim", ""), symbolic=d.get("symbolic", ""),
                predicted=d.get("predicted"), measured=d.get("measured"), tolerance=d.get("tolerance"),
                tolerance_source=d.get("tolerance_source", ""), paper=paper, paper_condition=cond,
                residual=d.get("residual", ""), criteria=criteria,
                paper_criteria=[_criterion(c) for c in d.get("paper_criteria", [])],
                details=d.get("details") or {}, figures=list(d.get("figures") or []),
                comparison="none",  # the stored criteria already hold the primary one
                error=d.get("error", ""), check=d.get("check", ""))
    v.comparison = d.get("comparison", "within")
    return v


def load_report(folder: Path) -> tuple:
    """``(verdicts, meta)`` of a report folder's ``verdicts.json``."""
    data = json.loads((Path(folder) / "verdicts.json").read_text())
    return [verdict_from_json(d) for d in data["verdicts"]], data.get("meta", {})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m theorems.report_html",
                                description="Write report.html of a report folder from its verdicts.json.")
    p.add_argument("folder", type=Path, help="a report folder (holds verdicts.json)")
    p.add_argument("--repo-url", help="the repository's base URL: link module paths and ERRATA entries there")
    args = p.parse_args(argv)
    if not (args.folder / "verdicts.json").is_file():
        sys.stderr.write(f"python -m theorems.report_html: error: no verdicts.json in {args.folder}\n")
        return 2
    verdicts, meta = load_report(args.folder)
    path = write_html(args.folder, verdicts, meta, args.repo_url)
    print(f"{path} ({path.stat().st_size / 1024:.0f} KiB, {len(verdicts)} verdicts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
