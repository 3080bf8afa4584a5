"""What a theorem module hands the runner: verdicts, a run context, module discovery.

Every theorem module ``theorems/theorem_NN_topic.py`` (or ``lemma_N_topic.py``,
``appendix_B1_topic.py``) defines

* ``THEOREM`` - the id users pass to ``python -m theorems --theorem`` ("1", "10", "L1", "B1");
* ``TITLE``   - a few words;
* ``verify(ctx: Context) -> list[Verdict]`` - runs the derivation and the witness and
  compares them, one Verdict per checked claim;
* ordinary ``test_*`` functions that pytest collects (they call the same checks and
  ``assert verdict.passed, verdict.explain()``).

>>> v = Verdict(theorem="1", claim="c_n", symbolic="(n-1)/(4n), residual 0",
...             predicted=0.25, measured=0.2501, tolerance=1e-3, tolerance_source="O(eta^3)")
>>> v.passed, round(v.gap, 6)
(True, 0.0001)
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

BUDGETS = ("quick", "full")
MODULE_PREFIXES = ("theorem_", "lemma_", "appendix_")


@dataclass
class Verdict:
    """One checked claim: the symbolic verdict and the numeric comparison.

    ``passed`` defaults to ``|measured - predicted| <= tolerance`` when both numbers are
    given; pass it explicitly for claims that are not a single number (a slope inside an
    interval, a symbolic identity, a claim the suite refutes - then ``passed`` says whether
    the *suite's finding* is confirmed and ``paper_holds`` says whether the paper is right).
    """

    theorem: str
    claim: str
    symbolic: str = ""
    predicted: float | None = None
    measured: float | None = None
    tolerance: float | None = None
    tolerance_source: str = ""
    passed: bool | None = None
    paper_holds: bool | None = None
    residual: str = ""
    details: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)

    def __post_init__(self):
        if self.passed is None:
            if None in (self.predicted, self.measured, self.tolerance):
                raise ValueError(f"Verdict {self.claim!r}: give passed= or predicted/measured/tolerance")
            self.passed = bool(self.gap <= self.tolerance)
        self.passed = bool(self.passed)

    @property
    def gap(self) -> float | None:
        if self.predicted is None or self.measured is None:
            return None
        return abs(float(self.measured) - float(self.predicted))

    def explain(self) -> str:
        parts = [f"[Theorem {self.theorem}] {self.claim}: {'PASS' if self.passed else 'FAIL'}"]
        if self.symbolic:
            parts.append(f"symbolic: {self.symbolic}")
        if self.predicted is not None or self.measured is not None:
            parts.append(f"predicted {_fmt(self.predicted)}, measured {_fmt(self.measured)}")
        if self.tolerance is not None:
            parts.append(f"tolerance {_fmt(self.tolerance)} ({self.tolerance_source})")
        if self.details:
            parts.append("details: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.details.items()))
        return "; ".join(parts)

    def to_json(self) -> dict:
        d = asdict(self)
        d["gap"] = self.gap
        d["details"] = _jsonable(self.details)
        d["figures"] = [str(f) for f in self.figures]
        return d


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.detach().cpu().tolist())
    if hasattr(x, "tolist"):  # numpy
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    return str(x)


@dataclass
class Context:
    """How a verification run is carried out.

    ``budget='quick'`` is the CI budget (2 CPU cores, the whole suite under 10 minutes);
    ``'full'`` runs longer ladders and more SGD steps for tighter verdicts.
    ``out`` is where figures go (None: make no figures). ``progress(desc, total)`` returns a
    callable ``advance(n)``; the default does nothing.
    """

    budget: str = "quick"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    out: Path | None = None
    progress: Callable | None = None

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}")

    @property
    def full(self) -> bool:
        return self.budget == "full"

    def pick(self, quick, full):
        """The quick or the full value, by budget."""
        return full if self.full else quick

    def figure_path(self, name: str) -> Path | None:
        if self.out is None:
            return None
        d = Path(self.out) / "figures"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def task(self, desc: str, total: int | None = None) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n=1: None
        return self.progress(desc, total)


def display_name(tid: str) -> str:
    """How a result is called in messages: ``"Theorem 8"``, ``"Lemma 1"``, ``"Appendix B.1"``.

    >>> [display_name(t) for t in ("8", "L1", "B1")]
    ['Theorem 8', 'Lemma 1', 'Appendix B.1']
    """
    if tid.startswith("L"):
        return f"Lemma {tid[1:]}"
    if tid.startswith("B"):
        return f"Appendix B.{tid[1:]}"
    return f"Theorem {tid}"


def theorem_modules() -> dict:
    """``{THEOREM id: module}`` for every theorem module in this package: theorems by number,
    then lemmas, then appendix results."""
    import theorems

    found = {}
    names = [m.name for m in pkgutil.iter_modules(theorems.__path__) if m.name.startswith(MODULE_PREFIXES)]
    # theorems first, then lemmas, then appendix results; by number within each
    names.sort(key=lambda n: (MODULE_PREFIXES.index(n.split("_")[0] + "_"), n))
    for name in names:
        mod = importlib.import_module(f"theorems.{name}")
        tid = str(getattr(mod, "THEOREM", "")).strip()
        if not tid or not hasattr(mod, "verify"):
            continue
        if tid in found:
            raise RuntimeError(f"two theorem modules claim id {tid!r}: {found[tid].__name__}, {mod.__name__}")
        found[tid] = mod
    return found
