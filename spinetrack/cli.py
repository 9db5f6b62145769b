"""The ``spinetrack`` command line.

Every sub-command is a thin layer over a library function. Errors a user can
fix (bad input, bad parameters) print one line and exit with status 2; nothing
already written is damaged, because every output is written atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import Cancelled, SpinetrackError
from .files import output_folder

log = logging.getLogger("spinetrack")

EXIT_OK, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 2, 3, 130


# --------------------------------------------------------------------------- commands


def _add_info(sub) -> None:
    p = sub.add_parser(
        "info", help="show shape, type and voxel size of session files",
        description="Read each session file as spinetrack would and print its shape, pixel "
                    "type, voxel size in µm and intensity range. Use it to check metadata "
                    "before a run.")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="TIFF files, or one folder")
    _voxel_option(p)
    _examples(p, "spinetrack info session0.tif session1.tif session2.tif",
              "spinetrack info data/animal1/            # every TIFF in the folder",
              "spinetrack info plain.tif --voxel-size 1 0.12 0.12")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    """One line per session; a bad file is reported and the others are still read."""
    from pathlib import Path

    from .errors import InputError
    from .io import read_series, session_paths

    paths = []
    for p in args.sessions:  # folders stand for their TIFF files
        paths += session_paths(p) if Path(p).is_dir() else [Path(p)]
    i, bad = 0, 0
    for path in paths:
        try:
            series = read_series([path], voxel_size_um=args.voxel_size)
        except InputError as exc:
            print(f"spinetrack: error: {exc}", file=sys.stderr)
            bad += 1
            continue
        for s in series:
            vz, vy, vx = s.voxel_size_um
            print(f"{i}\t{s.name}\t{s.path}\tshape (z, y, x) {s.shape}\t{s.image.dtype}\t"
                  f"voxel (z, y, x) {vz:g} × {vy:g} × {vx:g} µm\t"
                  f"range {s.image.min()}–{s.image.max()}")
            i += 1
    return EXIT_INPUT if bad else EXIT_OK


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="score a result against a person's (or synthetic) annotations",
        description="Score RESULT_DIR (spines.csv, and fates.csv if tracked) against "
                    "TRUTH_DIR (rr30a-style truth_*.csv, a synthetic truth folder, or another "
                    "results folder): detection precision/recall/F1 per session, link "
                    "precision/recall between consecutive sessions, a fate confusion matrix "
                    "and restored-spine precision/recall. Prints a table and writes JSON. "
                    "Definitions: docs/compare.md.")
    _examples(p, "spinetrack compare rr ../shared/data/rr30a-dev --near 3   # a person's "
              "annotations",
              "spinetrack compare results demo/truth                     # synthetic truth",
              "spinetrack compare mine theirs                            # two results folders")
    p.add_argument("result", metavar="RESULT_DIR", help="results folder to score")
    p.add_argument("truth", metavar="TRUTH_DIR", help="folder with the truth")
    p.add_argument("--lateral-um", type=float, default=1.2, metavar="UM",
                   help="largest (y, x) distance between a detection and its truth spine, µm "
                        "(default 1.2)")
    p.add_argument("--axial-um", type=float, default=2.5, metavar="UM",
                   help="largest z distance between a detection and its truth spine, µm "
                        "(default 2.5)")
    p.add_argument("--near", type=float, default=None, metavar="UM",
                   help="score only spines within UM µm (3-D) of the truth's traced centre "
                        "lines of the same session (for partly annotated fields, e.g. 3 for "
                        "rr30a-dev; default: score every spine)")
    p.add_argument("--sessions", type=int, nargs="+", metavar="S",
                   help="score only these sessions (0-based); fates need all sessions")
    p.add_argument("--visible-only", action="store_true",
                   help="ignore truth spines a synthetic truth marks not visible (hidden behind "
                        "the shaft in z or below the noise)")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="where to write the scores (default RESULT_DIR/compare.json; not "
                        "written by default when RESULT_DIR is itself a truth folder)")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from pathlib import Path

    from .compare import compare, format_scores, load_result, load_truth, write_scores
    from .errors import InputError

    result, truth = load_result(args.result), load_truth(args.truth)
    scores = compare(result, truth, lateral_um=args.lateral_um, axial_um=args.axial_um,
                     near_um=args.near, sessions=args.sessions,
                     visible_only=args.visible_only)
    print(format_scores(scores))
    if not args.json and result.format != "result":
        # never write into a truth folder (rr30a-dev, synthetic truth) uninvited
        log.warning("%s is a %s truth folder: scores not saved there; give --json PATH to "
                    "save them", args.result, result.format)
        return EXIT_OK
    out = Path(args.json) if args.json else Path(args.result) / "compare.json"
    try:
        write_scores(scores, out)
    except OSError as exc:
        if args.json:
            raise InputError(out, f"cannot write ({exc.strerror or exc})") from None
        log.warning("could not write %s (%s); give --json PATH to save the scores elsewhere",
                    out, exc.strerror or exc)
        return EXIT_OK
    print(f"\nscores written to {out}")
    return EXIT_OK


def _add_report(sub) -> None:
    from .params import add_arguments

    p = sub.add_parser(
        "report", help="recompute a results folder's statistics and rewrite its report",
        description="Recompute branches.csv and the statistics in summary.json from a results "
                    "folder's spines.csv and fates.csv (with lines.csv and sessions.csv when "
                    "present), then write report.html and figures/*.png. Use it after editing "
                    "the tables by hand. Parameters default to the folder's params.json; the "
                    "options below override them. In a folder corrected in napari (edits.json "
                    "and auto/), new parameters or re-classified fates are applied to auto/ and "
                    "the person's edits are replayed on top, hand-set fates included.")
    _examples(p, "spinetrack report results",
              "spinetrack report results --restore-radius 3     # fates re-classified",
              "spinetrack report results --recompute-fates      # after editing spines.csv")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a spinetrack results folder")
    p.add_argument("--recompute-fates", action="store_true",
                   help="re-classify fates.csv from spines.csv first (after editing spines.csv)")
    p.add_argument("--title", default="spinetrack report", help="title of report.html")
    add_arguments(p, ("fates", "stats"))
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from pathlib import Path

    from .params import Params, params_from_args
    from .progress import TqdmProgress
    from .report import rebuild_report

    stored = Path(args.results_dir) / "params.json"
    params = params_from_args(args, Params.load(stored) if stored.exists() else Params())
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        res, written = rebuild_report(args.results_dir, params,
                                      recompute_fates=args.recompute_fates, progress=bar,
                                      title=args.title)
    finally:
        bar.close()
    _print_findings(res, args.quiet)
    log.info("wrote %d files; open %s", len(written), written[-1])
    return EXIT_OK


def _add_run(sub) -> None:
    from .params import add_arguments

    p = sub.add_parser(
        "run", help="run the whole pipeline on one series and write a results folder",
        description=("Trace dendrites and detect spines in every session, register the sessions "
                    "to the first, link spines across sessions, classify fates (stable, lost, "
                    "formed, transient, restored), test loss clustering and restoration, and "
                    "write DIR: spines.csv, fates.csv, branches.csv, summary.json, lines.csv, "
                    "sessions.csv, registration.csv/.json, params.json (reproduces the run), "
                    "report.html and figures/*.png (docs/outputs.md describes every column). "
                    "Nothing in DIR is touched until everything is computed; a person's "
                    "edits.json in DIR is re-applied on top of the new results."))
    _examples(p, "spinetrack run day0.tif day4.tif day7.tif --out results --days 0 4 7",
              "spinetrack run stacks/ --out results --voxel-size 1 0.12 0.12",
              "spinetrack run series4d.tif --out results --params old/params.json")
    p.add_argument("sessions", nargs="+", metavar="SESSION",
                   help="session TIFFs in chronological order, one folder of them, or one 4-D "
                        "(t, z, y, x) TIFF")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created)")
    _voxel_option(p)
    _order_option(p)
    p.add_argument("--names", nargs="+", metavar="NAME", help="one name per session")
    p.add_argument("--days", nargs="+", type=_day, metavar="DAY",
                   help="day of each session (enables per-day rates)")
    p.add_argument("--params", metavar="PARAMS.json",
                   help="start from the parameters of an earlier run (its params.json); the "
                        "options below override them")
    p.add_argument("--no-report", action="store_true", help="skip report.html and figures")
    add_arguments(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    import time
    from pathlib import Path

    from .io import read_series
    from .params import Params, params_from_args
    from .pipeline import run_and_write
    from .progress import TqdmProgress

    base = Params.load(args.params) if args.params else Params()
    params = params_from_args(args, base)
    t0 = time.perf_counter()
    _check_order(args)
    series = read_series(args.sessions, voxel_size_um=args.voxel_size, names=args.names,
                         days=args.days)
    output_folder(args.out)
    log.info("%d sessions (%s), %s", len(series), ", ".join(series.names), _voxel_text(series))
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        res = run_and_write(series, args.out, params, progress=bar,
                            report_html=not args.no_report)
    finally:
        bar.close()
    _print_findings(res, args.quiet)
    out = Path(args.out)
    log.info("done in %.0f s; results in %s%s", time.perf_counter() - t0, out,
             "" if args.no_report else f" (open {out / 'report.html'})")
    return EXIT_OK


def _add_batch(sub) -> None:
    from .params import add_arguments

    p = sub.add_parser(
        "batch", help="run many series (animals) from a manifest, locally or on a dask cluster",
        description=("Run the whole pipeline ('spinetrack run') on every series of a "
                          "manifest (CSV: one row per session; YAML: one entry per series; "
                          "docs/batch.md), each into DIR/<animal>[_<series>]/, then combine "
                          "them: cohort_branches.csv, cohort_summary.csv/.json (per series and "
                          "pooled per condition) and cohort_report.html. A failing series is "
                          "recorded in DIR/batch_status.csv and does not stop the others; "
                          "series already complete with the same inputs and parameters are "
                          "skipped. Exit status 1 if any series failed."))
    _examples(p, "spinetrack batch fixtures/cohort.csv --out cohort --workers 2",
              "spinetrack batch cohort.yaml --out cohort --scheduler tcp://10.0.0.5:8786",
              "spinetrack batch cohort.csv --out cohort --serial --restore-radius 2.5")
    p.add_argument("manifest", metavar="MANIFEST", help="manifest .csv or .yaml (relative paths "
                   "inside it are relative to its folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="batch output folder (created)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--workers", type=int, default=2, metavar="N",
                      help="worker processes of the embedded dask LocalCluster, one thread and "
                           "one series at a time each (default 2)")
    mode.add_argument("--scheduler", metavar="ADDRESS",
                      help="use a running dask scheduler (e.g. tcp://host:8786, or one started "
                           "by dask-jobqueue on SLURM); workers must see the files and DIR")
    mode.add_argument("--serial", action="store_true",
                      help="run the series one after another in this process, without dask")
    p.add_argument("--force", action="store_true",
                   help="redo series whose folder is already complete")
    p.add_argument("--memory-limit", default="auto", metavar="SIZE",
                   help="memory limit per local worker, e.g. 4GB (default auto: the machine's "
                        "memory shared by the workers; 0 for none)")
    p.add_argument("--params", metavar="PARAMS.json",
                   help="start from the parameters of an earlier run; the options below and "
                        "then the manifest's per-series values override them")
    p.add_argument("--no-report", action="store_true",
                   help="skip each series' report.html (the cohort report is still written)")
    p.add_argument("--title", default="spinetrack cohort report",
                   help="title of cohort_report.html")
    p.add_argument("--dry-run", action="store_true",
                   help="check the manifest and list the series and whether each would run")
    add_arguments(p)

    def _run(args) -> int:
        from .batch import command

        return command(args)

    p.set_defaults(func=_run)


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth", help="generate a synthetic series with known spines, fates and motion",
        description="Write OUT/session0.tif ... (ImageJ hyperstacks with voxel size) and "
                    "OUT/truth/ (spines, fates, lines, branches, sessions, filopodia and "
                    "puncta tables, truth.json) for a synthetic two-photon series of dendrites with "
                    "spines that are lost, formed and restored between sessions, with drift "
                    "and noise. Score a result with 'spinetrack compare RESULT OUT/truth'. "
                    "Details: docs/synth.md.")
    p.add_argument("out", metavar="OUT", help="folder to write (created if missing)")
    _examples(p, "spinetrack synth demo                      # 4 sessions, preset realistic",
              "spinetrack synth demo --preset hard --sessions 5 --seed 2",
              "spinetrack synth demo --days 0 1 7 14        # OUT first: --days takes every "
              "number after it",
              "spinetrack run demo --out demo_results && "
              "spinetrack compare demo_results demo/truth")
    p.add_argument("--preset", choices=("easy", "realistic", "hard"), default="realistic",
                   help="image quality and motion (default realistic: dim uint8 like rr30a)")
    p.add_argument("--sessions", type=int, default=4, metavar="N",
                   help="number of imaging sessions (default 4)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--null", action="store_true",
                   help="losses fall uniformly at random on all branches (no clustering)")
    p.add_argument("--days", type=_day, nargs="+", metavar="D",
                   help="day of each session (default 0 4 8 ...)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="image size in voxels (default: the preset's, 48 768 768 for realistic)")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args) -> int:
    from pathlib import Path

    from .progress import TqdmProgress
    from .synth import make_series, write_synth

    output_folder(args.out)
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        syn = make_series(args.preset, n_sessions=args.sessions, seed=args.seed,
                          null=args.null, days=args.days, shape=args.shape, progress=bar)
    finally:
        bar.close()
    write_synth(syn, args.out)
    out = Path(args.out)
    spines, fates = syn.truth["spines"], syn.truth["fates"]
    per = spines.groupby("session").size()
    n = len(syn.series)
    print(f"wrote {n} session{'s' if n != 1 else ''} to {out}: "
          + ", ".join(f"session{k}.tif" for k in range(len(syn.series))))
    print(f"truth in {out / 'truth'}: {len(syn.truth['branches'])} branches, "
          f"{fates['spine_id'].nunique()} spine identities, spines per session "
          + " ".join(str(int(per.get(k, 0))) for k in range(len(syn.series))))
    counts = fates["fate"].value_counts()
    print("fates: " + ", ".join(f"{f} {int(counts.get(f, 0))}" for f in
                                ("stable", "lost", "formed", "transient", "restored")))
    stress = syn.info["stress_branches"]
    if n < 2:
        print("one session: no losses or formations")
    elif args.null:
        print("losses: uniform (null)")
    else:
        k = syn.info["stress_transition"]
        print(f"losses were made more likely on branch(es) {' '.join(map(str, stress))} "
              f"between sessions {k} and {k + 1} (the truth's fates say how many happened)")
    return EXIT_OK


def _add_detect(sub) -> None:
    from .params import add_arguments

    p = sub.add_parser(
        "detect", help="trace dendrites and detect spines in one session",
        description="Trace the dendrites of one session and detect its spines. Writes "
                    "DIR/<name>_spines.csv (one row per spine head: position in pixels and µm, "
                    "branch, arc, base, side, length, head brightness and size, score; "
                    "filopodia are left out), DIR/<name>_filopodia.csv, DIR/<name>_lines.csv "
                    "(centre-line points) and DIR/<name>_graph.csv (one row per branch). "
                    "docs/detection.md explains the method and every parameter.")
    _examples(p, "spinetrack detect day0.tif --out detections",
              "spinetrack detect day4.tif --out detections",
              "spinetrack track day0.tif day4.tif --detections detections --out results "
              "--days 0 4")
    p.add_argument("session", metavar="SESSION", help="a TIFF stack (z, y, x) or plane (y, x)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--name", default=None, help="prefix of the output files (default: the "
                                                "file stem)")
    _voxel_option(p)
    add_arguments(p, ("trace", "detect"))
    p.set_defaults(func=_cmd_detect)


def _cmd_detect(args) -> int:
    from pathlib import Path

    from .detect import detect_session
    from .files import write_table_atomic
    from .io import read_session
    from .params import params_from_args
    from .progress import TqdmProgress

    params = params_from_args(args)
    session = read_session(args.session, voxel_size_um=args.voxel_size)
    output_folder(args.out)
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        tracing, found = detect_session(session, params, progress=bar)
    finally:
        bar.close()
    out = Path(args.out)
    name = args.name or session.name
    spines = found[found["kind"] == "spine"]
    written = [
        write_table_atomic(spines, out / f"{name}_spines.csv"),
        write_table_atomic(found[found["kind"] != "spine"], out / f"{name}_filopodia.csv"),
        write_table_atomic(tracing.lines, out / f"{name}_lines.csv"),
        write_table_atomic(tracing.graph, out / f"{name}_graph.csv"),
    ]
    log.info("%s: %d branches (%.0f µm), %d spines, %d filopodia; wrote %s", name,
             tracing.n_branches, float(tracing.graph["length_um"].sum()) if tracing.n_branches
             else 0.0, len(spines), len(found) - len(spines), ", ".join(str(w) for w in written))
    return EXIT_OK


def _add_track(sub) -> None:
    from .params import add_arguments

    p = sub.add_parser(
        "track", help="register sessions and link spines already detected in each session",
        description="Register every session to the first, match branches across sessions, "
                    "link the spines found by 'spinetrack detect' (DETECTIONS/<name>_spines.csv "
                    "and <name>_lines.csv per session), classify fates and write a results "
                    "folder (spines.csv, fates.csv, branches.csv, summary.json, lines.csv, "
                    "registration.csv/.json, sessions.csv, params.json). docs/tracking.md "
                    "explains the method and every parameter.")
    _examples(p, "spinetrack track day0.tif day4.tif --detections detections --out results "
              "--days 0 4",
              "spinetrack track day0.tif day4.tif --detections corrected/ --out results "
              "--params earlier/params.json")
    p.add_argument("sessions", nargs="+", metavar="SESSION",
                   help="session TIFFs in chronological order (their images are registered)")
    p.add_argument("--detections", required=True, metavar="DIR",
                   help="folder written by 'spinetrack detect' for every session")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created)")
    p.add_argument("--names", nargs="+", metavar="NAME",
                   help="file prefix of each session in DIR (default: the TIFF file stems)")
    p.add_argument("--days", nargs="+", type=_day, metavar="DAY",
                   help="day of each session (enables per-day rates)")
    p.add_argument("--params", metavar="PARAMS.json",
                   help="start from the parameters of an earlier run (its params.json); the "
                        "options below override them")
    _voxel_option(p)
    _order_option(p)
    add_arguments(p, ("register", "link", "fates", "stats"))
    p.set_defaults(func=_cmd_track)


def _cmd_track(args) -> int:
    from .io import read_series
    from .params import Params, params_from_args
    from .pipeline import results_from_tracked, write_run
    from .progress import TqdmProgress
    from .track import read_detections, track_series

    base = Params.load(args.params) if args.params else Params()
    params = params_from_args(args, base)
    _check_order(args)
    series = read_series(args.sessions, voxel_size_um=args.voxel_size, names=args.names,
                         days=args.days)
    tracings, detections = [], []
    for s in series:
        tracing, det = read_detections(args.detections, s.name, s)
        tracings.append(tracing)
        detections.append(det)
    output_folder(args.out)
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        tracked = track_series(series, tracings, detections, params, progress=bar)
        # tables written by 'spinetrack detect' carry the detector's score; a person's do not
        automatic = all("score" in d.columns for d in detections)
        res = results_from_tracked(series, tracked, params, progress=bar,
                                   calls="automatic" if automatic else None)
    finally:
        bar.close()
    write_run(res, args.out, report_html=False)
    counts = res.fates["fate"].value_counts()
    print(f"{res.fates.shape[0]} spines tracked over {len(series)} sessions: "
          + ", ".join(f"{f} {int(counts.get(f, 0))}" for f in
                      ("stable", "lost", "formed", "transient", "restored")))
    for r in res.registration.itertuples():
        log.info("session %d: shift (z, y, x) %.2f %.2f %.2f µm, rotation %.2f°, centre-line "
                 "residual %.2f µm", r.session, r.shift_z_um, r.shift_y_um, r.shift_x_um,
                 r.rotation_deg, r.residual_um)
    log.info("results in %s", args.out)
    return EXIT_OK


def _add_learn(sub) -> None:
    from .learn import COMBINE, MODEL_KINDS
    from .params import add_arguments

    p = sub.add_parser(
        "learn", help="learn the detector's selection from a person's corrected spines",
        description=("Label the detector's candidate heads in the given sessions from a "
                          "person's spines (a candidate matching a person's spine is a spine; "
                          "one near the person's centre lines matching none is not), fit a "
                          "small classifier and write it as JSON. Apply it with 'spinetrack "
                          "run/detect --detector-model MODEL.json' on sessions of the same kind "
                          "of data. docs/learn.md gives the measured gains and the caveats."))
    _examples(p, "spinetrack learn day0.tif --spines corrected_run/ --out model.json",
              "spinetrack learn session0.tif --spines truth_spines.csv --lines truth_lines.csv "
              "--out model.json",
              "spinetrack run day0.tif day4.tif --out results --detector-model model.json")
    p.add_argument("sessions", nargs="+", metavar="SESSION",
                   help="the corrected sessions' TIFFs; the k-th is session k of the spines "
                        "table unless --sessions says otherwise")
    p.add_argument("--spines", required=True, metavar="TABLE_OR_DIR",
                   help="the person's spines: a table (session, z_um, y_um, x_um; optional "
                        "branch_id, is_bad), a results folder corrected in napari, or an "
                        "rr30a-style truth folder")
    p.add_argument("--lines", metavar="TABLE",
                   help="the person's centre lines (session, z_um, y_um, x_um, branch_id, "
                        "point); negatives are taken within --near of them (default: a "
                        "folder's lines, else the traced branches holding a person's spine)")
    p.add_argument("--sessions", dest="annotation_sessions", type=int, nargs="+", metavar="S",
                   help="session number in the spines table of each SESSION")
    _order_option(p)
    p.add_argument("--out", required=True, metavar="MODEL.json", help="model file (written)")
    p.add_argument("--kind", choices=MODEL_KINDS, default="boosting",
                   help="classifier: gradient-boosted trees or logistic regression "
                        "(default boosting)")
    p.add_argument("--combine", choices=COMBINE, default="veto",
                   help="veto: keep what the hand-set tests and the model both accept "
                        "(default; never adds a spine); replace: the model alone; add: "
                        "either")
    p.add_argument("--near", type=float, default=3.0, metavar="UM",
                   help="negatives lie within UM µm of the person's centre lines (default 3)")
    _voxel_option(p)
    add_arguments(p, ("trace", "detect"))
    p.set_defaults(func=_cmd_learn)


def _cmd_learn(args) -> int:
    from pathlib import Path

    from .errors import InputError
    from .io import read_series
    from .learn import learn_detector, read_annotations
    from .params import params_from_args
    from .progress import TqdmProgress

    params = params_from_args(args)
    if params.detect.detector_model:
        raise InputError(None, "--detector-model is for run/detect; learning starts from the "
                               "hand-set tests' candidates")
    if args.annotation_sessions is None:  # the k-th file is session k of the spines
        _check_order(args)
    spines, lines = read_annotations(args.spines, args.lines)
    series = read_series(args.sessions, voxel_size_um=args.voxel_size)
    output_folder(Path(args.out).parent)
    bar = TqdmProgress(disable=args.quiet or not sys.stderr.isatty())
    try:
        model = learn_detector(list(series), spines, lines,
                               annotation_sessions=args.annotation_sessions, params=params,
                               kind=args.kind, near_um=args.near, combine=args.combine,
                               provenance={"spines": str(args.spines),
                                           "lines": args.lines,
                                           "images": [str(s.path) for s in series]},
                               progress=bar)
    finally:
        bar.close()
    out = model.save(args.out)
    prov = model.provenance
    corr = prov.get("corrections") or {}
    whose = ("the person's spines" if corr.get("n_added") is None else
             f"the corrected project's spines ({corr['n_added'] + corr['n_removed']} changed by "
             f"{corr['n_edits']} edit(s), the rest the detector's)")
    print(f"learned from {prov['n_person_spines']} of {whose} in {len(series)} "
          f"session(s) ({prov['n_positive']} candidate heads labelled spine, "
          f"{prov['n_negative']} not); threshold {model.threshold:.2f} ({model.combine}); "
          f"wrote {out}")
    return EXIT_OK


COMMANDS: list[Callable] = [_add_info, _add_run, _add_detect, _add_compare, _add_report,
                            _add_synth, _add_track, _add_batch, _add_learn]


# --------------------------------------------------------------------------- shared options


def _print_findings(res, quiet: bool = False) -> None:
    """Print a run's findings in a few lines (not with -q); its warnings go to the log."""
    from .report import findings

    for line in ([] if quiet else findings(res.summary, res.branches)):
        print(line)
    for w in res.summary.get("warnings", []):
        log.warning("warning: %s", w)


def _voxel_text(series) -> str:
    """The voxel size of a series, or of each session when they differ (µm, z × y × x)."""
    def fmt(v) -> str:
        return " × ".join(f"{x:g}" for x in v)

    sizes = [tuple(s.voxel_size_um) for s in series]
    if len(set(sizes)) == 1:
        return f"voxel {fmt(sizes[0])} µm"
    return "voxel per session " + ", ".join(f"{s.name} {fmt(v)}" for s, v in zip(series, sizes)) \
        + " µm"


def _fill(text: str) -> str:
    """Wrap a description for formatters that keep line breaks (RawDescription)."""
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size((100, 24)).columns, 100) - 2
    return textwrap.fill(text, width)


def _examples(p: argparse.ArgumentParser, *lines: str) -> None:
    """Give a subcommand an examples epilog (its description is wrapped to the terminal)."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = _fill(p.description or "")
    p.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _day(text: str) -> float:
    """A session's day for ``--days``; a file or folder name there gets a hint.

    ``--days`` takes every number after it, so files or an output folder
    written after it are read as days.
    """
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day number; put --days after the files and folders") from None


def _voxel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size in µm; overrides the files' metadata (ImageJ spacing and "
                        "resolution, or OME PhysicalSize)")


def _order_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-given", action="store_true",
                   help="take the session files in the order given even when the numbers in "
                        "their names say otherwise (by default session1 session10 session2, "
                        "as a shell's * lists them, is refused; a folder is always read in "
                        "natural order: session2 before session10)")


def _check_order(args) -> None:
    """Stop when explicitly listed session files look out of time order (unless --as-given)."""
    from .io import check_session_order

    if not args.as_given:
        check_session_order(args.sessions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinetrack",
        description="Find dendritic spines in two-photon stacks, follow them across imaging "
                    "days, classify their fates (stable, lost, formed, transient, restored) "
                    "and test whether losses cluster on branches. Lengths are in µm.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'spinetrack COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"spinetrack {__version__}")
    _general_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():  # 'spinetrack run ... -q' works as well
        _general_options(command, default=argparse.SUPPRESS)
    return parser


def _general_options(p: argparse.ArgumentParser, default) -> None:
    """-v, -q and --debug, before or after the command.

    After the command they default to ``argparse.SUPPRESS``, so they only set
    what is given there and never undo what was given before the command.
    """
    p.add_argument("-v", "--verbose", action="count",
                   default=0 if default is None else default,
                   help="more log messages (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true",
                   default=False if default is None else default,
                   help="no progress bars and no findings on the terminal: warnings and errors "
                        "only (the files are written as always)")
    p.add_argument("--debug", action="store_true", default=False if default is None else default,
                   help="show a full traceback on unexpected errors")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.INFO if verbose <= 1 else logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"
                                           if verbose > 1 else "%(message)s"))
    root = logging.getLogger("spinetrack")
    root.handlers[:] = [handler]
    root.setLevel(level if verbose or quiet else logging.INFO)
    root.propagate = False


def _outcome(exc: BaseException, prefix: str = "") -> str:
    """What a stopped command left on disk: the note the writer added, if any.

    With no note and no ``prefix`` (an interruption), the general promise: every
    file is written atomically, so none is half-written.
    """
    notes = getattr(exc, "__notes__", None)
    if notes:
        return prefix + str(notes[-1])
    return "" if prefix else "files already written are whole (each is written atomically)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spinetrack`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or EXIT_OK)
    except Cancelled as exc:
        print(f"spinetrack: cancelled; {_outcome(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt as exc:
        print(f"spinetrack: interrupted; {_outcome(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SpinetrackError as exc:
        print(f"spinetrack: error: {exc}{_outcome(exc, '; ')}", file=sys.stderr)
        return EXIT_INPUT
    except MemoryError:
        print("spinetrack: error: out of memory; try fewer workers or smaller stacks",
              file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback unasked
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"spinetrack: internal error: {type(exc).__name__}: {first} "
              f"(run with --debug for the traceback, and please report it){_outcome(exc, '; ')}",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
