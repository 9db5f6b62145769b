"""Dendrite centre lines of one session.

:class:`Tracing` is the table-shaped result every later stage reads (see
``docs/architecture.md``): ``lines`` holds one row per centre-line point and
``graph`` one row per branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Tracing", "LINE_COLUMNS", "GRAPH_COLUMNS", "tracing_from_lines"]

LINE_COLUMNS = ["branch_id", "point", "z", "y", "x", "z_um", "y_um", "x_um", "arc_um",
                "radius_um"]
GRAPH_COLUMNS = ["branch_id", "length_um", "n_points", "start_node", "end_node", "start_kind",
                 "end_kind", "mean_radius_um"]


@dataclass(frozen=True, eq=False)
class Tracing:
    """Traced dendrites of one session.

    Attributes
    ----------
    lines : DataFrame
        One row per centre-line point, columns :data:`LINE_COLUMNS`, ordered by
        ``branch_id`` then ``point``.
    graph : DataFrame
        One row per branch, columns :data:`GRAPH_COLUMNS`.
    voxel_size_um : tuple of float
        (z, y, x) voxel size of the session.
    shape : tuple of int
        (z, y, x) shape of the session's image.
    """

    lines: pd.DataFrame
    graph: pd.DataFrame
    voxel_size_um: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def n_branches(self) -> int:
        return len(self.graph)


def tracing_from_lines(lines: pd.DataFrame, voxel_size_um, shape, radius_um: float = 0.5
                       ) -> Tracing:
    """Build a :class:`Tracing` from centre-line points in pixels (``branch_id, z, y, x``).

    Used for annotated centre lines (e.g. a person's tracing) and in tests. Points
    are taken in their given order within each branch; µm columns, ``arc_um`` and
    (if absent) ``radius_um`` are filled in. Every branch end is an ``end`` node.
    """
    vz, vy, vx = (float(v) for v in voxel_size_um)
    rows = []
    graph = []
    for bid, g in lines.groupby("branch_id", sort=True):
        g = g.sort_values("point") if "point" in g else g
        zyx = g[["z", "y", "x"]].to_numpy(float)
        um = zyx * np.array([vz, vy, vx])
        step = np.r_[0.0, np.linalg.norm(np.diff(um, axis=0), axis=1)]
        arc = np.cumsum(step)
        radius = g["radius_um"].to_numpy(float) if "radius_um" in g else np.full(len(g), radius_um)
        rows.append(pd.DataFrame({
            "branch_id": int(bid), "point": np.arange(len(g)), "z": zyx[:, 0], "y": zyx[:, 1],
            "x": zyx[:, 2], "z_um": um[:, 0], "y_um": um[:, 1], "x_um": um[:, 2], "arc_um": arc,
            "radius_um": radius}))
        graph.append({"branch_id": int(bid), "length_um": float(arc[-1]) if len(arc) else 0.0,
                      "n_points": len(g), "start_node": 2 * int(bid), "end_node": 2 * int(bid) + 1,
                      "start_kind": "end", "end_kind": "end",
                      "mean_radius_um": float(np.mean(radius)) if len(radius) else radius_um})
    lines_out = (pd.concat(rows, ignore_index=True) if rows
                 else pd.DataFrame(columns=LINE_COLUMNS))
    return Tracing(lines=lines_out, graph=pd.DataFrame(graph, columns=GRAPH_COLUMNS),
                   voxel_size_um=(vz, vy, vx), shape=tuple(int(s) for s in shape))
