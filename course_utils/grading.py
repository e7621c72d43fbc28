"""Grade students' notebooks: run them, read every exercise's check, write a gradebook.

::

    python -m course_utils grade student_notebooks/01_forward_process.ipynb      # one notebook
    python -m course_utils grade submissions/ --checks-only --csv grades.csv      # a folder of students

A path is a notebook or a folder, searched for ``*.ipynb`` at any depth (hidden folders such as
``.ipynb_checkpoints`` skipped). The student is the first folder under the folder given
(``submissions/<student>/<notebook>.ipynb``, or nbgrader's
``submitted/<student>/<assignment>/<notebook>.ipynb``), or the notebook's own folder when a file
is given.

**What is trusted.** The check cells are taken from the course's own notebook of the same name
(``--source``, default the repository's ``notebooks/``), matched by their nbgrader ``grade_id``, as
nbgrader restores locked cells: a student who edits a check cell still gets the real verdict. The
one edit kept is the "Stuck?" line the check cell invites the student to uncomment (it comes after
the check, so the exercise stays not done). An exercise whose cells are missing is not done, and
so is every exercise of a notebook that other students handed in and this one did not. When
a cell prints several verdicts (hidden tests, or a function that prints "PASS" itself), the worst
one counts. The grader runs the student's code in a kernel of the current Python: it is not a
sandbox, and a student set on cheating can patch the checkers from their own code.

**Two modes.** By default the whole notebook runs (fast mode, ``COURSE_FAST=1``, unless ``--full``,
which runs the size chosen by device: full on a GPU, cpu elsewhere;
errors do not stop it, so a notebook with exercises left to do still runs to its end), then each
check cell's verdict is read: passed, failed (with the checker's hint), not done, error (the check
cell raised: its last line) or not run. ``--checks-only`` runs only the setup, solution and check
cells, one kernel per student (seconds per notebook, no training): for grading a folder of
submissions. Figures the notebooks save go to a temporary folder, never over the course's.

The table goes to stdout; the exit status is 0 only when every exercise passed (1 otherwise, 2 for
a bad command line). ``--json`` / ``--csv`` write the gradebook, one row per student and exercise:
student, notebook, grade_id, exercise, status, points, max_points, hint, message.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import nbformat

from . import config
from . import student_version as sv
from .errors import BadRequest

STATUSES = ("passed", "failed", "not done", "error", "not run")
_VERDICT = re.compile(r"^(PASS|FAIL|NOT DONE): ")
_WORST = {"FAIL": 0, "NOT DONE": 1, "PASS": 2}
_STUCK = re.compile(r"^#\s*(?P<line>(?P<name>\w+)\s*=\s*checks\.course_version\((?P<q>[\"'])(?P=name)(?P=q)\))\s*$")
_POINTS = re.compile(r"\s*\(\d+(\.\d+)?\s+points?\)")  # "(2 points)" in a title: the table has a column for it
_TITLE = re.compile(r"\*\*Exercise:?\s*(?P<title>[^*]+?)\.?\*\*")


@dataclass(frozen=True)
class Exercise:
    """One exercise of a course notebook, as the course's own copy states it."""

    grade_id: str  # the check cell's
    solution_id: str | None  # the solution cell's
    name: str
    points: float
    check_source: str


@dataclass(frozen=True)
class Row:
    """One line of the gradebook."""

    student: str
    notebook: str
    grade_id: str
    exercise: str
    status: str
    points: float
    max_points: float
    hint: str = ""
    message: str = ""


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path


# ---------------------------------------------------------------------------------------------
# The course's exercises


def exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The graded exercises of a course notebook: each check cell with its points and source."""
    found = []
    for i, cell in enumerate(nb.cells):
        meta = sv.nbgrader_meta(cell)
        if cell.cell_type != "code" or not (sv.is_check(cell) or meta.get("grade")) or not meta.get("grade_id"):
            continue
        solution = nb.cells[i - 1] if i > 0 and sv.is_solution(nb.cells[i - 1]) else None
        task = nb.cells[i - 2] if solution is not None and i > 1 else None
        solution_id = sv.grade_id(solution) if solution is not None else None
        title = _TITLE.search(task.source) if task is not None and task.cell_type == "markdown" else None
        if title:
            name = _POINTS.sub("", title.group("title")).strip()
        else:
            name = re.sub(r"^\d+-", "", solution_id or meta["grade_id"]).removesuffix("-check")
        found.append(Exercise(meta["grade_id"], solution_id, name, float(meta.get("points", 1)), cell.source))
    return found


def restore_check(course_source: str, student_source: str) -> str:
    """The course's check cell, with its "Stuck?" line uncommented when the student uncommented it."""
    kept = {line.strip() for line in student_source.split("\n")}
    out = []
    for line in course_source.split("\n"):
        match = _STUCK.match(line.strip())
        if match and match.group("line") in kept:
            line = line[: len(line) - len(line.lstrip())] + match.group("line")
        out.append(line)
    return "\n".join(out)


def prepare(
    student: nbformat.NotebookNode, course: Sequence[Exercise], *, checks_only: bool = False
) -> tuple[nbformat.NotebookNode, dict[str, int]]:
    """The notebook to run, with the course's check cells, and where each exercise's check cell is.

    A check cell the student deleted is put back after its solution cell; an exercise with neither
    is left out (not done). ``checks_only`` keeps only setup, solution and check cells.
    """
    nb = copy.deepcopy(student)
    by_id = {e.grade_id: e for e in course}
    solution_of = {e.solution_id: e for e in course if e.solution_id}
    cells, seen = [], set()
    for cell in nb.cells:
        gid = sv.grade_id(cell) if cell.cell_type == "code" else None
        if gid in by_id and gid not in seen:
            cell.source = restore_check(by_id[gid].check_source, cell.source)
            cell.metadata.update(_check_cell(by_id[gid]).metadata)  # its tag and nbgrader metadata, too
            cells.append(cell)
            seen.add(gid)
            continue
        if gid in by_id or (sv.nbgrader_meta(cell).get("grade") and not sv.nbgrader_meta(cell).get("solution")):
            continue  # a second copy of a check cell, or a graded cell the course does not have: not run
        cells.append(cell)
        exercise = solution_of.get(gid)
        if exercise is not None and exercise.grade_id not in seen and not _has_cell(nb, exercise.grade_id):
            cells.append(_check_cell(exercise))  # the student deleted the check cell
            seen.add(exercise.grade_id)
    if checks_only:
        cells = _checks_only(cells)
    nb.cells = cells
    where = {sv.grade_id(c): i for i, c in enumerate(cells) if c.cell_type == "code" and sv.grade_id(c) in by_id}
    return nb, where


def _has_cell(nb: nbformat.NotebookNode, gid: str) -> bool:
    return any(c.cell_type == "code" and sv.grade_id(c) == gid for c in nb.cells)


def _check_cell(exercise: Exercise) -> nbformat.NotebookNode:
    meta = {
        "tags": [sv.CHECK_TAG],
        "nbgrader": {"grade": True, "grade_id": exercise.grade_id, "locked": True, "points": exercise.points},
    }
    return nbformat.v4.new_code_cell(exercise.check_source, metadata=meta)


def _checks_only(cells: list) -> list:
    """Setup, solution and check cells; without setup tags, the code cells before the first exercise."""
    code = [c for c in cells if c.cell_type == "code"]
    setup = [c for c in code if sv.is_setup(c)]
    if not setup:
        first = next((i for i, c in enumerate(cells) if sv.EXERCISE_TAG in sv.tags(c) or sv.is_solution(c)), 0)
        setup = [c for c in cells[:first] if c.cell_type == "code" and "colab-setup" not in sv.tags(c)]
    keep = {id(c) for c in setup}
    graded = [c for c in code if sv.is_solution(c) or sv.is_check(c) or sv.nbgrader_meta(c).get("grade")]
    keep |= {id(c) for c in graded}
    return [c for c in cells if id(c) in keep]


# ---------------------------------------------------------------------------------------------
# Running a notebook


def _kernel_manager_class():
    """A kernel manager that always starts this Python's ipykernel (like nbval's --nbval-current-env)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict())

    class Manager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _current_python(self):
            return CurrentPython(data_dir=self.data_dir)

    return Manager


def kernel_env(*, fast: bool, figures_dir: Path | None = None) -> dict[str, str]:
    """The kernel's environment: fast mode on (or off), checks that print rather than raise."""
    env = dict(os.environ)
    env.pop("NBGRADER_EXECUTION", None)
    env.pop("COURSE_CHECKS_RAISE", None)
    if fast:
        env["COURSE_FAST"] = "1"
    else:
        env.pop("COURSE_FAST", None)
    if figures_dir is not None:
        env["COURSE_FIGURES_DIR"] = str(figures_dir)  # a student's run never replaces the course's figures
    return env


def notebook_client_class():
    """nbclient's NotebookClient that goes on when a cell's reply never comes but the kernel went
    idle; the grader and ``figures`` both run notebooks with it.

    With ipykernel 7 the execute_reply of a cell sometimes never arrives although the cell ran and
    its outputs came back (nbclient#312, widgets); nbclient then waits for the whole cell timeout.
    Here, once the kernel reports the cell finished (idle), its reply gets a few more seconds.
    """
    import asyncio

    from nbclient import NotebookClient

    class Client(NotebookClient):
        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
            reply = asyncio.ensure_future(
                super()._async_poll_for_reply(msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive)
            )
            await asyncio.wait({reply, task_poll_output_msg}, return_when=asyncio.FIRST_COMPLETED)
            idle = task_poll_output_msg.done() and not task_poll_output_msg.cancelled()
            if not reply.done() and idle and task_poll_output_msg.exception() is None:
                await asyncio.wait({reply}, timeout=IDLE_GRACE_S)
                if not reply.done():  # the kernel is idle and said all it had to say: go on without the reply
                    self.log.warning("no reply %g s after the kernel finished a cell; going on", IDLE_GRACE_S)
                    reply.cancel()
                    task_poll_kernel_alive.cancel()
                    return None
            return await reply

    return Client


IDLE_GRACE_S = 5.0  # how long a cell's reply may lag behind the kernel's "idle"


def run(
    nb: nbformat.NotebookNode, *, cwd: Path, env: dict[str, str], timeout: float, hook: Callable | None = None
) -> nbformat.NotebookNode:
    """Execute ``nb`` in place, to its end whatever fails; a cell over ``timeout`` seconds is interrupted.

    ``hook(cell_index=...)`` is called after each code cell.
    """
    from nbclient.exceptions import DeadKernelError

    client = notebook_client_class()(
        nb,
        timeout=min(timeout, 60),  # waiting for the kernel's first reply; a lost one costs a minute, not a cell's limit
        timeout_func=lambda cell: timeout,  # each cell's limit
        allow_errors=True,
        interrupt_on_timeout=True,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": str(cwd)}},
        on_cell_executed=hook,
    )
    try:
        # stderr: the kernel process's own chatter (cells' stderr still comes back with their outputs)
        client.execute(env=env, stderr=subprocess.DEVNULL)
    except DeadKernelError as err:  # the cells that ran keep their outputs; the others read "not run"
        print(f"warning: the kernel died ({err})", file=sys.stderr)
    return nb


# ---------------------------------------------------------------------------------------------
# Reading the verdicts


def _text(cell) -> tuple[str, str | None]:
    """(what the cell printed, the last line of its error or None)."""
    printed, error = [], None
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            printed.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            error = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    return "".join(printed), error


def verdict(cell) -> tuple[str, str, str]:
    """(status, hint, message) of one executed check cell; the worst of several verdicts counts."""
    printed, error = _text(cell)
    lines = printed.split("\n")
    blocks = []
    for i, line in enumerate(lines):
        match = _VERDICT.match(line)
        if match:
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith("  ")), len(lines))
            blocks.append((_WORST[match.group(1)], lines[i:end]))
    if blocks:
        _, block = min(blocks, key=lambda b: b[0])
        kind = _VERDICT.match(block[0]).group(1)
        status = {"PASS": "passed", "FAIL": "failed", "NOT DONE": "not done"}[kind]
        details = [b.strip() for b in block[1:]]
        hints = [d.removeprefix("hint:").strip() for d in details if d.startswith("hint:")]
        hint = hints[0] if hints else (details[-1] if details and status != "passed" else "")
        return status, hint, "\n".join(block)
    if error is not None:
        if error.startswith("NameError"):
            return "not done", f"{error} (is the solution cell run, or deleted?)", error
        if error.startswith("KeyboardInterrupt"):
            return "error", "interrupted: it ran over --timeout (an endless loop?)", error
        return "error", error, error
    if cell.get("execution_count") is None:
        return "not run", "the check cell did not run (an earlier cell stopped the kernel?)", ""
    return "error", "the check printed no verdict", printed.strip()


def _reset_cell(folder: Path) -> nbformat.NotebookNode:
    """Between two notebooks sharing a kernel: an empty namespace, the next notebook's folder."""
    return nbformat.v4.new_code_cell(f"%reset -f\n__import__('os').chdir({str(folder.resolve())!r})")


def grade_notebooks(
    submissions: Sequence[Submission],
    course: dict[str, nbformat.NotebookNode],
    *,
    checks_only: bool = False,
    fast: bool = True,
    timeout: float = 600,
    figures_dir: Path | None = None,
    done: Callable[[], None] | None = None,
) -> list[Row]:
    """Run these notebooks one after another in one kernel; one row per exercise of each course notebook.

    Each notebook after the first starts from an empty namespace (``%reset -f``) in its own folder;
    modules imported stay imported, so only one student's notebooks should share a kernel.
    ``done()`` is called as each notebook finishes.
    """
    cells, parts, rows = [], [], {}
    for s in submissions:
        course_ex = exercises(course[s.path.name])
        try:
            student = nbformat.read(s.path, as_version=4)
        except Exception as err:  # noqa: BLE001 - an unreadable submission is graded, not a crash
            why = f"the notebook cannot be read: {type(err).__name__}: {err}".split("\n")[0]
            rows[s] = [Row(s.student, s.path.name, e.grade_id, e.name, "error", 0.0, e.points, why) for e in course_ex]
            continue
        nb, where = prepare(student, course_ex, checks_only=checks_only)
        if parts:
            cells.append(_reset_cell(s.path.parent))
        offset = len(cells)
        cells += nb.cells
        runs = [i for i, c in enumerate(cells) if i >= offset and c.cell_type == "code" and c.source.strip()]
        parts.append((s, course_ex, {gid: i + offset for gid, i in where.items()}, runs[-1] if runs else -1))
    last = {end for *_, end in parts}
    finished = []

    def hook(cell_index: int, **_) -> None:
        if cell_index in last:
            finished.append(cell_index)
            if done:
                done()

    if parts:
        for i, cell in enumerate(cells):
            cell.id = f"cell-{i}"  # unique across the notebooks joined
        combined = nbformat.v4.new_notebook(cells=cells)
        cwd = parts[0][0].path.parent
        run(combined, cwd=cwd, env=kernel_env(fast=fast, figures_dir=figures_dir), timeout=timeout, hook=hook)
        for i, cell in enumerate(combined.cells):
            if any(o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", [])):
                owner = next(p[0] for p in parts if p[3] >= i)
                line = cell.source.strip().split("\n")[0][:60]
                print(
                    f"warning: {owner.path}: a cell ran over {timeout:g} s and was interrupted: {line}", file=sys.stderr
                )
    for _ in range(len(submissions) - len(finished)):  # unreadable, or stopped early: done all the same
        if done:
            done()
    for s, course_ex, where, _ in parts:
        rows[s] = []
        for e in course_ex:
            if e.grade_id in where:
                status, hint, message = verdict(combined.cells[where[e.grade_id]])
            else:
                status, hint, message = "not done", "the exercise's cells are missing from the notebook", ""
            points = e.points if status == "passed" else 0.0
            rows[s].append(Row(s.student, s.path.name, e.grade_id, e.name, status, points, e.points, hint, message))
    return [row for s in submissions for row in rows[s]]


# ---------------------------------------------------------------------------------------------
# Finding submissions


def find_submissions(paths: Iterable[str | Path]) -> list[Submission]:
    """Every notebook under ``paths`` with its student; :class:`BadRequest` for a path that is not there."""
    found = []
    for given in map(Path, paths):
        if not given.exists():
            raise BadRequest(f"{given}: no such file or folder")
        if given.is_file():
            if given.suffix != ".ipynb":
                raise BadRequest(f"{given}: not a notebook (.ipynb)")
            found.append(Submission(given.resolve().parent.name, given))
            continue
        for path in sorted(given.rglob("*.ipynb")):
            parts = path.relative_to(given).parts
            if any(p.startswith(".") for p in parts):
                continue  # .ipynb_checkpoints and other hidden folders
            student = parts[0] if len(parts) > 1 else given.resolve().name
            found.append(Submission(student, path))
    return found


def course_notebooks(source: Path) -> dict[str, nbformat.NotebookNode]:
    """The course's notebooks by file name, those with exercises only."""
    if not source.is_dir():
        raise BadRequest(f"--source {source}: not a folder of course notebooks")
    out = {}
    for path in sorted(source.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if exercises(nb):
            out[path.name] = nb
    return out


def grade(
    paths: Sequence[str | Path],
    *,
    source: Path | None = None,
    checks_only: bool = False,
    fast: bool = True,
    timeout: float = 600,
    progress: bool = True,
) -> list[Row]:
    """Grade every notebook under ``paths`` against the course's notebooks in ``source``."""
    from tqdm.auto import tqdm

    source = Path(source) if source is not None else config.repo_root() / "notebooks"
    course = course_notebooks(source)
    submissions = find_submissions(paths)
    if not submissions:
        raise BadRequest(f"no notebooks found in {', '.join(map(str, paths))}")
    graded = [s for s in submissions if s.path.name in course]
    skipped = ", ".join(sorted({s.path.name for s in submissions} - set(course)))
    if not graded:
        raise BadRequest(f"none of the notebooks found has exercises in {source}: {skipped}")
    if skipped:
        print(f"not graded (no exercises in {source}): {skipped}", file=sys.stderr)
    if checks_only:  # one kernel per student: their notebooks one after another
        batches = [[s for s in graded if s.student == student] for student in dict.fromkeys(s.student for s in graded)]
    else:  # one kernel per notebook
        batches = [[s] for s in graded]
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="course-grade-figures-") as figures,
        tqdm(total=len(graded), desc="grading", unit="notebook", disable=not progress, file=sys.stderr) as bar,
    ):
        for batch in batches:
            rows += grade_notebooks(
                batch,
                course,
                checks_only=checks_only,
                fast=fast,
                timeout=timeout,
                figures_dir=Path(figures),
                done=lambda: bar.update(1),
            )
    # A notebook that others handed in and a student did not: each of its exercises is not done.
    students = list(dict.fromkeys(s.student for s in graded))
    names = sorted({s.path.name for s in graded})
    have = {(s.student, s.path.name) for s in graded}
    for student in students:
        for name in names:
            if (student, name) not in have:
                why = "the notebook was not handed in"
                missing = exercises(course[name])
                rows += [Row(student, name, e.grade_id, e.name, "not done", 0.0, e.points, why) for e in missing]
    return sorted(rows, key=lambda r: (students.index(r.student), names.index(r.notebook)))  # stable: cell order


# ---------------------------------------------------------------------------------------------
# Reports


def _points(x: float) -> str:
    return f"{x:g}"


def table(rows: Sequence[Row], width: int = 70) -> str:
    """The rows as a text table with a total line (and one line per student when there are several)."""
    students = sorted({r.student for r in rows})
    head = (["student"] if len(students) > 1 else []) + ["notebook", "exercise", "status", "points", "hint"]
    body = []
    for r in rows:
        hint = r.hint if len(r.hint) <= width else r.hint[: width - 3] + "..."
        line = [r.notebook.removesuffix(".ipynb"), r.exercise, r.status, f"{_points(r.points)}/{_points(r.max_points)}"]
        body.append(([r.student] if len(students) > 1 else []) + line + [hint])
    widths = [max(len(x) for x in column) for column in zip(head, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(students) > 1:
        for student in students:
            mine = [r for r in rows if r.student == student]
            lines.append(f"{student}: {summary(mine)}")
    lines.append(f"total: {summary(rows)}")
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    said = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    got, of = sum(r.points for r in rows), sum(r.max_points for r in rows)
    return f"{_points(got)}/{_points(of)} points; {said or 'no exercises'}"


def write_gradebook(rows: Sequence[Row], path: Path) -> None:
    """Write the rows as JSON (a list of objects) or CSV (by the suffix), atomically."""
    from .files import atomic_path

    if path.suffix.lower() == ".json":
        text = json.dumps([asdict(r) for r in rows], indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(Row)], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        text = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """Refuses a bad command line in one line on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m course_utils grade", description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", type=Path, help="notebooks, or folders of them (submissions/<student>/...)")
    p.add_argument("--checks-only", action="store_true", help="run only the setup, solution and check cells")
    p.add_argument(
        "--full",
        action="store_true",
        help="COURSE_FAST unset: the size chosen by device (full on a GPU, cpu elsewhere); default: fast",
    )
    p.add_argument("--json", type=Path, default=None, help="write the gradebook as JSON to this file")
    p.add_argument("--csv", type=Path, default=None, help="write the gradebook as CSV to this file")
    p.add_argument("--source", type=Path, default=None, help="the course's notebooks (default: <repo>/notebooks)")
    p.add_argument("--timeout", type=_seconds, default=600.0, help="seconds per cell before it is interrupted")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_output(parser: argparse.ArgumentParser, option: str, path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir():
        parser.error(f"argument {option}: {path} is a folder; name the file to write")
    if not config.can_write(path.parent):
        parser.error(f"argument {option}: cannot write in {path.parent}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_output(parser, "--json", args.json)
    _check_output(parser, "--csv", args.csv)
    try:
        rows = grade(
            args.paths,
            source=args.source,
            checks_only=args.checks_only,
            fast=not args.full,
            timeout=args.timeout,
            progress=not args.no_progress,
        )
    except BadRequest as err:
        parser.error(str(err))
    print(table(rows))
    for path in (args.json, args.csv):
        if path is not None:
            write_gradebook(rows, path)
            print(f"wrote {path}")
    return 0 if rows and all(r.status == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
