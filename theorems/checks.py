"""The check registry: each check is registered once, with its cases; ``verify(ctx)`` and
pytest both walk it.

A theorem module registers its checks in reading order::

    @check(THEOREM)
    def check_symbolic(ctx): ...                      # one case

    @check(THEOREM, cases=[dict(D=2), dict(D=3), slow_case(D=4), full_case(D=5)])
    def check_kernel_convergence(ctx, D): ...         # one case per keyword set

    verify = verifier(THEOREM)                        # what ``python -m theorems`` runs
    test_checks = pytest_cases(THEOREM)               # what pytest collects

A result too long for one file keeps its further checks in a file named after its module
(``theorem_08_platonic_digits.py`` beside ``theorem_08_platonic.py``), registered with the
same id and imported by the module where they belong in its reading order; the shared name
prefix makes every loader (the runner, pytest) import the main module first, so the
verdicts keep their order.

A check returns a :class:`~theorems.verdict.Verdict` or a list of them. A check that raises
becomes one ERROR row (its exception's message, on screen and in the report) and the
theorem's other checks still run. ``slow_case`` marks a case that pytest leaves to the main
job and to ``pytest -m slow`` (the main job always runs it); ``full_case`` one that only the
full budget runs. A check registered with ``alone=True`` computes, in each case, runs that no
other check or case uses: ``python -m theorems --jobs N`` may verify each such case in a worker
process of its own (:func:`work_parts`), beside the rest of its theorem.

>>> from theorems.verdict import Context, Verdict
>>> @check("T0", cases=[dict(x=1.0), dict(x=3.0)])
... def check_small(ctx, x):
...     return Verdict("T0", f"x={x} is small", predicted=0.0, measured=x, tolerance=2.0, tolerance_source="doc")
>>> [v.status for v in run_checks("T0", Context())]
['PASS', 'FAIL']
>>> REGISTRY.pop("T0") and None
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from .verdict import Verdict, error_verdict

REGISTRY: dict = {}  # theorem id -> [Check, ...] in registration order


@dataclass
class Case:
    """One set of keyword arguments for a check; ``slow`` cases are left out of default
    pytest; ``full_only`` cases run only under the full budget (and pytest skips them)."""

    kwargs: dict
    slow: bool = False
    full_only: bool = False

    def runs_under(self, ctx) -> bool:
        return ctx.full or not self.full_only

    @property
    def id(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.kwargs.items())


def slow_case(**kwargs) -> Case:
    return Case(kwargs, slow=True)


def full_case(**kwargs) -> Case:
    """A case too costly for the quick budget: the main job runs it with ``--budget full``."""
    return Case(kwargs, slow=True, full_only=True)


@dataclass
class Check:
    theorem: str
    name: str
    fn: Callable
    cases: list = field(default_factory=lambda: [Case({})])
    alone: bool = False  # each case's runs are its own: a worker process may verify it by itself

    @property
    def claim(self) -> str:
        """The check's first docstring line: the claim an error row stands for."""
        doc = inspect.getdoc(self.fn) or self.name
        return doc.splitlines()[0]

    def run(self, ctx, case: Case) -> list:
        try:
            out = self.fn(ctx, **case.kwargs)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one error row; the theorem's other checks still run
            label = f"{self.name}({case.id})" if case.id else self.name
            return [error_verdict(self.theorem, label, f"{self.claim} [{label}]", exc)]
        vs = [out] if isinstance(out, Verdict) else list(out)
        for v in vs:
            if not isinstance(v, Verdict):
                raise TypeError(f"{self.name} returned {type(v).__name__}, not a Verdict")
            v.check = v.check or self.name
        return vs


def check(theorem: str, *, cases=None, slow: bool = False, alone: bool = False):
    """Register ``fn(ctx, **case)`` as a check of ``theorem`` (see the module docstring;
    ``alone``: no case shares a run with any other check or case)."""

    def register(fn):
        cs = [Case({}, slow)] if cases is None else [c if isinstance(c, Case) else Case(dict(c), slow) for c in cases]
        entries = REGISTRY.setdefault(str(theorem), [])
        if any(c.name == fn.__name__ for c in entries):
            raise RuntimeError(f"check {fn.__name__} registered twice for theorem {theorem}")
        entries.append(Check(str(theorem), fn.__name__, fn, cs, alone))
        return fn

    return register


SHARED = "shared"  # the part of a theorem outside its ``alone`` checks (see :func:`work_parts`)


def run_cases(theorem: str, ctx, part=None) -> list:
    """``[(key, verdicts), ...]`` for the cases of ``theorem`` that run under ``ctx``'s budget, in
    registration order; ``key = (check name, case id)``. ``part``: ``None`` for every case,
    :data:`SHARED` for those outside ``alone`` checks, a key for that one case."""
    out = []
    for c in REGISTRY.get(str(theorem), []):
        for case in c.cases:
            key = (c.name, case.id)
            if not case.runs_under(ctx) or (part == SHARED and c.alone) or (part not in (None, SHARED)
                                                                             and tuple(part) != key):
                continue
            out.append((key, c.run(ctx, case)))
    return out


def run_checks(theorem: str, ctx) -> list:
    """Every case of every check of ``theorem``, in registration order."""
    return [v for _, vs in run_cases(theorem, ctx) for v in vs]


def work_parts(theorem: str, ctx) -> list:
    """The parts of ``theorem`` that worker processes may verify side by side: ``[None]`` (the
    whole theorem in one process) when it has no ``alone`` check running under ``ctx``'s budget,
    else :data:`SHARED` (when anything else runs) followed by one key per ``alone`` case.

    >>> from theorems.verdict import Context, Verdict
    >>> @check("T0", cases=[dict(x=1.0), dict(x=3.0)], alone=True)
    ... def check_alone(ctx, x):
    ...     return Verdict("T0", f"x={x}", predicted=0.0, measured=x, tolerance=2.0, tolerance_source="doc")
    >>> work_parts("T0", Context())
    [('check_alone', 'x=1.0'), ('check_alone', 'x=3.0')]
    >>> REGISTRY.pop("T0") and None
    """
    entries = REGISTRY.get(str(theorem), [])
    alone = [(c.name, case.id) for c in entries if c.alone for case in c.cases if case.runs_under(ctx)]
    if not alone:
        return [None]
    rest = any(case.runs_under(ctx) for c in entries if not c.alone for case in c.cases)
    return ([SHARED] if rest else []) + alone


def verifier(theorem: str) -> Callable:
    def verify(ctx):
        return run_checks(theorem, ctx)

    verify.__doc__ = f"Run every registered check of theorem {theorem}; one Verdict per checked claim."
    return verify


def pytest_cases(theorem: str):
    """A pytest test function parametrised over the theorem's registered checks and cases."""
    import pytest

    params = [pytest.param(c, case, id=f"{c.name}[{case.id}]" if case.id else c.name,
                           marks=[pytest.mark.slow] if case.slow else [])
              for c in REGISTRY.get(str(theorem), []) for case in c.cases]

    @pytest.mark.parametrize(("registered", "case"), params)
    def test_check(registered, case, ctx):
        if not case.runs_under(ctx):
            pytest.skip("runs under the full budget only (python -m theorems --budget full)")
        vs = registered.run(ctx, case)
        failed = [v.explain() for v in vs if not v.passed]
        assert not failed, "\n".join(failed)

    return test_check
