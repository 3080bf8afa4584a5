r"""Representation-alignment measures between two sets of features over the same inputs.

``feats_a`` (n, p) and ``feats_b`` (n, q) are the hidden activations of two networks (or two
layers) on the same n test inputs; p and q may differ.

* :func:`gram_cosine` - the paper's measure (Sec. 5.1, App. A): cosine similarity of the two
  Gram matrices ``K_a = F_a F_a^T`` and ``K_b = F_b F_b^T``, i.e. of the two sides of
  ``h_A(x)^T h_A(x') = c h_B(x)^T h_B(x')`` over all test pairs. It is 1 exactly when the
  kernels agree up to a positive scale (the representations differ by a scaled rotation).
* :func:`linear_cka` - linear centred kernel alignment (Kornblith et al. 2019), the measure
  of the paper's ViT figure: the same cosine after centring both Gram matrices.
* :func:`mutual_knn` - mutual k-nearest-neighbour alignment of the Platonic Representation
  Hypothesis paper (Huh et al. 2024): rows are L2-normalised, each sample's k nearest
  neighbours (by inner product, itself excluded) are found in both spaces, and the mean
  fraction of shared neighbours is returned.

All three are invariant under ``F -> c F O`` (c > 0, O orthogonal), which is the sense of
"perfect alignment" in Theorem 8:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> F = rng.standard_normal((50, 4))
>>> Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
>>> G = 3.0 * F @ Q
>>> round(gram_cosine(F, G), 12), round(linear_cka(F, G), 12), mutual_knn(F, G, k=5)
(1.0, 1.0, 1.0)
>>> bool(linear_cka(F, rng.standard_normal((50, 4))) < 0.5)
True
"""

from __future__ import annotations

import numpy as np

from core.errors import InputError
from core.validation import as_numpy


def _pair(feats_a, feats_b):
    a = as_numpy("feats_a", feats_a, ndim=2)
    b = as_numpy("feats_b", feats_b, ndim=2)
    if a.shape[0] != b.shape[0]:
        raise InputError(f"feature sets must cover the same inputs: {a.shape[0]} vs {b.shape[0]} rows")
    if a.shape[0] < 2:
        raise InputError("need at least 2 test inputs to compare representations")
    for name, f in (("feats_a", a), ("feats_b", b)):
        if not np.any(f):
            raise InputError(f"{name} is identically zero: its Gram matrix has no direction to compare")
    return a, b


def gram_cosine(feats_a, feats_b) -> float:
    """``<K_a, K_b>_F / (|K_a|_F |K_b|_F)`` with ``K = F F^T`` (uncentred)."""
    a, b = _pair(feats_a, feats_b)
    # <F_a F_a^T, F_b F_b^T> = |F_a^T F_b|_F^2, |F F^T|_F = |F^T F|_F: no n x n matrices needed.
    num = np.linalg.norm(a.T @ b) ** 2
    return float(num / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def linear_cka(feats_a, feats_b) -> float:
    """Linear CKA: :func:`gram_cosine` of the column-centred features."""
    a, b = _pair(feats_a, feats_b)
    a = a - a.mean(0)
    b = b - b.mean(0)
    if not np.any(np.abs(a) > 1e-14 * np.abs(feats_a).max()) or not np.any(np.abs(b) > 1e-14 * np.abs(feats_b).max()):
        raise InputError("a feature set is constant over the test inputs: centred CKA is undefined")
    return gram_cosine(a, b)


def _knn(f: np.ndarray, k: int) -> np.ndarray:
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputError("a test input has an all-zero representation: cosine neighbours are undefined")
    f = f / norms
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def mutual_knn(feats_a, feats_b, k: int = 10) -> float:
    """Mean over samples of ``|knn_a(i) & knn_b(i)| / k`` (cosine neighbours, self excluded)."""
    a, b = _pair(feats_a, feats_b)
    n = a.shape[0]
    if not 1 <= int(k) < n:
        raise InputError(f"k must be in 1..{n - 1} for {n} test inputs, got {k}")
    na, nb = _knn(a, k), _knn(b, k)
    shared = [len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(na, nb)]
    return float(np.mean(shared) / k)


MEASURES = {"gram_cosine": gram_cosine, "linear_cka": linear_cka, "mutual_knn": mutual_knn}


def alignment_matrix(layers_a, layers_b, measure: str = "gram_cosine", **kw) -> np.ndarray:
    """``M[i, j]`` = alignment of layer i of net A with layer j of net B (same test inputs).

    >>> import numpy as np
    >>> F = np.random.default_rng(1).standard_normal((20, 3))
    >>> alignment_matrix([F, 2 * F], [F], "linear_cka").round(12).tolist()
    [[1.0], [1.0]]
    """
    if measure not in MEASURES:
        raise InputError(f"unknown alignment measure {measure!r}; choose one of {', '.join(MEASURES)}")
    fn = MEASURES[measure]
    return np.array([[fn(a, b, **kw) for b in layers_b] for a in layers_a])
