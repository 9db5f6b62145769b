"""Accuracy and speed of registration, branch matching and linking (``spinetrack.track``).

    python -m bench track                  # full run (a few minutes on 2 cores)
    python -m bench.bench_track --quick    # rr30a and speed only (not for the record)

Writes ``bench/results/track.md``:

1. rr30a-dev: the person's own spines (``truth_spines.csv`` without ``spine_id``)
   and centre lines (``truth_lines.csv``) of each session go through
   ``track_series`` with the real images; links, fates and restorations are
   scored with ``spinetrack.compare`` against the person's identities, for
   several search ranges. Registration time of one 70×1024×1024 pair.
2. Synthetic ``realistic`` and ``hard`` series, seeds 0–2 (``spinetrack.synth.make_series``):
   every truth spine of each session (also those too dim to see), moved by a
   little noise (0.15 µm in y and x, 0.4 µm in z, head and base independently),
   and the truth centre lines, through ``track_series``; scored against the truth.
3. Speed: linking and classifying 10,000 spine observations over 10 sessions.
4. Wrong links on rr30a-dev (both inputs), counted by cause
   (``spinetrack.track.link_errors``); ``--crops DIR`` also saves a PNG of the
   registered maximum projections around each (see :func:`save_crops`), and a
   global assignment (Hungarian, sum of scaled distances) is compared with
   trackpy's on the same placed spines.
"""

from __future__ import annotations

import argparse
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from spinetrack.compare import SeriesTables, compare, load_truth
from spinetrack.fates import classify_fates
from spinetrack.params import LinkParams, Params, RegisterParams
from spinetrack.register import register_series
from spinetrack.trace import tracing_from_lines
from spinetrack.track import link_errors, link_placed, track_series

from bench import write_result

HERE = Path(__file__).resolve().parent
RR30A = Path("/work/shared/data/rr30a-dev")


def _find_rr30a() -> Path | None:
    import os

    for c in (os.environ.get("SPINETRACK_RR30A"), HERE.parent.parent / "shared" / "data" /
              "rr30a-dev", RR30A):
        if c and (Path(c) / "truth_spines.csv").exists():
            return Path(c)
    return None


def _tracings(lines: pd.DataFrame, series) -> list:
    return [tracing_from_lines(lines[lines["session"] == k], s.voxel_size_um, s.image.shape)
            for k, s in enumerate(series)]


def _scores(tracked, truth, n) -> dict:
    sc = compare(SeriesTables.from_frames(tracked.spines, tracked.fates, n_sessions=n), truth)
    links, rest = sc["links"]["total"], sc["restored"]
    return {"link_p": links["precision"], "link_r": links["recall"],
            "fate_acc": sc["fates"]["accuracy"], "restored_p": rest.get("precision"),
            "restored_r": rest.get("recall")}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


# --------------------------------------------------------------------------- rr30a


def bench_rr30a(folder: Path, crops: Path | None = None) -> list[str]:
    from spinetrack.io import read_series

    series = read_series([folder / f"session{k}.tif" for k in range(3)])
    lines = pd.read_csv(folder / "truth_lines.csv")
    spines = pd.read_csv(folder / "truth_spines.csv")
    tracings = _tracings(lines, series)
    dets = [spines[spines["session"] == k].drop(columns=["spine_id"]).assign(kind="spine")
            for k in range(3)]
    truth = load_truth(folder)
    out = ["### rr30a-dev (the person's spines and centre lines, real images)", ""]
    t0 = time.perf_counter()
    register_series(series[:2], None, RegisterParams())
    t_img = time.perf_counter() - t0
    t0 = time.perf_counter()
    reg = register_series(series, tracings, RegisterParams())
    t_all = time.perf_counter() - t0
    out += [f"Registration, images only, one 70×1024×1024 pair: {t_img:.1f} s. "
            f"All three sessions with centre-line refinement: {t_all:.1f} s.", "",
            "| session | shift z µm | shift y µm | shift x µm | rotation deg | residual µm "
            "| pairs |", "|---|---|---|---|---|---|---|"]
    for r in reg.report.itertuples():
        out.append(f"| {r.session} | {r.shift_z_um:.2f} | {r.shift_y_um:.2f} | "
                   f"{r.shift_x_um:.2f} | {r.rotation_deg:.2f} | {r.residual_um:.2f} | "
                   f"{r.n_pairs} |")
    out += ["", "| search range µm | refine rounds | measured range | tracks cut | "
            "link precision | link recall | fate accuracy | restored P | restored R | "
            "range (spreads) |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = Params()
    settings = [(sr, base.link.refine_iterations, True, True) for sr in (1.5, 2.0, 2.5, 3.0)]
    settings += [(2.0, base.link.refine_iterations, True, False)]
    settings += [(sr, base.link.refine_iterations, False, False) for sr in (1.5, 2.0, 2.5)]
    settings += [(2.0, 0, True, True)]
    for sr, it, adaptive, cut in settings:
        p = base.replace(search_range_um=sr, refine_iterations=it, adaptive_range=adaptive,
                         split_inconsistent=cut)
        tracked = track_series(series, tracings, dets, p, registration=reg)
        s = _scores(tracked, truth, 3)
        spread = tracked.spines.attrs.get("link_spread")
        n_cut = (spread or {}).get("n_split", "–") if cut else "off"
        out.append(f"| {sr} | {it} | {'yes' if adaptive else 'no'} | {n_cut} | "
                   f"{_fmt(s['link_p'])} | {_fmt(s['link_r'])} | "
                   f"{_fmt(s['fate_acc'])} | {_fmt(s['restored_p'])} | "
                   f"{_fmt(s['restored_r'])} | "
                   f"{'–' if not spread else format(spread['range'], '.1f')} |")
        print(out[-1], flush=True)
    own = bench_rr30a_detected(series, truth)
    out += [""] + own[0]
    base_run = track_series(series, tracings, dets, base, registration=reg)
    runs = {"person's spines and lines": (base_run, reg), "spinetrack's own": own[1]}
    out += [""] + bench_wrong_links(series, truth, runs, crops)
    return out + [""]


def bench_rr30a_detected(series, truth) -> tuple[list[str], tuple]:
    """The same with spinetrack's own tracing and detection (the `run` pipeline's inputs).

    Returns the table's lines and (Tracked with default parameters, Registration).
    """
    from spinetrack.detect import detect_session

    tracings, dets = [], []
    for s in series:
        tracing, found = detect_session(s, Params())
        tracings.append(tracing)
        dets.append(found)
    reg = register_series(series, tracings, RegisterParams())
    out = ["With spinetrack's own tracing and detection (`detect_session`, default "
           "parameters), scored within 3 µm of the person's lines; link precision/recall over "
           "links whose two ends were both detected:", "",
           "| search range µm | measured range | tracks cut | link precision | link recall | "
           "reach along branch µm |", "|---|---|---|---|---|---|"]
    for sr, adaptive, cut in [(1.5, True, True), (1.5, False, False), (2.0, True, True),
                              (2.0, True, False), (2.0, False, False), (2.5, True, True),
                              (2.5, False, False)]:
        p = Params().replace(search_range_um=sr, adaptive_range=adaptive,
                             split_inconsistent=cut)
        tracked = track_series(series, tracings, dets, p, registration=reg)
        sc = compare(SeriesTables.from_frames(tracked.spines, tracked.fates, n_sessions=3),
                     truth, near_um=3.0)["links"]["total"]
        spread = tracked.link_spread
        n_cut = (spread or {}).get("n_split", "–") if cut else "off"
        reach = "–" if not spread else format(spread["reach_along_branch_um"], ".2f")
        out.append(f"| {sr} | {'yes' if adaptive else 'no'} | {n_cut} | "
                   f"{_fmt(sc['precision'])} | {_fmt(sc['recall'])} | {reach} |")
        print(out[-1], flush=True)
    default = track_series(series, tracings, dets, Params(), registration=reg)
    return out, (default, reg)


def global_assignment(spines: pd.DataFrame, coords, scale, reach: float) -> pd.DataFrame:
    """Relink placed spines by one optimal assignment per branch and session pair.

    The cost of a link is the distance in ``coords`` divided by ``scale`` (not
    its square, as trackpy minimises); pairs further than ``reach`` cannot link;
    the most links are made, then the smallest total cost (Hungarian method).
    """
    from scipy.optimize import linear_sum_assignment

    from spinetrack.link import split_gaps

    sp = spines.reset_index(drop=True)
    pos = sp[list(coords)].to_numpy(float) / np.asarray(scale, float)
    ses, br = sp["session"].to_numpy(int), sp["branch_id"].to_numpy()
    pid = np.arange(len(sp))
    big = 1e9
    for k in range(1, ses.max() + 1 if len(sp) else 0):
        for g in np.unique(br):
            a = np.flatnonzero((ses == k - 1) & (br == g))
            b = np.flatnonzero((ses == k) & (br == g))
            if not len(a) or not len(b):
                continue
            d = np.linalg.norm(pos[a][:, None] - pos[b][None], axis=2)
            n, m = d.shape
            cost = np.full((n + m, m + n), big)
            cost[:n, :m] = np.where(d <= reach, d, big)
            cost[:n, m:][np.eye(n, dtype=bool)] = 10 * reach   # leaving a spine unlinked
            cost[n:, :m][np.eye(m, dtype=bool)] = 10 * reach
            cost[n:, m:] = 0.0
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols):
                if i < n and j < m and d[i, j] <= reach:
                    pid[b[j]] = pid[a[i]]
    return sp.assign(spine_id=split_gaps(pid, ses))


def save_crops(series, tracked, errors: pd.DataFrame, folder: Path, half_um: float = 8.0):
    """PNG of session k and k+1 (registered max projections) around every wrong link.

    Left: the earlier session, right: the later one, both warped onto session 0's
    grid. Every spine of the earlier session is marked red, of the later green;
    the two ends of the wrong link are circled (white).
    """
    from skimage.draw import circle_perimeter, disk
    from skimage.io import imsave

    folder.mkdir(parents=True, exist_ok=True)
    reg, sp = tracked.registration, tracked.spines
    vox = np.asarray(series[0].voxel_size_um, float)
    mips = {}
    for e in errors.itertuples():
        k = e.from_session
        for s in (k, k + 1):
            if s not in mips:
                img = series[s].image if s == 0 else reg.warp_image(
                    s, series[s].image, series[s].voxel_size_um)
                mips[s] = np.asarray(img, float).max(axis=0)
        ends = sp.loc[[e.index_a, e.index_b], ["ref_y_um", "ref_x_um"]].to_numpy() / vox[1:]
        cy, cx = ends.mean(axis=0).astype(int)
        h = int(half_um / vox[1])
        tiles = []
        for s in (k, k + 1):
            crop = mips[s][max(cy - h, 0):cy + h, max(cx - h, 0):cx + h]
            crop = np.clip(crop / max(np.percentile(crop, 99.5), 1e-9), 0, 1)
            rgb = np.repeat(crop[..., None], 3, axis=2)
            for ss, col in ((k, (1, 0, 0)), (k + 1, (0, 1, 0))):
                here = sp[sp.session == ss][["ref_y_um", "ref_x_um"]].to_numpy() / vox[1:]
                for y, x in here - [max(cy - h, 0), max(cx - h, 0)]:
                    rr, cc = disk((y, x), 2, shape=crop.shape)
                    rgb[rr, cc] = col
            for y, x in ends - [max(cy - h, 0), max(cx - h, 0)]:
                rr, cc = circle_perimeter(int(y), int(x), 6, shape=crop.shape)
                rgb[rr, cc] = 1.0
            tiles.append(rgb)
        pic = np.kron(np.concatenate(tiles, axis=1), np.ones((3, 3, 1)))
        name = f"{e.kind}_{e.cause.replace(' ', '-')}_s{k}_b{e.branch_a}_arc{e.arc_um:.0f}.png"
        imsave(folder / name, (pic * 255).astype(np.uint8), check_contrast=False)


def bench_wrong_links(series, truth, runs: dict, crops: Path | None) -> list[str]:
    """Wrong links by cause, and global assignment against trackpy, for each input."""
    from spinetrack.track import LINK_COORDS

    out = ["Wrong links by cause (`spinetrack.track.link_errors`, default parameters; "
           "*extra*: linked but two truth spines, *neighbour* if the earlier one is still "
           "there, *replacement* if not; *missed*: one truth spine not linked, *taken* when "
           "an end went to another detection):", "",
           "| input | extra: neighbour | extra: replacement | missed: taken | "
           "missed: beyond range | missed: other branch | missed: unlinked |",
           "|---|---|---|---|---|---|---|"]
    alt = ["", "Global assignment (Hungarian on the sum of scaled distances, same spreads and "
           "reach) against trackpy (smallest sum of squared distances), same placed spines:",
           "", "| input | trackpy P / R | global assignment P / R |", "|---|---|---|"]
    for name, (tracked, reg) in runs.items():
        near = None if name.startswith("person") else 3.0
        err = link_errors(tracked.spines, truth.spines,
                          reach_um=(tracked.link_spread or {}).get("reach_along_branch_um"))
        n = err.groupby(["kind", "cause"]).size()
        out.append(f"| {name} | " + " | ".join(str(int(n.get((kd, c), 0))) for kd, c in (
            ("extra", "neighbour"), ("extra", "replacement"), ("missed", "taken"),
            ("missed", "beyond range"), ("missed", "other branch"),
            ("missed", "unlinked"))) + " |")
        spread = tracked.link_spread
        if spread:
            relinked = global_assignment(tracked.spines, LINK_COORDS, spread["scale_um"],
                                         spread["range"])
            a = _link_pr(tracked.spines, tracked.fates, truth, near)
            b = _link_pr(relinked, classify_fates(relinked, len(series)), truth, near)
            alt.append(f"| {name} | {a} | {b} |")
        if crops is not None:
            save_crops(series, tracked, err, crops / name.split("'")[0].replace(" ", "_"))
    return out + alt


def _link_pr(spines, fates, truth, near) -> str:
    s = compare(SeriesTables.from_frames(spines, fates, n_sessions=int(spines.session.max()) + 1),
                truth, near_um=near)["links"]["total"]
    return f"{_fmt(s['precision'])} / {_fmt(s['recall'])}"


# --------------------------------------------------------------------------- synthetic


def perturbed_detections(spines: pd.DataFrame, voxel, rng, xy_um=0.15, z_um=0.4) -> list:
    """Truth spines of each session (visible or not), head and base moved by Gaussian noise."""
    vox = np.asarray(voxel, float)
    sp = spines[spines["kind"] == "spine"] if "kind" in spines else spines
    out = []
    for k in range(int(spines["session"].max()) + 1):
        d = sp[sp["session"] == k].drop(columns=["spine_id"]).copy()
        sd = np.array([z_um, xy_um, xy_um]) / vox
        for pre in ("", "base_"):
            cols = [f"{pre}{a}" for a in "zyx"]
            d[cols] = d[cols].to_numpy(float) + rng.normal(0, 1, (len(d), 3)) * sd
        d[["z_um", "y_um", "x_um"]] = d[["z", "y", "x"]].to_numpy(float) * vox
        d = d.drop(columns=["arc_um", "branch_id"])  # session-local values come from lines
        out.append(d.reset_index(drop=True))
    return out


def registration_error(reg, syn, n_points: int = 2000) -> tuple[float, float]:
    """Median and largest distance between our map and the true affine map of each session.

    Points are drawn uniformly in the stack (10% margin); the synthetic smooth warp
    (about 0.1 µm) is not part of the true map used here.
    """
    rng = np.random.default_rng(0)
    extent = np.asarray(syn.series[0].extent_um)
    pts = rng.uniform(0.1 * extent, 0.9 * extent, (n_points, 3))
    errors = []
    for k, t in enumerate(syn.info["transforms"]):
        if k == 0:
            continue
        a = np.asarray(t["session_to_reference_affine"], float)
        truth = pts @ a[:3, :3].T + a[:3, 3]
        errors.append(np.linalg.norm(reg.to_reference(k, pts) - truth, axis=1))
    e = np.concatenate(errors)
    return float(np.median(e)), float(np.max(e))


def _restored_counts(tracked, truth, n) -> tuple[int, int, int]:
    """(correct, found, truth) restorations, for pooling seeds."""
    r = compare(SeriesTables.from_frames(tracked.spines, tracked.fates, n_sessions=n),
                truth)["restored"]
    return r["correct"], r["n_result"], r["n_truth"]


def missed_restorations(tracked, truth_spines: pd.DataFrame, truth_fates: pd.DataFrame
                        ) -> list[dict]:
    """Every truth restoration the result misses (as ``spinetrack.compare`` counts them).

    For each: the truth spines the result track of the new spine's first
    observation is made of, and that track's split statistics
    (:func:`spinetrack.track.split_statistics`) against the limit of the cut.
    """
    from spinetrack.compare import match_spines
    from spinetrack.track import LINK_COORDS, split_statistics

    sp, spread = tracked.spines, tracked.link_spread or {}
    pairs = match_spines(sp, truth_spines)
    tid_of = pd.Series(truth_spines.loc[pairs["truth_index"], "spine_id"].to_numpy(),
                       index=pairs["result_index"].to_numpy())
    sp = sp.assign(tid=tid_of.reindex(sp.index).to_numpy())
    fate = tracked.fates.set_index("spine_id")
    rows = []
    for t in truth_fates[truth_fates["fate"] == "restored"].itertuples():
        first = truth_spines[truth_spines["spine_id"] == t.spine_id]["session"].min()
        at = sp[(sp["tid"] == t.spine_id) & (sp["session"] == first)]
        if not len(at):
            rows.append({"truth": t.spine_id, "track": "not detected"})
            continue
        sid = at["spine_id"].iloc[0]
        track = sp[sp["spine_id"] == sid].sort_values("session")
        if fate.at[sid, "fate"] == "restored" and set(track["tid"]) == {t.spine_id}:
            continue  # found, as spinetrack.compare counts it
        z = split_statistics(track[list(LINK_COORDS)].to_numpy(float)
                             / np.asarray(spread.get("scale_um", [1.0] * 4)))
        rows.append({"truth": t.spine_id, "lost": t.restored_from,
                     "track": " ".join(f"{int(k)}:{int(v) if pd.notna(v) else '?'}"
                                       for k, v in zip(track["session"], track["tid"])),
                     "fate": fate.at[sid, "fate"],
                     "split": " ".join(f"{v:.1f}" for v in z) or "–",
                     "limit": spread.get("measured_range", np.nan)})
    return rows


def bench_synth(preset: str, seeds, n_sessions: int = 4) -> list[str]:
    from spinetrack.synth import make_series

    rows = []
    pooled = {True: np.zeros(3, int), False: np.zeros(3, int)}
    missed: list[dict] = []
    for seed in seeds:
        syn = make_series(preset, n_sessions=n_sessions, seed=seed)
        tr = syn.truth
        tracings = _tracings(tr["lines"], syn.series)
        dets = perturbed_detections(tr["spines"], syn.series.voxel_size_um,
                                    np.random.default_rng(seed))
        truth = SeriesTables.from_frames(tr["spines"], tr["fates"], tr["lines"],
                                         n_sessions=n_sessions)
        t0 = time.perf_counter()
        tracked = track_series(syn.series, tracings, dets, Params())
        dt = time.perf_counter() - t0
        s = _scores(tracked, truth, n_sessions)
        uncut = track_series(syn.series, tracings, dets, Params().replace(
            split_inconsistent=False), registration=tracked.registration)
        s_uncut = _scores(uncut, truth, n_sessions)
        pooled[True] += _restored_counts(tracked, truth, n_sessions)
        missed += [dict(seed=seed, **m) for m in missed_restorations(
            tracked, tr["spines"], tr["fates"])]
        pooled[False] += _restored_counts(uncut, truth, n_sessions)
        s.update(cut=(tracked.link_spread or {}).get("n_split", 0),
                 uncut=(s_uncut["link_p"], s_uncut["link_r"], s_uncut["restored_p"],
                        s_uncut["restored_r"]))
        rep = tracked.registration.report
        s.update(seed=seed, seconds=dt, n=len(tracked.spines),
                 residual=float(np.nanmax(rep["residual_um"].iloc[1:])),
                 reg_error=registration_error(tracked.registration, syn))
        rows.append(s)
        print(preset, s, flush=True)
    out = [f"### synthetic `{preset}` ({n_sessions} sessions, truth spines + 0.15/0.4 µm "
           "noise, truth centre lines, images for registration)", "",
           "| seed | observations | link precision | link recall | fate accuracy | restored P "
           "| restored R | tracks cut | without the cut: link P / R, restored P / R "
           "| worst line residual µm | registration error µm (median / max) "
           "| track s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        u = " / ".join(_fmt(v) for v in s["uncut"][:2]) + ", " + " / ".join(
            _fmt(v) for v in s["uncut"][2:])
        out.append(f"| {s['seed']} | {s['n']} | {_fmt(s['link_p'])} | {_fmt(s['link_r'])} | "
                   f"{_fmt(s['fate_acc'])} | {_fmt(s['restored_p'])} | {_fmt(s['restored_r'])} "
                   f"| {s['cut']} | {u} "
                   f"| {s['residual']:.2f} | {s['reg_error'][0]:.2f} / {s['reg_error'][1]:.2f} "
                   f"| {s['seconds']:.1f} |")
    out.append("")
    for cut, label in ((True, "with the cut (default)"), (False, "without the cut")):
        c, found, t = pooled[cut]
        out.append(f"Restorations over seeds {', '.join(str(x) for x in seeds)}, {label}: "
                   f"{c} right of {found} found, of {t} in the truth: precision "
                   f"{_fmt(c / found if found else None)}, recall {_fmt(c / t if t else None)}.")
        out.append("")
    out += ["Truth restorations missed with the cut: the result track holding the new "
            "spine's first observation (session:truth spine of each observation), its fate, "
            "the split statistics between its sessions and the measured range (spreads; "
            "`track_limit` raises it a little for tracks of 3 or more sessions):", "",
            "| seed | truth spine | restored from | result track | fate | split statistics "
            "| range |", "|---|---|---|---|---|---|---|"]
    for m in missed:
        out.append(f"| {m['seed']} | {m['truth']} | {m.get('lost', '–')} | {m['track']} | "
                   f"{m.get('fate', '–')} | {m.get('split', '–')} | "
                   f"{format(m['limit'], '.1f') if 'limit' in m else '–'} |")
    return out + [""]


# --------------------------------------------------------------------------- speed


def placed_points(rng, n_obs: int = 10_000, n_sessions: int = 10, n_branches: int = 40):
    """A placed spine table (branch frame) of exactly ``n_obs`` observations.

    Spines 1–3 µm apart on both sides of each branch; each session 5% are lost
    and as many new ones appear at random sites; positions jitter by 0.2 µm.
    A few random observations are dropped (missed detections) to hit ``n_obs``.
    """
    per_branch = int(np.ceil(1.05 * n_obs / n_sessions / n_branches))
    rows = []
    for b in range(n_branches):
        arc = np.cumsum(rng.uniform(1.0, 3.0, per_branch))
        side = rng.choice([-1.0, 1.0], per_branch)
        length = rng.uniform(0.8, 2.0, per_branch)
        for k in range(n_sessions):
            if k:
                gone = rng.random(per_branch) < 0.05
                arc[gone] = rng.uniform(0, arc.max(), gone.sum())
                side[gone] = rng.choice([-1.0, 1.0], gone.sum())
                length[gone] = rng.uniform(0.8, 2.0, gone.sum())
            a = arc + rng.normal(0, 0.2, per_branch)
            rows.append(pd.DataFrame({
                "session": k, "branch_id": b, "arc_um": a,
                "head_arc_um": a + rng.normal(0, 0.2, per_branch),
                "lateral_um": side * (0.6 + length) + rng.normal(0, 0.2, per_branch),
                "depth_um": rng.normal(0, 0.4, per_branch),
                "z": 0.0, "y": 0.0, "x": 0.0, "z_um": 0.0, "y_um": 0.0, "x_um": 0.0,
                "length_um": length + rng.normal(0, 0.1, per_branch), "source": "auto"}))
    out = pd.concat(rows, ignore_index=True)
    keep = np.sort(rng.choice(len(out), n_obs, replace=False))
    return out.iloc[keep].reset_index(drop=True)


def bench_speed(rng) -> list[str]:
    """Link + classify time at two sizes: 10,000 observations, and 10,000 spines per session."""
    lines = ["### speed", ""]
    for n_obs, n_branches in ((10_000, 40), (100_000, 400)):
        placed = placed_points(rng, n_obs=n_obs, n_branches=n_branches)
        t0 = time.perf_counter()
        linked = link_placed(placed, LinkParams())
        t_link = time.perf_counter() - t0
        t0 = time.perf_counter()
        fates = classify_fates(linked, 10)
        t_fates = time.perf_counter() - t0
        lines.append(f"Link (with the drift refinement) and classify {len(placed)} observations "
                     f"({linked.spine_id.nunique()} spine ids, {len(fates)} fates) over 10 "
                     f"sessions on {n_branches} branches: link {t_link:.2f} s + fates "
                     f"{t_fates:.2f} s = {t_link + t_fates:.2f} s (requirement ≤ 5 s for "
                     "10,000 spines over 10 sessions).")
        lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench track")
    parser.add_argument("--quick", action="store_true", help="rr30a and speed only")
    parser.add_argument("--crops", type=Path, metavar="DIR",
                        help="save a PNG around every wrong link on rr30a-dev in DIR")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = datetime.now(timezone.utc)
    cmd = "python -m bench.bench_track --quick" if args.quick else "python -m bench track"
    out = ["## track: registration, branch matching, linking", "",
           f"`{cmd}`, {started:%Y-%m-%d %H:%M} UTC. Default parameters unless a column says "
           "otherwise (search range "
           f"{Params().link.search_range_um} µm, {Params().link.refine_iterations} refinement "
           "rounds). Link precision/recall: `spinetrack.compare`, over links whose two ends "
           "were detected (here every spine is given, so all of them).", ""]
    folder = _find_rr30a()
    if folder is not None:
        out += bench_rr30a(folder, args.crops)
    else:
        out += ["rr30a-dev not found (set SPINETRACK_RR30A).", ""]
    if not args.quick:
        out += bench_synth("realistic", (0, 1, 2))
        out += bench_synth("hard", (0, 1, 2))
    out += bench_speed(np.random.default_rng(0))
    text = "\n".join(out)
    print(text)
    print(f"wrote {write_result('track', text)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
