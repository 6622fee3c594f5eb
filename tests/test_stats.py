"""Confidence intervals on hand-made rank arrays with known answers."""

import math
import subprocess
import sys

import numpy as np
import pytest

from karma_probe.core.errors import BadInput
from karma_probe.report import stats


def test_per_user_values_follow_the_formulas():
    ranks = [1, 3, 10, 11, 200]
    assert list(stats.per_user(ranks, "hr@10")) == [1, 1, 1, 0, 0]
    assert stats.per_user(ranks, "ndcg@10") == pytest.approx([1, 1 / math.log2(4), 1 / math.log2(11), 0, 0])
    assert stats.per_user(ranks, "mrr") == pytest.approx([1, 1 / 3, 1 / 10, 1 / 11, 1 / 200])
    assert stats.per_user(ranks, "hr@200").mean() == 1.0
    with pytest.raises(BadInput):
        stats.per_user([0, 1], "hr@10")  # ranks are 1-based
    with pytest.raises(BadInput):
        stats.per_user([1, 2], "sink_mass")


def test_identical_runs_differ_by_exactly_zero():
    ranks = np.random.default_rng(0).integers(1, 500, 300)
    for metric in ("hr@10", "ndcg@10", "mrr"):
        ci = stats.rank_metric_diff(ranks, ranks, metric)
        assert (ci.estimate, ci.low, ci.high) == (0, 0, 0)
        assert not ci.excludes_zero()


def test_a_run_better_on_every_user_has_a_ci_above_zero():
    rng = np.random.default_rng(1)
    worse = rng.integers(20, 500, 200)
    better = np.maximum(1, worse // 4)  # every user's target ranked higher
    ci = stats.rank_metric_diff(better, worse, "mrr")
    assert ci.low > 0 and ci.high > ci.low and ci.excludes_zero()
    assert ci.estimate == pytest.approx(stats.per_user(better, "mrr").mean() - stats.per_user(worse, "mrr").mean())
    assert stats.rank_metric_diff(worse, better, "mrr").high < 0  # and the other way round: below zero


def test_a_mostly_null_difference_straddles_zero():
    rng = np.random.default_rng(2)
    a = rng.integers(1, 100, 400)
    b = a.copy()
    swap = rng.choice(400, 40, replace=False)
    b[swap] = rng.integers(1, 100, 40)  # noise on a tenth of the users, no systematic shift
    ci = stats.rank_metric_diff(a, b, "hr@10")
    assert ci.low < 0 < ci.high


def test_bootstrap_ci_covers_the_mean_and_matches_the_normal_approximation():
    rng = np.random.default_rng(3)
    hits = (rng.random(1000) < 0.2).astype(float)
    ci = stats.bootstrap_mean(hits)
    se = hits.std(ddof=1) / math.sqrt(len(hits))
    assert ci.low < hits.mean() < ci.high
    assert ci.half_width == pytest.approx(1.96 * se, rel=0.1)
    assert "1000 users" in ci.method


def test_bootstrap_is_seeded_and_the_seed_matters():
    v = np.random.default_rng(4).random(50)
    assert stats.bootstrap_mean(v) == stats.bootstrap_mean(v)
    assert stats.bootstrap_mean(v, seed=1) != stats.bootstrap_mean(v, seed=2)


def test_paired_beats_unpaired_when_users_share_difficulty():
    rng = np.random.default_rng(5)
    difficulty = rng.random(300)
    a, b = difficulty + 0.05, difficulty + rng.normal(0, 0.01, 300)
    paired = stats.paired_bootstrap(a, b)
    separate = stats.combine_independent(stats.bootstrap_mean(a), stats.bootstrap_mean(b), "x")
    assert paired.low > 0 and paired.half_width < separate.half_width / 5
    assert separate.estimate == pytest.approx(paired.estimate)


def test_paired_needs_the_same_users():
    with pytest.raises(BadInput, match="same users"):
        stats.paired_bootstrap([1.0, 2.0], [1.0])


def test_t_interval_known_answer():
    ci = stats.t_interval([1.0, 2.0, 3.0])  # mean 2, s 1, t(0.975, 2) = 4.303
    assert ci.estimate == 2 and ci.half_width == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert stats.t_interval([1.0]) is None and stats.t_interval([1.0, None, math.nan]) is None
    assert stats.t_quantile(1000) == pytest.approx(1.962, abs=1e-3)


def test_combine_independent_adds_half_widths_in_quadrature():
    a = stats.Interval(1.0, 0.7, 1.4, 10, "a")
    b = stats.Interval(0.5, 0.1, 0.8, 10, "b")
    d = stats.combine_independent(a, b, "d")
    assert d.estimate == 0.5
    assert d.low == pytest.approx(0.5 - math.hypot(0.3, 0.3))
    assert d.high == pytest.approx(0.5 + math.hypot(0.4, 0.4))


def test_stats_imports_no_torch():
    code = "import karma_probe.report.stats, sys; assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_mean_of_independent_divides_the_quadrature_sum_by_the_count():
    a = stats.Interval(1.0, 0.7, 1.4, 10, "a")
    b = stats.Interval(3.0, 2.6, 3.3, 12, "b")
    m = stats.mean_of_independent([a, b], "m")
    assert m.estimate == 2.0 and m.n == 10
    assert m.low == pytest.approx(2.0 - math.hypot(0.3, 0.4) / 2)
    assert m.high == pytest.approx(2.0 + math.hypot(0.4, 0.3) / 2)
    one = stats.mean_of_independent([a], "one")
    assert (one.low, one.high) == pytest.approx((a.low, a.high))


def test_holm_on_a_hand_computed_family():
    # m = 4 at α = 0.05: sorted p 0.005 < 0.05/4 (reject), 0.01 < 0.05/3 (reject), 0.03 >= 0.05/2 (stop),
    # so 0.04 is kept too although it is below 0.05/1: raw, all four are below 0.05
    p = [0.01, 0.04, 0.03, 0.005]
    steps = stats.holm_steps(p)
    assert [i for i, _ in steps] == [2, 4, 3, 1]
    assert [a for _, a in steps] == pytest.approx([0.05 / 3, 0.05, 0.025, 0.0125])
    assert stats.holm_reject(p) == [True, False, False, True]
    assert stats.holm_reject([0.001, None]) == [True, False]  # no p-value: counts in m, never rejected
    assert [i for i, _ in stats.holm_steps([None, 0.2])] == [2, 1]


def test_t_pvalue_and_the_interval_it_inverts():
    # differences 1.5, 2, 2.5: mean 2, s 0.5, t = 2 / (0.5 / sqrt 3) = 6.928, df 2; for df = 2 the t
    # distribution has P(T > x) = (1 - x / sqrt(2 + x²)) / 2, so p = 1 - 6.928 / sqrt(50) = 0.0202
    ci = stats.t_interval([1.5, 2.0, 2.5])
    assert ci.p == pytest.approx(1 - (2 / (0.5 / math.sqrt(3))) / math.sqrt(2 + 48), rel=1e-9)
    assert stats.t_interval([1.5, 2.0, 2.5], level=1 - ci.p * 1.01).low > 0  # just below p: excludes 0
    assert stats.t_interval([1.5, 2.0, 2.5], level=1 - ci.p * 0.99).low < 0
    assert stats.t_interval([1.5, 2.0, 2.5], level=0.99).level == 0.99


def test_detectable_difference_known_answer():
    # three seeds, differences 1, 2, 3 (s = 1). For df = 2 the t quantile is closed-form:
    # t_q = (2q - 1) / sqrt(2 q (1 - q)): t_0.975 = 0.95 / sqrt(0.04875) = 4.3027, t_0.8 = 0.6 / sqrt(0.32) = 1.0607
    t975, t80 = 0.95 / math.sqrt(2 * 0.975 * 0.025), 0.6 / math.sqrt(2 * 0.8 * 0.2)
    assert stats.detectable([1.0, 2.0, 3.0]) == pytest.approx(t975 / math.sqrt(3)) == pytest.approx(2.4842, abs=1e-4)
    assert stats.detectable([1.0, 2.0, 3.0], power=0.8) == pytest.approx((t975 + t80) / math.sqrt(3))
    assert stats.detectable([1.0, 2.0, 3.0], power=0.8) == pytest.approx(3.0966, abs=1e-4)
    assert stats.detectable([5.0, 6.0, 7.0]) == stats.detectable([1.0, 2.0, 3.0])  # the spread, not the mean
    assert stats.detectable([1.0]) is None
    assert stats.detectable([1.0, 2.0, 3.0]) == pytest.approx(stats.t_interval([1.0, 2.0, 3.0]).half_width)


def test_rescale_and_normal_pvalue_of_a_combined_interval():
    ci = stats.Interval(1.0, 1.0 - 1.959964, 1.0 + 2 * 1.959964, 5, "x")  # se 1 below, 2 above
    assert stats.normal_pvalue(ci) == pytest.approx(2 * (1 - 0.8413447), rel=1e-5)  # z = 1 on zero's side
    wide = stats.rescale(ci, 0.99)
    k = 2.5758293 / 1.959964
    assert (wide.low, wide.high, wide.level) == pytest.approx((1 - k * 1.959964, 1 + 2 * k * 1.959964, 0.99))
    assert wide.p == pytest.approx(stats.normal_pvalue(ci))
    d = stats.combine_independent(stats.Interval(3.0, 2.0, 4.0, 1, "a"), stats.Interval(1.0, 0.0, 2.0, 1, "b"), "d")
    assert d.p == pytest.approx(stats.normal_pvalue(d)) and 0 < d.p < 0.05
    assert stats.detectable_from(d) == pytest.approx(d.half_width)
    assert stats.detectable_from(d, power=0.8) == pytest.approx(d.half_width * (1.959964 + 0.8416212) / 1.959964)


def test_bootstrap_pvalue_is_the_tail_share_it_inverts():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.1, 1, 400), rng.normal(0.0, 1, 400)
    ci = stats.paired_bootstrap(a, b)
    assert 0 < ci.p < 1
    assert stats.paired_bootstrap(a, b, level=1 - ci.p * 1.2).excludes_zero()
    assert not stats.paired_bootstrap(a, b, level=1 - ci.p * 0.8).excludes_zero()
    assert stats.paired_bootstrap(a, a).p == 1.0
