"""The shipped MNIST generators draw digits: the course classifier judges a fixed set of samples.

Guards against a checkpoint swapped for a weaker one, and against sampler or schedule changes that
quietly break the shipped models. The thresholds sit well below what the shipped files score (the
README lists the measured numbers on 1,000 samples).
"""

import pytest
import torch

from course_utils import metrics, pretrained
from tests.conftest import mnist_available

# name: (samples, guidance, lowest "confident" share, highest FD at this sample size)
EXPECTED = {
    "mnist-ddpm": (200, 1.0, 0.50, 6.0),  # shipped: 63.5%, FD 3.1; the earlier 2-epoch weights: 33.5%, FD 11.5
    "mnist-fm": (200, 1.0, 0.55, 5.0),  # shipped: 68.0%, FD 3.0; the earlier 2-epoch weights: 52.5%, FD 6.8
    "mnist-cfg": (200, 3.0, 0.90, 5.0),  # shipped: 99.5%, FD 1.6, accuracy 100%
}


def _shipped(name: str) -> bool:
    return mnist_available() and pretrained.checkpoint_path(name).is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_model_draws_recognisable_digits(name):
    if not _shipped(name):
        pytest.skip(f"{name} is not shipped here")
    n, guidance, min_confident, max_fd = EXPECTED[name]
    r = pretrained.recipe(name)
    model = pretrained.load(name, device=torch.device("cpu"))  # checked against the registry's SHA-256
    x = pretrained.generate(model, r, n, guidance_scale=guidance, generator=torch.Generator().manual_seed(0))
    report = metrics.digit_quality(x, pretrained.balanced_labels(n) if r.unet.cond == "class" else None)
    assert report["confident"] >= min_confident and report["fd"] <= max_fd, metrics.format_quality(report)
    assert min(report["counts"]) > 0, f"some digit never drawn: {metrics.format_quality(report)}"
    if "accuracy" in report:
        assert report["accuracy"] >= 0.95, metrics.format_quality(report)


@pytest.mark.parametrize("name", ["mnist-ddpm", "mnist-fm"])
def test_shipped_record_matches_the_registry(name):
    if not pretrained.checkpoint_path(name).is_file():
        pytest.skip(f"{name} is not shipped here")
    r, record = pretrained.recipe(name), pretrained.record(name)
    assert record["sha256"] == r.sha256 and record["epochs"] == r.epochs and not record["fast"]
    assert record["steps"] == r.epochs * -(-60000 // r.batch_size)
    assert "warm-up" not in record.get("notes", ""), "trained in one clean run, EMA warm-up included"
