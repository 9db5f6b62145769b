"""Learning the detector's selection from a person's spines (spinetrack.learn)."""

import json

import numpy as np
import pandas as pd
import pytest

from spinetrack.cli import main
from spinetrack.detect import detect_spines
from spinetrack.errors import InputError
from spinetrack.learn import (FEATURES, DetectorModel, candidate_features, detection_counts,
                              fit_model, label_candidates, learn_from_candidates,
                              learned_keep, load_model, select_detections,
                              session_candidates)
from spinetrack.params import Params

SHAPE = (48, 512, 512)


def _f1(counts):
    tp, fp, fn = counts
    return 2 * tp / max(2 * tp + fp + fn, 1)


@pytest.fixture(scope="module")
def two_seeds():
    """Two synthetic sessions (seeds 0, 1): session, candidates, lateral-only truth, lines."""
    from spinetrack.synth import make_series

    out = []
    for seed in (0, 1):
        syn = make_series(preset="realistic", n_sessions=1, seed=seed, shape=SHAPE)
        truth = syn.truth["spines"].query("session == 0")
        out.append({"syn": syn, "session": syn.series[0],
                    "cands": session_candidates(syn.series[0]),
                    # a person who marks only lateral spines (none straight above or below)
                    "lateral": truth[truth["side"] != 0].reset_index(drop=True),
                    "lines": syn.truth["lines"].query("session == 0")})
    return out


def test_defaults_are_reproduced_from_the_candidates(two_seeds):
    s = two_seeds[0]
    tracing_free = select_detections(s["cands"])
    from spinetrack.detect import detect_session

    _, found = detect_session(s["session"], Params())
    pd.testing.assert_frame_equal(tracing_free, found)


@pytest.mark.parametrize("combine", ["veto", "replace"])
def test_learning_a_lateral_only_annotator_keeps_or_raises_f1_on_another_seed(two_seeds,
                                                                              combine):
    train, test = two_seeds
    model = learn_from_candidates([train["cands"]], train["lateral"], train["lines"], [0],
                                  combine=combine)
    assert model.provenance["n_positive"] > 20 and model.provenance["n_negative"] > 20
    f = test["cands"]
    default = detection_counts(select_detections(f), test["lateral"], test["lines"])
    learned = detection_counts(select_detections(f, model.accepts(candidate_features(f))),
                               test["lateral"], test["lines"])
    print(combine, default, learned)
    assert _f1(learned) >= _f1(default)
    if combine == "replace":  # fewer false positives: it learned to skip z spines
        assert learned[1] < default[1]


def test_hook_keeps_what_the_model_accepts(two_seeds, tmp_path):
    from spinetrack.trace import trace_dendrites

    s = two_seeds[1]["session"]
    p = Params()
    tracing = trace_dendrites(s.image, s.voxel_size_um, p.trace)
    default = detect_spines(s.image, s.voxel_size_um, tracing, p.detect)
    # a model that trusts the hand-set tests reproduces the defaults
    trust = DetectorModel("logistic", ["hand_keep"], {"mean": [0.0], "scale": [1.0],
                                                      "intercept": -5.0, "coef": [10.0]})
    trust.save(tmp_path / "trust.json")
    same = detect_spines(s.image, s.voxel_size_um, tracing,
                         p.detect.__class__(detector_model=str(tmp_path / "trust.json")))
    pd.testing.assert_frame_equal(same, default)
    refuse = DetectorModel("logistic", ["hand_keep"], {"mean": [0.0], "scale": [1.0],
                                                       "intercept": -5.0, "coef": [0.0]})
    refuse.save(tmp_path / "refuse.json")
    none = detect_spines(s.image, s.voxel_size_um, tracing,
                         p.detect.__class__(detector_model=str(tmp_path / "refuse.json")))
    assert len(default) > 10 and len(none) == 0


def test_labels_positive_negative_and_left_out():
    feats = pd.DataFrame({"z_um": [10.0, 10.0, 10.0, 10.0], "y_um": [5.0, 5.5, 9.0, 40.0],
                          "x_um": [5.0, 5.0, 5.0, 5.0], "branch_id": [0, 0, 0, 1]})
    spines = pd.DataFrame({"z_um": [10.0], "y_um": [5.1], "x_um": [5.0]})
    lines = pd.DataFrame({"z_um": [10.0, 10.0], "y_um": [0.0, 20.0], "x_um": [4.0, 4.0],
                          "branch_id": [0, 0], "point": [0, 1]})
    # best match, duplicate of the same head, clean negative near the lines, far away
    assert label_candidates(feats, spines, lines).tolist() == [1, 1, 0, -1]
    assert label_candidates(feats, spines, lines, duplicates="negative").tolist() == [1, 0, 0, -1]
    # without lines: the region is the traced branch holding a match
    assert label_candidates(feats, spines).tolist() == [1, 1, 0, -1]
    bad = spines.assign(is_bad=True)
    assert label_candidates(feats, bad, lines).tolist() == [-1, -1, 0, -1]


def test_model_round_trips_through_json(tmp_path, rng):
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y = (X["a"] - X["b"] ** 2 + 0.2 * rng.normal(size=300) > -0.5).astype(int).to_numpy()
    accuracy = {}
    for kind in ("boosting", "logistic"):
        model = fit_model(X, y, kind=kind, provenance={"note": "test"})
        path = model.save(tmp_path / f"{kind}.json")
        back = load_model(path)
        assert back.kind == kind and back.features == ["a", "b", "c"]
        assert back.threshold == model.threshold and back.provenance["note"] == "test"
        np.testing.assert_allclose(back.probability(X), model.probability(X))
        assert json.loads(path.read_text())["format"] == "spinetrack-detector-model"
        accuracy[kind] = float(np.mean(back.accepts(X) == (y == 1)))
    # the trees capture the quadratic term that the linear model cannot
    assert accuracy["boosting"] > max(0.85, accuracy["logistic"])


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not a JSON detector model"),
    ('{"format": "other"}', "is not a spinetrack detector model"),
    ('{"format": "spinetrack-detector-model", "version": 1, "kind": "forest", '
     '"features": ["a"], "threshold": 0.5, "params": {}}', "unknown model kind"),
    ('{"format": "spinetrack-detector-model", "version": 1, "kind": "logistic", '
     '"features": ["a"], "threshold": 0.5, "params": {"coef": []}}', "malformed"),
])
def test_bad_model_file_gives_one_line_error(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="no such detector model"):
        learned_keep(tmp_path / "missing.json", pd.DataFrame())


def test_cli_learn_and_detect_with_the_model(two_seeds, tmp_path, capsys):
    from spinetrack.synth import write_synth

    write_synth(two_seeds[0]["syn"], tmp_path / "syn")
    model = tmp_path / "model.json"
    rc = main(["-q", "learn", str(tmp_path / "syn" / "session0.tif"), "--spines",
               str(tmp_path / "syn" / "truth"), "--out", str(model)])
    assert rc == 0 and load_model(model).features == list(FEATURES)
    rc = main(["-q", "detect", str(tmp_path / "syn" / "session0.tif"), "--out",
               str(tmp_path / "det"), "--detector-model", str(model)])
    assert rc == 0 and (tmp_path / "det" / "session0_spines.csv").exists()
    (tmp_path / "bad.json").write_text("[]")
    capsys.readouterr()
    rc = main(["-q", "detect", str(tmp_path / "syn" / "session0.tif"), "--out",
               str(tmp_path / "det2"), "--detector-model", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "bad.json" in err and len(err.splitlines()) == 1
    rc = main(["-q", "learn", str(tmp_path / "syn" / "session0.tif"), "--spines",
               str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "m2.json")])
    assert rc == 2 and "nothing.csv" in capsys.readouterr().err


def test_too_few_labels_is_a_one_line_error(rng):
    X = pd.DataFrame(rng.normal(size=(20, 2)), columns=["a", "b"])
    with pytest.raises(InputError, match="too few labelled candidates"):
        fit_model(X, np.zeros(20, int))
    with pytest.raises(InputError, match="unknown model kind"):
        fit_model(X, np.arange(20) % 2, kind="forest")


def test_model_from_another_version_names_the_file(tmp_path, two_seeds):
    future = DetectorModel("logistic", ["hand_keep", "new_measure"],
                           {"mean": [0.0, 0.0], "scale": [1.0, 1.0], "intercept": 0.0,
                            "coef": [1.0, 1.0]})
    path = future.save(tmp_path / "future.json")
    with pytest.raises(InputError, match="new_measure") as info:
        learned_keep(path, two_seeds[0]["cands"])
    assert str(path) in str(info.value)


def _project(folder, n_auto, n_deleted, n_added):
    """A corrected project: auto/spines.csv, spines.csv with some deleted and added, edits.json."""
    from spinetrack.edits import Edit, save_edits

    rng = np.random.default_rng(3)
    auto = pd.DataFrame({"spine_id": range(n_auto), "session": 0,
                         "z_um": rng.uniform(0, 10, n_auto), "y_um": rng.uniform(0, 50, n_auto),
                         "x_um": rng.uniform(0, 50, n_auto)})
    added = pd.DataFrame({"spine_id": range(n_auto, n_auto + n_added), "session": 0,
                          "z_um": 5.0, "y_um": 60.0 + np.arange(n_added), "x_um": 60.0})
    final = pd.concat([auto.iloc[n_deleted:], added], ignore_index=True)
    (folder / "auto").mkdir(parents=True)
    auto.to_csv(folder / "auto" / "spines.csv", index=False)
    final.to_csv(folder / "spines.csv", index=False)
    edits = ([Edit.delete(auto, i, 0) for i in range(n_deleted)]
             + [Edit.add(0, row[["z_um", "y_um", "x_um"]].to_numpy(float))
                for _, row in added.iterrows()])
    save_edits(folder, edits)


def test_learning_from_a_barely_corrected_project_warns(tmp_path, caplog):
    from spinetrack.learn import SMALL_CORRECTED_SHARE, read_annotations

    _project(tmp_path / "few", n_auto=80, n_deleted=2, n_added=1)
    with caplog.at_level("INFO", logger="spinetrack.learn"):
        spines, _ = read_annotations(tmp_path / "few")
    c = spines.attrs["corrections"]
    assert (c["n_edits"], c["n_spines"], c["n_added"], c["n_removed"]) == (3, 79, 1, 2)
    assert c["share_changed"] < SMALL_CORRECTED_SHARE
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "changed 3 of its 79 spines" in warned[0].getMessage()
    assert "mostly imitates the detector" in warned[0].getMessage()
    # a thorough review: said, not warned
    caplog.clear()
    _project(tmp_path / "many", n_auto=80, n_deleted=12, n_added=10)
    with caplog.at_level("INFO", logger="spinetrack.learn"):
        spines, _ = read_annotations(tmp_path / "many")
    assert spines.attrs["corrections"]["n_added"] == 10
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("changed 22 of its 78 spines" in r.getMessage() for r in caplog.records)
