"""Dendrite centre lines of one session.

:class:`Tracing` is the table-shaped result every later stage reads (see
``docs/architecture.md``): ``lines`` holds one row per centre-line point and
``graph`` one row per branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Tracing", "LINE_COLUMNS", "GRAPH_COLUMNS", "tracing_from_lines", "trace_dendrites"]

LINE_COLUMNS = ["branch_id", "point", "z", "y", "x", "z_um", "y_um", "x_um", "arc_um",
                "radius_um"]
GRAPH_COLUMNS = ["branch_id", "length_um", "n_points", "start_node", "end_node", "start_kind",
                 "end_kind", "mean_radius_um"]


@dataclass(frozen=True, eq=False)
class Tracing:
    """Traced dendrites of one session.

    Attributes
    ----------
    lines : DataFrame
        One row per centre-line point, columns :data:`LINE_COLUMNS`, ordered by
        ``branch_id`` then ``point``.
    graph : DataFrame
        One row per branch, columns :data:`GRAPH_COLUMNS`.
    voxel_size_um : tuple of float
        (z, y, x) voxel size of the session.
    shape : tuple of int
        (z, y, x) shape of the session's image.
    """

    lines: pd.DataFrame
    graph: pd.DataFrame
    voxel_size_um: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def n_branches(self) -> int:
        return len(self.graph)


def tracing_from_lines(lines: pd.DataFrame, voxel_size_um, shape, radius_um: float = 0.5
                       ) -> Tracing:
    """Build a :class:`Tracing` from centre-line points in pixels (``branch_id, z, y, x``).

    Used for annotated centre lines (e.g. a person's tracing) and in tests. Points
    are taken in their given order within each branch; µm columns, ``arc_um`` and
    (if absent) ``radius_um`` are filled in. Every branch end is an ``end`` node.
    """
    vz, vy, vx = (float(v) for v in voxel_size_um)
    rows = []
    graph = []
    for bid, g in lines.groupby("branch_id", sort=True):
        g = g.sort_values("point") if "point" in g else g
        zyx = g[["z", "y", "x"]].to_numpy(float)
        um = zyx * np.array([vz, vy, vx])
        step = np.r_[0.0, np.linalg.norm(np.diff(um, axis=0), axis=1)]
        arc = np.cumsum(step)
        radius = g["radius_um"].to_numpy(float) if "radius_um" in g else np.full(len(g), radius_um)
        rows.append(pd.DataFrame({
            "branch_id": int(bid), "point": np.arange(len(g)), "z": zyx[:, 0], "y": zyx[:, 1],
            "x": zyx[:, 2], "z_um": um[:, 0], "y_um": um[:, 1], "x_um": um[:, 2], "arc_um": arc,
            "radius_um": radius}))
        graph.append({"branch_id": int(bid), "length_um": float(arc[-1]) if len(arc) else 0.0,
                      "n_points": len(g), "start_node": 2 * int(bid), "end_node": 2 * int(bid) + 1,
                      "start_kind": "end", "end_kind": "end",
                      "mean_radius_um": float(np.mean(radius)) if len(radius) else radius_um})
    lines_out = (pd.concat(rows, ignore_index=True) if rows
                 else pd.DataFrame(columns=LINE_COLUMNS))
    return Tracing(lines=lines_out, graph=pd.DataFrame(graph, columns=GRAPH_COLUMNS),
                   voxel_size_um=(vz, vy, vx), shape=tuple(int(s) for s in shape))


# --------------------------------------------------------------------------- tracing


def trace_dendrites(image: np.ndarray, voxel_size_um, params=None, progress=None) -> Tracing:
    """Trace the centre lines of the dendrites of one session.

    The stack is projected along z (maximum), scaled by robust percentiles (so
    a dim day traces like a bright one), filtered for bright ridges at the
    shaft scale, thresholded with hysteresis and skeletonised. Short side twigs
    are pruned, gaps along a dendrite bridged, pieces that do not stand out
    from their surroundings (the haze around cell bodies, see
    :func:`_drop_haze`) removed, and the skeleton split into branches between
    ends and junctions. Each centre-line point then gets its
    z from the smoothed intensity profile along z, and a shaft radius from the
    half-maximum width of the projected intensity across the line.

    Parameters
    ----------
    image : ndarray, shape (Z, Y, X) or (Y, X)
        The session's stack, any real dtype.
    voxel_size_um : sequence of 3 float
        (z, y, x) voxel size in µm.
    params : TraceParams, optional
        Tracing parameters (defaults when None).
    progress : callable, optional
        ``progress(stage, done, total)``; may raise ``Cancelled``.

    Returns
    -------
    Tracing
        Empty tables when no dendrite is found.
    """
    from .params import TraceParams
    from .progress import report

    params = params or TraceParams()
    stack = _as_stack(image)
    voxel = tuple(float(v) for v in voxel_size_um)
    steps = 5
    report(progress, "trace", 0, steps)
    from ._filters import binned_smoothed

    small, factor = binned_smoothed(stack, voxel, params.shaft_sigma_um)
    spacing = (voxel[1] * factor, voxel[2] * factor)
    plane, ok = _normalised_projection(small)
    if not ok:
        report(progress, "trace", steps, steps)
        return _empty(voxel, stack.shape)
    mask = _dendrite_mask(plane, spacing, params)
    report(progress, "trace", 1, steps)
    skel = _drop_haze(_clean_skeleton(mask, spacing, params), plane, spacing, params)
    report(progress, "trace", 2, steps)
    from ._skeleton import skeleton_segments

    segments = [s for s in skeleton_segments(skel)
                if not (s.start_kind == "end" and s.end_kind == "end"
                        and s.length(spacing) < params.min_branch_length_um)]
    segments.sort(key=lambda s: (-s.length(spacing), tuple(s.yx[0])))
    report(progress, "trace", 3, steps)
    if not segments:
        report(progress, "trace", steps, steps)
        return _empty(voxel, stack.shape)
    z_of = _ZProfile(small, (voxel[0],) + spacing)
    lines, graph = [], []
    for bid, seg in enumerate(segments):
        yx_small = _centre_on_ridge(plane, _smooth_path(seg.yx, spacing, 0.4), spacing)
        z = z_of(yx_small)
        radius = _half_max_radius(plane, yx_small, spacing)
        zyx = np.column_stack([z, (yx_small + 0.5) * factor - 0.5])
        um = zyx * np.asarray(voxel)
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(um, axis=0), axis=1))]
        lines.append(pd.DataFrame({
            "branch_id": bid, "point": np.arange(len(zyx)), "z": zyx[:, 0], "y": zyx[:, 1],
            "x": zyx[:, 2], "z_um": um[:, 0], "y_um": um[:, 1], "x_um": um[:, 2],
            "arc_um": arc, "radius_um": radius}))
        graph.append({"branch_id": bid, "length_um": float(arc[-1]), "n_points": len(zyx),
                      "start_node": int(seg.start_node), "end_node": int(seg.end_node),
                      "start_kind": seg.start_kind, "end_kind": seg.end_kind,
                      "mean_radius_um": float(np.mean(radius))})
    report(progress, "trace", steps, steps)
    return Tracing(lines=pd.concat(lines, ignore_index=True),
                   graph=pd.DataFrame(graph, columns=GRAPH_COLUMNS), voxel_size_um=voxel,
                   shape=tuple(int(s) for s in stack.shape))


def _as_stack(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"expected a (z, y, x) stack or a (y, x) plane, got shape {arr.shape}")
    return arr


def _empty(voxel, shape) -> Tracing:
    return Tracing(lines=pd.DataFrame({c: pd.Series(dtype=float if c not in ("branch_id", "point")
                                                    else int) for c in LINE_COLUMNS}),
                   graph=pd.DataFrame(columns=GRAPH_COLUMNS), voxel_size_um=voxel,
                   shape=tuple(int(s) for s in shape))


# ridge strength (scale-normalised, in units of the robust bright level) that seeds and
# that extends a dendrite; calibrated on rr30a-dev and the synthetic presets
_RIDGE_HIGH = 0.2
_RIDGE_LOW = 0.035
_RIDGE_DIM = 0.007  # ... and that extends a dim dendrite (a fifth of _RIDGE_LOW) where its
_DIM_SNR = 6.0  # brightness is at least this many robust noise SDs above the median
_Z_JUMP_COST = 0.05  # depth along a centre line: cost of 1 µm of z change per µm of line
_COARSE = 1.5  # the ridge filter also runs at this multiple of shaft_sigma_um (thick shafts)
_WEAK_MIN_UM = 15.0  # a dim piece without a seed is kept when its centre line is this long
_WEAK_SNR = 4.0  # ... and its mean brightness is this many noise SDs above the median
_SEED_SNR = 8.0  # seeds are at least this many robust noise SDs above the median
_CUT_OFF_TUBULARITY = 0.25  # a dendrite's stretch cut off at crossings is a line: median
# ridge / brightness at least this (rr30a: dendrites 0.28-0.35, haze 0.03-0.23)
_HAZE_CONTRAST = 0.7  # a free-ended piece is kept when its sides at haze_ring_um are at most
# 0.3 of its centre's brightness (median along it); rr30a: dendrites 0.83-0.98, haze pieces <= 0.6
_HAZE_INNER = 0.3  # ... and a piece between two junctions when even its dimmer side is brighter
# than 0.7 of its centre (inside the haze; rr30a: dendrites and crossings 0.51-1.0)
_HAZE_ROUNDS = 5  # rounds of removing haze pieces (each can free the end of the next)


def _normalised_projection(stack: np.ndarray) -> tuple[np.ndarray, bool]:
    """Max projection scaled so background ~0 and dendrites ~1, lightly smoothed."""
    from ._filters import max_projection, robust_scale

    plane = max_projection(stack)
    bg, span = robust_scale(plane, 50.0, 99.5)
    if not np.isfinite(plane).all() or float(plane.max()) <= bg:
        return plane, False
    plane = (plane - np.float32(bg)) / np.float32(span)
    return plane, True


def _dendrite_mask(plane: np.ndarray, spacing, params) -> np.ndarray:
    from scipy import ndimage as ndi
    from ._filters import ridge_2d

    px = float(np.mean(spacing))
    ridge = np.zeros_like(plane)
    for sigma_um in (params.shaft_sigma_um, _COARSE * params.shaft_sigma_um):
        np.maximum(ridge, ridge_2d(plane, sigma_um / px), out=ridge)
    # seeds must also stand clear of the noise (a stack of pure noise has ridges too)
    centre = float(np.median(plane))
    noise = 1.4826 * float(np.median(np.abs(plane - centre)))
    seeds = (ridge > _RIDGE_HIGH) & (plane > centre + _SEED_SNR * noise)
    # a dendrite many times dimmer than the brightest ones has a weak ridge in these
    # units; where it stands clearly above the noise, a weaker ridge still extends it
    low = (ridge > _RIDGE_LOW) | ((ridge > _RIDGE_DIM) & (plane > centre + _DIM_SNR * noise))
    lab, n = ndi.label(low, structure=np.ones((3, 3), bool))
    if n == 0:
        return low
    from skimage.morphology import skeletonize

    # per label 0..n: centre-line length (µm) and mean brightness
    skel_len = np.bincount(lab[skeletonize(low)], minlength=n + 1) * px * 1.1
    mean_level = np.asarray(ndi.mean(plane, lab, np.arange(n + 1)))
    seeded = np.zeros(n + 1, bool)
    seeded[np.unique(lab[seeds])] = True
    seeded[1:] |= _cut_off_stretches(plane, ridge, lab, n, seeded, px, centre, noise, params,
                                     skel_len, mean_level)
    # a dim dendrite without any bright stretch is still long and thin: keep
    # unseeded pieces whose skeleton is long (puncta and haze are short)
    seeded |= ((skel_len >= max(_WEAK_MIN_UM, params.min_branch_length_um))
               & (mean_level > centre + _WEAK_SNR * noise))
    seeded[0] = False
    return seeded[lab]


def _cut_off_stretches(plane, ridge, lab, n: int, seeded, px: float, centre: float,
                       noise: float, params, skel_len, mean_level) -> np.ndarray:
    """Unseeded pieces that are stretches of a dendrite cut off at crossings (per label 1..n).

    Where a dim dendrite passes under (or over) a brighter one, the bright one's
    ridge response suppresses the dim one's within about a micrometre of it, so a
    stretch of the dim dendrite between two crossings can be a piece of its own,
    without a seed (its ridge is weak in units of the brightest dendrites) and
    shorter than ``_WEAK_MIN_UM``. Such a piece joins the dendrites when it lies
    within half ``bridge_gap_um`` of a seeded piece (a gap the bridging would
    close), is as bright as a seed (``_SEED_SNR``), is a line (median ridge /
    brightness at least ``_CUT_OFF_TUBULARITY``: dendrites 0.28–0.35, the haze
    around cell bodies 0.03–0.23 on rr30a-dev) and is at least a branch long
    (``min_branch_length_um``). Spine heads and puncta beside a dendrite are
    shorter, haze is not line-like. ``skel_len`` and ``mean_level`` (per label
    0..n) are each piece's centre-line length (µm) and mean brightness.
    """
    from scipy import ndimage as ndi

    r = 0.5 * params.bridge_gap_um / px
    if r < 1 or not seeded[1:].any():
        return np.zeros(n, bool)
    yy, xx = np.mgrid[-int(r):int(r) + 1, -int(r):int(r) + 1]
    grown = ndi.binary_dilation(seeded[lab] & (lab > 0), structure=(yy ** 2 + xx ** 2) <= r * r)
    near = np.zeros(n + 1, bool)
    near[np.unique(lab[grown & (lab > 0)])] = True
    near &= ~seeded
    if not near[1:].any():
        return np.zeros(n, bool)
    # the median ridge / brightness of the near pieces only (over their pixels alone)
    idx = np.flatnonzero(near)
    on = near[lab]
    tubular = np.zeros(n + 1)
    tubular[idx] = ndi.median(ridge[on] / np.maximum(plane[on], 1e-6), lab[on], idx)
    return (near & (mean_level > centre + _SEED_SNR * noise)
            & (tubular >= _CUT_OFF_TUBULARITY)
            & (skel_len >= params.min_branch_length_um))[1:]


def _clean_skeleton(mask: np.ndarray, spacing, params) -> np.ndarray:
    from skimage.morphology import skeletonize

    from ._skeleton import bridge_gaps, drop_short_components, prune_twigs

    skel = skeletonize(mask)
    skel = drop_short_components(skel, spacing, min(params.min_branch_length_um, 2.0))
    skel = prune_twigs(skel, spacing, params.prune_twig_um)
    skel = bridge_gaps(skel, spacing, params.bridge_gap_um)
    skel = skeletonize(skel)
    skel = prune_twigs(skel, spacing, params.prune_twig_um)
    return drop_short_components(skel, spacing, params.min_branch_length_um)


def _drop_haze(skel: np.ndarray, plane: np.ndarray, spacing, params) -> np.ndarray:
    """Remove pieces of skeleton that do not stand out from their surroundings.

    A dendrite is a thin line with dark image on both sides; the diffuse haze
    around a cell body or a bright blob also has ridges, and the weak-ridge mask
    joins them to the dendrites nearby. The contrast of a segment is the median
    over its points of :func:`_ring_contrast` (the brighter of the two sides
    ``haze_ring_um`` across the line against the centre); a segment is clear
    when its contrast is at least ``_HAZE_CONTRAST``. Only pieces that fit in a
    cell body (spanning at most ``haze_max_um``) are judged. Dropped, in rounds:

    - every connected piece of skeleton whose clear segments add up to less
      than ``min_branch_length_um`` (a network of haze on its own, which need
      not have free ends);
    - every segment that is not clear and has a free end or closes a loop on
      one node. A segment between two junctions goes only when even its dimmer
      side is bright (contrast against it below ``_HAZE_INNER``: inside the
      haze); crossings and dendrites running side by side have one bright side
      there. Once a haze piece goes, its neighbour may become free-ended and is
      judged in the next round.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    from ._skeleton import drop_short_components, prune_twigs, skeleton_segments

    if params.haze_ring_um <= 0:
        return skel
    skel = skel.copy()
    for _ in range(_HAZE_ROUNDS):
        segments = skeleton_segments(skel)
        clear = [float(np.median(_ring_contrast(plane, seg.yx, spacing, params.haze_ring_um)))
                 >= _HAZE_CONTRAST for seg in segments]
        lab, n = ndi.label(skel, structure=np.ones((3, 3), bool))
        pieces = _hazy_pieces(lab, n, segments, clear, spacing, params)
        hazy = [seg for seg, ok in zip(segments, clear)
                if not ok and _extent_um(seg.yx, spacing) <= params.haze_max_um
                and (("end" in (seg.start_kind, seg.end_kind) or seg.start_node == seg.end_node)
                     or float(np.median(_ring_contrast(plane, seg.yx, spacing,
                                                       params.haze_ring_um, "dimmer")))
                     < _HAZE_INNER)]
        if not hazy and not len(pieces):
            break
        skel[np.isin(lab, pieces)] = False
        for seg in hazy:
            first = 1 if seg.start_kind == "junction" else 0
            last = len(seg.yx) - 1 if seg.end_kind == "junction" else len(seg.yx)
            iy, ix = np.round(seg.yx[first:last]).astype(int).T
            skel[iy, ix] = False
        skel = prune_twigs(skeletonize(skel), spacing, params.prune_twig_um)
        skel = drop_short_components(skel, spacing, params.min_branch_length_um)
    return skel


def _hazy_pieces(lab: np.ndarray, n: int, segments, clear, spacing, params) -> np.ndarray:
    """Labels of connected pieces within ``haze_max_um`` with too few clear segments."""
    from scipy import ndimage as ndi

    clear_length = np.zeros(n + 1)
    for seg, ok in zip(segments, clear):
        y, x = np.round(seg.yx[len(seg.yx) // 2]).astype(int)
        clear_length[lab[y, x]] += seg.length(spacing) if ok else 0.0
    small = np.zeros(n + 1, bool)
    for k, box in enumerate(ndi.find_objects(lab), 1):
        if box is not None:
            span = np.array([box[0].stop - box[0].start, box[1].stop - box[1].start])
            small[k] = float(np.hypot(*(span * np.asarray(spacing)))) <= params.haze_max_um
    return np.nonzero(small & (clear_length < params.min_branch_length_um))[0]


def _extent_um(yx: np.ndarray, spacing) -> float:
    """Diagonal of the bounding box of pixel positions, in µm."""
    span = (np.max(yx, axis=0) - np.min(yx, axis=0) + 1) * np.asarray(spacing)
    return float(np.hypot(*span))


def _ring_contrast(plane: np.ndarray, yx: np.ndarray, spacing, ring_um: float,
                   side: str = "brighter") -> np.ndarray:
    """How far each point of a line stands out from the image ``ring_um`` to either side.

    (centre − side) / centre, with the centre the brightest value within
    0.4 µm across the line and the side the ``"brighter"`` or ``"dimmer"`` of
    the two: 1 on a thin line on a dark background, about 0 or below in
    uniform haze.
    """
    from scipy import ndimage as ndi

    px = float(np.mean(spacing))
    path = _smooth_path(np.asarray(yx, float), spacing, 0.4)
    if len(path) < 2:
        return np.ones(len(path))
    tangent = np.gradient(ndi.gaussian_filter1d(path, 2.0, axis=0, mode="nearest"), axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])

    def across(offsets_um):
        off = np.asarray(offsets_um, float) / px
        coords = path[:, :, None] + normal[:, :, None] * off[None, None, :]
        return ndi.map_coordinates(plane, [coords[:, 0].ravel(), coords[:, 1].ravel()],
                                   order=1, mode="nearest").reshape(len(path), -1)

    centre = across(np.linspace(-0.4, 0.4, 5)).max(axis=1)
    both = across([-ring_um, ring_um])
    sides = both.max(axis=1) if side == "brighter" else both.min(axis=1)
    return (centre - sides) / np.maximum(centre, 1e-6)


def _smooth_path(yx: np.ndarray, spacing, sigma_um: float) -> np.ndarray:
    """Gaussian-smooth a pixel chain along its length, keeping its two ends."""
    from scipy import ndimage as ndi

    if len(yx) < 5:
        return yx.astype(float)
    step = float(np.mean(np.linalg.norm(np.diff(yx * np.asarray(spacing), axis=0), axis=1)))
    sig = sigma_um / max(step, 1e-9)
    out = ndi.gaussian_filter1d(yx.astype(float), sig, axis=0, mode="nearest")
    out[0], out[-1] = yx[0], yx[-1]
    return out


def _centre_on_ridge(plane: np.ndarray, yx: np.ndarray, spacing, reach_um: float = 0.8,
                     rounds: int = 2) -> np.ndarray:
    """Move centre-line points across the line onto the intensity ridge.

    A skeleton of a thresholded mask leans towards spines and neighbours that
    merged with the shaft; the brightest point across the line (with
    sub-pixel refinement) does not. Shifts are smoothed along the line so one
    bright spine cannot pull a point off the shaft. The two end points stay.
    """
    from scipy import ndimage as ndi

    px = float(np.mean(spacing))
    n = len(yx)
    if n < 5:
        return yx
    offsets = np.arange(-reach_um, reach_um + 1e-9, 0.5 * px) / px
    out = yx.astype(float).copy()
    for _ in range(rounds):
        tangent = np.gradient(ndi.gaussian_filter1d(out, 2.0, axis=0, mode="nearest"), axis=0)
        tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
        normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
        coords = out[:, :, None] + normal[:, :, None] * offsets[None, None, :]
        prof = ndi.map_coordinates(plane, [coords[:, 0].ravel(), coords[:, 1].ravel()],
                                   order=1, mode="nearest").reshape(n, -1)
        prof = ndi.gaussian_filter1d(prof, 1.0, axis=1, mode="nearest")
        k = np.argmax(prof, axis=1)
        inner = (k > 0) & (k < len(offsets) - 1)
        rows = np.nonzero(inner)[0]
        shift = offsets[k].astype(float)
        a, b, c = prof[rows, k[rows] - 1], prof[rows, k[rows]], prof[rows, k[rows] + 1]
        denom = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            sub = np.where(denom < 0, 0.5 * (a - c) / denom, 0.0)
        shift[rows] += np.clip(sub, -0.5, 0.5) * (offsets[1] - offsets[0])
        window = max(3, int(round(1.5 / px)) | 1)
        shift = ndi.median_filter(shift, size=window, mode="nearest")
        shift = ndi.gaussian_filter1d(shift, 0.5 / px, mode="nearest")
        shift[[0, -1]] = 0.0
        out = out + normal * shift[:, None]
    return out


class _ZProfile:
    """z of the brightest plane under (y, x) points, from smoothed z-profiles."""

    def __init__(self, stack: np.ndarray, voxel) -> None:
        self.stack = stack
        self.voxel = voxel

    def __call__(self, yx: np.ndarray) -> np.ndarray:
        from scipy import ndimage as ndi

        nz, ny, nx = self.stack.shape
        if nz == 1:
            return np.zeros(len(yx))
        iy = np.clip(np.round(yx[:, 0]).astype(int), 0, ny - 1)
        ix = np.clip(np.round(yx[:, 1]).astype(int), 0, nx - 1)
        prof = np.zeros((nz, len(yx)), np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                prof += self.stack[:, np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)]
        # along the branch too: a dim stretch borrows its depth from its neighbours
        step = float(np.mean(self.voxel[1:]))
        prof = ndi.gaussian_filter1d(prof, 0.5 / step, axis=1, mode="nearest")
        k = _continuous_argmax(prof, _Z_JUMP_COST * self.voxel[0] / step)
        z = k.astype(float)
        inner = (k > 0) & (k < nz - 1)
        cols = np.nonzero(inner)[0]
        a, b, c = prof[k[cols] - 1, cols], prof[k[cols], cols], prof[k[cols] + 1, cols]
        denom = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denom < 0, 0.5 * (a - c) / denom, 0.0)
        z[cols] += np.clip(shift, -0.5, 0.5)
        window = max(1, int(round(2.0 / step)))
        z = ndi.median_filter(z, size=window | 1, mode="nearest")
        return ndi.gaussian_filter1d(z, 1.0 / step, mode="nearest")


def _continuous_argmax(prof: np.ndarray, jump_cost: float) -> np.ndarray:
    """Brightest plane per point (columns of ``prof``), kept continuous along the line.

    Dynamic programming over the points: each point scores its profile value
    (scaled to the line's median peak and capped at 1)
    and every plane of change from one point to the next costs ``jump_cost``.
    Where the line passes over or under another bright structure, its depth
    stays with the dendrite instead of jumping to the other structure.
    """
    nz, n = prof.shape
    if n == 0 or nz == 1:
        return np.zeros(n, int)
    # scaled to the line's typical peak and capped: a brighter structure crossing over
    # or under gains nothing by being brighter, a dim stretch still has its own peak
    peaks = prof.max(axis=0)
    score = np.minimum(prof / max(float(np.median(peaks)), 1e-12), 1.0)
    planes = np.arange(nz)
    penalty = jump_cost * np.abs(planes[:, None] - planes[None, :])
    best = score[:, 0].copy()
    back = np.zeros((n, nz), int)
    for i in range(1, n):
        total = best[None, :] - penalty  # [to, from]
        back[i] = np.argmax(total, axis=1)
        best = total[planes, back[i]] + score[:, i]
    path = np.empty(n, int)
    path[-1] = int(np.argmax(best))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def _half_max_radius(plane: np.ndarray, yx: np.ndarray, spacing, max_um: float = 3.0
                     ) -> np.ndarray:
    """Shaft radius: half the full width at half maximum across the line, in µm."""
    from scipy import ndimage as ndi

    px = float(np.mean(spacing))
    n = len(yx)
    if n < 2:
        return np.full(n, 0.5)
    tangent = np.gradient(yx, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    offsets = np.arange(0.0, max_um + 1e-9, 0.5 * px) / px
    radius = np.empty((2, n))
    centre = ndi.map_coordinates(plane, yx.T, order=1, mode="nearest")
    for k, sign in enumerate((1.0, -1.0)):
        coords = yx[:, :, None] + sign * normal[:, :, None] * offsets[None, None, :]
        prof = ndi.map_coordinates(plane, [coords[:, 0].ravel(), coords[:, 1].ravel()],
                                   order=1, mode="nearest").reshape(n, -1)
        below = prof < 0.5 * centre[:, None]
        first = np.where(below.any(axis=1), below.argmax(axis=1), len(offsets) - 1)
        radius[k] = offsets[first] * px
    r = np.clip(np.min(radius, axis=0), 0.5 * px, max_um)
    # spine heads close to the shaft widen the profile locally; the shaft's own width
    # changes slowly, so take a low percentile over 4 µm of line
    window = max(1, int(round(4.0 / px))) | 1
    r = ndi.percentile_filter(r, 25, size=window, mode="nearest")
    return ndi.uniform_filter1d(r, max(1, int(round(1.0 / px))) | 1, mode="nearest")
