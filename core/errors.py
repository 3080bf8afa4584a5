"""Exceptions of the suite (imported by every layer; imports nothing of ours).

Bad input and failed runs must stop with a message that names the problem: never a
silent NaN, never a wrong number.
"""


class InputError(ValueError):
    """A matrix, dimension or hyper-parameter that the computation cannot accept."""


class DivergenceError(RuntimeError):
    """SGD left the stable region: some runs produced non-finite or exploding weights.

    ``runs`` lists the indices of the diverged ensemble members and ``steps`` the first
    step at which each was seen to diverge.
    """

    def __init__(self, message: str, runs=(), steps=()):
        super().__init__(message)
        self.runs = list(runs)
        self.steps = list(steps)
