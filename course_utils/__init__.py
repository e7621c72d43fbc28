"""course_utils: the tested package behind the diffusion and flow-matching course.

Conventions, stated once and used everywhere:

- Time t runs from 0 (data) to 1 (pure noise). A path is ``xt = alpha(t) * x0 + sigma(t) * eps``
  (:mod:`course_utils.schedules`); DDPM's integer steps i = 0..T appear only at the edges, as
  t = i / T. Samplers walk a ``time_grid`` from 1 down to 0.
- Images are (B, C, H, W) tensors in [-1, 1] inside models and samplers, [0, 1] in plots and metrics
  (:func:`course_utils.data.to_unit`, :func:`course_utils.data.to_signed`).
- A denoiser is ``model(x, t, cond=None) -> tensor shaped like x`` with t (B,) in [0, 1] and
  cond None, class ids (B,) (-1 = none) or feature vectors (B, 32) (a NaN row = none).
- Symbols are the papers': ``x0, xt, eps, eps_hat, x0_hat, alpha_bar, sigma, v, w``.
- Randomness comes from an explicit ``torch.Generator``; devices come from the tensors.

Import the modules you need explicitly: ``from course_utils import schedules, plotting``.
"""

__version__ = "0.1.0"
