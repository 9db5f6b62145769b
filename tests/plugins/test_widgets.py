"""The dock widgets on a real viewer: run, correct, branch table, save, reopen, close."""

import numpy as np
import pandas as pd
import pytest

from spinetrack.edits import Edit, load_edits
from spinetrack.project import Project
from spinetrack.results import read_results, write_results
from spinetrack_napari._widgets._state import state_for
from spinetrack_napari._widgets.branches import BranchTableWidget
from spinetrack_napari._widgets.edit import EditWidget
from spinetrack_napari._widgets.run import RunWidget

from spinetrack_napari._widgets.params_form import ParamsForm

pytestmark = pytest.mark.napari


@pytest.fixture(autouse=True)
def _helpers(request):
    """The conftest's helpers under their names: tiny_results, open_folder, select."""
    global tiny_results, open_folder, select
    tiny_results, open_folder, select = (request.getfixturevalue(name) for name in
                                         ("tiny_results_fn", "open_folder", "select"))


def fake_run(images_from, calls=None, cancel_at=None, widget=None):
    """A run_series that returns the tiny results (the detect stage is not under test here)."""

    def run_series(series, params, progress=None):
        res = tiny_results()
        res.sessions["file"] = [str(s.path) for s in series]
        for k in range(3):
            if progress is not None:
                progress("detect: sessions", k, 3)
            if cancel_at == k and widget is not None:
                widget.cancel()
        if calls is not None:
            calls.append(params)
        res.params = params
        return res

    return run_series


def test_plugin_widgets_dock_by_name(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("Detect & track", "Correct spines", "Branch statistics"):
        dock, widget = viewer.window.add_plugin_dock_widget("spinetrack", name)
        assert widget is not None


def test_run_widget_adds_layers_and_writes_results(make_napari_viewer, tiny_folder, tmp_path,
                                                   monkeypatch):
    import spinetrack.pipeline as pipeline

    calls = []
    monkeypatch.setattr(pipeline, "run_series", fake_run(None, calls))
    viewer = make_napari_viewer()
    viewer.open(str(tiny_folder.parent / "images"), plugin="spinetrack")
    assert [layer.name for layer in viewer.layers] == ["sessions"]
    w = RunWidget(viewer)
    w.form.inputs["search_range_um"][1].setValue(2.5)
    w.out.setText(str(tmp_path / "out"))
    w.run()
    assert w.last_error is None, w.status.text()
    assert calls[0].link.search_range_um == 2.5
    names = [layer.name for layer in viewer.layers]
    assert names == ["sessions", "branches", "identities", "spines"]
    assert viewer.layers["sessions"].data.shape == (3, 6, 80, 80)
    assert len(viewer.layers["spines"].data) == len(tiny_results().spines)
    assert (tmp_path / "out" / "spines.csv").exists()
    assert w.progress.value() == w.progress.maximum()
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()


@pytest.mark.parametrize("metadata", ["wrong", "none"])
def test_rerun_from_a_results_folder_keeps_the_runs_voxel_size(make_napari_viewer, tiny_folder,
                                                                monkeypatch, metadata):
    """The run was given --voxel-size; the files say otherwise (or nothing)."""
    import tifffile

    import spinetrack.pipeline as pipeline
    from spinetrack.io import write_session

    for f in sorted((tiny_folder.parent / "images").glob("*.tif")):
        img = tifffile.imread(f)
        if metadata == "wrong":
            write_session(f, img, (2.0, 0.3, 0.3))
        else:
            tifffile.imwrite(f, img)
    seen = []

    def run_series(series, params, progress=None):
        seen.append([s.voxel_size_um for s in series])
        return fake_run(None)(series, params, progress)

    monkeypatch.setattr(pipeline, "run_series", run_series)
    viewer = make_napari_viewer()
    open_folder(viewer, tiny_folder)
    w = RunWidget(viewer)
    assert w.out.text() == str(tiny_folder)
    w.run()
    assert w.last_error is None, w.status.text()
    assert seen == [[tuple(tiny_results().sessions.loc[0, ["voxel_z_um", "voxel_y_um",
                                                          "voxel_x_um"]])] * 3]
    assert read_results(tiny_folder).sessions["voxel_y_um"].tolist() == [0.2] * 3


def test_writing_the_spines_of_a_run_kept_in_memory(make_napari_viewer, tiny_folder,
                                                    tmp_path, monkeypatch):
    import spinetrack.pipeline as pipeline
    from spinetrack_napari._writer import write_spines

    monkeypatch.setattr(pipeline, "run_series", fake_run(None))
    viewer = make_napari_viewer()
    viewer.open(str(tiny_folder.parent / "images"), plugin="spinetrack")
    w = RunWidget(viewer)
    w.run()  # no output folder: kept in memory
    project = w.state.project
    assert project.folder is None
    select(viewer, 5, 1)
    edit = EditWidget(viewer)
    edit.fate.setCurrentText("restored")
    assert edit.set_fate_selected(), edit.status.text()
    data, meta, _ = viewer.layers["spines"].as_layer_data_tuple()
    write_spines(str(tmp_path / "mem"), data, meta)
    back = read_results(tmp_path / "mem")
    pd.testing.assert_frame_equal(back.fates[["spine_id", "present", "fate", "fate_source"]],
                                  project.results.fates[["spine_id", "present", "fate",
                                                         "fate_source"]], check_dtype=False)
    assert len(load_edits(tmp_path / "mem")) == 1 and project.folder is None


def test_params_form_round_trips_params():
    from spinetrack.params import Params

    p = Params().replace(head_sigma_um=0.45, n_permutations=500, restore_radius_um=3.0)
    form = ParamsForm(p)
    assert form.params() == p
    assert "µm" in form.inputs["head_sigma_um"][1].toolTip()


def test_cancelled_run_leaves_previous_results(make_napari_viewer, tiny_folder, monkeypatch):
    import spinetrack.pipeline as pipeline

    viewer = make_napari_viewer()
    open_folder(viewer, tiny_folder)
    before_points = viewer.layers["spines"].data.copy()
    before_csv = (tiny_folder / "spines.csv").read_bytes()
    w = RunWidget(viewer)
    w.out.setText(str(tiny_folder))
    monkeypatch.setattr(pipeline, "run_series", fake_run(None, cancel_at=1, widget=w))
    w.run()
    assert w.last_error == "cancelled"
    assert "cancelled" in w.status.text()
    np.testing.assert_array_equal(viewer.layers["spines"].data, before_points)
    assert (tiny_folder / "spines.csv").read_bytes() == before_csv


def test_threaded_run_keeps_viewer_responsive(make_napari_viewer, tiny_folder, tmp_path,
                                              monkeypatch, qtbot):
    import spinetrack.pipeline as pipeline

    monkeypatch.delenv("SPINETRACK_NAPARI_SYNC")
    monkeypatch.setattr(pipeline, "run_series", fake_run(None))
    viewer = make_napari_viewer()
    viewer.open(str(tiny_folder.parent / "images"), plugin="spinetrack")
    assert [layer.name for layer in viewer.layers] == ["sessions"]
    w = RunWidget(viewer)
    w.out.setText(str(tmp_path / "threaded"))
    w.run()
    assert w.job.worker is not None and not w.run_button.isEnabled()
    qtbot.waitUntil(lambda: viewer.layers.__contains__("spines") and w.run_button.isEnabled(),
                    timeout=30000)
    assert (tmp_path / "threaded" / "spines.csv").exists()


@pytest.fixture
def editing(make_napari_viewer, tiny_folder):
    viewer = make_napari_viewer()
    open_folder(viewer, tiny_folder)
    edit = EditWidget(viewer)
    table = BranchTableWidget(viewer)
    return viewer, edit, table, tiny_folder


def branch_row(table, branch_id, header):
    from spinetrack_napari._widgets.branches import COLUMNS

    col = [h for _, h, _ in COLUMNS].index(header)
    return table.table.item(table.branch_ids().index(branch_id), col).text()


def test_delete_updates_layers_tables_and_saves(editing):
    viewer, edit, table, folder = editing
    n = len(viewer.layers["spines"].data)
    assert branch_row(table, 0, "lost") == "2"
    select(viewer, 1, 0)
    assert edit.delete_selected()
    assert len(viewer.layers["spines"].data) == n - 1
    assert branch_row(table, 0, "lost") == "1"
    assert len(load_edits(folder)) == 1
    assert len(read_results(folder).spines) == n - 1
    assert edit.undo()
    assert len(viewer.layers["spines"].data) == n and branch_row(table, 0, "lost") == "2"


def test_add_at_cursor_snaps_and_shows_a_manual_spine(editing):
    viewer, edit, table, folder = editing
    viewer.dims.set_point(0, 1)
    viewer.cursor.position = (1.0, 3.0, 3.0, 13.0)
    assert edit.add_at_cursor(), edit.status.text()
    f = viewer.layers["spines"].features
    new = f[f["source"] == "manual"]
    assert len(new) == 1 and new["session"].iloc[0] == 1 and new["branch_id"].iloc[0] == 0
    assert new["fate"].iloc[0] == "transient"
    assert viewer.layers["spines"].symbol[new.index[0]].value == "diamond"


def test_move_join_split_and_set_fate(editing):
    viewer, edit, table, folder = editing
    select(viewer, 4, 2)
    viewer.cursor.position = (2.0, 3.0, 13.2, 4.0)
    assert edit.move_selected(), edit.status.text()
    select(viewer, 2, 0)
    layer = viewer.layers["spines"]
    f = layer.features
    layer.selected_data = set(f.index[((f["spine_id"] == 2) & (f["session"] == 0))
                                      | ((f["spine_id"] == 3) & (f["session"] == 1))])
    assert edit.join_selected(), edit.status.text()
    fates = read_results(folder).fates.set_index("spine_id")
    assert fates.loc[2, "present"] == "111" and 3 not in fates.index
    select(viewer, 0, 1)
    assert edit.split_selected()
    assert read_results(folder).summary["fate_counts"]["restored"] == 1
    select(viewer, 5, 1)
    edit.fate.setCurrentText("lost")
    assert not edit.set_fate_selected()  # present 010: transient or restored, never lost
    assert "can only be transient or restored" in edit.status.text()
    edit.fate.setCurrentText("restored")
    assert edit.set_fate_selected()
    fates = read_results(folder).fates.set_index("spine_id")
    assert fates.loc[5, "fate"] == "restored" and fates.loc[5, "fate_source"] == "manual"
    assert len(load_edits(folder)) == 4


def test_refused_edit_says_why_and_changes_nothing(editing):
    viewer, edit, table, folder = editing
    layer = viewer.layers["spines"]
    f = layer.features
    layer.selected_data = set(f.index[((f["spine_id"] == 0) & (f["session"] == 0))
                                      | ((f["spine_id"] == 1) & (f["session"] == 1))])
    assert not edit.join_selected()
    assert "both present in session" in edit.status.text()
    assert load_edits(folder) == []
    layer.selected_data = set()
    assert not edit.move_selected() and "select 1 spine" in edit.status.text()


def test_branch_row_selection_highlights_branch(editing):
    viewer, edit, table, folder = editing
    shapes = viewer.layers["branches"]
    table.table.selectRow(table.branch_ids().index(1))
    assert state_for(viewer).selected_branch == 1
    assert shapes.edge_width[1] > shapes.edge_width[0]
    state_for(viewer).highlight_branch(0)
    assert table.table.currentRow() == table.branch_ids().index(0)


def test_saved_project_reopens_identical(editing, make_napari_viewer):
    viewer, edit, table, folder = editing
    select(viewer, 1, 0)
    edit.delete_selected()
    viewer.cursor.position = (0.0, 3.0, 13.0, 9.0)
    edit.add_at_cursor()
    viewer.dims.set_point(1, 3.0)
    viewer.layers["identities"].visible = False
    edit.save_project()
    shown = {n: (viewer.layers[n].data, viewer.layers[n].features)
             for n in ("spines",)}
    other = make_napari_viewer()
    open_folder(other, folder)
    EditWidget(other)
    for n, (data, feats) in shown.items():
        np.testing.assert_allclose(other.layers[n].data, data)
        pd.testing.assert_frame_equal(other.layers[n].features, feats, check_dtype=False)
    np.testing.assert_allclose(other.layers["identities"].data, viewer.layers["identities"].data)
    assert other.dims.point[1] == pytest.approx(3.0)  # the view comes back by itself
    assert not other.layers["identities"].visible and other.layers["spines"].visible


def test_save_as_onto_another_project_asks_and_keeps_it_unless_confirmed(
        editing, tmp_path, monkeypatch):
    viewer, edit, table, folder = editing
    other = tmp_path / "other"
    write_results(tiny_results(), other, parquet=False)
    theirs = Project.open(other)
    theirs.apply(Edit.delete(theirs.spines, 5, 1))
    theirs.apply(Edit.delete(theirs.spines, 6, 2))
    select(viewer, 1, 0)
    assert edit.delete_selected()
    asked = []
    monkeypatch.setattr(edit, "confirm_overwrite",
                        lambda where, found: asked.append(found) or False)
    assert not edit.save_project(other)  # programmatic: refused, no dialog
    assert "already holds edits.json" in edit.status.text()
    assert not edit.save_as(other)  # the person says no
    assert asked == [["edits.json", "spines.csv", "auto/"]]
    assert len(load_edits(other)) == 2 and edit.state.project.folder == folder
    monkeypatch.setattr(edit, "confirm_overwrite", lambda where, found: True)
    assert edit.save_as(other)
    assert len(load_edits(other)) == 1 and edit.state.project.folder == other


def test_closing_with_unsaved_changes_asks(editing, monkeypatch):
    viewer, edit, table, folder = editing
    viewer.window.add_dock_widget(edit, name="Correct spines")
    edit.autosave.setChecked(False)
    select(viewer, 1, 0)
    edit.delete_selected()
    assert state_for(viewer).project.dirty
    window = edit.window()
    assert window is not edit
    answers = ["cancel", "save"]
    monkeypatch.setattr(EditWidget, "ask_unsaved", lambda self: answers.pop(0))
    from qtpy.QtCore import QEvent
    from qtpy.QtGui import QCloseEvent

    event = QCloseEvent()
    from qtpy.QtWidgets import QApplication

    QApplication.sendEvent(window, event)
    assert not event.isAccepted() and answers == ["save"]
    assert load_edits(folder) == []
    event = QCloseEvent()
    event.ignore()
    filt = [c for c in window.children() if type(c).__name__ == "_CloseFilter"][0]
    assert filt.eventFilter(window, event) is False and event.type() == QEvent.Type.Close
    assert not state_for(viewer).project.dirty
    assert len(load_edits(folder)) == 1


def test_napari_point_tools_make_edits(editing, qtbot):
    from napari.layers.base._base_constants import ActionType

    viewer, edit, table, folder = editing
    layer = viewer.layers["spines"]
    n = len(layer.data)
    layer.add([1.0, 3.0, 3.0, 13.0])  # napari's add mode
    assert [e.kind for e in load_edits(folder)] == ["add"]
    assert len(layer.data) == n + 1 and layer.features["source"].iloc[-1] == "manual"
    select(viewer, 1, 0)
    layer.remove_selected()  # napari's delete
    assert [e.kind for e in load_edits(folder)] == ["add", "delete"]
    assert len(layer.data) == n
    f = layer.features
    i = int(f.index[(f["spine_id"] == 4) & (f["session"] == 2)][0])
    layer.data[i, 3] += 1.0  # a drag: napari moves the data and reports CHANGED while moving
    layer.events.data(value=layer.data, action=ActionType.CHANGED, data_indices=(i,),
                      vertex_indices=((),))
    qtbot.waitUntil(lambda: len(load_edits(folder)) == 3, timeout=5000)
    assert load_edits(folder)[-1].kind == "move"
    moved = read_results(folder).spines
    row = moved[(moved["spine_id"] == 4) & (moved["session"] == 2)].iloc[0]
    assert row["source"] == "manual"


def test_statistics_update_in_the_background(editing, qtbot, monkeypatch):
    viewer, edit, table, folder = editing
    monkeypatch.delenv("SPINETRACK_NAPARI_SYNC")
    state = state_for(viewer)
    select(viewer, 1, 0)
    assert edit.delete_selected()
    # spines and fates are already updated; statistics and the save follow
    assert viewer.layers["spines"].features["spine_id"].tolist().count(1) == 1
    qtbot.waitUntil(lambda: not state.project.stats_pending, timeout=20000)
    assert branch_row(table, 0, "lost") == "1"
    assert len(load_edits(folder)) == 1 and not state.project.dirty
    assert edit.undo()
    qtbot.waitUntil(lambda: not state.project.stats_pending, timeout=20000)
    assert branch_row(table, 0, "lost") == "2" and load_edits(folder) == []


def test_opening_another_project_switches_to_it(editing, tmp_path):
    import shutil

    viewer, edit, table, folder = editing
    other = tmp_path / "second"
    shutil.copytree(folder, other)
    open_folder(viewer, other)
    state = state_for(viewer)
    assert state.project.folder == other
    layer = state.layer("spines")
    f = layer.features
    layer.selected_data = set(f.index[(f["spine_id"] == 1) & (f["session"] == 0)])
    assert edit.delete_selected()
    assert len(load_edits(other)) == 1 and load_edits(folder) == []


def test_report_of_the_corrected_tables(editing):
    viewer, edit, table, folder = editing
    select(viewer, 1, 0)
    edit.delete_selected()
    assert edit.write_report(), edit.status.text()
    assert "report written" in edit.status.text()
    assert (folder / "report.html").exists()


def test_review_steps_through_the_calls_to_check(editing, screenshot_dir):
    viewer, edit, table, folder = editing
    viewer.window.add_dock_widget(edit, area="right", name="Correct spines")
    layer = viewer.layers["spines"]
    f = layer.features
    n_calls = int((f.drop_duplicates("spine_id")["fate"] != "stable").sum())
    assert edit.review(1), edit.status.text()
    (first,) = layer.selected_data
    assert f["fate"].iloc[first] != "stable"
    assert int(round(viewer.dims.point[0])) == f["session"].iloc[first]
    assert edit.location.text().startswith(f"call 1 of {n_calls}: {f['fate'].iloc[first]}")
    assert edit.review(1) and layer.selected_data != {first}
    assert edit.review(-1) and layer.selected_data == {first}
    assert edit.review(-1) and f"call {n_calls} of {n_calls}" in edit.location.text()
    edit.review(1)
    viewer.window.screenshot(str(screenshot_dir / "review_call.png"), canvas_only=False,
                             flash=False)
    # after an edit the queue is read again from the corrected tables
    assert edit.delete_selected()
    assert edit.review(1)
    (i,) = layer.selected_data
    assert layer.features["fate"].iloc[i] != "stable"
