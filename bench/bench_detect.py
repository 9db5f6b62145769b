"""Accuracy and speed of dendrite tracing and spine detection (``spinetrack.detect``).

    python -m bench detect                  # full run (about 5 minutes on 2 cores)
    python -m bench.bench_detect --quick    # one rr30a session, one seed, no timing

Writes ``bench/results/detect.md``:

1. Accuracy on rr30a-dev: precision, recall and F1 of the spine detections of
   each session against the person's annotations, restricted to spines within
   3 µm of the annotated centre lines (``compare(..., near_um=3)``; match within
   1.2 µm laterally and 2.5 µm axially), how much of the annotated centre
   lines the tracing found, and the missed annotated spines by cause
   (:func:`miss_causes`).
2. Accuracy on the synthetic ``realistic`` preset (one session, seeds 0–2):
   against every truth spine, and against the spines the generator marks
   ``visible`` (the others are counted as neither found nor missed: too dim, or
   hidden by the shaft, see ``spinetrack.synth.series._visible``).
3. Speed: ``detect_session`` (trace + detect) on crops of rr30a session 0 of
   three sizes, each in a fresh process, with its peak resident memory
   (includes reading the stack); the full 70×1024×1024 stack is timed 3 times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bench import write_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _rr30a() -> Path:
    for candidate in (os.environ.get("SPINETRACK_RR30A"), REPO.parent / "shared" / "data" /
                      "rr30a-dev", Path("/work/shared/data/rr30a-dev")):
        if candidate and (Path(candidate) / "truth_spines.csv").exists():
            return Path(candidate)
    raise SystemExit("rr30a-dev not found; set SPINETRACK_RR30A")


# --------------------------------------------------------------------------- accuracy


def rr30a_scores(sessions=(0, 1, 2)) -> list[dict]:
    """Detection scores and centre-line coverage on each rr30a-dev session."""
    from scipy.spatial import cKDTree

    from spinetrack.compare import compare, distance_to_lines, load_truth
    from spinetrack.detect import detect_session
    from spinetrack.io import read_session
    from spinetrack.params import Params

    folder = _rr30a()
    truth = load_truth(folder)
    truth_lines = pd.read_csv(folder / "truth_lines.csv")
    rows = []
    for k in sessions:
        session = read_session(folder / f"session{k}.tif")
        tracing, found = detect_session(session, Params())
        spines = found[found["kind"] == "spine"].assign(session=k)
        total = compare(spines, truth, near_um=3, sessions=[k])["detection"]["total"]
        lines = truth_lines[truth_lines["session"] == k]
        d, _ = cKDTree(tracing.lines[["y_um", "x_um"]]).query(lines[["y_um", "x_um"]])
        truth_k = truth.spines[truth.spines["session"] == k].reset_index(drop=True)
        counted = ((distance_to_lines(truth_k, truth.lines) <= 3)
                   & ~truth_k["is_bad"].to_numpy(bool))
        rows.append({"session": k, "tp": total["tp"], "fp": total["fp"], "fn": total["fn"],
                     "precision": total["precision"], "recall": total["recall"],
                     "f1": total["f1"], "lines_found": float((d < 1.0).mean()),
                     "n_branches": tracing.n_branches,
                     "n_filopodia": int((found["kind"] == "filopodium").sum()),
                     **miss_causes(session, tracing, spines, truth_k, counted)})
    return rows


def synthetic_scores(seeds=(0, 1, 2), preset: str = "realistic") -> list[dict]:
    """Detection scores on one session of synthetic series (all and visible truth).

    Each row also counts the visible truth spines missed by cause
    (:func:`miss_causes`).
    """
    from spinetrack.compare import SeriesTables, compare
    from spinetrack.detect import detect_session
    from spinetrack.params import Params
    from spinetrack.synth import make_series

    rows = []
    for seed in seeds:
        syn = make_series(preset=preset, n_sessions=1, seed=seed)
        tracing, found = detect_session(syn.series[0], Params())
        spines = found[found["kind"] == "spine"].assign(session=0)
        truth = syn.truth["spines"].query("session == 0")
        row = {"seed": seed, "n_truth": len(truth), "n_visible": int(truth["visible"].sum())}
        for name, t in (("all", truth), ("visible", truth.assign(is_bad=~truth["visible"]))):
            total = compare(spines, SeriesTables.from_frames(t), sessions=[0])["detection"]["total"]
            row.update({f"{name}_{key}": total[key]
                        for key in ("tp", "fp", "fn", "precision", "recall", "f1")})
        row.update(miss_causes(syn.series[0], tracing, spines, truth,
                               truth["visible"].to_numpy(bool)))
        rows.append(row)
    return rows


MISS_CAUSES = ("untraced", "no candidate", "rejected", "merged", "other")


def miss_causes(session, tracing, spines: pd.DataFrame, truth: pd.DataFrame,
                counted: np.ndarray) -> dict:
    """Count the truth spines that ``spines`` misses, by where they were lost.

    ``spines`` are matched to all of ``truth`` (as ``compare`` does); missed rows
    of ``truth`` where ``counted`` is true are counted.

    ``untraced``: no traced centre line within 1.5 µm across (y, x) and 2.5 µm in z
    of the spine's base; ``no candidate``: no residual maximum of the detector
    within the matching tolerance; ``rejected``: the nearest such candidate failed
    a selection test; ``merged``: a detection within the tolerance was matched to
    another truth spine (close pairs); ``other``: the rest (e.g. removed as a
    duplicate). ``rejected_by`` maps each selection test (``detect._margins``) to
    (rejected spines failing it, of them failing it alone).
    """
    from scipy.spatial import cKDTree

    from spinetrack.compare import AXIAL_UM, LATERAL_UM, match_points
    from spinetrack.detect import _candidates, _select
    from spinetrack.params import Params

    counts = dict.fromkeys(MISS_CAUSES, 0)
    t_um = truth[["z_um", "y_um", "x_um"]].to_numpy(float)
    d_um = spines[["z_um", "y_um", "x_um"]].to_numpy(float)
    ri, ti = match_points(d_um, t_um)
    missed = np.setdiff1d(np.flatnonzero(counted), ti)
    if not len(missed):
        return counts
    scale = np.array([1 / AXIAL_UM, 1 / LATERAL_UM, 1 / LATERAL_UM])
    params = Params().detect
    cands, frame = _candidates(session.image, session.voxel_size_um, tracing, params, None)
    feats = (_select(cands, frame, params, features=True) if cands is not None and len(cands)
             else None)
    margins = [c for c in (feats.columns if feats is not None else []) if c.startswith("margin_")]
    counts["rejected_by"] = {}
    lines = tracing.lines[["z_um", "y_um", "x_um"]].to_numpy(float)
    voxel = np.asarray(session.voxel_size_um, float)
    base = truth[["base_z", "base_y", "base_x"]].to_numpy(float) * voxel
    taken = np.zeros(len(spines), bool)
    taken[ri] = True
    for i in missed:
        near = (np.hypot(*(lines[:, 1:] - base[i, 1:]).T) <= 1.5) & (
            np.abs(lines[:, 0] - base[i, 0]) <= 2.5) if len(lines) else np.zeros(0, bool)
        if not near.any():
            counts["untraced"] += 1
            continue
        if len(d_um) and (np.abs((d_um - t_um[i]) * scale).max(axis=1) <= 1)[taken].any():
            counts["merged"] += 1
            continue
        if feats is None or not len(feats):
            counts["no candidate"] += 1
            continue
        c_um = feats[["z_um", "y_um", "x_um"]].to_numpy(float)
        d, j = cKDTree(c_um * scale).query(t_um[i] * scale)
        if d > np.sqrt(2) or np.hypot(*(c_um[j, 1:] - t_um[i, 1:])) > LATERAL_UM:
            counts["no candidate"] += 1
        elif not feats["keep"].iloc[j]:
            counts["rejected"] += 1
            failed = [c[len("margin_"):] for c in margins if feats[c].iloc[j] < 0]
            for test in failed:
                fails, alone = counts["rejected_by"].get(test, (0, 0))
                counts["rejected_by"][test] = (fails + 1, alone + (len(failed) == 1))
        else:
            counts["other"] += 1
    return counts


# --------------------------------------------------------------------------- speed


def _timing(path: str, shape: tuple[int, int, int]) -> dict:
    """Run in a fresh process: read, crop, trace + detect; seconds and peak RSS."""
    import resource

    from spinetrack.detect import detect_session
    from spinetrack.io import Session, read_session

    session = read_session(path)
    nz, ny, nx = shape
    image = np.ascontiguousarray(session.image[:nz, :ny, :nx])
    crop = Session(image=image, voxel_size_um=session.voxel_size_um, name=session.name)
    t0 = time.perf_counter()
    tracing, found = detect_session(crop)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"shape": list(image.shape), "seconds": seconds, "peak_rss_mb": rss,
            "n_branches": tracing.n_branches, "n_spines": int((found["kind"] == "spine").sum())}


def _timed_subprocess(path: Path, shape) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.bench_detect", "--timing", str(path),
                          *map(str, shape)], capture_output=True, text=True, check=True,
                         cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(repeats: int = 3) -> tuple[list[dict], list[dict]]:
    path = _rr30a() / "session0.tif"
    full = [_timed_subprocess(path, (70, 1024, 1024)) for _ in range(repeats)]
    sizes = [_timed_subprocess(path, shape) for shape in ((70, 384, 384), (70, 512, 1024))]
    return full, sizes + [min(full, key=lambda r: r["seconds"])]


# --------------------------------------------------------------------------- report


def _fmt(x, digits=3):
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def write_report(rr, syn, full, sizes, seconds_total: float) -> Path:
    lines = [
        "## detect",
        "",
        f"`python -m bench detect` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{seconds_total:.0f} s). Default parameters throughout.",
        "",
        "### rr30a-dev (person's annotations, within 3 µm of the annotated centre lines)",
        "",
        "Match within 1.2 µm laterally and 2.5 µm axially; the annotated point is the "
        "spine tip, the detection the head's brightness peak. `lines found`: fraction of "
        "the annotated centre line with a traced line within 1 µm.",
        "",
        "| session | TP | FP | FN | precision | recall | F1 | lines found | branches | "
        "filopodia |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rr:
        lines.append(f"| {r['session']} | {r['tp']} | {r['fp']} | {r['fn']} | "
                     f"{_fmt(r['precision'])} | {_fmt(r['recall'])} | {_fmt(r['f1'])} | "
                     f"{_fmt(r['lines_found'], 2)} | {r['n_branches']} | {r['n_filopodia']} |")
    if rr and all(c in rr[0] for c in MISS_CAUSES):
        lines += ["", "Annotated spines missed, by cause (as for the synthetic spines below; "
                      "`no candidate` and `rejected` look within the matching tolerance of the "
                      "annotated tip):", ""]
        lines += _cause_table(rr, "session")
        lines += ["", "The selection tests the `rejected` spines fail (a spine can fail several; "
                      "`alone`: the only test it fails; see `detect._margins`):", ""]
        lines += _rejected_table(rr)
    if syn:
        lines += [
            "",
            "### Synthetic `realistic` preset (one session per seed)",
            "",
            "`visible`: truth spines the generator marks not visible are ignored: noise-free "
            "head peak below `min_snr` (2) noise SDs, or hidden by the shaft (head within "
            "0.3 µm of the shaft surface across the line and 2 µm of its centre in z).",
            "",
            "| seed | truth (visible) | F1 all | P all | R all | F1 visible | P visible | "
            "R visible |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in syn:
            lines.append(f"| {r['seed']} | {r['n_truth']} ({r['n_visible']}) | "
                         f"{_fmt(r['all_f1'])} | {_fmt(r['all_precision'])} | "
                         f"{_fmt(r['all_recall'])} | {_fmt(r['visible_f1'])} | "
                         f"{_fmt(r['visible_precision'])} | {_fmt(r['visible_recall'])} |")
        lines.append(f"| mean | | {_fmt(float(np.mean([r['all_f1'] for r in syn])))} | | | "
                     f"{_fmt(float(np.mean([r['visible_f1'] for r in syn])))} | | |")
        if all(c in syn[0] for c in MISS_CAUSES):
            lines += [
                "",
                "Visible truth spines missed, by cause (`bench_detect.miss_causes`): "
                "`untraced` no centre line near the base; `no candidate` no residual maximum "
                "within the matching tolerance; `rejected` the nearest candidate failed a "
                "selection test; `merged` a detection within the tolerance matched another "
                "spine (close pairs); `other` the rest.",
                "",
            ]
            lines += _cause_table(syn, "seed")
    if full:
        secs = [r["seconds"] for r in full]
        lines += [
            "",
            "### Speed (trace + detect, one session, fresh process each)",
            "",
            f"Full rr30a session 0 (70×1024×1024 uint8), {len(full)} runs: median "
            f"{np.median(secs):.1f} s (runs {', '.join(f'{s:.1f}' for s in secs)}), peak RSS "
            f"{max(r['peak_rss_mb'] for r in full):.0f} MB (including the stack as read).",
            "",
            "| stack (z, y, x) | seconds | peak RSS MB | branches | spines |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in sizes:
            lines.append(f"| {'×'.join(map(str, r['shape']))} | {r['seconds']:.1f} | "
                         f"{r['peak_rss_mb']:.0f} | {r['n_branches']} | {r['n_spines']} |")
    return write_result("detect", "\n".join(lines))


def _cause_table(rows: list[dict], key: str) -> list[str]:
    """Markdown rows of missed spines by cause, one per session or seed and a total."""
    out = [f"| {key} | missed | " + " | ".join(MISS_CAUSES) + " |",
           "| --- | --- | " + " | ".join("---" for _ in MISS_CAUSES) + " |"]
    total = {key: "total", **{c: sum(r[c] for r in rows) for c in MISS_CAUSES}}
    for r in rows + [total]:
        out.append(f"| {r[key]} | {sum(r[c] for c in MISS_CAUSES)} | "
                   + " | ".join(str(r[c]) for c in MISS_CAUSES) + " |")
    return out


def _rejected_table(rows: list[dict]) -> list[str]:
    """Markdown rows: per selection test, the rejected spines failing it (and alone), summed."""
    total: dict[str, list[int]] = {}
    for r in rows:
        for test, (fails, alone) in r.get("rejected_by", {}).items():
            t = total.setdefault(test, [0, 0])
            t[0] += fails
            t[1] += alone
    out = ["| test | fails | alone |", "| --- | --- | --- |"]
    for test, (fails, alone) in sorted(total.items(), key=lambda kv: -kv[1][0]):
        out.append(f"| {test} | {fails} | {alone} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_detect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run, not for the record")
    parser.add_argument("--timing", nargs=4, metavar=("PATH", "Z", "Y", "X"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timing:
        path, *shape = args.timing
        print(json.dumps(_timing(path, tuple(int(s) for s in shape))))
        return 0
    t0 = time.perf_counter()
    if args.quick:
        for row in rr30a_scores((1,)) + synthetic_scores((0,)):
            print(row)
        return 0
    rr = rr30a_scores()
    syn = synthetic_scores()
    full, sizes = speed()
    out = write_report(rr, syn, full, sizes, time.perf_counter() - t0)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
