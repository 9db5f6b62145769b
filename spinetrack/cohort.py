"""Cohort tables and report: many results folders combined, per series and per condition.

:func:`cohort_tables` reads the results folders of a batch (one per series) and
returns

- ``branches``: every row of every ``branches.csv`` with ``animal``,
  ``condition``, ``series`` and ``key`` (folder) columns in front;
- ``summary``: one row per series (``level = series``) and one per condition
  (``level = condition``) with counts, rates, the loss-clustering statistic
  and the restoration test;
- a JSON-ready dict with the same numbers and the details of the pooled tests.

Pooled tests per condition (``docs/batch.md`` explains them):

- Loss clustering: a *stratified* permutation test. Each series is a stratum;
  its loss labels are permuted over its own session-0 spines (branch sizes and
  the series' number of losses fixed, so animals with different loss rates are
  not mixed). The statistic is the pooled dispersion index
  ``D = Σ_s (B_s - 1) D_s / Σ_s (B_s - 1)`` (1 on average under the null).
- Restoration: the observed total of restored spines against the sum of each
  series' own chance distribution (its random-placement histogram
  ``restoration.chance_histogram``), drawn independently per series.

Both p-values are Monte Carlo, ``(1 + #{null >= observed}) / (1 + R)``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError
from .files import to_jsonable, write_bytes_atomic, write_json_atomic, write_table_atomic, \
    write_text_atomic
from .params import StatsParams
from .stats import dispersion_index

__all__ = [
    "ID_COLUMNS",
    "SUMMARY_COLUMNS",
    "load_series",
    "series_row",
    "pooled_loss_clustering",
    "pooled_restoration",
    "cohort_tables",
    "write_cohort",
    "cohort_figures",
]

ID_COLUMNS = ["animal", "condition", "series", "key"]
SUMMARY_COLUMNS = ID_COLUMNS + [
    "level", "n_series", "n_animals", "n_sessions", "n_branches", "total_length_um",
    "n_spines_s0", "n_spines_last", "density_s0", "density_last",
    "n_stable", "n_lost", "n_formed", "n_transient", "n_restored",
    "loss_fraction", "formation_rate", "elimination_rate", "turnover_ratio",
    "loss_clustering_statistic", "loss_clustering_p", "n_significant_branches",
    "n_new", "restoration_observed", "restoration_chance", "restoration_p", "n_warnings",
]
_FATES = ("stable", "lost", "formed", "transient", "restored")


def _mc_p(at_least: int, n: int) -> float:
    return (1 + int(at_least)) / (1 + int(n))


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


# --------------------------------------------------------------------------- reading


def load_series(folder: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """``summary.json`` and ``branches.csv`` of one results folder."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except FileNotFoundError:
        raise InputError(folder, "is not a complete results folder (no summary.json)") from None
    except ValueError as exc:
        raise InputError(folder / "summary.json", f"is not valid JSON ({exc})") from None
    try:
        branches = pd.read_csv(folder / "branches.csv")
    except FileNotFoundError:
        raise InputError(folder, "is not a complete results folder (no branches.csv)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(folder / "branches.csv", f"is not a readable table ({exc})") from None
    return summary, branches


# --------------------------------------------------------------------------- per series


def _sum_rates(summary: dict[str, Any]) -> dict[str, float]:
    """Gained, eliminated and spines at the earlier session, summed over transitions."""
    per = summary.get("spines_per_session") or []
    gained = summary.get("n_gained") or []
    elim = summary.get("n_eliminated") or []
    before = float(sum(per[:len(gained)]))
    return {"gained": float(sum(gained)), "eliminated": float(sum(elim)), "before": before}


def series_row(entry: dict[str, Any], summary: dict[str, Any],
               branches: pd.DataFrame) -> dict[str, Any]:
    """One row of the cohort summary for one series.

    Rates are over all transitions: ``formation_rate = Σ gained / Σ N_K``,
    ``elimination_rate = Σ eliminated / Σ N_K`` and ``turnover_ratio =
    Σ (gained + eliminated) / (2 Σ N_K)``, with N_K the spines at the earlier
    session of each transition (for two sessions: the contract's per-transition
    values).
    """
    from .report import unchecked

    per = summary.get("spines_per_session") or [0]
    length = float(summary.get("total_length_um") or 0.0)
    fates = summary.get("fate_counts") or {}
    lc = summary.get("loss_clustering") or {}
    rr = summary.get("restoration") or {}
    r = _sum_rates(summary)
    row = {k: entry.get(k, "") for k in ID_COLUMNS}
    row.update({
        "level": "series", "n_series": 1, "n_animals": 1,
        "n_sessions": summary.get("n_sessions"), "n_branches": summary.get("n_branches"),
        "total_length_um": length, "n_spines_s0": per[0], "n_spines_last": per[-1],
        "density_s0": _ratio(per[0], length), "density_last": _ratio(per[-1], length),
        **{f"n_{f}": int(fates.get(f, 0)) for f in _FATES},
        "loss_fraction": _ratio(fates.get("lost", 0), per[0]),
        "formation_rate": _ratio(r["gained"], r["before"]),
        "elimination_rate": _ratio(r["eliminated"], r["before"]),
        "turnover_ratio": _ratio(r["gained"] + r["eliminated"], 2 * r["before"]),
        "loss_clustering_statistic": lc.get("statistic"),
        "loss_clustering_p": lc.get("p_value"),
        "n_significant_branches": len(lc.get("significant_branches") or []),
        "n_new": rr.get("n_new"),
        "restoration_observed": rr.get("observed_fraction"),
        "restoration_chance": rr.get("chance_fraction"),
        "restoration_p": rr.get("p_value"),
        "n_warnings": len(summary.get("warnings") or []),
        # the detector's calls, not all checked by a person (the report then says so)
        "unchecked_calls": unchecked(summary),
        "n_corrections": int((summary.get("edits") or {}).get("applied") or 0),
        "last_day": (summary.get("days") or [None])[-1],
    })
    for label, g, e, n_k in zip(summary.get("transitions") or [], summary.get("n_gained") or [],
                                summary.get("n_eliminated") or [], per):
        row[f"formation_rate_{label}"] = _ratio(g, n_k)
        row[f"elimination_rate_{label}"] = _ratio(e, n_k)
    return row


# --------------------------------------------------------------------------- pooled tests


def pooled_loss_clustering(
    strata: Sequence[tuple[np.ndarray, np.ndarray]], n_permutations: int = 10000,
    rng: np.random.Generator | int | None = 0,
) -> dict[str, Any]:
    """Stratified permutation test of loss clustering over several series.

    Parameters
    ----------
    strata : sequence of (lost, n_spines) arrays
        Per series: losses and session-0 spines of each branch.
    n_permutations : int
    rng : Generator or int

    Returns
    -------
    dict
        ``statistic`` (pooled dispersion index ``Σ (B_s - 1) D_s / Σ (B_s - 1)``
        over the testable series, 1 on average when losses fall at random within
        each series), ``p_value`` (one-sided, large D), ``n_permutations``,
        ``null_mean``, ``n_series_tested`` and ``n_branches``. A series is
        testable with at least two branches with session-0 spines and some, but
        not all, of them lost.
    """
    rng = np.random.default_rng(rng)
    observed, null, weight = 0.0, np.zeros(n_permutations), 0
    n_tested, n_branches = 0, 0
    for lost, n in strata:
        lost, n = np.asarray(lost, dtype=np.int64), np.asarray(n, dtype=np.int64)
        keep = n > 0
        lost, n = lost[keep], n[keep]
        total, n_lost = int(n.sum()), int(lost.sum())
        if n.size < 2 or n_lost == 0 or n_lost == total:
            continue
        w = n.size - 1
        observed += w * dispersion_index(lost, n)
        null += w * dispersion_index(rng.multivariate_hypergeometric(n, n_lost,
                                                                     size=n_permutations), n)
        weight += w
        n_tested += 1
        n_branches += int(n.size)
    out: dict[str, Any] = {"statistic": None, "p_value": None,
                           "n_permutations": int(n_permutations), "null_mean": None,
                           "n_series_tested": n_tested, "n_branches": n_branches,
                           "method": "stratified permutation (loss labels permuted within each "
                                     "series), pooled dispersion index"}
    if not weight:
        out["note"] = "no series with two or more branches and some (not all) spines lost"
        return out
    d, null = observed / weight, null / weight
    out["statistic"] = float(d)
    out["p_value"] = _mc_p(int(np.sum(null >= d - 1e-9 * max(1.0, d))), n_permutations)
    out["null_mean"] = float(null.mean())
    return out


def pooled_restoration(
    restorations: Sequence[dict[str, Any]], n_permutations: int = 10000,
    rng: np.random.Generator | int | None = 0,
) -> dict[str, Any]:
    """Restoration over several series against the sum of their chance distributions.

    Parameters
    ----------
    restorations : sequence of dict
        Each series' ``summary["restoration"]`` (``n_new``, ``n_restored``,
        ``chance_n_restored``, ``chance_histogram``).
    n_permutations : int
        Draws of the pooled chance total (one draw from each series' histogram,
        summed).
    rng : Generator or int

    Returns
    -------
    dict
        ``observed_fraction`` (Σ restored / Σ new), ``chance_fraction``
        (Σ chance restorations / Σ new), ``p_value`` (one-sided, more
        restorations than chance), ``n_new``, ``n_restored``,
        ``chance_n_restored``, ``n_series_tested``, ``n_permutations``.
    """
    rng = np.random.default_rng(rng)
    n_new = n_restored = 0
    chance = 0.0
    total = np.zeros(n_permutations, dtype=np.int64)
    n_tested, missing = 0, 0
    for rr in restorations:
        k = int(rr.get("n_new") or 0)
        if k == 0:
            continue
        hist = np.asarray(rr.get("chance_histogram") or [], dtype=float)
        if hist.sum() <= 0:
            missing += 1
            continue
        n_new += k
        n_restored += int(rr.get("n_restored") or 0)
        chance += float(rr.get("chance_n_restored") or 0.0)
        total += rng.choice(hist.size, size=n_permutations, p=hist / hist.sum())
        n_tested += 1
    out: dict[str, Any] = {
        "observed_fraction": _ratio(n_restored, n_new), "chance_fraction": _ratio(chance, n_new),
        "p_value": _mc_p(int(np.sum(total >= n_restored)), n_permutations) if n_new else None,
        "n_new": n_new, "n_restored": n_restored, "chance_n_restored": chance,
        "n_series_tested": n_tested, "n_permutations": int(n_permutations),
        "method": "observed total against the sum of independent draws from each series' "
                  "random-placement distribution",
    }
    if missing:
        out["note"] = f"{missing} series without a chance distribution left out"
    return out


# --------------------------------------------------------------------------- combining


def _common(values: Sequence[Any]) -> Any:
    """The one value all ``values`` share, else None."""
    distinct = {v for v in values if v is not None}
    return distinct.pop() if len(distinct) == 1 and None not in values else None


def _span(n_sessions: Any, last_day: Any) -> str:
    text = f"{n_sessions} sessions"
    if last_day is not None:
        text += f" to day {float(last_day):g}"
    return text


def mixed_lengths(condition: str, rows: Sequence[dict[str, Any]]) -> str:
    """A one-line warning when a condition pools series of different lengths; else ``""``.

    The loss fraction counts session-0 spines lost by each series' *last*
    session, so series with another number of sessions or another last day
    measure losses over different spans; pooling them (and the clustering test
    and ``n_spines_last``) mixes those spans.

    Parameters
    ----------
    condition : str
    rows : sequence of dict
        The condition's series rows (:func:`series_row`), with ``n_sessions``,
        ``last_day`` and ``key``.
    """
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        groups.setdefault((r.get("n_sessions"), r.get("last_day")), []).append(str(r["key"]))
    if len(groups) < 2:
        return ""
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    parts = []
    for (n, day), keys in ordered:
        names = ", ".join(keys[:4]) + (", …" if len(keys) > 4 else "")
        parts.append(f"{len(keys)} with {_span(n, day)} ({names})")
    return (f"{condition} pools series of different lengths: {'; '.join(parts)}; its loss "
            "fraction, loss-clustering test and last-session counts mix losses over different "
            "spans, so compare the series' own rows or run every series over the same sessions")



def _condition_row(condition: str, rows: list[dict[str, Any]], loaded: list[tuple],
                   stats: StatsParams, seed_offset: int) -> tuple[dict[str, Any], dict]:
    lost = sum(r["n_lost"] for r in rows)
    s0 = sum(r["n_spines_s0"] for r in rows)
    length = sum(r["total_length_um"] for r in rows)
    sums = [_sum_rates(s) for s, _ in loaded]
    gained = sum(x["gained"] for x in sums)
    elim = sum(x["eliminated"] for x in sums)
    before = sum(x["before"] for x in sums)
    strata = [(b["n_lost"].to_numpy(), b["n_spines_s0"].to_numpy()) for _, b in loaded
              if {"n_lost", "n_spines_s0"} <= set(b.columns)]
    seed = np.random.SeedSequence([int(stats.seed), seed_offset])
    r1, r2 = (np.random.default_rng(s) for s in seed.spawn(2))
    lc = pooled_loss_clustering(strata, stats.n_permutations, r1)
    rr = pooled_restoration([s.get("restoration") or {} for s, _ in loaded],
                            stats.n_permutations, r2)
    n_sessions = sorted({r["n_sessions"] for r in rows})
    mixed = mixed_lengths(condition, rows)
    row = {"animal": "", "condition": condition, "series": "", "key": "", "level": "condition",
           "n_series": len(rows), "n_animals": len({r["animal"] for r in rows}),
           "n_sessions": n_sessions[0] if len(n_sessions) == 1 else None,
           "n_branches": sum(int(r["n_branches"] or 0) for r in rows),
           "total_length_um": length, "n_spines_s0": s0,
           "n_spines_last": sum(r["n_spines_last"] for r in rows),
           "density_s0": _ratio(s0, length),
           "density_last": _ratio(sum(r["n_spines_last"] for r in rows), length),
           **{f"n_{f}": sum(r[f"n_{f}"] for r in rows) for f in _FATES},
           "loss_fraction": _ratio(lost, s0),
           "formation_rate": _ratio(gained, before),
           "elimination_rate": _ratio(elim, before),
           "turnover_ratio": _ratio(gained + elim, 2 * before),
           "loss_clustering_statistic": lc["statistic"], "loss_clustering_p": lc["p_value"],
           "n_significant_branches": sum(r["n_significant_branches"] for r in rows),
           "n_new": rr["n_new"], "restoration_observed": rr["observed_fraction"],
           "restoration_chance": rr["chance_fraction"], "restoration_p": rr["p_value"],
           "n_warnings": sum(r["n_warnings"] for r in rows),
           "n_corrections": sum(int(r.get("n_corrections") or 0) for r in rows),
           "last_day": _common([r.get("last_day") for r in rows]),
           "pooling_warning": mixed}
    for name in ("loss_fraction", "density_s0", "turnover_ratio"):
        values = np.array([r[name] for r in rows if r[name] is not None], dtype=float)
        row[f"{name}_series_mean"] = float(values.mean()) if values.size else None
        row[f"{name}_series_sd"] = float(values.std(ddof=1)) if values.size > 1 else None
    labels = sorted({k for r in rows for k in r if k.startswith("formation_rate_s")})
    for label in labels:
        t = label.removeprefix("formation_rate_")
        g = e = n_k = 0.0
        for s, _ in loaded:
            trans = s.get("transitions") or []
            if t in trans:
                i = trans.index(t)
                g += s["n_gained"][i]
                e += s["n_eliminated"][i]
                n_k += s["spines_per_session"][i]
        row[f"formation_rate_{t}"] = _ratio(g, n_k)
        row[f"elimination_rate_{t}"] = _ratio(e, n_k)
    detail = {"loss_clustering": lc, "restoration": rr,
              "series": [r["key"] for r in rows]}
    if mixed:
        detail["warning"] = mixed
    return row, detail


def cohort_tables(entries: Sequence[dict[str, Any]], stats: StatsParams | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Combine the results folders of a cohort.

    Parameters
    ----------
    entries : sequence of dict
        One per series: ``animal``, ``condition``, ``series``, ``key`` and
        ``folder`` (a complete results folder).
    stats : StatsParams, optional
        ``n_permutations`` and ``seed`` of the pooled tests.

    Returns
    -------
    branches : DataFrame
        All per-branch rows with :data:`ID_COLUMNS` in front.
    summary : DataFrame
        One row per series, then one per condition (:data:`SUMMARY_COLUMNS`
        first, per-transition rates after).
    data : dict
        ``series`` (the rows), ``conditions`` (row and pooled test details per
        condition) and ``methods`` (how the pooled tests work).
    """
    stats = stats or StatsParams()
    frames, rows, loaded = [], [], []
    for e in entries:
        summary, branches = load_series(e["folder"])
        ids = pd.DataFrame({k: [e.get(k, "")] * len(branches) for k in ID_COLUMNS})
        frames.append(pd.concat([ids, branches.reset_index(drop=True)], axis=1))
        rows.append(series_row(e, summary, branches))
        loaded.append((summary, branches))
    all_branches = (pd.concat(frames, ignore_index=True) if frames
                    else pd.DataFrame(columns=ID_COLUMNS + ["branch_id"]))
    cond_rows, details = [], {}
    for i, cond in enumerate(dict.fromkeys(r["condition"] for r in rows)):
        idx = [j for j, r in enumerate(rows) if r["condition"] == cond]
        row, detail = _condition_row(cond, [rows[j] for j in idx], [loaded[j] for j in idx],
                                     stats, i)
        cond_rows.append(row)
        details[cond] = {**detail, "summary": row}
    table = pd.DataFrame(rows + cond_rows)
    if table.empty:
        table = pd.DataFrame(columns=SUMMARY_COLUMNS)
    table = table[SUMMARY_COLUMNS + [c for c in table.columns if c not in SUMMARY_COLUMNS]]
    warnings = {e["key"]: s.get("warnings") for e, (s, _) in zip(entries, loaded)
                if s.get("warnings")}
    data = {"series": rows, "conditions": details, "warnings": warnings, "methods": {
        "loss_clustering": "stratified permutation test: each series' loss labels are permuted "
                           "over its own session-0 spines (branch sizes and its number of losses "
                           "fixed); statistic = pooled dispersion index "
                           "sum((B_s - 1) D_s) / sum(B_s - 1)",
        "restoration": "observed total restorations against the sum of independent draws from "
                       "each series' random-placement distribution (chance_histogram)",
        "rates": "sum over transitions of gained (eliminated) spines divided by the sum of "
                 "spines at the earlier session; pooled over the series of a condition",
        "n_permutations": int(stats.n_permutations), "seed": int(stats.seed)}}
    return all_branches, table, to_jsonable(data)


# --------------------------------------------------------------------------- figures


def _style(ax) -> None:
    from .plots import style_axes  # matplotlib is imported only when figures are drawn

    style_axes(ax)


def _wilson(k: int, n: int) -> tuple[float, float]:
    from .plots import wilson_interval

    return wilson_interval(k, n)


def _conditions(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (summary[summary["level"] == "series"], summary[summary["level"] == "condition"])


def _jitter(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.12, 0.12, n)


def _series_dots(ax, i: int, series: pd.DataFrame, condition, column: str, color: str) -> None:
    """One dot per series of ``condition`` at x = ``i`` (jittered): ``column``'s value."""
    s = series[series["condition"] == condition]
    ax.scatter(i + _jitter(len(s), i), s[column].astype(float), s=22, color=color,
               edgecolor="k", linewidth=0.5, zorder=3)


def loss_figure(summary: pd.DataFrame):
    """Loss fraction per series (dots) and pooled per condition (bar, 95% Wilson CI)."""
    from matplotlib.figure import Figure

    series, conds = _conditions(summary)
    fig = Figure(figsize=(1.6 + 1.3 * max(1, len(conds)), 3.4))
    ax = fig.add_subplot()
    for i, (_, c) in enumerate(conds.iterrows()):
        lo, hi = _wilson(c["n_lost"], c["n_spines_s0"])
        frac = c["loss_fraction"] if pd.notna(c["loss_fraction"]) else np.nan
        ax.bar(i, frac, width=0.6, color="#D55E00", alpha=0.35)
        if np.isfinite(lo):
            ax.errorbar(i, frac, yerr=[[frac - lo], [hi - frac]], color="#333", capsize=4)
        _series_dots(ax, i, series, c["condition"], "loss_fraction", "#D55E00")
    ax.set_xticks(range(len(conds)), list(conds["condition"]))
    ax.set_ylabel("session-0 spines lost (fraction)")
    ax.set_ylim(0, 1)
    _style(ax)
    return fig


def clustering_figure(summary: pd.DataFrame, n_permutations: int | None = None):
    """Dispersion index per series (dots) and pooled per condition (bar, stratified p)."""
    from matplotlib.figure import Figure

    series, conds = _conditions(summary)
    fig = Figure(figsize=(1.6 + 1.3 * max(1, len(conds)), 3.4))
    ax = fig.add_subplot()
    for i, (_, c) in enumerate(conds.iterrows()):
        d = c["loss_clustering_statistic"]
        if pd.notna(d):
            ax.bar(i, float(d), width=0.6, color="#0072B2", alpha=0.35)
            p = c["loss_clustering_p"]
            ax.annotate(p_text(p, n_permutations), (i, float(d)), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 3), textcoords="offset points")
        _series_dots(ax, i, series, c["condition"], "loss_clustering_statistic", "#0072B2")
    ax.axhline(1.0, color="#9a9a9a", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(conds)), list(conds["condition"]))
    ax.set_ylabel("dispersion index D of losses")
    _style(ax)
    return fig


def restoration_figure(summary: pd.DataFrame, n_permutations: int | None = None):
    """Restored fraction of new spines, observed against chance, per series and pooled."""
    from matplotlib.figure import Figure

    series, conds = _conditions(summary)
    fig = Figure(figsize=(1.8 + 1.6 * max(1, len(conds)), 3.4))
    ax = fig.add_subplot()
    for i, (_, c) in enumerate(conds.iterrows()):
        obs, ch = c["restoration_observed"], c["restoration_chance"]
        if pd.notna(obs):
            ax.bar(i - 0.17, float(obs), width=0.32, color="#CC79A7", alpha=0.5,
                   label="observed" if i == 0 else None)
            ax.bar(i + 0.17, float(ch), width=0.32, color="#9a9a9a", alpha=0.5,
                   label="chance" if i == 0 else None)
            ax.annotate(p_text(c["restoration_p"], n_permutations),
                        (i, max(float(obs), float(ch))),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 3),
                        textcoords="offset points")
        s = series[series["condition"] == c["condition"]]
        ok = s["restoration_observed"].notna()
        for _, r in s[ok].iterrows():
            ax.plot([i - 0.17, i + 0.17], [r["restoration_observed"], r["restoration_chance"]],
                    color="#555", linewidth=0.7, marker="o", markersize=3.5)
    ax.set_xticks(range(len(conds)), list(conds["condition"]))
    ax.set_ylabel("new spines restored (fraction)")
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    return fig


def branch_figure(branches: pd.DataFrame, alpha: float = 0.05):
    """Loss fraction of every branch, by condition; filled: loss q below ``alpha``."""
    from matplotlib.figure import Figure

    conds = list(dict.fromkeys(branches["condition"])) if len(branches) else []
    fig = Figure(figsize=(1.6 + 1.3 * max(1, len(conds)), 3.4))
    ax = fig.add_subplot()
    if "loss_fraction" in branches:
        for i, cond in enumerate(conds):
            b = branches[(branches["condition"] == cond) & branches["loss_fraction"].notna()]
            sig = (b["loss_q"] < alpha).to_numpy() if "loss_q" in b else np.zeros(len(b), bool)
            x = i + _jitter(len(b), 10 + i)
            y = b["loss_fraction"].astype(float).to_numpy()
            ax.scatter(x[~sig], y[~sig], s=14, facecolor="none", edgecolor="#D55E00")
            ax.scatter(x[sig], y[sig], s=18, color="#D55E00", edgecolor="k", linewidth=0.5)
    ax.set_xticks(range(len(conds)), conds)
    ax.set_ylabel("branch loss fraction")
    ax.set_ylim(0, 1.02)
    _style(ax)
    return fig


def density_figure(branches: pd.DataFrame):
    """Spine density per session, one line per series, one panel per condition."""
    from matplotlib.figure import Figure

    conds = list(dict.fromkeys(branches["condition"])) if len(branches) else [""]
    fig = Figure(figsize=(2.8 * len(conds) + 0.6, 3.2))
    axes = fig.subplots(1, len(conds), sharey=True, squeeze=False)[0]
    for ax, cond in zip(axes, conds):
        b = branches[branches["condition"] == cond]
        for key, g in b.groupby("key", sort=False):
            cols = sorted((c for c in g.columns if c.startswith("n_spines_s")
                           and g[c].notna().any()), key=lambda c: int(c.rsplit("s", 1)[1]))
            if "n_sessions_traced" in g:  # spines count only on branches every session traces
                g = g[g["n_sessions_traced"].fillna(len(cols)) >= len(cols)]
            length = g["length_um"].sum()
            if not cols or not length:
                continue
            ax.plot(range(len(cols)), [g[c].sum() / length for c in cols], marker="o",
                    markersize=3, linewidth=1, label=str(key))
        ax.set_title(str(cond), fontsize=10)
        ax.set_xlabel("session")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if 0 < b["key"].nunique() <= 8:
            ax.legend(fontsize=7, frameon=False)
        _style(ax)
    axes[0].set_ylabel("spines per µm")
    return fig


def cohort_figures(branches: pd.DataFrame, summary: pd.DataFrame, alpha: float = 0.05,
                   n_permutations: int | None = None) -> dict[str, tuple[bytes, str]]:
    """PNG bytes and alt text of every cohort figure, by name.

    ``n_permutations`` of the pooled tests marks a pooled p at its floor (``p ≤``).
    """
    from .plots import figure_png

    figs = {
        "loss_by_condition": (loss_figure(summary), "loss fraction per series and condition"),
        "clustering_by_condition": (clustering_figure(summary, n_permutations),
                                    "dispersion index of losses per series and condition"),
        "restoration_by_condition": (restoration_figure(summary, n_permutations),
                                     "restored fraction observed and chance"),
        "branch_loss_by_condition": (branch_figure(branches, alpha),
                                     "loss fraction of every branch by condition"),
        "density_by_condition": (density_figure(branches), "spine density per session"),
    }
    return {name: (figure_png(fig), alt) for name, (fig, alt) in figs.items()}


# --------------------------------------------------------------------------- report


def _fmt(x: Any, kind: str = "g") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)) or (
            not isinstance(x, str) and pd.isna(x)):
        return "n/a"
    if kind == "pct":
        return f"{100 * float(x):.0f}%"
    if kind == "p":
        x = float(x)
        return f"{x:.2g}" if x >= 0.001 else f"{x:.1e}"
    if kind == "f":
        return f"{float(x):.2f}"
    return html.escape(str(x))


def _cell(row: pd.Series, column: str, kind: str, n_permutations: int | None) -> str:
    """One table cell; a pooled p at its Monte Carlo floor reads ``≤ …``."""
    value = row.get(column)
    if kind == "p" and row["level"] == "condition":
        text = _fmt(value, "p")
        return html.escape(f"≤ {text}" if _at_floor(value, n_permutations) else text)
    return _fmt(value, kind)


def _table(summary: pd.DataFrame, reports: Sequence[str] = (),
           n_permutations: int | None = None) -> str:
    cols = [("condition", "condition", "g"), ("animal", "animal", "g"),
            ("series", "series", "g"), ("n_series", "n series", "g"),
            ("n_branches", "branches", "g"), ("n_spines_s0", "spines s0", "g"),
            ("density_s0", "density s0 /µm", "f"), ("n_lost", "lost", "g"),
            ("loss_fraction", "lost %", "pct"), ("turnover_ratio", "turnover", "f"),
            ("loss_clustering_statistic", "D", "f"), ("loss_clustering_p", "D p", "p"),
            ("n_new", "new", "g"), ("restoration_observed", "restored", "pct"),
            ("restoration_chance", "chance", "pct"), ("restoration_p", "restored p", "p")]
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in cols)
    body = []
    for _, r in summary.iterrows():
        cls = " class='pooled'" if r["level"] == "condition" else ""
        cells = "".join(f"<td>{_cell(r, c, k, n_permutations)}</td>" for c, _, k in cols)
        if r["level"] == "series" and r["key"] in reports:
            link = f"<a href='{html.escape(str(r['key']))}/report.html'>{_fmt(r['animal'])}</a>"
            cells = cells.replace(f"<td>{_fmt(r['animal'])}</td>", f"<td>{link}</td>", 1)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _at_floor(p: Any, n_permutations: int | None) -> bool:
    """Whether ``p`` is the Monte Carlo floor ``1 / (1 + R)`` of ``n_permutations`` R."""
    return bool(n_permutations and p is not None and pd.notna(p)
                and float(p) <= (1.0 + 1e-9) / (1 + int(n_permutations)))


def p_text(p: Any, n_permutations: int | None = None) -> str:
    """``"p = 0.03"``, or ``"p ≤ 5.0e-04"`` at the Monte Carlo floor ``1 / (1 + R)``.

    With ``n_permutations`` R, no permutation reached the observed value when
    p equals the floor, so the true p is at most that.
    """
    return f"p {'≤' if _at_floor(p, n_permutations) else '='} {_fmt(p, 'p')}"


def unchecked_lines(series: pd.DataFrame) -> list[str]:
    """The reminders about automatic calls, for uncorrected and corrected series apart.

    ``series`` are the series rows of the cohort summary (``unchecked_calls``,
    ``n_corrections``, ``key``). Series without corrections get the report's
    "nobody has checked yet" reminder; series a person corrected in part are
    counted separately with their corrections, since nothing records whether
    their other calls were checked.
    """
    from .report import UNCHECKED, UNCHECKED_WHY

    if "unchecked_calls" not in series or not len(series):
        return []
    auto = series["unchecked_calls"].fillna(False).astype(bool).to_numpy()
    edits = (pd.to_numeric(series["n_corrections"], errors="coerce").fillna(0).to_numpy()
             if "n_corrections" in series else np.zeros(len(series)))
    corrected, untouched = auto & (edits > 0), auto & (edits == 0)
    out = []
    if untouched.any():
        out.append(f"{int(untouched.sum())} of {len(series)} series: {UNCHECKED}")
    if corrected.any():
        keys = ", ".join(str(k) for k in series["key"][corrected])
        n_edits = int(edits[corrected].sum())
        verb = "carries" if int(corrected.sum()) == 1 else "carry"
        text = (f"{int(corrected.sum())} of {len(series)} series ({keys}) {verb} "
                f"{n_edits} correction{'s' if n_edits != 1 else ''} by a person (edits.json) on "
                "top of automatic detection and linking; nothing records whether their other "
                "calls were checked.")
        out.append(text if untouched.any() else f"{text} {UNCHECKED_WHY}")
    return out


def render_cohort_html(summary: pd.DataFrame, images: dict[str, tuple[bytes, str]],
                       failed: Sequence[str] = (), title: str = "spinetrack cohort report",
                       alpha: float = 0.05, reports: Sequence[str] = (),
                       warnings: dict[str, list[str]] | None = None,
                       n_permutations: int | None = None) -> str:
    """The cohort report page; ``images`` maps figure name -> (png bytes, alt text).

    ``reports`` are the keys of series with their own ``report.html`` (linked);
    ``warnings`` the series' summary warnings by key (listed under "Check");
    ``n_permutations`` of the pooled tests marks a p-value at its floor
    (``p ≤ …``).
    """
    from .report import _CSS, _img

    series, conds = _conditions(summary)
    n_animals = series["animal"].nunique() if len(series) else 0
    parts = [f"<h1>{html.escape(title)}</h1><div class='sub'>{len(series)} series, "
             f"{n_animals} animal{'' if n_animals == 1 else 's'}, {len(conds)} "
             f"condition{'' if len(conds) == 1 else 's'}</div>"]
    lines = []
    for _, c in conds.iterrows():
        d, p = c["loss_clustering_statistic"], c["loss_clustering_p"]
        verdict = ("losses concentrate on some branches more than chance" if pd.notna(p)
                   and float(p) < alpha else "losses are not more uneven across branches "
                   "than chance")
        lost_pct = _fmt(c["loss_fraction"], "pct")
        text = (f"{c['condition']}: {int(c['n_series'])} series, {int(c['n_lost'])} of "
                f"{int(c['n_spines_s0'])} session-0 spines lost ({lost_pct})")
        if pd.notna(d):
            text += (f"; {verdict} (pooled D = {float(d):.2f}, stratified "
                     f"{p_text(p, n_permutations)})")
        if pd.notna(c["restoration_observed"]):
            text += (f"; {_fmt(c['restoration_observed'], 'pct')} of {int(c['n_new'])} new "
                     f"spines restored vs {_fmt(c['restoration_chance'], 'pct')} by chance "
                     f"({p_text(c['restoration_p'], n_permutations)})")
        lines.append(html.escape(text) + ".")
        mixed = c.get("pooling_warning")
        if isinstance(mixed, str) and mixed:
            lines.append("<b>Mixed lengths:</b> " + html.escape(mixed) + ".")
    lines += [html.escape(x) for x in unchecked_lines(series)]
    parts.append("<div class='findings'><b>Findings</b><ul>"
                 + "".join(f"<li>{x}</li>" for x in lines) + "</ul></div>")
    if warnings:
        items = [f"{key}: {w}" for key, ws in warnings.items() for w in ws]
        more = f"<br>… and {len(items) - 12} more (summary.json of each series)" \
            if len(items) > 12 else ""
        parts.append("<div class='warn'><b>Check:</b> "
                     + "<br>".join(html.escape(x) for x in items[:12]) + more + "</div>")
    if failed:
        parts.append("<div class='warn'><b>Not included (failed or not run):</b> "
                     + html.escape(", ".join(failed)) + " — see batch_status.csv</div>")

    def fig(name: str, caption: str) -> str:
        if name not in images:
            return ""
        png, alt = images[name]
        return f"<figure>{_img(png, alt)}<figcaption>{html.escape(caption)}</figcaption></figure>"

    parts.append("<h2>Losses</h2><div class='row'>")
    parts.append(fig("loss_by_condition", "Fraction of session-0 spines lost by the last "
                     "session: dots per series, bars pooled over the condition's series with a "
                     "95% Wilson interval."))
    parts.append(fig("clustering_by_condition", "Dispersion index D of per-branch loss counts "
                     "(1 when losses fall at random): dots per series, bars pooled over the "
                     "condition, with the p-value of the stratified permutation test (loss "
                     "labels permuted within each series)."))
    parts.append(fig("branch_loss_by_condition", "Loss fraction of every branch; filled: more "
                     f"losses than the other branches of its series predict (BH q < {alpha:g})."))
    parts.append("</div><h2>Restoration and density</h2><div class='row'>")
    parts.append(fig("restoration_by_condition", "Fraction of new spines restored at a lost "
                     "spine's site, observed against random placement: bars pooled over the "
                     "condition (p: observed total against the sum of each series' chance "
                     "distribution), lines per series (observed → chance)."))
    parts.append(fig("density_by_condition", "Spines per µm of traced dendrite in each "
                     "session, one line per series."))
    parts.append("</div><h2>Per series and pooled per condition</h2>")
    parts.append(_table(summary, reports, n_permutations))
    parts.append("<p class='small'>Pooled rows (shaded) sum the counts of the condition's "
                 "series; rates are Σ gained (lost) / Σ spines at the earlier session over all "
                 "transitions. Each series' own report.html is in its folder.</p>")
    body = "\n".join(parts)
    css = _CSS + "tr.pooled td{background:#eef3f8;font-weight:600}"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{css}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


def write_cohort(entries: Sequence[dict[str, Any]], out_dir: str | Path,
                 stats: StatsParams | None = None, failed: Sequence[str] = (),
                 title: str = "spinetrack cohort report") -> list[Path]:
    """Write ``cohort_branches.csv``, ``cohort_summary.csv/.json``, the report and PNGs.

    Parameters
    ----------
    entries : sequence of dict
        Complete series (see :func:`cohort_tables`).
    out_dir : path
        The batch folder.
    stats : StatsParams, optional
        Permutations, seed and significance level of the pooled tests.
    failed : sequence of str
        Series left out, named in the report.
    title : str

    Returns
    -------
    list of Path
        Files written.
    """
    stats = stats or StatsParams()
    out = Path(out_dir)
    branches, summary, data = cohort_tables(entries, stats)
    written = [write_table_atomic(branches, out / "cohort_branches.csv"),
               write_table_atomic(summary, out / "cohort_summary.csv"),
               write_json_atomic(out / "cohort_summary.json", data)]
    if not len(summary):
        return written
    images = cohort_figures(branches, summary, stats.significance_level, stats.n_permutations)
    for name, (png, _) in images.items():
        written.append(write_bytes_atomic(out / "cohort_figures" / f"{name}.png", png))
    written.append(write_text_atomic(out / "cohort_report.html", render_cohort_html(
        summary, images, failed=failed, title=title, alpha=stats.significance_level,
        reports=[e["key"] for e in entries if (Path(e["folder"]) / "report.html").exists()],
        warnings=data.get("warnings"), n_permutations=stats.n_permutations)))
    return written
