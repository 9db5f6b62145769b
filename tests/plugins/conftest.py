"""Fixtures for the napari plugin tests: a tiny results folder with session images."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spinetrack.io import write_session
from spinetrack.results import write_results

_spec = importlib.util.spec_from_file_location(
    "_edits_data_plugins", Path(__file__).parents[1] / "spinetrack" / "test_edits.py")
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)
tiny_results = _data.tiny_results
VOXEL = _data.VOXEL

SCREENSHOTS = Path(__file__).parents[1] / "screenshots"


@pytest.fixture(autouse=True)
def _sync_jobs(monkeypatch):
    monkeypatch.setenv("SPINETRACK_NAPARI_SYNC", "1")


def session_images(results, shape=(6, 80, 80)):
    """Grey stacks with the two shafts and every spine head of each session."""
    zz, yy, xx = np.indices(shape, dtype=float)
    vz, vy, vx = VOXEL
    out = []
    for s in range(3):
        img = np.full(shape, 8.0)
        for y in _data.SHAFT_Y.values():
            img += 120 * np.exp(-(((yy - y) * vy) ** 2 + ((zz - 3) * vz) ** 2) / (2 * 0.4 ** 2)) \
                * ((xx >= 5) & (xx <= 75))
        sp = results.spines[results.spines["session"] == s]
        for _, r in sp.iterrows():
            img += 150 * np.exp(-(((zz - r["z"]) * vz) ** 2 + ((yy - r["y"]) * vy) ** 2
                                  + ((xx - r["x"]) * vx) ** 2) / (2 * 0.35 ** 2))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


@pytest.fixture
def tiny_folder(tmp_path):
    """A results folder whose sessions.csv points at three small session TIFFs."""
    res = tiny_results()
    files = []
    for k, img in enumerate(session_images(res)):
        path = tmp_path / "images" / f"day{k}.tif"
        write_session(path, img, VOXEL)
        files.append(str(path))
    res.sessions["file"] = files
    write_results(res, tmp_path / "run", parquet=False)
    return tmp_path / "run"


@pytest.fixture
def tiny_results_fn():
    """The builder of the tiny results (three sessions, two branches, every fate)."""
    return tiny_results


@pytest.fixture
def screenshot_dir():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def _open_folder(viewer, folder):
    """Open a results folder with the spinetrack reader; the viewer's layers by name."""
    viewer.open(str(folder), plugin="spinetrack")
    return {layer.name: layer for layer in viewer.layers}


def _select(viewer, spine_id, session):
    """Select the point of one observation in the spines layer."""
    layer = viewer.layers["spines"]
    f = layer.features
    idx = f.index[(f["spine_id"] == spine_id) & (f["session"] == session)]
    layer.selected_data = set(int(i) for i in idx)


def _shifted_registration(n, shape, voxel, offsets, rotations=None):
    """A rigid registration of ``n`` sessions: ``offsets`` (and ``rotations``, degrees) per
    session k > 0, as {k: (z, y, x)}."""
    from spinetrack.register import Registration, rotation_matrix

    reg = Registration.identity(n, shape, voxel)
    for k, angles in (rotations or {}).items():
        reg.matrices[k] = rotation_matrix(angles)
    for k, offset in offsets.items():
        reg.offsets[k] = np.array(offset, float)
    return Registration(reg.matrices, reg.offsets, reg.anchors, reg.displacements, reg.weights,
                        0.0, shape, voxel)


@pytest.fixture
def tiny_voxel():
    """The tiny results' voxel size (z, y, x) µm."""
    return VOXEL


@pytest.fixture
def open_folder():
    """``open_folder(viewer, folder)``: open a results folder; the layers by name."""
    return _open_folder


@pytest.fixture
def select():
    """``select(viewer, spine_id, session)``: select one observation's point."""
    return _select


@pytest.fixture
def shifted_registration():
    """``shifted_registration(n, shape, voxel, offsets, rotations=None)``."""
    return _shifted_registration
