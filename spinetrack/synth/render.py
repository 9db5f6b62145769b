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

__all__ = ["tube_points", "ball_points", "deposit", "blur", "add_halo", "haze", "neuropil",
           "upsample", "coarse_step", "move_coarse",
           "add_upsampled",
           "to_counts", "compound_photon_noise",
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
    """Sum ``weights`` into a float32 volume at ``points_px``.

    Linear interpolation between the two nearest planes along z (planes are far
    apart), nearest pixel in y and x (points are dense there, and the PSF spans
    several pixels).
    """
    p = np.asarray(points_px, float)
    z0 = np.floor(p[:, 0]).astype(np.int64)
    fz = p[:, 0] - z0
    iy = np.rint(p[:, 1]).astype(np.int64)
    ix = np.rint(p[:, 2]).astype(np.int64)
    ok_yx = (iy >= 0) & (iy < shape[1]) & (ix >= 0) & (ix < shape[2])
    flats, ws = [], []
    for dz, w in ((0, 1.0 - fz), (1, fz)):
        iz = z0 + dz
        ok = ok_yx & (iz >= 0) & (iz < shape[0])
        flats.append((iz[ok] * shape[1] + iy[ok]) * shape[2] + ix[ok])
        ws.append((w * weights)[ok])
    size = int(np.prod(shape))
    vol = np.bincount(np.concatenate(flats), weights=np.concatenate(ws), minlength=size)
    return vol.astype(np.float32).reshape(shape)


def blur(volume: np.ndarray, sigma_um, voxel_um) -> np.ndarray:
    """Gaussian blur with per-axis sigma in µm; the result keeps mass per µm³."""
    sigma_px = np.asarray(sigma_um, float) / np.asarray(voxel_um, float)
    out = ndi.gaussian_filter(volume, sigma_px, mode="constant", truncate=3.0)
    return out / np.float32(np.prod(voxel_um))


def _coarse_factors(shape, factor):
    y, x = shape[1], shape[2]
    return max(1, min(factor, y // 4)), max(1, min(factor, x // 4))


def haze(volume: np.ndarray, voxel_um, sigma_um=(6.0, 5.0, 5.0), factor: int = 8,
         extra=None, coarse: bool = False) -> np.ndarray:
    """A strongly blurred copy of ``volume`` (out-of-focus light), computed at low resolution.

    ``extra``, a coarse volume from :func:`neuropil` (same coarse grid), is added
    before upsampling. With ``coarse=True`` the low-resolution volume is
    returned (add it to a full volume with :func:`add_upsampled`).
    """
    z, y, x = volume.shape
    fy, fx = _coarse_factors(volume.shape, factor)
    yy, xx = (y // fy) * fy, (x // fx) * fx
    small = volume[:, :yy, :xx].reshape(z, yy // fy, fy, xx // fx, fx).mean(axis=(2, 4))
    step = np.array([voxel_um[0], voxel_um[1] * fy, voxel_um[2] * fx])
    small = ndi.gaussian_filter(small, np.asarray(sigma_um) / step, mode="nearest")
    if extra is not None:
        small = small + extra
    return small.astype(np.float32) if coarse else upsample(small, volume.shape)


def add_halo(signal: np.ndarray, voxel_um, core_sigma_um, halo_sigma_um, ratio: float,
             factor: int = 4) -> np.ndarray:
    """Give the point-spread function a broad halo, in place.

    ``signal`` was blurred by the Gaussian core (``core_sigma_um``). A wider
    Gaussian of total standard deviation ``halo_sigma_um`` (z, y, x) holding
    ``ratio`` times the light of the core is added, as an aberrated and
    scattered excitation focus in tissue spreads light beside bright
    structures. The extra blur is computed on a grid ``factor`` times coarser
    in y and x.
    """
    core = np.asarray(core_sigma_um, float)
    extra = np.sqrt(np.maximum(np.asarray(halo_sigma_um, float) ** 2 - core ** 2, 0.0))
    wide = haze(signal, voxel_um, sigma_um=extra, factor=factor, coarse=True)
    return add_upsampled(signal, wide, scale=ratio)


def _linear_taps(n_out: int, n_in: int):
    """Indices and weights of linear interpolation between pixel centres, edges clamped."""
    centre = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(centre).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (centre - lo).astype(np.float32)


def upsample(small: np.ndarray, shape) -> np.ndarray:
    """Linear interpolation of a coarse (z, y', x') volume onto the (z, y, x) grid (same z)."""
    small = small.astype(np.float32)
    lo, hi, f = _linear_taps(shape[2], small.shape[2])
    tmp = small[:, :, lo] * (1 - f) + small[:, :, hi] * f  # (z, y', x)
    lo, hi, f = _linear_taps(shape[1], small.shape[1])
    f = f[:, None]
    return tmp[:, lo, :] * (1 - f) + tmp[:, hi, :] * f


def add_upsampled(out: np.ndarray, small: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``out += scale * upsample(small, out.shape)``, plane by plane (no full-size temporaries)."""
    small = small.astype(np.float32) * np.float32(scale)
    lo_x, hi_x, f_x = _linear_taps(out.shape[2], small.shape[2])
    lo_y, hi_y, f_y = _linear_taps(out.shape[1], small.shape[1])
    f_y = f_y[:, None]
    for z in range(out.shape[0]):
        tmp = small[z][:, lo_x] * (1 - f_x) + small[z][:, hi_x] * f_x  # (y', x)
        out[z] += tmp[lo_y] * (1 - f_y) + tmp[hi_y] * f_y
    return out


def coarse_step(shape, voxel_um, factor: int = 8) -> np.ndarray:
    """(z, y, x) size in µm of a voxel of the coarse grid used by :func:`haze`."""
    fy, fx = _coarse_factors(shape, factor)
    return np.array([voxel_um[0], voxel_um[1] * fy, voxel_um[2] * fx])


def move_coarse(coarse: np.ndarray, matrix, translation_um, centre_um, step_um) -> np.ndarray:
    """Resample a coarse world-frame volume into a session frame (rigid part of its motion).

    A world point p appears at ``matrix @ (p - centre) + centre + translation``.
    """
    rinv = np.asarray(matrix, float).T
    step = np.asarray(step_um, float)
    c = np.asarray(centre_um, float)
    m = (rinv * step[None, :]) / step[:, None]
    offset = (c - rinv @ (c + np.asarray(translation_um, float))) / step
    return ndi.affine_transform(coarse, m, offset=offset, order=1, mode="nearest")


def neuropil(rng, shape, voxel_um, factor: int = 8, n_blobs: float = 1.0) -> np.ndarray:
    """Dim out-of-focus patches (somata and dendrites of other cells), coarse grid.

    A smooth random field thresholded into irregular patches of 5-20 µm with a
    peak near 1 (unit fluorophore density); ``n_blobs`` scales how much of the
    field they cover. Returned on the coarse grid of :func:`haze`.
    """
    fy, fx = _coarse_factors(shape, factor)
    cshape = (shape[0], shape[1] // fy, shape[2] // fx)
    step = np.array([voxel_um[0], voxel_um[1] * fy, voxel_um[2] * fx])
    field = ndi.gaussian_filter(rng.normal(size=cshape), np.array([2.5, 3.0, 3.0]) / step,
                                mode="wrap")
    field /= field.std() + 1e-12
    threshold = 2.4 - 0.5 * np.log1p(n_blobs)
    patches = np.clip(field - threshold, 0, None)
    grain = ndi.gaussian_filter(rng.normal(size=cshape), np.array([0.7, 0.6, 0.6]) / step,
                                mode="wrap")
    grain /= grain.std() + 1e-12
    patches *= np.clip(1.0 + 0.5 * grain, 0.2, None)  # granular, like out-of-focus neuropil
    patches = ndi.gaussian_filter(patches, np.array([1.0, 0.5, 0.5]) / step, mode="nearest")
    top = patches.max()
    return (patches / top).astype(np.float32) if top > 0 else patches.astype(np.float32)


def compound_photon_noise(rng, photons: np.ndarray, gain: float, gain_shape: float) -> np.ndarray:
    """Summed pulse heights of a Poisson number of photons, each gamma distributed.

    The exact law (a Poisson sum of Gamma(``gain_shape``, ``gain / gain_shape``)
    pulses) is sampled as zero with probability exp(-λ), and otherwise as one
    gamma variate with the mean and variance of the sum given at least one
    photon. This is exact for one photon and for many, matches the first two
    moments everywhere, and costs one uniform and one gamma draw per voxel
    instead of a Poisson and a gamma draw.
    """
    lam = np.maximum(photons, 0).astype(np.float32)
    out = np.zeros(lam.shape, dtype=np.float32)
    excess = np.float32(1.0 + 1.0 / gain_shape)
    g = np.float32(gain)
    for z in range(lam.shape[0]):  # plane by plane: small temporaries
        lz = lam[z]
        p_hit = -np.expm1(-lz)
        hit = rng.random(lz.shape, dtype=np.float32) < p_hit
        lh, ph = lz[hit], p_hit[hit]
        mean = g * lh / ph
        second = g * g * (lh * excess + lh * lh) / ph
        var = np.maximum(second - mean * mean, np.float32(1e-6) * mean * mean)
        plane = np.zeros(lz.shape, dtype=np.float32)
        plane[hit] = rng.standard_gamma(mean * mean / var, dtype=np.float32) * (var / mean)
        out[z] = plane
    return out


def to_counts(rng, photons: np.ndarray, read_noise: float, gain: float, offset: float,
              dtype: str, gain_shape: float = 1.0, corr_px=(0.0, 0.0)) -> np.ndarray:
    """Detector model: photons -> grey levels.

    Each photon gives a pulse of random height (gamma distributed with mean
    ``gain`` and shape ``gain_shape``: 1 is a photomultiplier's exponential pulse
    heights, large values approach plain Poisson noise; see
    :func:`compound_photon_noise`). The pulses are smoothed over neighbouring
    pixels (``corr_px``, Gaussian sigma along y and x in pixels, as the
    detector's bandwidth does in a line scan), then read noise and ``offset``
    are added and the result is rounded and clipped to the output type, so dim
    images have many zero pixels.
    """
    counts = compound_photon_noise(rng, photons, gain, gain_shape)
    if max(corr_px) > 0:
        counts = ndi.gaussian_filter(counts, (0.0, corr_px[0], corr_px[1]), truncate=3.0)
    for z in range(photons.shape[0]):
        counts[z] += rng.standard_normal(photons.shape[1:], dtype=np.float32) * np.float32(
            read_noise) + np.float32(offset)
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
