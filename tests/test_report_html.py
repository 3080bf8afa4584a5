"""``report.html``: one self-contained page (rows, filters, criteria, embedded figures, escaping),
and the same page opened in a headless Chromium (skipped where none is installed)."""

import base64
import importlib
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from theorems import report_html
from theorems.report_html import load_report, main, render_html, verdict_from_json, write_html
from theorems.verdict import Criterion, Verdict, error_verdict

META = {"device": "cpu", "budget": "quick", "seed": 7, "torch": "9.9.9+test", "seconds": {"8": 1.0, "9": 2.5}}
ROW = re.compile(r'<tr class="row"[^>]*>')


def tiny_png(width=6, height=4) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` pixels (no imaging library needed)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes([200, 40, 40]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture
def report(tmp_path):
    """A report folder with one figure and five verdicts: PASS, FAIL, ERROR, partly, wrong."""
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    png = tiny_png()
    (out / "figures" / "thm08_gap.png").write_bytes(png)
    stale = tmp_path / ".staging-gone" / "figures" / "thm08_gap.png"  # the path recorded before the move
    verdicts = [
        Verdict("8", "kernel gap <closes> & shrinks", predicted=1.0, measured=1.1, tolerance=0.6,
                tolerance_source="log-log slope", paper="supports", figures=[stale], check="check_kernel_convergence"),
        Verdict("9", "alignment drop > 0 & <b>bold</b>", predicted=0.5, measured=2.0, tolerance=0.1,
                tolerance_source="CLT", paper="supports", figures=[stale], check="check_sgd_weight_decay",
                criteria=[Criterion.at_least("drop is positive", -0.2, 0.0, "sign test")]),
        error_verdict("B1", "check_norm_law(n=2)", "norm law <script>alert(1)</script>", RuntimeError("x < y & boom")),
        Verdict("4", "slope & ratio", criteria=[Criterion.within("ratio in band", 1.0, 0.5, 1.5, "CLT")],
                paper="partly", paper_condition="gam < 1 & eta > 0", check="check_sgd_law"),
        Verdict("10", "T* = T_min iff S_x isotropic", criteria=[Criterion.holds("counterexample found", True, "SymPy")],
                paper="refutes", check="check_equality_condition"),
    ]
    return out, verdicts, png


def page_of(report, **kw):
    out, verdicts, _ = report
    return write_html(out, verdicts, META, **kw).read_text()


def test_every_verdict_is_a_row_with_its_filter_keys(report):
    page = page_of(report)
    rows = ROW.findall(page)
    assert len(rows) == 5
    keys = [(re.search(r'data-status="(\w+)"', r)[1], re.search(r'data-paper="(\w+)"', r)[1]) for r in rows]
    assert keys == [("PASS", "holds"), ("FAIL", "none"), ("ERROR", "none"), ("PASS", "partly"), ("PASS", "wrong")]
    assert page.count('<tr class="detail"') == 5  # each row expands


def test_filters_offer_every_result_paper_column_and_verdict(report):
    page = page_of(report)
    for sel in ("filter-theorem", "filter-paper", "filter-status"):
        assert f'<select id="{sel}"' in page
    for value in ("8", "9", "B1", "4", "10", "holds", "partly", "wrong", "none", "PASS", "FAIL", "ERROR"):
        assert f'<option value="{value}">' in page
    assert "Appendix B.1 (1)" in page and "FAIL (1)" in page


def test_header_has_run_versions_wall_time_and_counts(report):
    page = page_of(report)
    for text in ("<dd>cpu</dd>", "<dd>quick</dd>", "<dd>7</dd>", "9.9.9+test", "<dt>python</dt>", "<dt>numpy</dt>",
                 "<dt>sympy</dt>", "<dd>3.5 s</dd>", "2.5 s", "5 verdicts"):
        assert text in page, text
    for label, n in (("PASS", 3), ("FAIL", 1), ("ERROR", 1), ("paper holds", 1), ("paper partly", 1),
                     ("paper wrong", 1), ("no paper verdict", 2)):
        assert re.search(rf">{label} <b>{n}</b>", page), label


def test_claims_errors_and_conditions_are_escaped(report):
    page = page_of(report)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "kernel gap &lt;closes&gt; &amp; shrinks" in page
    assert '<pre class="error">RuntimeError: x &lt; y &amp; boom</pre>' in page
    assert "gam &lt; 1 &amp; eta &gt; 0" in page


def test_details_show_every_criterion_and_the_failing_one(report):
    page = page_of(report)
    assert "|measured - predicted| &lt;= tolerance" in page  # the primary criterion
    assert "drop is positive" in page and "&gt;= 0" in page and "sign test" in page
    assert "in [0.5, 1.5]" in page and page.count(">FAILED</td>") == 2  # the FAIL row's two failed criteria


def test_figures_are_embedded_once_and_nothing_is_fetched(report):
    page = page_of(report)
    b64 = base64.b64encode(report[2]).decode()
    assert page.count(f'src="data:image/png;base64,{b64}"') == 1  # two verdicts, one figure, one copy
    assert 'data-images-total="1"' in page and 'data-rows="0 1"' in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page) and "<link" not in page
    assert "default-src 'none'" in page  # the browser refuses any fetch


def test_missing_figure_is_named_not_embedded(report):
    out, verdicts, _ = report
    verdicts[0].figures = [out / "figures" / "absent.png"]
    page = write_html(out, verdicts, META).read_text()
    assert "figure not embedded: <code>absent.png</code> (not found)" in page


def test_rows_name_their_module_and_check(report):
    page = page_of(report)
    assert "<code>theorems/<wbr>theorem_08_platonic.py</code>" in page and "<code>check_kernel_convergence</code>" in page
    assert "<code>theorems/<wbr>appendix_B1_scale_invariance.py</code>" in page  # an error row's check(n=2) label
    assert 'href="https://example.org/r/theorems/theorem_08_platonic.py"' in page_of(report, repo_url="https://example.org/r")


def test_errata_links_from_the_table(report, monkeypatch):
    monkeypatch.setattr(report_html, "errata_anchor",
                        lambda t, c: "theorem-9--quantified" if (t, c) == ("9", "check_sgd_weight_decay") else None)
    page = page_of(report)
    assert page.count("ERRATA.md#theorem-9--quantified") >= 2  # shown as text, and linked
    assert re.search(r'href="[^"]*ERRATA\.md#theorem-9--quantified"', page)
    page = page_of(report, repo_url="https://example.org/r/")
    assert 'href="https://example.org/r/ERRATA.md#theorem-9--quantified"' in page


def test_no_errata_links_without_the_table(report, monkeypatch):
    monkeypatch.setitem(sys.modules, "theorems.errata_links", None)  # the table cannot be imported
    try:
        assert importlib.reload(report_html).errata_anchor is None
        out, verdicts, _ = report
        assert "ERRATA" not in report_html.render_html(verdicts, META, out)
    finally:
        monkeypatch.undo()
        importlib.reload(report_html)


def test_verdicts_json_round_trip_and_command_line(report):
    out, verdicts, _ = report
    (out / "verdicts.json").write_text(json.dumps({"meta": META, "verdicts": [v.to_json() for v in verdicts]}))
    loaded, meta = load_report(out)
    assert meta == META
    assert [(v.status, v.paper_holds, len(v.criteria), v.check) for v in loaded] == \
        [(v.status, v.paper_holds, len(v.criteria), v.check) for v in verdicts]
    assert ROW.findall(render_html(loaded, meta, out)) == ROW.findall(render_html(verdicts, META, out))
    assert main([str(out)]) == 0 and (out / "report.html").is_file()


def test_report_without_criteria_still_loads():
    v = verdict_from_json({"theorem": "3", "claim": "c", "predicted": 1.0, "measured": 1.0, "tolerance": 0.1,
                           "passed": True, "paper_holds": False, "figures": []})
    assert (v.status, v.paper_holds) == ("PASS", False)


# ---------------------------------------------------------------------------- a real browser
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


def _chromium(url: str, profile, *extra) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_page_in_a_headless_browser(report, tmp_path):
    out, verdicts, _ = report
    url = write_html(out, verdicts, META).resolve().as_uri()
    dom = _chromium(url, tmp_path / "p1", "--dump-dom").stdout
    assert len(ROW.findall(dom)) == 5
    status = re.search(r'id="load-status"[^>]*>', dom)[0]
    assert 'data-images-total="1"' in status and 'data-images-loaded="1"' in status  # decoded, non-zero size
    for hash_, visible in (("#status=FAIL", ["FAIL"]), ("#paper=partly", ["PASS"]), ("#theorem=B1", ["ERROR"])):
        dom = _chromium(url + hash_, tmp_path / f"p{hash_}", "--dump-dom").stdout
        shown = [re.search(r'data-status="(\w+)"', r)[1] for r in ROW.findall(dom) if " hidden" not in r]
        assert shown == visible, hash_
        assert f'data-shown="{len(visible)}"' in dom
    shot = tmp_path / "report.png"
    _chromium(url + "#row-1", tmp_path / "p2", f"--screenshot={shot}", "--window-size=1400,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
