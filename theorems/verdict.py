"""What a theorem module hands the runner: verdicts, their criteria, a run context, discovery.

Every theorem module ``theorems/theorem_NN_topic.py`` (or ``lemma_N_topic.py``,
``appendix_B1_topic.py``) defines

* ``THEOREM`` - the id users pass to ``python -m theorems --theorem`` ("1", "10", "L1", "B1");
* ``TITLE``   - a few words;
* its checks, each registered once with :func:`theorems.checks.check`; ``verify(ctx)``
  (what ``python -m theorems`` runs) and the module's pytest cases both walk that registry.

A :class:`Verdict` passes exactly when every one of its :class:`Criterion` objects holds,
and the report shows every criterion: there is no other way to make a verdict pass.
Giving ``predicted``, ``measured`` and ``tolerance`` adds the primary criterion
``|measured - predicted| <= tolerance`` (its source is ``tolerance_source``); with
``comparison="beyond"`` it is ``|measured - predicted| > tolerance`` instead (the
measurement must differ: a refutation), and with ``comparison="none"`` the numbers are
shown for information and only the explicit criteria decide.

>>> v = Verdict(theorem="1", claim="c_n", symbolic="(n-1)/(4n), residual 0",
...             predicted=0.25, measured=0.2501, tolerance=1e-3, tolerance_source="O(eta^3)")
>>> v.passed, round(v.gap, 6), v.status
(True, 0.0001, 'PASS')
>>> w = Verdict("4", "slope", predicted=-0.5, measured=-0.2, tolerance=0.5, tolerance_source="CLT",
...             criteria=[Criterion.within("slope is negative", -0.2, -1.0, -0.3, "sign of the law")])
>>> w.passed, [c.name for c in w.failed_criteria]
(False, ['slope is negative'])

What a verdict says of the paper follows from what was measured: ``paper`` is the
check's stance when it passes (``"supports"``: the paper's claim is confirmed;
``"refutes"``: the suite's finding contradicts it; ``"partly"``: the claim holds only under
``paper_condition``). A verdict that fails or errors settles nothing about the paper
(``paper_holds`` is None). ``paper_criteria`` decide the paper's claim by a test of their
own where that differs from the suite's finding (e.g. the suite confirms a corrected
coefficient and separately tests the paper's).

>>> Verdict("5", "k", predicted=1.0, measured=1.0, tolerance=0.1, tolerance_source="CLT",
...         paper="refutes").paper_holds
False
>>> Verdict("5", "k", predicted=1.0, measured=2.0, tolerance=0.1, tolerance_source="CLT",
...         paper="supports").paper_holds is None
True
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
STANCES = ("supports", "refutes", "partly")
KINDS = ("<=", ">=", ">", "within", "holds")


@dataclass(frozen=True)
class Criterion:
    """One condition of a verdict: ``measured`` against ``bound`` by ``kind``, and why.

    ``kind`` is ``"<="`` or ``">="`` (a number against a bound), ``"within"`` (``bound``
    is ``(lo, hi)``, inclusive) or ``"holds"`` (``measured`` is a truth value, no bound).

    >>> Criterion.at_most("gap", 0.1, 0.2, "CLT").passed
    True
    >>> Criterion.holds("residual is exactly 0", False, "SymPy").describe()
    'residual is exactly 0: False (SymPy) FAILED'
    """

    name: str
    measured: object
    bound: object = None
    kind: str = "<="
    source: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"criterion kind must be one of {KINDS}, got {self.kind!r}")

    @classmethod
    def at_most(cls, name, measured, bound, source=""):
        return cls(name, _num(measured), _num(bound), "<=", source)

    @classmethod
    def at_least(cls, name, measured, bound, source=""):
        return cls(name, _num(measured), _num(bound), ">=", source)

    @classmethod
    def above(cls, name, measured, bound, source=""):
        """``measured > bound`` strictly (a difference that must exceed its noise)."""
        return cls(name, _num(measured), _num(bound), ">", source)

    @classmethod
    def within(cls, name, measured, lo, hi, source=""):
        return cls(name, _num(measured), (_num(lo), _num(hi)), "within", source)

    @classmethod
    def holds(cls, name, condition, source=""):
        return cls(name, bool(condition), None, "holds", source)

    @property
    def passed(self) -> bool:
        m = self.measured
        if self.kind == "holds":
            return bool(m)
        if m is None or (isinstance(m, float) and math.isnan(m)):
            return False
        if self.kind == "<=":
            return bool(m <= self.bound)
        if self.kind == ">=":
            return bool(m >= self.bound)
        if self.kind == ">":
            return bool(m > self.bound)
        lo, hi = self.bound
        return bool(lo <= m <= hi)

    def describe(self) -> str:
        if self.kind == "holds":
            text = f"{self.name}: {self.measured}"
        elif self.kind == "within":
            text = f"{self.name}: {_fmt(self.measured)} in [{_fmt(self.bound[0])}, {_fmt(self.bound[1])}]"
        else:
            text = f"{self.name}: {_fmt(self.measured)} {self.kind} {_fmt(self.bound)}"
        if self.source:
            text += f" ({self.source})"
        return text + ("" if self.passed else " FAILED")

    def to_json(self) -> dict:
        return {"name": self.name, "measured": _jsonable(self.measured), "bound": _jsonable(self.bound),
                "kind": self.kind, "source": self.source, "passed": self.passed}


PRIMARY = {"within": "|measured - predicted| <= tolerance", "beyond": "|measured - predicted| > tolerance"}
COMPARISONS = ("within", "beyond", "none")


@dataclass
class Verdict:
    """One checked claim: the symbolic verdict, the numeric comparison and its criteria."""

    theorem: str
    claim: str
    symbolic: str = ""
    predicted: float | None = None
    measured: float | None = None
    tolerance: float | None = None
    tolerance_source: str = ""
    paper: str | None = None
    paper_condition: str = ""
    residual: str = ""
    criteria: list = field(default_factory=list)
    paper_criteria: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    comparison: str = "within"  # the primary criterion: "within", "beyond" or "none" (see module doc)
    error: str = ""  # a check that raised: its exception, and no criteria
    check: str = ""  # the registered check that produced this verdict

    def __post_init__(self):
        if self.paper not in (None, *STANCES):
            raise ValueError(f"paper must be one of {STANCES} or None, got {self.paper!r}")
        if self.paper == "partly" and not self.paper_condition:
            raise ValueError(f"Verdict {self.claim!r}: paper='partly' needs the paper_condition it holds under")
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {COMPARISONS}, got {self.comparison!r}")
        self.criteria = list(self.criteria)
        if self.comparison != "none" and None not in (self.predicted, self.measured, self.tolerance):
            make = Criterion.at_most if self.comparison == "within" else Criterion.above
            self.criteria.insert(0, make(PRIMARY[self.comparison], self.gap, self.tolerance, self.tolerance_source))
        if not self.criteria and not self.error:
            raise ValueError(f"Verdict {self.claim!r}: give predicted/measured/tolerance or criteria")

    @property
    def passed(self) -> bool:
        return not self.error and all(c.passed for c in self.criteria)

    @property
    def status(self) -> str:
        return "ERROR" if self.error else ("PASS" if self.passed else "FAIL")

    @property
    def failed_criteria(self) -> list:
        return [c for c in self.criteria if not c.passed]

    @property
    def paper_holds(self):
        """True / False / "partly" as measured, or None (no paper claim, or nothing settled)."""
        if self.paper is None or not self.passed:
            return None
        if self.paper_criteria:
            return all(c.passed for c in self.paper_criteria)
        return {"supports": True, "refutes": False, "partly": "partly"}[self.paper]

    @property
    def gap(self) -> float | None:
        if self.predicted is None or self.measured is None:
            return None
        return abs(float(self.measured) - float(self.predicted))

    def explain(self) -> str:
        parts = [f"[{display_name(self.theorem)}] {self.claim}: {self.status}"]
        if self.error:
            parts.append(f"error: {self.error}")
        if self.symbolic:
            parts.append(f"symbolic: {self.symbolic}")
        if self.predicted is not None or self.measured is not None:
            parts.append(f"predicted {_fmt(self.predicted)}, measured {_fmt(self.measured)}")
        parts += [c.describe() for c in self.criteria]
        if self.details:
            parts.append("details: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.details.items()))
        return "; ".join(parts)

    def to_json(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        d["status"] = self.status
        d["paper_holds"] = self.paper_holds
        d["gap"] = self.gap
        d["criteria"] = [c.to_json() for c in self.criteria]
        d["paper_criteria"] = [c.to_json() for c in self.paper_criteria]
        d["details"] = _jsonable(self.details)
        d["figures"] = [str(f) for f in self.figures]
        return d


def exact_identity_verdict(theorem: str, claim: str, symbolic: str, residuals: list,
                           what: str = "every invariance, phi and SGD residual simplifies to 0",
                           extra: tuple = (), details: dict | None = None) -> Verdict:
    """The verdict of a SymPy derivation: every residual in ``residuals`` simplifies to 0
    exactly (plus the ``extra`` criteria); the row's residual is their summed magnitude."""
    return Verdict(theorem, claim, symbolic=symbolic, residual=str(sum(abs(r) for r in residuals)),
                   paper="supports", details=details or {},
                   criteria=[Criterion.holds(what, all(r == 0 for r in residuals), "SymPy, exact"), *extra])


def error_verdict(theorem: str, check: str, claim: str, exc: BaseException) -> Verdict:
    """The row of a check that raised: its message, and no verdict on the claim."""
    return Verdict(theorem, claim, error=f"{type(exc).__name__}: {exc}", check=check)


def _num(x):
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, torch.Tensor) or hasattr(x, "item"):
        x = x.item()
    return float(x)


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

    ``budget='quick'`` is the CI budget (2 CPU cores); ``'full'`` runs longer ladders and
    more SGD steps for tighter verdicts. ``out`` is where figures go (None: make no
    figures). ``progress(desc, total)`` returns a callable ``advance(n)``; the default does
    nothing.
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


def module_id(name: str) -> str | None:
    """The result id a module's file name promises: ``theorem_08_platonic`` -> ``"8"``,
    ``lemma_1_sharpness`` -> ``"L1"``, ``appendix_B1_scale_invariance`` -> ``"B1"``;
    None for helper files such as ``theorem_08_digits`` whose id repeats another's.

    >>> [module_id(n) for n in ("theorem_08_platonic", "lemma_1_sharpness", "appendix_B1_x")]
    ['8', 'L1', 'B1']
    """
    parts = name.split("_")
    if len(parts) < 2 or parts[0] + "_" not in MODULE_PREFIXES:
        return None
    tag = parts[1]
    if parts[0] == "theorem":
        return str(int(tag)) if tag.isdigit() else None
    if parts[0] == "lemma":
        return f"L{tag}"
    return tag


def theorem_modules(broken: dict | None = None) -> dict:
    """``{THEOREM id: module}`` for every theorem module in this package: theorems by number,
    then lemmas, then appendix results. A module that fails to import is left out and, when
    ``broken`` is given, recorded there as ``{id: exception}`` (the other results still run)."""
    import theorems

    found = {}
    names = [m.name for m in pkgutil.iter_modules(theorems.__path__) if m.name.startswith(MODULE_PREFIXES)]
    # theorems first, then lemmas, then appendix results; by number within each
    names.sort(key=lambda n: (MODULE_PREFIXES.index(n.split("_")[0] + "_"), n))
    for name in names:
        try:
            mod = importlib.import_module(f"theorems.{name}")
        except Exception as exc:  # one broken module must not hide the others
            if broken is not None:
                broken[module_id(name) or name] = exc
            continue
        tid = str(getattr(mod, "THEOREM", "")).strip()
        if not tid or not hasattr(mod, "verify"):
            continue
        if tid in found:
            raise RuntimeError(f"two theorem modules claim id {tid!r}: {found[tid].__name__}, {mod.__name__}")
        found[tid] = mod
    return found
