"""Synthetic two-photon series of dendrites and spines with known truth.

>>> from spinetrack.synth import make_series, write_synth, read_truth, PRESETS
>>> syn = make_series(preset="easy", n_sessions=2, seed=0, shape=(8, 96, 96))
>>> len(syn.series), sorted(syn.truth)[:3]
(2, ['branches', 'fates', 'filopodia'])

See docs/synth.md for the presets and every truth column.
"""

from .files import read_truth, read_truth_info, to_4d, write_synth
from .presets import PRESETS, SynthConfig, get_preset
from .series import RESTORE_RADIUS_UM, SynthSeries, make_noise_series, make_series

__all__ = [
    "make_series",
    "make_noise_series",
    "write_synth",
    "read_truth",
    "read_truth_info",
    "to_4d",
    "PRESETS",
    "SynthConfig",
    "SynthSeries",
    "get_preset",
    "RESTORE_RADIUS_UM",
]
