"""Parameters of the synthetic series generator and the three presets.

Every length is in µm, every angle in degrees. Ranges are ``(low, high)`` pairs
from which each object draws its own value uniformly. Brightness is in photons
at the detector for unit fluorophore density (see :mod:`spinetrack.synth.render`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["SynthConfig", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a synthetic series.

    Attributes
    ----------
    shape : tuple of int
        (z, y, x) size of every session image in voxels.
    voxel_size_um : tuple of float
        (z, y, x) voxel size, µm.
    dtype : str
        ``"uint8"`` or ``"uint16"``.
    n_branches : tuple of int
        Smallest and largest number of branches (segments between junctions and ends).
    shaft_radius_um, head_radius_um, neck_radius_um : tuple of float
        Radius ranges of dendritic shafts, spine heads and spine necks, µm.
    spine_density_per_um : tuple of float
        Spines per µm of branch in session 0 (drawn per branch).
    spine_length_um : tuple of float
        Distance from the shaft surface to the head centre, µm.
    z_spine_fraction : float
        Fraction of spines pointing mostly along z (above or below the shaft).
    dim_spine_fraction : float
        Fraction of spines near the detection limit (small, dim heads).
    filopodia_per_um : float
        Filopodia per µm of branch (each present in a short run of sessions).
    puncta_per_1000um2 : float
        Bright unattached puncta (axonal boutons) per 1000 µm² of field.
    tilt : float
        Largest |dz/ds| of a branch (z change per µm along it).
    psf_sigma_um : tuple of float
        (z, y, x) standard deviation of the Gaussian point-spread function, µm.
    psf_halo_ratio : float
        Light in a broad halo of the point-spread function relative to the
        light in its Gaussian core (aberrations and scattering of the
        excitation light in tissue); gives the diffuse glow beside bright
        dendrites of in-vivo images. The core keeps its brightness (``photons``
        was calibrated on heads). 0: a pure Gaussian PSF.
    psf_halo_sigma_um : tuple of float
        (z, y, x) standard deviation of the halo, µm.
    photons : float
        Photons per µm³ of fluorophore-filled volume at the surface (depth 0).
    depth_decay_um : float
        Brightness falls as exp(-z / depth_decay_um) with depth.
    background_photons : float
        Uniform background, photons per voxel.
    haze_fraction : float
        Strength of the out-of-focus haze relative to the in-focus signal.
    read_noise : float
        Standard deviation of the camera/PMT read noise, grey levels.
    gain : float
        Grey levels per photon.
    offset : float
        Grey level added before rounding (negative values clip dim pixels to 0).
    drift_um : tuple of float
        Largest rigid shift between sessions along (z, y, x), µm.
    rotation_deg : float
        Largest in-plane rotation between sessions, degrees (each session turns
        by half to all of it).
    warp_um : float
        Amplitude of the smooth non-rigid warp, µm.
    brightness_change : float
        Session brightness is multiplied by a factor in [1 - c, 1 + c].
    loss_rate : float
        Probability that a spine present in one session is gone in the next.
    formation_rate : float
        New spines per transition as a fraction of the spines present.
    restore_fraction : float
        Fraction of new spines placed within 1.2 µm of the site of an earlier loss.
    stress_loss_rate : float
        Loss probability on the one or two stressed branches in the stress transition.
    head_jitter_um : float
        Session-to-session jitter of a head's position, µm.
    gain_shape : float
        Shape of the gamma distribution of one photon's pulse height (1: a
        photomultiplier's exponential pulses; large: plain Poisson noise).
    noise_corr_px : tuple of float
        Gaussian sigma (y, x) in pixels over which the detector smooths the
        noise (neighbouring pixels correlate as in real line scans).
    neuropil : float
        Peak brightness of dim out-of-focus patches, as a fraction of ``photons``.
    neuropil_cover : float
        How much of the field the patches cover (0 none, ~1 like rr30a).
    axons_per_100um : float
        Thin axons with boutons crossing each 100 µm of field width.
    axon_clearance_um : float
        Smallest distance between an axon's surface and a dendrite's (shaft,
        neck, head), µm; an axon in the way of a dendrite bends along z to pass
        just above or below it (axons run through the neuropil between
        dendrites and touch them at synapses). A large value keeps axons away
        from dendrites altogether.
    dim_puncta_per_1000um2 : float
        Small dim puncta of the neuropil per 1000 µm² of field.
    shaft_texture : float
        Relative standard deviation of the shaft brightness along a branch.
    shaft_brightness : float
        Fluorophore density of shafts relative to spines (rr30a's shafts are
        about 1.5 times brighter than a same-sized head would be).
    spine_gap_um : float
        Smallest distance between the surfaces of any two spines present in one
        session (heads and necks) and between a spine and a dendrite's shaft, µm
        (:mod:`spinetrack.synth.placement`). 0.15 µm: room for the thinnest
        unmyelinated axons or glial processes of the neuropil (0.1–0.2 µm)
        between two membranes; spines seen to touch in light microscopy are
        separated by at least that in electron micrographs.
    min_snr : float
        A spine head whose noise-free peak is below this many noise standard
        deviations is marked ``visible = False`` in the truth.
    """

    shape: tuple[int, int, int] = (48, 768, 768)
    voxel_size_um: tuple[float, float, float] = (1.0, 0.12, 0.12)
    dtype: str = "uint8"
    n_branches: tuple[int, int] = (5, 8)
    shaft_radius_um: tuple[float, float] = (0.3, 0.8)
    head_radius_um: tuple[float, float] = (0.4, 0.9)
    neck_radius_um: tuple[float, float] = (0.1, 0.18)
    spine_density_per_um: tuple[float, float] = (0.3, 0.6)
    spine_length_um: tuple[float, float] = (0.45, 1.8)
    z_spine_fraction: float = 0.15
    dim_spine_fraction: float = 0.1
    filopodia_per_um: float = 0.02
    puncta_per_1000um2: float = 6.0
    tilt: float = 0.25
    psf_sigma_um: tuple[float, float, float] = (1.0, 0.25, 0.25)
    psf_halo_ratio: float = 0.25
    psf_halo_sigma_um: tuple[float, float, float] = (3.0, 1.0, 1.0)
    photons: float = 140.0
    depth_decay_um: float = 60.0
    background_photons: float = 1.9
    haze_fraction: float = 0.35
    read_noise: float = 0.8
    gain: float = 4.0
    offset: float = -1.6
    drift_um: tuple[float, float, float] = (2.0, 3.0, 3.0)
    rotation_deg: float = 2.0
    warp_um: float = 0.3
    brightness_change: float = 0.15
    loss_rate: float = 0.08
    formation_rate: float = 0.1
    restore_fraction: float = 0.15
    stress_loss_rate: float = 0.45
    head_jitter_um: float = 0.1
    gain_shape: float = 0.6
    noise_corr_px: tuple[float, float] = (0.45, 0.6)
    neuropil: float = 0.08
    neuropil_cover: float = 1.0
    axons_per_100um: float = 5.0
    axon_clearance_um: float = 0.15
    dim_puncta_per_1000um2: float = 80.0
    shaft_texture: float = 0.3
    shaft_brightness: float = 2.0
    spine_gap_um: float = 0.15
    min_snr: float = 2.0

    def replace(self, **changes: Any) -> "SynthConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists in JSON)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, SynthConfig] = {
    "easy": SynthConfig(
        shape=(32, 512, 512), dtype="uint16", photons=900.0, background_photons=2.0,
        haze_fraction=0.1, read_noise=2.0, gain=1.0, offset=10.0,
        drift_um=(0.5, 1.0, 1.0), rotation_deg=0.3, warp_um=0.05, brightness_change=0.05,
        dim_spine_fraction=0.0, puncta_per_1000um2=2.0, filopodia_per_um=0.01,
        depth_decay_um=200.0, gain_shape=50.0, noise_corr_px=(0.0, 0.0),
        neuropil=0.0, dim_puncta_per_1000um2=0.0, shaft_texture=0.15, shaft_brightness=1.3,
        axons_per_100um=1.0, axon_clearance_um=2.0, psf_halo_ratio=0.0,
    ),
    "realistic": SynthConfig(),
    "hard": SynthConfig(
        photons=110.0, psf_halo_ratio=0.4, background_photons=3.0, neuropil=0.12,
        dim_puncta_per_1000um2=120.0,
        haze_fraction=0.5, read_noise=1.2,
        drift_um=(4.0, 8.0, 8.0), rotation_deg=4.0, warp_um=0.6, brightness_change=0.3,
        dim_spine_fraction=0.2, puncta_per_1000um2=10.0, filopodia_per_um=0.04,
        head_jitter_um=0.2,
    ),
}


def get_preset(name: str) -> SynthConfig:
    """The configuration of a named preset.

    Raises
    ------
    InputError
        For an unknown name.
    """
    from ..errors import InputError

    if name not in PRESETS:
        raise InputError(None, f"unknown synth preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
