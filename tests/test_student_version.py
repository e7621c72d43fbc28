"""The student copy: marked solutions and hidden tests go, outputs go, everything else stays; the
convention is checked; no solution line of a shipped notebook survives in its copy."""

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils import config, student_version

SETUP = "import torch\n\nfrom course_utils import checks"
SOLUTION = '''import math


@torch.no_grad()
def forward_noise(x0, alpha_bar, eps):
    """x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps."""
    ### BEGIN SOLUTION
    signal_scale = alpha_bar.sqrt()
    return signal_scale * x0 + (1 - alpha_bar).sqrt() * eps
    ### END SOLUTION


class Helper:
    def twice(self, x):
        ### BEGIN SOLUTION
        doubled_value = 2 * x
        return doubled_value
        ### END SOLUTION'''
CHECK = """checks.check_forward_noising(forward_noise)
### BEGIN HIDDEN TESTS
assert Helper().twice(21) == 42, "hidden test"
### END HIDDEN TESTS
# Stuck? Uncomment the next line to go on with the course's version (this exercise then stays not done):
# forward_noise = checks.course_version("forward_noise")"""


def nbgrader(grade_id: str, *, check: bool) -> dict:
    meta = {"grade": check, "grade_id": grade_id, "locked": check, "schema_version": 3, "solution": not check}
    meta["task"] = False
    if check:
        meta["points"] = 2
    return {"tags": ["check" if check else "solution"], "nbgrader": meta}


def exercise_notebook() -> nbformat.NotebookNode:
    """A notebook with one exercise in the course's convention, its outputs saved."""
    setup = new_code_cell(SETUP, metadata={"tags": ["setup"]}, execution_count=1)
    task = new_markdown_cell("**Exercise: forward noising (2 points).** Write `forward_noise`.")
    task.metadata = {"tags": ["exercise"]}
    solution = new_code_cell(SOLUTION, metadata=nbgrader("01-forward_noise", check=False), execution_count=2)
    check = new_code_cell(CHECK, metadata=nbgrader("01-forward_noise-check", check=True), execution_count=3)
    check.outputs = [new_output("stream", name="stdout", text="PASS: forward noising (10 cases)\n")]
    after = new_code_cell("x = forward_noise(1, 2, 3)", execution_count=4)
    after.outputs = [new_output("execute_result", data={"text/plain": "0.5"}, execution_count=4)]
    nb = new_notebook(cells=[new_markdown_cell("# 01 · title"), setup, task, solution, check, after])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"slider": 0.5}}}
    return nb


def test_marked_blocks_become_nbgraders_stub_at_their_indentation():
    stub = student_version.strip_solutions(SOLUTION)
    assert "signal_scale" not in stub and "doubled_value" not in stub and "BEGIN SOLUTION" not in stub
    assert '    """x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps."""\n    # YOUR CODE HERE\n' in stub
    assert "\n    raise NotImplementedError()\n" in stub
    assert "        # YOUR CODE HERE\n        raise NotImplementedError()" in stub  # the method's body
    assert stub.startswith("import math\n") and "@torch.no_grad()\ndef forward_noise(x0, alpha_bar, eps):" in stub
    namespace = {"torch": __import__("torch")}
    exec(compile(stub, "stub", "exec"), namespace)
    with pytest.raises(NotImplementedError):
        namespace["forward_noise"](1, 2, 3)
    md = student_version.strip_solutions("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", markdown=True)
    assert md == "Why?\nYOUR ANSWER HERE"


def test_hidden_tests_go_and_the_rest_of_the_check_stays():
    stripped = student_version.strip_hidden_tests(CHECK)
    assert "hidden test" not in stripped and "HIDDEN" not in stripped
    assert stripped.startswith("checks.check_forward_noising(forward_noise)\n# Stuck?")


def test_student_notebook_strips_solutions_outputs_and_keeps_metadata():
    nb = exercise_notebook()
    original = copy.deepcopy(nb)
    student = student_version.student_notebook(nb)
    assert nb == original  # the shipped notebook is untouched
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "widgets" not in student.metadata
    solution, check = student.cells[3], student.cells[4]
    assert "raise NotImplementedError()" in solution.source and "signal_scale" not in solution.source
    assert "hidden test" not in check.source and check.source.startswith("checks.check_forward_noising")
    assert solution.metadata["nbgrader"] == nb.cells[3].metadata["nbgrader"]
    assert check.metadata["nbgrader"] == nb.cells[4].metadata["nbgrader"]
    assert solution.metadata["deletable"] is False and check.metadata["deletable"] is False
    assert check.metadata.get("editable", True)  # the "Stuck?" line is the student's to uncomment
    assert [c.source for c in student.cells if c not in (solution, check)] == [
        c.source for i, c in enumerate(nb.cells) if i not in (3, 4)
    ]
    assert student_version.problems(nb) == []
    nbformat.validate(student)


def _broken(change) -> list[str]:
    nb = exercise_notebook()
    change(nb.cells)
    return student_version.problems(nb)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda c: c[3].update(source=SOLUTION.replace("    ### END SOLUTION\n", "", 1)), "inside another block"),
        (lambda c: c[3].update(source=SOLUTION + "\n### END SOLUTION"), "without a BEGIN SOLUTION"),
        (
            lambda c: c[3].update(source=SOLUTION.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", "")),
            "marks",
        ),
        (lambda c: c[3].update(source=SOLUTION + "\n\nprint(forward_noise)"), "only definitions"),
        (lambda c: c[3].update(source="def f(:\n    ### BEGIN SOLUTION\n    1\n    ### END SOLUTION"), "valid Python"),
        (lambda c: c.pop(4), "followed by a code cell tagged 'check'"),
        (lambda c: c[2].metadata.clear(), "tagged 'exercise'"),
        (lambda c: c[4].update(source="# nothing"), "calls its checker"),
        (lambda c: c[4].update(source="checks.check_forward_noising(other)"), "names none of the solution's"),
        (lambda c: c[4].metadata["nbgrader"].update(grade_id="01-forward_noise"), "also used by cell 3"),
        (lambda c: c[4].metadata["nbgrader"].pop("points"), "points"),
        (lambda c: c[4].metadata["nbgrader"].update(grade_id="01-other-check"), "plus '-check'"),
        (lambda c: c[3].metadata["nbgrader"].update(solution=False), "solution: true"),
        (lambda c: c[4].update(source=CHECK.replace("### END HIDDEN TESTS", "")), "never closed"),
        (lambda c: c[5].update(source="x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION"), "not tagged 'solution'"),
        (lambda c: c[0].update(source="Mark with ### BEGIN SOLUTION, please."), "marker phrase outside"),
    ],
)
def test_problems_name_what_breaks_the_convention(change, says):
    found = _broken(change)
    assert any(says in line for line in found), found


def test_script_writes_copies_and_refuses_a_broken_notebook(tmp_path, capsys):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(exercise_notebook(), src / "01_demo.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# 02 · none")]), src / "02_plain.ipynb")
    out = tmp_path / "student"
    assert student_version.main([str(src / "01_demo.ipynb"), str(src / "02_plain.ipynb"), "--out", str(out)]) == 0
    assert "01_demo.ipynb: 1 exercise" in capsys.readouterr().out
    written = nbformat.read(out / "01_demo.ipynb", as_version=4)
    assert "raise NotImplementedError()" in written.cells[3].source and written.cells[4].outputs == []
    assert (out / "02_plain.ipynb").is_file()
    broken = exercise_notebook()
    broken.cells.pop(4)
    nbformat.write(broken, src / "03_broken.ipynb")
    assert student_version.main([str(src / "03_broken.ipynb"), "--out", str(tmp_path / "other")]) == 1
    assert "03_broken.ipynb: cell 3: a solution cell is followed by" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()  # nothing written when a notebook is broken
    assert student_version.main([str(src / "03_broken.ipynb"), "--check"]) == 1
    assert student_version.main([str(tmp_path / "missing.ipynb")]) == 2


SHIPPED = sorted((config.repo_root() / "notebooks").glob("*.ipynb"))


def solution_lines_to_hide(nb: nbformat.NotebookNode, min_length: int = 12) -> set[str]:
    """Non-trivial lines inside solution blocks that appear nowhere else in the shipped notebook."""
    inside, outside = set(), set()
    for cell in nb.cells:
        lines = cell.source.split("\n")
        blocks = student_version.marked_blocks(cell.source) if student_version.is_solution(cell) else []
        marked = {n for first, last in blocks for n in range(first + 1, last)}
        for n, line in enumerate(lines):
            (inside if n in marked else outside).add(line.strip())
    return {line for line in inside - outside if len(line) >= min_length}


def test_the_shipped_notebooks_follow_the_convention():
    found = {p.name: student_version.problems(nbformat.read(p, as_version=4)) for p in SHIPPED}
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_no_solution_line_survives_in_the_student_copies(tmp_path):
    counts = student_version.write_student_versions(SHIPPED, tmp_path)
    assert sum(counts.values()) >= 1
    for path in SHIPPED:
        shipped = nbformat.read(path, as_version=4)
        student = nbformat.read(tmp_path / path.name, as_version=4)
        hidden = solution_lines_to_hide(shipped)
        assert len(student.cells) == len(shipped.cells)
        for i, cell in enumerate(student.cells):
            left = [line.strip() for line in cell.source.split("\n") if line.strip() in hidden]
            assert not left, f"{path.name}, cell {i}: solution lines left: {left}"
            assert "BEGIN SOLUTION" not in cell.source and "BEGIN HIDDEN TESTS" not in cell.source
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}, cell {i}: an output"
            if student_version.is_solution(cell):
                assert "raise NotImplementedError()" in cell.source
        assert "widgets" not in student.metadata
