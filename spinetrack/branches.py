"""Branch correspondence: one id and one arc frame per physical branch, in every session.

Session 0's traced branches are the first reference branches (global ids equal
to their session-0 ids). Each later session's centre lines are registered into
session 0's frame and every point is paired with the nearest reference
centre-line point within ``match_distance``:

- a session branch takes the global ids of the reference branches its points
  pair with (usually one; two where tracings split a dendrite differently at a
  junction);
- a stretch of unpaired points that continues a reference branch past one of its
  ends extends that reference branch (its arc continues beyond the end);
- a long enough stretch of unpaired points elsewhere becomes a new reference
  branch, with the next free global id (a branch traced only from session k on).

Positions are then *projected* onto the reference centre lines: the nearest
reference point gives the branch and the arc; the component along the local
tangent refines the arc, and the rest is the offset from the shaft (signed
lateral distance in the imaging plane, and depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import InputError
from .register import Registration, resample_polyline

__all__ = ["BranchMap", "match_branches", "PROJECTION_COLUMNS"]

#: Spacing of the reference centre-line points, µm.
REF_STEP_UM = 0.2
#: Columns added by :meth:`BranchMap.project`.
PROJECTION_COLUMNS = ["branch_id", "arc_um", "lateral_um", "depth_um", "shaft_distance_um"]


def _arc(points: np.ndarray) -> np.ndarray:
    return np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]


def _tangents(points: np.ndarray) -> np.ndarray:
    if len(points) < 2:
        return np.tile([0.0, 0.0, 1.0], (len(points), 1))
    t = np.gradient(points, axis=0)
    n = np.linalg.norm(t, axis=1, keepdims=True)
    return t / np.where(n > 0, n, 1.0)


@dataclass(eq=False)
class _Reference:
    """One global branch: a polyline in session 0's frame with its arc values."""

    points: np.ndarray
    arc: np.ndarray

    def extend(self, run: np.ndarray, at_end: bool) -> None:
        """Add a stretch of points beyond one end, continuing the arc.

        ``run`` is ordered going away from that end (``run[0]`` next to it).
        """
        if not len(run):
            return
        anchor = self.points[-1:] if at_end else self.points[:1]
        step = _arc(np.vstack([anchor, run]))[1:]
        if at_end:
            self.points = np.vstack([self.points, run])
            self.arc = np.r_[self.arc, self.arc[-1] + step]
        else:
            self.points = np.vstack([run[::-1], self.points])
            self.arc = np.r_[(self.arc[0] - step)[::-1], self.arc]


_CANDIDATE_SLACK_UM = 4.0  # a point's own (paired) branch may be this much farther than the
                           # nearest one (crossings); beyond, the nearest branch is taken


@dataclass(eq=False)
class BranchMap:
    """Global branches in session 0's frame and the session-to-global correspondence.

    Attributes
    ----------
    references : dict
        Global branch id -> (points (M, 3) µm in session 0's frame, arc (M,) µm).
    session_branches : list of dict
        Per session: session branch id -> list of global branch ids it pairs with.
    lines : DataFrame
        Series-wide centre lines: Tracing.lines columns (own-image coordinates),
        ``session``, global ``branch_id``, shared ``arc_um``, ``session_branch_id``
        and ``session_arc_um``.
    branch_table : DataFrame
        ``branch_id, length_um, arc_start_um, arc_end_um``: the stretch of each
        branch traced in every session that traces it.
    """

    references: dict[int, tuple[np.ndarray, np.ndarray]]
    session_branches: list[dict[int, list[int]]]
    lines: pd.DataFrame
    branch_table: pd.DataFrame

    def __post_init__(self) -> None:
        ids, pts, arcs, tans = [], [], [], []
        for gid, (p, a) in sorted(self.references.items()):
            ids.append(np.full(len(p), gid))
            pts.append(p)
            arcs.append(a)
            tans.append(_tangents(p))
        self._ids = np.concatenate(ids) if ids else np.zeros(0, int)
        self._pts = np.concatenate(pts) if pts else np.zeros((0, 3))
        self._arc = np.concatenate(arcs) if arcs else np.zeros(0)
        self._tan = np.concatenate(tans) if tans else np.zeros((0, 3))
        self._tree = cKDTree(self._pts) if len(self._pts) else None
        self._by_branch = {int(g): np.flatnonzero(self._ids == g) for g in np.unique(self._ids)}
        self._trees = {g: cKDTree(self._pts[i]) for g, i in self._by_branch.items()}

    @property
    def branch_ids(self) -> list[int]:
        return sorted(self.references)

    def project(self, points_ref_um, candidates=None) -> pd.DataFrame:
        """Branch, arc and offset of points given in session 0's frame.

        Parameters
        ----------
        points_ref_um : array (N, 3)
            Registered positions, µm.
        candidates : sequence of (list of int or None), optional
            Per point, the global branches it may be on (e.g. those its session
            branch pairs with); None or empty: any branch.

        Returns
        -------
        DataFrame
            :data:`PROJECTION_COLUMNS`: ``branch_id`` (-1 when there are no
            branches), ``arc_um`` (along the branch, extrapolated past its ends
            along the end tangent), ``lateral_um`` (signed distance from the
            centre line in the imaging plane: positive on the left of the branch
            direction with y pointing down), ``depth_um`` (z offset from the
            centre line) and ``shaft_distance_um`` (3-D distance to the nearest
            centre-line point).
        """
        pts = np.asarray(points_ref_um, float).reshape(-1, 3)
        n = len(pts)
        out = pd.DataFrame({"branch_id": np.full(n, -1, int), "arc_um": np.full(n, np.nan),
                            "lateral_um": np.full(n, np.nan), "depth_um": np.full(n, np.nan),
                            "shaft_distance_um": np.full(n, np.nan)})
        if self._tree is None or n == 0:
            return out
        near_d, nearest = self._tree.query(pts)
        nearest = np.asarray(nearest)
        if candidates is not None:
            for i, cand in enumerate(candidates):
                if not cand or int(self._ids[nearest[i]]) in cand:
                    continue
                best = None
                for g in cand:
                    if g not in self._trees:
                        continue
                    d, j = self._trees[g].query(pts[i])
                    if best is None or d < best[0]:
                        best = (d, self._by_branch[g][j])
                # a candidate much farther than the nearest branch is a matching error
                # (the session's branch paired with a dendrite elsewhere), not a crossing
                if best is not None and best[0] <= near_d[i] + _CANDIDATE_SLACK_UM:
                    nearest[i] = best[1]
        v = pts - self._pts[nearest]
        t = self._tan[nearest]
        along = np.einsum("ij,ij->i", v, t)
        arc = self._arc[nearest].copy()
        # inside a branch the nearest point is within half a step; past an end, extrapolate
        arc += along
        perp = v - along[:, None] * t
        txy = t[:, 1:]
        norm = np.linalg.norm(txy, axis=1)
        cross = txy[:, 1] * perp[:, 1] - txy[:, 0] * perp[:, 2]  # x_t * y_v - y_t * x_v
        lateral_xy = np.linalg.norm(perp[:, 1:], axis=1)
        sign = np.where(cross >= 0, 1.0, -1.0)
        out["branch_id"] = self._ids[nearest].astype(int)
        out["arc_um"] = arc
        out["lateral_um"] = np.where(norm > 1e-6, sign * lateral_xy, lateral_xy)
        out["depth_um"] = perp[:, 0]
        out["shaft_distance_um"] = np.linalg.norm(v, axis=1)
        return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of the runs of True in a boolean array."""
    if not len(mask):
        return []
    d = np.diff(np.r_[0, mask.astype(int), 0])
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def smooth_polyline(points: np.ndarray, sigma_um: float, step_um: float = REF_STEP_UM
                    ) -> np.ndarray:
    """A polyline resampled every ``step_um`` and smoothed along its length.

    Traced centre lines wobble (in z especially, where planes are 1 µm apart);
    the wobble inflates arc lengths and turns tangents. Gaussian smoothing of
    scale ``sigma_um`` along the line removes it; the ends stay in place.
    """
    pts = resample_polyline(points, step_um)
    if sigma_um <= 0 or len(pts) < 3:
        return pts
    sm = ndimage.gaussian_filter1d(pts, sigma_um / step_um, axis=0, mode="nearest")
    return resample_polyline(sm, step_um)


def _session_polylines(tracing, registration: Registration | None, k: int,
                       smooth_um: float):
    """Per session branch: (own µm points, registered points) resampled."""
    out = {}
    if tracing is None or tracing.lines is None or not len(tracing.lines):
        return out
    for bid, g in tracing.lines.groupby("branch_id", sort=True):
        own = g.sort_values("point")[["z_um", "y_um", "x_um"]].to_numpy(float)
        own = smooth_polyline(own, smooth_um)
        ref = registration.to_reference(k, own) if registration is not None else own
        out[int(bid)] = ref
    return out


def match_branches(tracings, registration: Registration | None = None,
                   match_distance_um: float = 2.0, min_new_branch_um: float = 5.0,
                   smooth_um: float = 1.5) -> BranchMap:
    """Give every traced branch of every session a global id and a shared arc frame.

    Parameters
    ----------
    tracings : list of Tracing
        One per session, in order.
    registration : Registration, optional
        Maps each session into session 0's frame (identity when None).
    match_distance_um : float
        A registered centre-line point pairs with a reference branch within this
        distance, µm.
    min_new_branch_um : float
        Shortest unpaired stretch that becomes a new global branch (or extends
        one), µm.
    smooth_um : float
        Smoothing scale of the centre lines along their length, µm.

    Returns
    -------
    BranchMap
    """
    if not tracings:
        raise InputError(None, "no tracings to match")
    refs: dict[int, _Reference] = {}
    session_branches: list[dict[int, list[int]]] = []
    polylines = [_session_polylines(t, registration, k, smooth_um)
                 for k, t in enumerate(tracings)]
    for bid, pts in polylines[0].items():
        refs[bid] = _Reference(pts.copy(), _arc(pts))
    session_branches.append({bid: [bid] for bid in polylines[0]})
    next_id = max(refs, default=-1) + 1
    min_pts = max(2, int(round(min_new_branch_um / REF_STEP_UM)))
    for k in range(1, len(tracings)):
        ids = np.concatenate([np.full(len(r.points), g) for g, r in refs.items()]) if refs \
            else np.zeros(0, int)
        allp = np.concatenate([r.points for r in refs.values()]) if refs else np.zeros((0, 3))
        arcs = np.concatenate([r.arc for r in refs.values()]) if refs else np.zeros(0)
        tree = cKDTree(allp) if len(allp) else None
        mapping: dict[int, list[int]] = {}
        for bid, pts in polylines[k].items():
            if tree is not None:
                d, j = tree.query(pts, distance_upper_bound=match_distance_um)
            else:
                d, j = np.full(len(pts), np.inf), np.zeros(len(pts), int)
            paired = np.isfinite(d)
            gids = ids[j[paired]]
            found = []
            if paired.any():
                uniq, counts = np.unique(gids, return_counts=True)
                keep = counts >= max(3, 0.1 * paired.sum())
                found = [int(g) for g in uniq[keep]]
            for start, stop in _runs(~paired):
                if stop - start < min_pts:
                    continue
                run = pts[start:stop]
                target = None
                for nb, away in ((start - 1, run), (stop, run[::-1])):
                    if not (0 <= nb < len(pts) and paired[nb]):
                        continue
                    g = int(ids[j[nb]])
                    r, a = refs[g], arcs[j[nb]]
                    if a - r.arc[0] <= match_distance_um:
                        target = (g, False, away)
                    elif r.arc[-1] - a <= match_distance_um:
                        target = (g, True, away)
                    if target:
                        break
                if target is not None:
                    g, at_end, away = target
                    refs[g].extend(away, at_end=at_end)
                    if g not in found:
                        found.append(g)
                else:
                    refs[next_id] = _Reference(run.copy(), _arc(run))
                    found.append(next_id)
                    next_id += 1
            mapping[bid] = found
        session_branches.append(mapping)
    bmap = BranchMap({g: (r.points, r.arc) for g, r in refs.items()}, session_branches,
                     pd.DataFrame(), pd.DataFrame())
    bmap.lines = _series_lines(tracings, registration, bmap)
    bmap.branch_table = _branch_table(bmap.lines)
    return bmap


def _series_lines(tracings, registration, bmap: BranchMap) -> pd.DataFrame:
    frames = []
    for k, t in enumerate(tracings):
        if t is None or t.lines is None or not len(t.lines):
            continue
        lines = t.lines.copy()
        own = lines[["z_um", "y_um", "x_um"]].to_numpy(float)
        ref = registration.to_reference(k, own) if registration is not None else own
        cands = [bmap.session_branches[k].get(int(b)) for b in lines["branch_id"]]
        proj = bmap.project(ref, cands)
        lines["session_branch_id"] = lines["branch_id"].astype(int)
        lines["session_arc_um"] = lines["arc_um"].astype(float)
        lines["branch_id"] = proj["branch_id"].to_numpy()
        lines["arc_um"] = proj["arc_um"].to_numpy()
        lines.insert(0, "session", k)
        frames.append(lines)
    if not frames:
        return pd.DataFrame(columns=["session", "branch_id", "point", "z", "y", "x", "z_um",
                                     "y_um", "x_um", "arc_um", "radius_um", "session_branch_id",
                                     "session_arc_um"])
    return pd.concat(frames, ignore_index=True)


def _branch_table(lines: pd.DataFrame) -> pd.DataFrame:
    from .stats import BRANCH_TABLE_COLUMNS, TRACED_COLUMNS, branch_table_from_lines

    if not len(lines):
        return pd.DataFrame(columns=BRANCH_TABLE_COLUMNS + TRACED_COLUMNS)
    return branch_table_from_lines(lines)
