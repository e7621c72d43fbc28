"""Student copies of the notebooks: every marked solution removed, every output gone.

The shipped notebooks keep their solutions, so they run end to end. The markers are nbgrader's, so
an instructor who uses nbgrader can take the notebooks as its source as they are. Each exercise is
three consecutive cells:

1. a markdown cell tagged ``exercise``: the task;
2. a code cell tagged ``solution`` (nbgrader: ``solution: true``, ``grade_id: "NN-<function>"``)
   holding only definitions; the lines the student writes sit between ``### BEGIN SOLUTION`` and
   ``### END SOLUTION``, indented like the body they enclose;
3. a code cell tagged ``check`` (nbgrader: ``grade: true``, ``locked: true``, ``points``) that calls
   the checker, ``checks.check_forward_noising(forward_noise)``, followed by the commented line a
   stuck student uncomments to go on with the course's version. Lines between
   ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` run when grading, not in the copy.

The first code cells (imports, configuration) are tagged ``setup``; a solution cell relies only on
them and its own imports, so ``python -m course_utils grade --checks-only`` can run setup, solution
and check cells alone.

The student copy (what nbgrader's ``generate_assignment`` makes of the same notebook) replaces each
marked block by ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the block's indentation
(``YOUR ANSWER HERE`` in markdown), drops hidden tests, strips every output, execution count and
saved widget state, and marks solution and check cells undeletable, keeping the nbgrader metadata
(check cells stay editable: the "Stuck?" line is the student's to uncomment)::

    python -m course_utils student-version                   # notebooks/ -> student_notebooks/
    python -m course_utils student-version --out /tmp/s notebooks/01_forward_process.ipynb
    python -m course_utils student-version --check           # only report what breaks the convention
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

from . import config

EXERCISE_TAG = "exercise"
SOLUTION_TAG = "solution"
CHECK_TAG = "check"
SETUP_TAG = "setup"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # nbgrader's default replacement
MARKDOWN_STUB = ("YOUR ANSWER HERE",)

# The phrases nbgrader looks for anywhere in a line: a line holding one must be exactly a marker.
_PHRASES = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
_MARKER = re.compile(r"^\s*#*\s*(BEGIN SOLUTION|END SOLUTION|BEGIN HIDDEN TESTS|END HIDDEN TESTS)\s*$")
_CHECK_CALL = re.compile(r"^checks\.check_\w+\(", re.MULTILINE)


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def nbgrader_meta(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_solution(cell) -> bool:
    return cell.get("cell_type") == "code" and SOLUTION_TAG in tags(cell)


def is_check(cell) -> bool:
    return cell.get("cell_type") == "code" and CHECK_TAG in tags(cell)


def is_setup(cell) -> bool:
    return cell.get("cell_type") == "code" and SETUP_TAG in tags(cell)


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def _marker(line: str) -> str | None:
    """``"BEGIN SOLUTION"`` (etc.) when ``line`` is a marker line, else None."""
    match = _MARKER.match(line)
    return match.group(1) if match else None


def marked_blocks(source: str, begin: str = "BEGIN SOLUTION", end: str = "END SOLUTION") -> list[tuple[int, int]]:
    """(first, last) line numbers (0-based, markers included) of each marked block; ValueError if unbalanced."""
    blocks, start = [], None
    for number, line in enumerate(source.split("\n")):
        kind = _marker(line)
        if kind == begin:
            if start is not None:
                raise ValueError(f"line {number + 1}: {begin} inside another block (a {end} is missing)")
            start = number
        elif kind == end:
            if start is None:
                raise ValueError(f"line {number + 1}: {end} without a {begin} before it")
            blocks.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"line {start + 1}: {begin} is never closed by a {end}")
    return blocks


def _replace_blocks(source: str, stub: tuple[str, ...], begin: str, end: str) -> str:
    """``source`` with each marked block replaced by ``stub`` at the block's indentation (nbgrader's rule)."""
    lines = source.split("\n")
    out, done = [], 0
    for first, last in marked_blocks(source, begin, end):
        indent = re.match(r"\s*", lines[first]).group()
        out.extend(lines[done:first])
        out.extend(indent + s for s in stub)
        done = last + 1
    out.extend(lines[done:])
    return "\n".join(out)


def strip_solutions(source: str, *, markdown: bool = False) -> str:
    """Each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block replaced by the stub."""
    return _replace_blocks(source, MARKDOWN_STUB if markdown else CODE_STUB, "BEGIN SOLUTION", "END SOLUTION")


def strip_hidden_tests(source: str) -> str:
    """``source`` without its ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` blocks."""
    return _replace_blocks(source, (), "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def solution_lines(source: str) -> list[str]:
    """The lines inside the marked solution blocks of ``source`` (markers excluded)."""
    lines = source.split("\n")
    return [line for first, last in marked_blocks(source) for line in lines[first + 1 : last]]


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student copy of ``nb``: marked solutions and hidden tests removed, no outputs."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)  # saved widget state holds outputs too
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        markers = {_marker(line) for line in cell.source.split("\n")}
        if markers & {"BEGIN SOLUTION", "END SOLUTION"}:
            cell.source = strip_solutions(cell.source, markdown=cell.cell_type == "markdown")
        elif cell.cell_type == "markdown" and SOLUTION_TAG in tags(cell):
            cell.source = MARKDOWN_STUB[0]  # a written answer without markers: nbgrader clears the cell
        if markers & {"BEGIN HIDDEN TESTS", "END HIDDEN TESTS"}:
            cell.source = strip_hidden_tests(cell.source)
        meta = nbgrader_meta(cell)
        if meta.get("solution") or meta.get("grade") or is_solution(cell) or is_check(cell):
            cell.metadata["deletable"] = False
    return nb


def _defined_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)


def _solution_problems(cell, where: str) -> tuple[list[str], set[str]]:
    """What is wrong with one solution cell, and the names it defines."""
    found = []
    meta = nbgrader_meta(cell)
    if not meta.get("solution") or not meta.get("grade_id") or meta.get("grade"):
        found.append(f"{where}: a solution cell needs nbgrader metadata with solution: true and a grade_id")
    try:
        if not marked_blocks(cell.source):
            found.append(f"{where}: a solution cell marks the student's lines with {BEGIN_SOLUTION} / {END_SOLUTION}")
        stub = strip_solutions(cell.source)
    except ValueError as err:
        return found + [f"{where}: {err}"], set()
    names: set[str] = set()
    for label, text in (("", cell.source), (" (its student copy)", stub)):
        try:
            tree = ast.parse(text)
        except SyntaxError as err:
            found.append(f"{where}{label}: not valid Python: {err.msg} (line {err.lineno})")
            continue
        names = _defined_names(tree) if not label else names
        others = [n for n in tree.body if not isinstance(n, _DEFINITIONS) and not _is_docstring(n)]
        if others and not label:
            found.append(
                f"{where}: a solution cell holds only definitions (functions, classes, imports); "
                f"line {others[0].lineno} is a {type(others[0]).__name__} statement"
            )
    return found, names


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _check_problems(cell, where: str, defined: set[str]) -> list[str]:
    found = []
    meta = nbgrader_meta(cell)
    if not (meta.get("grade") and meta.get("locked") and meta.get("grade_id") and "points" in meta):
        found.append(
            f"{where}: a check cell needs nbgrader metadata with grade: true, locked: true, points, a grade_id"
        )
    try:
        marked_blocks(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
    except ValueError as err:
        found.append(f"{where}: {err}")
    calls = [line for line in cell.source.split("\n") if _CHECK_CALL.match(line)]
    if not calls:
        found.append(f"{where}: a check cell calls its checker (a line starting checks.check_...)")
    elif defined and not any(re.search(rf"\b{re.escape(n)}\b", line) for n in defined for line in calls):
        found.append(
            f"{where}: the checker call names none of the solution's definitions ({', '.join(sorted(defined))})"
        )
    return found


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What breaks the exercise convention, one line each (an empty list when nothing does)."""
    found = []
    ids: dict[str, int] = {}
    cells = nb.cells
    for i, cell in enumerate(cells):
        where = f"cell {i}"
        for number, line in enumerate(cell.source.split("\n"), start=1):
            if any(p in line for p in _PHRASES) and _marker(line) is None:
                found.append(f"{where}, line {number}: a marker phrase outside a marker line ({line.strip()!r})")
        gid = grade_id(cell)
        if gid:
            if gid in ids:
                found.append(f"{where}: grade_id {gid!r} is also used by cell {ids[gid]}")
            ids.setdefault(gid, i)
        has_markers = any(_marker(line) in ("BEGIN SOLUTION", "END SOLUTION") for line in cell.source.split("\n"))
        if cell.cell_type == "code" and has_markers and not is_solution(cell):
            found.append(f"{where}: solution markers in a cell not tagged '{SOLUTION_TAG}'")
        if cell.cell_type == "code" and is_check(cell) and not (i > 0 and is_solution(cells[i - 1])):
            found.append(f"{where}: a check cell comes right after its solution cell")
        if not is_solution(cell):
            continue
        previous = cells[i - 1] if i > 0 else None
        if previous is None or previous.cell_type != "markdown" or EXERCISE_TAG not in tags(previous):
            found.append(f"{where}: a solution cell needs a markdown cell tagged '{EXERCISE_TAG}' right before it")
        more, defined = _solution_problems(cell, where)
        found += more
        following = cells[i + 1] if i + 1 < len(cells) else None
        if following is None or not is_check(following):
            found.append(f"{where}: a solution cell is followed by a code cell tagged '{CHECK_TAG}'")
        else:
            found += _check_problems(following, f"cell {i + 1}", defined)
            sid, cid = grade_id(cell), grade_id(following)
            if sid and cid and cid != f"{sid}-check":
                found.append(f"cell {i + 1}: the check cell's grade_id is the solution's plus '-check' ({sid}-check)")
    return found


def exercise_count(nb: nbformat.NotebookNode) -> int:
    return sum(is_solution(cell) for cell in nb.cells)


def write_student_versions(notebooks: list[Path], out: Path) -> dict[str, int]:
    """Write a student copy of each notebook into ``out``; return ``{name: number of exercises}``.

    Every notebook is checked before anything is written; a ``ValueError`` names what is broken.
    """
    read = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        found = problems(nb)
        if found:
            raise ValueError(f"{path.name}: " + "; ".join(found))
        read[path] = nb
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path, nb in read.items():
        student = student_notebook(nb)
        nbformat.validate(student)
        nbformat.write(student, out / path.name)
        counts[path.name] = exercise_count(nb)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils student-version", description=__doc__.split("\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to convert (default: every notebooks/*.ipynb)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <repo>/student_notebooks)")
    parser.add_argument("--check", action="store_true", help="only report what breaks the convention")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((config.repo_root() / "notebooks").glob("*.ipynb"))
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not notebooks:
        print("error: no notebooks found", file=sys.stderr)
        return 2
    if args.check:
        found = [f"{p.name}: {line}" for p in notebooks for line in problems(nbformat.read(p, as_version=4))]
        print("\n".join(found) or f"{len(notebooks)} notebooks follow the exercise convention")
        return 1 if found else 0
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
