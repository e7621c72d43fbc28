import functools
import math
import shutil

import numpy as np
import pytest
import torch

from course_utils import config, data, errors, metrics

from .conftest import mnist_available

SHIPPED = config.checkpoint_dir() / metrics.CLASSIFIER_FILE
needs_classifier = pytest.mark.skipif(
    not SHIPPED.is_file() or not mnist_available(),
    reason=f"needs the shipped classifier checkpoint {SHIPPED} and the MNIST data set",
)


# ---------------------------------------------------------------------------------------------
# PSNR and SSIM


def test_psnr_identical_images_is_infinite():
    x = torch.rand(2, 1, 8, 8)
    assert metrics.psnr(x, x) == math.inf


def test_psnr_of_known_noise_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 16, 16, generator=g, dtype=torch.float64) * 0.5 + 0.25
    signs = torch.randint(0, 2, clean.shape, generator=g) * 2 - 1
    noisy = clean + 0.05 * signs  # every pixel off by 0.05: MSE = 0.0025 exactly
    assert metrics.psnr(noisy, clean) == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-6)
    assert metrics.psnr(noisy * 2, clean * 2, data_range=2.0) == pytest.approx(26.0206, abs=1e-4)


def test_psnr_per_image_and_layouts_agree():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 3, 8, 8, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    per_image = metrics.psnr(a, b, reduce=False)
    assert per_image.shape == (3,)
    assert metrics.psnr(a, b) == pytest.approx(per_image.mean())
    # the same images as (B, H, W, C) arrays
    assert metrics.psnr(a.permute(0, 2, 3, 1).numpy(), b.permute(0, 2, 3, 1).numpy()) == pytest.approx(per_image.mean())
    with pytest.raises(ValueError):
        metrics.psnr(a, b[:2])


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, 28, 28, generator=g)
    assert metrics.ssim(x, x) == pytest.approx(1.0)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert metrics.ssim(noisy, x) < 0.9
    rgb = np.random.default_rng(0).random((16, 16, 3))
    assert metrics.ssim(rgb, rgb) == pytest.approx(1.0)


def test_denoising_table_rows():
    x = torch.rand(2, 1, 12, 12)
    rows = metrics.denoising_table(x, {("identity", 0.0): x, ("noisy", 0.1): (x + 0.1).clamp(0, 1)})
    assert [r["method"] for r in rows] == ["identity", "noisy"]
    assert rows[0]["psnr"] == math.inf and rows[0]["ssim"] == pytest.approx(1.0)
    assert "noisy" in metrics.format_table(rows)


# ---------------------------------------------------------------------------------------------
# Frechet distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_for_commuting_covariances():
    # Same eigenvectors: FD = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = np.array([1.0, 2.0, 0.5, 4.0, 0.1]), np.array([0.25, 2.0, 2.0, 1.0, 0.9])
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = metrics.frechet_distance_gaussians(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_general_covariances_match_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = m1 @ m1.T, m2 @ m2.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert metrics.frechet_distance_gaussians(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_from_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(40_000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(40_000, 3, generator=g, dtype=torch.float64) * 2.0 + torch.tensor(
        [1.0, 0.0, 0.0], dtype=torch.float64
    )
    # N(0, I) vs N((1, 0, 0), 4 I): 1 + 3 * (1 - 2)^2 = 4
    assert metrics.frechet_distance(a, b) == pytest.approx(4.0, rel=0.03)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    g = torch.Generator().manual_seed(4)
    value = metrics.frechet_distance(torch.randn(10, 64, generator=g), torch.randn(10, 64, generator=g))
    assert math.isfinite(value) and value >= 0


# ---------------------------------------------------------------------------------------------
# The classifier


@pytest.fixture(scope="module")
def test_digits():
    return data.load_mnist("test", scale="signed")


@needs_classifier
def test_classifier_recognises_real_test_digits(test_digits):
    x, y = test_digits
    assert metrics.conditional_accuracy(x[:2000], y[:2000]) > 0.99  # 2,000 digits keep it fast (all 10,000: 99.36%)
    p = metrics.probabilities(x[:50])
    assert p.shape == (50, 10)
    torch.testing.assert_close(p.sum(1), torch.ones(50))
    torch.testing.assert_close(metrics.classify(data.to_unit(x[:50]), scale="unit"), metrics.classify(x[:50]))
    assert metrics.features(x[:4]).shape == (4, metrics.MnistClassifier.n_features)


@needs_classifier
def test_mnist_fd_small_between_real_digits_large_for_noise(test_digits):
    x, _ = test_digits
    reference = x[:1000]
    real = metrics.mnist_fd(x[1000:2000], reference)
    noise = metrics.mnist_fd(torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1, reference)
    assert real < 0.05 * noise, (real, noise)
    # the default reference is the test set's statistics, cached in memory
    mu, sigma = metrics.reference_statistics(limit=1000)
    assert metrics.frechet_distance_gaussians(mu, sigma, *metrics.gaussian_fit(metrics.features(reference))) < 1e-6
    assert metrics.reference_statistics(limit=1000)[0] is mu


@needs_classifier
def test_confident_fraction_separates_digits_from_scribbles(test_digits):
    x, y = test_digits
    real = metrics.confident_fraction(x[:500])
    blobs = metrics.confident_fraction((x[:500] + x[500:1000] + x[1000:1500]).clamp(-1, 1))  # three digits on top
    assert real > 0.95 and blobs < real - 0.2, (real, blobs)
    with pytest.raises(ValueError, match="threshold"):
        metrics.confident_fraction(x[:4], threshold=1.0)
    with pytest.raises(ValueError, match="no images"):
        metrics.confident_fraction(x[:0])


@needs_classifier
def test_digit_quality_report(test_digits, monkeypatch):
    x, y = test_digits
    # the FD's reference: 2,000 test digits instead of all 10,000, to keep the test fast
    monkeypatch.setattr(metrics, "reference_statistics", functools.partial(metrics.reference_statistics, limit=2000))
    report = metrics.digit_quality(x[:200], y[:200])
    assert report["n"] == 200 and sum(report["counts"]) == 200 and len(report["counts"]) == 10
    wrong = round((1 - report["accuracy"]) * 200)  # each misread digit moves one count
    true_counts = torch.bincount(y[:200], minlength=10)
    assert (torch.tensor(report["counts"]) - true_counts).abs().sum() <= 2 * wrong
    assert report["accuracy"] > 0.97 and report["confident"] > 0.95 and report["fd"] < 5
    unlabelled = metrics.digit_quality(data.to_unit(x[:200]), scale="unit")
    assert "accuracy" not in unlabelled and unlabelled["fd"] == pytest.approx(report["fd"], rel=1e-4)
    # the classifier reads pure noise confidently; the Frechet distance is what flags it
    noise = metrics.digit_quality(torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert noise["fd"] > 20 * report["fd"], (noise, report)
    line = metrics.format_quality(report)
    assert line.startswith("n=200  FD=") and "accuracy=" in line and "confident=" in line


@pytest.mark.skipif(not mnist_available(), reason="MNIST not found")
def test_classifier_trains_inside_a_no_grad_scoring_call():
    # scoring runs under no_grad; without a shipped checkpoint it trains the classifier first
    with torch.no_grad():
        model, report = metrics.train_classifier(epochs=1, limit=256, test_limit=256, progress=False)  # 2 steps
    config.seed_everything(0)
    untrained = metrics.MnistClassifier()
    moved = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), untrained.state_dict().values())]
    assert any(moved) and report["train_images"] == 256 and 0.0 <= report["test_accuracy"] <= 1.0


@needs_classifier
def test_tampered_checkpoint_is_refused(tmp_path, monkeypatch):
    assert metrics.CheckpointError is errors.CheckpointError  # one class, also under its old name
    copy = tmp_path / metrics.CLASSIFIER_FILE
    shutil.copy(SHIPPED, copy)
    shutil.copy(SHIPPED.with_suffix(".json"), copy.with_suffix(".json"))
    raw = bytearray(copy.read_bytes())
    raw[-100] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(raw))
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(errors.CheckpointError, match="SHA-256") as caught:
        metrics.load_classifier(train_if_missing=False)
    assert metrics.CLASSIFIER_FILE in str(caught.value)


def test_missing_checkpoint_without_training_raises(tmp_course_dirs):
    with pytest.raises(FileNotFoundError):
        metrics.load_classifier(train_if_missing=False)


def test_saved_classifier_loads_back_in_float16(tmp_course_dirs):
    torch.manual_seed(0)
    model = metrics.MnistClassifier().eval()
    metrics.save_classifier(model, config.checkpoint_dir() / metrics.CLASSIFIER_FILE, {"note": "untrained"})
    loaded = metrics.load_classifier(train_if_missing=False, device="cpu")
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded.features(x), model.features(x), atol=5e-3, rtol=5e-3)
    assert metrics.random_shift(x, 2, torch.Generator().manual_seed(0)).shape == x.shape


def test_the_fd_interval_brackets_the_distance_and_separates_clear_differences():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4000, 4))
    mu, sigma = metrics.gaussian_fit(ref)
    near, far = rng.normal(size=(500, 4)), rng.normal(loc=0.5, size=(500, 4))
    fd_near, lo_near, hi_near = metrics.frechet_distance_interval(near, mu, sigma, resamples=100)
    fd_far, lo_far, hi_far = metrics.frechet_distance_interval(far, mu, sigma, resamples=100)
    assert lo_near <= fd_near <= hi_near and lo_far <= fd_far <= hi_far
    assert fd_near == pytest.approx(metrics.frechet_distance(near, ref))
    assert hi_near < lo_far  # a mean shift of 0.5 in 4 dimensions (FD about 1) is clear of 500 images' noise
    few = rng.normal(size=(20, 4))  # few images: resampling raises the distance, the interval stays centred on it
    fd_few, lo_few, hi_few = metrics.frechet_distance_interval(few, mu, sigma, resamples=100)
    assert lo_few < fd_few < hi_few
    with pytest.raises(errors.BadRequest):
        metrics.frechet_distance_interval(near, mu, sigma, level=1.5)


def test_the_paired_difference_sees_a_small_shift_that_separate_intervals_miss():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(4000, 4))
    mu, sigma = metrics.gaussian_fit(ref)
    start = rng.normal(size=(300, 4))  # the shared starting noise of two "samplers"
    a = start + 0.1  # the same images, shifted a little
    b = start + 0.02 * rng.normal(size=start.shape)
    diff, low, high = metrics.frechet_difference_interval(a, b, mu, sigma, resamples=100)
    fd_a, lo_a, _ = metrics.frechet_distance_interval(a, mu, sigma, resamples=100)
    fd_b, _, hi_b = metrics.frechet_distance_interval(b, mu, sigma, resamples=100)
    assert diff == pytest.approx(fd_a - fd_b)
    assert low <= diff <= high
    assert lo_a < hi_b  # separately the two intervals overlap ...
    assert low > 0  # ... paired, a is clearly farther from the reference
    swapped, s_low, s_high = metrics.frechet_difference_interval(b, a, mu, sigma, resamples=100)
    assert swapped == pytest.approx(-diff) and s_high < 0
    with pytest.raises(errors.BadRequest, match="same images"):
        metrics.frechet_difference_interval(a, b[:10], mu, sigma)
