"""The report: files, self-containment, findings, and the ``spinetrack report`` command."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from spinetrack.cli import main
from spinetrack.errors import InputError
from spinetrack.fates import classify_fates
from spinetrack.params import Params
from spinetrack.report import findings, rebuild_report, write_report
from spinetrack.results import Results, read_fates, read_results, write_results
from spinetrack.stats import add_run_metadata, branch_statistics

PNG = b"\x89PNG\r\n\x1a\n"
PARAMS = Params().replace(n_permutations=500, seed=3)
SUMMARY_KEYS = ["n_sessions", "voxel_size_um", "n_branches", "spines_per_session",
                "fate_counts", "formation_rate", "elimination_rate", "turnover_ratio",
                "survival_fraction", "restoration", "loss_clustering"]


def _series(seed=0):
    """3 sessions, 4 branches of 60 µm; branch 0 loses most of its spines."""
    rng = np.random.default_rng(seed)
    rows, sid = [], 0
    for b in range(4):
        for a in np.sort(rng.uniform(1, 59, 25)):
            lost = rng.random() < (0.8 if b == 0 else 0.15)
            sessions = [0] if lost else [0, 1, 2]
            rows += [(sid, s, b, a + 0.05 * s) for s in sessions]
            sid += 1
            if lost and rng.random() < 0.4:  # a new spine back at the lost site
                rows += [(sid, 2, b, a + 0.4)]
                sid += 1
        for a in rng.uniform(1, 59, 2):
            rows += [(sid, s, b, a) for s in (1, 2)]
            sid += 1
    spines = pd.DataFrame(rows, columns=["spine_id", "session", "branch_id", "arc_um"])
    for c in ("z", "y", "x"):
        spines[c] = rng.uniform(0, 50, len(spines))
        spines[f"{c}_um"] = spines[c] * 0.2
    spines["length_um"] = 1.0
    spines["source"] = "auto"
    lines = pd.DataFrame([(b, s, p, float(a)) for b in range(4) for s in range(3)
                          for p, a in enumerate(np.linspace(0, 60, 61))],
                         columns=["branch_id", "session", "point", "arc_um"])
    sessions = pd.DataFrame({"session": [0, 1, 2], "name": ["a", "b", "c"], "day": [0, 4, 8],
                             "voxel_z_um": 1.0, "voxel_y_um": 0.2, "voxel_x_um": 0.2})
    return spines, lines, sessions


@pytest.fixture
def results():
    spines, lines, sessions = _series()
    fates = classify_fates(spines, 3)
    bt = pd.DataFrame({"branch_id": range(4), "length_um": 60.0, "arc_start_um": 0.0,
                       "arc_end_um": 60.0})
    branches, summary = branch_statistics(spines, fates, bt, 3, PARAMS, days=[0, 4, 8])
    summary = add_run_metadata(summary, [1.0, 0.2, 0.2], PARAMS)
    return Results(spines=spines, fates=fates, branches=branches, summary=summary,
                   lines=lines, sessions=sessions, params=PARAMS)


def test_report_files_are_self_contained_pngs(results, tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "spine_map_17.png").write_bytes(PNG)  # an earlier run's branch
    written = write_report(results, tmp_path)
    assert written[-1] == tmp_path / "report.html"
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == sorted(["clustering.png", "loss_fraction.png", "restoration.png",
                            "survival.png", "turnover.png"] +
                           [f"spine_map_{b}.png" for b in range(4)])
    for p in (tmp_path / "figures").iterdir():
        assert p.read_bytes().startswith(PNG)
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page and "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 9 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_findings_name_the_clustered_branch(results):
    text = " ".join(findings(results.summary, results.branches))
    assert "Losses concentrate on some branches more than chance" in text
    assert "branch 0 (" in text
    assert "new spines" in text


def test_report_needs_statistics(results, tmp_path):
    bare = Results(spines=results.spines, fates=results.fates,
                   branches=pd.DataFrame({"branch_id": [0]}), summary={"n_sessions": 3})
    with pytest.raises(InputError, match="no branch statistics"):
        write_report(bare, tmp_path)


def test_run_metadata_hook(results):
    s = results.summary
    assert list(s)[:2] == ["n_sessions", "voxel_size_um"]
    assert s["voxel_size_um"] == [1.0, 0.2, 0.2]
    assert s["parameters"]["stats"]["n_permutations"] == 500
    assert "numpy" in s["versions"]


def test_rebuild_report_from_a_folder(results, tmp_path):
    bare = Results(spines=results.spines, fates=results.fates,
                   branches=pd.DataFrame({"branch_id": [0]}), summary={"n_sessions": 3},
                   lines=results.lines, sessions=results.sessions, params=PARAMS)
    write_results(bare, tmp_path, parquet=False)
    _, written = rebuild_report(tmp_path)
    assert (tmp_path / "report.html") in written
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(k in summary for k in SUMMARY_KEYS)
    assert summary["voxel_size_um"] == [1.0, 0.2, 0.2]
    assert summary["days"] == [0, 4, 8]
    assert summary["loss_clustering"]["n_permutations"] == 500  # from params.json
    back = read_results(tmp_path)
    assert back.branches["length_um"].tolist() == [60.0] * 4  # from lines.csv
    # same statistics as computed directly
    pd.testing.assert_series_equal(back.branches["loss_q"], results.branches["loss_q"],
                                   check_exact=False, rtol=1e-5)


def test_cli_report_and_recompute_fates(results, tmp_path, capsys):
    write_results(results, tmp_path, parquet=False)
    spines = pd.read_csv(tmp_path / "spines.csv")
    # a person deletes a stable spine's last two sessions: it becomes lost
    before = classify_fates(spines, 3)
    sid = int(before.loc[before["fate"] == "stable", "spine_id"].iloc[0])
    spines = spines[~((spines["spine_id"] == sid) & (spines["session"] > 0))]
    spines.to_csv(tmp_path / "spines.csv", index=False)
    assert main(["report", str(tmp_path), "--recompute-fates", "--n-permutations", "300"]) == 0
    out = capsys.readouterr().out
    assert "dispersion index" in out
    fates = read_results(tmp_path).fates.set_index("spine_id")
    assert fates.loc[sid, "fate"] == "lost"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["loss_clustering"]["n_permutations"] == 300
    assert summary["fate_counts"]["lost"] == results.summary["fate_counts"]["lost"] + 1


def test_cli_report_bad_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a results folder" in err


def test_rr30a_report(rr30a, tmp_path):
    spines = pd.read_csv(rr30a / "truth_spines.csv")
    lines = pd.read_csv(rr30a / "truth_lines.csv")
    fates = classify_fates(spines, 3)
    write_results(Results(spines=spines, fates=fates, branches=pd.DataFrame({"branch_id": []}),
                          summary={"n_sessions": 3}, lines=lines, params=PARAMS),
                  tmp_path, parquet=False)
    res, _ = rebuild_report(tmp_path)
    assert res.summary["spines_per_session"] == [138, 133, 111]  # spine 109: test_stats
    assert res.summary["spines_per_session_all"] == [139, 133, 111]
    assert len(list((tmp_path / "figures").glob("spine_map_*.png"))) == 5
    written = read_fates(tmp_path / "fates.csv")
    assert written.loc[~written["in_statistics"], "spine_id"].tolist() == [109]


def test_rr30a_truth_folder_follows_the_contract(rr30a, tmp_path, check_contract):
    spines = pd.read_csv(rr30a / "truth_spines.csv").assign(source="manual")
    lines = pd.read_csv(rr30a / "truth_lines.csv")
    write_results(Results(spines=spines, fates=classify_fates(spines, 3),
                          branches=pd.DataFrame({"branch_id": []}), summary={"n_sessions": 3},
                          lines=lines, params=PARAMS), tmp_path, parquet=False)
    rebuild_report(tmp_path)
    assert check_contract(tmp_path) == []


def _one_branch_two_sessions():
    """Spine 0 on branch 0 in sessions 0 and 1, spine 1 only in session 0; and their fates."""
    spines = pd.DataFrame({"spine_id": [0, 0, 1], "session": [0, 1, 0], "branch_id": 0,
                           "arc_um": [5.0, 5.0, 30.0]})
    return spines, classify_fates(spines, 2)


def test_spine_map_rows_show_what_each_session_traced():
    from spinetrack import plots

    spines, fates = _one_branch_two_sessions()
    lines = pd.DataFrame({"session": [0, 0, 1, 1], "branch_id": 0,
                          "arc_um": [0.0, 40.0, 0.0, 12.0]})
    row = pd.Series({"branch_id": 0, "arc_start_um": 0.0, "arc_end_um": 12.0})
    fig = plots.spine_map_figure(spines, fates, row, 2, lines=lines)
    bars = sorted((tuple(line.get_ydata()), tuple(line.get_xdata()))
                  for line in fig.axes[0].lines if line.get_color() == "#d9d9d9")
    assert bars == [((0, 0), (0.0, 40.0)), ((1, 1), (0.0, 12.0))]


@pytest.fixture
def no_figures(monkeypatch):
    """rebuild_report without drawing (the tables are what is tested; figures are slow)."""
    import spinetrack.report

    monkeypatch.setattr(spinetrack.report, "write_report", lambda *args, **kwargs: [])


def test_report_writes_the_columns_in_the_order_run_does(results, tmp_path, no_figures):
    from spinetrack.results import BRANCH_COLUMNS, FATE_COLUMNS

    write_results(results, tmp_path, parquet=False)
    rebuild_report(tmp_path, recompute_fates=True)
    for name, first in (("branches", BRANCH_COLUMNS), ("fates", FATE_COLUMNS)):
        columns = pd.read_csv(tmp_path / f"{name}.csv", nrows=0).columns.tolist()
        assert columns[:len(first)] == first, name  # write_results' order


@pytest.fixture
def project(results, tmp_path):
    """A correction project as napari saves it: one restored spine set to 'formed' by hand."""
    from spinetrack.edits import Edit
    from spinetrack.project import Project

    folder = tmp_path / "project"
    write_results(results, folder, parquet=False)
    p = Project.open(folder)
    sid = int(p.results.fates.loc[p.results.fates["fate"] == "restored", "spine_id"].iloc[0])
    p.apply(Edit.set_fate(p.results.spines, sid, "formed"))  # autosaves auto/, edits, tables
    (folder / "compare.json").write_text("{}")
    return folder, sid


def test_report_with_a_new_radius_replays_a_projects_edits(project, no_figures):
    from spinetrack.project import Project

    folder, sid = project
    res, _ = rebuild_report(folder, PARAMS.replace(restore_radius_um=3.0))
    fates = read_results(folder).fates.set_index("spine_id")
    assert fates.loc[sid, "fate"] == "formed" and fates.loc[sid, "fate_source"] == "manual"
    for meta in (folder / "params.json", folder / "auto" / "params.json"):
        assert json.loads(meta.read_text())["params"]["fates"]["restore_radius_um"] == 3.0
    assert read_results(folder / "auto").summary["restoration"]["restore_radius_um"] == 3.0
    reopened = Project.open(folder, autosave=False).results.fates  # what napari shows
    assert reopened["fate"].value_counts().to_dict() == fates["fate"].value_counts().to_dict()
    assert res.summary["edits"] == {"applied": 1, "skipped": 0}
    assert not (folder / "compare.json").exists()  # scores of the previous fates


def test_cli_report_recompute_fates_keeps_a_projects_hand_set_fate(project, no_figures, capsys):
    folder, sid = project
    assert main(["report", str(folder), "--recompute-fates"]) == 0
    fates = read_results(folder).fates.set_index("spine_id")
    assert fates.loc[sid, "fate"] == "formed" and fates.loc[sid, "fate_source"] == "manual"


@pytest.mark.parametrize("extra", [[], ["--restore-radius", "3"]],
                         ids=["same-parameters", "new-radius"])
def test_report_refuses_a_project_whose_tables_were_edited_by_hand(project, no_figures,
                                                                   capsys, extra):
    folder, _ = project
    spines = pd.read_csv(folder / "spines.csv")
    spines.iloc[1:].to_csv(folder / "spines.csv", index=False)
    before = (folder / "fates.csv").read_bytes()
    assert main(["report", str(folder), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spines.csv: differs from auto/spines.csv" in err
    assert (folder / "fates.csv").read_bytes() == before
    assert json.loads((folder / "params.json").read_text())["params"]["fates"][
        "restore_radius_um"] == PARAMS.fates.restore_radius_um


def test_report_brings_a_split_projects_auto_params_in_line(project, no_figures):
    folder, _ = project
    meta_path = folder / "auto" / "params.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["stats"]["n_permutations"] = 999  # what an older report left behind
    meta_path.write_text(json.dumps(meta))
    rebuild_report(folder)
    top, auto = (json.loads(p.read_text())["params"]
                 for p in (folder / "params.json", meta_path))
    assert top == auto and auto["stats"]["n_permutations"] == PARAMS.stats.n_permutations


def test_spine_map_title_counts_only_the_spines_the_statistics_use():
    from spinetrack import plots

    # spine 1 is "lost" where session 1 traced nothing: left out of the statistics
    spines, fates = _one_branch_two_sessions()
    row = pd.Series({"branch_id": 0, "arc_start_um": 0.0, "arc_end_um": 12.0,
                     "length_um": 12.0})
    title = plots.spine_map_figure(spines, fates, row, 2).axes[0].get_title(loc="left")
    assert "1 of 2 session-0 spines lost" in title
    fig = plots.spine_map_figure(spines, fates, row, 2, left_out=[1])
    assert "0 of 1 session-0 spines lost" in fig.axes[0].get_title(loc="left")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("not counted") for t in labels)


def test_an_interrupted_rebuild_leaves_no_report_of_other_tables(results, tmp_path,
                                                                 monkeypatch):
    import spinetrack.report

    write_results(results, tmp_path, parquet=False)
    (tmp_path / "report.html").write_text("the previous report")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spinetrack.report, "write_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rebuild_report(tmp_path, recompute_fates=True)
    assert not (tmp_path / "report.html").exists()


def test_report_reclassifies_fates_that_no_longer_match_spines_csv(results, tmp_path,
                                                                    no_figures, caplog):
    write_results(results, tmp_path, parquet=False)
    spines = pd.read_csv(tmp_path / "spines.csv")
    stable = results.fates.loc[results.fates["fate"] == "stable", "spine_id"].iloc[:3].tolist()
    # a person removes three stable spines from the last session, without --recompute-fates
    spines = spines[~(spines["spine_id"].isin(stable) & (spines["session"] == 2))]
    spines.to_csv(tmp_path / "spines.csv", index=False)
    with caplog.at_level("WARNING", logger="spinetrack.report"):
        res, _ = rebuild_report(tmp_path)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "presence of 3 spines" in warned[0]
    fates = read_results(tmp_path).fates.set_index("spine_id")
    assert (fates.loc[stable, "present"] == "110").all()
    assert (fates.loc[stable, "fate"] == "lost").all()
    assert res.summary["spines_per_session"][2] == int((spines["session"] == 2).sum())


def test_fates_in_step_with_spines_csv_are_left_as_they_are(results, project, no_figures,
                                                             caplog):
    from spinetrack.report import fates_out_of_step

    assert fates_out_of_step(results.spines, results.fates, 3) is None
    folder, sid = project  # a saved correction project is in step too: its hand-set fate stays
    with caplog.at_level("WARNING", logger="spinetrack.report"):
        rebuild_report(folder)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert read_results(folder).fates.set_index("spine_id").loc[sid, "fate"] == "formed"
    extra = results.spines.iloc[[0]].assign(spine_id=10_000)
    assert "ids 10000" in fates_out_of_step(pd.concat([results.spines, extra]), results.fates, 3)


def test_report_refuses_an_interrupted_runs_folder(results, tmp_path, no_figures, capsys):
    write_results(results, tmp_path, parquet=False)
    (tmp_path / "params.json").unlink()
    before = (tmp_path / "summary.json").read_bytes()
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incomplete (an interrupted run?)" in err
    assert (tmp_path / "summary.json").read_bytes() == before and not (
        tmp_path / "report.html").exists()


def test_a_rebuild_interrupted_while_writing_tables_reads_as_incomplete(results, tmp_path,
                                                                         monkeypatch):
    import spinetrack.report
    import spinetrack.results
    from spinetrack.results import incomplete_run

    write_results(results, tmp_path, parquet=False)
    keep = json.loads((tmp_path / "params.json").read_text())
    (tmp_path / "params.json").write_text(json.dumps({**keep, "inputs": {"files": ["a.tif"]}}))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spinetrack.results, "write_table_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rebuild_report(tmp_path, recompute_fates=True)
    assert "incomplete" in incomplete_run(tmp_path)
    monkeypatch.undo()
    (tmp_path / "params.json").write_text(json.dumps({**keep, "inputs": {"files": ["a.tif"]}}))
    monkeypatch.setattr(spinetrack.report, "write_report", lambda *args, **kwargs: [])
    rebuild_report(tmp_path)
    assert json.loads((tmp_path / "params.json").read_text())["inputs"] == {"files": ["a.tif"]}


def test_a_folder_of_hand_made_tables_can_be_reported_again(results, tmp_path, no_figures):
    results.spines.to_csv(tmp_path / "spines.csv", index=False)
    rebuild_report(tmp_path)  # fates from the spines; summary.json and params.json written
    assert (tmp_path / "params.json").exists()
    rebuild_report(tmp_path)  # not taken for an interrupted run
