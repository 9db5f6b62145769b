"""The whole loop with the real pipeline on the synthetic sample: run, edit, re-run; screenshots."""

import pytest

from spinetrack.edits import load_edits
from spinetrack.results import read_results
from spinetrack_napari._widgets._state import state_for
from spinetrack_napari._widgets.branches import BranchTableWidget
from spinetrack_napari._widgets.edit import EditWidget
from spinetrack_napari._widgets.run import RunWidget

pytestmark = [pytest.mark.napari, pytest.mark.slow]


def shot(viewer, folder, name):
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    viewer.window.screenshot(str(folder / name), canvas_only=False, flash=False)


def test_run_edit_rerun_on_the_sample(make_napari_viewer, tmp_path, screenshot_dir):
    pytest.importorskip("spinetrack.synth")
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample("spinetrack", "synthetic")
    assert [layer.name for layer in viewer.layers] == ["synthetic sessions", "true spines"]
    assert viewer.layers["synthetic sessions"].data.shape[:2] == (3, 24)
    assert len(viewer.layers["true spines"].data) > 0
    viewer.layers["true spines"].visible = False
    run = RunWidget(viewer)
    edit = EditWidget(viewer)
    table = BranchTableWidget(viewer)
    viewer.window.add_dock_widget(run, name="Detect & track", area="right")
    viewer.window.add_dock_widget(edit, name="Correct spines", area="right")
    viewer.window.add_dock_widget(table, name="Branch statistics", area="bottom")
    run.form.inputs["n_permutations"][1].setValue(200)
    out = tmp_path / "project"
    run.out.setText(str(out))
    run.run()
    assert run.last_error is None, run.status.text()
    spines = viewer.layers["spines"]
    assert len(spines.data) == len(read_results(out).spines) > 0
    assert table.table.rowCount() == len(read_results(out).branches)
    first = spines.features.iloc[0]
    viewer.dims.set_point(0, int(first["session"]))
    viewer.dims.set_point(1, float(spines.data[0, 1]))
    viewer.reset_view()
    shot(viewer, screenshot_dir, "after_detection.png")

    spines.selected_data = {0}
    assert edit.delete_selected(), edit.status.text()
    n_after_edit = len(spines.data)
    shot(viewer, screenshot_dir, "after_edit.png")
    table.table.selectRow(0)
    shot(viewer, screenshot_dir, "branch_table.png")

    run.run()  # re-running detection keeps the person's edit
    assert run.last_error is None, run.status.text()
    assert len(load_edits(out)) == 1 and (out / "auto" / "spines.csv").exists()
    assert len(viewer.layers["spines"].data) == n_after_edit
    assert state_for(viewer).project.results.summary["edits"] == {"applied": 1, "skipped": 0}
