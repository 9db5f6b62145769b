"""Run benchmarks and assemble bench/RESULTS.md.

    python -m bench                 # run every bench/bench_*.py, then assemble
    python -m bench detect track    # run only these areas, then assemble
    python -m bench --assemble      # only rebuild RESULTS.md from bench/results/*.md
"""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["detect", "track", "stats", "synth", "batch"]


def areas() -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return sorted(found, key=lambda a: (ORDER.index(a) if a in ORDER else len(ORDER), a))


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    try:
        mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo")
                      if line.startswith("MemTotal"))
        mem = f"{mem_kb / 2**20:.0f} GB"
    except (OSError, StopIteration):
        mem = "unknown memory"
    import os

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem}, "
            f"Python {platform.python_version()}")


def assemble() -> Path:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip() or "unknown"
    parts = [
        "# Benchmark results\n",
        "Assembled by `python -m bench --assemble` from `bench/results/*.md`; each section "
        "names the command that produced it and when. Re-run one area with "
        "`python -m bench AREA`.\n",
        f"Assembled {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {commit} on: "
        f"{machine()}.\n",
    ]
    for area in areas():
        path = HERE / "results" / f"{area}.md"
        if path.exists():
            parts.append(path.read_text().strip() + "\n")
        else:
            parts.append(f"## {area}\n\nNot measured yet: run `python -m bench {area}`.\n")
    out = HERE / "RESULTS.md"
    out.write_text("\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help=f"areas to run (default: all of {areas()})")
    parser.add_argument("--assemble", action="store_true", help="only rebuild RESULTS.md")
    args, rest = parser.parse_known_args(argv)
    if not args.assemble:
        for area in args.areas or areas():
            if area not in areas():
                parser.error(f"no benchmark {area!r}; known: {areas()}")
            print(f"== bench {area}", flush=True)
            module = importlib.import_module(f"bench.bench_{area}")
            status = module.main(rest)
            if status:
                return int(status)
    print(f"wrote {assemble()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
