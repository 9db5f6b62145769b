import json

import pandas as pd
import pytest

from spinetrack.errors import InputError
from spinetrack.fates import classify_fates
from spinetrack.params import Params
from spinetrack.results import Results, read_results, write_results


def _results():
    spines = pd.DataFrame({
        "spine_id": [0, 0, 1, 2], "session": [0, 1, 0, 1], "z": [1.0, 1.5, 2.0, 2.0],
        "y": [10.0, 10.5, 20.0, 20.1], "x": [5.0, 5.0, 6.0, 6.0], "branch_id": [0, 0, 0, 0],
        "arc_um": [1.0, 1.1, 5.0, 5.3], "length_um": [1.2, 1.3, 0.8, 0.9],
        "source": ["auto", "auto", "manual", "auto"]})
    for a in "zyx":
        spines[f"{a}_um"] = spines[a] * (1.0 if a == "z" else 0.12)
    fates = classify_fates(spines, 2)
    branches = pd.DataFrame({"branch_id": [0], "length_um": [20.0]})
    return Results(spines=spines, fates=fates, branches=branches,
                   summary={"n_sessions": 2}, params=Params().replace(seed=4))


def test_roundtrip(tmp_path):
    res = _results()
    written = write_results(res, tmp_path / "out", parquet=False)
    assert written[-1].name == "params.json"
    back = read_results(tmp_path / "out")
    assert back.params == res.params
    assert list(back.spines.columns[:12]) == ["spine_id", "session", "z", "y", "x", "z_um",
                                              "y_um", "x_um", "branch_id", "arc_um",
                                              "length_um", "source"]
    assert back.fates.set_index("spine_id").loc[2, "fate"] == "restored"
    assert back.fates.set_index("spine_id").loc[2, "restored_from"] == 1
    assert back.fates["present"].tolist() == ["11", "10", "01"]
    meta = json.loads((tmp_path / "out" / "params.json").read_text())
    assert "numpy" in meta["versions"]


def test_parquet_beside_csv(tmp_path):
    pytest.importorskip("pyarrow")
    write_results(_results(), tmp_path, parquet=True)
    assert (tmp_path / "spines.parquet").exists()
    assert len(pd.read_parquet(tmp_path / "fates.parquet")) == 3


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="no spines.csv"):
        read_results(tmp_path)
    (tmp_path / "spines.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks columns"):
        read_results(tmp_path)


def test_a_run_interrupted_before_params_json_is_incomplete(tmp_path):
    from spinetrack.results import check_complete, incomplete_run

    out = tmp_path / "out"
    write_results(_results(), out, parquet=False)
    assert incomplete_run(out) is None
    check_complete(out)
    (out / "params.json").unlink()  # the completion marker, written last
    assert "incomplete (an interrupted run?)" in incomplete_run(out)
    with pytest.raises(InputError, match="run again"):
        check_complete(out)
    # tables made by hand, and a synthetic truth folder, are not a run
    hand = tmp_path / "hand"
    hand.mkdir()
    (out / "spines.csv").rename(hand / "spines.csv")
    assert incomplete_run(hand) is None
    (hand / "summary.json").write_text("{}")
    (hand / "truth.json").write_text("{}")
    assert incomplete_run(hand) is None
    # a project whose auto/ lost its params.json
    project = tmp_path / "project"
    write_results(_results(), project, parquet=False)
    write_results(_results(), project / "auto", parquet=False)
    (project / "auto" / "params.json").unlink()
    with pytest.raises(InputError) as err:
        check_complete(project)
    assert err.value.path == project / "auto"
