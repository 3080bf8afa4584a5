"""``python -m theorems``: run every theorem's derivation and witness, print the verdicts.

Writes a report folder (``report.md``, ``verdicts.json``, ``figures/*.png``) and exits
non-zero when any verdict fails. Bad options: a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# The seed range every generator in the suite accepts: numpy's legacy seeding takes
# [0, 2^32); torch and the Philox key take up to 2^64, which leaves room for the theorems'
# seed offsets (seed + k, 2 seed + 1).
SEED_MAX = 2**32 - 1
TABLE_WIDTH_NOT_A_TTY = 220


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"python -m theorems: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m theorems", description=__doc__.splitlines()[0])
    p.add_argument("--theorem", "-t", action="append", metavar="N",
                   help="run only theorem N (repeatable): 1, 10, L1 (Lemma 1), B1 (scale invariance), ...")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: auto, a GPU when there is one)")
    p.add_argument("--budget", default="quick", choices=("quick", "full"),
                   help="quick: CI-sized runs; full: longer SGD runs and eta ladders (default: quick)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    p.add_argument("--out", default="reports/latest", help="report folder (default: reports/latest)")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON instead of a table")
    p.add_argument("--list", action="store_true", help="list the implemented theorems and exit")
    return p


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"python -m theorems: error: {msg}\n")
    return EXIT_USAGE


def _check_out(text: str):
    """Create the report folder and prove it writable; an error message, or None."""
    if not text.strip():
        return "--out must name a folder, got an empty path"
    out = Path(text)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot write the report folder {out}: {reason}"
    return None


class _DeferSigint:
    """Hold Ctrl-C while the report files are written, so that none is left half-written."""

    def __enter__(self):
        self.old, self.hit = None, False
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, lambda *_: setattr(self, "hit", True))
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("python -m theorems: interrupted; report not written\n")
        return EXIT_INTERRUPTED


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.seed <= SEED_MAX:  # before torch loads: a bad option costs nothing
        return _usage_error(f"--seed must be non-negative and at most {SEED_MAX} (2^32 - 1), got {args.seed}")
    if not args.out.strip():
        return _usage_error("--out must name a folder, got an empty path")
    import torch  # import after parsing: --help stays fast

    torch.set_default_dtype(torch.float64)  # verification is float64, as under pytest
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from numeric.device import resolve_device
    from core.errors import InputError

    from .report import verdict_table, write_report
    from .verdict import Context, Verdict, display_name, theorem_modules

    console = Console(stderr=True)
    try:
        device = resolve_device(args.device)
    except InputError as exc:
        return _usage_error(str(exc))
    try:
        modules = theorem_modules()
    except Exception as exc:  # a broken module must not hide behind a traceback wall
        return _usage_error(f"could not load the theorem modules: {exc}")
    if args.list:
        for tid, mod in modules.items():
            print(f"{tid:>4}  {getattr(mod, 'TITLE', mod.__name__)}")
        return 0
    wanted = list(dict.fromkeys(args.theorem)) if args.theorem else list(modules)  # -t 3 -t 3: once
    unknown = [t for t in wanted if t not in modules]
    if unknown:
        return _usage_error(f"unknown theorem {', '.join(unknown)}; implemented: {', '.join(modules)}")
    problem = _check_out(args.out)  # before any theorem runs: not a failure after an hour of SGD
    if problem:
        return _usage_error(problem)
    out = Path(args.out)

    verdicts: list = []
    timings: dict = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True, disable=args.json) as bar:

        def progress(desc, total=None):
            task = bar.add_task(desc, total=total)
            return lambda n=1: bar.advance(task, n)

        overall = bar.add_task("theorems", total=len(wanted))
        for tid in wanted:
            mod = modules[tid]
            bar.update(overall, description=f"{display_name(tid)}: {getattr(mod, 'TITLE', '')}")
            ctx = Context(budget=args.budget, device=device, seed=args.seed, out=out, progress=progress)
            t0 = time.perf_counter()
            try:
                vs = list(mod.verify(ctx))
            except Exception as exc:  # report, do not abort the other theorems
                vs = [Verdict(theorem=tid, claim="verify() raised", passed=False,
                              details={"error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc(limit=4)})]
            timings[tid] = time.perf_counter() - t0
            verdicts.extend(vs)
            bar.advance(overall)
            if not console.is_terminal and not args.json:  # a log (CI): one line per theorem instead of a bar
                n_ok = sum(v.passed for v in vs)
                console.print(f"{display_name(tid)}: {n_ok}/{len(vs)} verdicts passed ({timings[tid]:.0f} s)", highlight=False)

    meta = {"device": str(device), "budget": args.budget, "seed": args.seed,
            "torch": torch.__version__, "seconds": timings}
    with _DeferSigint() as held:
        write_report(out, verdicts, meta)
    if held.hit:  # Ctrl-C came while writing: the report is complete, stop here
        sys.stderr.write(f"python -m theorems: interrupted; report written to {out}\n")
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps({"meta": meta, "verdicts": [v.to_json() for v in verdicts]}, indent=2))
    else:
        # A log file or pipe (CI) is not a terminal: rich would fold nine columns into 80
        # characters; give the table room instead (a terminal keeps its own width).
        out_console = Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH_NOT_A_TTY)
        out_console.print(verdict_table(verdicts))
        n_fail = sum(not v.passed for v in verdicts)
        out_console.print(f"{len(verdicts) - n_fail}/{len(verdicts)} verdicts passed; report in {out}/report.md")
    return EXIT_FAIL if any(not v.passed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
