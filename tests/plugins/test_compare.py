"""The side-by-side comparison of the two sessions of a call, on a real viewer."""

import numpy as np
import pytest

from spinetrack.edits import load_edits
from spinetrack_napari._widgets._state import state_for, viewer_camera
from spinetrack_napari._widgets.compare import _grid
from spinetrack_napari._widgets.edit import EditWidget

pytestmark = pytest.mark.napari


def open_folder(viewer, folder):
    viewer.open(str(folder), plugin="spinetrack")


def panels(viewer):
    """Layer names per grid viewbox, left to right."""
    grid = _grid(viewer)
    return [[viewer.layers[i].name for i in idx] for _, idx in grid.iter_viewboxes(viewer.layers)]


def _comparing(make_napari_viewer, folder, show=False):
    viewer = make_napari_viewer(show=show)
    viewer.window.resize(1600, 900)
    open_folder(viewer, folder)
    edit = EditWidget(viewer)
    viewer.window.add_dock_widget(edit, area="right", name="Correct spines")
    return viewer, edit, folder


@pytest.fixture
def comparing(make_napari_viewer, tiny_folder):
    return _comparing(make_napari_viewer, tiny_folder)


def current_call(edit):
    q = edit._queue()
    return q.iloc[edit.cursor.index(q)]


def test_compare_shows_both_sessions_centred_on_the_call(comparing):
    viewer, edit, folder = comparing
    before = {layer.name: layer.visible for layer in viewer.layers}
    viewer.layers["identities"].visible = False
    before["identities"] = False
    active = viewer.layers.selection.active
    margins = (viewer.dims.margin_left, viewer.dims.margin_right)
    edit.compare.setChecked(True)
    call = current_call(edit)
    a, b = int(call["before_session"]), int(call["after_session"])
    assert b == a + 1 or call["fate"] == "restored"
    grid = _grid(viewer)
    assert grid.enabled and grid.actual_shape(viewer.layers) == (1, 2)
    assert panels(viewer) == [["before: session", "before: spines", "before: call"],
                              ["after: session", "after: spines", "after: call"]]
    # each panel shows its session's registered image and spines, whatever the slider says
    sessions = viewer.layers["sessions"]
    for side, k in (("before", a), ("after", b)):
        np.testing.assert_array_equal(np.asarray(viewer.layers[f"{side}: session"].data),
                                      np.asarray(sessions.data[k]))
        f = viewer.layers[f"{side}: spines"].features
        assert len(f) and set(f["session"]) == {k}
        ring = viewer.layers[f"{side}: call"]
        assert f"session {k}" in ring.features["label"].iloc[0]
    # one camera and one plane for both: centred on the call, at its plane
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:],
                               [call["y_um"], call["x_um"]], atol=1e-6)
    assert viewer.dims.point[1] == pytest.approx(call["z_um"], abs=0.5)
    np.testing.assert_allclose(viewer.layers["after: call"].data[0],
                               [call["after_y_um"], call["after_x_um"]])
    # the call is selected in the panel of its session, the other layers are hidden
    sel = edit._selected()
    assert sel == [(int(call["spine_id"]), int(call["session"]))]
    assert not any(viewer.layers[n].visible for n in before)
    assert "comparing session" in edit.location.text()
    assert viewer.dims.margin_left[1] == viewer.dims.margin_right[1] == 1.5

    extra = viewer.add_points([[1.0, 2.0, 3.0]], name="mine")  # added while comparing
    assert not extra.visible and len(panels(viewer)) == 2
    before["mine"] = True
    edit.compare.setChecked(False)  # off: the layers as they were
    assert {layer.name: layer.visible for layer in viewer.layers} == before
    assert not grid.enabled and viewer.layers.selection.active is active
    assert (viewer.dims.margin_left, viewer.dims.margin_right) == margins


def test_next_keeps_the_comparison_and_edits_invalidate_the_queue(comparing):
    viewer, edit, folder = comparing
    edit.compare.setChecked(True)
    first = current_call(edit)
    assert edit.cursor.computed == 1
    assert edit.review(1)
    call = current_call(edit)
    assert (call["spine_id"], call["session"]) != (first["spine_id"], first["session"])
    assert _grid(viewer).enabled and len(panels(viewer)) == 2
    assert viewer.layers["after: call"].data[0].tolist() == [call["after_y_um"],
                                                             call["after_x_um"]]
    assert set(viewer.layers["before: spines"].features["session"]) == {call["before_session"]}
    assert edit.review(-1) and edit.review(1)
    assert edit.cursor.computed == 1  # stepping reads the cached queue
    n_calls = len(edit._queue())
    assert edit.location.text().startswith(f"call 2 of {n_calls}: {call['fate']}, branch "
                                           f"{int(call['branch_id'])}, arc ")

    # delete the call (selected in its panel): the queue is recomputed, the panels redrawn
    side = "before" if call["session"] == call["before_session"] else "after"
    n_panel = len(viewer.layers[f"{side}: spines"].data)
    assert edit.delete_selected(), edit.status.text()
    assert [e.kind for e in load_edits(folder)] == ["delete"]
    assert len(edit._queue()) == n_calls - 1 and edit.cursor.computed == 2
    assert "call resolved" in edit.location.text()
    assert len(viewer.layers[f"{side}: spines"].data) == n_panel - 1
    assert edit.review(1)  # the call after the deleted one: none skipped
    assert edit.location.text().startswith(f"call 2 of {n_calls - 1}")
    assert edit.undo()
    assert len(edit._queue()) == n_calls and edit.cursor.computed == 3
    assert _grid(viewer).enabled

    viewer.cursor.viewbox = (0, 1)  # adding in the right-hand panel adds in its session
    assert state_for(viewer).current_session() == int(current_call(edit)["after_session"])
    # what is saved with the project is the view without the comparison
    assert state_for(viewer).view_state()["visible"]["spines"]
    edit.compare.setChecked(False)
    assert not any(layer.name.startswith(("before:", "after:")) for layer in viewer.layers)


def test_compare_screenshot(make_napari_viewer, tiny_folder, screenshot_dir):
    from qtpy.QtWidgets import QApplication

    viewer, edit, folder = _comparing(make_napari_viewer, tiny_folder, show=True)
    edit.compare.setChecked(True)
    # a restored call: the lost spine's session beside the new spine's
    q = edit._queue()
    for _ in range(len(q)):
        if current_call(edit)["fate"] == "restored":
            break
        edit.review(1)
    call = current_call(edit)
    assert call["fate"] == "restored" and call["before_session"] < call["after_session"]
    for _ in range(5):
        QApplication.processEvents()
    viewer.window.screenshot(str(screenshot_dir / "review_compare.png"), canvas_only=False,
                             flash=False)
    assert (screenshot_dir / "review_compare.png").stat().st_size > 10_000


def test_plane_labels_and_planes_to_read_of_a_call():
    import pandas as pd

    from spinetrack_napari._widgets.compare import panel_labels, plane_um, planes_of

    call = pd.Series({"fate": "restored", "session": 2, "z_um": 16.4, "before_session": 1,
                      "after_session": 2, "before_z_um": 15.3, "after_z_um": 16.4})
    assert panel_labels(call, [0.0, 4.1, 7.0]) == ("session 1 (day 4.1): lost spine",
                                                    "session 2 (day 7): restored")
    assert panel_labels(call.replace("restored", "lost"), None) == ("session 1: last seen",
                                                                     "session 2: gone")
    # both circled sites within ±1 µm of the plane shown
    assert plane_um(call) == pytest.approx(15.85) and plane_um(call, False) == 16.4

    class Image:  # what planes_of reads of the sessions layer
        scale, translate = (1.0, 1.0, 0.12, 0.12), (0.0, 0.0, 0.0, 0.0)
        data = np.zeros((3, 40, 2, 2))

    # the z slider snaps to its grid (start 0.3, step 1): 15.85 -> 16.3 -> plane 16
    assert planes_of(call, Image, (0.3, 39.3, 1.0)) == [(1, 16), (2, 16)]
    assert planes_of(call, Image, (0.3, 39.3, 1.0), comparing=False) == [(2, 16)]
    assert planes_of(call, Image) == [(1, 16), (2, 16)]


def test_napari_point_tools_in_a_panel_edit_that_session(comparing):
    viewer, edit, folder = comparing
    edit.compare.setChecked(True)
    call = current_call(edit)
    side = "before" if call["session"] == call["before_session"] else "after"
    panel = viewer.layers[f"{side}: spines"]
    n = len(panel.data)
    panel.remove_selected()  # the call, selected in its panel, deleted with napari's tool
    assert [e.kind for e in load_edits(folder)] == ["delete"]
    assert len(viewer.layers[f"{side}: spines"].data) == n - 1
    after = viewer.layers["after: spines"]
    k = int(call["after_session"])
    after.add([3.0, 3.0, 13.0])  # napari's add mode in the right-hand panel
    edits = load_edits(folder)
    assert [e.kind for e in edits] == ["delete", "add"] and edits[-1].session == k
    f = state_for(viewer).project.results.spines
    assert ((f["session"] == k) & (f["source"] == "manual")).sum() == 1


def test_compare_without_a_project_says_so(make_napari_viewer):
    viewer = make_napari_viewer()
    edit = EditWidget(viewer)
    edit.compare.setChecked(True)
    assert not edit.compare.isChecked() and "two or more sessions" in edit.status.text()
    assert not _grid(viewer).enabled and len(viewer.layers) == 0
    assert not edit.review(1) and "open a spinetrack results folder" in edit.status.text()


def test_prefetch_warms_the_plane_cache_in_the_background_without_dask():
    import threading

    import dask
    from dask.callbacks import Callback

    from spinetrack_napari._convert import plane_source, session_stack
    from spinetrack_napari._widgets.compare import Prefetch

    from spinetrack.register import Registration

    reg = Registration.identity(3, (10, 4, 4), (1.0, 0.2, 0.2))

    class Image:  # the registered sessions, resampled lazily
        data = session_stack([np.zeros((10, 4, 4), np.uint8)] * 3, [(1.0, 0.2, 0.2)] * 3,
                             reg.to_dict())

    source = plane_source(Image.data)
    seen = []
    real = type(source).__call__

    def spy(self, k, z):
        seen.append((k, z, threading.current_thread() is threading.main_thread()))
        return real(self, k, z)

    computes = []
    with dask.config.set(scheduler="sync"), \
            Callback(start=lambda dsk: computes.append(threading.current_thread())):
        type(source).__call__ = spy
        try:
            prefetch = Prefetch()
            prefetch.request(Image, [(0, 4), (1, 4), (2, 4)])
            prefetch.wait(10)
        finally:
            type(source).__call__ = real
    assert seen == [(1, 4, False), (2, 4, False)]
    assert computes == []  # no dask compute outside napari's own
    assert (1, 4) in source._planes and (2, 4) in source._planes


def test_prefetch_skips_stacks_held_in_memory():
    from spinetrack_napari._widgets.compare import Prefetch

    class Image:
        data = np.zeros((3, 10, 2, 2))

    prefetch = Prefetch()
    prefetch.request(Image, [(1, 4)])
    assert prefetch._pending is None


def test_compare_without_session_images_shows_the_spines(comparing):
    viewer, edit, folder = comparing
    viewer.layers.remove(viewer.layers["sessions"])
    edit.compare.setChecked(True)
    assert panels(viewer) == [["before: spines", "before: call"],
                              ["after: spines", "after: call"]]
    assert edit.review(1) and len(panels(viewer)) == 2
    edit.compare.setChecked(False)
    assert [layer.name for layer in viewer.layers] == ["branches", "identities", "spines"]
