"""Writing a synthetic series to disk and reading its truth back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..files import write_json_atomic, write_table_atomic
from ..io import write_session

__all__ = ["write_synth", "read_truth", "read_truth_info", "TRUTH_TABLES"]

TRUTH_TABLES = ("spines", "fates", "lines", "branches", "sessions", "filopodia", "puncta")


def write_synth(syn, out_dir, compression: str | None = "zlib") -> list[Path]:
    """Write a :class:`SynthSeries`: images, truth tables and truth.json.

    Parameters
    ----------
    syn : SynthSeries
    out_dir : path
        Gets ``session0.tif ...`` (ImageJ hyperstacks with voxel size) and
        ``truth/{spines,fates,lines,branches,sessions,filopodia,puncta}.csv`` plus
        ``truth/truth.json``. Every file is written atomically; truth.json last.
    compression : str or None
        TIFF compression (zlib by default).

    Returns
    -------
    list of Path
        The files written, images first.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    names = {f"session{k}.tif" for k in range(len(syn.series))}
    if out.is_dir():
        stale = sorted(p.name for p in out.iterdir() if p.is_file()
                       and p.name.lower().endswith((".tif", ".tiff")) and p.name not in names)
        if stale:
            raise InputError(out, f"already holds other TIFF files ({', '.join(stale[:3])}), "
                             "which would be read as sessions of this series; choose an empty "
                             "folder")
    written = []
    for k, s in enumerate(syn.series):
        written.append(write_session(out / f"session{k}.tif", s.image, s.voxel_size_um,
                                     compression=compression))
    truth_dir = out / "truth"
    for name in TRUTH_TABLES:
        written.append(write_table_atomic(syn.truth[name], truth_dir / f"{name}.csv"))
    written.append(write_json_atomic(truth_dir / "truth.json", syn.info))
    return written


def _truth_dir(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such folder")
    if (path / "truth" / "truth.json").exists():
        return path / "truth"
    if (path / "truth.json").exists():
        return path
    raise InputError(path, "holds no synthetic truth (truth/truth.json or truth.json)")


def read_truth(path) -> dict[str, pd.DataFrame]:
    """Read the truth tables written by :func:`write_synth`.

    Parameters
    ----------
    path : path
        The series folder (with ``truth/``) or the truth folder itself.

    Returns
    -------
    dict of DataFrame
        ``spines, fates, lines, branches, sessions, filopodia, puncta``; ``present`` is
        read as text, ``restored_from`` as a nullable integer.
    """
    folder = _truth_dir(path)
    out = {}
    for name in TRUTH_TABLES:
        f = folder / f"{name}.csv"
        if not f.exists():
            raise InputError(f, "is missing from the truth folder")
        try:
            df = pd.read_csv(f, dtype={"present": str} if name == "fates" else None)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f, f"is not a readable CSV table ({exc})") from None
        if name == "fates" and "restored_from" in df:
            df["restored_from"] = df["restored_from"].astype("Int64")
        out[name] = df
    return out


def read_truth_info(path) -> dict:
    """The contents of ``truth.json`` (preset, seed, transforms, parameters)."""
    f = _truth_dir(path) / "truth.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f, "is not valid JSON") from None


def to_4d(syn) -> np.ndarray:
    """All sessions stacked as (t, z, y, x); sessions must share a shape."""
    return np.stack([s.image for s in syn.series])
