import torch

from course_utils import config


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
