"""The committed fixtures are exactly what fixtures/make_fixtures.py generates."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinetrack.io import read_series, read_tiff
from spinetrack.synth import read_truth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _load_maker():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    _load_maker().main(out)
    return out


@pytest.mark.parametrize("name", ["tiny", "empty"])
def test_truth_tables_match_regeneration(regenerated, name):
    committed, fresh = read_truth(FIXTURES / name), read_truth(regenerated / name)
    assert committed.keys() == fresh.keys()
    for table in committed:
        pd.testing.assert_frame_equal(committed[table], fresh[table], check_exact=False,
                                      rtol=1e-5, obj=f"{name}/{table}")


@pytest.mark.parametrize("path", ["tiny/truth/spines.csv", "tiny/truth/truth.json",
                                  "empty/truth/truth.json"])
def test_truth_files_are_byte_for_byte_regenerated(regenerated, path):
    assert (FIXTURES / path).read_bytes() == (regenerated / path).read_bytes()


@pytest.mark.parametrize("path", ["tiny/session0.tif", "tiny/session1.tif", "tiny/session2.tif",
                                  "tiny4d.tif", "empty/session0.tif"])
def test_images_are_regenerated(regenerated, path):
    """Same pixels and voxel size (the compressed bytes may differ between zlib versions)."""
    committed, _ = read_tiff(FIXTURES / path)
    fresh, voxel = read_tiff(regenerated / path)
    np.testing.assert_array_equal(committed, fresh)
    assert voxel == pytest.approx((1.0, 0.12, 0.12))


def test_tiny_fixture_shows_the_events_tests_need():
    truth = read_truth(FIXTURES / "tiny")
    fates = truth["fates"]["fate"].value_counts()
    for fate in ("stable", "lost", "restored"):
        assert fates.get(fate, 0) >= 1, fate
    series = read_series(FIXTURES / "tiny")
    assert len(series) == 3 and series.voxel_size_um == pytest.approx((1.0, 0.12, 0.12))
    four_d = read_series(FIXTURES / "tiny4d.tif")
    assert len(four_d) == 3
    for a, b in zip(series, four_d):
        np.testing.assert_array_equal(a.image, b.image)


def test_empty_fixture_has_noise_and_no_spines():
    truth = read_truth(FIXTURES / "empty")
    assert len(truth["spines"]) == 0 and len(truth["sessions"]) == 3
    series = read_series(FIXTURES / "empty")
    assert all(s.image.max() > s.image.min() for s in series)
