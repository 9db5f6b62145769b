import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinetrack.cli import main
from spinetrack.detect import DETECTION_COLUMNS, detect_session, detect_spines
from spinetrack.errors import Cancelled
from spinetrack.io import Session, write_session
from spinetrack.params import Params
from spinetrack.trace import trace_dendrites, tracing_from_lines

sys.path.insert(0, str(Path(__file__).parent))
from _tubes import VOXEL, tube_image  # noqa: E402

SPINES = [(5.0, 1, 1.0), (9.0, -1, 1.2), (13.0, 1, 0.8), (18.0, -1, 1.5), (22.0, 1, 1.0)]


def _detect(img, voxel=VOXEL):
    p = Params()
    tracing = trace_dendrites(img, voxel, p.trace)
    return tracing, detect_spines(img, voxel, tracing, p.detect)


def _matched(found: pd.DataFrame, heads_um: np.ndarray, tol_um: float = 0.5) -> int:
    if not len(found) or not len(heads_um):
        return 0
    pos = found[["z_um", "y_um", "x_um"]].to_numpy()
    d = np.linalg.norm((pos[:, None, :] - heads_um[None]) * [0.3, 1, 1], axis=2)
    return int((d.min(axis=0) <= tol_um).sum())


@pytest.fixture(scope="module")
def tube():
    return tube_image(spines=SPINES, boutons=[(26.0, 1, 2.2)], filopodia=[(15.5, -1, 3.0)])


def test_finds_every_spine_head_and_nothing_else(tube):
    img, truth = tube
    _, found = _detect(img)
    assert list(found.columns) == DETECTION_COLUMNS
    spines = found[found["kind"] == "spine"]
    assert _matched(spines, truth["heads_um"]) == len(SPINES)
    assert len(spines) == len(SPINES)


def test_spine_measurements(tube):
    img, truth = tube
    _, found = _detect(img)
    spines = found[found["kind"] == "spine"].sort_values("x_um")
    # side: +1 is towards smaller y for a branch running towards larger x (the
    # tracing may run either way; the sign flips with it)
    flip = 1 if spines.iloc[0]["arc_um"] < spines.iloc[-1]["arc_um"] else -1
    assert (spines["side"].to_numpy() * flip).tolist() == [s for _, s, _ in SPINES]
    expected = np.array([length for _, _, length in SPINES])
    assert np.abs(spines["length_um"].to_numpy() - expected).max() < 0.5
    assert np.all(np.abs(spines["base_y"].to_numpy() * VOXEL[1] - 7.0) < 0.3)
    assert spines["score"].gt(0).all() and spines["head_radius_um"].between(0.1, 1.0).all()


def test_bouton_beside_the_dendrite_is_not_a_spine(tube):
    img, _ = tube
    _, found = _detect(img)
    near_bouton = (found["x_um"] - 26.0).abs() < 1.0
    assert not near_bouton.any()


def test_filopodium_is_labelled_and_not_counted_as_spine(tube):
    img, truth = tube
    _, found = _detect(img)
    filo = found[found["kind"] == "filopodium"]
    assert _matched(filo, truth["filopodia_um"], tol_um=1.0) == 1
    on_stalk = (found["kind"] == "spine") & ((found["x_um"] - 15.5).abs() < 0.6)
    assert not on_stalk.any()


def test_same_calls_on_a_dim_copy(tube):
    img, _ = tube
    _, bright = _detect(img)
    _, dim = _detect((img.astype(float) * 0.4).round().astype(np.uint8))
    assert len(dim) == len(bright)
    assert np.allclose(dim["head_intensity"], bright["head_intensity"], atol=0.15)


def test_empty_stack_gives_no_spines_and_no_error():
    img = np.zeros((5, 64, 64), np.uint8)
    tracing, found = _detect(img)
    assert tracing.n_branches == 0 and len(tracing.lines) == 0
    assert len(found) == 0 and list(found.columns) == DETECTION_COLUMNS


def test_noise_only_stack_gives_no_spines(rng):
    img = rng.poisson(3.0, (6, 120, 120)).astype(np.uint8)
    _, found = _detect(img)
    assert len(found) == 0


def test_single_plane():
    img, truth = tube_image(shape=(1, 140, 300), spines=SPINES, shaft_z_um=0.0)
    tracing, found = _detect(img[0])
    assert tracing.n_branches == 1 and tracing.lines["z"].eq(0).all()
    spines = found[found["kind"] == "spine"]
    assert _matched(spines, truth["heads_um"]) == len(SPINES)


def test_no_lines_means_no_detections(tube):
    img, _ = tube
    empty = tracing_from_lines(pd.DataFrame(columns=["branch_id", "z", "y", "x"]), VOXEL,
                               img.shape)
    assert len(detect_spines(img, VOXEL, empty, Params().detect)) == 0


def test_progress_reports_and_cancels(tube):
    img, _ = tube
    events = []
    session = Session(image=img, voxel_size_um=VOXEL, name="t")
    detect_session(session, Params(), progress=lambda *a: events.append(a))
    assert any(s == "detect" and d == t and t > 0 for s, d, t in events)

    def stop(stage, done, total):
        if stage == "detect" and done > 0:
            raise Cancelled()

    with pytest.raises(Cancelled):
        detect_session(session, Params(), progress=stop)


def test_cli_writes_tables(tube, tmp_path):
    img, _ = tube
    path = write_session(tmp_path / "day0.tif", img, VOXEL)
    out = tmp_path / "out"
    assert main(["-q", "detect", str(path), "--out", str(out), "--min-protrusion-um", "0.3"]) == 0
    spines = pd.read_csv(out / "day0_spines.csv")
    lines = pd.read_csv(out / "day0_lines.csv")
    assert len(spines) == len(SPINES) and set(DETECTION_COLUMNS) <= set(spines.columns)
    assert lines["branch_id"].nunique() == 1
    assert (out / "day0_graph.csv").exists() and (out / "day0_filopodia.csv").exists()


def test_cli_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    assert main(["detect", str(bad), "--out", str(tmp_path / "o"), "--voxel-size", "1", "0.1",
                 "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.tif" in err[0]


def test_rr30a_session_finds_most_annotated_spines(rr30a):
    from spinetrack.compare import compare, load_truth
    from spinetrack.io import read_session

    session = read_session(rr30a / "session1.tif")
    _, found = detect_session(session, Params())
    spines = found[found["kind"] == "spine"].assign(session=1)
    scores = compare(spines, load_truth(rr30a), near_um=3, sessions=[1])
    assert scores["detection"]["total"]["f1"] >= 0.6


def test_spine_along_z_is_found_unless_turned_off():
    img, truth = tube_image(shape=(16, 140, 300), spines=[(10.0, 0, 1.8), (20.0, 1, 1.0)])
    p = Params()
    tracing = trace_dendrites(img, VOXEL, p.trace)
    found = detect_spines(img, VOXEL, tracing, p.detect)
    assert _matched(found, truth["heads_um"][:1], tol_um=0.8) == 1
    assert found.loc[(found["x_um"] - 10.0).abs() < 0.6, "side"].tolist() == [0]
    lateral_only = detect_spines(img, VOXEL, tracing, p.detect.__class__(z_spines=False))
    assert _matched(lateral_only, truth["heads_um"][:1], tol_um=0.8) == 0
    assert _matched(lateral_only, truth["heads_um"][1:]) == 1


def test_neurite_crossing_above_the_shaft_is_not_a_spine_along_z():
    # a thin neurite 2 µm above the dendrite, crossing it at x = 15 µm; only the
    # dendrite is given as a centre line, so the crossing must be rejected by its
    # shape (wider across the branch than a head), not as another branch's shaft
    img, truth = tube_image(shape=(16, 140, 300), spines=[(20.0, 1, 1.0)],
                            extra_shafts=[((5.0, 0.5, 15.0), (5.0, 13.5, 15.0))])
    xs = np.arange(10, 290, dtype=float)
    lines = pd.DataFrame({"branch_id": 0, "z": 3.0 / VOXEL[0], "y": 7.0 / VOXEL[1], "x": xs})
    tracing = tracing_from_lines(lines, VOXEL, img.shape, radius_um=0.45)
    found = detect_spines(img, VOXEL, tracing, Params().detect)
    assert not ((found["x_um"] - 15.0).abs() < 1.0).any()
    assert _matched(found[found["kind"] == "spine"], truth["heads_um"]) == 1


def test_spine_of_a_dendrite_hidden_under_the_traced_one_is_found():
    # a second dendrite 6 µm below the first, 0.3 µm aside, overlaps it in the projection;
    # only the upper one is given as a centre line (as tracing on the projection gives
    # one line), so the lower one's spine is found on a hidden line and reported on the
    # traced branch, at its own depth
    deep = 9.0
    img, truth = tube_image(shape=(24, 140, 300), spines=[(22.0, 1, 1.0)],
                            extra_shafts=[((deep, 7.3, 1.0), (deep, 7.3, 28.9)),
                                          ((deep, 7.3, 12.0), (deep, 5.6, 12.0))])
    xs = np.arange(10, 290, dtype=float)
    lines = pd.DataFrame({"branch_id": 3, "z": 3.0 / VOXEL[0], "y": 7.0 / VOXEL[1], "x": xs})
    tracing = tracing_from_lines(lines, VOXEL, img.shape, radius_um=0.45)
    found = detect_spines(img, VOXEL, tracing, Params().detect)
    spines = found[found["kind"] == "spine"]
    assert _matched(spines, np.array([[deep, 5.7, 12.0]]), tol_um=0.8) == 1
    hit = spines[(spines["x_um"] - 12.0).abs() < 0.8]
    assert (hit["branch_id"] == 3).all()
    assert (hit["base_z"] * VOXEL[0] - deep).abs().max() < 1.0
    assert _matched(spines, truth["heads_um"]) == 1
    assert len(spines) == 2


def test_branches_are_straightened_beyond_their_ends():
    # the shaft model needs context beyond a branch's end (a junction or a cut): the
    # resampled points go on straight along the end tangent, with the arc continuing
    from spinetrack.detect import _END_EXT_UM, _extend_ends, _Frame

    t = np.linspace(0, np.pi / 2, 60)
    lines = pd.DataFrame({"branch_id": 0, "z": 4.0, "y": 70 + 50 * np.sin(t),
                          "x": 70 + 50 * np.cos(t), "radius_um": 0.5})
    lines["arc_um"] = np.r_[0, np.cumsum(np.hypot(np.diff(lines["y"]), np.diff(lines["x"])))] * 0.1
    pts = _Frame(lines, np.array(VOXEL), 0.1).points
    n = int(round(_END_EXT_UM / 0.1))
    ext = _extend_ends(pts, n, VOXEL)
    assert len(ext) == len(pts) + 2 * n
    pd.testing.assert_frame_equal(ext.iloc[n:n + len(pts)].reset_index(drop=True), pts)
    assert np.allclose(np.diff(ext["arc_um"]), np.diff(ext["arc_um"]).mean(), atol=0.02)
    for part, end in ((ext.iloc[:n + 1], pts.iloc[0]), (ext.iloc[-n - 1:], pts.iloc[-1])):
        step_yx = np.diff(part[["y", "x"]].to_numpy() * 0.1, axis=0)
        assert np.allclose(step_yx, 0.1 * np.array([end["ty"], end["tx"]]), atol=1e-6)
        assert (part["z"] == end["z"]).all()


@pytest.mark.parametrize("bend_um", [0.9, 1.2])
def test_head_that_pulled_the_traced_line_towards_it_is_found(bend_um):
    # tracing lets a big head pull the centre line towards it for about a micrometre;
    # the head then lay on the line (missed) or the bend gave a false call
    img, truth = tube_image(spines=[(15.0, 1, 0.8), (22.0, -1, 1.0)])
    xs = np.arange(10, 290, dtype=float)
    y_um = 7.0 - bend_um * np.exp(-0.5 * ((xs * VOXEL[2] - 15.0) / 0.4) ** 2)
    lines = pd.DataFrame({"branch_id": 0, "z": 3.0 / VOXEL[0], "y": y_um / VOXEL[1], "x": xs})
    tracing = tracing_from_lines(lines, VOXEL, img.shape, radius_um=0.45)
    found = detect_spines(img, VOXEL, tracing, Params().detect)
    spines = found[found["kind"] == "spine"]
    assert _matched(spines, truth["heads_um"]) == 2
    assert len(spines) == 2


def test_maxima_stacked_along_z_are_one_head():
    from spinetrack.detect import _dedupe

    # one head's axial blur: the same (y, x), 2 µm apart in z; a neighbour 1 µm away laterally
    df = pd.DataFrame({"z_um": [10.0, 12.0, 10.0], "y_um": [5.0, 5.0, 6.0],
                       "x_um": [5.0, 5.0, 5.0], "score": [0.2, 0.3, 0.1]})
    out = _dedupe(df, VOXEL)
    assert sorted(out["score"]) == [0.1, 0.3]


def test_head_of_a_spine_rising_along_z_gets_its_own_depth():
    # stubby spines whose brightest point is the base, rising 2 µm towards their heads: the
    # walk out leaves the base's plane, the head's depth is where its column peaks
    from scipy import ndimage as ndi

    from _tubes import _segment_distance

    voxel, shape = (0.5, 0.1, 0.1), (16, 140, 300)
    zz, yy, xx = np.meshgrid(*(np.arange(n) * v for n, v in zip(shape, voxel)), indexing="ij")
    img = 1.0 * (_segment_distance(zz, yy, xx, (4.0, 7.0, 1.0), (4.0, 7.0, 28.9)) <= 0.45)
    heads = []
    for i, x in enumerate((6.0, 12.0, 18.0, 24.0)):
        head = (6.0, 7.0 - (-1) ** i * 1.8, x)
        img = np.maximum(img, 0.8 * (_segment_distance(zz, yy, xx, (4.0, 7.0, x), head) <= 0.3))
        img = np.maximum(img, 0.5 * (_segment_distance(zz, yy, xx, head, head) <= 0.35))
        heads.append(head)
    img = ndi.gaussian_filter(img, (0.6 / voxel[0], 0.15, 0.15)) * 200 + 5
    img = img + np.random.default_rng(0).normal(0, 4, shape)
    _, found = _detect(np.clip(img, 0, 255).astype(np.uint8), voxel)
    found = found[found["kind"] == "spine"]
    assert _matched(found, np.array(heads), tol_um=0.5) == 4
    nearest = [found.iloc[np.argmin(np.hypot(found["y_um"] - y, found["x_um"] - x))]
               for _, y, x in heads]
    assert all(abs(row["z_um"] - 6.0) < 0.5 for row in nearest)


def test_head_beside_a_brighter_blob_in_another_plane_is_found():
    # a bouton 2 µm above a spine's head and 0.5 µm farther out is brighter in the residual
    # within the peak footprint (±1.5 µm in z), so the head was no maximum; the bouton
    # itself fails the tests, and the head had no candidate. Maxima within their own
    # plane are candidates too.
    from scipy import ndimage as ndi

    from _tubes import _segment_distance

    img, truth = tube_image(spines=[(15.0, 1, 1.0)])
    head = truth["heads_um"][0]
    zz, yy, xx = np.meshgrid(*(np.arange(n) * v for n, v in zip(img.shape, VOXEL)),
                             indexing="ij")
    blob = head + np.array([2.0, -0.5, 0.0])
    blob_img = 1.0 * (_segment_distance(zz, yy, xx, blob, blob) <= 0.4)
    blob_img = ndi.gaussian_filter(blob_img, (0.6 / VOXEL[0], 1.5, 1.5)) * 200
    img = np.clip(img + blob_img, 0, 255).astype(np.uint8)
    _, found = _detect(img)
    spines = found[found["kind"] == "spine"]
    assert len(spines) == 1
    assert _matched(spines, truth["heads_um"], tol_um=0.3) == 1


def test_maxima_within_one_plane_on_the_shaft_flank_are_not_kept():
    from spinetrack.detect import _plane_margin

    cands = pd.DataFrame({"plane_peak": [False, True, True, True],
                          "lateral": [True, True, True, False],
                          "slope": [0.9, 0.1, 0.9, 0.0]})
    assert (_plane_margin(cands) >= 0).tolist() == [True, True, False, False]


def test_specks_thinner_along_z_than_the_blur_beside_the_shaft_are_not_heads():
    # rr30a's commonest false calls sit just above or below the shaft, inside its axial
    # blur: residual maxima confined to one plane. A real head rising obliquely 2 µm above
    # the shaft is blurred along z like the shaft and stays.
    from scipy import ndimage as ndi

    from _tubes import _segment_distance

    voxel, shape = (1.0, 0.12, 0.12), (16, 120, 260)
    zz, yy, xx = np.meshgrid(*(np.arange(n) * v for n, v in zip(shape, voxel)), indexing="ij")
    img = 1.0 * (_segment_distance(zz, yy, xx, (7.0, 7.0, 0.5), (7.0, 7.0, 30.5)) <= 0.6)
    head = (9.0, 7.8, 10.0)
    img = np.maximum(img, 0.25 * (_segment_distance(zz, yy, xx, (7.0, 7.0, 10.0), head) <= 0.15))
    img = np.maximum(img, 1.0 * (_segment_distance(zz, yy, xx, head, head) <= 0.4))
    img = ndi.gaussian_filter(img, (1.0 / voxel[0], 0.2 / voxel[1], 0.2 / voxel[2])) * 150 + 5
    for z, dy, x in ((9.0, 0.6, 18.0), (5.0, -0.6, 23.0)):
        speck = (zz == z) & (np.hypot(yy - 7.0 - dy, xx - x) <= 0.35)
        img = img + 25 * ndi.gaussian_filter(speck.astype(float), (0, 1.25, 1.25))
    img = img + np.random.default_rng(0).normal(0, 2, shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    lines = pd.DataFrame({"branch_id": 0, "z": 7.0, "y": 7.0 / voxel[1],
                          "x": np.arange(8, 250, dtype=float)})
    tracing = tracing_from_lines(lines, voxel, img.shape, radius_um=0.6)
    found = detect_spines(img, voxel, tracing, Params().detect)
    spines = found[found["kind"] == "spine"]
    assert _matched(spines, np.array([head]), tol_um=0.6) == 1
    assert not ((spines["x_um"] - 18.0).abs() < 1.0).any()
    assert not ((spines["x_um"] - 23.0).abs() < 1.0).any()
    assert len(spines) == 1


def _one_candidate(**over):
    """A lateral candidate that passes every selection test, with fields overridden."""
    row = {"lateral": True, "plane_peak": False, "side": 1, "resid": 0.3, "value": 0.5,
           "neck_min": 0.4, "noise": 0.01, "offset_um": 1.5, "surface_um": 0.8,
           "outer": 0.3, "slope": 0.1, "xwidth_um": 0.8, "zwidth_um": 3.0,
           "shaft_zwidth_um": 3.0}
    row.update(over)
    return pd.DataFrame([row])


@pytest.mark.parametrize("over, length, test, expected", [
    ({}, 1.0, None, None),
    ({}, 0.04, "centre", -0.2),                    # 0.06 µm short of 0.1 µm, in 0.3 µm units
    ({"offset_um": 0.5}, 1.0, "surface", -0.5),   # 0.15 µm inside surface − slack
    ({"outer": 0.7}, 1.0, "outer", -5.0),         # 0.1 × head 0.5 over noise 0.01
    ({"neck_min": 0.05}, 1.0, "neck", -2.0),      # (0.05 − 0.04) / 0.01 − 3
    ({"plane_peak": True, "slope": 0.45}, 1.0, "plane", -0.5),
])
def test_selection_margins_are_in_units_of_each_tests_scale(over, length, test, expected):
    from spinetrack.detect import _accept, _margins

    p = Params().detect
    m = _margins(_one_candidate(**over), np.array([length]), np.array([0.5]), p)
    failing = m.columns[(m < 0).iloc[0]].tolist()
    assert failing == ([] if test is None else [test])
    if test is not None:
        assert m[test].iloc[0] == pytest.approx(expected, abs=1e-6)
    assert _accept(m).tolist() == [test is None]


def test_far_side_haze_ignores_a_bright_structure_in_part_of_the_window():
    from spinetrack.detect import _haze

    step, centre = 0.12, 40
    vol = np.full((60, 3, 81), 0.1, np.float32)
    vol[:, :, centre - 5:centre + 6] = 1.0  # shaft
    vol[30, 1, centre + 10] = 0.6  # head 1.2 µm out
    vol[:, :, centre + 18:centre + 21] += 0.5  # a neurite at the far end of the window
    vol += np.random.default_rng(0).normal(0, 0.01, vol.shape).astype(np.float32)
    out = _haze(vol, np.array([30]), np.array([1]), np.array([centre + 10]), centre, step)
    assert out["haze_level"][0] == pytest.approx(0.1, abs=0.015)  # the window's mean is 0.29
    assert 0.005 <= out["haze_sd"][0] <= 0.02  # the noise is 0.01; the neurite adds 0.5


def test_candidate_table_carries_each_tests_margin(tube):
    from spinetrack.detect import _candidates, _select

    img, _ = tube
    p = Params()
    tracing = trace_dendrites(img, VOXEL, p.trace)
    cands, frame = _candidates(img, VOXEL, tracing, p.detect, None)
    table = _select(cands, frame, p.detect, features=True)
    margins = table[[c for c in table.columns if c.startswith("margin_")]]
    assert margins.shape[1] == 10
    passes = (margins >= 0).all(axis=1)
    assert (table["keep"] | ~passes).all()  # every candidate passing all tests is kept ...
    assert (passes | ~table["keep"] | table["fill"]).all()  # ... the others only to fill gaps
    assert table["keep"].any() and not table["keep"].all()
    assert np.isfinite(table["far_contrast"]).all()


def _edge_volume(edge_px, step=0.12, centre=30):
    """A straightened plane whose shaft reaches ``edge_px[a]`` samples out at arc ``a``."""
    n = len(edge_px)
    vol = np.zeros((n, 1, 2 * centre + 1), np.float32)
    for a, e in enumerate(edge_px):
        vol[a, 0, centre - 5:centre + e + 1] = 1.0
    return vol, step, centre


@pytest.mark.parametrize("shape, expected", [
    ("straight", 0.0),
    ("bump", 0.36),     # 3 samples out over 0.5 µm of arc
    ("taper", 0.0),     # the shaft widens towards one side only: no bulge
])
def test_outline_bulge_is_a_protrusion_beyond_both_sides(shape, expected):
    from spinetrack.detect import _outline_bulge

    edge = np.full(41, 5)
    if shape == "bump":
        edge[18:23] = 8
    elif shape == "taper":
        edge[20:] = 7
    vol, step, centre = _edge_volume(edge)
    a = 20
    got = _outline_bulge(vol, np.array([a]), np.array([0]), np.array([centre + edge[a]]),
                         centre, step)
    assert got[0] == pytest.approx(expected, abs=1e-5)


def test_flank_maxima_fill_only_gaps_between_kept_calls():
    from spinetrack.detect import _gap_fillers, _may_fill

    names = ["centre", "surface", "plane", "neck"]
    margins = pd.DataFrame([[1, 1, -2, 5], [1, 1, -2, 5], [-1, 1, -2, 5], [1, 1, 1, 5]],
                           columns=names)
    cands = pd.DataFrame({"bulge_um": [0.24, 0.0, 0.24, 0.24]})
    assert _may_fill(margins, cands).tolist() == [True, False, False, False]

    voxel = np.array([1.0, 0.12, 0.12])
    x_um = np.array([10.0, 11.0, 14.0, 20.0, 1.2])  # a kept call, then four flank maxima
    calls = pd.DataFrame({"z_um": 5.0, "y_um": 10.0, "x_um": x_um, "z": 5.0,
                          "y": 10.0 / 0.12, "x": x_um / 0.12, "score": 1.0,
                          "kind": "spine", "branch_id": 0, "side": 1, "arc_um": x_um,
                          "length_um": 0.5})
    keep = np.array([True, False, False, False, False])
    fill = ~keep
    got = _gap_fillers(calls, keep, fill, voxel, shape=(20, 400, 400))
    # 1 µm from the kept call: its blur; 1.2 µm from the image's edge: no outline there
    assert got.tolist() == [False, False, True, True, False]
    assert _gap_fillers(calls, keep, fill, voxel).tolist() == [False, False, True, True, True]


def test_big_heads_failing_only_the_fall_off_are_rescued_into_gaps():
    from spinetrack.detect import _gap_fillers, _may_rescue

    names = ["centre", "outer", "plane"]
    margins = pd.DataFrame([[1, -1, 1], [1, -1, 1], [-1, -1, 1], [1, 1, 1]], columns=names)
    # residual 0.6 µm beyond: a head that has ended, haze (flat residual), ..., a kept call
    cands = pd.DataFrame({"outer_resid": [0.1, 0.8, 0.1, 0.1]})
    assert _may_rescue(margins, cands).tolist() == [True, False, False, False]

    voxel = np.array([1.0, 0.12, 0.12])
    x_um = np.array([10.0, 10.8, 11.2, 14.0])  # a kept call, then three rescued heads
    calls = pd.DataFrame({"z_um": 5.0, "y_um": 10.0, "x_um": x_um, "z": 5.0,
                          "y": 10.0 / 0.12, "x": x_um / 0.12, "score": 1.0,
                          "kind": "spine", "branch_id": 0, "side": 1, "arc_um": x_um,
                          "length_um": 0.5})
    keep = np.array([True, False, False, False])
    got = _gap_fillers(calls, keep, ~keep, voxel, reach_um=1.0)
    assert got.tolist() == [False, False, True, True]  # 0.8 µm from the kept call: its blur


def test_free_end_hooking_into_a_spine_is_straightened():
    from spinetrack.detect import _straight_free_ends

    voxel = np.array([1.0, 0.1, 0.1])
    x = np.arange(0.0, 20.0, 0.1)  # µm along a straight line at y = 10 µm ...
    y = np.full_like(x, 10.0)
    hook = x > 18.5  # ... whose last 1.5 µm turn off by up to 1.5 µm (into a head)
    y[hook] += x[hook] - 18.5
    arc = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    lines = pd.DataFrame({"branch_id": 0, "z": 5.0, "y": y / 0.1, "x": x / 0.1,
                          "arc_um": arc, "radius_um": 0.5})

    def graph(end_kind):
        return pd.DataFrame({"branch_id": [0], "start_kind": ["junction"],
                             "end_kind": [end_kind]})

    out = _straight_free_ends(lines, graph("end"), voxel, shape=(10, 400, 400))
    assert np.abs(out["y"].to_numpy() * 0.1 - 10.0).max() < 0.05
    assert np.allclose(out[["z", "arc_um"]], lines[["z", "arc_um"]])
    # a junction, or an end at the image's edge (the skeleton bends there), stays
    kept = _straight_free_ends(lines, graph("junction"), voxel, shape=(10, 400, 400))
    assert np.allclose(kept["y"], lines["y"])
    at_edge = _straight_free_ends(lines, graph("end"), voxel, shape=(10, 400, 210))
    assert np.allclose(at_edge["y"], lines["y"])
    # a gentle bend (0.3 µm over the last 2 µm) is the dendrite's own
    y_gentle = 10.0 + 0.075 * np.clip(x - 18.0, 0, None) ** 2
    gentle = lines.assign(y=y_gentle / 0.1, arc_um=np.r_[0.0, np.cumsum(
        np.hypot(np.diff(x), np.diff(y_gentle)))])
    assert np.allclose(_straight_free_ends(gentle, graph("end"), voxel)["y"], gentle["y"])
