"""Colab badges and set-up cells: inserted, refreshed, checked; the cell is a no-op off Colab."""

import sys
import types

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils import colab


def _notebook(title="# 05 · Title\n\nSome text."):
    return new_notebook(
        cells=[new_markdown_cell(title), new_code_cell("from course_utils import config"), new_markdown_cell("## more")]
    )


def test_badge_points_at_the_notebook_in_the_repository():
    url = colab.badge_url("05_x.ipynb")
    assert url == "https://colab.research.google.com/github/course-org/diffusion-course/blob/main/notebooks/05_x.ipynb"
    assert colab.REPO_URL in colab.setup_source() and "--no-deps" in colab.setup_source()
    assert "-e " not in colab.setup_source() and "torch" not in colab.setup_source()


def test_apply_inserts_once_and_is_idempotent():
    nb = colab.apply(_notebook(), "05_x.ipynb")
    assert nb.cells[0].source.startswith("# 05 · Title\n\n[![Open In Colab]")
    assert nb.cells[0].source.endswith("\n\nSome text.")
    assert nb.cells[1].source == colab.setup_source() and nb.cells[2].source == "from course_utils import config"
    once = nbformat.writes(nb)
    assert nbformat.writes(colab.apply(nb, "05_x.ipynb")) == once
    nbformat.validate(nb)
    assert colab.problems(nb, "05_x.ipynb") == []


def test_apply_refreshes_a_stale_badge_and_cell():
    nb = colab.apply(_notebook(), "05_x.ipynb")
    nb.cells[0].source = nb.cells[0].source.replace("course-org", "someone-else")
    nb.cells[1].source = "# old set-up"
    nb.cells.insert(3, nb.cells.pop(1))  # and moved below the imports
    found = colab.problems(nb, "05_x.ipynb")
    assert any("badge" in p for p in found) and any("first code cell" in p for p in found)
    fixed = colab.apply(nb, "05_x.ipynb")
    assert colab.problems(fixed, "05_x.ipynb") == []
    assert fixed.cells[0].source.count("colab-badge.svg") == 1 and "someone-else" not in fixed.cells[0].source
    assert sum(c.source == colab.setup_source() for c in fixed.cells) == 1


def test_check_command_on_temporary_notebooks(tmp_path, capsys):
    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    nbformat.write(colab.apply(_notebook("# 01 · good"), good.name), good)
    nbformat.write(_notebook("# 02 · bad"), bad)
    assert colab.main(["--check", str(good)]) == 0
    assert colab.main(["--check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "02_bad.ipynb: no current Colab badge" in out and "02_bad.ipynb: no Colab set-up cell" in out
    assert colab.main([str(bad)]) == 0 and colab.main(["--check", str(bad)]) == 0
    assert colab.main(["--readme", str(good)]) == 0
    assert f"| `01_good.ipynb` | {colab.badge_markdown('01_good.ipynb')} |" in capsys.readouterr().out


def test_setup_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    monkeypatch.chdir(tmp_path)
    code = TransformerManager().transform_cell(colab.setup_source())  # the %pip line, as IPython runs it
    assert "run_line_magic('pip', 'install -q --no-deps" in code
    assert "google.colab" not in sys.modules
    exec(compile(code, "setup", "exec"), {})  # no get_ipython needed: the Colab branch is skipped
    assert list(tmp_path.iterdir()) == []


def test_setup_colab_off_colab_and_with_drive(tmp_path, monkeypatch, capsys):
    assert colab.setup_colab(drive=True) == {}
    assert "not on Colab" in capsys.readouterr().out
    mounted = []
    drive = types.SimpleNamespace(mount=lambda path: mounted.append(path))
    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    google_colab.drive = drive
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    for name in ("CHECKPOINT", "CACHE", "FIGURES"):
        # setenv records the variable's original state, so the values setup_colab writes are undone
        monkeypatch.setenv(f"COURSE_{name}_DIR", "unset")
        monkeypatch.delenv(f"COURSE_{name}_DIR")
    settings = colab.setup_colab(drive=True, mount_point=str(tmp_path))
    assert mounted == [str(tmp_path)] and settings["gpu"]
    from course_utils import config

    assert config.checkpoint_dir() == tmp_path / "MyDrive" / "diffusion-course" / "checkpoints"
    assert config.figures_dir().is_dir() and config.cache_dir().is_dir()


def test_the_colab_install_line_keeps_colabs_own_ipywidgets(tmp_path):
    """Local installs require ipywidgets >= 8; the Colab cell's ``--no-deps`` install must leave
    Colab's 7.7.1 alone: run that pip line (into a target folder) and check it installed no ipywidgets."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    line = next(x.strip() for x in colab.setup_source().splitlines() if x.strip().startswith("%pip install"))
    args = line.split()[2:]  # after "%pip install"
    assert "--no-deps" in args
    repo = Path(__file__).resolve().parent.parent
    pyproject = (repo / "pyproject.toml").read_text()
    assert re.search(r'"ipywidgets>=8', pyproject), "local installs ask for ipywidgets 8"
    clone = tmp_path / "clone"  # a copy: building writes beside the sources
    shutil.copytree(
        repo,
        clone,
        ignore=shutil.ignore_patterns(
            ".*", "build", "*.egg-info", "runs", "figures", "notebooks", "tests", "benchmarks", "cache"
        ),
    )
    args = [clone if a == colab.CLONE_DIR else a for a in args]
    target = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", *map(str, args), "--no-build-isolation", "--target", str(target)]
    subprocess.run(command, check=True, capture_output=True)
    installed = {p.name.split("-")[0].lower() for p in target.iterdir()}
    assert "course_utils" in installed and not installed & {"ipywidgets", "widgetsnbextension", "torch"}
