"""Rendering: fluorophore-filled shapes -> blurred, noisy two-photon stack.

Each shape (shaft segment, spine neck, head, filopodium, punctum) is filled with
random points carrying its fluorophore mass (volume × brightness). The points
are mapped into the session's frame, deposited trilinearly into the voxel grid
and blurred by the anisotropic Gaussian point-spread function. A strongly
blurred copy adds out-of-focus haze. Photon counts are Poisson, read noise is
Gaussian, and the result is scaled, offset, clipped and rounded to the output
type, so dim images have many zero pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["tube_points", "ball_points", "deposit", "blur", "haze", "to_counts",
           "head_peak_fraction", "POINTS_PER_UM3"]

POINTS_PER_UM3 = 600.0


def _perp_frame(direction):
    """Two unit vectors perpendicular to each (n, 3) direction."""
    d = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    helper = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(d, u)
    return u, v


def tube_points(rng, p0, p1, radius, brightness, density=POINTS_PER_UM3):
    """Random points filling cylinders from ``p0`` to ``p1`` (all (n, 3), µm).

    Returns
    -------
    points : (m, 3) array, µm
    weights : (m,) array
        Fluorophore mass per point; each cylinder's points sum to
        volume × brightness.
    owner : (m,) int array
        Index of the cylinder each point belongs to.
    """
    p0 = np.asarray(p0, float).reshape(-1, 3)
    p1 = np.asarray(p1, float).reshape(-1, 3)
    radius = np.broadcast_to(np.asarray(radius, float), (len(p0),))
    brightness = np.broadcast_to(np.asarray(brightness, float), (len(p0),))
    axis = p1 - p0
    length = np.linalg.norm(axis, axis=1)
    keep = length > 1e-9
    volume = np.pi * radius ** 2 * length
    n = np.where(keep, np.maximum(1, np.round(volume * density)).astype(int), 0)
    owner = np.repeat(np.arange(len(p0)), n)
    if not len(owner):
        return np.zeros((0, 3)), np.zeros(0), owner
    u, v = _perp_frame(np.where(keep[:, None], axis, [[1.0, 0, 0]]))
    t = rng.random(len(owner))
    r = radius[owner] * np.sqrt(rng.random(len(owner)))
    phi = rng.uniform(0, 2 * np.pi, len(owner))
    pts = (p0[owner] + t[:, None] * axis[owner]
           + (r * np.cos(phi))[:, None] * u[owner] + (r * np.sin(phi))[:, None] * v[owner])
    weights = (volume * brightness / np.maximum(n, 1))[owner]
    return pts, weights, owner


def ball_points(rng, centre, radius, brightness, density=POINTS_PER_UM3):
    """Random points filling balls; see :func:`tube_points` for the returns."""
    centre = np.asarray(centre, float).reshape(-1, 3)
    radius = np.broadcast_to(np.asarray(radius, float), (len(centre),))
    brightness = np.broadcast_to(np.asarray(brightness, float), (len(centre),))
    volume = 4.0 / 3.0 * np.pi * radius ** 3
    n = np.maximum(1, np.round(volume * density)).astype(int)
    owner = np.repeat(np.arange(len(centre)), n)
    d = rng.normal(size=(len(owner), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = radius[owner] * rng.random(len(owner)) ** (1.0 / 3.0)
    pts = centre[owner] + r[:, None] * d
    weights = (volume * brightness / n)[owner]
    return pts, weights, owner


def deposit(shape, points_px, weights) -> np.ndarray:
    """Sum ``weights`` into a float32 volume by trilinear interpolation at ``points_px``."""
    vol = np.zeros(int(np.prod(shape)), dtype=np.float32)
    p = np.asarray(points_px, float)
    lo = np.floor(p).astype(np.int64)
    f = p - lo
    dims = np.asarray(shape)
    for corner in range(8):
        off = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = lo + off
        w = np.prod(np.where(off == 1, f, 1 - f), axis=1) * weights
        ok = np.all((idx >= 0) & (idx < dims), axis=1)
        flat = np.ravel_multi_index(idx[ok].T, shape)
        vol += np.bincount(flat, weights=w[ok], minlength=vol.size).astype(np.float32)
    return vol.reshape(shape)


def blur(volume: np.ndarray, sigma_um, voxel_um) -> np.ndarray:
    """Gaussian blur with per-axis sigma in µm; the result keeps mass per µm³."""
    sigma_px = np.asarray(sigma_um, float) / np.asarray(voxel_um, float)
    out = ndi.gaussian_filter(volume, sigma_px, mode="constant", truncate=3.0)
    return out / np.float32(np.prod(voxel_um))


def haze(volume: np.ndarray, voxel_um, sigma_um=(6.0, 5.0, 5.0), factor: int = 8) -> np.ndarray:
    """A strongly blurred copy of ``volume`` (out-of-focus light), computed at low resolution."""
    z, y, x = volume.shape
    fy, fx = max(1, min(factor, y // 4)), max(1, min(factor, x // 4))
    yy, xx = (y // fy) * fy, (x // fx) * fx
    small = volume[:, :yy, :xx].reshape(z, yy // fy, fy, xx // fx, fx).mean(axis=(2, 4))
    step = np.array([voxel_um[0], voxel_um[1] * fy, voxel_um[2] * fx])
    small = ndi.gaussian_filter(small, np.asarray(sigma_um) / step, mode="nearest")
    zoom = (1.0, y / small.shape[1], x / small.shape[2])
    return ndi.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)[:, :y, :x]


def to_counts(rng, photons: np.ndarray, read_noise: float, gain: float, offset: float,
              dtype: str) -> np.ndarray:
    """Poisson photon noise, Gaussian read noise, scaling, offset, clipping and rounding."""
    counts = rng.poisson(np.maximum(photons, 0)).astype(np.float32) * np.float32(gain)
    counts += rng.normal(0.0, read_noise, photons.shape).astype(np.float32) + np.float32(offset)
    top = np.iinfo(np.dtype(dtype)).max
    np.clip(np.rint(counts), 0, top, out=counts)
    return counts.astype(dtype)


_STD_NORMAL = np.random.default_rng(0).normal(size=(4000, 3))


def head_peak_fraction(radius_um, sigma_um) -> np.ndarray:
    """Peak of a uniform ball of unit density blurred by the PSF (fraction of the density).

    Equals the probability that a PSF-distributed offset falls inside the ball.
    """
    radius = np.atleast_1d(np.asarray(radius_um, float))
    r = np.linalg.norm(_STD_NORMAL * np.asarray(sigma_um, float), axis=1)
    return np.mean(r[None, :] <= radius[:, None], axis=1)
