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

_Z_WEIGHT = 0.5  # z distances count half when finding the nearest shaft point (axial blur)
_Z_REACH_UM = 2.5  # heads are searched this far above and below the centre line
_Z_OUTSIDE_UM = 1.5  # a head straight above or below the shaft is at least this far from it
_Z_MIN_RESID = 0.5  # ... and stands out more than a lateral head must (the shaft's axial
                    # blur varies along the shaft)
_OPEN_UM = 2.0  # the shaft model along a branch ignores bumps narrower than this
_CORRIDOR_UM = 0.4  # a neck may bend this far along the branch
_SIG_Z_UM = 0.5  # smoothing along z of the straightened stack
_PEAK_UM = 0.9  # a head is the brightest point within this (arc and offset) ...
_PEAK_Z_UM = 3.0  # ... and this along z
_WALK_FRAC = 0.5  # a protrusion is followed outward while its residual stays above this × the peak


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

    Each branch is *straightened*: the stack is sampled on a grid of (arc along
    the branch, z offset from the centre line, signed offset across it in the
    (y, x) plane). Along the arc the shaft changes slowly and spines are
    narrow bumps, so a grey opening along the arc models the shaft and its
    surroundings; what stands above it (the residual) are spines, boutons and
    noise. Residual maxima outside the shaft and within reach are kept when
    they are bright enough and joined to the shaft by a neck (no dark gap).

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
        ``progress(stage, done, total)``, called once per branch; may raise
        ``Cancelled``.

    Returns
    -------
    DataFrame
        One row per detection, columns :data:`DETECTION_COLUMNS` (see
        ``docs/architecture.md``); ``kind`` is ``"spine"`` or ``"filopodium"``.
        Sorted by ``branch_id``, ``arc_um``.
    """
    cands, frame = _candidates(image, voxel_size_um, tracing, params, progress, describe=False)
    if cands is None or not len(cands):
        return empty_detections()
    return _select(cands, frame, params or _default_params())


def _default_params():
    from .params import DetectParams

    return DetectParams()


class _Frame:
    """Uniformly resampled centre lines of all branches, for nearest-point queries."""

    def __init__(self, lines: pd.DataFrame, voxel: np.ndarray, step_um: float,
                 shape: tuple | None = None) -> None:
        self.shape = shape  # (z, y, x) of the stack, when known
        parts = []
        for bid, g in lines.groupby("branch_id", sort=True):
            arc = g["arc_um"].to_numpy(float)
            n = max(2, int(np.floor((arc[-1] - arc[0]) / step_um)) + 1) if len(g) > 1 else 1
            s = np.linspace(arc[0], arc[-1], n) if len(g) > 1 else arc[:1]
            cols = {c: (np.interp(s, arc, g[c].to_numpy(float)) if len(g) > 1
                        else g[c].to_numpy(float)) for c in ("z", "y", "x", "radius_um")}
            yx_um = np.column_stack([cols["y"] * voxel[1], cols["x"] * voxel[2]])
            if len(s) > 1:
                t = np.gradient(yx_um, axis=0)
                t = ndi.gaussian_filter1d(t, max(0.5 / step_um, 1.0), axis=0, mode="nearest")
            else:
                t = np.array([[0.0, 1.0]])
            t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
            parts.append(pd.DataFrame({"branch_id": int(bid), "arc_um": s, **cols,
                                       "ty": t[:, 0], "tx": t[:, 1]}))
        self.points = pd.concat(parts, ignore_index=True)
        # the branch a detection is reported on (a hidden line's is the traced one above it)
        self.points["report_id"] = self.points["branch_id"]
        self.voxel = voxel
        self.zyx = self.points[["z", "y", "x"]].to_numpy(float)
        self._tree = cKDTree(self.zyx * voxel * np.array([_Z_WEIGHT, 1.0, 1.0]))

    def nearest(self, zyx_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the nearest resampled point and the weighted distance in µm."""
        d, j = self._tree.query(zyx_px * self.voxel * np.array([_Z_WEIGHT, 1.0, 1.0]))
        return j, d


def _candidates(image, voxel_size_um, tracing, params, progress, describe: bool = True):
    """Candidate heads along every traced branch, and the frame of the branches.

    ``describe=False`` leaves out the measurements no selection test uses (the
    haze beyond each head, :func:`_haze`): detection does not need them, the
    candidate table for calibration and learning does.
    """
    params = params or _default_params()
    stack = _as_stack(image)
    voxel = np.asarray([float(v) for v in voxel_size_um])
    lines = tracing.lines
    if len(lines) == 0:
        report(progress, "detect", 1, 1)
        return None, None
    step = float(min(voxel[1], voxel[2]))
    lines = _straight_free_ends(_unbend(lines, voxel), tracing.graph, voxel, stack.shape)
    frame = _Frame(lines, voxel, step, stack.shape)
    bg = float(np.median(stack[:, ::4, ::4]))
    reach_um = float(frame.points["radius_um"].max()) + params.max_spine_length_um + 0.5
    offsets = np.arange(-np.ceil(reach_um / step), np.ceil(reach_um / step) + 1) * step
    nzr = 0 if stack.shape[0] == 1 else int(np.ceil(_Z_REACH_UM / voxel[0]))
    dz = np.arange(-nzr, nzr + 1, dtype=float)
    groups = list(frame.points.groupby("branch_id", sort=True).indices.items())
    report(progress, "detect", 0, 2 * len(groups))
    n_ext = int(round(_END_EXT_UM / step))
    volumes = []
    for k, (bid, idx) in enumerate(groups):
        pts = _extend_ends(frame.points.iloc[idx], n_ext, voxel)
        volumes.append((pts, _straighten(stack, pts, voxel, offsets, dz, params)))
        report(progress, "detect", k + 1, 2 * len(groups))
    centre = [v[n_ext:len(v) - n_ext, nzr, len(offsets) // 2] for _, v in volumes]
    shaft = float(np.median(np.concatenate(centre))) - bg
    if not np.isfinite(shaft) or shaft <= 0:
        return None, frame
    hidden = _hidden_lines(stack, frame, voxel, bg, shaft, params)
    if len(hidden):
        frame = _Frame(pd.concat([lines, hidden.drop(columns="parent_id")], ignore_index=True),
                       voxel, step, stack.shape)
        parent = dict(zip(hidden["branch_id"], hidden["parent_id"]))
        frame.points["report_id"] = frame.points["branch_id"].map(
            lambda b: parent.get(b, b)).astype(int)
        hidden_ids = set(hidden["branch_id"])
        for bid, idx in frame.points.groupby("branch_id", sort=True).indices.items():
            if bid in hidden_ids:
                pts = _extend_ends(frame.points.iloc[idx], n_ext, voxel)
                volumes.append((pts, _straighten(stack, pts, voxel, offsets, dz, params)))
    rows = []
    for k, (pts, vol) in enumerate(volumes):
        vol = (vol - np.float32(bg)) / np.float32(shaft)
        rows.append(_branch_peaks(vol, pts, offsets, dz, step, voxel, params,
                                  inner=(n_ext, len(pts) - n_ext), describe=describe))
        report(progress, "detect", len(groups) + k + 1, len(groups) + len(volumes))
    cands = pd.concat(rows, ignore_index=True) if rows else None
    return cands, frame


_HIDDEN_GAP_UM = 4.0  # a dendrite hidden under (or over) a traced one lies at least this far
                      # from it in z ...
_HIDDEN_REACH_UM = 1.0  # ... within this of the traced centre line across it ...
_HIDDEN_MIN = 0.4  # ... at least this bright (units of the session's shaft) ...
_HIDDEN_DIP = 0.6  # ... separated from the traced one by a dip below this × its brightness ...
_HIDDEN_MIN_RUN_UM = 5.0  # ... along at least this much of the traced line
_HIDDEN_AWAY_UM = 1.5  # and no traced line passes nearer than this (z counts half)


def _hidden_lines(stack, frame: _Frame, voxel, bg: float, shaft: float, params) -> pd.DataFrame:
    """Centre lines of dendrites that run under or over a traced one in the projection.

    Tracing works on the maximum projection, so where two dendrites at different
    depths overlap in it only one is traced and the spines of the other lie
    outside the z range searched around the traced line. Under each traced
    line, the column over the whole stack (within ``_HIDDEN_REACH_UM`` across
    the line) is searched for a second bright maximum at least
    ``_HIDDEN_GAP_UM`` away in z, separated from the traced shaft by a dip;
    where it continues along the line for ``_HIDDEN_MIN_RUN_UM`` and no other
    traced line passes there, it is returned as an extra centre line.

    Returns
    -------
    DataFrame
        Columns ``branch_id`` (new ids above the traced ones), ``parent_id`` (the
        traced branch above or below), ``z, y, x`` (pixels), ``arc_um`` (the
        traced branch's arc) and ``radius_um``; empty when there is none.
    """
    nz = stack.shape[0]
    if nz < 3:
        return pd.DataFrame()
    step = float(min(voxel[1], voxel[2]))
    r = int(np.ceil(_HIDDEN_REACH_UM / step))
    offsets = np.arange(-r, r + 1) * step
    zs = np.arange(nz, dtype=float)
    gap = _HIDDEN_GAP_UM / float(voxel[0])
    run = int(np.ceil(_HIDDEN_MIN_RUN_UM / step))
    next_id = int(frame.points["branch_id"].max()) + 1
    out = []
    for bid, idx in frame.points.groupby("branch_id", sort=True).indices.items():
        pts = frame.points.iloc[idx]
        if len(pts) < run:
            continue
        ny, nx = pts["tx"].to_numpy(), -pts["ty"].to_numpy()
        shape = (len(pts), nz, len(offsets))
        z = np.broadcast_to(zs[None, :, None], shape)
        y = pts["y"].to_numpy()[:, None, None] + ny[:, None, None] * offsets / voxel[1]
        x = pts["x"].to_numpy()[:, None, None] + nx[:, None, None] * offsets / voxel[2]
        coords = np.stack([np.broadcast_to(c, shape).ravel() for c in (z, y, x)])
        vol = ndi.map_coordinates(stack, coords, output=np.float32, order=1, mode="nearest")
        vol = ndi.gaussian_filter(vol.reshape(shape), (params.head_sigma_um / step,
                                                       _SIG_Z_UM / float(voxel[0]),
                                                       params.head_sigma_um / step),
                                  mode="nearest")
        vol = (vol - np.float32(bg)) / np.float32(shaft)
        prof = vol.max(axis=2)  # (arc, z)
        z_line = pts["z"].to_numpy()
        far = np.abs(zs[None, :] - z_line[:, None]) >= gap
        z2 = np.argmax(np.where(far, prof, -np.inf), axis=1)
        v2 = prof[np.arange(len(pts)), z2]
        lo = np.minimum(np.round(z_line).astype(int), z2)
        hi = np.maximum(np.round(z_line).astype(int), z2)
        dip = np.array([prof[a, lo[a]:hi[a] + 1].min() for a in range(len(pts))])
        ok = (v2 >= _HIDDEN_MIN) & (dip <= _HIDDEN_DIP * v2)
        # a dendrite is continuous in depth: z within 1.5 µm of its running median
        z_med = ndi.median_filter(z2.astype(float), size=_odd(2.0 / step), mode="nearest")
        ok &= np.abs(z2 - z_med) * voxel[0] <= 1.5
        off2 = offsets[np.argmax(vol[np.arange(len(pts)), z2], axis=1)]
        off2 = ndi.median_filter(off2, size=_odd(1.0 / step), mode="nearest")
        hz = ndi.gaussian_filter1d(z_med, 0.5 / step, mode="nearest")
        hy = pts["y"].to_numpy() + ny * off2 / voxel[1]
        hx = pts["x"].to_numpy() + nx * off2 / voxel[2]
        _, d_other = frame.nearest(np.column_stack([hz, hy, hx]))
        ok &= d_other >= _HIDDEN_AWAY_UM
        ok = ndi.binary_closing(ok, np.ones(_odd(1.0 / step), bool))
        labels, n = ndi.label(ok)
        for k in range(1, n + 1):
            sel = np.flatnonzero(labels == k)
            if len(sel) < run:
                continue
            lat = vol[sel, z2[sel]]
            half = 0.5 * lat.max(axis=1, keepdims=True)
            radius = float(np.clip(np.median((lat >= half).sum(axis=1)) * step / 2, 0.3, 1.0))
            out.append(pd.DataFrame({"branch_id": next_id, "parent_id": int(bid),
                                     "z": hz[sel], "y": hy[sel], "x": hx[sel],
                                     "arc_um": pts["arc_um"].to_numpy()[sel],
                                     "radius_um": radius}))
            next_id += 1
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


_END_EXT_UM = 2.0  # each branch is straightened this far beyond its ends


def _extend_ends(pts: pd.DataFrame, n: int, voxel) -> pd.DataFrame:
    """A branch's resampled points with ``n`` more at each end, straight along the end tangent.

    The shaft model (an opening along the arc) and the peak search need context
    beyond a branch's ends: without it a head within about 1 µm of an end or a
    junction is taken for part of the shaft.
    """
    if n < 1 or len(pts) < 2:
        return pts
    step = float(min(voxel[1], voxel[2]))
    k = np.arange(n, 0, -1, dtype=float) * step  # µm before the start, farthest first
    first, last = pts.iloc[0], pts.iloc[-1]
    before = pts.iloc[[0] * n].reset_index(drop=True)
    before["y"] = first["y"] - k * first["ty"] / voxel[1]
    before["x"] = first["x"] - k * first["tx"] / voxel[2]
    before["arc_um"] = first["arc_um"] - k
    after = pts.iloc[[-1] * n].reset_index(drop=True)
    after["y"] = last["y"] + k[::-1] * last["ty"] / voxel[1]
    after["x"] = last["x"] + k[::-1] * last["tx"] / voxel[2]
    after["arc_um"] = last["arc_um"] + k[::-1]
    return pd.concat([before, pts, after], ignore_index=True)


_UNBEND_UM = 4.0  # the centre line's path across is a running median over this much arc


def _unbend(lines: pd.DataFrame, voxel) -> pd.DataFrame:
    """Centre lines without short bends (a running median of y and x along each branch).

    Where a big head sits against the shaft, the traced line bends into it for about
    a micrometre; the head then lies on the line and is not found.
    """
    out = []
    for _, g in lines.groupby("branch_id", sort=True):
        g = g.copy()
        arc = g["arc_um"].to_numpy(float)
        if len(g) > 3 and arc[-1] > arc[0]:
            per_um = (len(g) - 1) / (arc[-1] - arc[0])
            size = _odd(_UNBEND_UM * per_um)
            if size >= 3:
                for c in ("y", "x"):
                    g[c] = ndi.median_filter(g[c].to_numpy(float), size=size, mode="nearest")
        out.append(g)
    return pd.concat(out, ignore_index=True) if out else lines


_HOOK_UM = 2.0  # a free end's last stretch up to a spine's length ...
_HOOK_DEV_UM = 0.5  # ... that leaves the straight continuation of the line by more than
                    # about a shaft radius is a spine the skeleton ran into
_HOOK_FIT_UM = 2.0  # the continuation: the direction of the line over this before it
_HOOK_EDGE_UM = 2.0  # ends this near the image's edge are left alone (the skeleton bends
                     # where a dendrite leaves the image)


def _straight_free_ends(lines: pd.DataFrame, graph: pd.DataFrame, voxel,
                        shape=None) -> pd.DataFrame:
    """Centre lines whose free ends do not hook into a spine.

    Where a dendrite ends next to a spine, the skeleton often runs into the
    spine for its last micrometre or two, and the head then lies on the line
    and is not found (the running median of :func:`_unbend` keeps a hook at an
    end). A dendrite's end does not turn by more than its own radius within a
    spine's length: at every free end (``end`` node in ``graph``) farther than
    ``_HOOK_EDGE_UM`` from the image's edge (``shape``), the last ``_HOOK_UM``
    of line is replaced by the straight continuation of the ``_HOOK_FIT_UM``
    before it when it leaves that continuation by more than ``_HOOK_DEV_UM``
    in (y, x). Depth and arc are kept.
    """
    if graph is None or not len(graph) or not len(lines):
        return lines
    kinds = graph.set_index("branch_id")[["start_kind", "end_kind"]]
    size = (np.asarray(shape[1:], float) * voxel[1:]) if shape is not None else None
    out = []
    for bid, g in lines.groupby("branch_id", sort=True):
        arc = g["arc_um"].to_numpy(float)
        if bid not in kinds.index or len(g) < 5 or arc[-1] - arc[0] < 2 * (_HOOK_UM
                                                                          + _HOOK_FIT_UM):
            out.append(g)
            continue
        yx = g[["y", "x"]].to_numpy(float) * voxel[1:]
        for from_start, kind in ((True, kinds.at[bid, "start_kind"]),
                                 (False, kinds.at[bid, "end_kind"])):
            end = yx[0] if from_start else yx[-1]
            if kind != "end" or (size is not None
                                 and min(end.min(), (size - end).min()) < _HOOK_EDGE_UM):
                continue
            a = arc - arc[0] if from_start else arc[-1] - arc  # distance from this end
            hook = a < _HOOK_UM
            fit = (a >= _HOOK_UM) & (a < _HOOK_UM + _HOOK_FIT_UM)
            if fit.sum() < 2:
                continue
            inner, outer = yx[fit][np.argmin(a[fit])], yx[fit][np.argmax(a[fit])]
            t = (inner - outer) / max(float(np.linalg.norm(inner - outer)), 1e-9)
            straight = inner + (_HOOK_UM - a[hook])[:, None] * t
            if np.linalg.norm(yx[hook] - straight, axis=1).max() > _HOOK_DEV_UM:
                yx[hook] = straight
        out.append(g.assign(y=yx[:, 0] / voxel[1], x=yx[:, 1] / voxel[2]))
    return pd.concat(out, ignore_index=True)


def _straighten(stack, pts: pd.DataFrame, voxel, offsets, dz, params) -> np.ndarray:
    """Sample the stack on (arc, dz, offset) around one branch and smooth it."""
    n = len(pts)
    ny = pts["tx"].to_numpy()  # normal (y, x) = (tx, -ty), a unit vector in µm
    nx = -pts["ty"].to_numpy()
    z = pts["z"].to_numpy()[:, None, None] + dz[None, :, None]
    y = pts["y"].to_numpy()[:, None, None] + (ny[:, None, None] * offsets[None, None, :]) / voxel[1]
    x = pts["x"].to_numpy()[:, None, None] + (nx[:, None, None] * offsets[None, None, :]) / voxel[2]
    shape = (n, len(dz), len(offsets))
    coords = np.stack([np.broadcast_to(c, shape).ravel() for c in (z, y, x)])
    vol = ndi.map_coordinates(stack, coords, output=np.float32, order=1, mode="nearest")
    vol = vol.reshape(shape)
    step = float(min(voxel[1], voxel[2]))
    sig = params.head_sigma_um / step
    sig_z = 0.0 if len(dz) == 1 else _SIG_Z_UM / float(voxel[0])
    return ndi.gaussian_filter(vol, (sig, sig_z, sig), truncate=3.0, mode="nearest")


def _odd(x: float) -> int:
    return max(1, int(round(x)) | 1)


def _branch_peaks(vol, pts, offsets, dz, step, voxel, params, inner=None,
                  describe: bool = True) -> pd.DataFrame:
    """Residual maxima of one straightened branch with their measurements.

    ``inner = (lo, hi)``: only peaks at arc indices ``lo <= i < hi`` are taken (the
    rest of ``vol`` extends the branch beyond its ends, see :func:`_extend_ends`).
    """
    n_arc, n_z, n_off = vol.shape
    open_len = _odd(_OPEN_UM / step)
    if n_arc >= 3:
        shaft_model = ndi.grey_opening(vol, size=(min(open_len, _odd(n_arc) if n_arc % 2 else
                                                      n_arc - 1), 1, 1), mode="nearest")
    else:
        shaft_model = np.minimum(vol, vol.min(axis=0, keepdims=True))
    resid = vol - shaft_model
    # noise of the smoothed stack, from the background far out on both sides
    lo, hi = inner if inner is not None else (0, n_arc)
    lo_arc, hi_arc = lo, hi
    far = vol[lo:hi, :, np.abs(offsets) >= 0.7 * np.abs(offsets).max()]
    noise = 1.4826 * float(np.median(np.abs(far - np.median(far)))) if far.size else 0.0
    foot = (_odd(_PEAK_UM / step), min(_odd(_PEAK_Z_UM / voxel[0]), n_z), _odd(_PEAK_UM / step))
    peaks, plane_peak = _peak_masks(resid, foot)
    peaks[:lo] = False
    peaks[hi:] = False
    ia, iz, io = np.nonzero(peaks)
    if not len(ia):
        return pd.DataFrame()
    centre = n_off // 2
    radius = pts["radius_um"].to_numpy()[ia]
    off = offsets[io]
    lateral = np.abs(off) >= _INSIDE * radius
    # heads above or below the shaft (spines pointing along z)
    above = (params.z_spines & ~lateral & (np.abs(dz[iz]) * voxel[0] >= _Z_OUTSIDE_UM)
             & (resid[ia, iz, io] >= _Z_MIN_RESID))
    keep = lateral | above
    ia, iz, io, radius, off, lateral = (a[keep] for a in (ia, iz, io, radius, off, lateral))
    plane_only = plane_peak[ia, iz, io]
    if not len(ia):
        return pd.DataFrame()
    strength = resid[ia, iz, io]
    ia, io, walked = _walk_out(resid, ia, iz, io, centre, _odd(params.head_sigma_um / step),
                               lateral)
    # a lateral head's depth: the plane of its column's largest residual (the walk out
    # leaves the peak's plane behind; one head's axial blur leaves maxima on several planes)
    iz = np.where(lateral, np.argmax(resid[ia, :, io], axis=1), iz)
    # sub-pixel refinement along each axis of the straightened grid
    pos = np.column_stack([ia, iz, io]).astype(float)
    for ax, size in enumerate(vol.shape):
        if size < 3:
            continue
        lo = np.column_stack([ia, iz, io])
        hi = lo.copy()
        lo[:, ax] = np.clip(lo[:, ax] - 1, 0, size - 1)
        hi[:, ax] = np.clip(hi[:, ax] + 1, 0, size - 1)
        a = resid[lo[:, 0], lo[:, 1], lo[:, 2]]
        b = resid[ia, iz, io]
        c = resid[hi[:, 0], hi[:, 1], hi[:, 2]]
        denom = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denom < 0, 0.5 * (a - c) / denom, 0.0)
        if ax == 2:
            shift = np.where(walked, 0.0, shift)
        pos[:, ax] += np.clip(shift, -0.5, 0.5)
    # neck: the brightest corridor (along the arc and in z) from the centre to the head
    # (a local mean along the arc keeps noise from faking a neck; the max over arc
    # positions and z lets the neck bend)
    corridor = ndi.uniform_filter1d(vol, _odd(0.3 / step), axis=0, mode="nearest")
    corridor = ndi.maximum_filter(corridor, size=(_odd(2 * _CORRIDOR_UM / step), min(3, n_z), 1),
                                  mode="nearest")
    neck_min = np.empty(len(ia), np.float32)
    neck_mean = np.empty(len(ia), np.float32)
    width = np.empty(len(ia), np.float32)
    surface = np.empty(len(ia), np.float32)
    slope = np.empty(len(ia), np.float32)
    xwidth = np.zeros(len(ia), np.float32)
    z_line = n_z // 2
    for m in range(len(ia)):
        if not lateral[m]:  # along z, from the centre line's plane to the head
            lo_z, hi_z = sorted((z_line, int(iz[m])))
            prof = corridor[ia[m], lo_z:hi_z + 1, io[m]]
            neck_min[m] = prof.min()
            neck_mean[m] = prof.mean()
            surface[m] = radius[m]
            slope[m] = 0.0
            row = resid[max(ia[m] - 10, 0):ia[m] + 11, iz[m], io[m]]
            width[m] = (row >= 0.5 * resid[ia[m], iz[m], io[m]]).sum() * step
            xwidth[m] = _run_length(resid[ia[m], iz[m]], int(io[m]),
                                    0.5 * resid[ia[m], iz[m], io[m]]) * step
            continue
        # shaft surface on this side: where the shaft model falls to half its centre value
        prof_model = shaft_model[ia[m], iz[m]]
        half = 0.5 * prof_model[centre]
        side_prof = prof_model[centre:] if io[m] > centre else prof_model[centre::-1]
        below = np.nonzero(side_prof < half)[0]
        surface[m] = (below[0] if len(below) else len(side_prof)) * step
        o = int(io[m])
        slope[m] = abs(prof_model[min(o + 1, n_off - 1)] - prof_model[max(o - 1, 0)]) / (2 * step)
        lo_o, hi_o = sorted((centre, int(io[m])))
        prof = corridor[ia[m], iz[m], lo_o:hi_o + 1]
        # from the shaft surface on: ignore the part inside the shaft radius
        r_px = int(round(radius[m] / step))
        inner = prof[r_px:-1] if io[m] > centre else prof[1:len(prof) - r_px]
        inner = inner if len(inner) else prof[-1:] if io[m] > centre else prof[:1]
        neck_min[m] = inner.min()
        # neck brightness away from the head's blur: the half nearer the shaft
        outward = inner if io[m] > centre else inner[::-1]
        neck_mean[m] = outward[:max(1, len(outward) // 2)].mean()
        # head width along the arc at half the residual maximum
        row = resid[max(ia[m] - 10, 0):ia[m] + 11, iz[m], io[m]]
        width[m] = (row >= 0.5 * resid[ia[m], iz[m], io[m]]).sum() * step
    # brightness just beyond the head, relative to the head: a head falls off to the
    # background, haze beside a dendrite does not
    beyond_o = np.clip(io + np.sign(io - centre) * _odd(0.6 / step), 0, n_off - 1)
    outer = vol[ia, iz, beyond_o] / np.maximum(vol[ia, iz, io], 1e-6)
    # the same fall-off above the model of the surroundings (a big head on the bright
    # pedestal of its shaft's glow falls off in the residual, not in the value)
    outer_resid = (np.maximum(resid[ia, iz, beyond_o], 0.0)
                   / np.maximum(resid[ia, iz, io], 1e-6))
    haze = _haze(vol, ia, iz, io, centre, step) if describe else {}
    bulge = _outline_bulge(vol, ia, iz, io, centre, step)
    a_int = np.clip(np.round(pos[:, 0]).astype(int), 0, n_arc - 1)
    frac = pos[:, 0] - np.floor(pos[:, 0])
    a0 = np.clip(np.floor(pos[:, 0]).astype(int), 0, n_arc - 1)
    a1 = np.clip(a0 + 1, 0, n_arc - 1)
    base = pts[["z", "y", "x"]].to_numpy()
    base_pt = base[a0] * (1 - frac)[:, None] + base[a1] * frac[:, None]
    normal = np.column_stack([pts["tx"].to_numpy(), -pts["ty"].to_numpy()])[a_int]
    off_um = np.interp(pos[:, 2], np.arange(n_off), offsets)
    dz_px = np.interp(pos[:, 1], np.arange(n_z), dz)
    head = np.column_stack([base_pt[:, 0] + dz_px,
                            base_pt[:, 1] + normal[:, 0] * off_um / voxel[1],
                            base_pt[:, 2] + normal[:, 1] * off_um / voxel[2]])
    return pd.DataFrame({
        "z": head[:, 0], "y": head[:, 1], "x": head[:, 2],
        "value": vol[ia, iz, io], "resid": strength, "neck_min": neck_min,
        "neck_mean": neck_mean, "width_um": width, "offset_um": off_um,
        "surface_um": surface, "slope": slope, "noise": noise, "lateral": lateral,
        "outer": outer, "outer_resid": outer_resid, "xwidth_um": xwidth,
        "plane_peak": plane_only, "bulge_um": bulge,
        **haze, **_z_extent(vol, resid, ia, iz, io, centre, voxel[0], (lo_arc, hi_arc))})


_BULGE_ALONG_UM = (0.5, 1.5)  # the outline beside a head is taken this far along the arc on
                              # each side (beyond the head's own half width)


def _outline_bulge(vol, ia, iz, io, centre: int, step: float) -> np.ndarray:
    """How far the shaft's outline bulges out at each head beyond both sides (µm).

    On the head's plane and side the outline is, at every arc position, the
    first offset from the centre line where the value falls below half the
    centre's. The bulge is the outline at the head's arc position minus the
    larger of its medians 0.5–1.5 µm before and after it along the arc: positive
    where something protrudes from the shaft there, zero or negative along a
    straight edge and where the shaft only widens towards one side (a taper, a
    junction).
    """
    n_arc = vol.shape[0]
    near, far = (int(round(u / step)) for u in _BULGE_ALONG_UM)
    out = np.zeros(len(ia), np.float32)
    for m in range(len(ia)):
        a, z, o = int(ia[m]), int(iz[m]), int(io[m])
        lo, hi = max(a - far, 0), min(a + far + 1, n_arc)
        prof = vol[lo:hi, z, centre:] if o >= centre else vol[lo:hi, z, centre::-1]
        below = prof < 0.5 * prof[:, :1]
        edge = np.where(below.any(axis=1), np.argmax(below, axis=1), prof.shape[1]) * step
        k = a - lo
        sides = [np.median(x) for x in (edge[:max(k - near + 1, 0)], edge[k + near:]) if len(x)]
        out[m] = edge[k] - max(sides) if sides else 0.0
    return out


_HAZE_ALONG_UM = 2.0  # the far-side window of a head spans this much arc either way ...
_HAZE_BEYOND_UM = (0.6, 1.5)  # ... from this far to this far beyond the head


def _haze(vol, ia, iz, io, centre: int, step: float) -> dict:
    """Brightness and texture of the surroundings on the far side of each head.

    The window is 0.6 to 1.5 µm farther out than the head (beyond its blur),
    ±2 µm along the arc, the head's plane ±1. ``haze_level`` is its median and
    ``haze_sd`` its lower-tail spread (median − 16th percentile: another
    dendrite or head in the window only adds to the upper tail). Diffuse haze
    beside a dendrite raises both; they are reported with the candidates (see
    :func:`_select` with ``features=True``) and not used by the hand-set tests
    (docs/detection.md, round 6).
    """
    n_off = vol.shape[2]
    a_far = int(round(_HAZE_ALONG_UM / step))
    o_lo, o_hi = (int(round(u / step)) for u in _HAZE_BEYOND_UM)
    level = np.empty(len(ia), np.float32)
    sd = np.empty(len(ia), np.float32)
    for m in range(len(ia)):
        a, z, o = int(ia[m]), int(iz[m]), int(io[m])
        sgn = 1 if o >= centre else -1
        offs = np.clip(o + sgn * np.arange(o_lo, o_hi + 1), 0, n_off - 1)
        win = vol[max(a - a_far, 0):a + a_far + 1, max(z - 1, 0):z + 2][:, :, offs]
        q16, level[m] = np.percentile(win, [16, 50])
        sd[m] = level[m] - q16
    return {"haze_level": level, "haze_sd": sd}


def _peak_masks(resid, foot):
    """Residual maxima: over the full footprint, plus those that are maxima only in their plane.

    A head beside the shaft is often not a maximum over the neighbouring planes,
    because something on another plane within the footprint (the shaft's flank
    where the shaft bends in depth, a bouton above the head) has a larger
    residual; when that maximum is then rejected, the head had no candidate.
    Maxima of the residual within their own plane (footprint along z one plane)
    that are not maxima over the full footprint are returned as well, flagged,
    and must pass a stricter test (:func:`_plane_margin`).

    Returns
    -------
    peaks, plane_only : bool arrays shaped like ``resid``
    """
    bright = resid > _MIN_RESID
    full = (resid == ndi.maximum_filter(resid, size=foot, mode="nearest")) & bright
    if foot[1] <= 1 or not _PLANE_PEAKS:
        return full, np.zeros_like(full)
    plane = (resid == ndi.maximum_filter(resid, size=(foot[0], 1, foot[2]), mode="nearest")
             ) & bright
    return full | plane, plane & ~full


_PLANE_PEAKS = True  # also take maxima within one plane (see _peak_masks)
_PLANE_PEAK_MAX_SLOPE = 0.3  # ... kept only where the shaft model across the branch falls by
                             # less than this (units of the shaft per µm) at the head: off the
                             # shaft's flank


def _plane_margin(cands: pd.DataFrame) -> np.ndarray:
    """Margin of the extra test of maxima found only within their plane (< 0: fails).

    Such a maximum lies beside a brighter one of a neighbouring plane; on the
    shaft's flank (steep shaft model across the branch) it is mostly the shaft's
    own edge, farther out mostly a head. It must be lateral and the shaft model's
    slope at it at most ``_PLANE_PEAK_MAX_SLOPE``; the margin is in units of
    ``_SLOPE_SCALE``. Other candidates have margin ``inf``.
    """
    if "plane_peak" not in cands.columns:
        return np.full(len(cands), np.inf)
    plane = cands["plane_peak"].fillna(False).to_numpy(bool)
    lateral = cands["lateral"].to_numpy(bool)
    slope = (_PLANE_PEAK_MAX_SLOPE - cands["slope"].to_numpy()) / _SLOPE_SCALE
    return np.where(plane, np.where(lateral, slope, -np.inf), np.inf)

def _z_extent(vol, resid, ia, iz, io, centre: int, dz_um: float, inner) -> dict:
    """Extents along z (µm) of each head and of the branch's shaft.

    ``zwidth_um``: the run of planes in the head's column where the residual is
    above half the head's; ``shaft_zwidth_um``: the median over the branch
    (arc indices ``inner = (lo, hi)``) of the run of planes at the centre line
    where the value is above half the value in the centre line's plane (the
    shaft's thickness blurred by the optics; the median ignores the spines
    along z that lengthen it locally).
    """
    z_line = vol.shape[1] // 2
    head = [_run_length(resid[a, :, o], int(z), 0.5 * resid[a, z, o])
            for a, z, o in zip(ia, iz, io)]
    col = vol[inner[0]:inner[1], :, centre]
    above = col >= 0.5 * col[:, z_line:z_line + 1]
    up = np.cumprod(above[:, z_line:], axis=1).sum(axis=1)
    down = np.cumprod(above[:, z_line::-1], axis=1).sum(axis=1)
    shaft = float(np.median(up + down - 1)) if len(col) else 1.0
    return {"zwidth_um": np.asarray(head, float) * dz_um,
            "shaft_zwidth_um": np.full(len(ia), shaft * dz_um)}


def _run_length(row, i, level):
    """Length of the run of ``row >= level`` that contains index ``i``."""
    above = row >= level
    lo = i
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = i
    while hi < len(row) - 1 and above[hi + 1]:
        hi += 1
    return hi - lo + 1


def _walk_out(resid, ia, iz, io, centre, back, lateral):
    """Follow each protrusion outward from its residual peak to where it fades.

    From the peak, step away from the centre line one offset at a time, moving
    at most one step along the arc towards the brighter neighbour (so oblique
    spines are followed), while the residual stays above half the peak. The
    head is put ``back`` steps inside that far end, or at the peak if nearer.
    A stubby spine whose brightest point sits at its base is so placed on its
    head, as a person would place it.

    Returns the new arc and offset indices and whether each moved.
    """
    n_arc, _, n_off = resid.shape
    a_out, o_out = ia.copy(), io.copy()
    for m in range(len(ia)):
        if not lateral[m]:
            continue
        a, o, z = int(ia[m]), int(io[m]), int(iz[m])
        half = _WALK_FRAC * resid[a, z, o]
        step = 1 if o > centre else -1
        path = [(a, o)]
        while 0 <= o + step < n_off:
            lo, hi = max(a - 1, 0), min(a + 2, n_arc)
            nxt = lo + int(np.argmax(resid[lo:hi, z, o + step]))
            if resid[nxt, z, o + step] < half:
                break
            a, o = nxt, o + step
            path.append((a, o))
        a_out[m], o_out[m] = path[max(len(path) - 1 - back, 0)]
    return a_out, o_out, (a_out != ia) | (o_out != io)


# thresholds in units of the session's median shaft brightness above background
# (so independent of how bright a session is); calibrated on rr30a-dev and synthetic data
_MIN_RESID = 0.08     # a head stands at least this far above the shaft model
_INSIDE = 0.5  # residual peaks nearer the centre line than this × shaft radius are the
               # shaft (farther in, up to the radius, they are often a spine's base: the
               # walk out and the tests below decide)
_NECK_SNR = 3.0  # ... plus this many noise SDs of the straightened branch
_MIN_NECK = 0.04      # the dimmest point between shaft surface and head (bouton gap test)
_FILOPODIUM_CONTRAST = 1.25  # a long protrusion whose head is not this much brighter than its
                             # neck is a filopodium
_FILOPODIUM_MIN_UM = 2.0
_SURFACE_SLACK_UM = 0.15  # a lateral head may sit this far inside the shaft's half-maximum
                          # surface
_CENTRE_FRAC = 0.25  # the head centre is at least this fraction of min_protrusion_um outside
_MAX_OUTER = 0.6  # 0.6 µm beyond a lateral head the signal is below this fraction of the head
_DEDUPE_UM = 0.7  # of detections closer than this (z counts _DEDUPE_Z_WEIGHT) the best is kept
_DEDUPE_Z_WEIGHT = 0.1  # a head's axial blur gives residual maxima at several planes of
                        # the same column; in de-duplication z distances count a tenth
_Z_MAX_WIDTH_UM = 2.0  # a head above or below the shaft is no wider than this across the
                       # branch (a neurite crossing above is)
_Z_MAX_GAP = 1.1  # ... and no brighter than this × the dimmest point between it and the
                  # shaft's plane (else a dim gap separates it: another structure)


def _select(cands: pd.DataFrame, frame: _Frame, params, features: bool = False
            ) -> pd.DataFrame:
    """Attach candidates to their nearest shaft, filter, de-duplicate, describe.

    Candidates that pass every test are kept, de-duplicated and rid of spine
    calls on filopodium stalks; then maxima on the shaft's flank that fill a gap
    between them are added, de-duplicated among themselves (:func:`_may_fill`,
    :func:`_gap_fillers`). With a learned detector model (``detector_model``,
    :mod:`spinetrack.learn`) the model's verdict replaces both.

    With ``features=True`` every candidate is returned, not de-duplicated, with
    its measurements, ``keep`` (the tests' verdict, gap fillers included),
    ``fill`` (may fill a gap),
    ``bulge_um`` (:func:`_outline_bulge`), the far-side haze columns
    of :func:`_haze_features` and one ``margin_<test>`` column per selection
    test (:func:`_margins`; negative: fails).
    """
    voxel = frame.voxel
    head = cands[["z", "y", "x"]].to_numpy(float)
    j, _ = frame.nearest(head)
    pts = frame.points
    base = frame.zyx[j]
    radius = pts["radius_um"].to_numpy()[j]
    d_um = (head - base) * voxel
    # lateral heads: z counts half (axial blur); heads along z: their z offset is the point
    lateral_head = cands["lateral"].to_numpy(bool)
    z_weight = np.where(lateral_head, _Z_WEIGHT, 1.0)
    dist = np.sqrt((d_um[:, 1:] ** 2).sum(axis=1) + (z_weight * d_um[:, 0]) ** 2)
    length = dist - radius
    head_radius = np.clip(cands["width_um"].to_numpy() / 2, 0.5 * params.head_sigma_um,
                          3 * params.head_sigma_um)
    value = cands["value"].to_numpy()
    neck_min = cands["neck_min"].to_numpy()
    neck_mean = cands["neck_mean"].to_numpy()
    resid = cands["resid"].to_numpy()
    t = np.column_stack([pts["ty"].to_numpy()[j], pts["tx"].to_numpy()[j]])
    cross = t[:, 0] * d_um[:, 2] - t[:, 1] * d_um[:, 1]
    lateral = np.linalg.norm(d_um[:, 1:], axis=1)
    side = np.where(lateral < np.abs(d_um[:, 0]) * _Z_WEIGHT, 0, np.sign(cross)).astype(int)
    margins = _margins(cands.assign(side=side), length, head_radius, params)
    keep = _accept(margins)
    fill = _may_fill(margins, cands)
    contrast = value / np.maximum(neck_mean, 1e-6)
    filo = (length >= _FILOPODIUM_MIN_UM) & (contrast < _FILOPODIUM_CONTRAST)
    out = pd.DataFrame({
        "z": head[:, 0], "y": head[:, 1], "x": head[:, 2],
        "z_um": head[:, 0] * voxel[0], "y_um": head[:, 1] * voxel[1],
        "x_um": head[:, 2] * voxel[2],
        "branch_id": pts["report_id"].to_numpy(int)[j],
        "arc_um": pts["arc_um"].to_numpy(float)[j],
        "base_z": base[:, 0], "base_y": base[:, 1], "base_x": base[:, 2],
        "side": side, "length_um": np.maximum(length, 0.0),
        "head_intensity": value, "head_radius_um": head_radius,
        "score": resid * np.minimum(neck_min / np.maximum(value, 1e-6), 1.0),
        "kind": np.where(filo, "filopodium", "spine"),
    })
    kept = _drop_on_filopodia(_dedupe(out[keep].reset_index(drop=True), voxel))
    rescue = _may_rescue(margins, cands)
    # fill and rescue fail different sole tests, so no row is both
    filled = _gap_fillers(out, keep, fill | rescue, voxel, frame.shape, kept=kept,
                          reach_um=np.where(rescue, _RESCUE_UM, _FILL_UM))
    model = getattr(params, "detector_model", "")
    if not (features or model):
        return finish_detections(out, keep, filled, voxel, kept=kept)
    # every candidate with its measurements: for calibration, or for a learned model
    table = out.assign(keep=keep | filled, fill=fill | rescue, filled=filled,
                       neck_min=neck_min,
                       neck_mean=neck_mean, resid=resid, dist_um=dist, radius_um=radius,
                       offset_um=cands["offset_um"].to_numpy(),
                       surface_um=cands["surface_um"].to_numpy(),
                       slope=cands["slope"].to_numpy(),
                       noise=cands["noise"].to_numpy(),
                       xwidth_um=cands["xwidth_um"].to_numpy(),
                       zwidth_um=cands["zwidth_um"].to_numpy(),
                       shaft_zwidth_um=cands["shaft_zwidth_um"].to_numpy(),
                       bulge_um=_column(cands, "bulge_um", 0.0),
                       outer_resid=_column(cands, "outer_resid", np.nan),
                       **_haze_features(cands),
                       **{f"margin_{k}": v.to_numpy() for k, v in margins.items()})
    if features:
        return table
    from .learn import learned_keep  # a learned model decides, gap fillers included

    return finish_detections(out, learned_keep(model, table), np.zeros(len(out), bool), voxel)


def finish_detections(calls: pd.DataFrame, keep, filled, voxel,
                      kept: pd.DataFrame | None = None) -> pd.DataFrame:
    """The detections from the selected candidates, as every selection path ends.

    The kept calls are de-duplicated and those on filopodium stalks dropped
    (``kept``, when the caller already has that table); gap fillers
    (:func:`_gap_fillers`) are de-duplicated among themselves and added; rows
    are sorted by branch and arc.
    """
    keep, filled = np.asarray(keep, bool), np.asarray(filled, bool)
    if kept is None:
        kept = _drop_on_filopodia(_dedupe(calls[keep].reset_index(drop=True), voxel))
    out = pd.concat([kept, _dedupe(calls[filled].reset_index(drop=True), voxel)],
                    ignore_index=True)
    return out.sort_values(["branch_id", "arc_um"], kind="stable").reset_index(drop=True)


def _haze_features(cands: pd.DataFrame) -> dict:
    """Far-side surroundings of each candidate: level, spread and the head's contrast.

    ``far_contrast`` is (head value − ``haze_level``) in units of the larger of
    ``haze_sd`` and the branch's background noise.
    """
    if "haze_level" not in cands.columns:
        return {}
    level = cands["haze_level"].to_numpy()
    spread = np.maximum(cands["haze_sd"].to_numpy(), cands["noise"].to_numpy())
    return {"haze_level": level, "haze_sd": cands["haze_sd"].to_numpy(),
            "far_contrast": (cands["value"].to_numpy() - level) / np.maximum(spread, 1e-6)}


def _margins(cands: pd.DataFrame, length: np.ndarray, head_radius: np.ndarray, params
             ) -> pd.DataFrame:
    """How far each candidate passes (> 0) or fails (< 0) each selection test.

    Each margin is in units of its own measurement's scale: lengths in units of
    the head scale ``head_sigma_um`` (about the blurred size of the optical
    point spread at which heads are located), brightness in noise SDs of the
    straightened branch's background. A test that does not apply to a
    candidate (lateral tests for heads along z and vice versa) has margin
    ``inf``.

    Returns
    -------
    DataFrame
        One column per test (``centre``, ``surface``, ``protrusion``, ``max_length``,
        ``outer``, ``neck``, ``z_width``, ``z_gap``, ``plane``, ``z_thin``), one row
        per candidate.
    """
    lateral = cands["lateral"].to_numpy(bool)
    scale = params.head_sigma_um
    noise = np.maximum(cands["noise"].to_numpy(), 1e-6)
    value = cands["value"].to_numpy()
    neck_min = cands["neck_min"].to_numpy()
    side = cands["side"].to_numpy()
    inf = np.inf

    def only(mask, m):
        return np.where(mask, m, inf)

    surface = cands["surface_um"].to_numpy() - _SURFACE_SLACK_UM
    return pd.DataFrame({
        "centre": (length - _CENTRE_FRAC * params.min_protrusion_um) / scale,
        "surface": only(lateral, (np.abs(cands["offset_um"].to_numpy()) - surface) / scale),
        "protrusion": (length + head_radius - params.min_protrusion_um) / scale,
        "max_length": (params.max_spine_length_um - length) / scale,
        "outer": only(lateral, (_MAX_OUTER - cands["outer"].to_numpy()) * value / noise),
        "neck": (neck_min - _MIN_NECK) / noise - _NECK_SNR,
        "z_width": only(~lateral, (_Z_MAX_WIDTH_UM - cands["xwidth_um"].to_numpy()) / scale),
        "z_gap": only(~lateral, (_Z_MAX_GAP * neck_min - value) / noise),
        "plane": _plane_margin(cands),
        "z_thin": _z_thin_margin(cands, side),
    }, index=cands.index)


_SLOPE_SCALE = 0.3  # the plane-peak slope margin is in units of this (shaft per µm)
_Z_THIN_SCALE_UM = 1.0  # the thin-head margin is in units of this (about one plane)


def _accept(margins: pd.DataFrame) -> np.ndarray:
    """Which candidates pass the selection: every test passed (margin >= 0).

    Letting a candidate fail one test by less than one unit of its scale when it
    passes the others clearly was measured (docs/detection.md, round 6) and adds
    about as many false calls as true ones on rr30a-dev.
    """
    return (margins.to_numpy(float) >= 0).all(axis=1)


_FILL_UM = 1.6  # a flank maximum fills a gap: no kept call within this (the peak footprint,
                # 0.9 µm, plus the de-duplication distance, 0.7 µm: beyond one head's reach)


def _column(cands: pd.DataFrame, name: str, default: float) -> np.ndarray:
    """A candidate column, or ``default`` for every row where the table has none."""
    if name in cands.columns:
        return cands[name].to_numpy(float)
    return np.full(len(cands), default)


def _may_fill(margins: pd.DataFrame, cands: pd.DataFrame) -> np.ndarray:
    """Maxima found only within their plane that may fill a gap between kept calls.

    They fail the plane-peak test only (on the shaft's flank, or not lateral),
    which rejects them because on the flank most such maxima are the shaft's
    own edge. Where the shaft's outline bulges out at the maximum beyond both
    sides along the arc (:func:`_outline_bulge`), something protrudes there; such
    a maximum is kept when no other call is near (:func:`_gap_fillers`).
    """
    return _fails_only(margins, "plane") & (_column(cands, "bulge_um", 0.0) > 0)


_RESCUE_UM = 1.0  # a big head rescued by its residual's fall-off fills a gap: no kept call
                  # within this (laterally; beyond the de-duplication distance, 0.7 µm)
_RESCUE_OUTER = 0.3  # ... when 0.6 µm beyond it its residual is below this × the head's


def _may_rescue(margins: pd.DataFrame, cands: pd.DataFrame) -> np.ndarray:
    """Lateral heads that fail only the fall-off test in value but fall off in the residual.

    The fall-off test (``outer``) compares the value 0.6 µm beyond a head with
    the head's. A big head (radius 0.5–0.7 µm) next to a bright shaft sits on the
    shaft's glow (the optics' halo, haze) and is wider than 0.6 µm, so its value
    there is still above ``_MAX_OUTER`` of the head's although the head itself
    has ended: its residual above the model of its surroundings along the arc
    has fallen below ``_RESCUE_OUTER`` of the head's. Diffuse haze beside a
    dendrite is part of that model and leaves a flat residual. Such a head only
    fills a gap (:func:`_gap_fillers` with ``_RESCUE_UM``): it never displaces a
    call that passes every test.
    """
    return _fails_only(margins, "outer") & (_column(cands, "outer_resid", np.inf) < _RESCUE_OUTER)


def _fails_only(margins: pd.DataFrame, name: str) -> np.ndarray:
    """Rows whose only failing test (margin < 0) is ``name``."""
    failing = margins.to_numpy(float) < 0
    return failing[:, margins.columns.get_loc(name)] & (failing.sum(axis=1) == 1)


def _gap_fillers(calls: pd.DataFrame, keep: np.ndarray, fill: np.ndarray, voxel,
                 shape=None, kept: pd.DataFrame | None = None,
                 reach_um=None) -> np.ndarray:
    """Which of the ``fill`` candidates lie in a gap between the calls the tests keep.

    A maximum on the shaft's flank next to a kept call is that head's blur or
    the shaft beside it; alone, it is mostly a stubby spine whose brightest
    point lies on the flank. A gap: farther than ``reach_um`` (default
    ``_FILL_UM``; one for all rows, or one per row of ``calls``; laterally)
    from every call the tests keep (after de-duplication), so a filler never
    displaces a kept call. Only spines fill gaps.
    Within the outline's window (``_BULGE_ALONG_UM``) of the image's edge in
    (y, x) (``shape``, when given) the outline is not known on both sides (a
    dendrite leaving the image seems to bulge), so none is taken there.

    Returns
    -------
    ndarray of bool
        Per row of ``calls`` (the candidates as detections); they are not
        de-duplicated among themselves here.
    """
    out = np.asarray(fill, bool) & (calls["kind"] == "spine").to_numpy()
    if not out.any():
        return out
    if kept is None:  # the calls the tests keep, de-duplicated
        kept = _drop_on_filopodia(_dedupe(calls[keep].reset_index(drop=True), voxel))
    idx = np.flatnonzero(out)
    if len(kept):
        d, _ = cKDTree(kept[["y_um", "x_um"]].to_numpy()).query(
            calls[["y_um", "x_um"]].to_numpy()[idx])
        reach = np.broadcast_to(_FILL_UM if reach_um is None else reach_um, out.shape)
        out[idx[d <= reach[idx]]] = False
    if shape is not None:
        for col, n, v in (("y", shape[1], voxel[1]), ("x", shape[2], voxel[2])):
            c = calls[col].to_numpy()
            out &= np.minimum(c, n - 1 - c) * v >= _BULGE_ALONG_UM[1]
    return out

_OFF_PLANE_MIN_Z = 0.6  # a head lying mostly above or below the shaft (side 0) whose residual
                        # is thinner along z than this × the shaft's blurred thickness ...
_OFF_PLANE_RESID = 0.2  # ... and (lateral candidates) weaker than this is noise or haze


def _z_thin_margin(cands: pd.DataFrame, side: np.ndarray) -> np.ndarray:
    """Margin of the test of heads above or below the shaft thinner along z than the blur.

    The microscope blurs every object along z, a head (smaller than the shaft)
    nearly as much as the shaft, so a real head's residual spans most of the
    shaft's blurred thickness; a residual maximum confined to fewer planes,
    beside or within the shaft's own axial blur, is noise or haze. The test
    applies to heads lying mostly above or below the shaft (``side`` 0) except
    lateral candidates that stand out clearly (residual ``_OFF_PLANE_RESID``):
    their extent along z minus ``_OFF_PLANE_MIN_Z`` × the shaft's, in units of
    ``_Z_THIN_SCALE_UM`` (< 0: fails). Others have margin ``inf``.
    """
    strong = (cands["resid"].to_numpy() >= _OFF_PLANE_RESID) & cands["lateral"].to_numpy(bool)
    thin = cands["zwidth_um"].to_numpy() - _OFF_PLANE_MIN_Z * cands["shaft_zwidth_um"].to_numpy()
    return np.where((side == 0) & ~strong, thin / _Z_THIN_SCALE_UM, np.inf)

def _drop_on_filopodia(df: pd.DataFrame) -> pd.DataFrame:
    """Drop spine calls on the stalk of a filopodium (same branch and side, nearer the shaft)."""
    filo = df[df["kind"] == "filopodium"]
    if not len(filo):
        return df
    drop = np.zeros(len(df), bool)
    for _, f in filo.iterrows():
        drop |= ((df["kind"] == "spine") & (df["branch_id"] == f["branch_id"])
                 & (df["side"] == f["side"]) & ((df["arc_um"] - f["arc_um"]).abs() <= _DEDUPE_UM)
                 & (df["length_um"] < f["length_um"])).to_numpy()
    return df[~drop].reset_index(drop=True)


def _dedupe(df: pd.DataFrame, voxel) -> pd.DataFrame:
    """Keep the best-scoring detection among any closer than ``_DEDUPE_UM``.

    z distances count ``_DEDUPE_Z_WEIGHT``: maxima stacked in one column within
    the straightened image's depth range are one head blurred along z.
    """
    if len(df) < 2:
        return df
    pos = df[["z_um", "y_um", "x_um"]].to_numpy() * np.array([_DEDUPE_Z_WEIGHT, 1.0, 1.0])
    order = np.argsort(-df["score"].to_numpy(), kind="stable")
    tree = cKDTree(pos)
    dropped = np.zeros(len(df), bool)
    for i in order:
        if dropped[i]:
            continue
        for k in tree.query_ball_point(pos[i], _DEDUPE_UM):
            if k != i:
                dropped[k] = True
    return df[~dropped].reset_index(drop=True)


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
    if params.detect.detector_model:  # a bad model file fails before any tracing
        from .learn import cached_model

        cached_model(params.detect.detector_model)
    tracing = trace_dendrites(session.image, session.voxel_size_um, params.trace, progress)
    spines = detect_spines(session.image, session.voxel_size_um, tracing, params.detect,
                           progress)
    return tracing, spines
