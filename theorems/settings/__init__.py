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
