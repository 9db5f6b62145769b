"""Figures of a run's statistics, drawn with matplotlib's Agg canvas (no pyplot, no GUI).

Each function takes the contract's tables (and the summary dict) and returns a
:class:`matplotlib.figure.Figure`; :func:`figure_png` turns one into PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats as sps

__all__ = [
    "FATE_COLOURS",
    "figure_png",
    "spine_map_figure",
    "loss_fraction_figure",
    "survival_figure",
    "turnover_figure",
    "restoration_figure",
    "clustering_figure",
]

#: Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
FATE_COLOURS = {
    "stable": "#0072B2",
    "lost": "#D55E00",
    "formed": "#009E73",
    "transient": "#E69F00",
    "restored": "#CC79A7",
}
_GREY = "#9a9a9a"
_DPI = 110


def style_axes(ax) -> None:
    """The house style: no top or right spine, small tick labels."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=9)


def figure_png(fig: Figure, dpi: int = _DPI) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _session_labels(n_sessions: int, days: list | None) -> list[str]:
    if days and all(d is not None for d in days):
        return [f"s{k} (day {d:.3g})" for k, d in enumerate(days)]
    return [f"session {k}" for k in range(n_sessions)]


def _first_last(present: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    p = present.astype(str)
    return p.str.find("1").to_numpy(), p.str.rfind("1").to_numpy()


def spine_map_figure(
    spines: pd.DataFrame, fates: pd.DataFrame, branch: pd.Series, n_sessions: int,
    days: list | None = None, lines: pd.DataFrame | None = None,
    left_out: Collection[int] = (),
) -> Figure:
    """Spines along one branch, one row per session, coloured by fate.

    Each spine is a dot at its position along the branch in every session it is
    present in, joined across sessions by a thin line; a × marks the site in the
    first session it is missing; a restored spine is ringed and joined by a
    dashed line to the lost site it re-occupies. The grey bar of each row is
    the stretch of the branch that session traced (from ``lines``, the
    series' centre lines, when given; else the stretch common to all sessions),
    so a spine "lost" where the next session traced nothing shows as such.
    Spines in ``left_out`` (``summary["left_out_spine_ids"]``: not on dendrite
    every session traces) are drawn hollow and not counted in the title, which
    then agrees with branches.csv.
    """
    b = int(branch["branch_id"])
    fb = fates[fates["branch_id"] == b]
    ids = set(fb["spine_id"])
    sb = spines[spines["spine_id"].isin(ids)]
    first, last = _first_last(fb["present"])
    fate_of = dict(zip(fb["spine_id"], fb["fate"]))
    lo = float(branch.get("arc_start_um", np.nan))
    hi = float(branch.get("arc_end_um", np.nan))
    if not np.isfinite(lo) or not np.isfinite(hi):
        lo, hi = float(fb["arc_um"].min()), float(fb["arc_um"].max())
    x_lo = min(lo, fb["arc_um"].min() if len(fb) else lo) - 2
    x_hi = max(hi, fb["arc_um"].max() if len(fb) else hi) + 2

    fig = Figure(figsize=(11, 0.62 * n_sessions + 1.3))
    ax = fig.add_subplot()
    traced = {}
    if lines is not None and len(lines) and {"session", "branch_id", "arc_um"} <= set(lines):
        own = lines[lines["branch_id"] == b]
        traced = {int(k): (float(g["arc_um"].min()), float(g["arc_um"].max()))
                  for k, g in own.groupby("session")}
        if traced:
            x_lo = min(x_lo, min(a for a, _ in traced.values()) - 2)
            x_hi = max(x_hi, max(e for _, e in traced.values()) + 2)
    for k in range(n_sessions):
        a, e = traced.get(k, (np.nan, np.nan)) if traced else (lo, hi)
        if np.isfinite(a) and np.isfinite(e):
            ax.plot([a, e], [k, k], color="#d9d9d9", lw=7, solid_capstyle="round", zorder=0)
    # identity across sessions
    for sid, g in sb.sort_values("session").groupby("spine_id"):
        if len(g) > 1:
            ax.plot(g["arc_um"], g["session"], color=FATE_COLOURS[fate_of[sid]], lw=0.8,
                    alpha=0.45, zorder=1)
    out = sb["spine_id"].isin(set(left_out))
    for fate, colour in FATE_COLOURS.items():
        g = sb[(sb["spine_id"].map(fate_of) == fate) & ~out]
        ax.scatter(g["arc_um"], g["session"], s=26, color=colour, zorder=3,
                   edgecolors="white", linewidths=0.5)
        g = sb[(sb["spine_id"].map(fate_of) == fate) & out]
        ax.scatter(g["arc_um"], g["session"], s=26, facecolors="none", edgecolors=colour,
                   linewidths=1.0, zorder=3)
    # losses: a × where the spine was, in the first session it is missing
    gone = last < n_sessions - 1
    ax.scatter(fb["arc_um"].to_numpy()[gone], last[gone] + 1, marker="x", s=30,
               color=FATE_COLOURS["lost"], linewidths=1.3, zorder=4)
    # restorations: ring + dashed link to the lost site
    rest = fb[fb["fate"] == "restored"]
    last_seen = sb.sort_values("session").groupby("spine_id").last()
    for _, r in rest.iterrows():
        src = r["restored_from"]
        if pd.isna(src) or int(src) not in last_seen.index:
            continue
        k = str(r["present"]).find("1")
        ax.plot([last_seen.loc[int(src), "arc_um"], r["arc_um"]],
                [last_seen.loc[int(src), "session"], k], ls="--", lw=1.4,
                color=FATE_COLOURS["restored"], zorder=2)
        ax.scatter([r["arc_um"]], [k], s=120, facecolors="none",
                   edgecolors=FATE_COLOURS["restored"], linewidths=1.4, zorder=5)
    ax.set_yticks(range(n_sessions), _session_labels(n_sessions, days))
    ax.set_ylim(n_sessions - 0.4, -0.6)
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("position along the branch (µm)", fontsize=9)
    style_axes(ax)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    counted = ~fb["spine_id"].isin(set(left_out)).to_numpy()
    n0 = int(((first == 0) & counted).sum())
    n_lost = int(((fb["fate"] == "lost").to_numpy() & counted).sum())
    q = branch.get("loss_q", np.nan)
    qtxt = f", loss q = {q:.3g}" if pd.notna(q) else ""
    ax.set_title(f"Branch {b}: {float(branch.get('length_um', np.nan)):.1f} µm, "
                 f"{n_lost} of {n0} session-0 spines lost{qtxt}", fontsize=10, loc="left")
    handles = [Line2D([], [], ls="", marker="o", color=c, label=f) for f, c in
               FATE_COLOURS.items()]
    handles += [Line2D([], [], ls="", marker="x", color=FATE_COLOURS["lost"],
                       label="gone (first session missing)"),
                Line2D([], [], ls="--", color=FATE_COLOURS["restored"],
                       label="restored at a lost site")]
    if out.any():
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", color="grey",
                              label="not counted (dendrite not traced in every session)"))
    ax.legend(handles=handles, ncol=7 if len(handles) <= 7 else 4, fontsize=8, frameon=False,
              loc="upper left", bbox_to_anchor=(0, -0.18 if n_sessions > 2 else -0.3),
              handletextpad=0.3, columnspacing=1.0)
    fig.tight_layout()
    return fig


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of the proportion k / n (NaN, NaN when n is 0)."""
    if n <= 0:
        return np.nan, np.nan
    ci = sps.binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return ci.low, ci.high


def loss_fraction_figure(branches: pd.DataFrame, summary: dict[str, Any],
                         alpha: float = 0.05) -> Figure:
    """Loss fraction per branch with 95% intervals, the overall fraction and q-values.

    Branches without session-0 spines have no loss fraction and are left out.
    Up to 10 branches are drawn as columns; more as rows, so labels stay legible.
    """
    br = branches.sort_values("branch_id")
    br = br[br["n_spines_s0"] > 0]
    n0 = br["n_spines_s0"].to_numpy()
    nl = br["n_lost"].to_numpy()
    frac = br["loss_fraction"].to_numpy(dtype=float)
    ci = np.array([wilson_interval(k, n) for k, n in zip(nl, n0)]).reshape(-1, 2)
    q = br["loss_q"].to_numpy(dtype=float)
    x = np.arange(len(br))
    colours = ["#D55E00" if np.isfinite(v) and v < alpha else "#f0b48c" for v in q]
    err = np.nan_to_num(np.abs(np.stack([frac - ci[:, 0], ci[:, 1] - frac])))
    overall = summary.get("loss_clustering", {}).get("loss_fraction")
    names = [f"branch {b}" for b in br["branch_id"]]
    labels = [f"{k}/{n}" + (f"  q={qi:.2g}" if np.isfinite(qi) else "")
              for k, n, qi in zip(nl, n0, q)]
    if len(br) <= 10:
        fig = Figure(figsize=(max(5.0, 0.8 * len(br) + 2.5), 3.6))
        ax = fig.add_subplot()
        ax.bar(x, np.nan_to_num(frac), color=colours, width=0.65, zorder=2)
        ax.errorbar(x, frac, yerr=err, fmt="none", ecolor="#444", lw=1, capsize=3, zorder=3)
        if overall is not None:
            ax.axhline(overall, color="#333", ls=":", lw=1.2, zorder=1)
            ax.text(len(br) - 0.5, overall, f" all branches {overall:.0%}", va="bottom",
                    ha="right", fontsize=8, color="#333")
        for xi, label in enumerate(labels):
            ax.text(xi, 1.02, label.replace("  ", "\n"), ha="center", va="bottom",
                    fontsize=8, transform=ax.get_xaxis_transform())
        ax.set_xticks(x, names, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of session-0 spines lost", fontsize=9)
    else:
        fig = Figure(figsize=(6.4, 0.28 * len(br) + 1.3))
        ax = fig.add_subplot()
        ax.barh(x, np.nan_to_num(frac), color=colours, height=0.65, zorder=2)
        ax.errorbar(frac, x, xerr=err, fmt="none", ecolor="#444", lw=1, capsize=2, zorder=3)
        if overall is not None:
            ax.axvline(overall, color="#333", ls=":", lw=1.2, zorder=1)
            ax.text(overall, -0.9, f"all branches {overall:.0%}", va="bottom", ha="center",
                    fontsize=8, color="#333")
        for xi, label in enumerate(labels):
            ax.text(1.02, xi, label, ha="left", va="center", fontsize=8,
                    transform=ax.get_yaxis_transform())
        ax.set_yticks(x, names, fontsize=8)
        ax.set_ylim(len(br) - 0.5, -1.2)
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of session-0 spines lost", fontsize=9)
    style_axes(ax)
    fig.tight_layout()
    return fig


def survival_figure(branches: pd.DataFrame, summary: dict[str, Any]) -> Figure:
    """Fraction of session-0 spines still present, overall and per branch."""
    n = int(summary["n_sessions"])
    days = summary.get("days")
    x = np.asarray(days, dtype=float) if days else np.arange(n)
    fig = Figure(figsize=(5.2, 3.6))
    ax = fig.add_subplot()
    cmap = _branch_colours(len(branches))
    for (_, r), c in zip(branches.sort_values("branch_id").iterrows(), cmap):
        y = [r.get(f"survival_s{k}", np.nan) for k in range(n)]
        ax.plot(x, y, color=c, lw=1, marker="o", ms=3, alpha=0.8,
                label=f"branch {int(r['branch_id'])}")
    ax.plot(x, summary["survival_fraction"], color="black", lw=2.2, marker="o", ms=5,
            label="all branches", zorder=5)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("day" if days else "session", fontsize=9)
    if not days:
        ax.set_xticks(x)
    ax.set_ylabel("session-0 spines still present", fontsize=9)
    if len(branches) <= 10:
        ax.legend(fontsize=7, frameon=False, loc="lower left")
    else:  # a legend of dozens of branches hides the curves; name the thick line only
        ax.legend(ax.lines[-1:], ["all branches (thin lines: one per branch)"], fontsize=7,
                  frameon=False, loc="lower left")
    style_axes(ax)
    fig.tight_layout()
    return fig


def _branch_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(1, n - 1)) for i in range(n)]


def turnover_figure(summary: dict[str, Any]) -> Figure:
    """Formation and elimination rate and turnover ratio per transition."""
    labels = summary.get("transitions", [])
    per_day = summary.get("interval_days")
    names = [lab.replace("_", "→") for lab in labels]
    if per_day:
        names = [f"{n}\n({d:.3g} days)" if d is not None else n for n, d in zip(names, per_day)]
    x = np.arange(len(labels))
    w = 0.2
    fig = Figure(figsize=(max(5.6, 1.4 * len(labels) + 2.5), 4.0))
    ax = fig.add_subplot()
    series = [("formation rate gained/N earlier", summary["formation_rate"],
               FATE_COLOURS["formed"]),
              ("elimination rate lost/N earlier", summary["elimination_rate"],
               FATE_COLOURS["lost"]),
              ("turnover (gained+lost)/(2·N earlier)", summary["turnover_ratio"], "#555555"),
              ("turnover (gained+lost)/(N earlier+N later)", summary["turnover_ratio_mean"],
               "#bbbbbb")]
    for i, (name, values, colour) in enumerate(series):
        v = np.array([np.nan if a is None else a for a in values], dtype=float)
        ax.bar(x + (i - 1.5) * w, np.nan_to_num(v), w, color=colour, label=name, zorder=2)
        for xi, vi in zip(x + (i - 1.5) * w, v):
            if np.isfinite(vi):
                ax.text(xi, vi, f"{vi:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, fontsize=9)
    ax.set_ylabel("fraction (each bar's formula in the legend)", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2)
    style_axes(ax)
    fig.tight_layout()
    return fig


def restoration_figure(summary: dict[str, Any]) -> Figure:
    """The chance distribution of the restored fraction and the observed value."""
    r = summary.get("restoration", {})
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.add_subplot()
    n_new = r.get("n_new") or 0
    hist = np.asarray(r.get("chance_histogram") or [], dtype=float)
    if n_new and hist.sum():
        frac = np.arange(len(hist)) / n_new
        prob = hist / hist.sum()
        ax.bar(frac, prob, width=0.8 / n_new, color="#bbbbbb", zorder=2,
               label="chance (new spines placed at random)")
        ax.axvline(r["observed_fraction"], color=FATE_COLOURS["restored"], lw=2.5, zorder=3,
                   label=f"observed {r['n_restored']}/{n_new} = {r['observed_fraction']:.0%}")
        ax.axvline(r["chance_fraction"], color="#555", lw=1, ls=":", zorder=3,
                   label=f"chance mean {r['chance_fraction']:.0%}")
        hi = max(r["observed_fraction"], frac[prob > 1e-4].max() if (prob > 1e-4).any()
                 else 0.1)
        ax.set_xlim(-0.5 / n_new, min(1.0, hi + 0.1) + 0.5 / n_new)
        ax.set_title(f"one-sided p = {r['p_value']:.3g} ({r['n_permutations']} random "
                     "placements)", fontsize=9, loc="left")
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no new spines: nothing to test", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel(f"fraction of new spines within {r.get('restore_radius_um', 0):g} µm "
                  "of an earlier loss", fontsize=9)
    ax.set_ylabel("probability", fontsize=9)
    style_axes(ax)
    fig.tight_layout()
    return fig


def clustering_figure(summary: dict[str, Any]) -> Figure:
    """The permutation distribution of the dispersion index and the observed value."""
    c = summary.get("loss_clustering", {})
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.add_subplot()
    h = c.get("null_histogram") or {}
    if c.get("statistic") is not None and h.get("counts"):
        edges = np.asarray(h["edges"])
        counts = np.asarray(h["counts"], dtype=float)
        ax.stairs(counts / counts.sum(), edges, fill=True, color="#bbbbbb",
                  label="losses shuffled over session-0 spines")
        ax.axvline(c["statistic"], color=FATE_COLOURS["lost"], lw=2.5,
                   label=f"observed D = {c['statistic']:.2f}")
        ax.axvline(1.0, color="#555", lw=1, ls=":", label="expected under chance (1)")
        ax.set_xlim(0, max(edges[-1], c["statistic"] * 1.1))
        ax.set_title(f"permutation p = {c['p_value']:.3g} ({c['n_permutations']} "
                     "permutations)", fontsize=9, loc="left")
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, c.get("note", "no test"), ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("dispersion index D of per-branch loss counts", fontsize=9)
    ax.set_ylabel("probability", fontsize=9)
    style_axes(ax)
    fig.tight_layout()
    return fig
