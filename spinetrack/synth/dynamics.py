"""Which spine is present in which session: losses, formations, restorations.

Every spine_id is present in one contiguous run of sessions ``first..last``
(the identity rule); a spine that re-appears at the site of an earlier loss is
a new spine_id. Losses are independent per spine with probability
``loss_rate`` (``new_loss_rate`` for spines formed at the previous session),
except in the *stress* transition, where one or two branches lose spines with
probability ``stress_loss_rate``. With ``null=True`` the stress transition has
the same expected number of losses spread uniformly over all spines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .presets import SynthConfig

__all__ = ["simulate_presence", "stress_transition"]

MIN_GAP_UM = 0.7      # smallest distance along a branch between two present spines
END_GAP_UM = 1.5      # no spine this close to a branch end or junction
NEW_LOSS_RATE = 0.5  # new spines are less stable than old ones
RESTORE_SPREAD_UM = 1.2  # a restored spine's base is this close to the lost site along the branch


def stress_transition(n_sessions: int) -> int:
    """Index k of the stressed transition k -> k+1 (the middle one)."""
    return max(0, (n_sessions - 1) // 2)


def _free_arc(rng, lo, hi, taken: np.ndarray, near: float | None = None,
              spread: float = RESTORE_SPREAD_UM, tries: int = 40,
              accept=None) -> float | None:
    """A random arc in [lo, hi] at least MIN_GAP_UM from every value in ``taken``.

    With ``near``, draw within ``spread`` of it instead. With ``accept``, a
    callable ``accept(arc) -> bool``, the arc must also be accepted by it (a
    spine shape fits there).
    """
    for _ in range(tries):
        a = rng.uniform(lo, hi) if near is None else near + rng.uniform(-spread, spread)
        if a < lo or a > hi:
            continue
        if len(taken) and np.min(np.abs(taken - a)) < MIN_GAP_UM:
            continue
        if accept is None or accept(float(a)):
            return float(a)
    return None


def simulate_presence(cfg: SynthConfig, branches: pd.DataFrame, n_sessions: int,
                      rng: np.random.Generator, null: bool = False, fits=None):
    """Draw the spines of every session.

    Parameters
    ----------
    cfg : SynthConfig
    branches : DataFrame
        ``branch_id, length_um`` of every branch.
    n_sessions : int
    rng : Generator
    null : bool
        Spread the stress transition's losses uniformly (no branch clustering).
    fits : callable, optional
        ``fits(index, branch_id, arc_um, session, present, draw) -> bool``: whether
        a new spine (row ``index``; ``draw`` counts the spines given up for that
        row before) fits at ``arc_um`` from ``session`` on beside the spines
        ``present`` (row indices present then); e.g.
        :meth:`spinetrack.synth.placement.SpinePlacer.fits`. A base where it does
        not fit is redrawn (restored spines stay within 1.2 µm of their site,
        or become ordinary new spines); a spine that fits nowhere is dropped.

    Returns
    -------
    spines : DataFrame
        One row per spine_id: ``spine_id, branch_id, arc_um, first_session,
        last_session, restored_site`` (spine_id of the loss it was placed next to,
        -1 if none). ``last_session`` is inclusive.
    info : dict
        ``stress_transition``, ``stress_branches`` (empty when null) and
        ``loss_probability`` per transition and branch.
    """
    bounds = {int(b): (END_GAP_UM, float(L) - END_GAP_UM)
              for b, L in zip(branches["branch_id"], branches["length_um"])}
    rows: list[list] = []
    given_up: dict[int, int] = {}  # spines given up per row index (see ``fits``)
    for b, (lo, hi) in bounds.items():
        density = rng.uniform(*cfg.spine_density_per_um)
        first = len(rows)
        for _ in range(rng.poisson(density * max(hi - lo, 0.0))):
            taken = np.array([r[2] for r in rows[first:]])
            i = len(rows)
            accept = None if fits is None else (
                lambda a, b=b, i=i: fits(i, b, a, 0, range(i), given_up.get(i, 0)))
            a = _free_arc(rng, lo, hi, taken, accept=accept)
            if a is not None:
                rows.append([i, b, a, 0, n_sessions - 1, -1])
            else:
                given_up[i] = given_up.get(i, 0) + 1
    spines = np.array(rows, dtype=float).reshape(-1, 6)

    stress_k = stress_transition(n_sessions)
    ids = list(bounds)
    counts = {b: int(np.sum(spines[:, 1] == b)) for b in ids}
    big = sorted(ids, key=lambda b: -counts[b])[:max(2, len(ids) // 2)]
    n_stress = 1 if len(ids) < 4 else int(rng.integers(1, 3))
    stressed = sorted(int(b) for b in rng.choice(big, size=min(n_stress, len(big)), replace=False))
    loss_prob = {}

    for k in range(n_sessions - 1):
        present = np.flatnonzero((spines[:, 3] <= k) & (spines[:, 4] >= k))
        p = np.where(spines[present, 3] == k, NEW_LOSS_RATE, cfg.loss_rate) \
            if k > 0 else np.full(len(present), cfg.loss_rate)
        if k == stress_k and n_sessions > 1:
            on_stress = np.isin(spines[present, 1], stressed)
            p_stress = np.where(on_stress, cfg.stress_loss_rate, p)
            p = np.full(len(present), p_stress.mean()) if null else p_stress
        loss_prob[k] = {int(b): float(np.mean(p[spines[present, 1] == b]))
                        for b in ids if np.any(spines[present, 1] == b)}
        lost = present[rng.random(len(present)) < p]
        spines[lost, 4] = k
        survivors = np.setdiff1d(present, lost)
        n_new = rng.poisson(cfg.formation_rate * len(present))
        reoccupied = set(spines[spines[:, 5] >= 0, 5].astype(int).tolist())
        lost_sites = [i for i in np.flatnonzero(spines[:, 4] <= k) if i not in reoccupied]
        new_rows = []

        def accept_new(b, taken_all, k=k, new_rows=new_rows):
            if fits is None:
                return None
            index = len(spines) + len(new_rows)
            return lambda a: fits(index, b, a, k + 1, taken_all[:, 0].astype(int),
                                  given_up.get(index, 0))

        for _ in range(n_new):
            taken_all = np.concatenate([spines[survivors], np.array(new_rows).reshape(-1, 6)])
            site = -1
            if lost_sites and rng.random() < cfg.restore_fraction:
                site = int(lost_sites.pop(int(rng.integers(len(lost_sites)))))
                b = int(spines[site, 1])
                taken = taken_all[taken_all[:, 1] == b, 2]
                a = _free_arc(rng, *bounds[b], taken, near=spines[site, 2],
                              accept=accept_new(b, taken_all))
                if a is None:
                    site = -1
            if site < 0:
                lengths = np.array([max(bounds[b][1] - bounds[b][0], 0.0) for b in ids])
                if lengths.sum() <= 0:
                    continue
                b = int(rng.choice(ids, p=lengths / lengths.sum()))
                taken = taken_all[taken_all[:, 1] == b, 2]
                a = _free_arc(rng, *bounds[b], taken, accept=accept_new(b, taken_all))
                if a is None:
                    index = len(spines) + len(new_rows)
                    given_up[index] = given_up.get(index, 0) + 1
                    continue
            new_rows.append([len(spines) + len(new_rows), b, a, k + 1, n_sessions - 1, site])
        if new_rows:
            spines = np.concatenate([spines, np.array(new_rows, dtype=float)])

    out = pd.DataFrame(spines, columns=["spine_id", "branch_id", "arc_um", "first_session",
                                        "last_session", "restored_site"])
    for c in ("spine_id", "branch_id", "first_session", "last_session", "restored_site"):
        out[c] = out[c].astype(int)
    info = {"stress_transition": stress_k,
            "stress_branches": [] if null or n_sessions < 2 else stressed,
            "loss_probability": loss_prob, "null": bool(null)}
    return out, info
