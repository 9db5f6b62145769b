"""Registering every session of a series to session 0.

A session k is mapped into session 0's frame (µm, (z, y, x)) in two steps:

1. a global rigid transform ``q = A p + b`` (rotation ``A``, translation ``b``),
   found from the images (an in-plane rotation search on downsampled maximum
   projections, then 3-D phase correlation for the shift) and refined by
   iterative closest points (ICP) on the traced centre lines, which also
   recovers a tilt of the stack;
2. a local displacement ``d(q)`` for the non-rigid part: a smooth field fitted
   to the remaining offsets between the session's centre lines and session 0's
   (Gaussian-weighted average of the offsets, shrinking to zero away from the
   lines), and, near a stretch of dendrite that moved on its own, that
   stretch's own displacement, followed along the line (``stray_points``).

``to_reference(k, p) = A p + b + d(A p + b)``; ``from_reference`` inverts it
(fixed-point iteration for the local part, exact for the rigid part).

Examples
--------
>>> reg = Registration.identity(2, shape=(10, 64, 64), voxel_size_um=(1.0, 0.2, 0.2))
>>> reg.to_reference(1, np.array([[1.0, 2.0, 3.0]])).tolist()
[[1.0, 2.0, 3.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .errors import InputError
from .params import RegisterParams
from .progress import ProgressCallback, report

__all__ = ["Registration", "register_series", "register_pair", "REPORT_COLUMNS",
           "rotation_angle_deg", "rotation_matrix"]

REPORT_COLUMNS = ["session", "shift_z_um", "shift_y_um", "shift_x_um", "rotation_deg",
                  "residual_um", "n_pairs", "paired_fraction"]
#: Below this fraction of a session's centre-line points within the match distance
#: of session 0's after registration, the session may not show the same field (on
#: synthetic series: 0.98 for two sessions of one field, 0.10-0.15 for two fields).
MIN_PAIRED_FRACTION = 0.4

#: Spacing at which centre lines are resampled for point matching, µm.
LINE_STEP_UM = 0.25
#: Downsampled pixel size used for the image-based search, µm (in y and x).
IMAGE_STEP_UM = 0.5
#: Weight, in units of one centre-line point, pulling the local displacement to zero.
LOCAL_PRIOR_WEIGHT = 4.0
#: Nearest anchors used to evaluate the local displacement at a point.
NEIGHBOURS = 48
#: Gaussian scale (µm) over which a moved stretch's own displacements are averaged
#: at a point (its points are 0.5 µm apart).
STRAY_KERNEL_UM = 1.0
#: Nearest points of a moved stretch used at a point (the farthest weighs < 1e-6).
STRAY_NEIGHBOURS = 40
#: The moved stretch's displacement fades out over this many times its difference
#: from the smooth field, so that the map changes by less than 0.65 µm per µm there.
STRAY_TAPER = 2.5


# --------------------------------------------------------------------------- geometry


def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation in (z, y, x) coordinates from angles about the z, y and x axes (deg).

    The rotation about z (in the imaging plane) is applied last. Positive angles
    turn y towards x (about z), x towards z (about y) and z towards y (about x).
    """
    az, ay, ax = np.deg2rad(np.asarray(angles_deg, dtype=float))
    cz, sz, cy, sy, cx, sx = np.cos(az), np.sin(az), np.cos(ay), np.sin(ay), np.cos(ax), np.sin(ax)
    rz = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])   # acts on (y, x)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])   # acts on (z, x)
    rx = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])   # acts on (z, y)
    return rz @ ry @ rx


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Total rotation angle of a 3×3 rotation matrix, degrees."""
    c = (np.trace(matrix) - 1.0) / 2.0
    return float(np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0))))


def _kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """Rigid (A, b) minimising the weighted squared distance of ``A src + b`` to ``dst``."""
    w = np.ones(len(src)) if weights is None else weights
    w = w / w.sum()
    cs, cd = w @ src, w @ dst
    h = ((src - cs) * w[:, None]).T @ (dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    a = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return a, cd - a @ cs


# --------------------------------------------------------------------------- the transform


@dataclass(eq=False)
class Registration:
    """How every session maps into session 0's frame (all coordinates µm, (z, y, x)).

    Attributes
    ----------
    matrices : list of ndarray (3, 3)
        Rotation of each session (identity for session 0).
    offsets : list of ndarray (3,)
        Translation of each session: ``q = A p + b``.
    anchors : list of ndarray (M, 3)
        Points in session 0's frame where a local displacement was measured.
    displacements : list of ndarray (M, 3)
        The measured local displacement at each anchor, µm.
    weights : list of ndarray (M,)
        How many centre-line points each anchor stands for.
    local_scale_um : float
        Gaussian smoothing length of the local displacement (0: rigid only).
    reference_shape : tuple of int
        Shape (z, y, x) of session 0's image.
    reference_voxel_um : tuple of float
        Voxel size of session 0's image.
    report : DataFrame
        One row per session: ``session, shift_z_um, shift_y_um, shift_x_um,
        rotation_deg, residual_um, n_pairs, paired_fraction``. The shift is the
        displacement of the centre of the stack; ``residual_um`` is the median
        distance between the session's registered centre-line points and session
        0's (for point pairs within the match distance, ``n_pairs`` of them), NaN
        when no lines pair up; ``paired_fraction`` is the fraction of the
        session's sampled centre-line points that pair (below
        ``MIN_PAIRED_FRACTION`` the session may show another field).
    stray_points : list of ndarray (L, 3)
        Per session: points (session 0's frame, rigidly mapped) along stretches of
        centre line that moved on their own, every 0.5 µm (empty: none).
    stray_displacements : list of ndarray (L, 3)
        The displacement of each of those points onto session 0's line, µm.
    stray_reach_um : float
        Within this distance of a moved stretch a point takes the stretch's own
        displacement in full; beyond, it fades to the smooth field over
        ``STRAY_TAPER`` times their difference (at least ``stray_reach_um``).
    """

    matrices: list[np.ndarray]
    offsets: list[np.ndarray]
    anchors: list[np.ndarray]
    displacements: list[np.ndarray]
    weights: list[np.ndarray]
    local_scale_um: float
    reference_shape: tuple[int, int, int]
    reference_voxel_um: tuple[float, float, float]
    report: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPORT_COLUMNS))
    stray_points: list[np.ndarray] = field(default_factory=list)
    stray_displacements: list[np.ndarray] = field(default_factory=list)
    stray_reach_um: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.matrices)
        if not self.stray_points:
            self.stray_points = [np.zeros((0, 3))] * n
            self.stray_displacements = [np.zeros((0, 3))] * n
        if len(self.stray_points) != n or len(self.stray_displacements) != n:
            raise InputError(None, f"moved stretches given for {len(self.stray_points)} "
                             f"sessions, the registration has {n}")
        self._trees = [cKDTree(a) if len(a) else None for a in self.anchors]
        self._stray_trees = [cKDTree(p) if len(p) else None for p in self.stray_points]
        # per session: the longest stretch displacement plus the longest smooth one
        # (bounds how far the stretches' correction reaches, _stray_correction)
        self._largest_shift = [
            float(np.linalg.norm(sd, axis=1).max(initial=0.0)
                  + np.linalg.norm(d, axis=1).max(initial=0.0))
            for sd, d in zip(self.stray_displacements, self.displacements)]

    @property
    def n_sessions(self) -> int:
        return len(self.matrices)

    @classmethod
    def identity(cls, n_sessions: int, shape=(1, 1, 1), voxel_size_um=(1.0, 1.0, 1.0)
                 ) -> Registration:
        """A registration that leaves every session where it is."""
        reg = cls([np.eye(3) for _ in range(n_sessions)], [np.zeros(3)] * n_sessions,
                  [np.zeros((0, 3))] * n_sessions, [np.zeros((0, 3))] * n_sessions,
                  [np.zeros(0)] * n_sessions, 0.0,
                  tuple(int(s) for s in shape), tuple(float(v) for v in voxel_size_um))
        reg.report = _report_rows(reg, [np.nan] * n_sessions, [0] * n_sessions,
                                  [np.nan] * n_sessions)
        return reg

    # -- point mapping
    def _check(self, k: int, points_um) -> np.ndarray:
        if not 0 <= k < self.n_sessions:
            raise InputError(None, f"session {k} is not in this registration "
                             f"(0..{self.n_sessions - 1})")
        pts = np.asarray(points_um, dtype=float).reshape(-1, 3)
        return pts

    def local_displacement(self, k: int, points_ref_um) -> np.ndarray:
        """The local correction at points already in session 0's frame (rigidly).

        The smooth field, except near a stretch of line that moved on its own:
        within ``stray_reach_um`` of it the stretch's own displacement, fading to
        the smooth field beyond.
        """
        pts = np.asarray(points_ref_um, dtype=float).reshape(-1, 3)
        out = self._smooth_displacement(k, pts)
        if self._stray_trees[k] is not None and self.stray_reach_um > 0 and len(pts):
            out += self._stray_correction(k, pts, out)
        return out

    def _smooth_displacement(self, k: int, pts: np.ndarray) -> np.ndarray:
        """Gaussian-weighted mean of the anchors' displacements, pulled to zero."""
        tree = self._trees[k]
        out = np.zeros_like(pts)
        if tree is None or self.local_scale_um <= 0 or not len(pts):
            return out
        s = self.local_scale_um
        kk = min(len(self.anchors[k]), NEIGHBOURS)
        d, j = tree.query(pts, k=kk, distance_upper_bound=3.0 * s)
        d, j = d.reshape(len(pts), kk), j.reshape(len(pts), kk)
        ok = np.isfinite(d)
        j = np.where(ok, j, 0)
        w = np.where(ok, np.exp(-np.where(ok, d, 0.0) ** 2 / (2.0 * s * s)), 0.0)
        w = w * self.weights[k][j]
        num = np.einsum("nk,nkc->nc", w, self.displacements[k][j])
        return num / (w.sum(axis=1) + LOCAL_PRIOR_WEIGHT)[:, None]

    def _stray_correction(self, k: int, pts: np.ndarray, smooth: np.ndarray) -> np.ndarray:
        """What the moved stretches of session k add to the smooth field ``smooth`` at ``pts``.

        The stretch's own displacement at a point is a Gaussian-weighted mean
        (``STRAY_KERNEL_UM``) over its nearest points; it replaces the smooth field
        within ``stray_reach_um`` of the stretch, and its weight falls (raised
        cosine) to 0 over ``STRAY_TAPER`` times the difference between the two
        (at least ``stray_reach_um``) beyond. Both change continuously, so the map
        keeps an inverse.
        """
        anchors, disp = self.stray_points[k], self.stray_displacements[k]
        reach = self.stray_reach_um
        # beyond reach + span the weight is 0 for any point; 4 kernel scales more find
        # every stretch point that weighs in the mean at such a point
        span = max(reach, STRAY_TAPER * self._largest_shift[k])
        kk = min(len(anchors), STRAY_NEIGHBOURS)
        d, j = self._stray_trees[k].query(pts, k=kk,
                                          distance_upper_bound=reach + span + 4 * STRAY_KERNEL_UM)
        d, j = d.reshape(len(pts), kk), j.reshape(len(pts), kk)
        near = np.isfinite(d[:, 0])
        out = np.zeros_like(pts)
        if not near.any():
            return out
        d, j = d[near], np.where(np.isfinite(d[near]), j[near], 0)
        g = np.exp(-(d ** 2 - d[:, :1] ** 2)  # unfound neighbours (d = inf) weigh 0
                   / (2.0 * STRAY_KERNEL_UM ** 2))
        change = (np.einsum("nk,nkc->nc", g, disp[j]) / g.sum(axis=1)[:, None]
                  - smooth[near])
        width = np.maximum(reach, STRAY_TAPER * np.linalg.norm(change, axis=1))
        x = np.clip((d[:, 0] - reach) / width, 0.0, 1.0)
        out[near] = 0.5 * (1.0 + np.cos(np.pi * x))[:, None] * change
        return out

    def rigid_to_reference(self, k: int, points_um) -> np.ndarray:
        """Session k µm -> session 0 µm with the global rigid transform only."""
        pts = self._check(k, points_um)
        return pts @ self.matrices[k].T + self.offsets[k]

    def to_reference(self, k: int, points_um) -> np.ndarray:
        """Map (N, 3) µm points of session k into session 0's µm frame."""
        q = self.rigid_to_reference(k, points_um)
        return q + self.local_displacement(k, q)

    def from_reference(self, k: int, points_um) -> np.ndarray:
        """Map (N, 3) µm points of session 0's frame into session k's own µm frame."""
        q = self._check(k, points_um)
        u = q.copy()
        local = ((self._trees[k] is not None and self.local_scale_um > 0)
                 or (self._stray_trees[k] is not None and self.stray_reach_um > 0))
        todo = np.arange(len(q)) if local else np.zeros(0, int)
        for it in range(100):
            if not len(todo):
                break
            # fixed-point steps; half steps after 30 where the map changes steeply
            # (between two stretches that moved differently), which still converge there
            step = 1.0 if it < 30 else 0.5
            new = q[todo] - self.local_displacement(k, u[todo])
            moved = np.max(np.abs(new - u[todo]), axis=1, initial=0.0)
            u[todo] += step * (new - u[todo])
            todo = todo[moved >= 1e-7]
        return (u - self.offsets[k]) @ self.matrices[k]

    # -- images
    def warp_image(self, k: int, image: np.ndarray, voxel_size_um, order: int = 1,
                   shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """Resample session k's image into session 0's frame (for viewing sessions aligned).

        Parameters
        ----------
        k : int
            Session index.
        image : ndarray (Z, Y, X)
            Session k's image.
        voxel_size_um : sequence of 3 floats
            Session k's voxel size.
        order : int
            Spline order of the interpolation (1: linear).
        shape : tuple, optional
            Output shape; session 0's shape by default.

        Returns
        -------
        ndarray
            Same dtype as ``image``, on session 0's voxel grid; zero outside.
        """
        img = np.asarray(image)
        if img.ndim != 3:
            raise InputError(None, f"warp_image needs a (z, y, x) image, got {img.ndim}-D")
        out_shape = tuple(int(v) for v in (shape or self.reference_shape))
        ref_vox = np.asarray(self.reference_voxel_um, float)
        vox = np.asarray(voxel_size_um, float)
        # the local correction is smooth: invert the map on a coarse grid, interpolate
        spacing_um = max(0.5, min(2.0, self.local_scale_um / 4.0)) if self.local_scale_um else 4.0
        step = np.maximum(1, np.round(spacing_um / ref_vox)).astype(int)
        axes = [np.arange(0, n + s - 1, s, dtype=float) for n, s in zip(out_shape, step)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        src = (self.from_reference(k, grid * ref_vox) / vox).reshape(
            *[len(a) for a in axes], 3)
        out = np.zeros(out_shape, dtype=img.dtype)
        yy, xx = np.meshgrid(np.arange(out_shape[1]) / step[1], np.arange(out_shape[2]) / step[2],
                             indexing="ij")
        for z in range(out_shape[0]):
            zz = np.full(yy.shape, z / step[0])
            coords = [ndimage.map_coordinates(src[..., c], [zz, yy, xx], order=1, mode="nearest")
                      for c in range(3)]
            out[z] = ndimage.map_coordinates(img, coords, order=order, mode="constant", cval=0)
        return out

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description that :meth:`from_dict` turns back into this registration."""
        return {
            "kind": "spinetrack.register.Registration",
            "version": 2,
            "reference_shape": list(self.reference_shape),
            "reference_voxel_um": list(self.reference_voxel_um),
            "local_scale_um": float(self.local_scale_um),
            "stray_reach_um": float(self.stray_reach_um),
            "sessions": [{
                "matrix": np.asarray(a, float).tolist(),
                "offset_um": np.asarray(b, float).tolist(),
                "anchors_um": np.asarray(p, float).tolist(),
                "displacements_um": np.asarray(d, float).tolist(),
                "weights": np.asarray(w, float).tolist(),
                "stray_points_um": np.asarray(sp, float).tolist(),
                "stray_displacements_um": np.asarray(sd, float).tolist(),
            } for a, b, p, d, w, sp, sd in zip(self.matrices, self.offsets, self.anchors,
                                               self.displacements, self.weights,
                                               self.stray_points, self.stray_displacements)],
            "report": [{c: (None if isinstance(v, float) and not np.isfinite(v) else v)
                        for c, v in row.items()}
                       for row in self.report.astype(object).to_dict("records")],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        """Rebuild a registration from :meth:`to_dict` output (e.g. ``registration.json``)."""
        try:
            sessions = data["sessions"]
            reg = cls(
                [np.asarray(s["matrix"], float).reshape(3, 3) for s in sessions],
                [np.asarray(s["offset_um"], float).reshape(3) for s in sessions],
                [np.asarray(s["anchors_um"], float).reshape(-1, 3) for s in sessions],
                [np.asarray(s["displacements_um"], float).reshape(-1, 3) for s in sessions],
                [np.asarray(s["weights"], float).reshape(-1) for s in sessions],
                float(data["local_scale_um"]),
                tuple(int(v) for v in data["reference_shape"]),
                tuple(float(v) for v in data["reference_voxel_um"]),
                stray_points=[np.asarray(s.get("stray_points_um", []), float).reshape(-1, 3)
                              for s in sessions],
                stray_displacements=[
                    np.asarray(s.get("stray_displacements_um", []), float).reshape(-1, 3)
                    for s in sessions],
                stray_reach_um=float(data.get("stray_reach_um", 0.0)))
            rows = data.get("report") or []
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(None, f"not a spinetrack registration ({exc})") from None
        rep = pd.DataFrame(rows, columns=REPORT_COLUMNS)
        for c in REPORT_COLUMNS:
            if c in ("session", "n_pairs"):
                rep[c] = rep[c].astype(int)
            else:
                rep[c] = pd.to_numeric(rep[c], errors="coerce").astype(float)
        reg.report = rep
        return reg


def _report_rows(reg: Registration, residuals, n_pairs, fractions) -> pd.DataFrame:
    centre = (np.asarray(reg.reference_shape, float) - 1) / 2 * np.asarray(reg.reference_voxel_um)
    rows = []
    for k in range(reg.n_sessions):
        shift = reg.matrices[k] @ centre + reg.offsets[k] - centre
        rows.append({"session": k, "shift_z_um": float(shift[0]), "shift_y_um": float(shift[1]),
                     "shift_x_um": float(shift[2]),
                     "rotation_deg": rotation_angle_deg(reg.matrices[k]),
                     "residual_um": float(residuals[k]), "n_pairs": int(n_pairs[k]),
                     "paired_fraction": float(fractions[k])})
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


# --------------------------------------------------------------------------- images


def _downsample(image: np.ndarray, voxel_size_um) -> tuple[np.ndarray, np.ndarray]:
    """Block-mean downsampling to about IMAGE_STEP_UM pixels; returns (image, voxel µm)."""
    vox = np.asarray(voxel_size_um, float)
    f = np.maximum(1, np.round(IMAGE_STEP_UM / vox)).astype(int)
    img = np.asarray(image)
    if img.ndim != 3:
        raise InputError(None, f"registration needs (z, y, x) images, got {img.ndim}-D")
    n = np.asarray(img.shape) // f
    if np.any(n < 1):
        f = np.minimum(f, np.asarray(img.shape))
        n = np.asarray(img.shape) // f
    img = img[:n[0] * f[0], :n[1] * f[1], :n[2] * f[2]].astype(np.float32)
    img = img.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
    hi = np.percentile(img, 99.9)
    if hi > 0:
        np.minimum(img, hi, out=img)
    img -= img.mean()
    return img, vox * f


def _window(shape) -> np.ndarray:
    w = np.ones(shape, np.float32)
    for axis, n in enumerate(shape):
        if n < 4:
            continue
        ramp = np.hanning(n).astype(np.float32) ** 0.5
        w *= ramp.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return w


def _phase_correlate(fixed: np.ndarray, moving: np.ndarray, max_shift_px
                     ) -> tuple[np.ndarray, float]:
    """Shift s (pixels) with moving(x - s) ≈ fixed(x), and the correlation peak height."""
    f1 = np.fft.rfftn(fixed * _window(fixed.shape))
    f2 = np.fft.rfftn(moving * _window(moving.shape))
    cross = f1 * np.conj(f2)
    cross /= np.abs(cross) + 1e-6 * np.abs(cross).max() + 1e-12
    corr = np.fft.irfftn(cross, s=fixed.shape, axes=tuple(range(fixed.ndim)))
    corr = ndimage.gaussian_filter(corr, 0.7, mode="wrap")
    shape = np.asarray(corr.shape)
    lim = np.minimum(np.asarray(max_shift_px, float), shape / 2 - 1)
    grids = np.meshgrid(*[np.fft.fftfreq(n, 1.0 / n) for n in shape], indexing="ij", sparse=True)
    allowed = np.ones(corr.shape, bool)
    for g, m in zip(grids, lim):
        allowed &= np.abs(g) <= m
    corr_masked = np.where(allowed, corr, -np.inf)
    peak = np.unravel_index(int(np.argmax(corr_masked)), corr.shape)
    shift = np.array([np.fft.fftfreq(n, 1.0 / n)[p] for n, p in zip(shape, peak)], float)
    for a, (n, p) in enumerate(zip(shape, peak)):  # parabolic sub-pixel refinement
        if n < 3:
            continue
        idx = list(peak)
        vals = []
        for d in (-1, 0, 1):
            idx[a] = (p + d) % n
            vals.append(corr[tuple(idx)])
        den = vals[0] - 2 * vals[1] + vals[2]
        if den < 0:
            shift[a] += float(np.clip(0.5 * (vals[0] - vals[2]) / den, -0.5, 0.5))
    return shift, float(corr[peak])


def _resample(moving: np.ndarray, moving_vox, out_shape, out_vox, a: np.ndarray, b: np.ndarray,
              order: int = 1) -> np.ndarray:
    """Moving image on the output grid, for the rigid map q = A p + b (µm)."""
    mv, ov = np.asarray(moving_vox, float), np.asarray(out_vox, float)
    ainv = np.linalg.inv(a)
    m = np.diag(1.0 / mv) @ ainv @ np.diag(ov)
    off = -(np.diag(1.0 / mv) @ ainv @ b)
    return ndimage.affine_transform(moving, m, offset=off, output_shape=tuple(out_shape),
                                    order=order, mode="constant", cval=0.0)


def _image_rigid(fixed: np.ndarray, fvox, moving: np.ndarray, mvox, params: RegisterParams
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (A, b) from images: in-plane rotation search, then 3-D phase correlation."""
    centre = (np.asarray(fixed.shape, float) - 1) / 2 * fvox
    fixed_mip = fixed.max(axis=0)
    moving_on_grid = _resample(moving, mvox, fixed.shape, fvox, np.eye(3), np.zeros(3))
    mip = moving_on_grid.max(axis=0)
    max_px = np.full(2, params.max_shift_um) / fvox[1:]
    c2 = centre[1:]

    def score(angle: float) -> float:
        a2 = rotation_matrix((angle, 0.0, 0.0))[1:, 1:]
        rotated = _resample(mip[None], (1.0, *fvox[1:]), (1, *mip.shape), (1.0, *fvox[1:]),
                            np.block([[np.ones((1, 1)), np.zeros((1, 2))],
                                      [np.zeros((2, 1)), a2]]),
                            np.r_[0.0, c2 - a2 @ c2])[0]
        return _phase_correlate(fixed_mip, rotated, max_px)[1]

    best = 0.0
    if params.max_rotation_deg > 0:
        step = 1.0
        angles = np.arange(-params.max_rotation_deg, params.max_rotation_deg + 1e-9, step)
        scores = [score(t) for t in angles]
        best = float(angles[int(np.argmax(scores))])
        for step in (0.5, 0.25):
            cand = [best - step, best, best + step]
            best = float(cand[int(np.argmax([score(t) for t in cand]))])
    a = rotation_matrix((best, 0.0, 0.0))
    b = centre - a @ centre
    rotated = _resample(moving, mvox, fixed.shape, fvox, a, b)
    max3 = np.full(3, params.max_shift_um) / fvox
    shift_px, _ = _phase_correlate(fixed, rotated, max3)
    return a, b + shift_px * fvox


# --------------------------------------------------------------------------- centre lines


def line_points(tracing, step_um: float = LINE_STEP_UM) -> np.ndarray:
    """Centre-line points of a Tracing resampled about every ``step_um`` µm, (N, 3) µm."""
    lines = tracing.lines if tracing is not None else None
    if lines is None or not len(lines):
        return np.zeros((0, 3))
    out = []
    for _, g in lines.groupby("branch_id", sort=True):
        pts = g[["z_um", "y_um", "x_um"]].to_numpy(float)
        out.append(resample_polyline(pts, step_um))
    return np.concatenate(out) if out else np.zeros((0, 3))


def resample_polyline(points: np.ndarray, step_um: float) -> np.ndarray:
    """Points along a polyline every ``step_um`` µm (ends kept)."""
    if len(points) < 2:
        return points.copy()
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.r_[0.0, np.cumsum(seg)]
    if arc[-1] <= 0:
        return points[:1].copy()
    s = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / step_um)) + 1))
    return np.stack([np.interp(s, arc, points[:, a]) for a in range(3)], axis=1)


def _icp(src: np.ndarray, dst_tree: cKDTree, dst: np.ndarray, a: np.ndarray, b: np.ndarray,
         max_dist: float, max_rotation_deg: float, iterations: int = 30):
    """Refine (A, b) so that A src + b lies on dst; trimmed point-to-point ICP."""
    if len(src) < 10 or len(dst) < 10:
        return a, b
    sub = src[:: max(1, len(src) // 4000)]
    for it in range(iterations):
        radius = max_dist * (1.0 - 0.5 * it / max(1, iterations - 1))
        q = sub @ a.T + b
        d, j = dst_tree.query(q, distance_upper_bound=radius)
        ok = np.isfinite(d)
        if ok.sum() < 10:
            break
        a_new, b_new = _kabsch(sub[ok], dst[j[ok]])
        if rotation_angle_deg(a_new) > max_rotation_deg + 1.0:
            break
        change = np.abs(a_new - a).max() + np.abs(b_new - b).max()
        a, b = a_new, b_new
        if change < 1e-5:
            break
    return a, b


def _local_offsets(q: np.ndarray, dst_tree: cKDTree, dst: np.ndarray, max_dist: float,
                   cell_um: float):
    """Anchors, offsets to the nearest dst point, and weights, binned in cells of ``cell_um``.

    Each registered point ``q`` that has a dst point within ``max_dist`` gives an
    offset; points in the same cubic cell are averaged into one anchor whose
    weight is their number.
    """
    d, j = dst_tree.query(q, distance_upper_bound=max_dist)
    ok = np.isfinite(d)
    if not ok.any():
        return _empty_offsets()
    pts, off = q[ok], dst[j[ok]] - q[ok]
    keys = np.floor(pts / cell_um).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    anchors = np.stack([np.bincount(inverse, pts[:, c]) for c in range(3)], 1) / counts[:, None]
    disp = np.stack([np.bincount(inverse, off[:, c]) for c in range(3)], 1) / counts[:, None]
    return anchors, disp, counts.astype(float)


_STRAY_MIN_UM = 8.0  # shortest stretch of centre line that is shifted on its own
_STRAY_FRACTION = 0.6  # ... if this fraction of it then lies on session 0's uncovered lines


def _empty_offsets():
    return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)


def _pieces(points: np.ndarray, gap_um: float, tree: cKDTree | None = None) -> np.ndarray:
    """Label of the connected piece (points closer than ``gap_um`` chained) of every point.

    ``tree``: a cKDTree of ``points`` when there is one already.
    """
    tree = cKDTree(points) if tree is None else tree
    pairs = tree.query_pairs(gap_um, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(len(points), len(points)))
    return connected_components(graph, directed=False)[1]


def _shift_onto(run: np.ndarray, tree: cKDTree, dst: np.ndarray, max_shift: float,
                near: float) -> np.ndarray | None:
    """One translation laying ``run`` on ``dst``, searched within ``max_shift`` µm.

    Trimmed translation-only closest points, the pairing radius shrinking from
    ``max_shift`` to ``near``. None unless at least ``_STRAY_FRACTION`` of the
    run ends within ``near`` of ``dst`` with a shift no longer than ``max_shift``.
    """
    t = np.zeros(3)
    for it in range(12):
        radius = max(near, max_shift * (1.0 - it / 8.0))
        d, j = tree.query(run + t, distance_upper_bound=radius)
        ok = np.isfinite(d)
        if ok.sum() < _STRAY_FRACTION * len(run) / 2:
            return None
        t = np.median(dst[j[ok]] - run[ok], axis=0)
    d, _ = tree.query(run + t, distance_upper_bound=near)
    if np.linalg.norm(t) > max_shift or np.mean(np.isfinite(d)) < _STRAY_FRACTION:
        return None
    return t


def _smoothing_matrix(points: np.ndarray, scale: float):
    """Sparse Gaussian weights (scale ``scale`` µm, cut at 3 scales) between ``points``."""
    n = len(points)
    pairs = cKDTree(points).query_pairs(3.0 * scale, output_type="ndarray")
    d = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
    g = np.exp(-d ** 2 / (2.0 * scale * scale))
    rows = np.r_[pairs[:, 0], pairs[:, 1], np.arange(n)]
    cols = np.r_[pairs[:, 1], pairs[:, 0], np.arange(n)]
    return coo_matrix((np.r_[g, g, np.ones(n)], (rows, cols)), shape=(n, n)).tocsr()


def _line_ends(points: np.ndarray, radius: float = 1.0, tree: cKDTree | None = None
               ) -> np.ndarray:
    """Points within about ``radius / 2`` of an end of their line (one-sided neighbourhood).

    ``tree``: a cKDTree of ``points`` when there is one already.
    """
    n = len(points)
    tree = cKDTree(points) if tree is None else tree
    pairs = tree.query_pairs(radius, output_type="ndarray")
    near = coo_matrix((np.ones(2 * len(pairs)), (np.r_[pairs[:, 0], pairs[:, 1]],
                                                  np.r_[pairs[:, 1], pairs[:, 0]])),
                      shape=(n, n)).tocsr()
    count = np.asarray(near.sum(axis=1)).ravel() + 1.0
    centre = (near @ points + points) / count[:, None]
    return np.linalg.norm(centre - points, axis=1) > radius / 4


def _follow_line(run: np.ndarray, shift: np.ndarray, tree: cKDTree, dst: np.ndarray,
                 end: np.ndarray, near: float, scale: float, max_shift: float) -> np.ndarray:
    """Per-point displacement laying ``run`` on ``dst``, smooth along the run.

    Starts from the single translation ``shift`` and repeatedly adds the
    Gaussian-smoothed (``scale`` µm, over the run's own points, i.e. along the
    line) offsets of the points that have a ``dst`` point within ``near``.
    Pairs with the last half µm of a ``dst`` line (``end``, :func:`_line_ends` of
    ``dst``) are left out: where the run
    goes on past that end they would drag it along itself. Points of the run
    far from any pair keep what their neighbours give them. No displacement is
    longer than ``max_shift``.
    """
    smooth = _smoothing_matrix(run, scale)
    disp = np.tile(shift, (len(run), 1))
    for _ in range(30):
        d, j = tree.query(run + disp, distance_upper_bound=near)
        ok = np.isfinite(d)
        ok[ok] = ~end[j[ok]]
        resid = np.zeros_like(run)
        resid[ok] = dst[j[ok]] - (run + disp)[ok]
        den = smooth @ ok.astype(float)
        step = (smooth @ resid) / np.maximum(den, 1e-12)[:, None]
        step[den <= 0] = 0.0
        disp += step
        size = np.linalg.norm(disp, axis=1)
        disp *= np.minimum(1.0, max_shift / np.maximum(size, 1e-12))[:, None]
        if np.abs(step).max(initial=0.0) < 1e-3:
            break
    return disp


def _stray_offsets(q: np.ndarray, fixed: np.ndarray, tree: cKDTree, params: RegisterParams):
    """Stretches of line that moved further than the smooth correction reaches.

    Deep in living tissue one dendrite can move several µm relative to its
    neighbours between days. After the rigid fit its centre line lies beyond the
    match distance of session 0's, so the smooth correction (fitted to pairs within
    half of it) leaves it where it is, and it becomes a new branch whose spines are
    all "formed" while those of its session-0 line are all "lost". Each such
    stretch (at least ``_STRAY_MIN_UM`` long) is laid onto the lines of session 0
    that no line of this session covers, if one shift of at most
    ``max_local_shift_um`` lays most of it there; that shift is then refined
    point by point, smoothly along the stretch (:func:`_follow_line`, scale
    ``local_scale_um / 4``), so a stretch that bent or turned follows its line.

    Returns
    -------
    points, displacements : ndarray (L, 3)
        Points of the moved stretches (rigidly registered, every 0.5 µm) and
        the displacement of each onto session 0's line; empty when none moved.
    """
    empty = np.zeros((0, 3)), np.zeros((0, 3))
    md = params.match_distance_um
    d, _ = tree.query(q, distance_upper_bound=md)
    stray = q[~np.isfinite(d)]
    d0, _ = cKDTree(q).query(fixed, distance_upper_bound=md)
    free = fixed[~np.isfinite(d0)]
    if len(stray) * LINE_STEP_UM < _STRAY_MIN_UM or len(free) < 10:
        return empty
    free_tree = cKDTree(free)
    free_ends = None  # _line_ends(free), once a stretch needs it
    labels = _pieces(stray, 2.5 * LINE_STEP_UM)
    found = []
    for lab in np.unique(labels):
        run = stray[labels == lab]
        if len(run) * LINE_STEP_UM < _STRAY_MIN_UM:
            continue
        t = _shift_onto(run, free_tree, free, params.max_local_shift_um, md / 2)
        if t is None:
            continue
        if free_ends is None:
            free_ends = _line_ends(free, tree=free_tree)
        disp = _follow_line(run, t, free_tree, free, free_ends, md / 2,
                            max(1.0, params.local_scale_um / 4), params.max_local_shift_um)
        found.append((run[::2], disp[::2]))
    if not found:
        return empty
    points, disp = (np.concatenate(parts) for parts in zip(*found))
    more = _continue_along(points, disp, free, md / 2, 2.0 * params.local_scale_um,
                           free_tree)
    return np.concatenate([points, more[0]]), np.concatenate([disp, more[1]])


def _continue_along(points: np.ndarray, disp: np.ndarray, free: np.ndarray, near: float,
                    reach_um: float, free_tree: cKDTree | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Carry the moved stretches' displacement on along the session-0 lines they were laid on.

    A session's tracing often stops short of session 0's (a dimmer or fainter
    stretch), but the dendrite it follows moved as a whole: its spines beyond the
    traced end need the same displacement. Uncovered session-0 points connected
    to the covered ones (``free``, chained 0.6 µm apart), up to ``reach_um`` from
    them, become extra points (in the session's frame, ``point - d``) carrying
    the displacement ``d`` of the nearest covered point. ``free_tree``: a
    cKDTree of ``free`` when there is one already.
    """
    moved = points + disp
    moved_tree = cKDTree(moved)
    d, _ = moved_tree.query(free, distance_upper_bound=near)
    covered = np.isfinite(d)
    if not covered.any() or covered.all() or reach_um <= 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    labels = _pieces(free, 2.5 * LINE_STEP_UM, free_tree)
    linked = np.isin(labels, np.unique(labels[covered])) & ~covered
    gap, _ = cKDTree(free[covered]).query(free[linked])
    keep = gap <= reach_um
    ends = free[linked][keep][::2]
    _, i = moved_tree.query(ends)
    return ends - disp[i], disp[i]


# --------------------------------------------------------------------------- API


def render_lines(points_um: np.ndarray, shape, voxel_size_um) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line points drawn into a coarse volume (for aligning sessions without images).

    Returns the volume (about IMAGE_STEP_UM pixels in y and x) and its voxel size.
    """
    vox = np.asarray(voxel_size_um, float)
    step = np.maximum(vox, IMAGE_STEP_UM)
    n = np.maximum(1, np.ceil(np.asarray(shape, float) * vox / step)).astype(int)
    vol = np.zeros(n, np.float32)
    idx = np.round(np.asarray(points_um, float) / step).astype(int)
    ok = np.all((idx >= 0) & (idx < n), axis=1)
    np.add.at(vol, tuple(idx[ok].T), 1.0)
    vol = ndimage.gaussian_filter(vol, 1.0)
    vol -= vol.mean()
    return vol, step


def register_pair(fixed_image, fixed_vox, moving_image, moving_vox, fixed_lines: np.ndarray,
                  moving_lines: np.ndarray, params: RegisterParams, fixed_shape=None,
                  moving_shape=None):
    """Rigid (A, b) and local anchors/offsets mapping the moving session onto the fixed one.

    Parameters
    ----------
    fixed_image, moving_image : ndarray (Z, Y, X) or None
        The two sessions' images (None: use the centre lines only).
    fixed_vox, moving_vox : sequence of 3 floats
        Voxel sizes, µm.
    fixed_lines, moving_lines : ndarray (N, 3)
        Centre-line points in each session's own µm frame (may be empty).
    params : RegisterParams
    fixed_shape, moving_shape : tuple of int, optional
        Image shapes, to draw the centre lines into volumes when there are no images.

    Returns
    -------
    a, b : ndarray
        The rigid transform, ``q = a p + b``.
    anchors, displacements, weights : ndarray
        The smooth local correction's anchors (see :class:`Registration`).
    stray_points, stray_displacements : ndarray (L, 3)
        Stretches of line that moved on their own and their displacements
        (``max_local_shift_um``; empty when none moved).
    """
    a, b = np.eye(3), np.zeros(3)
    if fixed_image is not None and moving_image is not None:
        f, fv = _downsample(fixed_image, fixed_vox)
        m, mv = _downsample(moving_image, moving_vox)
        a, b = _image_rigid(f, fv, m, mv, params)
    elif (fixed_shape is not None and moving_shape is not None and len(fixed_lines) >= 10
          and len(moving_lines) >= 10):
        f, fv = render_lines(fixed_lines, fixed_shape, fixed_vox)
        m, mv = render_lines(moving_lines, moving_shape, moving_vox)
        a, b = _image_rigid(f, fv, m, mv, params)
    anchors, disp, weights = _empty_offsets()
    stray_points, stray_disp = np.zeros((0, 3)), np.zeros((0, 3))
    if len(fixed_lines) >= 10 and len(moving_lines) >= 10:
        tree = cKDTree(fixed_lines)
        a, b = _icp(moving_lines, tree, fixed_lines, a, b, params.match_distance_um,
                    params.max_rotation_deg)
        if params.local_scale_um > 0:
            q = moving_lines @ a.T + b
            anchors, disp, weights = _local_offsets(q, tree, fixed_lines,
                                                    params.match_distance_um / 2,
                                                    params.local_scale_um / 4)
            if params.max_local_shift_um > 0:
                stray_points, stray_disp = _stray_offsets(q, fixed_lines, tree, params)
    return a, b, anchors, disp, weights, stray_points, stray_disp


def register_series(series, tracings, params: RegisterParams = RegisterParams(),
                    progress: ProgressCallback | None = None) -> Registration:
    """Register every session of a series to session 0.

    Parameters
    ----------
    series : spinetrack.io.Series or sequence of Session, or None
        The sessions (images and voxel sizes). ``None`` registers from the
        centre lines alone (then ``tracings`` must be given).
    tracings : list of Tracing or None
        One per session; their centre lines refine the rigid fit (ICP) and give
        the local non-rigid correction. ``None`` or empty tracings: images only.
    params : RegisterParams
    progress : callable, optional
        ``progress("register", done, total)`` after each session.

    Returns
    -------
    Registration
    """
    sessions = list(series) if series is not None else None
    n = len(sessions) if sessions is not None else len(tracings or [])
    if n == 0:
        raise InputError(None, "nothing to register: no sessions")
    if tracings is not None and len(tracings) != n:
        raise InputError(None, f"{len(tracings)} tracings for {n} sessions")
    if sessions is not None:
        shape0, vox0 = sessions[0].image.shape, sessions[0].voxel_size_um
    else:
        shape0, vox0 = tracings[0].shape, tracings[0].voxel_size_um
    lines = [line_points(t) for t in tracings] if tracings is not None else [np.zeros((0, 3))] * n
    mats, offs = [np.eye(3)], [np.zeros(3)]
    anchors, disps, weights = [np.zeros((0, 3))], [np.zeros((0, 3))], [np.zeros(0)]
    stray_points, stray_disps = [np.zeros((0, 3))], [np.zeros((0, 3))]
    report(progress, "register", 0, n)
    for k in range(1, n):
        if sessions is not None:
            s0, sk = sessions[0], sessions[k]
            if sk.image.ndim != 3 or s0.image.ndim != 3:
                raise InputError(sk.path, "cannot register: image is not (z, y, x)")
            a, b, anc, dsp, wts, sp, sd = register_pair(
                s0.image, s0.voxel_size_um, sk.image, sk.voxel_size_um, lines[0], lines[k],
                params)
        else:
            a, b, anc, dsp, wts, sp, sd = register_pair(
                None, vox0, None, tracings[k].voxel_size_um, lines[0], lines[k], params,
                shape0, tracings[k].shape)
        mats.append(a)
        offs.append(b)
        anchors.append(anc)
        disps.append(dsp)
        weights.append(wts)
        stray_points.append(sp)
        stray_disps.append(sd)
        report(progress, "register", k, n)
    reg = Registration(mats, offs, anchors, disps, weights, float(params.local_scale_um),
                       tuple(int(s) for s in shape0), tuple(float(v) for v in vox0),
                       stray_points=stray_points, stray_displacements=stray_disps,
                       stray_reach_um=float(params.match_distance_um))
    residuals, pairs, fractions = [np.nan], [0], [np.nan]
    tree0 = cKDTree(lines[0]) if len(lines[0]) else None
    for k in range(1, n):
        if tree0 is None or not len(lines[k]):
            residuals.append(np.nan)
            pairs.append(0)
            fractions.append(np.nan)
            continue
        sample = lines[k][::4]
        d, _ = tree0.query(reg.to_reference(k, sample),
                           distance_upper_bound=params.match_distance_um)
        d = d[np.isfinite(d)]
        residuals.append(float(np.median(d)) if len(d) else np.nan)
        pairs.append(int(len(d)))
        fractions.append(len(d) / len(sample))
    residuals[0] = 0.0 if n > 1 else np.nan
    fractions[0] = 1.0 if n > 1 and len(lines[0]) else np.nan
    reg.report = _report_rows(reg, residuals, pairs, fractions)
    return reg
