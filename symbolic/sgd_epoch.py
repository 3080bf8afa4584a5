r"""SGD in expectation, exactly: the mean of n minibatch steps versus the flow of the expected
entropic loss, and the drift along flat directions.

**An epoch of SGD.** ``n`` Euler steps ``y <- y + eta f_{s_p}(y)`` (``p = 1..n``; SGD on batch
losses: ``f_a = -grad l_a``) are composed and expanded in ``eta`` at the start point,

.. math:: y_n - y_0 = \eta a_1 + \eta^2 a_2 + \eta^3 a_3 + O(\eta^4),\quad
          a_1 = \sum_p f_p,\ a_2 = \sum_{p<q} f_q' f_p,\
          a_3 = \sum_{p<q<r} f_r' f_q' f_p + \tfrac12\sum_{p<r} f_r''(f_p, f_p)
                + \sum_{p<q<r} f_r''(f_p, f_q),

and averaged over the batch sequence: **without replacement** (one epoch: the ``n`` batches of
a partition, in a uniformly random order) or **with replacement** (``n`` i.i.d. draws).
The average is compared with the time-``n eta`` flow of a field ``F = F_0 + eta F_1 + ...``:

* the expected entropic loss ``phi = L + (eta/4) E_B|grad l_B|^2``: ``F_0 = fbar``,
  ``F_1 = -(1/2) <f_a' f_a>`` (``<.>`` the mean over batches, ``fbar = <f_a>``);
* the loss that GD itself follows, ``L + (eta/4)|grad L|^2``: ``F_1 = -(1/2) fbar' fbar``.

Every term is written in the centred fields ``e_a = f_a - fbar`` (``E_a = e_a'``; ``<e_a> = 0``)
through the elementary differentials of :data:`BASIS`. Results (symbolic ``n``; checked
against the brute-force average over every ordering for generic 2-D fields):

* with replacement, versus phi: the gap is ``eta^2 (n/2) <e'e>`` - for gradients
  ``(n eta^2/4) grad Tr Cov(g_B)`` - so the mean SGD iterate does **not** follow phi past
  first order; it follows ``L + (eta/4)|grad L|^2`` to ``O(eta^3)``, and the noise first
  enters the mean at ``eta^3`` through ``(n(n-1)/4) fbar''<e, e>`` (``-grad^3 L[Cov]``);
* without replacement, versus phi: the ``eta^2`` gap vanishes identically (Smith et al. 2021);
  the ``eta^3`` gap is :func:`epoch_gap_coefficients`.

>>> c = epoch_gap_coefficients("with", "phi")
>>> c["order"], c["terms"]
(2, {"<e'e>": n/2})
>>> epoch_gap_coefficients("without", "phi")["order"]
3

**Drift along a flat valley** (:func:`toy_valley_drift`): for the per-sample loss
``l = (1/2) e^{t2} (t1 - xi)^2 - (1/2) s^2 e^{t2}``, ``xi ~ N(0, s^2)``, SGD's mean drift
along ``t2`` is ``-(eta/2) e^{t2} Var(t1)`` with ``Var(t1)`` the stationary variance of the
(exactly linear) ``t1`` recursion, while phi's noise term predicts a 3x larger drift at s = 1.
For the rescaling orbit of ``u w`` (:func:`scalar_net_orbit`) the exact step identity
``Delta(u^2 - w^2) = eta^2 (g_u^2 - g_w^2)`` makes phi right.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import sympy as sp

__all__ = [
    "BASIS", "generic_fields", "series_at_shift", "euler_composition", "expected_epoch_expansion",
    "flow_expansion", "phi_first_order_field", "gd_first_order_field", "basis_vectors",
    "epoch_gap_coefficients", "expected_modified_field", "mechanical_epoch_gap", "epoch_gap_residual",
    "toy_valley_drift", "scalar_net_orbit", "EPOCH_GAP_CASES", "EPOCH_GAP_CASES_LARGE", "epoch_gap_residuals",
    "gap_terms_text", "toy_valley_at_origin",
]

SCHEMES = ("with", "without")
TARGETS = ("phi", "gd")

#: The elementary differentials of the epoch expansion, in the mean field ``f = fbar`` and the
#: centred batch fields ``e = e_a`` (``<.>``: mean over the batches; ``'`` Jacobian, ``''`` the
#: second derivative as a bilinear map).
BASIS = {
    "f'f": "fbar' fbar",
    "<e'e>": "<e_a' e_a>",
    "f'f'f": "fbar' fbar' fbar",
    "f''(f,f)": "fbar''(fbar, fbar)",
    "f'<e'e>": "fbar' <e_a' e_a>",
    "<e'f'e>": "<e_a' fbar' e_a>",
    "<e'e'>f": "<e_a' e_a'> fbar",
    "f''<e,e>": "<fbar''(e_a, e_a)>",
    "<e''(e,f)>": "<e_a''(e_a, fbar)>",
    "<e'e'e>": "<e_a' e_a' e_a>",
    "<e''(e,e)>": "<e_a''(e_a, e_a)>",
}


# ============================================================================ series helpers
def generic_fields(n: int, dim: int = 2, name: str = "F"):
    """``(fields, xs)``: ``n`` generic vector fields on R^dim (undefined functions).

    >>> generic_fields(2, 1)[0]
    [Matrix([[F1_1(x1)]]), Matrix([[F2_1(x1)]])]
    """
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 fields in dim >= 1, got n={n}, dim={dim}")
    xs = sp.symbols(f"x1:{dim + 1}", real=True)
    fields = [sp.Matrix([sp.Function(f"{name}{a + 1}_{i + 1}")(*xs) for i in range(dim)]) for a in range(n)]
    return fields, xs


def _zero(dim):
    return sp.zeros(dim, 1)


def _scalar_series_product(a, b, order):
    """Coefficients of the product of two scalar series, truncated at ``order``."""
    out = [sp.Integer(0)] * (order + 1)
    for i, ai in enumerate(a):
        if ai == 0:
            continue
        for j, bj in enumerate(b[: order + 1 - i]):
            if bj != 0:
                out[i + j] += ai * bj
    return out


def series_at_shift(field: sp.Matrix, xs, delta: list, order: int) -> list:
    r"""Coefficients ``[c_0, ..., c_order]`` of ``field(x + delta)`` in powers of eta, where
    ``delta = sum_{m>=1} eta^m delta[m]`` (``delta[0]`` must be 0): the multivariate Taylor
    series ``sum_k (1/k!) field^{(k)}(x)[delta, ..., delta]`` with ``delta`` held fixed.

    >>> x = sp.Symbol('x', real=True)
    >>> f = sp.Matrix([sp.Function('f')(x)])
    >>> [c[0] for c in series_at_shift(f, (x,), [sp.Matrix([0]), sp.Matrix([1])], 2)]
    [f(x), Derivative(f(x), x), Derivative(f(x), (x, 2))/2]
    """
    dim = len(xs)
    if any(e != 0 for e in delta[0]):
        raise ValueError("the shift must have no eta^0 term")
    comps = [[delta[m][i] if m < len(delta) else sp.Integer(0) for m in range(order + 1)] for i in range(dim)]
    out = [sp.Matrix(field) if m == 0 else _zero(dim) for m in range(order + 1)]
    # sum over index tuples i_1..i_k of d^k f / dx_i1..dx_ik * prod delta_ij
    for k in range(1, order + 1):
        for idx in itertools.product(range(dim), repeat=k):
            prod = [sp.Integer(1)] + [sp.Integer(0)] * order
            for i in idx:
                prod = _scalar_series_product(prod, comps[i], order)
            if all(p == 0 for p in prod):
                continue
            deriv = field.diff(*[xs[i] for i in idx]) / sp.factorial(k)
            for m in range(order + 1):
                if prod[m] != 0:
                    out[m] += deriv * prod[m]
    return out


def euler_composition(sequence, xs, order: int) -> list:
    r"""``[0, a_1, ..., a_order]``: the eta-expansion of ``y_n - y_0`` for the Euler steps
    ``y <- y + eta f(y)``, one per field of ``sequence`` (exact, order by order).

    >>> x = sp.Symbol('x', real=True)
    >>> a = euler_composition([sp.Matrix([-x])] * 2, (x,), 2)        # two GD steps on x^2/2
    >>> [sp.expand(c[0]) for c in a]                                 # (1 - eta)^2 x - x
    [0, -2*x, x]
    """
    dim = len(xs)
    Y = [_zero(dim) for _ in range(order + 1)]
    for f in sequence:
        fy = series_at_shift(f, xs, Y, order - 1)
        Y = [Y[0]] + [sp.expand(Y[m] + fy[m - 1]) for m in range(1, order + 1)]
    return Y


def _sequences(n_fields: int, n_steps: int, scheme: str):
    if scheme == "without":
        if n_steps != n_fields:
            raise ValueError("without replacement an epoch uses each of the n batches once: n_steps = n")
        return list(itertools.permutations(range(n_fields)))
    if scheme == "with":
        return list(itertools.product(range(n_fields), repeat=n_steps))
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def expected_epoch_expansion(fields, xs, order: int, scheme: str, n_steps: int | None = None) -> list:
    """The eta-expansion of ``E[y_n - y_0]`` averaged over every equally likely batch sequence:
    ``without``: the ``n!`` orderings of the ``n`` fields; ``with``: the ``m^n`` sequences of
    ``n_steps`` i.i.d. uniform draws from the ``m`` fields."""
    n_steps = len(fields) if n_steps is None else n_steps
    seqs = _sequences(len(fields), n_steps, scheme)
    dim = len(xs)
    acc = [_zero(dim) for _ in range(order + 1)]
    for s in seqs:
        Y = euler_composition([fields[i] for i in s], xs, order)
        acc = [acc[m] + Y[m] for m in range(order + 1)]
    return [sp.expand(a / len(seqs)) for a in acc]


def flow_expansion(F: list, xs, time_factor, order: int) -> list:
    r"""``[0, c_1, ..., c_order]``: the eta-expansion of the time-``(time_factor * eta)`` flow
    of ``F = sum_j eta^j F[j]`` from ``x``.

    The flow's Taylor series in the time t, ``z = x + sum_k Z_k t^k``, solves
    ``(k+1) Z_{k+1} = [F(x + Z)]_k`` (the t^k coefficient, by :func:`series_at_shift`; the
    ``Z_k`` are polynomials in a formal eta); then ``t = time_factor * eta``.

    >>> x = sp.Symbol('x', real=True)
    >>> [sp.expand(c[0]) for c in flow_expansion([sp.Matrix([-x])], (x,), 1, 3)]   # e^{-eta} x - x
    [0, -x, x/2, -x/6]
    """
    dim = len(xs)
    h = sp.Symbol("_eta_formal")
    field = sum((h**j * sp.Matrix(f) for j, f in enumerate(F[:order])), _zero(dim))
    Z = [_zero(dim) for _ in range(order + 1)]

    def drop_high(e, keep):  # the eta powers above ``keep`` cannot reach eta^order
        e = sp.expand(e)
        return sum((e.coeff(h, j) * h**j for j in range(keep + 1)), sp.Integer(0))

    for k in range(order):
        # t^{k+1} becomes eta^{k+1}: keep eta powers <= order - k - 1 in Z_{k+1}
        fz = series_at_shift(field, xs, Z, k)
        Z[k + 1] = (fz[k] / (k + 1)).applyfunc(lambda e: drop_high(e, order - k - 1))
    out = [_zero(dim) for _ in range(order + 1)]
    for k in range(1, order + 1):
        coef = Z[k] * sp.sympify(time_factor) ** k
        for p in range(k, order + 1):
            out[p] += coef.applyfunc(lambda e: sp.expand(e).coeff(h, p - k))
    return [o.applyfunc(sp.expand) for o in out]


def phi_first_order_field(fields, xs) -> sp.Matrix:
    """``F_1 = -(1/2) <f_a' f_a>`` of the expected entropic loss (over the listed batches)."""
    return -sum((f.jacobian(xs) * f for f in fields), _zero(fields[0].rows)) / (2 * len(fields))


def gd_first_order_field(fields, xs) -> sp.Matrix:
    """``F_1 = -(1/2) fbar' fbar`` of ``L + (eta/4)|grad L|^2`` (GD's own modified field)."""
    fbar = sum(fields, _zero(fields[0].rows)) / len(fields)
    return -fbar.jacobian(xs) * fbar / 2


# ============================================================================ the centred basis
def _second(field, xs, u, v):
    return sp.Matrix([sum(sp.diff(field[i], xs[j], xs[k]) * u[j] * v[k] for j in range(len(xs)) for k in range(len(xs)))
                      for i in range(len(xs))])


def basis_vectors(fields, xs) -> dict:
    """Every element of :data:`BASIS` for the given batch fields (SymPy vectors)."""
    n = len(fields)
    dim = len(xs)
    fbar = sum(fields, _zero(dim)) / n
    Jb = fbar.jacobian(xs)
    es = [f - fbar for f in fields]
    Es = [e.jacobian(xs) for e in es]

    def mean(vals):
        return sum(vals, _zero(dim)) / n

    ee = mean([E * e for E, e in zip(Es, es)])
    out = {
        "f'f": Jb * fbar, "<e'e>": ee, "f'f'f": Jb * Jb * fbar, "f''(f,f)": _second(fbar, xs, fbar, fbar),
        "f'<e'e>": Jb * ee, "<e'f'e>": mean([E * Jb * e for E, e in zip(Es, es)]),
        "<e'e'>f": mean([E * E * fbar for E in Es]), "f''<e,e>": mean([_second(fbar, xs, e, e) for e in es]),
        "<e''(e,f)>": mean([_second(e, xs, e, fbar) for e in es]), "<e'e'e>": mean([E * E * e for E, e in zip(Es, es)]),
        "<e''(e,e)>": mean([_second(e, xs, e, e) for e in es]),
    }
    return {k: v.applyfunc(sp.expand) for k, v in out.items()}


# ============================================================================ symbolic n
# Templates: a tree of three (or two) field slots, each slot "b" (the mean field fbar) or "a"
# (the batch field f_a, one shared label averaged over the batches). Trees:
#   "Jf"   : X' Y          (slots X, Y)
#   "JJf"  : X' Y' Z       (slots X, Y, Z)
#   "D2"   : X''(Y, Z)     (slots X, Y, Z; symmetric in Y, Z)
_N = sp.Symbol("n", positive=True, integer=True)


def _template(tree, slots):
    if tree == "D2":  # canonical order of the symmetric pair
        slots = (slots[0],) + tuple(sorted(slots[1:]))
    return sp.Symbol(f"{tree}[{''.join(slots)}]", commutative=True)


def _pattern_sums(tree, k, scheme, positions):
    r"""``E[ sum over ordered positions p_1 < ... < p_k of X(s_{p_1}, ..., s_{p_k}) ]``, where the
    slots of ``tree`` take the batches at positions ``positions`` (a tuple of position indices
    ``0..k-1``, one per slot; equal indices share a position).

    Without replacement the batches at distinct positions are distinct: the sum over increasing
    position tuples is ``C(n,k)/(n)_k`` times the sum over distinct labels, and that sum is the
    Moebius inversion over the coincidence patterns of the labels (``k <= 3``):
    ``sum_distinct = sum_{partitions pi} mu(pi) n^{|pi|} X[pi]``, ``X[pi]`` the template with
    one shared label per block of size >= 2 and ``fbar`` on singletons. With replacement the
    batches at distinct positions are independent: ``C(n,k) X[all singletons]``.
    """
    n = _N
    count = sp.expand_func(sp.binomial(n, k))
    if scheme == "with":
        # distinct positions are independent draws; a position used by two slots is one draw
        slots = tuple("a" if positions.count(p) > 1 else "b" for p in positions)
        return count * _template(tree, slots)
    # without replacement: Moebius inversion over the partitions of the k positions
    labels = list(range(k))
    total = 0
    for part in _set_partitions(labels):
        mu = 1
        for block in part:
            mu *= (-1) ** (len(block) - 1) * sp.factorial(len(block) - 1)
        block_of = {p: i for i, b in enumerate(part) for p in b}
        size = {i: len(b) for i, b in enumerate(part)}

        def slot(p):
            # a slot is "a" if its position shares a label with another position or another slot
            shared = size[block_of[p]] > 1 or positions.count(p) > 1
            return "a" if shared else "b"

        total += mu * n ** len(part) * _template(tree, tuple(slot(p) for p in positions))
    falling = sp.expand_func(sp.ff(n, k))
    return sp.expand(sp.cancel(count / falling) * total)


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]
        yield [[first]] + part


def _expected_coefficients(scheme):
    """``E a_1, E a_2, E a_3`` (see the module docstring) in the templates, symbolic n.

    Slots are listed outermost first: ``f_r' f_q' f_p`` is ``JJf`` at positions (r, q, p).
    """
    a1 = _N * sp.Symbol("f[b]")
    a2 = _pattern_sums("Jf", 2, scheme, (1, 0))
    a3 = (_pattern_sums("JJf", 3, scheme, (2, 1, 0))
          + sp.Rational(1, 2) * _pattern_sums("D2", 2, scheme, (1, 0, 0))
          + _pattern_sums("D2", 3, scheme, (2, 0, 1)))
    return a1, a2, a3


def _flow_coefficients(target):
    r"""The eta^2 and eta^3 coefficients of the time-``n eta`` flow of ``F_0 + eta F_1`` in the
    templates. ``F_0 = fbar``; phi: ``F_1 = -(1/2) Jf[aa]``; gd: ``F_1 = -(1/2) Jf[bb]``.

    Lie derivatives by the product rule (``D_v (X'Y) = X''(v, Y) + X' Y' v``):
    ``D_{F0} F0 = Jf[bb]``, ``D_{F0} D_{F0} F0 = JJf[bbb] + D2[bbb]``, ``D_{F1} F0 = fbar' F_1``
    and ``D_{F0} F_1 = -(1/2) (D2[a;b,a] + JJf[a,a,b])`` (phi) or ``-(1/2)(D2[bbb] + JJf[bbb])`` (gd).
    """
    n = _N
    T = _template
    if target == "phi":
        F1 = -sp.Rational(1, 2) * T("Jf", ("a", "a"))
        J_F1 = -sp.Rational(1, 2) * T("JJf", ("b", "a", "a"))          # fbar' F_1
        dF1 = -sp.Rational(1, 2) * (T("D2", ("a", "b", "a")) + T("JJf", ("a", "a", "b")))
    elif target == "gd":
        F1 = -sp.Rational(1, 2) * T("Jf", ("b", "b"))
        J_F1 = -sp.Rational(1, 2) * T("JJf", ("b", "b", "b"))
        dF1 = -sp.Rational(1, 2) * (T("D2", ("b", "b", "b")) + T("JJf", ("b", "b", "b")))
    else:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    c2 = n * F1 + n**2 / 2 * T("Jf", ("b", "b"))
    c3 = n**2 / 2 * (dF1 + J_F1) + n**3 / 6 * (T("JJf", ("b", "b", "b")) + T("D2", ("b", "b", "b")))
    return sp.expand(c2), sp.expand(c3)


def _centre(expr):
    """Rewrite the templates in the centred basis: each "a" slot is ``fbar + e_a``; terms with a
    single ``e`` average to 0."""
    names = {
        ("Jf", "bb"): "f'f", ("Jf", "ee"): "<e'e>",
        ("JJf", "bbb"): "f'f'f", ("D2", "bbb"): "f''(f,f)",
        ("JJf", "bee"): "f'<e'e>", ("JJf", "ebe"): "<e'f'e>", ("JJf", "eeb"): "<e'e'>f",
        ("D2", "bee"): "f''<e,e>", ("D2", "ebe"): "<e''(e,f)>",
        ("JJf", "eee"): "<e'e'e>", ("D2", "eee"): "<e''(e,e)>",
    }
    out = {k: sp.Integer(0) for k in BASIS}
    expr = sp.expand(expr)
    for sym in expr.free_symbols - {_N}:
        coeff = expr.coeff(sym)
        tree, slots = sym.name.split("[")
        slots = slots.rstrip("]")
        if tree == "f":
            continue
        a_pos = [i for i, s in enumerate(slots) if s == "a"]
        for choice in itertools.product("be", repeat=len(a_pos)):
            if choice.count("e") == 1:
                continue
            s = list(slots)
            for i, c in zip(a_pos, choice):
                s[i] = c
            s = "".join(s)
            if tree == "D2":
                s = s[0] + "".join(sorted(s[1:]))
            out[names[(tree, s)]] += coeff
    return {k: sp.factor(sp.expand(v)) for k, v in out.items() if sp.expand(v) != 0}


@lru_cache(maxsize=None)
def epoch_gap_coefficients(scheme: str, target: str = "phi") -> dict:
    r"""The leading term of ``E[theta_n] - flow_{n eta}(F)`` for symbolic ``n``: ``order`` (the
    power of eta) and ``terms`` (coefficients of :data:`BASIS`, polynomials in n).

    Derived by the combinatorics of the batch sequence (:func:`_pattern_sums`) and the Lie
    series of the flow (:func:`_flow_coefficients`); :func:`epoch_gap_residual` checks it
    against the brute-force average for concrete n.

    >>> epoch_gap_coefficients("with", "gd")["terms"]["f''<e,e>"]
    n*(n - 1)/4
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    a1, a2, a3 = _expected_coefficients(scheme)
    c2, c3 = _flow_coefficients(target)
    g2 = _centre(a2 - c2)
    if g2:
        return {"order": 2, "terms": g2}
    return {"order": 3, "terms": _centre(a3 - c3)}


def expected_modified_field(scheme: str) -> dict:
    r"""The expected modified field of an epoch, ``F = fbar + eta F_1 + eta^2 F_2 + ...``, to the
    order at which it departs from phi: with replacement ``F_1 = -(1/2) fbar' fbar``
    (phi has ``-(1/2)<f_a' f_a>``); without replacement ``F_1`` is phi's and ``F_2`` (which phi
    lacks) is the eta^3 gap over n.

    >>> expected_modified_field("with")["F_1"]
    {"f'f": -1/2}
    """
    if scheme == "with":
        return {"F_1": {"f'f": sp.Rational(-1, 2)},
                "F_2": {k: sp.factor(v / _N) for k, v in epoch_gap_coefficients("with", "gd")["terms"].items()}}
    c = epoch_gap_coefficients("without", "phi")
    return {"F_1": {"f'f": sp.Rational(-1, 2), "<e'e>": sp.Rational(-1, 2)},
            "F_2": {k: sp.factor(v / _N) for k, v in c["terms"].items()}}


class _Jets:
    """Degree-2 jets of ``m`` generic fields at ``x = 0`` as elements of a sparse polynomial
    ring over QQ (jet coefficients, ``x`` and a formal eta are the generators): the brute-force
    expansions below are polynomial identities in the jet coefficients, computed exactly and
    fast."""

    def __init__(self, m: int, dim: int):
        self.dim = dim
        idx = [()] + [t for k in (1, 2) for t in itertools.combinations_with_replacement(range(dim), k)]
        jet_names = [f"F{a + 1}_{i + 1}__{''.join(str(j + 1) for j in t)}" for a in range(m) for i in range(dim)
                     for t in idx]
        self.R, *gens = sp.ring([f"x{i + 1}" for i in range(dim)] + jet_names + ["h"], sp.QQ)
        self.xs, self.h = gens[:dim], gens[-1]
        jets = dict(zip(jet_names, gens[dim:-1]))
        self.fields = []
        for a in range(m):
            comps = []
            for i in range(dim):
                p = self.R(0)
                for t in idx:
                    mono = self.R(1)
                    for j in t:
                        mono *= self.xs[j]
                    mult = 1
                    for j in set(t):
                        mult *= int(sp.factorial(t.count(j)))
                    p += jets[f"F{a + 1}_{i + 1}__{''.join(str(j + 1) for j in t)}"] * mono * sp.Rational(1, mult)
                comps.append(p)
            self.fields.append(comps)

    def at0(self, p):
        return p.subs([(x, 0) for x in self.xs])

    def diff(self, p, idx):
        for j in idx:
            p = p.diff(self.xs[j])
        return p

    def shift(self, field, delta, order):
        """t-coefficients ``[c_0..c_order]`` of ``field(0 + delta)``, ``delta = [0, d_1, ...]``."""
        dim, R = self.dim, self.R
        out = [[self.at0(c) for c in field]] + [[R(0)] * dim for _ in range(order)]
        for k in range(1, order + 1):
            for idx in itertools.product(range(dim), repeat=k):
                prod = [R(1)] + [R(0)] * order
                for i in idx:
                    comp = [delta[mm][i] if mm < len(delta) else R(0) for mm in range(order + 1)]
                    new = [R(0)] * (order + 1)
                    for u, pu in enumerate(prod):
                        if pu:
                            for v in range(order + 1 - u):
                                if comp[v]:
                                    new[u + v] += pu * comp[v]
                    prod = new
                if not any(prod):
                    continue
                for i in range(dim):
                    d = self.at0(self.diff(field[i], idx)) * sp.Rational(1, int(sp.factorial(k)))
                    if d:
                        for mm in range(order + 1):
                            if prod[mm]:
                                out[mm][i] += d * prod[mm]
        return out

    def euler(self, sequence, order):
        Y = [[self.R(0)] * self.dim for _ in range(order + 1)]
        for a in sequence:
            fy = self.shift(self.fields[a], Y, order - 1)
            Y = [Y[0]] + [[Y[mm][i] + fy[mm - 1][i] for i in range(self.dim)] for mm in range(1, order + 1)]
        return Y

    def jac(self, field):
        return [[self.at0(field[i].diff(self.xs[j])) for j in range(self.dim)] for i in range(self.dim)]

    def second(self, field, u, v):
        return [sum((self.at0(self.diff(field[i], (j, k))) * u[j] * v[k]
                     for j in range(self.dim) for k in range(self.dim)), self.R(0)) for i in range(self.dim)]

    def flow(self, F, time_factor, order):
        """eta-coefficients of the time-``time_factor * eta`` flow of ``sum_j eta^j F[j]``."""
        dim, R, h = self.dim, self.R, self.h
        hpos = len(self.R.gens) - 1
        field = [sum((h**j * f[i] for j, f in enumerate(F[:order])), R(0)) for i in range(dim)]

        def drop_high(p, keep):
            return R({mono: c for mono, c in p.terms() if mono[hpos] <= keep})

        Z = [[R(0)] * dim for _ in range(order + 1)]
        for k in range(order):
            fz = self.shift(field, Z, k)
            Z[k + 1] = [drop_high(c * sp.Rational(1, k + 1), order - k - 1) for c in fz[k]]
        out = [[R(0)] * dim for _ in range(order + 1)]
        for k in range(1, order + 1):
            for i in range(dim):
                for mono, c in Z[k][i].terms():
                    p = k + mono[hpos]
                    if p <= order:
                        mono0 = mono[:hpos] + (0,)
                        out[p][i] += R({mono0: c}) * time_factor**k
        return out


def _mat_vec(M, v, R):
    return [sum((M[i][j] * v[j] for j in range(len(v))), R(0)) for i in range(len(M))]


def _ring_basis(J: _Jets, fields) -> dict:
    """:func:`basis_vectors` at 0 in the ring."""
    R, dim, n = J.R, J.dim, len(fields)
    fbar_f = [sum((f[i] for f in fields), R(0)) * sp.Rational(1, n) for i in range(dim)]
    es_f = [[f[i] - fbar_f[i] for i in range(dim)] for f in fields]
    fbar = [J.at0(c) for c in fbar_f]
    Jb = J.jac(fbar_f)
    es = [[J.at0(c) for c in e] for e in es_f]
    Es = [J.jac(e) for e in es_f]

    def mean(vals):
        return [sum((v[i] for v in vals), R(0)) * sp.Rational(1, n) for i in range(dim)]

    def mv(M, v):
        return _mat_vec(M, v, R)

    ee = mean([mv(E, e) for E, e in zip(Es, es)])
    return {
        "f'f": mv(Jb, fbar), "<e'e>": ee, "f'f'f": mv(Jb, mv(Jb, fbar)), "f''(f,f)": J.second(fbar_f, fbar, fbar),
        "f'<e'e>": mv(Jb, ee), "<e'f'e>": mean([mv(E, mv(Jb, e)) for E, e in zip(Es, es)]),
        "<e'e'>f": mean([mv(E, mv(E, fbar)) for E in Es]),
        "f''<e,e>": mean([J.second(fbar_f, e, e) for e in es]),
        "<e''(e,f)>": mean([J.second(ef, e, fbar) for ef, e in zip(es_f, es)]),
        "<e'e'e>": mean([mv(E, mv(E, e)) for E, e in zip(Es, es)]),
        "<e''(e,e)>": mean([J.second(ef, e, e) for ef, e in zip(es_f, es)]),
    }


def mechanical_epoch_gap(scheme: str, target: str, n: int, m: int | None = None, dim: int = 2):
    """Brute force: the average over every batch sequence of the composed Euler steps minus the
    flow expansion of ``fbar + eta F_1`` (phi's or GD's ``F_1``), for ``n`` steps and ``m``
    generic fields (``m = n`` without replacement), at the base point of degree-2 jets (exact to
    eta^3: no third derivative enters). Returns ``(gap coefficients [0, c1, c2, c3], basis
    vectors)``, vectors as lists of ring elements."""
    m = n if m is None else m
    J = _Jets(m, dim)
    R = J.R
    seqs = _sequences(m, n, scheme)
    acc = [[R(0)] * dim for _ in range(4)]
    for s in seqs:
        Y = J.euler(s, 3)
        acc = [[acc[k][i] + Y[k][i] for i in range(dim)] for k in range(4)]
    E = [[c * sp.Rational(1, len(seqs)) for c in v] for v in acc]
    fbar = [sum((f[i] for f in J.fields), R(0)) * sp.Rational(1, m) for i in range(dim)]
    if target == "phi":   # -(1/2) <f_a' f_a>, as fields (not yet at 0)
        F1 = [sum((sum((f[i].diff(J.xs[j]) * f[j] for j in range(dim)), R(0)) for f in J.fields), R(0))
              * sp.Rational(-1, 2 * m) for i in range(dim)]
    elif target == "gd":
        F1 = [sum((fbar[i].diff(J.xs[j]) * fbar[j] for j in range(dim)), R(0)) * sp.Rational(-1, 2)
              for i in range(dim)]
    else:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    flow = J.flow([fbar, F1], n, 3)
    gap = [[E[k][i] - flow[k][i] for i in range(dim)] for k in range(4)]
    return gap, _ring_basis(J, J.fields)


def epoch_gap_residual(scheme: str, target: str, n: int, m: int | None = None, dim: int = 2,
                       coefficients: dict | None = None) -> dict:
    """Residuals of the symbolic-n closed form (or of ``coefficients``, a dict like
    :func:`epoch_gap_coefficients`'s) against :func:`mechanical_epoch_gap`: the gap below the
    predicted order must vanish, the leading one must equal the closed form.

    >>> epoch_gap_residual("with", "phi", 2)
    {'lower_orders': 0, 'leading': 0}
    """
    gap, vecs = mechanical_epoch_gap(scheme, target, n, m, dim)
    c = epoch_gap_coefficients(scheme, target) if coefficients is None else coefficients
    p = c["order"]
    pred = [sum((vecs[name][i] * sp.Rational(coef.subs(_N, n)) for name, coef in c["terms"].items()),
                vecs["f'f"][i] * 0) for i in range(dim)]

    def first_nonzero(vec):
        return next((sp.sympify(str(e.as_expr())) for e in vec if e != 0), sp.Integer(0))

    lower = next((r for r in (first_nonzero(gap[k]) for k in range(1, p)) if r != 0), sp.Integer(0))
    return {"lower_orders": lower, "leading": first_nonzero([g - q for g, q in zip(gap[p], pred)])}



# (scheme, target, n steps, m batch elements or None): the brute-force cases of the closed forms
EPOCH_GAP_CASES = (("with", "phi", 2, None), ("with", "phi", 3, 2), ("without", "phi", 2, None),
                   ("without", "phi", 3, None), ("with", "gd", 2, None), ("with", "gd", 3, 2))
EPOCH_GAP_CASES_LARGE = (("without", "phi", 4, None), ("with", "gd", 2, 3))  # minutes of SymPy


def epoch_gap_residuals(large: bool = False) -> dict:
    """:func:`epoch_gap_residual` of every case of :data:`EPOCH_GAP_CASES` (and, with ``large``,
    :data:`EPOCH_GAP_CASES_LARGE`), keyed ``"scheme/target n=.. [m=..]"``."""
    cases = EPOCH_GAP_CASES + (EPOCH_GAP_CASES_LARGE if large else ())
    return {f"{s}/{t} n={n}" + (f" m={m}" if m else ""): epoch_gap_residual(s, t, n, m) for s, t, n, m in cases}


def gap_terms_text(coefficients: dict) -> str:
    """The terms of an :func:`epoch_gap_coefficients` result as text.

    >>> gap_terms_text(epoch_gap_coefficients("with", "phi"))
    "(n/2) <e'e>"
    """
    return " + ".join(f"({v}) {k}" for k, v in coefficients["terms"].items())

# ============================================================================ drift on flat valleys
def toy_valley_drift() -> dict:
    r"""The toy flat valley, exactly: per-sample loss ``l = (1/2) e^{t2}(t1 - xi)^2 - (1/2) s^2 e^{t2}``,
    ``xi ~ N(0, s^2)``. Returns a dict of SymPy expressions (``a = e^{t2}``):

    * ``L``: the risk ``(1/2) a t1^2`` (flat along t2 at t1 = 0);
    * ``cond_drift``: ``E[Delta t2 | theta] = -eta E_xi d_2 l = -(eta/2) a t1^2`` (exact);
    * ``var_t1``: the stationary variance of ``t1' = (1 - eta a) t1 + eta a xi`` at fixed a
      (the discrete Lyapunov equation ``S = (1 - eta a)^2 S + eta^2 a^2 s^2``);
    * ``drift``: ``-(eta/2) a var_t1`` = ``-(eta/2) d_2 H_11 S`` (third derivative of L
      contracted with the stationary covariance); ``drift_leading``: its eta^2 term;
    * ``drift_lwa``: the eta -> 0 limit ``-(eta^2/2) d_2 H [L_H^{-1} C]`` (continuous Lyapunov);
    * ``drift_phi``: phi's prediction ``-eta d_2 phi = -(eta^2/4) d_2 Tr C`` at t1 = 0;
    * ``trace_cov``: ``Tr Cov(grad l)`` at t1 = 0.

    >>> r = toy_valley_drift()
    >>> eta, s, t2 = r["symbols"]
    >>> [sp.simplify(r[k].subs({s: 1, t2: 0}) / eta**2) for k in ("drift_leading", "drift_phi")]
    [-1/4, -3/4]
    """
    t1, t2, xi = sp.symbols("t1 t2 xi", real=True)
    eta, s, S = sp.symbols("eta s S", positive=True)
    a = sp.exp(t2)
    l = a * (t1 - xi) ** 2 / 2 - s**2 * a / 2
    moments = {1: 0, 2: s**2, 3: 0, 4: 3 * s**4}

    def E(expr):  # expectation over xi ~ N(0, s^2): polynomial in xi
        p = sp.Poly(sp.expand(expr), xi)
        return sp.expand(sum(c * (moments[k[0]] if k[0] else 1) for k, c in zip(p.monoms(), p.coeffs())))

    L = sp.simplify(E(l))
    g = [sp.diff(l, v) for v in (t1, t2)]
    Eg = [E(gi) for gi in g]
    cov = sp.Matrix(2, 2, lambda i, j: sp.simplify(E(g[i] * g[j]) - Eg[i] * Eg[j]))
    trace_cov0 = sp.simplify((cov[0, 0] + cov[1, 1]).subs(t1, 0))
    cond_drift = sp.simplify(-eta * Eg[1])
    # stationary variance of the exactly linear t1 recursion at fixed t2
    step = t1 - eta * g[0]
    lyap = sp.Eq(S, E(sp.expand(step**2)).subs(t1**2, S))
    var = sp.solve(lyap, S)[0]
    H = sp.hessian(L, (t1, t2))
    d2H11 = sp.diff(H[0, 0], t2)
    drift = sp.simplify(-(eta / 2) * d2H11 * var)
    drift_leading = sp.simplify(sp.series(drift, eta, 0, 3).removeO())
    C11 = cov[0, 0].subs(t1, 0)
    lwa_S = sp.simplify(eta * C11 / (2 * H[0, 0].subs(t1, 0)))                # H S + S H = eta C
    drift_lwa = sp.simplify(-(eta / 2) * d2H11.subs(t1, 0) * lwa_S)
    phi_noise = eta / 4 * trace_cov0
    drift_phi = sp.simplify(-eta * sp.diff(phi_noise, t2))
    return dict(L=L, cond_drift=cond_drift, var_t1=sp.simplify(var), drift=drift, drift_leading=drift_leading,
                drift_lwa=drift_lwa, drift_phi=drift_phi, trace_cov=trace_cov0, cov=cov,
                symbols=(eta, s, t2))



def toy_valley_at_origin(s: float, eta: float) -> dict:
    """The toy valley's drift along t2 at ``t2 = 0`` for noise ``s`` and step ``eta``: ``drift``
    (discrete Lyapunov, exact in eta), the eta^2 coefficients ``leading`` (its eta -> 0 limit)
    and ``leading_phi`` (phi's), and the simplified expressions ``drift_expr``, ``phi_expr``.

    >>> r = toy_valley_at_origin(1.0, 0.01)
    >>> r["leading"], r["leading_phi"]
    (-0.25, -0.75)
    """
    r = toy_valley_drift()
    eta_s, s_s, t2_s = r["symbols"]
    lead = {k: float(sp.limit(r[k].subs({s_s: s, t2_s: 0}) / eta_s**2, eta_s, 0)) for k in ("drift", "drift_phi")}
    return dict(drift=float(r["drift"].subs({s_s: s, t2_s: 0, eta_s: eta})), leading=lead["drift"],
                leading_phi=lead["drift_phi"], drift_expr=sp.simplify(r["drift"]), phi_expr=sp.simplify(r["drift_phi"]))

def scalar_net_orbit() -> dict:
    r"""The rescaling orbit of ``f = u w x`` with ``l = (u w x - y)^2``, ``y = v x + e``
    (``x ~ N(0,1)``, ``e ~ N(0, sigma^2)``); generator ``A = diag(1, -1)``, ``Q = u^2 - w^2``.

    * ``step_residual``: ``Q(theta - eta g) - Q(theta) - eta^2 (g_u^2 - g_w^2)`` for every sample
      (0: the per-sample identity ``theta^T A g = 0``);
    * ``sgd_drift``: ``E[Delta Q | theta] = eta^2 E[g^T A g]`` (exact);
    * ``phi_drift``: phi's ``Delta Q = -eta grad Q . grad phi`` per step;
    * ``on_manifold``: both at ``u w = v``, where they agree (``-4 eta^2 sigma^2 Q``).

    >>> r = scalar_net_orbit()
    >>> r["step_residual"], r["on_manifold"]["phi"] - r["on_manifold"]["sgd"]
    (0, 0)
    """
    u, w, x, e, v = sp.symbols("u w x e v", real=True)
    eta, sigma = sp.symbols("eta sigma", positive=True)
    l = (u * w * x - v * x - e) ** 2
    g = [sp.diff(l, q) for q in (u, w)]
    Q = u**2 - w**2
    step_res = sp.expand(Q.subs({u: u - eta * g[0], w: w - eta * g[1]}, simultaneous=True) - Q
                         - eta**2 * (g[0] ** 2 - g[1] ** 2))
    mom_x = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3, 5: 0, 6: 15}
    mom_e = {0: 1, 1: 0, 2: sigma**2, 3: 0, 4: 3 * sigma**4}

    def E(expr):
        p = sp.Poly(sp.expand(expr), x, e)
        return sp.expand(sum(c * mom_x[k[0]] * mom_e[k[1]] for k, c in zip(p.monoms(), p.coeffs())))

    sgd = E(eta**2 * (g[0] ** 2 - g[1] ** 2))
    phi = E(l) + eta / 4 * E(g[0] ** 2 + g[1] ** 2)
    phi_drift = sp.expand(-eta * (sp.diff(Q, u) * sp.diff(phi, u) + sp.diff(Q, w) * sp.diff(phi, w)))
    on = {k: sp.factor(sp.simplify(val.subs(v, u * w))) for k, val in (("sgd", sgd), ("phi", phi_drift))}
    return dict(step_residual=sp.simplify(step_res), sgd_drift=sp.factor(sgd), phi_drift=sp.factor(phi_drift),
                on_manifold=on, symbols=(u, w, v, eta, sigma))
