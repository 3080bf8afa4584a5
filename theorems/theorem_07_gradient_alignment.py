r"""Theorem 7 (gradient alignment). If $l$ depends on $(U, W)$ only through $K = UW$ (matrix
factorisation, deep linear nets, self-attention with $K = W_Q^TW_K$), then at every local
minimum of the entropic loss with $\gamma = 0$

$$W\,\mathbb E[G^TG]\,W^T = U^T\,\mathbb E[GG^T]\,U,\qquad G = \nabla_K l_B .$$

Derivation (symbolic/layer_symmetries.py, residual 0): for every symmetric C the double
rotation $W\to e^{\lambda C}W$, $U\to Ue^{-\lambda C}$ is a symmetry, and
$g^TAg = \mathrm{Tr}\,C(g_Wg_W^T - g_U^Tg_U)$ with $g_W = U^TG$, $g_U = GW^T$; the Theorem-4 law
for all C is the matrix identity $\mathbb E[g_Wg_W^T] = \mathbb E[g_U^Tg_U]$, i.e. the statement.
For self-attention ($U = W_Q^T$, $W = W_K$) it reads $\mathbb E[g_{W_K}g_{W_K}^T] =
\mathbb E[g_{W_Q}g_{W_Q}^T]$. For SGD at stationarity it is exact (minibatch gradients).

Numeric witness: (a) matrix factorisation $K = W_2W_1$ (2-layer linear student, teacher-student
MSE); (b) one self-attention layer, $W_Q, W_K$ trained, $W_V$ the teacher's. Relative gap
$|\mathbb E\,\mathrm{lhs}-\mathbb E\,\mathrm{rhs}|_F/|\mathbb E\,\mathrm{lhs}|_F$; tolerance: every
entry's paired residual inside its Student-t CI (p = 1e-6, Bonferroni over the h(h+1)/2
entries); the noise floor (Frobenius norm of the entry CIs, relative) is reported with it.
(c) Fig. 9 of the paper: along training the gap "tracks the entropy rather than the loss":
Spearman correlations over training blocks of the gap with the entropy (sum of squared
minibatch gradient norms) and with the loss, measured and reported.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from numeric.attention import AttentionEnsemble
from numeric.balance import gram_law, mlp_stationary, stationary_run
from symbolic.layer_symmetries import derivation_summary
from theorems.verdict import Context, Verdict

THEOREM = "7"
TITLE = "Gradient alignment (double rotation): matrix factorisation and self-attention"

MF = dict(dims=(3, 3, 2), eta=0.03, teacher_scale=1.5)
ATT = dict(d=3, h=2, n_tokens=3, teacher_scale=1.5, eta=0.01)
_ATT_CACHE: dict = {}


def check_symbolic(ctx: Context) -> Verdict:
    s = derivation_summary()
    law = s["double_rotation"]
    res = [law.invariance_residual, law.phi_residual, law.sgd_residual, s["double_rotation_gram"]]
    return Verdict(THEOREM, "double rotation (symmetric C) is a symmetry of l(UW); g^TAg = Tr C(g_W g_W^T - g_U^T g_U)",
                   symbolic="E[g_W g_W^T] = E[g_U^T g_U] <=> W E[G^T G] W^T = U^T E[G G^T] U",
                   residual=str(sum(abs(r) for r in res)), passed=all(r == 0 for r in res), paper_holds=True)


def _gram_verdict(claim, g, res, extra) -> Verdict:
    ok = g["all_entries_consistent"] and res.converged
    return Verdict(THEOREM, claim, symbolic="W E[G^T G] W^T = U^T E[G G^T] U (SGD-exact at stationarity)",
                   predicted=0.0, measured=g["relative_gap"], tolerance=g["relative_noise_floor"],
                   tolerance_source=f"entrywise Student-t CI, {g['runs']} runs, p=1e-6 Bonferroni x{g['entries']}",
                   passed=ok, paper_holds=g["all_entries_consistent"],
                   details={**extra, "max_entry_z": g["max_z"], "t": g["t"],
                            "steps_to_stationary": res.steps_to_stationary, "converged": res.converged})


def check_matrix_factorisation(ctx: Context, dims=MF["dims"], eta=MF["eta"], seed=None, n_runs=32) -> Verdict:
    seed = ctx.seed if seed is None else seed
    _, res, first = mlp_stationary(tuple(dims), "linear", eta, 0.0, n_runs=n_runs, seed=seed,
                                   teacher_scale=MF["teacher_scale"], device=str(ctx.device),
                                   max_steps=ctx.pick(20_000, 200_000), average_blocks=ctx.pick(10, 40))
    g = gram_law(res.per_run["gram_in_1"], res.per_run["gram_out_1"])
    g0 = gram_law(first["gram_in_1"], first["gram_out_1"])
    return _gram_verdict(f"matrix factorisation K = W2 W1 {list(dims)}, eta={eta:g}", g, res,
                         {"eta": eta, "relative_gap_first_block": g0["relative_gap"]})


def attention_run(ctx: Context):
    key = (ctx.budget, ctx.seed, str(ctx.device))
    if key not in _ATT_CACHE:
        att = AttentionEnsemble(d=ATT["d"], h=ATT["h"], n_tokens=ATT["n_tokens"], teacher_scale=ATT["teacher_scale"],
                                eta=ATT["eta"], n_runs=32, seed=ctx.seed, device=ctx.device)
        _ATT_CACHE[key] = stationary_run(att, block_steps=500, max_steps=ctx.pick(20_000, 200_000),
                                         drift_keys=("gsq", "wgram_q", "wgram_k"),
                                         average_blocks=ctx.pick(10, 40))
    return _ATT_CACHE[key]


def check_attention(ctx: Context) -> Verdict:
    res = attention_run(ctx)
    g = gram_law(res.per_run["gram_k"], res.per_run["gram_q"])
    g0 = gram_law(res.blocks[0]["gram_k"], res.blocks[0]["gram_q"])
    return _gram_verdict(f"self-attention E[g_K g_K^T] = E[g_Q g_Q^T] (d={ATT['d']}, h={ATT['h']}), eta={ATT['eta']:g}",
                         g, res, {"eta": ATT["eta"], "relative_gap_first_block": g0["relative_gap"]})


def check_gap_tracks_entropy(ctx: Context) -> Verdict:
    """Fig. 9: Spearman correlation over training blocks of the gap with entropy and with loss."""
    res = attention_run(ctx)
    blocks = res.blocks
    gap = np.array([gram_law(b["gram_k"], b["gram_q"])["relative_gap"] for b in blocks])
    entropy = np.array([float(b["gsq"][:, :2].sum(-1).mean()) for b in blocks])  # trained blocks Q, K
    loss = np.array([float(b["loss"].mean()) for b in blocks])
    rho_e = float(scipy.stats.spearmanr(gap, entropy).statistic)
    rho_l = float(scipy.stats.spearmanr(gap, loss).statistic)
    # Significance of each correlation: Spearman under independence, n blocks (blocks are serially
    # correlated, so these p-values are optimistic; we report them, we do not test on them).
    p_e = float(scipy.stats.spearmanr(gap, entropy).pvalue)
    p_l = float(scipy.stats.spearmanr(gap, loss).pvalue)
    holds = rho_e > rho_l and p_e < 1e-3
    # An observation, not a derived law: "passed" means the measurement was made on a converged run.
    measured_ok = res.converged and bool(np.isfinite([rho_e, rho_l]).all())
    return Verdict(THEOREM, "Fig. 9: alignment gap tracks the entropy rather than the loss (self-attention)",
                   symbolic="observation (no derivation)", passed=measured_ok, paper_holds=holds,
                   details={"spearman_gap_entropy": rho_e, "p_entropy": p_e, "spearman_gap_loss": rho_l,
                            "p_loss": p_l, "blocks": len(blocks), "block_steps": 500,
                            "gap_first_last": [float(gap[0]), float(gap[-1])],
                            "entropy_first_last": [float(entropy[0]), float(entropy[-1])],
                            "loss_first_last": [float(loss[0]), float(loss[-1])]})


def verify(ctx: Context) -> list[Verdict]:
    return [check_symbolic(ctx), check_matrix_factorisation(ctx), check_attention(ctx), check_gap_tracks_entropy(ctx)]


def test_symbolic(ctx):
    v = check_symbolic(ctx)
    assert v.passed, v.explain()


def test_matrix_factorisation(ctx):
    v = check_matrix_factorisation(ctx)
    assert v.passed, v.explain()


def test_attention(ctx):
    v = check_attention(ctx)
    assert v.passed, v.explain()


def test_attention_bad_inputs():
    import pytest

    from core.errors import InputError

    with pytest.raises(InputError, match="eta"):
        AttentionEnsemble(eta=0.0)
    with pytest.raises(InputError, match=">= 1"):
        AttentionEnsemble(h=0)


@given(seed=st.integers(0, 2**16))
def test_attention_symmetry_numerically(seed):
    """Hypothesis: the attention output is unchanged by W_Q -> e^{-C^T} W_Q... (K = W_Q^T W_K fixed)."""
    import scipy.linalg
    import torch

    g = torch.Generator().manual_seed(seed)
    WQ, WK, WV = (torch.randn(1, 2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    X = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64)
    C = torch.randn(2, 2, generator=g, dtype=torch.float64)
    E = torch.as_tensor(scipy.linalg.expm(0.3 * (C + C.T).numpy()))
    from numeric.attention import attention_forward

    # U = W_Q^T -> U e^{-C}  <=>  W_Q -> e^{-C} W_Q (C symmetric);  W_K -> e^{C} W_K
    out0 = attention_forward(WQ, WK, WV, X)
    out1 = attention_forward(torch.linalg.inv(E) @ WQ, E @ WK, WV, X)
    assert torch.allclose(out0, out1, rtol=1e-10, atol=1e-12)
