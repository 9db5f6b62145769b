"""Benchmarks of speed, memory and accuracy (not timed tests).

Each ``bench/bench_<area>.py`` has ``main(argv=None)`` that measures its area and
writes ``bench/results/<area>.md``; ``python -m bench`` runs them and assembles
``bench/RESULTS.md``.
"""
