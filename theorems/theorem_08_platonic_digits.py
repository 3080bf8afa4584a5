r"""Theorem 8, the nonlinear check (the paper's Fig. 4): digits MLPs.

Two 6-layer MLPs (tanh or linear) are trained on scikit-learn's digits; net B sees the
inputs through a fixed random Gaussian matrix. After training, the hidden layers of A and
B must be more aligned than the same untrained pair (``numeric.digits_mlp``). The checks
register with Theorem 8 (this file is imported by ``theorem_08_platonic``); it is not a
result module of its own.

Alignment numbers here are the *biased* linear CKA (Kornblith et al. 2019) unless named
otherwise; the uncentred Gram cosine of tanh features is dominated by their mean (~0.83
at initialisation), so it is reported, not judged.
"""

from __future__ import annotations

import numpy as np

from numeric.digits_mlp import digits_experiment, plot_cka_heatmaps
from theorems.cache import shared_run
from theorems.checks import check
from theorems.verdict import Context, Criterion, Verdict

THEOREM = "8"  # the result these checks belong to (no verify(): not a module of its own)
LRS = (0.001, 0.01, 0.1)
MEASURES = ("gram_cosine", "linear_cka", "mutual_knn")


@shared_run
def digits_runs(ctx: Context) -> dict:
    """The trained and untrained A/B pairs, by (activation, lr, seed): the run's seed (and the
    next two under the full budget)."""
    return digits_experiment(seeds=tuple(ctx.seed + k for k in range(ctx.pick(1, 3))), width=ctx.pick(32, 128),
                             epochs=ctx.pick(10, 60), lrs=LRS, device=ctx.device)


@check(THEOREM, slow=True)
def check_digits_alignment(ctx: Context) -> list:
    """Digits MLPs (Fig. 4): training raises A-B hidden-layer alignment above the untrained pair.

    Judged with linear CKA for every seed (a sign test: the gain is ~0.3 against a
    seed-to-seed spread of ~0.05); the Gram cosine and mutual kNN are reported.
    """
    res = digits_runs(ctx)
    seeds = sorted({s for (_, _, s) in res})
    figs = []
    path = ctx.figure_path("thm08_digits_heatmap.png")
    if path is not None:
        figs.append(plot_cka_heatmaps(path, [res[("tanh", 0.1, seeds[0])], res[("linear", 0.1, seeds[0])]]))
    out = []
    for act in ("tanh", "linear"):
        rs = [res[(act, 0.1, s)] for s in seeds]
        trained = np.array([r.mean("linear_cka") for r in rs])
        init = np.array([r.init_matrix["linear_cka"].mean() for r in rs])
        gain = trained - init
        out.append(Verdict(
            THEOREM, f"digits {act} MLPs (Fig. 4): training raises A-B hidden-layer alignment (linear "
            "CKA) above the untrained pair, every seed", measured=float(trained.mean()),
            tolerance_source="sign test over seeds", paper="supports", figures=list(figs),
            criteria=[Criterion.at_least("smallest CKA gain over the untrained pair, over seeds", float(gain.min()),
                                         0.0, "sign test over seeds")],
            details={"cka_trained": trained, "cka_init": init,
                     "cka_matrix": np.mean([r.matrix["linear_cka"] for r in rs], 0),
                     "gram_cosine_trained": [r.mean("gram_cosine") for r in rs],
                     "gram_cosine_init": [r.init_matrix["gram_cosine"].mean() for r in rs],
                     "mutual_knn_trained": [r.mean("mutual_knn") for r in rs],
                     "mutual_knn_init": [r.init_matrix["mutual_knn"].mean() for r in rs],
                     "input_cka_A": np.mean([r.input_alignment["linear_cka"][0] for r in rs], 0),
                     "test_accuracy": [r.test_accuracy for r in rs],
                     "cpu_seconds": sum(r.cpu_seconds for r in rs)}))
    return out


@check(THEOREM, slow=True)
def check_digits_learning_rate(ctx: Context) -> Verdict:
    """Alignment does not grow monotonically with the learning rate 0.001 -> 0.01 -> 0.1 (tanh).

    The claim comes from a summary of the paper, not from the paper (which trains with Adam
    at one learning rate), so the verdict takes no stance on the paper. Every learning rate
    trains for the same number of epochs; the finding is judged with the paper's measure
    (Gram cosine) for every seed.
    """
    res = digits_runs(ctx)
    seeds = sorted({s for (_, _, s) in res})
    epochs = next(iter(res.values())).epochs
    table = {m: np.array([[res[("tanh", lr, s)].mean(m) for s in seeds] for lr in LRS]) for m in MEASURES}
    mono = {m: bool(np.all(np.diff(table[m], axis=0) > 0)) for m in MEASURES}
    acc = [np.mean([res[("tanh", lr, s)].test_accuracy for s in seeds]) for lr in LRS]
    g = table["gram_cosine"].mean(1)
    return Verdict(THEOREM, "seeds' summary: alignment grows with the learning rate 0.001 -> 0.01 -> 0.1 "
                   f"(tanh, SGD, {epochs} epochs each, paper's Gram cosine)",
                   measured=float(g[-1] - g[0]),
                   tolerance_source="measurement reported; holds iff monotone in lr for every seed",
                   criteria=[Criterion.holds("the Gram cosine is not monotone in the learning rate for every seed",
                                             not mono["gram_cosine"], "per-seed comparison of the three rungs")],
                   details={"lrs": LRS, **{f"{m}_per_lr": table[m].mean(1) for m in MEASURES},
                            **{f"monotone_{m}": mono[m] for m in MEASURES}, "test_accuracy_per_lr": acc})
