"""Shared test settings: strict numpy, fixed seeds.

pandas chained assignment raises (see ``filterwarnings`` in pyproject.toml).
"""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _strict_numpy():
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def find_rr30a():
    """The rr30a-dev folder: $SPINETRACK_RR30A, ../shared beside the clone, or /work/shared."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for candidate in (os.environ.get("SPINETRACK_RR30A"),
                      repo.parent / "shared" / "data" / "rr30a-dev",
                      Path("/work/shared/data/rr30a-dev")):
        if candidate and (Path(candidate) / "truth_spines.csv").exists():
            return Path(candidate)
    return None


@pytest.fixture
def rr30a():
    """Path of the real rr30a-dev data; the test is skipped where it is not available."""
    path = find_rr30a()
    if path is None:
        pytest.skip("rr30a-dev data not found (set SPINETRACK_RR30A)")
    return path
