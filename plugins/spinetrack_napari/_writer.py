"""napari writer: a spine Points layer to the contract's tables in a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spinetrack.edits import recompute_results, snap_to_branch
from spinetrack.errors import InputError
from spinetrack.fates import classify_fates
from spinetrack.files import write_table_atomic
from spinetrack.project import Project
from spinetrack.results import SPINE_COLUMNS, FATE_COLUMNS, write_results

from ._convert import META_KEY, points_to_spines

__all__ = ["write_spines"]


def _voxels(info: dict[str, Any], project: Project | None) -> list:
    if project is not None and project.results.sessions is not None:
        s = project.results.sessions.sort_values("session")
        return s[["voxel_z_um", "voxel_y_um", "voxel_x_um"]].to_numpy(float).tolist()
    if info.get("voxel_size_um"):
        return info["voxel_size_um"]
    raise InputError(None, "the spines layer does not say the voxel size; open the sessions "
                     "or a results folder with spinetrack first")


def write_spines(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write ``spines.csv`` and ``fates.csv`` (and, for a project's layer, every table).

    Parameters
    ----------
    path : str
        A folder (created if needed).
    data : ndarray
        Points data ``(session, z, y, x)``, µm in session 0's frame.
    meta : dict
        The layer's state (``features``, ``metadata``).

    Returns
    -------
    list of str
        The files written.
    """
    out = Path(path)
    if out.suffix:
        raise InputError(out, "give a folder name (without extension); spinetrack writes "
                         "spines.csv, fates.csv and the other contract tables into it")
    info = (meta.get("metadata") or {}).get(META_KEY, {})
    folder = info.get("project")
    project = Project.open(folder) if folder and Project.is_project(folder) else None
    features = meta.get("features")
    if not isinstance(features, pd.DataFrame):
        features = pd.DataFrame(meta.get("properties") or {})
    spines = points_to_spines(np.asarray(data), features, _voxels(info, project))
    n_sessions = int(info.get("n_sessions") or (spines["session"].max() + 1 if len(spines)
                                                 else 1))
    if project is not None:
        lines = project.results.lines
        for i in spines.index[(spines["branch_id"] < 0) | spines["arc_um"].isna()]:
            own = spines.loc[i, ["z_um", "y_um", "x_um"]].to_numpy(float)
            snap = snap_to_branch(lines, int(spines.at[i, "session"]), own)
            if snap is not None:
                spines.loc[i, ["branch_id", "arc_um", "length_um"]] = [
                    snap["branch_id"], snap["arc_um"],
                    max(snap["distance_um"] - snap["radius_um"], 0.0)]
        results = recompute_results(project.results, spines)
        return [str(p) for p in write_results(results, out)]
    if (spines["branch_id"] < 0).any() or spines["arc_um"].isna().any():
        raise InputError(out, "some spines have no branch; save spines opened from a "
                         "spinetrack results folder, or run detection first")
    fates = classify_fates(spines, n_sessions)
    out.mkdir(parents=True, exist_ok=True)
    return [str(write_table_atomic(spines[SPINE_COLUMNS + ["ref_z_um", "ref_y_um", "ref_x_um"]],
                                   out / "spines.csv")),
            str(write_table_atomic(fates[FATE_COLUMNS + [c for c in fates.columns
                                                         if c not in FATE_COLUMNS]],
                                   out / "fates.csv"))]
