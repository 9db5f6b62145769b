"""Branch statistics on hand-made tables with known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from spinetrack.errors import InputError
from spinetrack.fates import classify_fates
from spinetrack.params import Params, StatsParams
from spinetrack.stats import (
    _BranchRestoration,
    _with_sessions,
    benjamini_hochberg,
    branch_statistics,
    branch_table_from_lines,
    count_restorations,
    dispersion_index,
    loss_clustering_test,
    loss_pvalues,
    loss_spacing_test,
    nearest_neighbour_mean,
    restoration_test,
)

FAST = StatsParams(n_permutations=2000, seed=1)


def table(rows):
    """rows: (spine_id, sessions, branch_id, arc_um) -> spines table."""
    out = [(sid, s, b, a) for sid, sessions, b, a in rows for s in sessions]
    return pd.DataFrame(out, columns=["spine_id", "session", "branch_id", "arc_um"])


def branches(*ranges):
    """(branch_id, start, end) -> branch table."""
    return pd.DataFrame([(b, e - s, s, e) for b, s, e in ranges],
                        columns=["branch_id", "length_um", "arc_start_um", "arc_end_um"])


@pytest.fixture
def small():
    # branch 0 (0..20 µm): A stable, B lost after s1, C lost after s0, D formed s1, E transient s1
    # branch 1 (0..10 µm): F, G stable
    spines = table([
        (1, [0, 1, 2], 0, 1.0), (2, [0, 1], 0, 5.0), (3, [0], 0, 9.0), (4, [1, 2], 0, 13.0),
        (5, [1], 0, 17.0), (6, [0, 1, 2], 1, 2.0), (7, [0, 1, 2], 1, 6.0)])
    fates = classify_fates(spines, 3)
    return spines, fates, branches((0, 0.0, 20.0), (1, 0.0, 10.0))


def test_counts_densities_rates_turnover_survival(small):
    spines, fates, bt = small
    br, sm = branch_statistics(spines, fates, bt, 3, FAST, days=[0, 2, 6])
    b0 = br.set_index("branch_id").loc[0]
    assert [b0[f"n_spines_s{k}"] for k in range(3)] == [3, 4, 2]
    assert b0["density_s1"] == pytest.approx(4 / 20)
    assert (b0["n_stable"], b0["n_lost"], b0["n_formed"], b0["n_transient"],
            b0["n_restored"]) == (1, 2, 1, 1, 0)
    assert b0["loss_fraction"] == pytest.approx(2 / 3)
    assert (b0["n_gained_s0_s1"], b0["n_eliminated_s0_s1"]) == (2, 1)
    assert (b0["n_gained_s1_s2"], b0["n_eliminated_s1_s2"]) == (0, 2)
    assert b0["formation_rate_s0_s1"] == pytest.approx(2 / 3)
    assert b0["elimination_rate_s0_s1"] == pytest.approx(1 / 3)
    assert b0["turnover_ratio_s0_s1"] == pytest.approx(3 / 6)
    assert b0["turnover_ratio_mean_s0_s1"] == pytest.approx(3 / 7)
    assert b0["turnover_ratio_s1_s2"] == pytest.approx(2 / 8)
    assert b0["turnover_ratio_mean_s1_s2"] == pytest.approx(2 / 6)
    assert b0["formation_rate_per_day_s0_s1"] == pytest.approx(2 / 3 / 2)
    assert b0["elimination_rate_per_day_s1_s2"] == pytest.approx(0.5 / 4)
    assert [b0[f"survival_s{k}"] for k in range(3)] == pytest.approx([1, 2 / 3, 1 / 3])

    assert sm["n_sessions"] == 3 and sm["n_branches"] == 2
    assert sm["spines_per_session"] == [5, 6, 4]
    assert sm["fate_counts"] == {"stable": 3, "lost": 2, "formed": 1, "transient": 1,
                                 "restored": 0}
    assert sm["transitions"] == ["s0_s1", "s1_s2"]
    assert sm["formation_rate"] == pytest.approx([2 / 5, 0])
    assert sm["elimination_rate"] == pytest.approx([1 / 5, 2 / 6])
    assert sm["turnover_ratio"] == pytest.approx([3 / 10, 2 / 12])
    assert sm["turnover_ratio_mean"] == pytest.approx([3 / 11, 2 / 10])
    assert sm["interval_days"] == pytest.approx([2, 4])
    assert sm["formation_rate_per_day"] == pytest.approx([2 / 5 / 2, 0])
    assert sm["elimination_rate_per_day"] == pytest.approx([1 / 5 / 2, 2 / 6 / 4])
    assert sm["survival_fraction"] == pytest.approx([1, 4 / 5, 3 / 5])
    assert sm["density_per_session"] == pytest.approx([5 / 30, 6 / 30, 4 / 30])
    for key in ("restoration", "loss_clustering"):
        assert key in sm


def test_no_days_means_no_per_day_rates(small):
    spines, fates, bt = small
    br, sm = branch_statistics(spines, fates, bt, 3, FAST)
    assert sm["formation_rate_per_day"] is None and sm["days"] is None
    assert not any("per_day" in c for c in br.columns)


def test_dispersion_index_is_scaled_pearson_chi_square():
    lost, n = np.array([5, 1, 3]), np.array([10, 10, 12])
    chi2 = sps.chi2_contingency(np.stack([lost, n - lost]), correction=False)[0]
    big_n = n.sum()
    assert dispersion_index(lost, n) == pytest.approx(chi2 * (big_n - 1) / (big_n * 2))
    # hand value: p = 0.3, E = 3 each, sum (L-E)^2 / (n p q) = 8 / 2.1
    assert dispersion_index(np.array([5, 1]), np.array([10, 10])) == pytest.approx(
        19 / 20 * 8 / 2.1)
    assert np.isnan(dispersion_index(np.array([0, 0]), np.array([4, 5])))


def test_dispersion_index_has_mean_one_under_random_loss():
    n = np.array([8, 20, 35, 12, 40])
    null = dispersion_index(np.random.default_rng(0).multivariate_hypergeometric(
        n, 30, size=20000), n)
    assert null.mean() == pytest.approx(1.0, abs=0.03)


def test_loss_pvalues_are_one_sided_hypergeometric_and_fisher():
    lost, n = np.array([9, 2, 3, 0]), np.array([12, 15, 10, 0])
    p = loss_pvalues(lost, n)
    for b in range(3):
        assert p[b] == pytest.approx(sps.hypergeom.sf(lost[b] - 1, n.sum(), lost.sum(), n[b]))
        rest_l, rest_n = lost.sum() - lost[b], n.sum() - n[b]
        fisher = sps.fisher_exact([[lost[b], n[b] - lost[b]], [rest_l, rest_n - rest_l]],
                                  alternative="greater")[1]
        assert p[b] == pytest.approx(fisher)
    assert p[0] < 0.01 and np.isnan(p[3])


def test_benjamini_hochberg_hand_example():
    p = [0.01, 0.04, np.nan, 0.03, 0.005, 0.5]
    # sorted 0.005 0.01 0.03 0.04 0.5 (m = 5): 5p/rank = .025 .025 .05 .05 .5
    expected = [0.025, 0.05, np.nan, 0.05, 0.025, 0.5]
    np.testing.assert_allclose(benjamini_hochberg(p), expected)
    assert benjamini_hochberg([0.9, 0.95]).tolist() == [0.95, 0.95]
    finite = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(finite), sps.false_discovery_control(finite))


def test_permutation_pvalue_is_roughly_uniform_under_the_null():
    rng = np.random.default_rng(3)
    n = np.array([25, 30, 22, 38, 27, 33])
    ps = []
    for _ in range(300):
        lost = rng.binomial(n, 0.25)
        ps.append(loss_clustering_test(lost, n, 999, rng)["p_value"])
    ps = np.array(ps)
    # discreteness makes the test slightly conservative, never anti-conservative
    assert 0.015 <= np.mean(ps <= 0.05) <= 0.09
    assert 0.4 <= np.mean(ps <= 0.5) <= 0.6
    assert sps.kstest(ps, "uniform").pvalue > 0.001


def test_clustered_losses_give_a_small_pvalue_and_identify_the_branch():
    lost, n = np.array([18, 2, 3, 2, 3]), np.array([25, 25, 25, 25, 25])
    res = loss_clustering_test(lost, n, 10000, 0)
    assert res["statistic"] > 5 and res["p_value"] < 0.001
    q = benjamini_hochberg(loss_pvalues(lost, n))
    assert q[0] < 0.001 and np.all(q[1:] > 0.5)


def test_clustering_with_no_loss_or_one_branch():
    assert loss_clustering_test([0, 0], [5, 5])["p_value"] == 1.0
    assert loss_clustering_test([2], [5])["p_value"] is None


def test_nearest_neighbour_mean_hand_value():
    assert nearest_neighbour_mean(np.array([5.0, 0.0, 1.0])) == pytest.approx(2.0)
    np.testing.assert_allclose(nearest_neighbour_mean(np.array([[0, 2.0], [0, 3.0]])), [2, 3])


def test_loss_spacing_clustered_vs_spread():
    positions = np.arange(40, dtype=float) * 2.0
    clustered = np.zeros(40, bool)
    clustered[10:16] = True
    obs, null = loss_spacing_test(positions, clustered, 4000, 0)
    assert obs == pytest.approx(2.0)
    assert (1 + np.sum(null <= obs)) / 4001 < 0.01
    spread = np.zeros(40, bool)
    spread[::7] = True
    obs, null = loss_spacing_test(positions, spread, 4000, 0)
    assert (1 + np.sum(null <= obs)) / 4001 > 0.9


def _fates_from(rows, n_sessions):
    return classify_fates(table(rows), n_sessions)


def test_restoration_chance_matches_analytic_value():
    # 40 branches 0..100 µm; one site lost after s0 at 50; one new spine in s1 far from it;
    # survivors at 20 and 80. Chance a uniform spine lands within 2 µm of the lost site.
    rows, sid = [], 0
    for b in range(40):
        rows += [(sid, [0], b, 50.0), (sid + 1, [1], b, 90.0), (sid + 2, [0, 1], b, 20.0),
                 (sid + 3, [0, 1], b, 80.0)]
        sid += 4
    fates = _fates_from(rows, 2)
    rng_ = {b: (0.0, 100.0) for b in range(40)}
    for occ, relink, expected in [(0.0, 0.0, 4 / 100), (1.0, 0.0, 4 / 96),
                                  (1.0, 1.5, 1 / 93)]:
        res, per_branch = restoration_test(fates, rng_, 2.0, occ, relink, 2000, 7)
        assert res["observed_fraction"] == 0
        assert res["chance_fraction"] == pytest.approx(expected, rel=0.08)
        assert res["p_value"] == 1.0
        assert per_branch["restored_chance"].mean() == pytest.approx(res["chance_fraction"])
    assert sum(res["chance_histogram"]) == 2000


def test_relink_exclusion_applies_on_the_new_spines_own_side_only():
    # the lost site (side +1) at 50 µm; with relink radius = restore radius a new spine on
    # the same side can never be restored by chance; one on the other side can (the linker
    # never links across sides): chance 4/100 as without any exclusion
    rows, sid = [], 0
    for b in range(40):
        rows += [(sid, [0], b, 50.0), (sid + 1, [1], b, 90.0)]
        sid += 2
    fates = _fates_from(rows, 2)
    rng_ = {b: (0.0, 100.0) for b in range(40)}
    same = fates.assign(side=1)
    res, _ = restoration_test(same, rng_, 2.0, 0.0, 2.0, 2000, 7)
    assert res["chance_fraction"] == 0
    other = fates.assign(side=np.where(fates["spine_id"] % 2 == 0, 1, -1))
    res, _ = restoration_test(other, rng_, 2.0, 0.0, 2.0, 2000, 7)
    assert res["chance_fraction"] == pytest.approx(4 / 100, rel=0.1)
    # a spine of unknown side (0: added by hand, or pointing in z) may link to either side
    for lost_side, new_side in ((0, 1), (1, 0)):
        unknown = fates.assign(side=np.where(fates["spine_id"] % 2 == 0, lost_side, new_side))
        res, _ = restoration_test(unknown, rng_, 2.0, 0.0, 2.0, 2000, 7)
        assert res["chance_fraction"] == 0


def test_restoration_excess_is_detected():
    rng = np.random.default_rng(5)
    rows, sid = [], 0
    for b in range(6):
        sites = np.sort(rng.uniform(0, 80, 30))
        lost = rng.random(30) < 0.3
        for a, is_lost in zip(sites, lost):
            rows.append((sid, [0] if is_lost else [0, 1, 2], b, float(a)))
            sid += 1
        for a in sites[lost][:4]:  # new spines in s2 right at lost sites
            rows.append((sid, [2], b, float(a) + 0.3))
            sid += 1
    fates = _fates_from(rows, 3)
    res, _ = restoration_test(fates, {b: (0.0, 80.0) for b in range(6)}, 2.0, 0.25, 1.5,
                              2000, 1)
    assert res["observed_fraction"] == 1.0
    assert res["chance_fraction"] < 0.5
    assert res["p_value"] < 0.001
    assert res["by_session"][0]["session"] == 2


def test_vectorised_rule_equals_classify_fates_spine_by_spine():
    rng = np.random.default_rng(11)
    for _ in range(60):
        n_sessions = int(rng.integers(2, 6))
        rows = []
        for sid in range(int(rng.integers(2, 30))):
            first = int(rng.integers(0, n_sessions))
            last = int(rng.integers(first, n_sessions))
            arc = float(rng.integers(0, 30)) / 2 if rng.random() < 0.5 else rng.uniform(0, 15)
            rows.append((sid, list(range(first, last + 1)), int(rng.integers(0, 2)), arc))
        fates = _fates_from(rows, n_sessions)
        want = dict(zip(fates["spine_id"], fates["fate"] == "restored"))
        for _, fb in _with_sessions(fates).groupby("branch_id"):
            br = _BranchRestoration(fb, 0.0, 15.0, 2.0)
            got = br.observed()
            assert got.tolist() == [want[i] for i in br.ids[br.new]]
        assert count_restorations(fates) == sum(want.values())


def test_seeded_and_reproducible(small):
    spines, fates, bt = small
    a = branch_statistics(spines, fates, bt, 3, FAST)
    b = branch_statistics(spines, fates, bt, 3, FAST)
    c = branch_statistics(spines, fates, bt, 3, StatsParams(n_permutations=2000, seed=2))
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[1]["loss_clustering"]["null_mean"] != c[1]["loss_clustering"]["null_mean"]


def test_whole_params_supply_the_restore_radius():
    rows = [(1, [0], 0, 10.0), (2, [1], 0, 11.5), (3, [0, 1], 0, 30.0)]
    spines = table(rows)
    fates = classify_fates(spines, 2, restore_radius_um=1.0)
    _, sm = branch_statistics(spines, fates, None, 2,
                              Params().replace(restore_radius_um=1.0, n_permutations=200))
    assert sm["restoration"]["restore_radius_um"] == 1.0
    assert not any("restoration rule" in w for w in sm["warnings"])
    _, sm = branch_statistics(spines, fates, None, 2, StatsParams(n_permutations=200),
                              restore_radius_um=2.0)
    assert any("restoration rule" in w for w in sm["warnings"])
    assert any("no centre lines" in w for w in sm["warnings"])


def test_branch_table_from_lines_takes_the_common_stretch():
    lines = pd.DataFrame({
        "branch_id": [0, 0, 0, 0, 0, 0, 1, 1],
        "session": [0, 0, 1, 1, 2, 2, 0, 0],
        "arc_um": [-1.0, 30.0, 2.0, 31.0, 0.0, 25.0, 5.0, 9.0]})
    bt = branch_table_from_lines(lines).set_index("branch_id")
    assert (bt.loc[0, "arc_start_um"], bt.loc[0, "arc_end_um"]) == (2.0, 25.0)
    assert bt.loc[0, "length_um"] == 23.0
    assert bt.loc[1, "n_sessions_traced"] == 1 and bt.loc[1, "length_um"] == 4.0


def test_bad_input_is_a_one_line_input_error(small):
    spines, fates, bt = small
    bad = fates.assign(present=fates["present"].str[:2])
    with pytest.raises(InputError, match="present strings"):
        branch_statistics(spines, bad, bt, 3, FAST)
    with pytest.raises(InputError, match="lacks columns"):
        branch_statistics(spines.drop(columns="arc_um"), fates, bt, 3, FAST)
    with pytest.raises(InputError, match="day numbers"):
        branch_statistics(spines, fates, bt, 3, FAST, days=[0, 1])


def test_rr30a_truth(rr30a):
    spines = pd.read_csv(rr30a / "truth_spines.csv")
    lines = pd.read_csv(rr30a / "truth_lines.csv")
    fates = classify_fates(spines, 3)
    days = pd.read_csv(rr30a / "sessions.csv")["days_from_first"].tolist()
    br, sm = branch_statistics(spines, fates, branch_table_from_lines(lines), 3,
                               StatsParams(n_permutations=2000), days=days)
    # one lost spine (109) sits beyond session 2's traced end on branch 2 and
    # 0.05 µm past session 1's, where the sessions' tracings stop 2.4 µm apart
    assert sm["spines_per_session_all"] == [139, 133, 111]
    assert sm["left_out_spine_ids"] == [109]
    assert sm["spines_per_session"] == [138, 133, 111]
    assert sm["fate_counts"] == {"stable": 97, "lost": 41, "formed": 9, "transient": 9,
                                 "restored": 5}
    assert sm["restoration"]["n_new"] == 23 and sm["restoration"]["n_restored"] == 5
    assert len(br) == 5 and br["loss_q"].between(0, 1).all()
    assert br["n_lost"].sum() == 41
    assert 0 < sm["loss_clustering"]["p_value"] <= 1


def test_spines_where_a_session_traced_no_dendrite_are_left_out():
    # branch 0 traced 0-40 µm in every session; branch 1 only in session 0
    rows = [(0, [0], 0, 10.0), (1, [0, 1], 0, 20.0), (2, [1], 0, 30.0),
            (3, [0], 0, 45.0),   # beyond the common stretch (40 + 2 µm slack)
            (4, [0], 1, 5.0)]    # on a branch session 1 does not trace
    fates = _fates_from(rows, 2)
    spines = table(rows)
    traced = branches((0, 0.0, 40.0), (1, 0.0, 10.0)).assign(n_sessions_traced=[2, 1])
    br, sm = branch_statistics(spines, fates, traced, 2, StatsParams(n_permutations=200))
    assert sm["spines_per_session"] == [2, 2]
    assert sm["spines_per_session_all"] == [4, 2]
    assert sm["fate_counts"]["lost"] == 1
    assert any("left out of the statistics" in w for w in sm["warnings"])
    # only the branch traced in every session counts towards the traced length
    assert sm["total_length_um"] == 40.0
    assert sm["density_per_session"] == [2 / 40.0, 2 / 40.0]


def test_slack_beyond_a_traced_end_only_where_the_sessions_stop_together():
    # branch 0: both sessions trace 0-40 µm (a real end); branch 1: session 1 stops
    # at 30 µm, session 0 goes on to 40 µm (a tracing that stopped early)
    lines = pd.DataFrame([(b, k, a) for b, ends in ((0, (40, 40)), (1, (40, 30)))
                          for k, end in enumerate(ends) for a in np.linspace(0, end, 9)],
                         columns=["branch_id", "session", "arc_um"])
    traced = branch_table_from_lines(lines)
    assert traced["arc_last_end_um"].tolist() == [40.0, 40.0]
    rows = [(0, [0, 1], 0, 41.0),   # 1 µm past a common end: counted
            (1, [0], 1, 31.0),      # 1 µm past where session 1 stopped: left out
            (2, [0, 1], 1, 10.0)]
    fates = _fates_from(rows, 2)
    spines = table(rows)
    br, sm = branch_statistics(spines, fates, traced, 2, StatsParams(n_permutations=200))
    assert sm["left_out_spine_ids"] == [1]
    assert sm["spines_per_session"] == [2, 2] and sm["fate_counts"]["lost"] == 0
    assert sm["n_branches"] == 2 and sm["total_length_um"] == 70.0


def test_a_branch_some_session_does_not_trace_has_no_density():
    rows = [(0, [0, 1], 0, 10.0), (1, [0], 1, 5.0)]
    fates = _fates_from(rows, 2)
    spines = table(rows)
    traced = branches((0, 0.0, 40.0), (1, 0.0, 10.0)).assign(n_sessions_traced=[2, 1])
    br, sm = branch_statistics(spines, fates, traced, 2, StatsParams(n_permutations=200))
    assert sm["n_branches"] == 1 and sm["n_branches_partly_traced"] == 1
    assert br.loc[br["branch_id"] == 1, ["density_s0", "density_s1"]].isna().all(axis=None)
    assert br.loc[br["branch_id"] == 0, "density_s0"].item() == 1 / 40.0
