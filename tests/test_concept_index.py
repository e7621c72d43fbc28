"""Every row of the README's concept index points at a notebook, a section and a function that exist."""

import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Concept index", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 5 and cells[0] not in ("idea",) and not set(cells[0]) <= set("-"):
            rows.append(cells)
    return rows


def _headings(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    lines = ("".join(c["source"]).splitlines() for c in cells if c["cell_type"] == "markdown")
    return [line.lstrip("#").strip() for block in lines for line in block if line.startswith("#")]


def test_the_index_is_there_and_covers_every_notebook_that_teaches():
    rows = _rows()
    assert len(rows) >= 30
    linked = {Path(re.search(r"\((notebooks/[^)]+)\)", r[1]).group(1)).name for r in rows}
    teaching = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00_")}
    assert teaching <= linked, f"notebooks the index does not cover: {sorted(teaching - linked)}"


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r[0][:40])
def test_each_link_resolves(row):
    idea, notebook_cell, section, function, _paper = row
    path = ROOT / re.search(r"\((notebooks/[^)]+)\)", notebook_cell).group(1)
    assert path.is_file(), f"{idea}: {path} does not exist"
    assert section in _headings(path), f"{idea}: no section '{section}' in {path.name}"
    dotted = function.strip("`").split(".")
    obj = importlib.import_module(f"course_utils.{dotted[0]}")
    for name in dotted[1:]:
        assert hasattr(obj, name), f"{idea}: course_utils.{'.'.join(dotted)} does not exist"
        obj = getattr(obj, name)
