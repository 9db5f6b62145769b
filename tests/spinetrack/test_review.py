"""The queue of automatic calls to check."""

import pandas as pd

from spinetrack.fates import classify_fates
from spinetrack.review import QUEUE_COLUMNS, ReviewCursor, review_queue

# spine_id: (branch, arc_um, presence over three sessions)
LAYOUT = {0: (0, 2.0, "111"), 1: (0, 5.0, "110"), 2: (0, 8.0, "100"), 3: (0, 8.5, "011"),
          4: (1, 3.0, "111"), 5: (1, 7.0, "010"), 6: (1, 11.0, "001")}


def _spines():
    rows = [{"spine_id": sid, "session": s, "branch_id": b, "arc_um": arc,
             "z_um": 1.0, "y_um": 10.0 * b, "x_um": arc, "ref_z_um": 2.0,
             "ref_y_um": 10.0 * b + 0.5, "ref_x_um": arc + 0.5}
            for sid, (b, arc, present) in LAYOUT.items()
            for s, c in enumerate(present) if c == "1"]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)


def test_queue_walks_each_branch_and_points_at_the_session_to_look_at():
    spines = _spines()
    fates = classify_fates(spines, 3)
    q = review_queue(spines, fates)
    assert list(q.columns) == QUEUE_COLUMNS
    # stable spines 0 and 4 are left out; branch 0 then branch 1, along the arc
    assert q["spine_id"].tolist() == [1, 2, 3, 5, 6]
    assert q["fate"].tolist() == ["lost", "lost", "restored", "transient", "formed"]
    # a lost spine is shown in its last session, a new one in its first
    assert q["session"].tolist() == [1, 0, 1, 1, 2]
    for r in q.itertuples():
        obs = spines.iloc[r.row]
        assert (obs.spine_id, obs.session) == (r.spine_id, r.session)
        assert (r.z_um, r.y_um, r.x_um) == (obs.ref_z_um, obs.ref_y_um, obs.ref_x_um)
    assert "restored at the site of spine 2" in q["what"].iloc[2]


def test_queue_of_nothing_to_check():
    spines = _spines()
    spines = spines[spines["spine_id"].isin([0, 4])]
    assert review_queue(spines, classify_fates(spines, 3)).empty
    assert list(review_queue(spines.iloc[:0], pd.DataFrame()).columns) == QUEUE_COLUMNS


def test_queue_names_the_two_sessions_to_compare_and_the_sites_to_circle():
    spines = _spines()
    q = review_queue(spines, classify_fates(spines, 3)).set_index("spine_id")
    # lost after session 0 (spine 2) and after session 1 (spine 1): its last session and the next
    assert (q.loc[2, "before_session"], q.loc[2, "after_session"]) == (0, 1)
    assert (q.loc[1, "before_session"], q.loc[1, "after_session"]) == (1, 2)
    # new in session 2 (spine 6): the session before and its first
    assert (q.loc[6, "before_session"], q.loc[6, "after_session"]) == (1, 2)
    # a lost spine's site is circled where it was, in both sessions
    assert q.loc[1, ["before_x_um", "after_x_um"]].tolist() == [5.5, 5.5]
    # restored spine 3 (new in session 1 at the site of spine 2, last seen in session 0):
    # the lost spine in session 0 beside the new one in session 1
    assert (q.loc[3, "before_session"], q.loc[3, "after_session"]) == (0, 1)
    assert q.loc[3, "before_x_um"] == 8.5 and q.loc[3, "after_x_um"] == 9.0


def test_queue_of_a_fate_set_by_hand_stays_within_the_series():
    spines = _spines()
    fates = classify_fates(spines, 3)
    fates.loc[fates["spine_id"] == 0, "fate"] = "lost"  # present in every session
    fates.loc[fates["spine_id"] == 4, "fate"] = "formed"
    q = review_queue(spines, fates, n_sessions=3).set_index("spine_id")
    assert (q.loc[0, "before_session"], q.loc[0, "after_session"]) == (1, 2)
    assert (q.loc[4, "before_session"], q.loc[4, "after_session"]) == (0, 1)


def test_cursor_caches_the_queue_until_the_tables_change():
    spines = _spines()
    fates = classify_fates(spines, 3)
    cursor = ReviewCursor()
    q = cursor.queue(spines, fates)
    assert cursor.queue(spines, fates) is q and cursor.computed == 1
    edited = spines[~((spines["spine_id"] == 1) & (spines["session"] == 1))]
    assert cursor.queue(edited, fates) is not q and cursor.computed == 2
    cursor.invalidate()
    cursor.queue(edited, fates)
    assert cursor.computed == 3


def test_cursor_keeps_its_place_when_the_current_call_is_resolved():
    spines = _spines()
    cursor = ReviewCursor()
    q = cursor.queue(spines, classify_fates(spines, 3))
    assert [cursor.step(q, 1) for _ in range(2)] == [0, 1]  # spines 1 then 2
    assert cursor.index(q) == 1
    # spine 2 (lost) is deleted as a false detection: it is no longer a call
    rest = spines[spines["spine_id"] != 2]
    q2 = cursor.queue(rest, classify_fates(rest, 3))
    assert cursor.index(q2) is None
    i = cursor.step(q2, 1)
    assert q2["spine_id"].iloc[i] == 3  # the call after the deleted one, none skipped
    cursor.step(q2, -1)
    assert q2["spine_id"].iloc[cursor.index(q2)] == 1
    assert cursor.step(q2, -1) == len(q2) - 1  # wraps round
    assert ReviewCursor().step(q2.iloc[:0], 1) is None
