"""``python -m theorems``: run every theorem's derivation and witness, print the verdicts.

Writes a report folder (``report.md``, ``verdicts.json``, ``figures/*.png``) and exits
non-zero when any verdict fails. Bad options: a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from core.validation import positive_int_arg

EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
# The seed range every generator in the suite accepts: numpy's legacy seeding takes
# [0, 2^32); torch and the Philox key take up to 2^64, which leaves room for the theorems'
# seed offsets (seed + k, 2 seed + 1).
SEED_MAX = 2**32 - 1
TABLE_WIDTH_NOT_A_TTY = 220
REPORT_FILES = {"report.md", "report.html", "verdicts.json", "figures"}  # what a report folder holds
SWEEP_PREFIX = "seed-"  # a seed sweep's folder holds one report folder per seed


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
    p.add_argument("--seeds", metavar="RANGE", type=_seed_range,
                   help="a seed sweep, e.g. 1-8 or 1,4,9: the chosen budget once per seed, a report per seed "
                        "(OUT/seed-S) and a theorem x seed table of failures")
    p.add_argument("--jobs", "-j", type=positive_int_arg, default=None, metavar="N",
                   help="processes that verify theorems side by side (default: one per CPU core, at most one "
                        "per group of theorems that share runs; 1: all in this process)")
    p.add_argument("--out", default="reports/latest", help="report folder (default: reports/latest)")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON instead of a table")
    p.add_argument("--list", action="store_true", help="list the implemented theorems and exit")
    return p


def _seed_range(text: str) -> list:
    """``"1-8"`` -> [1, ..., 8]; ``"1,4,9"`` -> [1, 4, 9]; every seed in [0, 2^32)."""
    try:
        seeds = []
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1-8 or 1,4,9, got {text!r}") from None
    if not seeds or any(not 0 <= x <= SEED_MAX for x in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be a non-empty range within [0, {SEED_MAX}], got {text!r}")
    return list(dict.fromkeys(seeds))


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"python -m theorems: error: {msg}\n")
    return EXIT_USAGE


def _check_out(text: str):
    """Create the report folder and prove it writable; an error message, or None."""
    if not text.strip():
        return "--out must name a folder, got an empty path"
    out = Path(text).resolve()
    if out == Path.cwd() or out == out.parent:
        return f"--out must name a report folder of its own, not {out}"
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in REPORT_FILES and not p.name.startswith(SWEEP_PREFIX)) if out.is_dir() else []
    if foreign:  # the report replaces the folder whole: never delete a user's files
        return (f"--out {out} holds files that are not part of a report ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); name an empty or report folder")
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a killed job, a scheduler's time limit), handled as Ctrl-C is: the workers are
    stopped with the runner instead of computing on as orphans, and the report stays as it was."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    except _Terminated:
        sys.stderr.write("python -m theorems: terminated; report not written\n")
        return EXIT_TERMINATED
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

    from .parallel import verifying_process

    verifying_process()  # float64, as under pytest; one thread per process, whatever --jobs
    from rich.console import Console

    from core.errors import InputError
    from numeric.device import resolve_device

    from .report import summary_line, verdict_table, write_report
    from .verdict import theorem_modules

    console = Console(stderr=True)
    try:
        device = resolve_device(args.device)
    except InputError as exc:
        return _usage_error(str(exc))
    broken: dict = {}
    try:
        modules = theorem_modules(broken)
    except Exception as exc:  # two modules claiming one id: nothing can be trusted
        return _usage_error(f"could not load the theorem modules: {exc}")
    if args.list:
        for tid, mod in modules.items():
            print(f"{tid:>4}  {getattr(mod, 'TITLE', mod.__name__)}")
        return 0
    wanted = list(dict.fromkeys(args.theorem)) if args.theorem else [*modules, *broken]  # -t 3 -t 3: once
    unknown = [t for t in wanted if t not in modules and t not in broken]
    if unknown:
        return _usage_error(f"unknown theorem {', '.join(unknown)}; implemented: {', '.join(modules)}")
    problem = _check_out(args.out)  # before any theorem runs: not a failure after an hour of SGD
    if problem:
        return _usage_error(problem)
    out = Path(args.out).resolve()
    if args.seeds:
        return _sweep(args, wanted, modules, broken, device, out, console)

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        verdicts, timings = _run_theorems(wanted, modules, broken, args, device, staging, console)
    except BaseException:  # Ctrl-C or a crash: the previous report stays as it was
        shutil.rmtree(staging, ignore_errors=True)
        raise
    meta = {"device": str(device), "budget": args.budget, "seed": args.seed,
            "torch": torch.__version__, "seconds": timings}
    with _DeferSigint() as held:
        write_report(staging, verdicts, meta)
        _replace_folder(staging, out)  # the new report replaces the old one whole: no stale figures
    if held.hit:  # Ctrl-C came while writing: the report is complete, stop here
        sys.stderr.write(f"python -m theorems: interrupted; report written to {out}\n")
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps({"meta": meta, "verdicts": [v.to_json() for v in verdicts]}, indent=2))
    else:
        # A log file or pipe (CI) is not a terminal: rich would fold the columns into 80
        # characters; give the table room instead (a terminal keeps its own width).
        out_console = Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH_NOT_A_TTY)
        out_console.print(verdict_table(verdicts))
        out_console.print(f"{summary_line(verdicts)}; report in {out}/report.md and report.html", highlight=False)
    return EXIT_FAIL if any(not v.passed for v in verdicts) else 0


def _sweep(args, wanted, modules, broken, device, out, console) -> int:
    """The budget once per seed; a report per seed in ``out/seed-S``; a failure table."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from .cache import clear
    from .report import summary_line, write_report
    from .verdict import display_name

    out.mkdir(parents=True, exist_ok=True)
    table, walls = {}, {}
    for seed in args.seeds:
        args.seed = seed
        t0 = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=".seed.", dir=out))
        try:
            verdicts, timings = _run_theorems(wanted, modules, broken, args, device, staging, console)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        meta = {"device": str(device), "budget": args.budget, "seed": seed, "torch": torch.__version__,
                "seconds": timings}
        write_report(staging, verdicts, meta)
        _replace_folder(staging, out / f"seed-{seed}")
        clear()  # runs are keyed on the seed: nothing carries over, free the memory
        walls[seed] = time.perf_counter() - t0
        for tid in wanted:
            bad = [v for v in verdicts if v.theorem == tid and not v.passed]
            table[(tid, seed)] = (f"{sum(v.status == 'FAIL' for v in bad)} FAIL, {sum(v.status == 'ERROR' for v in bad)}"
                                  " ERROR" if bad else "ok")
        console.print(f"seed {seed}: {summary_line(verdicts)} ({walls[seed]:.0f} s)", highlight=False)
    t = Table(title=f"seed sweep, budget {args.budget}: failures by theorem and seed")
    t.add_column("result")
    for seed in args.seeds:
        t.add_column(f"seed {seed}")
    for tid in wanted:
        t.add_row(display_name(tid), *(table[(tid, seed)] for seed in args.seeds))
    t.add_row("wall time", *(f"{walls[seed]:.0f} s" for seed in args.seeds))
    (Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH_NOT_A_TTY)).print(t)
    failed = any(v != "ok" for v in table.values())
    return EXIT_FAIL if failed else 0


def _run_theorems(wanted, modules, broken, args, device, staging, console):
    """Every wanted result's verdicts (ERROR rows for a module that cannot load), and wall times.

    With more than one job the results are verified in worker processes, one group of
    theorems that share runs (:func:`theorems.settings.run_groups`), or one case whose runs are
    its own (:func:`theorems.parallel.tasks_for`), at a time per worker; each run depends only on
    its seed and settings, so the verdicts are those of one process.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .parallel import assemble, cores, tasks_for, verify_one, verify_task, worker_start
    from .settings import run_groups
    from .verdict import Context, display_name

    work = tasks_for(run_groups(wanted), Context(budget=args.budget, seed=args.seed))
    jobs = min(args.jobs or cores(), len(work))
    by_tid, timings = {}, {}

    def record(tid, vs, seconds):
        by_tid[tid], timings[tid] = vs, seconds
        for v in vs:
            if v.error:  # the cause on screen, not only in the report
                console.print(f"{display_name(tid)}: ERROR in {v.check}: {v.error}", highlight=False, markup=False)
        if not console.is_terminal and not args.json:  # a log (CI): one line per theorem instead of a bar
            console.print(f"{display_name(tid)}: {sum(v.passed for v in vs)}/{len(vs)} verdicts passed "
                          f"({seconds:.0f} s)", highlight=False)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True, disable=args.json) as bar:

        def progress(desc, total=None):
            task = bar.add_task(desc, total=total)
            return lambda n=1: bar.advance(task, n)

        overall = bar.add_task("theorems", total=len(wanted))
        if jobs == 1:
            for tid in wanted:
                if tid in modules:
                    bar.update(overall, description=f"{display_name(tid)}: {getattr(modules[tid], 'TITLE', '')}")
                t0 = time.perf_counter()
                ctx = Context(budget=args.budget, device=device, seed=args.seed, out=staging, progress=progress)
                vs = verify_one(tid, modules, broken, ctx)
                record(tid, vs, time.perf_counter() - t0)
                bar.advance(overall)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            bar.update(overall, description=f"theorems ({jobs} processes)")
            tasks = [(units, args.budget, str(device), args.seed, str(staging)) for units in work]
            waiting = {}  # a theorem verified in parts: part -> its cases' verdicts, until all are in
            for units in work:
                for tid, part in units:
                    if part is not None:
                        waiting.setdefault(tid, {})[part] = None
            spent = dict.fromkeys(waiting, 0.0)
            pool = ProcessPoolExecutor(jobs, multiprocessing.get_context("spawn"), worker_start)
            try:  # a worker that dies raises BrokenProcessPool here, never a hang
                for done in as_completed([pool.submit(verify_task, t) for t in tasks]):
                    for tid, part, result, seconds in done.result():
                        if part is None:
                            record(tid, result, seconds)
                            bar.advance(overall)
                            continue
                        waiting[tid][part], spent[tid] = result, spent[tid] + seconds
                        if all(r is not None for r in waiting[tid].values()):
                            record(tid, assemble(tid, waiting[tid], Context(budget=args.budget)), spent[tid])
                            bar.advance(overall)
            except BaseException:  # Ctrl-C or a crash: stop every worker now, keep no half result
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    verdicts = [v for tid in wanted for v in by_tid[tid]]
    return verdicts, {tid: timings[tid] for tid in wanted}


def _replace_folder(new: Path, old: Path) -> None:
    """Move the finished report folder ``new`` to ``old``'s place (the old one is removed)."""
    if old.exists():
        trash = old.with_name(f".{old.name}.old-{os.getpid()}")
        old.rename(trash)
        new.rename(old)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        new.rename(old)


if __name__ == "__main__":
    sys.exit(main())
