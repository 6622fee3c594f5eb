"""Geometry metrics: known answers on hand-made vector sets."""

import math

import numpy as np
import pytest

from karma_probe.analyzers.geometry import aniso_cos, erank, isotropy, l2_normalize, top1_var, uniformity


def simplex(n: int) -> np.ndarray:
    """n unit vectors with pairwise cosine -1/(n-1) (centered basis vectors, normalized)."""
    return l2_normalize(np.eye(n) - 1.0 / n)


@pytest.mark.parametrize("n, d", [(2, 3), (10, 4), (50, 64)])
def test_identical_vectors_are_fully_collapsed(n, d):
    v = np.random.default_rng(n).normal(size=d)
    v /= np.linalg.norm(v)
    X = np.tile(v, (n, 1))
    assert aniso_cos(X) == pytest.approx(1.0)
    assert erank(X) == 1.0
    assert top1_var(X) == 1.0
    assert uniformity(X) == pytest.approx(0.0, abs=1e-12)
    # Z(c) = n·e^{cᵀv}: n·e along v, n/e along −v, n orthogonal to it
    assert isotropy(X) == pytest.approx(math.exp(-2.0))


@pytest.mark.parametrize("d", [2, 5, 32])
def test_orthonormal_vectors(d):
    X = np.eye(d)
    assert aniso_cos(X) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(X) == pytest.approx(-4.0)  # every pair at squared distance 2
    # all in one orthant: Z(e_k) = e + d - 1, Z(-e_k) = 1/e + d - 1
    assert isotropy(X) == pytest.approx((math.exp(-1) + d - 1) / (math.e + d - 1))
    # centering removes the mean direction: d-1 equal singular values remain
    assert erank(X) == pytest.approx(d - 1)
    # ±e_k has zero mean, so its centered spectrum is d equal values
    pm = np.vstack([np.eye(d), -np.eye(d)])
    assert isotropy(pm) == pytest.approx(1.0)  # Z(±e_k) = e + 1/e + 2(d - 1) for every k
    assert erank(pm) == pytest.approx(d)
    assert top1_var(pm) == pytest.approx(1.0 / d)


@pytest.mark.parametrize("n", [3, 6, 20])
def test_regular_simplex(n):
    X = simplex(n)
    assert aniso_cos(X) == pytest.approx(-1.0 / (n - 1))
    # squared distance 2 + 2/(n-1) between every pair
    assert uniformity(X) == pytest.approx(-4.0 * (1.0 + 1.0 / (n - 1)))
    assert erank(X) == pytest.approx(n - 1)


def test_isotropy_fewer_vectors_than_dimensions_and_sign_invariance():
    rng = np.random.default_rng(5)
    X = l2_normalize(rng.normal(size=(6, 20)))  # n < d: null-space directions have Z = n exactly
    logz = [np.log(np.exp(X @ c).sum()) for c in np.linalg.svd(X)[2][:6]]
    logz += [np.log(np.exp(-X @ c).sum()) for c in np.linalg.svd(X)[2][:6]] + [np.log(6)]
    assert isotropy(X) == pytest.approx(math.exp(min(logz) - max(logz)))
    assert isotropy(-X) == pytest.approx(isotropy(X))  # an eigenvector's sign cannot matter
    # against the eigen-decomposition of XᵀX directly (n > d: no null space)
    Y = l2_normalize(rng.normal(size=(50, 8)) + 1.0)
    _, vecs = np.linalg.eigh(Y.T @ Y)
    z = np.exp(np.concatenate([Y @ vecs, -Y @ vecs], axis=1)).sum(0)
    assert isotropy(Y) == pytest.approx(z.min() / z.max())


def test_collinear_vectors_have_one_direction():
    v = np.array([1.0, 2.0, -2.0]) / 3.0
    X = np.outer([0.5, 1.0, 2.0, 3.0], v)
    assert erank(X) == pytest.approx(1.0)
    assert top1_var(X) == pytest.approx(1.0)
    assert aniso_cos(X) == pytest.approx(1.0)


def test_two_axes_closed_form():
    a, b = 3.0, 1.0
    X = np.array([[a, 0], [-a, 0], [0, b], [0, -b]])
    # centered singular values √2·a and √2·b
    assert top1_var(X) == pytest.approx(a * a / (a * a + b * b))
    p = np.array([a, b]) / (a + b)
    assert erank(X) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


def test_scale_and_direction_invariances():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 16))
    Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    for fn in (aniso_cos, uniformity):  # functions of cosines only
        assert fn(X * rng.uniform(0.5, 5.0, size=(40, 1))) == pytest.approx(fn(X))
        assert fn(X @ Q) == pytest.approx(fn(X))
    for fn in (erank, top1_var):  # spectrum of the centered set
        assert fn(7.0 * X) == pytest.approx(fn(X))
        assert fn(X @ Q) == pytest.approx(fn(X))


def test_random_gaussian_is_far_from_collapse_and_ranges_hold():
    rng = np.random.default_rng(4)
    X = l2_normalize(rng.normal(size=(300, 32)))
    assert abs(aniso_cos(X)) < 0.02
    assert 25 < erank(X) <= 32
    assert top1_var(X) < 0.1
    assert 0.5 < isotropy(X) <= 1.0
    assert -4.0 * (1 + 1 / 299) <= uniformity(X) < -3.0
    # a shared offset (the classic anisotropy) raises aniso_cos and lowers isotropy
    Y = l2_normalize(rng.normal(size=(300, 32)) + 4.0)
    assert aniso_cos(Y) > 0.8 and isotropy(Y) < isotropy(X)


def test_too_few_vectors_is_an_error():
    with pytest.raises(ValueError, match="n ≥ 2"):
        aniso_cos(np.ones((1, 3)))
