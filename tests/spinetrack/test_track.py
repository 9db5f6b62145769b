import numpy as np
import pandas as pd
import pytest

from spinetrack.errors import InputError
from spinetrack.fates import identity_rule_violations
from spinetrack.params import Params
from spinetrack.register import Registration, rotation_matrix
from spinetrack.results import SPINE_COLUMNS
from spinetrack.trace import tracing_from_lines
from spinetrack.track import track_series

VOX = (1.0, 0.12, 0.12)
SHAPE = (30, 800, 800)


def _moves(n):
    """A known drift of every session: rotation about z and a few µm of shift."""
    mats = [np.eye(3)] + [rotation_matrix((2.0 * k, 0.5, 0)) for k in range(1, n)]
    offs = [np.zeros(3)] + [np.array([1.0 * k, -1.5 * k, 2.0]) for k in range(1, n)]
    z = [np.zeros((0, 3))] * n
    return Registration(mats, offs, z, z, [np.zeros(0)] * n, 0.0, SHAPE, VOX)


def _branch(b):
    s = np.linspace(0, 70, 700)
    y = 15 + 20 * b + 2.0 * np.sin(s / 9 + b)
    return np.stack([np.full_like(s, 12 + 2 * b), y, 12 + s], 1)


def _scene(spines_of_session, n, rng, jitter=0.1):
    """Tracings and detections seen from each session, from spines given in session 0's frame.

    ``spines_of_session(k)`` -> list of (truth_id, branch, arc, side, length).
    """
    reg = _moves(n)
    branches = {b: _branch(b) for b in range(3)}
    tracings, dets = [], []
    for k in range(n):
        rows = []
        for b, pts in branches.items():
            own = reg.from_reference(k, pts) / np.array(VOX)
            rows.append(pd.DataFrame({"branch_id": (b + k) % 3,  # session-local ids differ
                                      "z": own[:, 0], "y": own[:, 1], "x": own[:, 2]}))
        tracings.append(tracing_from_lines(pd.concat(rows, ignore_index=True), VOX, SHAPE))
        det = []
        for tid, b, arc, side, length in spines_of_session(k):
            pts = branches[b]
            i = int(np.argmin(np.abs(pts[:, 2] - 12 - arc)))
            t = pts[min(i + 1, len(pts) - 1)] - pts[max(i - 1, 0)]
            t /= np.linalg.norm(t)
            normal = np.array([0.0, t[2], -t[1]]) * side
            base = pts[i] + 0.4 * normal
            head = pts[i] + (0.4 + length) * normal + rng.normal(0, jitter, 3)
            hb = reg.from_reference(k, np.vstack([head, base])) / np.array(VOX)
            det.append({"truth_id": tid, "z": hb[0, 0], "y": hb[0, 1], "x": hb[0, 2],
                        "base_z": hb[1, 0], "base_y": hb[1, 1], "base_x": hb[1, 2],
                        "branch_id": (b + k) % 3, "side": side, "length_um": length,
                        "kind": "spine", "score": 1.0})
        dets.append(pd.DataFrame(det))
    return tracings, dets


def _truth_of(tracked, dets):
    """truth_id of every tracked row (detections are kept in order per session)."""
    out = tracked.spines.copy()
    out["truth_id"] = -1
    for k, d in enumerate(dets):
        rows = out.index[out.session == k]
        own = out.loc[rows, ["x", "y"]].to_numpy()
        for r, xy in zip(rows, own):
            j = np.argmin(np.hypot(d.x - xy[0], d.y - xy[1]))
            out.loc[r, "truth_id"] = d.truth_id.iloc[j]
    return out


def test_every_fate_through_drift_and_rotation(rng):
    # branch 0: stable, lost, formed, transient and a spine lost then restored at its site
    plan = {
        0: [(0, 0, 10.0, 1, 1.5), (1, 0, 20.0, -1, 1.2), (3, 0, 40.0, 1, 1.0)],
        1: [(0, 0, 10.0, 1, 1.5), (1, 0, 20.0, -1, 1.2), (2, 0, 30.0, 1, 1.4),
            (4, 0, 50.0, -1, 1.3)],
        2: [(0, 0, 10.0, 1, 1.5), (2, 0, 30.0, 1, 1.4), (5, 0, 40.3, 1, 1.0)],
    }
    tracings, dets = _scene(lambda k: plan[k], 3, rng)
    tracked = track_series(None, tracings, dets, Params())
    assert identity_rule_violations(tracked.spines) == []
    sp = _truth_of(tracked, dets)
    fate_of = dict(zip(tracked.fates.spine_id, tracked.fates.fate))
    by_truth = {t: fate_of[g.spine_id.iloc[0]] for t, g in sp.groupby("truth_id")}
    assert by_truth == {0: "stable", 1: "lost", 2: "formed", 3: "lost", 4: "transient",
                        5: "restored"}
    assert sp.groupby("truth_id").spine_id.nunique().max() == 1
    assert sp.groupby("spine_id").truth_id.nunique().max() == 1
    # the tracked tables have the promised columns
    assert list(tracked.spines.columns[:len(SPINE_COLUMNS)]) == SPINE_COLUMNS
    assert {"ref_z_um", "session_branch_id", "session_arc_um"} <= set(tracked.spines.columns)
    assert set(tracked.spines.branch_id) == {0}          # global ids despite local renaming
    assert {"session", "branch_id", "arc_um"} <= set(tracked.lines.columns)
    assert list(tracked.branch_table.columns) == ["branch_id", "length_um", "arc_start_um",
                                                 "arc_end_um", "n_sessions_traced",
                                                 "arc_first_start_um", "arc_last_end_um"]
    assert len(tracked.registration.report) == 3
    assert tracked.registration.report.residual_um.iloc[1:].max() < 0.2


def test_crowded_random_series_links_correctly(rng):
    n = 4
    base = []
    for b in range(3):
        arc = np.cumsum(rng.uniform(1.0, 2.5, 30))
        arc = arc[arc < 66]
        for a in arc:
            base.append((len(base), b, a, int(rng.choice([-1, 1])), rng.uniform(0.8, 2.0)))
    present = {s[0]: rng.random(n) < 0.9 for s in base}
    # presence without gaps: a spine absent once stays absent (identity rule of the truth)
    for tid, p in present.items():
        first_gap = np.flatnonzero(~p)
        if len(first_gap):
            p[first_gap[0]:] = False
            p[0] = True

    tracings, dets = _scene(lambda k: [s for s in base if present[s[0]][k]], n, rng,
                            jitter=0.15)
    tracked = track_series(None, tracings, dets, Params())
    sp = _truth_of(tracked, dets)
    pairs = 0
    correct = 0
    for k in range(1, n):
        a, b = sp[sp.session == k - 1], sp[sp.session == k]
        linked = a.merge(b, on="spine_id")
        pairs += len(linked)
        correct += int((linked.truth_id_x == linked.truth_id_y).sum())
    truth_links = sum(int((present[t][:-1] & present[t][1:]).sum()) for t in present)
    assert correct / pairs >= 0.97
    assert correct / truth_links >= 0.97


def test_bad_input():
    with pytest.raises(InputError):
        track_series(None, [], [], Params())
    with pytest.raises(InputError):
        track_series(None, [None], [pd.DataFrame(), pd.DataFrame()], Params())


def _image_of(tracing, rng):
    """A dim uint8 stack showing the traced dendrites (for the command-line test)."""
    from scipy import ndimage

    img = np.zeros(SHAPE, np.float32)
    idx = np.round(tracing.lines[["z", "y", "x"]].to_numpy()).astype(int)
    ok = np.all((idx >= 0) & (idx < np.array(SHAPE)), axis=1)
    img[tuple(idx[ok].T)] = 255.0
    img = ndimage.gaussian_filter(img, (1.0, 3.0, 3.0), truncate=2.0) * 20
    return (np.minimum(img, 250).astype(np.uint8)
            + rng.integers(0, 4, SHAPE, dtype=np.uint8))


def test_track_command_writes_a_results_folder(tmp_path, rng, check_contract):
    from spinetrack.cli import main
    from spinetrack.io import write_session

    plan = {0: [(0, 0, 10.0, 1, 1.5), (1, 1, 20.0, -1, 1.2)],
            1: [(0, 0, 10.0, 1, 1.5), (2, 2, 30.0, 1, 1.4)]}
    tracings, dets = _scene(lambda k: plan[k], 2, rng)
    det_dir = tmp_path / "det"
    det_dir.mkdir()
    files = []
    for k, (t, d) in enumerate(zip(tracings, dets)):
        files.append(str(write_session(tmp_path / f"day{k}.tif", _image_of(t, rng), VOX,
                                         compression=None)))
        d.drop(columns=["truth_id"]).to_csv(det_dir / f"day{k}_spines.csv", index=False)
        t.lines.to_csv(det_dir / f"day{k}_lines.csv", index=False)
    out = tmp_path / "out"
    status = main(["-q", "track", *files, "--detections", str(det_dir), "--out", str(out),
                   "--n-permutations", "100"])
    assert status == 0
    fates = pd.read_csv(out / "fates.csv", dtype={"present": str})
    assert sorted(fates.present) == ["01", "10", "11"]
    assert (out / "registration.json").exists()
    assert check_contract(out, 2) == []
    # detector tables (with a score) are automatic calls; a person's table is not
    import json

    assert json.loads((out / "summary.json").read_text())["calls"] == "automatic"
    for k in range(2):
        p = det_dir / f"day{k}_spines.csv"
        pd.read_csv(p).drop(columns=["score"]).to_csv(p, index=False)
    assert main(["-q", "track", *files, "--detections", str(det_dir), "--out",
                 str(tmp_path / "person"), "--params", str(out / "params.json"),
                 "--days", "0", "3.5"]) == 0
    summary = json.loads((tmp_path / "person" / "summary.json").read_text())
    assert "calls" not in summary and summary["days"] == [0, 3.5]
    assert summary["statistics_params"]["n_permutations"] == 100  # from --params
    # a missing detection file is a one-line input error
    (det_dir / "day1_spines.csv").unlink()
    assert main(["-q", "track", *files, "--detections", str(det_dir), "--out",
                 str(tmp_path / "x")]) == 2


def test_measured_range_tells_a_replaced_spine_from_the_same_one(rng):
    # 3 branches of stable spines with little jitter; on branch 0 the spine at 33 µm is
    # lost after session 1 and a longer one appears 0.8 µm away in session 2
    stable = [(i, b, 3.0 + 5.0 * j, 1 if j % 2 else -1, 1.2)
              for i, (b, j) in enumerate((b, j) for b in range(3) for j in range(12))]
    old, new = (100, 0, 33.0, 1, 0.8), (101, 0, 33.8, 1, 2.0)
    plan = {0: stable + [old], 1: stable + [old], 2: stable + [new]}
    tracings, dets = _scene(lambda k: plan[k], 3, rng, jitter=0.05)
    tracked = track_series(None, tracings, dets, Params())
    sp = _truth_of(tracked, dets)
    fate_of = dict(zip(tracked.fates.spine_id, tracked.fates.fate))
    assert fate_of[sp.loc[sp.truth_id == 100, "spine_id"].iloc[0]] == "lost"
    assert fate_of[sp.loc[sp.truth_id == 101, "spine_id"].iloc[0]] == "restored"
    assert tracked.link_spread["reach_along_branch_um"] < 1.0
    fixed = track_series(None, tracings, dets, Params().replace(adaptive_range=False),
                         registration=tracked.registration)
    sp = _truth_of(fixed, dets)
    assert sp.loc[sp.truth_id.isin([100, 101]), "spine_id"].nunique() == 1


def test_a_session_without_spines_splits_identities(rng):
    plan = {0: [(0, 0, 10.0, 1, 1.5)], 1: [], 2: [(0, 0, 10.0, 1, 1.5)]}
    tracings, dets = _scene(lambda k: plan[k], 3, rng)
    dets[1] = dets[1].reindex(columns=dets[0].columns)
    tracked = track_series(None, tracings, dets, Params())
    assert sorted(tracked.fates.present) == ["001", "100"]
    assert sorted(tracked.fates.fate) == ["lost", "restored"]


def _row(session, sid, x, branch=0, arc=None):
    arc = x if arc is None else arc
    return {"session": session, "spine_id": sid, "z_um": 5.0, "y_um": 5.0, "x_um": x,
            "branch_id": branch, "arc_um": arc, "head_arc_um": arc, "lateral_um": 1.0,
            "depth_um": 0.0}


def test_link_errors_names_every_kind_of_wrong_link():
    from spinetrack.track import link_errors

    # truth: A stays (x 10), B stays (x 20), C lost then D new at its site (x 30),
    # E stays (x 40) but the result puts its second end on another branch,
    # F stays (x 50 -> 55: far along the branch)
    truth = pd.DataFrame([_row(0, 0, 10), _row(1, 0, 10), _row(0, 1, 20), _row(1, 1, 20),
                          _row(0, 2, 30), _row(1, 3, 30), _row(0, 4, 40), _row(1, 4, 40),
                          _row(0, 5, 50), _row(1, 5, 55)])
    # result: A(0) -> B(1) (neighbour), B(0) unlinked while its partner is taken,
    # C -> D (replacement), E's ends on branches 0 and 1, F's ends unlinked
    result = pd.DataFrame([_row(0, 0, 10), _row(1, 0, 20), _row(0, 1, 20), _row(1, 9, 10),
                           _row(0, 2, 30), _row(1, 2, 30), _row(0, 4, 40),
                           _row(1, 7, 40, branch=1), _row(0, 5, 50), _row(1, 8, 55)])
    result.index = result.index + 100                     # any index labels
    err = link_errors(result, truth, reach_um=2.0)
    got = sorted(zip(err.kind, err.cause))
    assert got == sorted([("extra", "neighbour"), ("extra", "replacement"),
                          ("missed", "taken"), ("missed", "taken"),
                          ("missed", "other branch"), ("missed", "beyond range")])
    far = err[err.cause == "beyond range"].iloc[0]
    assert far.d_arc_um == pytest.approx(5.0)
    assert (far.index_a, far.index_b) == (108, 109)
    # a result equal to the truth has no wrong link
    assert link_errors(truth.assign(spine_id=truth.spine_id), truth).empty


def test_split_statistics_is_the_link_distance_for_one_link_and_sharper_for_more():
    from spinetrack.track import split_statistics

    assert split_statistics(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx([5.0])
    z = split_statistics(np.array([[0.0], [0.0], [2.0], [2.0]]))
    # 2|2: the two means are each sqrt(2) surer than one observation
    assert z == pytest.approx([(4 / 3) / np.sqrt(2 / 3), 2.0 * np.sqrt(2.0),
                               (4 / 3) / np.sqrt(2 / 3)])
    assert split_statistics(np.zeros((1, 3))).shape == (0,)


def test_track_limit_shares_the_range_tail_among_the_places_a_track_can_be_cut():
    from spinetrack.track import track_limit

    assert track_limit(4.0, 2, 4) == 4.0
    # with 2 coordinates the tail is exp(-r^2 / 2): halving it adds 2 ln 2 to r^2
    assert track_limit(4.0, 3, 2) == pytest.approx(np.sqrt(16.0 + 2 * np.log(2)))
    limits = [track_limit(4.7, n, 4) for n in range(2, 11)]
    assert all(b > a for a, b in zip(limits, limits[1:])) and limits[-1] < 5.5


def _track_table(rows):
    """A linked table from (spine_id, session, arc, lateral) rows."""
    sid, ses, arc, lat = np.array(rows, float).T
    return pd.DataFrame({"spine_id": sid.astype(int), "session": ses.astype(int),
                         "arc_um": arc, "lateral_um": lat})


def test_split_inconsistent_cuts_a_step_that_no_single_link_shows():
    from spinetrack.fates import identity_rule_violations
    from spinetrack.track import split_inconsistent

    rows = [(7, k, 10.0 + (0.8 if k >= 2 else 0.0), 1.0) for k in range(4)]  # a step
    rows += [(3, k, 20.0 + 0.1 * (-1) ** k, 1.0) for k in range(4)]  # jitter only
    rows += [(5, k, 30.0 + 0.8 * k, 1.0) for k in range(1, 3)]  # one link, never cut
    linked = _track_table(rows)
    args = (("arc_um", "lateral_um"), (0.25, 0.25), 4.0)
    out, n = split_inconsistent(linked, *args)
    assert n == 1  # each link of the step is 3.2 spreads, the 2|2 change 4.5
    assert identity_rule_violations(out) == []
    ids = out.groupby(out.arc_um.round(0))["spine_id"].nunique()
    assert ids[10.0] + ids[11.0] == 2 and ids[20.0] == 1
    assert sorted(out.spine_id.unique()) == list(range(out.spine_id.nunique()))
    # a second step: both are cut (the largest first, then each part again)
    rows = [(0, k, 10.0 + 1.0 * (k >= 2) + 1.0 * (k >= 4), 1.0) for k in range(6)]
    out, n = split_inconsistent(_track_table(rows), *args)
    assert n == 2 and out.groupby("spine_id").size().tolist() == [2, 2, 2]
    # within the limit nothing changes
    out, n = split_inconsistent(linked, ("arc_um", "lateral_um"), (0.25, 0.25), 6.0)
    assert n == 0 and out.spine_id.tolist() == linked.spine_id.tolist()


def _placed(rng, n_sessions=8, sd=0.15, replace=None):
    """Placed spines on two branches, 1.5 µm apart, jittered by ``sd`` in every coordinate.

    ``replace = (arc, d_arc, d_lateral)``: the spine at ``arc`` is gone after the first
    half of the sessions and a new one at ``arc + d_arc``, ``d_lateral`` further out, is
    there in the second half.
    """
    rows = []
    for b in range(2):
        for j, arc in enumerate(np.arange(2.0, 60.0, 1.5)):
            side = 1 if j % 2 else -1
            for k in range(n_sessions):
                a, lat = arc, side * 1.5
                if (replace is not None and b == 0 and abs(arc - replace[0]) < 1e-9
                        and k >= n_sessions // 2):
                    a, lat = arc + replace[1], side * (1.5 + replace[2])
                e = rng.normal(0, sd, 5)
                rows.append({"session": k, "branch_id": b, "arc_um": a + e[0],
                             "head_arc_um": a + e[1], "lateral_um": lat + e[2],
                             "depth_um": e[3] * 2, "z": 0.0, "y": 0.0, "x": 0.0,
                             "z_um": 0.0, "y_um": 0.0, "x_um": 0.0, "length_um": 1.0})
    return pd.DataFrame(rows)


def _near(spines, branch, arc):
    """spine_ids of the rows on ``branch`` within 0.7 µm of ``arc`` (neighbours are 1.5 µm)."""
    return spines.loc[(spines.branch_id == branch) & ((spines.arc_um - arc).abs() < 0.7),
                      "spine_id"]


def test_link_placed_cuts_a_replacement_the_single_links_accept(rng):
    from spinetrack.fates import classify_fates
    from spinetrack.params import LinkParams
    from spinetrack.track import link_placed

    # 8 sessions; the new spine is 0.3 µm along and 0.5 µm further out: about 3 spreads
    # from the lost one's last position (the linker joins them), 6 between the means
    placed = _placed(rng, replace=(32.0, 0.3, 0.5))
    kept = link_placed(placed, LinkParams(split_inconsistent=False))
    assert _near(kept, 0, 32.2).nunique() == 1
    out = link_placed(placed, LinkParams())
    ids = _near(out, 0, 32.2)
    assert len(ids) == 8 and ids.nunique() == 2
    fates = classify_fates(out, 8).set_index("spine_id")
    assert sorted(fates.loc[ids.unique(), "fate"]) == ["lost", "restored"]
    n_tracks = 2 * len(np.arange(2.0, 60.0, 1.5))
    # 78 stable spines, 7 possible cuts each: the largest of 7 changes rarely passes
    assert (fates["fate"] == "stable").sum() >= n_tracks - 1 - 2
    clean = link_placed(_placed(rng), LinkParams())
    assert clean.attrs["link_spread"]["n_split"] <= 1
    assert clean.spine_id.nunique() <= n_tracks + 1


def test_stayed_residuals_measure_linked_spines_between_sessions():
    from spinetrack.track import stayed_residuals

    report_table = pd.DataFrame({"session": [0, 1, 2], "residual_um": [0.0, 0.2, 0.3]})
    spines = pd.DataFrame({
        "spine_id": [0, 0, 0, 1, 1, 2],
        "session": [0, 1, 2, 0, 1, 2],
        "ref_z_um": [0.0, 0.0, 0.0, 5.0, 5.0, 9.0],
        "ref_y_um": [0.0, 0.3, 0.3, 5.0, 5.0, 9.0],
        "ref_x_um": [0.0, 0.4, 0.4, 5.0, 6.0, 9.0]})
    out = stayed_residuals(report_table, spines)
    assert np.isnan(out["stayed_residual_um"][0]) and out["n_stayed"][0] == 0
    assert out["stayed_residual_um"][1] == pytest.approx(0.75)  # median of 0.5 and 1.0
    assert out["n_stayed"][1] == 2
    assert out["stayed_residual_um"][2] == pytest.approx(0.0) and out["n_stayed"][2] == 1
    assert list(report_table.columns) == ["session", "residual_um"]  # input untouched


def test_read_detections_leaves_out_the_spines_a_person_excluded(tmp_path, caplog):
    from types import SimpleNamespace

    from spinetrack.track import read_detections

    path = _branch(0)
    lines = pd.DataFrame({"branch_id": 0, "z": path[:, 0], "y": path[:, 1] / VOX[1],
                          "x": path[:, 2] / VOX[2]})
    lines.to_csv(tmp_path / "s0_lines.csv", index=False)
    det = pd.DataFrame({"z": [12.0, 12.0, 12.0, 12.0], "y": [140.0, 150.0, 160.0, 170.0],
                        "x": [200.0, 300.0, 400.0, 500.0], "is_bad": [0, 1, 0, 1]})
    det.to_csv(tmp_path / "s0_spines.csv", index=False)
    session = SimpleNamespace(voxel_size_um=VOX, shape=SHAPE)
    with caplog.at_level("INFO", logger="spinetrack.track"):
        _, got = read_detections(tmp_path, "s0", session)
    assert got["x"].tolist() == [200.0, 400.0] and "is_bad" not in got.columns
    assert any("left out 2 of 4 spines marked is_bad" in r.getMessage() for r in caplog.records)
    det.assign(is_bad=["false", "True", "no", "yes"]).to_csv(tmp_path / "s0_spines.csv",
                                                             index=False)
    assert read_detections(tmp_path, "s0", session)[1]["x"].tolist() == [200.0, 400.0]
    det.assign(is_bad=["0", "maybe", "0", "0"]).to_csv(tmp_path / "s0_spines.csv", index=False)
    with pytest.raises(InputError, match="is_bad holds"):
        read_detections(tmp_path, "s0", session)
