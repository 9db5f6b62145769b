"""Which automatic calls a person should check, in the order they would walk them.

On real data the automatic fates are a draft: every missed or false detection
becomes a loss, a formation or a restoration. :func:`review_queue` lists the
spines whose fate is not ``stable``, branch by branch along the arc, each with
the session and position to look at, so a viewer can step through them (the
napari "Correct spines" widget's Previous / Next call).
"""

from __future__ import annotations

import pandas as pd

from .edits import position_columns

__all__ = ["review_queue", "REVIEW_FATES", "QUEUE_COLUMNS"]

#: Fates worth a second look, in the order of how much they change the results.
REVIEW_FATES = ("lost", "restored", "formed", "transient")
#: Columns of :func:`review_queue`.
QUEUE_COLUMNS = ["row", "spine_id", "fate", "session", "branch_id", "arc_um", "z_um", "y_um",
                 "x_um", "what"]


def review_queue(spines: pd.DataFrame, fates: pd.DataFrame,
                 fates_to_check: tuple[str, ...] = REVIEW_FATES) -> pd.DataFrame:
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

    Returns
    -------
    DataFrame
        :data:`QUEUE_COLUMNS`: ``row`` is the position of the observation to look
        at in ``spines`` (0-based, as in ``spines.reset_index()``); for a lost spine
        that is its last session (step one session on to see it gone), for a
        new one its first; ``z_um, y_um, x_um`` its position; ``what`` a short
        description.
    """
    if not len(spines) or not len(fates):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in QUEUE_COLUMNS})
    sp = spines.reset_index(drop=True)
    by_id = sp.groupby("spine_id")["session"]
    first, last = by_id.idxmin(), by_id.idxmax()
    todo = fates[fates["fate"].isin(fates_to_check) & fates["spine_id"].isin(first.index)]
    pos = position_columns(sp)
    rows = []
    for sid, fate, restored_from in zip(todo["spine_id"], todo["fate"], todo["restored_from"]):
        at = last[sid] if fate == "lost" else first[sid]
        k = int(sp.at[at, "session"])
        if fate == "lost":
            what = f"spine {sid} lost after session {k}"
        elif fate == "restored":
            what = f"spine {sid} new in session {k}, restored at the site of spine " \
                   f"{int(restored_from)}"
        else:
            what = f"spine {sid} {fate}, new in session {k}"
        z, y, x = (float(v) for v in sp.loc[at, pos])
        rows.append([int(at), int(sid), fate, k, int(sp.at[at, "branch_id"]),
                     float(sp.at[at, "arc_um"]), z, y, x, what])
    out = pd.DataFrame(rows, columns=QUEUE_COLUMNS)
    return out.sort_values(["branch_id", "arc_um", "session"], kind="stable") \
        .reset_index(drop=True)
