import json

import numpy as np
import pandas as pd
import pytest

from spinetrack.errors import InputError
from spinetrack.io import Series, Session
from spinetrack.params import RegisterParams
from spinetrack.register import (Registration, register_series, resample_polyline,
                                 rotation_angle_deg, rotation_matrix)
from spinetrack.trace import tracing_from_lines

VOX = (1.0, 0.25, 0.25)


def _curvy_lines(rng, n_branches=4):
    """Centre lines (µm) of a few wavy dendrites at different depths across a 60 µm field."""
    branches = []
    for b in range(n_branches):
        s = np.linspace(0, 50, 400)
        angle = rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)])
        start = np.array([30.0, 30.0]) - 25 * d
        y = start[0] + s * d[0] + 3 * np.sin(s / 6 + b) * -d[1]
        x = start[1] + s * d[1] + 3 * np.sin(s / 6 + b) * d[0]
        z = 6 + 2 * b + 1.5 * np.sin(s / 15)
        branches.append(np.stack([z, y, x], 1))
    return branches


def _tracing(branches_um, transform=None):
    rows = []
    for b, pts in enumerate(branches_um):
        if transform is not None:
            pts = transform(pts)
        px = pts / np.array(VOX)
        rows.append(pd.DataFrame({"branch_id": b, "z": px[:, 0], "y": px[:, 1], "x": px[:, 2]}))
    return tracing_from_lines(pd.concat(rows, ignore_index=True), VOX, (16, 240, 240))


def test_rotation_matrix_angle():
    assert rotation_angle_deg(rotation_matrix((3.0, 0, 0))) == pytest.approx(3.0)
    r = rotation_matrix((2.0, 1.0, -1.0))
    assert np.allclose(r @ r.T, np.eye(3))


def test_lines_recover_shift_rotation_and_tilt(rng):
    branches = _curvy_lines(rng)
    a_true = rotation_matrix((4.0, 1.5, -1.0))
    b_true = np.array([1.2, -2.5, 1.8])
    centre = np.array([8.0, 30.0, 30.0])
    # session 1 = inverse of the map to the reference
    to_s1 = lambda p: (p - b_true - centre) @ a_true + centre  # noqa: E731
    t0, t1 = _tracing(branches), _tracing(branches, to_s1)
    reg = register_series(None, [t0, t1], RegisterParams(local_scale_um=0))
    p1 = t1.lines[["z_um", "y_um", "x_um"]].to_numpy()
    p0 = t0.lines[["z_um", "y_um", "x_um"]].to_numpy()
    err = np.linalg.norm(reg.to_reference(1, p1) - p0, axis=1)
    assert np.median(err) < 0.1
    assert reg.report.loc[1, "rotation_deg"] == pytest.approx(rotation_angle_deg(a_true), abs=0.3)
    assert reg.report.loc[1, "residual_um"] < 0.1
    assert reg.report.loc[1, "n_pairs"] > 100
    assert reg.report.loc[1, "paired_fraction"] > 0.9


def test_a_session_of_another_field_pairs_few_of_its_lines(rng):
    from spinetrack.pipeline import _unpaired_sessions
    from spinetrack.register import MIN_PAIRED_FRACTION

    other = _curvy_lines(np.random.default_rng(99))
    reg = register_series(None, [_tracing(_curvy_lines(rng)), _tracing(other)],
                          RegisterParams(local_scale_um=0))
    frac = reg.report.loc[1, "paired_fraction"]
    assert frac < MIN_PAIRED_FRACTION
    (warning,) = _unpaired_sessions(reg.report, ["day0", "day4"])
    assert warning.startswith(f"day4: only {frac:.0%} of its centre lines lie on session 0's")
    assert Registration.from_dict(json.loads(json.dumps(reg.to_dict()))).report.loc[
        1, "paired_fraction"] == pytest.approx(frac)


def _blob_volume(rng, shape=(16, 160, 160)):
    img = np.zeros(shape, np.float32)
    for _ in range(150):
        z, y, x = rng.integers(2, shape[0] - 2), rng.integers(5, shape[1] - 5), rng.integers(
            5, shape[2] - 5)
        img[z, y, x] = rng.uniform(100, 255)
    from scipy import ndimage
    return ndimage.gaussian_filter(img, (1.0, 2.0, 2.0))


def test_images_recover_shift_and_rotation(rng):
    fixed = _blob_volume(rng)
    a = rotation_matrix((3.0, 0, 0))
    centre = (np.array(fixed.shape) - 1) / 2 * np.array(VOX)
    b = centre - a @ centre + np.array([2.0, 3.0, -2.0])  # session 1 -> session 0
    reg_true = Registration([np.eye(3), a], [np.zeros(3), b], [np.zeros((0, 3))] * 2,
                            [np.zeros((0, 3))] * 2, [np.zeros(0)] * 2, 0.0, fixed.shape, VOX)
    # moving image: the fixed scene seen from session 1, i.e. fixed sampled at to_reference
    moving = np.zeros_like(fixed)
    zz, yy, xx = np.indices(fixed.shape)
    pts = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], 1) * np.array(VOX)
    from scipy import ndimage
    src = reg_true.to_reference(1, pts) / np.array(VOX)
    moving = ndimage.map_coordinates(fixed, src.T, order=1).reshape(fixed.shape)
    series = Series((Session(fixed, VOX, "a"), Session(moving, VOX, "b")))
    reg = register_series(series, None, RegisterParams(max_rotation_deg=5.0))
    inside = np.array([[8.0, 20.0, 20.0], [8.0, 10.0, 30.0], [4.0, 30.0, 12.0]])
    assert np.abs(reg.to_reference(1, inside) - reg_true.to_reference(1, inside)).max() < 0.6
    assert reg.report.loc[1, "rotation_deg"] == pytest.approx(3.0, abs=0.5)
    # warping the moving image back lands on the fixed one
    warped = reg.warp_image(1, moving, VOX)
    core = (slice(3, 13), slice(30, 130), slice(30, 130))
    before = np.corrcoef(fixed[core].ravel(), moving[core].ravel())[0, 1]
    after = np.corrcoef(fixed[core].ravel(), warped[core].ravel())[0, 1]
    assert after > 0.8 > before


def test_local_correction_inverse_and_round_trip(rng):
    branches = _curvy_lines(rng)
    # session 1: the lines bent by a smooth non-rigid displacement
    bend = lambda p: p + np.c_[np.zeros(len(p)), 0.8 * np.sin(p[:, 2] / 12),  # noqa: E731
                               np.zeros(len(p))]
    t0, t1 = _tracing(branches), _tracing(branches, bend)
    reg = register_series(None, [t0, t1], RegisterParams(local_scale_um=6.0))
    rigid = register_series(None, [t0, t1], RegisterParams(local_scale_um=0.0))
    assert reg.report.loc[1, "residual_um"] < rigid.report.loc[1, "residual_um"]
    pts = rng.uniform([4, 10, 10], [14, 50, 50], size=(50, 3))
    back = reg.from_reference(1, reg.to_reference(1, pts))
    assert np.allclose(back, pts, atol=1e-5)
    data = json.loads(json.dumps(reg.to_dict()))
    again = Registration.from_dict(data)
    assert np.array_equal(again.to_reference(1, pts), reg.to_reference(1, pts))
    pd.testing.assert_frame_equal(again.report, reg.report)


def test_identity_and_errors():
    reg = Registration.identity(2)
    assert np.array_equal(reg.to_reference(1, [[1.0, 2.0, 3.0]]), [[1.0, 2.0, 3.0]])
    with pytest.raises(InputError):
        reg.to_reference(2, [[0.0, 0.0, 0.0]])
    with pytest.raises(InputError):
        Registration.from_dict({"sessions": "nonsense"})
    with pytest.raises(InputError):
        register_series(None, [], RegisterParams())


def _straight(z, y0, y1, n=300):
    """A straight centre line (µm) across the 60 µm field, from y0 to y1 at depth z."""
    x = np.linspace(5, 55, n)
    return np.stack([np.full(n, float(z)), np.linspace(y0, y1, n), x], 1)


_FIELD = [_straight(6, 10, 14), _straight(8, 30, 26), _straight(15, 45, 40)]


def _register_moved(moved, params):
    """Register a session in which the deep dendrite of ``_FIELD`` moved by ``moved``."""
    later = _FIELD[:2] + [moved(_FIELD[2])]
    return register_series(None, [_tracing(_FIELD), _tracing(later)], params), later


def _line_distance(points, line=_FIELD[2]):
    """Distance of each point to a centre line (densely resampled), µm."""
    from scipy.spatial import cKDTree

    return cKDTree(resample_polyline(line, 0.02)).query(points)[0]


def _moved_branch_distance(moved, params):
    """Median distance of session 1's copy of the moved dendrite to its session-0 line.

    Lines alone cannot tell how far a line slid along itself (here 0.5 µm of the
    5 µm shift runs along the tilted line), so the distance is to the line, not
    to the corresponding point.
    """
    reg, later = _register_moved(moved, params)
    return np.median(_line_distance(reg.to_reference(1, later[2])))


def test_a_dendrite_that_moved_alone_is_brought_back():
    # the deep dendrite moved 5 µm across the field relative to the others
    shift = lambda p: p + np.array([0.0, 5.0, 0.0])  # noqa: E731
    # its own displacement, undamped by its neighbours' anchors
    assert _moved_branch_distance(shift, RegisterParams()) < 0.1
    assert _moved_branch_distance(shift, RegisterParams(max_local_shift_um=0)) > 4.5
    # beyond max_local_shift_um it stays where it is
    assert _moved_branch_distance(shift, RegisterParams(max_local_shift_um=3)) > 4.5


def _bend(p):
    """A non-rigid move: 3 µm across at x = 5 growing to 6.5 µm at x = 55, a 1 µm wave
    along the line, and 1.5 µm deeper."""
    u = (p[:, 2] - 5.0) / 50.0
    across = 3.0 + 3.5 * u + 1.0 * np.sin(2 * np.pi * p[:, 2] / 25.0)
    return p + np.c_[np.full(len(p), 1.5), across, np.zeros(len(p))]


def test_a_dendrite_that_bent_alone_is_followed_point_by_point():
    reg, later = _register_moved(_bend, RegisterParams())
    back = reg.to_reference(1, later[2])
    # every point of the moved line goes back onto its line, ends included ...
    assert np.median(_line_distance(back)) < 0.05
    assert np.percentile(_line_distance(back), 95) < 0.25
    # ... and near its own place (what it slid along the line stays: lines cannot show it)
    assert np.percentile(np.linalg.norm(back - _FIELD[2], axis=1), 95) < 0.9
    # one translation (no following) leaves more than 1 µm at the ends
    one_shift = np.median(later[2] - _FIELD[2], axis=0)
    assert np.percentile(_line_distance(later[2] - one_shift), 95) > 1.0
    # a spine head 2 µm beside the moved line (in y) moves with it
    beside = later[2][::20] + np.array([0.0, 2.0, 0.0])
    d = _line_distance(reg.to_reference(1, beside))
    assert np.all(np.abs(d - 2.0 * np.cos(np.arctan(0.1))) < 0.3)
    # the dendrites that stayed are not dragged along
    for line in _FIELD[:2]:
        assert np.abs(reg.to_reference(1, line) - line).max() < 0.1
    # the map stays invertible and survives JSON
    pts = np.r_[beside, later[2][::7], rng_points()]
    assert np.allclose(reg.from_reference(1, reg.to_reference(1, pts)), pts, atol=1e-5)
    again = Registration.from_dict(json.loads(json.dumps(reg.to_dict())))
    assert np.array_equal(again.to_reference(1, pts), reg.to_reference(1, pts))


def rng_points():
    """Points scattered over the field, around the moved dendrite too."""
    return np.random.default_rng(3).uniform([5, 0, 0], [20, 60, 60], size=(300, 3))


def test_a_new_dendrite_beside_a_covered_one_is_left_alone():
    fixed = [_straight(6, 10, 14), _straight(8, 30, 26)]
    later = fixed + [_straight(8, 35, 31)]  # new, 5 µm beside a dendrite session 1 also has
    reg = register_series(None, [_tracing(fixed), _tracing(later)], RegisterParams())
    q = reg.to_reference(1, later[2])
    assert np.median(np.linalg.norm(q - later[2], axis=1)) < 0.3


def test_the_moved_dendrite_carries_its_shift_past_the_end_of_its_tracing():
    # session 1 traces the moved dendrite only up to x = 30 µm; spines beyond need its shift
    shift = np.array([1.0, 5.0, 0.0])
    moved = _FIELD[2] + shift
    later = _FIELD[:2] + [moved[moved[:, 2] <= 30]]
    reg = register_series(None, [_tracing(_FIELD), _tracing(later)], RegisterParams())
    beyond = _FIELD[2][(_FIELD[2][:, 2] > 38) & (_FIELD[2][:, 2] < 48)][::10]
    heads = beyond + shift + np.array([0.0, 1.5, 0.0])  # 1.5 µm beside the shaft, in y
    d = _line_distance(reg.to_reference(1, heads))
    assert np.all(np.abs(d - 1.5 * np.cos(np.arctan(0.1))) < 0.3)
