"""napari writer: a spine Points layer to the contract's tables in a folder.

A spines layer that shows a project (a results folder, or a run kept in
memory) is written as that project: the automatic results, the person's edit
log and the corrected tables, exactly what saving the project writes. Points
changed with napari's own tools while no spinetrack widget watched the layer
become edits on top. Any other spines layer is written as tables in each
session's own image frame (the registration inverted), every column kept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spinetrack.edits import Edit, EditError, position_columns
from spinetrack.errors import InputError
from spinetrack.fates import classify_fates
from spinetrack.files import write_table_atomic
from spinetrack.project import Project
from spinetrack.results import SPINE_COLUMNS, FATE_COLUMNS

from ._convert import _SAME_UM, META_KEY, points_to_spines

__all__ = ["write_spines", "layer_edits"]

def _voxels(info: dict[str, Any]) -> list:
    if info.get("voxel_size_um"):
        return info["voxel_size_um"]
    raise InputError(None, "the spines layer does not say the voxel size; open the sessions "
                     "or a results folder with spinetrack first")


def _live_project(data: np.ndarray, info: dict[str, Any]) -> Project | None:
    """The project a viewer shows in this layer (unsaved edits included), if any."""
    from ._widgets._state import _STATES

    def key(meta: dict[str, Any]) -> tuple:
        return meta.get("role"), meta.get("project"), meta.get("n_sessions")

    found = []
    for state in list(_STATES.values()):
        layer = state.layer("spines") if state.project is not None else None
        if layer is None or key((layer.metadata or {}).get(META_KEY, {})) != key(info):
            continue
        same = np.asarray(layer.data).shape == data.shape and np.allclose(layer.data, data)
        if same or info.get("project"):  # a run kept in memory is known by its points only
            found.append((not same, state))
    if not found:
        return None
    state = min(found, key=lambda f: f[0])[1]
    state.project.view = state.view_state()
    return state.project


def _project_of(data: np.ndarray, info: dict[str, Any]) -> Project | None:
    live = _live_project(data, info)
    if live is not None:
        return live
    folder = info.get("project")
    if folder and Project.is_project(folder):
        return Project.open(folder, autosave=False)
    return None


def layer_edits(project: Project, data: np.ndarray, features: pd.DataFrame) -> list[Edit]:
    """Edits that turn the project's spines into the points of a layer.

    For points changed with napari's own tools while no spinetrack widget
    turned them into edits: an observation (``spine_id``, ``session``) that is
    gone is deleted, one at another place is moved, a point without a known
    observation is added.
    """
    spines = project.results.spines
    before = {(int(s), int(k)): p for s, k, p in zip(
        spines["spine_id"], spines["session"], spines[position_columns(spines)].to_numpy(float))}
    data = np.asarray(data, float).reshape(-1, 4)
    feats = features.reset_index(drop=True)
    ids = pd.to_numeric(feats.get("spine_id", pd.Series([np.nan] * len(data))), errors="coerce")
    edits: list[Edit] = []
    kept = set()
    for i, point in enumerate(data):
        session = int(round(point[0]))
        key = (int(ids.iloc[i]), session) if np.isfinite(ids.iloc[i]) else None
        if key is None or key not in before or key in kept:
            edits.append(Edit.add(session, point[1:]))
            continue
        kept.add(key)
        if np.abs(before[key] - point[1:]).max() > _SAME_UM:
            edits.append(Edit.move(spines, key[0], session, point[1:]))
    gone = [Edit.delete(spines, sid, s) for sid, s in before if (sid, s) not in kept]
    return gone + edits


def _write_project(project: Project, out: Path, data: np.ndarray,
                   features: pd.DataFrame) -> list[str]:
    extra = layer_edits(project, data, features)
    if extra:
        # a copy (as Project.save_copy makes) with its own edit list: no replay
        project = copy.copy(project)
        project.edits, project.autosave = list(project.edits), False
        project.view = {}  # as before: the copy that takes the layer's changes has no view
        for edit in extra:
            try:
                project.apply(edit, statistics=False)
            except EditError as exc:
                raise InputError(out, f"not written: a point changed in napari cannot be "
                                 f"kept ({edit.describe()}: {exc})") from None
    folder = project.save_copy(out)
    return sorted(str(p) for p in folder.iterdir() if p.is_file())


def write_spines(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write the spines of a Points layer as spinetrack tables in a folder.

    A layer that shows a project (a results folder, or a run kept in memory)
    is written as the project (automatic results, ``edits.json`` and the
    corrected tables, exactly as saving the project does). Another spines
    layer is written as ``spines.csv`` and ``fates.csv`` with positions in each
    session's own image frame.

    Parameters
    ----------
    path : str
        A folder (created if needed). A folder that already holds another
        project or results is refused.
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
    data = np.asarray(data, float).reshape(-1, 4)
    features = meta.get("features")
    if not isinstance(features, pd.DataFrame):
        features = pd.DataFrame(meta.get("properties") or {})
    project = _project_of(data, info)
    if project is not None:
        return _write_project(project, out, data, features)
    return _write_tables(out, data, features, info)


def _write_tables(out: Path, data: np.ndarray, features: pd.DataFrame,
                  info: dict[str, Any]) -> list[str]:
    """spines.csv and fates.csv of a layer that shows no project."""
    from spinetrack.project import FolderInUse, results_in

    found = results_in(out)
    if found:
        raise FolderInUse(out, f"already holds {' and '.join(found)}; choose an empty folder")
    spines = points_to_spines(data, features, _voxels(info), info.get("transform"))
    if (spines["branch_id"] < 0).any() or spines["arc_um"].isna().any():
        raise InputError(out, "some spines have no branch; save spines opened from a "
                         "spinetrack results folder, or run detection first")
    n_sessions = int(info.get("n_sessions") or (spines["session"].max() + 1 if len(spines) else 1))
    fates = classify_fates(spines, n_sessions)
    out.mkdir(parents=True, exist_ok=True)
    extra = [c for c in spines.columns if c not in SPINE_COLUMNS]
    return [str(write_table_atomic(spines[SPINE_COLUMNS + extra], out / "spines.csv")),
            str(write_table_atomic(fates[FATE_COLUMNS + [c for c in fates.columns
                                                         if c not in FATE_COLUMNS]],
                                   out / "fates.csv"))]
