"""Progress reporting and cancellation for long stages.

Every long library function takes ``progress=None``: a callable
``progress(stage, done, total)``. The library calls it as work advances; the
callable may raise :class:`~spinetrack.errors.Cancelled` to stop the work, which
is how the command line, the napari widget and the batch runner all cancel.

Examples
--------
>>> events = []
>>> cb = lambda stage, done, total: events.append((stage, done, total))
>>> for i in iterate(range(3), cb, "demo"):
...     pass
>>> events[-1]
('demo', 3, 3)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .errors import Cancelled

ProgressCallback = Callable[[str, int, int], None]

T = TypeVar("T")

__all__ = [
    "ProgressCallback",
    "Cancelled",
    "report",
    "iterate",
    "CancelToken",
    "TqdmProgress",
    "sub_progress",
]


def report(progress: ProgressCallback | None, stage: str, done: int, total: int) -> None:
    """Call ``progress(stage, done, total)`` if a callback was given."""
    if progress is not None:
        progress(stage, int(done), int(total))


def iterate(
    items: Iterable[T], progress: ProgressCallback | None, stage: str, total: int | None = None
) -> Iterator[T]:
    """Yield ``items``, reporting ``stage`` progress before the first and after each one."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = 0
    report(progress, stage, 0, total)
    for i, item in enumerate(items, 1):
        yield item
        report(progress, stage, i, max(total, i))


def sub_progress(
    progress: ProgressCallback | None, prefix: str
) -> ProgressCallback | None:
    """Return a callback that prefixes stage names, e.g. ``"session 2: detect"``."""
    if progress is None:
        return None

    def _cb(stage: str, done: int, total: int) -> None:
        progress(f"{prefix}: {stage}" if prefix else stage, done, total)

    return _cb


class CancelToken:
    """A thread-safe stop flag that turns into a progress callback.

    ``token.wrap(cb)`` returns a callback that forwards to ``cb`` and raises
    :class:`Cancelled` once :meth:`cancel` has been called (from any thread).
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wrap(self, progress: ProgressCallback | None = None) -> ProgressCallback:
        def _cb(stage: str, done: int, total: int) -> None:
            self.check()
            if progress is not None:
                progress(stage, done, total)

        return _cb


class TqdmProgress:
    """A progress callback that draws one tqdm bar per stage on stderr.

    Parameters
    ----------
    disable : bool
        Draw nothing (for ``--quiet`` or when stderr is not a terminal).
    """

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self._bar = None
        self._stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.disable:
            return
        from tqdm.auto import tqdm

        if stage != self._stage or self._bar is None:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total or None, desc=stage, unit="step", leave=False,
                             dynamic_ncols=True)
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None
