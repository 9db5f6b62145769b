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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import Cancelled, InputError
from .io import Series
from .params import Params
from .progress import ProgressCallback, report, sub_progress
from .results import Results, write_results

__all__ = ["STAGES", "run_series", "run_and_write", "write_run", "retire_previous",
           "results_from_tracked",
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


def _unpaired_sessions(report: pd.DataFrame | None, names: list[str]) -> list[str]:
    """Warnings for sessions whose centre lines hardly meet session 0's after registration."""
    from .register import MIN_PAIRED_FRACTION

    if report is None or "paired_fraction" not in report.columns:
        return []
    out = []
    for k, frac in zip(report["session"], report["paired_fraction"]):
        if pd.notna(frac) and frac < MIN_PAIRED_FRACTION:
            name = names[int(k)] if int(k) < len(names) else f"session {k}"
            out.append(f"{name}: only {frac:.0%} of its centre lines lie on session 0's after "
                       "registration (sessions of one field: about 90% or more); if it shows "
                       "another field or failed to register, its spines' losses and "
                       "formations are not real (registration.csv)")
    return out


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
    summary.setdefault("warnings", []).extend(
        _unpaired_sessions(tracked.registration.report, [s.name for s in series]))
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


def _reapply_edits(results: Results, out: Path, edits: list) -> Results:
    """Apply a person's edits (read from ``out/edits.json``) on top of fresh results."""
    from .edits import apply_edits

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

    Everything is computed before anything is written (a person's edits
    included), so a failure or a cancel while computing leaves a previous results
    folder as it was. Writing then goes: the previous run's ``params.json`` (the
    completion marker), ``report.html``, ``figures/`` and ``compare.json`` are
    removed; the tables are written, each atomically, ``params.json`` last; the
    report follows. An interruption while writing leaves a folder without
    ``params.json`` (tables interrupted) or with complete tables and no
    ``report.html`` (report interrupted); the exception then carries a note
    (``exc.__notes__``) saying which files are from which run.

    If ``out_dir`` holds a person's ``edits.json`` (from the napari plugin), the
    fresh automatic results go to ``out_dir/auto/`` and the edits are re-applied
    on top for the top-level tables: a person's corrections are never lost by
    re-running.

    Returns
    -------
    Results
        What was written at the top level of ``out_dir``.
    """
    from .edits import load_edits

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    edits = load_edits(out)  # a malformed edit log stops the run before any work
    project = (out / "edits.json").exists()
    with _noting_interruption(out):
        auto = run_series(series, params, progress)
        results = _reapply_edits(auto, out, edits) if project else auto
    extra = {"inputs": {"files": [str(Path(s.path).resolve()) if s.path else None
                                  for s in series],
                        "names": series.names, "days": series.days,
                        "voxel_size_um": [list(s.voxel_size_um) for s in series]}}
    extra.update(extra_params or {})
    write_run(results, out, auto=auto if project else None, extra_params=extra,
              report_html=report_html, parquet=parquet, progress=progress)
    return results


def write_run(results: Results, out_dir: str | Path, auto: Results | None = None,
              extra_params: dict[str, Any] | None = None, report_html: bool = True,
              parquet: bool | None = None, progress: ProgressCallback | None = None
              ) -> None:
    """Write a run's results folder over whatever an earlier run left there.

    The earlier ``params.json`` (the completion marker), ``report.html``,
    ``figures/`` and ``compare.json`` are removed first; then ``auto/`` (when
    ``auto`` is given: a correction project's automatic results), the tables
    with ``params.json`` last, and the report. An exception raised meanwhile
    (an interruption included) carries a note, ``exc.__notes__[-1]``, saying
    which files are from which run.
    """
    out = Path(out_dir)
    with _noting_interruption(out) as writing:
        writing.start("tables")
        retire_previous(out, auto is not None)
        report(progress, "write", 0, 1)
        if auto is not None:
            write_results(auto, out / "auto", parquet=parquet, extra_params=extra_params)
        write_results(results, out, parquet=parquet, extra_params=extra_params)
        report(progress, "write", 1, 1)
        if report_html:
            from .report import write_report

            writing.start("report")
            write_report(results, out, progress=sub_progress(progress, "report"))


def retire_previous(out: Path, project: bool, scores: bool = True) -> None:
    """Remove what marks or describes an earlier run before its tables are replaced.

    ``params.json`` (and ``auto/params.json`` in a project) first, so the folder
    reads as incomplete until the new one is written; then ``report.html``, the
    figures and ``compare.json``, which describe the earlier run's results and
    would otherwise sit beside the new tables. ``scores=False`` keeps
    ``compare.json`` (new statistics of the same fates leave its scores true).
    """
    from .report import FIGURES

    stale = [out / "params.json"] + ([out / "auto" / "params.json"] if project else [])
    stale += [out / "report.html"] + ([out / "compare.json"] if scores else [])
    stale += [out / "figures" / f"{name}.png" for name in FIGURES]
    stale += sorted((out / "figures").glob("spine_map_*.png"))
    for path in stale:
        if path.is_file():
            path.unlink()
            if path.name == "compare.json":
                log.info("removed %s: its scores were of the previous results (run "
                         "'spinetrack compare' again)", path)


class _Writing:
    """Which phase of :func:`run_and_write` is under way, and the files before writing."""

    def __init__(self, out: Path):
        self.out = out
        self.phase = "compute"
        self.before: dict[Path, tuple[int, int]] = {}

    def start(self, phase: str) -> None:
        if self.phase == "compute":
            self.before = _file_stamps(self.out)
        self.phase = phase

    def describe(self) -> str:
        """Where the folder stands, for the message of an interruption."""
        out = self.out
        if self.phase == "compute":
            return f"nothing was written; {out} is as it was"
        if self.phase == "report":
            return (f"the tables in {out} are complete (this run), its report was not "
                    f"written; 'spinetrack report {out}' writes it")
        now = _file_stamps(out)
        new = sorted(str(p) for p, st in now.items() if self.before.get(p) != st)
        old = sorted(str(p) for p, st in now.items() if self.before.get(p) == st)
        return (f"{out} is incomplete and has no params.json (the completion marker): "
                f"written by this run: {', '.join(new) or 'nothing yet'}; from the previous "
                f"run: {', '.join(old) or 'nothing'}; any previous report and compare.json "
                "were removed; run again to complete it")


def _file_stamps(out: Path) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) of every results file in ``out`` and ``out/auto``, by relative path.

    An atomic replace gives a file a new inode, so a changed stamp means rewritten.
    """
    stamps = {}
    for folder in (out, out / "auto"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if (path.is_file() and not path.name.startswith(".")
                    and path.suffix in (".csv", ".parquet", ".json")
                    and path.name not in ("edits.json", "view.json")):
                st = path.stat()
                stamps[path.relative_to(out)] = (st.st_ino, st.st_mtime_ns)
    return stamps


@contextmanager
def _noting_interruption(out: Path) -> Iterator[_Writing]:
    """Add a note saying which files are from which run to an interruption or a failure."""
    writing = _Writing(out)
    try:
        yield writing
    except (KeyboardInterrupt, Cancelled) as exc:
        exc.add_note(writing.describe())
        raise
    except Exception as exc:
        if writing.phase != "compute":
            exc.add_note(writing.describe())
        raise
