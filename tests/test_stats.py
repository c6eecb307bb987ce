"""Statistics on constructed data whose answers are known."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as stats_scipy
from test_figures import synthetic_results

from bnstudy import stats


def test_t_interval_contains_the_true_mean():
    rng = np.random.default_rng(1)
    mean, lo, hi = stats.t_interval(rng.normal(3.0, 1.0, 10))
    assert lo < 3.0 < hi
    assert lo < mean < hi


def test_t_interval_has_its_nominal_coverage_with_three_seeds():
    # With n = 3 a normal-quantile interval would cover ~80%; the t interval covers 95%.
    rng = np.random.default_rng(2)
    hits = [
        lo < 0.7 < hi
        for lo, hi in (stats.t_interval(rng.normal(0.7, 0.05, 3))[1:] for _ in range(4000))
    ]
    assert 0.935 < np.mean(hits) < 0.965


def test_t_interval_edge_cases():
    assert np.isnan(stats.t_interval([0.5])[1])
    assert stats.t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_paired_test_rejects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 20), rng.normal(2.0, 1.0, 20)
    diff, lo, hi, p = stats.paired(a, b)
    assert p < 1e-3 and lo < diff < hi < 0
    same = stats.paired(rng.normal(0.0, 1.0, 20), rng.normal(0.0, 1.0, 20))
    assert same[3] > 0.05 and same[1] < 0 < same[2]


def test_pairing_by_seed_removes_the_shared_seed_effect():
    # Each seed shifts both cells alike (same init and batches); b is a + 0.01 for every seed.
    seed_effect = np.random.default_rng(7).normal(0, 0.05, 6)
    a = pd.Series(0.8 + seed_effect, index=range(6))
    b = pd.Series(0.81 + seed_effect + np.random.default_rng(8).normal(0, 1e-3, 6), index=range(6))
    diff, lo, hi, p = stats.paired(a, b)
    assert p < 1e-4 and lo < diff < hi and abs(diff + 0.01) < 2e-3
    unpaired = stats_scipy.ttest_ind(a, b, equal_var=False).pvalue
    assert unpaired > 0.5  # the seed spread hides the difference from an unpaired test
    # Series are matched by seed, not by position; seeds missing from one side drop out.
    shuffled = b.iloc[::-1]
    assert stats.paired(a, shuffled)[0] == pytest.approx(diff)
    assert np.isnan(stats.paired(a.iloc[:1], b)[3])


def test_a_difference_the_same_for_every_seed_up_to_rounding_is_known_exactly():
    # Accuracies are fractions of the test set: a - b is 0.1 for every seed, but not in floats.
    a = pd.Series([0.8, 0.9, 0.7, 0.6, 0.3], index=range(5))
    b = pd.Series([0.7, 0.8, 0.6, 0.5, 0.2], index=range(5))
    assert np.ptp(a - b) > 0  # the rounding is there
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no t-test on rounding noise (scipy warns of it)
        diff, lo, hi, p = stats.paired(a, b)
        p_gap = stats.gap(a, b)["p_gap"]
        p_null = stats.paired(a, a)[3]
    assert lo == diff == hi and diff == pytest.approx(0.1) and p == 0.0 and p_gap == 0.0
    assert p_null == 1.0
    # A spread of a thousandth is real: the t-test runs.
    spread = b + np.array([0.0, 1e-3, -1e-3, 2e-3, 0.0])
    diff, lo, hi, p = stats.paired(a, spread)
    assert lo < diff < hi and 0 < p < 1e-4


def test_holm_matches_a_hand_computed_example():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    assert stats.holm([0.9, 0.8]).max() == 1.0


def test_claims_recover_the_constructed_truth_of_a_synthetic_study(tmp_path):
    results = synthetic_results(tmp_path)
    gaps, shares = results["gaps"], results["shares"]
    # ReLU networks are 40 points above the reference on spirals, 4 on digits: below the 5-point
    # floor, digits cannot discriminate
    assert gaps.set_index("dataset")["discriminates"].to_dict() == {
        "spirals": True,
        "digits": False,
    }
    v = {(r.dataset, r.activation, r.norm): r.verdict for r in shares.itertuples()}
    assert v[("spirals", "identity", "batchnorm")] == "linear"
    assert v[("spirals", "identity", "zscore")] == "linear"
    assert v[("spirals", "identity", "none")] == "linear"
    assert v[("spirals", "identity", "layernorm")] == "nonlinear"
    assert {v[("digits", "identity", n)] for n in ("batchnorm", "layernorm")} == {
        "cannot discriminate"
    }
    # without the floor, digits' 4-point gap is significant and its verdicts count
    again = stats.claims(results["metrics"], results["reference"], min_gap=0.0)
    assert again["gaps"]["discriminates"].all()
    assert (
        again["shares"].query(
            "dataset == 'digits' and activation == 'identity' and norm == 'zscore'"
        )["verdict"]
        == "linear"
    ).all()
    assert stats.claim_answer(shares.loc[shares["claim"], "verdict"]) == "no"
    # one verdict per (setting, network): no comparison is tested twice
    assert not shares.duplicated([*stats.SETTING, "activation", "norm", "groups"]).any()


def test_summary_uses_only_the_selected_learning_rate(tmp_path):
    metrics = synthetic_results(tmp_path)["metrics"]
    s = stats.summarize(metrics)
    assert (s["lr"] == 1e-3).all() and (s["n"] == 5).all()
    assert (s["ci_lo"] < s["mean"]).all() and (s["mean"] < s["ci_hi"]).all()


def test_placement_effects_find_no_difference_where_there_is_none(tmp_path):
    metrics = synthetic_results(tmp_path)["metrics"]
    e = stats.placement_effects(metrics)
    assert len(e) == 8 and not e["significant"].any()


# ------------------------------------------------------------------------------ the claims design


def test_fieller_interval_has_its_nominal_coverage():
    # 2000 studies of 10 seeds, u = theta v + noise: D_theta is pure noise, so coverage is exact.
    rng = np.random.default_rng(11)
    theta, hits = 0.3, []
    for _ in range(2000):
        v = rng.normal(0.1, 0.03, 10)
        lo, hi = stats.fieller(theta * v + rng.normal(0, 0.01, 10), v)
        hits.append(lo <= theta <= hi)
    assert 0.93 < np.mean(hits) < 0.97


def test_fieller_interval_inverts_the_t_test():
    rng = np.random.default_rng(12)
    v = rng.normal(0.1, 0.03, 10)
    u = 0.4 * v + rng.normal(0, 0.01, 10)
    lo, hi = stats.fieller(u, v)
    assert lo < u.mean() / v.mean() < hi
    for bound in (lo, hi):  # at each bound the two-sided test of D_theta has p = 1 - level
        p = stats_scipy.ttest_1samp(u - bound * v, 0.0).pvalue
        assert p == pytest.approx(1 - stats.LEVEL, abs=1e-9)


def test_fieller_interval_is_unbounded_without_a_gap():
    v = np.random.default_rng(13).normal(0, 0.05, 10)
    v -= v.mean()  # mean(v) = 0: any ratio fits
    u = np.random.default_rng(14).normal(0.02, 0.01, 10)
    assert stats.fieller(u, v) == (-np.inf, np.inf)


def test_fieller_interval_degenerate_cases():
    v = np.array([0.30, 0.31, 0.33])
    assert stats.fieller(v, v) == (1.0, 1.0)  # u = v exactly: the share is exactly 1
    assert stats.fieller(np.full(3, 0.5), np.full(3, 2.0)) == (0.25, 0.25)  # zero variances
    assert stats.fieller(np.zeros(3), np.zeros(3)) == (-np.inf, np.inf)  # 0 = theta 0: any theta
    assert np.isnan(stats.fieller(np.ones(3), np.zeros(3))).all()  # 1 = theta 0: no theta
    assert np.isnan(stats.fieller([0.1], [0.2])).all()


def _study(share, rng, n=10, gap=0.2, noise=0.005):
    """Accuracies per seed of the reference, relu+batchnorm and a network recovering `share`."""
    r = 0.6 + rng.normal(0, 0.05, n)  # the seed's split moves all three
    nonlinear = r + gap + rng.normal(0, noise, n)
    return r + share * gap + rng.normal(0, noise, n), nonlinear, r


def test_non_superiority_rejects_a_linear_network_and_not_a_half_one():
    rng = np.random.default_rng(15)
    linear = stats.share(*_study(0.0, rng), f=0.2)
    half = stats.share(*_study(0.5, rng), f=0.2)
    assert linear["p_linear"] < 1e-4 and linear["share_hi"] < 0.2
    assert half["p_linear"] > 0.5 and half["share_lo"] > 0.2


def test_superiority_rejects_a_half_network_and_not_a_linear_one():
    rng = np.random.default_rng(16)
    linear = stats.share(*_study(0.0, rng), f=0.2)
    half = stats.share(*_study(0.5, rng), f=0.2)
    assert half["p_nonlinear"] < 1e-4 and linear["p_nonlinear"] > 0.5
    assert linear["p_linear"] + linear["p_nonlinear"] == pytest.approx(1.0)


def test_share_verdict_agrees_with_the_one_sided_tests():
    # With a bounded interval and a positive gap: share_hi < f iff p_linear < (1 - level) / 2.
    rng = np.random.default_rng(17)
    half_alpha = (1 - stats.LEVEL) / 2
    for true_share in np.linspace(-0.1, 0.5, 40):
        s = stats.share(*_study(true_share, rng, n=6, noise=0.03), f=0.2)
        assert np.isfinite(s["share_hi"])
        assert (s["share_hi"] < 0.2) == (s["p_linear"] < half_alpha)
        assert (s["share_lo"] > 0.2) == (s["p_nonlinear"] < half_alpha)


def test_gap_is_a_one_sided_paired_test():
    rng = np.random.default_rng(18)
    _, nonlinear, r = _study(0.0, rng, gap=0.01, noise=0.005)
    g = stats.gap(pd.Series(nonlinear), pd.Series(r))
    p_two = stats_scipy.ttest_1samp(nonlinear - r, 0.0).pvalue
    assert g["p_gap"] == pytest.approx(p_two / 2) and g["gap_lo"] < g["gap"] < g["gap_hi"]
    assert stats.gap(pd.Series(r), pd.Series(r))["p_gap"] == 1.0  # no gap at all
    assert stats.gap(pd.Series(r), pd.Series(nonlinear))["p_gap"] > 0.99  # a negative gap


@pytest.mark.parametrize(
    "discriminates, lo, hi, expected",
    [
        (False, -0.1, 0.1, "cannot discriminate"),
        (True, -0.1, 0.1, "linear"),
        (True, 0.5, 0.9, "nonlinear"),
        (True, 0.1, 0.5, "inconclusive"),
        (True, -np.inf, np.inf, "inconclusive"),
        (True, np.nan, np.nan, "inconclusive"),
    ],
)
def test_share_verdict_words(discriminates, lo, hi, expected):
    assert stats.share_verdict(discriminates, lo, hi, f=0.2) == expected


@pytest.mark.parametrize(
    "verdicts, expected",
    [
        (["linear", "linear", "cannot discriminate"], "no"),
        (["nonlinear", "nonlinear"], "yes"),
        (["nonlinear", "linear"], "mixed"),
        (["nonlinear", "inconclusive"], "mixed"),
        (["linear", "inconclusive"], "inconclusive"),
        (["inconclusive"], "inconclusive"),
        (["cannot discriminate", "cannot discriminate"], "cannot discriminate"),
        ([], "cannot discriminate"),
    ],
)
def test_claim_answer(verdicts, expected):
    assert stats.claim_answer(verdicts) == expected


def _claims_tables(seeds=range(8)):
    """E1 on spirals (relu+batchnorm 25 points above the reference; the identity networks equal to
    it up to tiny noise) and digits (relu+batchnorm equal to the reference: no gap), plus an
    unselected learning rate and an E5 run that must not count."""
    rng = np.random.default_rng(19)
    ref, rows = [], []
    for d in ("spirals", "digits"):
        for s in seeds:
            r = 0.6 + rng.normal(0, 0.05)
            ref.append({"dataset": d, "seed": s, "test_acc": r})
            accs = {
                ("identity", "none"): r + rng.normal(0, 1e-3),
                ("identity", "batchnorm"): r + rng.normal(0, 1e-3),
                ("identity", "zscore"): r + rng.normal(0, 1e-3),
                ("relu", "batchnorm"): r + 0.25 + rng.normal(0, 0.01) if d == "spirals" else r,
            }
            for (a, n), acc in accs.items():
                for experiment, lr, chosen in (
                    ("E1", 1e-3, True),
                    ("E1", 1e-2, False),
                    ("E5", 1e-3, True),
                ):
                    rows.append(
                        {
                            "experiment": experiment,
                            "dataset": d,
                            "activation": a,
                            "norm": n,
                            "placement": "pre",
                            "depth": 2,
                            "width": 32,
                            "batch_size": 64,
                            "groups": 8,
                            "seed": s,
                            "lr": lr,
                            "selected": chosen,
                            "test_acc": acc if chosen and experiment == "E1" else 0.99,
                            "val_acc": acc,
                            "diverged": False,
                        }
                    )
    return pd.DataFrame(rows), pd.DataFrame(ref)


def test_claims_recover_the_constructed_truth():
    df, ref = _claims_tables()
    out = stats.claims(df, ref)
    gaps, shares = out["gaps"], out["shares"]
    assert list(gaps.columns) == stats.GAP_COLUMNS and list(shares.columns) == stats.SHARE_COLUMNS
    g = gaps.set_index("dataset")
    assert g.loc["spirals", "discriminates"] and not g.loc["digits", "discriminates"]
    assert g.loc["spirals", "gap"] == pytest.approx(0.25, abs=0.01) and g.loc["digits", "gap"] == 0
    assert (gaps["n"] == 8).all() and (gaps["p_gap_holm"] >= gaps["p_gap"]).all()

    keys = [*stats.SETTING, "activation", "norm", "groups"]
    assert not shares.duplicated(keys).any() and len(shares) == 8 and (shares["n"] == 8).all()
    v = shares.set_index(["dataset", "activation", "norm"])
    for norm in ("none", "batchnorm", "zscore"):
        assert v.loc[("spirals", "identity", norm), "verdict"] == "linear"
    assert v.loc[("spirals", "relu", "batchnorm"), "share"] == 1.0
    assert v.loc[("spirals", "relu", "batchnorm"), "verdict"] == "nonlinear"
    assert (v.loc["digits", "verdict"] == "cannot discriminate").all()
    assert set(shares.loc[shares["claim"], "norm"]) == {"batchnorm", "zscore"}
    assert (shares.loc[shares["claim"], "activation"] == "identity").all()
    assert (shares["fraction"] == stats.GAP_FRACTION).all()
    assert stats.claim_answer(shares.loc[shares["claim"], "verdict"]) == "no"


def test_claims_pair_only_seeds_present_in_all_three():
    df, ref = _claims_tables()
    ref = ref[ref["seed"] != 0]  # the reference lacks seed 0
    df = df[~((df["norm"] == "zscore") & (df["seed"] == 1))]  # identity+zscore lacks seed 1
    out = stats.claims(df, ref)
    assert (out["gaps"]["n"] == 7).all()
    n = out["shares"].set_index(["dataset", "norm", "activation"])["n"]
    assert (
        n[("spirals", "zscore", "identity")] == 6 and n[("spirals", "batchnorm", "identity")] == 7
    )


def test_depth_growth_by_seed_recovers_the_factor_despite_seed_offsets():
    rng = np.random.default_rng(20)
    rows = [
        {"seed": s, "depth": d, "grad": offset * 1.5**d * rng.uniform(0.97, 1.03)}
        for s, offset in enumerate(rng.uniform(0.1, 10.0, 6))
        for d in (2, 4, 8, 16)
    ]
    fit = stats.depth_growth_by_seed(pd.DataFrame(rows))
    assert fit["n_seeds"] == 6 and fit["p"] < 1e-6
    assert fit["factor_lo"] < 1.5 < fit["factor_hi"] and fit["factor_hi"] / fit["factor_lo"] < 1.01
