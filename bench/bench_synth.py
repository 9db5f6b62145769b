"""Speed of the synthetic series generator and realism of the realistic preset.

    python -m bench synth

Writes ``bench/results/synth.md``: wall time of ``make_series`` for each preset
(4 sessions at the preset's default shape, one run each, in this process) and the
realism statistics of ``bench/realism.py`` (which also rewrites docs/realism.png).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import write_result

HERE = Path(__file__).resolve().parent


def _time_presets(n_sessions: int) -> list[str]:
    from spinetrack.synth import PRESETS, make_series

    rows = ["| preset | shape (z, y, x) | sessions | seconds | spines (session 0) | fates |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in ("easy", "realistic", "hard"):
        t0 = time.perf_counter()
        syn = make_series(name, n_sessions=n_sessions, seed=0)
        elapsed = time.perf_counter() - t0
        fates = syn.truth["fates"]["fate"].value_counts()
        spines = syn.truth["spines"]
        rows.append(f"| {name} | {' × '.join(map(str, PRESETS[name].shape))} | {n_sessions} | "
                    f"{elapsed:.1f} | {int((spines['session'] == 0).sum())} | "
                    + ", ".join(f"{f} {int(n)}" for f, n in fates.items()) + " |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench synth", description=__doc__)
    parser.add_argument("--sessions", type=int, default=4)
    args, _ = parser.parse_known_args(argv)
    from bench import realism

    rows = _time_presets(args.sessions)
    syn_stats, real_stats, _ = realism.run(0, realism.ROOT / "docs" / "realism.png")
    text = "\n".join([
        "## synth",
        "",
        f"`python -m bench synth`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        "Generation time of `make_series(preset, n_sessions=4, seed=0)` (one run each, seed 0; "
        "the machine is shared, so times vary by about 2x):",
        "",
        *rows,
        "",
        "Realism of the realistic preset against rr30a-dev session 0 (`python -m bench.realism`, "
        "figure docs/realism.png):",
        "",
        realism.markdown(syn_stats, real_stats),
        "",
    ])
    print(f"wrote {write_result('synth', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
