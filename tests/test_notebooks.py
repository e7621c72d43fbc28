"""Static checks on the notebooks: committed without outputs, numbered, and built the course's way."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers[:2] == [0, 1] and numbers == sorted(numbers)
    assert all(re.match(r"\d\d_[a-z0-9_]+\.ipynb$", p.name) for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name}: strip outputs before committing"
            assert cell.get("execution_count") is None, f"{path.name}: strip execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_a_title_and_ends_with_what_you_measured(path):
    cells = _cells(path)
    first_markdown = next(c for c in cells if c["cell_type"] == "markdown")
    assert "".join(first_markdown["source"]).startswith("# " + path.name[:2])
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown").lower()
    if path.name[:2] != "00":
        assert "what you measured" in text, f"{path.name} needs a 'What you measured' section"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert any("from course_utils import" in "".join(c["source"]) for c in code[:3])
