"""The scorer: exact numbers on hand-built series, rr30a truth against itself, CLI."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from spinetrack.cli import main
from spinetrack.compare import (
    SeriesTables,
    compare,
    distance_to_lines,
    format_scores,
    load_result,
    load_truth,
    match_points,
    match_spines,
)
from spinetrack.errors import InputError
from spinetrack.fates import classify_fates

# the real data, found as the conftest's ``rr30a`` fixture finds it
_conftest = importlib.util.spec_from_file_location(
    "_st_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
_module = importlib.util.module_from_spec(_conftest)
_conftest.loader.exec_module(_module)
RR30A = _module.find_rr30a() or Path("rr30a-dev-not-found")
needs_rr30a = pytest.mark.skipif(not (RR30A / "truth_spines.csv").exists(),
                                 reason="rr30a-dev data not available")
VOXEL = (1.0, 0.12, 0.12)

# presence pattern -> number of tracks; every session holds exactly 40 spines
TRACKS = [("1111", 30), ("1100", 4), ("1110", 3), ("1000", 3), ("0111", 1), ("0110", 2),
          ("0011", 4), ("0001", 5)]
# new spines placed at the site of an earlier loss: (pattern of the new, pattern of the lost)
RESTORE = [("0011", "1100"), ("0011", "1100"), ("0001", "1000")]


def _series(seed=0):
    """A 4-session synthetic-style truth: spines, contract fates, centre lines.

    Two straight branches along x; sites 3 µm apart on alternating sides 1.5 µm off
    the line, so no two spines are within 2.4 µm laterally; three new spines sit
    0.4 µm (along the branch) from the site of an earlier loss: restorations.
    """
    rng = np.random.default_rng(seed)
    tracks = [p for p, n in TRACKS for _ in range(n)]
    restore_new = [i for i, p in enumerate(tracks) if p in {"0011", "0001"}]
    claimed: dict[int, int] = {}
    for new_p, lost_p in RESTORE:
        new = next(i for i in restore_new if tracks[i] == new_p and i not in claimed)
        lost = next(i for i, p in enumerate(tracks) if p == lost_p and i not in claimed.values())
        claimed[new] = lost
    sites = {}
    k = 0
    for i in range(len(tracks)):
        if i in claimed:
            continue
        branch, slot = k % 2, k // 2
        sites[i] = (branch, 3.0 * slot + 2.0, 1.5 if slot % 2 else -1.5)
        k += 1
    for new, lost in claimed.items():
        b, arc, side = sites[lost]
        sites[new] = (b, arc + 0.4, side)
    rows = []
    for i, pattern in enumerate(tracks):
        branch, arc, side = sites[i]
        z0 = 4.0 + 3.0 * rng.random()
        for s, ch in enumerate(pattern):
            if ch != "1":
                continue
            jitter = rng.uniform(-0.2, 0.2, size=3)
            z = z0 + jitter[0]
            y = 10.0 + 20.0 * branch + side + jitter[1]
            x = arc + jitter[2]
            rows.append({"spine_id": i, "session": s, "z_um": z, "y_um": y, "x_um": x,
                         "branch_id": branch, "arc_um": arc, "length_um": 1.2,
                         "base_z_um": z, "base_y_um": 10.0 + 20.0 * branch, "base_x_um": x})
    spines = pd.DataFrame(rows)
    for a, v in zip("zyx", VOXEL):
        spines[a] = spines[f"{a}_um"] / v
    spines["source"] = "manual"
    fates = classify_fates(spines, n_sessions=4)
    xs = np.arange(0.0, 80.0, 0.5)
    lines = pd.DataFrame([{"branch_id": b, "session": s, "point": p, "z_um": 5.5,
                           "y_um": 10.0 + 20.0 * b, "x_um": x, "arc_um": x}
                          for s in range(4) for b in range(2) for p, x in enumerate(xs)])
    return spines, fates, lines


def _truth(seed=0) -> SeriesTables:
    spines, fates, lines = _series(seed)
    return SeriesTables.from_frames(spines, fates, lines, n_sessions=4)


def _write_folder(folder: Path, spines, fates=None, lines=None, truth_json=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spines.to_csv(folder / "spines.csv", index=False)
    if fates is not None:
        fates.to_csv(folder / "fates.csv", index=False)
    if lines is not None:
        lines.to_csv(folder / "lines.csv", index=False)
    pd.DataFrame({"session": range(4), "voxel_z_um": 1.0, "voxel_y_um": 0.12,
                  "voxel_x_um": 0.12}).to_csv(folder / "sessions.csv", index=False)
    if truth_json:
        (folder / "truth.json").write_text(json.dumps({"seed": 0, "preset": "test"}))
    return folder


def _ratios(scores):
    """Every precision / recall / F1 / accuracy number in the scores."""
    out = {}
    det = scores["detection"]
    for e in det["per_session"] + [dict(det["total"], session="all")]:
        for k in ("precision", "recall", "f1"):
            out[f"detection {e['session']} {k}"] = e[k]
    if scores["links"]["scored"]:
        links = scores["links"]
        for e in links["per_transition"] + [dict(links["total"], from_session="all")]:
            for k in ("precision", "recall", "precision_all", "recall_all"):
                out[f"links {e['from_session']} {k}"] = e[k]
    if scores["fates"]["scored"]:
        out["fate accuracy"] = scores["fates"]["accuracy"]
        out["paired fraction"] = scores["fates"]["paired_fraction_of_truth"]
    if scores["restored"]["scored"]:
        for k in ("precision", "recall", "recall_detected", "restored_from_accuracy"):
            out[f"restored {k}"] = scores["restored"][k]
    return out


def _one(x, y, z=5.0, session=0, spine_id=None):
    return {"spine_id": spine_id, "session": session, "z_um": z, "y_um": y, "x_um": x}


def _table(points):
    df = pd.DataFrame(points)
    if df["spine_id"].isna().all():
        df["spine_id"] = np.arange(len(df))
    return df


# --------------------------------------------------------------------------- the test series


def test_test_series_has_the_intended_fates():
    spines, fates, _ = _series()
    assert spines.groupby("session").size().tolist() == [40, 40, 40, 40]
    assert fates["fate"].value_counts().to_dict() == {
        "stable": 30, "lost": 10, "formed": 7, "transient": 2, "restored": 3}


# --------------------------------------------------------------------------- perfect agreement


def test_synthetic_truth_against_itself_is_perfect(tmp_path):
    spines, fates, lines = _series()
    folder = _write_folder(tmp_path / "truth", spines, fates, lines, truth_json=True)
    truth = load_truth(folder)
    assert truth.format == "synthetic" and truth.n_sessions == 4 and truth.linked
    scores = compare(load_result(folder), truth)
    ratios = _ratios(scores)
    assert len(ratios) == 5 * 3 + 4 * 4 + 2 + 4  # 4 sessions + all, 3 transitions + all
    assert all(v == 1.0 for v in ratios.values()), ratios
    assert scores["detection"]["total"]["tp"] == 160
    assert scores["links"]["total"]["correct"] == 30 * 3 + 4 + 3 * 2 + 1 * 2 + 2 + 4
    assert scores["fates"]["n_paired"] == 52
    assert scores["fates"]["confusion"]["restored"]["restored"] == 3
    assert scores["restored"]["restored_from_correct"] == 3
    assert scores["detection"]["total"]["mean_distance_um"] == 0.0


@needs_rr30a
def test_rr30a_truth_against_itself_is_perfect():
    truth = load_truth(RR30A)
    assert truth.format == "rr30a" and truth.n_sessions == 3
    for near in (None, 3.0):
        scores = compare(truth, truth, near_um=near)
        ratios = _ratios(scores)
        assert len(ratios) == 4 * 3 + 3 * 4 + 2 + 4  # 3 sessions + all, 2 transitions + all
        assert all(v == 1.0 for v in ratios.values()), (near, ratios)
    full = compare(truth, truth)
    # 383 annotations, 4 marked bad; fate_contract: 5 restored, one of them bad
    assert full["detection"]["total"]["tp"] == 379
    assert full["detection"]["total"]["ignored_truth"] == 4
    assert full["restored"]["n_truth"] == 4
    assert full["fates"]["n_truth_tracks"] == 160


@needs_rr30a
def test_rr30a_present_is_read_as_text():
    truth = load_truth(RR30A)
    assert truth.fates["present"].str.len().eq(3).all()
    assert truth.fates.loc[truth.fates["spine_id"] == 156, "restored_from"].item() == 55


# --------------------------------------------------------------------------- detection


def test_dropping_ten_percent_gives_recall_point_nine():
    truth = _truth()
    spines = truth.spines
    keep = spines.groupby("session").cumcount() % 10 != 9  # 4 of the 40 in every session
    scores = compare(SeriesTables.from_frames(spines.loc[keep]), truth)
    for e in scores["detection"]["per_session"]:
        assert (e["tp"], e["fp"], e["fn"]) == (36, 0, 4)
        assert e["recall"] == pytest.approx(0.9, abs=1e-12)
        assert e["precision"] == 1.0
    assert scores["detection"]["total"]["recall"] == pytest.approx(0.9, abs=1e-12)


def test_shifting_everything_two_um_laterally_gives_f1_zero():
    truth = _truth()
    for col in ("x_um", "y_um"):
        shifted = truth.spines.assign(**{col: truth.spines[col] + 2.0})
        scores = compare(SeriesTables.from_frames(shifted, truth.fates), truth)
        assert scores["detection"]["total"]["f1"] == 0.0
        assert scores["detection"]["total"]["tp"] == 0
        assert scores["detection"]["total"]["fp"] == 160
        assert scores["links"]["total"]["precision"] is None  # no link has both ends matched
        assert scores["links"]["total"]["precision_all"] == 0.0


@pytest.mark.parametrize("dy, dx, dz, matches", [
    (0.0, 1.1, 0.0, True), (0.0, 1.3, 0.0, False),
    (0.0, 1.2, 0.0, True),                               # the tolerance itself matches
    (0.7, 0.8, 0.0, True), (0.8, 1.0, 0.0, False),       # hypot 1.063 / 1.281
    (0.0, 0.0, 2.4, True), (0.0, 0.0, -2.6, False), (0.0, 0.0, 2.5, True),
    (1.1, 0.0, 2.4, True), (1.1, 0.0, 2.6, False),
])
def test_lateral_and_axial_tolerances(dy, dx, dz, matches):
    truth = _table([_one(10.0, 10.0, z=5.0)])
    result = _table([_one(10.0 + dx, 10.0 + dy, z=5.0 + dz)])
    total = compare(result, truth)["detection"]["total"]
    assert (total["tp"], total["fp"], total["fn"]) == ((1, 0, 0) if matches else (0, 1, 1))


def test_tolerances_are_options():
    truth = _table([_one(10.0, 10.0)])
    result = _table([_one(11.5, 10.0, z=7.0)])
    assert compare(result, truth)["detection"]["total"]["tp"] == 0
    assert compare(result, truth, lateral_um=1.6, axial_um=2.5)["detection"]["total"]["tp"] == 1
    assert compare(result, truth, lateral_um=1.6, axial_um=1.9)["detection"]["total"]["tp"] == 0


def test_matching_is_one_to_one():
    truth = _table([_one(10.0, 10.0)])
    result = _table([_one(10.3, 10.0), _one(9.5, 10.0)])
    total = compare(result, truth)["detection"]["total"]
    assert (total["tp"], total["fp"], total["fn"]) == (1, 1, 0)
    # the nearer detection is the match
    pairs = match_spines(result, truth)
    assert pairs["result_index"].tolist() == [0]


def test_matching_maximises_the_number_of_pairs():
    # nearest-first greedy would pair the middle detection with T2 and leave D2 alone
    truth = _table([_one(0.0, 10.0), _one(1.1, 10.0)])
    result = _table([_one(0.7, 10.0), _one(2.0, 10.0)])
    total = compare(result, truth)["detection"]["total"]
    assert (total["tp"], total["fp"], total["fn"]) == (2, 0, 0)


def test_matching_equals_dense_hungarian_and_is_maximal(rng):
    lat, ax = 1.2, 2.5
    a = rng.uniform(0, [6, 12, 12], size=(150, 3))
    b = rng.uniform(0, [6, 12, 12], size=(140, 3))
    ri, ti = match_points(a, b, lat, ax)
    d = a[:, None, :] - b[None, :, :]
    dlat = np.hypot(d[..., 1], d[..., 2])
    ok = (dlat <= lat) & (np.abs(d[..., 0]) <= ax)
    assert ok[ri, ti].all()
    assert len(set(ri)) == len(ri) and len(set(ti)) == len(ti)
    # as many pairs as a maximum bipartite matching
    best = maximum_bipartite_matching(csr_matrix(ok.astype(np.int8)), perm_type="column")
    assert len(ri) == int((best >= 0).sum())
    # and the same total cost as one Hungarian run over the whole dense matrix
    cost = np.hypot(dlat / lat, d[..., 0] / ax)
    big = 1e3
    full = np.where(ok, cost, big)
    rows, cols = linear_sum_assignment(full)
    keep = full[rows, cols] < big
    assert keep.sum() == len(ri)
    assert cost[ri, ti].sum() == pytest.approx(full[rows[keep], cols[keep]].sum(), rel=1e-9)


def test_bad_truth_spines_are_ignored():
    truth = _table([_one(10.0, 10.0), _one(20.0, 10.0), _one(30.0, 10.0)])
    truth["is_bad"] = [0, 1, 1]
    result = _table([_one(10.0, 10.0), _one(20.2, 10.0)])  # finds one good and one bad spine
    total = compare(result, truth)["detection"]["total"]
    assert (total["tp"], total["fp"], total["fn"]) == (1, 0, 0)
    assert total["ignored_truth"] == 2 and total["ignored_result"] == 1


def test_near_line_filter_removes_far_spines():
    truth_spines, fates, lines = _series()
    far = pd.DataFrame([_one(20.0, 60.0, session=s, spine_id=900 + s) for s in range(4)])
    far_fates = pd.DataFrame({"spine_id": 900 + np.arange(4), "fate": "transient",
                              "present": ["1000", "0100", "0010", "0001"]})
    truth = SeriesTables.from_frames(pd.concat([truth_spines, far], ignore_index=True),
                                     pd.concat([fates, far_fates], ignore_index=True), lines)
    # the result misses the far truth spines and adds far false positives
    extra = pd.DataFrame([_one(40.0, 70.0, session=s, spine_id=800 + s) for s in range(4)])
    result = SeriesTables.from_frames(pd.concat([truth_spines, extra], ignore_index=True),
                                      fates)
    plain = compare(result, truth)["detection"]["total"]
    assert (plain["tp"], plain["fp"], plain["fn"]) == (160, 4, 4)
    near = compare(result, truth, near_um=5.0)
    total = near["detection"]["total"]
    assert (total["tp"], total["fp"], total["fn"]) == (160, 0, 0)
    assert total["ignored_truth"] == 4 and total["ignored_result"] == 4
    assert any("within 5 µm of the truth's traced centre lines" in n for n in near["notes"])
    assert "within 5 µm" in format_scores(near)
    assert near["fates"]["n_truth_tracks"] == 52  # the far transients are left out


def test_near_counts_a_pair_by_its_truth_spine():
    lines = pd.DataFrame({"session": 0, "branch_id": 0, "point": [0, 1], "z_um": 5.0,
                          "y_um": 10.0, "x_um": [0.0, 50.0]})
    truth = SeriesTables.from_frames(_table([_one(20.0, 12.9)]), lines=lines)
    result = _table([_one(20.0, 13.5)])  # 3.5 µm from the line, its truth spine 2.9
    total = compare(result, truth, near_um=3.0)["detection"]["total"]
    assert (total["tp"], total["fp"], total["fn"]) == (1, 0, 0)


def test_distance_to_lines_joins_consecutive_points():
    lines = pd.DataFrame({"session": 0, "branch_id": 0, "point": [0, 1], "z_um": 0.0,
                          "y_um": 0.0, "x_um": [0.0, 10.0]})
    spines = _table([_one(5.05, 3.0, z=4.0), _one(13.0, 0.0, z=0.0), _one(5.0, 0.0, z=0.0,
                                                                         session=1)])
    d = distance_to_lines(spines, lines)
    assert d[0] == pytest.approx(5.0, abs=0.01)
    assert d[1] == pytest.approx(3.0, abs=1e-9)
    assert np.isinf(d[2])


def test_near_needs_lines():
    truth = _table([_one(10.0, 10.0)])
    with pytest.raises(InputError, match="centre lines"):
        compare(truth, truth, near_um=3.0)


def test_offsets_report_the_bias():
    truth = _truth()
    moved = truth.spines.assign(x_um=truth.spines["x_um"] + 0.5, z_um=truth.spines["z_um"] - 1)
    total = compare(SeriesTables.from_frames(moved, truth.fates), truth)["detection"]["total"]
    assert total["tp"] == 160
    assert total["mean_dx_um"] == pytest.approx(0.5)
    assert total["mean_dz_um"] == pytest.approx(-1.0)
    assert total["mean_lateral_um"] == pytest.approx(0.5)
    # base -> tip runs along ±y here, so an x shift has no component along the spine
    assert total["mean_along_spine_um"] == pytest.approx(0.0, abs=1e-9)
    inward = truth.spines.assign(y_um=truth.spines["y_um"] - 0.3 * np.sign(
        truth.spines["y_um"] - truth.spines["base_y_um"]))
    total = compare(SeriesTables.from_frames(inward), truth)["detection"]["total"]
    assert total["mean_along_spine_um"] == pytest.approx(-0.3)


# --------------------------------------------------------------------------- links


def _stable_ids(spines, k=2):
    counts = spines.groupby("spine_id").size()
    return counts.index[counts == 4][:k].tolist()


def _swap(spines, a, b, session):
    out = spines.copy()
    rows = (out["session"] == session) & out["spine_id"].isin([a, b])
    out.loc[rows, "spine_id"] = out.loc[rows, "spine_id"].map({a: b, b: a})
    return out


def test_swapping_two_identities_in_the_last_session():
    truth = _truth()
    a, b = _stable_ids(truth.spines)
    swapped = _swap(truth.spines, a, b, session=3)
    scores = compare(SeriesTables.from_frames(swapped, truth.fates), truth)
    assert scores["detection"]["total"]["f1"] == 1.0
    links = scores["links"]
    n_links = links["total"]["n_truth"]  # 108
    assert links["total"]["correct"] == n_links - 2
    assert links["total"]["precision"] == pytest.approx((n_links - 2) / n_links)
    assert links["total"]["recall"] == pytest.approx((n_links - 2) / n_links)
    per = {e["from_session"]: e for e in links["per_transition"]}
    assert per[0]["precision"] == 1.0 and per[1]["precision"] == 1.0
    n23 = per[2]["n_result_matched"]
    assert per[2]["precision"] == pytest.approx((n23 - 2) / n23)
    # both tracks now span two truth tracks: no longer paired for fates
    fates = scores["fates"]
    assert fates["n_paired"] == 50 and fates["accuracy"] == 1.0
    assert fates["unpaired_result_tracks"]["spanning_several_truth_tracks"] == 2


def test_swapping_two_identities_in_a_middle_session():
    truth = _truth()
    a, b = _stable_ids(truth.spines)
    swapped = _swap(truth.spines, a, b, session=1)
    links = compare(SeriesTables.from_frames(swapped, truth.fates), truth)["links"]
    n_links = links["total"]["n_truth"]
    assert links["total"]["correct"] == n_links - 4  # into and out of session 1, both spines
    assert links["total"]["precision"] == pytest.approx((n_links - 4) / n_links)
    per = {e["from_session"]: e for e in links["per_transition"]}
    assert per[0]["correct"] == per[0]["n_truth"] - 2
    assert per[1]["correct"] == per[1]["n_truth"] - 2
    assert per[2]["precision"] == 1.0


def test_link_recall_counts_only_truth_links_with_both_ends_detected():
    truth = _truth()
    spines = truth.spines
    a, b = _stable_ids(spines)
    # lose spine a in session 2 (2 truth links lose an end) and break b's track after s1
    dropped = spines.loc[~((spines["spine_id"] == a) & (spines["session"] == 2))].copy()
    dropped.loc[(dropped["spine_id"] == b) & (dropped["session"] >= 2), "spine_id"] = 10_000
    links = compare(SeriesTables.from_frames(dropped), truth)["links"]["total"]
    n = links["n_truth"]
    assert links["n_truth_detected"] == n - 2
    assert n == 108
    assert links["correct"] == n - 2 - 1  # a's two links are undetected; b's 1->2 is missing
    assert links["recall"] == pytest.approx((n - 3) / (n - 2))
    assert links["recall_all"] == pytest.approx((n - 3) / n)
    assert links["precision"] == 1.0


def test_detection_only_result_scores_detection_only(tmp_path):
    spines, fates, lines = _series()
    truth_dir = _write_folder(tmp_path / "truth", spines, fates, lines, truth_json=True)
    detections = spines.assign(spine_id=np.arange(len(spines)))
    result_dir = _write_folder(tmp_path / "result", detections)
    result = load_result(result_dir)
    assert result.format == "result" and not result.linked and result.fates is None
    scores = compare(result, load_truth(truth_dir))
    assert scores["detection"]["total"]["f1"] == 1.0
    assert not scores["links"]["scored"] and "no links" in scores["links"]["reason"]
    assert not scores["fates"]["scored"] and not scores["restored"]["scored"]
    text = format_scores(scores)
    assert "not scored" in text


# --------------------------------------------------------------------------- fates, restored


def test_fate_confusion_and_restored_scores():
    truth = _truth()
    fates = truth.fates.copy()
    restored = fates.index[fates["fate"] == "restored"]
    formed = fates.index[fates["fate"] == "formed"]
    lost = fates.index[fates["fate"] == "lost"]
    fates.loc[restored[0], ["fate", "restored_from"]] = ["formed", pd.NA]  # a missed one
    fates.loc[formed[0], ["fate", "restored_from"]] = ["restored", fates.loc[lost[-1],
                                                                              "spine_id"]]
    right = fates.loc[restored[1], "restored_from"]
    wrong = next(int(x) for x in fates.loc[lost, "spine_id"] if x != right)
    fates.loc[restored[1], "restored_from"] = wrong  # found, but pointing at the wrong loss
    scores = compare(SeriesTables.from_frames(truth.spines, fates), truth)
    f = scores["fates"]
    assert f["n_paired"] == 52
    assert f["confusion"]["restored"]["formed"] == 1
    assert f["confusion"]["formed"]["restored"] == 1
    assert f["confusion"]["restored"]["restored"] == 2
    assert f["accuracy"] == pytest.approx(50 / 52)
    r = scores["restored"]
    assert (r["n_result"], r["n_truth"], r["correct"]) == (3, 3, 2)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert (r["restored_from_checked"], r["restored_from_correct"]) == (2, 1)


def test_a_truncated_track_is_a_fate_error():
    truth = _truth()
    (a,) = _stable_ids(truth.spines, k=1)
    spines = truth.spines.loc[~((truth.spines["spine_id"] == a) & (truth.spines["session"] == 3))]
    fates = truth.fates.copy()
    fates.loc[fates["spine_id"] == a, ["present", "fate"]] = ["1110", "lost"]
    f = compare(SeriesTables.from_frames(spines, fates), truth)["fates"]
    assert f["confusion"]["stable"]["lost"] == 1 and f["n_paired"] == 52
    assert f["accuracy"] == pytest.approx(51 / 52)


def test_a_track_broken_in_two_is_not_paired():
    truth = _truth()
    (b,) = _stable_ids(truth.spines, k=1)
    spines = truth.spines.copy()
    spines.loc[(spines["spine_id"] == b) & (spines["session"] >= 2), "spine_id"] = 10_000
    fates = pd.concat([truth.fates, pd.DataFrame({"spine_id": [10_000], "fate": ["formed"],
                                                  "present": ["0011"]})], ignore_index=True)
    fates.loc[fates["spine_id"] == b, ["present", "fate"]] = ["1100", "lost"]
    f = compare(SeriesTables.from_frames(spines, fates), truth)["fates"]
    # each half matches only truth track b, but they share it: neither is paired
    assert f["n_paired"] == 51 and f["accuracy"] == 1.0
    assert f["unpaired_result_tracks"]["sharing_a_truth_track"] == 2
    assert f["n_result_tracks"] == 53 and f["n_truth_tracks"] == 52


def test_sessions_option_restricts_scoring():
    truth = _truth()
    scores = compare(truth, truth, sessions=[0, 1])
    assert [e["session"] for e in scores["detection"]["per_session"]] == [0, 1]
    assert scores["detection"]["total"]["tp"] == 80
    assert [e["from_session"] for e in scores["links"]["per_transition"]] == [0]
    assert not scores["fates"]["scored"]
    with pytest.raises(InputError, match="not in the truth"):
        compare(truth, truth, sessions=[4])


# --------------------------------------------------------------------------- inputs, CLI


def test_python_api_accepts_folders_and_frames(tmp_path):
    spines, fates, lines = _series()
    folder = _write_folder(tmp_path / "t", spines, fates, lines, truth_json=True)
    by_path = compare(str(folder), folder)
    by_frame = compare(spines, folder)
    assert by_path["detection"]["total"]["f1"] == by_frame["detection"]["total"]["f1"] == 1.0
    json.dumps(by_path, allow_nan=False)  # plain JSON


def test_filopodia_rows_are_not_spines(tmp_path):
    spines, fates, lines = _series()
    filo = pd.DataFrame([_one(70.0, 50.0, session=0, spine_id=999)]).assign(kind="filopodium")
    with_filo = pd.concat([spines.assign(kind="spine"), filo], ignore_index=True)
    truth = SeriesTables.from_frames(with_filo, fates)
    assert len(truth.spines) == 160


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    spines, fates, lines = _series()
    truth_dir = _write_folder(tmp_path / "truth", spines, fates, lines, truth_json=True)
    result_dir = _write_folder(tmp_path / "result", spines, fates)
    assert main(["compare", str(result_dir), str(truth_dir), "--near", "5"]) == 0
    out = capsys.readouterr().out
    assert "Detection" in out and "Links" in out and "Fates" in out and "Restored" in out
    assert "within 5 µm" in out
    saved = json.loads((result_dir / "compare.json").read_text())
    assert saved["detection"]["total"]["f1"] == 1.0
    assert saved["settings"]["near_um"] == 5.0
    other = tmp_path / "elsewhere" / "scores.json"
    assert main(["compare", str(result_dir), str(truth_dir), "--json", str(other),
                 "--lateral-um", "1.0", "--axial-um", "2.0", "--sessions", "0", "1"]) == 0
    saved = json.loads(other.read_text())
    assert saved["settings"] == {"lateral_um": 1.0, "axial_um": 2.0, "near_um": None,
                                 "visible_only": False, "sessions": [0, 1]}
    assert not list(other.parent.glob(".*.tmp"))


def test_cli_never_writes_into_a_truth_folder(tmp_path, capsys):
    spines, fates, lines = _series()
    truth_dir = _write_folder(tmp_path / "truth", spines, fates, lines, truth_json=True)
    before = sorted(p.name for p in truth_dir.iterdir())
    assert main(["compare", str(truth_dir), str(truth_dir)]) == 0
    assert sorted(p.name for p in truth_dir.iterdir()) == before
    assert "--json" in capsys.readouterr().err


def _error_line(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_cli_bad_input_gives_one_line(tmp_path, capsys):
    spines, fates, lines = _series()
    truth_dir = _write_folder(tmp_path / "truth", spines, fates, lines, truth_json=True)
    err = _error_line(capsys, ["compare", str(tmp_path / "missing"), str(truth_dir)])
    assert "missing: no such folder" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no spines.csv" in _error_line(capsys, ["compare", str(empty), str(truth_dir)])
    broken = _write_folder(tmp_path / "broken", spines.drop(columns=["x_um"]), fates)
    err = _error_line(capsys, ["compare", str(broken), str(truth_dir)])
    assert "spines.csv" in err and "x_um" in err
    text = _write_folder(tmp_path / "text", spines.assign(z_um="deep"), fates)
    assert "non-numeric" in _error_line(capsys, ["compare", str(text), str(truth_dir)])
    bad_fate = _write_folder(tmp_path / "fate", spines, fates.assign(fate="gone"))
    err = _error_line(capsys, ["compare", str(bad_fate), str(truth_dir)])
    assert "fates.csv" in err and "gone" in err
    twice = _write_folder(tmp_path / "twice", pd.concat([spines, spines.iloc[:1]]), fates)
    assert "twice in session" in _error_line(capsys, ["compare", str(twice), str(truth_dir)])
    five = _write_folder(tmp_path / "five", spines.assign(session=spines["session"] + 1))
    err = _error_line(capsys, ["compare", str(five), str(truth_dir)])
    assert "session" in err
    assert "--near" in _error_line(capsys, ["compare", str(truth_dir), str(truth_dir), "--near",
                                            "-1", "--json", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


@needs_rr30a
def test_rr30a_perturbed_copy(rng):
    truth = load_truth(RR30A)
    spines = truth.spines.copy()
    keep = np.ones(len(spines), dtype=bool)
    keep[rng.choice(len(spines), size=38, replace=False)] = False
    jitter = rng.normal(0, 0.3 / np.sqrt(3), size=(len(spines), 3))
    spines[["z_um", "y_um", "x_um"]] += jitter
    scores = compare(SeriesTables.from_frames(spines.loc[keep], truth.fates), truth)
    total = scores["detection"]["total"]
    assert total["fp"] == 0
    assert total["tp"] == 379 - int((~keep & ~spines["is_bad"].to_numpy()).sum())
    assert 0.85 < total["recall"] < 0.95


def test_visible_only_ignores_hidden_truth_spines():
    truth = pd.DataFrame({"spine_id": [0, 1, 2], "session": [0, 0, 0], "z_um": [5.0] * 3,
                          "y_um": [10.0, 20.0, 30.0], "x_um": [10.0] * 3,
                          "visible": [True, True, False]})
    result = truth.iloc[:2].drop(columns="visible")
    assert compare(result, truth)["detection"]["total"]["recall"] < 1
    scores = compare(result, truth, visible_only=True)
    assert scores["detection"]["total"]["recall"] == 1.0
    assert scores["settings"]["visible_only"] is True


def test_a_synth_output_folder_is_read_through_its_truth(tmp_path):
    from spinetrack.compare import load_truth

    _write_folder(tmp_path / "syn" / "truth", pd.DataFrame(
        {"spine_id": [0], "session": [0], "z_um": [1.0], "y_um": [2.0], "x_um": [3.0],
         "branch_id": [0], "arc_um": [1.0]}), truth_json=True)
    tables = load_truth(tmp_path / "syn")
    assert len(tables.spines) == 1


def _run_folder(folder: Path, spines, fates) -> Path:
    """A results folder as 'spinetrack run' leaves it (summary.json, params.json last)."""
    _write_folder(folder, spines, fates)
    (folder / "summary.json").write_text(json.dumps({"n_sessions": 4}))
    (folder / "params.json").write_text(json.dumps({"params": {}}))
    return folder


@pytest.fixture
def truth_and_run(tmp_path):
    """A truth folder (truth.json) and a run's results folder of the same series."""
    spines, fates, lines = _series()
    truth = _write_folder(tmp_path / "truth", spines, fates, lines, truth_json=True)
    return truth, _run_folder(tmp_path / "run", spines, fates)


def test_swapped_result_and_truth_folders_are_refused(truth_and_run, tmp_path, capsys):
    truth, run = truth_and_run
    assert compare(run, truth)["detection"]["total"]["f1"] == 1.0
    with pytest.raises(InputError, match="look swapped"):
        compare(truth, run)
    assert main(["compare", str(truth), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"compare {run} {truth}" in err
    # two truth folders (two annotators, say) may be compared either way
    other = shutil.copytree(truth, tmp_path / "other")
    assert compare(truth, other)["detection"]["total"]["f1"] == 1.0


def test_an_interrupted_runs_folder_is_refused(truth_and_run, capsys):
    truth, run = truth_and_run
    (run / "params.json").unlink()
    assert main(["compare", str(run), str(truth)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incomplete (an interrupted run?)" in err
    assert not (run / "compare.json").exists()
