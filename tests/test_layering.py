"""The package's layers: the core (math, models, samplers) imports only the standard library, torch
and the core; nothing below plotting and widgets imports them."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "course_utils"
CORE = (
    "errors",
    "targets",
    "noise",
    "schedules",
    "conditions",
    "predictions",
    "samplers",
    "losses",
    "guidance",
    "filters",
    "editing",
    "layers",
    "unet",
)
NEVER_PLOTS = CORE + ("checkpoints", "recipes", "training", "pretrained", "files", "config", "data")
PLOTTING = {"matplotlib", "ipywidgets", "plotting", "widgets", "figures"}


def _imports(module: str, *, module_level_only: bool = False) -> list[tuple[str, int]]:
    """(top-level name, level) of every import: level 1 for ``from .x import``, 0 for absolute."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = []
    for node in tree.body if module_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                found += [(name, node.level) for name in names]
            else:
                found.append((node.module.split(".")[0], 0))
    return found


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_only_stdlib_torch_and_the_core(module):
    for name, level in _imports(module, module_level_only=True):
        if level:
            assert name in CORE, f"{module}.py imports .{name}, which is not part of the core"
        else:
            assert name in sys.stdlib_module_names or name == "torch" or name == "__future__", (
                f"{module}.py imports {name}: the core depends on the standard library and torch only"
            )
    # inside functions, only a progress bar may be imported (lazily, when a caller asks for one)
    module_level = set(_imports(module, module_level_only=True))
    for name, level in _imports(module):
        if (name, level) not in module_level and not level:
            assert name in sys.stdlib_module_names or name in ("torch", "tqdm"), f"{module}.py imports {name} lazily"


@pytest.mark.parametrize("module", NEVER_PLOTS)
def test_models_samplers_and_training_never_import_plotting(module):
    for name, _ in _imports(module):
        if module == "pretrained" and name == "plotting":
            continue  # pretrained saves sample grids for its CLI runs: it is the caller, above training
        assert name not in PLOTTING, f"{module}.py imports {name}: pass a callback instead"
