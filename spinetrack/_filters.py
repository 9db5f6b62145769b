"""Image filters shared by tracing and detection (private).

Every function takes sizes in µm and the voxel size, and returns float32.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["binned_smoothed", "bin_factor", "robust_scale", "ridge_2d", "max_projection"]


def robust_scale(image: np.ndarray, low: float = 50.0, high: float = 99.9,
                 sample: int = 2_000_000) -> tuple[float, float]:
    """Background and bright levels of an image from robust percentiles.

    Parameters
    ----------
    image : ndarray
        Any shape and dtype.
    low, high : float
        Percentiles taken as the background and the bright level.
    sample : int
        At most this many voxels (a regular subsample) are used, for speed.

    Returns
    -------
    (float, float)
        ``(background, span)`` with ``span > 0``; ``(image - background) / span``
        puts the background near 0 and bright structures near 1.
    """
    flat = image.reshape(-1)
    step = max(1, flat.size // sample)
    values = flat[::step].astype(np.float32)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [low, high])
    span = float(hi - lo)
    if not np.isfinite(span) or span <= 0:
        span = float(values.max() - lo) or 1.0
    return float(lo), span


def max_projection(image: np.ndarray) -> np.ndarray:
    """Maximum intensity projection along z, float32."""
    return np.asarray(image.max(axis=0), np.float32)


def ridge_2d(plane: np.ndarray, sigma_px_: float) -> np.ndarray:
    """Scale-normalised bright-ridge strength of a 2-D image.

    The most negative Hessian eigenvalue, negated and multiplied by ``sigma²``,
    where it is negative and larger in size than the other eigenvalue (a line,
    not a blob); zero elsewhere.
    """
    s = float(sigma_px_)
    hyy = ndi.gaussian_filter(plane, s, order=(2, 0), mode="nearest")
    hxx = ndi.gaussian_filter(plane, s, order=(0, 2), mode="nearest")
    hxy = ndi.gaussian_filter(plane, s, order=(1, 1), mode="nearest")
    half_trace = 0.5 * (hyy + hxx)
    root = np.sqrt(0.25 * (hyy - hxx) ** 2 + hxy ** 2)
    lam_low = half_trace - root  # most negative
    lam_high = half_trace + root
    out = np.where(lam_low < 0, -lam_low - np.maximum(lam_high, 0), 0).astype(np.float32)
    np.maximum(out, 0, out=out)
    return out * np.float32(s * s)


def bin_factor(voxel_size_um, target_um: float = 0.2) -> int:
    """Integer (y, x) binning that brings the pixel size up to about ``target_um``."""
    return max(1, int(round(target_um / float(min(voxel_size_um[1:])))))


def binned_smoothed(stack: np.ndarray, voxel_size_um, sigma_um: float,
                    target_um: float = 0.2) -> tuple[np.ndarray, int]:
    """Bin (y, x) to about ``target_um`` pixels, then smooth at ``sigma_um`` (z: 1 µm).

    Returns the float32 binned stack and the bin factor; pixel ``i`` of the
    result covers full-resolution pixels ``i*f .. i*f + f - 1``.
    """
    f = bin_factor(voxel_size_um, target_um)
    nz, ny, nx = stack.shape
    ny2, nx2 = max(1, ny // f), max(1, nx // f)
    if f > 1 and ny >= f and nx >= f:
        cut = stack[:, :ny2 * f, :nx2 * f].astype(np.float32)
        small = cut.reshape(nz, ny2, f, nx2, f).mean(axis=(2, 4))
    else:
        f = 1
        small = stack.astype(np.float32)
    vz, vy, vx = voxel_size_um
    sig_z = 0.0 if nz == 1 else min(1.0, 0.5 * 1.0 / vz) * 1.0
    sig = (sig_z, sigma_um * 0.6 / (vy * f), sigma_um * 0.6 / (vx * f))
    return ndi.gaussian_filter(small, sig, truncate=3.0, mode="nearest"), f
