"""Linking spines across sessions with trackpy, branch-aware, under the identity rule.

Each spine is described by where it sits on its (global) branch: ``arc_um``
(the base's position along the branch, in the shared arc frame) and its offset
from the shaft (``lateral_um``, signed, so spines on opposite sides of a
dendrite are far apart; ``depth_um``). :func:`link_spines` links these
positions between consecutive sessions with ``trackpy.link`` (memory 0: no gap
closing), with the branch id as an extra coordinate so that a spine can only
link to a spine on the same branch. trackpy picks, in each crowded
neighbourhood, the assignment with the smallest total squared displacement,
which is what keeps neighbours 1–2 µm apart from swapping.

Identity rule: a ``spine_id`` covers one contiguous run of sessions. A spine
that is absent in a session and back later gets a new id (a loss, then a
restoration), never a gap.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["link_spines", "link_refined", "along_branch_shift", "split_gaps", "LINK_COORDS",
           "link_displacements", "measure_spread", "mutual_nearest",
           "correct_drift", "nearest_displacements", "spread_of"]

log = logging.getLogger(__name__)

#: Coordinates linked by default (µm), in the shared branch frame.
LINK_COORDS = ("arc_um", "lateral_um", "depth_um")
#: Spacing put between branches in the branch coordinate, µm (larger than any search).
_BRANCH_SPACING_UM = 1.0e4


def split_gaps(spine_id: np.ndarray, session: np.ndarray) -> np.ndarray:
    """New ids such that every id covers one contiguous run of sessions.

    Parameters
    ----------
    spine_id, session : array of int
        One entry per observation.

    Returns
    -------
    ndarray of int
        Ids numbered 0.. in order of first appearance (session, then input order).
    """
    spine_id = np.asarray(spine_id)
    session = np.asarray(session)
    n = len(spine_id)
    if n == 0:
        return np.zeros(0, int)
    order = np.lexsort((session, spine_id))
    sid, ses = spine_id[order], session[order]
    new_run = np.r_[True, (sid[1:] != sid[:-1]) | (ses[1:] != ses[:-1] + 1)]
    run = np.cumsum(new_run) - 1
    runs = np.empty(n, int)
    runs[order] = run
    # renumber by first appearance: (session of the run start, position in input)
    first_session = np.full(run[-1] + 1, np.iinfo(np.int64).max)
    first_index = np.full(run[-1] + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_session, runs, session)
    np.minimum.at(first_index, runs, np.arange(n))
    rank = np.lexsort((first_index, first_session))
    new_id = np.empty_like(rank)
    new_id[rank] = np.arange(len(rank))
    return new_id[runs]


def link_spines(spines: pd.DataFrame, search_range_um: float,
                coords: tuple[str, ...] = LINK_COORDS, weights: tuple[float, ...] | None = None,
                branch_column: str | None = "branch_id") -> pd.DataFrame:
    """Give every spine observation a ``spine_id`` by linking consecutive sessions.

    Parameters
    ----------
    spines : DataFrame
        One row per spine per session with ``session`` and the ``coords``
        columns (µm), plus ``branch_column`` unless it is None.
    search_range_um : float
        Largest distance between a spine's positions in consecutive sessions,
        µm, measured in the (weighted) ``coords`` space.
    coords : tuple of str
        Columns linked on.
    weights : tuple of float, optional
        Scale of each coordinate before linking (e.g. 0.5 to count depth half),
        default all 1.
    branch_column : str or None
        Spines link only within equal values of this column.

    Returns
    -------
    DataFrame
        A copy of ``spines`` (same index and order) with an integer ``spine_id``
        column; ids are contiguous runs of sessions, numbered by first appearance.
    """
    import trackpy

    missing = [c for c in ("session", *coords, *([branch_column] if branch_column else []))
               if c not in spines.columns]
    if missing:
        raise InputError(None, f"spine table lacks columns {missing}")
    if search_range_um <= 0:
        raise InputError(None, f"search range must be positive, got {search_range_um}")
    out = spines.copy()
    if not len(out):
        out["spine_id"] = pd.Series(dtype=int)
        return out
    w = _weights(coords, weights)
    frame = pd.DataFrame({f"c{i}": out[c].to_numpy(float) * w[i] for i, c in enumerate(coords)})
    if frame.isna().any().any():
        raise InputError(None, "spine positions must be finite to link them")
    pos = list(frame.columns)
    if branch_column:
        frame["cb"] = out[branch_column].to_numpy(float) * _BRANCH_SPACING_UM
        pos.append("cb")
    frame["frame"] = out["session"].to_numpy(int)
    frame["row"] = np.arange(len(out))
    trackpy.quiet()
    linked = trackpy.link(frame, search_range_um, pos_columns=pos, t_column="frame", memory=0,
                          adaptive_stop=0.05 * search_range_um, adaptive_step=0.9)
    linked = linked.sort_values("row")
    ids = split_gaps(linked["particle"].to_numpy(), linked["frame"].to_numpy())
    out["spine_id"] = ids
    return out


def along_branch_shift(arc_from: np.ndarray, shift: np.ndarray, arc_at: np.ndarray,
                       scale_um: float, prior_weight: float = 2.0) -> np.ndarray:
    """Smooth along-branch shift at ``arc_at`` from shifts measured at ``arc_from``.

    A Gaussian-weighted mean of the measured shifts (scale ``scale_um``), pulled
    towards zero by ``prior_weight`` pseudo-measurements, so that a stretch with
    few links is barely moved.
    """
    if not len(arc_from) or not len(arc_at):
        return np.zeros(len(arc_at))
    w = np.exp(-((arc_at[:, None] - arc_from[None, :]) / scale_um) ** 2 / 2.0)
    return (w @ shift) / (w.sum(axis=1) + prior_weight)


def link_refined(spines: pd.DataFrame, search_range_um: float,
                 coords: tuple[str, ...] = LINK_COORDS, weights: tuple[float, ...] | None = None,
                 arc_columns: tuple[str, ...] = ("arc_um",), iterations: int = 2,
                 scale_um: float = 20.0, branch_column: str = "branch_id") -> pd.DataFrame:
    """Link after correcting the residual drift along each branch (:func:`correct_drift`).

    Parameters are those of :func:`correct_drift`.

    Returns
    -------
    DataFrame
        As :func:`link_spines`, with the ``arc_columns`` corrected.
    """
    out = correct_drift(spines, search_range_um, coords, weights, arc_columns, iterations,
                        scale_um, branch_column)
    return link_spines(out, search_range_um, coords, weights, branch_column)


def correct_drift(spines: pd.DataFrame, search_range_um: float,
                  coords: tuple[str, ...] = LINK_COORDS, weights: tuple[float, ...] | None = None,
                  arc_columns: tuple[str, ...] = ("arc_um",), iterations: int = 2,
                  scale_um: float = 20.0, branch_column: str = "branch_id") -> pd.DataFrame:
    """Remove the smooth residual drift along each branch, learned from the spines themselves.

    Registration leaves a smooth residual displacement along each branch (tissue
    stretches a little between days). For each session k in turn, spines of
    sessions k-1 and k that are each other's nearest neighbour within the search
    range are paired (:func:`mutual_nearest`: only unambiguous pairs, and fast), the
    smooth shift of the pairs' arc positions along each branch is fitted
    (:func:`along_branch_shift`) and applied to session k and later sessions; this
    is repeated ``iterations`` times.

    Parameters
    ----------
    spines : DataFrame
        As for :func:`link_spines`.
    search_range_um, coords, weights, branch_column
        As for :func:`link_spines`.
    arc_columns : tuple of str
        Columns holding positions along the branch (µm); all are shifted. The
        first one is used to measure the shift.
    iterations : int
        Rounds of pair-and-correct per session (0: no correction).
    scale_um : float
        Smoothing length of the correction along the branch, µm.

    Returns
    -------
    DataFrame
        A copy of ``spines`` with the ``arc_columns`` corrected.
    """
    out = spines.copy()
    if iterations <= 0 or not len(out) or not arc_columns:
        return out
    key = arc_columns[0]
    session = out["session"].to_numpy(int)
    branch = out[branch_column].to_numpy()
    arcs = {c: out[c].to_numpy(float).copy() for c in arc_columns}
    w = _weights(coords, weights)
    fixed = {c: out[c].to_numpy(float) for c in coords if c not in arcs}
    for k, a, b in _consecutive_sessions(session):
        later = session >= k
        rows = np.r_[a, b]  # only the two sessions' rows are paired
        for _ in range(iterations):
            pos = np.stack([(arcs[c] if c in arcs else fixed[c])[rows] * wi
                            for c, wi in zip(coords, w)], axis=1)
            ia, ib = mutual_nearest(pos[:len(a)], pos[len(a):], branch[a], branch[b],
                                    search_range_um)
            moved = _shift_pair(arcs, key, a[ia], b[ib], branch, later, search_range_um,
                                scale_um)
            if not moved:
                break
    for c in arc_columns:
        out[c] = arcs[c]
    return out


def _weights(coords: tuple[str, ...], weights: tuple[float, ...] | None) -> np.ndarray:
    """Scale of each link coordinate (all 1 by default)."""
    return np.ones(len(coords)) if weights is None else np.asarray(weights, float)


def _consecutive_sessions(session: np.ndarray):
    """(k, rows of the session before k, rows of k) for each session k after the first."""
    sessions = np.unique(session)
    for prev, k in zip(sessions[:-1], sessions[1:]):
        yield k, np.flatnonzero(session == prev), np.flatnonzero(session == k)


def mutual_nearest(pos_a: np.ndarray, pos_b: np.ndarray, branch_a: np.ndarray,
                   branch_b: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of points that are each other's nearest neighbour on the same branch.

    Parameters
    ----------
    pos_a, pos_b : ndarray, (N, D) and (M, D)
        Positions (already weighted).
    branch_a, branch_b : ndarray
        Branch of each point; points pair only within one branch.
    reach : float
        Largest distance of a pair.

    Returns
    -------
    ia, ib : ndarray of int
        Indices into ``pos_a`` and ``pos_b`` of each pair.
    """
    from scipy.spatial import cKDTree

    if not len(pos_a) or not len(pos_b):
        return np.zeros(0, int), np.zeros(0, int)
    # the branch as a far-away extra coordinate keeps pairs within one branch
    ca = np.c_[pos_a, np.asarray(branch_a, float) * _BRANCH_SPACING_UM]
    cb = np.c_[pos_b, np.asarray(branch_b, float) * _BRANCH_SPACING_UM]
    d_ab, j_ab = cKDTree(cb).query(ca, distance_upper_bound=reach)
    _, j_ba = cKDTree(ca).query(cb, distance_upper_bound=reach)
    ia = np.flatnonzero(np.isfinite(d_ab))
    ib = j_ab[ia]
    keep = j_ba[ib] == ia
    return ia[keep], ib[keep]


def _shift_pair(arcs, key, ia, ib, branch, later, limit, scale_um) -> bool:
    """Fit and apply the along-branch shift of one session pair; True if anything moved.

    ``ia``/``ib`` index the matched observations of the earlier and later session;
    every observation of a later session (``later``) on a branch with matches is shifted.
    """
    if not len(ia):
        return False
    shift_all = arcs[key][ia] - arcs[key][ib]
    moved = False
    pair_branch = branch[ib]
    for br in np.unique(pair_branch):
        on = pair_branch == br
        rows = np.flatnonzero(later & (branch == br))
        shift = along_branch_shift(arcs[key][ib[on]], np.clip(shift_all[on], -limit, limit),
                                   arcs[key][rows], scale_um)
        for c in arcs:
            arcs[c][rows] += shift
        moved = moved or bool(np.any(np.abs(shift) > 1e-3))
    return moved


def link_displacements(linked: pd.DataFrame, coords: tuple[str, ...]) -> np.ndarray:
    """Change of each coordinate along every link between consecutive sessions, (L, C)."""
    parts = []
    table = linked[["spine_id", *coords]]
    for _, a, b in _consecutive_sessions(linked["session"].to_numpy(int)):
        m = table.iloc[a].merge(table.iloc[b], on="spine_id", suffixes=("_a", "_b"))
        parts.append(np.stack([(m[c + "_b"] - m[c + "_a"]).to_numpy(float) for c in coords], 1)
                     if len(m) else np.zeros((0, len(coords))))
    return np.concatenate(parts) if parts else np.zeros((0, len(coords)))


def nearest_displacements(spines: pd.DataFrame, coords: tuple[str, ...],
                          weights: tuple[float, ...] | None, reach: float,
                          branch_column: str = "branch_id") -> np.ndarray:
    """Change of each coordinate between mutual nearest neighbours of consecutive sessions.

    The pairs of :func:`mutual_nearest` (in the ``weights``-scaled ``coords``, within
    ``reach``, same branch), as an (L, C) array in the coordinates' own units: a
    quick, unambiguous sample of how far spines move, without linking.
    """
    w = _weights(coords, weights)
    pos = spines[list(coords)].to_numpy(float)
    session = spines["session"].to_numpy(int)
    branch = spines[branch_column].to_numpy()
    parts = [np.zeros((0, len(coords)))]
    for _, a, b in _consecutive_sessions(session):
        ia, ib = mutual_nearest(pos[a] * w, pos[b] * w, branch[a], branch[b], reach)
        parts.append(pos[b[ib]] - pos[a[ia]])
    return np.concatenate(parts)


def measure_spread(linked: pd.DataFrame, coords: tuple[str, ...], floor_um: float = 0.05,
                   tail: float = 2.0) -> dict | None:
    """How far linked spines move between sessions, from a first linking.

    Parameters
    ----------
    linked : DataFrame
        Output of :func:`link_spines` or :func:`link_refined`.
    coords : tuple of str
        Coordinates to measure.
    floor_um : float
        Smallest spread allowed for a coordinate (guards against exact data).
    tail : float
        The search range is ``q90 + tail * (q90 - q50)`` of the links' scaled
        distances: it follows the tail of the measured distribution, wider when
        the tail is heavy (as with hand-placed tips), tighter when it is not.

    Returns
    -------
    dict or None
        ``scale_um`` (robust spread of each coordinate: 1.4826 × median absolute
        deviation), ``range`` (search range in units of those spreads),
        ``n_links``; None when there are fewer than 20 links to measure.
    """
    return spread_of(link_displacements(linked, coords), coords, floor_um, tail)


def spread_of(d: np.ndarray, coords: tuple[str, ...], floor_um: float = 0.05,
              tail: float = 2.0) -> dict | None:
    """:func:`measure_spread` of an (L, C) array of displacements (one row per link)."""
    if len(d) < 20:
        return None
    scale = np.maximum(1.4826 * np.median(np.abs(d - np.median(d, axis=0)), axis=0), floor_um)
    dist = np.sqrt(np.sum((d / scale) ** 2, axis=1))
    q50, q90 = np.percentile(dist, [50, 90])
    return {"coords": list(coords), "scale_um": scale.tolist(),
            "range": float(q90 + tail * (q90 - q50)), "n_links": int(len(d))}
