"""The MNIST classifier is one more course model: trained by the one loop, stored in the one format."""

import functools
import json

import pytest
import torch
from safetensors import safe_open

from course_utils import checkpoints, classifier, config, data, errors, metrics, training
from course_utils.files import sha256_file

from .conftest import mnist_available

SHIPPED = config.checkpoint_dir() / classifier.CLASSIFIER_FILE
needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not found")
needs_shipped = pytest.mark.skipif(
    not SHIPPED.is_file() or not mnist_available(),
    reason=f"needs the shipped classifier checkpoint {SHIPPED} and the MNIST data set",
)
TINY = dict(epochs=1, limit=256, test_limit=256, progress=False)  # two optimiser steps
real_train_classifier = classifier.train_classifier


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


def test_recipe_is_a_course_recipe():
    r = classifier.RECIPE
    assert r.objective == "classify" and r.prediction is None and r.unet is None
    assert (r.optimizer, r.lr_schedule, r.ema_decay, r.extra["max_shift"]) == ("adamw", "cosine", None, 2)
    assert classifier.CLASSIFIER_SHA256 == r.sha256 == metrics.CLASSIFIER_SHA256
    assert metrics.CLASSIFIER_RECIPE == dict(epochs=3, batch_size=128, lr=2e-3, weight_decay=1e-4, max_shift=2, seed=0)
    assert (
        metrics.load_classifier is classifier.load_classifier and metrics.MnistClassifier is classifier.MnistClassifier
    )
    assert metrics.CheckpointError is errors.CheckpointError


def test_classification_loss_draws_its_shifts_from_the_generator():
    torch.manual_seed(0)
    model = classifier.MnistClassifier().eval()
    batch = (torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8))
    a = classifier.classification_loss(model, batch, generator=torch.Generator().manual_seed(1))
    b = classifier.classification_loss(model, batch, generator=torch.Generator().manual_seed(1))
    assert a.ndim == 0 and torch.equal(a, b)
    shifted = classifier.random_shift(batch[0], 2, torch.Generator().manual_seed(0))
    assert shifted.shape == batch[0].shape
    assert torch.equal(classifier.random_shift(batch[0], 0), batch[0])


@needs_mnist
def test_classifier_trains_through_the_course_loop(checkpoint_dir, monkeypatch):
    calls = []
    real_train = training.train

    def spy(model, loss_fn, data, **kwargs):
        calls.append((loss_fn, kwargs))
        return real_train(model, loss_fn, data, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    torch.manual_seed(0)
    untrained = classifier.MnistClassifier()
    model, report = classifier.train_classifier(**TINY)
    ((loss_fn, kwargs),) = calls
    assert loss_fn.func is classifier.classification_loss and loss_fn.keywords == {"max_shift": 2}
    assert (kwargs["optimizer"], kwargs["lr_schedule"], kwargs["ema_decay"]) == ("adamw", "cosine", None)
    assert kwargs["recipe"]["objective"] == "classify"
    assert not model.training
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), untrained.state_dict().values()))
    assert report["train_images"] == 256 and report["steps"] == 2 and 0.0 <= report["test_accuracy"] <= 1.0

    # a missing checkpoint is trained (here: the tiny run) and cached in the one format
    monkeypatch.setattr(classifier, "train_classifier", functools.partial(real_train_classifier, **TINY))
    loaded = classifier.load_classifier(device="cpu")
    record = checkpoints.read_record(checkpoint_dir / classifier.CLASSIFIER_FILE)
    assert record["recipe"]["objective"] == "classify" and record["recipe"]["sha256"] is None
    assert record["report"]["train_images"] == 256 and isinstance(loaded, classifier.MnistClassifier)


def test_save_and_load_round_trip_in_the_one_format(checkpoint_dir):
    torch.manual_seed(0)
    model = classifier.MnistClassifier().eval()
    for module in model.modules():  # BatchNorm statistics other than the defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = checkpoint_dir / classifier.CLASSIFIER_FILE
    digest = classifier.save_classifier(model, path, {"note": "untrained", "epochs": 0})
    assert digest == sha256_file(path)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == digest and record["report"]["note"] == "untrained"
    assert record["recipe"]["name"] == "mnist-classifier" and record["recipe"]["epochs"] == 0
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert keys and all(k.startswith("model.") for k in keys)
        assert f.get_tensor("model.head.weight").dtype == torch.float16

    loaded = classifier.load_classifier(train_if_missing=False, device="cpu")
    expected = classifier.MnistClassifier().eval()
    expected.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), expected(x), atol=0, rtol=0)
    assert classifier.load_classifier(train_if_missing=False, device="cpu") is loaded  # cached in memory


def test_tampered_local_checkpoint_raises_naming_the_file(checkpoint_dir):
    path = checkpoint_dir / classifier.CLASSIFIER_FILE
    classifier.save_classifier(classifier.MnistClassifier(), path)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(errors.CheckpointError, match="SHA-256") as caught:
        classifier.load_classifier(train_if_missing=False)
    assert str(path) in str(caught.value)
    with pytest.raises(metrics.CheckpointError):  # the same class under its old name
        metrics.load_classifier(train_if_missing=False)


def test_missing_checkpoint_without_training_raises(checkpoint_dir):
    with pytest.raises(FileNotFoundError, match="mnist-classifier"):
        classifier.load_classifier(train_if_missing=False)


@needs_shipped
def test_shipped_classifier_is_in_the_one_format_and_reads_digits():
    assert sha256_file(SHIPPED) == classifier.RECIPE.sha256
    record = checkpoints.read_record(SHIPPED)
    assert record["sha256"] == classifier.RECIPE.sha256 and record["recipe"]["objective"] == "classify"
    model = classifier.load_classifier(train_if_missing=False, device="cpu")
    x, y = data.load_mnist("test", scale="signed", limit=1000)
    assert classifier.evaluate(model, x, y) > 0.98
