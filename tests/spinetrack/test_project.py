"""Projects: autosave after every edit, reopen identical, undo, unsaved state."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from spinetrack.edits import Edit, EditError, load_edits
from spinetrack.errors import InputError
from spinetrack.project import FolderInUse, Project
from spinetrack.results import read_results, write_results

_spec = importlib.util.spec_from_file_location(
    "_edits_data", Path(__file__).with_name("test_edits.py"))
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)


@pytest.fixture
def folder(tmp_path):
    write_results(_data.tiny_results(), tmp_path / "run", parquet=False)
    return tmp_path / "run"


def assert_same(a, b):
    for name in ("spines", "fates", "branches"):
        pd.testing.assert_frame_equal(getattr(a, name).reset_index(drop=True),
                                      getattr(b, name).reset_index(drop=True),
                                      check_dtype=False)


def test_plain_results_folder_opens_as_project_without_edits(folder):
    p = Project.open(folder)
    assert p.edits == [] and not p.dirty
    assert_same(p.results, read_results(folder))
    assert not (folder / "auto").exists()


def test_edit_autosaves_auto_log_and_corrected_tables(folder):
    p = Project.open(folder)
    auto_spines = len(p.results.spines)
    p.apply(Edit.delete(p.spines, 0, 1))
    assert not p.dirty
    assert len(load_edits(folder)) == 1
    assert len(read_results(folder / "auto").spines) == auto_spines
    assert len(read_results(folder).spines) == auto_spines - 1


def test_saving_edits_removes_the_scores_of_the_earlier_tables(folder):
    (folder / "compare.json").write_text("{}")
    p = Project.open(folder)
    p.apply(Edit.delete(p.spines, 0, 1))
    assert not (folder / "compare.json").exists()


def test_reopened_project_is_identical(folder):
    p = Project.open(folder)
    p.apply(Edit.add(1, (3.0, 3.0, 8.0)))
    p.apply(Edit.join(p.spines, (2, 0), (3, 1)))
    p.apply(Edit.set_fate(p.spines, 6, "restored"))
    p.save_view({"session": 1, "z_um": 3.0})
    q = Project.open(folder)
    assert q.edits == p.edits
    assert q.view == {"session": 1, "z_um": 3.0}
    assert_same(q.results, p.results)
    assert_same(read_results(folder), p.results)


def test_undo_returns_to_the_previous_tables(folder):
    p = Project.open(folder)
    before = p.results
    p.apply(Edit.split(p.spines, 0, 1))
    assert p.undo().kind == "split"
    assert p.edits == [] and p.undo() is None
    assert_same(p.results, before)
    assert load_edits(folder) == []
    assert_same(read_results(folder), before)


def test_a_refused_edit_changes_nothing(folder):
    p = Project.open(folder)
    before = p.results
    with pytest.raises(EditError):
        p.apply(Edit.join(p.spines, (0, 0), (1, 1)))
    assert p.edits == [] and p.results is before


def test_project_without_folder_is_dirty_until_saved(tmp_path):
    p = Project(_data.tiny_results())
    p.apply(Edit.delete(p.spines, 1, 0))
    assert p.dirty
    with pytest.raises(InputError, match="no folder"):
        p.save()
    p.save(tmp_path / "saved")
    assert not p.dirty
    assert_same(Project.open(tmp_path / "saved").results, p.results)


def test_save_as_refuses_a_folder_holding_another_project(folder, tmp_path):
    other = Project.open(folder)
    other.apply(Edit.delete(other.spines, 5, 1))
    other.apply(Edit.delete(other.spines, 6, 2))
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    write_results(_data.tiny_results(), tmp_path / "mine", parquet=False)
    mine = Project.open(tmp_path / "mine")
    mine.apply(Edit.delete(mine.spines, 1, 0))
    with pytest.raises(FolderInUse, match="already holds edits.json and spines.csv and auto/"):
        mine.save(folder)
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert mine.folder == tmp_path / "mine"
    mine.save(folder, overwrite=True)  # the person confirmed
    assert load_edits(folder) == mine.edits
    assert_same(Project.open(folder).results, mine.results)


def test_save_as_refuses_a_results_folder_and_allows_its_own(folder, tmp_path):
    p = Project(_data.tiny_results())
    with pytest.raises(FolderInUse, match="already holds spines.csv"):
        p.save(folder)
    q = Project.open(folder)
    q.apply(Edit.delete(q.spines, 1, 0))
    q.save(Path(str(folder) + "/."))  # its own folder, spelled differently
    assert len(load_edits(folder)) == 1
    p.save(tmp_path / "new")  # a new folder is fine
    assert Project.is_project(tmp_path / "new")


def test_overwriting_a_project_without_edits_leaves_no_stale_auto(folder, tmp_path):
    other = Project.open(folder)
    other.apply(Edit.delete(other.spines, 5, 1))
    p = Project(_data.tiny_results(jitter_um=0.1, seed=4))
    p.save(folder, overwrite=True)
    assert load_edits(folder) == []
    assert_same(Project.open(folder).results, p.results)


def test_rerun_keeps_edits_on_top_of_fresh_auto(folder):
    p = Project.open(folder)
    p.apply(Edit.delete(p.spines, 5, 1))
    # a re-run writes fresh automatic results to auto/ (pipeline.run_and_write)
    write_results(_data.tiny_results(jitter_um=0.1, id_offset=50, seed=3), folder / "auto",
                  parquet=False)
    q = Project.open(folder)
    assert q.skipped == []
    assert q.results.summary["fate_counts"] == p.results.summary["fate_counts"]


def test_open_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(InputError, match="not a results folder"):
        Project.open(tmp_path)
    assert not Project.is_project(tmp_path)


def test_statistics_computed_elsewhere_are_taken_only_if_current(folder):
    p = Project.open(folder)
    p.apply(Edit.delete(p.spines, 1, 0), statistics=False)
    assert p.stats_pending and p.dirty
    assert 1 not in set(p.results.fates["spine_id"]) or \
        p.results.fates.set_index("spine_id").loc[1, "present"] == "010"
    assert not (folder / "edits.json").exists()  # no autosave before the statistics
    snap = p.snapshot()
    full = Project.compute(snap)
    p.apply(Edit.set_fate(p.spines, 5, "restored"), statistics=False)
    assert p.finish(snap, full) is False  # an edit came meanwhile: stale
    snap = p.snapshot()
    assert p.finish(snap, Project.compute(snap)) is True
    assert not p.stats_pending and not p.dirty
    assert_same(read_results(folder), p.results)
    assert_same(Project.open(folder).results, p.results)


def test_save_finishes_pending_statistics(folder):
    p = Project.open(folder, autosave=False)
    p.apply(Edit.delete(p.spines, 1, 0), statistics=False)
    p.save()
    assert not p.stats_pending
    assert read_results(folder).branches.set_index("branch_id").loc[0, "n_lost"] == 1


def test_correction_model_never_imports_qt_or_napari():
    import subprocess
    import sys

    code = ("import sys, spinetrack.edits, spinetrack.project; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'PyQt6', 'PyQt5', 'PySide6', 'qtpy', 'magicgui')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_edit_log_without_auto_results_is_a_clear_error(folder):
    p = Project.open(folder)
    p.apply(Edit.delete(p.spines, 1, 0))
    import shutil

    shutil.rmtree(folder / "auto")
    with pytest.raises(InputError, match="auto.*cannot be replayed"):
        Project.open(folder)


def test_saving_edits_keeps_the_record_of_the_inputs_and_batch(folder, tmp_path):
    import json

    meta = json.loads((folder / "params.json").read_text())
    record = {"inputs": {"files": ["/data/s0.tif", "/data/s1.tif"], "days": [0.0, 4.0]},
              "batch": {"animal": "A1", "inputs": {"files": [{"file": "/data/s0.tif"}]}}}
    (folder / "params.json").write_text(json.dumps({**meta, **record}))
    p = Project.open(folder)
    p.apply(Edit.delete(p.spines, 0, 1))
    for where in (folder, folder / "auto"):
        saved = json.loads((where / "params.json").read_text())
        assert {k: saved.get(k) for k in record} == record, where
        assert saved["params"] == meta["params"]
    copy = p.save_copy(tmp_path / "copy")
    assert json.loads((copy / "params.json").read_text())["batch"] == record["batch"]
    reopened = Project.open(folder)
    reopened.apply(Edit.add(1, (3.0, 3.0, 8.0)))
    assert json.loads((folder / "params.json").read_text())["inputs"] == record["inputs"]
