"""How each session sees the world: a rigid motion plus a mild smooth warp.

A world point ``p`` (session 0's µm frame, (z, y, x)) appears in session k at

    q = R_k (p - c) + c + t_k + w_k(p)

with ``c`` the centre of the field, ``R_k`` a rotation (mostly about the optical
axis), ``t_k`` a shift and ``w_k`` a sum of a few long-wavelength sine waves.
Session 0 is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SessionTransform", "random_transform", "identity_transform"]


def _rotation(angles_rad) -> np.ndarray:
    """Rotation matrix acting on (z, y, x) vectors: about z by a[0], about y by a[1], x by a[2]."""
    az, ay, ax = angles_rad
    rz = np.array([[1, 0, 0], [0, np.cos(az), -np.sin(az)], [0, np.sin(az), np.cos(az)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[np.cos(ax), -np.sin(ax), 0], [np.sin(ax), np.cos(ax), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class SessionTransform:
    """World (session 0 µm) to session µm mapping; see the module docstring.

    Attributes
    ----------
    matrix : (3, 3) array
        Rotation acting on (z, y, x) column vectors.
    translation_um : (3,) array
        Shift t, µm.
    centre_um : (3,) array
        Centre of rotation c, µm.
    rotation_deg : float
        In-plane (about z) part of the rotation, degrees.
    warp_amplitude_um, warp_wavevector_per_um, warp_phase : arrays
        Warp w(p)_j = sum_i A[i, j] sin(2 pi k_i . p + phi[i, j]); A and phi are
        (n_waves, 3), k is (n_waves, 3).
    """

    matrix: np.ndarray
    translation_um: np.ndarray
    centre_um: np.ndarray
    rotation_deg: float
    warp_amplitude_um: np.ndarray
    warp_wavevector_per_um: np.ndarray
    warp_phase: np.ndarray

    def warp(self, points_um: np.ndarray) -> np.ndarray:
        """Warp displacement w(p) at (n, 3) world points, µm."""
        p = np.asarray(points_um, dtype=float).reshape(-1, 3)
        arg = 2 * np.pi * p @ self.warp_wavevector_per_um.T  # (n, waves)
        out = np.zeros_like(p)
        for i in range(self.warp_amplitude_um.shape[0]):
            out += self.warp_amplitude_um[i] * np.sin(arg[:, i:i + 1] + self.warp_phase[i])
        return out

    def apply(self, points_um: np.ndarray) -> np.ndarray:
        """Map (n, 3) world µm points into this session's µm frame."""
        p = np.asarray(points_um, dtype=float).reshape(-1, 3)
        c = self.centre_um
        return (p - c) @ self.matrix.T + c + self.translation_um + self.warp(p)

    def rigid_to_reference(self) -> np.ndarray:
        """4×4 affine (homogeneous, (z, y, x, 1)) from session µm back to world µm, no warp."""
        rinv = self.matrix.T
        c = self.centre_um
        m = np.eye(4)
        m[:3, :3] = rinv
        m[:3, 3] = c - rinv @ (c + self.translation_um)
        return m

    def to_dict(self) -> dict:
        """JSON-ready description (see docs/synth.md)."""
        return {
            "matrix": self.matrix.tolist(),
            "translation_um": self.translation_um.tolist(),
            "centre_um": self.centre_um.tolist(),
            "rotation_deg": float(self.rotation_deg),
            "session_to_reference_affine": self.rigid_to_reference().tolist(),
            "warp_amplitude_um": self.warp_amplitude_um.tolist(),
            "warp_wavevector_per_um": self.warp_wavevector_per_um.tolist(),
            "warp_phase": self.warp_phase.tolist(),
        }


def identity_transform(centre_um) -> SessionTransform:
    """The identity (session 0)."""
    z = np.zeros((1, 3))
    return SessionTransform(np.eye(3), np.zeros(3), np.asarray(centre_um, float), 0.0,
                            z, z.copy(), z.copy())


def random_transform(rng: np.random.Generator, centre_um, drift_um, rotation_deg,
                     warp_um, n_waves: int = 3) -> SessionTransform:
    """A random rigid motion and a smooth warp.

    Shifts are up to ``drift_um`` along each axis (at least half the largest
    along y or x), the in-plane rotation is between half and all of
    ``rotation_deg`` (either sense) with tilts a tenth of that, and the warp has
    amplitude ``warp_um`` (wavelengths 30-80 µm laterally).
    """
    drift = np.asarray(drift_um, dtype=float)
    t = rng.uniform(-1, 1, 3) * drift
    # at least half the largest drift along y or x, so drift is always visible
    big = 1 + int(rng.integers(2))
    t[big] = np.sign(t[big] or 1.0) * max(abs(t[big]), 0.5 * drift[big])
    theta = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * rotation_deg
    tilt = rng.uniform(-1, 1, 2) * rotation_deg * 0.1
    matrix = _rotation(np.deg2rad([theta, tilt[0], tilt[1]]))
    wavelength = rng.uniform(30, 80, n_waves)
    direction = rng.normal(size=(n_waves, 3)) * [0.3, 1.0, 1.0]
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    k = direction / wavelength[:, None]
    amp = rng.uniform(-1, 1, (n_waves, 3)) * warp_um / np.sqrt(n_waves) * [0.5, 1.0, 1.0]
    phase = rng.uniform(0, 2 * np.pi, (n_waves, 3))
    return SessionTransform(matrix, t, np.asarray(centre_um, float), float(theta), amp, k, phase)
