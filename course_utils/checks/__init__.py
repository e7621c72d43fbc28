"""Exercise checkers: a student's function against the course's own, on random inputs.

Each ``check_*`` function calls the student's function on several seeds, shapes and times,
compares every answer with the course implementation, prints one verdict and returns a
:class:`CheckResult` (true when it passed)::

    >>> checks.check_forward_noising(forward_noise)
    PASS: forward noising (10 cases)

On a wrong answer the verdict says which input failed and how: the largest absolute error and
where it is, the expected and the returned shape, or the exception the function raised, followed
by a hint with the formula. Inputs are cloned before the student's function sees them, so an
in-place edit cannot hide a mistake.

========================  ==============================  ========  =================================
checker                   student function                notebook  compared with
========================  ==============================  ========  =================================
check_forward_noising     (x0, alpha_bar, eps) -> xt      01        ``Schedule.add_noise``
check_denoising_loss      (model, x0, sigma, eps) -> loss 03        ``losses.denoising_loss``
check_ddpm_step           (x_t, eps_hat, abar_t, abar_s,  02, 04    ``samplers.ddpm_step``
                          z) -> x_s
check_flow_matching       (x0, eps, t) -> (xt, u)         04        ``FlowSchedule.add_noise``,
                                                                    ``targets.velocity_from_eps_x0``
check_cfg                 (out_uncond, out_cond, w)       05        ``guidance.cfg``
check_ddim_step           (x_t, eps_hat, abar_t, abar_s,  06        ``samplers.ddim_step``
                          eta, z) -> x_s
check_inpainting_step     (x, x_known, mask, abar, eps)   08        ``editing.repaint_project``
check_feature             (rgb) -> float                  09        ``features.extract_features``
========================  ==============================  ========  =================================

Conventions are the course's: time runs from 0 (data) to 1 (noise); ``alpha_bar`` arguments are
tensors that broadcast against the images (0-dim for one time, (B, 1, 1, 1) for one per image);
``z`` is the standard normal noise a stochastic step adds, passed in so answers are comparable.
"""

from __future__ import annotations

from .editing import *  # noqa: F403 - samplers, editing, features and the photo model (notebooks 06-11)
from .editing import __all__ as _editing
from .engine import (
    SEEDS,
    SHAPES,
    Alternatives,
    Case,
    CheckResult,
    CourseVersionHidden,
    ExerciseFailed,
    course_hidden,
    course_version,
    register_course_version,
    run_cases,
)
from .loops import *  # noqa: F403 - loops, blocks and training steps (notebooks 01-05)
from .loops import __all__ as _loops
from .steps import *  # noqa: F403 - the checkers of the one-formula exercises
from .steps import __all__ as _steps

__all__ = [
    "SEEDS",
    "SHAPES",
    "Alternatives",
    "Case",
    "CheckResult",
    "CourseVersionHidden",
    "ExerciseFailed",
    "course_hidden",
    "course_version",
    "register_course_version",
    "run_cases",
    *_steps,
    *_loops,
    *_editing,
]
