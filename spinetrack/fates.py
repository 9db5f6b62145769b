"""Spine fates across a series, exactly as the output contract defines them.

For a series of N sessions, each ``spine_id`` is present in one contiguous run
of sessions (the identity rule). Its fate:

``stable``
    present in every session;
``lost``
    present in session 0, absent in the last session;
``formed``
    absent in session 0, present in the last session, and not restored;
``transient``
    absent in session 0 and in the last session, present in between, not restored;
``restored``
    first present in session k > 0, on the same branch and within
    ``restore_radius_um`` along the branch (``arc_um``) of the site of a spine that
    was last present before session k. Each such spine is claimed at most once,
    nearest pair first.

Positions along a branch are the spine's mean ``arc_um`` over the sessions it is
present in (the value written in ``fates.csv``), so a reader can check every
restoration from ``fates.csv`` alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = [
    "FATES",
    "classify_fates",
    "fate_from_presence",
    "identity_rule_violations",
    "presence_strings",
]

FATES = ("stable", "lost", "formed", "transient", "restored")

_REQUIRED = ("spine_id", "session", "branch_id", "arc_um")


def fate_from_presence(present: str) -> str:
    """Fate of a presence string such as ``"0110"``, before restorations."""
    if "1" not in present:
        raise ValueError(f"presence {present!r} has no session")
    if set(present) == {"1"}:
        return "stable"
    if present[0] == "1":
        return "lost"
    if present[-1] == "1":
        return "formed"
    return "transient"


def presence_strings(spines: pd.DataFrame, n_sessions: int) -> pd.Series:
    """One ``'0'``/``'1'`` character per session for every spine_id (index: spine_id)."""
    grid = np.zeros((0, n_sessions), dtype=np.uint8)
    ids = np.sort(spines["spine_id"].unique())
    if len(ids):
        rows = np.searchsorted(ids, spines["spine_id"].to_numpy())
        grid = np.zeros((len(ids), n_sessions), dtype=np.uint8)
        grid[rows, spines["session"].to_numpy(dtype=int)] = 1
    chars = np.where(grid == 1, "1", "0")
    return pd.Series(["".join(r) for r in chars], index=pd.Index(ids, name="spine_id"),
                     name="present", dtype=object)


def identity_rule_violations(spines: pd.DataFrame) -> list[int]:
    """spine_ids present in more than one contiguous run, or twice in one session."""
    bad = set(spines.loc[spines.duplicated(["spine_id", "session"]), "spine_id"].tolist())
    span = spines.groupby("spine_id")["session"].agg(["min", "max", "nunique"])
    bad |= set(span.index[span["max"] - span["min"] + 1 != span["nunique"]].tolist())
    return sorted(int(b) for b in bad)


def _validate(spines: pd.DataFrame, n_sessions: int) -> None:
    missing = [c for c in _REQUIRED if c not in spines.columns]
    if missing:
        raise InputError(None, f"spine table lacks columns {missing}")
    if n_sessions < 1:
        raise InputError(None, f"a series needs at least one session, got {n_sessions}")
    if len(spines):
        s = spines["session"]
        if s.min() < 0 or s.max() >= n_sessions:
            raise InputError(None, f"session index outside 0..{n_sessions - 1}")
    bad = identity_rule_violations(spines)
    if bad:
        raise InputError(None, f"spine_ids {bad[:10]} break the identity rule "
                         "(present in one contiguous run of sessions, once per session)")


def classify_fates(
    spines: pd.DataFrame, n_sessions: int, restore_radius_um: float = 2.0
) -> pd.DataFrame:
    """Classify every spine_id of a linked spine table.

    Parameters
    ----------
    spines : DataFrame
        One row per spine per session, with at least ``spine_id``, ``session``,
        ``branch_id`` and ``arc_um`` (shared frame, µm).
    n_sessions : int
        Number of sessions in the series (a spine absent from the last sessions
        still needs them counted).
    restore_radius_um : float
        Largest distance along the branch between a new spine and the site of an
        earlier loss for the new spine to count as ``restored``.

    Returns
    -------
    DataFrame
        One row per spine_id: ``spine_id, branch_id, arc_um, present, fate,
        restored_from, first_session, last_session, n_present``. ``restored_from``
        is a nullable integer (``<NA>`` unless restored).

    Raises
    ------
    InputError
        If columns are missing or the identity rule is broken.
    """
    _validate(spines, n_sessions)
    if not len(spines):
        return pd.DataFrame({
            "spine_id": pd.Series(dtype=int), "branch_id": pd.Series(dtype=int),
            "arc_um": pd.Series(dtype=float), "present": pd.Series(dtype=object),
            "fate": pd.Series(dtype=object), "restored_from": pd.Series(dtype="Int64"),
            "first_session": pd.Series(dtype=int), "last_session": pd.Series(dtype=int),
            "n_present": pd.Series(dtype=int)})

    grouped = spines.groupby("spine_id", sort=True)
    counts = spines.groupby(["spine_id", "branch_id"]).size().reset_index(name="n")
    counts = counts.sort_values(["spine_id", "n", "branch_id"], ascending=[True, False, True])
    modal_branch = counts.drop_duplicates("spine_id").set_index("spine_id")["branch_id"]
    out = pd.DataFrame({
        "branch_id": modal_branch,
        "arc_um": grouped["arc_um"].mean(),
        "first_session": grouped["session"].min(),
        "last_session": grouped["session"].max(),
        "n_present": grouped["session"].nunique(),
    })
    out["present"] = presence_strings(spines, n_sessions)
    out["fate"] = [fate_from_presence(p) for p in out["present"]]
    out = out.reset_index()

    restored_from = _claim_restorations(out, restore_radius_um)
    out["restored_from"] = pd.array(
        [restored_from.get(int(i), pd.NA) for i in out["spine_id"]], dtype="Int64")
    out.loc[out["restored_from"].notna().to_numpy(), "fate"] = "restored"
    cols = ["spine_id", "branch_id", "arc_um", "present", "fate", "restored_from",
            "first_session", "last_session", "n_present"]
    return out[cols]


def _claim_restorations(fates: pd.DataFrame, radius: float) -> dict[int, int]:
    """Map new spine_id -> lost spine_id, nearest pairs first, each side used once.

    A pair (new N, earlier E) qualifies when N first appears in session k > 0,
    E was last present before k, both are on the same branch, and their sites
    are within ``radius`` along it. Ties in distance go to the earlier new spine,
    then to the more recently lost site, then to smaller spine_ids.
    """
    ids = fates["spine_id"].to_numpy()
    branch = fates["branch_id"].to_numpy()
    arc = fates["arc_um"].to_numpy(dtype=float)
    first = fates["first_session"].to_numpy()
    last = fates["last_session"].to_numpy()
    new = np.flatnonzero(first > 0)
    pairs = []
    for b in np.unique(branch[new]):
        on_branch = np.flatnonzero(branch == b)
        new_b = new[branch[new] == b]
        for n in new_b:
            cand = on_branch[last[on_branch] < first[n]]
            if not len(cand):
                continue
            d = np.abs(arc[cand] - arc[n])
            for e, dist in zip(cand[d <= radius + 1e-9], d[d <= radius + 1e-9]):
                pairs.append((dist, first[n], -last[e], ids[n], ids[e]))
    pairs.sort()
    claimed_new: dict[int, int] = {}
    used: set[int] = set()
    for _, _, _, n_id, e_id in pairs:
        if n_id in claimed_new or e_id in used:
            continue
        claimed_new[int(n_id)] = int(e_id)
        used.add(int(e_id))
    return claimed_new
