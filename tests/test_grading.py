"""The grader: shipped notebooks pass, untouched student copies are "not done" and still run to the
end, a wrong answer fails with its hint, a folder of students becomes a gradebook, an edited check
cell changes nothing, a bad command line is one line; nbgrader takes the notebooks as its source."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils import config, grading
from course_utils import student_version as sv
from course_utils.__main__ import main as cli

NOTEBOOKS = config.repo_root() / "notebooks"
SHIPPED = sorted(NOTEBOOKS.glob("*.ipynb"))
WITH_EXERCISES = [p for p in SHIPPED if grading.exercises(nbformat.read(p, as_version=4))]
FULL = "01_forward_process.ipynb"  # ~10 s in fast mode: the notebook graded end to end
FOLDER = "06_ddim_and_samplers.ipynb"  # three exercises, a cheap setup cell: the folder of students
TIMEOUT = "120"  # seconds per cell (the slowest takes ~10 s here): a hung cell is interrupted, never hangs CI


def shipped(name: str) -> nbformat.NotebookNode:
    path = NOTEBOOKS / name
    if not path.is_file() or not grading.exercises(nbformat.read(path, as_version=4)):
        pytest.skip(f"{name} has no exercises in the course's convention")
    return nbformat.read(path, as_version=4)


def student_copy(name: str) -> nbformat.NotebookNode:
    return sv.student_notebook(shipped(name))


def cell_of(nb: nbformat.NotebookNode, gid: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if sv.grade_id(c) == gid)


# ---------------------------------------------------------------------------------------------
# Without a kernel: reading verdicts, restoring check cells, finding submissions


def _ran(*texts: str, error: tuple[str, str] | None = None, count: int | None = 1) -> nbformat.NotebookNode:
    cell = new_code_cell("checks.check_x(f)", execution_count=count)
    cell.outputs = [new_output("stream", name="stdout", text=t) for t in texts]
    if error:
        cell.outputs.append(new_output("error", ename=error[0], evalue=error[1], traceback=[]))
    return cell


def test_verdicts_are_read_and_the_worst_one_counts():
    fail = "FAIL: one step\n  case 2 of 6: linear schedule\n  max abs error 0.5\n  hint: sqrt of alpha_bar\n"
    assert grading.verdict(_ran("PASS: one step (6 cases)\n"))[0] == "passed"
    assert grading.verdict(_ran(fail))[:2] == ("failed", "sqrt of alpha_bar")
    assert grading.verdict(_ran("PASS: one step (6 cases)\n", fail))[0] == "failed"  # a printed PASS fools nobody
    assert grading.verdict(_ran("NOT DONE: one step\n  the function still raises\n"))[:2] == (
        "not done",
        "the function still raises",
    )
    assert grading.verdict(_ran(error=("ValueError", "bad shape")))[:2] == ("error", "ValueError: bad shape")
    assert grading.verdict(_ran(error=("NameError", "name 'f' is not defined")))[0] == "not done"
    assert "--timeout" in grading.verdict(_ran(error=("KeyboardInterrupt", "")))[1]
    assert grading.verdict(_ran(count=None))[0] == "not run"
    assert grading.verdict(_ran("just text\n"))[0] == "error"


def test_the_course_check_cell_comes_back_with_the_stuck_line_the_student_uncommented():
    course = 'checks.check_x(f)\n# Stuck? Uncomment:\n# f = checks.course_version("f")'
    student = 'print("PASS: x")\n# Stuck? Uncomment:\nf = checks.course_version("f")'
    assert (
        grading.restore_check(course, student)
        == 'checks.check_x(f)\n# Stuck? Uncomment:\nf = checks.course_version("f")'
    )
    assert grading.restore_check(course, 'print("PASS: x")') == course


def test_a_deleted_check_cell_is_put_back_and_a_missing_exercise_is_left_out():
    nb = shipped(FOLDER)
    course = grading.exercises(nb)
    student = student_copy(FOLDER)
    first, last = course[0], course[-1]
    student.cells.remove(cell_of(student, first.grade_id))  # the check cell only
    student.cells = [c for c in student.cells if sv.grade_id(c) not in (last.solution_id, last.grade_id)]
    prepared, where = grading.prepare(student, course)
    assert set(where) == {e.grade_id for e in course[:-1]}
    assert prepared.cells[where[first.grade_id]].source == first.check_source
    assert sv.grade_id(prepared.cells[where[first.grade_id] - 1]) == first.solution_id
    only, where_only = grading.prepare(student, course, checks_only=True)
    kept = {"setup" if sv.is_setup(c) else "solution" if sv.is_solution(c) else "check" for c in only.cells}
    assert kept == {"setup", "solution", "check"} and len(where_only) == len(course) - 1


def test_submissions_are_found_with_their_students(tmp_path):
    for rel in ("alice/01_a.ipynb", "bob/hw1/01_a.ipynb", "bob/.ipynb_checkpoints/01_a-checkpoint.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(new_notebook(), tmp_path / rel)
    found = grading.find_submissions([tmp_path])
    assert [(s.student, s.path.name) for s in found] == [("alice", "01_a.ipynb"), ("bob", "01_a.ipynb")]
    assert grading.find_submissions([tmp_path / "alice" / "01_a.ipynb"])[0].student == "alice"
    assert grading.find_submissions([tmp_path / "alice"])[0].student == "alice"


def test_an_unreadable_submission_is_graded_as_an_error(tmp_path):
    shipped(FOLDER)
    (tmp_path / "erin").mkdir()
    (tmp_path / "erin" / FOLDER).write_text("{ not a notebook")
    rows = grading.grade([tmp_path], progress=False)
    assert rows and {(r.student, r.status) for r in rows} == {("erin", "error")}
    assert "cannot be read" in rows[0].hint


def test_grade_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["grade", "--help"])
    assert stop.value.code == 0 and "--checks-only" in capsys.readouterr().out


def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    nbformat.write(new_notebook(cells=[new_markdown_cell("# 00")]), tmp_path / "00_setup.ipynb")
    cases = [
        ([str(tmp_path / "missing")], "no such file or folder"),
        ([str(tmp_path / "empty")], "no notebooks found"),
        ([str(tmp_path / "00_setup.ipynb")], "has exercises"),
        ([str(tmp_path), "--timeout", "0"], "positive number of seconds"),
        ([str(tmp_path), "--json", str(tmp_path)], "is a folder"),
        ([str(tmp_path), "--source", str(tmp_path / "missing")], "not a folder"),
    ]
    for argv, says in cases:
        with pytest.raises(SystemExit) as stop:
            cli(["grade", *argv])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and says in err and err.count("\n") == 1, (argv, err)


# ---------------------------------------------------------------------------------------------
# With kernels: the shipped notebooks, the student copies, a folder of students


def test_the_shipped_notebooks_pass_in_checks_only_mode(capsys):
    if not WITH_EXERCISES:
        pytest.skip("no notebook has exercises yet")
    rows = grading.grade(WITH_EXERCISES, checks_only=True, timeout=float(TIMEOUT), progress=False)
    expected = {(p.name, e.grade_id) for p in WITH_EXERCISES for e in grading.exercises(nbformat.read(p, as_version=4))}
    assert {(r.notebook, r.grade_id) for r in rows} == expected
    assert [r for r in rows if r.status != "passed"] == []
    assert all(r.points == r.max_points > 0 for r in rows)


def test_a_shipped_notebook_passes_in_full_mode(tmp_path, capsys):
    shipped(FULL)
    out = tmp_path / "grades.json"
    assert cli(["grade", str(NOTEBOOKS / FULL), "--json", str(out), "--timeout", TIMEOUT, "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "passed" in table and "total:" in table and "not done" not in table
    rows = json.loads(out.read_text())
    assert rows and all(r["status"] == "passed" and r["student"] == "notebooks" for r in rows)


def test_an_untouched_student_copy_is_not_done_and_runs_to_the_end(tmp_path):
    nb = student_copy(FULL)
    course = grading.exercises(shipped(FULL))
    prepared, where = grading.prepare(nb, course)
    env = grading.kernel_env(fast=True, figures_dir=tmp_path / "figures")
    grading.run(prepared, cwd=tmp_path, env=env, timeout=float(TIMEOUT))
    code = [c for c in prepared.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "the run stopped before the end"
    assert any(o.get("ename") == "NotImplementedError" for c in code for o in c.outputs)  # the cells after it
    assert [grading.verdict(prepared.cells[i])[0] for i in where.values()] == ["not done"] * len(course)
    assert any((tmp_path / "figures").glob("01_*.png"))  # a graded run saves its figures aside


def _students(root: Path) -> dict[str, str]:
    """bob: the shipped notebook with one wrong answer that also prints PASS; carol: an untouched copy
    whose check cells she edited, uncommented or deleted; dave: an untouched copy, and one of notebook 01."""
    course = grading.exercises(shipped(FOLDER))
    bob = shipped(FOLDER)
    wrong = cell_of(bob, course[-1].solution_id)
    lines = [line for line in wrong.source.split("\n") if "return" in line]
    assert lines, "the last exercise's solution has a return line to break"
    indent = lines[-1][: len(lines[-1]) - len(lines[-1].lstrip())]
    fake = f'{indent}print("PASS: {course[-1].name} (9 cases)")'
    wrong.source = wrong.source.replace(lines[-1], f"{fake}\n{lines[-1].replace('return ', 'return 1.5 * (')})")
    carol = student_copy(FOLDER)
    cell_of(carol, course[0].grade_id).source = f'print("PASS: {course[0].name} (10 cases)")'
    stuck = cell_of(carol, course[1].grade_id)
    stuck.source = "\n".join(
        line.replace("# ", "", 1) if "course_version" in line else line for line in stuck.source.split("\n")
    )
    carol.cells.remove(cell_of(carol, course[2].grade_id))
    dave = student_copy(FOLDER)
    for name, nb in dict(bob=bob, carol=carol, dave=dave).items():
        (root / name).mkdir(parents=True)
        nbformat.write(nb, root / name / FOLDER)
    nbformat.write(student_copy(FULL), root / "dave" / FULL)  # only dave hands in a second notebook
    return {e.grade_id: e.name for e in course}


def test_a_folder_of_students_becomes_a_gradebook(tmp_path, capsys):
    ids = list(_students(tmp_path / "submissions"))
    out_csv, out_json = tmp_path / "grades.csv", tmp_path / "grades.json"
    argv = ["grade", str(tmp_path / "submissions"), "--checks-only", "--csv", str(out_csv), "--json", str(out_json)]
    assert cli([*argv, "--timeout", TIMEOUT, "--no-progress"]) == 1
    table = capsys.readouterr().out
    rows = list(csv.DictReader(out_csv.open()))
    assert rows == [{k: str(v) for k, v in row.items()} for row in json.loads(out_json.read_text())]
    assert list(rows[0]) == "student notebook grade_id exercise status points max_points hint message".split()
    status = {(r["student"], r["grade_id"]): r["status"] for r in rows}
    first = [e.grade_id for e in grading.exercises(shipped(FULL))]
    assert len(rows) == 3 * (len(ids) + len(first))
    assert [r["notebook"] for r in rows if r["student"] == "bob"] == [FULL] * len(first) + [FOLDER] * len(ids)
    assert all(
        status[s, g] == "not done" for s in ("bob", "carol", "dave") for g in first
    )  # not handed in, or not done
    assert next(r for r in rows if r["student"] == "bob")["hint"] == "the notebook was not handed in"
    assert [status["bob", g] for g in ids] == ["passed"] * (len(ids) - 1) + ["failed"]  # despite its printed PASS
    assert all(status["carol", g] == "not done" for g in ids)  # an edited check cell changes nothing
    assert all(status["dave", g] == "not done" for g in ids)
    bob_failed = next(r for r in rows if r["student"] == "bob" and r["status"] == "failed")
    assert bob_failed["hint"] and bob_failed["message"].startswith("FAIL: ") and float(bob_failed["points"]) == 0
    points = {s: sum(float(r["points"]) for r in rows if r["student"] == s) for s in ("bob", "carol", "dave")}
    most = sum(float(r["max_points"]) for r in rows if r["student"] == "bob" and r["notebook"] == FOLDER)
    assert most > points["bob"] == most - float(bob_failed["max_points"]) > 0 and points["carol"] == points["dave"] == 0
    assert "bob:" in table and "total:" in table and "failed" in table


# ---------------------------------------------------------------------------------------------
# nbgrader takes a shipped notebook as its source


@pytest.mark.skipif(importlib.util.find_spec("nbgrader") is None, reason="nbgrader is not installed")
def test_nbgrader_generates_the_assignment_from_a_shipped_notebook(tmp_path):
    import nbgrader

    source = shipped(FOLDER)
    (tmp_path / "source" / "ps1").mkdir(parents=True)
    shutil.copy(NOTEBOOKS / FOLDER, tmp_path / "source" / "ps1" / FOLDER)
    (tmp_path / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.root = {str(tmp_path)!r}\n")
    env = dict(os.environ)
    scripts = [Path(nbgrader.__file__).parents[1] / "bin", Path(sys.executable).parent]  # alembic (a --target install)
    env["PATH"] = os.pathsep.join([*map(str, scripts), env.get("PATH", "")])
    # the folder nbgrader was imported from, absolute: the command runs in tmp_path
    site = str(Path(nbgrader.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
    run = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "ps1", "--force"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    released = tmp_path / "release" / "ps1" / FOLDER
    assert run.returncode == 0 and released.is_file(), run.stdout + run.stderr
    release = nbformat.read(released, as_version=4)
    ours = sv.student_notebook(source)
    solutions = [c for c in source.cells if sv.is_solution(c)]
    hidden = {line.strip() for c in solutions for line in sv.solution_lines(c.source) if len(line.strip()) >= 12} - {
        line.strip() for c in source.cells if not sv.is_solution(c) for line in c.source.split("\n")
    }
    for cell in release.cells:
        assert not [line for line in cell.source.split("\n") if line.strip() in hidden]
    for cell, mine in zip(
        [c for c in release.cells if sv.is_solution(c)], [c for c in ours.cells if sv.is_solution(c)]
    ):
        assert "# YOUR CODE HERE\n" in cell.source and "raise NotImplementedError()" in cell.source
        assert cell.source.rstrip() == mine.source.rstrip()  # our student copy is nbgrader's release copy
    assert len([c for c in release.cells if sv.is_solution(c)]) == len(solutions)
