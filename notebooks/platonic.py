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
# # The perfect Platonic representation (Theorems 8, 9, 12 at any depth)
#
# Embedded deep linear nets `f(x) = M_O W_D ... W_1 M_I Z x` trained by SGD on `y = V x + e`.
# The entropic loss selects, among all global minima of the loss, the one whose every hidden
# layer has the kernel `K_k = s_k Sx^{-1} # (V^T Se V)` (matrix geometric mean), whatever the
# embeddings, widths, depth or layer (derived in `symbolic/deep_linear.py`). With weight decay
# the selection changes and the universality is lost (Theorem 9).
# This notebook is CI-sized: small ensembles and short runs; `python -m theorems -t 8 -t 9
# --budget full` runs the long versions.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

from numeric.platonic_sgd import cross_kernel_alignment, measure_kernels
from symbolic import deep_linear as dl
from theorems import theorem_08_platonic as t8
from theorems import theorem_09_weight_decay as t9

# %% [markdown]
# ## 1. Closed form: one normalised kernel for every design, depth and layer

# %%
Kp = dl.normalised(dl.platonic_kernel(t8.V_TEACHER, t8.SX, t8.SE))
for D in (2, 3, 4):
    prob = t8.design_for_depth(D)
    ws = dl.entropic_minimum(prob, t8.WIDTHS[D], seed=0)
    Ks = dl.hidden_kernels(prob, ws)
    print(f"D={D}: |normalised K_k - K*| =", [f"{np.linalg.norm(dl.normalised(K) - Kp):.1e}" for K in Ks],
          " E|grad W_i|^2 =", np.round(dl.layer_second_moments(prob, ws), 6),
          " 4T =", round(4 * prob.equipartition_value(D), 6))

# %% [markdown]
# ## 2. SGD leaves a misaligned global minimum (D = 3) and aligns with a D = 2 net

# %%
eta = 0.02
p3, p2 = t8.design_for_depth(3), t8.design_for_depth(2)
kw = dict(n_runs=32, block_steps=500, window=2, average_blocks=3, max_steps=6000, sample_every=20, device="auto")
m3 = measure_kernels(p3, t8.WIDTHS[3], eta, init_weights=t8.misaligned_start(p3, 3), **kw)
m2 = measure_kernels(p2, t8.WIDTHS[2], eta, **kw)
cos0 = [dl.population_cosine(K, dl.platonic_kernel(t8.V_TEACHER, t8.SX, t8.SE), t8.SX)
        for K in dl.hidden_kernels(p3, t8.misaligned_start(p3, 3))]
fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
steps = np.concatenate([[0], m3.history_steps])
for k in range(2):
    ax[0].plot(steps, 1 - np.concatenate([[cos0[k]], m3.history_cosine[:, k]]), label=f"layer {k + 1}")
ax[0].set(yscale="log", xlabel="SGD step", ylabel="1 - cos(K, K*)", title=f"D=3, eta={eta}")
ax[0].legend()
C = cross_kernel_alignment(m2, m3, t8.SX)
im = ax[1].imshow(C, vmin=0.9, vmax=1)
ax[1].set(title="D=2 net (rows) vs D=3 net (cols)", xlabel="layer", ylabel="layer")
fig.colorbar(im)
plt.show()
print("cross alignment:", np.round(C, 4))

# %% [markdown]
# ## 3. Weight decay: predicted alignment of two nets (identity vs anisotropic M_I) vs kappa = gam B / eta

# %%
ks = [0.3, 1, 3, 10, 30, 100]
for D in (2, 3):
    curve = np.array([t9.predicted_alignment(D, k) for k in ks])
    for j in range(curve.shape[1]):
        plt.plot(ks, curve[:, j], label=f"D={D} layer {j + 1}")
plt.xscale("log")
plt.xlabel("kappa")
plt.ylabel("cross-net Gram cosine")
plt.legend()
plt.show()

# %% [markdown]
# ## 4. Fig. 4 (nonlinear): digits MLPs, one fed rotated inputs (tiny CI version)

# %%
from numeric.digits_mlp import train_pair

r = train_pair("tanh", 0.1, epochs=4, width=16, seed=0)
print("linear CKA, trained:", np.round(r.matrix["linear_cka"], 2))
print("mean CKA trained %.3f vs untrained %.3f; test accuracy %s" % (
    r.mean("linear_cka"), r.init_matrix["linear_cka"].mean(), r.test_accuracy))
