import numpy as np
import pandas as pd
import pytest

from spinetrack.errors import InputError
from spinetrack.fates import identity_rule_violations
from spinetrack.link import (along_branch_shift, correct_drift, link_refined, link_spines,
                             measure_spread, mutual_nearest, nearest_displacements, spread_of,
                             split_gaps)


def _table(rows):
    return pd.DataFrame(rows, columns=["session", "branch_id", "arc_um", "lateral_um"])


def test_split_gaps_makes_contiguous_runs():
    ids = split_gaps(np.array([5, 5, 5, 7, 7]), np.array([0, 1, 3, 0, 1]))
    assert ids.tolist() == [0, 0, 2, 1, 1]


def test_crowded_neighbours_do_not_swap(rng):
    # 30 spines 1.2 µm apart on one side; the whole stretch drifts 0.5 µm between sessions
    arcs = np.arange(30) * 1.2
    rows = [(0, 0, a, 1.5) for a in arcs]
    rows += [(1, 0, a + 0.5 + rng.normal(0, 0.05), 1.5) for a in arcs]
    out = link_spines(_table(rows), 1.0, coords=("arc_um", "lateral_um"))
    first = out[out.session == 0].spine_id.to_numpy()
    second = out[out.session == 1].spine_id.to_numpy()
    assert np.array_equal(first, second)


def test_links_stay_on_their_branch_and_side():
    rows = [(0, 0, 10.0, 1.0), (1, 1, 10.2, 1.0),    # same place, other branch
            (0, 2, 5.0, 1.0), (1, 2, 5.1, -1.0)]     # same branch, other side of the shaft
    out = link_spines(_table(rows), 1.5, coords=("arc_um", "lateral_um"))
    assert out.spine_id.nunique() == 4


def test_absent_then_back_is_a_new_spine():
    rows = [(0, 0, 3.0, 1.0), (2, 0, 3.0, 1.0), (3, 0, 3.1, 1.0)]
    out = link_spines(_table(rows), 1.0, coords=("arc_um", "lateral_um"))
    assert out.spine_id.nunique() == 2
    assert identity_rule_violations(out) == []


def _correct(out, n):
    first = out[out.session == 0].sort_values("arc_um").spine_id.to_numpy()
    second = out[out.session == 1].sort_values("arc_um").spine_id.to_numpy()
    return int(np.sum(first == second))


def test_refinement_removes_an_along_branch_drift(rng):
    # spines 2.5-4 µm apart; session 1 drifted by 1 µm along the branch, plus jitter:
    # plain linking within 1.2 µm misses the links pushed out of range, refined linking
    # measures the drift from the links it has, corrects it and finds every link
    arcs = np.cumsum(rng.uniform(2.5, 4.0, 40))
    rows = [(0, 0, a, 1.0) for a in arcs] + [(1, 0, a + 1.0 + rng.normal(0, 0.25), 1.0)
                                             for a in arcs]
    plain = link_spines(_table(rows), 1.2, coords=("arc_um", "lateral_um"))
    refined = link_refined(_table(rows), 1.2, coords=("arc_um", "lateral_um"), scale_um=20.0)
    assert plain.spine_id.nunique() > len(arcs)
    assert _correct(refined) == len(arcs)
    assert refined.spine_id.nunique() == len(arcs)


def _correct(out):
    first = out[out.session == 0].sort_values("arc_um").spine_id.to_numpy()
    second = out[out.session == 1].sort_values("arc_um").spine_id.to_numpy()
    return int(np.sum(first == second))


def test_along_branch_shift_pulls_to_zero_far_away():
    s = along_branch_shift(np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0]),
                           np.array([1.0, 500.0]), scale_um=5.0)
    assert 0.4 < s[0] < 1.0
    assert s[1] == pytest.approx(0.0)


def test_bad_input():
    with pytest.raises(InputError):
        link_spines(pd.DataFrame({"session": [0]}), 1.0, coords=("arc_um",))
    with pytest.raises(InputError):
        link_spines(_table([(0, 0, np.nan, 1.0)]), 1.0, coords=("arc_um", "lateral_um"))


def test_measure_spread_recovers_the_jitter(rng):
    n = 400
    arcs = np.arange(n) * 3.0
    jitter = np.array([0.2, 0.5])
    rows = [(0, 0, a, 1.0) for a in arcs]
    rows += [(1, 0, a + rng.normal(0, jitter[0]), 1.0 + rng.normal(0, jitter[1])) for a in arcs]
    linked = link_spines(_table(rows), 2.5, coords=("arc_um", "lateral_um"))
    spread = measure_spread(linked, ("arc_um", "lateral_um"))
    assert np.allclose(spread["scale_um"], jitter, rtol=0.15)
    assert 2.5 < spread["range"] < 6.0        # a few spreads for Gaussian jitter
    assert spread["n_links"] == n
    assert measure_spread(linked.iloc[:10], ("arc_um", "lateral_um")) is None


def test_mutual_nearest_pairs_only_unambiguous_points_on_one_branch():
    a = np.array([[0.0], [1.0], [5.0], [9.0]])
    b = np.array([[0.1], [0.4], [5.3], [9.0]])
    ia, ib = mutual_nearest(a, b, np.array([0, 0, 0, 1]), np.array([0, 0, 0, 2]), reach=1.0)
    # 0.0 <-> 0.1 and 5.0 <-> 5.3 are mutual; 1.0's nearest is 0.4, but 0.4's nearest is
    # 0.0, so 1.0 stays unpaired; the two 9.0s are on different branches
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 0), (2, 2)]
    empty = mutual_nearest(np.zeros((0, 1)), b, np.zeros(0), np.zeros(4), 1.0)
    assert len(empty[0]) == 0


def test_nearest_displacements_measure_the_jitter_like_links(rng):
    arcs = np.cumsum(rng.uniform(3.0, 5.0, 60))
    rows = [(0, 0, a, 1.0) for a in arcs] + [(1, 0, a + rng.normal(0, 0.2), 1.0) for a in arcs]
    table = _table(rows)
    d = nearest_displacements(table, ("arc_um", "lateral_um"), None, reach=1.5)
    assert d.shape == (60, 2)
    via_pairs = spread_of(d, ("arc_um", "lateral_um"))
    via_links = measure_spread(link_spines(table, 1.5, coords=("arc_um", "lateral_um")),
                               ("arc_um", "lateral_um"))
    assert via_pairs["scale_um"][0] == pytest.approx(via_links["scale_um"][0])
    assert 0.1 < via_pairs["scale_um"][0] < 0.3


def test_correct_drift_without_rounds_changes_nothing(rng):
    rows = [(0, 0, 1.0, 1.0), (1, 0, 2.0, 1.0)]
    out = correct_drift(_table(rows), 1.5, coords=("arc_um", "lateral_um"), iterations=0)
    assert out["arc_um"].tolist() == [1.0, 2.0]
