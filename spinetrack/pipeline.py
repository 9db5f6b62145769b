"""The whole pipeline for one series: images in, contract results out.

:func:`run_series` computes everything in memory (trace and detect every
session, register, match branches, link, classify fates, branch statistics);
:func:`run_and_write` then writes a results folder. The ``run`` command, the
napari widget and the batch runner all call these two functions, so every front
end gets the same results from the same parameters.

Examples
--------
>>> from spinetrack.io import read_series
>>> from spinetrack.pipeline import run_and_write
>>> series = read_series(["day0.tif", "day1.tif"])          # doctest: +SKIP
>>> results = run_and_write(series, "out")                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError
from .io import Series
from .params import Params
from .progress import ProgressCallback, report, sub_progress
from .results import Results, write_results

__all__ = ["STAGES", "run_series", "run_and_write", "results_from_tracked",
           "sessions_table", "recompute"]

log = logging.getLogger(__name__)

STAGES = ("detect", "track", "statistics", "write", "report")
"""Top-level stages, in order, as they appear in progress stage names."""


def sessions_table(series: Series) -> pd.DataFrame:
    """One row per session: index, name, absolute file, day, voxel size and shape."""
    rows = []
    for k, s in enumerate(series):
        vz, vy, vx = s.voxel_size_um
        nz, ny, nx = s.shape
        rows.append({"session": k, "name": s.name,
                     "file": str(Path(s.path).resolve()) if s.path is not None else "",
                     "day": s.day, "voxel_z_um": vz, "voxel_y_um": vy, "voxel_x_um": vx,
                     "shape_z": nz, "shape_y": ny, "shape_x": nx})
    return pd.DataFrame(rows)


def _n_sessions(res) -> int:
    if res.sessions is not None and len(res.sessions):
        return len(res.sessions)
    if res.summary.get("n_sessions"):
        return int(res.summary["n_sessions"])
    if len(res.fates):
        return int(res.fates["present"].astype(str).str.len().max())
    return int(res.spines["session"].max()) + 1 if len(res.spines) else 1


def _session_days(res, n_sessions: int) -> list | None:
    if res.sessions is not None and "day" in res.sessions.columns:
        days = pd.to_numeric(res.sessions["day"], errors="coerce")
        if days.notna().any():
            return [None if pd.isna(d) else float(d) for d in days]
    days = res.summary.get("days")
    return days if days and len(days) == n_sessions else None


def _voxel_size(res) -> Any:
    if res.summary.get("voxel_size_um") is not None:
        return res.summary["voxel_size_um"]
    s = res.sessions
    cols = ["voxel_z_um", "voxel_y_um", "voxel_x_um"]
    if s is not None and all(c in s.columns for c in cols) and len(s):
        sizes = s[cols].to_numpy(dtype=float)
        return sizes[0].tolist() if (sizes == sizes[0]).all() else sizes.tolist()
    return None


def _stored_branch_table(res) -> pd.DataFrame | None:
    from .stats import BRANCH_TABLE_COLUMNS, TRACED_COLUMNS, branch_table_from_lines

    if res.lines is not None and len(res.lines):  # the lines know which sessions trace what
        return branch_table_from_lines(res.lines)
    b = res.branches
    if all(c in b.columns for c in BRANCH_TABLE_COLUMNS) and len(b) and \
            b[BRANCH_TABLE_COLUMNS].notna().all().all():
        return b[[c for c in (*BRANCH_TABLE_COLUMNS, *TRACED_COLUMNS) if c in b.columns]]
    return None


def stats_params(params: Params, link_reach_um: float | None):
    """``params.stats`` with the relink radius the restoration test should use.

    With ``relink_from_linker`` and a measured linker reach along the branch
    (``Tracked.link_spread["reach_along_branch_um"]``, kept in the summary as
    ``link_reach_um``) shorter than ``relink_radius_um``, the reach replaces it:
    a spine reappearing beyond the reach is not linked, so chance must be allowed
    to place new spines there too.
    """
    stats = params.stats
    if (stats.relink_from_linker and link_reach_um is not None
            and float(link_reach_um) < stats.relink_radius_um):
        stats = dataclasses.replace(stats, relink_radius_um=float(link_reach_um))
    return stats


def recompute(results: Results, progress: ProgressCallback | None = None,
              fates: bool = True, params: Params | None = None) -> Results:
    """Re-classify fates (optionally) and recompute the branch statistics of ``results``.

    Used after spines were edited (napari corrections, ``spinetrack report``).
    The branch stretches (``length_um, arc_start_um, arc_end_um``) come from
    ``results.branches`` when it has them, else from ``results.lines``, else
    from the range of spine positions. Summary keys the statistics do not
    produce (e.g. ``edits``) are kept.

    Parameters
    ----------
    results : Results
    progress : callable, optional
    fates : bool
        Re-classify the fates from the spines first (default); ``False`` keeps
        ``results.fates``.
    params : Params, optional
        Default: ``results.params``.
    """
    from .fates import classify_fates
    from .stats import add_run_metadata, branch_statistics

    params = params or results.params
    n = _n_sessions(results)
    stats = stats_params(params, results.summary.get("link_reach_um"))
    fate_table = results.fates
    if fates:
        report(progress, "report: fates", 0, 1)
        fate_table = classify_fates(results.spines, n, params.fates.restore_radius_um)
        report(progress, "report: fates", 1, 1)
    branches, summary = branch_statistics(
        results.spines, fate_table, _stored_branch_table(results), n, stats,
        days=_session_days(results, n), restore_radius_um=params.fates.restore_radius_um,
        progress=progress)
    old = {k: v for k, v in results.summary.items() if k not in summary}
    summary = add_run_metadata({**old, **summary}, _voxel_size(results), params)
    return Results(spines=results.spines, fates=fate_table, branches=branches, summary=summary,
                   lines=results.lines, registration=results.registration,
                   sessions=results.sessions, params=params, transform=results.transform)


def run_series(series: Series, params: Params = Params(),
               progress: ProgressCallback | None = None) -> Results:
    """Run the whole pipeline on one series, in memory.

    Parameters
    ----------
    series : spinetrack.io.Series
        Sessions in chronological order (each with its voxel size).
    params : Params
        All parameters; ``Params()`` gives the defaults.
    progress : callable, optional
        ``progress(stage, done, total)``; stage names start with one of
        :data:`STAGES`. It may raise :class:`spinetrack.errors.Cancelled` to stop.

    Returns
    -------
    Results
        Contract tables, summary (with parameters and versions), centre lines,
        the registration report and transform, and the sessions table.
    """
    from .detect import detect_session
    from .track import track_series

    n = len(series)
    if n == 0:
        raise InputError(None, "the series has no sessions")
    tracings, detections = [], []
    for k, session in enumerate(series):
        report(progress, "detect: sessions", k, n)
        tracing, found = detect_session(session, params,
                                        sub_progress(progress, f"detect {session.name}"))
        log.info("%s: %d branches, %d spines", session.name, tracing.n_branches,
                 int((found["kind"] == "spine").sum()) if "kind" in found else len(found))
        tracings.append(tracing)
        detections.append(found)
    report(progress, "detect: sessions", n, n)

    tracked = track_series(series, tracings, detections, params,
                           progress=sub_progress(progress, "track"))
    return results_from_tracked(series, tracked, params, sub_progress(progress, "statistics"),
                                calls="automatic")


def results_from_tracked(series: Series, tracked, params: Params = Params(),
                         progress: ProgressCallback | None = None,
                         calls: str | None = None) -> Results:
    """Branch statistics of a tracked series, gathered into :class:`Results`.

    ``tracked`` is what :func:`spinetrack.track.track_series` returns; used by
    :func:`run_series` and by ``spinetrack track`` (detections read from files).
    ``calls="automatic"`` records in the summary that the spines come from the
    detector, not from a person (the findings then remind that they are a draft).
    """
    from .stats import add_run_metadata, branch_statistics

    n = len(series)
    reach = (tracked.link_spread or {}).get("reach_along_branch_um")
    branches, summary = branch_statistics(
        tracked.spines, tracked.fates, tracked.branch_table, n, stats_params(params, reach),
        days=series.days, restore_radius_um=params.fates.restore_radius_um, progress=progress)
    summary["link_reach_um"] = None if reach is None else float(reach)
    if calls is not None:
        summary["calls"] = calls
    voxels = {tuple(s.voxel_size_um) for s in series}
    voxel: Any = list(series.voxel_size_um) if len(voxels) == 1 else [
        list(s.voxel_size_um) for s in series]
    summary = add_run_metadata(summary, voxel, params)
    from .track import stayed_residuals

    reg = tracked.registration
    return Results(spines=tracked.spines, fates=tracked.fates, branches=branches,
                   summary=summary, lines=tracked.lines,
                   registration=stayed_residuals(reg.report, tracked.spines),
                   sessions=sessions_table(series), params=params, transform=reg.to_dict())


def _reapply_edits(results: Results, out: Path) -> Results:
    """Apply a person's edits saved in ``out/edits.json`` on top of fresh results."""
    from .edits import apply_edits, load_edits

    edits = load_edits(out)
    if not edits:
        return results
    log.info("re-applying %d edits from %s (a person's edits win)", len(edits),
             out / "edits.json")
    return apply_edits(results, edits)


def run_and_write(series: Series, out_dir: str | Path, params: Params = Params(),
                  progress: ProgressCallback | None = None,
                  extra_params: dict[str, Any] | None = None, report_html: bool = True,
                  parquet: bool | None = None) -> Results:
    """Run :func:`run_series` and write the results folder.

    Everything is computed before anything is written, and every file is written
    atomically (``params.json`` last), so a failure or a cancel leaves a previous
    results folder as it was. If ``out_dir`` holds a person's ``edits.json``
    (from the napari plugin), the fresh automatic results go to ``out_dir/auto/``
    and the edits are re-applied on top for the top-level tables: a person's
    corrections are never lost by re-running.

    Returns
    -------
    Results
        What was written at the top level of ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    results = run_series(series, params, progress)
    extra = {"inputs": {"files": [str(Path(s.path).resolve()) if s.path else None
                                  for s in series],
                        "names": series.names, "days": series.days,
                        "voxel_size_um": [list(s.voxel_size_um) for s in series]}}
    extra.update(extra_params or {})
    if (out / "edits.json").exists():
        write_results(results, out / "auto", parquet=parquet, extra_params=extra)
        results = _reapply_edits(results, out)
    if report_html:  # before the tables, so params.json (written last) marks a whole folder
        from .report import write_report

        out.mkdir(parents=True, exist_ok=True)
        write_report(results, out, progress=sub_progress(progress, "report"))
    report(progress, "write", 0, 1)
    write_results(results, out, parquet=parquet, extra_params=extra)
    report(progress, "write", 1, 1)
    return results
