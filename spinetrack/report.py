"""The run's report: a self-contained ``report.html`` and the same figures as PNG.

:func:`write_report` draws every figure (``spinetrack.plots``), writes them to
``figures/*.png`` and embeds them as base64 in ``report.html``, which needs no
other file and no network. :func:`findings` gives the few sentences a scientist
reads first; the command line prints them too.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import plots
from .errors import InputError
from .files import write_bytes_atomic, write_text_atomic
from .progress import ProgressCallback, report

__all__ = ["write_report", "rebuild_report", "findings", "render_html", "FIGURES"]

log = logging.getLogger(__name__)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.0f}%"


def _p(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.2g}" if x >= 0.001 else f"{x:.1e}"


def _days(summary: dict[str, Any]) -> list | None:
    days = summary.get("days")
    return days if days and all(d is not None for d in days) else None


def _count(n: int, word: str, plural: str) -> str:
    return f"{n} {word if n == 1 else plural}"


def findings(summary: dict[str, Any], branches: pd.DataFrame) -> list[str]:
    """The main results in plain sentences, most important first."""
    alpha = summary.get("significance_level", 0.05)
    n = summary["n_sessions"]
    out = []
    days = _days(summary)
    span = f" over {days[-1] - days[0]:.3g} days" if days else ""
    per_s = summary["spines_per_session"]
    dens = summary.get("density_per_session") or []
    dens_txt = (f" ({dens[0]:.2f} → {dens[-1]:.2f} spines per µm)" if len(dens) == n else "")
    sessions = f"every one of the {n} sessions" if n > 1 else "the session"
    out.append(f"{_count(summary['n_branches'], 'branch', 'branches')} "
               f"({summary.get('total_length_um', 0):.0f} µm of dendrite traced in {sessions})"
               f"{span}; "
               f"spines per session {', '.join(str(v) for v in per_s)}{dens_txt}.")
    c = summary["loss_clustering"]
    n0, nl = c.get("n_spines_s0", 0), c.get("n_lost", 0)
    if n > 1 and n0:
        stable = summary["fate_counts"]["stable"]
        out.append(f"{nl} of {n0} session-0 spines ({_pct(nl / n0)}) were lost by the last "
                   f"session; {stable} {'was' if stable == 1 else 'were'} present throughout.")
    if n < 2:
        return out
    if c.get("statistic") is not None:
        verdict = ("Losses concentrate on some branches more than chance"
                   if c["p_value"] < alpha else
                   "Losses are not more uneven across branches than chance")
        out.append(f"{verdict}: dispersion index D = {c['statistic']:.2f} (1 expected if "
                   f"losses fall at random), permutation p = {_p(c['p_value'])}.")
    elif c.get("note"):
        out.append(f"Loss clustering across branches: not tested ({c['note']}).")
    if "loss_q" in branches and branches["loss_q"].notna().any():
        br = branches.dropna(subset=["loss_q"]).sort_values("loss_q")
        sig = br[br["loss_q"] < alpha]
        if len(sig):
            parts = [f"branch {int(r.branch_id)} ({int(r.n_lost)} of {int(r.n_spines_s0)} "
                     f"lost, {r.expected_lost:.1f} expected, q = {_p(r.loss_q)})"
                     for r in sig.itertuples()]
            out.append("Branches that lost more than the others predict: "
                       + "; ".join(parts) + ".")
        elif nl == 0:
            out.append("No spine was lost, so no branch lost more than the others.")
        else:
            r = br.iloc[0]
            out.append(f"No single branch lost significantly more than the others (smallest "
                       f"q = {_p(r.loss_q)}: branch {int(r.branch_id)}, {int(r.n_lost)} of "
                       f"{int(r.n_spines_s0)} lost, {r.expected_lost:.1f} expected).")
    s = summary.get("loss_spacing", {})
    if s.get("statistic") is not None:
        closer = s["p_value"] < alpha
        out.append(f"Within branches, lost spines were {'' if closer else 'not '}closer together "
                   f"than random subsets of the same branch's spines: mean distance to the "
                   f"nearest other loss {s['statistic']:.1f} µm vs {s['chance_mean']:.1f} µm by "
                   f"chance, p = {_p(s['p_value'])}.")
    r = summary["restoration"]
    if r.get("n_new"):
        more = r["p_value"] < alpha
        out.append(f"{r['n_restored']} of {r['n_new']} new spines ({_pct(r['observed_fraction'])}) "
                   f"appeared within {r['restore_radius_um']:g} µm of an earlier loss; random "
                   f"placement gives {_pct(r['chance_fraction'])} (p = {_p(r['p_value'])}): "
                   + ("more restorations than chance." if more
                      else "no excess of restorations over chance."))
    elif n > 1:
        out.append("No new spines appeared, so restoration was not tested.")
    if n > 1:
        tr = ", ".join(f"{v:.2f}" if v is not None else "n/a" for v in summary["turnover_ratio"])
        out.append(f"Turnover ratio per interval (gained + lost) / (2 × earlier count): {tr}.")
    if n > 1 and unchecked(summary):
        out.append(unchecked_text(summary))
    return out


def unchecked(summary: dict[str, Any]) -> bool:
    """The run's calls are the detector's (corrected in part or not at all).

    A person's corrections do not make the other calls checked: nothing
    records which calls a person looked at and accepted, so the reminder stays
    with every run of automatic calls.
    """
    return bool(summary.get("calls") == "automatic")


def unchecked_text(summary: dict[str, Any]) -> str:
    """The reminder after the findings of automatic calls, with the corrections made."""
    applied = int((summary.get("edits") or {}).get("applied") or 0)
    if not applied:
        return UNCHECKED
    return (f"These fates come from automatic detection and linking, to which a person applied "
            f"{applied} correction{'s' if applied != 1 else ''} (edits.json); nothing records "
            "whether the other calls were checked. " + UNCHECKED_WHY)


#: Why automatic calls need checking, said after their findings.
UNCHECKED_WHY = ("On real two-photon data (rr30a-dev, bench/RESULTS.md) the detector misses "
                 "or adds about a quarter of a person's spines, and every miss or false call "
                 "becomes a loss, a formation or a restoration, so the automatic run calls "
                 "about twice the person's losses and the tests above inherit that. Check and "
                 "correct the calls in napari (napari --plugin spinetrack RESULTS_FOLDER; "
                 "Shift-N steps through them) before relying on them.")
#: Said after the findings of automatic calls that nobody has corrected yet.
UNCHECKED = ("These fates come from automatic detection and linking that nobody has checked "
             "yet. " + UNCHECKED_WHY)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;margin:0;
background:#fff;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 32px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:15px;margin:18px 0 4px}
.sub{color:#666;font-size:13px;margin-bottom:18px}
.findings{background:#f4f7fb;border-left:4px solid #0072B2;padding:12px 18px;margin:16px 0}
.findings li{margin:4px 0}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.row figure{flex:1 1 480px}
figure{margin:8px 0}figure img{max-width:100%;height:auto}
figcaption{font-size:12.5px;color:#555;max-width:760px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{padding:3px 8px;text-align:right;border-bottom:1px solid #eee}
td{white-space:nowrap}
th{background:#f6f6f6;font-weight:600}td:first-child,th:first-child{text-align:left}
tr.sig td{background:#fdebe1}
.warn{background:#fff7e0;border-left:4px solid #E69F00;padding:8px 14px;font-size:13px}
.small{font-size:12.5px;color:#555}
code{font-size:12px;background:#f3f3f3;padding:0 3px}
"""


def _cell(value: Any, fmt: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return "<td></td>"
    return f"<td>{html.escape(format(value, fmt))}</td>"


def _branch_table(branches: pd.DataFrame, n_sessions: int, alpha: float) -> str:
    """HTML table of the per-branch statistics; rows with loss q < alpha shaded."""
    cols = [("branch", "branch_id", "d"), ("length µm", "length_um", ".1f")]
    cols += [(f"spines s{k}", f"n_spines_s{k}", "d") for k in range(n_sessions)]
    cols += [(f"per µm s{k}", f"density_s{k}", ".2f")
             for k in sorted({0, n_sessions - 1})]
    cols += [("lost", "n_lost", "d"), ("expected lost", "expected_lost", ".1f"),
             ("loss fraction", "loss_fraction", ".0%"), ("loss p", "loss_p", ".2g"),
             ("loss q", "loss_q", ".2g"), ("lost-site spacing µm", "loss_nn_um", ".1f"),
             ("chance µm", "loss_nn_chance_um", ".1f"), ("spacing p", "loss_nn_p", ".2g"),
             ("new", "n_new", "d"), ("restored", "n_restored", "d"),
             ("restored chance", "restored_chance", ".0%")]
    cols = [c for c in cols if c[1] in branches.columns]
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _, _ in cols)
    rows = []
    for _, r in branches.iterrows():
        cells = "".join(_cell(int(r[c]) if fmt == "d" and pd.notna(r[c]) else r[c], fmt)
                        for _, c, fmt in cols)
        q = r.get("loss_q", np.nan)
        cls = ' class="sig"' if pd.notna(q) and q < alpha else ""
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_html(summary: dict[str, Any], branches: pd.DataFrame, images: dict[str, tuple],
                title: str = "spinetrack report") -> str:
    """The report page; ``images`` maps figure name -> (png bytes, alt text)."""
    alpha = summary.get("significance_level", 0.05)
    n = summary["n_sessions"]
    days = _days(summary)
    sub = f"{n} sessions" + (f", days {', '.join(f'{d:.3g}' for d in days)}" if days else "")
    versions = summary.get("versions") or {}
    if versions.get("spinetrack"):
        sub += f" · spinetrack {html.escape(str(versions['spinetrack']))}"
    parts = [f"<h1>{html.escape(title)}</h1><div class='sub'>{html.escape(sub)}</div>",
             "<div class='findings'><b>Findings</b><ul>"
             + "".join(f"<li>{html.escape(s)}</li>" for s in findings(summary, branches))
             + "</ul></div>"]
    warnings = summary.get("warnings") or []
    if warnings:
        parts.append("<div class='warn'><b>Check:</b> "
                     + "<br>".join(html.escape(w) for w in warnings) + "</div>")

    def fig(name: str, caption: str) -> str:
        if name not in images:
            return ""
        png, alt = images[name]
        return f"<figure>{_img(png, alt)}<figcaption>{html.escape(caption)}</figcaption></figure>"

    rr = summary["restoration"]
    parts.append("<h2>Do losses cluster on branches?</h2><div class='row'>")
    parts.append(fig("loss_fraction", "Fraction of each branch's session-0 spines lost by the "
                     "last session, with 95% Wilson intervals. Dark bars: more losses than the "
                     f"other branches predict (one-sided hypergeometric test, BH q < {alpha:g}). "
                     "Above each bar: lost / session-0 spines and q."))
    parts.append(fig("clustering", "Dispersion index D of per-branch loss counts (variance of "
                     "losses relative to random loss, 1 on average) against its distribution "
                     "when the same number of losses is shuffled over all session-0 spines."))
    parts.append("</div>")
    parts.append(_branch_table(branches, n, alpha))
    parts.append("<p class='small'>Lost-site spacing: mean distance along the branch from each "
                 "lost spine to the nearest other lost spine on that branch; chance: the same "
                 "for random subsets of the branch's session-0 spines; spacing p: one-sided "
                 "(closer than chance). Rows shaded: loss q below "
                 f"{alpha:g}.</p>")
    parts.append("<h2>Do new spines return to lost sites?</h2><div class='row'>")
    parts.append(fig("restoration", f"Observed fraction of new spines (first seen after "
                     f"session 0) that are 'restored' (within {rr.get('restore_radius_um', 0):g} "
                     "µm along the branch of a spine lost earlier, each lost site claimed once, "
                     "nearest first) against the same rule applied to new spines placed at "
                     "random on their branches, avoiding spines present at the time "
                     f"(±{rr.get('occupied_radius_um', 0):g} µm) and spines seen just before "
                     f"(±{rr.get('relink_radius_um', 0):g} µm, which the tracker would have "
                     "linked)."))
    by = rr.get("by_session") or []
    if by:
        rows = "".join(f"<tr><td>session {b['session']}</td><td>{b['n_new']}</td>"
                       f"<td>{b['n_restored']}</td><td>{_pct(b['observed_fraction'])}</td>"
                       f"<td>{_pct(b['chance_fraction'])}</td><td>{_p(b['p_value'])}</td></tr>"
                       for b in by)
        parts.append("<div><h3>By the session a new spine first appears</h3><table><tr>"
                     "<th>first seen</th><th>new</th><th>restored</th><th>observed</th>"
                     f"<th>chance</th><th>p</th></tr>{rows}</table></div>")
    parts.append("</div>")
    parts.append("<h2>Turnover and survival</h2><div class='row'>")
    parts.append(fig("turnover", "Per transition: formation rate (gained / spines at the "
                     "earlier session), elimination rate (lost / spines at the earlier "
                     "session) and the turnover ratio under its two common definitions."))
    parts.append(fig("survival", "Fraction of session-0 spines still present in each session, "
                     "all branches (black) and per branch."))
    parts.append("</div>")
    if days:
        fr = summary.get("formation_rate_per_day") or []
        el = summary.get("elimination_rate_per_day") or []
        rows = "".join(f"<tr><td>{t.replace('_', '→')}</td><td>{_pct(f) if f is not None else ''}"
                       f"</td><td>{_pct(e) if e is not None else ''}</td></tr>"
                       for t, f, e in zip(summary["transitions"], fr, el))
        parts.append("<h3>Per day</h3><table><tr><th>transition</th><th>formation per day</th>"
                     f"<th>elimination per day</th></tr>{rows}</table>")
    parts.append("<h2>Spine maps</h2><p class='small'>Each branch drawn straight, one row per "
                 "session; dots are spines coloured by fate, thin lines join one spine across "
                 "sessions, × marks a site in the first session its spine is missing, and "
                 "dashed lines join a restored spine (ringed) to the lost site it "
                 "re-occupies.</p>")
    for name in sorted((k for k in images if k.startswith("spine_map_")),
                       key=lambda k: int(k.rsplit("_", 1)[1])):
        parts.append(fig(name, ""))
    params = summary.get("statistics_params") or {}
    ptxt = ", ".join(f"{k} = {v}" for k, v in params.items())
    parts.append("<h2>Methods in brief</h2><p class='small'>Counts, rates and survival follow "
                 "the fates table. The dispersion index is "
                 "D = (N−1)/(N(B−1)) Σ (L_b − n_b p)² / (n_b p (1−p)) over B branches with "
                 "n_b session-0 spines and L_b losses (p = ΣL/N); its p-value comes from "
                 "permuting the loss labels over all session-0 spines with branch sizes fixed. "
                 "Per-branch p-values are one-sided hypergeometric (Fisher's exact test of the "
                 "branch against the rest), corrected with Benjamini–Hochberg. Monte Carlo "
                 "p-values are (1 + #null ≥ observed) / (1 + permutations). Full definitions: "
                 "docs/statistics.md in the spinetrack sources. Parameters: "
                 f"{html.escape(ptxt)}.</p>")
    if versions:
        parts.append("<p class='small'>Versions: " + html.escape(
            ", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


# name -> (alt text, drawn from (branches, summary, alpha)), in the report's order
_FIGURE_DRAWN: dict[str, tuple[str, Any]] = {
    "loss_fraction": ("loss fraction per branch",
                      lambda br, summary, alpha: plots.loss_fraction_figure(br, summary, alpha)),
    "clustering": ("dispersion index against its permutation distribution",
                   lambda br, summary, alpha: plots.clustering_figure(summary)),
    "restoration": ("restored fraction against chance",
                    lambda br, summary, alpha: plots.restoration_figure(summary)),
    "turnover": ("turnover per transition",
                 lambda br, summary, alpha: plots.turnover_figure(summary)),
    "survival": ("survival of session-0 spines",
                 lambda br, summary, alpha: plots.survival_figure(br, summary)),
}
#: The figures :func:`write_report` draws (one session: the first only), besides
#: ``spine_map_<branch>.png``.
FIGURES = tuple(_FIGURE_DRAWN)


def write_report(results, out_dir: str | Path, progress: ProgressCallback | None = None,
                 title: str = "spinetrack report") -> list[Path]:
    """Write ``report.html`` and ``figures/*.png`` for a run's results.

    Parameters
    ----------
    results : spinetrack.results.Results
        Needs the statistics: ``branches`` from
        :func:`spinetrack.stats.branch_statistics` and its summary.
    out_dir : path
        The results folder; ``figures/`` is created in it.
    progress : callable, optional
    title : str

    Returns
    -------
    list of Path
        The files written, ``report.html`` last. Each is written atomically.
    """
    summary, branches = results.summary, results.branches
    if "restoration" not in summary or "loss_q" not in branches.columns:
        raise InputError(out_dir, "results have no branch statistics yet (run "
                         "'spinetrack report' on the folder)")
    out = Path(out_dir)
    n = int(summary.get("n_sessions") or results.n_sessions)
    days = _days(summary)
    alpha = summary.get("significance_level", 0.05)
    br = branches.sort_values("branch_id").reset_index(drop=True)
    jobs: list[tuple[str, str, Any]] = [
        (name, alt, lambda draw=draw: draw(br, summary, alpha))
        for name, (alt, draw) in list(_FIGURE_DRAWN.items())[:None if n >= 2 else 1]]
    for _, row in br.iterrows():
        b = int(row["branch_id"])
        jobs.append((f"spine_map_{b}", f"spine map of branch {b}",
                     lambda row=row: plots.spine_map_figure(
                         results.spines, results.fates, row, n, days, lines=results.lines,
                         left_out=summary.get("left_out_spine_ids", ()))))
    images: dict[str, tuple[bytes, str]] = {}
    written = []
    for i, (name, alt, make) in enumerate(jobs):
        report(progress, "report: figures", i, len(jobs))
        png = plots.figure_png(make())
        images[name] = (png, alt)
        written.append(write_bytes_atomic(out / "figures" / f"{name}.png", png))
    report(progress, "report: figures", len(jobs), len(jobs))
    written.append(write_text_atomic(out / "report.html",
                                     render_html(summary, br, images, title)))
    # spine maps of branches this run no longer has would be mistaken for its own
    for stale in (out / "figures").glob("spine_map_*.png"):
        if stale not in written:
            stale.unlink(missing_ok=True)
    return written


def rebuild_report(out_dir: str | Path, params=None, recompute_fates: bool = False,
                   progress: ProgressCallback | None = None,
                   title: str = "spinetrack report"):
    """Recompute a results folder's statistics from its tables and rewrite the report.

    Reads ``spines.csv`` and ``fates.csv`` (``lines.csv``, ``sessions.csv`` and
    the previous ``branches.csv``/``summary.json`` when present), recomputes
    ``branches.csv`` and the statistics in ``summary.json``, and writes
    ``report.html`` and ``figures/``. Useful after editing the tables by hand.

    Parameters
    ----------
    out_dir : path
        A results folder.
    params : Params, optional
        Default: the folder's ``params.json`` (or defaults).
    recompute_fates : bool
        Re-classify ``fates.csv`` from ``spines.csv`` first (after editing spines).
        Done anyway, with a warning, when ``fates.csv`` no longer matches the
        spines present in ``spines.csv`` (:func:`fates_out_of_step`).
    progress : callable, optional
    title : str

    Returns
    -------
    results : Results
        The updated results.
    written : list of Path
        Files written, in order; each atomically.

    Notes
    -----
    The branch stretches (``length_um, arc_start_um, arc_end_um``) come from the
    previous ``branches.csv`` when it has them, else from ``lines.csv``, else
    from the range of spine positions.

    In a correction project (``edits.json`` and ``auto/`` from the napari
    plugin), new parameters or re-classified fates are applied to ``auto/`` and
    the person's edits are replayed on top, so hand-set fates survive and
    ``auto/params.json`` and ``params.json`` agree; a project whose
    ``spines.csv`` or ``fates.csv`` no longer follows from ``auto/`` and
    ``edits.json`` (edited by hand) is refused with one line. ``compare.json``
    is removed when the fates change (its scores were of the previous ones).

    A folder an interrupted run left (tables without ``params.json``, see
    :func:`spinetrack.results.incomplete_run`) is refused with one line.
    """
    from .results import check_complete, read_results

    out = Path(out_dir)
    check_complete(out)  # an interrupted run's tables may come from two runs
    stored = read_results(out_dir)
    # which new spines are "restored" depends on the radius: a new radius re-classifies
    new_radius = (params is not None and stored.params is not None
                  and params.fates.restore_radius_um != stored.params.fates.restore_radius_um)
    refit = recompute_fates or new_radius or not len(stored.fates)
    stale = None if refit else fates_out_of_step(stored.spines, stored.fates, stored.n_sessions)
    if stale and not (out / "edits.json").exists():
        log.warning("%s: %s; re-classifying the fates from spines.csv", out / "fates.csv", stale)
    refit = refit or stale is not None
    changed = params is not None and params != stored.params
    if (out / "edits.json").exists() and (refit or changed
                                          or _auto_params(out) != (params or stored.params)):
        res, written = _rebuild_project(out, stored, params or stored.params,
                                        recompute_fates, refit, progress)
    else:
        res, written = _rebuild_tables(out, stored, params, refit, progress)
    written += write_report(res, out, progress=progress, title=title)
    return res, written


def fates_out_of_step(spines: pd.DataFrame, fates: pd.DataFrame,
                      n_sessions: int) -> str | None:
    """How ``fates.csv`` disagrees with the presence in ``spines.csv``, or None if it agrees.

    A fates table follows from the spines: one row per ``spine_id``, whose
    ``present`` marks the sessions the spine has a row in. Editing ``spines.csv``
    by hand (deleting, adding or relinking spines) breaks that.

    Parameters
    ----------
    spines : DataFrame
        ``spine_id, session``.
    fates : DataFrame
        ``spine_id, present``.
    n_sessions : int

    Returns
    -------
    str or None
        One clause naming what differs (e.g. ``"the presence of 3 spines (ids 0, 7, 8)
        differs from spines.csv"``).
    """
    from .fates import presence_strings

    if not len(spines) and not len(fates):
        return None
    top = int(spines["session"].max()) + 1 if len(spines) else 0
    present = fates.assign(present=fates["present"].astype(str)).set_index("spine_id")["present"]
    present = present[~present.index.duplicated()]
    n = max(int(n_sessions), top, int(present.str.len().max()) if len(present) else 0)
    wanted = presence_strings(spines, n)
    only_fates = present.index.difference(wanted.index)
    only_spines = wanted.index.difference(present.index)
    both = wanted.index.intersection(present.index)
    differ = both[(present.loc[both].str.ljust(n, "0") != wanted.loc[both]).to_numpy()]
    parts = []
    for ids, what in ((differ, "the presence of {n} spine{s} (ids {ids}) differs from "
                               "spines.csv"),
                      (only_fates, "{n} spine{s} (ids {ids}) no longer in spines.csv"),
                      (only_spines, "{n} spine{s} of spines.csv (ids {ids}) not in it")):
        if len(ids):
            shown = ", ".join(str(i) for i in list(ids[:5])) + (", ..." if len(ids) > 5 else "")
            parts.append(what.format(n=len(ids), s="" if len(ids) == 1 else "s", ids=shown))
    return "; ".join(parts) or None


def _rebuild_tables(out: Path, stored, params, refit: bool, progress) -> tuple:
    """Recompute the statistics (and fates when ``refit``) of a plain results folder.

    ``params.json`` is removed before the tables are replaced and written last
    (with the parameters used), as a run does: an interrupted rebuild leaves a
    folder that reads as incomplete (:func:`spinetrack.results.incomplete_run`),
    and a folder of tables made by hand gains a ``params.json``. Only
    ``fates.csv`` (its ``in_statistics`` column follows the statistics just
    computed) and ``branches.csv`` are rewritten, with ``summary.json``. The old
    report and figures (and ``compare.json`` when ``refit``) go first
    (:func:`spinetrack.pipeline.retire_previous`).
    """
    from .pipeline import recompute, retire_previous
    from .results import run_record, write_results

    res = recompute(stored, progress=progress, fates=refit, params=params)
    record = run_record(out)
    retire_previous(out, project=False, scores=refit)
    return res, write_results(res, out, extra_params=record, tables=("fates", "branches"))


def _rebuild_project(out: Path, stored, params, recompute_fates: bool, refit: bool,
                     progress) -> tuple:
    """New parameters for a correction project: ``auto/`` recomputed, the edits replayed.

    Returns the corrected results and the files written (``auto/`` first, then
    the top-level tables, each folder's ``params.json`` last). ``compare.json``
    is removed when ``refit`` (the fates change).
    """
    from .edits import load_edits, recompute_results, replay_edits
    from .pipeline import recompute, retire_previous
    from .results import read_results, run_record, write_results

    auto_dir = out / "auto"
    if not (auto_dir / "spines.csv").exists():
        raise InputError(auto_dir, "is missing, so the person's edits (edits.json) cannot be "
                         "replayed with new parameters; restore auto/, or move edits.json "
                         "away to treat the tables as plain results")
    edits = load_edits(out)
    auto = read_results(auto_dir)
    spines, overrides, skipped = replay_edits(auto, edits)
    _check_project_in_step(out, stored, auto, spines, overrides)
    refit_auto = (recompute_fates or params.fates.restore_radius_um
                  != auto.params.fates.restore_radius_um)
    auto = recompute(auto, progress=progress, fates=refit_auto, params=params)
    res = recompute_results(auto, spines, overrides, edits=edits, skipped=skipped,
                            progress=progress)
    records = run_record(auto_dir), run_record(out)
    retire_previous(out, project=True, scores=refit)  # an interruption: incomplete
    written = write_results(auto, auto_dir, extra_params=records[0])
    written += write_results(res, out, extra_params=records[1])
    return res, written


def _auto_params(out: Path):
    """The parameters a project's ``auto/params.json`` records (None without one)."""
    from .params import Params

    path = out / "auto" / "params.json"
    return Params.load(path) if path.exists() else None


def _check_project_in_step(out: Path, stored, auto, spines: pd.DataFrame,
                           overrides: dict[int, str]) -> None:
    """Refuse a project whose top-level tables do not follow from ``auto/`` and its edits.

    Replaying the edits would silently drop changes made to ``spines.csv`` or
    ``fates.csv`` by hand (or left by an older spinetrack that re-classified a
    project's fates without the person's hand-set fates).
    """
    from .edits import fates_with_overrides

    fix = ("edited by hand, or re-classified without the hand-set fates by an older "
           "spinetrack); new parameters rebuild a project's tables from auto/ and edits.json, "
           "which would replace it: make changes in napari, open and save the project in "
           "napari to rebuild the tables first, or move edits.json and auto/ away to treat "
           "the tables as plain results")
    if not _same_spines(stored.spines, spines):
        raise InputError(out / "spines.csv", "differs from auto/spines.csv with the edits in "
                         f"edits.json replayed ({fix}")
    fates = fates_with_overrides(spines.reset_index(drop=True), auto.n_sessions,
                                 auto.params.fates.restore_radius_um, overrides)
    if not _same_fates(stored.fates, fates):
        raise InputError(out / "fates.csv", "differs from the fates of auto/ with the edits "
                         f"in edits.json replayed ({fix}")


def _same_spines(a: pd.DataFrame, b: pd.DataFrame, atol_um: float = 0.01) -> bool:
    """The same spine observations (id, session, position in µm) in both tables."""
    cols = ["spine_id", "session", "z_um", "y_um", "x_um"]
    if len(a) != len(b) or not all(c in a.columns and c in b.columns for c in cols):
        return False
    a = a[cols].sort_values(["session", "spine_id"]).to_numpy(float)
    b = b[cols].sort_values(["session", "spine_id"]).to_numpy(float)
    return bool(np.array_equal(a[:, :2], b[:, :2]) and np.allclose(a[:, 2:], b[:, 2:],
                                                                   atol=atol_um, rtol=0))


def _same_fates(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """The same presence and fate for every spine_id."""
    if len(a) != len(b):
        return False
    key = ["spine_id", "present", "fate"]
    a = a.sort_values("spine_id")[key].astype(str).reset_index(drop=True)
    b = b.sort_values("spine_id")[key].astype(str).reset_index(drop=True)
    return bool(a.equals(b))
