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
