"""Accuracy of a detector selection learned from a person's spines (``spinetrack.learn``).

    python -m bench learn                   # full run (about 4 minutes on 2 cores)
    python -m bench.bench_learn --quick     # protocol (a) only, printed

Writes ``bench/results/learn.md``. Every score is ``spinetrack.compare`` as in
``python -m bench detect`` (match within 1.2 µm laterally and 2.5 µm axially;
rr30a-dev within 3 µm of the annotated centre lines; synthetic against the
spines the generator marks visible). Candidates are found once per session
with default parameters; the default detection is those candidates with the
hand-set tests' verdict, the learned one with the model's
(:func:`spinetrack.learn.select_detections`, identical to the detector's hook).

Protocols
---------
(a) train on rr30a session 0 (the user's workflow: correct day 0), apply to
    sessions 1 and 2 (the same dendrites: optimistic).
(b) leave one branch out: train on four annotated segments of all three
    sessions (candidates within 3 µm of the fifth excluded), score the fifth;
    TP/FP/FN summed over the five folds.
(c) transfer: rr30a (all) -> synthetic ``realistic`` seeds 0-2, and synthetic
    seed 0 -> rr30a.
(d) a person whose convention differs from the hand-set tests: synthetic
    truth with only lateral spines (none straight above or below the shaft);
    train on seed 0, apply to seeds 1 and 2; and the same with fewer annotated
    branches of seed 0 (how many spines are needed).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from bench import publish
from bench.bench_detect import _rr30a

#: (classifier, how its verdict meets the hand-set tests'), as measured
CONFIGS = (("boosting", "veto"), ("boosting", "replace"), ("logistic", "replace"))


def _candidates_rr30a():
    from spinetrack.io import read_session
    from spinetrack.learn import session_candidates

    folder = _rr30a()
    return [session_candidates(read_session(folder / f"session{k}.tif")) for k in range(3)]


def _candidates_synth(seeds=(0, 1, 2)):
    from spinetrack.learn import session_candidates
    from spinetrack.synth import make_series

    out = []
    for seed in seeds:
        syn = make_series(preset="realistic", n_sessions=1, seed=seed)
        out.append((session_candidates(syn.series[0]),
                    syn.truth["spines"].query("session == 0").reset_index(drop=True),
                    syn.truth["lines"].query("session == 0").reset_index(drop=True)))
    return out


def _counts(total: dict) -> np.ndarray:
    return np.array([total["tp"], total["fp"], total["fn"]])


def _prf(c) -> tuple[float, float, float]:
    tp, fp, fn = (int(v) for v in c)
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    return p, r, 2 * tp / max(2 * tp + fp + fn, 1)


def _score_rr(det, k, truth, lines=None) -> np.ndarray:
    from spinetrack.compare import SeriesTables, compare

    tab = SeriesTables.from_frames(truth.spines if lines is None else truth,
                                   lines=truth.lines if lines is None else lines, n_sessions=3)
    spines = det[det["kind"] == "spine"].assign(session=k)
    return _counts(compare(spines, tab, near_um=3, sessions=[k])["detection"]["total"])


def _score_syn(det, truth) -> np.ndarray:
    from spinetrack.compare import SeriesTables, compare

    t = truth.assign(is_bad=~truth["visible"].astype(bool))
    spines = det[det["kind"] == "spine"].assign(session=0)
    return _counts(compare(spines, SeriesTables.from_frames(t), sessions=[0])
                   ["detection"]["total"])


def _apply(model, feats):
    from spinetrack.learn import candidate_features, select_detections

    return select_detections(feats, model.accepts(candidate_features(feats)))


def _default(feats):
    from spinetrack.learn import select_detections

    return select_detections(feats)


def _row(label, c) -> str:
    p, r, f = _prf(c)
    return f"| {label} | {int(c[0])} | {int(c[1])} | {int(c[2])} | {p:.3f} | {r:.3f} | {f:.3f} |"


HEAD = ["| | TP | FP | FN | precision | recall | F1 |", "| --- | --- | --- | --- | --- | --- | --- |"]


def protocol_a(rr, truth, kind, combine) -> tuple[list[str], object]:
    from spinetrack.learn import learn_from_candidates

    model = learn_from_candidates([rr[0]], truth.spines, truth.lines, [0], kind=kind,
                                  combine=combine)
    rows = []
    for k in range(3):
        rows.append(_row(f"session {k} default", _score_rr(_default(rr[k]), k, truth)))
        rows.append(_row(f"session {k} learned ({kind}, {combine})"
                         + (" *training session*" if k == 0 else ""),
                         _score_rr(_apply(model, rr[k]), k, truth)))
    return rows, model


def protocol_b(rr, truth, kind, combine) -> list[str]:
    from spinetrack.compare import distance_to_lines
    from spinetrack.learn import learn_from_candidates

    T, L = truth.spines, truth.lines
    sums = {k: np.zeros((2, 3), int) for k in range(3)}
    for b in sorted(T["branch_id"].unique()):
        cands = []
        for k in range(3):
            d = distance_to_lines(rr[k][["z_um", "y_um", "x_um"]].assign(session=k),
                                  L[L["branch_id"] == b])
            cands.append(rr[k][d > 3].reset_index(drop=True))
        model = learn_from_candidates(cands, T[T["branch_id"] != b], L[L["branch_id"] != b],
                                      [0, 1, 2], kind=kind, combine=combine)
        held = T.assign(is_bad=T["is_bad"].astype(bool) | (T["branch_id"] != b))
        for k in range(3):
            sums[k][0] += _score_rr(_default(rr[k]), k, held, L[L["branch_id"] == b])
            sums[k][1] += _score_rr(_apply(model, rr[k]), k, held, L[L["branch_id"] == b])
    rows = []
    for k in range(3):
        rows.append(_row(f"session {k} default", sums[k][0]))
        rows.append(_row(f"session {k} learned ({kind}, {combine})", sums[k][1]))
    return rows


def protocol_c(rr, truth, syn, combine) -> list[str]:
    from spinetrack.learn import learn_from_candidates

    rows = []
    m_rr = learn_from_candidates(rr, truth.spines, truth.lines, [0, 1, 2], combine=combine)
    f0, t0, l0 = syn[0]
    m_syn = learn_from_candidates([f0], t0.assign(is_bad=~t0["visible"].astype(bool)), l0, [0],
                                  combine=combine)
    for s, (f, t, _) in enumerate(syn):
        rows.append(_row(f"synthetic seed {s} default", _score_syn(_default(f), t)))
        rows.append(_row(f"synthetic seed {s} learned on rr30a (3 sessions)",
                         _score_syn(_apply(m_rr, f), t)))
        rows.append(_row(f"synthetic seed {s} learned on synthetic seed 0"
                         + (" *training session*" if s == 0 else ""),
                         _score_syn(_apply(m_syn, f), t)))
    for k in range(3):
        rows.append(_row(f"rr30a session {k} default", _score_rr(_default(rr[k]), k, truth)))
        rows.append(_row(f"rr30a session {k} learned on synthetic seed 0",
                         _score_rr(_apply(m_syn, rr[k]), k, truth)))
    return rows


def protocol_d(syn, combine) -> list[str]:
    """A lateral-only annotator; with all of seed 0's branches and with fewer."""
    from spinetrack.learn import learn_from_candidates

    lateral = [(f, t[t["side"] != 0].reset_index(drop=True), ln) for f, t, ln in syn]
    f0, t0, l0 = lateral[0]
    branches = sorted(t0["branch_id"].unique())
    rows = []
    for s in (1, 2):
        rows.append(_row(f"seed {s} default", _score_syn(_default(lateral[s][0]),
                                                        lateral[s][1])))
    for n in (1, 2, 4, len(branches)):
        keep = branches[:n]
        tr, ln = t0[t0["branch_id"].isin(keep)], l0[l0["branch_id"].isin(keep)]
        model = learn_from_candidates([f0], tr, ln, [0], combine=combine)
        n_vis = int(tr["visible"].sum())
        for s in (1, 2):
            rows.append(_row(f"seed {s} learned from {n} branch(es) of seed 0 "
                             f"({n_vis} visible spines)",
                             _score_syn(_apply(model, lateral[s][0]), lateral[s][1])))
    return rows


def main(argv=None) -> int:
    from spinetrack.compare import load_truth

    ap = argparse.ArgumentParser(prog="python -m bench learn", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="protocol (a) only, printed")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    truth = load_truth(_rr30a())
    rr = _candidates_rr30a()
    lines = [
        "## learn",
        "",
        f"`python -m bench learn` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        "{seconds} s). A detector selection learned from a person's spines "
        "(`spinetrack learn`, docs/learn.md) against the default hand-set tests, on the "
        "same candidates. Scores as `python -m bench detect` (rr30a-dev within 3 µm of the "
        "annotated lines; synthetic against visible truth spines).",
        "",
    ]
    for kind, combine in CONFIGS:
        rows, model = protocol_a(rr, truth, kind, combine)
        lines += [f"### (a) train on rr30a session 0, apply to sessions 1, 2 ({kind}, "
                  f"{combine}; threshold {model.threshold:.2f}, out-of-fold F1 on session 0 "
                  f"{model.provenance['out_of_fold_f1']:.3f})", "", *HEAD, *rows, ""]
        if args.quick:
            break
    if not args.quick:
        for kind, combine in CONFIGS:
            lines += [f"### (b) leave one annotated branch out, all sessions ({kind}, "
                      f"{combine})", "", *HEAD, *protocol_b(rr, truth, kind, combine), ""]
        syn = _candidates_synth()
        for combine in ("veto", "replace"):
            lines += ["### (c) transfer between rr30a-dev and the synthetic `realistic` "
                      f"preset (boosting, {combine})", "", *HEAD,
                      *protocol_c(rr, truth, syn, combine), ""]
        for combine in ("veto", "replace"):
            lines += ["### (d) an annotator who marks only lateral spines (synthetic, "
                      f"boosting, {combine})", "", "Truth: the visible synthetic spines with "
                      "`side != 0`. The default detector also finds spines straight above or "
                      "below the shaft.", "", *HEAD, *protocol_d(syn, combine), ""]
    text = "\n".join(lines).replace("{seconds}", f"{time.perf_counter() - t_start:.0f}")
    return publish("learn", text, quick=args.quick)


if __name__ == "__main__":
    raise SystemExit(main())
