"""napari reader: session TIFFs, a 4-D TIFF, or a spinetrack results (project) folder."""

from __future__ import annotations

import logging
from pathlib import Path


from spinetrack.errors import InputError
from spinetrack.io import read_series, session_paths
from spinetrack.project import Project
from spinetrack.results import incomplete_run

from ._convert import META_KEY, LayerData, image_layer, results_layers, session_stack

__all__ = ["get_reader", "read_sessions", "read_project", "load_session_images", "take_opened"]

#: Projects the reader just opened, handed to the viewer's controller (saves a reopen).
_OPENED: dict[str, Project] = {}


def take_opened(folder) -> Project | None:
    """The project the reader opened from ``folder`` (once), or None."""
    return _OPENED.pop(str(Path(folder).resolve()), None)

log = logging.getLogger(__name__)

_TIFF = (".tif", ".tiff")


def get_reader(path: str | list[str]):
    """Return a reader for ``path`` if spinetrack can open it, else None (napari tries others)."""
    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    if len(paths) == 1 and paths[0].is_dir():
        if Project.is_project(paths[0]):
            return read_project
        try:
            found = session_paths(paths[0])
        except InputError:
            return None
        return read_sessions if found else None
    if paths and all(p.suffix.lower() in _TIFF for p in paths):
        return read_sessions
    return None


def _series_meta(series) -> dict:
    return {"files": [None if s.path is None else str(s.path) for s in series],
            "voxel_size_um": [list(s.voxel_size_um) for s in series],
            "days": series.days}


def read_sessions(path: str | list[str]) -> list[LayerData]:
    """Sessions (files, a folder of files, or one 4-D TIFF) as one 4-D Image layer.

    Sessions are not registered yet (that is what a run does): later sessions
    are cropped or padded to session 0's shape.
    """
    series = read_series(path if isinstance(path, list) else [path])
    stack = session_stack([s.image for s in series], [s.voxel_size_um for s in series])
    data, kwargs, kind = image_layer(stack, series.voxel_size_um, series.names)
    kwargs["metadata"][META_KEY].update(_series_meta(series))
    return [(data, kwargs, kind)]


def load_session_images(results, folder: Path, progress=None):
    """Images of a results folder's sessions (``sessions.csv`` ``file``), registered to session 0.

    Returns
    -------
    stack : ndarray or None
        (session, z, y, x), None when the files cannot be found.
    voxel : tuple
        Session 0's voxel size.
    meta : dict
        ``files``, ``voxel_size_um`` and ``days`` of the sessions.
    """
    s = results.sessions
    if s is None or "file" not in s.columns or not len(s):
        return None, None, {}
    s = s.sort_values("session")
    if s["file"].isna().any() or (s["file"].astype(str).str.strip() == "").any():
        log.warning("sessions.csv does not name every session's image; showing the tables only")
        return None, None, {}
    voxels = s[["voxel_z_um", "voxel_y_um", "voxel_x_um"]].to_numpy(float).tolist()
    files = []
    for f in s["file"].astype(str):
        p = Path(f)
        if not p.is_absolute():
            p = folder / p
        files.append(p)
    if not all(p.exists() for p in files):
        missing = [str(p) for p in files if not p.exists()]
        log.warning("session images not found (%s); showing the tables only", ", ".join(missing))
        return None, None, {}
    days = s["day"].tolist() if "day" in s.columns else None
    if len(set(files)) == 1:  # a single 4-D file holds every session
        series = read_series(files[0], voxel_size_um=voxels[0])
    else:
        series = read_series(files, voxel_size_um=voxels)
    images = [sess.image for sess in series]
    stack = session_stack(images, voxels, results.transform, progress=progress)
    meta = {"files": [str(p) for p in files], "voxel_size_um": voxels,
            "days": None if days is None or any(d != d for d in days) else days,
            "registered": bool(results.transform)}
    return stack, tuple(voxels[0]), meta


def read_project(path: str | list[str]) -> list[LayerData]:
    """A results or project folder: registered session images plus spines, identities, branches.

    The tables shown are the corrected ones (the edit log replayed on ``auto/``).
    A folder an interrupted run left (tables without ``params.json``) opens with
    a warning.
    """
    folder = Path(path[0] if isinstance(path, list) else path)
    project = Project.open(folder)
    interrupted = incomplete_run(folder)
    if interrupted:
        from napari.utils.notifications import show_warning

        show_warning(f"spinetrack: {interrupted}")
    _OPENED.clear()
    _OPENED[str(folder.resolve())] = project
    stack, voxel, meta = load_session_images(project.results, folder)
    layers = results_layers(project.results, stack, voxel, folder=folder)
    if stack is not None:
        layers[0][1]["metadata"][META_KEY].update(meta)
    return layers

