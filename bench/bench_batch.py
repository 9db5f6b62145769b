"""Throughput of ``spinetrack batch`` on a local dask cluster with 1 and 2 workers.

    python -m bench batch                 # 8 realistic series, 1 and 2 workers (~15 min)
    python -m bench.bench_batch --quick   # 4 small series, not for the record

Generates synthetic series (``spinetrack.synth.make_series``, preset
``realistic``, 3 sessions each; cached in ``--data``), writes a manifest, then runs
``spinetrack batch MANIFEST --out DIR --workers N --force`` in a fresh process for
each N and reads ``batch_status.csv``. Writes ``bench/results/batch.md``: wall
time, series per minute, speed-up over one worker, per-series seconds, peak
resident memory per worker, and whether both runs gave identical tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench import publish

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_data(data: Path, n_series: int, n_sessions: int, shape) -> tuple[Path, float | None]:
    """Synthetic series in ``data/s<i>/`` (reused if present) and a manifest over them."""
    from spinetrack.synth import make_series, write_synth

    t0 = time.perf_counter()
    generated = 0
    rows = ["animal,condition,session,day"]
    for i in range(n_series):
        folder = data / f"s{i}"
        if not (folder / "truth" / "truth.json").exists():
            log(f"generating series {i + 1}/{n_series} {shape or 'preset shape'}")
            syn = make_series("realistic", n_sessions=n_sessions, seed=100 + i, shape=shape)
            write_synth(syn, folder)
            generated += 1
        cond = "A" if i % 2 == 0 else "B"
        for k in range(n_sessions):
            rows.append(f"b{i},{cond},s{i}/session{k}.tif,{4 * k}")
    manifest = data / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, (time.perf_counter() - t0) if generated else None


def run(manifest: Path, out: Path, workers: int) -> dict:
    """One ``spinetrack batch`` in a fresh process; wall time and the status table."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "spinetrack", "-q", "batch", str(manifest), "--out", str(out),
           "--workers", str(workers), "--force", "--no-report"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    status = pd.read_csv(out / "batch_status.csv", keep_default_na=False)
    return {"workers": workers, "wall": wall, "exit": proc.returncode, "status": status,
            "load_before": load, "load_after": os.getloadavg()[0],
            "stderr": proc.stderr.strip().splitlines()[-3:]}


def same_tables(a: Path, b: Path, keys) -> bool:
    for key in keys:
        for name in ("spines.csv", "fates.csv", "branches.csv"):
            fa, fb = a / key / name, b / key / name
            if not (fa.exists() and fb.exists()) or fa.read_bytes() != fb.read_bytes():
                return False
    return True


def machine() -> str:
    mem_kb = next((int(line.split()[1]) for line in open("/proc/meminfo")
                   if line.startswith("MemTotal")), 0)
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
            f"{mem_kb / 2**20:.0f} GB, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 small series, not for the record")
    parser.add_argument("--series", type=int, default=None, help="number of series (default 8)")
    parser.add_argument("--sessions", type=int, default=3, help="sessions per series")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shape", type=int, nargs=3, default=[70, 1024, 1024],
                        metavar=("Z", "Y", "X"),
                        help="session size in voxels (default: the size of the rr30a-dev data)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/spinetrack-bench-batch"),
                        help="where the synthetic series and outputs go (reused)")
    args = parser.parse_args(argv)
    n_series = args.series or (4 if args.quick else 8)
    shape = (16, 200, 200) if args.quick else tuple(args.shape)
    data = args.data / ("quick" if args.quick else "realistic_{}x{}x{}".format(*shape))
    data.mkdir(parents=True, exist_ok=True)
    manifest, gen_seconds = make_data(data, n_series, args.sessions, shape)
    from spinetrack.io import read_session

    first = read_session(data / "s0" / "session0.tif")
    runs = []
    for w in args.workers:
        log(f"batch with {w} worker(s)")
        runs.append(run(manifest, data / f"out_w{w}", w))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO).stdout.strip()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    base = runs[0]
    keys = list(base["status"]["key"])
    lines = [
        "## batch: throughput on a local dask cluster",
        "",
        f"Command: `python -m bench batch` (bench/bench_batch.py), {when}, commit {commit}, "
        f"on {machine()}. The machine is shared with other engineers' work: load average is "
        "given per run, and timings vary with it.",
        "",
        f"Data: {n_series} synthetic series (preset `realistic` at the size of the rr30a-dev "
        f"data, seeds 100–{100 + n_series - 1})"
        f", {args.sessions} sessions each of {first.shape[0]} × {first.shape[1]} × "
        f"{first.shape[2]} voxels ({first.image.dtype}, voxel "
        f"{' × '.join(f'{v:g}' for v in first.voxel_size_um)} µm); "
        + (f"generated in {gen_seconds:.0f} s" if gen_seconds is not None
           else "generated by an earlier run (cached)") + " (not timed below)."
        f" Each run: `spinetrack batch manifest.csv --out "
        "DIR --workers N --force --no-report` in a fresh process (cluster start-up, all series, "
        "cohort tables and cohort report included).",
        "",
        "| workers | wall s | series done / failed | series per minute | speed-up | "
        "median s per series | median CPU s per series | CPU share | peak RSS per worker | "
        "load before → after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        st = r["status"]
        done = int((st["status"] == "done").sum())
        failed = int((st["status"] != "done").sum())
        spm = done / (r["wall"] / 60) if r["wall"] else float("nan")
        secs = pd.to_numeric(st["seconds"], errors="coerce")
        rss = pd.to_numeric(st["worker_peak_rss_mb"], errors="coerce")
        cpu = pd.to_numeric(st["cpu_seconds"], errors="coerce")
        lines.append(f"| {r['workers']} | {r['wall']:.0f} | {done} / {failed} | {spm:.2f} | "
                     f"{base['wall'] / r['wall']:.2f}× | {secs.median():.0f} | "
                     f"{cpu.median():.0f} | {cpu.sum() / secs.sum():.0%} | {rss.max():.0f} MB | {r['load_before']:.1f} → {r['load_after']:.1f} |")
    lines.append("")
    for r in runs:
        bad = r["status"][r["status"]["status"] != "done"]
        for _, row in bad.iterrows():
            lines.append(f"- {r['workers']} worker(s): {row['key']} {row['status']}: "
                         f"{row['error']}")
    if len(runs) > 1:
        same = same_tables(data / f"out_w{runs[0]['workers']}",
                           data / f"out_w{runs[-1]['workers']}", keys)
        lines.append(f"Tables (spines, fates, branches) of the {runs[0]['workers']}- and "
                     f"{runs[-1]['workers']}-worker runs are "
                     f"{'byte-identical' if same else 'DIFFERENT'} for every series.")
    lines += [
        "",
        "Peak RSS per worker: the largest `worker_peak_rss_mb` in `batch_status.csv` (the "
        "worker process's peak resident memory after its last series). Speed-up is the 1-worker "
        "wall time over this run's; with 2 cores shared by several people, 2 workers cannot "
        "reach 2×. CPU share: the series' CPU time over their wall time, added up over the "
        "series: the fraction of a core a worker actually got (100% on an idle machine). A "
        "series is one single-threaded task, so on an idle machine with at least as many free "
        "cores as workers the wall time is about Σ CPU s / workers plus start-up.",
    ]
    text = "\n".join(lines) + "\n"
    return publish('batch', text, args.quick)


if __name__ == "__main__":
    sys.exit(main())
