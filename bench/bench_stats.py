"""Calibration and speed of the branch statistics (``spinetrack.stats``).

    python -m bench stats                 # full run (about 10 minutes on 2 cores)
    python -m bench.bench_stats --quick   # a smoke run with few tables (not for the record)

Writes ``bench/results/stats.md``:

1. Size: over simulated null series (losses a random subset of session-0
   spines, new spines placed at random exactly as the chance model places
   them), how often each test rejects at 5%, with a Clopper–Pearson 95% CI.
2. Power: loss clustering with one branch losing at 3x the rate of the
   others (5–8 branches of 20–40 spines); loss spacing with a 3x and 6x loss
   rate in one 15 µm stretch per branch; restoration with 30% and 55% of new spines
   placed at lost sites.
3. Speed: ``branch_statistics`` on a table of about 10,000 spine identities,
   timed in a fresh process with its peak memory.
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
from scipy import stats as sps

from spinetrack.fates import classify_fates
from spinetrack.params import StatsParams
from spinetrack.stats import (
    benjamini_hochberg,
    branch_statistics,
    loss_clustering_test,
    loss_pvalues,
)

from bench import publish

HERE = Path(__file__).resolve().parent
ALPHA = 0.05


# --------------------------------------------------------------------------- simulation


def simulate_series(
    rng: np.random.Generator, n_sessions: int = 3, n_branches: tuple[int, int] = (5, 8),
    n_spines: tuple[int, int] = (20, 40), length_um: tuple[float, float] = (60.0, 90.0),
    p_loss: float = 0.15, p_form: float = 0.08, p_new_loss: float = 0.4,
    restore_fraction: float = 0.0, hot_zone_um: float = 0.0, hot_factor: float = 3.0,
    occupied_um: float = StatsParams().occupied_radius_um,
    relink_um: float = StatsParams().relink_radius_um, radius_um: float = 2.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random series: spines table (spine_id, session, branch_id, arc_um) and branch table.

    Session-0 spines are uniform on each branch and each is lost in each
    interval with probability ``p_loss`` (``hot_factor`` times that inside one
    random stretch of ``hot_zone_um`` per branch). In each interval
    ``Poisson(p_form * N)`` new spines appear; a new spine is lost in each later
    interval with probability ``p_new_loss``. New spines are placed uniformly
    outside ``occupied_um`` of the session-0 spines present and ``relink_um``
    of session-0 spines last seen in the session before (the chance model of
    the restoration test), except that with probability ``restore_fraction``
    a new spine is placed within ``radius_um`` of a random earlier lost site.
    """
    rows = []
    next_id = 0
    bt = []
    for b in range(int(rng.integers(n_branches[0], n_branches[1] + 1))):
        length = float(rng.uniform(*length_um))
        bt.append((b, length, 0.0, length))
        n0 = int(rng.integers(n_spines[0], n_spines[1] + 1))
        arc = list(rng.uniform(0, length, n0))
        first = [0] * n0
        last = [-1] * n0  # -1: still alive
        hot_lo = rng.uniform(0, max(0.0, length - hot_zone_um)) if hot_zone_um else np.inf
        for k in range(n_sessions - 1):
            alive = [i for i in range(len(arc)) if last[i] < 0]
            for i in alive:
                if first[i] == 0:
                    p = p_loss * (hot_factor if hot_lo <= arc[i] <= hot_lo + hot_zone_um else 1)
                else:
                    p = p_new_loss
                if rng.random() < min(p, 1.0):
                    last[i] = k
            a = np.asarray(arc)
            f_, l_ = np.asarray(first), np.asarray(last)
            s0 = f_ == 0
            occupied = a[s0 & (l_ < 0)]
            relinked = a[s0 & (l_ == k)]
            lost_sites = a[(l_ >= 0) & (l_ <= k)]

            def free(x: float) -> bool:
                return (np.all(np.abs(occupied - x) > occupied_um)
                        and np.all(np.abs(relinked - x) > relink_um))

            for _ in range(int(rng.poisson(p_form * len(alive)))):
                x = None
                if lost_sites.size and rng.random() < restore_fraction:
                    site = rng.choice(lost_sites)
                    for _ in range(200):
                        c = float(np.clip(site + rng.uniform(-radius_um, radius_um), 0, length))
                        if free(c):
                            x = c
                            break
                while x is None:
                    c = float(rng.uniform(0, length))
                    x = c if free(c) else None
                arc.append(x)
                first.append(k + 1)
                last.append(-1)
        for a, f, l_ in zip(arc, first, last):
            end = n_sessions - 1 if l_ < 0 else l_
            rows += [(next_id, s, b, a) for s in range(f, end + 1)]
            next_id += 1
    spines = pd.DataFrame(rows, columns=["spine_id", "session", "branch_id", "arc_um"])
    branches = pd.DataFrame(bt, columns=["branch_id", "length_um", "arc_start_um", "arc_end_um"])
    return spines, branches


def rate(k: int, n: int) -> str:
    ci = sps.binomtest(k, n).proportion_ci(method="exact")
    return f"{k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


# --------------------------------------------------------------------------- experiments


def clustering_counts(n_tables: int, base: float, factor: float, seed: int, n_perm: int):
    """Loss-count tables only: the clustering and per-branch tests."""
    rng = np.random.default_rng(seed)
    glob = hit = other = any_branch = 0
    n_other = 0
    for _ in range(n_tables):
        b = int(rng.integers(5, 9))
        n = rng.integers(20, 41, b)
        p = np.full(b, base)
        hot = int(rng.integers(b))
        p[hot] = min(1.0, base * factor)
        lost = rng.binomial(n, p)
        res = loss_clustering_test(lost, n, n_perm, rng)
        glob += res["p_value"] is not None and res["p_value"] < ALPHA
        q = benjamini_hochberg(loss_pvalues(lost, n))
        sig = np.nan_to_num(q, nan=1.0) < ALPHA
        any_branch += bool(sig.any())
        hit += bool(sig[hot])
        other += int(sig.sum() - sig[hot])
        n_other += b - 1
    return glob, hit, other, n_other, any_branch


def series_pvalues(n_tables: int, seed: int, n_perm: int, **kwargs):
    """Run branch_statistics on simulated series; return the three p-values per table."""
    rng = np.random.default_rng(seed)
    out = []
    observed = []
    for i in range(n_tables):
        spines, bt = simulate_series(rng, **kwargs)
        fates = classify_fates(spines, 3)
        _, sm = branch_statistics(spines, fates, bt, 3,
                                  StatsParams(n_permutations=n_perm, seed=seed * 100_000 + i))
        r = sm["restoration"]
        out.append((sm["loss_clustering"]["p_value"], sm["loss_spacing"]["p_value"],
                    r["p_value"]))
        observed.append((r["observed_fraction"], r["chance_fraction"], r["n_new"]))
    return np.array(out, dtype=float), np.array(observed, dtype=float)


def timing(n_branches: int, n_sessions: int) -> dict:
    """Time branch_statistics on a big simulated table (run in a fresh process)."""
    import resource

    rng = np.random.default_rng(0)
    spines, bt = simulate_series(rng, n_sessions=n_sessions,
                                 n_branches=(n_branches, n_branches))
    fates = classify_fates(spines, n_sessions)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    _, sm = branch_statistics(spines, fates, bt, n_sessions, StatsParams())
    seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n_ids": int(spines["spine_id"].nunique()), "n_rows": len(spines),
            "n_branches": n_branches, "n_sessions": n_sessions, "seconds": seconds,
            "n_new": sm["restoration"]["n_new"], "peak_rss_mb": rss1 / 1024,
            "rss_before_mb": rss0 / 1024}


def _timed_subprocess(n_branches: int, n_sessions: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.bench_stats", "--timing",
                          str(n_branches), str(n_sessions)], capture_output=True, text=True,
                         cwd=HERE.parent, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few tables, not for the record")
    parser.add_argument("--timing", nargs=2, type=int, metavar=("BRANCHES", "SESSIONS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timing:
        print(json.dumps(timing(*args.timing)))
        return 0
    n_counts = 100 if args.quick else 1000
    n_series = 40 if args.quick else 500
    n_perm = 10000
    started = time.perf_counter()
    load_before = os.getloadavg()
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # 1. clustering on count tables
    log("clustering: count tables")
    rows_null, rows_alt = [], []
    for base in (0.15, 0.3):
        g, _, _, n_other, anyb = clustering_counts(n_counts, base, 1.0, 1, n_perm)
        rows_null.append(f"| {base:.2f} | {n_counts} | {rate(g, n_counts)} | "
                         f"{rate(anyb, n_counts)} |")
    for base in (0.1, 0.15, 0.2):
        g, hit, other, n_other, _ = clustering_counts(n_counts, base, 3.0, 2, n_perm)
        rows_alt.append(f"| {base:.2f} → {3 * base:.2f} | {n_counts} | {rate(g, n_counts)} | "
                        f"{rate(hit, n_counts)} | {rate(other, n_other)} |")

    # 2. full series: size of all three tests, then power of spacing and restoration
    log("series: null")
    null_p, null_obs = series_pvalues(n_series, 3, n_perm)
    log("series: hot zone")
    hot_p, _ = series_pvalues(n_series, 4, n_perm, hot_zone_um=15.0)
    hot6_p, _ = series_pvalues(n_series, 6, n_perm, hot_zone_um=15.0, hot_factor=6.0)
    alt = {}
    for frac in (0.3, 0.55):
        log(f"series: restore fraction {frac}")
        alt[frac] = series_pvalues(n_series, 5 + int(frac * 100), n_perm,
                                   restore_fraction=frac)

    def rej(p: np.ndarray) -> str:
        ok = np.isfinite(p)
        return rate(int(np.sum(p[ok] < ALPHA)), int(ok.sum())) + (
            f" (of {int(ok.sum())})" if ok.sum() < len(p) else "")

    # 3. speed
    log("timing")
    t_big = _timed_subprocess(300, 5)
    t_rows = _timed_subprocess(110, 3)
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started

    from bench.__main__ import machine

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    cmd = "python -m bench stats" + (" --quick" if args.quick else "")
    lines += [
        "## stats: calibration and speed of the branch statistics",
        "",
        f"Command: `{cmd}` (bench/bench_stats.py), {datetime.now(timezone.utc):%Y-%m-%d %H:%M}"
        f" UTC, commit {commit}, {elapsed / 60:.1f} min on {machine()}. Load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other helpers were working). "
        f"Every test uses {n_perm} permutations / random placements; rates are shown with "
        "exact (Clopper–Pearson) 95% intervals; a test 'rejects' when p < 0.05.",
        "",
        "### Loss clustering across branches: size",
        "",
        "Tables of 5–8 branches with 20–40 session-0 spines each (uniform), every spine lost "
        "with the same probability.",
        "",
        "| loss probability | tables | dispersion test rejects | any branch q < 0.05 |",
        "| --- | --- | --- | --- |",
        *rows_null,
        "",
        "### Loss clustering: power with one branch losing at 3× the others' rate",
        "",
        "Same sizes; one random branch loses at 3× the base rate. 'Branch found': that "
        "branch has BH q < 0.05 (one-sided hypergeometric p). 'Other branches flagged': "
        "fraction of the other branches with q < 0.05.",
        "",
        "| loss probability (others → hot branch) | tables | dispersion test rejects | "
        "branch found | other branches flagged |",
        "| --- | --- | --- | --- | --- |",
        *rows_alt,
        "",
        "### Whole series (3 sessions): size of every test",
        "",
        "5–8 branches of 60–90 µm, 20–40 session-0 spines each, each lost per interval with "
        "probability 0.15; new spines Poisson(0.08 × spines present) per interval, lost per "
        "interval with probability 0.4, placed uniformly outside "
        f"{StatsParams().occupied_radius_um:g} µm of the session-0 spines present and "
        f"{StatsParams().relink_radius_um:g} µm of session-0 spines last seen just before (the "
        "chance model). `classify_fates`, then `branch_statistics` with default parameters. Tests "
        "that cannot be done (e.g. no new spines) are left out of the denominator.",
        "",
        "| test | rejects at 5% under the null |",
        "| --- | --- |",
        f"| loss clustering across branches (dispersion, permutation) | {rej(null_p[:, 0])} |",
        f"| loss spacing within branches (nearest lost neighbour, all branches) | "
        f"{rej(null_p[:, 1])} |",
        f"| restoration (new spines at lost sites) | {rej(null_p[:, 2])} |",
        "",
        f"Under this null the restored fraction averaged {np.nanmean(null_obs[:, 0]):.3f} and "
        f"its chance estimate {np.nanmean(null_obs[:, 1]):.3f}; {np.nanmean(null_obs[:, 2]):.1f}"
        " new spines per series.",
        "",
        "### Power of the spacing and restoration tests",
        "",
        "| alternative | test | rejects at 5% |",
        "| --- | --- | --- |",
        f"| 3× loss rate in one 15 µm stretch per branch | loss spacing | {rej(hot_p[:, 1])} |",
        f"| same | loss clustering across branches | {rej(hot_p[:, 0])} |",
        f"| 6× loss rate (0.9 per interval) in one 15 µm stretch per branch | loss spacing | "
        f"{rej(hot6_p[:, 1])} |",
    ]
    for frac, (p, obs) in alt.items():
        lines.append(f"| {frac:.0%} of new spines placed within 2 µm of a random earlier lost "
                     f"site (observed restored fraction {np.nanmean(obs[:, 0]):.2f}, chance "
                     f"{np.nanmean(obs[:, 1]):.2f}) | restoration | {rej(p[:, 2])} |")
    lines += [
        "",
        "### Speed",
        "",
        "`branch_statistics` with default parameters (10,000 permutations for each test), "
        "in a fresh process; peak RSS of that process.",
        "",
        "| spine ids | rows in spines table | branches | sessions | new spines | seconds | "
        "peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in (t_big, t_rows):
        lines.append(f"| {t['n_ids']} | {t['n_rows']} | {t['n_branches']} | {t['n_sessions']} "
                     f"| {t['n_new']} | {t['seconds']:.1f} | {t['peak_rss_mb']:.0f} MB |")
    text = "\n".join(lines) + "\n"
    return publish('stats', text, args.quick)


if __name__ == "__main__":
    sys.exit(main())
