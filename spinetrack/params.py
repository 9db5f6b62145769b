"""Parameters of every stage, as frozen dataclasses.

The same classes drive the command line (one ``--flag`` per field, generated
from the field's help text and unit), the napari widgets, and the saved
``params.json`` that reproduces a run. Physical quantities are in µm.

Each field carries metadata:

``help``
    One sentence for ``--help`` and widget tooltips.
``unit``
    Shown after the value (``"µm"``, ``"deg"``...), empty for plain numbers.
``min`` / ``max``
    Bounds for widgets and validation.
``flag``
    Command-line flag if not ``--`` + the field name with dashes.

Examples
--------
>>> p = Params()
>>> p.detect.min_protrusion_um
0.4
>>> Params.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from .errors import InputError

__all__ = [
    "TraceParams",
    "DetectParams",
    "RegisterParams",
    "LinkParams",
    "FateParams",
    "StatsParams",
    "Params",
    "param",
    "add_arguments",
    "params_from_args",
    "describe",
    "PATH_FIELDS",
    "absolute_paths",
]


def param(default: Any, help: str, unit: str = "", min: float | None = None,
          max: float | None = None, flag: str | None = None, choices: tuple | None = None):
    """A dataclass field with the metadata used for the CLI, widgets and validation."""
    meta = {"help": help, "unit": unit, "min": min, "max": max, "flag": flag, "choices": choices}
    return field(default=default, metadata=meta)


class _Section:
    """Mixin: validation and dict conversion for one parameter section."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            kind = hints.get(f.name)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(None, f"parameter {f.name} must be finite, got {value}")
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None and isinstance(value, (int, float)) and value < lo:
                raise InputError(None, f"parameter {f.name} must be at least {lo}, got {value}")
            if hi is not None and isinstance(value, (int, float)) and value > hi:
                raise InputError(None, f"parameter {f.name} must be at most {hi}, got {value}")
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise InputError(None, f"parameter {f.name} must be one of {choices}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(None, f"unknown {cls.__name__} parameters {unknown}")
        return cls(**values)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class TraceParams(_Section):
    """Tracing dendrite centre lines in one session."""

    shaft_sigma_um: float = param(0.5, "smoothing scale that picks out dendritic shafts", "µm",
                                  min=0.05, max=5.0)
    min_branch_length_um: float = param(5.0, "branches shorter than this are dropped", "µm",
                                        min=0.0)
    prune_twig_um: float = param(5.0, "side twigs shorter than this are pruned as spurious "
                                 "(spines traced as twigs must fall below it)",
                                 "µm", min=0.0)
    bridge_gap_um: float = param(3.0, "dim gaps up to this long along a dendrite are bridged",
                                 "µm", min=0.0)
    haze_ring_um: float = param(2.0, "a branch with a free end is kept only if its centre line "
                                "stands out from the image this far to either side (pieces "
                                "traced in the diffuse haze around cell bodies do not); 0 keeps "
                                "every branch", "µm", min=0.0, max=20.0)
    haze_max_um: float = param(20.0, "only pieces that fit in a box with this diagonal are "
                               "judged by the haze test (cell bodies are smaller; longer "
                               "dendrites are always kept)", "µm", min=0.0)


@dataclass(frozen=True)
class DetectParams(_Section):
    """Detecting spines on traced dendrites."""

    min_protrusion_um: float = param(0.4, "a spine protrudes at least this far from the shaft "
                                     "surface, measured to the far edge of its head (length_um "
                                     "in spines.csv is to the head's centre, so it can be "
                                     "shorter)", "µm", min=0.0, max=10.0)
    max_spine_length_um: float = param(4.0, "protrusions longer than this are not spines", "µm",
                                       min=0.1, max=20.0)
    head_sigma_um: float = param(0.3, "scale of the blob filter that finds spine heads", "µm",
                                 min=0.05, max=2.0)
    z_spines: bool = param(True, "also detect spines pointing up or down along z (heads at "
                           "least 1.5 µm straight above or below the shaft that stand out "
                           "clearly); turn off for annotations that only mark lateral spines")
    detector_model: str = param("", "a model learned from a person's corrections ('spinetrack "
                                "learn', JSON): keep the candidate heads it accepts instead of "
                                "the hand-set tests' verdict; empty: the hand-set tests",
                                "path", flag="--detector-model")


@dataclass(frozen=True)
class RegisterParams(_Section):
    """Registering every session to session 0."""

    max_shift_um: float = param(15.0, "largest drift between sessions searched for", "µm",
                                min=0.0)
    max_rotation_deg: float = param(6.0, "largest rotation between sessions searched for", "deg",
                                    min=0.0, max=45.0)
    match_distance_um: float = param(3.0, "centre-line points of two sessions this close after "
                                     "the image-based alignment are paired to refine it", "µm",
                                     min=0.1, max=20.0)
    local_scale_um: float = param(10.0, "smoothing length of the local (non-rigid) correction "
                                  "fitted to the centre lines; 0 keeps the registration rigid",
                                  "µm", min=0.0, max=500.0)
    max_local_shift_um: float = param(8.0, "a stretch of centre line at least 8 µm long that "
                                      "still lies away from session 0's lines after the smooth "
                                      "correction is moved onto a line of session 0 that no "
                                      "other line covers, if a single shift up to this far "
                                      "lays most of it there (a dendrite that moved more than "
                                      "its neighbours); the shift is then followed point by "
                                      "point along the stretch (never beyond this far) and "
                                      "applies in full within --match-distance-um of it; 0 "
                                      "turns this off", "µm", min=0.0, max=50.0)


@dataclass(frozen=True)
class LinkParams(_Section):
    """Linking spines across sessions."""

    search_range_um: float = param(2.0, "largest distance a spine may move between sessions "
                                   "after registration, measured along the branch and out from "
                                   "the shaft (the first linking; the measured range never "
                                   "reaches further along the branch)", "µm", min=0.05,
                                   max=20.0,
                                   flag="--search-range")
    adaptive_range: bool = param(True, "measure how far linked spines move (each coordinate's "
                                 "spread) and link again with every coordinate scaled by its "
                                 "spread and a search range read off the measured distribution; "
                                 "off: one linking with --search-range")
    split_inconsistent: bool = param(True, "with the measured range: cut a track where the "
                                     "spine's mean position before and after a session "
                                     "differ by more than that range (a lost spine replaced "
                                     "by a new one nearby); off: keep the linker's tracks")
    refine_iterations: int = param(2, "rounds of linking and correcting the residual drift "
                                   "along each branch before the final linking (0: none)",
                                   min=0, max=10)
    refine_scale_um: float = param(20.0, "smoothing length along the branch of that drift "
                                   "correction", "µm", min=1.0, max=1000.0)


@dataclass(frozen=True)
class FateParams(_Section):
    """Classifying fates."""

    restore_radius_um: float = param(2.0, "a new spine within this distance along the branch of "
                                     "a lost spine's site is 'restored'", "µm", min=0.0,
                                     flag="--restore-radius")


@dataclass(frozen=True)
class StatsParams(_Section):
    """Branch statistics and permutation tests."""

    n_permutations: int = param(10000, "random permutations or placements for each Monte Carlo "
                                "test (loss clustering, loss spacing, restoration)", min=100)
    seed: int = param(0, "random seed for the Monte Carlo tests; the same seed gives the same "
                      "p-values", min=0)
    occupied_radius_um: float = param(0.25, "when new spines are placed at random for the "
                                      "restoration chance level, they avoid this distance along "
                                      "the branch around spines present since session 0", "µm",
                                      min=0.0, max=5.0, flag="--occupied-radius")
    relink_radius_um: float = param(2.0, "random new spines first seen in session k also avoid "
                                    "this distance around spines last seen in session k-1 (a "
                                    "spine reappearing there would have been linked as the same "
                                    "spine; keep it equal to --search-range, 0 to disable)", "µm",
                                    min=0.0, max=10.0, flag="--relink-radius")
    relink_from_linker: bool = param(True, "where the linker measured how far along the branch "
                                     "it links (its reach) and that is shorter, use the reach "
                                     "as the relink radius: chance then avoids only the "
                                     "stretch where a reappearing spine would really have "
                                     "been linked")
    significance_level: float = param(0.05, "p- or q-value below which the summary and report "
                                      "call a result significant", min=1e-6, max=0.5)


SECTIONS: dict[str, type] = {
    "trace": TraceParams,
    "detect": DetectParams,
    "register": RegisterParams,
    "link": LinkParams,
    "fates": FateParams,
    "stats": StatsParams,
}

#: The parameters that name a file (``unit="path"``: ``detector_model``); stored absolute
#: (:func:`absolute_paths`), so a saved params.json works from any folder.
PATH_FIELDS = frozenset(f.name for cls in SECTIONS.values() for f in fields(cls)
                        if f.metadata.get("unit") == "path")


def absolute_paths(values: dict[str, Any], base: str | Path | None = None,
                   strip: bool = False) -> dict[str, Any]:
    """``values`` (field -> value) with every file parameter that is set made absolute.

    A :data:`PATH_FIELDS` value has ``~`` expanded and, when relative, is taken
    from ``base`` (default: the working folder). With ``strip`` the blanks
    around it are not part of it (a manifest's cells).
    """
    base = Path.cwd() if base is None else Path(base)
    out = {}
    for key, value in values.items():
        if key in PATH_FIELDS and value:
            text = str(value).strip() if strip else str(value)
            value = str((base / os.path.expanduser(text)).resolve())
        out[key] = value
    return out


@dataclass(frozen=True)
class Params:
    """All parameters of a run, one section per stage."""

    trace: TraceParams = field(default_factory=TraceParams)
    detect: DetectParams = field(default_factory=DetectParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    link: LinkParams = field(default_factory=LinkParams)
    fates: FateParams = field(default_factory=FateParams)
    stats: StatsParams = field(default_factory=StatsParams)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Params:
        unknown = sorted(set(values) - set(SECTIONS))
        if unknown:
            raise InputError(None, f"unknown parameter sections {unknown}")
        return cls(**{name: SECTIONS[name].from_dict(values.get(name, {})) for name in SECTIONS
                      if name in values})

    def replace(self, **changes: Any) -> Params:
        """Return a copy with ``field=value`` changed, whatever section the field is in."""
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            section = _section_of(key)
            by_section.setdefault(section, {})[key] = value
        return dataclasses.replace(self, **{
            s: dataclasses.replace(getattr(self, s), **v) for s, v in by_section.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> Params:
        """Read parameters from a ``params.json`` (a run's, or just its ``params`` part)."""
        path = Path(path)
        data = read_params_json(path)
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(path, exc.problem) from None
        except TypeError as exc:
            raise InputError(path, f"has malformed parameters ({exc})") from None


def read_params_json(path: str | Path, missing: str = "no such file") -> dict[str, Any]:
    """The parameter sections in a JSON file: a run's ``params.json`` or just its ``params``.

    Raises a one-line :class:`InputError` naming the file (``missing`` says what
    a missing file is called).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, missing) from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"is not a valid JSON parameter file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = data["params"]
    if not isinstance(data, dict):
        raise InputError(path, "does not hold a JSON object of parameters")
    return data


def _section_of(name: str) -> str:
    for section, cls in SECTIONS.items():
        if name in {f.name for f in fields(cls)}:
            return section
    raise InputError(None, f"unknown parameter {name!r}")


# --------------------------------------------------------------------------- CLI glue


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def describe(f: dataclasses.Field) -> str:
    """Help text of a field with its unit and default, for ``--help`` and tooltips."""
    unit = f.metadata.get("unit") or ""
    default = f.default
    return f"{f.metadata.get('help', '')} [{unit + ', ' if unit else ''}default {default}]"


def add_arguments(parser: argparse.ArgumentParser, sections: tuple[str, ...] = tuple(SECTIONS)):
    """Add one option per parameter of the given sections, grouped by section."""
    for name in sections:
        cls = SECTIONS[name]
        group = parser.add_argument_group(f"{name} parameters", cls.__doc__)
        hints = get_type_hints(cls)
        for f in fields(cls):
            kind = hints[f.name]
            kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": describe(f)}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = kind
                kwargs["metavar"] = (f.metadata.get("unit") or "N").replace("µm", "UM").upper()
                if f.metadata.get("choices"):
                    kwargs["choices"] = f.metadata["choices"]
            group.add_argument(_flag(f), **kwargs)


def params_from_args(args: argparse.Namespace, base: Params | None = None) -> Params:
    """Params from parsed options: ``base`` (or defaults) with every given option applied.

    A file given for a ``path`` parameter (``--detector-model``) is stored as an
    absolute path, so the saved ``params.json`` works from any folder.
    """
    base = base or Params()
    changes = {f.name: getattr(args, f.name) for cls in SECTIONS.values() for f in fields(cls)
               if getattr(args, f.name, None) is not None}
    return base.replace(**absolute_paths(changes)) if changes else base
