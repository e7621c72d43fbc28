import types
from pathlib import Path

import pytest
import torch

from course_utils import config, errors


def test_fast_mode_follows_environment(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert config.is_fast() and config.pick(full=5, fast=1) == 1
    monkeypatch.setenv("COURSE_FAST", "0")
    assert not config.is_fast() and config.pick(full=5, fast=1) == 5
    monkeypatch.delenv("COURSE_FAST")
    assert not config.is_fast()


def test_device_override_and_default(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
    monkeypatch.delenv("COURSE_DEVICE")
    assert config.device().type in {"cpu", "cuda", "mps"}


def test_seed_everything_reproduces_draws():
    g1 = config.seed_everything(123)
    a = torch.randn(4, generator=g1), torch.randn(4)
    g2 = config.seed_everything(123)
    b = torch.randn(4, generator=g2), torch.randn(4)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_paths_come_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("COURSE_FIGURES_DIR", str(tmp_path / "f"))
    assert config.data_dir() == tmp_path / "d"
    assert config.checkpoint_dir() == tmp_path / "c"
    assert config.figures_dir() == tmp_path / "f"


def test_repo_root_found_from_a_subfolder(monkeypatch):
    root = config.repo_root()
    assert (root / "pyproject.toml").is_file() and (root / "course_utils").is_dir()
    monkeypatch.chdir(root / "tests")
    assert config.repo_root() == root


def test_summary_lists_what_a_student_checks():
    info = config.summary()
    assert {"torch", "device", "fast mode", "data dir"} <= set(info)


# ---------------------------------------------------------------------------------------------
# Where files go: the specific variables, then COURSE_HOME, then the clone or the per-user folder

COURSE_VARIABLES = ("HOME", "DATA_DIR", "CHECKPOINT_DIR", "CACHE_DIR", "FIGURES_DIR")


@pytest.fixture
def no_course_paths(monkeypatch, tmp_path):
    """No path variable set, a per-user folder under tmp_path, and no package data."""
    for name in COURSE_VARIABLES:
        monkeypatch.delenv(f"COURSE_{name}", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(config, "_package_checkpoints", lambda: None)
    return tmp_path


def _outside_a_clone(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "_clone_root", lambda: None)
    monkeypatch.chdir(tmp_path)


def test_a_clone_is_its_own_home(no_course_paths):
    root = config.repo_root()
    assert (root / "pyproject.toml").is_file() and config.home() == root
    assert config.runs_dir() == root / "runs" and config.checkpoint_dir() == root / "data" / "checkpoints"
    assert config.cache_dir() == root / "data" / "cache" and config.figures_dir() == root / "figures"
    assert config.data_dir() == root / "data"


def test_outside_a_clone_the_home_is_the_per_user_folder(no_course_paths, monkeypatch):
    tmp_path = no_course_paths
    _outside_a_clone(monkeypatch, tmp_path)
    user = tmp_path / "xdg" / "course-utils"
    assert config.user_data_dir() == user and config.home() == user and config.repo_root() == user
    assert config.runs_dir() == user / "runs" and config.checkpoint_dir() == user / "data" / "checkpoints"
    assert config.figures_dir() == user / "figures" and config.cache_dir() == user / "data" / "cache"
    site = Path(config.__file__).resolve().parent.parent
    assert not str(config.home()).startswith(str(site))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert config.user_data_dir() == tmp_path / "me" / ".local" / "share" / "course-utils"


def test_on_windows_the_per_user_folder_is_under_localappdata(monkeypatch, tmp_path):
    fake_os = types.SimpleNamespace(name="nt", environ={"LOCALAPPDATA": str(tmp_path / "Local")})
    monkeypatch.setattr(config, "os", fake_os)
    assert config.user_data_dir() == tmp_path / "Local" / "course-utils"


def test_a_clone_that_cannot_be_written_sends_writes_to_the_per_user_folder(no_course_paths, monkeypatch):
    root = config.repo_root()
    monkeypatch.setattr(config, "can_write", lambda folder: Path(folder) != root)
    assert config.repo_root() == root and config.home() == no_course_paths / "xdg" / "course-utils"


def test_course_home_wins_over_the_defaults_and_the_specific_variables_over_it(no_course_paths, monkeypatch):
    tmp_path = no_course_paths
    home = tmp_path / "home"
    monkeypatch.setenv("COURSE_HOME", str(home))
    assert config.home() == home and config.runs_dir() == home / "runs"
    assert config.checkpoint_dir() == home / "data" / "checkpoints" and config.cache_dir() == home / "data" / "cache"
    assert config.figures_dir() == home / "figures" and config.data_dir() == home / "data"
    assert config.repo_root() != home  # the clone is still where the notebooks are
    _outside_a_clone(monkeypatch, tmp_path)
    assert config.repo_root() == home
    for name in COURSE_VARIABLES[1:]:
        monkeypatch.setenv(f"COURSE_{name}", str(tmp_path / name))
    assert config.checkpoint_dir() == tmp_path / "CHECKPOINT_DIR" and config.cache_dir() == tmp_path / "CACHE_DIR"
    assert config.figures_dir() == tmp_path / "FIGURES_DIR" and config.data_dir() == tmp_path / "DATA_DIR"
    assert config.runs_dir() == home / "runs"


def _checkpoint(folder: Path, name: str = "m.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"weights")
    return folder / name


def test_checkpoints_are_found_in_the_checkpoint_folder_then_the_shipped_ones(no_course_paths, monkeypatch):
    tmp_path = no_course_paths
    _outside_a_clone(monkeypatch, tmp_path)
    monkeypatch.setenv("COURSE_HOME", str(tmp_path / "home"))
    package = tmp_path / "site" / "course_utils" / "shipped"
    monkeypatch.setattr(config, "_package_checkpoints", lambda: package)
    writable = tmp_path / "home" / "data" / "checkpoints"
    assert config.find_checkpoint("m.safetensors") == writable / "m.safetensors"  # nowhere: where it is written
    shipped = _checkpoint(package)
    assert config.find_checkpoint("m.safetensors") == shipped
    assert config.find_checkpoint(writable / "m.safetensors") == shipped  # checkpoint_dir() / NAME, as notebooks do
    elsewhere = tmp_path / "elsewhere" / "m.safetensors"
    assert config.find_checkpoint(elsewhere) == elsewhere  # any other path is the caller's
    trained = _checkpoint(writable)
    assert config.find_checkpoint("m.safetensors") == trained
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "ck"))
    assert config.checkpoint_dirs() == [tmp_path / "ck", package]
    assert config.find_checkpoint("m.safetensors") == shipped  # the home's folder is replaced, the package's kept
    override = _checkpoint(tmp_path / "ck")
    assert config.find_checkpoint("m.safetensors") == override


def test_a_clones_shipped_checkpoints_are_found_from_another_home(no_course_paths, monkeypatch):
    tmp_path = no_course_paths
    clone = tmp_path / "clone"
    monkeypatch.setattr(config, "_clone_root", lambda: clone)
    shipped = _checkpoint(clone / "data" / "checkpoints")
    monkeypatch.setenv("COURSE_HOME", str(tmp_path / "home"))
    assert config.find_checkpoint("m.safetensors") == shipped
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "ck"))  # stands in for the clone's folder
    assert config.find_checkpoint("m.safetensors") == tmp_path / "ck" / "m.safetensors"


def test_a_folder_that_cannot_be_written_names_the_variable_to_set(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(errors.BadRequest, match="set COURSE_CHECKPOINT_DIR to a writable folder"):
        config.ensure_writable(blocker / "checkpoints", "COURSE_CHECKPOINT_DIR")
    assert config.ensure_writable(tmp_path / "new" / "runs") == tmp_path / "new" / "runs"
    assert (tmp_path / "new" / "runs").is_dir()


def test_training_into_a_home_that_cannot_be_written_fails_before_any_compute(no_course_paths, monkeypatch):
    from course_utils import data, pretrained

    blocker = no_course_paths / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COURSE_HOME", str(blocker / "home"))
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: pytest.fail("read data before checking the folders"))
    with pytest.raises(errors.BadRequest, match="COURSE_HOME"):
        pretrained.train_recipe("mnist-fm", fast=True, progress=False)


def test_size_follows_fast_mode_then_override_then_device(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_SIZE", "full")
    assert config.size() == "fast" and config.pick(full=10, fast=1, cpu=3) == 1  # fast wins
    monkeypatch.delenv("COURSE_FAST")
    assert config.size() == "full" and config.pick(full=10, fast=1, cpu=3) == 10
    monkeypatch.setenv("COURSE_SIZE", "cpu")
    assert config.size() == "cpu" and config.pick(full=10, fast=1, cpu=3) == 3
    assert config.pick(full=10, fast=1) == 10  # no CPU setting: the full one fits a CPU
    monkeypatch.delenv("COURSE_SIZE")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.size() == "cpu"
    monkeypatch.setattr(config, "device", lambda prefer=None: torch.device("cuda"))
    assert config.size() == "full"


@pytest.mark.parametrize("value", ["huge", "fast"])
def test_size_rejects_unknown_values_by_name(monkeypatch, value):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.setenv("COURSE_SIZE", value)
    with pytest.raises(errors.BadRequest, match="COURSE_SIZE"):
        config.size()
