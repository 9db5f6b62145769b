"""Tiny synthetic dendrites with known spines, boutons and filopodia for the tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

VOXEL = (0.5, 0.1, 0.1)


def _segment_distance(zz, yy, xx, a, b):
    """Distance (µm) from every voxel to the segment a-b (µm points)."""
    p = np.stack([zz, yy, xx], axis=-1)
    ab = np.asarray(b, float) - np.asarray(a, float)
    t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-12), 0.0, 1.0)
    closest = np.asarray(a, float) + t[..., None] * ab
    return np.linalg.norm(p - closest, axis=-1)


def tube_image(shape=(12, 140, 300), voxel=VOXEL, spines=(), boutons=(), filopodia=(),
               shaft_y_um=7.0, shaft_z_um=3.0, shaft_radius_um=0.45, noise=4.0, seed=0,
               extra_shafts=()):
    """A horizontal dendrite along x with protrusions; returns (uint8 image, truth dict).

    Parameters
    ----------
    spines : sequence of (x_um, side, length_um)
        Spine at arc position ``x_um``; ``side`` +1 goes to smaller y, -1 to larger y;
        ``length_um`` from the shaft surface to the head centre.
    boutons : sequence of (x_um, side, distance_um)
        A detached bright blob at that distance from the centre line (no neck).
    filopodia : sequence of (x_um, side, length_um)
        A thin protrusion without a head.
    extra_shafts : sequence of ((z, y, x), (z, y, x)) µm end points of more dendrites.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    zz, yy, xx = np.meshgrid(np.arange(nz) * voxel[0], np.arange(ny) * voxel[1],
                             np.arange(nx) * voxel[2], indexing="ij")
    img = np.zeros(shape, np.float32)
    x_end = (nx - 1) * voxel[2]
    shafts = [((shaft_z_um, shaft_y_um, 1.0), (shaft_z_um, shaft_y_um, x_end - 1.0))]
    shafts += list(extra_shafts)
    for a, b in shafts:
        img = np.maximum(img, 1.0 * (_segment_distance(zz, yy, xx, a, b) <= shaft_radius_um))
    heads = []
    for x_um, side, length in spines:
        base = (shaft_z_um, shaft_y_um, x_um)
        if side == 0:  # straight up along z
            head = (shaft_z_um + shaft_radius_um + length, shaft_y_um, x_um)
        else:
            head = (shaft_z_um, shaft_y_um - side * (shaft_radius_um + length), x_um)
        img = np.maximum(img, 0.5 * (_segment_distance(zz, yy, xx, base, head) <= 0.12))
        img = np.maximum(img, 0.9 * (_segment_distance(zz, yy, xx, head, head) <= 0.35))
        heads.append(head)
    for x_um, side, dist in boutons:
        c = (shaft_z_um, shaft_y_um - side * dist, x_um)
        img = np.maximum(img, 1.0 * (_segment_distance(zz, yy, xx, c, c) <= 0.4))
    tips = []
    for x_um, side, length in filopodia:
        base = (shaft_z_um, shaft_y_um, x_um)
        tip = (shaft_z_um, shaft_y_um - side * (shaft_radius_um + length), x_um)
        img = np.maximum(img, 0.6 * (_segment_distance(zz, yy, xx, base, tip) <= 0.12))
        tips.append(tip)
    sig = (0.6 / voxel[0], 0.15 / voxel[1], 0.15 / voxel[2])
    img = ndi.gaussian_filter(img, sig) * 200.0 + 5.0
    img = img + rng.normal(0.0, noise, img.shape)
    truth = {"heads_um": np.array(heads).reshape(-1, 3),
             "filopodia_um": np.array(tips).reshape(-1, 3)}
    return np.clip(img, 0, 255).astype(np.uint8), truth
