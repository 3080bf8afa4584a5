r"""Theorem 9, the exception: orthogonal embeddings keep the universal representation.

The loss of universality under weight decay is generic, not universal. With orthogonal
``G = M_I Z`` and ``M_O`` the substitution ``W_1 -> W_1 G``, ``W_D -> M_O W_D`` maps the
embedded net onto the identity-embedded one, weight decay included, so the cross-net
alignment survives every kappa. These checks register with Theorem 9 (this file is
imported by ``theorem_09_weight_decay``); it is not a result module of its own.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from numeric.deep_linear_min import orbit_minimum
from symbolic import deep_linear as dl
from theorems.checks import check
from theorems.settings.platonic import NET_A, NET_B, NET_C, SE, SX, V_TEACHER, predicted_alignment
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "9"  # the result these checks belong to (no verify(): not a module of its own)
KAPPAS_ORTHOGONAL = (1.0, 10.0, 100.0)


def _objective_symbolic(N, Su, weights, kappa):
    """``F = sum_i T_i + kappa sum_i |W_i|^2``, ``T_i = Tr(A_i^T N A_i) Tr(B_{i-1} Su B_{i-1}^T)``, for
    SymPy matrices (the numeric twin is ``dl.entropy_on_manifold``)."""
    D = len(weights)
    B = [sp.eye(weights[0].shape[1])]
    for W in weights:
        B.append(W * B[-1])
    A = [None] * (D + 1)
    A[D] = sp.eye(weights[-1].shape[0])
    for i in range(D - 1, -1, -1):
        A[i] = A[i + 1] * weights[i]
    T = sum((A[i].T * N * A[i]).trace() * (B[i - 1] * Su * B[i - 1].T).trace() for i in range(1, D + 1))
    return T + kappa * sum((W.T * W).trace() for W in weights)


def _cayley(t):
    """A rational rotation of the plane (every rotation but pi): exact orthogonal matrix."""
    return sp.Matrix([[1 - t**2, -2 * t], [2 * t, 1 - t**2]]) / (1 + t**2)


def orthogonal_substitution_symbolic(D: int = 2) -> sp.Matrix:
    """SymPy, d = 2: ``F_C(W_1, ..., W_D) - F_A(W_1 G, W_2, ..., M_O W_D)`` for symbolic weights,
    symbolic symmetric Sx, Se, symbolic kappa, G = R(t) diag(1, -1) (a reflection) and
    M_O = R(s), R the rational (Cayley) rotation. Returns the numerator of that difference
    and of ``M_O W_D ... W_1 G - W'_D ... W'_1`` (both must expand to 0)."""
    t, s, kappa = sp.symbols("t s kappa", real=True)
    x0, x1, x2, e0, e1, e2 = sp.symbols("x0 x1 x2 e0 e1 e2", real=True)
    Sx = sp.Matrix([[x0, x1], [x1, x2]])
    Se = sp.Matrix([[e0, e1], [e1, e2]])
    G = _cayley(t) * sp.diag(1, -1)  # a reflection times a rotation: det -1
    M_O = _cayley(s)
    Ws = [sp.Matrix(2, 2, lambda i, j, k=k: sp.Symbol(f"w{k}_{i}{j}", real=True)) for k in range(1, D + 1)]
    moved = [Ws[0] * G] + Ws[1:-1] + [M_O * Ws[-1]]
    diff = _objective_symbolic(M_O.T * Se * M_O, G * Sx * G.T, Ws, kappa) - _objective_symbolic(Se, Sx, moved, kappa)
    res = sp.expand(sp.numer(sp.together(diff)))
    prod_c, prod_a = M_O * Ws[-1], moved[-1]
    for W_c, W_a in zip(reversed(Ws[:-1]), reversed(moved[:-1])):
        prod_c, prod_a = prod_c * W_c, prod_a * W_a
    return sp.Matrix([res]), (prod_c * G - prod_a).applyfunc(lambda e: sp.expand(sp.numer(sp.together(e))))


def _sgd_twins(D: int = 3, widths=(4, 5), eta: float = 0.05, gam: float = 0.1, batch: int = 4, steps: int = 400,
               seed: int = 0) -> dict:
    """One SGD run of net C and one of the identity-embedded net A on the same minibatches,
    A started from C's weights moved by W_1 -> W_1 G, W_D -> M_O W_D (float64, weight decay
    in the loss). Returns the largest relative deviation of A's weights from the moved
    weights of C over the run and of the hidden features on a test batch."""
    g = torch.Generator().manual_seed(seed)
    G = torch.as_tensor(NET_C.G)
    M_O = torch.as_tensor(NET_C.M_O)
    V = torch.as_tensor(V_TEACHER)
    Lx = torch.as_tensor(np.linalg.cholesky(SX))
    Le = torch.as_tensor(np.linalg.cholesky(SE))
    dims = [3, *widths, 3]
    Wc = [torch.randn(dims[i + 1], dims[i], generator=g, dtype=torch.float64) / np.sqrt(dims[i]) for i in range(D)]
    Wa = [Wc[0] @ G] + [w.clone() for w in Wc[1:-1]] + [M_O @ Wc[-1]]

    def step(Ws, x_in, y, out_map):
        Ws = [w.detach().requires_grad_(True) for w in Ws]
        h = x_in
        for w in Ws:
            h = h @ w.T
        f = h @ out_map.T
        loss = ((f - y) ** 2).sum(1).mean() + gam * sum((w ** 2).sum() for w in Ws)
        grads = torch.autograd.grad(loss, Ws)
        return [(w - eta * gr).detach() for w, gr in zip(Ws, grads)]

    worst = 0.0
    eye = torch.eye(3, dtype=torch.float64)
    for _ in range(steps):
        x = torch.randn(batch, 3, generator=g, dtype=torch.float64) @ Lx.T
        y = x @ V.T + torch.randn(batch, 3, generator=g, dtype=torch.float64) @ Le.T
        Wc = step(Wc, x @ G.T, y, M_O)  # net C sees M_I Z x and multiplies its output by M_O
        Wa = step(Wa, x, y, eye)
        moved = [Wc[0] @ G] + Wc[1:-1] + [M_O @ Wc[-1]]
        worst = max(worst, max(float((a - m).norm() / m.norm()) for a, m in zip(Wa, moved)))
    x = torch.randn(256, 3, generator=g, dtype=torch.float64) @ Lx.T
    hc, ha, feat = x @ G.T, x, 0.0
    for wc, wa in zip(Wc[:-1], Wa[:-1]):
        hc, ha = hc @ wc.T, ha @ wa.T
        feat = max(feat, float((hc - ha).norm() / ha.norm()))
    return {"weights": worst, "features": feat, "steps": steps, "eta": eta, "gam": gam, "batch": batch, "D": D}


@check(THEOREM)
def check_orthogonal_embeddings_keep_alignment(ctx: Context) -> Verdict:
    """Orthogonal M_I Z and M_O: weight decay keeps perfect cross-net alignment at every kappa.

    The substitution ``W_1 -> W_1 G`` (G = M_I Z), ``W_D -> M_O W_D`` maps the minimum manifold
    of the embedded net onto that of the identity-embedded net, and for orthogonal G and M_O
    it leaves ``sum_i T_i`` and ``|theta|^2`` unchanged: the two leading-order problems are
    the same problem, for every kappa (exact in SymPy for d = 2, D = 2, 3; float64 for the
    d = 3 design). At kappa -> inf: ``P^T P = G V^T V G^T``, so
    ``K_k = G^T (P^T P)^{k/D} G = (V^T V)^{k/D}`` whatever G and M_O. SGD itself is
    equivariant under the same map (any eta, gam, batch): twin runs agree to round-off.
    Contrast: the anisotropic M_I of net B loses alignment at the same kappas.
    Tolerances: BFGS stops at |grad| <= 1e-11, so kernels agree to ~1e-5 relative and the
    cosine to ~1e-9 (it is quadratic in the kernel error); float64 round-off elsewhere."""
    # (1) exact: the objective and the end-to-end map are carried over (d = 2, D = 2 and 3)
    sym = {D: orthogonal_substitution_symbolic(D) for D in (2, 3)}
    sym_ok = all(r.is_zero_matrix and p.is_zero_matrix for r, p in sym.values())
    # (2) float64 on the d = 3 design: random points, D = 2, 3
    rng = np.random.default_rng(ctx.seed)
    sub_err = 0.0
    for D in (2, 3):
        for _ in range(5):
            Ws = [rng.standard_normal((3, 3)) for _ in range(D)]
            moved = [Ws[0] @ NET_C.G] + Ws[1:-1] + [NET_C.M_O @ Ws[-1]]
            for kappa in (0.0, *KAPPAS_ORTHOGONAL):
                fc = dl.entropy_on_manifold(NET_C, Ws, kappa)
                fa = dl.entropy_on_manifold(NET_A, moved, kappa)
                sub_err = max(sub_err, abs(fc - fa) / abs(fa))
    # (3) kappa -> inf: the weight-balanced kernels coincide; net B's do not
    inf_err, inf_cos_b = 0.0, 1.0
    for D in (2, 3):
        for k in range(1, D):
            Kc, Ka = dl.weight_balanced_kernel(NET_C, D, k), dl.weight_balanced_kernel(NET_A, D, k)
            inf_err = max(inf_err, float(np.linalg.norm(Kc - Ka) / np.linalg.norm(Ka)))
            inf_cos_b = min(inf_cos_b, dl.population_cosine(dl.weight_balanced_kernel(NET_B, D, k), Ka, SX))
    # (4) finite kappa: minimise over the manifold for net C and net A independently
    cos_c, kerr_c = [], []
    for D in (2, 3):
        for kappa in KAPPAS_ORTHOGONAL:
            wa, _ = orbit_minimum(NET_A, D, kappa, starts=2)
            wc, _ = orbit_minimum(NET_C, D, kappa, starts=2)
            for Ka, Kc in zip(dl.hidden_kernels(NET_A, wa), dl.hidden_kernels(NET_C, wc)):
                cos_c.append(dl.population_cosine(Kc, Ka, SX))
                kerr_c.append(float(np.linalg.norm(Kc - Ka) / np.linalg.norm(Ka)))
    cos_b = float(np.min([predicted_alignment(ctx, 2, k) for k in KAPPAS_ORTHOGONAL]))
    # (5) SGD is equivariant: twin runs (D = 3, widths 4 and 5, eta = 0.05, gam = 0.1, batch 4)
    twins = _sgd_twins(seed=ctx.seed)
    worst_cos = float(min(cos_c))
    bfgs = "BFGS gtol 1e-11: kernels to ~1e-5, cosine to ~1e-9"
    f64 = "float64 round-off"
    return Verdict(
        THEOREM, "orthogonal M_I Z and M_O: weight decay keeps perfect cross-net alignment at every kappa "
        "(the loss of universality is generic, not universal)",
        symbolic="W_1 -> W_1 M_I Z, W_D -> M_O W_D maps the embedded problem onto the identity-embedded one: "
                 "sum_i T_i and |theta|^2 unchanged (residual 0); kappa -> inf: K_k = G^T (P^T P)^{k/D} G = (V^T V)^{k/D}",
        residual="0" if sym_ok else "nonzero", predicted=1.0, measured=worst_cos, tolerance=1e-8,
        tolerance_source=bfgs, paper="partly",
        paper_condition="weight decay destroys the alignment only for non-orthogonal embeddings: with orthogonal "
                        "M_I Z and M_O the embedded net has the identity-embedded net's kernel at every kappa",
        criteria=[Criterion.holds("objective and end-to-end map carried over exactly (SymPy, d = 2, D = 2, 3)", sym_ok,
                                  "SymPy, exact"),
                  Criterion.at_most("relative objective residual at random weights (d = 3, D = 2, 3, every kappa)",
                                    sub_err, 1e-12, f64),
                  Criterion.at_most("kappa -> inf: relative difference of the weight-balanced kernels of C and A",
                                    inf_err, 1e-12, f64),
                  Criterion.at_most("finite kappa: largest relative kernel difference of the minimisers of C and A",
                                    max(kerr_c), 1e-4, bfgs),
                  Criterion.at_most("contrast: net B (anisotropic M_I) alignment at the same kappas (D = 2)", cos_b,
                                    0.99, "the kappa curve of check_alignment_curve: must be visibly below 1"),
                  Criterion.at_most("SGD twins: largest relative deviation of the weights over the run", twins["weights"],
                                    1e-9, "float64 round-off accumulated over 400 steps"),
                  Criterion.at_most("SGD twins: relative deviation of the hidden features", twins["features"], 1e-9,
                                    "float64 round-off accumulated over 400 steps")],
        details={"kappas": KAPPAS_ORTHOGONAL, "cosine_C_vs_A": cos_c, "kernel_rel_error_C_vs_A": kerr_c,
                 "substitution_residual": sub_err, "balanced_kernel_rel_error": inf_err,
                 "balanced_cosine_B_vs_A": inf_cos_b, "cosine_B_vs_A_min_over_kappas": cos_b, "sgd_twins": twins,
                 "det_G": float(np.linalg.det(NET_C.G)), "det_M_O": float(np.linalg.det(NET_C.M_O))})
