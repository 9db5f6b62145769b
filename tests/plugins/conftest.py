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

SCREENSHOTS = Path(__file__).parents[1] / "screenshots"


@pytest.fixture(autouse=True)
def _sync_jobs(monkeypatch):
    monkeypatch.setenv("SPINETRACK_NAPARI_SYNC", "1")


def session_images(results, shape=(6, 80, 80)):
    """Grey stacks with the two shafts and every spine head of each session."""
    zz, yy, xx = np.indices(shape, dtype=float)
    vz, vy, vx = _data.VOXEL
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
        write_session(path, img, _data.VOXEL)
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
