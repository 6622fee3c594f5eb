"""Bootstrap intervals over probes: known answers (identical probes → zero width, the interval
holds the estimate), pairing across runs, and the geometry metrics' row bootstrap."""

import numpy as np
import pytest

from karma_probe.analyzers import bootstrap
from karma_probe.analyzers.geometry import aniso_cos, bootstrap_interval, erank, isotropy, l2_normalize, top1_var, uniformity

GEOMETRY = {"aniso_cos": aniso_cos, "erank": erank, "top1_var": top1_var, "isotropy": isotropy, "uniformity": uniformity}


def test_method_is_the_documented_one():
    assert (bootstrap.RESAMPLES, bootstrap.SEED, bootstrap.LEVEL) == (1000, 0, 0.95)
    assert bootstrap.METHOD["method"] == "percentile"


def test_indices_are_seeded_and_shared_by_every_run_of_the_same_size():
    a, b = bootstrap.indices(64), bootstrap.indices(64)
    assert a.shape == (1000, 64) and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 64
    assert not np.array_equal(bootstrap.indices(64, seed=1), a)


def test_identical_probes_give_a_zero_width_interval():
    iv = bootstrap.of_mean(np.full((30, 4, 2), 0.25))
    assert iv.as_list() == [0.25, 0.25]
    iv = bootstrap.of_ratio(np.full(30, 3.0), np.full(30, 12.0))
    assert iv.as_list() == [0.25, 0.25]


def test_interval_of_a_mean_contains_it_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 40), rng.normal(1.0, 1.0, 1000)
    for v in (small, large):
        lo, hi = bootstrap.of_mean(v).as_list()
        assert lo < v.mean() < hi
    width = lambda v: np.subtract(*bootstrap.of_mean(v).as_list()[::-1])  # noqa: E731
    assert width(large) < 0.5 * width(small)
    # and about the normal-theory width, 2 · 1.96 · σ/√n
    assert width(large) == pytest.approx(2 * 1.96 * large.std() / np.sqrt(1000), rel=0.15)


def test_paired_difference_of_two_runs_on_the_same_probes():
    """Run B = run A + 0.1 on every probe: the paired difference is exactly 0.1, with no spread,
    although each run's own interval is wide."""
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.2, 64)
    ia, ib = bootstrap.of_mean(a), bootstrap.of_mean(a + 0.1)
    assert ib.high - ib.low > 0.05
    diff = (ib - ia).as_list()
    assert diff == pytest.approx([0.1, 0.1])


def test_shifted_interval_is_centred_on_the_estimate():
    reps = np.linspace(0.0, 1.0, 1000)  # mean 0.5, far below an estimate of 2
    iv = bootstrap.shifted(bootstrap.interval(reps), 2.0)
    assert iv.low < 2.0 < iv.high and iv.high - iv.low == pytest.approx(0.95, abs=0.01)


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_geometry_interval_of_identical_rows_has_zero_width(name):
    X = np.tile(l2_normalize(np.arange(1.0, 9.0))[None], (20, 1))
    fn = GEOMETRY[name]
    est = fn(X)
    lo, hi = bootstrap_interval(name, fn, X, est).as_list()
    assert lo == pytest.approx(est, abs=1e-9) and hi == pytest.approx(est, abs=1e-9)


@pytest.mark.parametrize("name", sorted(GEOMETRY))
@pytest.mark.parametrize("offset", [0.0, 1.5])
def test_geometry_interval_contains_the_estimate(name, offset):
    """64 vectors in 64 dims, as the tiny runs' interest set: the effective rank is capped by the
    number of distinct rows, which a plain resample would lower; the interval must still hold it."""
    rng = np.random.default_rng(2)
    X = l2_normalize(rng.normal(size=(64, 64)) + offset)
    fn = GEOMETRY[name]
    est = fn(X)
    lo, hi = bootstrap_interval(name, fn, X, est).as_list()
    assert lo < est < hi
    if name == "erank":  # the naive resample (duplicates as distinct rows) would miss it
        naive_lo, naive_hi = bootstrap.of_statistic(len(X), lambda idx: fn(X[idx])).as_list()
        assert not naive_lo < est < naive_hi
