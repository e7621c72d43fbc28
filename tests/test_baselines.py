import numpy as np
import pytest
import torch

from course_utils import baselines


def test_blur_preserves_constant_and_mean():
    x = torch.full((2, 1, 16, 16), 0.3)
    torch.testing.assert_close(baselines.gaussian_blur(x, 2.0), x)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 32, 32, generator=g)
    blurred = baselines.gaussian_blur(noise, 2.0)
    assert blurred.std() < 0.3 * noise.std()  # averaging ~ 4 pi sigma^2 pixels shrinks white noise
    assert abs(blurred.mean() - noise.mean()) < 0.05


def test_blur_matches_separable_kernel_in_the_interior():
    x = torch.zeros(1, 9, 9)
    x[0, 4, 4] = 1.0
    out = baselines.gaussian_blur(x, 1.0, ksize=7)[0]
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()
    np.testing.assert_allclose(out[1:8, 1:8].numpy(), np.outer(k, k), atol=1e-6)


def test_blur_input_checks_and_identity():
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(baselines.gaussian_blur(x, 0), x)
    with pytest.raises(ValueError):
        baselines.gaussian_blur(x, -1)
    with pytest.raises(ValueError):
        baselines.gaussian_blur(x, 1.0, ksize=4)


def test_blur_is_the_course_one_and_psnr_the_metrics_one():
    from course_utils import editing, filters, metrics

    assert baselines.gaussian_blur is filters.gaussian_blur  # one blur: the baseline and hybrid images share it
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(editing.gaussian_lowpass(x, 1.5), filters.gaussian_blur(x, 1.5))
    y = x + 0.1
    assert baselines.mse_psnr(x, y) == metrics.psnr(x, y, data_range=2.0)  # one PSNR, range 2 for [-1, 1]


def test_psnr_and_best_blur_beats_noisy_input():
    assert baselines.mse_psnr(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)) == float("inf")
    assert baselines.mse_psnr(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.2)) == pytest.approx(
        10 * np.log10(4 / 0.04)
    )
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    clean = (xx**2 + yy**2 < 0.5).float()[None, None] * 2 - 1
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=g)
    denoised, sigma = baselines.best_blur(noisy, clean)
    assert baselines.mse_psnr(denoised, clean) > baselines.mse_psnr(noisy, clean) + 3
    assert sigma > 0
