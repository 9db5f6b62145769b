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
from scipy.spatial import cKDTree

from .branches import BranchMap, match_branches
from .errors import InputError
from .fates import classify_fates
from .link import link_refined, link_spines, measure_spread
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
    link_spread : dict or None
        The measured spread of linked spines (``spinetrack.link.measure_spread``
        plus ``reach_along_branch_um``: how far along the branch a spine may move
        and still be linked, the equivalent of a search range), or None when the
        search range was fixed.
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

    A first linking with fixed weights (:data:`LINK_WEIGHTS`) and
    ``params.search_range_um`` corrects the drift along each branch
    (:func:`spinetrack.link.link_refined`). With ``params.adaptive_range`` the
    links found are then measured (:func:`spinetrack.link.measure_spread`) and
    the spines linked again with every coordinate divided by its spread, within
    the measured range (adding ``length_um`` as a coordinate did not help: see
    docs/tracking.md). The
    measurement is kept in ``result.attrs["link_spread"]``.
    """
    linked = link_refined(placed, params.search_range_um, coords=LINK_COORDS,
                          weights=LINK_WEIGHTS, arc_columns=("arc_um", "head_arc_um"),
                          iterations=params.refine_iterations, scale_um=params.refine_scale_um)
    spread = None
    if params.adaptive_range:
        coords = LINK_COORDS
        spread = measure_spread(linked, coords)
        if spread is not None:
            inv = [1.0 / sc for c, sc in zip(coords, spread["scale_um"])
                   if c in ("arc_um", "head_arc_um")]
            along = float(np.sqrt(np.sum(np.square(inv))))
            if spread["range"] > params.search_range_um * along:  # never reach further
                spread["range"] = params.search_range_um * along
                spread["capped"] = True
            spread["reach_along_branch_um"] = float(spread["range"] / along)
            linked = link_spines(linked.drop(columns=["spine_id"]), spread["range"],
                                 coords=coords, weights=tuple(1.0 / np.asarray(
                                     spread["scale_um"])))
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


# --------------------------------------------------------------------------- command line


def read_detections(folder, name: str, session) -> tuple:
    """The tracing and detections ``spinetrack detect`` wrote for one session.

    Reads ``folder/<name>_spines.csv`` and ``folder/<name>_lines.csv`` (and
    ``<name>_graph.csv`` when present).

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
    graph_path = folder / f"{name}_graph.csv"
    if graph_path.exists() and {"z_um", "arc_um"} <= set(lines.columns):
        graph = pd.read_csv(graph_path)
        tracing = Tracing(lines=lines, graph=graph[[c for c in GRAPH_COLUMNS if c in graph]],
                          voxel_size_um=tuple(session.voxel_size_um), shape=session.shape)
    else:
        tracing = tracing_from_lines(lines, session.voxel_size_um, session.shape)
    return tracing, det


def add_track_command(sub) -> None:
    """The ``spinetrack track`` sub-command (registered by ``spinetrack.cli``)."""
    from .params import add_arguments

    p = sub.add_parser(
        "track", help="register sessions and link spines already detected in each session",
        description="Register every session to the first, match branches across sessions, "
                    "link the spines found by 'spinetrack detect' (DETECTIONS/<name>_spines.csv "
                    "and <name>_lines.csv per session), classify fates and write a results "
                    "folder (spines.csv, fates.csv, branches.csv, summary.json, lines.csv, "
                    "registration.csv/.json, sessions.csv, params.json). docs/tracking.md "
                    "explains the method and every parameter.")
    p.add_argument("sessions", nargs="+", metavar="SESSION",
                   help="session TIFFs in chronological order (their images are registered)")
    p.add_argument("--detections", required=True, metavar="DIR",
                   help="folder written by 'spinetrack detect' for every session")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created)")
    p.add_argument("--names", nargs="+", metavar="NAME",
                   help="file prefix of each session in DIR (default: the TIFF file stems)")
    p.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size in µm; overrides the files' metadata")
    add_arguments(p, ("register", "link", "fates", "stats"))
    p.set_defaults(func=_cmd_track)


def _cmd_track(args) -> int:
    import logging
    import sys

    from .io import read_series
    from .params import params_from_args
    from .pipeline import sessions_table
    from .progress import TqdmProgress
    from .results import Results, write_results
    from .stats import add_run_metadata, branch_statistics

    log = logging.getLogger("spinetrack")
    params = params_from_args(args)
    series = read_series(args.sessions, voxel_size_um=args.voxel_size, names=args.names)
    tracings, detections = [], []
    for s in series:
        tracing, det = read_detections(args.detections, s.name, s)
        tracings.append(tracing)
        detections.append(det)
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        tracked = track_series(series, tracings, detections, params, progress=bar)
        branches, summary = branch_statistics(
            tracked.spines, tracked.fates, tracked.branch_table, len(series), params.stats,
            days=series.days, restore_radius_um=params.fates.restore_radius_um, progress=bar)
    finally:
        bar.close()
    summary = add_run_metadata(summary, list(series.voxel_size_um), params)
    res = Results(spines=tracked.spines, fates=tracked.fates, branches=branches,
                  summary=summary, lines=tracked.lines, registration=tracked.registration.report,
                  sessions=sessions_table(series), params=params,
                  transform=tracked.registration.to_dict())
    write_results(res, args.out)
    counts = tracked.fates["fate"].value_counts()
    print(f"{tracked.fates.shape[0]} spines tracked over {len(series)} sessions: "
          + ", ".join(f"{f} {int(counts.get(f, 0))}" for f in
                      ("stable", "lost", "formed", "transient", "restored")))
    for r in tracked.registration.report.itertuples():
        log.info("session %d: shift (z, y, x) %.2f %.2f %.2f µm, rotation %.2f°, centre-line "
                 "residual %.2f µm", r.session, r.shift_z_um, r.shift_y_um, r.shift_x_um,
                 r.rotation_deg, r.residual_um)
    log.info("results in %s", args.out)
    return 0
