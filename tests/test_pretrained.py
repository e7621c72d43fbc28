import dataclasses

import pytest
import torch

from course_utils import files, pretrained, training
from tests.conftest import mnist_available

needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not found")


def test_registry():
    assert {"mnist-ddpm", "mnist-fm", "mnist-cfg"} <= set(pretrained.names())
    r = pretrained.recipe("mnist-cfg")
    assert r.p_uncond == 0.1 and r.unet.cond == "class" and r.objective == "flow"
    ddpm = pretrained.recipe("mnist-ddpm")
    assert ddpm.objective == "ddpm" and pretrained.schedule_of(ddpm).T == 1000
    assert r.gamma**r.epochs == pytest.approx(r.lr_final_factor)
    with pytest.raises(KeyError, match="known"):
        pretrained.recipe("mnist-gan")


def test_balanced_labels():
    counts = torch.bincount(pretrained.balanced_labels(1000))
    assert counts.tolist() == [100] * 10


@pytest.fixture
def tiny_cfg(monkeypatch, tmp_course_dirs):
    r = pretrained.recipe("mnist-cfg")
    small = dataclasses.replace(r, fast=dict(epochs=1, data_limit=64, hidden=4), sample_steps=2, sha256=None)
    monkeypatch.setitem(pretrained.REGISTRY, "mnist-cfg", small)
    monkeypatch.setattr(pretrained.config, "repo_root", lambda: tmp_course_dirs)
    return small


@needs_mnist
def test_load_or_train_caches_and_checks_hashes(tiny_cfg, monkeypatch):
    model = pretrained.load_or_train("mnist-cfg", fast=True, progress=False)
    path = pretrained.checkpoint_path("mnist-cfg", fast=True)
    assert path.is_file() and path.with_suffix(".json").is_file()
    record = pretrained.record("mnist-cfg", fast=True)
    assert record["recipe"]["p_uncond"] == 0.1 and record["train_seconds_total"] >= 0 and record["machine"]
    again = pretrained.load_or_train("mnist-cfg", fast=True, progress=False)  # loaded, not retrained
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    x = pretrained.generate(again, tiny_cfg, 4, steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28)
    # a shipped file is checked against the registry's hash, whatever the JSON beside it says
    shipped = pretrained.checkpoint_path("mnist-cfg")
    shipped.write_bytes(path.read_bytes())
    shipped.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    digest = files.sha256_file(shipped)
    as_shipped = dataclasses.replace(tiny_cfg, unet=tiny_cfg.for_fast_mode().unet, sha256=digest)
    monkeypatch.setitem(pretrained.REGISTRY, "mnist-cfg", as_shipped)
    pretrained.load("mnist-cfg")
    raw = bytearray(shipped.read_bytes())
    raw[-3] ^= 0x01
    shipped.write_bytes(bytes(raw))
    with pytest.raises(training.CheckpointError, match="SHA-256"):
        pretrained.load("mnist-cfg")


@needs_mnist
def test_a_retrained_record_does_not_carry_the_shipped_files_hash(tiny_cfg, monkeypatch):
    shipped = dataclasses.replace(
        tiny_cfg,
        unet=tiny_cfg.unet.replace(hidden=4),
        epochs=1,
        data_limit=64,
        sha256="ab" * 32,
        trained="an earlier run",
    )
    monkeypatch.setitem(pretrained.REGISTRY, "mnist-cfg", shipped)
    pretrained.train_recipe("mnist-cfg", fast=False, progress=False)
    record = pretrained.record("mnist-cfg")
    assert record["recipe"]["sha256"] is None and record["recipe"]["trained"] == ""
    assert record["sha256"] == files.sha256_file(pretrained.checkpoint_path("mnist-cfg"))


def test_missing_checkpoint_says_how_to_train(tmp_course_dirs):
    with pytest.raises(FileNotFoundError, match="python -m course_utils train mnist-fm"):
        pretrained.load("mnist-fm")
