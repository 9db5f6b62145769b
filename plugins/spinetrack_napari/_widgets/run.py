"""The "Detect & track" dock widget: parameters, run in the background, progress, cancel."""

from __future__ import annotations

import logging
import numpy as np
from qtpy.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                            QPushButton, QVBoxLayout, QWidget)

from spinetrack.errors import Cancelled, InputError, SpinetrackError
from spinetrack.io import Series, Session, read_series
from spinetrack.params import Params
from spinetrack.project import Project

from .._convert import META_KEY, session_stack
from ._jobs import Job, start_job
from ._state import state_for
from .params_form import ParamsForm

__all__ = ["RunWidget", "series_from_layer"]

log = logging.getLogger(__name__)


def _read_files(files: list[str], voxels, names, days) -> Series:
    """Session files with the voxel sizes recorded for them (a run's ``sessions.csv``),
    which override the files' metadata, as ``--voxel-size`` did for that run."""
    per_file = [tuple(float(v) for v in vox) for vox in voxels] \
        if voxels and len(voxels) == len(files) else None
    return read_series(files, voxel_size_um=per_file, names=names, days=days)


def series_from_layer(layer) -> Series:
    """The sessions of a spinetrack Image layer: re-read from its files, or from its data.

    The voxel sizes the layer records (from the run's ``sessions.csv``, or read
    when the files were opened) are used, not the files' metadata again.

    Raises
    ------
    InputError
        If the layer is not a (session, z, y, x) stack with a known voxel size.
    """
    info = (layer.metadata or {}).get(META_KEY, {})
    files = info.get("files") or []
    voxels = info.get("voxel_size_um")
    days = info.get("days")
    names = info.get("names") or None
    if files and all(f for f in files) and len(set(files)) == len(files):
        return _read_files(files, voxels, names, days)
    if files and all(f for f in files) and len(set(files)) == 1:
        return read_series(files[0], voxel_size_um=voxels[0] if voxels else None, names=names,
                           days=days)
    data = np.asarray(layer.data)
    if data.ndim != 4:
        raise InputError(None, f"layer '{layer.name}' is {data.ndim}-D; detection needs "
                         "(session, z, y, x) sessions")
    if not voxels:
        scale = [float(s) for s in layer.scale[1:]]
        voxels = [scale] * data.shape[0]
    names = names or [f"session{k}" for k in range(data.shape[0])]
    return Series(tuple(Session(image=np.asarray(data[k]), voxel_size_um=tuple(voxels[k]),
                                name=str(names[k]),
                                day=None if not days else days[k])
                        for k in range(data.shape[0])))


class RunWidget(QWidget):
    """Run the whole pipeline on the sessions shown, writing to an output folder.

    The run happens in a background thread (napari's ``thread_worker``); the
    progress bar follows the library's progress reports and Cancel stops the
    run at the next one. A cancelled or failed run leaves the previous results
    (on screen and on disk) as they were.
    """

    def __init__(self, napari_viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer, attach=True)
        self.job = None
        self.last_error: str | None = None

        self.sessions = QLineEdit()
        self.sessions.setPlaceholderText("the 'sessions' layer, or TIFF files / a folder")
        self.sessions.setToolTip("Session TIFFs in time order (separate with ';'), a folder of "
                                 "them or one 4-D TIFF. Empty: the sessions layer shown.")
        browse_in = QPushButton("…")
        browse_in.clicked.connect(self._browse_sessions)
        self.out = QLineEdit()
        self.out.setPlaceholderText("results folder (empty: keep in memory)")
        self.out.setToolTip("Results are written here (atomically). A person's edits.json "
                            "in this folder is re-applied on the new results.")
        browse_out = QPushButton("…")
        browse_out.clicked.connect(self._browse_out)
        self.form = ParamsForm(self.state.project.results.params if self.state.project
                               else Params())
        self.form.setMinimumHeight(260)
        self.run_button = QPushButton("Detect && track")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        for label, edit, button in (("Sessions", self.sessions, browse_in),
                                    ("Output", self.out, browse_out)):
            row = QHBoxLayout()
            row.addWidget(QLabel(label))
            row.addWidget(edit, 1)
            row.addWidget(button)
            layout.addLayout(row)
        layout.addWidget(self.form, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.state.changed.connect(self._follow_project)
        self._follow_project()

    def _follow_project(self) -> None:
        """Offer the open project's folder as the output (re-running keeps its edits)."""
        project = self.state.project
        if project is not None and project.folder is not None and not self.out.text().strip():
            self.out.setText(str(project.folder))

    # ------------------------------------------------------------------ inputs
    def _browse_sessions(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Session TIFFs (in time order)", "",
                                                "TIFF (*.tif *.tiff)")
        if files:
            self.sessions.setText(";".join(files))

    def _browse_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Results folder")
        if folder:
            self.out.setText(folder)

    def _series(self) -> Series:
        text = self.sessions.text().strip()
        if text:
            return read_series([p.strip() for p in text.split(";") if p.strip()])
        layer = self.state.layer("sessions")
        if layer is None:
            raise InputError(None, "no sessions: open session TIFFs (File > Open) or give "
                             "them above")
        if layer.metadata[META_KEY].get("registered") and self.state.series is not None:
            return self.state.series  # the layer shows them aligned; detect on the originals
        return series_from_layer(layer)

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Start a run with the parameters shown (returns at once unless synchronous)."""
        try:
            params = self.form.params()
            series = self._series()
        except SpinetrackError as exc:
            self._show_error(exc)
            return
        out = self.out.text().strip() or None
        self._set_running(True)
        self.status.setText("running…")
        self.job = Job()
        start_job(lambda progress: _work(series, out, params, progress), self._on_progress,
                  self._on_done, self._on_error, lambda: self._set_running(False), job=self.job)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("cancelling…")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        self.progress.setFormat(f"{stage}: %v/%m")

    def _on_done(self, result) -> None:
        project, stack, voxel, meta, series = result
        self.state.series = series
        self.state.show(project, stack, voxel, meta)
        n = project.results.summary.get("spines_per_session")
        where = project.folder or "memory (not saved)"
        self.status.setText(f"done: {n} spines per session; results in {where}")
        self.last_error = None

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            notes = getattr(exc, "__notes__", None)  # cancelled while writing: what is where
            self.status.setText(f"cancelled; {notes[-1]}" if notes
                                else "cancelled; the previous results are unchanged")
            self.last_error = "cancelled"
            return
        self._show_error(exc)

    def _show_error(self, exc: BaseException) -> None:
        if isinstance(exc, SpinetrackError):
            msg = str(exc)
        else:
            log.exception("spinetrack run failed", exc_info=exc)
            msg = f"internal error: {type(exc).__name__}: {exc}"
        self.last_error = msg
        self.status.setText(msg)
        from napari.utils.notifications import show_error

        show_error(f"spinetrack: {msg}")


def _work(series: Series, out: str | None, params: Params, progress):
    """The background job: run, read back the project, align the images for display."""
    from spinetrack.pipeline import run_and_write, run_series

    if out:
        run_and_write(series, out, params, progress=progress)
        project = Project.open(out)
    else:
        project = Project(run_series(series, params, progress=progress))
        project.dirty = True  # a run kept in memory is not saved anywhere yet
    stack = session_stack([s.image for s in series], [s.voxel_size_um for s in series],
                          project.results.transform, progress=progress)
    meta = {"files": [None if s.path is None else str(s.path) for s in series],
            "voxel_size_um": [list(s.voxel_size_um) for s in series], "days": series.days,
            "registered": True}
    return project, stack, series[0].voxel_size_um, meta, series
