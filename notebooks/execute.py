"""Execute the notebooks in place, so that the .ipynb files hold their outputs (figures, tables).

    python notebooks/execute.py                      # every notebook
    python notebooks/execute.py 01_entropic_loss 03  # those whose name starts so

Each notebook's jupytext script (``notebooks/NN_topic.py``, the file to edit) is read, executed
cell by cell with nbclient in a fresh ``python3`` kernel of this interpreter (working directory
``notebooks/``, ``OMP_NUM_THREADS=1``), and written to the paired ``.ipynb`` with its outputs.
Cell ids are numbered and timing metadata is left out, so re-executing an unchanged notebook
changes only what its outputs changed. A notebook that raises is still written (with the
error in its output) and the exit status is 1. Prints each notebook's execution time and size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebook_scripts() -> list[Path]:
    """The jupytext scripts in notebooks/: the .py files that carry a jupytext header."""
    return sorted(p for p in HERE.glob("*.py") if is_jupytext_script(p))


def is_jupytext_script(path: Path) -> bool:
    """A jupytext script opens with a ``# ---`` header block that holds ``jupytext:`` metadata."""
    lines = path.read_text().splitlines()
    if not lines or lines[0] != "# ---" or "# ---" not in lines[1:]:
        return False
    return any("jupytext:" in line for line in lines[1:lines.index("# ---", 1)])


def select(names: list[str]) -> list[Path]:
    scripts = notebook_scripts()
    if not names:
        return scripts
    chosen = []
    for name in names:
        stem = Path(name).stem
        hits = [s for s in scripts if s.stem.startswith(stem)]
        if not hits:
            raise SystemExit(f"execute.py: no notebook named {name!r}; have {', '.join(s.stem for s in scripts)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def execute(script: Path, timeout: int) -> tuple[float, bool]:
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = jupytext.read(script)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: re-execution does not churn them
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})
    t0 = time.perf_counter()
    ok = True
    try:
        client.execute()
    except CellExecutionError as exc:
        ok = False
        print(f"{script.stem}: a cell raised\n{exc}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    jupytext.write(nb, script.with_suffix(".ipynb"))
    return seconds, ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebooks to execute (a prefix of the name); default: all")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the kernel inherits it
    scripts = select(args.names)
    failed = []
    for script in scripts:
        seconds, ok = execute(script, args.timeout)
        size = script.with_suffix(".ipynb").stat().st_size
        print(f"{script.stem}: {seconds:.0f} s, {size / 1024:.0f} KiB{'' if ok else ', FAILED'}", flush=True)
        if not ok:
            failed.append(script.stem)
    if failed:
        print(f"execute.py: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
