r"""Global minimum of the entropic loss of an embedded deep linear network, at any depth.

Model (docs/theory.md §7, paper Thm 8/12): ``f(x) = M_O W_D ... W_1 M_I Z x``, labels
``y = V x + e``, ``x ~ (0, Sx)``, ``e ~ (0, Se)`` independent; ``G = M_I Z`` (the fixed map
in front of ``W_1``), ``Su = G Sx G^T`` (covariance the net sees), ``N = M_O^T Se M_O``
(label noise as ``h_D`` sees it), ``P = M_O^{-1} V G^{-1}`` (the product every global
minimum of ``L`` must realise). Write ``A_i = W_D ... W_{i+1}``, ``B_i = W_i ... W_1``.

**Entropy on the minimum manifold.** There ``f - y = -e``, so the per-sample gradient of
``l = |f - y|^2`` is ``grad_{W_i} l = -2 A_i^T M_O^T e (B_{i-1} G x)^T`` and

    E|grad_{W_i} l|^2 = 4 T_i,   T_i = Tr(A_i^T N A_i) Tr(B_{i-1} Su B_{i-1}^T).

To leading order in eta (and gam = O(eta)) the entropic loss
``phi = L + gam|theta|^2 + (eta/4) E|grad l_B|^2`` restricted to the manifold is
``(eta/B) [ sum_i T_i + kappa sum_i |W_i|^2 ]`` with ``kappa = gam B / eta``.

**Balance (kappa = 0).** The manifold is invariant under ``W_k -> X W_k``,
``W_{k+1} -> W_{k+1} X^{-1}``; stationarity in ``X`` at ``X = I`` gives, at every hidden
layer k (:func:`prove_balance_condition`),

    alpha_{k+1} B_k Su B_k^T = beta_{k-1} A_k^T N A_k,
    alpha_i = Tr(A_i^T N A_i), beta_i = Tr(B_i Su B_i^T).

Its trace is ``T_{k+1} = T_k``: **equipartition**. Multiplying by ``B_k^T . B_k`` and using
``A_k B_k = P`` gives a Riccati equation for the hidden kernel
``K_k = (B_k G)^T (B_k G)`` (``h_k(x)^T h_k(x') = x^T K_k x'``):

    K_k Sx K_k = c_k V^T Se V,     c_k = beta_{k-1} / alpha_{k+1}

in which M_I, M_O, Z, the widths, the depth and the layer index have all cancelled
(:func:`prove_riccati_invariance`). Its unique PSD solution is the matrix geometric mean

    K_k = sqrt(c_k) * Sx^{-1} # (V^T Se V) = sqrt(c_k) Sx^{-1/2} (Sx^{1/2} V^T Se V Sx^{1/2})^{1/2} Sx^{-1/2}
        = sqrt(c_k) Sx^{-1/2} R S R^T Sx^{-1/2},     Se^{1/2} V Sx^{1/2} = P_s S R^T (SVD),

the "perfect Platonic representation". With ``tau = Tr S``, ``a = Tr N``, ``b = Tr Su``,
``s_k = sqrt(c_k)`` solves the scalar recursion of :func:`layer_scales`:

    s_k = b^{(D-k)/D} a^{-k/D} tau^{2k/D - 1},   T = (a b)^{1/D} tau^{2(D-1)/D}  (every layer).

So ``E|grad_{W_i} l|^2 = 4 (a b)^{1/D} (Tr S)^{2(D-1)/D}`` - the value restated in docs/theory.md §7
for identity embeddings, but with
``a = Tr(M_O^T Se M_O)``, ``b = Tr(M_I Z Sx Z^T M_I^T)``: the *normalised* kernel is
universal, its scale and the equipartition value are not (they depend on the embeddings).

>>> import numpy as np
>>> prob = EmbeddedProblem(V=np.array([[1.0, 0.5], [0.0, 2.0]]), Sx=np.eye(2), Se=np.eye(2))
>>> ws = entropic_minimum(prob, hidden=[3, 2], seed=0)
>>> bool(np.allclose(end_to_end(ws), prob.P))
True
>>> m = layer_second_moments(prob, ws)
>>> bool(np.allclose(m, m[0])), bool(np.isclose(m[0], 4 * prob.equipartition_value(3)))
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sympy as sp

from core.errors import InputError
from core.validation import as_numpy, check_int, check_invertible, check_spd, check_width, numerical_rank

# ============================================================================ symbolic


def layer_scales(D=None):
    """The scalar part of the minimum, symbolically: ``(s_k, T)`` as SymPy expressions in
    ``k, D, a, b, tau`` (all positive).

    ``s_k`` is the scale of the layer-k kernel ``B_k^T B_k = s_k (whitened) |M|``;
    ``T`` the common value of every ``T_i = E|grad_{W_i} l|^2 / 4``.

    >>> s, T = layer_scales()
    >>> a, b, tau, D, k = sp.symbols("a b tau D k", positive=True)
    >>> sp.simplify(T.subs(D, 2) - sp.sqrt(a * b) * tau)
    0
    """
    a, b, tau, k = sp.symbols("a b tau k", positive=True)
    Dsym = sp.Symbol("D", positive=True) if D is None else sp.Integer(D)
    s_k = b ** ((Dsym - k) / Dsym) * a ** (-k / Dsym) * tau ** (2 * k / Dsym - 1)
    T = (a * b) ** (1 / Dsym) * tau ** (2 * (Dsym - 1) / Dsym)
    return s_k, T


def prove_equipartition() -> dict:
    """Residuals (all exactly 0) showing that :func:`layer_scales` solves the balance
    conditions for *symbolic* depth D and layer k, and that every layer then carries the
    same ``T_i``.

    On the minimum, ``beta_k = s_k tau`` and ``alpha_k = tau / s_k`` (trace of the whitened
    kernels); boundaries ``beta_0 = b``, ``alpha_D = a``. Balance at hidden layer k:
    ``s_k^2 = beta_{k-1} / alpha_{k+1}``. Equipartition: ``T_i = alpha_i beta_{i-1}``.
    The log of ``s_k`` is linear in k (second difference 0) with two boundary values, so
    the solution is unique.

    >>> all(v == 0 for v in prove_equipartition().values())
    True
    """
    a, b, tau, k, D = sp.symbols("a b tau k D", positive=True)
    s_k, T = layer_scales()
    s = lambda j: s_k.subs(k, j)  # noqa: E731
    beta = lambda j: s(j) * tau  # noqa: E731  (j >= 1)
    alpha = lambda j: tau / s(j)  # noqa: E731  (j <= D-1)
    simp = lambda e: sp.simplify(sp.powsimp(sp.expand_power_base(e, force=True), force=True))  # noqa: E731
    res = {
        # middle hidden layers 2 <= k <= D-2
        "balance_middle": simp(s(k) ** 2 - beta(k - 1) / alpha(k + 1)),
        # first hidden layer (beta_0 = b), last hidden layer (alpha_D = a)
        "balance_first": simp(s(1) ** 2 - b / alpha(2)),
        "balance_last": simp(s(D - 1) ** 2 - beta(D - 2) / a),
        "balance_D2": simp((s_k.subs({D: 2, k: 1})) ** 2 - b / a),  # D = 2: both boundaries
        # equipartition: T_1 = alpha_1 b, T_i = alpha_i beta_{i-1}, T_D = a beta_{D-1}
        "T_first": simp(alpha(1) * b - T),
        "T_middle": simp(alpha(k) * beta(k - 1) - T),
        "T_last": simp(a * beta(D - 1) - T),
        "log_s_second_difference": simp(
            sp.expand_log(sp.log(s(k + 1)) - 2 * sp.log(s(k)) + sp.log(s(k - 1)), force=True)
        ),
    }
    return {name: sp.nsimplify(v) for name, v in res.items()}


def prove_balance_condition(n: int = 2) -> sp.Matrix:
    """Stationarity along the hidden-layer symmetry, derived entry by entry (n x n).

    Under ``W_k -> X W_k, W_{k+1} -> W_{k+1} X^{-1}`` only two terms of ``sum_i T_i`` move:
    ``beta_{k-1} Tr(X^{-T} Y X^{-1}) + alpha_{k+1} Tr(X C X^T)`` with ``Y = A_k^T N A_k``,
    ``C = B_k Su B_k^T``. Returns ``d/dX`` at ``X = I`` minus ``2 (alpha C - beta Y)``:
    the zero matrix, so the stationarity condition is ``alpha_{k+1} C = beta_{k-1} Y``.

    >>> prove_balance_condition(2) == sp.zeros(2, 2)
    True
    """
    al, be = sp.symbols("alpha beta", positive=True)
    X = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"x{i}{j}"))
    Y = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"y{min(i, j)}{max(i, j)}"))
    C = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"c{min(i, j)}{max(i, j)}"))
    Xi = X.inv()
    F = be * (Xi.T * Y * Xi).trace() + al * (X * C * X.T).trace()
    at_identity = {X[i, j]: int(i == j) for i in range(n) for j in range(n)}
    grad = sp.Matrix(n, n, lambda i, j: sp.diff(F, X[i, j]).subs(at_identity))
    return sp.simplify(grad - 2 * (al * C - be * Y))


def prove_riccati_invariance(n: int = 2) -> dict:
    """Exact residuals (zero matrices) for generic symbolic n x n ``M_I, M_O, Z, V, Se, Sx``.

    1. From balance to Riccati (noncommutative algebra, any sizes):
       ``K_u Su K_u = B^T (B Su B^T) B = c B^T A^T N A B = c P^T N P`` with ``K_u = B^T B``.
    2. In x-coordinates ``K = G^T K_u G`` (``G = M_I Z``):
       ``K Sx K = G^T K_u Su K_u G = c (P G)^T N (P G)`` and ``(P G)^T N (P G) = V^T Se V``
       for every invertible M_I, M_O, Z - the residual below is computed with generic
       symbolic entries.
    3. The geometric mean solves it: with ``R^2 = Sx^{1/2} W Sx^{1/2}``,
       ``K = Sx^{-1/2} R Sx^{-1/2}`` gives ``K Sx K = W`` (noncommutative check).

    >>> r = prove_riccati_invariance(2)
    >>> [v.is_zero_matrix if isinstance(v, sp.MatrixBase) else v == 0 for v in r.values()]
    [True, True, True]
    """
    # 1 & 3: noncommutative symbols stand for matrices of any compatible sizes.
    A, B, Su, N = sp.symbols("A B Su N", commutative=False)
    c = sp.Symbol("c", positive=True)
    At, Bt = sp.symbols("At Bt", commutative=False)  # transposes as independent letters
    balance_inner = c * At * N * A  # = B Su B^T by the balance condition
    lhs = Bt * balance_inner * B  # = (B^T B) Su (B^T B) after substituting B Su B^T
    rhs = c * (Bt * At) * N * (A * B)  # c P^T N P with P = A B, P^T = B^T A^T
    res1 = sp.expand(lhs - rhs)
    Sh, Shi, R, W = sp.symbols("Sh Shi R W", commutative=False)  # Sx^{1/2}, Sx^{-1/2}
    K = Shi * R * Shi
    KSK = sp.expand(K * (Sh * Sh) * K)
    # Shi*Sh = 1, then R*R = Sh W Sh, then Shi Sh = 1 again
    KSK = KSK.subs(Shi * Sh * Sh * Shi, 1).subs(R * R, Sh * W * Sh)
    KSK = sp.expand(KSK).subs(Shi * Sh, 1).subs(Sh * Shi, 1)
    res3 = sp.expand(KSK - W)

    # 2: explicit generic matrices
    def gen(name):
        return sp.Matrix(n, n, lambda i, j: sp.Symbol(f"{name}{i}{j}"))

    def sym(name):
        return sp.Matrix(n, n, lambda i, j: sp.Symbol(f"{name}{min(i, j)}{max(i, j)}"))

    M_I, M_O, Z, V = gen("mi"), gen("mo"), gen("z"), gen("v")
    Se = sym("se")
    G = M_I * Z
    P = M_O.inv() * V * G.inv()
    Nmat = M_O.T * Se * M_O
    res2 = ((P * G).T * Nmat * (P * G) - V.T * Se * V).applyfunc(sp.cancel)
    return {"balance_to_riccati": res1, "embedding_cancels": res2, "geometric_mean_solves": res3}


# ============================================================================ numeric closed form


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """The PSD square root. ``eigh`` knows an eigenvalue only to ~ n eps |a|, so one below that
    is zero (a rank-deficient input); its square root would otherwise be ~ 1e-8, not 0."""
    w, U = np.linalg.eigh((a + a.T) / 2)
    floor = a.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 0.0)
    return (U * np.sqrt(np.where(w > floor, w, 0.0))) @ U.T


def _invsqrtm_spd(a: np.ndarray) -> np.ndarray:
    w, U = np.linalg.eigh((a + a.T) / 2)
    return (U / np.sqrt(w)) @ U.T


def platonic_kernel(V, Sx, Se) -> np.ndarray:
    """``Sx^{-1} # (V^T Se V) = Sx^{-1/2} (Sx^{1/2} V^T Se V Sx^{1/2})^{1/2} Sx^{-1/2}``:
    the hidden-layer kernel (up to the layer's scale) in input coordinates.

    >>> K = platonic_kernel(np.diag([2.0, 1.0]), np.eye(2), np.eye(2))
    >>> np.round(K, 12).tolist()
    [[2.0, 0.0], [0.0, 1.0]]
    """
    V = as_numpy("V", V, ndim=2)
    Sx = check_spd("Sx", Sx)
    Se = check_spd("Se", Se)
    h = _sqrtm_psd(Sx)
    hi = _invsqrtm_spd(Sx)
    return hi @ _sqrtm_psd(h @ V.T @ Se @ V @ h) @ hi


@dataclass
class EmbeddedProblem:
    """Teacher ``y = V x + e`` plus the fixed maps of one embedded network (None = identity)."""

    V: np.ndarray
    Sx: np.ndarray
    Se: np.ndarray
    Z: np.ndarray | None = None
    M_I: np.ndarray | None = None
    M_O: np.ndarray | None = None

    def __post_init__(self):
        self.V = as_numpy("V", self.V, ndim=2)
        self.Sx = check_spd("Sx", self.Sx)
        self.Se = check_spd("Se", self.Se)
        dy, dx = self.V.shape
        if self.Sx.shape[0] != dx or self.Se.shape[0] != dy:
            raise InputError(f"Sx {self.Sx.shape} / Se {self.Se.shape} do not match V {self.V.shape}")
        self.Z = np.eye(dx) if self.Z is None else check_invertible("Z", self.Z)
        self.M_I = np.eye(self.Z.shape[0]) if self.M_I is None else check_invertible("M_I", self.M_I)
        self.M_O = np.eye(dy) if self.M_O is None else check_invertible("M_O", self.M_O)
        if self.Z.shape[0] != dx or self.M_I.shape[0] != dx or self.M_O.shape[0] != dy:
            raise InputError("Z, M_I must be dx x dx and M_O dy x dy (invertible)")

    @property
    def G(self):
        return self.M_I @ self.Z

    @property
    def Su(self):
        return self.G @ self.Sx @ self.G.T

    @property
    def N(self):
        return self.M_O.T @ self.Se @ self.M_O

    @property
    def P(self):
        """The product ``W_D ... W_1`` of every global minimum of L."""
        return np.linalg.solve(self.M_O, self.V) @ np.linalg.inv(self.G)

    @property
    def rank(self) -> int:
        return numerical_rank("V", self.V)

    def whitened_svd(self):
        """SVD of ``N^{1/2} P Su^{1/2}`` (singular values = those of Se^{1/2} V Sx^{1/2})."""
        Mw = _sqrtm_psd(self.N) @ self.P @ _sqrtm_psd(self.Su)
        U, s, Vt = np.linalg.svd(Mw)
        r = self.rank
        return U[:, :r], s[:r], Vt[:r].T

    @property
    def a(self) -> float:
        return float(np.trace(self.N))

    @property
    def b(self) -> float:
        return float(np.trace(self.Su))

    @property
    def tau(self) -> float:
        return float(np.sum(self.whitened_svd()[1]))

    def layer_scale(self, D: int, k: int) -> float:
        """``s_k``: ``K_k = s_k * platonic_kernel`` at hidden layer k of a depth-D net."""
        if not 1 <= k <= D - 1:
            raise InputError(f"hidden layer index k must be in 1..{D - 1}, got {k}")
        return self.b ** ((D - k) / D) * self.a ** (-k / D) * self.tau ** (2 * k / D - 1)

    def equipartition_value(self, D: int) -> float:
        """``T = (ab)^{1/D} tau^{2(D-1)/D}``; each ``E|grad_{W_i} l|^2 = 4 T`` (batch 1)."""
        if check_int("depth D", D) < 2:
            raise InputError(f"depth D must be at least 2 (one hidden layer), got {D}")
        return (self.a * self.b) ** (1 / D) * self.tau ** (2 * (D - 1) / D)

    def kernel(self, D: int, k: int) -> np.ndarray:
        """Predicted ``K_k = (B_k G)^T (B_k G)`` at the entropic minimum."""
        return self.layer_scale(D, k) * platonic_kernel(self.V, self.Sx, self.Se)


def _partial_isometry(rng, h: int, r: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((h, r)))
    return q[:, :r]


def entropic_minimum(problem: EmbeddedProblem, hidden: Sequence[int], seed: int = 0) -> list:
    """One global minimiser ``[W_1, ..., W_D]`` of the entropic loss (gam = 0).

    Whitened coordinates: ``N^{1/2} P Su^{1/2} = U S Vr^T``. Layer k's input-side factor is
    ``B_k = s_k^{1/2} Q_k S^{1/2} Vr^T Su^{-1/2}`` with random partial isometries ``Q_k``
    (``Q_k^T Q_k = I_r``: the surviving rotational freedom). So ``W_1 = B_1``, middle layers
    ``W_k = (s_k/s_{k-1})^{1/2} Q_k Q_{k-1}^T`` (scaled partial isometries) and
    ``W_D = s_{D-1}^{-1/2} N^{-1/2} U S^{1/2} Q_{D-1}^T``.
    """
    if len(hidden) == 0:
        raise InputError("a deep linear net needs at least one hidden layer (hidden=[] given)")
    hidden = [check_width(f"hidden width {i + 1}", h, 1) for i, h in enumerate(hidden)]
    r = problem.rank
    for i, h in enumerate(hidden):
        check_width(f"hidden width {i + 1}", h, r)
    D = len(hidden) + 1
    rng = np.random.default_rng(seed)
    U, s, Vr = problem.whitened_svd()
    Qs = [_partial_isometry(rng, h, r) for h in hidden]
    sc = [problem.layer_scale(D, k) for k in range(1, D)]
    S_half = np.diag(np.sqrt(s))
    W = [np.sqrt(sc[0]) * Qs[0] @ S_half @ Vr.T @ _invsqrtm_spd(problem.Su)]
    for k in range(1, D - 1):
        W.append(np.sqrt(sc[k] / sc[k - 1]) * Qs[k] @ Qs[k - 1].T)
    W.append(_invsqrtm_spd(problem.N) @ U @ S_half @ Qs[-1].T / np.sqrt(sc[-1]))
    return W


def end_to_end(weights: Sequence[np.ndarray]) -> np.ndarray:
    P = weights[0]
    for W in weights[1:]:
        P = W @ P
    return P


def _prefix_suffix(weights):
    D = len(weights)
    B = [np.eye(weights[0].shape[1])]  # B_0 = I
    for W in weights:
        B.append(W @ B[-1])
    A = [None] * (D + 1)
    A[D] = np.eye(weights[-1].shape[0])  # A_D = I
    for i in range(D - 1, -1, -1):
        A[i] = A[i + 1] @ weights[i]
    return A, B


def layer_second_moments(problem: EmbeddedProblem, weights) -> np.ndarray:
    """``E|grad_{W_i} l|^2 = 4 Tr(A_i^T N A_i) Tr(B_{i-1} Su B_{i-1}^T)``, i = 1..D, valid on
    the minimum manifold (where ``f - y = -e``)."""
    A, B = _prefix_suffix(weights)
    D = len(weights)
    return np.array(
        [4 * np.trace(A[i].T @ problem.N @ A[i]) * np.trace(B[i - 1] @ problem.Su @ B[i - 1].T) for i in range(1, D + 1)]
    )


def hidden_kernels(problem: EmbeddedProblem, weights) -> list:
    """``K_k = (B_k G)^T (B_k G)`` for k = 1..D-1 (input coordinates x)."""
    _, B = _prefix_suffix(weights)
    return [(B[k] @ problem.G).T @ (B[k] @ problem.G) for k in range(1, len(weights))]


def balance_residuals(problem: EmbeddedProblem, weights) -> list:
    """Relative residual of ``alpha_{k+1} B_k Su B_k^T - beta_{k-1} A_k^T N A_k`` per hidden layer."""
    A, B = _prefix_suffix(weights)
    D = len(weights)
    out = []
    for k in range(1, D):
        alpha = np.trace(A[k + 1].T @ problem.N @ A[k + 1])
        beta = np.trace(B[k - 1] @ problem.Su @ B[k - 1].T)
        lhs = alpha * B[k] @ problem.Su @ B[k].T
        rhs = beta * A[k].T @ problem.N @ A[k]
        out.append(float(np.linalg.norm(lhs - rhs) / np.linalg.norm(lhs)))
    return out


def normalised(K: np.ndarray) -> np.ndarray:
    return K / np.linalg.norm(K)


def entropy_on_manifold(problem: EmbeddedProblem, weights, kappa: float = 0.0) -> float:
    """``F = sum_i T_i + kappa |theta|^2`` (T_i = E|grad_{W_i} l|^2 / 4)."""
    return float(layer_second_moments(problem, weights).sum() / 4 + kappa * sum((w**2).sum() for w in weights))


def weight_balanced_kernel(problem: EmbeddedProblem, D: int, k: int) -> np.ndarray:
    """Theorem 9's other limit (eta -> 0 at fixed gam > 0, i.e. kappa -> inf): weight
    balance ``W_i W_i^T = W_{i+1}^T W_{i+1}`` makes ``B_k^T B_k = (P^T P)^{k/D}``, so
    ``K_k = G^T (P^T P)^{k/D} G`` - it depends on M_I, Z, M_O and on k."""
    P = problem.P
    w, U = np.linalg.eigh(P.T @ P)
    Pk = (U * np.clip(w, 0, None) ** (k / D)) @ U.T
    return problem.G.T @ Pk @ problem.G


def population_cosine(K1: np.ndarray, K2: np.ndarray, Sx: np.ndarray) -> float:
    """Large-test-set limit of the Gram-matrix cosine of two linear kernels:
    ``Tr(K1 Sx K2 Sx) / sqrt(Tr((K1 Sx)^2) Tr((K2 Sx)^2))`` (off-diagonal pairs dominate)."""
    num = np.trace(K1 @ Sx @ K2 @ Sx)
    return float(num / np.sqrt(np.trace(K1 @ Sx @ K1 @ Sx) * np.trace(K2 @ Sx @ K2 @ Sx)))
