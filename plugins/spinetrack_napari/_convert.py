"""Pure conversions between spinetrack tables and napari layer data.

Nothing here imports napari or Qt: every function returns napari's
``(data, kwargs, layer_type)`` tuples (``LayerData``) or plain arrays, so the
conversions can be tested without a viewer.

World coordinates are ``(session, z, y, x)`` with z, y, x in µm in session 0's
frame: session images are resampled into session 0's frame (with the run's
registration) and scaled by session 0's voxel size; spines are placed at their
registered positions (``ref_z_um, ref_y_um, ref_x_um``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spinetrack.edits import position_columns
from spinetrack.fates import FATES
from spinetrack.results import Results

__all__ = [
    "FATE_COLORS",
    "UNKNOWN_COLOR",
    "SOURCE_SYMBOLS",
    "META_KEY",
    "LayerData",
    "fate_colors",
    "spines_layer",
    "tracks_layer",
    "branches_layer",
    "image_layer",
    "session_stack",
    "results_layers",
    "spine_features",
    "points_to_spines",
    "contrast_limits",
    "session_points",
    "ring_points",
]

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]

#: Fixed fate colours (Okabe–Ito, distinguishable with the common colour-vision deficiencies).
FATE_COLORS: dict[str, str] = {
    "stable": "#56B4E9",     # sky blue
    "lost": "#D55E00",       # vermillion
    "formed": "#009E73",     # bluish green
    "transient": "#F0E442",  # yellow
    "restored": "#CC79A7",   # reddish purple
}
UNKNOWN_COLOR = "#BBBBBB"
#: Marker of a spine found by the detector or placed/edited by a person.
SOURCE_SYMBOLS = {"auto": "disc", "manual": "diamond"}
BRANCH_COLOR = "#00FFFF"
BRANCH_HIGHLIGHT = "#FFD700"
#: Key of the layer metadata that tells the widgets which spinetrack layer this is.
META_KEY = "spinetrack"
#: Positions closer than this (µm) are the same position.
_SAME_UM = 1e-4
#: Marker size in µm (world units).
SPINE_SIZE_UM = 1.0
#: Markers are rings in the fate colour with a light fill, so the spine stays visible.
FACE_ALPHA = 0.2

assert set(FATE_COLORS) == set(FATES)


def _rgba(hex_color: str) -> np.ndarray:
    h = hex_color.lstrip("#")
    return np.array([int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)] + [1.0])


def fate_colors(fates: pd.Series, alpha: float = 1.0) -> np.ndarray:
    """(N, 4) RGBA colours for a column of fates (unknown fates grey)."""
    table = {k: _rgba(v) for k, v in FATE_COLORS.items()}
    unknown = _rgba(UNKNOWN_COLOR)
    out = np.array([table.get(f, unknown) for f in fates], float).reshape(-1, 4)
    out[:, 3] = alpha
    return out


def spine_features(results: Results) -> pd.DataFrame:
    """One row per spine observation: what the Points layer carries as features.

    ``spine_id, session, fate, branch_id, arc_um, source`` first, then every
    other column of the spines table (so a layer written without its project
    keeps them: :func:`points_to_spines`).
    """
    sp = results.spines.reset_index(drop=True)
    fate = sp["spine_id"].map(results.fates.set_index("spine_id")["fate"]) \
        if len(results.fates) else pd.Series([""] * len(sp))
    feats = pd.DataFrame({
        "spine_id": sp["spine_id"].astype(int).to_numpy(),
        "session": sp["session"].astype(int).to_numpy(),
        "fate": fate.fillna("").astype(str).to_numpy(),
        "branch_id": sp["branch_id"].astype(int).to_numpy(),
        "arc_um": sp["arc_um"].astype(float).to_numpy(),
        "source": (sp["source"] if "source" in sp.columns else "auto"),
    })
    feats["source"] = feats["source"].fillna("auto").astype(str)
    rest = [c for c in sp.columns if c not in feats.columns]
    return pd.concat([feats, sp[rest]], axis=1)


def _meta(role: str, folder: str | Path | None, **extra) -> dict[str, Any]:
    return {META_KEY: {"role": role, "project": None if folder is None else str(folder),
                       **extra}}


def _frames_meta(results: Results) -> dict[str, Any]:
    """Voxel sizes and registration of the sessions: what maps the points back into each
    session's own image (:func:`points_to_spines`)."""
    from spinetrack.edits import EditError, _voxels

    try:
        voxels = [[float(v) for v in vox] for vox in _voxels(results)]
    except EditError:
        voxels = None
    return {"voxel_size_um": voxels, "transform": results.transform}


LABELS_UP_TO = 150
"""Spine ids are shown by default when no session has more spines than this."""


def spines_layer(results: Results, folder: str | Path | None = None) -> LayerData:
    """Points at the spines' registered positions, coloured by fate, labelled by spine_id.

    Data columns are ``(session, z, y, x)`` with positions in µm (session 0's
    frame). Features: ``spine_id, session, fate, branch_id, arc_um, source``.
    Face colour is the fate (:data:`FATE_COLORS`); detected spines are discs,
    spines placed or edited by a person diamonds.
    """
    sp = results.spines.reset_index(drop=True)
    pos = sp[position_columns(sp)].to_numpy(float)
    data = np.column_stack([sp["session"].to_numpy(float), pos]) if len(sp) \
        else np.zeros((0, 4))
    feats = spine_features(results)
    per_session = int(sp.groupby("session").size().max()) if len(sp) else 0
    kwargs = {
        "name": "spines",
        "features": feats,
        "face_color": fate_colors(feats["fate"], FACE_ALPHA),
        "border_color": fate_colors(feats["fate"]),
        "border_width": 0.18,
        "symbol": [SOURCE_SYMBOLS.get(s, "disc") for s in feats["source"]] or "disc",
        "size": SPINE_SIZE_UM,
        # ids are legible for a few dozen spines; hundreds in a full field hide the image, so
        # they start hidden there ("display text" in the layer controls shows them)
        "text": {"string": "{spine_id}", "size": 7, "color": "white",
                 "anchor": "upper_left", "translation": [0, 0, -0.3, 0.3],
                 "visible": per_session <= LABELS_UP_TO},
        "metadata": _meta("spines", folder, n_sessions=results.n_sessions,
                          **_frames_meta(results)),
        "projection_mode": "all",
    }
    return data, kwargs, "points"


def update_points(layer, data: np.ndarray, kwargs: dict[str, Any], text: bool = False) -> None:
    """Replace a points layer's points and styling in place.

    ``data, kwargs`` as :func:`spines_layer` or :func:`session_points` build
    them; ``text``: also show or hide the labels as ``kwargs`` says. The data
    events this fires are not edits: the caller guards them.
    """
    layer.selected_data = set()
    layer.data = data
    layer.features = kwargs["features"]
    if len(data):
        layer.face_color = kwargs["face_color"]
        layer.border_color = kwargs["border_color"]
        layer.symbol = kwargs["symbol"]
    layer.metadata = kwargs["metadata"]
    if text:
        layer.text.visible = kwargs["text"]["visible"]
    layer.refresh()


def session_points(results: Results, session: int, name: str,
                   folder: str | Path | None = None,
                   every_session: LayerData | None = None) -> LayerData:
    """The spines of one session as 3-D points ``(z, y, x)`` µm, styled as the spines layer.

    For the side-by-side comparison: a layer that shows one session whatever the
    session slider says. Features as :func:`spines_layer`; ``every_session`` is
    that function's result when the caller has it already.
    """
    data, kwargs, kind = every_session if every_session is not None \
        else spines_layer(results, folder)
    kwargs = dict(kwargs)
    keep = np.flatnonzero(data[:, 0].round() == session) if len(data) else np.zeros(0, int)
    feats = kwargs["features"].iloc[keep].reset_index(drop=True)
    symbol = kwargs["symbol"]
    kwargs.update(name=name, features=feats, face_color=kwargs["face_color"][keep],
                  border_color=kwargs["border_color"][keep],
                  symbol=[symbol[i] for i in keep] if isinstance(symbol, list) and len(keep)
                  else "disc",
                  metadata=_meta("compare", folder, session=int(session)))
    kwargs["text"] = dict(kwargs["text"], translation=kwargs["text"]["translation"][1:])
    return data[keep, 1:].reshape(-1, 3), kwargs, kind


#: Diameter of the ring that circles the call in the comparison (µm).
RING_SIZE_UM = 3.0


def ring_points(position_yx, label: str, name: str,
                folder: str | Path | None = None) -> LayerData:
    """A gold ring (y, x) µm around a call, shown in every plane, with a label beside it."""
    data = np.asarray(position_yx, float).reshape(1, 2)
    kwargs = {
        "name": name,
        "features": pd.DataFrame({"label": [label]}),
        "face_color": "transparent",
        "border_color": BRANCH_HIGHLIGHT,
        "border_width": 0.06,
        "size": RING_SIZE_UM,
        "symbol": "disc",
        # centred above the ring, so it stays inside a narrow panel
        "text": {"string": "{label}", "size": 10, "color": BRANCH_HIGHLIGHT,
                 "anchor": "center", "translation": [-0.75 * RING_SIZE_UM, 0.0]},
        "metadata": _meta("compare", folder),
    }
    return data, kwargs, "points"


def tracks_layer(results: Results, folder: str | Path | None = None) -> LayerData | None:
    """Identities as tracks: one track per spine_id seen in two or more sessions."""
    sp = results.spines
    if not len(sp):
        return None
    multi = sp.groupby("spine_id")["session"].transform("size") > 1
    sp = sp[multi].sort_values(["spine_id", "session"])
    if not len(sp):
        return None
    pos = sp[position_columns(sp)].to_numpy(float)
    data = np.column_stack([sp["spine_id"].to_numpy(float), sp["session"].to_numpy(float), pos])
    kwargs = {"name": "identities", "tail_length": 3, "head_length": 0, "tail_width": 2,
              "opacity": 0.6, "blending": "translucent",
              "metadata": _meta("identities", folder)}
    return data, kwargs, "tracks"


def _branch_paths(results: Results) -> tuple[list[np.ndarray], list[int]]:
    """(y, x) µm paths of every branch in session 0's frame (first session it is traced in)."""
    lines = results.lines
    if lines is None or not len(lines):
        return [], []
    frames = None
    paths, ids = [], []
    for bid, g in lines.groupby("branch_id", sort=True):
        if "session" in g.columns:
            first = int(g["session"].min())
            g = g[g["session"] == first]
        else:
            first = 0
        # a global branch may join several traced pieces, each numbering its points from 0:
        # the shared arc frame orders them along the branch
        order = "arc_um" if "arc_um" in g.columns else ("point" if "point" in g.columns else None)
        g = g.sort_values(order, kind="stable") if order else g
        pts = g[["z_um", "y_um", "x_um"]].to_numpy(float)
        if first != 0 and results.transform:
            if frames is None:
                from spinetrack.edits import _Frames

                frames = _Frames(results)
            pts = frames.to_reference(first, pts)
        step = max(1, len(pts) // 200)
        pts = np.vstack([pts[::step], pts[-1:]]) if len(pts) > 1 else pts
        if len(pts) < 2:
            continue
        paths.append(pts[:, 1:])
        ids.append(int(bid))
    return paths, ids


def branches_layer(results: Results, folder: str | Path | None = None,
                   highlight: int | None = None) -> LayerData | None:
    """Branch centre lines as 2-D (y, x) paths in µm, shown in every plane and session."""
    paths, ids = _branch_paths(results)
    if not paths:
        return None
    kwargs = {
        "name": "branches",
        "shape_type": "path",
        "features": pd.DataFrame({"branch_id": ids}),
        "edge_color": [BRANCH_HIGHLIGHT if b == highlight else BRANCH_COLOR for b in ids],
        "edge_width": [0.6 if b == highlight else 0.25 for b in ids],
        "opacity": 0.5,
        "text": {"string": "b{branch_id}", "size": 10, "color": BRANCH_COLOR,
                 "anchor": "upper_left"},
        "metadata": _meta("branches", folder),
    }
    return paths, kwargs, "shapes"


def contrast_limits(stack, low: float = 0.5, high: float = 99.8) -> list[float]:
    """Percentile contrast limits from a subsample of session 0 (dim data needs them)."""
    flat = np.asarray(stack[0]).reshape(-1)
    sample = flat[:: max(1, flat.size // 2_000_000)].astype(float)
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return [float(lo), float(hi)]


def _fit(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or zero-pad a (z, y, x) image to ``shape`` (for unregistered display)."""
    out = np.zeros(shape, dtype=image.dtype)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(image.shape, shape))
    out[sl] = image[sl]
    return out


def _warp_plane(reg, k: int, image: np.ndarray, voxel_um, z: int, shape, ref_voxel_um,
                grid_px: int = 16) -> np.ndarray:
    """Plane ``z`` of session ``k`` resampled into session 0's grid (linear interpolation).

    The map from session 0's frame into session k's is evaluated on a coarse
    (y, x) grid every ``grid_px`` pixels and interpolated in between (the
    registration is smooth at that scale).
    """
    from scipy import ndimage

    _, ny, nx = shape
    gy = np.arange(0, ny + grid_px, grid_px, dtype=float)
    gx = np.arange(0, nx + grid_px, grid_px, dtype=float)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    pts = np.column_stack([np.full(yy.size, z * ref_voxel_um[0]), yy.ravel() * ref_voxel_um[1],
                           xx.ravel() * ref_voxel_um[2]])
    src = np.asarray(reg.from_reference(k, pts), float) / np.asarray(voxel_um, float)
    fy, fx = np.meshgrid(np.arange(ny) / grid_px, np.arange(nx) / grid_px, indexing="ij")
    coords = [ndimage.map_coordinates(src[:, c].reshape(yy.shape), [fy, fx], order=1,
                                      mode="nearest") for c in range(3)]
    return ndimage.map_coordinates(image, coords, order=1, mode="constant",
                                   cval=0).astype(image.dtype)


class _PlaneCache:
    """Registered planes, resampled on first use and kept (least recently used dropped)."""

    def __init__(self, reg, images, voxels, shape, ref_voxel_um, max_planes: int = 96):
        from collections import OrderedDict
        from threading import Lock

        self.reg, self.images, self.voxels = reg, images, voxels
        self.shape, self.ref_voxel_um, self.max_planes = shape, ref_voxel_um, max_planes
        self._planes: OrderedDict = OrderedDict()
        self._lock = Lock()

    def __call__(self, k: int, z: int) -> np.ndarray:
        with self._lock:
            if (k, z) in self._planes:
                self._planes.move_to_end((k, z))
                return self._planes[(k, z)]
        plane = _warp_plane(self.reg, k, self.images[k], self.voxels[k], z, self.shape,
                            self.ref_voxel_um)
        with self._lock:
            self._planes[(k, z)] = plane
            while len(self._planes) > self.max_planes:
                self._planes.popitem(last=False)
        return plane


def session_stack(images: list[np.ndarray], voxels: list, transform: dict | None = None,
                  progress=None):
    """Stack session images into one (session, z, y, x) array on session 0's grid.

    With a registration (``transform``, from ``registration.json``), sessions
    k > 0 are resampled into session 0's frame **lazily**, plane by plane as the
    viewer shows them (a dask array), so opening a large series is quick;
    without one they are cropped or padded to session 0's shape (a numpy array).
    """
    from spinetrack.progress import report

    ref_shape = tuple(images[0].shape)
    reg = None
    if transform:
        try:
            from spinetrack.register import Registration

            reg = Registration.from_dict(transform)
        except ImportError:  # pragma: no cover - register stage not installed
            log.warning("spinetrack.register is not available: sessions shown unregistered")
    if reg is None or len(images) == 1:
        out = np.zeros((len(images),) + ref_shape, dtype=images[0].dtype)
        for k, img in enumerate(images):
            report(progress, "align sessions", k, len(images))
            out[k] = _fit(img, ref_shape)
        report(progress, "align sessions", len(images), len(images))
        return out
    import dask
    import dask.array as da

    ref_vox = tuple(float(v) for v in voxels[0])
    planes_of = _PlaneCache(reg, images, voxels, ref_shape, ref_vox)
    sessions = [da.from_array(images[0], chunks=(1,) + ref_shape[1:])]
    for k in range(1, len(images)):
        planes = [da.from_delayed(dask.delayed(planes_of)(k, z), shape=ref_shape[1:],
                                  dtype=images[k].dtype)
                  for z in range(ref_shape[0])]
        sessions.append(da.stack(planes))
    report(progress, "align sessions", 1, 1)
    stack = da.stack(sessions)
    setattr(stack, PLANES_ATTR, planes_of)
    return stack


#: Attribute of a registered session stack (dask) holding its :class:`_PlaneCache`.
PLANES_ATTR = "spinetrack_planes"


def plane_source(stack):
    """The function ``(session, plane) -> plane`` behind a registered stack, or None.

    Calling it resamples (and keeps) a plane without going through dask, so a
    background thread can warm the planes while napari computes dask arrays in
    the GUI thread (dask's callbacks, such as napari's cache, are not thread-safe).
    """
    return getattr(stack, PLANES_ATTR, None)


def image_layer(stack: np.ndarray, voxel_um, names: list[str] | None = None,
                folder: str | Path | None = None) -> LayerData:
    """The sessions as one 4-D Image layer, scaled in µm."""
    vz, vy, vx = (float(v) for v in voxel_um)
    kwargs = {
        "name": "sessions",
        "scale": (1.0, vz, vy, vx),
        "colormap": "gray",
        "contrast_limits": contrast_limits(stack),
        "axis_labels": ("session", "z", "y", "x"),
        # one plane: napari 0.9 averages the dims margin (kept for the points) by default
        "projection_mode": "none",
        "metadata": _meta("sessions", folder, names=list(names or [])),
    }
    return stack, kwargs, "image"


def results_layers(results: Results, stack: np.ndarray | None = None,
                   voxel_um=None, folder: str | Path | None = None) -> list[LayerData]:
    """Every layer of a run: sessions (if given), branches, identities, spines (on top)."""
    out: list[LayerData] = []
    if stack is not None:
        names = (results.sessions["name"].astype(str).tolist()
                 if results.sessions is not None and "name" in results.sessions else None)
        out.append(image_layer(stack, voxel_um, names, folder))
    for layer in (branches_layer(results, folder), tracks_layer(results, folder),
                  spines_layer(results, folder)):
        if layer is not None:
            out.append(layer)
    return out


def points_to_spines(data: np.ndarray, features: pd.DataFrame, voxels: list,
                     transform: dict | None = None) -> pd.DataFrame:
    """A spines table from Points data ``(session, z, y, x)`` µm (session 0's frame).

    A point still where its features say it was (``ref_*_um``) keeps every
    column of its features, so its row is the spines table's row unchanged.
    A moved point, or one without a ``spine_id`` (added with napari's own
    tools, given a new id, ``source = manual``), is placed in its session's
    own frame by inverting the registration ``transform`` (none: session 0's
    frame is every session's), pixels = µm / that session's voxel size; what
    the detector measured at the old place is unknown (NaN) for it.
    """
    data = np.asarray(data, float).reshape(-1, 4)
    n = len(data)
    feats = features.reset_index(drop=True).copy() if features is not None else pd.DataFrame()
    if len(feats) != n:
        feats = feats.reindex(range(n))
    session = data[:, 0].round().astype(int)
    vox = np.array([voxels[min(s, len(voxels) - 1)] for s in session], float).reshape(-1, 3)
    ids = pd.to_numeric(feats.get("spine_id", pd.Series([np.nan] * n)), errors="coerce")
    ids = ids.to_numpy(float).copy()
    # napari gives a point added with its tools the features of the last selected one:
    # a second point of one spine in one session is a new spine
    copied = pd.DataFrame({"id": ids, "session": session}).duplicated().to_numpy()
    missing = ~np.isfinite(ids) | copied
    start = int(np.nanmax(ids)) + 1 if np.isfinite(ids).any() else 0
    ids[missing] = np.arange(start, start + missing.sum())
    ref = ["ref_z_um", "ref_y_um", "ref_x_um"]
    was = (feats[ref].to_numpy(float) if all(c in feats.columns for c in ref)
           else np.full((n, 3), np.nan))
    known = np.isfinite(was).all(axis=1)
    placed = missing | (known & ~(np.abs(was - data[:, 1:]).max(axis=1) <= _SAME_UM))
    relocate = placed | ~known
    own = _own_frame(data[:, 1:], session, transform)
    out = feats.drop(columns=["fate"], errors="ignore")
    out["spine_id"], out["session"] = ids.astype(int), session
    for c in ("branch_id", "arc_um"):
        if c not in out.columns:
            out[c] = -1 if c == "branch_id" else np.nan
    out["branch_id"] = pd.to_numeric(out["branch_id"], errors="coerce").fillna(-1).astype(int)
    source = out["source"] if "source" in out.columns else pd.Series(["manual"] * n)
    out["source"] = np.where(placed, "manual", source.fillna("manual").astype(str))
    if relocate.any() or not n:  # an empty layer still gets the position columns
        stale = [c for c in out.columns if c not in ("spine_id", "session", "branch_id",
                                                      "arc_um", "source")]
        if placed.any():
            for c in stale:
                if out[c].dtype.kind in "iub":
                    out[c] = out[c].astype(float)
                out.loc[placed, c] = np.nan
        values = {"z_um": own[:, 0], "y_um": own[:, 1], "x_um": own[:, 2],
                  "z": own[:, 0] / vox[:, 0], "y": own[:, 1] / vox[:, 1],
                  "x": own[:, 2] / vox[:, 2], "ref_z_um": data[:, 1],
                  "ref_y_um": data[:, 2], "ref_x_um": data[:, 3]}
        for c, v in values.items():
            if c not in out.columns:
                out[c] = np.nan
            out.loc[relocate, c] = v[relocate]
    if "length_um" not in out.columns:
        out["length_um"] = np.nan
    return out


def _own_frame(ref_um: np.ndarray, session: np.ndarray, transform: dict | None) -> np.ndarray:
    """Positions in session 0's frame (µm) mapped into each point's own session frame."""
    own = np.array(ref_um, float).reshape(-1, 3)
    if not transform:
        return own
    from spinetrack.register import Registration

    reg = Registration.from_dict(transform)
    for k in np.unique(session):
        if k > 0:
            rows = session == k
            own[rows] = np.asarray(reg.from_reference(int(k), own[rows]), float)
    return own
