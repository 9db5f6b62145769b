import json
import math

import numpy as np
import pandas as pd
import pytest

from spinetrack.files import atomic_path, write_json_atomic, write_table_atomic


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "spines.csv"
    target.write_text("old contents\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half writ")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spines.csv"]


def test_json_converts_numpy_and_nan(tmp_path):
    path = write_json_atomic(tmp_path / "s.json", {"a": np.int64(3), "b": np.float32(0.5),
                                                    "c": math.nan, "d": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": 3, "b": 0.5, "c": None, "d": [0, 1]}


def test_table_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"x": [0.123456789, 2.0], "n": [1, 2]})
    back = pd.read_csv(write_table_atomic(df, tmp_path / "t.csv"))
    assert back.x[0] == pytest.approx(0.123457)
    pytest.importorskip("pyarrow")
    back = pd.read_parquet(write_table_atomic(df, tmp_path / "t.parquet"))
    pd.testing.assert_frame_equal(back, df)


def test_written_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "x.json", {})
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
