"""Every notebook is a jupytext script paired with an .ipynb, and the two hold the same cells.

A notebook script is a ``notebooks/*.py`` file that opens with a jupytext header; the other
``.py`` files there (``execute.py``, which stores the executed outputs, and ``nbsupport.py``,
which the notebooks import) are not notebooks. The .ipynb files are committed with their
outputs (``python notebooks/execute.py``): only the cells' types and sources must match, and no
stored output may be an error.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def is_jupytext_script(path: Path) -> bool:
    """A jupytext script opens with a ``# ---`` header block that holds ``jupytext:`` metadata."""
    lines = path.read_text().splitlines()
    if not lines or lines[0] != "# ---" or "# ---" not in lines[1:]:
        return False
    return any("jupytext:" in line for line in lines[1:lines.index("# ---", 1)])


scripts = sorted(p for p in NOTEBOOKS.glob("*.py") if is_jupytext_script(p))


def test_there_are_notebooks():
    assert scripts, f"no jupytext scripts in {NOTEBOOKS}"


@pytest.mark.parametrize("script", scripts, ids=[s.stem for s in scripts])
def test_script_and_notebook_hold_the_same_cells(script):
    jupytext = pytest.importorskip("jupytext")
    ipynb = script.with_suffix(".ipynb")
    assert ipynb.exists(), f"{script.name} has no paired notebook: run `python notebooks/execute.py {script.stem}`"
    from_script = jupytext.read(script)
    from_nb = jupytext.read(ipynb)
    src = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert src(from_script) == src(from_nb), (f"{ipynb.name} is out of date: run `python notebooks/execute.py "
                                              f"{script.stem}` (or `jupytext --sync {script}`)")


@pytest.mark.parametrize("script", scripts, ids=[s.stem for s in scripts])
def test_stored_outputs_hold_no_error(script):
    ipynb = script.with_suffix(".ipynb")
    if not ipynb.exists():
        pytest.skip("no paired notebook (reported by the pairing test)")
    cells = json.loads(ipynb.read_text())["cells"]
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(cells) for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{ipynb.name} was stored with failing cells {errors}: fix them and re-execute it"


def test_every_notebook_has_a_script():
    for nb in NOTEBOOKS.glob("*.ipynb"):
        script = nb.with_suffix(".py")
        assert script.exists() and is_jupytext_script(script), f"{nb.name} has no paired jupytext script"
