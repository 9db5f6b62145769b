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
