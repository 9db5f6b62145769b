import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from spinetrack.params import TraceParams
from spinetrack.trace import GRAPH_COLUMNS, LINE_COLUMNS, trace_dendrites

sys.path.insert(0, str(Path(__file__).parent))
from _tubes import VOXEL, tube_image  # noqa: E402


def test_straight_tube_is_one_branch_at_the_right_place():
    img, _ = tube_image(shaft_y_um=7.0, shaft_z_um=3.0)
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    assert list(tracing.lines.columns) == LINE_COLUMNS
    assert list(tracing.graph.columns) == GRAPH_COLUMNS
    assert tracing.n_branches == 1
    lines = tracing.lines
    assert np.abs(lines["y_um"] - 7.0).max() < 0.25
    assert np.abs(lines["z_um"] - 3.0).max() < 0.5
    # drawn from x = 1 to 28.9 µm; the ends fade over the blur
    assert 25.0 < tracing.graph["length_um"].iloc[0] < 28.5
    assert lines["radius_um"].between(0.25, 0.8).all()
    assert np.all(np.diff(lines["arc_um"]) > 0)
    assert tuple(tracing.graph[["start_kind", "end_kind"]].iloc[0]) == ("end", "end")


def test_spines_do_not_make_branches_and_short_twigs_are_pruned():
    spines = [(x, (-1) ** i, 1.2) for i, x in enumerate(np.arange(4.0, 26.0, 2.5))]
    img, _ = tube_image(spines=spines)
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    assert tracing.n_branches == 1


def test_side_branch_makes_a_junction():
    extra = [((3.0, 7.0, 15.0), (3.0, 13.5, 22.0))]
    img, _ = tube_image(extra_shafts=extra)
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    g = tracing.graph
    assert tracing.n_branches == 3
    kinds = pd.concat([g["start_kind"], g["end_kind"]])
    assert (kinds == "junction").sum() == 3
    nodes = pd.concat([g.loc[g.start_kind == "junction", "start_node"],
                       g.loc[g.end_kind == "junction", "end_node"]])
    assert nodes.nunique() == 1
    assert abs(g["length_um"].sum() - (27.9 + np.hypot(6.5, 7.0))) < 3.0


def test_dim_gap_is_bridged():
    img, _ = tube_image()
    img = img.copy()
    x0 = int(14.0 / VOXEL[2])
    img[:, :, x0:x0 + int(1.5 / VOXEL[2])] = 5  # a 1.5 µm stretch with no signal
    bridged = trace_dendrites(img, VOXEL, TraceParams(bridge_gap_um=3.0))
    assert bridged.n_branches == 1
    apart = trace_dendrites(img, VOXEL, TraceParams(bridge_gap_um=0.0))
    assert apart.n_branches == 2


def test_brightness_does_not_change_the_tracing():
    img, _ = tube_image()
    a = trace_dendrites(img, VOXEL, TraceParams())
    b = trace_dendrites((img * 0.3).astype(np.uint8), VOXEL, TraceParams())
    assert a.n_branches == b.n_branches == 1
    assert abs(a.graph["length_um"].iloc[0] - b.graph["length_um"].iloc[0]) < 1.0


def test_short_isolated_pieces_are_dropped():
    img, _ = tube_image(extra_shafts=[((3.0, 12.0, 10.0), (3.0, 12.0, 12.5))])
    tracing = trace_dendrites(img, VOXEL, TraceParams(min_branch_length_um=5.0))
    assert tracing.n_branches == 1


def test_empty_and_constant_images():
    for img in (np.zeros((4, 50, 50), np.uint8), np.full((4, 50, 50), 7, np.uint16)):
        tracing = trace_dendrites(img, VOXEL, TraceParams())
        assert tracing.n_branches == 0 and len(tracing.lines) == 0
        assert list(tracing.lines.columns) == LINE_COLUMNS


def test_plane_input_gives_z_zero():
    img, _ = tube_image(shape=(1, 140, 300), shaft_z_um=0.0)
    tracing = trace_dendrites(img[0], VOXEL, TraceParams())
    assert tracing.shape == (1, 140, 300)
    assert tracing.n_branches == 1 and (tracing.lines["z"] == 0).all()


def test_progress_is_reported():
    img, _ = tube_image()
    events = []
    trace_dendrites(img, VOXEL, TraceParams(), progress=lambda *a: events.append(a))
    assert events[0][1] == 0 and events[-1][1] == events[-1][2] > 0


def test_rr30a_centre_lines_are_found(rr30a):
    from scipy.spatial import cKDTree

    from spinetrack.io import read_session

    session = read_session(rr30a / "session0.tif")
    tracing = trace_dendrites(session.image, session.voxel_size_um, TraceParams())
    truth = pd.read_csv(rr30a / "truth_lines.csv").query("session == 0")
    d, i = cKDTree(tracing.lines[["y_um", "x_um"]]).query(truth[["y_um", "x_um"]])
    assert (d < 1.0).mean() > 0.95
    dz = np.abs(truth["z_um"].to_numpy() - tracing.lines["z_um"].to_numpy()[i])
    assert np.median(dz[d < 1.0]) < 1.0


def test_depth_stays_with_the_dendrite_under_a_crossing():
    from spinetrack.trace import _continuous_argmax

    z = np.arange(20)[:, None]
    prof = np.exp(-0.5 * ((z - 8) / 1.5) ** 2) * np.ones((1, 60))
    prof[:, 25:32] += 2.0 * np.exp(-0.5 * ((z - 15) / 1.5) ** 2)  # brighter, 7 planes deeper
    path = _continuous_argmax(prof, jump_cost=0.2)
    assert np.all(path == 8)
    assert np.argmax(prof[:, 28]) == 15


def test_dendrite_much_dimmer_than_its_neighbour_is_traced():
    # rr30a session 1: a thin dendrite a tenth as bright as the main one beside it; its
    # ridge is weak relative to the bright level but it stands well above the noise
    bright, _ = tube_image(shape=(12, 200, 300), shaft_y_um=6.0, noise=4.0, seed=1)
    dim, _ = tube_image(shape=(12, 200, 300), shaft_y_um=14.0, noise=0.0)
    img = np.clip(bright + (dim.astype(float) - 5.0) / 12.0, 0, 255).astype(np.uint8)
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    assert tracing.n_branches == 2
    on_dim = tracing.graph.loc[tracing.lines.groupby("branch_id")["y_um"].median().sub(14.0)
                               .abs().lt(0.5).to_numpy(), "length_um"]
    assert len(on_dim) == 1 and on_dim.iloc[0] > 25.0


def test_dim_dendrite_cut_off_at_two_crossings_is_traced_between_them(monkeypatch):
    # synthetic seed 1: a dim deep dendrite passes under two brighter ones 12 µm apart;
    # each stretch of it is shorter than an unseeded piece must be, and the bright ones'
    # ridges cut it off from them
    import spinetrack.trace as trace

    crossing = [((1.5, 0.5, x), (1.5, 19.5, x)) for x in (9.0, 21.0)]
    bright, _ = tube_image(shape=(12, 200, 300), shaft_y_um=-50.0, extra_shafts=crossing,
                           noise=4.0, seed=1)
    dim, _ = tube_image(shape=(12, 200, 300), shaft_y_um=10.0, shaft_z_um=4.5, noise=0.0)
    img = np.clip(bright + (dim.astype(float) - 5.0) / 6.0, 0, 255).astype(np.uint8)
    between = np.column_stack([np.full(35, 10.0), np.arange(11.0, 19.75, 0.25)])

    def found(tracing):
        d, i = cKDTree(tracing.lines[["y_um", "x_um"]]).query(between)
        return (d < 0.5).mean(), np.median(tracing.lines["z_um"].to_numpy()[i])

    covered, depth = found(trace_dendrites(img, VOXEL, TraceParams()))
    assert covered == 1.0 and abs(depth - 4.5) < 0.5
    monkeypatch.setattr(trace, "_cut_off_stretches", lambda *a, **k: np.zeros(a[3], bool))
    assert found(trace_dendrites(img, VOXEL, TraceParams()))[0] == 0.0  # lost without it


def test_noise_only_stack_traces_nothing(rng):
    img = rng.normal(20.0, 4.0, (12, 200, 300)).clip(0, 255).astype(np.uint8)
    assert trace_dendrites(img, VOXEL, TraceParams()).n_branches == 0


def test_diffuse_glow_beside_a_dendrite_makes_no_branch():
    img, _ = tube_image(shape=(12, 200, 300), shaft_y_um=6.0, noise=4.0, seed=1)
    zz, yy, xx = np.meshgrid(*(np.arange(n) * v for n, v in zip(img.shape, VOXEL)),
                             indexing="ij")
    glow = 20.0 * np.exp(-((yy - 14.0) ** 2 + (xx - 15.0) ** 2) / (2 * 3.0 ** 2)
                         - (zz - 3.0) ** 2 / (2 * 2.0 ** 2))
    img = np.clip(img + glow, 0, 255).astype(np.uint8)
    assert trace_dendrites(img, VOXEL, TraceParams()).n_branches == 1


def _with_hazy_body(img, centre_yx_um, level, radius_um=4.0, seed=0):
    """Add a textured, diffuse cell body (haze with ridges of its own) to a stack."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed + 100)
    zz, yy, xx = np.meshgrid(*(np.arange(n) * v for n, v in zip(img.shape, VOXEL)),
                             indexing="ij")
    r = np.hypot(yy - centre_yx_um[0], xx - centre_yx_um[1])
    body = np.exp(-(zz - 3.0) ** 2 / (2 * 2.0 ** 2)) / (1.0 + np.exp((r - radius_um) / 0.5))
    texture = ndi.gaussian_filter(rng.normal(0, 1, img.shape), (1.0, 4.0, 4.0))
    texture = 1.0 + 0.5 * texture / texture.std()
    return np.clip(img + level * body * texture, 0, 255).astype(np.uint8)


def test_hazy_cell_body_beside_a_dendrite_makes_no_branch():
    tube, _ = tube_image(shape=(12, 200, 300), shaft_y_um=6.0, noise=4.0, seed=0)
    img = _with_hazy_body(tube, (12.0, 15.0), level=40.0)
    # the haze has ridges: without the contrast test it is traced as a net of branches
    assert trace_dendrites(img, VOXEL, TraceParams(haze_ring_um=0.0)).n_branches > 3
    # pieces spanning more than haze_max_um are never judged
    assert trace_dendrites(img, VOXEL, TraceParams(haze_max_um=2.0)).n_branches > 3
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    assert tracing.n_branches == 1
    assert np.abs(tracing.lines["y_um"] - 6.0).max() < 0.3
    assert tracing.graph["length_um"].iloc[0] > 25.0


def test_haze_touching_a_dendrite_leaves_the_dendrite_alone():
    tube, _ = tube_image(shape=(12, 200, 300), shaft_y_um=6.0, noise=4.0, seed=1)
    img = _with_hazy_body(tube, (10.0, 15.0), level=40.0, seed=1)
    assert trace_dendrites(img, VOXEL, TraceParams(haze_ring_um=0.0)).n_branches > 1
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    assert tracing.n_branches == 1
    assert np.abs(tracing.lines["y_um"] - 6.0).max() < 0.3
    assert tracing.graph["length_um"].iloc[0] > 25.0


def test_dim_dendrite_next_to_haze_is_still_traced():
    bright, _ = tube_image(shape=(12, 260, 300), shaft_y_um=6.0, noise=4.0, seed=2)
    dim, _ = tube_image(shape=(12, 260, 300), shaft_y_um=14.0, noise=0.0)
    img = np.clip(bright + (dim.astype(float) - 5.0) / 12.0, 0, 255).astype(np.uint8)
    img = _with_hazy_body(img, (20.5, 15.0), level=20.0, radius_um=3.5, seed=2)
    assert trace_dendrites(img, VOXEL, TraceParams(haze_ring_um=0.0)).n_branches > 2
    tracing = trace_dendrites(img, VOXEL, TraceParams())
    assert tracing.n_branches == 2
    on_dim = tracing.graph.loc[tracing.lines.groupby("branch_id")["y_um"].median().sub(14.0)
                               .abs().lt(0.5).to_numpy(), "length_um"]
    assert len(on_dim) == 1 and on_dim.iloc[0] > 25.0


def test_ring_contrast_of_a_line_and_of_haze():
    from spinetrack.trace import _ring_contrast

    yy, xx = np.mgrid[0:60, 0:100].astype(float)
    line = np.exp(-((yy - 30.0) ** 2) / (2 * 2.5 ** 2))
    path = np.column_stack([np.full(60, 30.0), np.arange(20.0, 80.0)])
    on_line = _ring_contrast(line, path, (0.2, 0.2), 2.0)
    assert np.median(on_line) > 0.95
    haze = 1.0 + 0.05 * np.sin(xx / 3.0) + 0.1 * line
    assert abs(np.median(_ring_contrast(haze, path, (0.2, 0.2), 2.0))) < 0.15


def test_ring_contrast_dimmer_side_tells_haze_edge_from_haze_inside():
    from spinetrack.trace import _ring_contrast

    yy, xx = np.mgrid[0:60, 0:100].astype(float)
    line = np.exp(-((yy - 30.0) ** 2) / (2 * 2.5 ** 2))
    path = np.column_stack([np.full(60, 30.0), np.arange(20.0, 80.0)])
    # haze on one side only (a line along the edge of a cell body)
    edge = line + 0.8 * (yy > 36)
    assert np.median(_ring_contrast(edge, path, (0.2, 0.2), 2.0)) < 0.3
    assert np.median(_ring_contrast(edge, path, (0.2, 0.2), 2.0, "dimmer")) > 0.9
    inside = 0.2 * line + 0.8
    assert np.median(_ring_contrast(inside, path, (0.2, 0.2), 2.0, "dimmer")) < 0.3
