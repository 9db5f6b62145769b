"""Following spines across a series: register, match branches, link, classify fates.

:func:`track_series` is the stage the pipeline calls after detection. It
registers every session to session 0 (:mod:`spinetrack.register`), gives every
branch one id and one arc frame (:mod:`spinetrack.branches`), places every
detected spine on its branch (arc of its base, offset of its head from the
shaft), links spines between consecutive sessions (:mod:`spinetrack.link`) and
classifies fates (:func:`spinetrack.fates.classify_fates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .branches import BranchMap, match_branches
from .errors import InputError
from .fates import classify_fates
from .link import link_refined
from .params import LinkParams, Params
from .progress import ProgressCallback, report, sub_progress
from .register import Registration, register_series
from .results import SPINE_COLUMNS

__all__ = ["Tracked", "track_series", "place_spines", "link_placed", "SPINE_EXTRA_COLUMNS"]

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
    """

    spines: pd.DataFrame
    fates: pd.DataFrame
    lines: pd.DataFrame
    branch_table: pd.DataFrame
    registration: Registration
    branch_map: BranchMap | None = None


def _um(df: pd.DataFrame, prefix: str, voxel) -> np.ndarray | None:
    cols = [f"{prefix}{a}" for a in "zyx"]
    if all(c in df.columns for c in cols):
        return df[cols].to_numpy(float) * np.asarray(voxel, float)
    return None


def place_spines(detections: pd.DataFrame, k: int, voxel_size_um, registration: Registration,
                 branch_map: BranchMap) -> pd.DataFrame:
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
    """Link placed spines (see :func:`place_spines`) and order the columns."""
    linked = link_refined(placed, params.search_range_um, coords=LINK_COORDS,
                          weights=LINK_WEIGHTS, arc_columns=("arc_um", "head_arc_um"),
                          iterations=params.refine_iterations, scale_um=params.refine_scale_um)
    if "source" not in linked.columns:
        linked["source"] = "auto"
    cols = SPINE_COLUMNS + [c for c in SPINE_EXTRA_COLUMNS if c in linked.columns]
    return linked[cols].sort_values(["session", "spine_id"]).reset_index(drop=True)


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
    placed = []
    for k in range(n):
        report(progress, "link", k, n + 1)
        det = detections[k]
        if "kind" in det.columns:
            det = det[det["kind"] == "spine"]
        vox = series[k].voxel_size_um if series is not None else tracings[k].voxel_size_um
        placed.append(place_spines(det, k, vox, registration, bmap))
    spines = link_placed(pd.concat(placed, ignore_index=True), params.link)
    report(progress, "link", n + 1, n + 1)
    report(progress, "fates", 0, 1)
    fates = classify_fates(spines, n, params.fates.restore_radius_um)
    report(progress, "fates", 1, 1)
    return Tracked(spines=spines, fates=fates, lines=bmap.lines, branch_table=bmap.branch_table,
                   registration=registration, branch_map=bmap)
