"""The checkers' engine: run a student's function on cases, compare, say what differs.

Three rules every checker gets from :func:`run_cases`:

- **The course's own version is switched off while the check runs.** ``hide=("samplers.ddpm_step",
  ...)`` names the course functions (relative to ``course_utils``) that implement the exercise;
  during the check each is replaced by a stand-in that raises :class:`CourseVersionHidden`, in its
  module and wherever the student's globals hold it under any name. A function that merely calls
  the course's version therefore fails, and so does passing the course's version itself
  (:func:`course_version`, the "stuck? go on with ours" line of each exercise).
- **Verdicts are printed, not raised**, so a notebook run top to bottom goes on after an exercise
  that is not done yet. Under nbgrader (``NBGRADER_EXECUTION`` set, as its validate and autograde
  steps do) or with ``COURSE_CHECKS_RAISE=1``, a check that does not pass raises
  :class:`ExerciseFailed` (an ``AssertionError``), which is how nbgrader scores a grade cell.
- **Inputs are cloned** before the student's function sees them, so an in-place edit cannot hide
  a mistake.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import schedules

SHAPES = ((1, 1, 4, 4), (3, 1, 8, 8), (2, 3, 5, 7))  # (B, C, H, W): one image, a batch, odd sizes and RGB
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Case:
    """One input for the student's function: how it was made, the arguments, the expected answer."""

    about: str
    args: tuple
    expected: Any  # a tensor, a float, or a tuple of them


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a checker: true when every case passed; ``message`` is what was printed."""

    exercise: str
    passed: bool
    message: str
    cases: int
    failed_case: int | None = None  # 1-based index of the first failing case

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"not done"`` (the function still raises NotImplementedError)."""
        if self.passed:
            return "passed"
        return "not done" if self.message.startswith("NOT DONE") else "failed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def _ipython_display_(self) -> None:
        """Show nothing when a notebook cell ends with the check: the verdict is already printed."""


# ---------------------------------------------------------------------------------------------
# The engine: run every case, stop at the first difference, say what it is


def _clone(value):
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _shape(value) -> str:
    return str(tuple(value.shape)) if hasattr(value, "shape") else type(value).__name__


def _as_tensor(value) -> Tensor | None:
    if torch.is_tensor(value):
        return value.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        return None


def _difference(expected, got, *, atol: float, rtol: float, label: str = "") -> str | None:
    """None when ``got`` matches ``expected``; otherwise one line saying how it differs."""
    what = f"{label}: " if label else ""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{what}expected a tuple of {len(expected)} values, got {type(got).__name__}"
        for k, (e, g) in enumerate(zip(expected, got)):
            problem = _difference(e, g, atol=atol, rtol=rtol, label=f"output {k}")
            if problem:
                return problem
        return None
    if got is None:
        return f"{what}returned None: is a `return` missing?"
    want, have = _as_tensor(expected), _as_tensor(got)
    if have is None:
        return f"{what}returned a {type(got).__name__}, expected a tensor or a number"
    if have.shape != want.shape:
        if have.numel() == 1 and want.numel() == 1:
            have = have.reshape(want.shape)
        else:
            return f"{what}expected shape {tuple(want.shape)}, got {tuple(have.shape)}"
    bad_nan = torch.isnan(have) & ~torch.isnan(want)
    if bad_nan.any():
        return f"{what}{int(bad_nan.sum())} value(s) are NaN (a square root of a negative number, or 0 / 0?)"
    error = (have - want).abs().nan_to_num(0.0)
    too_far = error > atol + rtol * want.abs()
    if not too_far.any():
        return None
    flat = int(torch.argmax(error))
    where = tuple(int(i) for i in np.unravel_index(flat, tuple(want.shape))) if want.dim() else ()
    at = f" at index {list(where)}" if where else ""
    return (
        f"{what}max abs error {error.max().item():.4g}{at} (tolerance {atol:g}): "
        f"expected {want.flatten()[flat].item():.6g}, got {have.flatten()[flat].item():.6g}"
    )


class Alternatives(dict):
    """Several right answers for one case, by name: ``Alternatives({"sigma^2 = beta_t": a, "posterior": b})``.

    The case passes when the answer matches any of them; the verdict says which one was used.
    """


class CourseVersionHidden(RuntimeError):
    """Raised by a course function that is switched off while a check of its exercise runs."""


class ExerciseFailed(AssertionError):
    """A check that did not pass, raised under nbgrader (or ``COURSE_CHECKS_RAISE=1``)."""


_COURSE_VERSIONS: dict[str, Callable] = {}


def register_course_version(name: str):
    """Decorator: ``fn`` is the course's version of the exercise function ``name`` (same signature)."""

    def register(fn: Callable) -> Callable:
        _COURSE_VERSIONS[name] = fn
        return fn

    return register


def course_version(name: str) -> Callable:
    """The course's version of exercise function ``name``: the one line a stuck student uses to go on.

    Its check then reports the exercise as not done; the rest of the notebook runs on the course's
    version.
    """
    try:
        return _COURSE_VERSIONS[name]
    except KeyError:
        known = ", ".join(sorted(_COURSE_VERSIONS))
        raise KeyError(f"no exercise function called {name!r}; the course has: {known}") from None


def _stand_in(target: str) -> Callable:
    def hidden(*args, **kwargs):
        raise CourseVersionHidden(
            f"course_utils.{target} is the course's own version of this exercise and is switched off "
            "while the check runs: write these steps yourself"
        )

    hidden.__course_hidden__ = target
    return hidden


def _student_globals(fn) -> dict | None:
    """The namespace the student's function or class looks its names up in."""
    if hasattr(fn, "__globals__"):
        return fn.__globals__
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    return vars(module) if module is not None else None


def _resolve(target: str) -> tuple[Any, str]:
    """``"samplers.ddpm_step"`` -> (the module, "ddpm_step"); ``"schedules.Schedule.add_noise"`` -> (the class, ...)."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module("course_utils." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ValueError(f"{target!r} names no course_utils module")


@contextlib.contextmanager
def course_hidden(targets: Sequence[str], fn=None) -> Iterator[None]:
    """Switch off the course functions ``targets`` (``"samplers.ddpm_step"``) for the ``with`` block.

    Each is replaced where it is defined (a module or a class) and, when ``fn`` is given, in the
    namespace of ``fn`` wherever a name refers to it; everything is restored on exit, also after
    an error.
    """
    restore: list[Callable[[], None]] = []
    try:
        originals = {}
        for target in targets:
            owner, attr = _resolve(target)
            originals[id(getattr(owner, attr))] = target
            if attr in vars(owner):
                original = vars(owner)[attr]
                restore.append(lambda owner=owner, attr=attr, original=original: setattr(owner, attr, original))
            else:  # inherited (a subclass's method): remove the stand-in, and the base class's shows again
                restore.append(lambda owner=owner, attr=attr: delattr(owner, attr))
            setattr(owner, attr, _stand_in(target))
        namespace = _student_globals(fn) if fn is not None else None
        if namespace is not None:
            for key, value in list(namespace.items()):
                if id(value) in originals:
                    restore.append(lambda key=key, value=value: namespace.__setitem__(key, value))
                    namespace[key] = _stand_in(originals[id(value)])
        yield
    finally:
        for undo in reversed(restore):
            undo()


def _is_course_version(fn) -> bool:
    return any(fn is version for version in _COURSE_VERSIONS.values())


def run_cases(
    exercise: str,
    fn: Callable,
    cases: Sequence[Case],
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    hint: str = "",
    hide: Sequence[str] = (),
    compare: Callable[[Any, Any], str | None] | None = None,
    verbose: bool = True,
) -> CheckResult:
    """Call ``fn(*case.args)`` on every case, compare with ``case.expected``; print and return the verdict.

    ``hide``: the course functions switched off while ``fn`` runs (see :func:`course_hidden`).
    ``compare(expected, got)``: a custom comparison returning None when ``got`` is right, else
    one line saying how it differs (default: values within ``atol`` + ``rtol`` |expected|).
    """
    if not callable(fn):
        message = f"FAIL: {exercise}\n  expected a function, got {type(fn).__name__}"
        return _report(CheckResult(exercise, False, message, len(cases), 1), verbose)
    if _is_course_version(fn):
        message = (
            f"NOT DONE: {exercise}\n  this is the course's version (checks.course_version): "
            "the notebook goes on with it, the exercise stays to do"
        )
        return _report(CheckResult(exercise, False, message, len(cases), 1), verbose)
    chosen: set[str] = set()  # which of the Alternatives the answers matched
    for number, case in enumerate(cases, start=1):
        try:
            with course_hidden(hide, fn):
                got = fn(*(_clone(a) for a in case.args))
        except NotImplementedError as err:
            message = (
                f"NOT DONE: {exercise}\n  the function still raises NotImplementedError({str(err)!r}): write its body"
            )
            return _report(CheckResult(exercise, False, message, len(cases), number), verbose)
        except Exception as err:  # noqa: BLE001 - any error of the student's code is the verdict
            problem = f"raised {type(err).__name__}: {err}"
        else:
            problem, used = _judge(case.expected, got, compare, atol=atol, rtol=rtol)
            if used is not None:
                chosen.add(used)
        if problem:
            lines = [f"FAIL: {exercise}", f"  case {number} of {len(cases)}: {case.about}", f"  {problem}"]
            if hint:
                lines.append(f"  hint: {hint}")
            return _report(CheckResult(exercise, False, "\n".join(lines), len(cases), number), verbose)
    used = f"; you used: {', '.join(sorted(chosen))}" if chosen else ""
    return _report(CheckResult(exercise, True, f"PASS: {exercise} ({len(cases)} cases{used})", len(cases)), verbose)


def _judge(expected, got, compare, *, atol: float, rtol: float) -> tuple[str | None, str | None]:
    """(None or how ``got`` differs, the name of the alternative it matched)."""
    if isinstance(expected, Alternatives):
        problems = []
        for name, answer in expected.items():
            problem, _ = _judge(answer, got, compare, atol=atol, rtol=rtol)
            if problem is None:
                return None, name
            problems.append(f"against {name}: {problem}")
        return "; ".join(problems), None
    if compare is not None:
        return compare(expected, got), None
    return _difference(expected, got, atol=atol, rtol=rtol), None


def _raising() -> bool:
    return bool(os.environ.get("NBGRADER_EXECUTION")) or os.environ.get("COURSE_CHECKS_RAISE", "") not in ("", "0")


def _report(result: CheckResult, verbose: bool) -> CheckResult:
    if verbose:
        print(result.message)
    if not result.passed and _raising():
        raise ExerciseFailed(result.message)
    return result


def _randn(shape, generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vp_schedules() -> tuple[schedules.DiscreteSchedule, ...]:
    return schedules.linear_schedule(1000), schedules.cosine_schedule(1000)


def _constant_model(out: Tensor) -> Callable:
    """A stand-in epsilon model that always answers ``out``, so only the step's algebra is tested."""
    return lambda x, t, cond=None: out


def _times(t: Tensor) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in t.flatten().tolist()) + "]"
