"""make_series: a synthetic series of two-photon sessions with its full truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fates import classify_fates
from ..io import Series, Session
from ..progress import ProgressCallback, report
from . import render
from .dynamics import simulate_presence
from .geometry import AXON_RADIUS_UM, make_axons, make_branches, make_puncta, spine_shapes
from .placement import SpinePlacer
from .presets import PRESETS, SynthConfig, get_preset
from .transform import SessionTransform, identity_transform, random_transform

__all__ = ["SynthSeries", "make_series", "make_noise_series", "RESTORE_RADIUS_UM"]

RESTORE_RADIUS_UM = 2.0
_REF_AREA_UM2 = (768 * 0.12) ** 2
_MIN_BOX_UM = 8.0  # smallest (y, x) extent of the region holding the truth

# independent random streams, so that e.g. null=True changes only the dynamics
_GEOMETRY, _DYNAMICS, _TRANSFORM, _SHAPES, _SHAFT, _PUNCTA, _SESSION = 1, 2, 3, 4, 5, 6, 100


@dataclass
class SynthSeries:
    """A synthetic series and its truth.

    Attributes
    ----------
    series : Series
        Sessions ``session0, session1, ...`` with voxel size and day.
    truth : dict of DataFrame
        ``spines, fates, lines, branches, sessions, filopodia`` (docs/synth.md).
    info : dict
        Preset, seed, per-session transforms, stress branches, parameters.
    transforms : list of SessionTransform
        World (session 0 µm) to session µm, one per session.
    """

    series: Series
    truth: dict[str, pd.DataFrame]
    info: dict
    transforms: list[SessionTransform] = field(default_factory=list)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _margins(cfg: SynthConfig, extent) -> tuple[float, float]:
    """Lateral and axial margin that keeps all geometry inside every session's image."""
    half_diag = 0.5 * float(np.hypot(extent[1], extent[2]))
    lateral = (max(cfg.drift_um[1], cfg.drift_um[2]) + np.deg2rad(cfg.rotation_deg) * half_diag
               + cfg.warp_um + 1.0 + 2.5)  # 2.5: room for spines and their heads
    axial = (cfg.drift_um[0] + 0.1 * np.deg2rad(cfg.rotation_deg) * half_diag
             + cfg.warp_um + 3.0 + 2.0)
    return lateral, min(axial, 0.35 * extent[0])


def _min_pixels(cfg: SynthConfig, voxel) -> int:
    """Smallest y and x size in pixels that leaves room for the truth inside the margins."""
    step = min(voxel[1], voxel[2])
    n = 16
    while n < 100000:
        extent = np.array([cfg.shape[0] * voxel[0], n * step, n * step])
        if n * step - 2 * _margins(cfg, extent)[0] >= _MIN_BOX_UM:
            return n
        n += 8
    return n


def _check_args(preset, n_sessions, days, shape):
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    if not isinstance(cfg, SynthConfig):
        raise InputError(None, f"preset must be one of {sorted(PRESETS)} or a SynthConfig")
    if int(n_sessions) < 1:
        raise InputError(None, f"a series needs at least one session, got {n_sessions}")
    n_sessions = int(n_sessions)
    if days is None:
        days = [4.0 * k for k in range(n_sessions)]
    days = [float(d) for d in days]
    if len(days) != n_sessions:
        raise InputError(None, f"{len(days)} day numbers given for {n_sessions} sessions")
    if any(b < a for a, b in zip(days, days[1:])):
        raise InputError(None, f"day numbers {days} must not decrease")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1 or shape[1] < 64 or shape[2] < 64 or shape[0] < 4:
            raise InputError(None, f"shape {shape} must be (z, y, x) with z >= 4 and y, x >= 64")
        cfg = cfg.replace(shape=shape)
    return cfg, n_sessions, days


def _filopodia(cfg, rng, branches, lines, n_sessions) -> pd.DataFrame:
    total = float(branches["length_um"].sum())
    n = rng.poisson(cfg.filopodia_per_um * total)
    if n == 0:
        cols = ["filopodium_id", "branch_id", "arc_um", "side", "elevation_deg", "azimuth_deg",
                "length_um", "first_session", "last_session"]
        return spine_shapes(lines, pd.DataFrame({c: pd.Series(dtype=float) for c in cols}))
    lengths = branches["length_um"].to_numpy()
    b = rng.choice(branches["branch_id"].to_numpy(), n, p=lengths / lengths.sum())
    top = np.maximum(lengths[np.searchsorted(branches["branch_id"].to_numpy(), b)] - 1.5, 1.5)
    arc = rng.uniform(1.5, top)
    first = rng.integers(0, n_sessions, n)
    last = np.minimum(first + rng.integers(0, 2, n), n_sessions - 1)
    filo = pd.DataFrame({
        "filopodium_id": np.arange(n), "branch_id": b, "arc_um": arc,
        "side": rng.choice([-1, 1], n), "elevation_deg": rng.uniform(-40, 40, n),
        "azimuth_deg": rng.uniform(-45, 45, n), "length_um": rng.uniform(2.5, 5.0, n),
        "first_session": first, "last_session": last})
    return spine_shapes(lines, filo)


def _xyz(df: pd.DataFrame, prefix: str) -> np.ndarray:
    return df[[prefix + "z", prefix + "y", prefix + "x"]].to_numpy(dtype=float)


def _render_session(cfg, tf, shaft, spines_k, head, filo_k, puncta, neuropil, session_rng,
                    gain_k):
    """The image of one session (transform ``tf``) with fresh noise from ``session_rng``.

    ``shaft`` holds the (points, weights) of shafts, stubs and axons; ``head``
    the world positions of the heads of ``spines_k`` in this session.
    """
    voxel = np.asarray(cfg.voxel_size_um, float)
    pts, wts = [shaft[0]], [shaft[1]]
    rng = session_rng
    if len(spines_k):
        base = _xyz(spines_k, "b")
        direction = _xyz(spines_k, "d")
        p, w, _ = render.tube_points(rng, base - 0.3 * direction, head,
                                     spines_k["neck_radius_um"].to_numpy(),
                                     spines_k["bright_k"].to_numpy())
        pts.append(p), wts.append(w)
        p, w, _ = render.ball_points(rng, head, spines_k["head_radius_k"].to_numpy(),
                                     spines_k["bright_k"].to_numpy())
        pts.append(p), wts.append(w)
    if len(filo_k):
        p, w, _ = render.tube_points(rng, _xyz(filo_k, "b") - 0.3 * _xyz(filo_k, "d"),
                                     _xyz(filo_k, "h"), 0.1, 0.9)
        pts.append(p), wts.append(w)
    if len(puncta):
        p, w, _ = render.ball_points(rng, puncta[["z_um", "y_um", "x_um"]].to_numpy(),
                                     puncta["radius_um"].to_numpy(),
                                     puncta["brightness"].to_numpy())
        pts.append(p), wts.append(w)
    world = np.concatenate(pts)
    weights = np.concatenate(wts)
    session_um = tf.apply(world)
    weights = weights * np.exp(-np.clip(session_um[:, 0], 0, None) / cfg.depth_decay_um)
    volume = render.deposit(cfg.shape, session_um / voxel, weights)
    signal = render.blur(volume, cfg.psf_sigma_um, voxel)
    del volume
    if cfg.psf_halo_ratio > 0:
        render.add_halo(signal, voxel, cfg.psf_sigma_um, cfg.psf_halo_sigma_um,
                        cfg.psf_halo_ratio)
    if cfg.haze_fraction > 0 or neuropil is not None:
        coarse = np.float32(cfg.haze_fraction) * render.haze(signal, voxel, coarse=True)
        if neuropil is not None:  # the out-of-focus tissue moves with the field
            coarse += render.move_coarse(neuropil, tf.matrix, tf.translation_um, tf.centre_um,
                                         render.coarse_step(cfg.shape, voxel))
        render.add_upsampled(signal, coarse)
    signal *= np.float32(cfg.photons * gain_k)
    z_um = np.arange(cfg.shape[0]) * voxel[0]
    signal += (cfg.background_photons * np.exp(-z_um / cfg.depth_decay_um)).astype(
        np.float32)[:, None, None]
    return render.to_counts(rng, signal, cfg.read_noise, cfg.gain, cfg.offset, cfg.dtype,
                            cfg.gain_shape, cfg.noise_corr_px)


def _clutter(cfg, rng, extent, outer, avoid, obstacles, n_sessions):
    """Puncta (bright boutons, dim neuropil puncta, boutons on axons), axons, neuropil.

    ``avoid``: points puncta keep 3 µm from; ``obstacles``: (centres, radii) of
    the balls filling the dendrites, which axons pass at ``cfg.axon_clearance_um``.

    Returns
    -------
    puncta : DataFrame
        ``punctum_id, z_um, y_um, x_um, radius_um, brightness, kind`` (world frame).
    present : (n_puncta, n_sessions) bool array
    axon_points : (points, weights) filling the axons
    neuropil : coarse volume or None
    """
    area = extent[1] * extent[2] / 1000.0
    bright = make_puncta(cfg, rng, extent, avoid, rng.poisson(cfg.puncta_per_1000um2 * area))
    dim = make_puncta(cfg, rng, extent, avoid, rng.poisson(cfg.dim_puncta_per_1000um2 * area))
    dim["radius_um"] = rng.uniform(0.15, 0.35, len(dim))
    dim["brightness"] = rng.uniform(0.5, 2.0, len(dim))
    axons, boutons = make_axons(rng, outer, rng.poisson(cfg.axons_per_100um * extent[2] / 100.0),
                                avoid, obstacles, cfg.axon_clearance_um)
    puncta = pd.concat([bright.assign(kind="bouton"), dim.assign(kind="neuropil"),
                        boutons.assign(kind="axon bouton")], ignore_index=True)
    puncta["punctum_id"] = np.arange(len(puncta))
    present = rng.random((len(puncta), n_sessions)) < 0.85
    if len(axons):
        ap, aw, _ = render.tube_points(rng, axons[:, 0], axons[:, 1],
                                       rng.uniform(*AXON_RADIUS_UM, len(axons)), 1.0)
    else:
        ap, aw = np.zeros((0, 3)), np.zeros(0)
    neuropil = (render.neuropil(rng, cfg.shape, voxel_um(cfg), n_blobs=cfg.neuropil_cover)
                * cfg.neuropil if cfg.neuropil > 0 else None)
    return puncta, present, (ap, aw), neuropil


def voxel_um(cfg: SynthConfig) -> np.ndarray:
    """Voxel size of a configuration as an array (z, y, x), µm."""
    return np.asarray(cfg.voxel_size_um, float)


def _puncta_table(puncta: pd.DataFrame, present, k: int, tf, voxel, shape) -> pd.DataFrame:
    """Puncta present in session k and inside its image, in that session's frame."""
    pk = puncta[present[:, k]]
    um = tf.apply(pk[["z_um", "y_um", "x_um"]].to_numpy())
    px = um / voxel
    inside = np.all((px >= 0) & (px <= np.asarray(shape) - 1), axis=1)
    out = pd.DataFrame({"punctum_id": pk["punctum_id"].to_numpy(dtype=int)[inside],
                        "session": k})
    _px_columns(out, um[inside], voxel)
    out["radius_um"] = pk["radius_um"].to_numpy(dtype=float)[inside]
    out["kind"] = pk["kind"].to_numpy()[inside]
    return out


def _shaft_points(cfg, rng, lines, stubs):
    """Points filling every shaft (branches and their bare stubs), with a beaded texture."""
    from scipy.ndimage import gaussian_filter1d

    pts, wts = [], []
    groups = [g for _, g in lines.groupby("branch_id")] + [g for _, g in stubs.groupby("stub")]
    for grp in groups:
        xyz = grp[["z_um", "y_um", "x_um"]].to_numpy()
        radius = grp["radius_um"].to_numpy()
        if len(xyz) < 2:
            continue
        bright = cfg.shaft_brightness * rng.uniform(0.8, 1.2) * np.ones(len(xyz))
        if cfg.shaft_texture > 0 and len(xyz) > 8:
            noise = gaussian_filter1d(rng.normal(size=len(xyz)), 0.8 / 0.25, mode="nearest")
            noise /= noise.std() + 1e-12
            bright *= np.clip(1 + cfg.shaft_texture * noise, 0.3, None)
        p, w, _ = render.tube_points(rng, xyz[:-1], xyz[1:], radius[:-1], bright[:-1])
        pts.append(p), wts.append(w)
        p, w, _ = render.ball_points(rng, xyz[[0, -1]], radius[[0, -1]], bright[[0, -1]])
        pts.append(p), wts.append(w)  # round ends and junctions
    return np.concatenate(pts), np.concatenate(wts)


def _visible(cfg, spines_k, head, head_session_um, gain_k) -> np.ndarray:
    """Whether each head stands out of the noise and is not hidden by its shaft."""
    frac = render.head_peak_fraction(spines_k["head_radius_k"].to_numpy(), cfg.psf_sigma_um)
    depth = np.exp(-np.clip(head_session_um[:, 0], 0, None) / cfg.depth_decay_um)
    peak = cfg.photons * gain_k * spines_k["bright_k"].to_numpy() * frac * depth
    excess = 1.0 + 1.0 / cfg.gain_shape  # pulse-height spread adds to the shot noise
    sd = np.sqrt(excess * cfg.gain ** 2 * (peak + cfg.background_photons) + cfg.read_noise ** 2)
    snr = cfg.gain * peak / sd
    centre = _xyz(spines_k, "c")
    lateral = np.hypot(head[:, 1] - centre[:, 1], head[:, 2] - centre[:, 2])
    axial = np.abs(head[:, 0] - centre[:, 0])
    hidden = (lateral < spines_k["shaft_radius_um"].to_numpy() + 0.3) & (axial < 2.0)
    return (snr >= cfg.min_snr) & ~hidden


def make_series(preset: str | SynthConfig = "realistic", n_sessions: int = 4, seed: int = 0,
                null: bool = False, days=None, shape=None,
                progress: ProgressCallback | None = None) -> SynthSeries:
    """Generate a synthetic two-photon series with known spines, fates and motion.

    Parameters
    ----------
    preset : {"easy", "realistic", "hard"} or SynthConfig
        Image quality, motion and dynamics (see :data:`PRESETS`, docs/synth.md).
    n_sessions : int
        Number of imaging sessions.
    seed : int
        Everything is determined by the seed.
    null : bool
        If True, the stress transition's losses fall uniformly at random on all
        branches (no clustering); geometry and motion are the same as with False.
    days : sequence of float, optional
        Day of each session (default 0, 4, 8, ...).
    shape : (z, y, x), optional
        Image size in voxels (default from the preset).
    progress : callable, optional
        ``progress(stage, done, total)``; may raise Cancelled.

    Returns
    -------
    SynthSeries
    """
    cfg, n_sessions, days = _check_args(preset, n_sessions, days, shape)
    report(progress, "synth: geometry", 0, n_sessions + 1)
    world = _build_world(cfg, seed, n_sessions, null)
    report(progress, "synth: geometry", 1, n_sessions + 1)
    voxel = voxel_um(cfg)
    sessions, rows = [], {"spines": [], "lines": [], "filopodia": [], "puncta": []}
    for k in range(n_sessions):
        image, tables = _session(world, cfg, k, _rng(seed, _SESSION + k))
        sessions.append(Session(image=image, voxel_size_um=tuple(float(v) for v in voxel),
                                name=f"session{k}", path=None, day=days[k]))
        for name, table in tables.items():
            rows[name].append(table)
        report(progress, "synth: render", k + 1, n_sessions)
    report(progress, "synth: geometry", n_sessions + 1, n_sessions + 1)

    truth_spines = pd.concat(rows["spines"], ignore_index=True)
    fates = classify_fates(truth_spines, n_sessions, RESTORE_RADIUS_UM)
    truth = {
        "spines": truth_spines,
        "fates": fates,
        "lines": pd.concat(rows["lines"], ignore_index=True),
        "branches": _branch_table(world.branches),
        "sessions": _sessions_table(n_sessions, days, voxel),
        "filopodia": pd.concat(rows["filopodia"], ignore_index=True),
        "puncta": pd.concat(rows["puncta"], ignore_index=True),
    }
    info = _info(preset, seed, null, cfg, days, world, fates)
    return SynthSeries(Series(tuple(sessions)), truth, info, world.transforms)


@dataclass
class _World:
    """Everything that does not depend on a session's noise (world frame, µm)."""

    lines: pd.DataFrame
    branches: pd.DataFrame
    spines: pd.DataFrame
    instances: dict
    filopodia: pd.DataFrame
    shaft: tuple
    puncta: pd.DataFrame
    puncta_present: np.ndarray
    neuropil: np.ndarray | None
    transforms: list
    gains: np.ndarray
    dynamics: dict


def _field_box(cfg: SynthConfig):
    """(box, outer): where the truth lives, and the whole field (plus 2 µm) for stubs."""
    voxel = voxel_um(cfg)
    extent = np.asarray(cfg.shape) * voxel
    lat, ax = _margins(cfg, extent)
    if min(extent[1], extent[2]) - 2 * lat < _MIN_BOX_UM:
        need = _min_pixels(cfg, voxel)
        raise InputError(None, f"shape {tuple(cfg.shape)} is too small for this preset's drift "
                         f"and rotation: give at least {need} pixels in y and x")
    box = ((ax, extent[0] - ax), (lat, extent[1] - lat), (lat, extent[2] - lat))
    outer = (box[0], (-2.0, extent[1] + 2.0), (-2.0, extent[2] + 2.0))
    return box, outer


def _n_branches(cfg: SynthConfig, rng, box) -> int:
    n = int(rng.integers(cfg.n_branches[0], cfg.n_branches[1] + 1))
    area = (box[1][1] - box[1][0]) * (box[2][1] - box[2][0])
    if area < 0.25 * _REF_AREA_UM2:  # small fields hold fewer branches
        n = int(max(3, min(n, round(n * area / (0.25 * _REF_AREA_UM2)))))
    return n


def _build_world(cfg: SynthConfig, seed: int, n_sessions: int, null: bool) -> _World:
    """Branches, spines and their lives, filopodia, clutter, session motion and gains."""
    extent = np.asarray(cfg.shape) * voxel_um(cfg)
    box, outer = _field_box(cfg)
    g = _rng(seed, _GEOMETRY)
    lines, branches, stubs = make_branches(cfg, g, box, _n_branches(cfg, g, box), outer)

    placer = SpinePlacer(cfg, lines, stubs, n_sessions, seed, _SHAPES)
    life, dyn_info = simulate_presence(cfg, branches, n_sessions, _rng(seed, _DYNAMICS), null,
                                       fits=placer.fits)
    spines, inst = placer.table(lines, life)
    filo = _filopodia(cfg, _rng(seed, _SHAPES + 20), branches, lines, n_sessions)
    shaft = _shaft_points(cfg, _rng(seed, _SHAFT), lines, stubs)

    avoid = np.concatenate([lines[["z_um", "y_um", "x_um"]].to_numpy(), _xyz(spines, "h")])
    puncta, present, axon_points, neuropil = _clutter(
        cfg, _rng(seed, _PUNCTA), extent, outer, avoid,
        _dendrite_balls(cfg, lines, stubs, spines), n_sessions)
    shaft = (np.concatenate([shaft[0], axon_points[0]]),
             np.concatenate([shaft[1], axon_points[1]]))

    tr = _rng(seed, _TRANSFORM)
    centre = extent / 2.0
    transforms = [identity_transform(centre)] + [
        random_transform(tr, centre, cfg.drift_um, cfg.rotation_deg, cfg.warp_um)
        for _ in range(n_sessions - 1)]
    gains = np.concatenate([[1.0], 1 + tr.uniform(-1, 1, n_sessions - 1) * cfg.brightness_change])
    return _World(lines, branches, spines, inst, filo, shaft, puncta, present, neuropil,
                  transforms, gains, dyn_info)


def _dendrite_balls(cfg, lines, stubs, spines):
    """(centres, radii) of balls covering every shaft, neck and head (any session), µm."""
    cols = ["z_um", "y_um", "x_um"]
    centres = [lines[cols].to_numpy(float), stubs[cols].to_numpy(float)]
    radii = [lines["radius_um"].to_numpy(float), stubs["radius_um"].to_numpy(float)]
    if len(spines):
        base, head = _xyz(spines, "b"), _xyz(spines, "h")
        t = np.linspace(0.0, 1.0, 8)
        centres.append((base[:, None] + t[None, :, None] * (head - base)[:, None]).reshape(-1, 3))
        radii.append(np.repeat(spines["neck_radius_um"].to_numpy(float), len(t)))
        centres.append(head)  # largest size and a 3-SD head jitter
        radii.append(1.1 * spines["head_radius_um"].to_numpy(float) + 3 * cfg.head_jitter_um)
    return np.concatenate(centres), np.concatenate(radii)


def _session(world: _World, cfg: SynthConfig, k: int, rng):
    """Image of session k and its truth rows (spines, lines, filopodia, puncta)."""
    voxel = voxel_um(cfg)
    tf = world.transforms[k]
    spines, inst = world.spines, world.instances
    alive = np.flatnonzero((spines["first_session"] <= k) & (spines["last_session"] >= k))
    sk = spines.iloc[alive].copy()
    head_w = _xyz(sk, "h") + inst["jitter"][alive, k]
    sk["head_radius_k"] = sk["head_radius_um"].to_numpy() * inst["head_scale"][alive, k]
    sk["bright_k"] = sk["brightness"].to_numpy() * inst["bright_scale"][alive, k]
    filo = world.filopodia
    fk = filo[(filo["first_session"] <= k) & (filo["last_session"] >= k)]
    image = _render_session(cfg, tf, world.shaft, sk, head_w, fk,
                            world.puncta[world.puncta_present[:, k]], world.neuropil, rng,
                            world.gains[k])
    head_s = tf.apply(head_w)
    visible = _visible(cfg, sk, head_w, head_s, world.gains[k])
    lines = world.lines
    tables = {
        "spines": _spine_table(sk, k, head_s, tf.apply(_xyz(sk, "b")), head_w, voxel, visible),
        "lines": _line_table(lines, k, tf.apply(lines[["z_um", "y_um", "x_um"]].to_numpy()),
                             voxel),
        "filopodia": _filo_table(fk, k, tf, voxel),
        "puncta": _puncta_table(world.puncta, world.puncta_present, k, tf, voxel, cfg.shape),
    }
    return image, tables


def _sessions_table(n_sessions: int, days, voxel) -> pd.DataFrame:
    return pd.DataFrame({
        "session": np.arange(n_sessions), "name": [f"session{k}" for k in range(n_sessions)],
        "file": [f"session{k}.tif" for k in range(n_sessions)], "day": days,
        "voxel_z_um": voxel[0], "voxel_y_um": voxel[1], "voxel_x_um": voxel[2]})


def _info(preset, seed, null, cfg: SynthConfig, days, world: _World, fates) -> dict:
    """The contents of truth.json."""
    dyn = world.dynamics
    return {
        "preset": preset if isinstance(preset, str) else "custom", "seed": int(seed),
        "null": bool(null), "n_sessions": len(world.transforms), "shape": list(cfg.shape),
        "voxel_size_um": voxel_um(cfg).tolist(), "days": days,
        "restore_radius_um": RESTORE_RADIUS_UM,
        "stress_transition": dyn["stress_transition"],
        "stress_branches": dyn["stress_branches"],
        "loss_probability": {str(k): {str(b): p for b, p in v.items()}
                             for k, v in dyn["loss_probability"].items()},
        "session_brightness": world.gains.tolist(),
        "transforms": [dict(session=k, **tf.to_dict()) for k, tf in enumerate(world.transforms)],
        "n_puncta": int(len(world.puncta)),
        "fate_counts": {f: int(n) for f, n in fates["fate"].value_counts().sort_index().items()},
        "params": cfg.to_dict(),
    }


def _px_columns(df: pd.DataFrame, um: np.ndarray, voxel, prefix: str = "") -> None:
    for i, ax in enumerate("zyx"):
        df[prefix + ax] = um[:, i] / voxel[i]
    if not prefix:
        for i, ax in enumerate("zyx"):
            df[ax + "_um"] = um[:, i]


def _spine_table(sk, k, head_s, base_s, head_w, voxel, visible) -> pd.DataFrame:
    out = pd.DataFrame({"spine_id": sk["spine_id"].to_numpy(), "session": k})
    _px_columns(out, head_s, voxel)
    out["branch_id"] = sk["branch_id"].to_numpy()
    out["arc_um"] = sk["arc_um"].to_numpy()
    out["length_um"] = np.linalg.norm(head_w - _xyz(sk, "b"), axis=1)
    out["source"] = "truth"
    out["side"] = sk["side"].to_numpy()
    out["kind"] = "spine"
    _px_columns(out, base_s, voxel, "base_")
    out["head_radius_um"] = sk["head_radius_k"].to_numpy()
    out["visible"] = visible
    out["near_limit"] = sk["near_limit"].to_numpy()
    return out


def _line_table(lines, k, um, voxel) -> pd.DataFrame:
    out = pd.DataFrame({"branch_id": lines["branch_id"].to_numpy(), "session": k,
                        "point": lines["point"].to_numpy()})
    for i, ax in enumerate("zyx"):
        out[ax] = um[:, i] / voxel[i]
    for i, ax in enumerate("zyx"):
        out[ax + "_um"] = um[:, i]
    out["arc_um"] = lines["arc_um"].to_numpy()
    out["radius_um"] = lines["radius_um"].to_numpy()
    return out


def _filo_table(fk, k, tf, voxel) -> pd.DataFrame:
    out = pd.DataFrame({"filopodium_id": fk["filopodium_id"].to_numpy(dtype=int), "session": k})
    _px_columns(out, tf.apply(_xyz(fk, "h")), voxel)
    out["branch_id"] = fk["branch_id"].to_numpy(dtype=int)
    out["arc_um"] = fk["arc_um"].to_numpy(dtype=float)
    out["length_um"] = fk["length_um"].to_numpy(dtype=float)
    out["source"] = "truth"
    out["kind"] = "filopodium"
    _px_columns(out, tf.apply(_xyz(fk, "b")), voxel, "base_")
    return out


def _branch_table(branches: pd.DataFrame) -> pd.DataFrame:
    out = branches[["branch_id", "length_um", "radius_um", "start_kind", "end_kind",
                    "dendrite"]].copy()
    out["arc_start_um"] = 0.0
    out["arc_end_um"] = out["length_um"]
    return out


def make_noise_series(preset: str | SynthConfig = "realistic", n_sessions: int = 3,
                      seed: int = 0, shape=None, days=None) -> SynthSeries:
    """A series of pure noise (background photons, shot and read noise), no dendrite.

    The truth tables exist and are empty, so a tool run on it can be scored:
    every detection is a false positive.
    """
    cfg, n_sessions, days = _check_args(preset, n_sessions, days, shape)
    voxel = np.asarray(cfg.voxel_size_um, float)
    sessions = []
    for k in range(n_sessions):
        rng = _rng(seed, _SESSION + k)
        photons = np.full(cfg.shape, cfg.background_photons, dtype=np.float32)
        image = render.to_counts(rng, photons, cfg.read_noise, cfg.gain, cfg.offset, cfg.dtype)
        if image.min() == image.max():  # a constant image is refused as input
            image.flat[int(rng.integers(image.size))] += 1
        sessions.append(Session(image=image, voxel_size_um=tuple(float(v) for v in voxel),
                                name=f"session{k}", path=None, day=days[k]))
    still = cfg.replace(drift_um=(0.0, 0.0, 0.0), rotation_deg=0.0, warp_um=0.0)
    empty = make_series(still, n_sessions=1, seed=seed, shape=(8, 256, 256)).truth
    truth = {name: df.iloc[0:0].copy() for name, df in empty.items()}
    truth["sessions"] = pd.DataFrame({
        "session": np.arange(n_sessions), "name": [f"session{k}" for k in range(n_sessions)],
        "file": [f"session{k}.tif" for k in range(n_sessions)], "day": days,
        "voxel_z_um": voxel[0], "voxel_y_um": voxel[1], "voxel_x_um": voxel[2]})
    centre = np.asarray(cfg.shape) * voxel / 2
    info = {"preset": preset if isinstance(preset, str) else "custom", "seed": int(seed),
            "null": True, "n_sessions": n_sessions, "shape": list(cfg.shape),
            "voxel_size_um": voxel.tolist(), "days": days, "restore_radius_um": RESTORE_RADIUS_UM,
            "noise_only": True, "stress_transition": None, "stress_branches": [],
            "transforms": [dict(session=k, **identity_transform(centre).to_dict())
                           for k in range(n_sessions)],
            "fate_counts": {}, "params": cfg.to_dict()}
    return SynthSeries(Series(tuple(sessions)), truth, info,
                       [identity_transform(centre)] * n_sessions)
