"""Statistics on constructed data whose answers are known."""

from __future__ import annotations

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


def test_tost_declares_equivalence_only_inside_the_margin():
    rng = np.random.default_rng(4)
    a = rng.normal(0.90, 0.002, 5)
    assert stats.tost(a, rng.normal(0.90, 0.002, 5), margin=0.02) < 0.01  # equal means: equivalent
    assert stats.tost(a, rng.normal(0.80, 0.002, 5), margin=0.02) > 0.5  # 10 points apart: not
    assert stats.tost(a, rng.normal(0.90, 0.2, 5), margin=0.02) > 0.05  # too noisy to tell


def test_holm_matches_a_hand_computed_example():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    assert stats.holm([0.9, 0.8]).max() == 1.0


@pytest.mark.parametrize(
    "diff, p_diff, p_tost, expected",
    [
        (0.001, 0.9, 0.001, "equivalent"),
        (0.1, 0.001, 0.9, "better"),
        (-0.1, 0.001, 0.9, "worse"),
        (0.01, 0.3, 0.3, "inconclusive"),
    ],
)
def test_verdict_words(diff, p_diff, p_tost, expected):
    assert stats.verdict(diff, p_diff, p_tost) == expected


@pytest.mark.parametrize(
    "verdicts, expected",
    [
        (["equivalent", "worse"], "no"),
        (["better", "better"], "yes"),
        (["better", "equivalent"], "mixed"),
        (["equivalent", "inconclusive"], "inconclusive"),
        ([], "inconclusive"),
    ],
)
def test_answer(verdicts, expected):
    assert stats.answer(verdicts) == expected


def test_comparisons_recover_the_constructed_truth(tmp_path):
    metrics = synthetic_results(tmp_path)["metrics"]
    comp = stats.compare(metrics, "E1")
    v = {(r.dataset, r.a, r.b): r.verdict for r in comp.itertuples()}
    for d in ("spirals", "digits"):
        assert v[(d, "identity+batchnorm", "identity+none")] == "equivalent"
        assert v[(d, "identity+zscore", "identity+none")] == "equivalent"
        assert v[(d, "identity+batchnorm", "relu+batchnorm")] == "worse"
        assert v[(d, "identity+layernorm", "identity+none")] == "better"
    assert len(comp) == 12
    assert (comp["p_diff_holm"] >= comp["p_diff"]).all()


def test_summary_uses_only_the_selected_learning_rate(tmp_path):
    metrics = synthetic_results(tmp_path)["metrics"]
    s = stats.summarize(metrics)
    assert (s["lr"] == 1e-3).all() and (s["n"] == 5).all()
    assert (s["ci_lo"] < s["mean"]).all() and (s["mean"] < s["ci_hi"]).all()


def test_placement_effects_find_no_difference_where_there_is_none(tmp_path):
    metrics = synthetic_results(tmp_path)["metrics"]
    e = stats.placement_effects(metrics)
    assert len(e) == 8 and not e["significant"].any()


def test_depth_growth_recovers_an_exponential_rate():
    depths = np.repeat([2, 4, 8, 16], 3)
    grads = 1.5**depths * np.random.default_rng(5).uniform(0.95, 1.05, len(depths))
    fit = stats.depth_growth(depths, grads)
    assert fit["factor_lo"] < 1.5 < fit["factor_hi"] and fit["p"] < 1e-6
