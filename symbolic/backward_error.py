r"""Backward-error analysis (BEA) of one gradient-descent step, exactly, in SymPy.

One explicit Euler step ``theta1 = theta0 + h f0(theta0)`` (gradient descent: ``f0 = -grad l``,
``h = eta``; matrix learning rate ``Lam = h P``: ``f0 = -P grad l``) is matched, order by order
in ``h``, by the time-``h`` flow of a *modified vector field*

.. math:: F_h = f_0 + h f_1 + h^2 f_2 + \dots

(Hairer, Lubich, Wanner, *Geometric Numerical Integration*, Ch. IX). The flow's Taylor series
is :math:`\varphi_h(y) = y + \sum_{m\ge1} \frac{h^m}{m!} D_F^{m-1} F(y)` with the Lie derivative
:math:`D_A B = B' A`; the Euler step has no :math:`h^{\ge2}` terms, so the coefficient of
:math:`h^{j+1}` fixes

.. math:: f_j = -\sum_{m=2}^{j+1} \frac{1}{m!}
          \sum_{i_1+\dots+i_m = j+1-m} D_{f_{i_m}} \cdots D_{f_{i_2}} f_{i_1}.

Everything here works for any SymPy loss: a concrete expression, or a generic
``Function('l')(x1, ..., xn)`` (then the results are exact identities between derivatives).

>>> import sympy as sp
>>> x = sp.symbols('x1:3')
>>> l = x[0]**2 * x[1] + x[1]**4 / 4
>>> f = euler_modified_field(-gradient(l, x), x, 2)
>>> sp.simplify(f[1] + hessian(l, x) * gradient(l, x) / 2)      # f1 = -(1/2) H g
Matrix([
[0],
[0]])
>>> first_order_coefficient_finite_n(3)                        # c_3 = (3-1)/(4*3)
1/6
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import sympy as sp

__all__ = [
    "gradient", "hessian", "third_contract", "lie_derivative", "euler_modified_field",
    "modified_field_series", "second_order_closed_form", "entropic_loss_first_order",
    "jacobian_antisymmetric_part", "is_gradient_field", "potential", "quadratic_loss",
    "generic_loss", "symmetric_matrix", "first_order_coefficient_finite_n",
    "first_order_coefficient_symbolic_n", "nonpotential_counterexample",
    "second_order_curl_formula", "euler_operator_1d", "second_order_obstruction_finite_n",
    "modified_loss", "elementary_differential_coefficients",
]


# ----------------------------------------------------------------------------- calculus helpers
def gradient(l, xs) -> sp.Matrix:
    """Column vector of first derivatives."""
    return sp.Matrix([sp.diff(l, x) for x in xs])


def hessian(l, xs) -> sp.Matrix:
    return sp.Matrix(len(xs), len(xs), lambda i, j: sp.diff(l, xs[i], xs[j]))


def third_contract(l, xs, u, v) -> sp.Matrix:
    """``T[u, v]_i = sum_jk d^3 l / dx_i dx_j dx_k u_j v_k``."""
    n = len(xs)
    return sp.Matrix([sum(sp.diff(l, xs[i], xs[j], xs[k]) * u[j] * v[k]
                          for j in range(n) for k in range(n)) for i in range(n)])


def lie_derivative(A: sp.Matrix, B: sp.Matrix, xs) -> sp.Matrix:
    """``D_A B = B' A`` (the derivative of the field B along the field A)."""
    return B.jacobian(xs) * A


def symmetric_matrix(n: int, name: str = "p") -> sp.Matrix:
    """A generic symmetric n x n matrix of symbols ``p_ij`` (i <= j)."""
    return sp.Matrix(n, n, lambda i, j: sp.Symbol(f"{name}_{min(i, j) + 1}{max(i, j) + 1}", real=True))


def generic_loss(n: int, name: str = "l"):
    """``(l(x1..xn), xs)`` with ``l`` an undefined function: results are identities."""
    xs = sp.symbols(f"x1:{n + 1}", real=True)
    return sp.Function(name)(*xs), xs


def quadratic_loss(n: int):
    """A generic quadratic ``(1/2) x^T A x + b^T x`` with symbolic symmetric ``A`` and ``b``."""
    xs = sp.symbols(f"x1:{n + 1}", real=True)
    A = symmetric_matrix(n, "a")
    b = sp.Matrix(sp.symbols(f"b1:{n + 1}", real=True))
    x = sp.Matrix(xs)
    return sp.expand((x.T * A * x)[0] / 2 + (b.T * x)[0]), xs


# ----------------------------------------------------------------------------- the BEA recursion
def compositions(total: int, parts: int):
    """All ordered tuples of ``parts`` non-negative ints summing to ``total``.

    >>> list(compositions(2, 2))
    [(0, 2), (1, 1), (2, 0)]
    """
    for cut in itertools.combinations(range(total + parts - 1), parts - 1):
        prev, out = -1, []
        for c in cut + (total + parts - 1,):
            out.append(c - prev - 1)
            prev = c
        yield tuple(out)


def euler_modified_field(f0: sp.Matrix, xs, k: int, simplify=sp.expand) -> list[sp.Matrix]:
    r"""``[f_0, ..., f_k]``: the modified field of the Euler step ``y + h f0(y)``.

    ``F_h = sum_j h^j f_j`` and its time-``h`` flow agrees with the step up to
    :math:`O(h^{k+2})`. Memoised nested Lie derivatives keep order 3 fast.

    >>> x = sp.Symbol('x', real=True)
    >>> [sp.factor(t[0]) for t in euler_modified_field(sp.Matrix([-x]), (x,), 3)]  # l = x^2/2
    [-x, -x/2, -x/3, -x/4]
    """
    if k < 0:
        raise ValueError(f"order k must be >= 0, got {k}")
    fs = [sp.Matrix(f0)]
    cache: dict = {}

    def nested(idx: tuple) -> sp.Matrix:
        # D_{f_{i_m}} ... D_{f_{i_2}} f_{i_1} for idx = (i_1, ..., i_m)
        if idx in cache:
            return cache[idx]
        if len(idx) == 1:
            val = fs[idx[0]]
        else:
            val = simplify(lie_derivative(fs[idx[-1]], nested(idx[:-1]), xs))
        cache[idx] = val
        return val

    for j in range(1, k + 1):
        acc = sp.zeros(len(xs), 1)
        for m in range(2, j + 2):
            for idx in compositions(j + 1 - m, m):
                acc += nested(idx) / sp.factorial(m)
        fs.append(simplify(-acc))
    return fs


def modified_field_series(l, xs, k: int, h=None, P=None) -> sp.Matrix:
    """``F_h`` truncated at order k, for GD on ``l`` with ``eta = h`` (or ``Lam = h P``)."""
    h = sp.Symbol("h", positive=True) if h is None else h
    g = gradient(l, xs)
    f0 = -(g if P is None else P * g)
    fs = euler_modified_field(f0, xs, k)
    return sum((h**j * f for j, f in enumerate(fs)), sp.zeros(len(xs), 1))


def second_order_closed_form(l, xs) -> sp.Matrix:
    r"""The target :math:`f_2 = -\frac13 H^2 g - \frac1{12} T[g,g]` (docs/theory.md §1)."""
    g, H = gradient(l, xs), hessian(l, xs)
    return -(H * H * g) / 3 - third_contract(l, xs, g, g) / 12


def entropic_loss_first_order(l, xs, Lam, c=sp.Rational(1, 4)):
    """``phi = l + c g^T Lam g`` (c = 1/4: the n -> inf entropic loss)."""
    g = gradient(l, xs)
    return l + c * (g.T * Lam * g)[0]


# ----------------------------------------------------------------------------- gradient tests
def jacobian_antisymmetric_part(F: sp.Matrix, xs, simplify=sp.expand) -> sp.Matrix:
    """``(J - J^T)/2`` of a field: zero iff F is a gradient on a simply connected domain."""
    J = F.jacobian(xs)
    return (J - J.T).applyfunc(lambda e: simplify(e / 2))


def is_gradient_field(F: sp.Matrix, xs) -> bool:
    """Exact test: every entry of the antisymmetric Jacobian part simplifies to 0."""
    return all(sp.simplify(e) == 0 for e in jacobian_antisymmetric_part(F, xs))


def potential(F: sp.Matrix, xs):
    r"""A potential ``V`` with ``grad V = F`` (homotopy formula ``V(x) = int_0^1 F(t x).x dt``).

    Raises ``ValueError`` when F is not a gradient. Works for polynomial/rational fields.

    >>> x, y = sp.symbols('x y')
    >>> potential(sp.Matrix([2*x*y, x**2]), (x, y))
    x**2*y
    """
    if not is_gradient_field(F, xs):
        raise ValueError("the field has a non-symmetric Jacobian: no potential exists")
    t = sp.Symbol("t_hom")
    integrand = sum(F[i].subs({x: t * x for x in xs}, simultaneous=True) * xs[i] for i in range(len(xs)))
    return sp.expand(sp.integrate(sp.expand(integrand), (t, 0, 1)))


def second_order_curl_formula(l, xs) -> sp.Matrix:
    r"""The derived obstruction: antisym(J f_2) = -(1/12) [H, T[g]], T[g]_{ij} = sum_k l_{ijk} g_k.

    Follows from :math:`f_2 = -\frac1{12}\nabla(g^THg) - \frac16 H^2 g` (checked in the tests).
    """
    n = len(xs)
    g, H = gradient(l, xs), hessian(l, xs)
    Tg = sp.Matrix(n, n, lambda i, j: sum(sp.diff(l, xs[i], xs[j], xs[k]) * g[k] for k in range(n)))
    return -(H * Tg - Tg * H) / 12


def nonpotential_counterexample():
    r"""A concrete quartic loss in 2-D whose :math:`\eta^2` field has a non-zero curl.

    Returns ``(l, xs, point, curl_value)`` with the exact (rational) curl
    ``d f2_y/dx - d f2_x/dy`` at ``point``.

    >>> l, xs, pt, c = nonpotential_counterexample()
    >>> l, pt, c
    (x**4/4 + x*y**2/2 + y**2/2, (1, 1), -11/12)
    """
    x, y = sp.symbols("x y", real=True)
    l = x**4 / 4 + x * y**2 / 2 + y**2 / 2
    f2 = euler_modified_field(-gradient(l, (x, y)), (x, y), 2)[2]
    curl = sp.diff(f2[1], x) - sp.diff(f2[0], y)
    pt = (1, 1)
    return l, (x, y), pt, sp.nsimplify(curl.subs({x: pt[0], y: pt[1]}))


def euler_operator_1d(density, u, x):
    r"""The Euler-Lagrange operator :math:`E(L) = \sum_k (-D)^k \partial L/\partial u^{(k)}`.

    A local density ``L(u', u'', ...)`` is a total x-derivative of a local expression in the
    derivatives of ``u`` iff ``E(L) = 0``. Used to show the 1-D second-order potential is not local.

    >>> x = sp.Symbol('x'); u = sp.Function('u')(x)
    >>> euler_operator_1d(u.diff(x) * u.diff(x, 2), u, x)   # u'u'' = (u'^2/2)'
    0
    """
    order = 0
    for d in density.atoms(sp.Derivative):
        if d.expr == u:
            order = max(order, d.derivative_count)
    jets = [u] + [u.diff(x, k) for k in range(1, order + 1)]
    syms = sp.symbols(f"_u0:{order + 1}")
    plain = density.subs(dict(zip(reversed(jets), reversed(syms))))
    total = 0
    for k, s in enumerate(syms):
        part = sp.diff(plain, s).subs(dict(zip(syms, jets)))
        total += (-1) ** k * sp.diff(part, x, k) if k else part
    return sp.expand(total)


# ----------------------------------------------------------------------------- finite n
def _n_steps(step, y, n):
    for _ in range(n):
        y = step(y)
    return y


@lru_cache(maxsize=None)
def first_order_coefficient_finite_n(n: int, dim: int = 2):
    r"""Derive ``c_n`` mechanically: n GD steps with ``Lam/n`` on ``phi = l + c g^T Lam g``
    versus one GD step with ``Lam`` on ``l``, matched at order ``Lam^2``.

    Generic loss ``l(x1..x_dim)`` (undefined function), symbolic symmetric ``Lam = h P``.
    Every step is ``y - (h P / n) grad phi(y)``; since ``y - y0 = O(h)`` and the prefactor is
    ``O(h)``, ``grad phi(y) = grad phi(y0) + H_phi(y0)(y - y0) + O(h^2)`` is exact to the order
    kept. The ``h^2`` gap is affine in ``c``, ``A + c B``; ``c_n = -(A.B)/(B.B)`` and the gap
    is then checked to vanish identically (else ``ArithmeticError``).
    """
    if n < 1:
        raise ValueError(f"number of steps n must be >= 1, got {n}")
    l, xs = generic_loss(dim)
    h, c = sp.symbols("h c")
    P = symmetric_matrix(dim)
    phi = entropic_loss_first_order(l, xs, h * P, c)
    gphi = gradient(phi, xs)
    y0 = sp.Matrix(xs)

    # track y = y0 + h y1 + h^2 y2 order by order (grad phi = g + h q, H_phi = H + O(h))
    g, H = gradient(l, xs), hessian(l, xs)
    q = gphi.applyfunc(lambda e: sp.expand(e).coeff(h, 1))
    y1, y2 = sp.zeros(dim, 1), sp.zeros(dim, 1)
    for _ in range(n):
        y1, y2 = y1 - P * g / n, y2 - P * (q + H * y1) / n
    y = y0 + h * y1 + h**2 * y2
    one = y0 - h * P * gradient(l, xs)
    gap = (y - one).applyfunc(lambda e: sp.expand(e).coeff(h, 2))
    A = gap.subs(c, 0).applyfunc(sp.expand)
    B = gap.applyfunc(lambda e: sp.expand(e).coeff(c, 1))
    if all(b == 0 for b in B):
        raise ArithmeticError("the h^2 gap does not depend on c")
    # derivatives and p_ij are independent indeterminates: compare as polynomials
    dens = sp.expand((B.T * B)[0])
    cn = sp.cancel(-sp.expand((A.T * B)[0]) / dens)
    if not cn.is_number or any(sp.expand(a + cn * b) != 0 for a, b in zip(A, B)):
        raise ArithmeticError(f"no c_{n} kills the Lam^2 gap identically")
    return cn


def first_order_coefficient_symbolic_n():
    r"""``c_n`` for a *symbol* n, and its limit.

    Along the n steps, ``theta_m - theta_0 = -(m/n) Lam g + O(Lam^2)`` exactly at first order,
    so the ``Lam^2`` part of step m is ``-(Lam/n)(2c H Lam g) + (Lam/n) H (m/n) Lam g``;
    summing over ``m = 0..n-1`` (``sympy.summation``) and equating the coefficient of
    ``Lam H Lam g`` to 0 gives ``c(n)``. Returns ``(c_n, limit)``.

    >>> first_order_coefficient_symbolic_n()
    ((n - 1)/(4*n), 1/4)
    """
    n, m, c = sp.symbols("n m c", positive=True, integer=False)
    n = sp.Symbol("n", positive=True, integer=True)
    m = sp.Symbol("m", nonnegative=True, integer=True)
    per_step = -2 * c / n + m / n**2            # coefficient of Lam H Lam g in step m
    total = sp.summation(per_step, (m, 0, n - 1))
    cn = sp.solve(sp.Eq(total, 0), c)[0]
    cn = sp.factor(sp.simplify(cn))
    return cn, sp.limit(cn, n, sp.oo)


def second_order_obstruction_finite_n(n):
    r"""The part of the order-:math:`\eta^2` field any finite-n entropic loss must reproduce but
    cannot (not a gradient): :math:`-\frac16 (1 - n^{-2}) H^2 g`.

    n GD steps of size :math:`h=\eta/n` on a loss :math:`\phi` follow (to :math:`O(\eta^3)` in the
    field) the flow of :math:`-\nabla\phi - \frac h2 H_\phi\nabla\phi + h^2 f_2[\phi]`, whose
    non-gradient part is :math:`-\frac{h^2}6 H_\phi^2\nabla\phi`; GD on ``l`` has
    :math:`-\frac{\eta^2}{6}H^2 g`. All other terms are gradients. The mismatch, as a
    multiple of :math:`\eta^2 H^2 g`, is returned (0 only for n = 1).

    >>> second_order_obstruction_finite_n(sp.Symbol('n'))
    -1/6 + 1/(6*n**2)
    """
    return sp.expand(-sp.Rational(1, 6) * (1 - 1 / sp.sympify(n) ** 2))


def modified_loss(l, xs, k: int, h=None):
    r"""The order-k modified (entropic) loss ``phi_k`` with ``-grad phi_k = F_h`` (scalar eta),
    for polynomial/rational losses, or ``ValueError`` naming the first order whose field has
    no potential.

    >>> x = sp.Symbol('x'); h = sp.Symbol('h')
    >>> modified_loss(x**2 / 2, (x,), 2, h)        # l + (h/4) g^2 + (h^2/6) g H g
    h**2*x**2/6 + h*x**2/4 + x**2/2
    """
    h = sp.Symbol("h", positive=True) if h is None else h
    fs = euler_modified_field(-gradient(l, xs), xs, k)
    phi = sp.Integer(0)
    for j, f in enumerate(fs):
        if not is_gradient_field(f, xs):
            raise ValueError(f"the order-{j} term of the modified field is not a gradient: "
                             f"no modified loss of order {k} exists for this loss")
        phi += -h**j * potential(f, xs)
    # the homotopy potential fixes V(0) = 0: restore l's constant for readability
    return sp.expand(phi + l.subs({x: 0 for x in xs}))


def elementary_differential_coefficients(order: int = 3, dim: int = 2) -> dict:
    r"""Coefficients of ``f_order`` (``order`` in 1..3) in the elementary differentials of a
    *generic* field ``f`` (``f_0 = f``), solved exactly from :func:`euler_modified_field`.

    Keys: ``"f'f"``; ``"f'f'f"``, ``"f''(f,f)"``; ``"f'f'f'f"``, ``"f'f''(f,f)"``,
    ``"f''(f,f'f)"``, ``"f'''(f,f,f)"``. Raises ``ArithmeticError`` if no exact fit exists.

    >>> elementary_differential_coefficients(2)
    {"f'f'f": 1/3, "f''(f,f)": 1/12}
    """
    xs = sp.symbols(f"x1:{dim + 1}")
    F = sp.Matrix([sp.Function(f"F{i + 1}")(*xs) for i in range(dim)])
    J = F.jacobian(xs)

    def d2(a, b):
        return sp.Matrix([sum(sp.diff(F[i], xs[j], xs[k]) * a[j] * b[k]
                              for j in range(dim) for k in range(dim)) for i in range(dim)])

    def d3(a, b, c):
        return sp.Matrix([sum(sp.diff(F[i], xs[j], xs[k], xs[m]) * a[j] * b[k] * c[m]
                              for j in range(dim) for k in range(dim) for m in range(dim)) for i in range(dim)])

    trees = {1: {"f'f": J * F},
             2: {"f'f'f": J * J * F, "f''(f,f)": d2(F, F)},
             3: {"f'f'f'f": J * J * J * F, "f'f''(f,f)": J * d2(F, F), "f''(f,f'f)": d2(F, J * F),
                 "f'''(f,f,f)": d3(F, F, F)}}
    if order not in trees:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    target = euler_modified_field(F, xs, order)[order]
    cs = sp.symbols(f"c0:{len(trees[order])}")
    resid = target - sum((c * t for c, t in zip(cs, trees[order].values())), sp.zeros(dim, 1))
    derivs = sorted(set().union(*(e.atoms(sp.Derivative) for e in resid)), key=str)
    indet = {d: sp.Symbol(f"_D{i}") for i, d in enumerate(derivs)}
    indet.update({f: sp.Symbol(f"_F{i}") for i, f in enumerate(F)})
    eqs = []
    for e in resid:
        e = sp.expand(sp.expand(e).xreplace(indet))
        eqs += sp.Poly(e, *indet.values()).coeffs()
    sol = sp.solve(eqs, cs, dict=True)
    if len(sol) != 1:
        raise ArithmeticError(f"f_{order} is not an exact combination of the elementary differentials")
    return {name: sol[0][c] for name, c in zip(trees[order], cs)}
