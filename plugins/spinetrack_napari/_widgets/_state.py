"""One controller per viewer: the open project and the layers that show it.

The widgets share it: the run widget puts a project in, the correction widget
edits it (through :class:`spinetrack.project.Project`), the branch table shows
its statistics. Layers are found by their ``metadata["spinetrack"]["role"]``, so
layers opened with the reader (File > Open) are picked up too.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from spinetrack.edits import Edit, EditError
from spinetrack.errors import Cancelled, SpinetrackError
from spinetrack.project import Project

from ._jobs import start_job, synchronous
from .._convert import (META_KEY, branches_layer, results_layers, spines_layer, tracks_layer,
                        update_points)

__all__ = ["SpinetrackState", "state_for"]

_STATES: dict[int, SpinetrackState] = {}
_ROLES = ("sessions", "branches", "identities", "spines")


def state_for(viewer, attach: bool = False) -> SpinetrackState:
    """The controller of ``viewer`` (created on first use).

    ``attach``: without a project yet, take up the spinetrack layers the viewer
    already shows (:meth:`SpinetrackState.attach`), as a widget docked after
    opening a results folder needs.
    """
    key = id(viewer)
    state = _STATES.get(key)
    if state is None or state.viewer is not viewer:
        state = SpinetrackState(viewer)
        _STATES[key] = state
        weakref.finalize(viewer, _STATES.pop, key, None)
    if attach and state.project is None:
        state.attach()
    return state


class SpinetrackState:
    """The project shown in one viewer.

    Signals
    -------
    changed : Signal()
        The project's results changed (new run, edit, undo, open).
    branch_selected : Signal(int)
        A branch was picked (-1: none).
    """

    changed = Signal()
    branch_selected = Signal(int)
    message = Signal(str)

    #: A drag is taken as finished when the points stop moving for this long (ms).
    DRAG_SETTLE_MS = 300

    def __init__(self, viewer):
        self._viewer = weakref.ref(viewer)
        self.project: Project | None = None
        self.series = None  # the sessions of the last run (originals, unregistered)
        self._refreshing = False
        self._tools: PointTools | None = None  # napari's tools on the spines layer
        self._stats_job = None
        self.selected_branch: int | None = None
        #: The side-by-side comparison of two sessions (set by the correction widget).
        self.comparison = None
        viewer.layers.events.inserted.connect(self._on_inserted)

    @property
    def viewer(self):
        return self._viewer()

    # ------------------------------------------------------------------ layers
    def layer(self, role: str):
        """The viewer's layer with this spinetrack role, or None."""
        viewer = self.viewer
        if viewer is None:
            return None
        for layer in reversed(viewer.layers):  # the newest, if a folder was opened twice
            if (layer.metadata or {}).get(META_KEY, {}).get("role") == role:
                return layer
        return None

    def _on_inserted(self, event=None) -> None:
        layer = getattr(event, "value", None)
        info = (getattr(layer, "metadata", None) or {}).get(META_KEY, {})
        if self.project is None or (info.get("role") == "spines" and info.get("project")
                                    and str(self._folder()) != info["project"]):
            self.attach()

    def attach(self) -> bool:
        """Open the project named by the newest spines layer (e.g. one the reader added)."""
        layer = self.layer("spines")
        if layer is None:
            return False
        folder = layer.metadata[META_KEY].get("project")
        if not folder or not Project.is_project(folder):
            return False
        from .._reader import take_opened

        self.project = take_opened(folder) or Project.open(folder)
        self.watch_points()
        if self.layer("sessions") is not None:
            _set_z_margin(self.viewer)
        self.restore_view()
        self.changed.emit()
        return True

    def _folder(self):
        return None if self.project is None else self.project.folder

    def show(self, project: Project, stack: np.ndarray | None = None, voxel=None,
             image_meta: dict[str, Any] | None = None) -> None:
        """Show ``project`` (and the registered session images, if given) in the viewer."""
        viewer = self.viewer
        self.project = project
        if stack is not None:
            old = self.layer("sessions")
            if old is not None:
                viewer.layers.remove(old)
        for role in ("branches", "identities", "spines"):
            old = self.layer(role)
            if old is not None:
                viewer.layers.remove(old)
        for data, kwargs, kind in results_layers(project.results, stack, voxel, project.folder):
            if kind == "image" and image_meta:
                kwargs["metadata"][META_KEY].update(image_meta)
            getattr(viewer, f"add_{kind}")(data, **kwargs)
        if stack is not None:
            _set_z_margin(viewer)
        self.watch_points()
        self.changed.emit()

    def refresh(self) -> None:
        """Update the spines, identities and branches layers from the project's results."""
        viewer = self.viewer
        if self.project is None or viewer is None:
            return
        self._refreshing = True
        try:
            self._refresh_layers()
        finally:
            self._refreshing = False
        self.watch_points()
        self.highlight_branch(self.selected_branch)
        self.changed.emit()

    def _refresh_layers(self) -> None:
        viewer = self.viewer
        results, folder = self.project.results, self.project.folder
        points = self.layer("spines")
        if points is None:
            data, kwargs, _ = spines_layer(results, folder)
            viewer.add_points(data, **kwargs)
        else:
            update_points(points, *spines_layer(results, folder)[:2])
        tracks = self.layer("identities")
        built = tracks_layer(results, folder)
        if built is None:
            if tracks is not None:
                viewer.layers.remove(tracks)
        elif tracks is not None:
            tracks.data = built[0]
        else:
            layer = viewer.add_tracks(built[0], **built[1])
            viewer.layers.move(viewer.layers.index(layer),
                               viewer.layers.index(self.layer("spines")))

    def highlight_branch(self, branch_id: int | None) -> None:
        """Draw ``branch_id`` thicker and gold; None for no highlight."""
        self.selected_branch = branch_id
        shapes = self.layer("branches")
        if shapes is None or self.project is None:
            return
        built = branches_layer(self.project.results, self.project.folder, branch_id)
        if built is None:
            return
        _, kwargs, _ = built
        if len(kwargs["edge_color"]) == shapes.nshapes:
            shapes.edge_color = kwargs["edge_color"]
            shapes.edge_width = kwargs["edge_width"]
        self.branch_selected.emit(-1 if branch_id is None else int(branch_id))

    # ------------------------------------------------------------------ napari's own tools
    def watch_points(self) -> None:
        """Turn napari's own point tools (add, delete, drag) on the spines layer into edits."""
        layer = self.layer("spines")
        if layer is None or (self._tools is not None and layer is self._tools.layer):
            return
        if self._tools is not None:
            self._tools.disconnect()
        self._tools = PointTools(self, layer, lambda: not self._refreshing)

    def _native(self, make) -> None:
        """Apply edits made with napari's tools; on a refusal put the layer back and say why."""
        try:
            for e in make():
                self.project.apply(e)
        except (EditError, SpinetrackError, ValueError) as exc:
            self.message.emit(str(exc))
        self.refresh()

    # ------------------------------------------------------------------ editing
    def apply(self, edit: Edit) -> None:
        """Apply one edit to the project (EditError propagates, nothing changes).

        Spines and fates update at once; the branch statistics are recomputed in
        a background thread (then the table updates and the project is saved),
        or right away when jobs are synchronous.
        """
        background = not synchronous()
        self.project.view = self.view_state()  # saved with the edit
        self.project.apply(edit, statistics=not background)
        self.refresh()
        if background:
            self._start_statistics()

    def undo(self) -> Edit | None:
        if self.project is None:
            return None
        background = not synchronous()
        last = self.project.undo(statistics=not background)
        if last is not None:
            self.refresh()
            if background and self.project.stats_pending:
                self._start_statistics()
        return last

    def _start_statistics(self) -> None:
        """Recompute the branch statistics of the current edits off the GUI thread."""
        if self._stats_job is not None:
            self._stats_job.cancel()
        project = self.project
        snap = project.snapshot()
        self.message.emit("updating branch statistics…")

        def done(results) -> None:
            if self.project is project and project.finish(snap, results):
                self.changed.emit()
                self.message.emit(f"{snap[3][-1].describe() if snap[3] else 'undo'}: done")

        def failed(exc) -> None:
            if not isinstance(exc, Cancelled):
                self.message.emit(f"statistics not updated: {exc}")

        self._stats_job = start_job(lambda progress: Project.compute(snap, progress),
                                    lambda *a: None, done, failed)

    def current_session(self) -> int:
        """The session the viewer shows: its first dimension, or in the side-by-side
        comparison the session of the panel under the cursor."""
        viewer = self.viewer
        if self.comparison is not None and self.comparison.active:
            k = self.comparison.session_at(viewer.cursor.viewbox)
            if k is not None:
                return k
        n = self.project.results.n_sessions if self.project else 1
        return int(np.clip(round(viewer.dims.point[0]), 0, max(n - 1, 0)))

    def view_state(self) -> dict[str, Any]:
        viewer = self.viewer
        return {"point": [float(p) for p in viewer.dims.point],
                "camera_center": [float(c) for c in viewer_camera(viewer).center],
                "camera_zoom": float(viewer_camera(viewer).zoom),
                "selected_branch": self.selected_branch,
                "visible": {role: self._was_visible(layer) for role in _ROLES
                            if (layer := self.layer(role)) is not None}}

    def _was_visible(self, layer) -> bool:
        """The layer's visibility, as it was before a comparison hid it."""
        if self.comparison is not None and self.comparison.active:
            visible = self.comparison.was_visible(layer)
            if visible is not None:
                return bool(visible)
        return bool(layer.visible)

    def restore_view(self) -> None:
        """Put the viewer back where the project's ``view.json`` says it was."""
        view = self.project.view if self.project else {}
        viewer = self.viewer
        if not view or viewer is None:
            return
        point = view.get("point")
        if point and len(point) == viewer.dims.ndim:
            viewer.dims.point = point
        camera = viewer_camera(viewer)
        if view.get("camera_center"):
            camera.center = view["camera_center"]
        if view.get("camera_zoom"):
            camera.zoom = view["camera_zoom"]
        if view.get("selected_branch") is not None:
            self.highlight_branch(int(view["selected_branch"]))
        for role, visible in (view.get("visible") or {}).items():
            layer = self.layer(role)
            if layer is not None:
                layer.visible = bool(visible)

    def save(self, folder: str | Path | None = None, overwrite: bool = False) -> Path:
        """Save the project (with the view); see :meth:`spinetrack.project.Project.save`."""
        self.project.view = self.view_state()
        return self.project.save(folder, overwrite=overwrite)


def viewer_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _set_z_margin(viewer, margin_um: float = 1.0) -> None:
    """Show spines within ``margin_um`` of the plane (points project a thick slice)."""
    if viewer.dims.ndim < 4:
        return
    left = list(viewer.dims.margin_left)
    right = list(viewer.dims.margin_right)
    left[1] = right[1] = margin_um
    viewer.dims.margin_left = tuple(left)
    viewer.dims.margin_right = tuple(right)


def restart_single_shot(timer, slot, ms: int):
    """(Re)start a single-shot QTimer that calls ``slot`` after ``ms``; created on first use.

    Dragged points fire a 'changed' event for every mouse move; the edit is
    applied once the drag has settled.
    """
    from qtpy.QtCore import QTimer

    if timer is None:
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
    timer.start(ms)
    return timer


class PointTools:
    """napari's own point tools (add, delete, drag) on one points layer, as edits.

    The layer's ``features`` name each point's ``spine_id`` and ``session``.
    ``session`` gives the session of the layer's points when they are (z, y, x)
    (a comparison panel); None when they are (session, z, y, x) (the spines
    layer). ``listening()`` says whether data events are edits now (not while
    the layer is being filled). Edits go through ``state._native``, which puts
    the layer back and says why when one is refused.
    """

    def __init__(self, state: SpinetrackState, layer, listening, session=None):
        self.state, self.layer = state, layer
        self._listening, self._session = listening, session
        self._removing: list[tuple[int, int]] = []
        self._moved: set[int] = set()
        self._timer = None
        layer.events.data.connect(self._on_data)

    def disconnect(self) -> None:
        self.layer.events.data.disconnect(self._on_data)

    def _split(self, point) -> tuple[int, np.ndarray]:
        """(session, (z, y, x)) of a point of the layer."""
        p = np.asarray(point, float)
        if self._session is None:
            return int(round(p[0])), p[1:]
        return int(self._session()), p

    def _on_data(self, event) -> None:
        project = self.state.project
        if project is None or not self._listening():
            return
        layer, action = self.layer, str(event.action)
        feats = layer.features
        if action == "removing":
            self._removing = [(int(feats["spine_id"].iloc[i]), int(feats["session"].iloc[i]))
                              for i in event.data_indices if 0 <= i < len(feats)]
        elif action == "removed":
            gone, self._removing = self._removing, []
            self.state._native(lambda: [Edit.delete(project.spines, sid, s) for sid, s in gone])
        elif action == "added":
            n = len(layer.data)
            new = [self._split(layer.data[i % n]) for i in event.data_indices]
            self.state._native(lambda: [Edit.add(s, p) for s, p in new])
        elif action == "changed":
            self._moved.update(int(i) for i in event.data_indices)
            self._timer = restart_single_shot(self._timer, self._apply_moves,
                                              self.state.DRAG_SETTLE_MS)

    def _apply_moves(self) -> None:
        moved, self._moved = sorted(self._moved), set()
        project = self.state.project
        if project is None or not self._listening():
            return
        feats, data = self.layer.features, self.layer.data
        targets = [(int(feats["spine_id"].iloc[i]), int(feats["session"].iloc[i]),
                    self._split(data[i])[1]) for i in moved if i < len(feats) and i < len(data)]
        self.state._native(lambda: [Edit.move(project.spines, sid, s, to)
                                    for sid, s, to in targets])
