"""Ask before the napari window closes while a project has unsaved changes."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMessageBox, QWidget

__all__ = ["install_close_guard", "ask_unsaved"]


def ask_unsaved(parent: QWidget, folder) -> str:
    """Ask what to do with unsaved changes: ``"save"``, ``"discard"`` or ``"cancel"``."""
    where = f" in {folder}" if folder else " (the project has no folder yet)"
    box = QMessageBox(QMessageBox.Icon.Warning, "spinetrack: unsaved changes",
                      f"The spine corrections have not been saved{where}. Save them?",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, parent)
    answer = box.exec()
    return {QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard"}.get(
        QMessageBox.StandardButton(answer), "cancel")


class _CloseFilter(QObject):
    def __init__(self, window, widget, state):
        super().__init__(window)
        self.widget = widget
        self.state = state

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Type.Close:
            return False
        project = self.state.project
        if project is None or not project.dirty:
            return False
        answer = self.widget.ask_unsaved()
        if answer == "cancel":
            event.ignore()
            return True
        if answer == "save":
            if not self.widget.save_project():
                event.ignore()
                return True
        return False


def install_close_guard(widget, state) -> None:
    """Watch the top-level window of ``widget`` (once per window)."""
    window = widget.window()
    if window is widget or window.property("spinetrack_close_guard"):
        return
    window.setProperty("spinetrack_close_guard", True)
    window.installEventFilter(_CloseFilter(window, widget, state))
