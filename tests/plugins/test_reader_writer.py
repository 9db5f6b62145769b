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
    assert list(kw["features"].columns)[:6] == ["spine_id", "session", "fate", "branch_id",
                                                "arc_um", "source"]
    assert set(res.spines.columns) <= set(kw["features"].columns)  # every column travels
    lost = kw["features"]["fate"] == "lost"
    np.testing.assert_allclose(kw["face_color"][lost.to_numpy()][0],
                               fate_colors(pd.Series(["lost"]), 0.2)[0])
    tracks, _, kind = layers["identities"]
    assert kind == "tracks" and set(tracks[:, 0]) == {0, 1, 3, 4}
    paths, kw, kind = layers["branches"]
    assert kind == "shapes" and len(paths) == 2 and paths[0].shape[1] == 2


def test_reader_warns_about_an_interrupted_runs_folder(tiny_folder, monkeypatch):
    import napari.utils.notifications

    shown = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", shown.append)
    read_project(str(tiny_folder))
    assert shown == []
    (tiny_folder / "params.json").unlink()
    assert {kw["name"] for _, kw, _ in read_project(str(tiny_folder))} >= {"spines"}
    assert len(shown) == 1 and "incomplete (an interrupted run?)" in shown[0]


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


def test_writer_writes_an_empty_layer_without_n_sessions(tmp_path):
    """An empty spines layer whose metadata does not say the sessions: one session."""
    meta = {"features": pd.DataFrame(),
            "metadata": {"spinetrack": {"voxel_size_um": [[1.0, 0.2, 0.2]]}}}
    written = write_spines(str(tmp_path / "empty"), np.zeros((0, 4)), meta)
    assert sorted(Path(w).name for w in written) == ["fates.csv", "spines.csv"]
    assert pd.read_csv(tmp_path / "empty" / "spines.csv").empty
    assert pd.read_csv(tmp_path / "empty" / "fates.csv").empty


def test_fate_colours_are_fixed():
    assert FATE_COLORS == {"stable": "#56B4E9", "lost": "#D55E00", "formed": "#009E73",
                           "transient": "#F0E442", "restored": "#CC79A7"}


# --------------------------------------------------------------------------- writer, registered

@pytest.fixture
def registered(tmp_path, tiny_results_fn, tiny_voxel, shifted_registration):
    """Tiny results whose sessions 1 and 2 are shifted (own frame != session 0's frame)."""
    from spinetrack.results import write_results

    res = tiny_results_fn()
    reg = shifted_registration(3, (6, 80, 80), tiny_voxel,
                               {1: (0.0, 0.6, -0.8), 2: (0.0, -0.5, 1.1)})
    res.transform = reg.to_dict()
    sp = res.spines
    for k in (1, 2):
        rows = sp["session"] == k
        sp.loc[rows, ["ref_z_um", "ref_y_um", "ref_x_um"]] = reg.to_reference(
            k, sp.loc[rows, ["z_um", "y_um", "x_um"]].to_numpy(float))
    sp["side"] = np.where(sp["branch_id"] == 0, -1, 1)
    sp["score"] = np.linspace(0.5, 0.9, len(sp))
    write_results(res, tmp_path / "reg", parquet=False)
    return tmp_path / "reg", reg


def _tables(folder):
    return {n: pd.read_csv(folder / f"{n}.csv", dtype={"present": str})
            for n in ("spines", "fates", "branches")}


@pytest.mark.napari
def test_writer_saves_the_shown_project_with_unsaved_edits(make_napari_viewer, registered,
                                                           tmp_path, open_folder, select):
    from spinetrack.compare import compare
    from spinetrack_napari._widgets.edit import EditWidget

    folder, reg = registered
    viewer = make_napari_viewer()
    open_folder(viewer, folder)
    edit = EditWidget(viewer)
    edit.autosave.setChecked(False)
    layer = viewer.layers["spines"]
    select(viewer, 3, 1)
    edit.fate.setCurrentText("formed")  # 011, restored: a person says it is new
    assert edit.set_fate_selected(), edit.status.text()
    select(viewer, 0, 2)
    assert edit.delete_selected()
    viewer.layers.selection = {layer}
    viewer.layers.save(str(tmp_path / "saved"), selected=True, plugin="spinetrack")
    edit.state.project.save_copy(tmp_path / "project")  # what saving the project writes
    saved, project = _tables(tmp_path / "saved"), _tables(tmp_path / "project")
    for name in saved:
        pd.testing.assert_frame_equal(saved[name], project[name])
    fates = saved["fates"].set_index("spine_id")
    assert fates.loc[3, "fate"] == "formed" and fates.loc[3, "fate_source"] == "manual"
    assert fates.loc[0, "present"] == "110"
    orig = read_results(folder).spines.set_index(["spine_id", "session"])
    back = saved["spines"].set_index(["spine_id", "session"])
    common = orig.index.intersection(back.index)
    assert len(common) == len(orig) - 1
    for c in ("z", "y", "x", "z_um", "y_um", "x_um", "length_um", "side", "score"):
        np.testing.assert_allclose(back.loc[common, c], orig.loc[common, c], err_msg=c)
    assert not (folder / "edits.json").exists()  # the opened folder keeps its own state
    scores = [compare(tmp_path / where, folder) for where in ("saved", "project")]
    for s in scores:
        s.pop("inputs")
    assert scores[0] == scores[1]


@pytest.mark.napari
def test_points_changed_with_napari_tools_unwatched_become_edits(make_napari_viewer,
                                                                 registered, tmp_path,
                                                                 open_folder, tiny_voxel):
    from spinetrack.project import Project

    folder, reg = registered
    viewer = make_napari_viewer()
    open_folder(viewer, folder)  # no spinetrack widget watches the layer
    layer = viewer.layers["spines"]
    f = layer.features
    gone = int(f.index[(f["spine_id"] == 5) & (f["session"] == 1)][0])
    moved = int(f.index[(f["spine_id"] == 4) & (f["session"] == 2)][0])
    to = layer.data[moved] + [0, 0, 0.3, 0.2]
    data = layer.data.copy()
    data[moved] = to
    layer.data = data
    layer.selected_data = {gone}
    layer.remove_selected()
    data, meta, _ = layer.as_layer_data_tuple()
    write_spines(str(tmp_path / "saved"), data, meta)
    again = Project.open(tmp_path / "saved")
    assert [e.kind for e in again.edits] == ["delete", "move"]
    sp = again.results.spines.set_index(["spine_id", "session"])
    assert (5, 1) not in sp.index
    own = reg.from_reference(2, np.atleast_2d(to[1:]))[0]
    np.testing.assert_allclose(sp.loc[(4, 2), ["z_um", "y_um", "x_um"]], own, atol=1e-6)
    np.testing.assert_allclose(sp.loc[(4, 2), ["z", "y", "x"]], own / tiny_voxel, atol=1e-5)


def test_writer_without_project_inverts_the_registration_and_keeps_columns(registered,
                                                                          tmp_path):
    from spinetrack.project import Project
    from spinetrack_napari._convert import spines_layer

    folder, reg = registered
    res = read_results(folder)
    data, kw, _ = spines_layer(res)  # a run kept in memory: no folder, no viewer
    i = int(np.flatnonzero((kw["features"]["spine_id"] == 4)
                           & (kw["features"]["session"] == 1))[0])
    data = data.copy()
    data[i, 2] += 0.4
    with pytest.raises(InputError, match="already holds spines.csv"):
        write_spines(str(folder), data, kw)
    write_spines(str(tmp_path / "plain"), data, kw)
    back = pd.read_csv(tmp_path / "plain" / "spines.csv").set_index(["spine_id", "session"])
    orig = res.spines.set_index(["spine_id", "session"])
    assert list(back.columns) == list(orig.columns)
    keep = orig.index.drop((4, 1))
    pd.testing.assert_frame_equal(back.loc[keep], orig.loc[keep], check_dtype=False)
    own = reg.from_reference(1, np.atleast_2d(data[i, 1:]))[0]
    np.testing.assert_allclose(back.loc[(4, 1), ["z_um", "y_um", "x_um"]], own, atol=1e-6)
    assert back.loc[(4, 1), "source"] == "manual" and np.isnan(back.loc[(4, 1), "score"])
    assert not Project.is_project(tmp_path / "plain" / "auto")


def test_session_files_with_a_voxel_size_each_get_read_series_checks(tmp_path):
    """Sessions re-read with their recorded, differing voxel sizes are checked as any series."""
    from spinetrack.io import write_session
    from spinetrack_napari._widgets.run import _read_files

    files = []
    for k, shape in enumerate([(4, 30, 30), (4, 30, 30), (1, 30, 30)]):
        files.append(str(tmp_path / f"day{k}.tif"))
        write_session(files[-1], np.random.default_rng(k).integers(0, 255, shape, np.uint8),
                      (1.0, 0.2, 0.2))
    voxels = [[1.0, 0.2, 0.2], [1.0, 0.25, 0.25], [2.0, 0.2, 0.2]]
    series = _read_files(files[:2], voxels[:2], ["a", "b"], [0, 3])
    assert [tuple(s.voxel_size_um) for s in series.sessions] == [(1.0, 0.2, 0.2),
                                                                  (1.0, 0.25, 0.25)]
    assert series.names == ["a", "b"] and [s.day for s in series.sessions] == [0, 3]
    with pytest.raises(InputError, match="must not decrease"):
        _read_files(files[:2], voxels[:2], None, [3, 0])
    with pytest.raises(InputError, match="single plane"):
        _read_files(files, voxels, None, None)
