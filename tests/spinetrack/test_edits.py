"""Corrections: each edit changes the tables as a person expects, and survives a re-run."""

import numpy as np
import pandas as pd
import pytest

from spinetrack.edits import (Edit, EditError, apply_edits, load_edits, replay_edits,
                              save_edits, snap_to_branch)
from spinetrack.errors import InputError
from spinetrack.params import Params
from spinetrack.results import Results

VOXEL = (1.0, 0.2, 0.2)
# spine_id: (branch, arc_um, presence)
LAYOUT = {0: (0, 2.0, "111"), 1: (0, 5.0, "110"), 2: (0, 8.0, "100"), 3: (0, 8.5, "011"),
          4: (1, 3.0, "111"), 5: (1, 7.0, "010"), 6: (1, 11.0, "001")}
SHAFT_Y = {0: 20.0, 1: 60.0}


def tiny_results(jitter_um=0.0, id_offset=0, seed=0):
    """Three sessions, two straight branches, seven spines with every fate."""
    rng = np.random.default_rng(seed)
    vz, vy, vx = VOXEL
    lines = []
    for s in range(3):
        for b, y in SHAFT_Y.items():
            x = np.arange(5, 76, dtype=float)
            lines.append(pd.DataFrame({
                "branch_id": b, "session": s, "point": np.arange(len(x)), "z": 3.0, "y": y,
                "x": x, "z_um": 3.0 * vz, "y_um": y * vy, "x_um": x * vx,
                "arc_um": (x - 5) * vx, "radius_um": 0.4}))
    rows = []
    for sid, (b, arc, present) in LAYOUT.items():
        for s, c in enumerate(present):
            if c != "1":
                continue
            side = -6 if b == 0 else 6
            z, y, x = 3.0, SHAFT_Y[b] + side, 5 + arc / vx
            um = np.array([z * vz, y * vy, x * vx]) + rng.normal(0, jitter_um, 3) * [0, 1, 1]
            rows.append({"spine_id": sid + id_offset, "session": s, "z": um[0] / vz,
                         "y": um[1] / vy, "x": um[2] / vx, "z_um": um[0], "y_um": um[1],
                         "x_um": um[2], "branch_id": b, "arc_um": arc, "length_um": 0.8,
                         "source": "auto", "ref_z_um": um[0], "ref_y_um": um[1],
                         "ref_x_um": um[2]})
    sessions = pd.DataFrame({"session": [0, 1, 2], "name": ["d0", "d1", "d2"],
                             "file": "", "day": [0.0, 4.0, 8.0], "voxel_z_um": vz,
                             "voxel_y_um": vy, "voxel_x_um": vx, "shape_z": 6,
                             "shape_y": 80, "shape_x": 80})
    params = Params().replace(n_permutations=200)
    base = Results(spines=pd.DataFrame(rows), fates=pd.DataFrame(), branches=pd.DataFrame(),
                   summary={"n_sessions": 3, "days": [0.0, 4.0, 8.0],
                            "voxel_size_um": list(VOXEL)},
                   lines=pd.concat(lines, ignore_index=True), sessions=sessions, params=params)
    from spinetrack.edits import recompute_results

    out = recompute_results(base, base.spines)
    out.summary.pop("edits")
    return out


@pytest.fixture(scope="module")
def res():
    return tiny_results()


def fate_of(results, spine_id):
    return results.fates.set_index("spine_id").loc[spine_id, "fate"]


def test_tiny_results_have_every_fate(res):
    assert res.summary["fate_counts"] == {"stable": 2, "lost": 2, "formed": 1, "transient": 1,
                                          "restored": 1}


def test_add_snaps_to_the_nearest_branch_and_is_manual(res):
    at = (3.0, (20 - 5) * 0.2, (5 + 12.0 / 0.2) * 0.2)  # 1 µm off branch 0, arc 12 µm
    out = apply_edits(res, [Edit.add(1, at)])
    new = out.spines[out.spines["spine_id"] == res.spines["spine_id"].max() + 1]
    assert len(new) == 1
    row = new.iloc[0]
    assert row["session"] == 1 and row["branch_id"] == 0 and row["source"] == "manual"
    assert row["arc_um"] == pytest.approx(12.0)
    assert row["length_um"] == pytest.approx(1.0 - 0.4)
    assert (row["z"], row["y"], row["x"]) == pytest.approx((3.0, 15.0, 65.0))
    assert fate_of(out, row["spine_id"]) == "transient"
    b0 = out.branches.set_index("branch_id").loc[0]
    assert b0["n_transient"] == 1 and b0["n_spines_s1"] == 4


def test_delete_in_the_middle_splits_identity_by_the_rule(res):
    out = apply_edits(res, [Edit.delete(res.spines, 0, 1)])
    assert len(out.spines) == len(res.spines) - 1
    assert fate_of(out, 0) == "lost"
    new_id = out.spines.loc[(out.spines["session"] == 2) & (out.spines["branch_id"] == 0),
                            "spine_id"]
    assert fate_of(out, int(new_id[new_id != 3].iloc[0])) == "restored"
    assert out.summary["fate_counts"]["stable"] == 1


def test_move_updates_position_arc_and_source(res):
    before = res.spines[(res.spines["spine_id"] == 4) & (res.spines["session"] == 2)].iloc[0]
    to = (before["ref_z_um"], before["ref_y_um"], before["ref_x_um"] + 1.0)
    out = apply_edits(res, [Edit.move(res.spines, 4, 2, to)])
    after = out.spines[(out.spines["spine_id"] == 4) & (out.spines["session"] == 2)].iloc[0]
    assert after["x_um"] == pytest.approx(before["x_um"] + 1.0)
    assert after["x"] == pytest.approx(before["x"] + 5.0)
    assert after["arc_um"] == pytest.approx(before["arc_um"] + 1.0)
    assert after["source"] == "manual"
    untouched = out.spines[(out.spines["spine_id"] == 4) & (out.spines["session"] == 0)]
    assert untouched["source"].iloc[0] == "auto"


def test_join_makes_one_stable_spine(res):
    out = apply_edits(res, [Edit.join(res.spines, (2, 0), (3, 1))])
    assert fate_of(out, 2) == "stable"
    assert 3 not in set(out.fates["spine_id"])
    assert out.summary["fate_counts"]["restored"] == 0
    assert set(out.spines.loc[out.spines["spine_id"] == 2, "source"]) == {"manual"}


@pytest.mark.parametrize("first, second, problem", [
    ((0, 0), (1, 1), "both present"), ((2, 0), (6, 2), "gap"), ((0, 0), (0, 1), "already")])
def test_join_refuses_what_breaks_the_identity_rule(res, first, second, problem):
    with pytest.raises(EditError, match=problem):
        apply_edits(res, [Edit.join(res.spines, first, second)], strict=True)


def test_split_gives_a_new_identity_from_that_session(res):
    out = apply_edits(res, [Edit.split(res.spines, 0, 1)])
    assert fate_of(out, 0) == "lost"
    later = out.spines[(out.spines["branch_id"] == 0) & (out.spines["arc_um"] == 2.0)
                       & (out.spines["session"] >= 1)]
    assert later["spine_id"].nunique() == 1 and later["spine_id"].iloc[0] != 0
    assert fate_of(out, int(later["spine_id"].iloc[0])) == "restored"
    with pytest.raises(EditError, match="nothing to split"):
        apply_edits(res, [Edit.split(res.spines, 0, 0)], strict=True)


def test_set_fate_wins_over_classification_and_feeds_statistics(res):
    out = apply_edits(res, [Edit.set_fate(res.spines, 3, "formed")])
    row = out.fates.set_index("spine_id").loc[3]
    assert row["fate"] == "formed" and row["fate_source"] == "manual"
    assert pd.isna(row["restored_from"])
    assert out.summary["fate_counts"]["restored"] == 0
    assert out.branches.set_index("branch_id").loc[0, "n_formed"] == 1
    with pytest.raises(ValueError, match="fate"):
        Edit.set_fate(res.spines, 3, "vanished")


@pytest.mark.parametrize("sid, fate, allowed", [(1, "stable", "lost"), (0, "lost", "stable"),
                                                 (6, "transient", "formed or restored"),
                                                 (5, "formed", "transient or restored")])
def test_a_fate_that_contradicts_presence_is_refused(res, sid, fate, allowed):
    with pytest.raises(EditError, match=f"can only be {allowed}$") as err:
        apply_edits(res, [Edit.set_fate(res.spines, sid, fate)], strict=True)
    assert f"spine {sid} is present" in str(err.value)
    out = apply_edits(res, [Edit.set_fate(res.spines, sid, fate)])
    assert out.summary["edits"] == {"applied": 0, "skipped": 1}
    assert (out.fates["fate_source"] == "auto").all()


def test_a_hand_set_fate_a_later_edit_contradicts_is_dropped_with_a_warning(res):
    # spine 3 (011) restored by hand, then a person adds it in session 0 by joining spine 2
    out = apply_edits(res, [Edit.set_fate(res.spines, 3, "restored"),
                            Edit.join(res.spines, (2, 0), (3, 1))], strict=True)
    row = out.fates.set_index("spine_id").loc[2]
    assert row["present"] == "111" and row["fate"] == "stable"
    assert row["fate_source"] == "auto"
    assert any("restored set by hand for spine" in w and "can only be stable" in w
               for w in out.summary["warnings"])


def test_edits_survive_a_rerun_with_new_ids_and_shifted_positions(res):
    edits = [Edit.delete(res.spines, 5, 1), Edit.join(res.spines, (2, 0), (3, 1)),
             Edit.set_fate(res.spines, 6, "restored"), Edit.add(2, (3.0, 3.0, 4.0))]
    first = apply_edits(res, edits)
    rerun = tiny_results(jitter_um=0.2, id_offset=100, seed=7)
    second = apply_edits(rerun, edits)
    assert second.summary["edits"] == {"applied": 4, "skipped": 0}
    assert second.summary["fate_counts"] == first.summary["fate_counts"]
    assert len(second.spines) == len(first.spines)
    assert (second.spines["source"] == "manual").sum() == (first.spines["source"] == "manual").sum()


def test_an_edit_that_no_longer_applies_is_skipped_with_a_warning(res):
    gone = Edit.move(res.spines, 4, 0, (3.0, 0.0, 0.0))
    far = Edit("delete", target=gone.target.__class__(0, (3.0, 0.5, 0.5), 4))
    out = apply_edits(res, [far])
    assert out.summary["edits"] == {"applied": 0, "skipped": 1}
    assert "no spine within" in out.summary["warnings"][-1]
    assert len(out.spines) == len(res.spines)
    with pytest.raises(EditError, match="edit 1"):
        apply_edits(res, [far], strict=True)


def test_replay_without_edits_changes_nothing(res):
    spines, overrides, skipped = replay_edits(res, [])
    pd.testing.assert_frame_equal(spines, res.spines)
    assert overrides == {} and skipped == []
    assert apply_edits(res, []) is res


def test_edit_log_round_trip(tmp_path, res):
    edits = [Edit.add(0, (1.0, 2.0, 3.0)), Edit.join(res.spines, (2, 0), (3, 1)),
             Edit.set_fate(res.spines, 1, "stable")]
    save_edits(tmp_path, edits)
    assert load_edits(tmp_path) == edits
    assert load_edits(tmp_path / "nowhere") == []


@pytest.mark.parametrize("text, problem", [("{", "not a valid JSON"), ("[]", "no 'edits'"),
                                           ('{"edits": [{"kind": "zap"}]}', "malformed")])
def test_bad_edit_log_is_a_one_line_error(tmp_path, text, problem):
    (tmp_path / "edits.json").write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        load_edits(tmp_path)
    assert "edits.json" in str(err.value) and "\n" not in str(err.value)


def test_snap_to_branch_interpolates_arc(res):
    snap = snap_to_branch(res.lines, 0, (3.0, 13.0, 3.1))
    assert snap["branch_id"] == 1
    assert snap["arc_um"] == pytest.approx(3.1 - 1.0)
    assert snap["distance_um"] == pytest.approx(1.0)
    assert snap_to_branch(res.lines, 5, (0, 0, 0)) is None


def test_move_forgets_what_the_detector_measured_at_the_old_place(res):
    from dataclasses import replace

    scored = replace(res, spines=res.spines.assign(score=2.5, side=1))
    before = scored.spines[(scored.spines["spine_id"] == 4) & (scored.spines["session"] == 2)]
    to = before[["ref_z_um", "ref_y_um", "ref_x_um"]].iloc[0].to_numpy() + [0, 0, 0.5]
    out = apply_edits(scored, [Edit.move(scored.spines, 4, 2, to)])
    moved = (out.spines["spine_id"] == 4) & (out.spines["session"] == 2)
    assert out.spines.loc[moved, ["score", "side"]].isna().all().all()
    assert (out.spines.loc[~moved, "score"] == 2.5).all()
