"""The project stands alone: it names no file it does not contain.

A clone of the repository must be readable and runnable by itself, so no source, notebook or
document may point at a sheet outside it (a sibling ``shared`` folder, an absolute path on
some machine), and every relative link in the Markdown documents must resolve.
"""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Patterns that can only mean a file outside the repository.  Built from pieces so that this
# test file does not match itself.
FORBIDDEN = [re.compile(p) for p in (r"THEORY" + r"\.md", r"\.\./" + r"shared", r"/work" + r"/", r"/root" + r"/")]
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".cfg", ".txt", ""}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / line for line in out.splitlines() if (ROOT / line).suffix in TEXT_SUFFIXES and (ROOT / line).is_file()]


def test_no_reference_outside_the_repository():
    hits = []
    for path in tracked_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(p.search(line) for p in FORBIDDEN):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:100]}")
    assert not hits, "files outside the repository are named:\n" + "\n".join(hits)


MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_markdown_links_resolve():
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        for target in MD_LINK.findall(path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_guard_catches_a_planted_reference(tmp_path):
    """The pattern list is not vacuous: a line naming the outside sheet is caught."""
    planted = "see ../" + "shared/THEORY" + ".md for the targets"
    assert any(p.search(planted) for p in FORBIDDEN)
