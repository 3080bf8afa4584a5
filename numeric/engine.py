"""Engine selection for the linear-network family: theorem modules call this, never an
engine class directly, so they gain nothing from knowing which engine runs.

>>> import numpy as np
>>> from numeric.linear_ensemble import LinearTeacher
>>> ens = linear_ensemble(LinearTeacher(np.eye(2), np.eye(2), np.eye(2)), hidden=[2], n_runs=2, eta=0.01, device="cpu")
>>> type(ens).__name__
'LinearEnsemble'
"""

from __future__ import annotations

from .linear_ensemble import LinearEnsemble


def linear_ensemble(teacher, hidden, n_runs, eta, **kwargs):
    """An ensemble SGD engine for ``f = M_O W_D ... W_1 M_I Z x`` (see LinearEnsemble).

    Today: the batched reference engine on every device. (The fused GPU engine, when it
    applies, is selected here.)
    """
    return LinearEnsemble(teacher, hidden, n_runs, eta, **kwargs)
