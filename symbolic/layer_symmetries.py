"""Exact SymPy derivation of the layer, neuron, polynomial and double-rotation balance laws.

On small concrete networks with symbolic weights, inputs and labels this module

1. builds the per-sample loss ``l = |f(x) - y|^2`` of a bias-free MLP (``linear``, ``relu``
   or ``poly`` of integer degree ``beta``). ReLU is written ``s(z) = m z`` with a symbolic
   gain ``m`` per unit: along a positive rescaling orbit the sign of every pre-activation,
   hence the 0/1 pattern, does not change, so this is exact on each activation region;
2. builds the generator ``A`` (a matrix on the flattened parameter vector) of each symmetry:
   layer rescaling (+1 on layer i, -1 on i+1), neuron rescaling (+1 on the incoming row of
   one hidden unit, -1 on its outgoing column), polynomial (+1 on layer i, -beta on i+1),
   double rotation (``W -> e^{lam C} W``, ``U -> U e^{-lam C}`` for symmetric C);
3. checks invariance exactly: ``d/dlam l(e^{lam A} theta)|_0 = g^T A theta`` expands to 0
   (at every theta, hence along the whole one-parameter group);
4. derives the balance law two ways:
   * entropic loss ``phi = l + gam|theta|^2 + (eta/4)|grad(l + gam|theta|^2)|^2`` (the
     paper's Eq. 3 for one batch; E over batches is linear): ``grad phi . A theta`` equals
     ``2 gam (1 + eta gam) theta^T A theta - (eta/2) g^T A g`` identically, so a stationary
     point of phi along the orbit has ``g^T A g = (4 gam (1 + eta gam)/eta) theta^T A theta``;
   * one SGD step ``theta' = theta - eta (g + 2 gam theta)``: ``Q(theta') - Q(theta)`` equals
     ``eta^2 g^T A g - 4 eta gam (1 - eta gam) Q(theta)`` identically (``Q = theta^T A theta``),
     so a STATIONARY SGD state has ``E g^T A g = (4 gam (1 - eta gam)/eta) E Q`` exactly;
5. reduces ``g^T A g`` to the per-layer / per-neuron / Gram-matrix differences the theorems
   state.

>>> law = derive_balance_law(mlp_loss([2, 2, 1], "relu"), layer_generator([2, 2, 1], 0))
>>> law.invariance_residual, law.phi_residual, law.sgd_residual
(0, 0, 0)
>>> law.phi_coefficient, law.sgd_coefficient
(4*gam*(eta*gam + 1)/eta, -4*gam*(eta*gam - 1)/eta)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

eta, gam = sp.symbols("eta gam", positive=True)


@dataclass(frozen=True)
class SymbolicNet:
    """A per-sample loss with its parameter blocks (one sympy Matrix per layer)."""

    loss: sp.Expr
    layers: tuple  # tuple of sp.Matrix, layer k has shape (dims[k+1], dims[k])
    dims: tuple
    activation: str
    beta: int

    @property
    def theta(self) -> list:
        """The flattened parameter vector (row-major, layer by layer)."""
        return [w for W in self.layers for w in W]

    def offsets(self) -> list:
        out, k = [], 0
        for W in self.layers:
            out.append(k)
            k += len(W)
        return out


def mlp_loss(dims, activation: str = "linear", beta: int = 2) -> SymbolicNet:
    """Symbolic ``|f(x) - y|^2`` of a bias-free MLP with widths ``dims``."""
    dims = tuple(int(d) for d in dims)
    if len(dims) < 3:
        raise ValueError(f"need [d_in, hidden..., d_out] with at least one hidden layer, got {dims}")
    if activation not in ("linear", "relu", "poly"):
        raise ValueError(f"unknown activation {activation!r}")
    layers = tuple(sp.Matrix(o, i, lambda r, c, k=k: sp.Symbol(f"w{k + 1}_{r}{c}"))
                   for k, (i, o) in enumerate(zip(dims[:-1], dims[1:])))
    x = sp.Matrix(dims[0], 1, lambda r, c: sp.Symbol(f"x{r}"))
    y = sp.Matrix(dims[-1], 1, lambda r, c: sp.Symbol(f"y{r}"))
    h = x
    for k, W in enumerate(layers):
        h = W * h
        if k < len(layers) - 1:
            if activation == "relu":
                h = sp.Matrix([sp.Symbol(f"m{k + 1}_{j}") * h[j] for j in range(h.rows)])
            elif activation == "poly":
                h = h.applyfunc(lambda z: z**beta)
    loss = sp.expand(((h - y).T * (h - y))[0])
    return SymbolicNet(loss, layers, dims, activation, int(beta))


def _diag_generator(net: SymbolicNet, entries: dict) -> sp.Matrix:
    """Diagonal generator with ``entries[(layer, row, col)] = coefficient``."""
    n = len(net.theta)
    A = sp.zeros(n, n)
    offs = net.offsets()
    for (k, r, c), v in entries.items():
        p = offs[k] + r * net.layers[k].cols + c
        A[p, p] = v
    return A


def layer_generator(dims, i: int, beta: int = 1, net: SymbolicNet | None = None) -> sp.Matrix:
    """+1 on every weight of layer ``i`` (0-based), ``-beta`` on layer ``i+1``.

    beta = 1: the layer rescaling of Theorem 5; beta > 1: the polynomial symmetry of Theorem 11.
    """
    net = net or mlp_loss(dims)
    e = {}
    for k, coef in ((i, 1), (i + 1, -beta)):
        W = net.layers[k]
        e.update({(k, r, c): sp.Integer(coef) for r in range(W.rows) for c in range(W.cols)})
    return _diag_generator(net, e)


def neuron_generator(dims, layer: int, unit: int, net: SymbolicNet | None = None) -> sp.Matrix:
    """+1 on the incoming row of hidden unit ``unit`` after layer ``layer`` (0-based), -1 on its
    outgoing column (Theorem 6)."""
    net = net or mlp_loss(dims)
    Win, Wout = net.layers[layer], net.layers[layer + 1]
    e = {(layer, unit, c): sp.Integer(1) for c in range(Win.cols)}
    e.update({(layer + 1, r, unit): sp.Integer(-1) for r in range(Wout.rows)})
    return _diag_generator(net, e)


def double_rotation_generator(net: SymbolicNet, C: sp.Matrix) -> sp.Matrix:
    """Generator of ``W_1 -> e^{lam C} W_1``, ``W_2 -> W_2 e^{-lam C}`` on a 2-layer net (K = W_2 W_1)."""
    W, U = net.layers[0], net.layers[1]
    n = len(net.theta)
    A = sp.zeros(n, n)
    off_W, off_U = net.offsets()[:2]
    # d/dlam (C W)_{rc} = sum_s C_{rs} W_{sc};  d/dlam (-U C)_{rc} = -sum_s U_{rs} C_{sc}
    for r in range(W.rows):
        for c in range(W.cols):
            for s in range(W.rows):
                A[off_W + r * W.cols + c, off_W + s * W.cols + c] += C[r, s]
    for r in range(U.rows):
        for c in range(U.cols):
            for s in range(U.cols):
                A[off_U + r * U.cols + c, off_U + r * U.cols + s] -= C[s, c]
    return A


@dataclass(frozen=True)
class BalanceLaw:
    invariance_residual: sp.Expr  # g^T A theta, expanded (0: A is a symmetry of l)
    phi_residual: sp.Expr  # grad phi . A theta - [2 gam(1+eta gam) Q - (eta/2) G], expanded
    sgd_residual: sp.Expr  # Q(theta') - Q - [eta^2 G - 4 eta gam (1 - eta gam) Q], expanded
    phi_coefficient: sp.Expr  # k with G = k Q at stationary points of phi along the orbit
    sgd_coefficient: sp.Expr  # k with E G = k E Q in a stationary SGD state
    G: sp.Expr  # g^T A g
    Q: sp.Expr  # theta^T A theta

    @property
    def residuals(self) -> list:
        """The three residuals that must simplify to 0: invariance, phi's law, SGD's law."""
        return [self.invariance_residual, self.phi_residual, self.sgd_residual]


def _grad(expr, theta):
    return sp.Matrix([sp.diff(expr, t) for t in theta])


def derive_balance_law(net: SymbolicNet, A: sp.Matrix) -> BalanceLaw:
    """Derive (do not assume) the stationarity laws of phi and of SGD along ``e^{lam A}``."""
    th = sp.Matrix(net.theta)
    g = _grad(net.loss, net.theta)
    v = A * th  # orbit tangent
    invariance = sp.expand((g.T * v)[0])
    G = sp.expand((g.T * A * g)[0])
    Q = sp.expand((th.T * A * th)[0])
    # grad phi . v with phi = l + gam|th|^2 + (eta/4)|g + 2 gam th|^2; H v via directional derivative.
    Hv = sp.Matrix([sum(sp.diff(gj, t) * vk for t, vk in zip(net.theta, v)) for gj in g])
    gg = g + 2 * gam * th
    dphi = (g.T * v)[0] + 2 * gam * (th.T * v)[0] + (eta / 2) * ((gg.T * Hv)[0] + 2 * gam * (gg.T * v)[0])
    Gs, Qs = sp.symbols("G Q")
    phi_form = 2 * gam * (1 + eta * gam) * Qs - (eta / 2) * Gs
    phi_residual = sp.expand(dphi - phi_form.subs({Gs: G, Qs: Q}))
    # One SGD step; the sign of (1 - eta gam) is the point of this derivation.
    th1 = th - eta * (g + 2 * gam * th)
    sgd_form = eta**2 * Gs - 4 * eta * gam * (1 - eta * gam) * Qs
    sgd_residual = sp.expand((th1.T * A * th1)[0] - Q - sgd_form.subs({Gs: G, Qs: Q}))
    k = sp.Symbol("k")
    phi_k = sp.solve(phi_form.subs(Gs, k * Qs), k)[0]
    sgd_k = sp.solve(sgd_form.subs(Gs, k * Qs), k)[0]
    return BalanceLaw(invariance, phi_residual, sgd_residual, sp.factor(phi_k), sp.factor(sgd_k), G, Q)


def layer_difference_residual(net: SymbolicNet, i: int, beta: int = 1) -> sp.Expr:
    """``g^T A g - (|g_i|^2 - beta |g_{i+1}|^2)`` for the layer/polynomial generator (0 exactly)."""
    g = _grad(net.loss, net.theta)
    A = layer_generator(net.dims, i, beta, net)
    offs = net.offsets() + [len(net.theta)]
    sq = lambda k: sum(g[p] ** 2 for p in range(offs[k], offs[k + 1]))  # noqa: E731
    return sp.expand((g.T * A * g)[0] - (sq(i) - beta * sq(i + 1)))


def gram_difference_residual(net: SymbolicNet, C: sp.Matrix) -> sp.Expr:
    """``g^T A g - Tr C (g_W g_W^T - g_U^T g_U)`` for the double rotation (0 exactly): so
    ``E g^T A g = 0`` for every symmetric C is the matrix identity ``E[g_W g_W^T] = E[g_U^T g_U]``,
    i.e. ``W E[G^T G] W^T = U^T E[G G^T] U`` with ``G = grad_K l`` (g_W = U^T G, g_U = G W^T)."""
    g = _grad(net.loss, net.theta)
    W, U = net.layers[0], net.layers[1]
    off = net.offsets()
    gW = sp.Matrix(W.rows, W.cols, list(g[off[0]:off[0] + len(W)]))
    gU = sp.Matrix(U.rows, U.cols, list(g[off[1]:off[1] + len(U)]))
    A = double_rotation_generator(net, C)
    return sp.expand((g.T * A * g)[0] - (C * (gW * gW.T - gU.T * gU)).trace())


@lru_cache(maxsize=None)
def derivation_summary(dims=(1, 2, 2, 1), activations=("linear", "relu"), poly_dims=(1, 2, 1), beta=2) -> dict:
    """Run every derivation on small concrete nets; returns ``{name: BalanceLaw or residual}``."""
    out = {}
    for act in activations:
        net = mlp_loss(dims, act)
        for i in range(len(dims) - 2):
            out[f"layer[{act},{i}]"] = derive_balance_law(net, layer_generator(dims, i, 1, net))
            out[f"layer_diff[{act},{i}]"] = layer_difference_residual(net, i)
        out[f"neuron[{act}]"] = derive_balance_law(net, neuron_generator(dims, 0, 1, net))
    pnet = mlp_loss(poly_dims, "poly", beta)
    out["poly"] = derive_balance_law(pnet, layer_generator(poly_dims, 0, beta, pnet))
    out["poly_diff"] = layer_difference_residual(pnet, 0, beta)
    # beta is the ONLY exponent that works: -1 (layer rescaling) is not a symmetry of a poly net.
    out["poly_wrong_beta_invariance"] = derive_balance_law(pnet, layer_generator(poly_dims, 0, 1, pnet)).invariance_residual
    mf = mlp_loss((2, 2, 2), "linear")
    c = sp.symbols("c11 c12 c22")
    C = sp.Matrix([[c[0], c[1]], [c[1], c[2]]])
    out["double_rotation"] = derive_balance_law(mf, double_rotation_generator(mf, C))
    out["double_rotation_gram"] = gram_difference_residual(mf, C)
    return out
