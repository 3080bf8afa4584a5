r"""Theorem 4 for any model: find the symmetries, emit their balance laws, check them.

The master balance law holds for every exponential symmetry of a model, not only for the
hand-written ones. ``numeric.symmetry_finder`` finds a model's algebra of linear parameter
symmetries (the null space of ``grad l(theta; x)^T A theta = 0`` over per-sample gradients),
splits it into exponential (symmetric, broken by the entropic loss) and rotation
(antisymmetric, kept) generators, verifies each along its orbit and exactly in SymPy, and
emits the SGD law ``eta E[g^T A g] = 4 gam (1 - eta gam) E[theta^T A theta]`` of each
exponential one. This check runs it on the known models (bias-free ReLU MLP, deep linear
net, self-attention, normalisation layers, tanh MLP with biases) and registers with
Theorem 4 (imported by ``theorem_04_master_balance``); ``python -m theorems.symmetries``
runs it on a model of your own.
"""

from __future__ import annotations

from numeric.symmetry_finder import examples
from theorems.checks import check
from theorems.symmetries import exact_verdicts, finder_verdicts
from theorems.verdict import Context

THEOREM = "4"  # the result these checks belong to (no verify(): not a module of its own)


# one case per model: each finds its own algebra and runs its own SGD, so that
# ``python -m theorems --jobs N`` may spread the models over its workers
@check(THEOREM, cases=[dict(model=name) for name in examples()], slow=True, alone=True)
def check_found_symmetries(ctx: Context, model: str) -> list:
    """The known model's symmetry algebra is recovered, and each emitted balance law holds along SGD."""
    return finder_verdicts(ctx, names=[model], exact=False)


@check(THEOREM, slow=True, alone=True)
def check_exact_algebras(ctx: Context) -> list:
    """The small nets' found algebras are SymPy's exact ones; the full ansatz finds what the block one cannot see."""
    return exact_verdicts(ctx)
