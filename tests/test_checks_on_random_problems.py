"""The theorems' own registered checks, driven by Hypothesis on random problems.

The main job runs each check on its showcase problem; here the same check functions (found
in the registry, not copied) run on problems Hypothesis draws, so a closed form that holds
only on the showcase would fail here.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import theorems.theorem_08_platonic  # noqa: F401  (importing a theorem module registers its checks)
import theorems.theorem_10_sharpness  # noqa: F401
import theorems.theorem_12_entropic_optimum  # noqa: F401
from numeric import strategies as nst
from numeric.two_layer_witness import TwoLayerProblem
from theorems.checks import REGISTRY, Case
from theorems.verdict import Context


def registered(theorem: str, name: str):
    """The registered check ``name`` of ``theorem``."""
    return next(c for c in REGISTRY[theorem] if c.name == name)


def assert_passes(theorem: str, name: str, seed: int = 0, **kwargs) -> None:
    for v in registered(theorem, name).run(Context(seed=seed), Case(kwargs)):
        assert v.passed, v.explain()


@st.composite
def two_layer_problems(draw):
    """``y = V x + e`` with full-rank V (dy x dx <= 3 x 3), SPD Sx and Se, width rank..rank+2."""
    dx, dy = draw(nst.dims(1, 3)), draw(nst.dims(1, 3))
    V = draw(nst.full_rank_matrices(dy, dx, 0.4, 1.6))
    Sx, Se = draw(nst.spd_matrices(dx, 0.3, 2.0)), draw(nst.spd_matrices(dy, 0.3, 2.0))
    return TwoLayerProblem(V=V, Sx=Sx, Se=Se, width=min(dx, dy) + draw(st.integers(0, 2)))


@settings(max_examples=8, deadline=None)
@given(two_layer_problems(), nst.seeds())
def test_theorem_12_closed_form_is_the_entropic_optimum_of_random_problems(problem, seed):
    assert_passes("12", "check_concrete_optimum", seed=seed % 1000, problem=problem, n_points=40)


@settings(max_examples=8, deadline=None)
@given(two_layer_problems(), nst.seeds())
def test_theorem_10_least_sharpness_on_random_problems(problem, seed):
    assert_passes("10", "check_min_sharpness_concrete", seed=seed % 1000, problem=problem, n_points=40)


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 10_000))
def test_theorem_8_closed_form_is_a_global_minimum_for_random_embeddings(design_seed):
    assert_passes("8", "check_closed_form_global_min", D=2, design_seed=design_seed)


def test_a_wrong_problem_fails_the_check():
    """The driver can fail: a check given a problem whose closed form is perturbed reports FAIL."""
    from dataclasses import replace

    problem = TwoLayerProblem(V=np.eye(2), Sx=np.diag([1.0, 0.5]), Se=np.diag([0.6, 1.2]), width=2)
    good = registered("12", "check_concrete_optimum").run(Context(seed=0), Case(dict(problem=problem, n_points=20)))
    assert all(v.passed for v in good)

    class Perturbed(TwoLayerProblem):
        def closed_form(self):
            opt = super().closed_form()
            return replace(opt, min_entropy=opt.min_entropy * 1.01)  # claims 1% less entropy than attained

    bad = Perturbed(V=problem.V, Sx=problem.Sx, Se=problem.Se, width=2)
    rows = registered("12", "check_concrete_optimum").run(Context(seed=0), Case(dict(problem=bad, n_points=20)))
    assert not all(v.passed for v in rows)
