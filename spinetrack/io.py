"""Reading imaging sessions: TIFF stacks with their voxel size in µm.

A *session* is one (z, y, x) stack (a single (y, x) plane is read as one plane);
a *series* is an ordered list of sessions of the same field of view, with names
and optional day numbers. One 4-D TIFF (t, z, y, x) may hold a whole series.

Every problem with an input file raises :class:`~spinetrack.errors.InputError`
whose message is one line naming the file and the problem.
"""

from __future__ import annotations

import logging
import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_path

__all__ = [
    "Session",
    "Series",
    "read_session",
    "read_series",
    "read_tiff",
    "write_session",
    "session_paths",
    "check_session_order",
    "VOXEL_HELP",
]

VOXEL_HELP = (
    "give it with --voxel-size Z Y X (µm), or save the stack as an ImageJ hyperstack "
    "with spacing and resolution, or as OME-TIFF with PhysicalSize"
)

_UNIT_TO_UM = {
    "um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "micrometers": 1.0, "micrometres": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "in": 25400.0, "inch": 25400.0,
}

_TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")


@dataclass(frozen=True, eq=False)
class Session:
    """One imaging session.

    Attributes
    ----------
    image : ndarray, shape (Z, Y, X)
        The stack as stored (uint8, uint16 or float); a plane is (1, Y, X).
    voxel_size_um : tuple of float
        (z, y, x) size of a voxel in µm.
    name : str
        Short name, by default the file stem.
    path : Path or None
        The file it came from.
    day : float or None
        Day of imaging relative to the first session, if known.
    """

    image: np.ndarray
    voxel_size_um: tuple[float, float, float]
    name: str
    path: Path | None = None
    day: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def extent_um(self) -> tuple[float, float, float]:
        """Size of the stack in µm along (z, y, x)."""
        return tuple(n * s for n, s in zip(self.image.shape, self.voxel_size_um))  # type: ignore


@dataclass(frozen=True, eq=False)
class Series:
    """An ordered list of sessions of one field of view."""

    sessions: tuple[Session, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(self.sessions)

    def __getitem__(self, i: int) -> Session:
        return self.sessions[i]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sessions]

    @property
    def days(self) -> list[float] | None:
        """Day numbers of all sessions, or None unless every session has one."""
        days = [s.day for s in self.sessions]
        return None if any(d is None for d in days) else [float(d) for d in days]

    @property
    def voxel_size_um(self) -> tuple[float, float, float]:
        """Voxel size of the first session (sessions may differ; each keeps its own)."""
        return self.sessions[0].voxel_size_um


# --------------------------------------------------------------------------- helpers


def _unit_factor(unit: str | None) -> float | None:
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\u00b5", "µ").replace("\u03bc", "µ")
    if key in _UNIT_TO_UM:
        return _UNIT_TO_UM[key]
    return _UNIT_TO_UM.get(key.replace("µ", "u"))


def _check_voxel(path: Path | str | None, voxel: Sequence[float], what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in voxel)
    except (TypeError, ValueError):
        raise InputError(path, f"{what} voxel size {voxel!r} is not three numbers") from None
    if len(values) != 3:
        raise InputError(path, f"{what} voxel size needs three values (z, y, x), got {len(values)}")
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise InputError(path, f"{what} voxel size {values} must be positive and finite (µm)")
    return values


def _resolution_um(page, tag: str, factor: float) -> float | None:
    t = page.tags.get(tag)
    if t is None:
        return None
    value = t.value
    try:
        num, den = value if isinstance(value, tuple) else (value, 1)
        num, den = float(num), float(den)
    except (TypeError, ValueError):
        return None
    if num <= 0 or den <= 0:
        return None
    return factor * den / num


def _ome_voxel(xml: str) -> tuple[float | None, float | None, float | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return (None, None, None)
    pixels = None
    for el in root.iter():
        if el.tag.endswith("Pixels"):
            pixels = el
            break
    if pixels is None:
        return (None, None, None)
    out = []
    for ax in ("Z", "Y", "X"):
        val = pixels.get(f"PhysicalSize{ax}")
        if val is None:
            out.append(None)
            continue
        factor = _unit_factor(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        try:
            out.append(float(val) * factor if factor is not None else None)
        except ValueError:
            out.append(None)
    return tuple(out)  # type: ignore[return-value]


def _metadata_voxel(tif) -> tuple[float | None, float | None, float | None]:
    """(z, y, x) voxel size in µm from ImageJ, OME or TIFF resolution tags; None if unknown."""
    page = tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        vz, vy, vx = _ome_voxel(tif.ome_metadata)
        if vy is not None or vx is not None:
            return (vz, vy if vy is not None else vx, vx if vx is not None else vy)
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        factor = _unit_factor(meta.get("unit"))
        vy = vx = None
        if factor is not None:
            vx = _resolution_um(page, "XResolution", factor)
            vy = _resolution_um(page, "YResolution", factor)
        vz = None
        if "spacing" in meta and factor is not None:
            try:
                vz = float(meta["spacing"]) * factor
            except (TypeError, ValueError):
                vz = None
        return (vz, vy if vy is not None else vx, vx if vx is not None else vy)
    # plain TIFF: trust the resolution tags only when they are in centimetres
    unit_tag = page.tags.get("ResolutionUnit")
    if unit_tag is not None and int(unit_tag.value) == 3:
        vx = _resolution_um(page, "XResolution", 1e4)
        vy = _resolution_um(page, "YResolution", 1e4)
        return (None, vy if vy is not None else vx, vx if vx is not None else vy)
    return (None, None, None)


def _squeeze_axes(data: np.ndarray, axes: str, path: Path) -> tuple[np.ndarray, str]:
    """Drop singleton axes and refuse colour or channel data."""
    axes = axes.upper()
    if len(axes) != data.ndim:
        axes = "Q" * (data.ndim - 2) + "YX" if data.ndim >= 2 else "Q" * data.ndim
    if "C" in axes and data.shape[axes.index("C")] > 1:
        n = data.shape[axes.index("C")]
        raise InputError(path, f"has {n} channels; spinetrack needs one grey channel "
                         "(save the dendrite channel on its own)")
    keep = [i for i, n in enumerate(data.shape) if n > 1 or axes[i] in "YX"]
    shape = tuple(data.shape[i] for i in keep)
    if len(shape) > 4:  # e.g. (t, z, c, y, x) whose c tifffile stored as colour samples
        raise InputError(path, f"has {len(shape)} dimensions {shape}; expected (y, x), "
                         "(z, y, x) or (t, z, y, x) with one grey channel")
    if "S" in axes and data.shape[axes.index("S")] in (3, 4):
        raise InputError(path, "is an RGB colour image; spinetrack needs one grey channel "
                         "(split the channels and pass the dendrite channel)")
    data = data.reshape(shape)
    axes = "".join(axes[i] for i in keep)
    return data, axes


def _validate_values(data: np.ndarray, path: Path) -> None:
    if data.size == 0:
        raise InputError(path, "is empty (no pixels)")
    if data.dtype.kind not in "uif" and data.dtype != np.bool_:
        raise InputError(path, f"has pixel type {data.dtype}, expected uint8, uint16 or float")
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            raise InputError(path, f"contains {bad} NaN or infinite pixel values")
    lo, hi = data.min(), data.max()
    if lo == hi:
        raise InputError(path, f"is constant (every pixel is {lo}); nothing to detect")


def read_tiff(
    path: str | Path, voxel_size_um: Sequence[float] | None = None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a grey TIFF stack and its voxel size.

    Parameters
    ----------
    path : str or Path
        ImageJ hyperstack, OME-TIFF or plain TIFF holding (y, x), (z, y, x) or
        (t, z, y, x) grey data of type uint8, uint16 or float.
    voxel_size_um : sequence of 3 floats, optional
        (z, y, x) voxel size in µm; overrides the file's metadata.

    Returns
    -------
    image : ndarray
        (z, y, x) or (t, z, y, x); a single plane is returned as (1, y, x).
    voxel_size_um : tuple of float
        (z, y, x) in µm.

    Raises
    ------
    InputError
        With a one-line message naming the file and the problem.
    """
    import tifffile

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not a TIFF file")
    with _capture_tifffile_log() as log:
        try:
            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise InputError(path, "holds no images")
                series = tif.series[0]
                axes = series.axes
                try:
                    data = series.asarray(maxworkers=1)
                except Exception as exc:  # tifffile/imagecodecs raise many kinds
                    raise InputError(path, "cannot be decoded, the file may be truncated "
                                     f"({_short(exc)})") from None
                meta_voxel = _metadata_voxel(tif)
                _check_complete(tif, path, log)
                if data.size != int(np.prod(series.shape)):
                    raise InputError(path, "is truncated (fewer pixels than its header declares)")
        except InputError:
            raise
        except tifffile.TiffFileError as exc:
            raise InputError(path, f"is not a readable TIFF file ({_short(exc)})") from None
        except (OSError, ValueError, EOFError, KeyError, IndexError, struct.error) as exc:
            raise InputError(path, f"is not a readable TIFF file ({_short(exc)})") from None

    data, axes = _squeeze_axes(np.asarray(data), axes, path)
    if data.ndim == 2:
        data = data[np.newaxis]
    elif data.ndim not in (3, 4):
        raise InputError(path, f"has {data.ndim} dimensions {data.shape}; expected (y, x), "
                         "(z, y, x) or (t, z, y, x)")
    _validate_values(data, path)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)

    if voxel_size_um is not None:
        voxel = _check_voxel(path, voxel_size_um, "given")
    else:
        vz, vy, vx = meta_voxel
        if vy is None or vx is None:
            raise InputError(path, f"has no voxel size in its metadata; {VOXEL_HELP}")
        if vz is None:
            if data.shape[-3] == 1:
                vz = vx  # a single plane: the axial size is never used
            else:
                raise InputError(path, f"has no z spacing in its metadata; {VOXEL_HELP}")
        voxel = _check_voxel(path, (vz, vy, vx), "metadata")
    return data, voxel  # type: ignore[return-value]



class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _capture_tifffile_log() -> Iterator[list[str]]:
    """Collect tifffile's warnings instead of letting them reach the terminal."""
    logger = logging.getLogger("tifffile")
    handler = _ListHandler()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def _check_complete(tif, path: Path, log: list[str]) -> None:
    """Refuse a file whose pages or image data run past its end."""
    size = path.stat().st_size
    for page in tif.pages:
        offsets = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        for off, cnt in zip(offsets, counts):
            if off + cnt > size:
                raise InputError(path, "is truncated (image data runs past the end of the file)")
    meta = tif.imagej_metadata if tif.is_imagej else None
    if meta and "images" in meta and len(tif.pages) < int(meta["images"]):
        # ImageJ may store all planes contiguously after the first page
        page = tif.pages[0]
        need = int(meta["images"]) * int(np.prod(page.shape)) * page.dtype.itemsize
        offsets = getattr(page, "dataoffsets", ()) or (0,)
        if offsets[0] + need > size:
            raise InputError(path, f"is truncated (header declares {meta['images']} planes)")
    for msg in log:
        low = msg.lower()
        if "invalid page offset" in low or "corrupt" in low or "truncat" in low:
            raise InputError(path, "is truncated or corrupted (its page list is broken)")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def read_session(
    path: str | Path,
    voxel_size_um: Sequence[float] | None = None,
    name: str | None = None,
    day: float | None = None,
) -> Session:
    """Read one session: a (z, y, x) stack or a single (y, x) plane.

    See :func:`read_tiff` for formats and errors. A 4-D file is refused here;
    use :func:`read_series` for it.
    """
    data, voxel = read_tiff(path, voxel_size_um)
    path = Path(path)
    if data.ndim == 4:
        raise InputError(path, f"is 4-D {data.shape} (a whole series); pass it on its own "
                         "as the series, or split it into one file per session")
    return Session(image=data, voxel_size_um=voxel, name=name or _stem(path), path=path, day=day)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def session_paths(folder: str | Path) -> list[Path]:
    """The TIFF files in ``folder``, in natural order (``s2`` before ``s10``)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_TIFF_SUFFIXES)
             and not p.name.startswith(".")]
    if not files:
        raise InputError(folder, "holds no .tif or .tiff files")
    return sorted(files, key=_natural_key)


def _numbered(path: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The path split into its text (the template) and the numbers within it."""
    parts = re.split(r"(\d+)", str(path))
    return tuple(t.lower() for t in parts[0::2]), tuple(int(t) for t in parts[1::2])


def check_session_order(paths: Sequence[str | Path], override: str = "--as-given") -> None:
    """Refuse session files whose numbers, read naturally, disagree with the order given.

    ``session1.tif session10.tif session2.tif`` (what a shell's ``session*.tif``
    gives: it sorts character by character) would otherwise make session10 the
    second imaging session. Only files whose names are the same apart from their
    numbers are compared (``day0.tif``, ``day10.tif``...); names that differ
    otherwise (``baseline.tif``, ``after.tif``) are taken in the order given.

    Parameters
    ----------
    paths : sequence of path
        The session files in the order given.
    override : str
        How the caller keeps the order given (named in the message).

    Raises
    ------
    InputError
        One line naming the files in both orders and saying how to keep the order.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        return
    keys = [_numbered(p) for p in paths]
    if len({template for template, _ in keys}) != 1 or not keys[0][1]:
        return
    numbers = [n for _, n in keys]
    if all(a <= b for a, b in zip(numbers, numbers[1:])):
        return
    same_folder = len({p.parent for p in paths}) == 1
    show = [p.name if same_folder else str(p) for p in paths]
    natural = [show[i] for i in sorted(range(len(paths)), key=lambda i: numbers[i])]
    raise InputError(None, f"session files given in the order {', '.join(show)}, but the "
                           f"numbers in their names say {', '.join(natural)} (a shell's * "
                           "sorts character by character); list them in time order, or pass "
                           f"{override} to keep the order given")


_MIN_FIELD_FRACTION = 0.5  # a session covering less of session 0's field (y or x) is warned of


def _check_comparable(sessions_data) -> None:
    """Sessions of one series are all stacks, or all single planes, of about the same field.

    A single plane among 3-D stacks (a projection saved by mistake) cannot be
    registered to them in 3-D: one-line error naming it. A session whose field
    is much smaller than session 0's is allowed (registration handles partial
    overlap) but logged: every spine outside it will be called lost.
    """
    planes = [img.shape[0] for img, _, _ in sessions_data]
    if len(set(p == 1 for p in planes)) > 1:
        single = next(path for (img, _, path), p in zip(sessions_data, planes) if p == 1)
        raise InputError(single, f"is a single plane, but the other sessions are stacks of "
                                 f"{max(planes)} planes; every session of a series must be a "
                                 "(z, y, x) stack (or every one a single plane)")
    img0, vox0, _ = sessions_data[0]
    field0 = np.asarray(img0.shape[1:], float) * np.asarray(vox0[1:], float)
    for img, vox, path in sessions_data[1:]:
        field = np.asarray(img.shape[1:], float) * np.asarray(vox[1:], float)
        if np.any(field < _MIN_FIELD_FRACTION * field0):
            logging.getLogger(__name__).warning(
                "%s covers %.0f × %.0f µm, much less than the first session's %.0f × %.0f µm: "
                "spines outside it will be called lost", path, *field, *field0)


def _voxel_per_file(voxel_size_um, n_files: int) -> list:
    """``read_series``' voxel size(s): one (z, y, x) for every file, or one per file."""
    if voxel_size_um is None or not len(voxel_size_um) or np.ndim(voxel_size_um[0]) == 0:
        return [voxel_size_um] * n_files
    if len(voxel_size_um) != n_files:
        raise InputError(None, f"{len(voxel_size_um)} voxel sizes given for {n_files} "
                         "session files")
    return list(voxel_size_um)


def read_series(
    paths: str | Path | Sequence[str | Path],
    voxel_size_um: Sequence[float] | Sequence[Sequence[float]] | None = None,
    names: Sequence[str] | None = None,
    days: Sequence[float] | None = None,
) -> Series:
    """Read a series of sessions.

    Parameters
    ----------
    paths : path or sequence of paths
        Session files in chronological order; a single 4-D (t, z, y, x) TIFF; or a
        folder whose TIFF files, in natural name order, are the sessions.
    voxel_size_um : sequence of 3 floats, or one such per file, optional
        (z, y, x) in µm for every session, or one (z, y, x) per session file
        (e.g. the sizes a run's ``sessions.csv`` recorded); overrides the files'
        metadata. A single 4-D file takes one (z, y, x).
    names : sequence of str, optional
        One name per session (default: file stems, or ``t0, t1, ...`` for a 4-D file).
    days : sequence of float, optional
        Day of each session (used for per-day rates).

    Sessions may have different shapes; registration takes care of it.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(None, "no session files given")
    if len(paths) == 1 and paths[0].is_dir():
        paths = session_paths(paths[0])
    voxels = _voxel_per_file(voxel_size_um, len(paths))

    if len(paths) == 1:
        data, voxel = read_tiff(paths[0], voxels[0])
        if data.ndim == 4:
            stacks = [np.ascontiguousarray(d) for d in data]
            for t, stack in enumerate(stacks):
                try:
                    _validate_values(stack, paths[0])
                except InputError as exc:
                    raise InputError(paths[0], f"time point {t} {exc.problem}") from None
            default_names = [f"t{t}" for t in range(len(stacks))]
            sessions_data = [(stack, voxel, paths[0]) for stack in stacks]
        else:
            default_names = [_stem(paths[0])]
            sessions_data = [(data, voxel, paths[0])]
    else:
        sessions_data = []
        for p, vox in zip(paths, voxels):
            s = read_session(p, vox)
            sessions_data.append((s.image, s.voxel_size_um, p))
        default_names = [_stem(p) for p in paths]
        if len(set(default_names)) != len(default_names):
            default_names = [f"{n}_{i}" for i, n in enumerate(default_names)]

    n = len(sessions_data)
    _check_comparable(sessions_data)
    if names is not None and len(names) != n:
        raise InputError(None, f"{len(names)} names given for {n} sessions")
    if days is not None:
        if len(days) != n:
            raise InputError(None, f"{len(days)} day numbers given for {n} sessions")
        try:
            days = [float(d) for d in days]
        except (TypeError, ValueError):
            raise InputError(None, f"day numbers {list(days)} are not all numbers") from None
        if any(not math.isfinite(d) for d in days):
            raise InputError(None, f"day numbers {days} must be finite")
        if any(b < a for a, b in zip(days, days[1:])):
            raise InputError(None, f"day numbers {days} must not decrease (sessions are in time order)")
    names = list(names) if names is not None else default_names
    sessions = tuple(
        Session(image=img, voxel_size_um=vox, name=str(names[i]), path=p,
                day=None if days is None else days[i])
        for i, (img, vox, p) in enumerate(sessions_data)
    )
    return Series(sessions)


def write_session(
    path: str | Path,
    image: np.ndarray,
    voxel_size_um: Sequence[float],
    compression: str | None = "zlib",
) -> Path:
    """Write a (z, y, x) or (t, z, y, x) stack as an ImageJ hyperstack with voxel size.

    The file is written atomically. ImageJ hyperstacks hold uint8, uint16 or
    float32 data; other types are refused.
    """
    import tifffile

    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"ImageJ TIFF needs uint8, uint16 or float32, not {image.dtype}")
    vz, vy, vx = _check_voxel(path, voxel_size_um, "given")
    axes = {2: "YX", 3: "ZYX", 4: "TZYX"}[image.ndim]
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, image, imagej=True,
            resolution=(1.0 / vx, 1.0 / vy),
            metadata={"spacing": vz, "unit": "um", "axes": axes},
            compression=compression,
        )
    return Path(path)
