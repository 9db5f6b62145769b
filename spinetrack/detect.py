"""Spine detection on traced dendrites.

A spine head is a local brightness maximum (after smoothing at the head
scale) that lies outside the shaft of a traced dendrite, no farther than a
spine can reach, and is joined to the shaft by signal (a neck), not separated
from it by background as an axonal bouton lying nearby is. Long protrusions
whose far end is no brighter than their neck are filopodia.

Intensities are measured relative to the session's own shaft brightness (the
median along the traced centre lines), so a dim session gives the same calls
as a bright one.

Examples
--------
>>> import numpy as np
>>> from spinetrack.params import Params
>>> image = np.zeros((1, 64, 64), np.float32)
>>> tracing = trace_dendrites(image, (1.0, 0.1, 0.1), Params().trace)
>>> len(detect_spines(image, (1.0, 0.1, 0.1), tracing, Params().detect))
0
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .progress import report
from .trace import Tracing, _as_stack, trace_dendrites

__all__ = ["DETECTION_COLUMNS", "detect_spines", "detect_session"]

DETECTION_COLUMNS = ["z", "y", "x", "z_um", "y_um", "x_um", "branch_id", "arc_um", "base_z",
                     "base_y", "base_x", "side", "length_um", "head_intensity", "head_radius_um",
                     "score", "kind"]

_TILE = 160  # (y, x) tile edge in pixels for the 3-D filtering
_Z_WEIGHT = 0.5  # z distances count half when finding the nearest shaft point (axial blur)


def empty_detections() -> pd.DataFrame:
    """A detections table with no rows and the right columns and types."""
    cols = {c: pd.Series(dtype=float) for c in DETECTION_COLUMNS}
    cols["branch_id"] = pd.Series(dtype=int)
    cols["side"] = pd.Series(dtype=int)
    cols["kind"] = pd.Series(dtype=object)
    return pd.DataFrame(cols)


def detect_spines(image: np.ndarray, voxel_size_um, tracing: Tracing, params=None,
                  progress=None) -> pd.DataFrame:
    """Find spine heads along traced dendrites.

    Parameters
    ----------
    image : ndarray, shape (Z, Y, X) or (Y, X)
        The session's stack.
    voxel_size_um : sequence of 3 float
        (z, y, x) voxel size in µm.
    tracing : Tracing
        Centre lines of this session (:func:`spinetrack.trace.trace_dendrites`).
    params : DetectParams, optional
        Detection parameters (defaults when None).
    progress : callable, optional
        ``progress(stage, done, total)``, called once per image tile; may raise
        ``Cancelled``.

    Returns
    -------
    DataFrame
        One row per detection, columns :data:`DETECTION_COLUMNS` (see
        ``docs/architecture.md``); ``kind`` is ``"spine"`` or ``"filopodium"``.
        Sorted by ``branch_id``, ``arc_um``.
    """
    from .params import DetectParams

    params = params or DetectParams()
    stack = _as_stack(image)
    voxel = np.asarray([float(v) for v in voxel_size_um])
    lines = tracing.lines
    if len(lines) == 0:
        report(progress, "detect", 1, 1)
        return empty_detections()
    line_px = lines[["z", "y", "x"]].to_numpy(float)
    reach_um = float(lines["radius_um"].max()) + params.max_spine_length_um + 0.5
    bg = float(np.median(stack[:, ::4, ::4]))
    cands, shaft_values = _candidates(stack, voxel, line_px, reach_um, params, bg, progress)
    if not len(cands) or not len(shaft_values):
        return empty_detections()
    shaft = max(float(np.median(shaft_values)) - bg, 1e-6)
    return _describe(cands, lines, voxel, params, bg, shaft)


def _tiles(shape, line_px, reach_px):
    """(y0, y1, x0, x1, z0, z1) of tiles that hold centre-line points within reach."""
    nz, ny, nx = shape
    out = []
    for y0 in range(0, ny, _TILE):
        for x0 in range(0, nx, _TILE):
            y1, x1 = min(ny, y0 + _TILE), min(nx, x0 + _TILE)
            near = ((line_px[:, 1] >= y0 - reach_px[1]) & (line_px[:, 1] < y1 + reach_px[1])
                    & (line_px[:, 2] >= x0 - reach_px[2]) & (line_px[:, 2] < x1 + reach_px[2]))
            if not near.any():
                continue
            zs = line_px[near, 0]
            z0 = max(0, int(np.floor(zs.min() - reach_px[0])))
            z1 = min(nz, int(np.ceil(zs.max() + reach_px[0])) + 1)
            out.append((y0, y1, x0, x1, z0, z1))
    return out


def _candidates(stack, voxel, line_px, reach_um, params, bg, progress):
    """Local maxima of the head-scale smoothed stack near the lines, tile by tile.

    Returns a table of candidate heads (pixel position, smoothed value, blob
    response, neck minimum and mean along the straight path to the nearest
    centre-line point) and the smoothed values at the centre-line points.
    """
    sig = params.head_sigma_um / voxel
    sig_z = 0.0 if stack.shape[0] == 1 else max(sig[0], 0.5)
    small_sig = np.array([sig_z, sig[1], sig[2]])
    large_sig = np.array([sig_z, 2.5 * sig[1], 2.5 * sig[2]])
    halo = np.ceil(3 * large_sig).astype(int) + 2
    reach_px = np.r_[reach_um / voxel[0] + 1.0, reach_um / voxel[1:]]
    tiles = _tiles(stack.shape, line_px, reach_px)
    peak_size = np.maximum(np.round(2 * params.head_sigma_um / voxel).astype(int) | 1, 1)
    peak_size[0] = 3 if stack.shape[0] >= 3 else 1
    tree_xy = cKDTree(line_px[:, 1:] * voxel[1:])
    rows, shaft_values = [], []
    report(progress, "detect", 0, len(tiles))
    for k, (y0, y1, x0, x1, z0, z1) in enumerate(tiles):
        ya, yb = max(0, y0 - halo[1]), min(stack.shape[1], y1 + halo[1])
        xa, xb = max(0, x0 - halo[2]), min(stack.shape[2], x1 + halo[2])
        za, zb = max(0, z0 - halo[0]), min(stack.shape[0], z1 + halo[0])
        crop = stack[za:zb, ya:yb, xa:xb].astype(np.float32)
        g = ndi.gaussian_filter(crop, small_sig, truncate=3.0, mode="nearest")
        dog = g - ndi.gaussian_filter(crop, large_sig, truncate=3.0, mode="nearest")
        origin = np.array([za, ya, xa])
        inside = ((line_px[:, 1] >= y0) & (line_px[:, 1] < y1) & (line_px[:, 2] >= x0)
                  & (line_px[:, 2] < x1))
        if inside.any():
            idx = np.round(line_px[inside]).astype(int) - origin
            idx = np.clip(idx, 0, np.array(g.shape) - 1)
            shaft_values.append(g[idx[:, 0], idx[:, 1], idx[:, 2]])
        peaks = (g == ndi.maximum_filter(g, size=tuple(peak_size), mode="nearest")) & (dog > 0)
        pz, py, px = np.nonzero(peaks)
        gz, gy, gx = pz + za, py + ya, px + xa
        keep = ((gy >= y0) & (gy < y1) & (gx >= x0) & (gx < x1) & (gz >= z0) & (gz < z1))
        pz, py, px, gz, gy, gx = (a[keep] for a in (pz, py, px, gz, gy, gx))
        if len(pz):
            d_xy, _ = tree_xy.query(np.column_stack([gy, gx]) * voxel[1:],
                                    distance_upper_bound=reach_um)
            near = np.isfinite(d_xy)
            pz, py, px, gz, gy, gx = (a[near] for a in (pz, py, px, gz, gy, gx))
        if len(pz):
            rows.append(pd.DataFrame({
                "z": gz.astype(float), "y": gy.astype(float), "x": gx.astype(float),
                "value": g[pz, py, px], "dog": dog[pz, py, px],
                "tile": k}))
            rows[-1] = _refine_and_neck(rows[-1], g, origin, line_px, voxel)
        report(progress, "detect", k + 1, len(tiles))
    cands = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return cands, (np.concatenate(shaft_values) if shaft_values else np.zeros(0))


def _nearest_line_point(points_px, line_px, voxel):
    w = voxel * np.array([_Z_WEIGHT, 1.0, 1.0])
    tree = cKDTree(line_px * w)
    _, j = tree.query(points_px * w)
    return j


def _refine_and_neck(df, g, origin, line_px, voxel, n_samples: int = 24):
    """Sub-pixel head position, and the signal along the straight path to the shaft."""
    p = df[["z", "y", "x"]].to_numpy(float).copy()
    local = p - origin
    # parabolic sub-pixel refinement per axis
    shape = np.array(g.shape)
    idx = local.astype(int)
    for ax in range(3):
        if shape[ax] < 3:
            continue
        lo = idx.copy()
        hi = idx.copy()
        lo[:, ax] = np.clip(idx[:, ax] - 1, 0, shape[ax] - 1)
        hi[:, ax] = np.clip(idx[:, ax] + 1, 0, shape[ax] - 1)
        a = g[lo[:, 0], lo[:, 1], lo[:, 2]]
        b = g[idx[:, 0], idx[:, 1], idx[:, 2]]
        c = g[hi[:, 0], hi[:, 1], hi[:, 2]]
        denom = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denom < 0, 0.5 * (a - c) / denom, 0.0)
        p[:, ax] += np.clip(shift, -0.5, 0.5)
    j = _nearest_line_point(p, line_px, voxel)
    base = line_px[j]
    t = np.linspace(0.0, 1.0, n_samples)
    path = (p[:, None, :] * (1 - t)[None, :, None] + base[:, None, :] * t[None, :, None]) - origin
    vals = ndi.map_coordinates(g, path.reshape(-1, 3).T, order=1, mode="nearest")
    vals = vals.reshape(len(p), n_samples)
    out = df.drop(columns=["tile"]).copy()
    out[["z", "y", "x"]] = p
    out["line_index"] = j
    out["neck_min"] = vals.min(axis=1)
    out["neck_mean"] = vals[:, n_samples // 4: 3 * n_samples // 4].mean(axis=1)
    return out


# detection thresholds in units of the session's median shaft brightness above background,
# calibrated on rr30a-dev and the synthetic presets
_MIN_HEAD = 0.15      # a head is at least this bright
_MIN_NECK = 0.08      # the dimmest point between head and shaft (bouton gap test)
_MIN_BLOB = 0.02      # head-scale blob response (DoG)
_FILOPODIUM_CONTRAST = 1.25  # a long protrusion whose head is not this much brighter than its
                             # neck is a filopodium
_FILOPODIUM_MIN_UM = 2.0


def _describe(cands, lines, voxel, params, bg, shaft):
    """Turn candidate maxima into the detections table (filters applied)."""
    line_px = lines[["z", "y", "x"]].to_numpy(float)
    j = cands["line_index"].to_numpy()
    base = line_px[j]
    head = cands[["z", "y", "x"]].to_numpy(float)
    radius = lines["radius_um"].to_numpy(float)[j]
    d_um = (head - base) * voxel
    dist = np.sqrt((d_um[:, 1:] ** 2).sum(axis=1) + (_Z_WEIGHT * d_um[:, 0]) ** 2)
    value = (cands["value"].to_numpy() - bg) / shaft
    neck_min = (cands["neck_min"].to_numpy() - bg) / shaft
    neck_mean = (cands["neck_mean"].to_numpy() - bg) / shaft
    dog = cands["dog"].to_numpy() / shaft
    head_radius = np.full(len(cands), params.head_sigma_um * 1.5)
    length = dist - radius
    keep = ((length + head_radius >= params.min_protrusion_um)
            & (length <= params.max_spine_length_um)
            & (value >= _MIN_HEAD) & (neck_min >= _MIN_NECK) & (dog >= _MIN_BLOB))
    contrast = value / np.maximum(neck_mean, 1e-6)
    filo = (length >= _FILOPODIUM_MIN_UM) & (contrast < _FILOPODIUM_CONTRAST)
    # side: sign of the cross product of the branch direction and the spine direction (xy)
    tangent = _tangents(lines)[j]
    cross = tangent[:, 0] * d_um[:, 2] - tangent[:, 1] * d_um[:, 1]
    lateral = np.linalg.norm(d_um[:, 1:], axis=1)
    side = np.where(lateral < np.abs(d_um[:, 0]) * _Z_WEIGHT, 0, np.sign(cross)).astype(int)
    out = pd.DataFrame({
        "z": head[:, 0], "y": head[:, 1], "x": head[:, 2],
        "z_um": head[:, 0] * voxel[0], "y_um": head[:, 1] * voxel[1],
        "x_um": head[:, 2] * voxel[2],
        "branch_id": lines["branch_id"].to_numpy(int)[j],
        "arc_um": lines["arc_um"].to_numpy(float)[j],
        "base_z": base[:, 0], "base_y": base[:, 1], "base_x": base[:, 2],
        "side": side, "length_um": np.maximum(length, 0.0),
        "head_intensity": value, "head_radius_um": head_radius,
        "score": dog * np.minimum(neck_min / np.maximum(value, 1e-6), 1.0) * 10,
        "kind": np.where(filo, "filopodium", "spine"),
    })[keep]
    return out.sort_values(["branch_id", "arc_um"], kind="stable").reset_index(drop=True)


def _tangents(lines: pd.DataFrame) -> np.ndarray:
    """Unit (y, x) direction of each centre-line point along its branch."""
    t = np.zeros((len(lines), 2))
    yx = lines[["y", "x"]].to_numpy(float)
    for _, idx in lines.groupby("branch_id", sort=False).indices.items():
        if len(idx) > 1:
            t[idx] = np.gradient(yx[idx], axis=0)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    return t / np.where(norm > 0, norm, 1.0)


def detect_session(session, params=None, progress=None) -> tuple[Tracing, pd.DataFrame]:
    """Trace and detect one session.

    Parameters
    ----------
    session : spinetrack.io.Session
    params : spinetrack.params.Params, optional
        All parameters; the ``trace`` and ``detect`` sections are used.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    (Tracing, DataFrame)
        The tracing and the detections table of :func:`detect_spines`.
    """
    from .params import Params

    params = params or Params()
    tracing = trace_dendrites(session.image, session.voxel_size_um, params.trace, progress)
    spines = detect_spines(session.image, session.voxel_size_um, tracing, params.detect,
                           progress)
    return tracing, spines
