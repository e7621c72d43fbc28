"""The figures command on tiny temporary notebooks: figures collected, indexed, failures named."""

import json
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils import figures

MAKE_FIGURE = """import os
import matplotlib.pyplot as plt
from course_utils import plotting
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([0, 1], [0, 1])
plotting.save_figure("99_test", fig)
with open("cwd.txt", "w") as f:
    f.write(os.getcwd() + " " + os.environ["COURSE_FAST"])"""


def _write(folder, name, *sources):
    folder.mkdir(exist_ok=True)
    cells = [new_markdown_cell("# 99 · test")] + [new_code_cell(s) for s in sources]
    path = folder / name
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_figures_command_runs_a_notebook_and_indexes_its_figure(tmp_path, capsys):
    path = _write(tmp_path / "nbs", "99_test.ipynb", MAKE_FIGURE, "print('done')")
    out = tmp_path / "figs"
    code = figures.main(["--fast", "--notebooks", str(path), "--out", str(out), "--timeout", "120", "--no-progress"])
    assert code == 0
    assert (out / "99_test.png").stat().st_size > 0
    cwd, fast = (tmp_path / "nbs" / "cwd.txt").read_text().split()
    assert cwd == str((tmp_path / "nbs").resolve()) and fast == "1"  # ran in the notebook's folder, fast mode
    index = (out / "INDEX.md").read_text()
    assert "| [99_test](99_test.png) | `99_test.ipynb` |" in index
    assert re.search(r"99_test\.ipynb: 1 figure\(s\), \d+ s, ok", capsys.readouterr().out)
    assert nbformat.read(path, as_version=4).cells[1].outputs == []  # the notebook itself is not rewritten
    times = json.loads((out / "times.json").read_text())
    row = times["notebooks"]["99"]
    assert times["size"] == "fast" and "CPU cores" in times["machine"]
    assert row["notebook"] == "99_test.ipynb" and row["seconds"] >= row["longest cell"]["seconds"] > 0
    assert row["longest cell"]["index"] in (1, 2) and "failed" not in row


def test_a_failing_cell_is_named_and_the_exit_code_is_nonzero(tmp_path, capsys):
    path = _write(tmp_path / "nbs", "98_broken.ipynb", "x = 1", "raise ValueError('bad input')", "print('never')")
    out = tmp_path / "figs"
    assert figures.main(["--notebooks", str(path), "--out", str(out), "--timeout", "120", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "98_broken.ipynb: cell [2]" in err and "ValueError: bad input" in err
    assert "Failed in the last run" in (out / "INDEX.md").read_text()
    row = json.loads((out / "times.json").read_text())["notebooks"]["98"]
    assert "cell [2]" in row["failed"] and row["longest cell"]["index"] in (1, 2)


def test_times_of_a_partial_run_keep_the_other_rows_of_the_same_size(tmp_path):
    out = tmp_path / "figs"
    out.mkdir()
    first = figures.NotebookRun(tmp_path / "01_a.ipynb", seconds=12.34, cells=[(1, 2.0, "x = 1"), (2, 9.5, "train()")])
    figures.write_times(out, [first], fast=True)
    second = figures.NotebookRun(tmp_path / "02_b.ipynb", seconds=3.0, cells=[(1, 2.5, "y = 2")])
    rows = json.loads(figures.write_times(out, [second], fast=True).read_text())["notebooks"]
    assert rows["01"]["seconds"] == 12.3
    assert rows["01"]["longest cell"] == {"index": 2, "seconds": 9.5, "starts": "train()"}
    assert rows["02"]["seconds"] == 3.0
    # another size starts a new file: times of different sizes never share a table
    other = figures.write_times(out, [second], fast=False)
    assert list(json.loads(other.read_text())["notebooks"]) == ["02"]


def test_find_notebooks_by_number_and_index_by_prefix(tmp_path):
    folder = tmp_path / "notebooks"
    for name in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb"):
        _write(folder, name, "pass")
    assert [p.name for p in figures.find_notebooks(["01", "03"], folder)] == ["01_a.ipynb", "03_c.ipynb"]
    assert len(figures.find_notebooks(None, folder)) == 3
    with pytest.raises(FileNotFoundError):
        figures.find_notebooks(["07"], folder)
    out = tmp_path / "figs"
    out.mkdir()
    (out / "02_old.png").write_bytes(b"png")
    (out / "zz.png").write_bytes(b"png")
    text = figures.write_index(out, [], folder, fast=False).read_text()
    assert "| [02_old](02_old.png) | `02_b.ipynb` |" in text and "| [zz](zz.png) | `other` |" in text


def test_the_readme_lists_exactly_the_figures_the_notebooks_save():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    saved = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                names = re.findall(r'save_figure\(\s*"([0-9]{2}_[a-z0-9_]+)"', cell.source)
                # each figure's name starts with the number of the notebook that saves it
                assert all(n[:2] == path.name[:2] for n in names), f"{path.name} saves {names}"
                saved += names
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Figures") : readme.index("## Interactive explorers")]
    listed = re.findall(r"`([0-9]{2}_[a-z0-9_]+)`", section)
    assert len(saved) > 40 and sorted(listed) == sorted(saved), set(listed) ^ set(saved)


def test_the_index_names_the_size_a_run_without_fast_mode_gets(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")  # the caller's own setting: the kernels get COURSE_FAST=0
    monkeypatch.setenv("COURSE_SIZE", "cpu")
    text = figures.write_index(tmp_path, [], tmp_path, fast=False).read_text()
    assert "Last run at the cpu size (COURSE_FAST=0)" in text
    assert figures.config.is_fast()  # the caller's environment is left as it was
    assert "Last run at the fast size" in figures.write_index(tmp_path, [], tmp_path, fast=True).read_text()
