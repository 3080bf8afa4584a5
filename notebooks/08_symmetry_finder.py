# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Finding a model's symmetries automatically, and checking their balance laws
#
# A linear parameter symmetry is a matrix $A$ on the flattened parameters with
# $\nabla l(\theta; x)^\top A\theta = 0$ for every sample and every $\theta$. The condition is linear
# in $A$: per-sample gradients at random $(\theta, x)$ give one row each, and the algebra of
# symmetries is the null space of the stacked rows (`numeric/symmetry_finder.py`, block ansatz:
# one free matrix per axis of every parameter tensor). Its symmetric part holds the exponential
# symmetries that the entropic loss breaks, each with a balance law
# $\eta\,\mathbb E[g^\top A g] = 4\gamma(1-\eta\gamma)\,\mathbb E[\theta^\top A\theta]$ for SGD with weight
# decay in the loss; its antisymmetric part holds rotations, which survive.

# %%
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from numeric.symmetry_finder import Problem, examples, find_symmetries, subspace_angle, orthonormal_span
from theorems.symmetries import quadratic_form, run_sgd

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

# %% [markdown]
# ## The known models
# Each example carries its derived answer; the finder must recover its dimension, its split and its
# span (largest principal angle to the known basis, against Wedin's bound from the derived rank
# threshold).

# %%
EX = examples()
rows, found = [], {}
for name, ex in EX.items():
    t0 = time.perf_counter()
    alg = find_symmetries(ex.problem(0), seed=0)
    found[name] = alg
    known = ex.known(alg.problem)
    angle = subspace_angle(alg.basis, orthonormal_span(known) if known.shape[0] else known)
    rows.append((name, alg.problem.n_params, alg.dim, ex.expected_dim, alg.dim_symmetric, alg.dim_antisymmetric,
                 alg.closed_under_transpose, angle, alg.span_error_bound, time.perf_counter() - t0))
print(f"{'model':<18}{'n':>4}{'dim':>5}{'exp':>5}{'sym':>5}{'anti':>5}  closed   angle     bound    s")
for r in rows:
    print(f"{r[0]:<18}{r[1]:>4}{r[2]:>5}{r[3]:>5}{r[4]:>5}{r[5]:>5}  {str(r[6]):<6}{r[7]:>9.1e}{r[8]:>9.1e}{r[9]:>6.2f}")
assert all(r[2] == r[3] and r[7] <= max(r[8], 1e-14) for r in rows)

# %% [markdown]
# ## The gap
# Singular values of the (unit-norm) rows relative to the largest: the null directions sit at
# round-off, below $\tau = \sqrt N\,\rho\,\epsilon\,\sigma_{\max}$; every other direction lies above the
# non-zero floor $\sqrt{\tau\sigma_{\max}}$. A value in between would be refused.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for name in ("relu_mlp", "deep_linear", "layer_norm", "tanh_mlp"):
    s = found[name].null.singular_values
    ax.semilogy(np.arange(s.size), np.maximum(s / s[0], 1e-18), ".", label=name)
a = found["relu_mlp"].null
ax.axhline(a.threshold / a.singular_values[0], color="k", lw=0.8, ls="--", label="tau (relu_mlp)")
ax.axhline(a.nonzero_floor / a.singular_values[0], color="k", lw=0.8, ls=":", label="non-zero floor")
ax.set(xlabel="index", ylabel="sigma / sigma_max", title="row spectrum: a gap of ~12 decades")
ax.legend(fontsize=7)
plt.close(fig)
fig

# %% [markdown]
# ## Readable generators and their laws
# The orthonormal basis is mixed by an arbitrary rotation; an echelon basis with pivots on entries
# that single out one generator shows the familiar symmetries. For the ReLU MLP they are the neuron
# rescalings, and each law is Theorem 6's neuron balance; for self-attention the laws are the
# entries of Theorem 7's $\mathbb E[g_{W_Q}g_{W_Q}^\top] = \mathbb E[g_{W_K}g_{W_K}^\top]$.

# %%
for name in ("relu_mlp", "self_attention"):
    alg = found[name]
    for j, A in enumerate(alg.readable("symmetric")[:3]):
        print(f"{name} S{j}: g^T A g = {quadratic_form(alg, A)}")

# %% [markdown]
# ## A model of your own: a square activation
# A functional loss with named parameters: $f(x) = W_2 (W_1 x)^{\odot 2}$. Scaling a hidden unit's
# incoming row by $c$ multiplies its output by $c^2$, so the outgoing column must scale by $c^{-2}$:
# generator $+1$ on the row and $-2$ on the column (Theorem 11's $\beta = 2$). The finder finds one per
# hidden unit, without being told.

# %%
def square_net_loss(p, x, y):
    return (p["W2"] @ (p["W1"] @ x) ** 2 - y).pow(2).sum()


def square_net_sampler(n, gen):
    x = torch.randn(n, 3, generator=gen)
    return x, torch.tanh(x[:, :2]) + 0.3 * torch.randn(n, 2, generator=gen)


gen = torch.Generator().manual_seed(0)
square = Problem(square_net_loss, {"W1": torch.randn(4, 3, generator=gen), "W2": torch.randn(2, 4, generator=gen)},
                 square_net_sampler, name="square activation")
alg = find_symmetries(square, seed=0)
print(alg.dim, alg.dim_symmetric, alg.dim_antisymmetric)
for j, A in enumerate(alg.readable("symmetric")):
    print(f"S{j}: g^T A g = {quadratic_form(alg, A)}")

# %% [markdown]
# ## What the block ansatz cannot see
# With scalar output, $f = w_2^\top W_1 x$ has the shears $\delta W_1 = [S_1 w_2, \dots, S_d w_2]$ ($S_j$
# antisymmetric, $w_2^\top S_j w_2 = 0$) that map one tensor's entries into another's. The *full*
# ansatz (every $n\times n$ matrix; small models only) finds them: $h^2 + d\,h(h-1)/2$.

# %%
from numeric.symmetry_finder import MLP, teacher_sampler

for h in (2, 3):
    torch.manual_seed(0)
    prob = Problem.from_module(MLP((2, h, 1), "linear"), teacher_sampler(MLP((2, h, 1), "linear"), (2,)))
    print(f"h = {h}: block {find_symmetries(prob).dim}, full {find_symmetries(prob, ansatz='full').dim}, "
          f"derived {h * h + 2 * h * (h - 1) // 2}")

# %% [markdown]
# ## The exact algebra (SymPy) of a small ReLU net
# `symbolic/symmetry_check.py` solves the same condition exactly: $g^\top A(c)\,\theta$ as a
# polynomial in weights, inputs, labels and the ReLU gains (reduced to multilinear form, i.e. on
# every activation pattern), whose coefficients must all vanish.

# %%
from symbolic.layer_symmetries import mlp_loss
from symbolic.symmetry_check import exact_algebra, relu_gains

net = mlp_loss((2, 2, 2), "relu")
for A in exact_algebra(net.loss, net.theta, [W.shape for W in net.layers], binary=relu_gains(net)):
    print(list(A.diagonal()))

# %% [markdown]
# ## A balance law along SGD
# The deep linear net's symmetric generators (the double rotations with symmetric $C$), with weight
# decay: per-run averages of $\eta g_B^\top A g_B$ and $4\gamma(1-\eta\gamma)\theta^\top A\theta$ after a
# burn-in, compared run by run (a short run here; the main job runs longer ones).

# %%
alg = found["deep_linear"]
rep = run_sgd(alg.problem, alg, eta=0.05, gamma=0.05, steps=500, burn_in=700, n_runs=16, seed=1)
for j, v in zip(rep.indices, rep.laws):
    print(f"S{j}: LHS {v.lhs:+.4f}  RHS {v.rhs:+.4f}  residual {v.residual:+.2e} +- {v.bound:.2e}  "
          f"{'PASS' if v.passed else 'FAIL'}")
assert rep.passed
