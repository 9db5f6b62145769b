"""Headless batch: run the pipeline on many series (animals) from a manifest.

A *manifest* (CSV, one row per session, or YAML, one entry per series; see
``docs/batch.md``) lists the series of a cohort with their animal, condition,
session files, days, voxel size and parameter overrides. :func:`read_manifest`
validates it; :func:`plan` turns it into one :class:`Task` per series;
:func:`run_batch` runs every task with the same library function as
``spinetrack run`` (:func:`spinetrack.pipeline.run_and_write`), on an embedded
dask ``LocalCluster``, on an existing dask scheduler, or serially without dask.

Guarantees
----------
- One series = one task writing ``OUT/<animal>[_<series>]/``. It computes into a
  hidden temporary folder inside ``OUT`` and moves the files into place at the
  end, ``params.json`` last, so a folder with ``params.json`` is complete and a
  killed batch never leaves a complete-looking folder with mixed contents.
- A failing series is recorded with its one-line error in
  ``OUT/batch_status.csv`` (rewritten atomically after every series) and does not
  stop the others.
- A series whose ``params.json`` records the same inputs (files, their sizes and
  modification times, days, names, voxel size, the learned detector model's
  size and checksum) and the same parameters is skipped on a re-run;
  ``force=True`` redoes it.
- The combined cohort tables and report (:mod:`spinetrack.cohort`) are rebuilt at
  the end from every complete series folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_type_hints

import pandas as pd

from .errors import InputError, SpinetrackError
from .files import output_folder, to_jsonable, write_table_atomic
from .params import PATH_FIELDS, SECTIONS, Params, absolute_paths, read_params_json

__all__ = [
    "SeriesSpec",
    "Task",
    "read_manifest",
    "plan",
    "run_task",
    "run_batch",
    "BatchOutcome",
    "STATUS_FILE",
    "STATUS_COLUMNS",
]

log = logging.getLogger(__name__)

STATUS_FILE = "batch_status.csv"
STATUS_COLUMNS = ["key", "animal", "series", "condition", "status", "error", "seconds",
                  "cpu_seconds", "n_sessions", "worker_peak_rss_mb", "finished_utc", "folder"]
_PARTIAL = ".partial-"

_CSV_FIXED = {"animal", "condition", "series", "session", "day", "name", "voxel_z", "voxel_y",
              "voxel_x", "params"}
_CSV_ALIASES = {"file": "session", "path": "session", "days": "day", "group": "condition"}
_YAML_KEYS = {"animal", "condition", "series", "sessions", "days", "names", "voxel_size",
              "params"}


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class SeriesSpec:
    """One series of a manifest, paths resolved, not yet read.

    Attributes
    ----------
    animal, condition, series : str
        Labels; ``series`` is empty when an animal has one series.
    files : tuple of Path
        Session files in chronological order (or one folder / one 4-D TIFF).
    days : tuple of float or None
        Day of each session, when known.
    names : tuple of str or None
        Session names, when given.
    voxel_size_um : tuple of 3 floats or None
        (z, y, x) µm; overrides the files' metadata when given.
    overrides : dict
        Parameter values for this series, ``{field_name: value}``.
    where : str
        Where in the manifest the series is defined (for error messages).
    """

    animal: str
    condition: str
    series: str
    files: tuple[Path, ...]
    days: tuple[float, ...] | None = None
    names: tuple[str, ...] | None = None
    voxel_size_um: tuple[float, float, float] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    @property
    def key(self) -> str:
        """Folder name of the series: ``animal`` or ``animal_series``."""
        name = f"{self.animal}_{self.series}" if self.series else self.animal
        return _safe_name(name)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name.strip()).strip("-.") or "series"


def _field_types() -> dict[str, tuple[str, type, str]]:
    """Parameter field name and CLI flag name -> (field name, type, section)."""
    out: dict[str, tuple[str, type, str]] = {}
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            entry = (f.name, hints[f.name], section)
            out[f.name] = entry
            flag = (f.metadata.get("flag") or "--" + f.name.replace("_", "-")).lstrip("-")
            out.setdefault(flag, entry)
            out.setdefault(flag.replace("-", "_"), entry)
    return out


def _convert(value: Any, kind: type, name: str, path: Path, where: str) -> Any:
    """Convert a manifest value (often text) to the parameter's type."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind is float:
            return float(value)
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: parameter {name} = {value!r} is not a "
                         f"{kind.__name__}") from None


def _flatten_params(values: Any, path: Path, where: str) -> dict[str, Any]:
    """``{field: value}`` from a flat or per-section dict, with types checked."""
    if not isinstance(values, dict):
        raise InputError(path, f"{where}: params must be a mapping of parameter names to values "
                         "or the path of a params.json")
    types = _field_types()
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat.update(_flatten_params({sub_key: sub_value}, path, where))
            continue
        if key not in types:
            raise InputError(path, f"{where}: unknown parameter {key!r}")
        name, kind, _ = types[key]
        flat[name] = _convert(value, kind, name, path, where)
    return flat


def _params_value(value: Any, base: Path, path: Path, where: str) -> dict[str, Any]:
    """Overrides from a manifest ``params`` value: a dict, inline JSON, or a JSON file."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InputError(path, f"{where}: params is not valid JSON ({exc})") from None
        else:
            value = _params_file(_resolve(text, base))
    return absolute_paths(_flatten_params(value, path, where), base, strip=True)


def _params_file(file: Path) -> dict[str, Any]:
    """The parameters in a JSON file (a run's ``params.json`` or just its ``params`` part).

    Only the values the file holds are returned, so a partial file overrides only
    those.
    """
    data = read_params_json(file, missing="no such parameter file")
    try:
        return _flatten_params(data, file, "parameters")
    except InputError as exc:
        raise InputError(file, exc.problem.removeprefix("parameters: ")) from None


def _resolve(text: str | os.PathLike, base: Path) -> Path:
    p = Path(os.path.expanduser(str(text).strip()))
    return p if p.is_absolute() else (base / p)


def _voxel(values: Any, path: Path, where: str) -> tuple[float, float, float] | None:
    if values is None:
        return None
    if isinstance(values, (int, float)) or not isinstance(values, (list, tuple)):
        raise InputError(path, f"{where}: voxel_size must be three numbers [z, y, x] in µm")
    try:
        vox = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: voxel_size {list(values)} is not three numbers") from None
    if len(vox) != 3 or not all(math.isfinite(v) and v > 0 for v in vox):
        raise InputError(path, f"{where}: voxel_size {list(values)} must be three positive "
                         "numbers [z, y, x] in µm")
    return vox  # type: ignore[return-value]


def _days(values: Any, n: int | None, path: Path, where: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    if not isinstance(values, (list, tuple)):
        raise InputError(path, f"{where}: days must be a list with one number per session")
    try:
        days = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: days {list(values)} are not all numbers") from None
    if not all(math.isfinite(d) for d in days):
        raise InputError(path, f"{where}: days {list(values)} must be finite")
    if n is not None and len(days) != n:
        raise InputError(path, f"{where}: {len(days)} days given for {n} session files")
    if any(b < a for a, b in zip(days, days[1:])):
        raise InputError(path, f"{where}: days {list(days)} must not decrease")
    return days


def read_manifest(path: str | Path) -> list[SeriesSpec]:
    """Read and validate a batch manifest.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (or ``.tsv``): one row per session with columns ``animal``,
        ``session`` (required), ``condition``, ``series``, ``day``, ``name``,
        ``voxel_z``/``voxel_y``/``voxel_x``, ``params`` (a params.json path or
        inline JSON) and any parameter as a column (``restore_radius_um`` or
        ``restore-radius``). ``.yaml``/``.yml``/``.json``: a list of series (or
        ``{defaults: {...}, series: [...]}``) with keys ``animal``,
        ``condition``, ``series``, ``sessions``, ``days``, ``names``,
        ``voxel_size`` and ``params``. Relative paths are relative to the
        manifest's folder.

    Returns
    -------
    list of SeriesSpec
        In manifest order.

    Raises
    ------
    InputError
        One line naming the manifest, the row or entry, and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such manifest file")
    if path.is_dir():
        raise InputError(path, "is a folder; give a manifest .csv or .yaml file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        specs = _read_csv_manifest(path)
    elif suffix in (".yaml", ".yml", ".json"):
        specs = _read_yaml_manifest(path)
    else:
        raise InputError(path, f"unknown manifest type {path.suffix!r}; use .csv or .yaml")
    if not specs:
        raise InputError(path, "lists no series")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.key in seen:
            raise InputError(path, f"{spec.where}: series folder {spec.key!r} is also used by "
                             f"{seen[spec.key]}; give each series of an animal its own 'series' "
                             "label")
        seen[spec.key] = spec.where
    return specs


def _read_csv_manifest(path: Path) -> list[SeriesSpec]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read as text ({exc})") from None
    lines = [(no, ln) for no, ln in enumerate(text.splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(path, "is empty")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in lines[0][1] and
                                                          "," not in lines[0][1]) else ","
    rows = [(no, next(csv.reader([ln], delimiter=delimiter))) for no, ln in lines]
    header_line, header_row = rows[0]
    header = [_CSV_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header_row]
    if len(set(header)) != len(header):
        raise InputError(path, f"has repeated columns {header}")
    for need in ("animal", "session"):
        if need not in header:
            raise InputError(path, f"lacks the column {need!r} (columns: {', '.join(header)})")
    types = _field_types()
    unknown = [h for h in header if h not in _CSV_FIXED and h not in types]
    if unknown:
        raise InputError(path, f"has unknown columns {unknown}; expected animal, condition, "
                         "series, session, day, name, voxel_z/y/x, params or parameter names")
    voxel_cols = [c for c in ("voxel_z", "voxel_y", "voxel_x") if c in header]
    if voxel_cols and len(voxel_cols) != 3:
        raise InputError(path, "needs all three columns voxel_z, voxel_y, voxel_x (µm) or none")
    base = path.resolve().parent  # absolute: workers elsewhere have another cwd
    groups: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
    for line_no, raw in rows[1:]:
        if len(raw) != len(header):
            raise InputError(path, f"line {line_no}: {len(raw)} fields, the header (line "
                             f"{header_line}) has {len(header)}")
        row = {h: v.strip() for h, v in zip(header, raw)}
        if not row["animal"]:
            raise InputError(path, f"line {line_no}: empty animal")
        if not row["session"]:
            raise InputError(path, f"line {line_no}: empty session file")
        groups.setdefault((row["animal"], row.get("series", "")), []).append((line_no, row))
    return [_csv_series(path, base, rows_, types) for rows_ in groups.values()]


def _csv_series(path: Path, base: Path, rows: list[tuple[int, dict[str, str]]],
                types: dict) -> SeriesSpec:
    first_line, first = rows[0]
    where = (f"lines {first_line}-{rows[-1][0]}" if len(rows) > 1 else f"line {first_line}")
    where += f" (animal {first['animal']}" + (f", series {first['series']})"
                                                if first.get("series") else ")")
    per_series = [h for h in first if h not in ("session", "day", "name")]
    for line_no, row in rows[1:]:
        for h in per_series:
            if row[h] != first[h]:
                raise InputError(path, f"line {line_no}: {h} {row[h]!r} differs from "
                                 f"{first[h]!r} on line {first_line} of the same series; "
                                 "it must be the same in every row of a series")
    day_text = [row.get("day", "") for _, row in rows]
    days = None
    if len(rows) == 1 and len(re.split(r"[\s;]+", day_text[0].strip())) > 1:
        # one row for a whole series (a 4-D file or a folder): all its days in one cell
        try:
            values = [float(d) for d in re.split(r"[\s;]+", day_text[0].strip())]
        except ValueError:
            raise InputError(path, f"{where}: days {day_text[0]!r} are not all numbers") from None
        days = _days(values, None, path, where)
    elif any(day_text):
        if not all(day_text):
            raise InputError(path, f"{where}: day is given for some sessions only")
        try:
            values = [float(d) for d in day_text]
        except ValueError:
            raise InputError(path, f"{where}: days {day_text} are not all numbers") from None
        order = sorted(range(len(rows)), key=lambda i: values[i])
        rows = [rows[i] for i in order]
        days = _days([values[i] for i in order], None, path, where)
    names = [row.get("name", "") for _, row in rows]
    voxel = None
    if "voxel_z" in first and any(first[c] for c in ("voxel_z", "voxel_y", "voxel_x")):
        voxel = _voxel([first["voxel_z"], first["voxel_y"], first["voxel_x"]], path, where)
    overrides = _params_value(first.get("params"), base, path, where)
    column_values = {h: first[h] for h in first if h not in _CSV_FIXED and first[h] != ""}
    overrides.update(absolute_paths(_flatten_params(column_values, path, where), base,
                                    strip=True))
    return SeriesSpec(
        animal=first["animal"], condition=first.get("condition", "") or "all",
        series=first.get("series", ""),
        files=tuple(_resolve(row["session"], base) for _, row in rows), days=days,
        names=tuple(names) if all(names) else None, voxel_size_um=voxel,
        overrides=overrides, where=where)


def _read_yaml_manifest(path: Path) -> list[SeriesSpec]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read as text ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(path, f"is not valid YAML{at} ({problem})") from None
    defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"defaults", "series"})
        if unknown:
            raise InputError(path, f"unknown top-level keys {unknown}; expected 'defaults' and "
                             "'series'")
        defaults = data.get("defaults") or {}
        data = data.get("series")
        if not isinstance(defaults, dict):
            raise InputError(path, "defaults must be a mapping")
    if not isinstance(data, list):
        raise InputError(path, "must hold a list of series (or 'series:' with a list)")
    bad = sorted(set(defaults) - _YAML_KEYS)
    if bad:
        raise InputError(path, f"defaults: unknown keys {bad}")
    return [_yaml_series(path, i, entry, defaults) for i, entry in enumerate(data, start=1)]


def _yaml_series(path: Path, index: int, entry: Any, defaults: dict) -> SeriesSpec:
    where = f"series {index}"
    if not isinstance(entry, dict):
        raise InputError(path, f"{where}: must be a mapping with animal, sessions, ...")
    unknown = sorted(set(entry) - _YAML_KEYS)
    if unknown:
        raise InputError(path, f"{where}: unknown keys {unknown}; expected "
                         f"{', '.join(sorted(_YAML_KEYS))}")
    merged = {**defaults, **entry}
    animal = merged.get("animal")
    if animal is None or str(animal).strip() == "":
        raise InputError(path, f"{where}: no animal")
    where = f"series {index} (animal {animal}" + (f", series {merged['series']})"
                                                  if merged.get("series") else ")")
    sessions = merged.get("sessions")
    if isinstance(sessions, str):
        sessions = [sessions]
    if not sessions or not isinstance(sessions, list):
        raise InputError(path, f"{where}: sessions must list the session files")
    base = path.resolve().parent  # absolute: workers elsewhere have another cwd
    files = tuple(_resolve(s, base) for s in sessions)
    n = len(files) if len(files) > 1 else None
    days = _days(merged.get("days"), n, path, where)
    names = merged.get("names")
    if names is not None:
        if not isinstance(names, list) or (n is not None and len(names) != n):
            raise InputError(path, f"{where}: names must list one name per session")
        names = tuple(str(x) for x in names)
    params = dict(_params_value(defaults.get("params"), base, path, "defaults"))
    if "params" in entry:
        params.update(_params_value(entry.get("params"), base, path, where))
    return SeriesSpec(
        animal=str(animal), condition=str(merged.get("condition") or "all"),
        series=str(merged.get("series") or ""), files=files, days=days, names=names,
        voxel_size_um=_voxel(merged.get("voxel_size"), path, where), overrides=params,
        where=where)


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one series (picklable, no images).

    Attributes
    ----------
    spec : SeriesSpec
    params : Params
        Parameters of this series (base, command-line options, then the
        manifest's overrides).
    folder : Path
        The series' results folder ``OUT/<key>``.
    fingerprint : dict
        The inputs as recorded in ``params.json`` under ``batch``; a re-run skips
        the series when it matches.
    report_html : bool
        Write ``report.html`` and ``figures/`` for the series.
    """

    spec: SeriesSpec
    params: Params
    folder: Path
    fingerprint: dict[str, Any]
    report_html: bool = True

    @property
    def key(self) -> str:
        return self.spec.key


def _files_of(spec: SeriesSpec) -> list[Path]:
    from .io import session_paths

    if len(spec.files) == 1 and spec.files[0].is_dir():
        return session_paths(spec.files[0])
    return list(spec.files)


def _model_fingerprint(model: str) -> dict[str, Any] | None:
    """A learned detector model as compared on a re-run: its file, size and SHA-256.

    The checksum, not the modification time, decides: a model learned again with
    other corrections (same name, new content) redoes the series, a copy or a
    ``touch`` does not. A missing file gives ``None`` values (the run then fails
    with the model's own error).
    """
    if not model:
        return None
    path = Path(model).expanduser().resolve()
    try:
        data = path.read_bytes()
    except OSError:
        return {"file": str(path), "size": None, "sha256": None}
    return {"file": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _fingerprint(spec: SeriesSpec, params: Params | None = None) -> dict[str, Any]:
    """The inputs of a series, as compared on a re-run.

    The session files with their size and modification time, the days, names,
    voxel size and, when ``params`` name a learned detector model, that model's
    size and checksum (:func:`_model_fingerprint`).
    """
    files = []
    for p in _files_of(spec):
        try:
            st = p.stat()
            stat = [int(st.st_size), int(st.st_mtime)]
        except OSError:
            stat = None
        files.append({"file": str(p.resolve()), "stat": stat})
    out = {"animal": spec.animal, "series": spec.series, "files": files,
           "days": list(spec.days) if spec.days else None,
           "names": list(spec.names) if spec.names else None,
           "voxel_size_um": list(spec.voxel_size_um) if spec.voxel_size_um else None}
    model = _model_fingerprint(params.detect.detector_model if params is not None else "")
    if model is not None:  # only then: folders of earlier versions without a model still match
        out["detector_model"] = model
    return to_jsonable(out)


def plan(specs: Sequence[SeriesSpec], out_dir: str | Path, base: Params | None = None,
         report_html: bool = True, manifest: str | Path | None = None) -> list[Task]:
    """One :class:`Task` per series, with its parameters validated.

    Parameters
    ----------
    specs : sequence of SeriesSpec
        From :func:`read_manifest`.
    out_dir : path
        The batch's output folder.
    base : Params, optional
        Parameters for every series before the manifest's overrides.
    report_html : bool
        Whether each series writes its own report.
    manifest : path, optional
        Named in error messages.
    """
    base = base or Params()
    files = {name: value for section in SECTIONS
             for name, value in getattr(base, section).to_dict().items()
             if name in PATH_FIELDS and value}
    if files:  # absolute: workers elsewhere have another cwd
        base = base.replace(**absolute_paths(files, strip=True))
    out = Path(out_dir).resolve()  # absolute: workers elsewhere have another cwd
    tasks = []
    for spec in specs:
        try:
            params = base.replace(**spec.overrides) if spec.overrides else base
        except InputError as exc:
            raise InputError(manifest, f"{spec.where}: {exc.problem}") from None
        tasks.append(Task(spec=spec, params=params, folder=out / spec.key,
                          fingerprint=_fingerprint(spec, params), report_html=report_html))
    return tasks


def _roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(to_jsonable(obj)))


def is_complete(task: Task) -> bool:
    """Whether the task's folder holds a finished run of the same inputs and parameters."""
    marker = task.folder / "params.json"
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    return (meta.get("params") == _roundtrip(task.params.to_dict())
            and (meta.get("batch") or {}).get("inputs") == _roundtrip(task.fingerprint))


# --------------------------------------------------------------------------- one series


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def _move_into_place(tmp: Path, folder: Path) -> None:
    """Move every file of ``tmp`` into ``folder``, each ``params.json`` last.

    ``folder/params.json`` is removed first, so until the new one is moved in
    the folder reads as incomplete, and with it what describes the earlier run
    (report, figures, ``compare.json``: :func:`spinetrack.pipeline.retire_previous`),
    which would otherwise stay beside the new tables (``--no-report``). A
    person's ``edits.json`` is never replaced.
    """
    from .pipeline import retire_previous

    folder.mkdir(parents=True, exist_ok=True)
    retire_previous(folder, project=(folder / "edits.json").exists())
    files = [p for p in tmp.rglob("*") if p.is_file()]
    files.sort(key=lambda p: (p.relative_to(tmp) == Path("params.json"), p.name == "params.json",
                              str(p)))
    for src in files:
        rel = src.relative_to(tmp)
        if rel == Path("edits.json"):
            continue
        dst = folder / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _default_runner():
    from .pipeline import run_and_write

    return run_and_write


def run_task(task: Task, runner: Callable | None = None,
             progress: Callable | None = None) -> dict[str, Any]:
    """Run one series into its folder; never raises for a series' own failure.

    Parameters
    ----------
    task : Task
    runner : callable, optional
        ``runner(series, out_dir, params, progress=..., extra_params=...,
        report_html=...)``; default :func:`spinetrack.pipeline.run_and_write`.
    progress : callable, optional
        Progress callback for the stages of this series.

    Returns
    -------
    dict
        A row of ``batch_status.csv``: ``status`` is ``done`` or ``failed`` (with
        the one-line ``error``).
    """
    from .edits import load_edits
    from .io import read_series

    runner = runner or _default_runner()
    spec = task.spec
    t0, cpu0 = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"key": task.key, "animal": spec.animal, "series": spec.series,
                           "condition": spec.condition, "status": "failed", "error": "",
                           "n_sessions": None, "folder": task.folder.name}
    tmp: Path | None = None
    try:
        series = read_series(list(spec.files), voxel_size_um=spec.voxel_size_um,
                             names=list(spec.names) if spec.names else None,
                             days=list(spec.days) if spec.days else None)
        row["n_sessions"] = len(series)
        task.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{task.key}{_PARTIAL}", dir=task.folder.parent))
        if (task.folder / "edits.json").is_file():  # a person's corrections are re-applied
            load_edits(task.folder)  # checked where the person keeps them: errors name that file
            shutil.copy2(task.folder / "edits.json", tmp / "edits.json")
        extra = {"batch": {"animal": spec.animal, "condition": spec.condition,
                           "series": spec.series, "inputs": task.fingerprint}}
        runner(series, tmp, task.params, progress=progress, extra_params=extra,
               report_html=task.report_html)
        _move_into_place(tmp, task.folder)
        row["status"] = "done"
    except SpinetrackError as exc:
        row["error"] = _one_line(_real_paths(str(exc), tmp, task.folder))
    except MemoryError:
        row["error"] = "out of memory; try fewer workers or a larger --memory-limit"
    except Exception as exc:  # noqa: BLE001 - one series must not stop the batch
        log.debug("series %s failed", task.key, exc_info=True)
        row["error"] = _one_line(_real_paths(f"internal error: {type(exc).__name__}: {exc}",
                                             tmp, task.folder))
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    row["cpu_seconds"] = round(time.process_time() - cpu0, 2)
    row["worker_peak_rss_mb"] = round(_peak_rss_mb(), 1)
    row["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return row


def _real_paths(text: str, tmp: Path | None, folder: Path) -> str:
    """``text`` with the temporary folder's path replaced by the series folder's."""
    return text.replace(str(tmp), str(folder)) if tmp is not None else text


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return (lines[0] if lines else "unknown error")[:400]


# --------------------------------------------------------------------------- the batch


@dataclass
class BatchOutcome:
    """What :func:`run_batch` did.

    Attributes
    ----------
    status : DataFrame
        One row per series (``batch_status.csv``).
    written : list of Path
        Cohort files written (tables, report, figures).
    """

    status: pd.DataFrame
    written: list[Path] = field(default_factory=list)

    def count(self, status: str) -> int:
        return int((self.status["status"] == status).sum())

    @property
    def n_failed(self) -> int:
        return self.count("failed") + self.count("not run")

    def summary_line(self, out_dir: str | Path) -> str:
        n = len(self.status)
        line = (f"{n} series: {self.count('done')} done, {self.count('skipped')} skipped "
                f"(already complete), {self.count('failed')} failed")
        if self.count("not run"):
            line += f", {self.count('not run')} not run"
        if self.n_failed:
            line += f"; see {Path(out_dir) / STATUS_FILE}"
        return line


class _StatusBook:
    """The batch's status table, rewritten atomically after every change."""

    def __init__(self, out: Path, tasks: Sequence[Task]):
        self.path = out / STATUS_FILE
        self.rows = {t.key: {"key": t.key, "animal": t.spec.animal, "series": t.spec.series,
                             "condition": t.spec.condition, "status": "not run", "error": "",
                             "seconds": None, "cpu_seconds": None, "n_sessions": None, "worker_peak_rss_mb": None,
                             "finished_utc": "", "folder": t.folder.name} for t in tasks}

    def update(self, row: dict[str, Any], write: bool = True) -> None:
        self.rows[row["key"]].update({k: v for k, v in row.items() if k in STATUS_COLUMNS})
        if write:
            self.write()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows.values()), columns=STATUS_COLUMNS)

    def write(self) -> None:
        write_table_atomic(self.frame(), self.path)


def _clean_partials(out: Path) -> None:
    """Remove temporary series folders left behind by a killed batch."""
    for p in out.glob(f".*{_PARTIAL}*"):
        if p.is_dir():
            log.info("removing an unfinished series left by an interrupted batch: %s", p.name)
            shutil.rmtree(p, ignore_errors=True)


class _Lock:
    """An exclusive lock on ``OUT/.batch.lock``: one batch per output folder at a time."""

    def __init__(self, out: Path):
        self.path = out / ".batch.lock"
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform (Windows): no lock
            return self
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise InputError(self.path.parent, "another spinetrack batch is writing into this "
                             "folder; wait for it or choose another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is None:
            return
        import fcntl

        fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
        self.fh.close()


def run_batch(
    tasks: Sequence[Task],
    out_dir: str | Path,
    workers: int = 2,
    scheduler: str | None = None,
    serial: bool = False,
    force: bool = False,
    runner: Callable | None = None,
    progress_bar: bool = False,
    memory_limit: str | None = "auto",
    cohort: bool = True,
    title: str = "spinetrack cohort report",
) -> BatchOutcome:
    """Run every task (series), record each outcome, then build the cohort outputs.

    Parameters
    ----------
    tasks : sequence of Task
        From :func:`plan`.
    out_dir : path
        Output folder (created).
    workers : int
        Worker processes of the embedded ``LocalCluster`` (1 thread each).
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``) to use instead.
    serial : bool
        Run the series one after another in this process; dask is not imported.
    force : bool
        Redo series whose folder is already complete.
    runner : callable, optional
        Replaces :func:`spinetrack.pipeline.run_and_write` (must be picklable for
        dask).
    progress_bar : bool
        Draw a tqdm bar over the series on stderr.
    memory_limit : str or None
        Per-worker memory limit of the embedded cluster (dask syntax, ``"4GB"``;
        ``"auto"`` shares the machine's memory; None or ``"0"`` for no limit).
    cohort : bool
        Build ``cohort_*`` tables and the report at the end.
    title : str
        Title of ``cohort_report.html``.

    Returns
    -------
    BatchOutcome
    """
    out = output_folder(out_dir)
    with _Lock(out):
        _clean_partials(out)
        book = _StatusBook(out, tasks)
        todo = []
        for t in tasks:
            if not force and is_complete(t):
                book.update({"key": t.key, "status": "skipped",
                             "n_sessions": len(t.fingerprint["files"])}, write=False)
            else:
                todo.append(t)
        book.write()
        if todo:
            log.info("%d of %d series to run (%d already complete)", len(todo), len(tasks),
                     len(tasks) - len(todo))
        bar = _bar(len(tasks), len(tasks) - len(todo), progress_bar)
        try:
            if not todo:
                pass
            elif serial:
                _run_serial(todo, book, runner, bar)
            else:
                _run_dask(todo, book, runner, bar, workers, scheduler, memory_limit)
        finally:
            if bar is not None:
                bar.close()
            book.write()
        status = book.frame()
        written: list[Path] = []
        if cohort:
            from .cohort import write_cohort

            entries = [{"animal": t.spec.animal, "condition": t.spec.condition,
                        "series": t.spec.series, "key": t.key, "folder": t.folder}
                       for t in tasks if book.rows[t.key]["status"] in ("done", "skipped")]
            base = tasks[0].params if tasks else Params()
            failed = [t.key for t in tasks
                      if book.rows[t.key]["status"] not in ("done", "skipped")]
            written = write_cohort(entries, out, stats=base.stats, failed=failed, title=title)
    return BatchOutcome(status=status, written=written)


def _bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="series", unit="series", dynamic_ncols=True)


def _finish(book: _StatusBook, row: dict[str, Any], bar) -> None:
    book.update(row)
    if row["status"] == "failed":
        log.warning("%s failed: %s", row["key"], row["error"])
    else:
        log.info("%s done in %.0f s", row["key"], row.get("seconds") or 0)
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(f"{row['key']} {row['status']}")


def _run_serial(tasks: Sequence[Task], book: _StatusBook, runner, bar) -> None:
    from .progress import sub_progress

    stage_bar = None
    if bar is not None:
        from .progress import TqdmProgress

        stage_bar = TqdmProgress()
    try:
        for t in tasks:
            book.update({"key": t.key, "status": "running"})
            row = run_task(t, runner, progress=sub_progress(stage_bar, t.key))
            _finish(book, row, bar)
    except BaseException:
        for t in tasks:
            if book.rows[t.key]["status"] == "running":
                book.rows[t.key]["status"] = "not run"
        raise
    finally:
        if stage_bar is not None:
            stage_bar.close()


def _client(workers: int, scheduler: str | None, memory_limit: str | None):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(None, "dask.distributed is not installed; install it with "
                         "'pip install \"dask[distributed]\"' or run with --serial") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise InputError(None, f"cannot reach the dask scheduler at {scheduler} "
                             f"({_one_line(str(exc)) or type(exc).__name__})") from None
    if workers < 1:
        raise InputError(None, f"--workers must be at least 1, got {workers}")
    limit = None if memory_limit in (None, "0", 0, "none") else memory_limit
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           memory_limit=limit, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _run_dask(tasks: Sequence[Task], book: _StatusBook, runner, bar, workers: int,
              scheduler: str | None, memory_limit: str | None) -> None:
    client, cluster = _client(workers, scheduler, memory_limit)
    futures = {}
    try:
        from distributed import as_completed

        for t in tasks:
            fut = client.submit(run_task, t, runner, key=f"spinetrack-series-{t.key}-"
                                f"{os.getpid()}-{time.time_ns()}", pure=False, retries=0)
            futures[fut] = t
            book.update({"key": t.key, "status": "submitted"}, write=False)
        book.write()
        for fut in as_completed(list(futures)):
            t = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                row = {"key": t.key, "status": "failed",
                       "error": _one_line(f"worker lost ({type(exc).__name__}: {exc}); "
                                          "out of memory? try fewer --workers")}
            _finish(book, row, bar)
    except BaseException:
        for t in tasks:
            if book.rows[t.key]["status"] == "submitted":
                book.rows[t.key]["status"] = "not run"
        for fut in futures:
            fut.cancel()
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------- command line


def command(args) -> int:
    """The ``spinetrack batch`` command (arguments from ``spinetrack.cli``).

    Returns 0 when every series is done or skipped, 1 when any failed.
    """
    from .params import params_from_args

    base = Params.load(args.params) if args.params else Params()
    params = params_from_args(args, base)
    specs = read_manifest(args.manifest)
    tasks = plan(specs, args.out, params, report_html=not args.no_report,
                 manifest=args.manifest)
    if args.dry_run:
        for t in tasks:
            missing = [f["file"] for f in t.fingerprint["files"] if f["stat"] is None]
            state = ("complete, skipped" if (not args.force and is_complete(t)) else
                     f"will fail: missing {', '.join(missing)}" if missing else "to run")
            print(f"{t.key}\t{t.spec.condition}\t{len(t.fingerprint['files'])} sessions\t"
                  f"{t.folder}\t{state}")
        return 0
    mode = ("serially" if args.serial else f"on the dask scheduler {args.scheduler}"
            if args.scheduler else f"on {args.workers} local dask workers")
    log.info("%d series from %s, %s", len(tasks), args.manifest, mode)
    outcome = run_batch(tasks, args.out, workers=args.workers, scheduler=args.scheduler,
                        serial=args.serial, force=args.force,
                        progress_bar=not args.quiet and sys.stderr.isatty(),
                        memory_limit=args.memory_limit, title=args.title)
    report_file = Path(args.out) / "cohort_report.html"
    if report_file in outcome.written:
        log.info("cohort tables and report in %s (open %s)", args.out, report_file)
    print(f"spinetrack batch: {outcome.summary_line(args.out)}",
          file=sys.stderr if outcome.n_failed else sys.stdout)
    return 1 if outcome.n_failed else 0
