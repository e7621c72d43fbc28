"""Student copies of the notebooks: every exercise's solution replaced by a stub to fill in.

The cell convention (in the shipped notebooks, which keep their solutions and run end to end):

- a markdown cell tagged ``exercise`` states the task;
- the code cell after it, tagged ``solution``, holds the function(s) the student writes and ends
  by calling the checker: ``checks.check_forward_noising(forward_noise)``.

The student copy keeps every cell, strips all outputs, and replaces the body of each function
defined in a ``solution`` cell by ``raise NotImplementedError("exercise: ...")``, keeping its
signature and docstring. The other lines of the cell (the checker call) stay, so running the
cell gives the student a verdict ("NOT DONE" until the function is written).

::

    python -m course_utils.student_version                 # notebooks/ -> student_notebooks/
    python -m course_utils.student_version --out /tmp/s notebooks/01_forward_process.ipynb
"""
from __future__ import annotations

import argparse
import ast
import copy
import sys
from pathlib import Path

import nbformat

from . import config

EXERCISE_TAG = "exercise"
SOLUTION_TAG = "solution"


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell) -> bool:
    return cell.get("cell_type") == "code" and SOLUTION_TAG in tags(cell)


def stub_source(source: str) -> str:
    """The solution cell's code with each top-level function body replaced by a NotImplementedError stub."""
    tree = ast.parse(source)
    lines = source.splitlines()
    functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not functions:
        raise ValueError("a solution cell must define the function the student writes")
    out: list[str] = []
    done = 0  # lines of the source already copied or replaced
    for node in functions:
        first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        out.extend(lines[done:first])
        out.extend(_stub_function(node, lines))
        done = node.end_lineno
    out.extend(lines[done:])
    text = "\n".join(out).rstrip()
    return text + "\n" if source.endswith("\n") else text


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> list[str]:
    first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str)
    indent = " " * (body[0].col_offset if body[0].lineno != node.lineno else node.col_offset + 4)
    if body[0].lineno == node.lineno:  # "def f(x): return x" on one line: rebuild the header
        head = lines[first : node.lineno - 1] + [" " * node.col_offset + f"def {node.name}({ast.unparse(node.args)}):"]
        kept = []
    else:
        head = lines[first : body[0].lineno - 1]
        kept = lines[body[0].lineno - 1 : body[0].end_lineno] if has_doc else []
    message = f"exercise: write the body of {node.name}"
    return head + kept + [f"{indent}# your code here", f'{indent}raise NotImplementedError("{message}")']


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student copy of ``nb``: solutions stubbed, every output and execution count removed."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        if is_solution(cell):
            cell.source = stub_source(cell.source)
    return nb


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What breaks the exercise convention: a solution without its exercise cell, checker or function."""
    found = []
    for i, cell in enumerate(nb.cells):
        if not is_solution(cell):
            continue
        previous = nb.cells[i - 1] if i > 0 else None
        if previous is None or previous.cell_type != "markdown" or EXERCISE_TAG not in tags(previous):
            found.append(f"cell {i}: a solution cell needs a markdown cell tagged '{EXERCISE_TAG}' right before it")
        if "checks.check_" not in cell.source:
            found.append(f"cell {i}: a solution cell should end by calling its checker (checks.check_...)")
        try:
            stub_source(cell.source)
        except (SyntaxError, ValueError) as err:
            found.append(f"cell {i}: {err}")
    return found


def exercise_count(nb: nbformat.NotebookNode) -> int:
    return sum(is_solution(cell) for cell in nb.cells)


def write_student_versions(notebooks: list[Path], out: Path) -> dict[str, int]:
    """Write a student copy of each notebook into ``out``; return ``{name: number of exercises}``."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        found = problems(nb)
        if found:
            raise ValueError(f"{path.name}: " + "; ".join(found))
        nbformat.write(student_notebook(nb), out / path.name)
        counts[path.name] = exercise_count(nb)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.student_version", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to convert (default: every notebooks/*.ipynb)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <repo>/student_notebooks)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((config.repo_root() / "notebooks").glob("*.ipynb"))
    if not notebooks:
        parser.error("no notebooks found")
    out = args.out or config.repo_root() / "student_notebooks"
    try:
        counts = write_student_versions(notebooks, out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, n in counts.items():
        print(f"{name}: {n} exercise{'s' if n != 1 else ''}")
    print(f"wrote {len(counts)} student notebooks to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
