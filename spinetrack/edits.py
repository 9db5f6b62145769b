"""A person's corrections to a run, as an ordered log that can be re-applied.

Each correction is an :class:`Edit`: add a spine, delete one, move one, join
two identities, split one, or set a spine's fate by hand. Edits name the spine
they act on by **where it is** (session and position in session 0's µm frame),
not only by its ``spine_id``: after detection is re-run the ids change, but the
spine at that place is still found (within ``tolerance_um``), so a person's
edits survive a re-run. The log is saved as ``edits.json`` beside the results;
:func:`apply_edits` replays it on automatic results, after which fates and the
branch statistics are recomputed. Undo is dropping the last edit and replaying.

Rows added or moved by a person get ``source = "manual"``; so do all rows of an
identity a person joined or split. Fates set by hand are kept over the
classification (``fate_source = "manual"`` in the fates table).

Examples
--------
>>> e = Edit.add(session=1, at_um=(20.0, 3.5, 12.0))
>>> Edit.from_dict(e.to_dict()) == e
True
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, SpinetrackError
from .fates import FATES, classify_fates, fate_from_presence
from .files import write_json_atomic
from .results import BRANCH_COLUMNS, FATE_COLUMNS, SPINE_COLUMNS, Results, _ordered

__all__ = [
    "EDIT_KINDS",
    "EDITS_FILE",
    "Edit",
    "EditError",
    "apply_edit",
    "apply_edits",
    "load_edits",
    "save_edits",
    "snap_to_branch",
    "position_columns",
    "recompute_results",
    "replay_edits",
    "fates_with_overrides",
    "fate_contradiction",
    "Target",
]

log = logging.getLogger(__name__)

EDIT_KINDS = ("add", "delete", "move", "join", "split", "set_fate")
EDITS_FILE = "edits.json"
EDITS_VERSION = 1

#: Detector columns that describe a spine at its detected place (stale once it is moved).
_STALE_AFTER_MOVE = ("session_branch_id", "session_arc_um", "head_arc_um", "lateral_um",
                     "depth_um", "side", "head_intensity", "head_radius_um", "score")

#: A recorded spine is found again if a spine of that session lies this close (µm).
DEFAULT_TOLERANCE_UM = 1.0


class EditError(SpinetrackError):
    """An edit cannot be applied (no spine there, it would break the identity rule...)."""


# --------------------------------------------------------------------------- the edit record


def _point(value) -> tuple[float, float, float] | None:
    if value is None:
        return None
    pt = tuple(float(v) for v in value)
    if len(pt) != 3 or not all(np.isfinite(pt)):
        raise ValueError(f"a position needs three finite numbers (z, y, x µm), got {value!r}")
    return pt  # type: ignore[return-value]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Target:
    """Which spine observation an edit acts on.

    Attributes
    ----------
    session : int
        0-based session of the observation.
    at_um : tuple of float
        (z, y, x) position in session 0's frame, µm, when the edit was made.
    spine_id : int or None
        The id it had then (informative; the position decides).
    """

    session: int
    at_um: tuple[float, float, float]
    spine_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "at_um": list(self.at_um), "spine_id": self.spine_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        sid = d.get("spine_id")
        return cls(int(d["session"]), _point(d["at_um"]),  # type: ignore[arg-type]
                   None if sid is None else int(sid))


@dataclass(frozen=True)
class Edit:
    """One correction.

    Build edits with the constructors (:meth:`add`, :meth:`delete`, :meth:`move`,
    :meth:`join`, :meth:`split`, :meth:`set_fate`), which record where the spine
    is; :func:`apply_edit` carries them out.

    Attributes
    ----------
    kind : str
        One of :data:`EDIT_KINDS`.
    target : Target or None
        The observation acted on (``None`` for ``add``).
    other : Target or None
        ``join``: an observation of the second identity.
    session : int or None
        ``add``: the session of the new spine.
    to_um : tuple of float or None
        ``add``/``move``: the new position, session 0's frame, µm.
    fate : str or None
        ``set_fate``: one of :data:`spinetrack.fates.FATES`.
    when : str
        UTC time the edit was made (ISO 8601).
    """

    kind: str
    target: Target | None = None
    other: Target | None = None
    session: int | None = None
    to_um: tuple[float, float, float] | None = None
    fate: str | None = None
    when: str = field(default_factory=_now, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit kind {self.kind!r}; expected one of {EDIT_KINDS}")
        if self.kind == "set_fate" and self.fate not in FATES:
            raise ValueError(f"fate {self.fate!r} is not one of {FATES}")

    # constructors ---------------------------------------------------------------------
    @classmethod
    def add(cls, session: int, at_um) -> Edit:
        """A new spine in ``session`` at ``at_um`` (session 0's frame, µm)."""
        return cls("add", session=int(session), to_um=_point(at_um))

    @classmethod
    def delete(cls, spines: pd.DataFrame, spine_id: int, session: int) -> Edit:
        """Remove spine ``spine_id`` from ``session`` (the other sessions keep it)."""
        return cls("delete", target=_target(spines, spine_id, session))

    @classmethod
    def move(cls, spines: pd.DataFrame, spine_id: int, session: int, to_um) -> Edit:
        """Move spine ``spine_id`` in ``session`` to ``to_um`` (session 0's frame, µm)."""
        return cls("move", target=_target(spines, spine_id, session), to_um=_point(to_um))

    @classmethod
    def join(cls, spines: pd.DataFrame, first: tuple[int, int], second: tuple[int, int]) -> Edit:
        """Make two identities one; each is given as ``(spine_id, session)``."""
        return cls("join", target=_target(spines, *first), other=_target(spines, *second))

    @classmethod
    def split(cls, spines: pd.DataFrame, spine_id: int, session: int) -> Edit:
        """Give spine ``spine_id`` a new identity from ``session`` on."""
        return cls("split", target=_target(spines, spine_id, session))

    @classmethod
    def set_fate(cls, spines: pd.DataFrame, spine_id: int, fate: str,
                 session: int | None = None) -> Edit:
        """Set the fate of identity ``spine_id`` by hand (kept over the classification)."""
        if session is None:
            rows = spines.loc[spines["spine_id"] == spine_id, "session"]
            if not len(rows):
                raise EditError(f"there is no spine {spine_id}")
            session = int(rows.min())
        return cls("set_fate", target=_target(spines, spine_id, session), fate=fate)

    # (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for name in ("target", "other"):
            t = getattr(self, name)
            if t is not None:
                d[name] = t.to_dict()
        if self.session is not None:
            d["session"] = self.session
        if self.to_um is not None:
            d["to_um"] = list(self.to_um)
        if self.fate is not None:
            d["fate"] = self.fate
        d["when"] = self.when
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Edit:
        return cls(
            kind=str(d["kind"]),
            target=Target.from_dict(d["target"]) if d.get("target") else None,
            other=Target.from_dict(d["other"]) if d.get("other") else None,
            session=None if d.get("session") is None else int(d["session"]),
            to_um=_point(d.get("to_um")),
            fate=d.get("fate"),
            when=str(d.get("when", "")),
        )

    def describe(self) -> str:
        """A short phrase for logs, undo buttons and warnings."""
        t = self.target
        where = f"spine {t.spine_id} in session {t.session}" if t else ""
        return {
            "add": f"add a spine in session {self.session}",
            "delete": f"delete {where}",
            "move": f"move {where}",
            "join": (f"join {where} with spine {self.other.spine_id}"
                     if self.other else "join"),
            "split": f"split {where}",
            "set_fate": f"set the fate of {where} to {self.fate}",
        }[self.kind]


def position_columns(spines: pd.DataFrame) -> list[str]:
    """The columns that place spines in session 0's frame (µm).

    ``ref_z_um, ref_y_um, ref_x_um`` when the table has them, else the session's
    own ``z_um, y_um, x_um`` (results without registration).
    """
    ref = ["ref_z_um", "ref_y_um", "ref_x_um"]
    return ref if all(c in spines.columns for c in ref) else ["z_um", "y_um", "x_um"]


def _target(spines: pd.DataFrame, spine_id: int, session: int) -> Target:
    rows = spines[(spines["spine_id"] == spine_id) & (spines["session"] == session)]
    if not len(rows):
        raise EditError(f"spine {spine_id} is not present in session {session}")
    at = rows[position_columns(spines)].iloc[0].to_numpy(float)
    return Target(int(session), _point(at), int(spine_id))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- log on disk


def save_edits(folder: str | Path, edits: list[Edit]) -> Path:
    """Write the edit log ``folder/edits.json`` atomically."""
    doc = {"version": EDITS_VERSION, "edits": [e.to_dict() for e in edits]}
    return write_json_atomic(Path(folder) / EDITS_FILE, doc)


def load_edits(folder: str | Path) -> list[Edit]:
    """Read ``folder/edits.json``; an empty list when there is none.

    Raises
    ------
    InputError
        If the file is not a valid edit log.
    """
    path = Path(folder) / EDITS_FILE
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"is not a valid JSON edit log ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("edits"), list):
        raise InputError(path, "is not an edit log (no 'edits' list)")
    edits = []
    for i, d in enumerate(doc["edits"]):
        try:
            edits.append(_checked_edit(d))
        except (KeyError, TypeError, ValueError) as exc:
            kind = d.get("kind") if isinstance(d, dict) else None
            what = f" ({kind})" if isinstance(kind, str) and kind in EDIT_KINDS else ""
            raise InputError(path, f"holds a malformed edit: edit {i + 1}{what}: "
                                   f"{_one_line(exc)}") from None
    return edits


#: The fields each kind of edit needs (beside ``kind``).
_REQUIRED = {"add": ("session", "to_um"), "delete": ("target",), "move": ("target", "to_um"),
             "join": ("target", "other"), "split": ("target",), "set_fate": ("target", "fate")}


def _checked_edit(d: Any) -> Edit:
    """An :class:`Edit` from its JSON record, after checking the fields its kind needs."""
    if not isinstance(d, dict):
        raise TypeError(f"a {type(d).__name__}, not an object")
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in EDIT_KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(EDIT_KINDS)})")
    missing = [f for f in _REQUIRED.get(kind, ()) if d.get(f) is None]
    if missing:
        raise ValueError(f"no {' and no '.join(missing)}")
    for name in ("target", "other"):
        t = d.get(name)
        if t is not None and not (isinstance(t, dict) and "session" in t and "at_um" in t):
            raise ValueError(f"its {name} needs a session and at_um")
    sessions = [d.get("session")] + [d[n]["session"] for n in ("target", "other") if d.get(n)]
    for s in sessions:
        if s is not None and (isinstance(s, bool) or not float(s).is_integer() or s < 0):
            raise ValueError(f"session {s!r} is not a whole number from 0")
    return Edit.from_dict(d)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- geometry


class _Frames:
    """Session k µm <-> session 0 µm, and voxel sizes, for one Results."""

    def __init__(self, results: Results):
        self.registration = None
        if results.transform:
            try:
                from .register import Registration
            except ImportError:  # pragma: no cover - the register stage is not installed
                log.warning("results have a registration but spinetrack.register is missing; "
                            "positions are taken unregistered")
            else:
                self.registration = Registration.from_dict(results.transform)
        self.voxels = _voxels(results)

    def voxel(self, session: int) -> np.ndarray:
        return self.voxels[min(session, len(self.voxels) - 1)]

    def to_session(self, session: int, ref_um: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(ref_um, float))
        if self.registration is None or session == 0:
            return pts
        return np.asarray(self.registration.from_reference(session, pts), float)

    def to_reference(self, session: int, own_um: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(own_um, float))
        if self.registration is None or session == 0:
            return pts
        return np.asarray(self.registration.to_reference(session, pts), float)


def _voxels(results: Results) -> list[np.ndarray]:
    s = results.sessions
    cols = ["voxel_z_um", "voxel_y_um", "voxel_x_um"]
    if s is not None and len(s) and all(c in s.columns for c in cols):
        return [np.asarray(r, float) for r in s.sort_values("session")[cols].to_numpy()]
    v = results.summary.get("voxel_size_um")
    if v is not None:
        arr = np.asarray(v, float)
        return [arr] if arr.ndim == 1 else [np.asarray(r) for r in arr]
    sp = results.spines
    if len(sp) and all(c in sp.columns for c in ("z", "z_um")):
        row = sp.iloc[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.array([row["z_um"] / row["z"], row["y_um"] / row["y"],
                              row["x_um"] / row["x"]], float)
        if np.all(np.isfinite(ratio)) and np.all(ratio > 0):
            return [ratio]
    raise EditError("the results do not say the voxel size (no sessions table or summary)")


def snap_to_branch(lines: pd.DataFrame, session: int, point_um) -> dict[str, float] | None:
    """The nearest centre-line point of ``session`` to ``point_um`` (the session's own µm).

    Parameters
    ----------
    lines : DataFrame
        Series-wide centre lines (``branch_id, session, point, z_um, y_um, x_um,
        arc_um`` and optionally ``radius_um``). Without a ``session`` column every
        line is taken to be in every session.
    session : int
    point_um : sequence of 3 float

    Returns
    -------
    dict or None
        ``branch_id``, ``arc_um`` (shared arc frame, interpolated along the
        nearest segment), ``distance_um`` from the centre line, ``radius_um``,
        and the foot of the perpendicular ``foot_z_um, foot_y_um, foot_x_um``;
        ``None`` if the session has no centre line.
    """
    if lines is None or not len(lines):
        return None
    own = lines[lines["session"] == session] if "session" in lines.columns else lines
    if not len(own):
        return None
    p = np.asarray(point_um, float)
    best: dict[str, float] | None = None
    for bid, g in own.groupby("branch_id", sort=True):
        g = g.sort_values("point") if "point" in g.columns else g
        xyz = g[["z_um", "y_um", "x_um"]].to_numpy(float)
        arc = g["arc_um"].to_numpy(float)
        rad = g["radius_um"].to_numpy(float) if "radius_um" in g.columns else np.zeros(len(g))
        if len(xyz) == 1:
            t = np.zeros(1)
            a, b = xyz, xyz
        else:
            a, b = xyz[:-1], xyz[1:]
            d = b - a
            dd = np.einsum("ij,ij->i", d, d)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(dd > 0, np.einsum("ij,ij->i", p - a, d) / dd, 0.0)
            t = np.clip(t, 0.0, 1.0)
        foot = a + t[:, None] * (b - a)
        dist = np.linalg.norm(foot - p, axis=1)
        i = int(np.argmin(dist))
        if best is None or dist[i] < best["distance_um"]:
            j = min(i + 1, len(arc) - 1)
            best = {"branch_id": int(bid),
                    "arc_um": float(arc[i] + t[i] * (arc[j] - arc[i])),
                    "distance_um": float(dist[i]),
                    "radius_um": float(rad[i] + t[i] * (rad[j] - rad[i])),
                    "foot_z_um": float(foot[i, 0]), "foot_y_um": float(foot[i, 1]),
                    "foot_x_um": float(foot[i, 2])}
    return best


def _placed_row(results: Results, frames: _Frames, session: int, ref_um) -> dict[str, Any]:
    """Every positional column of a spine a person put at ``ref_um`` in ``session``."""
    ref = np.asarray(ref_um, float)
    own = frames.to_session(session, ref)[0]
    vox = frames.voxel(session)
    pix = own / vox
    row: dict[str, Any] = {"session": int(session), "z": pix[0], "y": pix[1], "x": pix[2],
                           "z_um": own[0], "y_um": own[1], "x_um": own[2],
                           "source": "manual"}
    if position_columns(results.spines)[0] == "ref_z_um":
        row.update(ref_z_um=ref[0], ref_y_um=ref[1], ref_x_um=ref[2])
    snap = snap_to_branch(results.lines, session, own)
    if snap is not None:
        row.update(branch_id=snap["branch_id"], arc_um=snap["arc_um"],
                   length_um=max(snap["distance_um"] - snap["radius_um"], 0.0))
        foot = np.array([snap["foot_z_um"], snap["foot_y_um"], snap["foot_x_um"]]) / vox
        row.update(base_z=foot[0], base_y=foot[1], base_x=foot[2])
        return row
    # no centre lines: take branch and arc of the nearest spine of the session
    sp = results.spines
    same = sp[sp["session"] == session]
    if not len(same):
        same = sp
    if not len(same):
        raise EditError("there is no centre line nor spine to place the new spine on a branch")
    cols = position_columns(sp)
    if cols[0] != "ref_z_um":
        ref = own
    d = np.linalg.norm(same[cols].to_numpy(float) - ref, axis=1)
    near = same.iloc[int(np.argmin(d))]
    row.update(branch_id=int(near["branch_id"]), arc_um=float(near["arc_um"]),
               length_um=float(near.get("length_um", np.nan)))
    return row


# --------------------------------------------------------------------------- applying


def _find(spines: pd.DataFrame, target: Target, tolerance_um: float) -> int:
    """Index label of the spine observation ``target`` names (nearest within tolerance)."""
    same = spines[spines["session"] == target.session]
    if not len(same):
        raise EditError(f"no spine in session {target.session}")
    d = np.linalg.norm(same[position_columns(spines)].to_numpy(float)
                       - np.asarray(target.at_um), axis=1)
    i = int(np.argmin(d))
    if d[i] > tolerance_um:
        raise EditError(f"no spine within {tolerance_um:g} µm of "
                        f"({', '.join(f'{v:.2f}' for v in target.at_um)}) µm in session "
                        f"{target.session}")
    return same.index[i]


def _new_id(spines: pd.DataFrame) -> int:
    return int(spines["spine_id"].max()) + 1 if len(spines) else 0


def _sessions_of(spines: pd.DataFrame, spine_id: int) -> list[int]:
    return sorted(spines.loc[spines["spine_id"] == spine_id, "session"].astype(int).tolist())


def _renumber_gaps(spines: pd.DataFrame, spine_id: int) -> pd.DataFrame:
    """Give each later contiguous run of ``spine_id`` a new id (the identity rule)."""
    sessions = _sessions_of(spines, spine_id)
    runs_start = [s for prev, s in zip(sessions, sessions[1:]) if s != prev + 1]
    for start in runs_start:
        later = (spines["spine_id"] == spine_id) & (spines["session"] >= start)
        spines.loc[later, "spine_id"] = _new_id(spines)
    return spines


def _int_columns(spines: pd.DataFrame) -> pd.DataFrame:
    for col in ("spine_id", "session", "branch_id"):
        if col in spines.columns and spines[col].notna().all():
            spines[col] = spines[col].astype(int)
    return spines


def _mark_manual(spines: pd.DataFrame, ids) -> None:
    spines.loc[spines["spine_id"].isin(list(ids)), "source"] = "manual"


def apply_edit(results: Results, spines: pd.DataFrame, fate_overrides: dict[int, str],
               edit: Edit, tolerance_um: float = DEFAULT_TOLERANCE_UM,
               frames: _Frames | None = None) -> pd.DataFrame:
    """Carry out one edit on a spines table (a copy is returned; ``fate_overrides`` updated).

    Parameters
    ----------
    results : Results
        Supplies the centre lines, registration and voxel sizes.
    spines : DataFrame
        The current spines table (contract columns).
    fate_overrides : dict
        spine_id -> fate set by hand; updated in place by ``set_fate``.
    edit : Edit
    tolerance_um : float
        How far from its recorded position a spine may be and still be found (µm).

    Raises
    ------
    EditError
        When the edit does not apply (no spine there; a join that would put one
        spine twice in a session or leave a gap; a split at its first session).
    """
    frames = frames or _Frames(results)
    sp = spines.copy()
    if edit.kind == "add":
        row = _placed_row(results, frames, int(edit.session), edit.to_um)
        row["spine_id"] = _new_id(sp)
        sp = pd.concat([sp, pd.DataFrame([row])], ignore_index=True)
        return _int_columns(sp)
    idx = _find(sp, edit.target, tolerance_um)
    sid = int(sp.at[idx, "spine_id"])
    if edit.kind == "delete":
        sp = sp.drop(index=idx)
        return _renumber_gaps(sp, sid).reset_index(drop=True)
    if edit.kind == "move":
        row = _placed_row(results, frames, int(sp.at[idx, "session"]), edit.to_um)
        for col, value in row.items():
            if col not in sp.columns and col not in ("base_z", "base_y", "base_x"):
                continue
            if col in sp.columns and sp[col].dtype.kind in "iub" and not float(value).is_integer():
                sp[col] = sp[col].astype(float)
            sp.loc[idx, col] = value
        for col in _STALE_AFTER_MOVE:  # measured at the old place: unknown now
            if col in sp.columns:
                if sp[col].dtype.kind in "iub":
                    sp[col] = sp[col].astype(float)
                sp.loc[idx, col] = np.nan
        return sp
    if edit.kind == "split":
        k = int(sp.at[idx, "session"])
        if k == min(_sessions_of(sp, sid)):
            raise EditError(f"spine {sid} starts in session {k}; there is nothing to split off")
        later = (sp["spine_id"] == sid) & (sp["session"] >= k)
        new_id = _new_id(sp)
        sp.loc[later, "spine_id"] = new_id
        _mark_manual(sp, (sid, new_id))
        return sp
    if edit.kind == "join":
        other = int(sp.at[_find(sp, edit.other, tolerance_um), "spine_id"])
        if other == sid:
            raise EditError(f"both observations are already spine {sid}")
        a, b = _sessions_of(sp, sid), _sessions_of(sp, other)
        both = sorted(set(a) & set(b))
        if both:
            raise EditError(f"spines {sid} and {other} are both present in session {both[0]}; "
                            "one spine is seen once per session")
        joined = sorted(a + b)
        if joined[-1] - joined[0] + 1 != len(joined):
            raise EditError(f"joining spines {sid} and {other} would leave a gap (the identity "
                            "rule: a spine that returns after an absence is a new spine)")
        keep, drop = (sid, other) if a[0] < b[0] else (other, sid)
        sp.loc[sp["spine_id"] == drop, "spine_id"] = keep
        _mark_manual(sp, (keep,))
        for sid_, fate in list(fate_overrides.items()):
            if sid_ == drop:
                fate_overrides.setdefault(keep, fate)
                del fate_overrides[sid_]
        return sp
    if edit.kind == "set_fate":
        problem = fate_contradiction(_presence(sp, sid, results.n_sessions), str(edit.fate))
        if problem:
            raise EditError(f"spine {sid} {problem}")
        fate_overrides[sid] = str(edit.fate)
        return sp
    raise EditError(f"unknown edit kind {edit.kind!r}")  # pragma: no cover


def _presence(spines: pd.DataFrame, spine_id: int, n_sessions: int) -> str:
    """``'0'``/``'1'`` per session for one spine_id (e.g. ``'0110'``)."""
    seen = set(_sessions_of(spines, spine_id))
    return "".join("1" if k in seen else "0" for k in range(n_sessions))


def fate_contradiction(present: str, fate: str) -> str | None:
    """Why a fate set by hand contradicts a spine's presence, or None if it fits.

    Presence decides stable, lost, formed and transient (the output contract);
    a person may only say whether a spine that is absent in session 0 is
    ``restored`` or not (``formed``/``transient``, as its presence says).

    Examples
    --------
    >>> fate_contradiction("1110", "stable")
    'is present 1110 (in session 0, not in the last): its fate can only be lost'
    >>> fate_contradiction("0011", "restored") is None
    True
    """
    if "1" not in present:
        return "is not present in any session"
    by_presence = fate_from_presence(present)
    allowed = [by_presence] + (["restored"] if present[0] == "0" else [])
    if fate in allowed:
        return None
    where = {"stable": "in every session", "lost": "in session 0, not in the last",
             "formed": "not in session 0, in the last",
             "transient": "not in session 0 nor in the last"}[by_presence]
    return (f"is present {present} ({where}): its fate can only be "
            f"{' or '.join(allowed)}")


def fates_with_overrides(spines: pd.DataFrame, n_sessions: int, restore_radius_um: float,
                         fate_overrides: dict[int, str] | None = None,
                         not_kept: list[str] | None = None) -> pd.DataFrame:
    """Classify fates, then put in the fates a person set by hand (``fate_source``).

    A fate set by hand replaces the classified fate of that ``spine_id``;
    ``restored_from`` is then empty unless the fate set is ``restored``. A fate
    set by hand that contradicts the spine's presence (:func:`fate_contradiction`,
    e.g. after a later edit deleted one of its sessions) is not kept: the
    classified fate stands, with a warning (in the log, and appended to
    ``not_kept`` when given: one message per fate not kept).
    """
    fates = classify_fates(spines, n_sessions, restore_radius_um)
    fates["fate_source"] = "auto"
    for sid, fate in (fate_overrides or {}).items():
        hit = fates["spine_id"] == sid
        if not hit.any():
            continue
        problem = fate_contradiction(str(fates.loc[hit, "present"].iloc[0]), fate)
        if problem:  # a later edit changed where the spine is present
            log.warning("the fate %s set by hand is not kept: spine %s %s", fate, sid, problem)
            if not_kept is not None:
                not_kept.append(f"the fate {fate} set by hand for spine {sid} is not kept: "
                                f"spine {sid} {problem}")
            continue
        if fate != "restored":
            fates.loc[hit, "restored_from"] = pd.NA
        fates.loc[hit, "fate"] = fate
        fates.loc[hit, "fate_source"] = "manual"
    return fates


def recompute_results(results: Results, spines: pd.DataFrame,
                      fate_overrides: dict[int, str] | None = None,
                      edits: list[Edit] | None = None, skipped: list[str] | None = None,
                      progress=None) -> Results:
    """Results with ``spines`` replaced: fates re-classified, hand-set fates kept, stats redone.

    Parameters
    ----------
    results : Results
        The results the spines were edited from (lines, sessions, params...).
    spines : DataFrame
        The edited spines table.
    fate_overrides : dict, optional
        spine_id -> fate set by hand. It replaces the classified fate of that
        ``spine_id`` (``restored_from`` is then empty unless the classification
        also said ``restored``); the fates table gets ``fate_source``
        (``auto``/``manual``).
    edits, skipped : list, optional
        The edit log and the messages of edits that did not apply; counted in
        ``summary["edits"]``, skipped ones added to ``summary["warnings"]``.
    progress : callable, optional
    """
    from .pipeline import recompute

    spines = spines.reset_index(drop=True)
    not_kept: list[str] = []
    fates = fates_with_overrides(spines, results.n_sessions,
                                 results.params.fates.restore_radius_um, fate_overrides, not_kept)
    staged = replace(results, spines=spines, fates=fates)
    out = recompute(staged, progress=progress, fates=False)
    # the column order write_results uses, so a reopened project matches the screen
    out.spines = _ordered(out.spines, SPINE_COLUMNS)
    out.fates = _ordered(out.fates, FATE_COLUMNS)
    out.branches = _ordered(out.branches, BRANCH_COLUMNS)
    summary = dict(out.summary)  # recompute keeps the summary keys it does not produce
    skipped = list(skipped or [])
    summary["edits"] = {"applied": len(edits or []) - len(skipped), "skipped": len(skipped)}
    summary["warnings"] = list(out.summary.get("warnings", [])) + skipped + not_kept
    out.summary = summary
    return out


def replay_edits(results: Results, edits: list[Edit],
                 tolerance_um: float = DEFAULT_TOLERANCE_UM, strict: bool = False
                 ) -> tuple[pd.DataFrame, dict[int, str], list[str]]:
    """Apply every edit in order to ``results.spines``, without recomputing anything.

    Returns
    -------
    spines : DataFrame
        The edited spines table.
    fate_overrides : dict
        spine_id -> fate set by hand.
    skipped : list of str
        One message per edit that no longer applies (``strict=False``).
    """
    spines = results.spines.copy()
    if "source" not in spines.columns:
        spines["source"] = "auto"
    overrides: dict[int, str] = {}
    frames = _Frames(results) if edits else None
    skipped: list[str] = []
    for i, edit in enumerate(edits):
        try:
            spines = apply_edit(results, spines, overrides, edit, tolerance_um, frames)
        except EditError as exc:
            if strict:
                raise EditError(f"edit {i + 1} ({edit.describe()}): {exc}") from None
            skipped.append(f"edit {i + 1} ({edit.describe()}) no longer applies: {exc}")
    for msg in skipped:
        log.warning(msg)
    return spines, overrides, skipped


def apply_edits(results: Results, edits: list[Edit], tolerance_um: float = DEFAULT_TOLERANCE_UM,
                strict: bool = False, progress=None) -> Results:
    """Replay an edit log on (automatic) results and recompute fates and statistics.

    Parameters
    ----------
    results : Results
        Usually a fresh run's results; not modified.
    edits : list of Edit
        In the order they were made.
    tolerance_um : float
        How far a spine may have moved since an edit was recorded and still be the
        one the edit names (µm).
    strict : bool
        Raise :class:`EditError` on an edit that no longer applies, instead of
        skipping it with a warning.
    progress : callable, optional

    Returns
    -------
    Results
        Edited tables (``results`` itself when there are no edits).
        ``summary["edits"]`` counts applied and skipped edits; skipped ones are
        listed in ``summary["warnings"]``.
    """
    if not edits:
        return results
    spines, overrides, skipped = replay_edits(results, edits, tolerance_um, strict)
    return recompute_results(results, spines, overrides, edits=edits, skipped=skipped,
                             progress=progress)
