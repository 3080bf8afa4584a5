"""Shared designs, budgets and SGD settings of the theorem modules: one home for each.

Theorem modules never import each other; what two of them share lives here, one module
per family, and runs are shared through :func:`theorems.cache.shared_run`.

Which theorems share runs (the same cached SGD ensembles, not copies):

==================================  ==================================================
run                                 used by
==================================  ==================================================
``platonic.run_sgd`` (D = 2, 3, 4)  Theorem 8 (kernels, alignment), Theorem 12 (any-depth
                                    spectra)
``two_layer.showcase_ladder``       Theorem 10 (sharpness), Theorem 12 (depth 2)
``balance.relu_balance_run``        Theorem 5 (layer balance), Theorem 6 (neuron balance)
``balance.attention_run``           Theorem 7 (both self-attention checks)
``symmetry.family_row``             Theorem 2 (which symmetries phi keeps), Theorem 3
                                    (discrete symmetries)
``sgd_limit.study_ladder``          Theorem 12 (SGD's small-eta limit: offset, slow-flow,
                                    rotation and far-start verdicts of one problem)
==================================  ==================================================

The designs themselves (teachers, embeddings, widths, eta ladders, ReLU dims, start
configurations, showcase problems) are in the family modules: :mod:`.platonic`,
:mod:`.two_layer`, :mod:`.balance`, :mod:`.symmetry`, :mod:`.entropic_loss`, :mod:`.sgd_limit`.
"""

# The table above as data: the runner keeps theorems that share runs in one process, so a
# shared run is computed once however many processes verify the suite.
SHARED_RUNS = {
    "platonic.run_sgd": ("8", "12"),
    "two_layer.showcase_ladder": ("10", "12"),
    "balance.relu_balance_run": ("5", "6"),
    "balance.attention_run": ("7",),
    "symmetry.family_row": ("2", "3"),
    "sgd_limit.study_ladder": ("12",),
}


def run_groups(theorems) -> list:
    """``theorems`` partitioned so that every shared run's users sit in one group; each group
    keeps the given order, groups are ordered by their first member.

    >>> run_groups(["1", "2", "3", "8", "10", "12", "L1"])
    [['1'], ['2', '3'], ['8', '10', '12'], ['L1']]
    """
    group = {t: {t} for t in theorems}
    for users in SHARED_RUNS.values():
        present = [t for t in users if t in group]
        merged = set().union(*(group[t] for t in present)) if present else set()
        for t in merged:
            group[t] = merged
    out, seen = [], set()
    for t in theorems:
        if t not in seen:
            members = [u for u in theorems if u in group[t]]
            seen.update(members)
            out.append(members)
    return out
