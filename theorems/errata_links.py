"""Links from verdict rows to the ERRATA.md entries that discuss them.

A verdict row is named by its theorem id and the check function that builds it (the
``Verdict.check`` of a registered check). :data:`ERRATA_LINKS` maps every row whose paper
column can read "wrong" (``paper_holds`` False), and every row an ERRATA.md entry names under
"Verdict rows", to that entry's heading anchor (GitHub style, :func:`github_anchor`). A row named
by two entries links to the one listed here (the entry about its own claim); the other entry
names it as context.

The tests (``tests/test_errata_links.py``) keep this table and ERRATA.md in step: every anchor is
a heading of ERRATA.md, every entry names at least one row, every named row is linked, and every
linked check exists in a theorem module.

>>> errata_anchor("5", "check_coefficient")
'theorem-5--the-weight-decay-coefficient-of-the-layer-balance-interpolation-law'
>>> errata_anchor("5", "check_per_step_identity") is None
True
>>> errata_link("10", "check_equality_condition", "../../ERRATA.md").startswith("../../ERRATA.md#theorem-10--")
True
>>> github_anchor("Theorem 4 — master balance: Eq. 4's `(1 + eta gam)`")
'theorem-4--master-balance-eq-4s-1--eta-gam'
"""

from __future__ import annotations

import re

ERRATA_FILE = "ERRATA.md"

# ---------------------------------------------------------------------------- the entries' anchors
_T1 = "theorem-1--there-is-no-oeta4-second-order-entropic-loss-in-general-only-a-modified-vector-field"
_T1_SGD = ("theorem-1-for-sgd--the-mean-sgd-iterate-follows-phis-noise-term-only-over-an-epoch-without-"
           "replacement-and-along-flat-directions-only-on-symmetry-orbits-or-where-c--h")
_T1_LWA = ("theorem-1-for-sgd--at-finite-eta-the-drift-along-a-valley-follows-the-discrete-lyapunov-covariance-"
           "the-eta---0-limit-of-li-wang-and-arora-is-leading-order-only")
_T2 = "theorem-2--at-zero-weight-decay-robust-invariances-of-phi-need-not-be-norm-preserving"
_T10 = ("theorem-10--for-full-row-rank-v-t--t_min-iff-the-label-noise-is-isotropic-the-input-covariance-plays-"
        "no-role")
_T10_ANISO = "theorem-10--for-anisotropic-label-noise-sgds-eta---0-sharpness-is-resolved-01-above-t"
_T11 = "theorem-11--for-beta--1-the-gradient-noise-grows-towards-the-input-earlier-layers-not-towards-the-output"
_B1 = "appendix-b1--sharpness-decreases-along-training-needs-the-direction-to-settle"
_T3 = ("theorem-3--discrete-symmetries-survive-a-scalar-or-o-commuting-learning-rate-the-papers-own-caveat-made-"
       "exact")
_T4 = "theorem-4--master-balance-eq-4s-1--eta-gam-is-the-entropic-losss-sgds-exact-law-has-1---eta-gam"
_T5 = "theorem-5--the-weight-decay-coefficient-of-the-layer-balance-interpolation-law"
_T56 = "theorems-56--the-mean-imbalance-is-0-at-every-eta-what-depends-on-eta-is-the-time-to-reach-it"
_T8 = ("theorem-8--equipartition-value-and-kernel-scale-depend-on-the-embeddings-only-the-normalised-kernel-is-"
       "universal")
_FIG4 = ("theorem-8--fig-4--alignment-grows-with-the-learning-rate-0001---01-is-not-supported-a-summarys-reading-"
         "not-the-papers-claim")
_T9 = "theorem-9--quantified-kappa--gam-b--eta-sets-the-loss-of-alignment-batch-size-then-matters"
_T9_ORTH = ("theorem-9--the-loss-of-universality-is-generic-not-universal-orthogonal-embeddings-keep-perfect-"
            "alignment-at-every-kappa")
_T12_BATCH = "theorem-12-depth-2--precision-the-batch-size-leaves-the-optimum-alone-only-at-leading-order-in-eta"
_T12_ANISO = ("theorem-12--sgds-small-eta-limit-is-the-entropic-optimum-only-for-isotropic-label-noise-anisotropic-"
              "label-noise-rotates-the-hidden-basis-and-offsets-the-limit")
_T8_OFFSET = ("theorems-8-and-12-any-depth--for-anisotropic-label-noise-sgds-eta---0-limit-is-offset-from-the-"
              "entropic-minimum")
_T12_D4 = ("theorem-12-at-depth-4-and-theorem-8s-kernels--settled-the-first-hidden-layers-15-gap-is-sgds-eta---0-"
           "limit-the-slow-flows-fixed-point-not-a-stall")

# ---------------------------------------------------------------------------- (theorem, check) -> anchor
ERRATA_LINKS: dict[tuple[str, str], str] = {
    ("1", "check_epoch_symbolic"): _T1_SGD,
    ("1", "check_epoch_slope"): _T1_SGD,  # paper wrong (with-replacement row)
    ("1", "check_toy_valley"): _T1_SGD,  # paper wrong
    ("1", "check_tanh_valley"): _T1_SGD,  # paper wrong (heteroscedastic row)
    ("1", "check_orbit_drift"): _T1_SGD,
    ("1", "check_lwa_limit"): _T1_LWA,
    # Errata of the paper
    ("1", "check_second_order_potential"): _T1,  # paper wrong
    ("1", "check_potential_route"): _T1,  # paper wrong (quartic row)
    ("1", "check_bea_slope"): _T1,
    ("1", "check_noise_split_numeric"): _T1,
    ("2", "check_family"): _T2,  # paper wrong (translation, shear rows)
    ("2", "check_robust_norm_preservation"): _T2,  # paper wrong (gam = 0 row)
    ("10", "check_equality_condition"): _T10,  # paper wrong
    ("10", "check_label_noise_example"): _T10,
    ("10", "check_noise_equals_input_example"): _T10,
    ("11", "check_ratio"): _T11,
    ("11", "check_symbolic"): _T11,
    ("B1", "check_flattening"): _B1,
    ("B1", "check_norm_law"): _B1,
    ("B1", "check_weight_decay_equilibrium"): _B1,
    # Notes
    ("3", "check_discrete_family"): _T3,
    ("4", "check_sgd_law"): _T4,  # paper wrong
    ("4", "check_ladder_fit"): _T4,  # paper wrong
    ("4", "check_derived_law"): _T4,
    ("4", "check_stationary_ratios"): _T4,
    ("5", "check_coefficient"): _T5,  # paper wrong
    ("5", "check_symbolic"): _T5,
    ("5", "check_gradient_balance"): _T56,
    ("6", "check_neuron_balance"): _T56,
    ("8", "check_equipartition_monte_carlo"): _T8,
    ("8", "check_digits_learning_rate"): _FIG4,  # a summary's claim: no paper stance
    ("8", "check_digits_alignment"): _FIG4,
    ("9", "check_symbolic"): _T9,
    ("9", "check_alignment_curve"): _T9,
    ("9", "check_sgd_weight_decay"): _T9,
    ("9", "check_batch_dependence"): _T9,
    ("9", "check_orthogonal_embeddings_keep_alignment"): _T9_ORTH,
    ("12", "check_batch_independence"): _T12_BATCH,
    ("10", "check_data_balance"): _T12_BATCH,
    ("10", "check_sgd_sharpness"): _T10_ANISO,
    ("12", "check_sgd_invariants"): _T12_ANISO,
    ("12", "check_sgd_limit"): _T12_ANISO,  # paper wrong (anisotropic label noise)
    ("12", "check_slow_flow_fixed_point"): _T12_ANISO,  # paper wrong (anisotropic label noise)
    ("12", "check_any_depth_sgd"): _T8_OFFSET,  # paper wrong
    ("8", "check_kernel_convergence"): _T8_OFFSET,  # paper wrong
    ("8", "check_cross_alignment"): _T8_OFFSET,
}


def errata_anchor(theorem: str, check: str) -> str | None:
    """The ERRATA.md heading anchor (without ``#``) of the entry about this verdict row, or None."""
    return ERRATA_LINKS.get((str(theorem), str(check)))


def errata_link(theorem: str, check: str, errata_path: str = ERRATA_FILE) -> str | None:
    """``errata_path#anchor`` for a Markdown link (e.g. ``../../ERRATA.md`` from a report folder), or None."""
    anchor = errata_anchor(theorem, check)
    return None if anchor is None else f"{errata_path}#{anchor}"


# ---------------------------------------------------------------------------- GitHub heading anchors
def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, every character that is not a
    letter, digit, ``_``, ``-`` or space dropped (emphasis and code marks included), spaces
    turned into ``-``. (Repeated headings get ``-1``, ``-2``: see :func:`heading_anchors`.)"""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(markdown: str, level: int | None = None) -> list[str]:
    """Anchors of the headings of a Markdown document, in order (``level`` = number of ``#``,
    None for all), with GitHub's suffixes for repeats. Fenced code blocks are skipped."""
    seen: dict[str, int] = {}
    out = []
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = github_anchor(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchor = base if n == 0 else f"{base}-{n}"
        if level is None or len(m.group(1)) == level:
            out.append(anchor)
    return out
