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
# # Theorem 1: the entropic loss, derived and witnessed
#
# One gradient-descent step $\theta_1 = \theta_0 - \eta\, g(\theta_0)$ is *not* gradient flow on
# $\ell$. Backward-error analysis finds the **modified vector field**
# $F_\eta = f_0 + \eta f_1 + \eta^2 f_2 + \dots$ whose time-$\eta$ flow reproduces the step to any
# order. Where $F_\eta$ is a gradient, $F_\eta = -\nabla\phi$ and $\phi$ is the paper's
# *entropic loss*. This notebook derives $F_\eta$ with SymPy (`symbolic.backward_error`), shows
# where a loss $\phi$ exists and where it does not, and checks the predicted error slopes with
# torch in float64 (`numeric.modified_flow`).

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch
from IPython.display import Math, display

from numeric import modified_flow as mf
from numeric.minibatch_noise import one_over_b_law, tanh_mlp_per_sample
from symbolic import backward_error as be

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## 1. The modified field of one GD step, order by order
# The flow of $F$ expands as $\varphi_\eta(y) = y + \sum_m \frac{\eta^m}{m!} D_F^{m-1}F$ with the
# Lie derivative $D_AB = B'A$; the Euler step has no $\eta^{\ge2}$ terms, which fixes every
# $f_j$ recursively. For a generic 1-D loss $\ell(x)$ (undefined function: the result is an
# identity in its derivatives):

# %%
x = sp.Symbol("x")
l = sp.Function("l")(x)
fs = be.euler_modified_field(sp.Matrix([-l.diff(x)]), (x,), 3)
for j, f in enumerate(fs):
    display(Math(f"f_{j} = " + sp.latex(sp.factor(f[0]))))

# %% [markdown]
# In $n$ dimensions the closed forms are $f_1 = -\frac12 Hg = -\nabla\frac14|g|^2$ and
# $f_2 = -\frac13 H^2 g - \frac1{12}T[g,g]$; SymPy confirms both for a generic 2-D loss
# (residual exactly zero), and the first-order entropic loss for a matrix learning rate
# $\Lambda = \eta P$: $f_1 = -P\nabla(\frac14 g^\top P g)$.

# %%
l2, xs = be.generic_loss(2)
g, H = be.gradient(l2, xs), be.hessian(l2, xs)
f = be.euler_modified_field(-g, xs, 2)
print("f1 + H g / 2           =", sp.expand(f[1] + H * g / 2).T)
print("f2 - closed form        =", sp.expand(f[2] - be.second_order_closed_form(l2, xs)).T)
P = be.symmetric_matrix(2)
fP = be.euler_modified_field(-P * g, xs, 1)
print("matrix LR: f1 + P grad(g^T P g / 4) =", sp.expand(fP[1] + P * be.gradient((g.T * P * g)[0] / 4, xs)).T)

# %% [markdown]
# ## 2. Finite $n$: the coefficient $c_n$
# $n$ GD steps with $\Lambda/n$ on $\phi = \ell + c\,g^\top\Lambda g$ against one step with
# $\Lambda$ on $\ell$: composing the steps and matching the $\Lambda^2$ terms for every loss and
# every symmetric $P$ fixes $c$. The same from a `summation` over the steps with a symbolic $n$:

# %%
print({n: be.first_order_coefficient_finite_n(n) for n in range(1, 5)})
cn, lim = be.first_order_coefficient_symbolic_n()
display(Math(r"c_n = " + sp.latex(cn) + r",\qquad \lim_{n\to\infty} c_n = " + sp.latex(lim)))

# %% [markdown]
# ## 3. Second order: a vector field, rarely a loss
# $f_2 = -\nabla\big(\tfrac1{12}g^\top Hg\big) - \tfrac16 H^2 g$, and the antisymmetric part of its
# Jacobian is $-\frac1{12}[H, T[g]]$ with $T[g]_{ij} = \sum_k \ell_{ijk}g_k$. So a second-order
# entropic loss exists only where $H$ and $T[g]$ commute everywhere: quadratic losses
# ($\phi_2 = \frac16 g^\top Hg$) and 1-D losses (where, however, the potential of
# $\ell'\ell''^2$ is not a local expression: its Euler operator is non-zero). A concrete
# counterexample:

# %%
lc, xc, pt, curl = be.nonpotential_counterexample()
display(Math(r"\ell = " + sp.latex(lc) + r",\quad (\nabla\times f_2)(1,1) = " + sp.latex(curl)))
u = sp.Function("u")(x)
display(Math(r"E[u'u''^2] = " + sp.latex(be.euler_operator_1d(u.diff(x) * u.diff(x, 2) ** 2, u, x))))

# %% [markdown]
# ## 4. The witness: error slopes
# For a random tanh MLP (and a quadratic for order 2), the gap
# $|\theta_{GD} - \varphi_\eta^{F_k}(\theta_0)|$ is measured over a halving ladder of $\eta$
# (RK4, float64). The predicted slope is $k+2$ and the predicted constant is $|f_{k+1}(\theta_0)|$
# (dotted lines). Last line: gradient flow on the *loss* $\ell + \frac\eta4|g|^2 + \frac{\eta^2}6
# g^\top H g$ for a quartic - slope 3, not 4: no $O(\eta^4)$ entropic loss of this form.

# %%
runs = []
for fam, k, dim in [("tanh_mlp", 0, 2), ("tanh_mlp", 1, 2), ("quadratic", 2, 3)]:
    loss, y0, info = mf.random_loss(fam, dim, 11)
    exp = mf.quadratic_expansion(info["A"], info["b"], y0, k) if fam == "quadratic" else None
    runs.append((f"{fam} k={k}", mf.bea_slope(mf.gradient_field(loss), y0, k, expansion=exp)))
lq, yq, _ = mf.random_loss("quartic", 2, 13)
f0q = mf.gradient_field(lq)
candidate = lambda h: mf.gradient_field(mf.entropic_loss(lq, h, 0.25, second_order=1 / 6))  # noqa: E731
gaps = []
hs = 0.02 * 0.5 ** np.arange(5)
for h in hs:
    y_flow = mf.rk4_flow(candidate(float(h)), yq, float(h), 16)
    gaps.append(float(torch.linalg.vector_norm(mf.gd_step(f0q, yq, float(h)) - y_flow)))
cand_fit = mf.fit_loglog_slope(hs, gaps)

fig, ax = plt.subplots(figsize=(6, 4.5))
for label, fit in runs:
    line, = ax.loglog(fit.h, fit.err, "o-", label=f"{label}: slope {fit.slope:.3f} ± {fit.details['slope_tol']:.3f}")
    ax.loglog(fit.h, fit.details["u_norm"] * fit.h ** fit.details["predicted_slope"], ":", color=line.get_color())
ax.loglog(hs, gaps, "s--", label=f"quartic, flow on phi_2 candidate: slope {cand_fit.slope:.3f}")
ax.set_xlabel(r"$\eta$")
ax.set_ylabel(r"$|\theta_{GD} - \varphi_\eta(\theta_0)|$")
ax.legend(fontsize=7)
plt.show()
for label, fit in runs:
    print(label, "slope", round(fit.slope, 4), "tolerance", round(fit.details["slope_tol"], 4),
          "constant rel. error", f"{fit.details['const_rel_err']:.2e}")

# %% [markdown]
# ## 5. The stochastic part: $E_B|\nabla\ell_B|^2 = |\nabla L|^2 + \mathrm{Tr}\,\Sigma/B$
# Minibatches drawn with replacement from 32 points; the measured $\mathrm{Tr\,Cov}(\nabla\ell_B)$
# follows $1/B$ (error bars: CLT, $z = 5.3$).

# %%
gen = torch.Generator().manual_seed(0)
X = torch.randn(32, 3, generator=gen)
y = torch.sin(X[:, 0]) + 0.3 * torch.randn(32, generator=gen)
ploss, npar = tanh_mlp_per_sample(3, 3)
th = 0.5 * torch.randn(npar, generator=gen)
law = one_over_b_law(ploss, th, X, y, n_batches=20000)
B = np.array(law["batches"])
bars = [r["bound"] for r in law["rows"]]
plt.figure(figsize=(5, 3.5))
plt.errorbar(B, law["trace_cov"], yerr=bars, fmt="o", label="measured")
plt.loglog(B, law["rows"][0]["trace_sigma"] / B, "--", label=r"Tr$\Sigma/B$")
plt.xlabel("batch size B")
plt.ylabel("Tr Cov")
plt.legend()
plt.show()
print("slope", law["slope"], "±", round(law["slope_tol"], 3))
