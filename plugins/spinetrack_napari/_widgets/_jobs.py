"""Running long library calls off the GUI thread, with progress and cancel.

``start_job(fn, ...)`` runs ``fn(progress)`` in napari's ``thread_worker`` (a
generator yielding progress events), so the viewer stays responsive. With the
environment variable ``SPINETRACK_NAPARI_SYNC=1`` it runs synchronously in the
calling thread instead (for tests and debugging).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from spinetrack.progress import CancelToken

__all__ = ["Job", "start_job", "synchronous"]

_DONE = object()


def synchronous() -> bool:
    """True when ``SPINETRACK_NAPARI_SYNC`` asks for synchronous jobs."""
    return os.environ.get("SPINETRACK_NAPARI_SYNC", "").strip() not in ("", "0", "false")


class Job:
    """A running job: :meth:`cancel` asks the library to stop at its next progress report."""

    def __init__(self) -> None:
        self.token = CancelToken()
        self.worker = None

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled


def _generator(fn: Callable, job: Job):
    """Run ``fn`` in a helper thread and yield its progress events as they come."""
    events: queue.Queue = queue.Queue()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(job.token.wrap(lambda *a: events.put(a)))
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread below
            box["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=target, name="spinetrack-job", daemon=True)
    thread.start()
    while True:
        item = events.get()
        if item is _DONE:
            break
        yield item
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def start_job(fn: Callable[[Callable], Any], on_progress: Callable[[str, int, int], None],
              on_done: Callable[[Any], None], on_error: Callable[[BaseException], None],
              on_finished: Callable[[], None] | None = None, job: Job | None = None) -> Job:
    """Run ``fn(progress)``; call back on the GUI thread with progress, result or error.

    ``on_error`` receives :class:`spinetrack.errors.Cancelled` when the job was
    cancelled. Pass ``job`` to hold the handle before the job starts (a
    synchronous job can then be cancelled from its own progress callback).
    """
    job = job or Job()
    if synchronous():
        try:
            result = fn(job.token.wrap(on_progress))
        except Exception as exc:  # noqa: BLE001 - reported like the threaded path
            on_error(exc)
        else:
            on_done(result)
        finally:
            if on_finished is not None:
                on_finished()
        return job

    from napari.qt.threading import thread_worker

    worker = thread_worker(_generator, start_thread=False)(fn, job)
    worker.yielded.connect(lambda event: on_progress(*event))
    worker.returned.connect(on_done)
    worker.errored.connect(on_error)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    job.worker = worker
    worker.start()
    return job
