"""Regenerate every course figure: re-execute the notebooks and index what they saved.

::

    python -m course_utils.figures                       # every notebook at this device's size, into figures/
    python -m course_utils.figures --fast --notebooks 01 03 --out figures/

Each notebook runs in a fresh ``python3`` kernel with its working directory in ``notebooks/``,
``COURSE_FIGURES_DIR`` pointing at the output folder (so every ``plotting.save_figure(name)``
lands there as ``<name>.png``) and ``COURSE_FAST`` set to 1 with ``--fast``, 0 otherwise (then
the size is chosen by device, see :func:`course_utils.config.size`: full on a CUDA GPU, cpu
elsewhere, ``COURSE_SIZE`` overrides). The executed notebooks are not saved: the committed
notebooks stay without outputs. Afterwards ``INDEX.md`` in the output folder lists every figure and
the notebook that made it.

The command exits with status 1 when a notebook fails, naming the cell and the error; the other
notebooks still run and their figures are still indexed.

Every run also times each notebook and each of its cells: ``times.json`` in the output folder holds,
per notebook, the seconds it took top to bottom and its longest cell, with the size, the machine and
the torch version (a run of some notebooks updates their rows and keeps the others of the same size
and machine). The README's tables of notebook times are such files
(``benchmarks/results/notebook_times_cpu.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config

INDEX_NAME = "INDEX.md"
TIMES_NAME = "times.json"


@dataclass
class NotebookRun:
    """What one notebook did: the figures it wrote and, if it failed, where and why."""

    notebook: Path
    figures: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0  # top to bottom, kernel start included
    cells: list[tuple[int, float, str]] = field(default_factory=list)  # (index, seconds, first line) per code cell

    def longest_cell(self) -> tuple[int, float, str] | None:
        return max(self.cells, key=lambda c: c[1]) if self.cells else None


def find_notebooks(selection: list[str] | None, folder: Path) -> list[Path]:
    """Notebooks named by number prefix (``01``), file name or path; all of ``folder`` when empty."""
    available = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return available
    chosen = []
    for item in selection:
        path = Path(item)
        if path.suffix == ".ipynb" and path.is_file():
            chosen.append(path)
            continue
        matches = [p for p in available if p.name.startswith(item)]
        if not matches:
            raise FileNotFoundError(f"no notebook {item!r} in {folder}")
        chosen.extend(matches)
    return list(dict.fromkeys(p.resolve() for p in chosen))


def _snapshot(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def kernel_env(out: Path, fast: bool) -> dict[str, str]:
    """The environment the notebooks' kernels get: figures folder, fast-mode switch, no forced backend."""
    env = dict(os.environ)
    env["COURSE_FIGURES_DIR"] = str(out.resolve())
    env["COURSE_FAST"] = "1" if fast else "0"
    env.pop("MPLBACKEND", None)  # a forced backend in the kernel drops inline figures
    root = str(config.repo_root())
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip()]
    return lines[0][:80] if lines else "(empty)"


def run_notebook(
    path: Path, out: Path, *, fast: bool, timeout: int, kernel: str = "python3", progress: bool = True
) -> NotebookRun:
    """Execute one notebook cell by cell (a progress bar per notebook); return what it saved."""
    import nbformat
    from tqdm.auto import tqdm

    from .grading import notebook_client_class  # goes on when an explorer cell's reply is lost

    run = NotebookRun(path)
    nb = nbformat.read(path, as_version=4)
    client = notebook_client_class()(
        nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}}
    )
    before = _snapshot(out)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    bar = tqdm(total=len(code), desc=path.stem, unit="cell", disable=not progress, file=sys.stderr)
    started = time.perf_counter()
    try:
        with client.setup_kernel(env=kernel_env(out, fast)):
            for index, cell in code:
                cell_started = time.perf_counter()
                try:
                    client.execute_cell(cell, index)
                except Exception as err:  # noqa: BLE001 - the error is reported, the next notebook still runs
                    name = getattr(err, "ename", None) or type(err).__name__
                    value = getattr(err, "evalue", None) or _first_line(str(err))
                    run.error = f"{path.name}: cell [{index}] ({_first_line(cell.source)!r}) failed: {name}: {value}"
                    break
                finally:
                    run.cells.append((index, time.perf_counter() - cell_started, _first_line(cell.source)))
                bar.update(1)
    except Exception as err:  # noqa: BLE001 - a kernel that does not start is a failed notebook too
        run.error = run.error or f"{path.name}: could not run: {type(err).__name__}: {err}"
    finally:
        bar.close()
        run.seconds = time.perf_counter() - started
    after = _snapshot(out)
    run.figures = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
    return run


def write_index(out: Path, runs: list[NotebookRun], notebooks_dir: Path, *, fast: bool) -> Path:
    """``INDEX.md``: every PNG in ``out`` grouped by the notebook that made it (this run, else by its number)."""
    made_by = {name: run.notebook.name for run in runs for name in run.figures}
    known = sorted(p.name for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    groups: dict[str, list[str]] = {}
    for png in sorted(p.name for p in out.glob("*.png")):
        notebook = made_by.get(png) or next((nb for nb in known if nb[:2] == png[:2]), "other")
        groups.setdefault(notebook, []).append(png)
    lines = [
        "# Course figures",
        "",
        "Regenerate with `python -m course_utils.figures [--fast] [--notebooks 01 03] [--out figures/]`.",
        f"Last run at the {'fast' if fast else _size_of_run()} size ({'COURSE_FAST=1' if fast else 'COURSE_FAST=0'}).",
        "",
        "| figure | notebook |",
        "|--------|----------|",
    ]
    for notebook in sorted(groups):
        for png in groups[notebook]:
            lines.append(f"| [{png[:-4]}]({png}) | `{notebook}` |")
    failed = [run for run in runs if run.error]
    if failed:
        lines += ["", "## Failed in the last run", ""] + [f"- {run.error}" for run in failed]
    path = out / INDEX_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def write_times(out: Path, runs: list[NotebookRun], *, fast: bool) -> Path:
    """``times.json``: per notebook (by its number) the seconds top to bottom and the longest cell,
    with the size, machine and torch version. Rows of notebooks not run now are kept when the file
    is from the same size and machine; a failed notebook's row says where it stopped."""
    from .checkpoints import machine_description

    size = "fast" if fast else _size_of_run()
    machine = machine_description(config.device())
    path = out / TIMES_NAME
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    same = old.get("size") == size and old.get("machine") == machine
    rows = dict(old.get("notebooks", {})) if same else {}
    for run in runs:
        longest = run.longest_cell()
        row = {"notebook": run.notebook.name, "seconds": round(run.seconds, 1)}
        if longest is not None:
            row["longest cell"] = {"index": longest[0], "seconds": round(longest[1], 1), "starts": longest[2]}
        if run.error:
            row["failed"] = run.error
        rows[run.notebook.name[:2]] = row
    record = {
        "size": size,
        "machine": machine,  # CPU, cores, torch threads, torch version, device
        "how": "each notebook executed top to bottom in a fresh python3 kernel, one at a time, cell by cell",
        "notebooks": dict(sorted(rows.items())),
    }
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _size_of_run() -> str:
    """The size a run without fast mode gets here (the kernels inherit this environment)."""
    saved = os.environ.pop("COURSE_FAST", None)
    try:
        return config.size()
    finally:
        if saved is not None:
            os.environ["COURSE_FAST"] = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.figures", description="Re-execute the notebooks and collect their figures."
    )
    parser.add_argument(
        "--fast", action="store_true", help="run with COURSE_FAST=1 (the CI smoke size, minutes on a CPU)"
    )
    parser.add_argument(
        "--notebooks", nargs="+", default=None, metavar="NN", help="notebook numbers, names or paths (default: all)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="figures folder (default: COURSE_FIGURES_DIR or <home>/figures)"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    notebooks_dir = config.repo_root() / "notebooks"
    try:
        notebooks = find_notebooks(args.notebooks, notebooks_dir)
    except FileNotFoundError as err:
        parser.error(str(err))
    if not notebooks:
        parser.error(f"no notebooks found in {notebooks_dir}")
    out = (args.out or config.figures_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)

    runs = []
    for path in notebooks:
        run = run_notebook(
            path, out, fast=args.fast, timeout=args.timeout, kernel=args.kernel, progress=not args.no_progress
        )
        runs.append(run)
        status = f"FAILED: {run.error}" if run.error else "ok"
        print(f"{path.name}: {len(run.figures)} figure(s), {run.seconds:.0f} s, {status}")
    index = write_index(out, runs, notebooks_dir, fast=args.fast)
    times = write_times(out, runs, fast=args.fast)
    print(f"figures in {out}; index: {index}; times: {times}")
    failed = [run for run in runs if run.error]
    if failed:
        print("\n".join(["failed notebooks:"] + [f"  {run.error}" for run in failed]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
