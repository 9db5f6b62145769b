"""The "Correct spines" dock widget: add, delete, move, join, split, set fate, undo, save.

Every button builds a :class:`spinetrack.edits.Edit` and hands it to the
project (library code); the widget only reads the selection and the cursor.
Shortcuts (viewer-wide): Shift-A add at cursor, Shift-D delete selected,
Shift-M move selected to cursor, Shift-J join, Shift-S split, Shift-Z undo,
Shift-N / Shift-P next / previous call to check (:func:`spinetrack.review.review_queue`:
every lost, restored, formed or transient spine, branch by branch), Shift-C the
two sessions of the call side by side (:mod:`.compare`).
napari's own point tools on the spines layer (add mode, delete, dragging a
selected point) make the same edits.
"""

from __future__ import annotations

from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel,
                            QPushButton, QVBoxLayout, QWidget)

from spinetrack.edits import Edit, EditError
from spinetrack.errors import SpinetrackError
from spinetrack.fates import FATES
from spinetrack.project import FolderInUse, results_in
from spinetrack.review import ReviewCursor

from .._convert import FATE_COLORS
from ._close_guard import ask_unsaved, install_close_guard
from ._jobs import start_job
from ._state import state_for, viewer_camera
from .compare import Prefetch, SessionComparison, plane_um, planes_of

__all__ = ["EditWidget"]


class EditWidget(QWidget):
    """Correct the spines of the open project; every edit is saved at once (autosave)."""

    def __init__(self, napari_viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer, attach=True)

        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        actions = [("add", "Add at cursor", "Shift-A", self.add_at_cursor),
                   ("delete", "Delete selected", "Shift-D", self.delete_selected),
                   ("move", "Move selected to cursor", "Shift-M", self.move_selected),
                   ("join", "Join two selected", "Shift-J", self.join_selected),
                   ("split", "Split from selected", "Shift-S", self.split_selected),
                   ("undo", "Undo", "Shift-Z", self.undo)]
        for i, (key, text, shortcut, slot) in enumerate(actions):
            b = QPushButton(f"{text}  [{shortcut}]")
            b.clicked.connect(slot)
            self.buttons[key] = b
            grid.addWidget(b, i // 2, i % 2)
            napari_viewer.bind_key(shortcut, _key(slot), overwrite=True)
        self.fate = QComboBox()
        self.fate.addItems(list(FATES))
        self.fate.setToolTip("fate colours: " + ", ".join(f"{k} {v}"
                                                          for k, v in FATE_COLORS.items()))
        set_fate = QPushButton("Set fate of selected")
        set_fate.clicked.connect(self.set_fate_selected)
        self.buttons["set_fate"] = set_fate
        fate_row = QHBoxLayout()
        fate_row.addWidget(self.fate)
        fate_row.addWidget(set_fate)

        review_row = QHBoxLayout()
        self.cursor = ReviewCursor()
        if self.state.comparison is None:
            self.state.comparison = SessionComparison(self.state)
        self.comparison = self.state.comparison
        self.prefetch = Prefetch()
        for key, text, shortcut, step in (("previous", "Previous call", "Shift-P", -1),
                                          ("next", "Next call to check", "Shift-N", 1)):
            b = QPushButton(f"{text}  [{shortcut}]")
            b.setToolTip("step through every lost, restored, formed and transient spine, "
                         "branch by branch: the viewer jumps to the session and place to "
                         "look at and selects the spine")
            slot = (lambda step=step: self.review(step))
            b.clicked.connect(slot)
            self.buttons[key] = b
            review_row.addWidget(b)
            napari_viewer.bind_key(shortcut, _key(slot), overwrite=True)
        self.compare = QCheckBox("Compare sessions  [Shift-C]")
        self.compare.setToolTip("show the two sessions of the call side by side, centred on "
                                "it: a lost spine's last session and the next, a new spine's "
                                "previous session and its first, a restored spine's lost "
                                "predecessor and itself")
        self.compare.toggled.connect(self._compare_toggled)
        review_row.addWidget(self.compare)
        napari_viewer.bind_key("Shift-C", _key(self.compare.toggle), overwrite=True)
        self.location = QLabel("")
        self.location.setWordWrap(True)

        self.autosave = QCheckBox("Save after every edit")
        self.autosave.setChecked(True)
        self.autosave.toggled.connect(self._autosave_toggled)
        save = QPushButton("Save")
        save.clicked.connect(self.save_project)
        save_as = QPushButton("Save as…")
        save_as.clicked.connect(self._save_as)
        report = QPushButton("Write report")
        report.setToolTip("rewrite report.html and figures/ in the project folder from the "
                          "corrected tables")
        report.clicked.connect(self.write_report)
        self.buttons["report"] = report
        save_row = QHBoxLayout()
        for w in (self.autosave, save, save_as, report):
            save_row.addWidget(w)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addLayout(fate_row)
        layout.addLayout(review_row)
        layout.addWidget(self.location)
        layout.addLayout(save_row)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.state.changed.connect(self._update_status)
        self.state.changed.connect(self._results_changed)
        self.state.message.connect(self._say)
        self._update_status()

    # ------------------------------------------------------------------ helpers
    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        install_close_guard(self, self.state)

    def ask_unsaved(self) -> str:
        project = self.state.project
        return ask_unsaved(self, None if project is None else project.folder)

    def _selected(self) -> list[tuple[int, int]]:
        """(spine_id, session) of the selected points of the spines layer (or, while
        comparing sessions, of the two panels)."""
        if self.comparison.active:
            return self.comparison.selected()
        layer = self.state.layer("spines")
        if layer is None:
            return []
        feats = layer.features
        return [(int(feats["spine_id"].iloc[i]), int(feats["session"].iloc[i]))
                for i in sorted(layer.selected_data)]

    def _cursor_um(self) -> tuple[float, float, float]:
        pos = self.viewer.cursor.position
        return tuple(float(v) for v in pos[-3:])  # type: ignore[return-value]

    def _do(self, make_edits) -> bool:
        """Build edits with ``make_edits(spines)`` and apply them; report problems."""
        if self.state.project is None:
            self._say("open a spinetrack results folder or run detection first")
            return False
        install_close_guard(self, self.state)
        try:
            edits = make_edits(self.state.project.spines)
            if not edits:
                return False
            for e in edits:
                self.state.apply(e)
        except (EditError, SpinetrackError, ValueError) as exc:
            self._say(str(exc))
            return False
        self._say(f"{edits[-1].describe()}: done")
        return True

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _need(self, n: int, what: str):
        sel = self._selected()
        if len(sel) != n:
            self._say(f"select {n} spine{'s' if n > 1 else ''} to {what} "
                      f"({len(sel)} selected)")
            return None
        return sel

    # ------------------------------------------------------------------ actions
    def add_at_cursor(self) -> bool:
        """A new spine at the cursor in the session shown."""
        session = self.state.current_session()
        at = self._cursor_um()
        return self._do(lambda sp: [Edit.add(session, at)])

    def delete_selected(self) -> bool:
        sel = self._selected()
        if not sel:
            self._say("select spines to delete")
            return False
        edits = []
        for sid, session in sel:
            edits.append(Edit.delete(self.state.project.spines, sid, session))
        return self._do(lambda sp: edits)

    def move_selected(self) -> bool:
        sel = self._need(1, "move")
        if sel is None:
            return False
        at = self._cursor_um()
        return self._do(lambda sp: [Edit.move(sp, sel[0][0], sel[0][1], at)])

    def join_selected(self) -> bool:
        sel = self._need(2, "join")
        if sel is None:
            return False
        return self._do(lambda sp: [Edit.join(sp, sel[0], sel[1])])

    def split_selected(self) -> bool:
        sel = self._need(1, "split")
        if sel is None:
            return False
        return self._do(lambda sp: [Edit.split(sp, sel[0][0], sel[0][1])])

    def set_fate_selected(self) -> bool:
        sel = self._selected()
        if not sel:
            self._say("select a spine to set its fate")
            return False
        fate = self.fate.currentText()
        ids = sorted({sid for sid, _ in sel})
        return self._do(lambda sp: [Edit.set_fate(sp, sid, fate) for sid in ids])

    def undo(self) -> bool:
        last = self.state.undo()
        self._say("nothing to undo" if last is None else f"undone: {last.describe()}")
        return last is not None

    def _queue(self):
        results = self.state.project.results
        return self.cursor.queue(results.spines, results.fates, results.n_sessions)

    def review(self, step: int = 1) -> bool:
        """Go to the next (``step`` 1) or previous (-1) call to check and select it.

        The queue is cached (:class:`spinetrack.review.ReviewCursor`) and computed
        again only after the spines change; the place is kept by position, so
        after the current call is resolved *next* is the call that followed it.
        """
        if self.state.project is None:
            self._say("open a spinetrack results folder or run detection first")
            return False
        queue = self._queue()
        i = self.cursor.step(queue, step)
        if i is None:
            self._say("nothing to check: every spine is stable")
            self._show_location()
            return False
        call = queue.iloc[i]
        self._go_to(call)
        self._show_location(queue)
        self._say(call["what"])
        self._prefetch_next(queue, i, step)
        return True

    def _prefetch_next(self, queue, i: int, step: int) -> None:
        """Start resampling the planes the next call in this direction will show."""
        image = self.state.layer("sessions")
        if image is None or image.ndim != 4 or len(queue) < 2:
            return
        call = queue.iloc[(i + (1 if step > 0 else -1)) % len(queue)]
        planes = planes_of(call, image, self.viewer.dims.range[1], self.comparison.active)
        self.prefetch.request(image, planes)

    def _go_to(self, call) -> None:
        """Session, plane and centre of ``call``; select it (in the panels when comparing)."""
        viewer = self.viewer
        comparing = self.compare.isChecked() and self.state.project.results.n_sessions > 1
        with self.comparison.paused():
            if comparing:
                self.comparison.show(call)
            viewer.dims.set_point(0, int(call["session"]))
            if viewer.dims.ndim >= 4:
                viewer.dims.set_point(1, plane_um(call, comparing))
            viewer_camera(viewer).center = (float(call["y_um"]), float(call["x_um"]))
        layer = self.state.layer("spines")
        if layer is not None:
            row = int(call["row"])
            layer.selected_data = {row} if row < len(layer.data) and not self.comparison.active \
                else set()

    def _show_location(self, queue=None) -> None:
        """``call 12 of 393: lost, branch 3, arc 21.4 µm`` (or that the call is resolved)."""
        if self.state.project is None or self.cursor.current is None:
            self.location.setText("")
            return
        queue = self._queue() if queue is None else queue
        i = self.cursor.index(queue)
        if i is None:
            self.location.setText(f"call resolved; {len(queue)} calls left "
                                  f"(Shift-N: the next one)")
            return
        call = queue.iloc[i]
        text = (f"call {i + 1} of {len(queue)}: {call['fate']}, branch {int(call['branch_id'])}, "
                f"arc {call['arc_um']:.1f} µm")
        if self.comparison.active:
            text += (f"; comparing session {int(call['before_session'])} | "
                     f"session {int(call['after_session'])}")
        self.location.setText(text)

    def _compare_toggled(self, on: bool) -> None:
        if not on:
            self.comparison.close()
            self._show_location()
            return
        project = self.state.project
        if project is None or project.results.n_sessions < 2:
            self._say("comparing needs a project with two or more sessions")
            self.compare.setChecked(False)
            return
        queue = self._queue()
        i = self.cursor.index(queue)
        if i is None:  # no call yet, or the last one was resolved
            self.review(1)
        else:
            self._go_to(queue.iloc[i])
            self._show_location(queue)

    def _results_changed(self) -> None:
        """The spines changed: the queue is recomputed when next needed; redraw the panels."""
        self.cursor.invalidate()
        if self.comparison.active:
            if self.state.project is None or self.state.project is not self.comparison.project:
                self.compare.setChecked(False)
            else:
                self.comparison.refresh()
        self._show_location()

    # ------------------------------------------------------------------ saving
    def _autosave_toggled(self, on: bool) -> None:
        if self.state.project is not None:
            self.state.project.autosave = on
            if on and self.state.project.dirty and self.state.project.folder is not None:
                self.save_project()

    def save_project(self, folder=None, overwrite: bool = False, ask: bool = False) -> bool:
        """Save the project (in ``folder``: save as). A folder that holds another project
        or results is refused unless ``overwrite``, or ``ask`` and the person confirms."""
        project = self.state.project
        if project is None:
            return True
        if folder is None and project.folder is None:
            return self._save_as()
        try:
            where = self.state.save(folder, overwrite=overwrite)
        except FolderInUse as exc:
            if not ask:
                self._say(f"not saved: {exc}")
                return False
            found = results_in(folder)
            if not self.confirm_overwrite(folder, found):
                self._say(f"not saved: {folder} already holds {' and '.join(found)}")
                return False
            return self.save_project(folder, overwrite=True)
        except (SpinetrackError, OSError) as exc:
            self._say(f"not saved: {exc}")
            return False
        self._say(f"saved to {where}")
        return True

    def write_report(self) -> bool:
        """Save, then write ``report.html`` for the corrected results (in the background)."""
        if self.state.project is None or not self.save_project():
            return False
        project = self.state.project
        results, folder = project.results, project.folder

        def work(progress):
            from spinetrack.report import write_report

            return write_report(results, folder, progress=progress)

        self._say("writing the report…")
        start_job(work, lambda *a: None,
                  lambda written: self._say(f"report written: {written[-1]}"),
                  lambda exc: self._say(f"report not written: {exc}"))
        return True

    def _save_as(self) -> bool:
        folder = QFileDialog.getExistingDirectory(self, "Save the project in a folder")
        return bool(folder) and self.save_as(folder)

    def save_as(self, folder) -> bool:
        """Save in ``folder``; if it holds another project or results, ask before replacing."""
        return self.save_project(folder, ask=True)

    def confirm_overwrite(self, folder, found: list[str]) -> bool:
        """Ask whether to replace the project or results in ``folder``."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.warning(
            self, "spinetrack: folder in use",
            f"{folder} already holds {' and '.join(found)}: another person's corrections or "
            "another run. Replace them with this project?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _update_status(self) -> None:
        project = self.state.project
        if project is None:
            self._say("no project: open a results folder or run Detect & track")
            return
        project.autosave = self.autosave.isChecked()
        n = len(project.edits)
        skipped = f"; {len(project.skipped)} old edits no longer apply" if project.skipped else ""
        saved = "unsaved changes" if project.dirty else "saved"
        where = project.folder or "no folder"
        self._say(f"{n} edits ({saved}, {where}){skipped}")


def _key(slot):
    def callback(viewer):
        slot()
    return callback
