"""The student copy: solutions become stubs that keep their signature and checker call; outputs go."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils import student_version

SOLUTION = '''import torch

@torch.no_grad()
def forward_noise(x0,
                  alpha_bar, eps):
    """x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps."""
    a = alpha_bar.sqrt()
    return a * x0 + (1 - alpha_bar).sqrt() * eps

def helper(x): return 2 * x

checks.check_forward_noising(forward_noise)'''


def _notebook():
    exercise = new_markdown_cell("**Exercise.** Write `forward_noise`.", metadata={"tags": ["exercise"]})
    solution = new_code_cell(SOLUTION, metadata={"tags": ["solution"]})
    solution.outputs = [new_output("stream", name="stdout", text="PASS: forward noising (10 cases)\n")]
    solution.execution_count = 3
    other = new_code_cell("x = forward_noise(1, 2, 3)", execution_count=4)
    return new_notebook(cells=[new_markdown_cell("# 01 · title"), exercise, solution, other])


def test_stub_keeps_signature_docstring_and_checker_call():
    stub = student_version.stub_source(SOLUTION)
    assert "def forward_noise(x0,\n                  alpha_bar, eps):" in stub
    assert '"""x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps."""' in stub
    assert "@torch.no_grad()" in stub and "import torch" in stub
    assert 'raise NotImplementedError("exercise: write the body of forward_noise")' in stub
    assert "def helper(x):" in stub and "return 2 * x" not in stub
    assert "a * x0" not in stub and "sqrt() * eps" not in stub
    assert stub.rstrip().endswith("checks.check_forward_noising(forward_noise)")
    namespace = {}
    exec(compile(stub.replace("checks.check_forward_noising(forward_noise)", ""), "stub", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="exercise: write the body of forward_noise"):
        namespace["forward_noise"](1, 2, 3)


def test_student_notebook_strips_outputs_and_only_touches_solutions():
    nb = _notebook()
    student = student_version.student_notebook(nb)
    assert nb.cells[2].source == SOLUTION and nb.cells[2].outputs  # the original is untouched
    assert all(
        c.get("outputs", []) == [] and c.get("execution_count") is None for c in student.cells if c.cell_type == "code"
    )
    assert student.cells[3].source == "x = forward_noise(1, 2, 3)"
    assert [c.source for c in student.cells[:2]] == [c.source for c in nb.cells[:2]]
    assert "NotImplementedError" in student.cells[2].source
    assert student_version.problems(nb) == []


def test_problems_name_a_broken_convention():
    nb = _notebook()
    nb.cells[1].metadata = {}
    nb.cells[2].source = nb.cells[2].source.replace("checks.check_forward_noising(forward_noise)", "")
    found = student_version.problems(nb)
    assert len(found) == 2 and "tagged 'exercise'" in found[0] and "checker" in found[1]
    nb.cells[2].source = "x = 1"
    assert any("must define the function" in p for p in student_version.problems(nb))


def test_script_writes_student_copies_to_a_folder(tmp_path, capsys):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(_notebook(), src / "01_demo.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# 02 · none")]), src / "02_plain.ipynb")
    out = tmp_path / "student"
    assert student_version.main([str(src / "01_demo.ipynb"), str(src / "02_plain.ipynb"), "--out", str(out)]) == 0
    assert "01_demo.ipynb: 1 exercise" in capsys.readouterr().out
    written = nbformat.read(out / "01_demo.ipynb", as_version=4)
    nbformat.validate(written)
    assert "NotImplementedError" in written.cells[2].source and written.cells[2].outputs == []
    assert (out / "02_plain.ipynb").is_file()
    broken = _notebook()
    broken.cells[1].metadata = {}
    nbformat.write(broken, src / "03_broken.ipynb")
    assert student_version.main([str(src / "03_broken.ipynb"), "--out", str(out)]) == 1


def test_the_course_notebooks_follow_the_convention(tmp_path):
    from course_utils import config

    notebooks = sorted((config.repo_root() / "notebooks").glob("*.ipynb"))
    counts = student_version.write_student_versions(notebooks, tmp_path)
    assert set(counts) == {p.name for p in notebooks}
    for path in notebooks:
        student = nbformat.read(tmp_path / path.name, as_version=4)
        for cell in student.cells:
            if student_version.is_solution(cell):
                assert "raise NotImplementedError" in cell.source and "checks.check_" in cell.source


@pytest.mark.parametrize("exercise", student_version.PLANNED, ids=lambda e: e.notebook)
def test_planned_solutions_pass_their_checkers(exercise, capsys):
    import numpy as np
    import torch

    from course_utils import checks

    namespace = {"checks": checks, "np": np, "torch": torch}
    exec(compile(exercise.solution, exercise.notebook, "exec"), namespace)
    assert capsys.readouterr().out.startswith("PASS: ")
    assert "NotImplementedError" in student_version.stub_source(exercise.solution)


def test_add_exercise_inserts_before_the_anchor_once(tmp_path, capsys):
    code = new_code_cell("import torch\n\nfrom course_utils import samplers, config\n\nx = 1")
    anchor = new_code_cell("out = guidance.cfg(model, 3.0)")
    nb = new_notebook(cells=[new_markdown_cell("# 05 · cfg"), code, new_markdown_cell("## guided"), anchor])
    path = tmp_path / "05_cfg.ipynb"
    nbformat.write(nb, path)
    assert student_version.main([str(path), "--add-planned"]) == 0
    assert "05_cfg.ipynb: added cfg_combine" in capsys.readouterr().out
    nb = nbformat.read(path, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "markdown", "code", "code"]
    assert "from course_utils import checks, config, samplers\n" in nb.cells[1].source
    assert student_version.is_solution(nb.cells[4]) and "exercise" in nb.cells[3].metadata["tags"]
    assert student_version.problems(nb) == []
    assert student_version.main([str(path), "--add-planned"]) == 0 and "nothing to add" in capsys.readouterr().out
    exercise = student_version.PLANNED[0]
    with pytest.raises(ValueError, match="no cell contains"):
        student_version.add_exercise(nb, before="not in there", task=exercise.task, solution=exercise.solution)
