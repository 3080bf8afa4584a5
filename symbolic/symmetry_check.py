r"""Exact (SymPy) linear-symmetry algebra of small networks, and the exact check of a generator.

The numeric finder (numeric/symmetry_finder.py) solves ``grad l(theta; x)^T A theta = 0`` from
float64 rows. Here the same condition is settled exactly on a small instance with symbolic
weights, inputs and labels:

* :func:`block_generator` builds the finder's *block ansatz* with one symbol per unknown: on a
  tensor with axes of sizes ``(n_0, n_1, ...)``, ``A`` acts by a free ``n_m x n_m`` matrix along
  every axis ``m`` (``W -> L W + W R`` for a matrix, ``b -> M b`` for a vector), block diagonal
  over the tensors, in the same flattening (tensors in order, each row-major);
* :func:`exact_algebra` expands ``g^T A(c) theta`` as a polynomial in the weights, inputs and
  labels; every coefficient is a linear form in the unknowns c, which must all vanish: the
  exact algebra is the null space of that rational linear system (no floating point, no
  optimisation), returned as the reduced-echelon basis of its span;
* :func:`is_symmetry_exact` checks one given generator (rational entries) exactly.

ReLU is written ``s(z) = m z`` with one gain symbol per hidden unit (symbolic/layer_symmetries.py).
A linear symmetry must hold on every activation region, i.e. for every 0/1 gain pattern; a
polynomial vanishes on all of ``{0, 1}^h`` iff its multilinear reduction (``m^k -> m``)
vanishes identically, so the gains are reduced before the coefficients are read
(``binary=``).

>>> from symbolic.layer_symmetries import mlp_loss
>>> lin = mlp_loss((2, 2, 2), "linear")
>>> len(exact_algebra(lin.loss, lin.theta, [W.shape for W in lin.layers]))   # GL(2): 2^2
4
>>> relu = mlp_loss((2, 2, 2), "relu")
>>> basis = exact_algebra(relu.loss, relu.theta, [W.shape for W in relu.layers], binary=relu_gains(relu))
>>> len(basis), [b.is_diagonal() for b in basis]                            # one rescaling per neuron
(2, [True, True])
>>> is_symmetry_exact(relu.loss, relu.theta, sp.diag(1, 1, 0, 0, -1, 0, -1, 0), binary=relu_gains(relu))
True
"""

from __future__ import annotations

import itertools
from math import prod
from typing import Sequence

import sympy as sp

from .symmetry import gradient, is_identically_zero


def _flat_index(idx: Sequence[int], shape: Sequence[int]) -> int:
    k = 0
    for i, s in zip(idx, shape):
        k = k * s + i
    return k


def block_generator(shapes: Sequence[Sequence[int]], prefix: str = "c") -> tuple[sp.Matrix, list]:
    """The block ansatz with symbolic unknowns: ``(A, unknowns)``, A n x n (n = total size).

    Unknown ``{prefix}{t}_{m}_{a}_{b}`` is entry (a, b) of tensor t's matrix along axis m: it
    moves slice b of that axis into slice a (``(A theta)[.., a, ..] += c theta[.., b, ..]``). A
    scalar tensor (shape ``()``) gets one multiple ``{prefix}{t}``.
    """
    shapes = [tuple(int(d) for d in s) for s in shapes]
    n = sum(prod(s) for s in shapes)
    A = sp.zeros(n, n)
    unknowns = []
    off = 0
    for t, shape in enumerate(shapes):
        size = prod(shape)
        if not shape:
            c = sp.Symbol(f"{prefix}{t}", real=True)
            unknowns.append(c)
            A[off, off] += c
            off += 1
            continue
        for m, nm in enumerate(shape):
            M = [[sp.Symbol(f"{prefix}{t}_{m}_{a}_{b}", real=True) for b in range(nm)] for a in range(nm)]
            unknowns += [M[a][b] for a in range(nm) for b in range(nm)]
            for idx in itertools.product(*[range(s) for s in shape]):
                p = off + _flat_index(idx, shape)
                for b in range(nm):
                    src = list(idx)
                    src[m] = b
                    A[p, off + _flat_index(src, shape)] += M[idx[m]][b]
        off += size
    return A, unknowns


def relu_gains(net) -> list:
    """The ReLU gain symbols ``m{layer}_{unit}`` of a :func:`symbolic.layer_symmetries.mlp_loss` net."""
    return sorted((s for s in net.loss.free_symbols if s.name.startswith("m")), key=str)


def reduce_binary(expr, binary: Sequence) -> sp.Expr:
    """Multilinear reduction ``m^k -> m`` (k >= 1) for the 0/1 symbols in ``binary``."""
    bset = set(binary)
    if not bset:
        return expr
    return sp.expand(expr).replace(lambda e: e.is_Pow and e.base in bset and e.exp.is_Integer and e.exp > 1,
                                   lambda e: e.base)


def symmetry_condition(loss, theta: Sequence, A: sp.Matrix, binary: Sequence = ()) -> sp.Expr:
    """``g^T A theta`` expanded (and reduced over ``binary``): identically 0 iff A is a symmetry."""
    A = sp.Matrix(A)
    if A.shape != (len(theta), len(theta)):
        raise ValueError(f"generator must be {len(theta)}x{len(theta)}, got {A.shape}")
    g = gradient(loss, theta)
    return reduce_binary(sp.expand((g.T * A * sp.Matrix(list(theta)))[0, 0]), binary)


def exact_algebra(loss, theta: Sequence, shapes: Sequence[Sequence[int]], binary: Sequence = ()) -> list:
    """The exact algebra of linear symmetries of ``loss`` within the block ansatz on tensors of
    ``shapes`` (flattened to ``theta``): a list of n x n rational matrices, the reduced row
    echelon basis of the span of ``vec(A)`` (canonical: two spans are equal iff these agree)."""
    A, cs = block_generator(shapes)
    if A.shape[0] != len(theta):
        raise ValueError(f"the shapes give {A.shape[0]} parameters, theta has {len(theta)}")
    expr = symmetry_condition(loss, theta, A, binary)
    if expr == 0:
        raise ValueError("every generator of the ansatz is a symmetry: the loss does not depend on theta")
    gens = sorted(expr.free_symbols - set(cs), key=str)
    eqs = sp.Poly(expr, *gens).coeffs()
    M, _ = sp.linear_eq_to_matrix(eqs, cs)
    null = M.nullspace()
    if not null:
        return []
    sub = [A.subs(dict(zip(cs, v))) for v in null]
    V = sp.Matrix([list(S) for S in sub])  # k x n^2, rows vec(A) row-major
    R, piv = V.rref()
    n = len(theta)
    return [sp.Matrix(n, n, list(R.row(i))) for i in range(len(piv))]


def is_symmetry_exact(loss, theta: Sequence, A, binary: Sequence = ()) -> bool:
    """Exactly: ``l(e^{lam A} theta) = l(theta)`` for every lam, theta and data point (on every
    activation pattern when ``binary`` lists ReLU gains), via ``g^T A theta == 0``."""
    expr = symmetry_condition(loss, theta, sp.Matrix(A), binary)
    if expr == 0:
        return True
    return is_identically_zero(expr)
