"""Figure files for the report: one way to draw, lay out, save and close a matplotlib figure.

Every figure of the suite is written to a file (no screen): the Agg backend, then
``tight_layout``, ``savefig`` and ``close`` - the figure is closed even when drawing fails, so
a long verification run does not accumulate open figures.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "line.png")
>>> with saved_figure(path, figsize=(2, 2)) as (fig, ax):
...     _ = ax.plot([0, 1], [0, 1])
>>> os.path.getsize(path) > 0
True
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def saved_figure(path, *, dpi: int = 100, **subplots_kw):
    """``with saved_figure(path, figsize=(4, 3)) as (fig, ax):`` draw on a new figure
    (``plt.subplots(**subplots_kw)``; ``ax`` is an array for several panels); when the block
    ends it is laid out, written to ``path`` at ``dpi`` and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(**subplots_kw)
    try:
        yield fig, ax
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def plot_error_ladder(path, etas, errs, ses, title: str, ylabel: str = "relative error"):
    """Relative errors (rungs x components, with CLT error bars) against eta on log-log
    axes, with the slope-1 line through the first point: the leading-order prediction."""
    import numpy as np

    errs, ses = np.atleast_2d(np.asarray(errs).T).T, np.atleast_2d(np.asarray(ses).T).T
    with saved_figure(path, figsize=(4, 3), dpi=100) as (fig, ax):
        for k in range(errs.shape[1]):
            ax.errorbar(etas, errs[:, k], yerr=ses[:, k], marker="o", label=f"layer {k + 1}")
        ax.plot(etas, errs[0, 0] * np.array(etas) / etas[0], "k--", label="slope 1")
        ax.set(xscale="log", yscale="log", xlabel="eta", ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
    return path


def plot_matrix(path, C, labels, title: str, vmin: float | None = None):
    """A labelled heat map of a square matrix (e.g. layer-by-layer alignments)."""
    with saved_figure(path, figsize=(5, 4), dpi=100) as (fig, ax):
        im = ax.imshow(C, vmin=min(0.9, C.min()) if vmin is None else vmin, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im)
    return path


def plot_curves(path, steps, curves, title: str, ylabel: str, xlabel: str = "SGD step"):
    """Columns of ``curves`` (steps x components) against ``steps``, log y axis."""
    with saved_figure(path, figsize=(4.5, 3), dpi=100) as (fig, ax):
        for k in range(curves.shape[1]):
            ax.plot(steps, curves[:, k], label=f"layer {k + 1}")
        ax.set(yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
    return path
