"""Following spines across a series: register, match branches, link, classify fates.

:func:`track_series` is the stage the pipeline calls after detection. It
registers every session to session 0 (:mod:`spinetrack.register`), gives every
branch one id and one arc frame (:mod:`spinetrack.branches`), places every
detected spine on its branch (arc of its base, offset of its head from the
shaft), links spines between consecutive sessions (:mod:`spinetrack.link`) and
classifies fates (:func:`spinetrack.fates.classify_fates`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .branches import BranchMap, match_branches
from .errors import InputError
from .fates import classify_fates
from .link import correct_drift, link_spines, nearest_displacements, split_gaps, spread_of
from .params import LinkParams, Params
from .progress import ProgressCallback, report, sub_progress
from .register import Registration, register_series
from .results import SPINE_COLUMNS

log = logging.getLogger(__name__)

__all__ = ["Tracked", "track_series", "place_spines", "link_placed", "link_errors",
           "split_statistics", "split_inconsistent", "track_limit", "SPINE_EXTRA_COLUMNS"]

#: Columns of Tracked.spines after the contract's.
SPINE_EXTRA_COLUMNS = ["side", "kind", "head_intensity", "head_radius_um", "score",
                       "session_branch_id", "session_arc_um", "ref_z_um", "ref_y_um", "ref_x_um",
                       "base_z", "base_y", "base_x", "head_arc_um", "lateral_um", "depth_um"]

#: Columns linked on: the base's and the head's position along the branch, the head's
#: signed offset from the shaft in the imaging plane, and its depth offset.
LINK_COORDS = ("arc_um", "head_arc_um", "lateral_um", "depth_um")
#: Their weights (measured on rr30a-dev, see bench/results/track.md); depth (z, the least
#: certain axis) counts little.
LINK_WEIGHTS = (0.7, 0.7, 0.7, 0.3)


@dataclass(eq=False)
class Tracked:
    """What tracking a series gives.

    Attributes
    ----------
    spines : DataFrame
        The contract's spines.csv columns, then :data:`SPINE_EXTRA_COLUMNS`
        (those the detections provide). Filopodia are not tracked.
    fates : DataFrame
        :func:`spinetrack.fates.classify_fates` output.
    lines : DataFrame
        Series-wide centre lines (global ``branch_id``, shared ``arc_um``,
        ``session``).
    branch_table : DataFrame
        ``branch_id, length_um, arc_start_um, arc_end_um``.
    registration : Registration
    branch_map : BranchMap
    link_spread : dict or None
        The measured spread of linked spines (``spinetrack.link.spread_of``
        plus ``reach_along_branch_um``: how far along the branch a spine may move
        and still be linked, the equivalent of a search range; ``measured_range``:
        the range before the reach cap; ``n_split``: tracks cut by
        :func:`split_inconsistent`), or None when the search range was fixed.
    """

    spines: pd.DataFrame
    fates: pd.DataFrame
    lines: pd.DataFrame
    branch_table: pd.DataFrame
    registration: Registration
    branch_map: BranchMap | None = None
    link_spread: dict | None = None


def _um(df: pd.DataFrame, prefix: str, voxel) -> np.ndarray | None:
    cols = [f"{prefix}{a}" for a in "zyx"]
    if all(c in df.columns for c in cols):
        return df[cols].to_numpy(float) * np.asarray(voxel, float)
    return None


def _own_branch(base_um: np.ndarray, tracing) -> tuple[np.ndarray, np.ndarray] | None:
    """Session branch id and session arc of the nearest point of the session's own lines."""
    lines = getattr(tracing, "lines", None)
    if lines is None or not len(lines) or not len(base_um):
        return None
    _, j = cKDTree(lines[["z_um", "y_um", "x_um"]].to_numpy(float)).query(base_um)
    return lines["branch_id"].to_numpy()[j], lines["arc_um"].to_numpy(float)[j]


def place_spines(detections: pd.DataFrame, k: int, voxel_size_um, registration: Registration,
                 branch_map: BranchMap, tracing=None) -> pd.DataFrame:
    """Put one session's detections on the global branches, in session 0's frame.

    Parameters
    ----------
    detections : DataFrame
        Detections of session ``k`` (architecture.md "Detections"): at least
        ``z, y, x`` (pixels) or ``z_um, y_um, x_um``; ``base_z, base_y, base_x``
        and a session ``branch_id`` when known.
    k : int
        Session index.
    voxel_size_um : sequence of 3 floats
        Session k's voxel size.
    registration, branch_map
        From :func:`register_series` and :func:`match_branches`.
    tracing : Tracing, optional
        Session k's own tracing: gives ``session_branch_id`` and
        ``session_arc_um`` to detections without ``branch_id`` / ``arc_um``.

    Returns
    -------
    DataFrame
        The detections with ``session``, pixel and µm head positions, global
        ``branch_id``, shared ``arc_um`` (of the base), ``lateral_um``,
        ``depth_um`` (head offset from the shaft), ``ref_*_um`` (head in session
        0's frame), ``session_branch_id`` and ``session_arc_um``.
    """
    d = detections.reset_index(drop=True).copy()
    vox = np.asarray(voxel_size_um, float)
    head = _um(d, "", vox)
    if head is None:
        if not all(c in d.columns for c in ("z_um", "y_um", "x_um")):
            raise InputError(None, f"detections of session {k} lack z, y, x positions")
        head = d[["z_um", "y_um", "x_um"]].to_numpy(float)
        d["z"], d["y"], d["x"] = (head / vox).T
    d["z_um"], d["y_um"], d["x_um"] = head.T
    base = _um(d, "base_", vox)
    if base is None:
        base = head
    own = _own_branch(base, tracing)
    if own is not None:
        if "branch_id" not in d.columns:
            d["branch_id"] = own[0]
        if "arc_um" not in d.columns:
            d["arc_um"] = own[1]
    head_ref = registration.to_reference(k, head) if len(d) else np.zeros((0, 3))
    base_ref = registration.to_reference(k, base) if len(d) else np.zeros((0, 3))
    cands = None
    if "branch_id" in d.columns and k < len(branch_map.session_branches):
        sb = branch_map.session_branches[k]
        cands = [sb.get(int(b)) if pd.notna(b) else None for b in d["branch_id"]]
        d["session_branch_id"] = d["branch_id"]
    if "arc_um" in d.columns:
        d["session_arc_um"] = d["arc_um"]
    at_base = branch_map.project(base_ref, cands)
    at_head = branch_map.project(head_ref, list(at_base["branch_id"].map(lambda g: [g])))
    d["session"] = k
    d["branch_id"] = at_base["branch_id"].to_numpy()
    d["arc_um"] = at_base["arc_um"].to_numpy()
    d["head_arc_um"] = at_head["arc_um"].to_numpy()
    d["lateral_um"] = at_head["lateral_um"].to_numpy()
    d["depth_um"] = at_head["depth_um"].to_numpy()
    d["ref_z_um"], d["ref_y_um"], d["ref_x_um"] = head_ref.T
    return d


def link_placed(placed: pd.DataFrame, params: LinkParams = LinkParams()) -> pd.DataFrame:
    """Link placed spines (see :func:`place_spines`) and order the columns.

    The residual drift along each branch is corrected first
    (:func:`spinetrack.link.correct_drift`, with fixed weights :data:`LINK_WEIGHTS`
    and ``params.search_range_um``). With ``params.adaptive_range`` the
    displacements between mutual nearest neighbours of consecutive sessions are
    then measured (:func:`spinetrack.link.nearest_displacements`,
    :func:`spinetrack.link.spread_of`) and the spines linked once with trackpy,
    every coordinate divided by its spread, within the measured range (adding
    ``length_um`` as a coordinate did not help: see docs/tracking.md); without it,
    or with fewer than 20 pairs to measure, they are linked with the fixed weights
    within ``params.search_range_um``. With the measured range and
    ``params.split_inconsistent``, every track is then cut where the spine's mean
    position before and after a session differ by more than that range
    (:func:`split_inconsistent`). The measurement is kept in
    ``result.attrs["link_spread"]`` (``n_split``: tracks cut).
    """
    corrected = correct_drift(placed, params.search_range_um, coords=LINK_COORDS,
                              weights=LINK_WEIGHTS, arc_columns=("arc_um", "head_arc_um"),
                              iterations=params.refine_iterations,
                              scale_um=params.refine_scale_um)
    spread = None
    if params.adaptive_range and len(corrected):
        spread = spread_of(nearest_displacements(corrected, LINK_COORDS, LINK_WEIGHTS,
                                                 params.search_range_um), LINK_COORDS)
    if spread is None:
        linked = link_spines(corrected, params.search_range_um, coords=LINK_COORDS,
                             weights=LINK_WEIGHTS)
    else:
        inv = [1.0 / sc for c, sc in zip(LINK_COORDS, spread["scale_um"])
               if c in ("arc_um", "head_arc_um")]
        along = float(np.sqrt(np.sum(np.square(inv))))
        spread["measured_range"] = spread["range"]
        if spread["range"] > params.search_range_um * along:  # never reach further
            spread["range"] = params.search_range_um * along
            spread["capped"] = True
        spread["reach_along_branch_um"] = float(spread["range"] / along)
        linked = link_spines(corrected, spread["range"], coords=LINK_COORDS,
                             weights=tuple(1.0 / np.asarray(spread["scale_um"])))
        if params.split_inconsistent:
            # the measured range, not the reach cap: a track is held to how far
            # stable spines move, the cap only limits how far links reach
            linked, n_split = split_inconsistent(linked, LINK_COORDS, spread["scale_um"],
                                                 spread["measured_range"])
            spread["n_split"] = n_split
    if "source" not in linked.columns:
        linked["source"] = "auto"
    cols = SPINE_COLUMNS + [c for c in SPINE_EXTRA_COLUMNS if c in linked.columns]
    out = linked[cols].sort_values(["session", "spine_id"]).reset_index(drop=True)
    out.attrs["link_spread"] = spread
    return out


def track_series(series, tracings, detections, params: Params = Params(),
                 progress: ProgressCallback | None = None,
                 registration: Registration | None = None) -> Tracked:
    """Register, match branches, link spines and classify fates for one series.

    Parameters
    ----------
    series : spinetrack.io.Series or None
        The sessions (images for registration, voxel sizes). ``None``: register
        from the centre lines alone, voxel sizes from the tracings.
    tracings : list of Tracing
        One per session.
    detections : list of DataFrame
        One per session (architecture.md "Detections"); rows with ``kind`` other
        than ``spine`` (filopodia) are not tracked.
    params : Params
        Uses ``params.register``, ``params.link`` and ``params.fates``.
    progress : callable, optional
        ``progress(stage, done, total)`` with stages ``register``, ``branches``,
        ``link``, ``fates``.
    registration : Registration, optional
        Use this registration instead of computing one.

    Returns
    -------
    Tracked
    """
    n = len(detections)
    if n == 0:
        raise InputError(None, "no sessions to track")
    if tracings is None or len(tracings) != n:
        raise InputError(None, f"need one tracing per session ({n}), got "
                         f"{0 if tracings is None else len(tracings)}")
    if series is not None and len(series) != n:
        raise InputError(None, f"{len(series)} sessions but {n} detection tables")
    if registration is None:
        registration = register_series(series, tracings, params.register,
                                       progress=sub_progress(progress, ""))
    elif registration.n_sessions != n:
        raise InputError(None, f"registration has {registration.n_sessions} sessions, not {n}")
    report(progress, "branches", 0, 1)
    bmap = match_branches(tracings, registration,
                          match_distance_um=min(2.0, params.register.match_distance_um))
    report(progress, "branches", 1, 1)
    if not bmap.branch_ids and any(len(d) for d in detections):
        raise InputError(None, "no dendrite was traced in any session, so the spines cannot "
                         "be placed on branches and linked")
    placed = []
    for k in range(n):
        report(progress, "link", k, n + 1)
        det = detections[k]
        if "kind" in det.columns:
            det = det[det["kind"] == "spine"]
        vox = series[k].voxel_size_um if series is not None else tracings[k].voxel_size_um
        placed.append(place_spines(det, k, vox, registration, bmap, tracings[k]))
    spines = link_placed(pd.concat(placed, ignore_index=True), params.link)
    report(progress, "link", n + 1, n + 1)
    report(progress, "fates", 0, 1)
    fates = classify_fates(spines, n, params.fates.restore_radius_um)
    report(progress, "fates", 1, 1)
    return Tracked(spines=spines, fates=fates, lines=bmap.lines, branch_table=bmap.branch_table,
                   registration=registration, branch_map=bmap,
                   link_spread=spines.attrs.get("link_spread"))


def stayed_residuals(report_table: pd.DataFrame, spines: pd.DataFrame) -> pd.DataFrame:
    """The registration report with how far spines that stayed appear to move.

    Adds ``stayed_residual_um``: per session k >= 1, the median distance between
    the registered head positions (``ref_z_um, ref_y_um, ref_x_um``) of every
    spine linked from session k - 1 to k, and ``n_stayed``, how many there are.
    It measures registration error, spine movement and detection jitter
    together, so it bounds the registration's error from above; only linked
    spines count, so it cannot exceed the linker's reach.
    """
    out = report_table.copy()
    cols = ["ref_z_um", "ref_y_um", "ref_x_um"]
    res = {int(k): (np.nan, 0) for k in out["session"]} if "session" in out else {}
    if len(spines) and all(c in spines.columns for c in ("spine_id", "session", *cols)):
        obs = spines[["spine_id", "session", *cols]]
        later = obs.assign(session=obs["session"] - 1)
        pairs = obs.merge(later, on=["spine_id", "session"], suffixes=("", "_next"))
        d = np.linalg.norm(pairs[[f"{c}_next" for c in cols]].to_numpy(float)
                           - pairs[cols].to_numpy(float), axis=1)
        for k, dk in pd.Series(d).groupby(pairs["session"].to_numpy() + 1):
            res[int(k)] = (float(np.median(dk)), int(len(dk)))
    out["stayed_residual_um"] = [res.get(int(k), (np.nan, 0))[0] for k in out["session"]]
    out["n_stayed"] = [res.get(int(k), (np.nan, 0))[1] for k in out["session"]]
    return out


def split_statistics(positions: np.ndarray) -> np.ndarray:
    """How far apart a track's mean positions before and after each session are.

    Parameters
    ----------
    positions : ndarray, (n, C)
        One track's observations in consecutive sessions, each coordinate
        divided by its measured spread between consecutive sessions (so that
        a single link's scaled distance is ``|x[1] - x[0]|``).

    Returns
    -------
    ndarray, (n - 1,)
        Entry ``j - 1`` compares the observations before session ``j`` of the
        track with those from ``j`` on: the distance between the two means in
        units of its own standard deviation, scaled like a single link's
        distance. With one observation on each side it is that link's scaled
        distance; with more, the means are surer and a smaller change stands out.
    """
    x = np.asarray(positions, float)
    if len(x) < 2:
        return np.zeros(0)
    return _split_statistics(x[None])[0]


def _split_statistics(x: np.ndarray) -> np.ndarray:
    """:func:`split_statistics` of m tracks of equal length at once: (m, n, C) -> (m, n - 1)."""
    n = x.shape[1]
    c = np.cumsum(x, axis=1)
    j = np.arange(1, n)[None, :, None]
    before = c[:, :-1] / j
    after = (c[:, -1:] - c[:, :-1]) / (n - j)
    # each observation's own spread is that of a link over sqrt(2)
    return (np.linalg.norm(after - before, axis=2)
            / np.sqrt((1.0 / j + 1.0 / (n - j)) / 2.0)[..., 0])


def track_limit(limit: float, n: int, n_coords: int) -> float:
    """The cut's limit for a track of ``n`` sessions, tested at ``n - 1`` places.

    ``limit`` is the measured range of a single link. Its tail probability
    under a χ distribution with ``n_coords`` degrees of freedom is shared among
    the ``n - 1`` places a track can be cut (Bonferroni), so a stable track is
    cut about as rarely as one stable link falls outside the range. For
    ``n <= 2`` it is ``limit`` itself.
    """
    if n <= 2:
        return float(limit)
    from scipy.stats import chi2

    p = chi2.sf(float(limit) ** 2, n_coords) / (n - 1)
    return float(np.sqrt(chi2.isf(p, n_coords))) if p > 0 else float(limit)


def _cuts(x: np.ndarray, limit: float, start: int = 0) -> list[int]:
    """Where to cut one track (binary segmentation, largest change first)."""
    if len(x) < 3:  # a single link was already held to the range by the linker
        return []
    z = split_statistics(x)
    j = int(np.argmax(z))
    if z[j] <= track_limit(limit, len(x), x.shape[1]):
        return []
    return (_cuts(x[:j + 1], limit, start) + [start + j + 1]
            + _cuts(x[j + 1:], limit, start + j + 1))


def split_inconsistent(linked: pd.DataFrame, coords, scale_um, limit: float
                       ) -> tuple[pd.DataFrame, int]:
    """Cut tracks whose spine moved more than a stable spine does.

    The linker looks at one pair of sessions at a time, so a spine lost and
    replaced by a new one at nearly the same place is joined to it when the two
    single observations are within the search range. Over several sessions
    the spine's position is known better: here a track of ``n`` sessions is
    cut before session ``j`` when its mean scaled position before ``j`` and
    from ``j`` on differ by more than ``track_limit(limit, n, len(coords))``
    (:func:`split_statistics`: the same units as the linker's range, so a
    track of two sessions is never cut; :func:`track_limit`: the range, made
    stricter for the ``n - 1`` places a longer track is tested at). The
    largest change is cut first and both parts are tested again.

    Parameters
    ----------
    linked : DataFrame
        Linked spines (``spine_id``, ``session`` and ``coords``), ids covering
        contiguous runs of sessions.
    coords : sequence of str
        Coordinates compared (µm).
    scale_um : sequence of float
        Spread of each coordinate along a link (``measure_spread``'s
        ``scale_um``).
    limit : float
        Largest allowed change, in those spreads (the measured range).

    Returns
    -------
    (DataFrame, int)
        A copy with new ``spine_id`` (numbered by first appearance, as
        :func:`spinetrack.link.split_gaps` does) and the number of cuts.
    """
    out = linked.copy()
    if not len(out):
        return out, 0
    order = np.lexsort((out["session"].to_numpy(), out["spine_id"].to_numpy()))
    sid = out["spine_id"].to_numpy()[order]
    x = out[list(coords)].to_numpy(float)[order] / np.asarray(scale_um, float)
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    length = np.diff(np.r_[starts, len(sid)])
    piece = np.zeros(len(sid), int)
    n_cut = 0
    for n in np.unique(length[length >= 3]):  # screen all tracks of one length at once
        a = starts[length == n]
        z = _split_statistics(x[a[:, None] + np.arange(n)])
        for a0 in a[z.max(axis=1) > track_limit(limit, n, x.shape[1])]:
            for c in _cuts(x[a0:a0 + n], limit):
                piece[a0 + c:a0 + n] += 1
                n_cut += 1
    if not n_cut:
        return out, 0
    new = np.empty(len(sid), np.int64)
    new[order] = sid * (int(piece.max()) + 1) + piece
    out["spine_id"] = split_gaps(new, out["session"].to_numpy())
    return out, n_cut


#: Columns of :func:`link_errors`.
LINK_ERROR_COLUMNS = ["kind", "cause", "from_session", "index_a", "index_b", "branch_a",
                      "branch_b", "arc_um", "d_arc_um", "d_head_arc_um", "d_lateral_um",
                      "d_depth_um"]


def link_errors(spines: pd.DataFrame, truth_spines: pd.DataFrame, lateral_um: float = 1.2,
                axial_um: float = 2.5, reach_um: float | None = None) -> pd.DataFrame:
    """Every link that disagrees with a truth, with what tells the two ends apart.

    Result spines are matched to truth spines session by session
    (:func:`spinetrack.compare.match_spines`); only links whose two ends were
    both matched are looked at, as ``spinetrack compare`` scores them.

    Parameters
    ----------
    spines : DataFrame
        :attr:`Tracked.spines` (``session, spine_id, z_um, y_um, x_um`` and the
        branch-frame columns ``branch_id, arc_um, head_arc_um, lateral_um,
        depth_um``).
    truth_spines : DataFrame
        Truth spine table with ``session, spine_id, z_um, y_um, x_um``.
    lateral_um, axial_um : float
        Matching tolerances, µm (those of ``spinetrack compare``).
    reach_um : float, optional
        How far along the branch the linker may reach (e.g.
        ``Tracked.link_spread["reach_along_branch_um"]``); missed links whose
        ends are further apart are put down to ``beyond range``.

    Returns
    -------
    DataFrame
        :data:`LINK_ERROR_COLUMNS`, one row per wrong link. ``kind`` is
        ``extra`` (linked, but two different truth spines) or ``missed`` (one
        truth spine, not linked). ``cause`` of a missed link: ``other branch``
        (its ends were placed on different global branches), ``beyond range``,
        ``taken`` (an end was linked to another detection instead) or
        ``unlinked``; of an extra link: ``neighbour`` (the truth spine of the
        earlier end is also there in the later session) or ``replacement``
        (it is not: the linker joined a lost and a new spine). ``index_a`` and
        ``index_b`` are the rows of ``spines`` at the two ends; ``d_*`` are
        changes from the earlier to the later end, µm.
    """
    from .compare import match_spines

    pairs = match_spines(spines, truth_spines, lateral_um, axial_um)
    tid = pd.Series(truth_spines["spine_id"].to_numpy()[
        truth_spines.index.get_indexer(pairs["truth_index"])], index=pairs["result_index"])
    r_of_t = dict(zip(pairs["truth_index"], pairs["result_index"]))
    key = dict(zip(zip(spines["session"], spines["spine_id"]), spines.index))
    truth_key = set(zip(truth_spines["session"], truth_spines["spine_id"]))
    rows = []
    for a in spines.index:
        k, sid = spines.at[a, "session"], spines.at[a, "spine_id"]
        b = key.get((k + 1, sid))
        if b is None or a not in tid.index or b not in tid.index or tid[a] == tid[b]:
            continue
        cause = "neighbour" if (k + 1, tid[a]) in truth_key else "replacement"
        rows.append(_error_row(spines, "extra", cause, a, b))
    t_key = dict(zip(zip(truth_spines["session"], truth_spines["spine_id"]),
                     truth_spines.index))
    for (k, sid), ta in t_key.items():
        tb = t_key.get((k + 1, sid))
        if tb is None or ta not in r_of_t or tb not in r_of_t:
            continue
        a, b = r_of_t[ta], r_of_t[tb]
        if spines.at[a, "spine_id"] == spines.at[b, "spine_id"]:
            continue
        row = _error_row(spines, "missed", "", a, b)
        if row["branch_a"] != row["branch_b"]:
            row["cause"] = "other branch"
        elif reach_um is not None and abs(row["d_arc_um"]) > reach_um:
            row["cause"] = "beyond range"
        elif (k + 1, spines.at[a, "spine_id"]) in key or (k, spines.at[b, "spine_id"]) in key:
            row["cause"] = "taken"
        else:
            row["cause"] = "unlinked"
        rows.append(row)
    return pd.DataFrame(rows, columns=LINK_ERROR_COLUMNS)


def _error_row(spines: pd.DataFrame, kind: str, cause: str, a, b) -> dict:
    ra, rb = spines.loc[a], spines.loc[b]
    return {"kind": kind, "cause": cause, "from_session": int(ra["session"]), "index_a": a,
            "index_b": b, "branch_a": int(ra["branch_id"]), "branch_b": int(rb["branch_id"]),
            "arc_um": float(ra["arc_um"]), "d_arc_um": float(rb["arc_um"] - ra["arc_um"]),
            "d_head_arc_um": float(rb["head_arc_um"] - ra["head_arc_um"]),
            "d_lateral_um": float(rb["lateral_um"] - ra["lateral_um"]),
            "d_depth_um": float(rb["depth_um"] - ra["depth_um"])}


# --------------------------------------------------------------------------- command line


def read_detections(folder, name: str, session) -> tuple:
    """The tracing and detections ``spinetrack detect`` wrote for one session.

    Reads ``folder/<name>_spines.csv`` and ``folder/<name>_lines.csv`` (and
    ``<name>_graph.csv`` when present). Spines a person marked ``is_bad``
    (excluded, as in rr30a-dev's tables) are left out, with one log line, as
    ``learn`` and ``compare`` leave them out.

    Returns
    -------
    (Tracing, DataFrame)
    """
    from pathlib import Path

    from .trace import GRAPH_COLUMNS, Tracing, tracing_from_lines

    folder = Path(folder)
    spines_path, lines_path = folder / f"{name}_spines.csv", folder / f"{name}_lines.csv"
    for p in (spines_path, lines_path):
        if not p.exists():
            raise InputError(p, "no such file (run 'spinetrack detect' on the session first, "
                             "or give --names matching the file prefixes)")
    try:
        det = pd.read_csv(spines_path)
        lines = pd.read_csv(lines_path)
    except (OSError, ValueError) as exc:
        raise InputError(spines_path, f"cannot be read as CSV ({exc})") from None
    need = [c for c in ("z", "y", "x") if c not in det.columns]
    if need:
        raise InputError(spines_path, f"lacks columns {need}")
    need = [c for c in ("branch_id", "z", "y", "x") if c not in lines.columns]
    if need:
        raise InputError(lines_path, f"lacks columns {need}")
    det = _without_excluded(det, spines_path)
    graph_path = folder / f"{name}_graph.csv"
    if graph_path.exists() and {"z_um", "arc_um"} <= set(lines.columns):
        graph = pd.read_csv(graph_path)
        tracing = Tracing(lines=lines, graph=graph[[c for c in GRAPH_COLUMNS if c in graph]],
                          voxel_size_um=tuple(session.voxel_size_um), shape=session.shape)
    else:
        tracing = tracing_from_lines(lines, session.voxel_size_um, session.shape)
    return tracing, det


def _without_excluded(det: pd.DataFrame, path) -> pd.DataFrame:
    """``det`` without the rows marked ``is_bad`` (and without that column)."""
    if "is_bad" not in det.columns:
        return det
    from .compare import _truthy

    bad = _truthy(det["is_bad"], strict=True, where=path)
    if bad.any():
        log.info("%s: left out %d of %d spines marked is_bad (excluded by the person)",
                 path, int(bad.sum()), len(det))
    return det.loc[~bad].drop(columns="is_bad").reset_index(drop=True)
