import numpy as np
import pandas as pd
import pytest

from spinetrack.branches import match_branches
from spinetrack.errors import InputError
from spinetrack.register import Registration, rotation_matrix
from spinetrack.trace import tracing_from_lines

VOX = (1.0, 0.2, 0.2)


def _tracing(branches_um):
    rows = [pd.DataFrame({"branch_id": b, "z": p[:, 0] / VOX[0], "y": p[:, 1] / VOX[1],
                          "x": p[:, 2] / VOX[2]}) for b, p in branches_um.items()]
    return tracing_from_lines(pd.concat(rows, ignore_index=True), VOX, (20, 300, 300))


def _line(start, end, n=200):
    return np.linspace(start, end, n)


def _moved(reg, k, branches):
    """The same physical lines as session k sees them."""
    return {b: reg.from_reference(k, p) for b, p in branches.items()}


@pytest.fixture
def scene():
    a = _line([5, 10, 10], [5, 10, 50])           # along x, 40 µm
    b = _line([8, 20, 10], [8, 50, 40])           # diagonal
    c = _line([6, 55, 5], [6, 55, 30])            # only traced from session 1 on
    reg = Registration([np.eye(3), rotation_matrix((3, 0, 0))],
                       [np.zeros(3), np.array([0.5, 2.0, -1.5])], [np.zeros((0, 3))] * 2,
                       [np.zeros((0, 3))] * 2, [np.zeros(0)] * 2, 0.0, (20, 300, 300), VOX)
    t0 = _tracing({0: a, 1: b})
    # session 1: ids swapped, branch a traced 8 µm further, plus branch c
    longer_a = _line([5, 10, 10], [5, 10, 58], 240)
    t1 = _tracing(_moved(reg, 1, {0: b, 1: longer_a, 2: c}))
    return reg, t0, t1


def test_branch_ids_follow_the_physical_branch(scene):
    reg, t0, t1 = scene
    bm = match_branches([t0, t1], reg)
    assert bm.session_branches[0] == {0: [0], 1: [1]}
    assert bm.session_branches[1][0] == [1]
    assert bm.session_branches[1][1] == [0]
    assert bm.session_branches[1][2] == [2]           # new branch, next free id
    assert sorted(bm.branch_table["branch_id"]) == [0, 1, 2]


def test_shared_arc_frame_and_extension(scene):
    reg, t0, t1 = scene
    bm = match_branches([t0, t1], reg, smooth_um=0.0)
    # a point 12 µm along branch a (from its session-0 start) has arc 12 in both sessions
    p_ref = np.array([[5.0, 10.0, 22.0]])
    for k in (0, 1):
        own = reg.from_reference(k, p_ref)
        proj = bm.project(reg.to_reference(k, own))
        assert proj.loc[0, "branch_id"] == 0
        assert proj.loc[0, "arc_um"] == pytest.approx(12.0, abs=0.15)
    # the part traced only in session 1 continues the arc past the session-0 end
    beyond = bm.project(np.array([[5.0, 10.0, 55.0]]))
    assert beyond.loc[0, "branch_id"] == 0
    assert beyond.loc[0, "arc_um"] == pytest.approx(45.0, abs=0.3)
    table = bm.branch_table.set_index("branch_id")
    assert table.loc[0, "arc_end_um"] == pytest.approx(40.0, abs=0.3)   # seen in both sessions
    lines = bm.lines
    assert set(lines["session"]) == {0, 1}
    moved_a = (lines.session == 1) & (lines.session_branch_id == 1)
    assert (lines.loc[moved_a, "branch_id"] == 0).all()


def test_side_and_offset():
    t0 = _tracing({0: _line([5, 10, 10], [5, 10, 50])})
    bm = match_branches([t0])
    proj = bm.project(np.array([[5.0, 12.0, 20.0], [5.0, 8.0, 20.0], [6.0, 10.0, 20.0]]))
    assert proj.loc[0, "lateral_um"] == pytest.approx(-proj.loc[1, "lateral_um"])
    assert abs(proj.loc[0, "lateral_um"]) == pytest.approx(2.0, abs=1e-6)
    assert proj.loc[2, "depth_um"] == pytest.approx(1.0)
    assert proj.loc[2, "lateral_um"] == pytest.approx(0.0, abs=1e-6)


def test_own_branch_is_preferred_near_a_crossing_but_not_far_away():
    t0 = _tracing({0: _line([5, 10, 10], [5, 10, 50]), 1: _line([5, 13, 10], [5, 13, 50]),
                   2: _line([5, 40, 10], [5, 40, 50])})
    bm = match_branches([t0])
    point = np.array([[5.0, 11.0, 20.0]])  # 1 µm from branch 0, 2 from 1, 29 from 2
    assert bm.project(point, [[1]]).loc[0, "branch_id"] == 1  # a crossing: stays on its own
    assert bm.project(point, [[2]]).loc[0, "branch_id"] == 0  # a pairing error: the nearest


def test_no_tracings():
    with pytest.raises(InputError):
        match_branches([])
