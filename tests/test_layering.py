"""The floors of the suite, beyond what import-linter's contracts (pyproject.toml) enforce:
symbolic/ derives and evaluates exactly; it runs no numerical optimisation."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIMISERS = ("scipy.optimize", "torch")


def optimiser_imports(source: str) -> list:
    """Modules from ``OPTIMISERS`` that ``source`` imports (at any depth of the file).

    >>> optimiser_imports("import numpy\\nfrom scipy.optimize import minimize")
    ['scipy.optimize']
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [n for n in names if n.startswith(OPTIMISERS)]
    return found


def test_symbolic_runs_no_numerical_optimisation():
    offenders = {p.name: optimiser_imports(p.read_text()) for p in (ROOT / "symbolic").glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_scan_sees_a_local_import():
    # the old orbit minimiser imported scipy.optimize inside a function: the scan must see it
    planted = "def f():\n    import scipy.optimize\n    return scipy.optimize.minimize\n"
    assert optimiser_imports(planted) == ["scipy.optimize"]
