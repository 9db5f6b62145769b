"""Reader, writer and manifest of the napari plugin."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinetrack.errors import InputError
from spinetrack.results import read_results
from spinetrack_napari._convert import FATE_COLORS, fate_colors
from spinetrack_napari._reader import get_reader, read_project, read_sessions
from spinetrack_napari._writer import write_spines

MANIFEST = Path(__file__).parents[2] / "plugins" / "spinetrack_napari" / "napari.yaml"


def test_manifest_is_valid_and_every_command_imports():
    from npe2 import PluginManifest

    mf = PluginManifest.from_file(MANIFEST)
    mf.validate_imports()
    assert {w.display_name for w in mf.contributions.widgets} == {
        "Detect & track", "Correct spines", "Branch statistics"}


def test_npe2_validate_command_passes():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_reader_opens_a_results_folder_with_every_layer(tiny_folder):
    assert get_reader(str(tiny_folder)) is read_project
    layers = {kw["name"]: (data, kw, kind) for data, kw, kind in read_project(str(tiny_folder))}
    assert set(layers) == {"sessions", "branches", "identities", "spines"}
    stack, kw, kind = layers["sessions"]
    assert kind == "image" and stack.shape == (3, 6, 80, 80)
    assert kw["scale"] == (1.0, 1.0, 0.2, 0.2)
    pts, kw, kind = layers["spines"]
    res = read_results(tiny_folder)
    assert kind == "points" and pts.shape == (len(res.spines), 4)
    np.testing.assert_allclose(pts[:, 1:], res.spines[["ref_z_um", "ref_y_um", "ref_x_um"]])
    assert list(kw["features"].columns) == ["spine_id", "session", "fate", "branch_id",
                                            "arc_um", "source"]
    lost = kw["features"]["fate"] == "lost"
    np.testing.assert_allclose(kw["face_color"][lost.to_numpy()][0],
                               fate_colors(pd.Series(["lost"]), 0.2)[0])
    tracks, _, kind = layers["identities"]
    assert kind == "tracks" and set(tracks[:, 0]) == {0, 1, 3, 4}
    paths, kw, kind = layers["branches"]
    assert kind == "shapes" and len(paths) == 2 and paths[0].shape[1] == 2


def test_reader_opens_session_tiffs(tiny_folder):
    files = sorted(str(p) for p in (tiny_folder.parent / "images").glob("*.tif"))
    assert get_reader(files) is read_sessions
    assert get_reader(str(tiny_folder.parent / "images")) is read_sessions
    [(stack, kw, kind)] = read_sessions(files)
    assert stack.shape == (3, 6, 80, 80) and kind == "image"
    assert kw["metadata"]["spinetrack"]["files"] == files
    assert get_reader(str(tiny_folder / "spines.csv")) is None


def test_writer_round_trip_keeps_the_tables(tiny_folder, tmp_path):
    layers = {kw["name"]: (data, kw) for data, kw, _ in read_project(str(tiny_folder))}
    data, kw = layers["spines"]
    written = write_spines(str(tmp_path / "saved"), data, kw)
    assert str(tmp_path / "saved" / "spines.csv") in written
    back = read_results(tmp_path / "saved")
    orig = read_results(tiny_folder)
    cols = ["spine_id", "session", "z", "y", "x", "branch_id", "arc_um"]
    pd.testing.assert_frame_equal(back.spines[cols], orig.spines[cols], check_dtype=False)
    pd.testing.assert_frame_equal(back.fates[["spine_id", "present", "fate"]],
                                  orig.fates[["spine_id", "present", "fate"]])


def test_writer_without_project_writes_spines_and_fates(tiny_folder, tmp_path):
    layers = {kw["name"]: (data, kw) for data, kw, _ in read_project(str(tiny_folder))}
    data, kw = layers["spines"]
    kw = {**kw, "metadata": {"spinetrack": {"role": "spines", "project": None,
                                            "voxel_size_um": [[1.0, 0.2, 0.2]] * 3,
                                            "n_sessions": 3}}}
    write_spines(str(tmp_path / "plain"), data, kw)
    fates = pd.read_csv(tmp_path / "plain" / "fates.csv", dtype={"present": str})
    assert sorted(fates["present"]) == sorted(read_results(tiny_folder).fates["present"])
    with pytest.raises(InputError, match="folder name"):
        write_spines(str(tmp_path / "x.csv"), data, kw)


def test_fate_colours_are_fixed():
    assert FATE_COLORS == {"stable": "#56B4E9", "lost": "#D55E00", "formed": "#009E73",
                           "transient": "#F0E442", "restored": "#CC79A7"}
