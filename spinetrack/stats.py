"""Branch statistics: counts, turnover, survival, loss clustering and restoration.

:func:`branch_statistics` turns the contract's spine and fate tables into the
contract's ``branches.csv`` table and ``summary.json`` dictionary. Every
statistic is defined in ``docs/statistics.md``; in short:

Counts and turnover
    per branch and session, spines present and spines per µm; per transition
    k → k+1, spines gained and eliminated, formation and elimination rates
    (per interval and per day), and the turnover ratio under two definitions;
    the survival fraction of session-0 spines.
Loss clustering across branches
    a dispersion index of per-branch loss counts (1 on average when losses
    fall at random among session-0 spines), a permutation p-value, and per
    branch a one-sided hypergeometric p-value with Benjamini–Hochberg q-values.
Loss spacing within branches
    the mean distance along the dendrite from each lost spine to the nearest
    other lost spine, against random subsets of the same branch's session-0
    spines.
Restoration
    the fraction of new spines that are ``restored`` (within the restoration
    radius of an earlier loss), against the same fraction when the new spines
    are placed at random along their branches and the same nearest-first,
    one-claim rule is applied.

All Monte Carlo tests are seeded (``StatsParams.seed``), vectorised over
permutations, and report ``(1 + #{null ≥ observed}) / (1 + n_permutations)``
p-values, which are never zero and are valid (not anti-conservative).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import InputError
from .fates import FATES
from .files import to_jsonable
from .params import Params, StatsParams
from .progress import ProgressCallback, report

__all__ = [
    "branch_statistics",
    "branch_table_from_lines",
    "branch_table_from_spines",
    "benjamini_hochberg",
    "dispersion_index",
    "loss_pvalues",
    "loss_clustering_test",
    "nearest_neighbour_mean",
    "loss_spacing_test",
    "restoration_test",
    "count_restorations",
    "add_run_metadata",
    "transition_labels",
]

BRANCH_TABLE_COLUMNS = ["branch_id", "length_um", "arc_start_um", "arc_end_um"]
# optional: how many sessions trace the branch, and the outermost ends any session traces
TRACED_COLUMNS = ["n_sessions_traced", "arc_first_start_um", "arc_last_end_um"]

#: Floating tolerance when comparing a null statistic with the observed one.
_TOL = 1e-9
#: Largest number of float64 cells one vectorised Monte Carlo chunk may hold.
_CHUNK_CELLS = 2_000_000


# --------------------------------------------------------------------------- branch table


def branch_table_from_lines(lines: pd.DataFrame, n_sessions: int | None = None) -> pd.DataFrame:
    """The stretch of each branch traced in every session, from a series-wide lines table.

    Parameters
    ----------
    lines : DataFrame
        Centre-line points with ``branch_id``, ``session`` and ``arc_um`` (shared
        arc frame, µm), as written in ``lines.csv``.
    n_sessions : int, optional
        Number of sessions. A branch not traced in some session keeps the
        stretch of the sessions in which it is traced (and ``n_sessions_traced``
        says so).

    Returns
    -------
    DataFrame
        ``branch_id, length_um, arc_start_um, arc_end_um, n_sessions_traced,
        arc_first_start_um, arc_last_end_um``: ``arc_start_um`` is the largest
        per-session start and ``arc_end_um`` the smallest per-session end, so the
        stretch is seen in every session where the branch is traced;
        ``length_um = arc_end_um - arc_start_um`` (0 when the sessions do not
        overlap). ``arc_first_start_um`` and ``arc_last_end_um`` are the
        outermost per-session ends (where the sessions' tracings stop apart).
    """
    missing = [c for c in ("branch_id", "arc_um") if c not in lines.columns]
    if missing:
        raise InputError(None, f"lines table lacks columns {missing}")
    keys = ["branch_id", "session"] if "session" in lines.columns else ["branch_id"]
    per = lines.groupby(keys)["arc_um"].agg(["min", "max"]).reset_index()
    g = per.groupby("branch_id")
    out = pd.DataFrame({
        "arc_start_um": g["min"].max(),
        "arc_end_um": g["max"].min(),
        "n_sessions_traced": g.size() if "session" in per.columns else 1,
        "arc_first_start_um": g["min"].min(),
        "arc_last_end_um": g["max"].max(),
    }).reset_index()
    out["arc_end_um"] = np.maximum(out["arc_end_um"], out["arc_start_um"])
    out["length_um"] = out["arc_end_um"] - out["arc_start_um"]
    return out[BRANCH_TABLE_COLUMNS + TRACED_COLUMNS]


_TRACED_SLACK_UM = 2.0  # a spine this close beyond a common end of the tracings is on it


def _end_slack(bt: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """How far beyond each end of the common traced stretch a spine still counts (µm).

    ``_TRACED_SLACK_UM`` at an end where every session's tracing stops within
    that distance of the others (a dendrite's tip or the edge of the field:
    spines sit on the tip and a base's arc position scatters), 0 where some
    session traces further than another by more (there one session's
    tracing stopped early, and a spine beyond it appears or vanishes with
    the tracing). Without the outermost ends every end gets the slack.
    """
    slack = np.full(len(bt), _TRACED_SLACK_UM)
    if "arc_first_start_um" not in bt.columns or "arc_last_end_um" not in bt.columns:
        return slack, slack.copy()
    spread_lo = (bt["arc_start_um"] - bt["arc_first_start_um"]).to_numpy(float)
    spread_hi = (bt["arc_last_end_um"] - bt["arc_end_um"]).to_numpy(float)
    return (np.where(spread_lo > _TRACED_SLACK_UM, 0.0, slack),
            np.where(spread_hi > _TRACED_SLACK_UM, 0.0, slack))


def counted_branches(bt: pd.DataFrame, n_sessions: int) -> np.ndarray:
    """Which rows of a branch table are traced in every session (all, without the column)."""
    if "n_sessions_traced" not in bt.columns:
        return np.ones(len(bt), dtype=bool)
    return ~(bt["n_sessions_traced"].to_numpy(float) < n_sessions)


def _observed_in_every_session(f: pd.DataFrame, bt: pd.DataFrame, n_sessions: int
                               ) -> np.ndarray:
    """Which fates rows lie on dendrite traced in every session.

    The spine's arc position is within its branch's common traced stretch
    (``arc_start_um`` to ``arc_end_um``), give or take the slack of
    :func:`_end_slack` at each end, and, when the table says so
    (``n_sessions_traced``), the branch is traced in all ``n_sessions``.
    """
    table = bt.reset_index(drop=True)
    lo_slack, hi_slack = _end_slack(table)
    table = table.assign(lo=table["arc_start_um"] - lo_slack,
                         hi=table["arc_end_um"] + hi_slack,
                         counted=counted_branches(table, n_sessions)).set_index("branch_id")
    b = f["branch_id"].astype(int)
    arc = f["arc_um"].to_numpy(float)
    ok = (arc >= b.map(table["lo"]).to_numpy(float)) & (arc <= b.map(table["hi"]).to_numpy(float))
    return ok & b.map(table["counted"]).fillna(True).to_numpy(bool)


def branch_table_from_spines(spines: pd.DataFrame) -> pd.DataFrame:
    """A fallback branch table when no centre lines are known: the range of spine positions.

    The length is underestimated (by about one spine spacing); prefer
    :func:`branch_table_from_lines`.
    """
    g = spines.groupby("branch_id")["arc_um"]
    out = pd.DataFrame({"arc_start_um": g.min(), "arc_end_um": g.max()}).reset_index()
    out["length_um"] = out["arc_end_um"] - out["arc_start_um"]
    return out[BRANCH_TABLE_COLUMNS]


# --------------------------------------------------------------------------- small pieces


def transition_labels(n_sessions: int) -> list[str]:
    """Column suffixes of the transitions k → k+1: ``['s0_s1', 's1_s2', ...]``."""
    return [f"s{k}_s{k + 1}" for k in range(n_sessions - 1)]


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) controlling the false discovery rate.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` for the p-values sorted
    ascending, ``m`` the number of finite p-values. NaN p-values (tests not
    done) stay NaN and do not count in ``m``.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.2]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.2]
    """
    p = np.asarray(pvalues, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    back = np.empty(m)
    back[order] = np.minimum(adjusted, 1.0)
    q[ok] = back
    return q


def dispersion_index(lost: np.ndarray, n_spines: np.ndarray) -> np.ndarray | float:
    """Dispersion index of per-branch loss counts, 1 on average under random loss.

    ``D = (N - 1) / (N (B - 1)) * sum_b (L_b - n_b p)^2 / (n_b p (1 - p))`` with
    ``n_b`` session-0 spines and ``L_b`` losses on branch b, ``N = sum n_b``,
    ``p = sum L_b / N`` and ``B`` branches with ``n_b > 0``. The sum is Pearson's
    chi-square of the branch × (lost, kept) table; the factor makes the
    expectation exactly 1 when the losses are a uniformly random subset of the
    session-0 spines (branch sizes fixed). D > 1: losses concentrate on some
    branches more than chance; D < 1: spread more evenly than chance.

    Parameters
    ----------
    lost : array, shape (B,) or (P, B)
        Loss counts per branch (one row per permutation for the 2-D form).
    n_spines : array, shape (B,)
        Session-0 spines per branch; branches with none must be left out.

    Returns
    -------
    float or array of shape (P,)
        NaN when ``p`` is 0 or 1 or fewer than two branches are given.
    """
    lost = np.asarray(lost, dtype=float)
    n = np.asarray(n_spines, dtype=float)
    total, b = n.sum(), n.size
    n_lost = lost.sum(axis=-1)
    p = np.atleast_1d(n_lost / total if total else np.nan)
    if b < 2 or total < 2 or not np.all((p > 0) & (p < 1)):
        return np.nan if lost.ndim == 1 else np.full(lost.shape[0], np.nan)
    p_ = p[..., None] if lost.ndim == 2 else p[0]
    chi2 = ((lost - n * p_) ** 2 / (n * p_ * (1 - p_))).sum(axis=-1)
    d = chi2 * (total - 1) / (total * (b - 1))
    return float(d) if lost.ndim == 1 else d


def loss_pvalues(lost: np.ndarray, n_spines: np.ndarray) -> np.ndarray:
    """One-sided exact p-values that each branch lost more spines than the others predict.

    Hypergeometric upper tail ``P(X >= L_b)``, X ~ Hypergeom(N, L, n_b): the
    chance that a branch with ``n_b`` of the ``N`` session-0 spines receives at
    least its ``L_b`` of the ``L`` losses when losses fall on a uniformly random
    subset of the session-0 spines. This is the one-sided Fisher exact test of
    the branch against all other branches. NaN for branches with no session-0
    spines.
    """
    lost = np.asarray(lost, dtype=int)
    n = np.asarray(n_spines, dtype=int)
    total, n_lost = int(n.sum()), int(lost.sum())
    out = np.full(lost.shape, np.nan)
    ok = n > 0
    if total:
        out[ok] = sps.hypergeom.sf(lost[ok] - 1, total, n_lost, n[ok])
    return np.clip(out, 0.0, 1.0)


def _mc_pvalue(null_at_least: int, n_permutations: int) -> float:
    return (1 + null_at_least) / (1 + n_permutations)


def _chunks(total: int, size: int):
    size = max(1, int(size))
    for start in range(0, total, size):
        yield start, min(total, start + size)


def _histogram(values: np.ndarray, bins: int = 40) -> dict[str, list[float]]:
    values = values[np.isfinite(values)]
    if not len(values):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


# --------------------------------------------------------------------------- loss clustering


def loss_clustering_test(
    lost: np.ndarray, n_spines: np.ndarray, n_permutations: int = 10000,
    rng: np.random.Generator | int | None = 0,
) -> dict[str, Any]:
    """Permutation test of the dispersion index of per-branch loss counts.

    Loss labels are permuted over all session-0 spines with branch sizes fixed:
    the per-branch loss counts of one permutation are one draw from the
    multivariate hypergeometric distribution, which numpy samples for all
    permutations at once.

    Parameters
    ----------
    lost, n_spines : array, shape (B,)
        Losses and session-0 spines per branch (branches with ``n_spines == 0``
        are ignored).
    n_permutations : int
    rng : Generator or int

    Returns
    -------
    dict
        ``statistic`` (dispersion index, None when undefined), ``p_value``
        (one-sided, large D; 1 when every permutation gives the same table,
        None with fewer than two branches), ``n_permutations``,
        ``null_mean``, ``null_histogram``.
    """
    rng = np.random.default_rng(rng)
    lost = np.asarray(lost, dtype=np.int64)
    n = np.asarray(n_spines, dtype=np.int64)
    keep = n > 0
    lost, n = lost[keep], n[keep]
    out: dict[str, Any] = {"statistic": None, "p_value": None,
                           "n_permutations": int(n_permutations), "null_mean": None,
                           "null_histogram": {"edges": [], "counts": []}}
    if n.size < 2:
        out["note"] = "fewer than two branches with session-0 spines: no test"
        return out
    n_lost, total = int(lost.sum()), int(n.sum())
    if n_lost == 0 or n_lost == total:
        out["p_value"] = 1.0
        out["note"] = "no losses" if n_lost == 0 else "every session-0 spine was lost"
        return out
    observed = dispersion_index(lost, n)
    null = dispersion_index(
        rng.multivariate_hypergeometric(n, n_lost, size=n_permutations), n)
    out["statistic"] = observed
    out["p_value"] = _mc_pvalue(int(np.sum(null >= observed - _TOL * max(1.0, observed))),
                                n_permutations)
    out["null_mean"] = float(null.mean())
    out["null_histogram"] = _histogram(null)
    return out


# --------------------------------------------------------------------------- loss spacing


def nearest_neighbour_mean(positions: np.ndarray) -> np.ndarray:
    """Mean distance from each point to its nearest neighbour, along the last axis.

    Parameters
    ----------
    positions : array, shape (..., k), k >= 2
        Positions along one branch (µm), in any order.
    """
    a = np.sort(np.asarray(positions, dtype=float), axis=-1)
    gaps = np.diff(a, axis=-1)
    inf = np.full(a.shape[:-1] + (1,), np.inf)
    nn = np.minimum(np.concatenate([inf, gaps], axis=-1), np.concatenate([gaps, inf], axis=-1))
    return nn.mean(axis=-1)


def loss_spacing_test(
    positions: np.ndarray, lost: np.ndarray, n_permutations: int = 10000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, np.ndarray]:
    """Mean nearest-neighbour distance of lost sites and its permutation null on one branch.

    The null draws random subsets of the branch's session-0 spines of the same
    size as the lost set (not uniform positions): which spines are lost is
    random, where spines are is what it is.

    Parameters
    ----------
    positions : array, shape (n,)
        Arc positions (µm) of the branch's session-0 spines.
    lost : bool array, shape (n,)
        Which of them were lost. Needs at least two lost and one kept spine.

    Returns
    -------
    observed : float
        Mean distance (µm) from each lost site to the nearest other lost site.
    null : array, shape (n_permutations,)
        The same for random subsets.
    """
    rng = np.random.default_rng(rng)
    positions = np.asarray(positions, dtype=float)
    lost = np.asarray(lost, dtype=bool)
    k, n = int(lost.sum()), positions.size
    if k < 2 or k >= n:
        raise ValueError("needs at least two lost and one kept spine")
    observed = float(nearest_neighbour_mean(positions[lost]))
    null = np.empty(n_permutations)
    for a, b in _chunks(n_permutations, _CHUNK_CELLS // n):
        keys = rng.random((b - a, n))
        pick = np.argpartition(keys, k - 1, axis=1)[:, :k]
        null[a:b] = nearest_neighbour_mean(positions[pick])
    return observed, null


# --------------------------------------------------------------------------- restoration


def _claim_matches(dist: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Nearest-first one-claim matching for a stack of distance matrices.

    ``dist`` (P, m, e): distance between new spine i and candidate lost site j in
    permutation p, ``inf`` where the pair does not qualify. ``rank`` (m, e): the
    order of pairs with equal distance (strict). The greedy rule (take the
    closest remaining pair, remove both ends, repeat) gives the same matching
    as repeatedly taking every pair that comes first in both its row and its
    column; that is done here on the list of qualifying pairs of all
    permutations at once.

    Returns
    -------
    bool array, shape (P, m)
        Which new spines claimed a lost site.
    """
    n_perm, m, e = dist.shape
    matched = np.zeros(n_perm * m, dtype=bool)
    p, i, j = np.nonzero(np.isfinite(dist))
    if not p.size:
        return matched.reshape(n_perm, m)
    order = np.lexsort((rank[i, j], dist[p, i, j]))  # strict order of the pairs
    row = (p * m + i)[order]
    col = (p * e + j)[order]
    used_col = np.zeros(n_perm * e, dtype=bool)
    position = np.arange(row.size)
    while row.size:
        first_in_row = np.full(n_perm * m, row.size)
        np.minimum.at(first_in_row, row, position)
        first_in_col = np.full(n_perm * e, row.size)
        np.minimum.at(first_in_col, col, position)
        chosen = (first_in_row[row] == position) & (first_in_col[col] == position)
        matched[row[chosen]] = True
        used_col[col[chosen]] = True
        keep = ~matched[row] & ~used_col[col]
        row, col = row[keep], col[keep]
        position = np.arange(row.size)
    return matched.reshape(n_perm, m)


class _BranchRestoration:
    """One branch's new spines, candidate lost sites and free stretches for random placement.

    Parameters
    ----------
    fates_b : DataFrame
        The branch's fates with ``first_session`` and ``last_session``.
    lo, hi : float
        Where new spines may be placed (µm along the branch).
    radius : float
        Restoration radius (µm).
    occupied_radius, relink_radius : float
        A new spine first seen in session f avoids ``occupied_radius`` around
        session-0 spines still present in f, and ``relink_radius`` around
        session-0 spines last present in f - 1 on its own side of the branch
        (the linker links only on the same side; side 0, a spine pointing in z
        or of unknown side, counts as either side; with no ``side`` column every
        spine counts as one side).
    """

    def __init__(self, fates_b: pd.DataFrame, lo: float, hi: float, radius: float,
                 occupied_radius: float = 0.0, relink_radius: float = 0.0):
        self.ids = fates_b["spine_id"].to_numpy()
        self.arc = fates_b["arc_um"].to_numpy(dtype=float)
        self.first = fates_b["first_session"].to_numpy()
        self.last = fates_b["last_session"].to_numpy()
        self.side = (fates_b["side"].fillna(0).to_numpy(dtype=int) if "side" in fates_b
                     else np.zeros(len(fates_b), dtype=int))
        self.radius = radius
        self.lo, self.hi = lo, hi
        self.new = np.flatnonzero(self.first > 0)
        # candidate lost sites: last present before some new spine's first session
        self.sites = np.flatnonzero(self.last < max(self.first[self.new], default=0))
        m, e = self.new.size, self.sites.size
        fn, le = self.first[self.new][:, None], self.last[self.sites][None, :]
        self.eligible = le < fn
        # ties in distance: earlier new spine, then more recently lost site, then ids
        keys = (np.broadcast_to(self.ids[self.sites][None, :], (m, e)).ravel(),
                np.broadcast_to(self.ids[self.new][:, None], (m, e)).ravel(),
                np.broadcast_to(-le, (m, e)).ravel(),
                np.broadcast_to(fn, (m, e)).ravel())
        rank = np.empty(m * e, dtype=np.int64)
        rank[np.lexsort(keys)] = np.arange(m * e)
        self.rank = rank.reshape(m, e)
        # where each group of new spines (first session, side) may be placed at random
        self.free: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        s0 = self.first == 0
        for f, side in sorted(set(zip(self.first[self.new].tolist(),
                                      self.side[self.new].tolist()))):
            occupied = s0 & (self.last >= f)
            # side 0 (pointing in z, or unknown: added by hand) links to either side
            relinked = s0 & (self.last == f - 1) & ((self.side == side) | (self.side == 0)
                                                    | (side == 0))
            centres = np.concatenate([self.arc[occupied], self.arc[relinked]])
            radii = np.concatenate([np.full(occupied.sum(), occupied_radius),
                                    np.full(relinked.sum(), relink_radius)])
            self.free[(int(f), int(side))] = self._free_intervals(centres, radii)

    def _free_intervals(self, centres: np.ndarray, radii: np.ndarray):
        """[lo, hi] minus the union of [c - r, c + r]: arrays of starts and ends."""
        starts, ends = [self.lo], []
        keep = radii > 0
        for a, b in sorted(zip(centres[keep] - radii[keep], centres[keep] + radii[keep])):
            if b <= starts[-1]:
                continue
            if a <= starts[-1]:
                starts[-1] = b
                continue
            ends.append(a)
            starts.append(b)
        ends.append(self.hi)
        s, e = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
        s, e = s[e > s], e[e > s]
        if not s.size:  # everything excluded: fall back to the whole stretch
            s, e = np.array([self.lo]), np.array([max(self.hi, self.lo + 1e-9)])
        return s, e

    def matches(self, positions: np.ndarray) -> np.ndarray:
        """Which new spines are restored, for each row of ``positions`` (P, n_spines)."""
        if not self.new.size or not self.sites.size:
            return np.zeros((positions.shape[0], self.new.size), dtype=bool)
        d = np.abs(positions[:, self.new][:, :, None] - positions[:, self.sites][:, None, :])
        d[(d > self.radius + 1e-9) | ~self.eligible[None]] = np.inf
        return _claim_matches(d, self.rank)

    def observed(self) -> np.ndarray:
        return self.matches(self.arc[None, :])[0]

    def simulate(self, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
        """Restored flags (P, n_new) when the new spines are placed at random."""
        out = np.zeros((n_permutations, self.new.size), dtype=bool)
        if not self.new.size or not self.sites.size:
            return out
        cells = self.new.size * self.sites.size + self.arc.size
        for a, b in _chunks(n_permutations, _CHUNK_CELLS // cells):
            pos = np.broadcast_to(self.arc, (b - a, self.arc.size)).copy()
            for (f, side), (s, e) in self.free.items():
                movers = self.new[(self.first[self.new] == f) & (self.side[self.new] == side)]
                lengths = e - s
                cum = np.cumsum(lengths)
                u = rng.random((b - a, movers.size)) * cum[-1]
                k = np.minimum(np.searchsorted(cum, u, side="right"), len(s) - 1)
                pos[:, movers] = s[k] + (u - (cum[k] - lengths[k]))
            out[a:b] = self.matches(pos)
        return out


def count_restorations(fates: pd.DataFrame, restore_radius_um: float = 2.0) -> int:
    """Restorations under the contract's rule, computed by the vectorised matcher.

    Equals the number of ``restored`` fates that :func:`spinetrack.fates.classify_fates`
    gives for the same table and radius (a cross-check of the simulation's rule).
    """
    f = _with_sessions(fates)
    return int(sum(_BranchRestoration(fb, 0.0, 1.0, restore_radius_um).observed().sum()
                   for _, fb in f.groupby("branch_id")))


def restoration_test(
    fates: pd.DataFrame, arc_range: dict[int, tuple[float, float]] | None = None,
    restore_radius_um: float = 2.0, occupied_radius_um: float = 0.25,
    relink_radius_um: float = 1.5, n_permutations: int = 10000,
    rng: np.random.Generator | int | None = 0, progress: ProgressCallback | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Observed restoration fraction against random placement of the new spines.

    New spines (first present after session 0) are placed uniformly at random
    on their own branch, inside ``arc_range`` widened to cover every spine of the
    branch, outside the stretches occupied by session-0 spines present when the
    new spine appears (``occupied_radius_um``) and around session-0 spines last
    seen in the session just before on the new spine's own side of the branch
    (``relink_radius_um``: there the linker would have joined the two; it never
    links across sides, so a new spine opposite a lost one can be restored).
    Each new spine keeps its side; only its position along the branch is drawn.
    Spines present in session 0 stay where they are. The contract's
    nearest-first one-claim rule is then applied to the random positions
    exactly as to the observed ones.

    Parameters
    ----------
    fates : DataFrame
        Contract fates (``spine_id, branch_id, arc_um, present, fate``), and
        optionally ``side`` (each spine's side of the branch, -1, 0 or 1).
    arc_range : dict, optional
        ``branch_id -> (start, end)`` in µm: where new spines may be placed
        (default: the range of the branch's spines).
    restore_radius_um, occupied_radius_um, relink_radius_um : float
    n_permutations : int
    rng : Generator or int
    progress : callable, optional

    Returns
    -------
    summary : dict
        ``observed_fraction, chance_fraction, p_value, n_new, n_restored,
        chance_n_restored, chance_histogram, by_session, n_permutations`` and
        the radii. ``p_value`` is one-sided (more restorations than chance).
    per_branch : DataFrame
        ``branch_id, n_new, restored_fraction, restored_chance, restored_p``.
    """
    rng = np.random.default_rng(rng)
    arc_range = arc_range or {}
    f = _with_sessions(fates)
    restored = (f["fate"] == "restored").to_numpy()
    new = (f["first_session"] > 0).to_numpy()
    n_new, n_restored = int(new.sum()), int(restored.sum())
    total = np.zeros(n_permutations, dtype=np.int64)
    by_first: dict[int, np.ndarray] = {}
    rows, warnings = [], []
    groups = list(f.groupby("branch_id"))
    for i, (b, fb) in enumerate(groups):
        report(progress, "statistics: restoration chance", i, len(groups))
        lo, hi = arc_range.get(int(b), (np.inf, -np.inf))
        lo, hi = min(lo, float(fb["arc_um"].min())), max(hi, float(fb["arc_um"].max()))
        br = _BranchRestoration(fb, lo, hi, restore_radius_um, occupied_radius_um,
                                relink_radius_um)
        sim = br.simulate(n_permutations, rng)
        counts = sim.sum(axis=1)
        total += counts
        for f_k in np.unique(br.first[br.new]):
            cols = br.first[br.new] == f_k
            by_first.setdefault(int(f_k), np.zeros(n_permutations, dtype=np.int64))
            by_first[int(f_k)] += sim[:, cols].sum(axis=1)
        nb_new = int(br.new.size)
        nb_rest = int((fb["fate"] == "restored").sum())
        recomputed = int(br.observed().sum())
        if recomputed != nb_rest:
            warnings.append(f"branch {b}: fates have {nb_rest} restored spines but the "
                            f"restoration rule at {restore_radius_um:g} µm gives {recomputed}")
        rows.append({
            "branch_id": b, "n_new": nb_new,
            "restored_fraction": nb_rest / nb_new if nb_new else np.nan,
            "restored_chance": counts.mean() / nb_new if nb_new else np.nan,
            "restored_p": (_mc_pvalue(int(np.sum(counts >= nb_rest)), n_permutations)
                           if nb_new else np.nan),
        })
    report(progress, "statistics: restoration chance", len(groups), len(groups))
    first = f["first_session"].to_numpy()
    by_session = []
    for k in sorted(by_first):
        nk = int((first == k).sum())
        rk = int((restored & (first == k)).sum())
        by_session.append({
            "session": k, "n_new": nk, "n_restored": rk,
            "observed_fraction": rk / nk, "chance_fraction": float(by_first[k].mean()) / nk,
            "p_value": _mc_pvalue(int(np.sum(by_first[k] >= rk)), n_permutations)})
    out: dict[str, Any] = {
        "observed_fraction": n_restored / n_new if n_new else None,
        "chance_fraction": float(total.mean()) / n_new if n_new else None,
        "p_value": _mc_pvalue(int(np.sum(total >= n_restored)), n_permutations)
        if n_new else None,
        "n_new": n_new,
        "n_restored": n_restored,
        "chance_n_restored": float(total.mean()),
        "chance_histogram": np.bincount(total, minlength=n_new + 1).tolist(),
        "by_session": by_session,
        "n_permutations": int(n_permutations),
        "restore_radius_um": float(restore_radius_um),
        "occupied_radius_um": float(occupied_radius_um),
        "relink_radius_um": float(relink_radius_um),
    }
    if warnings:
        out["warnings"] = warnings
    per_branch = pd.DataFrame(rows, columns=["branch_id", "n_new", "restored_fraction",
                                             "restored_chance", "restored_p"])
    return out, per_branch


# --------------------------------------------------------------------------- main entry


def _with_sessions(fates: pd.DataFrame) -> pd.DataFrame:
    """Fates with ``first_session``/``last_session`` derived from ``present``."""
    present = fates["present"].astype(str)
    f = fates.copy()
    f["first_session"] = present.str.find("1").to_numpy()
    f["last_session"] = present.str.rfind("1").to_numpy()
    return f


def _validate(spines: pd.DataFrame, fates: pd.DataFrame, n_sessions: int) -> None:
    need = {"spines": (spines, ["spine_id", "session", "branch_id", "arc_um"]),
            "fates": (fates, ["spine_id", "branch_id", "arc_um", "present", "fate"])}
    for name, (df, cols) in need.items():
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(None, f"{name} table lacks columns {missing}")
    if n_sessions < 1:
        raise InputError(None, f"a series needs at least one session, got {n_sessions}")
    present = fates["present"].astype(str)
    bad = ~present.str.fullmatch(f"[01]{{{n_sessions}}}") | ~present.str.contains("1")
    if bad.any():
        raise InputError(None, f"fates: present strings must be {n_sessions} characters of 0/1 "
                         f"with at least one 1 (spine_id {fates['spine_id'][bad].iloc[0]})")
    unknown = set(fates["fate"]) - set(FATES)
    if unknown:
        raise InputError(None, f"fates: unknown fates {sorted(unknown)}")


def _days(days: Sequence[float] | None, n_sessions: int, warnings: list[str]):
    if days is None:
        return None
    d = np.array([np.nan if v is None else float(v) for v in days], dtype=float)
    if d.size != n_sessions:
        raise InputError(None, f"{d.size} day numbers given for {n_sessions} sessions")
    if np.isnan(d).all():
        return None
    intervals = np.diff(d)
    bad = ~(intervals > 0)
    if bad.any():
        warnings.append("day numbers do not increase between every pair of sessions; "
                        "per-day rates are left empty there")
    return d


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def branch_statistics(
    spines: pd.DataFrame,
    fates: pd.DataFrame,
    branch_table: pd.DataFrame | None,
    n_sessions: int,
    params: StatsParams | Params = StatsParams(),
    days: Sequence[float] | None = None,
    restore_radius_um: float = 2.0,
    progress: ProgressCallback | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The contract's ``branches.csv`` table and ``summary.json`` statistics.

    Parameters
    ----------
    spines : DataFrame
        Contract spines (``spine_id, session, branch_id, arc_um``...).
    fates : DataFrame
        Contract fates (``spine_id, branch_id, arc_um, present, fate,
        restored_from``), e.g. from :func:`spinetrack.fates.classify_fates`.
        Every count below comes from the fates table (each spine on its
        ``branch_id`` there), so counts, rates and fates agree exactly.
    branch_table : DataFrame or None
        ``branch_id, length_um, arc_start_um, arc_end_um``: the stretch of each
        branch traced in every session (see :func:`branch_table_from_lines`).
        ``None``: the range of spine positions (with a warning).
    n_sessions : int
    params : StatsParams or Params
        ``n_permutations``, ``seed``, ``occupied_radius_um``, ``relink_radius_um``,
        ``significance_level``. A whole :class:`~spinetrack.params.Params` also supplies
        ``restore_radius_um`` from its fates section.
    days : sequence of float, optional
        Day number of each session, for per-day rates.
    restore_radius_um : float
        The restoration radius the fates were classified with (µm).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    branches : DataFrame
        One row per branch; columns documented in ``docs/statistics.md``.
    summary : dict
        JSON-ready; ``voxel_size_um``, parameters and versions are added by
        :func:`add_run_metadata`.
    """
    if isinstance(params, Params):
        restore_radius_um = params.fates.restore_radius_um
        params = params.stats
    _validate(spines, fates, n_sessions)
    warnings: list[str] = []
    day = _days(days, n_sessions, warnings)
    seeds = np.random.SeedSequence(params.seed).spawn(3)
    alpha = params.significance_level
    n_perm = params.n_permutations
    f = _with_sessions(fates)
    f["branch_id"] = f["branch_id"].astype(int)

    if set(spines["spine_id"]) != set(f["spine_id"]):
        warnings.append("spines and fates name different spine_ids; counts follow the fates")

    # ---- branch table
    if branch_table is None:
        warnings.append("no centre lines: branch lengths are the range of spine positions "
                        "(an underestimate)")
        bt = branch_table_from_spines(f)
    else:
        missing = [c for c in BRANCH_TABLE_COLUMNS if c not in branch_table.columns]
        if missing:
            raise InputError(None, f"branch table lacks columns {missing}")
        traced = [c for c in TRACED_COLUMNS if c in branch_table.columns]
        bt = branch_table[BRANCH_TABLE_COLUMNS + traced].copy()
        extra = sorted(set(f["branch_id"]) - set(bt["branch_id"].astype(int)))
        if extra:
            warnings.append(f"branches {extra} have spines but no traced stretch; their length "
                            "is the range of their spine positions")
            bt = pd.concat([bt, branch_table_from_spines(f[f["branch_id"].isin(extra)])],
                           ignore_index=True)
    bt["branch_id"] = bt["branch_id"].astype(int)
    bt = bt.drop_duplicates("branch_id").sort_values("branch_id").reset_index(drop=True)
    branch_ids = bt["branch_id"].to_numpy()
    length = bt["length_um"].to_numpy(dtype=float)
    if np.any(length <= 0):
        warnings.append(f"branches {branch_ids[length <= 0].tolist()} have no length traced in "
                        "every session; their densities are empty")
    arc_range = {int(b): (float(s), float(e)) for b, s, e in
                 zip(branch_ids, bt["arc_start_um"], bt["arc_end_um"])}
    grid = np.array([[c == "1" for c in p] for p in f["present"].astype(str)],
                    dtype=bool).reshape(len(f), n_sessions)  # presence, one row per spine
    all_per_session = grid.sum(axis=0)
    left_out = []
    # only a traced branch table tells where dendrite was traced in every session
    seen = _observed_in_every_session(f, bt, n_sessions) if branch_table is not None else None
    if seen is not None and not seen.all():
        left_out = sorted(int(i) for i in f.loc[~seen, "spine_id"])
        n_all = len(f)
        f = f[seen].reset_index(drop=True)
        grid = grid[seen]
        warnings.append(f"{n_all - len(f)} of {n_all} spines lie where their dendrite was not "
                        "traced in every session (beyond the stretch all sessions trace, or on "
                        "a branch some session does not trace), so their appearance or "
                        "disappearance cannot be told from the tracing's; they are left out "
                        "of the statistics (fates.csv lists them)")

    # ---- per branch
    row_branch = np.searchsorted(branch_ids, f["branch_id"].to_numpy())
    B = len(branch_ids)

    def per_branch(mask: np.ndarray) -> np.ndarray:
        return np.bincount(row_branch[mask], minlength=B)

    counts = np.stack([per_branch(grid[:, k]) for k in range(n_sessions)], axis=1)  # (B, N)
    first, last = f["first_session"].to_numpy(), f["last_session"].to_numpy()
    gained = np.stack([per_branch(first == k + 1) for k in range(n_sessions - 1)], axis=1) \
        if n_sessions > 1 else np.zeros((B, 0), dtype=int)
    eliminated = np.stack([per_branch(last == k) for k in range(n_sessions - 1)], axis=1) \
        if n_sessions > 1 else np.zeros((B, 0), dtype=int)
    s0 = first == 0
    surviving = np.stack([per_branch(s0 & (last >= k)) for k in range(n_sessions)], axis=1)
    fate_counts = {fate: per_branch((f["fate"] == fate).to_numpy()) for fate in FATES}
    n_s0 = counts[:, 0]
    n_lost = fate_counts["lost"]
    labels = transition_labels(n_sessions)

    br = pd.DataFrame({"branch_id": branch_ids, "length_um": length,
                       "arc_start_um": bt["arc_start_um"].to_numpy(dtype=float),
                       "arc_end_um": bt["arc_end_um"].to_numpy(dtype=float)})
    for c in TRACED_COLUMNS:
        if c in bt.columns:
            br[c] = bt[c].to_numpy()
    for k in range(n_sessions):
        br[f"n_spines_s{k}"] = counts[:, k]
    counted = counted_branches(bt, n_sessions)
    for k in range(n_sessions):  # no density where some session does not trace the branch
        br[f"density_s{k}"] = np.where(counted, _ratio(counts[:, k], length), np.nan)
    for fate in FATES:
        br[f"n_{fate}"] = fate_counts[fate]
    br["loss_fraction"] = _ratio(n_lost, n_s0)

    # ---- loss clustering across branches
    report(progress, "statistics: loss clustering", 0, 1)
    rng_clu, rng_nn, rng_rest = (np.random.default_rng(s) for s in seeds)
    loss_p = loss_pvalues(n_lost, n_s0)
    loss_q = benjamini_hochberg(loss_p)
    br["expected_lost"] = n_s0 * (n_lost.sum() / n_s0.sum()) if n_s0.sum() else np.nan
    br["loss_p"] = loss_p
    br["loss_q"] = loss_q
    clustering = loss_clustering_test(n_lost, n_s0, n_perm, rng_clu)
    report(progress, "statistics: loss clustering", 1, 1)

    # ---- loss spacing within branches
    nn_obs = np.full(B, np.nan)
    nn_chance = np.full(B, np.nan)
    nn_p = np.full(B, np.nan)
    sum_obs, n_sites = 0.0, 0
    sum_null = np.zeros(n_perm)
    for i, b in enumerate(branch_ids):
        report(progress, "statistics: loss spacing", i, B)
        fb = f[(f["branch_id"] == b) & s0]
        is_lost = (fb["fate"] == "lost").to_numpy()
        k = int(is_lost.sum())
        if k < 2 or k >= len(fb):
            continue
        obs, null = loss_spacing_test(fb["arc_um"].to_numpy(dtype=float), is_lost, n_perm,
                                      rng_nn)
        nn_obs[i], nn_chance[i] = obs, float(null.mean())
        nn_p[i] = _mc_pvalue(int(np.sum(null <= obs + _TOL)), n_perm)
        sum_obs += obs * k
        n_sites += k
        sum_null += null * k
    report(progress, "statistics: loss spacing", B, B)
    br["loss_nn_um"] = nn_obs
    br["loss_nn_chance_um"] = nn_chance
    br["loss_nn_p"] = nn_p
    spacing: dict[str, Any] = {"statistic": None, "chance_mean": None, "p_value": None,
                               "n_permutations": n_perm, "n_branches": int(np.isfinite(nn_p).sum()),
                               "n_lost_sites": n_sites}
    if n_sites:
        spacing["statistic"] = sum_obs / n_sites
        spacing["chance_mean"] = float(sum_null.mean() / n_sites)
        spacing["p_value"] = _mc_pvalue(int(np.sum(sum_null <= sum_obs + _TOL)), n_perm)

    # ---- restoration
    if "side" in spines.columns and "side" not in f.columns:  # each spine's last side
        last_side = spines.sort_values("session").groupby("spine_id")["side"].last()
        f["side"] = f["spine_id"].map(last_side)
    restoration, rest_b = restoration_test(
        f, arc_range, restore_radius_um, params.occupied_radius_um, params.relink_radius_um,
        n_perm, rng_rest, progress)
    warnings.extend(restoration.pop("warnings", []))
    rest_b = rest_b.set_index("branch_id").reindex(branch_ids)
    br["n_new"] = rest_b["n_new"].fillna(0).astype(int).to_numpy()
    for col in ("restored_fraction", "restored_chance", "restored_p"):
        br[col] = rest_b[col].to_numpy(dtype=float)

    # ---- turnover per branch and transition
    for k, lab in enumerate(labels):
        g, e, nk, nk1 = gained[:, k], eliminated[:, k], counts[:, k], counts[:, k + 1]
        br[f"n_gained_{lab}"] = g
        br[f"n_eliminated_{lab}"] = e
        br[f"formation_rate_{lab}"] = _ratio(g, nk)
        br[f"elimination_rate_{lab}"] = _ratio(e, nk)
        br[f"turnover_ratio_{lab}"] = _ratio(g + e, 2 * nk)
        br[f"turnover_ratio_mean_{lab}"] = _ratio(g + e, nk + nk1)
        if day is not None:
            dt = day[k + 1] - day[k]
            ok = np.isfinite(dt) and dt > 0
            br[f"formation_rate_per_day_{lab}"] = _ratio(g, nk) / dt if ok else np.nan
            br[f"elimination_rate_per_day_{lab}"] = _ratio(e, nk) / dt if ok else np.nan
    for k in range(n_sessions):
        br[f"survival_s{k}"] = _ratio(surviving[:, k], n_s0)

    # ---- summary
    tot = counts.sum(axis=0)
    tot_g, tot_e = gained.sum(axis=0), eliminated.sum(axis=0)
    # the stretch every session traces: branches traced in only some sessions
    # hold no counted spines, so their length is not counted either
    total_length = float(length[(length > 0) & counted].sum())
    intervals = np.diff(day) if day is not None else None

    def per_day(rate: np.ndarray):
        if intervals is None:
            return None
        return [float(r / dt) if np.isfinite(dt) and dt > 0 and np.isfinite(r) else None
                for r, dt in zip(rate, intervals)]

    formation = _ratio(tot_g, tot[:-1])
    elimination = _ratio(tot_e, tot[:-1])
    significant = [int(b) for b, q in zip(branch_ids, loss_q) if np.isfinite(q) and q < alpha]
    summary: dict[str, Any] = {
        "n_sessions": int(n_sessions),
        "days": None if day is None else day.tolist(),
        "n_branches": int(counted.sum()),
        # branches some session does not trace: rows of branches.csv, no spines counted
        "n_branches_partly_traced": int(B - counted.sum()),
        "branch_ids": branch_ids.tolist(),
        "total_length_um": total_length,
        "n_spine_ids": len(f),
        "spines_per_session": tot.tolist(),
        # every spine of the tables, including those left out (not traced in every session)
        "spines_per_session_all": all_per_session.tolist(),
        # the spine_ids of fates.csv the statistics leave out (fates.csv: in_statistics)
        "left_out_spine_ids": left_out,
        "density_per_session": (tot / total_length).tolist() if total_length > 0 else None,
        "fate_counts": {fate: int(fate_counts[fate].sum()) for fate in FATES},
        "transitions": labels,
        "n_gained": tot_g.tolist(),
        "n_eliminated": tot_e.tolist(),
        "formation_rate": formation.tolist(),
        "elimination_rate": elimination.tolist(),
        "turnover_ratio": _ratio(tot_g + tot_e, 2 * tot[:-1]).tolist(),
        "turnover_ratio_mean": _ratio(tot_g + tot_e, tot[:-1] + tot[1:]).tolist(),
        "interval_days": None if intervals is None else intervals.tolist(),
        "formation_rate_per_day": per_day(formation),
        "elimination_rate_per_day": per_day(elimination),
        "survival_fraction": _ratio(surviving.sum(axis=0), n_s0.sum()).tolist(),
        "restoration": restoration,
        "loss_clustering": {
            **clustering,
            "n_spines_s0": int(n_s0.sum()),
            "n_lost": int(n_lost.sum()),
            "loss_fraction": float(n_lost.sum() / n_s0.sum()) if n_s0.sum() else None,
            "n_branches_tested": int(np.isfinite(loss_p).sum()),
            "branch_test": "one-sided hypergeometric (Fisher exact, branch vs rest), "
                           "Benjamini-Hochberg q",
            "significant_branches": significant,
        },
        "loss_spacing": spacing,
        "significance_level": alpha,
        "statistics_params": {**params.to_dict(), "restore_radius_um": restore_radius_um},
        "warnings": warnings,
    }
    return br, to_jsonable(summary)


def add_run_metadata(
    summary: dict[str, Any], voxel_size_um: Any = None, params: Params | None = None,
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return ``summary`` with the run's ``voxel_size_um``, ``parameters`` and ``versions``.

    The pipeline calls this after :func:`branch_statistics`; ``versions``
    defaults to :func:`spinetrack.results.package_versions`.
    """
    from .results import package_versions

    out = {"n_sessions": summary.get("n_sessions"), "voxel_size_um": to_jsonable(voxel_size_um)}
    out.update({k: v for k, v in summary.items() if k not in out})
    if params is not None:
        out["parameters"] = params.to_dict()
    out["versions"] = versions if versions is not None else package_versions()
    return out
