"""2-D skeleton to branch graph (private helper of :mod:`spinetrack.trace`).

A skeleton (one-pixel-wide, 8-connected) is split into *segments*: runs of
pixels with exactly two neighbours, ending at an end pixel (one neighbour) or
at a junction cluster (touching pixels with three or more neighbours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Segment", "skeleton_segments", "prune_twigs", "bridge_gaps", "drop_short_components"]

_EIGHT = np.ones((3, 3), bool)


@dataclass
class Segment:
    """One run of skeleton pixels between two nodes.

    Attributes
    ----------
    yx : ndarray, shape (N, 2)
        Ordered pixel positions, including the junction node positions at the
        ends when the segment meets a junction.
    start_node, end_node : int
        Node ids: junction cluster labels are ``1..J``; end pixels get ids
        above ``J``.
    start_kind, end_kind : str
        ``"end"`` or ``"junction"``.
    """

    yx: np.ndarray
    start_node: int
    end_node: int
    start_kind: str
    end_kind: str

    def length(self, spacing: tuple[float, float]) -> float:
        d = np.diff(self.yx * np.asarray(spacing), axis=0)
        return float(np.sqrt((d ** 2).sum(axis=1)).sum())


def _neighbours(skel: np.ndarray) -> np.ndarray:
    counts = ndi.convolve(skel.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant")
    return np.where(skel, counts.astype(np.int16) - 1, 0)


def skeleton_segments(skel: np.ndarray) -> list[Segment]:
    """Split a 2-D skeleton into ordered segments between end pixels and junctions.

    Parameters
    ----------
    skel : ndarray of bool, shape (Y, X)

    Returns
    -------
    list of Segment
        Closed loops without any node become one segment starting and ending at
        the same (end-kind) node.
    """
    skel = np.asarray(skel, bool)
    nb = _neighbours(skel)
    junction = skel & (nb >= 3)
    jlab, n_junctions = ndi.label(junction, structure=_EIGHT)
    jcentre = (np.array(ndi.center_of_mass(junction, jlab, range(1, n_junctions + 1)))
               if n_junctions else np.zeros((0, 2)))
    body = skel & ~junction
    blab, n_body = ndi.label(body, structure=_EIGHT)
    segments: list[Segment] = []
    if n_body == 0:
        return segments
    slices = ndi.find_objects(blab)
    next_end = n_junctions + 1
    for lab, sl in enumerate(slices, 1):
        if sl is None:
            continue
        y0, x0 = sl[0].start, sl[1].start
        pts = np.argwhere(blab[sl] == lab) + (y0, x0)
        ordered = _order_pixels(pts)
        s_touch = _touching_junctions(ordered[0], jlab)
        e_touch = _touching_junctions(ordered[-1], jlab)
        if len(ordered) == 1:
            s_j = s_touch[0] if s_touch else None
            e_j = s_touch[1] if len(s_touch) > 1 else None
        else:
            s_j = s_touch[0] if s_touch else None
            e_j = e_touch[0] if e_touch else None
        yx = ordered.astype(float)
        if s_j is not None:
            yx = np.vstack([jcentre[s_j - 1], yx])
            s_node, s_kind = s_j, "junction"
        else:
            s_node, s_kind = next_end, "end"
            next_end += 1
        if e_j is not None:
            yx = np.vstack([yx, jcentre[e_j - 1]])
            e_node, e_kind = e_j, "junction"
        else:
            e_node, e_kind = next_end, "end"
            next_end += 1
        segments.append(Segment(yx, s_node, e_node, s_kind, e_kind))
    return segments


def _touching_junctions(p: np.ndarray, jlab: np.ndarray) -> list[int]:
    y, x = int(p[0]), int(p[1])
    win = jlab[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
    return sorted(int(v) for v in np.unique(win) if v)


def _order_pixels(pts: np.ndarray) -> np.ndarray:
    """Order the pixels of one 8-connected run from one end to the other."""
    if len(pts) <= 2:
        return pts
    index = {(int(y), int(x)): i for i, (y, x) in enumerate(pts)}
    nbrs: list[list[int]] = [[] for _ in pts]
    for i, (y, x) in enumerate(pts):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    j = index.get((int(y) + dy, int(x) + dx))
                    if j is not None:
                        nbrs[i].append(j)
    ends = [i for i, n in enumerate(nbrs) if len(n) <= 1]
    start = ends[0] if ends else 0
    order = [start]
    seen = {start}
    cur = start
    while True:
        # prefer 4-neighbours so diagonal shortcuts do not skip pixels
        cands = [j for j in nbrs[cur] if j not in seen]
        if not cands:
            break
        cands.sort(key=lambda j: abs(pts[j][0] - pts[cur][0]) + abs(pts[j][1] - pts[cur][1]))
        cur = cands[0]
        seen.add(cur)
        order.append(cur)
    return pts[order]


def prune_twigs(skel: np.ndarray, spacing: tuple[float, float],
                twig_um: float, rounds: int = 10) -> np.ndarray:
    """Remove terminal segments shorter than ``twig_um`` that hang off a junction.

    Only the shortest such twig at each junction goes in one round, so that
    where a spine's twig meets the shaft near a dendrite's end, the twig goes
    and the shaft's end piece (also terminal, but longer) joins the rest of
    the shaft again after re-skeletonising.
    """
    from skimage.morphology import skeletonize

    skel = np.asarray(skel, bool).copy()
    for _ in range(rounds):
        shortest: dict[int, tuple[float, Segment]] = {}
        for seg in skeleton_segments(skel):
            one_end = (seg.start_kind == "end") != (seg.end_kind == "end")
            if not one_end:
                continue
            length = seg.length(spacing)
            if length >= twig_um:
                continue
            node = seg.start_node if seg.start_kind == "junction" else seg.end_node
            if node not in shortest or length < shortest[node][0]:
                shortest[node] = (length, seg)
        if not shortest:
            break
        for _, seg in shortest.values():
            body = seg.yx[1:] if seg.start_kind == "junction" else seg.yx[:-1]
            iy, ix = np.round(body).astype(int).T
            skel[iy, ix] = False
        skel = skeletonize(skel)
    return skel


def drop_short_components(skel: np.ndarray, spacing: tuple[float, float],
                          min_length_um: float) -> np.ndarray:
    """Remove connected skeleton pieces whose total length is below ``min_length_um``."""
    lab, n = ndi.label(skel, structure=_EIGHT)
    if n == 0:
        return skel
    # length of a piece ~ pixel count × mean step (diagonal steps are longer)
    step = float(np.mean(spacing)) * 1.1
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    keep = counts * step >= min_length_um
    keep[0] = False
    return keep[lab]


def bridge_gaps(skel: np.ndarray, spacing: tuple[float, float], gap_um: float,
                max_angle_deg: float = 45.0) -> np.ndarray:
    """Join end pixels to another piece of skeleton across a gap of at most ``gap_um``.

    An end is joined to the nearest skeleton pixel of a *different* connected
    piece that lies within ``gap_um`` and within ``max_angle_deg`` of the
    direction the end points to (from its last few pixels).
    """
    from scipy.spatial import cKDTree
    from skimage.draw import line

    if gap_um <= 0:
        return skel
    skel = np.asarray(skel, bool).copy()
    lab, n = ndi.label(skel, structure=_EIGHT)
    if n < 2:
        return skel
    sp = np.asarray(spacing, float)
    pts = np.argwhere(skel)
    tree = cKDTree(pts * sp)
    cos_max = np.cos(np.deg2rad(max_angle_deg))
    for seg in skeleton_segments(skel):
        for at_start, kind in ((True, seg.start_kind), (False, seg.end_kind)):
            if kind != "end" or len(seg.yx) < 3:
                continue
            run = seg.yx if at_start else seg.yx[::-1]
            tip = run[0]
            back = run[min(len(run) - 1, max(2, int(round(1.0 / sp.mean()))))]
            direction = (tip - back) * sp
            norm = np.linalg.norm(direction)
            if norm == 0:
                continue
            direction /= norm
            own = lab[int(tip[0]), int(tip[1])]
            best, best_d = None, np.inf
            for j in tree.query_ball_point(tip * sp, gap_um):
                q = pts[j]
                if lab[q[0], q[1]] == own:
                    continue
                v = (q - tip) * sp
                d = np.linalg.norm(v)
                if d == 0 or v @ direction / d < cos_max:
                    continue
                if d < best_d:
                    best, best_d = q, d
            if best is not None:
                rr, cc = line(int(tip[0]), int(tip[1]), int(best[0]), int(best[1]))
                skel[rr, cc] = True
    return skel
