"""Agreement between a result and a person's (or a simulation's) annotations.

The scorer every other part of spinetrack is measured with. It reads a result
folder (the output contract's ``spines.csv`` and ``fates.csv``) and a truth
folder (rr30a-dev style ``truth_*.csv``, a synthetic truth folder written by
``spinetrack synth``, or any result folder) and reports

* detection precision, recall and F1 per session, from a one-to-one matching
  of detections to truth spines within ``lateral_um`` in (y, x) and
  ``axial_um`` in z;
* link precision and recall between consecutive sessions;
* a fate confusion matrix over result tracks paired one-to-one with a truth
  track, and the fate accuracy on them;
* restored-spine precision and recall, and whether ``restored_from`` points at
  the right lost spine.

Definitions are in ``docs/compare.md``; the short version is in
:func:`compare`.

Examples
--------
>>> import pandas as pd
>>> truth = pd.DataFrame({"spine_id": [0, 1], "session": [0, 0],
...                       "z_um": [5.0, 5.0], "y_um": [10.0, 20.0], "x_um": [10.0, 10.0]})
>>> result = truth.assign(x_um=[10.5, 12.0])
>>> scores = compare(result, truth)
>>> scores["detection"]["total"]["tp"], scores["detection"]["total"]["fp"]
(1, 1)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .errors import InputError
from .fates import FATES
from .files import to_jsonable, write_json_atomic
from .progress import ProgressCallback, report
from .results import check_complete

__all__ = [
    "LATERAL_UM",
    "AXIAL_UM",
    "SeriesTables",
    "load_tables",
    "load_result",
    "load_truth",
    "as_tables",
    "match_points",
    "match_spines",
    "distance_to_lines",
    "compare",
    "format_scores",
    "write_scores",
]

LATERAL_UM = 1.2
"""Default largest (y, x) distance between a detection and its truth spine, µm."""
AXIAL_UM = 2.5
"""Default largest z distance between a detection and its truth spine, µm."""

_POS = ["z_um", "y_um", "x_um"]
_TOL = 1e-9  # µm: a distance equal to the tolerance (up to rounding) matches
_LINE_STEP_UM = 0.1  # centre lines are resampled this finely for --near


# --------------------------------------------------------------------------- tables


@dataclass(eq=False)
class SeriesTables:
    """The tables of one series that the scorer needs, in normalised form.

    Attributes
    ----------
    spines : DataFrame
        One row per spine per session: ``spine_id`` (int), ``session`` (int),
        ``z_um, y_um, x_um`` (float, µm in that session's own image), ``is_bad``
        (bool; True for truth spines the annotator excluded), plus whatever other
        columns the file had. The index is 0..n-1.
    fates : DataFrame or None
        One row per spine_id: ``spine_id``, ``fate`` (one of
        :data:`spinetrack.fates.FATES`), ``restored_from`` (nullable Int64).
        None when the folder has no fates (detection only).
    lines : DataFrame or None
        Traced centre lines: ``session, z_um, y_um, x_um`` and, when known,
        ``branch_id, point`` (consecutive points of a branch are joined).
    n_sessions : int
        Number of sessions of the series.
    n_sessions_known : bool
        True when ``n_sessions`` came from ``sessions.csv``, ``summary.json`` or
        the fates' ``present`` strings rather than from the largest session index.
    linked : bool
        True when spine_ids carry identities across sessions (a fates table is
        present, or some spine_id occurs in more than one session). A
        detection-only table (every spine_id once) is not linked.
    format : str
        ``"rr30a"``, ``"synthetic"``, ``"result"`` or ``"table"`` (built in Python).
    path : Path or None
        The folder the tables were read from.
    """

    spines: pd.DataFrame
    fates: pd.DataFrame | None
    lines: pd.DataFrame | None
    n_sessions: int
    n_sessions_known: bool = False
    linked: bool = True
    format: str = "table"
    path: Path | None = None

    @classmethod
    def from_frames(
        cls,
        spines: pd.DataFrame,
        fates: pd.DataFrame | None = None,
        lines: pd.DataFrame | None = None,
        n_sessions: int | None = None,
        format: str = "table",
        path: str | Path | None = None,
    ) -> SeriesTables:
        """Check and normalise tables held in memory.

        Parameters
        ----------
        spines : DataFrame
            Needs ``session, z_um, y_um, x_um``; ``spine_id`` (each row its own
            spine when missing) and ``is_bad`` are optional.
        fates : DataFrame, optional
            Needs ``spine_id, fate``; ``restored_from`` optional. For rr30a-style
            tables a ``fate_contract`` column is used in place of ``fate``.
        lines : DataFrame, optional
            Needs ``session, z_um, y_um, x_um``.
        n_sessions : int, optional
            Default: from the fates' ``present`` strings, else the largest
            session index + 1.
        format : str
            Label reported with the scores.
        path : path, optional
            Named in error messages.

        Raises
        ------
        InputError
            On missing columns, non-numeric or missing positions, a spine_id twice
            in one session, or unknown fates.
        """
        where = Path(path) if path is not None else None
        return _build(spines, fates, lines, n_sessions, format, where, (where, where, where))


def _build(spines, fates, lines, n_sessions, fmt, folder, files) -> SeriesTables:
    spines_path, fates_path, lines_path = files
    spines_norm, has_ids = _normalise_spines(spines, spines_path)
    fates_norm = None if fates is None else _normalise_fates(fates, fates_path)
    lines_norm = None if lines is None else _normalise_lines(lines, lines_path)
    known = n_sessions is not None
    if n_sessions is None and fates_norm is not None and "present" in fates_norm:
        lengths = fates_norm["present"].dropna().astype(str).str.len()
        if len(lengths):
            n_sessions, known = int(lengths.max()), True
    top = int(spines_norm["session"].max()) + 1 if len(spines_norm) else 0
    if n_sessions is None:
        n_sessions = top
    elif top > n_sessions:
        raise InputError(spines_path, f"has spines in session {top - 1} but the series has "
                                      f"{n_sessions} sessions")
    repeats = bool(len(spines_norm)) and bool(spines_norm["spine_id"].duplicated().any())
    linked = has_ids and (fates_norm is not None or repeats)
    return SeriesTables(spines=spines_norm, fates=fates_norm, lines=lines_norm,
                        n_sessions=int(n_sessions), n_sessions_known=known, linked=linked,
                        format=fmt, path=folder)


def _need(df: pd.DataFrame, cols: list[str], where: Path | None, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(where, f"{what} lacks columns {missing}")


def _numeric(df: pd.DataFrame, col: str, where: Path | None, what: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    if len(values) and not np.isfinite(values).all():
        raise InputError(where, f"{what} has missing or non-numeric values in column {col}")
    return values


def _integers(df: pd.DataFrame, col: str, where: Path | None, what: str) -> np.ndarray:
    values = _numeric(df, col, where, what)
    if len(values) and (values != np.round(values)).any():
        raise InputError(where, f"{what} has non-integer values in column {col}")
    return values.astype(np.int64)


_YES = ["1", "1.0", "true", "yes", "bad"]
_NO = ["0", "0.0", "false", "no", "", "nan", "none"]


def _truthy(series: pd.Series, strict: bool = False, where=None) -> np.ndarray:
    """Where a flag column says yes (bool, or 1, true, yes, bad in any case).

    With ``strict``, a value that is neither yes nor no (0, false, no, blank)
    raises InputError (``where``: the file).
    """
    if series.dtype == bool:
        return series.to_numpy()
    text = series.astype(str).str.strip().str.lower()
    if strict:
        known = text.isin(_NO + _YES)
        if not known.all():
            odd = sorted(set(series[~known.to_numpy()].astype(str)))[:3]
            raise InputError(where, f"column {series.name} holds {odd}: give 1/0 or true/false")
    return text.isin(_YES).to_numpy()


def _normalise_spines(spines: pd.DataFrame, where: Path | None) -> tuple[pd.DataFrame, bool]:
    what = "spine table"
    _need(spines, ["session", *_POS], where, what)
    df = spines.reset_index(drop=True).copy()
    if "kind" in df.columns:  # contract spines.csv holds spines only; drop anything else
        kind = df["kind"]
        keep = kind.isna() | (kind.astype(str).str.strip().str.lower() == "spine")
        df = df.loc[keep.to_numpy()].reset_index(drop=True)
    has_ids = "spine_id" in df.columns
    df["spine_id"] = (_integers(df, "spine_id", where, what) if has_ids
                      else np.arange(len(df), dtype=np.int64))
    df["session"] = _integers(df, "session", where, what)
    if len(df) and df["session"].min() < 0:
        raise InputError(where, f"{what} has negative session indices")
    for col in _POS:
        df[col] = _numeric(df, col, where, what)
    df["is_bad"] = _truthy(df["is_bad"]) if "is_bad" in df.columns else False
    dup = df.duplicated(["spine_id", "session"])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise InputError(where, f"{what} has spine_id {int(row['spine_id'])} twice in session "
                                f"{int(row['session'])} (a spine_id is one spine per session)")
    return df, has_ids


def _normalise_fates(fates: pd.DataFrame, where: Path | None) -> pd.DataFrame:
    what = "fate table"
    df = fates.reset_index(drop=True).copy()
    if "fate_contract" in df.columns:  # rr30a: fates under the restored-at-same-site rule
        df["fate"] = df["fate_contract"]
    _need(df, ["spine_id", "fate"], where, what)
    df["spine_id"] = _integers(df, "spine_id", where, what)
    df["fate"] = df["fate"].astype(str).str.strip().str.lower()
    unknown = sorted(set(df["fate"]) - set(FATES))
    if unknown:
        raise InputError(where, f"{what} has unknown fates {unknown[:5]} (expected {list(FATES)})")
    if df["spine_id"].duplicated().any():
        raise InputError(where, f"{what} has spine_id "
                                f"{int(df.loc[df['spine_id'].duplicated(), 'spine_id'].iloc[0])} "
                                "twice")
    if "restored_from" in df.columns:
        values = pd.to_numeric(df["restored_from"].replace("", np.nan), errors="coerce")
        df["restored_from"] = values.round().astype("Int64")
    else:
        df["restored_from"] = pd.array([pd.NA] * len(df), dtype="Int64")
    if "present" in df.columns:
        df["present"] = df["present"].astype(str)
    return df


def _normalise_lines(lines: pd.DataFrame, where: Path | None) -> pd.DataFrame:
    what = "centre-line table"
    _need(lines, ["session", *_POS], where, what)
    df = lines.reset_index(drop=True).copy()
    df["session"] = _integers(df, "session", where, what)
    for col in _POS:
        df[col] = _numeric(df, col, where, what)
    return df


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"is not a readable CSV table ({first})") from None


def _n_sessions_from_folder(folder: Path, sessions_file: str) -> int | None:
    path = folder / sessions_file
    if path.exists():
        return len(_read_csv(path))
    summary = folder / "summary.json"
    if summary.exists():
        try:
            value = json.loads(summary.read_text()).get("n_sessions")
        except (ValueError, AttributeError):
            raise InputError(summary, "is not valid JSON") from None
        if value is not None:
            return int(value)
    return None


def load_tables(folder: str | Path) -> SeriesTables:
    """Read a result or truth folder, recognising its format from the files present.

    * ``truth_spines.csv`` → rr30a-dev truth: ``truth_spines.csv``,
      ``truth_fates.csv`` (``fate_contract`` and ``restored_from``),
      ``truth_lines.csv``, ``sessions.csv``.
    * ``spines.csv`` and ``truth.json`` → synthetic truth from ``spinetrack synth``.
    * ``spines.csv`` → a results folder (the output contract). ``fates.csv``,
      ``lines.csv`` and ``sessions.csv`` are read when present.

    Parameters
    ----------
    folder : path

    Returns
    -------
    SeriesTables

    Raises
    ------
    InputError
        If the folder is missing, has neither table, a table is unreadable or
        lacks columns, or the folder is a run's results an interruption left
        incomplete (tables without ``params.json``,
        :func:`spinetrack.results.incomplete_run`).
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "no such folder")
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    if (not (folder / "spines.csv").exists() and not (folder / "truth_spines.csv").exists()
            and (folder / "truth" / "truth.json").exists()):
        folder = folder / "truth"  # the folder 'spinetrack synth' wrote: its truth is in truth/
    if (folder / "truth_spines.csv").exists():
        fmt, names = "rr30a", ("truth_spines.csv", "truth_fates.csv", "truth_lines.csv",
                               "sessions.csv")
    elif (folder / "spines.csv").exists():
        fmt = "synthetic" if (folder / "truth.json").exists() else "result"
        names = ("spines.csv", "fates.csv", "lines.csv", "sessions.csv")
    else:
        raise InputError(folder, "has no spines.csv (results folder or synthetic truth) "
                                 "and no truth_spines.csv (rr30a-style truth)")
    if fmt == "result":
        check_complete(folder)  # an interrupted run's tables may come from two runs
    spines_name, fates_name, lines_name, sessions_name = names
    spines = _read_csv(folder / spines_name)
    fates = (_read_csv(folder / fates_name, dtype={"present": str})
             if (folder / fates_name).exists() else None)
    lines = _read_csv(folder / lines_name) if (folder / lines_name).exists() else None
    n_sessions = _n_sessions_from_folder(folder, sessions_name)
    return _build(spines, fates, lines, n_sessions, fmt, folder,
                  (folder / spines_name, folder / fates_name, folder / lines_name))


def load_result(folder: str | Path) -> SeriesTables:
    """Read a result folder (``spines.csv``, optional ``fates.csv``); see :func:`load_tables`."""
    return load_tables(folder)


def load_truth(folder: str | Path) -> SeriesTables:
    """Read a truth folder (rr30a-dev, synthetic, or a result); see :func:`load_tables`."""
    return load_tables(folder)


def as_tables(obj: SeriesTables | pd.DataFrame | str | Path) -> SeriesTables:
    """Accept loaded tables, a spine DataFrame, or a folder path."""
    if isinstance(obj, SeriesTables):
        return obj
    if isinstance(obj, pd.DataFrame):
        return SeriesTables.from_frames(obj)
    if isinstance(obj, (str, Path)):
        return load_tables(obj)
    raise TypeError(f"expected SeriesTables, DataFrame or a folder path, got {type(obj).__name__}")


def _is_run(tables: SeriesTables) -> bool:
    """True when ``tables`` were read from a folder a spinetrack run wrote (``params.json``)."""
    return (tables.format == "result" and tables.path is not None
            and (tables.path / "params.json").is_file())


def _check_order(r_tab: SeriesTables, t_tab: SeriesTables) -> None:
    """Stop when the result is a truth folder and the truth a run's results (swapped).

    Precision and recall would come out exchanged. Two truth folders, or a
    truth folder scored against tables made by hand, are allowed.
    """
    if r_tab.format in ("rr30a", "synthetic") and _is_run(t_tab):
        raise InputError(r_tab.path, f"is a {r_tab.format} truth folder and {t_tab.path} a "
                         "spinetrack results folder: the two look swapped (precision and "
                         "recall would be exchanged); give the result first: spinetrack "
                         f"compare {t_tab.path} {r_tab.path}")


# --------------------------------------------------------------------------- matching


def match_points(
    result_um: np.ndarray,
    truth_um: np.ndarray,
    lateral_um: float = LATERAL_UM,
    axial_um: float = AXIAL_UM,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of two point sets within a lateral and an axial tolerance.

    A pair is admissible when the (y, x) distance is at most ``lateral_um`` and
    the z distance at most ``axial_um``. Among all one-to-one matchings of
    admissible pairs, the one with the most pairs is chosen and, among those,
    the one with the smallest sum of scaled distances
    ``sqrt((d_lateral / lateral_um)**2 + (d_z / axial_um)**2)``. Candidate pairs
    come from a KD-tree; the Hungarian algorithm runs on each connected group of
    candidates separately, so the cost grows with the size of the groups, not
    of the sessions.

    Parameters
    ----------
    result_um, truth_um : (N, 3) and (M, 3) arrays
        Positions (z, y, x) in µm.
    lateral_um, axial_um : float
        Tolerances in µm (a distance equal to a tolerance matches).

    Returns
    -------
    result_idx, truth_idx : int arrays of equal length
        Matched rows, sorted by ``result_idx``.
    """
    if lateral_um <= 0 or axial_um <= 0:
        raise InputError(None, "matching tolerances must be positive")
    a = np.asarray(result_um, dtype=float).reshape(-1, 3)
    b = np.asarray(truth_um, dtype=float).reshape(-1, 3)
    empty = np.zeros(0, dtype=np.int64)
    if not len(a) or not len(b):
        return empty, empty
    scale = np.array([1.0 / axial_um, 1.0 / lateral_um, 1.0 / lateral_um])
    tree_a, tree_b = cKDTree(a * scale), cKDTree(b * scale)
    # the admissible cylinder (radius 1, half-height 1 when scaled) lies in a ball of sqrt 2
    pairs = tree_a.sparse_distance_matrix(tree_b, math.sqrt(2.0) * (1 + 1e-6),
                                          output_type="ndarray")
    i = pairs["i"].astype(np.int64)
    j = pairs["j"].astype(np.int64)
    d = a[i] - b[j]
    dz = np.abs(d[:, 0])
    dlat = np.hypot(d[:, 1], d[:, 2])
    ok = (dz <= axial_um + _TOL) & (dlat <= lateral_um + _TOL)
    i, j, dz, dlat = i[ok], j[ok], dz[ok], dlat[ok]
    if not len(i):
        return empty, empty
    cost = np.hypot(dlat / lateral_um, dz / axial_um)

    n, m = len(a), len(b)
    graph = coo_matrix((np.ones(len(i)), (i, n + j)), shape=(n + m, n + m))
    _, label = connected_components(graph, directed=False)
    comp = label[i]
    # groups made of a single candidate pair need no assignment
    pair_count = np.bincount(comp, minlength=label.max() + 1)
    single = pair_count[comp] == 1
    out_i, out_j = [i[single]], [j[single]]
    multi = np.flatnonzero(~single)
    if len(multi):
        order = multi[np.argsort(comp[multi], kind="stable")]
        bounds = np.flatnonzero(np.diff(comp[order])) + 1
        for group in np.split(order, bounds):
            gi, ri = np.unique(i[group], return_inverse=True)
            gj, rj = np.unique(j[group], return_inverse=True)
            # any inadmissible pair costs more than every admissible matching together,
            # so the assignment first maximises the number of admissible pairs
            big = 2.0 * (min(len(gi), len(gj)) + 1)
            mat = np.full((len(gi), len(gj)), big)
            mat[ri, rj] = cost[group]
            rows, cols = linear_sum_assignment(mat)
            keep = mat[rows, cols] < big
            out_i.append(gi[rows[keep]])
            out_j.append(gj[cols[keep]])
    ri_all = np.concatenate(out_i)
    rj_all = np.concatenate(out_j)
    order = np.argsort(ri_all, kind="stable")
    return ri_all[order], rj_all[order]


def match_spines(
    result: pd.DataFrame | SeriesTables,
    truth: pd.DataFrame | SeriesTables,
    lateral_um: float = LATERAL_UM,
    axial_um: float = AXIAL_UM,
    sessions: list[int] | None = None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Match detections to truth spines session by session (see :func:`match_points`).

    Parameters
    ----------
    result, truth : DataFrame or SeriesTables
        Spine tables with ``session, z_um, y_um, x_um``.
    lateral_um, axial_um : float
        Matching tolerances, µm.
    sessions : list of int, optional
        Sessions to match (default: all).
    progress : callable, optional
        ``progress(stage, done, total)``, once per session.

    Returns
    -------
    DataFrame
        One row per matched pair: ``session``, ``result_index``, ``truth_index``
        (index labels of the given tables), ``dz_um, dy_um, dx_um`` (result minus
        truth) and ``lateral_um`` (distance in y, x).
    """
    r = result.spines if isinstance(result, SeriesTables) else result
    t = truth.spines if isinstance(truth, SeriesTables) else truth
    _need(r, ["session", *_POS], None, "result spine table")
    _need(t, ["session", *_POS], None, "truth spine table")
    r_pos, t_pos = r[_POS].to_numpy(dtype=float), t[_POS].to_numpy(dtype=float)
    r_sess, t_sess = r["session"].to_numpy(), t["session"].to_numpy()
    if sessions is None:
        sessions = sorted(set(np.unique(r_sess).tolist()) | set(np.unique(t_sess).tolist()))
    frames = []
    for k, s in enumerate(sessions):
        report(progress, "compare: match", k, len(sessions))
        ri = np.flatnonzero(r_sess == s)
        ti = np.flatnonzero(t_sess == s)
        mi, mj = match_points(r_pos[ri], t_pos[ti], lateral_um, axial_um)
        d = r_pos[ri[mi]] - t_pos[ti[mj]]
        frames.append(pd.DataFrame({
            "session": np.full(len(mi), s, dtype=np.int64),
            "result_index": r.index.to_numpy()[ri[mi]],
            "truth_index": t.index.to_numpy()[ti[mj]],
            "dz_um": d[:, 0], "dy_um": d[:, 1], "dx_um": d[:, 2],
            "lateral_um": np.hypot(d[:, 1], d[:, 2]),
        }))
    report(progress, "compare: match", len(sessions), len(sessions))
    if not frames:
        return pd.DataFrame(columns=["session", "result_index", "truth_index", "dz_um", "dy_um",
                                     "dx_um", "lateral_um"])
    return pd.concat(frames, ignore_index=True)


def _resample_lines(lines: pd.DataFrame, step_um: float) -> pd.DataFrame:
    """Points along each branch's polyline at most ``step_um`` apart."""
    if "branch_id" not in lines.columns or "point" not in lines.columns or not len(lines):
        return lines[["session", *_POS]]
    df = lines.sort_values(["session", "branch_id", "point"], kind="stable")
    pos = df[_POS].to_numpy(dtype=float)
    key = df[["session", "branch_id"]].to_numpy()
    same = np.all(key[1:] == key[:-1], axis=1)
    starts = pos[:-1][same]
    ends = pos[1:][same]
    sess = key[:-1, 0][same]
    seg_len = np.linalg.norm(ends - starts, axis=1)
    n_sub = np.maximum(1, np.ceil(seg_len / step_um).astype(np.int64))
    seg = np.repeat(np.arange(len(starts)), n_sub)
    first = np.repeat(np.cumsum(n_sub) - n_sub, n_sub)
    frac = (np.arange(n_sub.sum()) - first) / n_sub[seg]
    sub = starts[seg] + frac[:, None] * (ends[seg] - starts[seg])
    out = np.vstack([pos, sub])
    out_sess = np.concatenate([key[:, 0], sess[seg]])
    return pd.DataFrame({"session": out_sess, "z_um": out[:, 0], "y_um": out[:, 1],
                         "x_um": out[:, 2]})


def distance_to_lines(spines: pd.DataFrame, lines: pd.DataFrame,
                      step_um: float = _LINE_STEP_UM) -> np.ndarray:
    """3-D distance (µm) from each spine to the nearest centre line of its own session.

    Consecutive points of a branch (``branch_id``, ordered by ``point``) are
    joined by straight segments, sampled every ``step_um`` (so distances are
    exact to within ``step_um / 2``). A spine in a session without lines gets
    ``inf``.
    """
    dist = np.full(len(spines), np.inf)
    pts = _resample_lines(lines, step_um)
    sess = spines["session"].to_numpy()
    pos = spines[_POS].to_numpy(dtype=float)
    line_sess = pts["session"].to_numpy()
    line_pos = pts[_POS].to_numpy(dtype=float)
    for s in np.unique(sess):
        here = sess == s
        on = line_sess == s
        if on.any():
            dist[here] = cKDTree(line_pos[on]).query(pos[here])[0]
    return dist


# --------------------------------------------------------------------------- scores


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _spine_axes(spines: pd.DataFrame) -> np.ndarray | None:
    """Unit vectors from each spine's base to its annotated point (NaN when unknown).

    Bases come from ``base_z_um, base_y_um, base_x_um`` or from the pixel columns
    ``base_z, base_y, base_x`` scaled by the voxel size implied by ``z``/``z_um``.
    """
    if all(f"base_{a}_um" in spines.columns for a in "zyx"):
        base = spines[[f"base_{a}_um" for a in "zyx"]].apply(
            pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    elif all(c in spines.columns for a in "zyx" for c in (f"base_{a}", a)):
        base = np.empty((len(spines), 3))
        for k, a in enumerate("zyx"):
            px = pd.to_numeric(spines[a], errors="coerce").to_numpy(dtype=float)
            um = spines[f"{a}_um"].to_numpy(dtype=float)
            ok = np.isfinite(px) & (np.abs(px) > 1e-6)
            if not ok.any():
                return None
            voxel = float(np.median(um[ok] / px[ok]))
            base[:, k] = pd.to_numeric(spines[f"base_{a}"], errors="coerce").to_numpy(
                dtype=float) * voxel
    else:
        return None
    axis = spines[_POS].to_numpy(dtype=float) - base
    norm = np.linalg.norm(axis, axis=1)
    good = np.isfinite(norm) & (norm > 1e-6)
    out = np.full_like(axis, np.nan)
    out[good] = axis[good] / norm[good, None]
    return out


def _offsets(d: np.ndarray, along: np.ndarray | None) -> dict[str, float | None]:
    if not len(d):
        keys = ("mean_dz_um", "mean_dy_um", "mean_dx_um", "mean_distance_um",
                "mean_lateral_um", "mean_abs_dz_um", "mean_along_spine_um")
        return dict.fromkeys(keys)
    out = {"mean_dz_um": float(d[:, 0].mean()), "mean_dy_um": float(d[:, 1].mean()),
           "mean_dx_um": float(d[:, 2].mean()),
           "mean_distance_um": float(np.linalg.norm(d, axis=1).mean()),
           "mean_lateral_um": float(np.hypot(d[:, 1], d[:, 2]).mean()),
           "mean_abs_dz_um": float(np.abs(d[:, 0]).mean())}
    ok = None if along is None else along[np.isfinite(along)]
    out["mean_along_spine_um"] = float(ok.mean()) if ok is not None and len(ok) else None
    return out


def _links(spines: pd.DataFrame, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positional (from, to) rows of one spine_id in sessions s and s + 1, both selected."""
    sid = spines["spine_id"].to_numpy()
    sess = spines["session"].to_numpy()
    order = np.lexsort((sess, sid))
    a, b = order[:-1], order[1:]
    ok = (sid[a] == sid[b]) & (sess[b] == sess[a] + 1) & selected[a] & selected[b]
    return a[ok], b[ok]


def compare(
    result: SeriesTables | pd.DataFrame | str | Path,
    truth: SeriesTables | pd.DataFrame | str | Path,
    lateral_um: float = LATERAL_UM,
    axial_um: float = AXIAL_UM,
    near_um: float | None = None,
    sessions: list[int] | None = None,
    progress: ProgressCallback | None = None,
    visible_only: bool = False,
) -> dict[str, Any]:
    """Score a result against truth: detection, links, fates, restorations.

    Parameters
    ----------
    result, truth : SeriesTables, DataFrame or folder path
        Loaded tables (:func:`load_result`, :func:`load_truth`), a spine table,
        or a folder to load.
    lateral_um, axial_um : float
        A detection matches a truth spine of the same session when their
        (y, x) distance is ≤ ``lateral_um`` and their z distance ≤ ``axial_um``;
        the matching is one-to-one (:func:`match_points`).
    near_um : float, optional
        Score only near the truth's traced centre lines: truth spines farther
        than ``near_um`` (3-D) from the lines of their session are not counted,
        and neither are unmatched detections that far. A matched pair counts
        when its truth spine is near (so a pair straddling the border is never
        both a miss and a false positive).
    sessions : list of int, optional
        Score only these sessions (default: all). Links are scored between
        consecutive selected sessions; fates and restorations need all sessions.
    progress : callable, optional
        ``progress(stage, done, total)``.
    visible_only : bool
        Also ignore truth spines a synthetic truth marks ``visible=False``
        (hidden behind the shaft in z, or below the noise), which a detector is
        allowed to miss.

    Returns
    -------
    dict
        ``settings``, ``inputs``, ``notes``, ``detection`` (``per_session`` list and
        ``total``), ``links``, ``fates``, ``restored``. Ratios with an empty
        denominator are None. Plain JSON types only (see :func:`write_scores`).

    Notes
    -----
    A truth folder given as ``result`` with a spinetrack results folder
    (``params.json``) as ``truth`` is refused as swapped (:class:`InputError`).

    Truth spines marked ``is_bad`` (the annotator excluded them) and, with
    ``near_um``, truth spines far from the lines are *ignored*: they take part in
    the matching, but a detection matched to one is neither a true nor a false
    positive and an unmatched one is not a miss. Links, tracks and restorations
    that touch an ignored spine are left out of their scores as well. The full
    definitions are in ``docs/compare.md``.
    """
    r_tab, t_tab = as_tables(result), as_tables(truth)
    _check_order(r_tab, t_tab)
    if lateral_um <= 0 or axial_um <= 0:
        raise InputError(None, f"tolerances must be positive (lateral {lateral_um} µm, "
                               f"axial {axial_um} µm)")
    if near_um is not None and near_um <= 0:
        raise InputError(None, f"--near must be positive, got {near_um} µm")
    n_sessions = t_tab.n_sessions
    notes: list[str] = []
    r_top = int(r_tab.spines["session"].max()) + 1 if len(r_tab.spines) else 0
    if sessions is None:
        if r_top > n_sessions or (r_tab.n_sessions_known and t_tab.n_sessions_known
                                  and r_tab.n_sessions != t_tab.n_sessions):
            raise InputError(r_tab.path, f"result has {max(r_top, r_tab.n_sessions)} sessions "
                                         f"but truth has {n_sessions}; choose the sessions to "
                                         "compare with --sessions")
        sessions = list(range(n_sessions))
    else:
        sessions = sorted({int(s) for s in sessions})
        bad = [s for s in sessions if s < 0 or s >= n_sessions]
        if bad:
            raise InputError(None, f"sessions {bad} are not in the truth "
                                   f"(sessions 0..{n_sessions - 1})")
    all_sessions = sessions == list(range(n_sessions)) and (
        not r_tab.n_sessions_known or r_tab.n_sessions == n_sessions)

    rs, ts = r_tab.spines, t_tab.spines
    r_sel = rs["session"].isin(sessions).to_numpy()
    t_sel = ts["session"].isin(sessions).to_numpy()

    # ---- region (near the truth's centre lines)
    t_near = np.ones(len(ts), dtype=bool)
    r_near = np.ones(len(rs), dtype=bool)
    if near_um is not None:
        if t_tab.lines is None or not len(t_tab.lines):
            raise InputError(t_tab.path, "has no traced centre lines (lines.csv or "
                                         "truth_lines.csv), which --near needs")
        t_near = distance_to_lines(ts, t_tab.lines) <= near_um + _TOL
        r_near = distance_to_lines(rs, t_tab.lines) <= near_um + _TOL
        missing = sorted(set(sessions) - set(t_tab.lines["session"].unique().tolist()))
        if missing:
            notes.append(f"truth has no centre lines in sessions {missing}: nothing is "
                         "scored there")
        notes.append(f"restricted to spines within {near_um:g} µm of the truth's traced centre "
                     "lines")

    # ---- matching
    pairs = match_spines(rs, ts, lateral_um, axial_um, sessions=sessions, progress=progress)
    r_match = np.full(len(rs), -1, dtype=np.int64)
    t_match = np.full(len(ts), -1, dtype=np.int64)
    pi = pairs["result_index"].to_numpy(dtype=np.int64)
    pj = pairs["truth_index"].to_numpy(dtype=np.int64)
    r_match[pi] = pj
    t_match[pj] = pi

    t_ignored = ts["is_bad"].to_numpy(dtype=bool)
    if visible_only and "visible" in ts.columns:
        hidden = ~_truthy(ts["visible"]) & t_sel
        t_ignored = t_ignored | hidden
        notes.append(f"{int(hidden.sum())} truth spines marked not visible are ignored")
    t_counted = ~t_ignored & t_near
    # status: 1 true positive, 2 false positive / miss, 0 ignored
    t_stat = np.where(t_counted, np.where(t_match >= 0, 1, 2), 0)
    t_stat[~t_sel] = 0
    r_matched = r_match >= 0
    r_stat = np.zeros(len(rs), dtype=np.int64)
    r_stat[r_matched] = np.where(t_counted[r_match[r_matched]], 1, 0)
    r_stat[~r_matched & r_near] = 2
    r_stat[~r_sel] = 0
    n_bad_ignored = int((ts["is_bad"].to_numpy(dtype=bool) & t_sel).sum())
    if n_bad_ignored:
        notes.append(f"{n_bad_ignored} truth spines marked is_bad are ignored (a detection "
                     "on one is neither a true nor a false positive)")

    detection = _detection_scores(rs, ts, r_stat, t_stat, sessions)
    # offsets of the true positives: result minus truth, and along the truth spine's axis
    r_pos, t_pos = rs[_POS].to_numpy(dtype=float), ts[_POS].to_numpy(dtype=float)
    axis = _spine_axes(ts)
    tp_rows = np.flatnonzero(r_stat == 1)
    tp_sess = rs["session"].to_numpy()[tp_rows]
    for entry in detection["per_session"] + [detection["total"]]:
        rows = tp_rows if "session" not in entry else tp_rows[tp_sess == entry["session"]]
        d = r_pos[rows] - t_pos[r_match[rows]]
        along = None if axis is None else np.einsum("ij,ij->i", d, axis[r_match[rows]])
        entry.update(_offsets(d, along))

    # ---- links
    if len(sessions) < 2:
        links = {"scored": False, "reason": "fewer than two sessions selected"}
    elif not r_tab.linked:
        links = {"scored": False,
                 "reason": "result has no links (no fates.csv and every spine_id occurs once)"}
    elif not t_tab.linked:
        links = {"scored": False, "reason": "truth has no links"}
    else:
        links = _link_scores(rs, ts, r_stat, t_stat, r_match, r_sel, t_sel, sessions)

    # ---- fates and restorations
    fates: dict[str, Any]
    restored: dict[str, Any]
    reason = None
    if r_tab.fates is None:
        reason = "result has no fates.csv"
    elif t_tab.fates is None:
        reason = "truth has no fates"
    elif not all_sessions:
        reason = "fates are defined over the whole series; select all sessions to score them"
    if reason:
        fates = {"scored": False, "reason": reason}
        restored = {"scored": False, "reason": reason}
    else:
        track = _TrackPairing(rs, ts, r_match, t_match, r_stat, t_near, r_tab.fates,
                              t_tab.fates)
        fates = track.fate_scores()
        restored = track.restored_scores()

    return to_jsonable({
        "settings": {"lateral_um": lateral_um, "axial_um": axial_um, "near_um": near_um,
                     "visible_only": bool(visible_only),
                     "sessions": sessions},
        "inputs": {"result": None if r_tab.path is None else str(r_tab.path),
                   "result_format": r_tab.format,
                   "truth": None if t_tab.path is None else str(t_tab.path),
                   "truth_format": t_tab.format, "n_sessions": n_sessions,
                   "n_result_spines": int(r_sel.sum()), "n_truth_spines": int(t_sel.sum())},
        "notes": notes,
        "detection": detection,
        "links": links,
        "fates": fates,
        "restored": restored,
    })


def _detection_scores(rs, ts, r_stat, t_stat, sessions) -> dict[str, Any]:
    r_sess = rs["session"].to_numpy()
    t_sess = ts["session"].to_numpy()
    per = []
    tot = {"tp": 0, "fp": 0, "fn": 0}
    for s in sessions:
        rr = r_sess == s
        tt = t_sess == s
        tp = int((r_stat[rr] == 1).sum())
        fp = int((r_stat[rr] == 2).sum())
        fn = int((t_stat[tt] == 2).sum())
        entry = {
            "session": int(s),
            "n_truth": int(((t_stat == 1) | (t_stat == 2))[tt].sum()),
            "n_result": tp + fp,
            "tp": tp, "fp": fp, "fn": fn,
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _f1(tp, fp, fn),
            "ignored_truth": int((t_stat[tt] == 0).sum()),
            "ignored_result": int((r_stat[rr] == 0).sum()),
        }
        per.append(entry)
        for k in tot:
            tot[k] += entry[k]
    tp, fp, fn = tot["tp"], tot["fp"], tot["fn"]
    total = {"n_truth": tp + fn, "n_result": tp + fp, "tp": tp, "fp": fp, "fn": fn,
             "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
             "f1": _f1(tp, fp, fn),
             "ignored_truth": int(sum(e["ignored_truth"] for e in per)),
             "ignored_result": int(sum(e["ignored_result"] for e in per))}
    return {"per_session": per, "total": total}


def _link_scores(rs, ts, r_stat, t_stat, r_match, r_sel, t_sel, sessions) -> dict[str, Any]:
    ra, rb = _links(rs, r_sel)
    ta, tb = _links(ts, t_sel)
    t_sid = ts["spine_id"].to_numpy()
    # result links: in scope when neither end is ignored; matched when both ends are TPs
    r_scope = (r_stat[ra] != 0) & (r_stat[rb] != 0)
    r_both = (r_stat[ra] == 1) & (r_stat[rb] == 1)
    correct = np.zeros(len(ra), dtype=bool)
    correct[r_both] = t_sid[r_match[ra[r_both]]] == t_sid[r_match[rb[r_both]]]
    t_scope = (t_stat[ta] != 0) & (t_stat[tb] != 0)
    t_both = (t_stat[ta] == 1) & (t_stat[tb] == 1)
    r_from = rs["session"].to_numpy()[ra]
    t_from = ts["session"].to_numpy()[ta]

    def _entry(rm, tm) -> dict[str, Any]:
        n_correct = int((correct & rm).sum())
        n_r_matched = int((r_both & rm).sum())
        n_t_detected = int((t_both & tm).sum())
        n_r = int((r_scope & rm).sum())
        n_t = int((t_scope & tm).sum())
        return {"n_truth": n_t, "n_result": n_r, "n_truth_detected": n_t_detected,
                "n_result_matched": n_r_matched, "correct": n_correct,
                "precision": _ratio(n_correct, n_r_matched),
                "recall": _ratio(n_correct, n_t_detected),
                "precision_all": _ratio(n_correct, n_r), "recall_all": _ratio(n_correct, n_t)}

    per = []
    for s in sessions:
        if s + 1 not in sessions:
            continue
        per.append({"from_session": int(s), "to_session": int(s + 1),
                    **_entry(r_from == s, t_from == s)})
    total = _entry(np.ones(len(ra), dtype=bool), np.ones(len(ta), dtype=bool))
    return {"scored": True, "per_transition": per, "total": total}


class _TrackPairing:
    """Result tracks (spine_ids) paired with truth tracks through the detection matching."""

    def __init__(self, rs, ts, r_match, t_match, r_stat, t_near, r_fates, t_fates):
        self.r_sid = rs["spine_id"].to_numpy()
        self.t_sid = ts["spine_id"].to_numpy()
        self.r_fate = r_fates.set_index("spine_id")["fate"]
        self.t_fate = t_fates.set_index("spine_id")["fate"]
        self.r_from = r_fates.set_index("spine_id")["restored_from"]
        self.t_from = t_fates.set_index("spine_id")["restored_from"]

        # per result track: the truth track of every detection (-1: unmatched)
        matched_tid = np.where(r_match >= 0, self.t_sid[np.maximum(r_match, 0)], -1)
        r = pd.DataFrame({"sid": self.r_sid, "tid": matched_tid, "stat": r_stat})
        g = r.groupby("sid")
        per_r = pd.DataFrame({
            "all_matched": g["tid"].min() >= 0,
            "n_tracks": g["tid"].nunique(),
            "tid": g["tid"].max(),
            "in_scope": g["stat"].max() > 0,
        })
        per_r["single"] = per_r["all_matched"] & (per_r["n_tracks"] == 1)
        # per truth track: how many result tracks touch it; in scope when no spine is bad
        # and at least one is near the lines
        touched = r.loc[r["tid"] >= 0].groupby("tid")["sid"].nunique()
        t = pd.DataFrame({"tid": self.t_sid, "bad": ts["is_bad"].to_numpy(dtype=bool),
                          "near": t_near, "tp": t_match >= 0})
        gt = t.groupby("tid")
        per_t = pd.DataFrame({"in_scope": ~gt["bad"].any() & gt["near"].any(),
                              "all_detected": gt["tp"].all()})
        per_t["n_result_tracks"] = touched.reindex(per_t.index, fill_value=0)
        self.per_r, self.per_t = per_r, per_t
        tid = per_r["tid"].where(per_r["single"], -1)
        n_touch = per_t["n_result_tracks"].reindex(tid.to_numpy(), fill_value=0).to_numpy()
        scope_t = per_t["in_scope"].reindex(tid.to_numpy(), fill_value=False).to_numpy()
        per_r["paired"] = per_r["single"].to_numpy() & (n_touch == 1) & scope_t

    def fate_scores(self) -> dict[str, Any]:
        per_r, per_t = self.per_r, self.per_t
        scope_r = per_r["in_scope"]
        paired = per_r.loc[per_r["paired"]]
        truth_fate = self.t_fate.reindex(paired["tid"].to_numpy()).to_numpy()
        result_fate = self.r_fate.reindex(paired.index.to_numpy()).to_numpy()
        known = pd.notna(truth_fate) & pd.notna(result_fate)
        matrix = {tf: dict.fromkeys(FATES, 0) for tf in FATES}
        for tf, rf in zip(truth_fate[known], result_fate[known]):
            matrix[tf][rf] += 1
        n = int(known.sum())
        agree = sum(matrix[f][f] for f in FATES)
        in_r = per_r.loc[scope_r]
        n_truth_tracks = int(per_t["in_scope"].sum())
        return {
            "scored": True,
            "labels": list(FATES),
            "confusion": matrix,
            "n_paired": n,
            "accuracy": _ratio(agree, n),
            "n_result_tracks": int(len(in_r)),
            "n_truth_tracks": n_truth_tracks,
            "paired_fraction_of_truth": _ratio(n, n_truth_tracks),
            "unpaired_result_tracks": {
                "with_unmatched_detections": int((~in_r["all_matched"]).sum()),
                "spanning_several_truth_tracks": int((in_r["all_matched"]
                                                      & (in_r["n_tracks"] > 1)).sum()),
                "sharing_a_truth_track": int((in_r["single"] & ~in_r["paired"]).sum()),
            },
        }

    def restored_scores(self) -> dict[str, Any]:
        per_r, per_t = self.per_r, self.per_t
        r_rest = self.r_fate.index[self.r_fate.to_numpy() == "restored"]
        r_rest = r_rest[r_rest.isin(per_r.index)]
        r_rest = r_rest[per_r.loc[r_rest, "in_scope"].to_numpy()]
        t_rest = self.t_fate.index[self.t_fate.to_numpy() == "restored"]
        t_rest = t_rest[t_rest.isin(per_t.index)]
        t_rest = t_rest[per_t.loc[t_rest, "in_scope"].to_numpy()]
        t_rest_set = set(t_rest.tolist())

        correct: dict[int, int] = {}
        for rid in r_rest:
            row = per_r.loc[rid]
            if row["single"] and int(row["tid"]) in t_rest_set:
                correct[int(rid)] = int(row["tid"])
        found = set(correct.values())
        detected = [t for t in t_rest if per_t.loc[t, "all_detected"]]

        # restored_from: the result's lost spine must be made of detections of the truth's
        source_checked = source_ok = 0
        for rid, tid in correct.items():
            t_src = self.t_from.get(tid, pd.NA)
            if pd.isna(t_src):
                continue
            source_checked += 1
            r_src = self.r_from.get(rid, pd.NA)
            if pd.isna(r_src) or int(r_src) not in per_r.index:
                continue
            src = per_r.loc[int(r_src)]
            if src["single"] and int(src["tid"]) == int(t_src):
                source_ok += 1
        return {
            "scored": True,
            "n_result": int(len(r_rest)), "n_truth": int(len(t_rest)),
            "correct": len(correct),
            "precision": _ratio(len(correct), len(r_rest)),
            "recall": _ratio(len(found), len(t_rest)),
            "n_truth_detected": len(detected),
            "recall_detected": _ratio(len(found & set(detected)), len(detected)),
            "restored_from_checked": source_checked,
            "restored_from_correct": source_ok,
            "restored_from_accuracy": _ratio(source_ok, source_checked),
        }


# --------------------------------------------------------------------------- output


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if k else c.ljust(w)
                               for k, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def format_scores(scores: dict[str, Any]) -> str:
    """The scores of :func:`compare` as a readable plain-text report."""
    s, inp = scores["settings"], scores["inputs"]
    out = [f"result: {inp['result'] or '(table)'} ({inp['result_format']})",
           f"truth:  {inp['truth'] or '(table)'} ({inp['truth_format']}, "
           f"{inp['n_sessions']} sessions)",
           f"match:  one-to-one, within {s['lateral_um']:g} µm in (y, x) and "
           f"{s['axial_um']:g} µm in z"]
    for note in scores["notes"]:
        out.append(f"note:   {note}")

    det = scores["detection"]
    out += ["", "Detection"]
    rows = []
    for e in det["per_session"] + [dict(det["total"], session="all")]:
        rows.append([e["session"], e["n_truth"], e["n_result"], e["tp"], e["fp"], e["fn"],
                     e["precision"], e["recall"], e["f1"], e["ignored_truth"],
                     e["mean_lateral_um"], e["mean_dz_um"], e["mean_along_spine_um"]])
    out += _table(["session", "truth", "result", "TP", "FP", "FN", "precision", "recall",
                   "F1", "ignored", "lat. off µm", "z off µm", "along µm"], rows)
    out.append("(offsets over true positives, result minus truth; 'along' is along the "
               "truth spine, base to tip, negative = inward)")

    links = scores["links"]
    out += ["", "Links between consecutive sessions"]
    if not links["scored"]:
        out.append(f"not scored: {links['reason']}")
    else:
        rows = [[f"{e['from_session']}→{e['to_session']}", e["n_truth"], e["n_result"],
                 e["correct"], e["precision"], e["recall"], e["precision_all"],
                 e["recall_all"]] for e in links["per_transition"]]
        t = links["total"]
        rows.append(["all", t["n_truth"], t["n_result"], t["correct"], t["precision"],
                     t["recall"], t["precision_all"], t["recall_all"]])
        out += _table(["sessions", "truth", "result", "correct", "precision", "recall",
                       "prec. (all)", "recall (all)"], rows)
        out.append("(precision and recall over links whose two ends were both detected; "
                   "'all': over every link)")

    fates = scores["fates"]
    out += ["", "Fates (rows: truth, columns: result)"]
    if not fates["scored"]:
        out.append(f"not scored: {fates['reason']}")
    else:
        labels = fates["labels"]
        rows = [[tf] + [fates["confusion"][tf][rf] for rf in labels] for tf in labels]
        out += _table(["truth \\ result"] + labels, rows)
        u = fates["unpaired_result_tracks"]
        out.append(f"accuracy {_fmt(fates['accuracy'])} over {fates['n_paired']} result tracks "
                   f"paired one-to-one with a truth track (of {fates['n_result_tracks']} result, "
                   f"{fates['n_truth_tracks']} truth tracks); unpaired: "
                   f"{u['with_unmatched_detections']} with unmatched detections, "
                   f"{u['spanning_several_truth_tracks']} spanning several truth tracks, "
                   f"{u['sharing_a_truth_track']} sharing a truth track")

    rest = scores["restored"]
    out += ["", "Restored spines"]
    if not rest["scored"]:
        out.append(f"not scored: {rest['reason']}")
    else:
        out.append(f"precision {_fmt(rest['precision'])} ({rest['correct']}/{rest['n_result']})"
                   f"   recall {_fmt(rest['recall'])} (of {rest['n_truth']} truth)"
                   f"   recall when detected {_fmt(rest['recall_detected'])} "
                   f"(of {rest['n_truth_detected']})")
        out.append(f"restored_from points at the right lost spine: "
                   f"{rest['restored_from_correct']}/{rest['restored_from_checked']}")
    return "\n".join(out)


def write_scores(scores: dict[str, Any], path: str | Path) -> Path:
    """Write the scores as indented JSON, atomically."""
    return write_json_atomic(path, scores)
