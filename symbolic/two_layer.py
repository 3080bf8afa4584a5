r"""Two-layer linear network ``l = |U W x - y|^2``, ``y = V x + e``: the entropic optimum in closed form.

Notation (docs/theory.md §6): ``Sx = E xx^T``, ``Se = E ee^T`` (e independent of x, mean zero),
``a = Tr Se``, ``b = Tr Sx``, ``M = Se^{1/2} V Sx^{1/2} = P S R^T`` (thin SVD, rank r).

What is *derived* here (not assumed):

1. ``derive_entropy_on_manifold``: SymPy differentiates the per-sample loss, squares the
   gradients and takes the expectation over (x, e) using only second moments and
   independence; on ``U W = V`` the result is ``4 a Tr(W Sx W^T)`` (layer U) plus
   ``4 b Tr(U^T Se U)`` (layer W), residual 0.
2. ``derive_total_sharpness``: SymPy takes the population loss L (same expectation) and sums
   its second derivatives: ``Tr hess L = 2 d_y Tr(W Sx W^T) + 2 b |U|_F^2`` everywhere, residual 0.
3. The minimiser. With ``X = W^T W`` (square invertible case) the entropy is
   ``F(X) = a Tr(Sx X) + b Tr(V^T Se V X^{-1})``, convex on the SPD cone, so its unique
   stationary point ``X Sx X = (b/a) V^T Se V`` (a Riccati equation) is the global minimum;
   ``U U^T = Y`` solves ``Y Se Y = (a/b) V Sx V^T``. The general case (any width >= r, any
   rank) follows from whitening ``W~ = W Sx^{1/2}, U~ = Se^{1/2} U`` and the inequality
   ``a|W~|^2 + b|U~|^2 >= 2 sqrt(ab) |U~||W~| >= 2 sqrt(ab) |M|_*`` (AM-GM, whose
   sum-of-squares form SymPy checks, then Cauchy-Schwarz); equality gives

       U = (a/b)^{1/4} Se^{-1/2} P S^{1/2} Q^T,   W = (b/a)^{1/4} Q S^{1/2} R^T Sx^{-1/2},

   ``Q`` any h x r matrix with orthonormal columns. ``diagonal_case`` checks every step
   exactly for symbolic diagonal data; ``entropic_optimum`` evaluates it at 40 digits
   (mpmath) for concrete matrices and reports the Riccati/Lagrange residuals.

>>> import numpy as np
>>> opt = entropic_optimum(np.eye(2), np.eye(2), np.diag([1.0, 0.25]))
>>> round(opt.min_entropy, 10), round(opt.sharpness, 8), round(opt.min_sharpness, 10)
(18.973665961, 17.07629936, 16.0)
>>> opt.riccati_residual < 1e-35
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from core.errors import InputError
from core.validation import as_numpy, check_int, check_spd, check_width, numerical_rank

DPS_MIN = 15  # float64 inputs carry ~16 digits: evaluating with fewer throws precision away

# ============================================================================ expectations


def expectation_over_data(expr, x, e, Sx, Se):
    """``E[expr]`` for a polynomial in the entries of ``x`` and ``e``.

    Uses only what the model states: x and e are independent, mean zero, with second
    moments ``Sx`` and ``Se``. Monomials that would need third or fourth moments of one
    variable are refused (they never occur in this module's derivations).

    >>> x = sp.symbols("x0:2"); e = sp.symbols("e0:1")
    >>> Sx = sp.Matrix([[2, 1], [1, 3]]); Se = sp.Matrix([[5]])
    >>> expectation_over_data(x[0] * x[1] * e[0] ** 2 + x[0] + 7, x, e, Sx, Se)
    12
    """
    x, e = list(x), list(e)
    poly = sp.Poly(sp.expand(expr), *x, *e)
    nx = len(x)
    total = sp.Integer(0)
    for monom, coeff in poly.terms():
        mx, me = monom[:nx], monom[nx:]
        total += coeff * _second_moment(mx, Sx) * _second_moment(me, Se)
    return sp.expand(total)


def _second_moment(exponents, S):
    """E of a monomial of degree 0 or 2 in one mean-zero vector; degree 1 -> 0."""
    deg = sum(exponents)
    if deg == 0:
        return sp.Integer(1)
    if deg == 1:
        return sp.Integer(0)
    if deg == 2:
        idx = [i for i, k in enumerate(exponents) for _ in range(k)]
        return S[idx[0], idx[1]]
    raise ValueError(f"monomial of degree {deg} in one variable needs higher moments than the model states")


def _sym_matrix(name, rows, cols, symmetric=False):
    if symmetric:
        return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}{min(i, j)}{max(i, j)}", real=True))
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}{i}{j}", real=True))


@dataclass
class SymbolicSetup:
    """Generic symbolic matrices for dimensions (dx, h, dy)."""

    dx: int
    h: int
    dy: int
    U: sp.Matrix = field(init=False)
    W: sp.Matrix = field(init=False)
    V: sp.Matrix = field(init=False)
    Sx: sp.Matrix = field(init=False)
    Se: sp.Matrix = field(init=False)
    x: sp.Matrix = field(init=False)
    e: sp.Matrix = field(init=False)

    def __post_init__(self):
        self.U = _sym_matrix("u", self.dy, self.h)
        self.W = _sym_matrix("w", self.h, self.dx)
        self.V = _sym_matrix("v", self.dy, self.dx)
        self.Sx = _sym_matrix("sx", self.dx, self.dx, symmetric=True)
        self.Se = _sym_matrix("se", self.dy, self.dy, symmetric=True)
        self.x = sp.Matrix(sp.symbols(f"x0:{self.dx}", real=True))
        self.e = sp.Matrix(sp.symbols(f"e0:{self.dy}", real=True))

    def loss(self, V=None):
        """Per-sample loss ``|U W x - (V x + e)|^2``."""
        V = self.V if V is None else V
        r = self.U * self.W * self.x - V * self.x - self.e
        return (r.T * r)[0, 0]


def _grad_sq(l, M):
    return sum(sp.diff(l, m) ** 2 for m in M)


@dataclass
class EntropyDerivation:
    grad_sq_U: sp.Expr  # E|grad_U l|^2 on the manifold, derived
    grad_sq_W: sp.Expr
    residual_U: sp.Expr  # derived minus 4 a Tr(W Sx W^T)
    residual_W: sp.Expr  # derived minus 4 b Tr(U^T Se U)


def derive_entropy_on_manifold(dx: int = 2, h: int = 2, dy: int = 2) -> EntropyDerivation:
    """Per-sample gradient second moments on ``U W = V``, derived from ``l`` by SymPy.

    On the manifold ``V = U W`` is substituted before differentiating (the gradient is
    taken at a point of the manifold, with V held fixed).

    >>> d = derive_entropy_on_manifold(1, 1, 1)
    >>> d.residual_U, d.residual_W
    (0, 0)
    """
    s = SymbolicSetup(dx, h, dy)
    l = s.loss()
    on_manifold = dict(zip(list(s.V), list(s.U * s.W)))
    gU = expectation_over_data(_grad_sq(l, s.U).subs(on_manifold), s.x, s.e, s.Sx, s.Se)
    gW = expectation_over_data(_grad_sq(l, s.W).subs(on_manifold), s.x, s.e, s.Sx, s.Se)
    a, b = s.Se.trace(), s.Sx.trace()
    fU = 4 * a * (s.W * s.Sx * s.W.T).trace()
    fW = 4 * b * (s.U.T * s.Se * s.U).trace()
    return EntropyDerivation(gU, gW, sp.expand(gU - fU), sp.expand(gW - fW))


def derive_total_sharpness(dx: int = 2, h: int = 2, dy: int = 2):
    """``(Tr hess L, residual)`` with L = E l derived by SymPy; the residual is
    ``Tr hess L - (2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|_F^2)`` at a *generic* point (not only
    at minima).

    >>> derive_total_sharpness(1, 2, 1)[1]
    0
    """
    s = SymbolicSetup(dx, h, dy)
    L = expectation_over_data(s.loss(), s.x, s.e, s.Sx, s.Se)
    params = list(s.U) + list(s.W)
    trace = sp.expand(sum(sp.diff(L, p, 2) for p in params))
    formula = 2 * dy * (s.W * s.Sx * s.W.T).trace() + 2 * s.Sx.trace() * sum(u**2 for u in s.U)
    return trace, sp.expand(trace - formula)


def amgm_sum_of_squares_residual():
    """AM-GM step as an identity: ``a X^2 + b Y^2 - 2 sqrt(ab) X Y - (sqrt(a) X - sqrt(b) Y)^2``.

    >>> amgm_sum_of_squares_residual()
    0
    """
    a, b = sp.symbols("a b", positive=True)
    X, Y = sp.symbols("X Y", real=True)
    return sp.simplify(sp.expand(a * X**2 + b * Y**2 - 2 * sp.sqrt(a * b) * X * Y - (sp.sqrt(a) * X - sp.sqrt(b) * Y) ** 2))


# ============================================================================ exact diagonal case


@dataclass
class DiagonalCase:
    """Exact closed forms for ``Sx = diag(s)``, ``Se = diag(n)``, ``V = diag(v)`` (all positive)."""

    n: int
    s: tuple
    noise: tuple
    v: tuple
    U: sp.Matrix
    W: sp.Matrix
    min_entropy: sp.Expr
    sharpness: sp.Expr
    min_sharpness: sp.Expr
    residuals: dict  # name -> simplified residual (all must be 0)


def diagonal_case(n: int = 2) -> DiagonalCase:
    """Derive and check the entropic optimum exactly for symbolic diagonal n x n data.

    Checks (each residual simplifies to 0): U W = V; the Riccati equations for W^T W and
    U U^T; the Lagrange conditions ``grad_U F = Lam W^T``, ``grad_W F = U^T Lam``; the
    direct minimisation of F along the diagonal family (``dF/dw_i = 0`` solved by SymPy,
    the positive root compared with the closed form); equal layer gradient moments; the
    minimal entropy ``8 sqrt(ab) Tr S``; the sharpness formula at the optimum.

    >>> dc = diagonal_case(2)
    >>> all(r == 0 for r in dc.residuals.values())
    True
    """
    s = sp.symbols(f"s0:{n}", positive=True)
    nz = sp.symbols(f"n0:{n}", positive=True)
    v = sp.symbols(f"v0:{n}", positive=True)
    Sx, Se, V = sp.diag(*s), sp.diag(*nz), sp.diag(*v)
    a, b = sum(nz), sum(s)
    S = [sp.sqrt(nz[i]) * v[i] * sp.sqrt(s[i]) for i in range(n)]  # M = diag(S); P = R = Q = I
    W = sp.diag(*[(b / a) ** sp.Rational(1, 4) * sp.sqrt(S[i]) / sp.sqrt(s[i]) for i in range(n)])
    U = sp.diag(*[(a / b) ** sp.Rational(1, 4) * sp.sqrt(S[i]) / sp.sqrt(nz[i]) for i in range(n)])
    res = {}
    zero = lambda m: sp.simplify(m) if not isinstance(m, sp.MatrixBase) else sp.simplify(m).applyfunc(sp.simplify)  # noqa: E731
    res["U W = V"] = _mat_zero(U * W - V)
    res["Riccati W^T W"] = _mat_zero((W.T * W) * Sx * (W.T * W) - (b / a) * V.T * Se * V)
    res["Riccati U U^T"] = _mat_zero((U * U.T) * Se * (U * U.T) - (a / b) * V * Sx * V.T)
    Lam = 2 * sp.sqrt(a * b) * sp.diag(*[sp.sqrt(nz[i]) * sp.sqrt(s[i]) for i in range(n)])  # Se^{1/2} P R^T Sx^{1/2}
    res["Lagrange U"] = _mat_zero(2 * b * Se * U - Lam * W.T)
    res["Lagrange W"] = _mat_zero(2 * a * W * Sx - U.T * Lam)
    # direct minimisation along W = diag(w), U = V W^{-1}
    w = sp.symbols(f"w0:{n}", positive=True)
    F = a * sum(s[i] * w[i] ** 2 for i in range(n)) + b * sum(nz[i] * v[i] ** 2 / w[i] ** 2 for i in range(n))
    for i in range(n):
        sols = sp.solve(sp.diff(F, w[i]), w[i])
        pos = [r for r in sols if r.is_positive]
        res[f"dF/dw{i} = 0 root"] = (sp.simplify(pos[0] ** 4 - W[i, i] ** 4) if len(pos) == 1
                                     else sp.Symbol("no_unique_positive_root"))
        res[f"d2F/dw{i}^2 > 0"] = 0 if sp.simplify(sp.diff(F, w[i], 2)).is_positive else sp.Symbol("not_convex")
    gU = 4 * a * (W * Sx * W.T).trace()
    gW = 4 * b * (U.T * Se * U).trace()
    res["equal layer gradient moments"] = zero(gU - gW)
    min_entropy = sp.simplify(gU + gW)
    res["min entropy = 8 sqrt(ab) Tr S"] = zero(min_entropy - 8 * sp.sqrt(a * b) * sum(S))
    sharp = sp.simplify(2 * n * (W * Sx * W.T).trace() + 2 * b * sum(u**2 for u in U))
    T_star = 2 * n * sp.sqrt(b / a) * sum(S) + 2 * sp.sqrt(a * b) * sum(S[i] / nz[i] for i in range(n))
    res["T* formula"] = zero(sharp - T_star)
    # T/2 = d_y Tr(W Sx W^T) + b Tr(U^T I U) is the entropy/4 with (Se, a) -> (I, d_y), so the
    # minimal sharpness over the manifold is twice that minimum (same derivation, Se = I).
    T_min = 4 * sp.sqrt(n * b) * sum(v[i] * sp.sqrt(s[i]) for i in range(n))
    res["T_min = 2 F_min(Se = I)"] = zero(2 * (min_entropy / 4).subs({nz[i]: 1 for i in range(n)}) - T_min)
    return DiagonalCase(n, s, nz, v, U, W, min_entropy, sharp, T_min, res)


def _mat_zero(m: sp.Matrix):
    """0 if every entry simplifies to zero, else the simplified matrix."""
    m = m.applyfunc(lambda z: sp.simplify(sp.powsimp(sp.expand(z), force=True)))
    return 0 if all(z == 0 for z in m) else m


# ============================================================================ paper's examples


def label_noise_example():
    """Eq. 18 reconstructed: ``V = Sx = I_2``, ``Se = diag(1, delta)``.

    Substitutes into the exact ``diagonal_case(2)`` optimum. Returns
    ``(T_star(delta), T_min, limit of T_star as delta -> 0+, leading term as delta -> 0)``.

    >>> T, Tmin, lim, lead = label_noise_example()
    >>> Tmin, lim, lead
    (16, oo, 2*sqrt(2)/sqrt(delta))
    """
    d = sp.Symbol("delta", positive=True)
    dc = diagonal_case(2)
    sub = {dc.s[0]: 1, dc.s[1]: 1, dc.v[0]: 1, dc.v[1]: 1, dc.noise[0]: 1, dc.noise[1]: d}
    T = sp.simplify(dc.sharpness.subs(sub))
    T_min = sp.simplify(dc.min_sharpness.subs(sub))
    lead = sp.limit(T * sp.sqrt(d), d, 0, "+") / sp.sqrt(d)
    return T, T_min, sp.limit(T, d, 0, "+"), lead


def noise_equals_input_example(d: int = 2):
    """Eq. 19 reconstructed: ``Se = Sx = diag(lam_1..lam_d)``, ``V = I``.

    Substitutes into the exact ``diagonal_case(d)``: ``M = Sx``, ``a = b = Tr Sx``,
    ``T* = 4 d Tr Sx`` and ``T_min = 4 sqrt(d Tr Sx) Tr Sx^{1/2}``; ``T* >= T_min`` is
    Cauchy-Schwarz ``(sum sqrt(lam))^2 <= d sum lam``. Returns
    ``(T_star, T_min, lam symbols, lim T*/T_min for Sx = diag(1, eps, ..., eps), eps -> 0)``.

    >>> T, Tmin, lam, ratio = noise_equals_input_example(2)
    >>> T, ratio
    (8*lam0 + 8*lam1, sqrt(2))
    """
    dc = diagonal_case(d)
    lam = sp.symbols(f"lam0:{d}", positive=True)
    sub = {**{dc.s[i]: lam[i] for i in range(d)}, **{dc.noise[i]: lam[i] for i in range(d)},
           **{dc.v[i]: 1 for i in range(d)}}
    T = sp.expand(sp.simplify(dc.sharpness.subs(sub)))
    T_min = sp.simplify(dc.min_sharpness.subs(sub))
    eps = sp.Symbol("eps", positive=True)
    imbalanced = {lam[0]: 1, **{lam[i]: eps for i in range(1, d)}}
    ratio = sp.limit(sp.simplify((T / T_min).subs(imbalanced)), eps, 0, "+")
    return T, T_min, lam, ratio


# ============================================================================ concrete matrices


@dataclass
class TwoLayerOptimum:
    """The entropic optimum for concrete (V, Sx, Se), in float64 (from a 40-digit evaluation).

    Q-free invariants: ``WtW``, ``UUt``, ``WSxWt_spectrum`` (non-zero part, descending),
    ``min_entropy`` (per-sample E|grad l|^2), ``grad_moment`` (each layer's share),
    ``sharpness`` (T*), ``min_sharpness`` (T_min). ``U``, ``W`` are one representative
    (the given Q, or Q = [I_r; 0]).
    """

    U: np.ndarray
    W: np.ndarray
    WtW: np.ndarray
    UUt: np.ndarray
    WSxWt_spectrum: np.ndarray
    singular_values: np.ndarray
    a: float
    b: float
    rank: int
    min_entropy: float
    grad_moment: float
    sharpness: float
    min_sharpness: float
    manifold_residual: float  # |U W - V| at 40 digits
    riccati_residual: float  # |X Sx X - (b/a) V^T Se V| + |Y Se Y - (a/b) V Sx V^T|
    lagrange_residual: float  # |2b Se U - Lam W^T| + |2a W Sx - U^T Lam|
    equality_gap: float  # |P^T Se^{-1} P - (dy/a) I|: zero iff T* = T_min


def _mp(a):
    return mpmath.matrix(np.asarray(a, dtype=np.float64).tolist())


def _mp_sym_pow(A, p):
    """A^p for a symmetric positive-definite mp matrix (eigendecomposition)."""
    E, Qm = mpmath.eigsy(A)
    return Qm * mpmath.diag([mpmath.power(ev, p) for ev in E]) * Qm.T


def _mp_np(A) -> np.ndarray:
    return np.array(A.tolist(), dtype=np.float64)


def _mp_norm(A) -> float:
    return float(mpmath.sqrt(sum(abs(A[i, j]) ** 2 for i in range(A.rows) for j in range(A.cols))))


def entropic_optimum(V, Sx, Se, width: int | None = None, Q=None, dps: int = 40) -> TwoLayerOptimum:
    """The closed-form entropic optimum of the two-layer net, evaluated at ``dps`` digits.

    ``width`` (default r = rank V) is the hidden width; ``Q`` (h x r, orthonormal columns)
    picks the representative (default ``[I_r; 0]``). Raises InputError for non-SPD
    covariances, shape mismatches or a width below rank V.
    """
    if check_int("dps", dps) < DPS_MIN:
        raise InputError(f"dps must be at least {DPS_MIN} (the inputs are float64: fewer digits lose precision), got {dps}")
    V = as_numpy("V", V, ndim=2)
    Sx = check_spd("Sx", Sx)
    Se = check_spd("Se", Se)
    Sx, Se = (Sx + Sx.T) / 2, (Se + Se.T) / 2  # covariances are symmetric: drop round-off asymmetry
    dy, dx = V.shape
    if Sx.shape[0] != dx or Se.shape[0] != dy:
        raise InputError(f"shapes do not match: V {V.shape}, Sx {Sx.shape}, Se {Se.shape}")
    with mpmath.workdps(dps):
        mV, mSx, mSe = _mp(V), _mp(Sx), _mp(Se)
        Sx_h, Se_h = _mp_sym_pow(mSx, 0.5), _mp_sym_pow(mSe, 0.5)
        Sx_mh, Se_mh = _mp_sym_pow(mSx, -0.5), _mp_sym_pow(mSe, -0.5)
        a = sum(mSe[i, i] for i in range(dy))
        b = sum(mSx[i, i] for i in range(dx))
        Pm, sv, Rt = mpmath.svd_r(Se_h * mV * Sx_h)
        r = numerical_rank("V", V)  # the suite's one rank threshold (whitening keeps the rank)
        if r == 0:
            raise InputError("V is zero: the target map has rank 0 (nothing to learn)")
        h = r if width is None else check_width("width", width, r)
        P = Pm[:, :r]
        R = Rt[:r, :].T
        S = mpmath.diag([sv[i] for i in range(r)])
        S_h = mpmath.diag([mpmath.sqrt(sv[i]) for i in range(r)])
        if Q is None:
            Qm = mpmath.zeros(h, r)
            for i in range(r):
                Qm[i, i] = 1
        else:
            Qm = _mp(Q)
            if (Qm.rows, Qm.cols) != (h, r) or _mp_norm(Qm.T * Qm - mpmath.eye(r)) > 1e-12:
                raise InputError(f"Q must be {h} x {r} with orthonormal columns")
        U = mpmath.power(a / b, 0.25) * Se_mh * P * S_h * Qm.T
        W = mpmath.power(b / a, 0.25) * Qm * S_h * R.T * Sx_mh
        X, Y = W.T * W, U * U.T
        ric = _mp_norm(X * mSx * X - (b / a) * mV.T * mSe * mV) + _mp_norm(Y * mSe * Y - (a / b) * mV * mSx * mV.T)
        Lam = 2 * mpmath.sqrt(a * b) * Se_h * P * R.T * Sx_h
        lag = _mp_norm(2 * b * mSe * U - Lam * W.T) + _mp_norm(2 * a * W * mSx - U.T * Lam)
        trS = sum(sv[i] for i in range(r))
        Se_inv = _mp_sym_pow(mSe, -1)
        T_star = 2 * dy * mpmath.sqrt(b / a) * trS + 2 * mpmath.sqrt(a * b) * sum(
            (S * P.T * Se_inv * P)[i, i] for i in range(r))
        nuc = sum(mpmath.svd_r(mV * Sx_h, compute_uv=False))
        T_min = 4 * mpmath.sqrt(dy * b) * nuc
        eq_gap = _mp_norm(P.T * Se_inv * P - (dy / a) * mpmath.eye(r))
        spec = sorted([mpmath.sqrt(b / a) * sv[i] for i in range(r)], reverse=True)
        return TwoLayerOptimum(
            U=_mp_np(U), W=_mp_np(W), WtW=_mp_np(X), UUt=_mp_np(Y),
            WSxWt_spectrum=np.array([float(z) for z in spec]), singular_values=np.array([float(sv[i]) for i in range(r)]),
            a=float(a), b=float(b), rank=r,
            min_entropy=float(8 * mpmath.sqrt(a * b) * trS), grad_moment=float(4 * mpmath.sqrt(a * b) * trS),
            sharpness=float(T_star), min_sharpness=float(T_min),
            manifold_residual=_mp_norm(U * W - mV), riccati_residual=ric, lagrange_residual=lag,
            equality_gap=float(eq_gap),
        )


def entropy_on_manifold(U, W, Sx, Se) -> float:
    """Per-sample ``E|grad l|^2 = 4 (a Tr(W Sx W^T) + b Tr(U^T Se U))`` (valid where U W = V).

    >>> entropy_on_manifold(np.eye(2), np.eye(2), np.eye(2), np.eye(2))
    32.0
    """
    U, W, Sx, Se = (np.asarray(z, dtype=np.float64) for z in (U, W, Sx, Se))
    return float(4 * (np.trace(Se) * np.trace(W @ Sx @ W.T) + np.trace(Sx) * np.trace(U.T @ Se @ U)))


def total_sharpness(U, W, Sx) -> float:
    """``Tr hess L = 2 d_y Tr(W Sx W^T) + 2 Tr(Sx) |U|_F^2`` (any U, W; see derive_total_sharpness).

    >>> total_sharpness(np.eye(2), np.eye(2), np.eye(2))
    16.0
    """
    U, W, Sx = (np.asarray(z, dtype=np.float64) for z in (U, W, Sx))
    return float(2 * U.shape[0] * np.trace(W @ Sx @ W.T) + 2 * np.trace(Sx) * np.sum(U**2))


def random_feasible_point(opt: TwoLayerOptimum, rng: np.random.Generator, scale: float = 0.5):
    """A random (U, W) on the manifold ``U W = V`` near the optimum's representative.

    Moves along the GL(h) orbit (``U G^{-1}, G W``, G = exp of a random matrix) and, when
    h > r, adds a component of W in the null space of U (which keeps U W fixed).
    """
    h = opt.W.shape[0]
    import scipy.linalg

    G = scipy.linalg.expm(scale * rng.standard_normal((h, h)))
    U = opt.U @ np.linalg.inv(G)
    W = G @ opt.W
    null = scipy.linalg.null_space(U)
    if null.size:
        W = W + null @ (scale * rng.standard_normal((null.shape[1], W.shape[1])))
    return U, W
