"""Exceptions that the command line turns into one-line messages."""

from __future__ import annotations

from pathlib import Path


class SpinetrackError(Exception):
    """Base class for every error spinetrack reports to a user.

    The message is one line and says what is wrong; the command line prints it
    without a traceback.
    """


class InputError(SpinetrackError):
    """A file or value given to spinetrack cannot be used.

    Parameters
    ----------
    path : str or Path or None
        The file the problem is in (``None`` for a value that is not a file).
    problem : str
        What is wrong, in a few words, lower case.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class Cancelled(SpinetrackError):
    """Raised inside a long stage when the user asked to stop."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)
