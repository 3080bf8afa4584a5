"""``python -m theorems.diff BEFORE AFTER``: what changed between two reports' verdicts.

Compares two ``verdicts.json`` files (or report folders) verdict by verdict - matched by
result and claim - on the numbers and outcomes the table shows: predicted, measured,
tolerance, the verdict (PASS/FAIL/ERROR) and the paper column. A refactor must print no
change; ``--rtol`` tolerates relative differences (e.g. 1e-12 for round-off of a reordered
formula). Exit status: 0 identical, 1 differences, 2 bad input.

>>> a = {"verdicts": [{"theorem": "1", "claim": "c", "predicted": 1.0, "measured": 1.0, "tolerance": 0.1,
...                    "status": "PASS", "paper_holds": True}]}
>>> b = {"verdicts": [dict(a["verdicts"][0], measured=1.0 + 1e-14)]}
>>> print(*diff_verdicts(a, b))
1 | c: measured 1.0 -> 1.00000000000001
>>> diff_verdicts(a, b, rtol=1e-12)
[]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

FIELDS = ("predicted", "measured", "tolerance", "status", "paper_holds")


def _status(v: dict) -> str:
    return v.get("status") or ("PASS" if v.get("passed") else "FAIL")


def _keyed(report: dict) -> dict:
    out = {}
    for v in report["verdicts"]:
        key, i = f"{v['theorem']} | {v['claim']}", 2
        while key in out:  # the same claim twice in one result: number the repeats
            key, i = f"{v['theorem']} | {v['claim']} #{i}", i + 1
        out[key] = {**v, "status": _status(v)}
    return out


def _same(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
    return a == b


def diff_verdicts(before: dict, after: dict, rtol: float = 0.0) -> list:
    """One line per difference: a verdict only in one report, or a changed field."""
    A, B = _keyed(before), _keyed(after)
    lines = [f"only before: {k}" for k in A if k not in B] + [f"only after: {k}" for k in B if k not in A]
    for k in A.keys() & B.keys():
        for f in FIELDS:
            if not _same(A[k].get(f), B[k].get(f), rtol):
                lines.append(f"{k}: {f} {A[k].get(f)!r} -> {B[k].get(f)!r}")
    return sorted(lines)


def _load(path: str) -> dict:
    p = Path(path)
    p = p / "verdicts.json" if p.is_dir() else p
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"python -m theorems.diff: error: cannot read {p}: {exc}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m theorems.diff", description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance on numbers (default 0: identical)")
    args = ap.parse_args(argv)
    try:
        before, after = _load(args.before), _load(args.after)
    except SystemExit as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    lines = diff_verdicts(before, after, args.rtol)
    print("\n".join(lines) if lines else f"identical: {len(before['verdicts'])} verdicts")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
