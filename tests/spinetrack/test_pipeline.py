"""The whole pipeline on the tiny fixture series: contract, atomicity, cancel, CLI."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from spinetrack.cli import main
from spinetrack.errors import Cancelled
from spinetrack.io import read_series
from spinetrack.params import Params
from spinetrack.pipeline import STAGES, recompute, run_and_write, run_series, stats_params
from spinetrack.results import read_results

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny"
PARAMS = Params().replace(n_permutations=200)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    stages = []
    series = read_series(TINY, days=[0, 2, 5])
    res = run_and_write(series, out, PARAMS, progress=lambda s, d, t: stages.append(s))
    return out, res, stages


def test_run_writes_a_folder_that_follows_the_contract(tiny_run, check_contract):
    out, res, _ = tiny_run
    assert check_contract(out, 3) == []
    for name in ("lines.csv", "sessions.csv", "registration.csv", "registration.json",
                 "params.json", "report.html"):
        assert (out / name).is_file(), name
    assert set(res.spines["source"]) <= {"auto"}
    assert res.summary["n_sessions"] == 3 and res.summary["days"] == [0, 2, 5]


def test_progress_names_every_stage(tiny_run):
    _, _, stages = tiny_run
    for stage in ("detect", "track", "statistics", "write", "report"):
        assert any(s.startswith(stage) for s in stages), stage
    assert set(s.split(":")[0].split(" ")[0] for s in stages) <= set(STAGES)


def test_results_read_back_identical(tiny_run):
    out, res, _ = tiny_run
    back = read_results(out)
    assert back.params == PARAMS
    assert back.transform == res.transform
    pd.testing.assert_frame_equal(back.fates[["spine_id", "present", "fate"]],
                                  res.fates[["spine_id", "present", "fate"]],
                                  check_dtype=False)
    assert len(back.spines) == len(res.spines)
    assert back.sessions["file"].map(lambda f: Path(f).exists()).all()


def test_params_json_reproduces_the_run(tiny_run, tmp_path):
    out, res, _ = tiny_run
    again = run_series(read_series(TINY, days=[0, 2, 5]), Params.load(out / "params.json"))
    pd.testing.assert_frame_equal(again.fates, res.fates)
    assert again.summary["loss_clustering"] == res.summary["loss_clustering"]


def test_recompute_keeps_statistics(tiny_run):
    _, res, _ = tiny_run
    again = recompute(res)
    pd.testing.assert_frame_equal(again.fates.reset_index(drop=True),
                                  res.fates.reset_index(drop=True))
    assert again.summary["fate_counts"] == res.summary["fate_counts"]


def test_restoration_chance_avoids_only_the_linker_reach(tiny_run):
    _, res, _ = tiny_run
    # the tiny series has too few links to measure the reach: the fixed radius is used
    assert res.summary["link_reach_um"] is None
    assert res.summary["restoration"]["relink_radius_um"] == PARAMS.stats.relink_radius_um
    # a measured reach is kept in the summary and used by recompute (edits, 'spinetrack
    # report'), which does not relink
    measured = dataclasses.replace(res, summary={**res.summary, "link_reach_um": 0.7})
    assert recompute(measured).summary["restoration"]["relink_radius_um"] == 0.7
    assert recompute(measured).summary["link_reach_um"] == 0.7


def test_findings_say_that_automatic_calls_are_unchecked(tiny_run):
    from spinetrack.report import UNCHECKED, findings

    _, res, _ = tiny_run
    assert res.summary["calls"] == "automatic"
    assert findings(res.summary, res.branches)[-1] == UNCHECKED
    corrected = {**res.summary, "edits": {"applied": 3, "skipped": 0}}
    assert UNCHECKED not in findings(corrected, res.branches)  # corrected in part: still said
    assert findings(corrected, res.branches)[-1].startswith(
        "These fates come from automatic detection and linking, to which a person applied 3 "
        "corrections (edits.json); nothing records whether the other calls were checked.")
    person = {k: v for k, v in res.summary.items() if k != "calls"}  # e.g. spinetrack track
    assert UNCHECKED not in findings(person, res.branches)


def test_stats_params_takes_the_shorter_radius():
    assert stats_params(PARAMS, 0.8).relink_radius_um == 0.8
    assert stats_params(PARAMS, 5.0).relink_radius_um == PARAMS.stats.relink_radius_um
    assert stats_params(PARAMS, None).relink_radius_um == PARAMS.stats.relink_radius_um
    fixed = PARAMS.replace(relink_from_linker=False)
    assert stats_params(fixed, 0.8).relink_radius_um == PARAMS.stats.relink_radius_um


def _cancel_at(stage_prefix):
    """A progress callback that cancels when a stage starting with ``stage_prefix`` reports."""
    def progress(stage, done, total):
        if stage.startswith(stage_prefix):
            raise Cancelled()
    return progress


def test_cancel_leaves_previous_results_intact(tiny_run, tmp_path):
    out, _, _ = tiny_run
    before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    with pytest.raises(Cancelled):
        run_and_write(read_series(TINY), out, PARAMS, progress=_cancel_at("track"))
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before


def test_cli_run_and_bad_input(tmp_path, capsys, check_contract):
    out = tmp_path / "out"
    assert main(["run", str(TINY), "--out", str(out), "--n-permutations", "200",
                 "--no-report"]) == 0
    assert "lost by the last session" in capsys.readouterr().out
    # -q (here after the command): the files as always, no findings on the terminal
    assert main(["run", str(TINY), "--out", str(tmp_path / "quiet"),
                 "--n-permutations", "200", "--no-report", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "quiet" / "fates.csv").exists()
    assert check_contract(out) == []
    kept = (out / "spines.csv").read_bytes()
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    assert main(["run", str(TINY / "session0.tif"), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.tif" in err
    assert (out / "spines.csv").read_bytes() == kept


def test_cli_run_needs_a_voxel_size(tmp_path, capsys):
    import numpy as np
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.random.default_rng(0).integers(0, 50, (6, 32, 32), np.uint8),
                     photometric="minisblack")
    assert main(["run", str(plain), "--out", str(tmp_path / "o")]) == 2
    assert "--voxel-size" in capsys.readouterr().err


def test_malformed_edit_log_stops_the_run_before_any_work(tiny_run, tmp_path):
    from spinetrack.errors import InputError

    out = tmp_path / "project"
    out.mkdir()
    (out / "edits.json").write_text('{"version": 1, "edits": [{"kind": "delete"}]}')
    stages = []
    with pytest.raises(InputError, match=r"edits.json: .*edit 1 \(delete\): no target"):
        run_and_write(read_series(TINY), out, PARAMS, progress=lambda s, d, t: stages.append(s))
    assert stages == [] and sorted(p.name for p in out.iterdir()) == ["edits.json"]


@pytest.fixture
def rerun(tiny_run, tmp_path, monkeypatch):
    """A copy of the tiny run's folder (with a compare.json) and a re-run that skips computing."""
    import shutil

    import spinetrack.pipeline

    src, res, _ = tiny_run
    out = tmp_path / "again"
    shutil.copytree(src, out)
    (out / "compare.json").write_text("{}")
    monkeypatch.setattr(spinetrack.pipeline, "run_series", lambda *args, **kwargs: res)
    stamps = {p.name: p.stat().st_ino for p in out.iterdir() if p.is_file()}
    return out, stamps


def test_rerun_removes_the_marker_first_and_leaves_no_stale_scores(rerun):
    out, stamps = rerun
    with pytest.raises(Cancelled) as err:
        run_and_write(read_series(TINY), out, PARAMS, progress=_cancel_at("write"))
    # stopped before the first table: the previous tables remain, marked incomplete
    assert not (out / "params.json").exists()
    assert not (out / "report.html").exists() and not (out / "compare.json").exists()
    assert not list((out / "figures").glob("*.png"))
    assert (out / "fates.csv").stat().st_ino == stamps["fates.csv"]
    note = err.value.__notes__[-1]
    assert "no params.json" in note and "written by this run: nothing yet" in note
    assert "fates.csv" in note.split("from the previous run:")[1]


def test_interrupted_report_comes_after_complete_tables(rerun):
    out, stamps = rerun
    with pytest.raises(Cancelled) as err:
        run_and_write(read_series(TINY), out, PARAMS, progress=_cancel_at("report"))
    assert (out / "params.json").exists() and not (out / "report.html").exists()
    for name in ("spines.csv", "fates.csv", "branches.csv", "summary.json", "params.json"):
        assert (out / name).stat().st_ino != stamps[name], name  # rewritten
    assert "tables in" in err.value.__notes__[-1]
    assert "spinetrack report" in err.value.__notes__[-1]


def test_cli_says_which_files_an_interruption_left(rerun, capsys, monkeypatch):
    import spinetrack.results

    out, _ = rerun
    calls = []

    def interrupt_second_table(df, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(df, path)

    real = spinetrack.results.write_table_atomic
    monkeypatch.setattr(spinetrack.results, "write_table_atomic", interrupt_second_table)
    assert main(["run", str(TINY), "--out", str(out), "--no-report"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the log lines
    assert err.startswith("spinetrack: interrupted; ")
    new, old = err.split("written by this run: ")[1].split("; from the previous run: ")
    assert Path(calls[0]).name in new and "summary.json" in old
    assert not (out / "params.json").exists()


def test_write_run_without_a_report_leaves_no_stale_one(rerun, tiny_run):
    from spinetrack.pipeline import write_run

    out, stamps = rerun
    write_run(tiny_run[1], out, report_html=False)  # what 'spinetrack track' does
    assert (out / "params.json").stat().st_ino != stamps["params.json"]
    assert not (out / "report.html").exists() and not (out / "compare.json").exists()
