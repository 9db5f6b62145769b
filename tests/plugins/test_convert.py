"""Pure converters: lazy registered display equals the registration's own resampling."""

import numpy as np
import pandas as pd

from spinetrack_napari._convert import (points_to_spines, session_stack, spines_layer,
                                        tracks_layer)


#: session 1 of the two-session registrations: shifted and slightly turned
SHIFT, TURN = {1: (0.5, 1.3, -0.7)}, {1: (0.0, 0.0, 3.0)}


def test_lazy_registered_stack_matches_warp_image(rng, shifted_registration):
    shape, voxel = (5, 60, 70), (1.0, 0.2, 0.2)
    images = [rng.integers(0, 200, shape).astype(np.uint8) for _ in range(2)]
    reg = shifted_registration(2, shape, voxel, SHIFT, TURN)
    lazy = session_stack(images, [voxel, voxel], reg.to_dict())
    assert lazy.shape == (2,) + shape
    np.testing.assert_array_equal(np.asarray(lazy[0]), images[0])
    full = reg.warp_image(1, images[1], voxel).astype(float)
    plane = np.asarray(lazy[1, 2]).astype(float)
    inside = full[2] > 0
    assert np.abs(plane - full[2])[inside].mean() < 1.0


def test_unregistered_sessions_are_padded_to_session_0():
    a = np.ones((4, 10, 10), np.uint16)
    b = np.full((6, 8, 12), 2, np.uint16)
    stack = session_stack([a, b], [(1, 1, 1)] * 2)
    assert isinstance(stack, np.ndarray) and stack.shape == (2, 4, 10, 10)
    assert stack[1, :, :8, :10].min() == 2 and stack[1, :, 8:].max() == 0


def test_points_round_trip_to_a_spines_table(tiny_results_fn):
    res = tiny_results_fn()
    data, kw, _ = spines_layer(res)
    back = points_to_spines(data, kw["features"], [(1.0, 0.2, 0.2)] * 3)
    pd.testing.assert_frame_equal(back[["spine_id", "session", "branch_id"]],
                                  res.spines[["spine_id", "session", "branch_id"]],
                                  check_dtype=False)
    np.testing.assert_allclose(back[["z", "y", "x"]], res.spines[["z", "y", "x"]])
    added = np.vstack([data, [[1, 3.0, 4.0, 5.0]]])
    feats = pd.concat([kw["features"], pd.DataFrame({"spine_id": [np.nan]})], ignore_index=True)
    back = points_to_spines(added, feats, [(1.0, 0.2, 0.2)] * 3)
    assert back["spine_id"].iloc[-1] == res.spines["spine_id"].max() + 1
    assert back["source"].iloc[-1] == "manual"
    # napari copies the last selected point's features onto a point added with its tools
    copied = pd.concat([kw["features"], kw["features"].iloc[[2]]], ignore_index=True)
    back = points_to_spines(added, copied, [(1.0, 0.2, 0.2)] * 3)
    assert back["spine_id"].iloc[-1] == res.spines["spine_id"].max() + 1
    assert back["source"].iloc[-1] == "manual" and np.isnan(back["length_um"].iloc[-1])
    assert back.iloc[:-1]["source"].eq("auto").all()


def test_tracks_only_for_spines_seen_twice(tiny_results_fn):
    res = tiny_results_fn()
    data, _, _ = tracks_layer(res)
    ids, counts = np.unique(data[:, 0], return_counts=True)
    assert set(ids) == {0, 1, 3, 4} and (counts >= 2).all()


def test_registered_planes_are_resampled_once(rng, monkeypatch, shifted_registration):
    import spinetrack_napari._convert as convert

    shape, voxel = (3, 20, 20), (1.0, 0.2, 0.2)
    images = [rng.integers(0, 200, shape).astype(np.uint8) for _ in range(2)]
    calls = []
    real = convert._warp_plane
    monkeypatch.setattr(convert, "_warp_plane", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    reg = shifted_registration(2, shape, voxel, SHIFT, TURN)
    stack = session_stack(images, [voxel, voxel], reg.to_dict())
    first = np.asarray(stack[1, 1])
    np.testing.assert_array_equal(np.asarray(stack[1, 1]), first)
    assert calls == [1]
