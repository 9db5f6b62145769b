"""Benchmarks of speed, memory and accuracy (not timed tests).

Each ``bench/bench_<area>.py`` has ``main(argv=None)`` that measures its area and
writes ``bench/results/<area>.md``; ``python -m bench`` runs them and assembles
``bench/RESULTS.md``.
"""

from pathlib import Path as _Path

RESULTS_DIR = _Path(__file__).resolve().parent / "results"


def write_result(area: str, text: str) -> _Path:
    """Write ``bench/results/<area>.md`` (the section ``python -m bench --assemble`` collects)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{area}.md"
    out.write_text(text if text.endswith("\n") else text + "\n")
    return out


def publish(area: str, text: str, quick: bool = False) -> int:
    """Print ``text`` (a ``--quick`` run) or write it as the area's results; exit status 0."""
    if quick:
        print(text)
    else:
        print(f"wrote {write_result(area, text)}")
    return 0
