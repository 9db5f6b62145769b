"""napari sample data: a small synthetic series with its truth."""

from __future__ import annotations

import numpy as np

from ._convert import META_KEY, LayerData, image_layer, session_stack

__all__ = ["synthetic_series"]


def synthetic_series() -> list[LayerData]:
    """Three sessions of a small synthetic field (spinetrack.synth), with the true spines.

    The image is shown as spinetrack would read it (sessions not yet registered);
    the true spines are a Points layer in each session's own frame, for comparing
    with a run.
    """
    from spinetrack.synth import make_series

    synth = make_series("easy", n_sessions=3, seed=1, shape=(24, 256, 256))
    series = synth.series
    stack = session_stack([s.image for s in series], [s.voxel_size_um for s in series])
    data, kwargs, kind = image_layer(stack, series.voxel_size_um, series.names)
    kwargs["name"] = "synthetic sessions"
    kwargs["metadata"][META_KEY].update({
        "voxel_size_um": [list(s.voxel_size_um) for s in series], "days": series.days,
        "files": [None] * len(series)})
    truth = synth.truth["spines"]
    pts = np.column_stack([truth["session"].to_numpy(float),
                           truth[["z_um", "y_um", "x_um"]].to_numpy(float)])
    points = (pts, {"name": "true spines", "size": 1.0, "face_color": "transparent",
                    "border_color": "#FFFFFF", "border_width": 0.15,
                    "features": truth[["spine_id", "session"]].reset_index(drop=True)},
              "points")
    return [(data, kwargs, kind), points]
