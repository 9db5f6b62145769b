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


def find_contract_checker():
    """The shared ``check_contract.py`` beside the clone or in /work/shared, or None."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for candidate in (repo.parent / "shared" / "tools" / "check_contract.py",
                      Path("/work/shared/tools/check_contract.py")):
        if candidate.exists():
            return candidate
    return None


@pytest.fixture
def check_contract():
    """``check_contract(folder) -> list of problems`` with the shared contract checker.

    The shared checker reads ``fates.csv`` without ``dtype={"present": str}``, so a
    presence string such as ``011`` becomes the number 11 and every series with a
    spine absent in session 0 fails its "one contiguous run" check; that is a bug
    in the checker (CONTRACT.md says ``present`` is text). We run the checker
    unchanged except that ``present`` is read as text.
    """
    import importlib.util

    import pandas as pd

    path = find_contract_checker()
    if path is None:
        pytest.skip("shared check_contract.py not found")
    spec = importlib.util.spec_from_file_location("_check_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def read_csv(p, *args, **kwargs):
        if str(p).endswith("fates.csv"):
            kwargs.setdefault("dtype", {"present": str})
        return pd.read_csv(p, *args, **kwargs)

    module.pd = type("pd", (), {"read_csv": staticmethod(read_csv),
                                "isna": staticmethod(pd.isna)})

    def check(folder, n_sessions=None):
        from pathlib import Path

        return module.check(Path(folder), n_sessions)

    return check
