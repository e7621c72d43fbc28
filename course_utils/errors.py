"""The course's error families: what went wrong, named once, so callers can catch a whole family.

Each error says which argument or file is at fault and how to fix it. The families:

- :class:`BadRequest`: an argument a caller passed is invalid (a count below 1, a NaN scale, an
  unknown group name, a model handed to the wrong sampler). Raised before any compute.
  Subclasses ``ValueError``, so ``except ValueError`` keeps working.
- :class:`BadFile`: a file on disk is missing, truncated, corrupt or not what it claims to be.
  :class:`CheckpointError` is the one for checkpoints and their records. Subclasses ``RuntimeError``.
- :class:`RunBusy`: a run folder or cache is in use by another process (its lock is held).

All three derive from :class:`CourseError`; the command line prints any of them as one line and
exits non-zero.
"""

from __future__ import annotations


class CourseError(Exception):
    """Base of every error the course raises on purpose."""


class BadRequest(CourseError, ValueError):
    """An invalid argument: raised before any compute, naming the argument and the fix."""


class BadFile(CourseError, RuntimeError):
    """A file is missing, truncated, corrupt or of the wrong kind; the message names it."""


class CheckpointError(BadFile):
    """A checkpoint is missing, incomplete or does not match its recorded hash."""


class RunBusy(CourseError, RuntimeError):
    """A run folder or cache is locked by another process; the message names the holder."""
