"""A run's results in memory and on disk (the contract's results folder).

:class:`Results` holds the tables every front end shows; :func:`write_results`
writes them atomically (CSV always, Parquet beside it when pyarrow is
installed) and :func:`read_results` reads a folder back.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError
from .files import write_json_atomic, write_table_atomic
from .params import Params

__all__ = [
    "SPINE_COLUMNS",
    "FATE_COLUMNS",
    "BRANCH_COLUMNS",
    "Results",
    "write_results",
    "read_results",
    "read_spines",
    "read_fates",
    "with_in_statistics",
    "package_versions",
    "has_parquet",
    "run_record",
    "incomplete_run",
    "check_complete",
]

SPINE_COLUMNS = ["spine_id", "session", "z", "y", "x", "z_um", "y_um", "x_um", "branch_id",
                 "arc_um", "length_um", "source"]
FATE_COLUMNS = ["spine_id", "branch_id", "arc_um", "present", "fate", "restored_from"]
BRANCH_COLUMNS = ["branch_id", "length_um", "n_stable", "n_lost", "n_formed", "n_transient",
                  "n_restored", "loss_fraction", "loss_p", "loss_q"]

TABLES = ("spines", "fates", "branches", "lines", "registration", "sessions")


@dataclass(eq=False)
class Results:
    """Everything a run produced.

    Attributes
    ----------
    spines, fates, branches : DataFrame
        The contract's tables (extra columns allowed after the contract's).
    summary : dict
        The contract's summary.json content.
    lines : DataFrame or None
        Dendrite centre lines per session (global branch ids, shared arc).
    registration : DataFrame or None
        One row per session: how it was aligned to session 0 and how well.
    sessions : DataFrame or None
        One row per session: ``session, name, file, day, voxel_z_um, voxel_y_um,
        voxel_x_um, shape_z, shape_y, shape_x``.
    params : Params
        The parameters of the run.
    transform : dict or None
        The registration of every session to session 0, as
        ``spinetrack.register.Registration.to_dict()`` gives it (written as
        ``registration.json``); lets viewers show sessions aligned.
    """

    spines: pd.DataFrame
    fates: pd.DataFrame
    branches: pd.DataFrame
    summary: dict[str, Any]
    lines: pd.DataFrame | None = None
    registration: pd.DataFrame | None = None
    sessions: pd.DataFrame | None = None
    params: Params = field(default_factory=Params)
    transform: dict[str, Any] | None = None

    @property
    def n_sessions(self) -> int:
        if "n_sessions" in self.summary:
            return int(self.summary["n_sessions"])
        if self.sessions is not None:
            return len(self.sessions)
        return int(self.spines["session"].max()) + 1 if len(self.spines) else 0


def has_parquet() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def package_versions() -> dict[str, str]:
    """Versions of spinetrack, Python and the libraries that shape the results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("spinetrack", "numpy", "scipy", "scikit-image", "pandas", "tifffile",
                 "trackpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _ordered(df: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    head = [c for c in first if c in df.columns]
    return df[head + [c for c in df.columns if c not in head]]


def write_results(
    results: Results,
    out_dir: str | Path,
    parquet: bool | None = None,
    extra_params: dict[str, Any] | None = None,
    tables: Collection[str] | None = None,
) -> list[Path]:
    """Write a results folder atomically, file by file.

    Parameters
    ----------
    results : Results
    out_dir : path
        Created if missing. Files already there are replaced one by one, each
        by an atomic rename, so a reader sees either the old or the new file.
    parquet : bool, optional
        Also write ``.parquet`` tables (default: when pyarrow is installed).
    extra_params : dict, optional
        Added to ``params.json`` (e.g. the input files and voxel size used), so
        the run can be reproduced.
    tables : collection of str, optional
        Write only these tables (of :data:`TABLES`; ``registration.json`` goes
        with ``registration``), then ``summary.json`` and ``params.json``: e.g.
        the ``fates`` and ``branches`` that recomputed statistics replace.
        Default: all of them.

    Returns
    -------
    list of Path
        The files written. ``params.json`` is written last: its presence marks a
        complete folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parquet = has_parquet() if parquet is None else parquet
    written: list[Path] = []
    frames = {
        "spines": _ordered(results.spines, SPINE_COLUMNS),
        "fates": _ordered(with_in_statistics(results.fates, results.summary), FATE_COLUMNS),
        "branches": _ordered(results.branches, BRANCH_COLUMNS),
        "lines": results.lines,
        "registration": results.registration,
        "sessions": results.sessions,
    }
    for name, df in frames.items():
        if df is None or (tables is not None and name not in tables):
            continue
        written.append(write_table_atomic(df, out / f"{name}.csv"))
        if parquet:
            written.append(write_table_atomic(df, out / f"{name}.parquet"))
    written.append(write_json_atomic(out / "summary.json", results.summary))
    if results.transform is not None and (tables is None or "registration" in tables):
        written.append(write_json_atomic(out / "registration.json", results.transform))
    meta = {"params": results.params.to_dict(), "versions": package_versions()}
    meta.update(extra_params or {})
    written.append(write_json_atomic(out / "params.json", meta))
    return written


def run_record(folder: str | Path) -> dict[str, Any]:
    """What ``folder/params.json`` records besides the parameters and versions.

    The input files, days and voxel sizes of the run (``inputs``) and, for a
    batch, the series and the fingerprint of its inputs (``batch``). Rewriting a
    folder's tables passes these on to :func:`write_results` (``extra_params``)
    so the record of the run survives.

    Returns
    -------
    dict
        Empty when the folder has no ``params.json``.

    Raises
    ------
    InputError
        If ``params.json`` is not valid JSON.
    """
    path = Path(folder) / "params.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(path, "is not a params.json (not a JSON object)")
    return {k: v for k, v in meta.items() if k not in ("params", "versions")}


#: Files only a spinetrack run writes beside its tables (a person's tables lack them).
_RUN_FILES = ("summary.json", "registration.json", "registration.csv", "report.html")


_INCOMPLETE = ("is incomplete (an interrupted run?): its tables have no params.json, the "
               "mark of a finished run, and may come from two runs; run again to complete it")


def _interrupted(folder: Path) -> Path | None:
    """``folder`` or ``folder/auto`` when it holds a run's tables without ``params.json``."""
    for where in (folder, folder / "auto"):
        if ((where / "spines.csv").is_file() and not (where / "params.json").is_file()
                and not (where / "truth.json").is_file()
                and any((where / name).is_file() for name in _RUN_FILES)):
            return where
    return None


def incomplete_run(folder: str | Path) -> str | None:
    """Why ``folder`` holds an interrupted run's tables, or None when it does not.

    :func:`write_results` writes ``params.json`` last and a run removes the
    previous one first, so a folder with a run's tables (``spines.csv`` beside
    ``summary.json``, ``registration.json``, ``registration.csv`` or
    ``report.html``) but no ``params.json`` was interrupted while writing: its
    tables may come from two runs. The same holds for a project's ``auto/``.
    A folder of tables made by hand or a truth folder (none of those files, or
    ``truth.json``) is not incomplete.

    Returns
    -------
    str or None
        One line naming the folder and what to do.
    """
    where = _interrupted(Path(folder))
    return None if where is None else f"{where} {_INCOMPLETE}"


def check_complete(folder: str | Path) -> None:
    """Stop with one line when ``folder`` holds an interrupted run (:func:`incomplete_run`).

    Raises
    ------
    InputError
    """
    where = _interrupted(Path(folder))
    if where is not None:
        raise InputError(where, _INCOMPLETE)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"is not a readable CSV table ({str(exc).splitlines()[0]})") from None


def _need(df: pd.DataFrame, cols: list[str], path: Path) -> pd.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(path, f"lacks columns {missing}")
    return df


def read_spines(path: str | Path) -> pd.DataFrame:
    """Read a spines.csv and check the contract's columns are there."""
    path = Path(path)
    return _need(_read_csv(path), SPINE_COLUMNS, path)


def with_in_statistics(fates: pd.DataFrame, summary: dict | None) -> pd.DataFrame:
    """Add ``in_statistics`` (the spine counts in branches.csv and summary.json)."""
    left_out = (summary or {}).get("left_out_spine_ids")
    if left_out is None or fates is None or "spine_id" not in fates.columns:
        return fates
    return fates.assign(in_statistics=~fates["spine_id"].isin(left_out))


def read_fates(path: str | Path) -> pd.DataFrame:
    """Read a fates.csv keeping ``present`` as text and ``restored_from`` as nullable int."""
    path = Path(path)
    df = _need(_read_csv(path, dtype={"present": str}), FATE_COLUMNS, path)
    df["restored_from"] = df["restored_from"].astype("Int64")
    return df


def read_results(out_dir: str | Path) -> Results:
    """Read a results folder written by :func:`write_results` (CSV tables)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(out, "is not a results folder (no such folder)")
    if not (out / "spines.csv").exists():
        raise InputError(out, "is not a results folder (no spines.csv)")
    spines = read_spines(out / "spines.csv")
    fates = read_fates(out / "fates.csv") if (out / "fates.csv").exists() else pd.DataFrame(
        columns=FATE_COLUMNS)
    # in_statistics is written from summary.json's left_out_spine_ids, and again on each write
    fates = fates.drop(columns="in_statistics", errors="ignore")
    branches = (_need(_read_csv(out / "branches.csv"), ["branch_id"], out / "branches.csv")
                if (out / "branches.csv").exists() else pd.DataFrame(columns=BRANCH_COLUMNS))
    summary: dict[str, Any] = {}
    if (out / "summary.json").exists():
        try:
            summary = json.loads((out / "summary.json").read_text())
        except ValueError as exc:
            raise InputError(out / "summary.json", f"is not valid JSON ({exc})") from None
    params = Params()
    if (out / "params.json").exists():
        params = Params.load(out / "params.json")
    transform = None
    if (out / "registration.json").exists():
        try:
            transform = json.loads((out / "registration.json").read_text())
        except ValueError as exc:
            raise InputError(out / "registration.json", f"is not valid JSON ({exc})") from None
    optional = {name: _read_csv(out / f"{name}.csv") for name in ("lines", "registration",
                                                                  "sessions")
                if (out / f"{name}.csv").exists()}
    return Results(spines=spines, fates=fates, branches=branches, summary=summary,
                   params=params, transform=transform, **optional)
