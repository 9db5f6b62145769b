"""spinetrack.synth: determinism, truth consistency, round trip, CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from spinetrack.cli import main
from spinetrack.compare import compare, load_truth
from spinetrack.errors import InputError
from spinetrack.fates import FATES, classify_fates, identity_rule_violations
from spinetrack.synth import PRESETS, make_series, read_truth, write_synth
from spinetrack.synth.dynamics import simulate_presence

SMALL = (12, 256, 256)


@pytest.fixture(scope="module")
def realistic():
    """A realistic 4-session series, smaller field than the default for speed.

    On this field (~200 µm of branch) about 2% of seeds miss one fate class by
    chance; the default field holds twice as many spines.
    """
    return make_series("realistic", n_sessions=4, seed=1, shape=(24, 512, 512))


@pytest.fixture(scope="module")
def small():
    return make_series("easy", n_sessions=3, seed=5, shape=SMALL)


def test_same_seed_same_series_other_seed_differs(small):
    again = make_series("easy", n_sessions=3, seed=5, shape=SMALL)
    for a, b in zip(small.series, again.series):
        np.testing.assert_array_equal(a.image, b.image)
    pd.testing.assert_frame_equal(small.truth["spines"], again.truth["spines"])
    other = make_series("easy", n_sessions=3, seed=6, shape=SMALL)
    assert not np.array_equal(small.series[0].image, other.series[0].image)


def test_series_metadata(small):
    assert small.series.names == ["session0", "session1", "session2"]
    assert small.series.days == [0.0, 4.0, 8.0]
    assert small.series[0].image.shape == SMALL
    assert small.series[0].image.dtype == np.uint16
    assert small.series.voxel_size_um == (1.0, 0.12, 0.12)


def test_truth_follows_identity_rule_and_fate_rule(realistic):
    spines, fates = realistic.truth["spines"], realistic.truth["fates"]
    assert identity_rule_violations(spines) == []
    again = classify_fates(spines, 4, 2.0)
    pd.testing.assert_series_equal(fates["fate"], again["fate"])
    assert set(fates["fate"]) == set(FATES)  # every fate class is present
    assert (spines["source"] == "truth").all() and (spines["kind"] == "spine").all()


def test_realism_of_the_realistic_preset(realistic):
    truth = realistic.truth
    branches = truth["branches"]
    assert 5 <= len(branches) <= 8
    assert (branches["start_kind"] == "junction").any()
    s0 = truth["spines"][truth["spines"]["session"] == 0]
    density = len(s0) / branches["length_um"].sum()
    assert 0.25 <= density <= 0.65
    image = realistic.series[0].image
    assert image.dtype == np.uint8
    # dim: many zero pixels, like rr30a (0.28; the full realistic field 0.22; this field of
    # 24 planes holds as much dendrite in half the depth, 0.10)
    assert 0.08 < np.mean(image == 0) < 0.6
    assert s0["visible"].mean() > 0.6  # most spines are visible, some are near the limit
    assert not s0["visible"].all()
    assert len(truth["filopodia"]) > 0


def test_truth_heads_are_bright_in_the_image(small):
    spines = small.truth["spines"]
    for k, session in enumerate(small.series):
        s = spines[(spines["session"] == k) & spines["visible"]]
        idx = np.round(s[["z", "y", "x"]].to_numpy()).astype(int)
        at_heads = session.image[tuple(idx.T)].astype(float)
        assert np.median(at_heads) > 5 * np.median(session.image)


def test_sessions_drift_and_truth_moves_with_them(small):
    lines = small.truth["lines"]
    a = lines[lines["session"] == 0][["z_um", "y_um", "x_um"]].to_numpy()
    b = lines[lines["session"] == 1][["z_um", "y_um", "x_um"]].to_numpy()
    shift = np.linalg.norm(b - a, axis=1)
    assert shift.min() > 0.1
    t = small.transforms[1]
    np.testing.assert_allclose(t.apply(a), b, atol=1e-9)


def _stress_loss_ratio(null: bool, seed: int) -> float:
    """Loss fraction in the stress transition on stressed branches / on the others."""
    branches = pd.DataFrame({"branch_id": np.arange(6), "length_um": np.full(6, 60.0)})
    rng = np.random.default_rng(seed)
    life, info = simulate_presence(PRESETS["realistic"], branches, 4, rng, null=null)
    k = info["stress_transition"]
    at_k = life[(life["first_session"] <= k) & (life["last_session"] >= k)]
    lost = at_k["last_session"] == k
    stressed = at_k["branch_id"].isin(info["stress_branches"] or [0])
    return lost[stressed].mean() / max(lost[~stressed].mean(), 1e-3)


def test_losses_cluster_on_stressed_branches_unless_null():
    clustered = [_stress_loss_ratio(False, s) for s in range(10)]
    null = [_stress_loss_ratio(True, s) for s in range(10)]
    assert np.median(clustered) > 3.0
    assert 0.5 < np.median(null) < 2.0


def test_null_keeps_geometry_and_motion():
    kw = dict(n_sessions=2, shape=(8, 256, 256), seed=2)
    a, b = make_series("easy", null=False, **kw), make_series("easy", null=True, **kw)
    pd.testing.assert_frame_equal(a.truth["lines"], b.truth["lines"])
    assert a.info["transforms"] == b.info["transforms"]
    assert b.info["stress_branches"] == [] and a.info["stress_branches"]


def test_write_read_round_trip_and_compare_is_perfect(small, tmp_path):
    write_synth(small, tmp_path / "s")
    truth = read_truth(tmp_path / "s")
    assert read_truth(tmp_path / "s" / "truth").keys() == truth.keys()
    pd.testing.assert_frame_equal(truth["spines"], small.truth["spines"], check_exact=False,
                                  rtol=1e-5)
    assert truth["fates"]["present"].str.len().eq(3).all()
    info = json.loads((tmp_path / "s" / "truth" / "truth.json").read_text())
    assert info["seed"] == 5 and len(info["transforms"]) == 3
    tables = load_truth(tmp_path / "s" / "truth")
    assert tables.format == "synthetic" and tables.n_sessions == 3
    scores = compare(tables, tables)
    total = scores["detection"]["total"]
    assert total["tp"] == len(small.truth["spines"]) and total["fp"] == total["fn"] == 0
    assert scores["fates"]["accuracy"] == pytest.approx(1.0)


def test_cli_writes_series_and_reports_counts(tmp_path, capsys):
    out = tmp_path / "cli"
    status = main(["synth", str(out), "--preset", "easy", "--sessions", "2", "--seed", "1",
                   "--shape", "8", "200", "200", "--days", "0", "3"])
    assert status == 0
    text = capsys.readouterr().out
    assert "fates:" in text and str(out) in text
    assert (out / "truth" / "puncta.csv").exists()
    assert (out / "session1.tif").exists() and (out / "truth" / "truth.json").exists()
    assert read_truth(out)["sessions"]["day"].tolist() == [0.0, 3.0]


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(InputError):
        make_series("nonsense")
    with pytest.raises(InputError):
        make_series("easy", n_sessions=2, days=[0, 1, 2])
    status = main(["synth", str(tmp_path / "x"), "--sessions", "0"])
    assert status == 2
    assert "at least one session" in capsys.readouterr().err


def test_presets_differ_in_motion():
    drift = [PRESETS[p].drift_um[1] for p in ("easy", "realistic", "hard")]
    assert drift == sorted(drift) and drift[0] < drift[2]
    assert PRESETS["realistic"].dtype == "uint8"


def test_truth_head_is_where_the_brightness_peaks(small):
    """The brightest voxel near each visible head is at the truth position."""
    spines = small.truth["spines"]
    image = small.series[0].image.astype(float)
    s0 = spines[(spines["session"] == 0) & spines["visible"]]
    offsets = []
    for z, y, x in s0[["z", "y", "x"]].to_numpy():
        zi, yi, xi = int(round(z)), int(round(y)), int(round(x))
        sl = (slice(max(zi - 1, 0), zi + 2), slice(max(yi - 5, 0), yi + 6),
              slice(max(xi - 5, 0), xi + 6))
        dz, dy, dx = np.unravel_index(np.argmax(image[sl]), image[sl].shape)
        py, px = sl[1].start + dy, sl[2].start + dx
        offsets.append(np.hypot(py - y, px - x) * 0.12)
    assert len(offsets) >= 5
    assert np.median(offsets) < 0.25  # µm


def test_truth_json_affine_maps_sessions_back_to_session0(small):
    lines = small.truth["lines"]
    ref = lines[lines["session"] == 0][["z_um", "y_um", "x_um"]].to_numpy()
    for k in (1, 2):
        affine = np.asarray(small.info["transforms"][k]["session_to_reference_affine"])
        pts = lines[lines["session"] == k][["z_um", "y_um", "x_um"]].to_numpy()
        back = pts @ affine[:3, :3].T + affine[:3, 3]
        err = np.linalg.norm(back - ref, axis=1)
        assert err.max() < 3 * PRESETS["easy"].warp_um + 1e-6  # only the warp remains


def test_write_refuses_a_folder_with_other_sessions(small, tmp_path):
    (tmp_path / "session7.tif").write_bytes(b"x")
    with pytest.raises(InputError, match="session7.tif"):
        write_synth(small, tmp_path)
    assert not (tmp_path / "truth").exists()


@pytest.mark.parametrize("lam", [0.05, 0.8, 3.0, 40.0])
@pytest.mark.parametrize("shape", [0.6, 50.0])
def test_compound_photon_noise_matches_the_exact_law(lam, shape):
    from spinetrack.synth.render import compound_photon_noise

    rng = np.random.default_rng(3)
    fast = compound_photon_noise(rng, np.full((2, 200, 200), lam, np.float32), 4.0, shape).ravel()
    n = rng.poisson(lam, fast.size)
    exact = np.zeros(fast.size)
    exact[n > 0] = rng.gamma(n[n > 0] * shape, 4.0 / shape)
    assert fast.mean() == pytest.approx(exact.mean(), rel=0.03, abs=0.01)
    assert fast.std() == pytest.approx(exact.std(), rel=0.03)
    assert np.mean(fast == 0) == pytest.approx(np.exp(-lam), abs=0.01)


def test_too_small_a_field_is_a_clear_error():
    with pytest.raises(InputError, match="too small"):
        make_series("hard", n_sessions=2, shape=(8, 128, 128))


def test_progress_is_reported_and_cancel_stops():
    from spinetrack.errors import Cancelled
    from spinetrack.progress import CancelToken

    calls = []
    make_series("easy", n_sessions=2, seed=0, shape=(8, 200, 200),
                progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert ("synth: render", 2, 2) in calls
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        make_series("easy", n_sessions=2, seed=0, shape=(8, 200, 200), progress=token.wrap())


def test_truth_lies_inside_every_session_image(realistic):
    shape = np.asarray(realistic.series[0].shape)
    for name in ("spines", "lines", "filopodia"):
        table = realistic.truth[name]
        pos = table[["z", "y", "x"]].to_numpy()
        assert (pos >= -0.5).all() and (pos <= shape - 0.5).all(), name


def test_side_follows_the_displayed_left_right_rule(small):
    """side = sign(ty*vx - tx*vy), branch direction (ty, tx), spine direction (vy, vx)."""
    spines = small.truth["spines"]
    lines = small.truth["lines"]
    s0 = spines[(spines["session"] == 0) & (spines["side"] != 0)]
    assert len(s0) >= 5
    for _, sp in s0.iterrows():
        ln = lines[(lines["session"] == 0) & (lines["branch_id"] == sp["branch_id"])]
        i = int(np.argmin(np.abs(ln["arc_um"].to_numpy() - sp["arc_um"])))
        j = min(i + 4, len(ln) - 1)
        i = max(j - 8, 0)
        ty, tx = ln["y"].iloc[j] - ln["y"].iloc[i], ln["x"].iloc[j] - ln["x"].iloc[i]
        vy, vx = sp["y"] - sp["base_y"], sp["x"] - sp["base_x"]
        assert np.sign(ty * vx - tx * vy) == sp["side"]


def test_out_of_focus_patches_move_with_the_field():
    from scipy import ndimage as ndi

    from spinetrack.synth.render import move_coarse
    from spinetrack.synth.transform import random_transform

    coarse = np.zeros((20, 40, 40), np.float32)
    coarse[10, 20, 20] = 1.0
    step = np.array([1.0, 0.96, 0.96])
    tf = random_transform(np.random.default_rng(1), [10.0, 19.2, 19.2], (2, 3, 3), 2.0, 0.0)
    moved = move_coarse(coarse, tf.matrix, tf.translation_um, tf.centre_um, step)
    got = np.array(ndi.center_of_mass(moved)) * step
    want = tf.apply(np.array([[10.0, 20 * 0.96, 20 * 0.96]]))[0]
    np.testing.assert_allclose(got, want, atol=0.05)


# ---------------------------------------------------------------- spines never interpenetrate


def _world(preset, seed, n_sessions, shape=(24, 512, 512)):
    from spinetrack.synth import series as synth_series

    cfg = (PRESETS[preset] if isinstance(preset, str) else preset).replace(shape=shape)
    return cfg, synth_series._build_world(cfg, seed, n_sessions, False)


def test_overlaps_finds_touching_heads_and_crossing_necks():
    from spinetrack.synth.placement import overlaps

    base_a, head_a = np.array([0.0, 0, 0]), np.array([0.0, 0, 2.0])
    heads = np.array([[0.0, 1.3, 2.0],     # head surfaces 0.3 µm apart: clear
                      [0.0, 1.1, 2.0],     # 0.1 µm apart: closer than the gap
                      [0.0, 0.8, 2.0],     # interpenetrating
                      [0.0, 1.0, -1.0]])   # its neck crosses a's neck
    bases = np.array([[0.0, 1.3, 0], [0.0, 1.1, 0], [0.0, 0.8, 0], [0.0, -1.0, 1.0]])
    hit = overlaps(head_a, 0.5, base_a, 0.1, heads, np.full(4, 0.5), bases, np.full(4, 0.1),
                   gap=0.15)
    assert hit.tolist() == [False, True, True, True]


@pytest.mark.parametrize("preset,seeds", [("realistic", range(4)), ("hard", range(2))])
def test_no_two_spines_of_one_session_interpenetrate(preset, seeds):
    """Heads and necks keep the gap in every session, new and restored spines included."""
    from spinetrack.synth.placement import overlaps

    checked = 0
    for seed in seeds:
        cfg, world = _world(preset, seed, 4)
        sp, inst = world.spines, world.instances
        assert sp["first_session"].max() >= 1  # later sessions add spines
        for k in range(4):
            alive = np.flatnonzero((sp["first_session"] <= k) & (sp["last_session"] >= k))
            head = _xyz_of(sp, "h")[alive] + inst["jitter"][alive, k]
            radius = sp["head_radius_um"].to_numpy()[alive] * inst["head_scale"][alive, k]
            base, neck = _xyz_of(sp, "b")[alive], sp["neck_radius_um"].to_numpy()[alive]
            for i in range(len(alive)):
                rest = np.arange(len(alive)) != i
                hit = overlaps(head[i], radius[i], base[i], neck[i], head[rest], radius[rest],
                               base[rest], neck[rest], cfg.spine_gap_um - 1e-6)
                assert not hit.any(), (seed, k, int(sp["spine_id"].iloc[alive[i]]))
            checked += len(alive)
    assert checked >= 30 * len(seeds)


def _xyz_of(df, prefix):
    return df[[prefix + "z", prefix + "y", prefix + "x"]].to_numpy(dtype=float)


def test_truth_heads_of_one_session_do_not_overlap(realistic):
    """In the written truth (each session's own frame, warp included) heads stay apart."""
    spines = realistic.truth["spines"]
    for _, s in spines.groupby("session"):
        pos = s[["z_um", "y_um", "x_um"]].to_numpy()
        radius = s["head_radius_um"].to_numpy()
        d = np.linalg.norm(pos[:, None] - pos[None], axis=2) + np.eye(len(s)) * 1e9
        assert (d > radius[:, None] + radius[None]).all()


def test_heads_keep_clear_of_every_shaft():
    from scipy.spatial import cKDTree

    cfg, world = _world("realistic", 2, 3)
    lines = world.lines
    tree = cKDTree(lines[["z_um", "y_um", "x_um"]].to_numpy())
    sp, inst = world.spines, world.instances
    for k in range(3):
        alive = np.flatnonzero((sp["first_session"] <= k) & (sp["last_session"] >= k))
        head = _xyz_of(sp, "h")[alive] + inst["jitter"][alive, k]
        radius = sp["head_radius_um"].to_numpy()[alive] * inst["head_scale"][alive, k]
        for h, r in zip(head, radius):
            near = tree.query_ball_point(h, r + 1.5)
            d = np.linalg.norm(lines[["z_um", "y_um", "x_um"]].to_numpy()[near] - h, axis=1)
            assert (d >= r + lines["radius_um"].to_numpy()[near] + cfg.spine_gap_um - 1e-6).all()


def test_restored_spines_keep_their_site():
    """A spine placed at a lost site stays within 1.2 µm of it along the same branch, and
    classify_fates calls it restored from a lost spine of its branch."""
    n_restored = 0
    for seed in range(3):
        _, world = _world("realistic", seed, 4)
        sp = world.spines.set_index("spine_id")
        restored = sp[sp["restored_site"] >= 0]
        site = sp.loc[restored["restored_site"]]
        assert (restored["branch_id"].to_numpy() == site["branch_id"].to_numpy()).all()
        assert (np.abs(restored["arc_um"].to_numpy() - site["arc_um"].to_numpy()) <= 1.2).all()
        assert (site["last_session"].to_numpy() < restored["first_session"].to_numpy()).all()
        n_restored += len(restored)
    assert n_restored >= 5
    fates = make_series("realistic", n_sessions=4, seed=0, shape=(24, 512, 512)).truth["fates"]
    back = fates[fates["fate"] == "restored"].merge(
        fates[["spine_id", "branch_id", "arc_um"]], left_on="restored_from",
        right_on="spine_id", suffixes=("", "_lost"))
    assert len(back) and (back["branch_id"] == back["branch_id_lost"]).all()
    assert (np.abs(back["arc_um"] - back["arc_um_lost"]) <= 2.0).all()


# ---------------------------------------------------------------- false-call sources of real data


def test_psf_halo_adds_light_beside_a_line():
    from spinetrack.synth.render import add_halo, blur

    voxel = np.array([1.0, 0.12, 0.12])
    volume = np.zeros((16, 96, 96), np.float32)
    volume[8, :, 48] = 1.0  # a line along y
    core = blur(volume, (1.0, 0.25, 0.25), voxel)
    halo = add_halo(core.copy(), voxel, (1.0, 0.25, 0.25), (3.0, 1.0, 1.0), 0.25)
    assert halo[:, 8:-8].sum() == pytest.approx(1.25 * core[:, 8:-8].sum(), rel=0.02)
    row = 48
    at_1um, at_3um = 48 + round(1.2 / 0.12), 48 + round(3.0 / 0.12)
    assert halo[8, row, 48] == pytest.approx(core[8, row, 48], rel=0.1)
    assert halo[8, row, at_1um] > 20 * max(core[8, row, at_1um], 1e-9)
    assert halo[8, row, at_1um] > 2 * halo[8, row, at_3um] > 0


def test_axons_bend_around_a_dendrite_instead_of_through_it():
    from spinetrack.synth.geometry import make_axons

    # a thick dendrite along x at z = 10 µm, y = 15 µm; axons cross the field at random
    x = np.arange(0.0, 40.0, 0.25)
    centres = np.column_stack([np.full_like(x, 10.0), np.full_like(x, 15.0), x])
    radii = np.full(len(x), 0.8)
    box = ((9.0, 11.0), (0.0, 30.0), (0.0, 40.0))  # axons start within 1 µm of its depth
    rng = np.random.default_rng(4)
    segs, _ = make_axons(rng, box, 12, centres, (centres, radii), clearance=0.15)
    mid = segs.reshape(-1, 3)
    lateral = np.abs(mid[:, 1] - 15.0)
    surface = np.hypot(lateral, mid[:, 0] - 10.0) - 0.8
    assert surface.min() >= 0.15 + 0.15 - 1e-6  # clearance + the axon's largest radius
    crossing = (lateral < 0.8)
    assert crossing.sum() > 10  # axons pass right above or below the shaft ...
    assert (surface[crossing] < 1.0).any()  # ... close to it
    far, _ = make_axons(np.random.default_rng(4), box, 12, centres, (centres, radii),
                        clearance=2.0)
    far = far.reshape(-1, 3)
    assert (np.hypot(far[:, 1] - 15.0, far[:, 0] - 10.0) - 0.8 >= 2.0 + 0.15 - 1e-6).all()


def test_dynamics_places_spines_only_where_they_fit():
    """Every spine (initial, new, restored) is placed where ``fits`` accepts it; a spine
    given up for a row is followed by a fresh draw for that row."""
    branches = pd.DataFrame({"branch_id": np.arange(3), "length_um": np.full(3, 60.0)})
    calls = []

    def fits(index, branch_id, arc_um, session, present, draw):
        calls.append((index, draw))
        assert all(i < index for i in present)
        return arc_um < 20.0

    life, _ = simulate_presence(PRESETS["realistic"], branches, 4, np.random.default_rng(0),
                                fits=fits)
    assert len(life) > 10 and (life["arc_um"] < 20.0).all()
    assert life["first_session"].max() >= 1
    assert any(draw > 0 for _, draw in calls)
    none, _ = simulate_presence(PRESETS["realistic"], branches, 4, np.random.default_rng(0),
                                fits=lambda *args: False)
    assert len(none) == 0
