r"""Representation-alignment measures between two sets of features over the same inputs.

``feats_a`` (n, p) and ``feats_b`` (n, q) are the hidden activations of two networks (or two
layers) on the same n test inputs; p and q may differ.

* :func:`gram_cosine` - the paper's measure (Sec. 5.1, App. A): cosine similarity of the two
  Gram matrices ``K_a = F_a F_a^T`` and ``K_b = F_b F_b^T``, i.e. of the two sides of
  ``h_A(x)^T h_A(x') = c h_B(x)^T h_B(x')`` over all test pairs. It is 1 exactly when the
  kernels agree up to a positive scale (the representations differ by a scaled rotation).
* :func:`linear_cka` - linear centred kernel alignment (Kornblith et al. 2019), the measure
  of the paper's ViT figure: the same cosine after centring both Gram matrices. It is the
  **biased** (plug-in HSIC) estimator: on two *independent* feature sets it does not vanish
  but sits near ``sqrt(p q) / sqrt((n + p)(n + q))`` (isotropic features), e.g. ~0.22 for
  128-wide features on 450 test inputs and ~0.07 for 32-wide ones. Read its values against
  that floor.
* :func:`linear_cka_unbiased` - the same alignment with the unbiased HSIC estimator of
  Song et al. (2012) in numerator and denominator ("debiased CKA"): ~0 on independent
  features (standard deviation ~ ``sqrt(2 / (n (n - 1)))``, whatever p and q), exactly 1 on
  identical features; it can be slightly negative.
* :func:`mutual_knn` - mutual k-nearest-neighbour alignment of the Platonic Representation
  Hypothesis paper (Huh et al. 2024): rows are L2-normalised, each sample's k nearest
  neighbours (by inner product, itself excluded) are found in both spaces, and the mean
  fraction of shared neighbours is returned. Ties in similarity are broken by sample index
  (the lower index is the nearer neighbour), so the result is deterministic.

All four are invariant under ``F -> c F O`` (c > 0, O orthogonal), which is the sense of
"perfect alignment" in Theorem 8:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> F = rng.standard_normal((50, 4))
>>> Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
>>> G = 3.0 * F @ Q
>>> round(gram_cosine(F, G), 12), round(linear_cka(F, G), 12), round(linear_cka_unbiased(F, G), 12), mutual_knn(F, G, k=5)
(1.0, 1.0, 1.0, 1.0)
>>> H = rng.standard_normal((50, 4))  # independent of F
>>> bool(linear_cka(F, H) < 0.5), bool(abs(linear_cka_unbiased(F, H)) < 0.2)
(True, True)
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


def _centred_pair(feats_a, feats_b):
    """Column-centred features; refuses a feature set that is constant over the inputs."""
    a0, b0 = _pair(feats_a, feats_b)
    a = a0 - a0.mean(0)
    b = b0 - b0.mean(0)
    if not np.any(np.abs(a) > 1e-14 * np.abs(a0).max()) or not np.any(np.abs(b) > 1e-14 * np.abs(b0).max()):
        raise InputError("a feature set is constant over the test inputs: centred CKA is undefined")
    return a, b


def gram_cosine(feats_a, feats_b) -> float:
    """``<K_a, K_b>_F / (|K_a|_F |K_b|_F)`` with ``K = F F^T`` (uncentred)."""
    a, b = _pair(feats_a, feats_b)
    # <F_a F_a^T, F_b F_b^T> = |F_a^T F_b|_F^2, |F F^T|_F = |F^T F|_F: no n x n matrices needed.
    num = np.linalg.norm(a.T @ b) ** 2
    return float(num / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def linear_cka(feats_a, feats_b) -> float:
    """Linear CKA, **biased** estimator: :func:`gram_cosine` of the column-centred features.

    This is the plug-in (biased) HSIC of Kornblith et al. (2019). Its value on independent
    features is not 0: for isotropic features it is close to
    ``sqrt(p q) / sqrt((n + p)(n + q))`` (``E|A^T B|_F^2 = n p q`` against
    ``|A^T A|_F ~ n sqrt(p (1 + p/n))``), so wide layers on few test inputs read as partly
    aligned. :func:`linear_cka_unbiased` removes that floor.
    """
    a, b = _centred_pair(feats_a, feats_b)
    return gram_cosine(a, b)


def _hsic_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC of the linear kernels ``K = A A^T``, ``L = B B^T``:

        HSIC_1 = [Tr(K~ L~) + (1^T K~ 1)(1^T L~ 1)/((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)),

    ``K~`` = K with its diagonal set to 0. Computed in feature space (no n x n matrix):
    ``Tr(K~ L~) = |A^T B|_F^2 - sum_i |a_i|^2 |b_i|^2``, ``K~ 1 = A (A^T 1) - diag K``.
    The estimator is invariant to translating the features, so callers pass centred
    features (which avoids cancellation between large terms)."""
    n = a.shape[0]
    da = np.einsum("ij,ij->i", a, a)
    db = np.einsum("ij,ij->i", b, b)
    ka1 = a @ a.sum(0) - da  # K~ 1
    lb1 = b @ b.sum(0) - db  # L~ 1
    tr = np.linalg.norm(a.T @ b) ** 2 - float(da @ db)
    return float((tr + ka1.sum() * lb1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(ka1 @ lb1)) / (n * (n - 3)))


def linear_cka_unbiased(feats_a, feats_b) -> float:
    """Linear CKA with the **unbiased** HSIC estimator (Song et al. 2012) throughout:
    ``HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))`` for linear kernels.

    Unlike :func:`linear_cka` it has no floor on independent features: the numerator is an
    unbiased estimate of HSIC = 0 there, and under independence its standard deviation is
    ``sqrt(2 / (n (n - 1)))`` times the denominator (a degenerate U-statistic whose pair
    terms are uncorrelated), for any widths. It equals 1 for identical features (up to
    ``c F O``) and can be slightly negative. Needs n >= 4 test inputs.
    """
    a, b = _centred_pair(feats_a, feats_b)
    n = a.shape[0]
    if n < 4:
        raise InputError(f"the unbiased HSIC needs at least 4 test inputs, got {n}")
    kk, ll = _hsic_unbiased(a, a), _hsic_unbiased(b, b)
    if kk <= 0 or ll <= 0:
        raise InputError("the unbiased HSIC of a feature set with itself is not positive: too few test inputs "
                         "for the unbiased CKA")
    return _hsic_unbiased(a, b) / float(np.sqrt(kk * ll))


def _knn(f: np.ndarray, k: int) -> np.ndarray:
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputError("a test input has an all-zero representation: cosine neighbours are undefined")
    f = f / norms
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    # stable sort: among equal similarities the lower sample index comes first (ties broken by index)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def mutual_knn(feats_a, feats_b, k: int = 10) -> float:
    """Mean over samples of ``|knn_a(i) & knn_b(i)| / k`` (cosine neighbours, self excluded).

    Ties in cosine similarity (duplicate or parallel rows) are broken by sample index: the
    lower index counts as the nearer neighbour, in both spaces.

    >>> import numpy as np
    >>> F = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 1 and 2 tie for row 0
    >>> _knn(F, 1)[0].tolist()
    [1]
    """
    a, b = _pair(feats_a, feats_b)
    n = a.shape[0]
    if not 1 <= int(k) < n:
        raise InputError(f"k must be in 1..{n - 1} for {n} test inputs, got {k}")
    na, nb = _knn(a, k), _knn(b, k)
    shared = [len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(na, nb)]
    return float(np.mean(shared) / k)


MEASURES = {"gram_cosine": gram_cosine, "linear_cka": linear_cka, "linear_cka_unbiased": linear_cka_unbiased,
            "mutual_knn": mutual_knn}


def alignment_matrix(layers_a, layers_b, measure: str = "gram_cosine", **kw) -> np.ndarray:
    """``M[i, j]`` = alignment of layer i of net A with layer j of net B (same test inputs).

    ``measure`` is one of :data:`MEASURES`: ``"gram_cosine"``, ``"linear_cka"`` (biased),
    ``"linear_cka_unbiased"`` or ``"mutual_knn"`` (keyword ``k``).

    >>> import numpy as np
    >>> F = np.random.default_rng(1).standard_normal((20, 3))
    >>> alignment_matrix([F, 2 * F], [F], "linear_cka").round(12).tolist()
    [[1.0], [1.0]]
    >>> alignment_matrix([F, 2 * F], [F], "linear_cka_unbiased").round(12).tolist()
    [[1.0], [1.0]]
    """
    if measure not in MEASURES:
        raise InputError(f"unknown alignment measure {measure!r}; choose one of {', '.join(MEASURES)}")
    fn = MEASURES[measure]
    return np.array([[fn(a, b, **kw) for b in layers_b] for a in layers_a])
