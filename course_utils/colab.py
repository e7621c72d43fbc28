"""Google Colab: the "Open in Colab" badges, the notebooks' Colab set-up cell, and Drive storage.

Every notebook carries, inserted by this module's tool:

- a badge in its first markdown cell, under the title, that opens it on Colab;
- a first code cell that, only on Colab (``"google.colab" in sys.modules``), clones the repository,
  installs the package with ``%pip install -q --no-deps`` (not ``-e``: the running kernel could
  not import an editable install before a restart; ``--no-deps`` keeps Colab's own torch) and
  moves into the clone's ``notebooks/`` folder. Anywhere else, under nbval included, it does nothing.

::

    python -m course_utils.colab            # insert or refresh both in every notebook
    python -m course_utils.colab --check    # exit 1 if a notebook lacks them or they are stale
    python -m course_utils.colab --readme   # print the badge table for the README

:func:`setup_colab` is for the notebooks themselves: it reports the GPU and, when asked, keeps
checkpoints, caches and figures in Google Drive so they survive the end of a Colab session.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import config

if TYPE_CHECKING:
    import nbformat

# The repository's address, used by every badge and by the set-up cell. A fork changes it here and
# reruns `python -m course_utils.colab` to rewrite the notebooks.
REPO_URL = "https://github.com/course-org/diffusion-course"
BRANCH = "main"

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
SETUP_TAG = "colab-setup"
SETUP_CELL_ID = "colab-setup"
CLONE_DIR = "/content/" + REPO_URL.rstrip("/").rsplit("/", 1)[-1]
DRIVE_FOLDER = "diffusion-course"


def badge_url(notebook: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The Colab address of ``notebooks/<notebook>`` in the repository."""
    slug = repo_url.rstrip("/").removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{Path(notebook).name}"


def badge_markdown(notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({badge_url(notebook)})"


def setup_source() -> str:
    """The source of the Colab set-up cell (the same in every notebook)."""
    return f'''# Colab only: fetch the course, install its package, work in its notebooks folder. Elsewhere: nothing.
import sys

if "google.colab" in sys.modules:
    import importlib.util
    import os
    import subprocess

    if not os.path.isdir("{CLONE_DIR}"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{BRANCH}", "{REPO_URL}", "{CLONE_DIR}"], check=True)
    %pip install -q --no-deps {CLONE_DIR}
    importlib.invalidate_caches()
    assert importlib.util.find_spec("course_utils"), "installing the course package failed: see pip's message above"
    os.chdir("{CLONE_DIR}/notebooks")'''


def _is_badge_line(line: str) -> bool:
    return BADGE_IMAGE in line


def _is_setup_cell(cell) -> bool:
    return cell.cell_type == "code" and SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def with_badge(markdown: str, notebook: str) -> str:
    """The markdown with exactly one, current badge, on its own line after the title."""
    lines = [line for line in markdown.splitlines() if not _is_badge_line(line)]
    title, rest = lines[:1], lines[1:]
    while rest and not rest[0].strip():
        rest.pop(0)
    return "\n".join(title + ["", badge_markdown(notebook)] + ([""] + rest if rest else []))


def apply(nb: nbformat.NotebookNode, notebook: str) -> nbformat.NotebookNode:
    """Insert or refresh the badge and the set-up cell in ``nb`` (modified in place and returned)."""
    import nbformat

    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None:
        raise ValueError(f"{notebook}: no markdown cell to hold the badge")
    first_md.source = with_badge(first_md.source, notebook)
    old = [c for c in nb.cells if _is_setup_cell(c)]
    nb.cells = [c for c in nb.cells if not _is_setup_cell(c)]
    cell = nbformat.v4.new_code_cell(setup_source(), metadata={"tags": [SETUP_TAG]})
    cell.id = old[0].get("id", SETUP_CELL_ID) if old else SETUP_CELL_ID
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, cell)
    return nb


def problems(nb: nbformat.NotebookNode, notebook: str) -> list[str]:
    """What is missing or stale in ``nb``; empty when the badge and the set-up cell are current."""
    found = []
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None or badge_markdown(notebook) not in first_md.source:
        found.append("no current Colab badge in the first markdown cell")
    setup = [i for i, c in enumerate(nb.cells) if _is_setup_cell(c)]
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    if not setup:
        found.append("no Colab set-up cell")
    elif setup != [first_code]:
        found.append("the Colab set-up cell must be the first code cell, and only one")
    elif nb.cells[setup[0]].source != setup_source():
        found.append("the Colab set-up cell is out of date")
    return found


def readme_table(notebooks: list[Path]) -> str:
    """A markdown table of the notebooks with their badges, for the README."""
    lines = ["| notebook | open |", "|----------|------|"]
    lines += [f"| `{p.name}` | {badge_markdown(p.name)} |" for p in notebooks]
    return "\n".join(lines)


def setup_colab(
    drive: bool = False, *, folder: str = DRIVE_FOLDER, mount_point: str = "/content/drive"
) -> dict[str, str]:
    """On Colab: report the GPU and, with ``drive=True``, keep checkpoints, caches and figures in Drive.

    Mounting Google Drive waits for you to sign in, so it is opt-in. With it, ``COURSE_CHECKPOINT_DIR``,
    ``COURSE_CACHE_DIR`` and ``COURSE_FIGURES_DIR`` point at ``MyDrive/<folder>/{checkpoints,cache,figures}``
    and trained models survive the end of the session. Elsewhere it does nothing. Returns what it set.
    """
    if not config.in_colab():
        print("not on Colab: nothing to set up")
        return {}
    import torch

    settings = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    if torch.cuda.is_available():
        print(f"GPU: {settings['gpu']}")
    else:
        print("no GPU: choose Runtime > Change runtime type > a GPU for faster training")
    if drive:
        from google.colab import drive as google_drive

        google_drive.mount(mount_point)
        base = Path(mount_point) / "MyDrive" / folder
        for variable, sub in (
            ("COURSE_CHECKPOINT_DIR", "checkpoints"),
            ("COURSE_CACHE_DIR", "cache"),
            ("COURSE_FIGURES_DIR", "figures"),
        ):
            path = base / sub
            path.mkdir(parents=True, exist_ok=True)
            os.environ[variable] = settings[variable] = str(path)
            print(f"{variable} = {path}")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.colab", description="Colab badges and set-up cells in the notebooks."
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every notebooks/*.ipynb)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook lacks the badge or the cell"
    )
    parser.add_argument("--readme", action="store_true", help="print the README's badge table and exit")
    args = parser.parse_args(argv)
    import nbformat  # only the tool needs it: setup_colab works without Jupyter's packages

    notebooks = args.notebooks or sorted((config.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.readme:
        print(readme_table(notebooks))
        return 0
    bad = 0
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            for problem in problems(nb, path.name):
                print(f"{path.name}: {problem}")
                bad += 1
            continue
        before = nbformat.writes(nb)
        after = apply(nb, path.name)
        if nbformat.writes(after) != before:
            nbformat.write(after, path)
            print(f"{path.name}: updated")
        else:
            print(f"{path.name}: already current")
    if args.check:
        print(
            f"{len(notebooks)} notebooks checked, {bad} problem(s)"
            + ("; run `python -m course_utils.colab` to fix" if bad else "")
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
