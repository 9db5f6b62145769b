"""Batch over many series: manifests, execution (serial and dask), resume, cohort tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinetrack import batch as batch_mod
from spinetrack.batch import (STATUS_COLUMNS, STATUS_FILE, is_complete, plan, read_manifest,
                              run_batch)
from spinetrack.cohort import (ID_COLUMNS, SUMMARY_COLUMNS, cohort_tables,
                               pooled_loss_clustering, pooled_restoration)
from spinetrack.errors import InputError
from spinetrack.io import write_session
from spinetrack.params import Params, StatsParams

N_PERM = 200


# --------------------------------------------------------------------------- helpers


def toy_results(n_sessions: int, seed: int, params: Params):
    """Results of a made-up series: random spines on 4 branches, real fates and statistics."""
    from spinetrack.fates import classify_fates
    from spinetrack.results import Results
    from spinetrack.stats import add_run_metadata, branch_statistics

    rng = np.random.default_rng(seed)
    rows, sid = [], 0

    def add(branch, arc, first, last):
        nonlocal sid
        for k in range(first, last + 1):
            rows.append({"spine_id": sid, "session": k, "z": 2.0, "y": 10.0 + arc, "x": 5.0,
                         "z_um": 2.0, "y_um": 1.2 + arc, "x_um": 0.6, "branch_id": branch,
                         "arc_um": arc, "length_um": 1.0, "source": "auto"})
        sid += 1

    for b in range(4):
        for arc in np.sort(rng.uniform(0, 50, rng.integers(8, 14))):
            last = n_sessions - 1 if rng.random() < 0.7 else int(rng.integers(0, n_sessions - 1))
            add(b, float(arc), 0, last)
        for _ in range(2):
            first = int(rng.integers(1, n_sessions))
            add(b, float(rng.uniform(0, 50)), first, int(rng.integers(first, n_sessions)))
    spines = pd.DataFrame(rows)
    fates = classify_fates(spines, n_sessions, params.fates.restore_radius_um)
    table = pd.DataFrame({"branch_id": range(4), "length_um": 50.0, "arc_start_um": 0.0,
                          "arc_end_um": 50.0})
    branches, summary = branch_statistics(spines, fates, table, n_sessions, params.stats,
                                          restore_radius_um=params.fates.restore_radius_um)
    summary = add_run_metadata(summary, [1.0, 0.12, 0.12], params)
    return Results(spines=spines, fates=fates, branches=branches, summary=summary, params=params)


def fake_run_and_write(series, out_dir, params, progress=None, extra_params=None,
                       report_html=True):
    """Stands in for spinetrack.pipeline.run_and_write: toy results seeded by the images."""
    from spinetrack.results import write_results

    seed = int(sum(int(s.image.sum()) for s in series)) % 2**32
    res = toy_results(len(series), seed, params)
    write_results(res, out_dir, parquet=False, extra_params=extra_params)
    return res


class Interrupt:
    """A runner that runs ``n`` series, then raises KeyboardInterrupt (a user's Ctrl-C)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, series, out_dir, params, **kwargs):
        if self.n <= 0:
            raise KeyboardInterrupt
        self.n -= 1
        return fake_run_and_write(series, out_dir, params, **kwargs)


@pytest.fixture
def cohort_dir(tmp_path):
    """Three animals x three tiny sessions (ImageJ TIFFs with voxel size) and a CSV manifest."""
    rng = np.random.default_rng(7)
    rows = ["animal,condition,session,day"]
    for a, cond in (("m1", "control"), ("m2", "control"), ("m3", "lesion")):
        for k, day in enumerate((0, 4, 8)):
            path = tmp_path / "data" / a / f"s{k}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_session(path, rng.integers(0, 255, (3, 16, 16), dtype=np.uint8),
                          (1.0, 0.12, 0.12))
            rows.append(f"{a},{cond},data/{a}/s{k}.tif,{day}")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _tasks(manifest, out, **params):
    base = Params().replace(n_permutations=N_PERM, **params)
    return plan(read_manifest(manifest), out, base, report_html=False, manifest=manifest)


def _status(out) -> pd.DataFrame:
    return pd.read_csv(Path(out) / STATUS_FILE, keep_default_na=False).set_index("key")


def _entries(root, conditions) -> list[dict]:
    """Cohort entries of single-series animals: {animal: condition}, each in ``root / animal``."""
    return [{"animal": a, "condition": c, "series": "", "key": a, "folder": root / a}
            for a, c in conditions.items()]


# --------------------------------------------------------------------------- manifests


def test_csv_manifest_groups_rows_into_series(cohort_dir):
    specs = read_manifest(cohort_dir)
    assert [s.key for s in specs] == ["m1", "m2", "m3"]
    assert [s.condition for s in specs] == ["control", "control", "lesion"]
    assert specs[0].days == (0.0, 4.0, 8.0)
    assert specs[0].files[0] == cohort_dir.parent / "data" / "m1" / "s0.tif"


def test_csv_manifest_sorts_by_day_and_reads_overrides(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"params": {"stats": {"seed": 3}}}))
    m = tmp_path / "m.csv"
    m.write_text("# a comment\nanimal,series,session,day,voxel_z,voxel_y,voxel_x,params,"
                 "restore-radius\n"
                 "a,d1,late.tif,7,1,0.1,0.1,p.json,2.5\n"
                 "a,d1,early.tif,0,1,0.1,0.1,p.json,2.5\n")
    (spec,) = read_manifest(m)
    assert spec.key == "a_d1" and spec.condition == "all"
    assert [f.name for f in spec.files] == ["early.tif", "late.tif"]
    assert spec.days == (0.0, 7.0)
    assert spec.voxel_size_um == (1.0, 0.1, 0.1)
    assert spec.overrides == {"seed": 3, "restore_radius_um": 2.5}
    (task,) = plan([spec], tmp_path / "out")
    assert task.params.fates.restore_radius_um == 2.5 and task.params.stats.seed == 3


def test_yaml_manifest(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text("defaults:\n  voxel_size: [1, 0.12, 0.12]\n  params: {n_permutations: 500}\n"
                 "series:\n"
                 "  - animal: m1\n    condition: control\n    sessions: [a.tif, b.tif]\n"
                 "    days: [0, 4]\n    params: {fates: {restore_radius_um: 3}}\n"
                 "  - animal: m1\n    series: dend2\n    sessions: [c.tif, d.tif]\n")
    specs = read_manifest(m)
    assert [s.key for s in specs] == ["m1", "m1_dend2"]
    assert specs[0].overrides == {"n_permutations": 500, "restore_radius_um": 3.0}
    assert specs[1].overrides == {"n_permutations": 500}
    assert specs[1].voxel_size_um == (1.0, 0.12, 0.12) and specs[1].days is None


@pytest.mark.parametrize("text, problem", [
    ("animal,file\n", "lists no series"),
    ("animal,condition\nm1,c\n", "lacks the column 'session'"),
    ("animal,session,colour\nm1,a.tif,red\n", "unknown columns ['colour']"),
    ("animal,condition,session\nm1,a,x.tif\nm1,b,y.tif\n", "line 3: condition 'b' differs"),
    ("animal,session,day\nm1,x.tif,0\nm1,y.tif,\n", "day is given for some sessions only"),
    ("animal,session,day\nm1,x.tif,zero\n", "are not all numbers"),
    ("animal,session,day\nm1,x4d.tif,0 4 x\n", "days '0 4 x' are not all numbers"),
    ("animal,session,day\nm1,x4d.tif,0 8 4\n", "must not decrease"),
    ("animal,session,voxel_z\nm1,x.tif,1\n", "needs all three columns"),
    ("animal,session,voxel_z,voxel_y,voxel_x\nm1,x.tif,1,0,0.1\n", "must be three positive"),
    ("animal,session,restore_radius_um\nm1,x.tif,far\n", "is not a float"),
    ("animal,session,params\nm1,x.tif,{\"bogus\": 1}\n", "unknown parameter 'bogus'"),
    ("animal,session\nm1,x.tif,extra\n", "line 2: 3 fields"),
    ("animal,session\n,x.tif\n", "line 2: empty animal"),
    ("# a comment\n\nanimal,session\n,x.tif\n", "line 4: empty animal"),
    ("animal,series,session\nm/1,,x.tif\nm 1,,y.tif\n", "series folder 'm-1' is also used"),
])
def test_csv_manifest_errors_are_one_line(tmp_path, text, problem):
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(InputError) as err:
        read_manifest(m)
    msg = str(err.value)
    assert problem in msg and str(m) in msg and "\n" not in msg


@pytest.mark.parametrize("text, problem", [
    ("- animal: m1\n  sessions: [a.tif]\n  colour: red\n", "unknown keys ['colour']"),
    ("- animal: m1\n", "sessions must list"),
    ("- sessions: [a.tif]\n", "no animal"),
    ("- animal: m1\n  sessions: [a.tif, b.tif]\n  days: [0]\n", "1 days given for 2"),
    ("- animal: m1\n  sessions: [a.tif, b.tif]\n  days: [4, 0]\n", "must not decrease"),
    ("- animal: m1\n  sessions: [a.tif]\n  voxel_size: 1\n", "three numbers"),
    ("- animal: m1\n  sessions: [a.tif]\n  params: {seed: -1}\n", "at least 0"),
    ("series: [\n", "is not valid YAML"),
    ("animals: []\n", "unknown top-level keys"),
])
def test_yaml_manifest_errors_are_one_line(tmp_path, text, problem):
    m = tmp_path / "m.yaml"
    m.write_text(text)
    with pytest.raises(InputError) as err:
        plan(read_manifest(m), tmp_path / "out", manifest=m)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_missing_manifest_and_unknown_type(tmp_path):
    with pytest.raises(InputError, match="no such manifest"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown manifest type"):
        read_manifest(tmp_path / "m.xlsx")


# --------------------------------------------------------------------------- running


def test_serial_batch_with_a_failing_series(cohort_dir, tmp_path):
    bad = cohort_dir.parent / "data" / "m2" / "s1.tif"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated TIFF
    out = tmp_path / "out"
    outcome = run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write)
    status = _status(out)
    assert list(status.reset_index().columns) == STATUS_COLUMNS
    assert status.loc["m1", "status"] == "done" and status.loc["m3", "status"] == "done"
    assert status.loc["m2", "status"] == "failed"
    assert "s1.tif" in status.loc["m2", "error"] and "\n" not in status.loc["m2", "error"]
    assert not (out / "m2" / "params.json").exists()
    assert outcome.n_failed == 1 and "1 failed" in outcome.summary_line(out)
    # the cohort tables hold the two good series
    summary = pd.read_csv(out / "cohort_summary.csv", keep_default_na=False)
    assert set(summary.loc[summary["level"] == "series", "animal"]) == {"m1", "m3"}
    assert "m2" in (out / "cohort_report.html").read_text()
    assert not list(out.glob(".*.partial-*"))


def test_rerun_skips_complete_series_and_redoes_changed_ones(cohort_dir, tmp_path):
    out = tmp_path / "out"
    run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write, cohort=False)
    first = (out / "m1" / "spines.csv").read_bytes()
    outcome = run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write, cohort=False)
    assert outcome.count("skipped") == 3 and outcome.count("done") == 0
    # a changed parameter redoes every series; --force redoes them too
    tasks = _tasks(cohort_dir, out, restore_radius_um=2.5)
    assert not any(is_complete(t) for t in tasks)
    outcome = run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write,
                        force=True, cohort=False)
    assert outcome.count("done") == 3
    assert (out / "m1" / "spines.csv").read_bytes() == first
    # a changed input file redoes only its series
    img = cohort_dir.parent / "data" / "m3" / "s2.tif"
    write_session(img, np.full((3, 16, 16), 9, np.uint8) + np.eye(16, dtype=np.uint8),
                  (1.0, 0.12, 0.12))
    outcome = run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write, cohort=False)
    assert outcome.status.set_index("key")["status"].to_dict() == {
        "m1": "skipped", "m2": "skipped", "m3": "done"}


def test_interrupted_batch_loses_nothing_finished(cohort_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(_tasks(cohort_dir, out), out, serial=True, runner=Interrupt(1), cohort=False)
    status = _status(out)
    assert status["status"].to_dict() == {"m1": "done", "m2": "not run", "m3": "not run"}
    assert (out / "m1" / "params.json").exists() and not (out / "m2").exists()
    # what a kill -9 leaves: a temporary folder, and a target folder without params.json
    (out / ".m3.partial-abc").mkdir()
    (out / ".m3.partial-abc" / "spines.csv").write_text("half")
    (out / "m2").mkdir()
    (out / "m2" / "spines.csv").write_text("half")
    (out / "m2" / "notes.txt").write_text("a person's notes")
    outcome = run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write, cohort=False)
    assert outcome.status.set_index("key")["status"].to_dict() == {
        "m1": "skipped", "m2": "done", "m3": "done"}
    assert not (out / ".m3.partial-abc").exists()
    assert (out / "m2" / "notes.txt").read_text() == "a person's notes"
    assert pd.read_csv(out / "m2" / "spines.csv").shape[0] > 10


def test_failed_run_keeps_previous_results(cohort_dir, tmp_path):
    out = tmp_path / "out"
    run_batch(_tasks(cohort_dir, out)[:1], out, serial=True, runner=fake_run_and_write, cohort=False)
    before = {p.name: p.read_bytes() for p in (out / "m1").iterdir()}
    img = cohort_dir.parent / "data" / "m1" / "s0.tif"
    img.write_bytes(b"not a tiff")
    outcome = run_batch(_tasks(cohort_dir, out)[:1], out, serial=True,
                        runner=fake_run_and_write, force=True, cohort=False)
    assert outcome.count("failed") == 1
    assert {p.name: p.read_bytes() for p in (out / "m1").iterdir()} == before


def test_existing_scheduler_with_a_failing_series(cohort_dir, tmp_path):
    """--scheduler ADDRESS: a running (here in-process) dask cluster; one series fails."""
    cloudpickle = pytest.importorskip("cloudpickle")
    distributed = pytest.importorskip("distributed")
    bad = cohort_dir.parent / "data" / "m3" / "s0.tif"
    bad.unlink()
    out = tmp_path / "out"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster:
            outcome = run_batch(_tasks(cohort_dir, out), out,
                                scheduler=cluster.scheduler_address,
                                runner=fake_run_and_write, cohort=False)
            assert len(cluster.workers) == 2  # the batch leaves a cluster it did not start
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    status = outcome.status.set_index("key")
    assert status["status"].to_dict() == {"m1": "done", "m2": "done", "m3": "failed"}
    assert "no such file" in status.loc["m3", "error"]
    # same numbers as a serial run
    serial = tmp_path / "serial"
    run_batch(_tasks(cohort_dir, serial), serial, serial=True, runner=fake_run_and_write,
              cohort=False)
    for name in ("m1", "m2"):
        assert ((out / name / "fates.csv").read_text()
                == (serial / name / "fates.csv").read_text())


def test_second_batch_into_the_same_folder_is_refused(cohort_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with batch_mod._Lock(out):
        with pytest.raises(InputError, match="another spinetrack batch"):
            run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write, cohort=False)


# --------------------------------------------------------------------------- cohort tables


def test_cohort_tables_columns(cohort_dir, tmp_path):
    out = tmp_path / "out"
    run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write)
    branches = pd.read_csv(out / "cohort_branches.csv")
    assert list(branches.columns[:4]) == ID_COLUMNS
    for col in ("branch_id", "length_um", "n_spines_s0", "n_spines_s2", "n_lost",
                "loss_fraction", "loss_p", "loss_q"):
        assert col in branches.columns
    assert len(branches) == 12 and set(branches["condition"]) == {"control", "lesion"}
    summary = pd.read_csv(out / "cohort_summary.csv")
    assert list(summary.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert "formation_rate_s0_s1" in summary.columns
    assert list(summary["level"]) == ["series"] * 3 + ["condition"] * 2
    control = summary[(summary["level"] == "condition") & (summary["condition"] == "control")]
    parts = summary[(summary["level"] == "series") & (summary["condition"] == "control")]
    assert int(control["n_lost"].iloc[0]) == parts["n_lost"].sum()
    assert control["loss_fraction"].iloc[0] == pytest.approx(
        parts["n_lost"].sum() / parts["n_spines_s0"].sum())
    data = json.loads((out / "cohort_summary.json").read_text())
    assert set(data["conditions"]) == {"control", "lesion"}
    assert data["conditions"]["control"]["series"] == ["m1", "m2"]
    assert 0 < data["conditions"]["control"]["loss_clustering"]["p_value"] <= 1
    html = (out / "cohort_report.html").read_text()
    assert html.count("data:image/png;base64") == 5
    assert len(list((out / "cohort_figures").glob("*.png"))) == 5
    assert "href='m1/report.html'" not in html
    assert "3 series, 3 animals, 2 conditions" in html
    assert "nobody has checked" not in html  # these tables are not marked automatic
    # a series' own report is linked from the cohort table
    from spinetrack.cohort import write_cohort

    (out / "m1" / "report.html").write_text("<html></html>")
    # the detector's uncorrected calls: the cohort report says so, as each series' does
    m1 = json.loads((out / "m1" / "summary.json").read_text())
    (out / "m1" / "summary.json").write_text(json.dumps({**m1, "calls": "automatic"}))
    entries = _entries(out, {"m1": "control", "m3": "lesion"})
    write_cohort(entries, out, StatsParams(n_permutations=N_PERM))
    html = (out / "cohort_report.html").read_text()
    assert "href='m1/report.html'" in html and "href='m3/report.html'" not in html
    assert "1 of 2 series: These fates come from automatic detection" in html


def test_series_row_rates_match_the_summary(tmp_path):
    res = toy_results(2, 3, Params().replace(n_permutations=N_PERM))
    from spinetrack.results import write_results

    write_results(res, tmp_path / "a", parquet=False)
    _, table, _ = cohort_tables(_entries(tmp_path, {"a": "c"}),
                                StatsParams(n_permutations=N_PERM))
    row = table.iloc[0]
    s = res.summary
    assert row["formation_rate"] == pytest.approx(s["formation_rate"][0])
    assert row["turnover_ratio"] == pytest.approx(s["turnover_ratio"][0])
    assert row["loss_clustering_statistic"] == pytest.approx(s["loss_clustering"]["statistic"])
    assert row["n_warnings"] == len(s["warnings"])
    # one series: the pooled tests reduce to the series' own statistic
    pooled = table.iloc[1]
    assert pooled["loss_clustering_statistic"] == pytest.approx(row["loss_clustering_statistic"])
    assert pooled["restoration_chance"] == pytest.approx(row["restoration_chance"])


def test_pooled_loss_clustering_detects_a_hot_branch_and_not_random_loss():
    rng = np.random.default_rng(1)
    n = np.array([30, 30, 30, 30])
    random = [(rng.multivariate_hypergeometric(n, 24), n) for _ in range(3)]
    hot = [(np.array([18, 3, 2, 1]), n) for _ in range(3)]
    p_random = pooled_loss_clustering(random, 2000, 0)
    p_hot = pooled_loss_clustering(hot, 2000, 0)
    assert p_hot["p_value"] < 0.001 and p_hot["statistic"] > 5
    assert p_random["p_value"] > 0.01
    assert p_random["null_mean"] == pytest.approx(1.0, abs=0.1)
    assert p_hot["n_series_tested"] == 3 and p_hot["n_branches"] == 12


def test_pooled_loss_clustering_is_calibrated_under_the_null():
    """Series with very different loss rates: stratification keeps the test's size."""
    rng = np.random.default_rng(2)
    n = np.array([20, 25, 30, 35, 40])
    pvals = []
    for _ in range(200):
        strata = [(rng.multivariate_hypergeometric(n, int(k)), n) for k in (10, 40, 90)]
        pvals.append(pooled_loss_clustering(strata, 300, rng)["p_value"])
    rejects = np.mean(np.array(pvals) < 0.05)
    assert rejects < 0.11  # 5% nominal; 200 tables


def test_pooled_restoration():
    always_one = {"n_new": 4, "n_restored": 1, "chance_n_restored": 1.0,
                  "chance_histogram": [0, 50, 0, 0, 0]}
    never = {"n_new": 6, "n_restored": 3, "chance_n_restored": 0.0,
             "chance_histogram": [80, 0, 0, 0, 0, 0, 0]}
    out = pooled_restoration([always_one, never, {"n_new": 0}], 500, 0)
    assert out["n_new"] == 10 and out["n_restored"] == 4
    assert out["observed_fraction"] == pytest.approx(0.4)
    assert out["chance_fraction"] == pytest.approx(0.1)
    assert out["p_value"] == pytest.approx(1 / 501)
    assert pooled_restoration([always_one], 500, 0)["p_value"] == 1.0


# --------------------------------------------------------------------------- command line


def test_cli_dry_run_and_errors(cohort_dir, tmp_path, capsys):
    from spinetrack.cli import main

    out = tmp_path / "out"
    assert main(["batch", str(cohort_dir), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("m1\tcontrol\t3 sessions")
    assert all(line.endswith("to run") for line in lines)
    (cohort_dir.parent / "data" / "m2" / "s1.tif").unlink()
    assert main(["batch", str(cohort_dir), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "will fail: missing" in lines[1] and "s1.tif" in lines[1]
    bad = tmp_path / "bad.csv"
    bad.write_text("animal,session,colour\nm1,a.tif,red\n")
    assert main(["batch", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown columns" in err
    assert main(["batch", str(cohort_dir), "--out", str(out), "--restore-radius", "-1",
                 "--dry-run"]) == 2


def test_cli_serial_exit_status(cohort_dir, tmp_path, capsys, monkeypatch):
    from spinetrack.cli import main

    monkeypatch.setattr(batch_mod, "_default_runner", lambda: fake_run_and_write)
    (cohort_dir.parent / "data" / "m3" / "s1.tif").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["-q", "batch", str(cohort_dir), "--out", str(out), "--serial",
                 "--n-permutations", str(N_PERM)])
    captured = capsys.readouterr()
    assert code == 1
    assert "m3 failed" in captured.err
    assert "3 series: 2 done, 0 skipped (already complete), 1 failed" in captured.err
    assert (out / "cohort_report.html").exists()


def test_example_manifests_agree():
    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    csv_specs = read_manifest(fixtures / "cohort.csv")
    yaml_specs = read_manifest(fixtures / "cohort.yaml")
    assert [s.key for s in csv_specs] == [s.key for s in yaml_specs] == ["m1", "m2", "m3"]
    for c, y in zip(csv_specs, yaml_specs):
        assert c.files == y.files and c.condition == y.condition
        assert c.overrides.get("restore_radius_um") == y.overrides.get("restore_radius_um")
    assert csv_specs[2].overrides == {"restore_radius_um": 2.5}
    assert csv_specs[1].days == yaml_specs[1].days == (0.0, 4.0, 8.0)
    if (fixtures / "tiny").is_dir():
        assert all(f.exists() for s in csv_specs for f in s.files)


def test_example_cohort_with_the_real_pipeline_on_two_workers(tmp_path, check_contract):
    """The README quick start on a LocalCluster with two worker processes, plus a bad series."""
    pytest.importorskip("distributed")
    for module in ("spinetrack.detect", "spinetrack.track"):
        pytest.importorskip(module)
    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    if not (fixtures / "tiny").is_dir():
        pytest.skip("fixtures/tiny not found")
    manifest = tmp_path / "cohort.csv"
    text = (fixtures / "cohort.csv").read_text().replace(",tiny", f",{fixtures}/tiny")
    manifest.write_text(text + "m4,lesion,,missing.tif,,\n")
    out = tmp_path / "cohort"
    tasks = plan(read_manifest(manifest), out, Params().replace(n_permutations=N_PERM),
                 report_html=False)
    outcome = run_batch(tasks, out, workers=2, memory_limit=None)
    status = outcome.status.set_index("key")
    assert status["status"].to_dict() == {"m1": "done", "m2": "done", "m3": "done",
                                          "m4": "failed"}, status["error"].to_dict()
    assert "missing.tif: no such file" in status.loc["m4", "error"]
    done = status.loc[["m1", "m2", "m3"]]
    assert (done["worker_peak_rss_mb"] > 50).all() and (done["cpu_seconds"] > 0).all()
    assert (done["cpu_seconds"] <= done["seconds"] + 1).all()
    for key in ("m1", "m2", "m3"):
        assert check_contract(out / key, 3) == []
    # the same images as three files or as one 4-D file, in different worker processes
    assert ((out / "m1" / "spines.csv").read_text() == (out / "m2" / "spines.csv").read_text())
    summary = pd.read_csv(out / "cohort_summary.csv")
    assert set(summary.loc[summary["level"] == "condition", "condition"]) == {"control",
                                                                             "lesion"}
    assert int(summary.loc[summary["key"] == "m1", "n_spines_s0"].iloc[0]) > 0
    assert "m4" in (out / "cohort_report.html").read_text()


def test_killed_batch_process_resumes(cohort_dir, tmp_path):
    """kill -9 of a running batch: finished series stay, the re-run completes the rest."""
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "out"
    script = tmp_path / "slow_batch.py"
    script.write_text(
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('tb', {str(Path(__file__))!r})\n"
        "tb = importlib.util.module_from_spec(spec); spec.loader.exec_module(tb)\n"
        "def slow(series, out_dir, params, **kw):\n"
        "    res = tb.fake_run_and_write(series, out_dir, params, **kw)\n"
        "    time.sleep(30)  # killed here, with the results in the temporary folder\n"
        "    return res\n"
        f"tasks = tb._tasks({str(cohort_dir)!r}, {str(out)!r})\n"
        "tb.run_batch(tasks[:1], sys.argv[1], serial=True, runner=tb.fake_run_and_write, cohort=False)\n"
        "tb.run_batch(tasks, sys.argv[1], serial=True, runner=slow, cohort=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            status = out / STATUS_FILE
            if (status.exists() and "running" in status.read_text()
                    and list(out.glob(".m2.partial-*/params.json"))):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the batch did not reach the second series")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / "m1" / "params.json").exists() and not (out / "m2").exists()
    assert list(out.glob(".m2.partial-*"))
    outcome = run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write, cohort=False)
    assert outcome.status.set_index("key")["status"].to_dict() == {
        "m1": "skipped", "m2": "done", "m3": "done"}
    assert not list(out.glob(".*.partial-*"))


def test_output_folder_that_is_a_file(cohort_dir, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(InputError, match="exists and is not a folder"):
        run_batch(_tasks(cohort_dir, out), out, serial=True, runner=fake_run_and_write)
    with pytest.raises(InputError, match="cannot create or write the output folder"):
        run_batch(_tasks(cohort_dir, out / "sub"), out / "sub", serial=True,
                  runner=fake_run_and_write)


def test_serial_mode_does_not_import_dask(cohort_dir, tmp_path):
    import os
    import subprocess

    script = tmp_path / "serial_batch.py"
    script.write_text(
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('tb', {str(Path(__file__))!r})\n"
        "tb = importlib.util.module_from_spec(spec); spec.loader.exec_module(tb)\n"
        f"tasks = tb._tasks({str(cohort_dir)!r}, {str(tmp_path / 'out')!r})\n"
        f"o = tb.run_batch(tasks, {str(tmp_path / 'out')!r}, serial=True, "
        "runner=tb.fake_run_and_write)\n"
        "assert o.count('done') == 3\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_forced_rerun_keeps_a_persons_edits(tmp_path):
    """A series corrected in napari (edits.json) keeps the corrections when the batch redoes it."""
    for module in ("spinetrack.detect", "spinetrack.track", "spinetrack.project"):
        pytest.importorskip(module)
    from spinetrack.edits import Edit
    from spinetrack.project import Project
    from spinetrack.results import read_results

    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    if not (fixtures / "tiny").is_dir():
        pytest.skip("fixtures/tiny not found")
    out = tmp_path / "cohort"
    tasks = plan(read_manifest(fixtures / "cohort.csv")[:1], out,
                 Params().replace(n_permutations=N_PERM), report_html=False)
    assert run_batch(tasks, out, serial=True, cohort=False).count("done") == 1
    project = Project.open(out / "m1")
    first = project.results.spines.iloc[0]
    project.apply(Edit.delete(project.results.spines, int(first["spine_id"]),
                              int(first["session"])))
    edits = (out / "m1" / "edits.json").read_bytes()
    n_auto = len(read_results(out / "m1" / "auto").spines)
    outcome = run_batch(tasks, out, serial=True, force=True, cohort=False)
    assert outcome.count("done") == 1
    assert (out / "m1" / "edits.json").read_bytes() == edits
    assert len(read_results(out / "m1" / "auto").spines) == n_auto
    assert len(read_results(out / "m1").spines) == n_auto - 1


def test_paths_are_absolute_for_workers_elsewhere(cohort_dir, monkeypatch):
    monkeypatch.chdir(cohort_dir.parent)
    (task,) = plan(read_manifest(Path(cohort_dir.name)), "out")[:1]
    assert all(f.is_absolute() and f.exists() for f in task.spec.files)
    assert task.folder == (cohort_dir.parent / "out" / "m1").resolve()


def test_a_rerun_without_report_removes_the_earlier_report(cohort_dir, tmp_path):
    out = tmp_path / "out"
    tasks = _tasks(cohort_dir, out)
    assert run_batch(tasks, out, serial=True, runner=fake_run_and_write,
                     cohort=False).count("done") == 3
    folder = tasks[0].folder
    for name in ("report.html", "compare.json", "figures/spine_map_0.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("from the earlier run")
    assert run_batch(tasks, out, serial=True, force=True, runner=fake_run_and_write,
                     cohort=False).count("done") == 3
    assert (folder / "params.json").exists()
    assert not any((folder / name).exists()
                   for name in ("report.html", "compare.json", "figures/spine_map_0.png"))


def test_a_new_detector_model_redoes_the_series(cohort_dir, tmp_path, monkeypatch):
    """A model learned again under the same name is a new input; a touched copy is not."""
    model = tmp_path / "model.json"
    model.write_text('{"weights": [1]}')
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    tasks = _tasks(cohort_dir, out, detector_model="model.json")
    assert tasks[0].params.detect.detector_model == str(model.resolve())
    assert run_batch(tasks, out, serial=True, runner=fake_run_and_write,
                     cohort=False).count("done") == 3
    meta = json.loads((out / "m1" / "params.json").read_text())
    recorded = meta["batch"]["inputs"]["detector_model"]
    assert recorded["file"] == str(model.resolve()) and recorded["size"] == model.stat().st_size
    model.touch()  # same content: still complete
    assert all(is_complete(t) for t in _tasks(cohort_dir, out, detector_model="model.json"))
    model.write_text('{"weights": [2]}')  # learned again: same name, same size, new content
    tasks = _tasks(cohort_dir, out, detector_model="model.json")
    assert not any(is_complete(t) for t in tasks)
    assert run_batch(tasks, out, serial=True, runner=fake_run_and_write,
                     cohort=False).count("done") == 3


def test_manifest_model_paths_are_relative_to_the_manifest(cohort_dir, tmp_path, monkeypatch):
    text = cohort_dir.read_text().splitlines()
    lines = [text[0] + ",detector_model"] + [ln + ",models/m.json" for ln in text[1:]]
    cohort_dir.write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path.parent)
    spec = read_manifest(cohort_dir)[0]
    assert spec.overrides["detector_model"] == str((tmp_path / "models" / "m.json").resolve())


def test_detector_model_option_is_stored_absolute(tmp_path, monkeypatch):
    import argparse

    from spinetrack.params import add_arguments, params_from_args

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    params = params_from_args(parser.parse_args(["--detector-model", "m.json"]))
    assert params.detect.detector_model == str(tmp_path.resolve() / "m.json")


def test_malformed_edits_are_reported_under_the_series_folder(cohort_dir, tmp_path):
    out = tmp_path / "out"
    tasks = _tasks(cohort_dir, out)[:1]
    (out / "m1").mkdir(parents=True)
    (out / "m1" / "edits.json").write_text('{"edits": [{"kind": "add", "session": 0}]}')
    assert run_batch(tasks, out, serial=True, runner=fake_run_and_write,
                     cohort=False).count("failed") == 1
    error = _status(out).loc["m1", "error"]
    assert str(out / "m1" / "edits.json") in error and "malformed edit" in error
    assert batch_mod._PARTIAL not in error


def _write_toy(folder, n_sessions, seed, days=None, edits=0):
    from spinetrack.results import write_results

    res = toy_results(n_sessions, seed, Params().replace(n_permutations=N_PERM))
    res.summary["calls"] = "automatic"
    if days is not None:
        res.summary["days"] = list(days)
    if edits:
        res.summary["edits"] = {"applied": edits, "skipped": 0}
    write_results(res, folder, parquet=False)


def test_a_condition_of_series_with_different_lengths_is_flagged(tmp_path):
    from spinetrack.cohort import write_cohort

    _write_toy(tmp_path / "a", 4, 1, days=[0, 4, 8, 12])
    _write_toy(tmp_path / "b", 4, 2, days=[0, 4, 8, 12])
    _write_toy(tmp_path / "c", 3, 3, days=[0, 4, 8])
    _write_toy(tmp_path / "d", 4, 4, days=[0, 4, 8, 12])
    entries = _entries(tmp_path, {"a": "stress", "b": "stress", "c": "stress", "d": "control"})
    write_cohort(entries, tmp_path, StatsParams(n_permutations=N_PERM))
    summary = pd.read_csv(tmp_path / "cohort_summary.csv", keep_default_na=False)
    pooled = summary[summary["level"] == "condition"].set_index("condition")
    warning = pooled.loc["stress", "pooling_warning"]
    assert "2 with 4 sessions to day 12 (a, b)" in warning
    assert "1 with 3 sessions to day 8 (c)" in warning
    assert pooled.loc["control", "pooling_warning"] == ""
    assert float(pooled.loc["control", "last_day"]) == 12 and pooled.loc["stress", "last_day"] == ""
    data = json.loads((tmp_path / "cohort_summary.json").read_text())
    assert data["conditions"]["stress"]["warning"] == warning
    assert "warning" not in data["conditions"]["control"]
    assert "Mixed lengths" in (tmp_path / "cohort_report.html").read_text()


def test_corrected_series_are_counted_apart_from_unchecked_ones(tmp_path):
    from spinetrack.cohort import write_cohort

    _write_toy(tmp_path / "a", 3, 1, edits=4)
    _write_toy(tmp_path / "b", 3, 2)
    entries = _entries(tmp_path, {"a": "c", "b": "c"})
    write_cohort(entries, tmp_path, StatsParams(n_permutations=N_PERM))
    html = (tmp_path / "cohort_report.html").read_text()
    assert "1 of 2 series: These fates come from automatic detection and linking that nobody " \
           "has checked yet" in html
    assert "1 of 2 series (a) carries 4 corrections by a person" in html
    write_cohort(entries[:1], tmp_path, StatsParams(n_permutations=N_PERM))
    html = (tmp_path / "cohort_report.html").read_text()
    assert "nobody has checked" not in html and "1 of 1 series (a) carries" in html
    assert "misses or adds about a quarter" in html  # why checking matters, said once


def test_a_pooled_p_at_its_floor_is_an_upper_bound():
    from spinetrack.cohort import p_text

    assert p_text(1 / 2001, 2000) == "p ≤ 5.0e-04"
    assert p_text(3 / 2001, 2000) == "p = 0.0015"
    assert p_text(0.2, None) == "p = 0.2"
    assert p_text(None, 2000) == "p = n/a"


def test_inputs_without_a_model_are_as_before(cohort_dir, tmp_path):
    """Without a model the inputs are as before, so earlier complete folders stay complete."""
    (task,) = _tasks(cohort_dir, tmp_path / "out")[:1]
    assert set(task.fingerprint) == {"animal", "series", "files", "days", "names",
                                     "voxel_size_um"}
