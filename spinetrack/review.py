"""Which automatic calls a person should check, in the order they would walk them.

On real data the automatic fates are a draft: every missed or false detection
becomes a loss, a formation or a restoration. :func:`review_queue` lists the
spines whose fate is not ``stable``, branch by branch along the arc, each with
the session and position to look at and the two sessions to compare (the last
session a lost spine is seen and the first it is gone; for a restored spine the
lost spine's last session and the new spine's first), so a viewer can step
through them (the napari "Correct spines" widget's Previous / Next call and its
side-by-side comparison). :class:`ReviewCursor` keeps one person's place in the
queue while the spines are edited, and recomputes the queue only when the
results change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .edits import position_columns

__all__ = ["review_queue", "ReviewCursor", "REVIEW_FATES", "QUEUE_COLUMNS", "ORDER_COLUMNS"]

#: Fates worth a second look, in the order of how much they change the results.
REVIEW_FATES = ("lost", "restored", "formed", "transient")
#: Columns of :func:`review_queue`.
QUEUE_COLUMNS = ["row", "spine_id", "fate", "session", "branch_id", "arc_um", "z_um", "y_um",
                 "x_um", "what", "before_session", "after_session", "before_z_um", "before_y_um",
                 "before_x_um", "after_z_um", "after_y_um", "after_x_um"]
#: The walking order of the queue: branch by branch, along the arc.
ORDER_COLUMNS = ["branch_id", "arc_um", "session", "spine_id"]


def _empty_queue() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in QUEUE_COLUMNS})


def review_queue(spines: pd.DataFrame, fates: pd.DataFrame,
                 fates_to_check: tuple[str, ...] = REVIEW_FATES,
                 n_sessions: int | None = None) -> pd.DataFrame:
    """The calls to check, one row each, ordered by branch and position along it.

    Parameters
    ----------
    spines : DataFrame
        Contract spines (``spine_id, session, branch_id, arc_um`` and positions;
        registered ``ref_*_um`` when present, as the napari layer shows them).
    fates : DataFrame
        Contract fates (``spine_id, fate, restored_from``).
    fates_to_check : tuple of str
        Fates listed.
    n_sessions : int, optional
        Sessions in the series (default: one more than the last session in
        ``spines``); bounds the sessions to compare.

    Returns
    -------
    DataFrame
        :data:`QUEUE_COLUMNS`, sorted by :data:`ORDER_COLUMNS`. ``row`` is the
        position of the observation to look at in ``spines`` (0-based, as in
        ``spines.reset_index()``); for a lost spine that is its last session (step
        one session on to see it gone), for a new one its first; ``z_um, y_um,
        x_um`` its position; ``what`` a short description.
        ``before_session, after_session`` are the two sessions to compare and
        ``before_*_um, after_*_um`` the site to circle in each: a lost spine's
        last session and the next (its position in both); a new spine's
        previous session and its first (its position in both); a restored spine's
        lost predecessor in that spine's last session, and the new spine.
    """
    if not len(spines) or not len(fates):
        return _empty_queue()
    sp = spines.reset_index(drop=True)
    by_id = sp.groupby("spine_id")["session"]
    first, last = by_id.idxmin(), by_id.idxmax()
    todo = fates[fates["fate"].isin(fates_to_check) & fates["spine_id"].isin(first.index)]
    if not len(todo):
        return _empty_queue()
    n = int(sp["session"].max()) + 1 if n_sessions is None else int(n_sessions)
    sid = todo["spine_id"].to_numpy()
    fate = todo["fate"].astype(str).to_numpy()
    lost = fate == "lost"
    at = np.where(lost, last.loc[sid].to_numpy(), first.loc[sid].to_numpy())
    pos = sp[position_columns(sp)].to_numpy(float)
    session = sp["session"].to_numpy(int)[at]
    here = pos[at]

    # the sessions either side of the change: the spine's own session and its neighbour
    after = np.where(lost, session + 1, session)
    after = np.clip(after, min(1, n - 1), n - 1)  # a fate set by hand may defy the presence
    before = np.maximum(after - 1, 0)
    before_pos = here.copy()
    restored_from = pd.to_numeric(todo.get("restored_from", pd.Series(np.nan, index=todo.index)),
                                  errors="coerce").to_numpy(float)
    site = (fate == "restored") & np.isfinite(restored_from)
    site &= np.isin(restored_from, last.index.to_numpy(float))
    if site.any():
        old = last.loc[restored_from[site].astype(int)].to_numpy()
        before[site] = sp["session"].to_numpy(int)[old]
        before_pos[site] = pos[old]
        after[site] = session[site]

    out = pd.DataFrame({
        "row": at.astype(int), "spine_id": sid.astype(int), "fate": fate, "session": session,
        "branch_id": sp["branch_id"].to_numpy(int)[at],
        "arc_um": sp["arc_um"].to_numpy(float)[at],
        "z_um": here[:, 0], "y_um": here[:, 1], "x_um": here[:, 2],
        "what": _descriptions(sid, fate, session, restored_from),
        "before_session": before, "after_session": after,
        "before_z_um": before_pos[:, 0], "before_y_um": before_pos[:, 1],
        "before_x_um": before_pos[:, 2],
        "after_z_um": here[:, 0], "after_y_um": here[:, 1], "after_x_um": here[:, 2]})
    return out[QUEUE_COLUMNS].sort_values(ORDER_COLUMNS, kind="stable").reset_index(drop=True)


def _descriptions(sid, fate, session, restored_from) -> list[str]:
    out = []
    for s, f, k, old in zip(sid, fate, session, restored_from):
        if f == "lost":
            out.append(f"spine {s} lost after session {k}")
        elif f == "restored" and np.isfinite(old):
            out.append(f"spine {s} new in session {k}, restored at the site of spine {int(old)}")
        else:
            out.append(f"spine {s} {f}, new in session {k}")
    return out


class ReviewCursor:
    """One person's place in the review queue of results that keep changing.

    The queue is computed once per results object (:meth:`queue`) and again only
    after :meth:`invalidate` or when other results are passed (an edit, an undo
    or a recomputation gives new tables). The place is the current call's
    position in the walking order (:data:`ORDER_COLUMNS`), not its index, so
    after the call is resolved (deleted, joined, its fate set) *next* is the call
    that followed it and *previous* the one before it.
    """

    def __init__(self) -> None:
        self._tables: tuple | None = None
        self._queue: pd.DataFrame | None = None
        self._n_sessions: int | None = None
        self.current: tuple | None = None
        #: How many times the queue was computed (for tests and profiling).
        self.computed = 0

    def invalidate(self) -> None:
        """Forget the cached queue (the spines or fates changed)."""
        self._tables = self._queue = None

    def queue(self, spines: pd.DataFrame, fates: pd.DataFrame,
              n_sessions: int | None = None) -> pd.DataFrame:
        """The queue of these tables, from the cache when they are the ones last seen."""
        tables = (spines, fates)
        if (self._queue is None or self._tables is None or n_sessions != self._n_sessions
                or any(a is not b for a, b in zip(tables, self._tables))):
            self._queue = review_queue(spines, fates, n_sessions=n_sessions)
            self._tables, self._n_sessions = tables, n_sessions
            self.computed += 1
        return self._queue

    def step(self, queue: pd.DataFrame, step: int = 1) -> int | None:
        """Move to the next (``step`` 1) or previous (-1) call; its index, None if none.

        From no place yet, *next* is the first call and *previous* the last; past
        either end the walk wraps round.
        """
        if not len(queue):
            self.current = None
            return None
        keys = _keys(queue)
        if self.current is None:
            i = 0 if step > 0 else len(keys) - 1
        elif step > 0:
            i = next((j for j, k in enumerate(keys) if k > self.current), 0)
        else:
            i = next((j for j in range(len(keys) - 1, -1, -1) if keys[j] < self.current),
                     len(keys) - 1)
        self.current = keys[i]
        return i

    def index(self, queue: pd.DataFrame) -> int | None:
        """The current call's index in ``queue``; None when it is no longer a call."""
        if self.current is None or not len(queue):
            return None
        keys = _keys(queue)
        return keys.index(self.current) if self.current in keys else None


def _keys(queue: pd.DataFrame) -> list[tuple]:
    """Each call's place in the walking order (a missing arc sorts last on its branch)."""
    arc = queue["arc_um"].astype(float).fillna(np.inf)
    return list(zip(queue["branch_id"].astype(int).tolist(), arc.tolist(),
                    queue["session"].astype(int).tolist(), queue["spine_id"].astype(int).tolist()))
