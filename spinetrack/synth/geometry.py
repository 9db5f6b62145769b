"""Geometry of a synthetic field: dendritic branches, spines, filopodia, puncta.

Everything here lives in the *world* frame, which is session 0's µm frame
(z, y, x), origin at the corner of voxel (0, 0, 0). Sessions see the world
through a rigid transform and a smooth warp (:mod:`spinetrack.synth.transform`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .presets import SynthConfig

__all__ = [
    "STEP_UM",
    "make_branches",
    "branch_frame",
    "spine_shapes",
    "filopodium_shapes",
    "make_puncta",
]

STEP_UM = 0.25  # spacing of centre-line points


def _curve(rng, start_yx, heading, z0, slope, box, max_len, wiggle=0.35):
    """A smooth 3-D curve from ``start_yx`` along ``heading`` until it leaves ``box``.

    ``box`` is ((zlo, zhi), (ylo, yhi), (xlo, xhi)) in µm. Returns (n, 3) points.
    """
    (zlo, zhi), (ylo, yhi), (xlo, xhi) = box
    n = int(max_len / STEP_UM) + 1
    s = np.arange(n) * STEP_UM
    periods = rng.uniform(25.0, 70.0, 2)
    phases = rng.uniform(0, 2 * np.pi, 2)
    amps = rng.uniform(0.1, wiggle, 2)
    theta = heading + sum(a * np.sin(2 * np.pi * s / p + f)
                          for a, p, f in zip(amps, periods, phases))
    step_h = STEP_UM / np.sqrt(1.0 + slope ** 2)
    y = start_yx[0] + np.concatenate([[0.0], np.cumsum(step_h * np.sin(theta[:-1]))])
    x = start_yx[1] + np.concatenate([[0.0], np.cumsum(step_h * np.cos(theta[:-1]))])
    z = z0 + slope * s + rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * s / rng.uniform(20, 50)
                                                     + rng.uniform(0, 2 * np.pi))
    z = np.clip(z, zlo, zhi)
    inside = (y >= ylo) & (y <= yhi) & (x >= xlo) & (x <= xhi)
    stop = np.flatnonzero(~inside)
    end = stop[0] if len(stop) else n
    return np.column_stack([z, y, x])[:end]


def _edge_start(rng, box):
    """A point on a random edge of the box's (y, x) rectangle and a heading into the box."""
    (_, _), (ylo, yhi), (xlo, xhi) = box
    edge = rng.integers(4)
    u = rng.uniform(0.15, 0.85)
    if edge == 0:
        yx, heading = (ylo, xlo + u * (xhi - xlo)), np.pi / 2
    elif edge == 1:
        yx, heading = (yhi, xlo + u * (xhi - xlo)), -np.pi / 2
    elif edge == 2:
        yx, heading = (ylo + u * (yhi - ylo), xlo), 0.0
    else:
        yx, heading = (ylo + u * (yhi - ylo), xhi), np.pi
    return np.array(yx), heading + rng.uniform(-0.45, 0.45)


def _arc(points: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(d)])


def _too_close(points, others, min_dist=4.0, max_frac=0.04):
    if not others:
        return False
    from scipy.spatial import cKDTree

    tree = cKDTree(np.concatenate(others))
    d, _ = tree.query(points, distance_upper_bound=min_dist)
    return np.mean(np.isfinite(d)) > max_frac


def _inside(points, box) -> np.ndarray:
    (_, _), (ylo, yhi), (xlo, xhi) = box
    return ((points[:, 1] >= ylo) & (points[:, 1] <= yhi)
            & (points[:, 2] >= xlo) & (points[:, 2] <= xhi))


def _split(curve, box, from_start: bool = False):
    """The run of ``curve`` inside ``box`` (the first one when ``from_start``, else the
    longest) and the stubs outside it, each stub sharing its end point with the run."""
    inside = _inside(curve, box)
    if from_start:
        out = np.flatnonzero(~inside)
        end = out[0] if len(out) else len(curve)
        a, b = 0, end
    else:
        padded = np.concatenate([[False], inside, [False]]).astype(int)
        starts = np.flatnonzero(np.diff(padded) == 1)
        ends = np.flatnonzero(np.diff(padded) == -1)
        if not len(starts):
            return curve[:0], [curve]
        i = int(np.argmax(ends - starts))
        a, b = int(starts[i]), int(ends[i])
    stubs = [st for st in (curve[:a + 1], curve[b - 1:]) if len(st) > 1 and b > a]
    return curve[a:b], stubs


def make_branches(cfg: SynthConfig, rng: np.random.Generator, box, n_target: int,
                  outer=None):
    """Centre lines of ``n_target`` branches (or a few fewer if the field is crowded).

    One main dendrite crosses the field and carries one or two side branches
    (each junction splits it), further dendrites cross on their own. Dendrites
    run on to the edge of ``outer`` (the whole field), but only their parts inside
    ``box`` are branches of the truth (and carry spines); the rest are *stubs*,
    rendered as bare shafts.

    Returns
    -------
    lines : DataFrame
        ``branch_id, point, z_um, y_um, x_um, arc_um, radius_um`` (world frame).
    branches : DataFrame
        ``branch_id, length_um, radius_um, start_kind, end_kind, dendrite``.
    stubs : DataFrame
        ``stub, point, z_um, y_um, x_um, radius_um, branch_id`` of the bare
        continuations (``branch_id``: the branch each continues).
    """
    outer = box if outer is None else outer
    (zlo, zhi), (ylo, yhi), (xlo, xhi) = box
    diag = float(np.hypot(outer[1][1] - outer[1][0], outer[2][1] - outer[2][0]))
    min_len = max(6.0, 0.35 * min(yhi - ylo, xhi - xlo))
    segments: list[tuple[np.ndarray, str, str, int]] = []
    stubs: list[tuple[np.ndarray, int]] = []  # (points, index of the segment they continue)
    placed: list[np.ndarray] = []
    n_junctions = 1 if n_target < 5 else 2 if n_target >= 7 else int(rng.integers(1, 3))

    # main dendrite, long enough to host the junctions
    for _ in range(50):
        start, heading = _edge_start(rng, outer)
        z0 = rng.uniform(zlo + 0.3 * (zhi - zlo), zhi - 0.3 * (zhi - zlo))
        whole = _curve(rng, start, heading, z0, rng.uniform(-0.5, 0.5) * cfg.tilt, outer,
                       2 * diag)
        main, main_stubs = _split(whole, box)
        if len(main) * STEP_UM >= 0.7 * min(yhi - ylo, xhi - xlo):
            break
    arc = _arc(main)
    cut_fracs = np.sort(rng.uniform(0.3, 0.7, n_junctions))
    if n_junctions == 2:
        cut_fracs = np.array([rng.uniform(0.25, 0.4), rng.uniform(0.6, 0.75)])
    cuts = [int(np.searchsorted(arc, f * arc[-1])) for f in cut_fracs]
    bounds = [0] + cuts + [len(main) - 1]
    for a, b in zip(bounds[:-1], bounds[1:]):
        segments.append((main[a:b + 1], "end" if a == 0 else "junction",
                         "end" if b == len(main) - 1 else "junction", 0))
    stubs += [(st, 0 if i == 0 else len(segments) - 1) for i, st in enumerate(main_stubs)]
    placed.append(whole)
    # side branches from the junctions
    for c in cuts:
        tangent = main[min(c + 2, len(main) - 1)] - main[max(c - 2, 0)]
        base_heading = np.arctan2(tangent[1], tangent[2])
        for _ in range(30):
            heading = base_heading + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2)
            whole = _curve(rng, main[c, 1:], heading, main[c, 0],
                           rng.uniform(-1, 1) * cfg.tilt, outer, rng.uniform(0.35, 0.6) * diag)
            child, child_stubs = _split(whole, box, from_start=True)
            if len(child) * STEP_UM >= min(8.0, 0.3 * diag) and not _too_close(
                    whole[int(3.0 / STEP_UM):], placed, 2.5):
                segments.append((child, "junction", "end", 0))
                stubs += [(st, len(segments) - 1) for st in child_stubs]
                placed.append(whole)
                break
    # independent dendrites
    dendrite = 1
    tries = 0
    while len(segments) < n_target and tries < 60:
        tries += 1
        start, heading = _edge_start(rng, outer)
        z0 = rng.uniform(zlo, zhi)
        whole = _curve(rng, start, heading, z0, rng.uniform(-1, 1) * cfg.tilt, outer, 2 * diag)
        cand, cand_stubs = _split(whole, box)
        if len(cand) * STEP_UM < min_len or _too_close(whole, placed, 4.0):
            continue
        segments.append((cand, "end", "end", dendrite))
        stubs += [(st, len(segments) - 1) for st in cand_stubs]
        placed.append(whole)
        dendrite += 1

    rows, brows, srows = [], [], []
    for bid, (pts, k0, k1, dend) in enumerate(segments):
        arc = _arc(pts)
        r0 = rng.uniform(*cfg.shaft_radius_um)
        if k0 == "junction" and dend == 0 and bid > n_junctions:  # side branches are thinner
            r0 = max(cfg.shaft_radius_um[0], 0.8 * r0)
        wave = np.sin(2 * np.pi * arc / rng.uniform(10, 30) + rng.uniform(0, 6.3))
        radius = r0 * (1 + 0.1 * wave)
        rows.append(pd.DataFrame({
            "branch_id": bid, "point": np.arange(len(pts)), "z_um": pts[:, 0], "y_um": pts[:, 1],
            "x_um": pts[:, 2], "arc_um": arc, "radius_um": radius}))
        brows.append({"branch_id": bid, "length_um": float(arc[-1]), "radius_um": float(r0),
                      "start_kind": k0, "end_kind": k1, "dendrite": dend})
    for i, (pts, seg) in enumerate(stubs):
        srows.append(pd.DataFrame({
            "stub": i, "point": np.arange(len(pts)), "z_um": pts[:, 0], "y_um": pts[:, 1],
            "x_um": pts[:, 2], "radius_um": brows[seg]["radius_um"], "branch_id": seg}))
    stub_df = (pd.concat(srows, ignore_index=True) if srows else pd.DataFrame(
        columns=["stub", "point", "z_um", "y_um", "x_um", "radius_um", "branch_id"]))
    return pd.concat(rows, ignore_index=True), pd.DataFrame(brows), stub_df


def branch_frame(lines: pd.DataFrame, branch_id: np.ndarray, arc: np.ndarray):
    """Centre point, unit tangent and shaft radius at arc positions along branches.

    Returns
    -------
    centre, tangent : (n, 3) arrays (z, y, x)
    radius : (n,) array
    """
    branch_id = np.asarray(branch_id)
    arc = np.asarray(arc, dtype=float)
    centre = np.zeros((len(arc), 3))
    tangent = np.zeros((len(arc), 3))
    radius = np.zeros(len(arc))
    for b, grp in lines.groupby("branch_id"):
        sel = branch_id == b
        if not sel.any():
            continue
        centre[sel], tangent[sel], radius[sel] = frame_at(line_arrays(grp), arc[sel])
    return centre, tangent, radius


def line_arrays(line: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(arc, points, derivative, radius) of one branch's centre line, for :func:`frame_at`."""
    a = line["arc_um"].to_numpy(dtype=float)
    pts = line[["z_um", "y_um", "x_um"]].to_numpy(dtype=float)
    return a, pts, np.gradient(pts, a, axis=0), line["radius_um"].to_numpy(dtype=float)


def frame_at(arrays, arc: np.ndarray):
    """Centre, unit tangent and radius at ``arc`` on one branch (from :func:`line_arrays`)."""
    a, pts, d, rad = arrays
    arc = np.asarray(arc, dtype=float)
    centre = np.column_stack([np.interp(arc, a, pts[:, i]) for i in range(3)])
    tangent = np.column_stack([np.interp(arc, a, d[:, i]) for i in range(3)])
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return centre, tangent, np.interp(arc, a, rad)


def _left_normal(tangent):
    """Unit (z, y, x) vectors in the image plane: left of the tangent, and along it.

    "Left" as the image is displayed (y pointing down): the side where
    ``ty * vx - tx * vy > 0`` for the tangent (ty, tx) and a vector (vy, vx).
    """
    ty, tx = tangent[:, 1], tangent[:, 2]
    h = np.hypot(ty, tx)
    h = np.where(h < 1e-9, 1.0, h)
    zero = np.zeros(len(ty))
    return (np.column_stack([zero, -tx / h, ty / h]),
            np.column_stack([zero, ty / h, tx / h]))


def spine_shapes(lines, spines: pd.DataFrame) -> pd.DataFrame:
    """Base, head centre and direction of every spine from its drawn shape parameters.

    ``spines`` needs ``branch_id, arc_um, side, elevation_deg, azimuth_deg,
    length_um``; ``side`` is +1/-1 for lateral spines and 0 for spines pointing
    along z (then ``elevation_deg`` is near ±90).

    Returns ``spines`` with ``cz, cy, cx`` (centre line), ``bz, by, bx`` (base on
    the shaft surface), ``hz, hy, hx`` (head centre), ``dz, dy, dx`` (unit
    direction), ``shaft_radius_um``, all in world µm.
    """
    out = spines.copy()
    centre, tangent, radius = branch_frame(lines, out["branch_id"].to_numpy(),
                                           out["arc_um"].to_numpy())
    arrays = shape_points(centre, tangent, radius, out["side"].to_numpy(dtype=float),
                          out["elevation_deg"].to_numpy(dtype=float),
                          out["azimuth_deg"].to_numpy(dtype=float),
                          out["length_um"].to_numpy(dtype=float))
    for name, arr in zip("cbhd", arrays):
        out[name + "z"], out[name + "y"], out[name + "x"] = arr[:, 0], arr[:, 1], arr[:, 2]
    out["shaft_radius_um"] = radius
    return out


def shape_points(centre, tangent, radius, side, elevation_deg, azimuth_deg, length_um):
    """Centre, base, head and unit direction ((n, 3) each) of spines at a branch frame.

    The direction leaves the shaft to the ``side`` (+1 left, -1 right, 0 along
    z), turned ``azimuth_deg`` along the branch and ``elevation_deg`` out of the
    image plane; the base is on the shaft surface, the head ``length_um`` beyond.
    """
    left, along = _left_normal(tangent)
    lateral = np.where(np.asarray(side, float)[:, None] < 0, -left, left)
    el = np.deg2rad(elevation_deg)
    az = np.deg2rad(azimuth_deg)
    horiz = np.cos(az)[:, None] * lateral + np.sin(az)[:, None] * along
    zhat = np.array([1.0, 0.0, 0.0])
    direction = np.cos(el)[:, None] * horiz + np.sin(el)[:, None] * zhat
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    perp = direction - np.sum(direction * tangent, axis=1, keepdims=True) * tangent
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    base = centre + radius[:, None] * perp
    head = base + np.asarray(length_um, float)[:, None] * direction
    return centre, base, head, direction


def filopodium_shapes(lines, filo: pd.DataFrame) -> pd.DataFrame:
    """Like :func:`spine_shapes`; the 'head' columns are the filopodium's tip."""
    return spine_shapes(lines, filo)


def make_puncta(cfg: SynthConfig, rng, extent_um, avoid: np.ndarray, n: int) -> pd.DataFrame:
    """Bright puncta (axonal boutons) at least 3 µm from every point in ``avoid``.

    Returns ``punctum_id, z_um, y_um, x_um, radius_um, brightness`` (world frame).
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(avoid) if len(avoid) else None
    pts = []
    for _ in range(20 * max(n, 1)):
        if len(pts) >= n:
            break
        p = rng.uniform([1.5, 1.0, 1.0], np.asarray(extent_um) - [1.5, 1.0, 1.0])
        if tree is not None and tree.query(p)[0] < 3.0:
            continue
        pts.append(p)
    pts = np.asarray(pts).reshape(-1, 3)
    return pd.DataFrame({
        "punctum_id": np.arange(len(pts)), "z_um": pts[:, 0], "y_um": pts[:, 1],
        "x_um": pts[:, 2], "radius_um": rng.uniform(0.25, 0.5, len(pts)),
        "brightness": rng.uniform(1.0, 2.5, len(pts))})


AXON_RADIUS_UM = (0.1, 0.15)  # range of the radius of a rendered axon


def make_axons(rng, box, n: int, avoid: np.ndarray, obstacles=None, clearance: float = 2.0):
    """Thin axons crossing the field with boutons along them.

    An axon does not pass through a dendrite: where it would come closer than
    ``clearance`` µm (surface to surface) to one of ``obstacles`` (balls:
    shaft points with the shaft radius, spine necks and heads), it is bent
    along z to pass just above or below, as axons in the neuropil do; a stretch
    that still comes too close is left out. Boutons keep 3 µm away from every
    point in ``avoid`` (dendrite centre lines, spine heads).

    Parameters
    ----------
    rng : Generator
    box : ((zlo, zhi), (ylo, yhi), (xlo, xhi))
        Field, µm.
    n : int
        Number of axons.
    avoid : (m, 3) array
        Points boutons keep 3 µm from (and, without ``obstacles``, axons keep
        ``clearance`` µm from).
    obstacles : tuple of ((k, 3) array, (k,) array), optional
        Centres and radii of the balls making up the dendrites, µm.
    clearance : float
        Smallest distance between an axon's surface and a dendrite's, µm.

    Returns
    -------
    segments : (m, 2, 3) array
        Start and end (z, y, x) of every axon segment, world µm.
    boutons : DataFrame
        ``z_um, y_um, x_um, radius_um, brightness``.
    """
    from scipy.spatial import cKDTree

    (zlo, zhi), (ylo, yhi), (xlo, xhi) = box
    diag = float(np.hypot(yhi - ylo, xhi - xlo))
    tree = cKDTree(avoid) if len(avoid) else None
    if obstacles is None:
        obstacles = (np.asarray(avoid, float).reshape(-1, 3), np.zeros(len(avoid)))
    segs, bout = [], []
    for _ in range(n):
        start, heading = _edge_start(rng, box)
        pts = _curve(rng, start, heading, rng.uniform(zlo, zhi), rng.uniform(-0.3, 0.3), box,
                     2 * diag, wiggle=0.6)
        if len(pts) < 4:
            continue
        pts, far = _detour(pts, obstacles, clearance + AXON_RADIUS_UM[1], rng)
        keep = far[:-1] & far[1:]
        segs.append(np.stack([pts[:-1][keep], pts[1:][keep]], axis=1))
        arc = _arc(pts)
        spots = np.cumsum(rng.uniform(3.0, 7.0, int(arc[-1] / 3.0) + 1))
        spots = spots[spots < arc[-1]]
        idx = np.searchsorted(arc, spots)
        cand = pts[idx]
        ok = far[idx] & (np.ones(len(cand), bool) if tree is None
                         else tree.query(cand)[0] >= 3.0)
        bout.append(cand[ok])
    segs_arr = np.concatenate(segs) if segs else np.zeros((0, 2, 3))
    b = np.concatenate(bout) if bout else np.zeros((0, 3))
    boutons = pd.DataFrame({"z_um": b[:, 0], "y_um": b[:, 1], "x_um": b[:, 2],
                            "radius_um": rng.uniform(0.25, 0.45, len(b)),
                            "brightness": rng.uniform(0.8, 2.0, len(b))})
    return segs_arr, boutons


def _clearance_deficit(pts, centres, radii, tree, reach, margin):
    """Signed z shift each point needs to clear every ball by ``margin`` (0: clear)."""
    need = np.zeros(len(pts))
    for i, near in enumerate(tree.query_ball_point(pts, reach)):
        if not near:
            continue
        c, r = centres[near], radii[near] + margin
        dz = pts[i, 0] - c[:, 0]
        lateral2 = np.sum((pts[i, 1:] - c[:, 1:]) ** 2, axis=1)
        hit = lateral2 + dz ** 2 < r ** 2
        if not hit.any():
            continue
        # pass on the side the axon already is (above or below the nearest ball)
        j = np.flatnonzero(hit)[np.argmin(lateral2[hit] + dz[hit] ** 2)]
        side = 1.0 if dz[j] >= 0 else -1.0
        target = c[hit, 0] + side * np.sqrt(np.maximum(r[hit] ** 2 - lateral2[hit], 0.0))
        need[i] = (target.max() - pts[i, 0]) if side > 0 else (target.min() - pts[i, 0])
    return need


def _detour(pts, obstacles, margin: float, rng, rounds: int = 6):
    """Bend a curve along z around balls; returns the points and which are clear."""
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d
    from scipy.spatial import cKDTree

    centres, radii = obstacles
    if not len(centres):
        return pts, np.ones(len(pts), bool)
    tree = cKDTree(centres)
    reach = float(np.max(radii)) + margin
    pts = pts.copy()
    for _ in range(rounds):
        need = _clearance_deficit(pts, centres, radii, tree, reach, margin)
        if not need.any():
            break
        # a smooth bend over ~2 µm each side that reaches the needed shift
        up = maximum_filter1d(np.maximum(need, 0), int(2.0 / STEP_UM) | 1)
        down = maximum_filter1d(np.maximum(-need, 0), int(2.0 / STEP_UM) | 1)
        shift = gaussian_filter1d(up - down, 1.0 / STEP_UM, mode="nearest")
        shift = np.where(need != 0, np.sign(need) * np.maximum(np.abs(shift), np.abs(need)),
                         shift)
        pts[:, 0] += shift + np.sign(shift) * 0.02
    clear = _clearance_deficit(pts, centres, radii, tree, reach, margin) == 0
    return pts, clear
