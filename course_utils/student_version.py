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
    python -m course_utils.student_version --add-planned    # insert PLANNED exercises into notebooks/

:func:`add_exercise` inserts an exercise (task + solution) into a shipped notebook before the
first cell that contains an anchor text, and adds ``checks`` to the notebook's
``from course_utils import ...`` line; :data:`PLANNED` lists the exercises the course plans for
each notebook, which ``--add-planned`` inserts where they are still missing.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path
from typing import NamedTuple

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
    has_doc = (
        isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
        and isinstance(body[0].value.value, str)
    )
    indent = " " * (body[0].col_offset if body[0].lineno != node.lineno else node.col_offset + 4)
    if body[0].lineno == node.lineno:  # "def f(x): return x" on one line: rebuild the header
        returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
        head = lines[first : node.lineno - 1] + [
            " " * node.col_offset + f"def {node.name}({ast.unparse(node.args)}){returns}:"
        ]
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


class Exercise(NamedTuple):
    """An exercise to insert: in notebook ``NN``, before the first cell containing ``before``."""

    notebook: str  # the two-digit number
    before: str
    task: str  # markdown
    solution: str  # the function(s) and the checker call


def defined_functions(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


_IMPORT_LINE = re.compile(r"^from course_utils import (?P<names>[A-Za-z0-9_, ]+)$", re.MULTILINE)


def _import_checks(nb: nbformat.NotebookNode) -> None:
    """Add ``checks`` to the first ``from course_utils import ...`` line (names kept sorted)."""
    for cell in nb.cells:
        match = _IMPORT_LINE.search(cell.source) if cell.cell_type == "code" else None
        if match:
            names = [n.strip() for n in match["names"].split(",") if n.strip()]
            if "checks" not in names:
                line = "from course_utils import " + ", ".join(sorted(names + ["checks"]))
                cell.source = cell.source[: match.start()] + line + cell.source[match.end() :]
            return
    raise ValueError("no 'from course_utils import ...' line to add checks to")


def add_exercise(nb: nbformat.NotebookNode, *, before: str, task: str, solution: str) -> bool:
    """Insert a markdown ``exercise`` cell and a ``solution`` cell before the first cell containing ``before``.

    Returns False (and changes nothing) when a solution cell already defines the same function;
    raises ``ValueError`` when no cell contains ``before``.
    """
    names = defined_functions(solution)
    if not names:
        raise ValueError("the solution must define the function the student writes")
    if any(is_solution(c) and defined_functions(c.source) & names for c in nb.cells):
        return False
    index = next((i for i, c in enumerate(nb.cells) if before in c.source), None)
    if index is None:
        raise ValueError(f"no cell contains {before!r}")
    cells = [
        nbformat.v4.new_markdown_cell(task, metadata={"tags": [EXERCISE_TAG]}),
        nbformat.v4.new_code_cell(solution, metadata={"tags": [SOLUTION_TAG]}),
    ]
    nb.cells[index:index] = cells
    _import_checks(nb)
    return True


_CHECK_LINE = "The last line checks your function against the course's on random inputs."

PLANNED: tuple[Exercise, ...] = (
    Exercise(
        "02",
        "ts = schedules.step_grid(1000, 990, 30)",
        "**Exercise: one DDPM step.** Write `ddpm_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, z)`: estimate\n"
        "$\\hat x_0$ from the noise estimate, then draw $x_s$ from the posterior "
        "$q(x_s \\mid x_t, \\hat x_0)$ with the\n"
        "standard normal `z` (Ho et al. 2020, eq. 6-7; $\\beta = 1 - \\bar\\alpha_t / \\bar\\alpha_s$)."
        + "\n"
        + _CHECK_LINE,
        '''def ddpm_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, z):
    """One ancestral step x_t -> x_s (s < t) from the model's noise estimate eps_hat."""
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps_hat) / alpha_bar_t.sqrt()
    beta = 1 - alpha_bar_t / alpha_bar_s
    mean = (alpha_bar_s.sqrt() * beta / (1 - alpha_bar_t) * x0_hat
            + (1 - beta).sqrt() * (1 - alpha_bar_s) / (1 - alpha_bar_t) * x_t)
    return mean + ((1 - alpha_bar_s) / (1 - alpha_bar_t) * beta).sqrt() * z

checks.check_ddpm_step(ddpm_step)''',
    ),
    Exercise(
        "04",
        "# flow matching: t ~ U[0, 1], straight path",
        "**Exercise: the flow-matching pair.** Write `flow_matching_pair(x0, eps, t)` returning the model's\n"
        "input $x_t = (1 - t)\\,x_0 + t\\,\\varepsilon$ and its target, the velocity $u = dx_t/dt$; `t` is\n"
        "shaped (B, 1, 1, 1)." + "\n" + _CHECK_LINE,
        '''def flow_matching_pair(x0, eps, t):
    """Flow matching (Lipman et al. 2023): the point on the straight path at t and its velocity."""
    xt = (1 - t) * x0 + t * eps
    return xt, eps - x0

checks.check_flow_matching(flow_matching_pair)''',
    ),
    Exercise(
        "05",
        "guidance.cfg(",
        "**Exercise: classifier-free guidance.** Write `cfg_combine(out_uncond, out_cond, w)`, the guided\n"
        "output from the model's unconditional and conditional outputs with guidance scale $w$." + "\n" + _CHECK_LINE,
        '''def cfg_combine(out_uncond, out_cond, w):
    """Classifier-free guidance (Ho & Salimans 2022): w = 0 unconditional, w = 1 conditional, w > 1 beyond."""
    return out_uncond + w * (out_cond - out_uncond)

checks.check_cfg(cfg_combine)''',
    ),
    Exercise(
        "06",
        "samplers.ddim(",
        "**Exercise: one DDIM step.** Write `ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, eta, z)`\n"
        "(Song et al. 2021, eq. 12): "
        "$c = \\eta\\sqrt{(1 - \\bar\\alpha_s)/(1 - \\bar\\alpha_t)\\,(1 - \\bar\\alpha_t/\\bar\\alpha_s)}$ and\n"
        "$x_s = \\sqrt{\\bar\\alpha_s}\\,\\hat x_0 + \\sqrt{1 - \\bar\\alpha_s - c^2}\\,\\hat\\varepsilon + c\\,z$."
        + "\n"
        + _CHECK_LINE,
        '''def ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, eta, z):
    """One DDIM step x_t -> x_s; eta = 0 is deterministic, eta = 1 matches DDPM's posterior."""
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps_hat) / alpha_bar_t.sqrt()
    c = eta * ((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)).sqrt()
    return alpha_bar_s.sqrt() * x0_hat + (1 - alpha_bar_s - c**2).sqrt() * eps_hat + c * z

checks.check_ddim_step(ddim_step)''',
    ),
    Exercise(
        "08",
        "editing.inpaint(",
        "**Exercise: one inpainting step.** Write `inpainting_step(x, x_known, mask, alpha_bar, eps)`:\n"
        "noise the known image to the level of `x` with `eps`, then keep it where `mask` is 1 and the\n"
        "sample `x` where it is 0 (RePaint, Lugmayr et al. 2022)." + "\n" + _CHECK_LINE,
        '''def inpainting_step(x, x_known, mask, alpha_bar, eps):
    """Known pixels, noised to the current level, where mask = 1; the sample elsewhere."""
    noised_known = alpha_bar.sqrt() * x_known + (1 - alpha_bar).sqrt() * eps
    return mask * noised_known + (1 - mask) * x

checks.check_inpainting_step(inpainting_step)''',
    ),
    Exercise(
        "09",
        "## 2. Shapes with known answers",
        "**Exercise: the temperature feature.** Write `temperature(rgb)` for an RGB image (H, W, 3) in\n"
        "[0, 1]: 0.5 plus the mean of red minus blue, clipped to [0, 1] (1 warm, 0 cool)." + "\n" + _CHECK_LINE,
        '''def temperature(rgb):
    """Warm (1) versus cool (0): clip(0.5 + mean(R - B), 0, 1)."""
    return float(np.clip(0.5 + np.mean(rgb[..., 0] - rgb[..., 2]), 0.0, 1.0))

checks.check_feature(temperature, "temperature")''',
    ),
)


def add_planned(notebooks: list[Path]) -> list[str]:
    """Insert the :data:`PLANNED` exercises missing from these notebooks; one line per notebook."""
    report = []
    for path in notebooks:
        planned = [e for e in PLANNED if path.name.startswith(e.notebook + "_")]
        if not planned:
            continue
        nb = nbformat.read(path, as_version=4)
        added = []
        for exercise in planned:
            try:
                if add_exercise(nb, before=exercise.before, task=exercise.task, solution=exercise.solution):
                    added.append(", ".join(sorted(defined_functions(exercise.solution))))
            except ValueError as err:
                report.append(f"{path.name}: not added ({err})")
        if added:
            nbformat.write(nb, path)
            report.append(f"{path.name}: added {'; '.join(added)}")
    return report


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
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to convert (default: every notebooks/*.ipynb)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <repo>/student_notebooks)")
    parser.add_argument(
        "--add-planned", action="store_true", help="insert the planned exercises into the notebooks themselves"
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((config.repo_root() / "notebooks").glob("*.ipynb"))
    if not notebooks:
        parser.error("no notebooks found")
    if args.add_planned:
        print("\n".join(add_planned(notebooks)) or "nothing to add")
        return 0
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
