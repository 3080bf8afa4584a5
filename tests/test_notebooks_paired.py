"""Every notebook is paired with a jupytext script, and the two hold the same cells."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
scripts = sorted(NOTEBOOKS.glob("*.py"))


@pytest.mark.parametrize("script", scripts, ids=[s.stem for s in scripts])
def test_script_and_notebook_hold_the_same_cells(script):
    jupytext = pytest.importorskip("jupytext")
    ipynb = script.with_suffix(".ipynb")
    assert ipynb.exists(), f"{script.name} has no paired notebook: run `jupytext --to ipynb {script}`"
    from_script = jupytext.read(script)
    from_nb = jupytext.read(ipynb)
    src = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert src(from_script) == src(from_nb), f"{ipynb.name} is out of date: run `jupytext --sync {script}`"


def test_every_notebook_has_a_script():
    for nb in NOTEBOOKS.glob("*.ipynb"):
        assert nb.with_suffix(".py").exists(), f"{nb.name} has no paired jupytext script"
