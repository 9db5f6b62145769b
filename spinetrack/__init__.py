"""spinetrack: find dendritic spines, follow them across days, classify their fates.

The library never imports napari or Qt. Arrays are (z, y, x); lengths are µm.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spinetrack")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

from .errors import Cancelled, InputError, SpinetrackError
from .io import Series, Session, read_series, read_session, write_session
from .params import (
    DetectParams,
    FateParams,
    LinkParams,
    Params,
    RegisterParams,
    StatsParams,
    TraceParams,
)

__all__ = [
    "__version__",
    "Cancelled",
    "InputError",
    "SpinetrackError",
    "Series",
    "Session",
    "read_series",
    "read_session",
    "write_session",
    "Params",
    "TraceParams",
    "DetectParams",
    "RegisterParams",
    "LinkParams",
    "FateParams",
    "StatsParams",
]
