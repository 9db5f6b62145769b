"""Two sessions side by side around one call to check (napari grid mode).

For a call from :func:`spinetrack.review.review_queue` the comparison adds, at the
bottom of the layer list, one group of layers per session to compare: that
session's registered image (a 3-D view of the ``sessions`` layer's data), its
spines, and a gold ring (y, x) around the call's site with a label. The other
layers are hidden and napari's grid mode shows the two groups in two viewboxes
that share one camera and the dims, so both are centred on the call and in the
same plane. Stepping to another call fills the same layers anew; closing
removes them and puts back the grid settings, each layer's visibility and the
active layer.

Why grid mode: in napari 0.9 each grid viewbox has its own vispy camera kept
in step with the viewer's camera, so panning, zooming and the z slider act on
both panels at once and every panel shows the same registered frame. A second
copy of the layers shifted sideways (``translate``) would need a camera that
shows both copies, i.e. the whole field, and would not keep both on the call.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd


from .._convert import (META_KEY, plane_source, ring_points, session_points, spines_layer,
                        update_points)
from ._state import PointTools

__all__ = ["SessionComparison", "ROLE", "panel_labels", "plane_um", "planes_of", "Prefetch"]

ROLE = "compare"
SIDES = ("before", "after")
#: Field of view of each panel when the comparison opens on a wider view (µm).
PANEL_WIDTH_UM = 30.0
#: While comparing, spines this close to the plane are shown (µm; the viewer's usual 1 µm
#: can miss one of two sites a plane apart, and the panels' images show one plane anyway).
COMPARE_MARGIN_UM = 1.5


def panel_labels(call: pd.Series, days: list[float] | None = None) -> tuple[str, str]:
    """What each panel shows, e.g. ``"session 0 (day 0): last seen"`` and
    ``"session 1 (day 4.1): gone"`` for a spine lost after session 0."""
    fate = str(call["fate"])
    sessions = (int(call["before_session"]), int(call["after_session"]))

    def name(k: int) -> str:
        if days is not None and k < len(days) and np.isfinite(days[k]):
            return f"session {k} (day {days[k]:g})"
        return f"session {k}"

    if fate == "lost":
        what = ("last seen", "gone")
    elif fate == "restored":
        what = ("lost spine", "restored")
    else:
        what = ("not yet", "new")
    return tuple(f"{name(k)}: {w}" for k, w in zip(sessions, what))  # type: ignore[return-value]


def _grid(viewer):
    """The viewer's grid model (``viewer.canvas.grid`` from napari 0.9 on)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


class SessionComparison:
    """The side-by-side view of one viewer (see the module docstring).

    Parameters
    ----------
    state : SpinetrackState
        The viewer's controller (project, layers).
    """

    def __init__(self, state):
        self.state = state
        self.call: pd.Series | None = None
        self.layers: dict[str, dict[str, Any]] = {}
        self._saved: dict[str, Any] = {}
        self._shown: dict[str, tuple] = {}  # side: (results, session) the panel shows
        self.project = None
        self._filling = False
        self._tools: list[PointTools] = []  # napari's tools on the two panels' spines

    @property
    def active(self) -> bool:
        return bool(self.layers)

    # ------------------------------------------------------------------ public
    def show(self, call: pd.Series) -> None:
        """Compare the two sessions of ``call`` (a row of the review queue)."""
        project = self.state.project
        if project is None:
            return
        if self.active and project is not self.project:
            self.close()
        self.call = call
        if not self.active:
            self._open()
        self._fill()

    def refresh(self) -> None:
        """The spines changed (edit, undo, new statistics): redraw the panels' spines."""
        if not self.active:
            return
        if self.state.project is not self.project:  # another project was opened
            self.close()
            return
        self._hide_others()
        keep = self.selected()
        self._fill(select=False)
        for spine_id, session in keep:
            self._select_more(spine_id, session)

    def close(self) -> None:
        """Remove the comparison and put the viewer back as it was."""
        viewer = self.state.viewer
        layers, self.layers = self.layers, {}
        tools, self._tools = self._tools, []
        for t in tools:
            t.disconnect()
        if viewer is None or not layers:
            self.call = None
            return
        viewer.layers.events.inserted.disconnect(self._on_inserted)
        for side in layers.values():
            for layer in side.values():
                if layer in viewer.layers:
                    viewer.layers.remove(layer)
        grid = _grid(viewer)
        enabled, stride, shape, spacing = self._saved.get("grid", (False, 1, (-1, -1), 0.0))
        grid.stride, grid.shape, grid.spacing = stride, shape, spacing
        grid.enabled = enabled
        for layer, visible in self._saved.get("visible", []):
            if layer in viewer.layers:
                layer.visible = visible
        if "margins" in self._saved and len(self._saved["margins"][0]) == viewer.dims.ndim:
            viewer.dims.margin_left, viewer.dims.margin_right = self._saved["margins"]
        active = self._saved.get("active")
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active
        self._saved = {}
        self._shown = {}
        self.call = None

    @contextmanager
    def paused(self):
        """Hide the panels' images while the view moves and they get new sessions.

        napari slices only visible layers: without this, a step to another call
        would resample the old sessions' planes at the new plane, then the new
        sessions' (0.3–1.5 s a plane on a 1024 × 1024 registered series).
        """
        images = [side["image"] for side in self.layers.values() if "image" in side]
        for layer in images:
            layer.visible = False
        try:
            yield
        finally:
            for layer in images:
                layer.visible = True

    def was_visible(self, layer) -> bool | None:
        """Whether ``layer`` was visible before the comparison hid it (None: not known)."""
        for saved, visible in self._saved.get("visible", []):
            if saved is layer:
                return visible
        return None

    def session_at(self, viewbox) -> int | None:
        """The session shown in grid viewbox ``(row, column)``, or None."""
        if not self.active or viewbox is None:
            return None
        viewer = self.state.viewer
        for i in _grid(viewer).contents_at(tuple(viewbox), viewer.layers):
            info = (viewer.layers[i].metadata or {}).get(META_KEY, {})
            if info.get("role") == ROLE and "session" in info:
                return int(info["session"])
        return None

    def selected(self) -> list[tuple[int, int]]:
        """(spine_id, session) of the spines selected in the panels."""
        out = []
        for side in self.layers.values():
            layer = side["spines"]
            feats = layer.features
            out += [(int(feats["spine_id"].iloc[i]), int(feats["session"].iloc[i]))
                    for i in sorted(layer.selected_data) if i < len(feats)]
        return out

    def select(self, spine_id: int, session: int) -> bool:
        """Select one observation in the panel that shows its session (clears the rest)."""
        for side in self.layers.values():
            side["spines"].selected_data = set()
        return self._select_more(spine_id, session)

    def _select_more(self, spine_id: int, session: int) -> bool:
        found = False
        for side in self.layers.values():
            layer = side["spines"]
            f = layer.features
            if not len(f):
                continue
            hit = np.flatnonzero((f["spine_id"].to_numpy() == spine_id)
                                 & (f["session"].to_numpy() == session))
            if len(hit):
                layer.selected_data = set(layer.selected_data) | {int(i) for i in hit}
                found = True
        return found

    # ------------------------------------------------------------------ building
    def _open(self) -> None:
        viewer = self.state.viewer
        grid = _grid(viewer)
        self.project = self.state.project
        self._saved = {"grid": (grid.enabled, grid.stride, tuple(grid.shape), grid.spacing),
                       "visible": [(layer, bool(layer.visible)) for layer in viewer.layers],
                       "active": viewer.layers.selection.active,
                       "margins": (tuple(viewer.dims.margin_left),
                                   tuple(viewer.dims.margin_right))}
        from napari.layers import Image, Points

        image = self.state.layer("sessions")
        use_image = image is not None and image.ndim == 4
        at = 0
        for side in SIDES:
            group: dict[str, Any] = {}
            if use_image:
                group["image"] = Image(
                    image.data[0], name=f"{side}: session", scale=image.scale[1:],
                    translate=image.translate[1:], colormap=image.colormap,
                    contrast_limits=image.contrast_limits, gamma=image.gamma,
                    projection_mode="none",
                    metadata={META_KEY: {"role": ROLE, "side": side, "session": 0}})
            data, kwargs, _ = session_points(self.state.project.results, 0, f"{side}: spines",
                                             self.state.project.folder)
            group["spines"] = Points(data, ndim=3, **kwargs)
            self._tools.append(PointTools(
                self.state, group["spines"],
                lambda side=side: self.active and not self._filling and side in self._shown,
                session=lambda side=side: self._shown[side][1]))
            data, kwargs, _ = ring_points((0.0, 0.0), "", f"{side}: call")
            group["ring"] = Points(data, **kwargs)
            for layer in group.values():
                viewer.layers.insert(at, layer)
                at += 1
            self.layers[side] = group
        self._hide_others()
        grid.stride = len(self.layers["before"])
        grid.shape = (1, 2)
        grid.spacing = 0.02
        grid.enabled = True
        if self._saved["active"] is not None:
            viewer.layers.selection.active = self._saved["active"]
        self._zoom_in()
        _widen_z_margin(viewer, COMPARE_MARGIN_UM)
        viewer.layers.events.inserted.connect(self._on_inserted)

    def _on_inserted(self, event=None) -> None:
        """A layer added while comparing is hidden (else it would take a viewbox)."""
        if self.active:
            self._hide_others()

    def _hide_others(self) -> None:
        viewer = self.state.viewer
        ours = {id(layer) for side in self.layers.values() for layer in side.values()}
        known = {id(layer) for layer, _ in self._saved.get("visible", [])}
        for layer in viewer.layers:
            if id(layer) in ours:
                continue
            if id(layer) not in known:  # a layer added while comparing
                self._saved.setdefault("visible", []).append((layer, bool(layer.visible)))
            layer.visible = False

    def _zoom_in(self) -> None:
        """Zoom so that each panel is about :data:`PANEL_WIDTH_UM` wide if it shows more."""
        from ._state import viewer_camera

        viewer = self.state.viewer
        size = getattr(getattr(viewer, "canvas", None), "size", None)
        width_px = float(size[1]) / 2 if size is not None and size[1] > 0 else 400.0
        camera = viewer_camera(viewer)
        if width_px / max(camera.zoom, 1e-9) > 2 * PANEL_WIDTH_UM:
            camera.zoom = width_px / PANEL_WIDTH_UM

    def _fill(self, select: bool = True) -> None:
        """Put the current call's two sessions, spines and rings into the panels."""
        call, results = self.call, self.state.project.results
        image = self.state.layer("sessions")
        days = None
        if results.sessions is not None and "day" in results.sessions:
            days = pd.to_numeric(results.sessions["day"], errors="coerce").tolist()
        labels = panel_labels(call, days)
        every = None
        for side, label in zip(SIDES, labels):
            group = self.layers[side]
            k = int(call[f"{side}_session"])
            ring_yx = (float(call[f"{side}_y_um"]), float(call[f"{side}_x_um"]))
            shown = self._shown.get(side)
            if shown is None or shown[0] is not results or shown[1] != k:
                # another session or other results: new image and spines (else keep them)
                if "image" in group and image is not None and k < image.data.shape[0]:
                    group["image"].data = image.data[k]
                    group["image"].metadata = {META_KEY: {"role": ROLE, "side": side,
                                                          "session": k}}
                if every is None:
                    every = spines_layer(results, self.state.project.folder)
                data, kwargs, _ = session_points(results, k, group["spines"].name,
                                                 self.state.project.folder, every)
                self._filling = True
                try:
                    update_points(group["spines"], data, kwargs, text=True)
                finally:
                    self._filling = False
                self._shown[side] = (results, k)
            ring = group["ring"]
            ring.data = np.array([ring_yx])
            ring.features = pd.DataFrame({"label": [label]})
            ring.refresh()
        if select:
            self.select(int(call["spine_id"]), int(call["session"]))


def plane_um(call: pd.Series, comparing: bool = True) -> float:
    """The z (µm) to show ``call`` at: the spine's, or while comparing the middle of
    the two circled sites (a restored spine and its lost predecessor may lie in
    different planes; the middle shows both within the viewer's ±1 µm)."""
    if not comparing:
        return float(call["z_um"])
    return 0.5 * (float(call["before_z_um"]) + float(call["after_z_um"]))


def _widen_z_margin(viewer, margin_um: float) -> None:
    """Show points within at least ``margin_um`` of the plane (z is the second-last
    but one axis: (session, z, y, x))."""
    if viewer.dims.ndim < 3:
        return
    z = viewer.dims.ndim - 3
    left, right = list(viewer.dims.margin_left), list(viewer.dims.margin_right)
    left[z], right[z] = max(left[z], margin_um), max(right[z], margin_um)
    viewer.dims.margin_left, viewer.dims.margin_right = tuple(left), tuple(right)


def planes_of(call: pd.Series, image, z_range=None,
              comparing: bool = True) -> list[tuple[int, int]]:
    """(session, plane) of the ``sessions`` image that showing ``call`` reads.

    Comparing: both compared sessions; else the call's own session.
    ``z_range``: the viewer's ``dims.range[1]`` (start, stop, step), whose grid
    the z slider snaps to.
    """
    z_um = plane_um(call, comparing)
    if z_range is not None and z_range[2] > 0:
        start, stop, step = (float(v) for v in z_range)
        z_um = float(np.clip(start + round((z_um - start) / step) * step, start, stop))
    vz, tz = float(image.scale[1]), float(image.translate[1])
    z = int(np.round((z_um - tz) / vz))
    z = int(np.clip(z, 0, image.data.shape[1] - 1))
    if not comparing:
        return [(int(call["session"]), z)]
    return [(int(call["before_session"]), z), (int(call["after_session"]), z)]


class Prefetch:
    """Resample the planes of the next calls in a background thread.

    The registered sessions are resampled plane by plane when first shown
    (:func:`spinetrack_napari._convert.session_stack` keeps them); reading the
    next call's planes while a person looks at the current one makes *Next*
    show them without the wait. One worker thread, newest request first. The
    thread calls the plane cache directly (:func:`plane_source`), never dask:
    napari's slicing computes dask arrays in the GUI thread with its dask cache
    callbacks active, and those race with a compute in another thread. A stack
    that is not resampled lazily (in memory already) needs no prefetch.
    """

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spinetrack-prefetch")
        self._pending = None

    def request(self, image, planes: list[tuple[int, int]]) -> None:
        source = plane_source(image.data)
        if source is None:
            return
        if self._pending is not None:
            self._pending.cancel()  # an older request not started yet
        self._pending = self._pool.submit(_warm_planes, source, planes)

    def wait(self, timeout: float | None = None) -> None:
        if self._pending is not None:
            self._pending.result(timeout)


def _warm_planes(source, planes) -> None:
    for k, z in planes:
        if k > 0:  # session 0 is shown as it is: nothing to resample
            source(k, z)
