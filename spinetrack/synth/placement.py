"""Spine shapes that do not interpenetrate: each spine is drawn where it fits.

Two spines cannot fill the same volume, and a spine cannot grow into a
dendrite. When a spine is created (in session 0, or as a new or restored spine
in a later session), :class:`SpinePlacer` draws its shape (direction, length,
head and neck radius) and its per-session head motion and size, and accepts it
only if, in every session from its first one on, its head and neck keep at
least ``cfg.spine_gap_um`` from

* the head and neck of every spine present when it is created (spines created
  later are checked against it in turn, so any two spines present in one
  session are checked against each other),
* the shaft of every dendrite (its own shaft for the head; other dendrites'
  shafts for the neck, whose base sits on its own shaft).

A spine that does not fit is turned (new direction, same size, length and
brightness: space decides where a spine points, not how big it is) a few
times at the same base, then reported as not fitting (the caller tries another
base or drops it).

Size and motion of spine ``i`` (its ``d``-th candidate) come from the random
stream ``(seed, stream, i, d)`` and its direction at attempt ``j > 0`` from
``(seed, stream, i, d, j)`` (attempts counted over all bases tried), so a
spine keeps its shape when other spines change (e.g. with ``null=True``)
unless a collision forces a turn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .geometry import frame_at, line_arrays, shape_points, spine_shapes
from .presets import SynthConfig

__all__ = ["SpinePlacer", "draw_spine_shapes", "segment_distance", "overlaps"]

SHAPE_TRIES = 6       # shapes tried at one base before the base is given up
NECK_STEP_UM = 0.05   # sampling of a neck for neck-neck and neck-shaft distances


def draw_spine_shapes(cfg: SynthConfig, rng, n: int) -> pd.DataFrame:
    """Shape parameters of ``n`` spines (fixed for a spine's life).

    Returns ``side, elevation_deg, azimuth_deg, length_um, head_radius_um,
    neck_radius_um, brightness, near_limit``.
    """
    zspine = rng.random(n) < cfg.z_spine_fraction
    side, elevation = _sides_and_elevations(rng, zspine)
    lo, hi = cfg.head_radius_um
    head = lo + (hi - lo) * rng.random(n) ** 3  # most heads small, a few large
    lo, hi = cfg.spine_length_um
    length = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    length = np.maximum(length, 0.8 * head + 0.35)
    bright = rng.uniform(0.7, 1.3, n)
    dim = rng.random(n) < cfg.dim_spine_fraction
    head = np.where(dim, rng.uniform(cfg.head_radius_um[0] * 0.7, cfg.head_radius_um[0], n), head)
    bright = np.where(dim, rng.uniform(0.25, 0.5, n), bright)
    return pd.DataFrame({
        "side": side, "elevation_deg": elevation,
        "azimuth_deg": rng.uniform(-30, 30, n), "length_um": length, "head_radius_um": head,
        "neck_radius_um": rng.uniform(*cfg.neck_radius_um, n), "brightness": bright,
        "near_limit": dim})


def _sides_and_elevations(rng, zspine: np.ndarray):
    """Side (+1/-1; 0 along z) and elevation (degrees); ``zspine`` marks z-pointing spines."""
    n = len(zspine)
    side = np.where(rng.random(n) < 0.5, 1, -1)
    elevation = np.where(zspine, rng.choice([-1, 1], n) * rng.uniform(60, 80, n),
                         rng.uniform(-35, 35, n))
    return np.where(zspine, 0, side), elevation


def _turned(shape: dict, rng) -> dict:
    """The same spine (size, length, brightness) pointing in a new random direction."""
    side, elevation = _sides_and_elevations(rng, np.array([shape["side"] == 0]))
    return dict(shape, side=int(side[0]), elevation_deg=float(elevation[0]),
                azimuth_deg=float(rng.uniform(-30, 30)))


def _draw_instances(cfg: SynthConfig, rng, n_sessions: int) -> dict[str, np.ndarray]:
    """Per-session jitter of one spine's head position, head size and brightness."""
    return {
        "jitter": rng.normal(0, cfg.head_jitter_um, (n_sessions, 3)) * [0.5, 1.0, 1.0],
        "head_scale": rng.uniform(0.9, 1.1, n_sessions),
        "bright_scale": rng.uniform(0.85, 1.15, n_sessions),
    }


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point (m, 3) to each segment a[j]–b[j] (n, 3): (m, n) array."""
    ab = b - a                                               # (n, 3)
    ap = points[:, None, :] - a[None, :, :]                  # (m, n, 3)
    denom = np.maximum(np.sum(ab * ab, axis=1), 1e-12)       # (n,)
    t = np.clip(np.sum(ap * ab[None], axis=2) / denom, 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=2)


def _neck_samples(base: np.ndarray, head: np.ndarray) -> np.ndarray:
    n = max(2, int(np.ceil(np.linalg.norm(head - base) / NECK_STEP_UM)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return base[None] + t * (head - base)[None]


def overlaps(head_a, radius_a, base_a, neck_a, head_b, radius_b, base_b, neck_b,
             gap: float) -> np.ndarray:
    """Whether spine a comes closer than ``gap`` to each spine b (heads and necks).

    ``head_a, base_a`` are (3,) and ``radius_a, neck_a`` floats; the b arguments
    are (n, 3) / (n,) arrays. A neck is the segment from the base to the head
    centre. Returns (n,) bool.
    """
    head_b = np.asarray(head_b, float).reshape(-1, 3)
    base_b = np.asarray(base_b, float).reshape(-1, 3)
    hit = np.linalg.norm(head_b - head_a, axis=1) < radius_a + radius_b + gap
    hit |= segment_distance(head_a[None], base_b, head_b)[0] < radius_a + neck_b + gap
    hit |= segment_distance(head_b, base_a[None], head_a[None])[:, 0] < radius_b + neck_a + gap
    neck = segment_distance(_neck_samples(base_a, head_a), base_b, head_b).min(axis=0)
    return hit | (neck < neck_a + neck_b + gap)


class SpinePlacer:
    """Draws spine shapes that fit between the spines already present.

    Parameters
    ----------
    cfg : SynthConfig
        Shape ranges, head jitter and ``spine_gap_um``.
    lines : DataFrame
        Branch centre lines (``branch_id, z_um, y_um, x_um, arc_um, radius_um``).
    stubs : DataFrame
        Bare continuations (``branch_id, z_um, y_um, x_um, radius_um``).
    n_sessions : int
    seed, stream : int
        Spine ``i``'s attempt ``j`` draws from ``default_rng([seed, stream, i, j])``.
    """

    def __init__(self, cfg: SynthConfig, lines: pd.DataFrame, stubs: pd.DataFrame,
                 n_sessions: int, seed: int, stream: int):
        self.cfg = cfg
        self.gap = float(cfg.spine_gap_um)
        self.n_sessions = int(n_sessions)
        self.seed, self.stream = int(seed), int(stream)
        self._frames = {int(b): line_arrays(g) for b, g in lines.groupby("branch_id")}
        cols = ["z_um", "y_um", "x_um"]
        shaft = pd.concat([lines[cols + ["radius_um", "branch_id"]],
                           stubs[cols + ["radius_um", "branch_id"]]], ignore_index=True)
        self._shaft_xyz = shaft[cols].to_numpy(float)
        self._shaft_r = shaft["radius_um"].to_numpy(float)
        self._shaft_b = shaft["branch_id"].to_numpy(int)
        self._tree = cKDTree(self._shaft_xyz)
        self._reach = float(self._shaft_r.max(initial=0.0)) + self.gap + 0.2
        # farthest a spine reaches from its base: longest length, largest head
        # (+10% per session), and 6 SD of head jitter
        longest = max(cfg.spine_length_um[1], 0.8 * cfg.head_radius_um[1] + 0.35)
        self._extent = longest + 1.1 * cfg.head_radius_um[1] + 6 * cfg.head_jitter_um
        self.shapes: dict[int, dict] = {}         # drawn shape parameters per spine index
        self.instances: dict[int, dict[str, np.ndarray]] = {}
        self._base: dict[int, np.ndarray] = {}    # (3,) base on the shaft surface
        self._neck: dict[int, float] = {}         # neck radius
        self._head: dict[int, np.ndarray] = {}    # (n_sessions, 3) head centre per session
        self._radius: dict[int, np.ndarray] = {}  # (n_sessions,) head radius per session
        self._calls: dict[tuple, int] = {}        # fits() calls per (index, draw)
        self.redrawn = 0                          # shapes rejected for a collision

    def fits(self, index: int, branch_id: int, arc_um: float, session: int,
             present, draw: int = 0) -> bool:
        """Draw spine ``index`` at ``arc_um`` on ``branch_id`` from ``session`` on.

        Tries up to :data:`SHAPE_TRIES` directions; keeps the first that collides with
        no spine in ``present`` (indices placed earlier) and no shaft, in every
        session from ``session`` on. Returns False when none fits.

        ``draw`` numbers the spines tried for one ``index`` (the caller moves on
        to a new spine after giving one up): the same ``(index, draw)`` keeps its
        size at every base tried.
        """
        index, key = int(index), (int(index), int(draw))
        others = [int(i) for i in present if int(i) in self._base]
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        frame = frame_at(self._frames[int(branch_id)], [float(arc_um)])
        rng = np.random.default_rng([self.seed, self.stream, *key])
        drawn = draw_spine_shapes(self.cfg, rng, 1).iloc[0].to_dict()
        inst = _draw_instances(self.cfg, rng, self.n_sessions)
        for attempt in range(call * SHAPE_TRIES, (call + 1) * SHAPE_TRIES):
            shape = drawn if attempt == 0 else _turned(
                drawn, np.random.default_rng([self.seed, self.stream, *key, attempt]))
            _, base, head, _ = shape_points(*frame, np.array([shape["side"]], float),
                                            np.array([shape["elevation_deg"]]),
                                            np.array([shape["azimuth_deg"]]),
                                            np.array([shape["length_um"]]))
            heads = head + inst["jitter"]
            radius = shape["head_radius_um"] * inst["head_scale"]
            neck = float(shape["neck_radius_um"])
            if self._clear(heads, radius, base[0], neck, int(branch_id), session, others):
                self.shapes[index] = shape
                self.instances[index] = inst
                self._base[index], self._neck[index] = base[0], neck
                self._head[index], self._radius[index] = heads, radius
                return True
            self.redrawn += 1
        return False

    def _clear(self, head, radius, base, neck: float, own: int, session: int,
               others: list[int]) -> bool:
        if others:
            o_base = np.array([self._base[i] for i in others])
            o_neck = np.array([self._neck[i] for i in others])
            o_heads = np.stack([self._head[i] for i in others], axis=1)  # (sessions, n, 3)
            o_rads = np.stack([self._radius[i] for i in others], axis=1)
            # only spines whose bases are closer than their two reaches can touch
            reach = (np.linalg.norm(o_base - base, axis=1) < 2 * self._extent + self.gap)
            o_base, o_neck = o_base[reach], o_neck[reach]
            o_heads, o_rads = o_heads[:, reach], o_rads[:, reach]
        for s in range(session, self.n_sessions):
            if not self._clear_of_shafts(head[s], radius[s], base, neck, own):
                return False
            if others and len(o_base) and overlaps(
                    head[s], radius[s], base, neck, o_heads[s], o_rads[s], o_base, o_neck,
                    self.gap).any():
                return False
        return True

    def _clear_of_shafts(self, head, radius, base, neck, own: int) -> bool:
        """Head clear of every shaft; neck clear of the shafts of other branches."""
        idx = self._tree.query_ball_point(head, radius + self._reach)
        if idx:
            d = np.linalg.norm(self._shaft_xyz[idx] - head, axis=1)
            if np.any(d < radius + self._shaft_r[idx] + self.gap):
                return False
        mid = 0.5 * (base + head)
        half = 0.5 * float(np.linalg.norm(head - base))
        idx = np.asarray(self._tree.query_ball_point(mid, half + neck + self._reach), int)
        idx = idx[self._shaft_b[idx] != own]
        if len(idx):
            samples = _neck_samples(base, head)
            d = np.linalg.norm(samples[:, None, :] - self._shaft_xyz[idx][None], axis=2)
            if np.any(d < neck + self._shaft_r[idx][None] + self.gap):
                return False
        return True

    def table(self, lines: pd.DataFrame, life: pd.DataFrame
              ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """The placed spines of ``life`` (one row per spine_id) with their shapes.

        Returns ``life`` joined to the drawn shapes and passed through
        :func:`~spinetrack.synth.geometry.spine_shapes`, and the per-session
        instances as (n, n_sessions, ...) arrays.
        """
        ids = life["spine_id"].to_numpy(int)
        shapes = pd.DataFrame([self.shapes[int(i)] for i in ids],
                              columns=list(draw_spine_shapes(self.cfg, np.random.default_rng(0),
                                                             0).columns))
        shapes["side"] = shapes["side"].astype(int)
        shapes["near_limit"] = shapes["near_limit"].astype(bool)
        out = spine_shapes(lines, pd.concat([life.reset_index(drop=True), shapes], axis=1))
        inst = {k: np.stack([self.instances[int(i)][k] for i in ids]).reshape(
                    (len(ids), self.n_sessions) + ((3,) if k == "jitter" else ()))
                for k in ("jitter", "head_scale", "bright_scale")}
        return out, inst
