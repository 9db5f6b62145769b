"""The queue of automatic calls to check."""

import pandas as pd

from spinetrack.fates import classify_fates
from spinetrack.review import QUEUE_COLUMNS, review_queue

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
