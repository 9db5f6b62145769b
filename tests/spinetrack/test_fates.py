"""Fates and restorations on hand-made tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from spinetrack.errors import InputError
from spinetrack.fates import classify_fates, identity_rule_violations, presence_strings

def table(rows):
    """rows: (spine_id, sessions, branch_id, arc_um)"""
    out = [(sid, s, b, a) for sid, sessions, b, a in rows for s in sessions]
    return pd.DataFrame(out, columns=["spine_id", "session", "branch_id", "arc_um"])


def fate_of(fates, sid):
    row = fates.set_index("spine_id").loc[sid]
    rf = row["restored_from"]
    return row["fate"], (None if pd.isna(rf) else int(rf))


def test_each_basic_fate():
    f = classify_fates(table([
        (1, [0, 1, 2, 3], 0, 10.0),
        (2, [0, 1], 0, 20.0),
        (3, [2, 3], 0, 40.0),
        (4, [1, 2], 0, 60.0),
        (5, [0], 1, 5.0),
    ]), n_sessions=4)
    assert list(f["present"]) == ["1111", "1100", "0011", "0110", "1000"]
    assert [fate_of(f, i)[0] for i in range(1, 6)] == [
        "stable", "lost", "formed", "transient", "lost"]
    assert f["restored_from"].isna().all()


def test_restored_within_radius_on_same_branch_only():
    f = classify_fates(table([
        (1, [0], 0, 10.0),       # lost after session 0
        (2, [1, 2], 0, 11.5),    # new 1.5 µm away: restored from 1
        (3, [0], 0, 30.0),
        (4, [1, 2], 0, 32.5),    # 2.5 µm away: formed, not restored
        (5, [0], 0, 50.0),
        (6, [2], 1, 50.0),       # other branch: formed
    ]), n_sessions=3)
    assert fate_of(f, 2) == ("restored", 1)
    assert fate_of(f, 4) == ("formed", None)
    assert fate_of(f, 6) == ("formed", None)


def test_radius_is_inclusive_and_a_parameter():
    t = table([(1, [0], 0, 0.0), (2, [1], 0, 2.0)])
    assert fate_of(classify_fates(t, 2), 2) == ("restored", 1)
    assert fate_of(classify_fates(t, 2, restore_radius_um=1.9), 2) == ("formed", None)


def test_site_must_be_lost_before_the_new_spine_appears():
    f = classify_fates(table([
        (1, [0, 1], 0, 10.0),   # still present in session 1
        (2, [1, 2], 0, 10.5),   # appears in session 1: neighbour, not a restoration
    ]), n_sessions=3)
    assert fate_of(f, 2) == ("formed", None)


def test_transient_can_be_restored_and_restored_spine_can_be_lost_again():
    f = classify_fates(table([
        (1, [0], 0, 10.0),
        (2, [2], 0, 10.4),       # transient-like, restored from 1
        (3, [4], 0, 10.5),       # nearer site 2 (0.1) than site 1 (0.5): restored from 2
    ]), n_sessions=5)
    assert fate_of(f, 2) == ("restored", 1)
    assert fate_of(f, 3) == ("restored", 2)


def test_each_lost_spine_claimed_once_nearest_first():
    f = classify_fates(table([
        (1, [0], 0, 10.0),
        (2, [1, 2], 0, 11.0),    # 1.0 from site 1
        (3, [1, 2], 0, 10.3),    # 0.3 from site 1: wins it
    ]), n_sessions=3)
    assert fate_of(f, 3) == ("restored", 1)
    assert fate_of(f, 2) == ("formed", None)


def test_nearest_pair_first_across_two_sites():
    # A is 0.5 from site X and 0.2 from site Y; B is 0.6 from Y and 1.3 from X.
    # Nearest first: A takes Y (0.2); B's nearest site is taken, so B takes X (1.3).
    f = classify_fates(table([
        (10, [0], 0, 0.0),       # site X
        (11, [0], 0, 0.7),       # site Y
        (20, [1], 0, 0.5),       # A
        (21, [1], 0, 1.3),       # B
    ]), n_sessions=2)
    assert fate_of(f, 20) == ("restored", 11)
    assert fate_of(f, 21) == ("restored", 10)
    f = classify_fates(table([(10, [0], 0, 0.0), (11, [0], 0, 0.7), (20, [1], 0, 0.5),
                              (21, [1], 0, 1.3)]), n_sessions=2, restore_radius_um=1.0)
    assert fate_of(f, 21) == ("formed", None)


def test_tie_breaks_earlier_new_spine_then_more_recent_loss():
    # two new spines at the same distance: the earlier one claims the site
    f = classify_fates(table([
        (1, [0], 0, 10.0),
        (2, [1, 2, 3], 0, 11.0),
        (3, [2, 3], 0, 9.0),
    ]), n_sessions=4)
    assert fate_of(f, 2) == ("restored", 1)
    assert fate_of(f, 3) == ("formed", None)
    # one new spine, two sites at the same distance: the more recently lost one
    f = classify_fates(table([
        (1, [0], 0, 9.0),
        (2, [0, 1], 0, 11.0),
        (3, [2], 0, 10.0),
    ]), n_sessions=3)
    assert fate_of(f, 3) == ("restored", 2)


def test_identity_rule_enforced():
    gap = table([(1, [0, 2], 0, 1.0)])
    assert identity_rule_violations(gap) == [1]
    with pytest.raises(InputError, match="identity rule"):
        classify_fates(gap, 3)
    twice = pd.concat([table([(1, [0], 0, 1.0)])] * 2)
    with pytest.raises(InputError, match="identity rule"):
        classify_fates(twice, 1)


def test_bad_tables():
    with pytest.raises(InputError, match="lacks columns"):
        classify_fates(pd.DataFrame({"spine_id": [1]}), 2)
    with pytest.raises(InputError, match="session index"):
        classify_fates(table([(1, [3], 0, 1.0)]), 2)


def test_empty_table():
    f = classify_fates(table([]), 3)
    assert len(f) == 0 and "restored_from" in f.columns


def test_presence_strings_keep_leading_zeros():
    p = presence_strings(table([(7, [1, 2], 0, 0.0)]), 3)
    assert p.loc[7] == "011"


def test_matches_person_on_rr30a(rr30a):
    spines = pd.read_csv(rr30a / "truth_spines.csv")
    truth = pd.read_csv(rr30a / "truth_fates.csv", dtype={"present": str})
    f = classify_fates(spines, 3).merge(truth, on="spine_id", suffixes=("", "_truth"))
    assert (f["present"] == f["present_truth"]).all()
    assert (f["fate"] == f["fate_contract"]).all()
    restored = f[f["fate"] == "restored"]
    assert len(restored) == 5
    assert (restored["restored_from"].astype(int) == restored["restored_from_truth"].astype(int)).all()


def test_ten_thousand_spines_is_quick():
    import time

    rng = np.random.default_rng(0)
    n = 10_000
    first = rng.integers(0, 10, n)
    length = rng.integers(1, 11, n)
    rows = [(i, range(f, min(10, f + L)), int(rng.integers(0, 40)), float(rng.uniform(0, 100)))
            for i, (f, L) in enumerate(zip(first, length))]
    t = table(rows)
    start = time.perf_counter()
    f = classify_fates(t, 10)
    assert time.perf_counter() - start < 10  # generous; the benchmark measures it properly
    assert f["restored_from"].dropna().is_unique
