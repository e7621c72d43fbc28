"""Claims a notebook makes about its own numbers, checked in the cell that measured them.

A sentence that states an outcome ("at 20 steps DDIM with eta = 1 beats eta = 0") is backed by
``claims.claim(text, holds)`` right after the numbers are computed:

- at the sizes a student runs (the full and the CPU size) a claim that does not hold raises
  ``AssertionError`` naming it, so a change that breaks a sentence stops the notebook;
- at the CI smoke size (``COURSE_FAST=1``: tiny models, few samples) it prints a warning that
  names the claim, and the notebook goes on.

The ledger, ``python -m course_utils claims [--notebooks 06 10]``, lists every claim of the
notebooks with the cell that makes it and the condition that backs it, so a change that moves the
numbers knows which sentences to re-read.
"""

from __future__ import annotations

import argparse
import ast
import json
from dataclasses import dataclass
from pathlib import Path

from . import config

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def claim(text: str, holds) -> bool:
    """Print ``holds  text``; otherwise raise (full and CPU sizes) or warn (fast size). Returns ``holds``."""
    if bool(holds):
        print(f"holds    {text}")
        return True
    if config.is_fast():
        print(f"WARNING  (fast mode) does not hold here: {text}")
        return False
    raise AssertionError(f"claim does not hold: {text}")


@dataclass(frozen=True)
class Entry:
    notebook: str
    cell: int
    text: str  # the claim's text as written (often an f-string with the numbers)
    condition: str  # the expression that backs it


def _is_claim_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        return False
    f = node.func
    if isinstance(f, ast.Name):
        return f.id == "claim"
    owner = getattr(f, "value", None)
    return isinstance(f, ast.Attribute) and f.attr == "claim" and isinstance(owner, ast.Name) and owner.id == "claims"


def ledger(paths: list[Path]) -> list[Entry]:
    """Every ``claims.claim(text, condition)`` call in the code cells of the given notebooks."""
    entries = []
    for path in paths:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        for index, cell in enumerate(nb.get("cells", [])):
            if cell.get("cell_type") != "code":
                continue
            source = "".join(cell.get("source", []))
            try:
                tree = ast.parse(source)
            except SyntaxError:  # IPython magics: not Python, no claims
                continue
            for node in ast.walk(tree):
                if _is_claim_call(node):
                    text, condition = (ast.get_source_segment(source, a) or "" for a in node.args[:2])
                    entries.append(Entry(Path(path).stem, index, " ".join(text.split()), " ".join(condition.split())))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", nargs="*", help="notebook numbers or names (default: all)")
    parser.add_argument("--folder", type=Path, default=NOTEBOOKS, help="where the notebooks are")
    args = parser.parse_args(argv)
    paths = sorted(args.folder.glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        paths = [p for p in paths if any(p.stem == n or p.stem.startswith(f"{n}_") for n in args.notebooks)]
    if not paths:
        print(f"error: no notebooks found in {args.folder}", flush=True)
        return 2
    entries = ledger(paths)
    for e in entries:
        print(f"{e.notebook} [cell {e.cell}]  {e.text}\n    backed by: {e.condition}")
    print(f"{len(entries)} claims in {len({e.notebook for e in entries})} of {len(paths)} notebooks")
    return 0
