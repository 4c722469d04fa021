"""DirectProbe and the hull geometry on synthetic data with known answers."""

import numpy as np
import pytest

from mambacode.probing import DirectProbe, hull_hull_distance, point_hull_distances, separable
from mambacode.probing.hull import SeparabilityStats, _lp_check, project_rows_to_simplex


def test_separable_classes_one_cluster_each():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(40, 6)) + 8 * k for k in range(4)])
    y = np.repeat(["a", "b", "c", "d"], 40)
    dp = DirectProbe().fit(X, y)
    assert dp.n_clusters_ == 4
    assert sorted(dp.cluster_labels_.tolist()) == ["a", "b", "c", "d"]
    assert dp.score(X, y) == 1.0
    Xt = np.vstack([rng.normal(size=(10, 6)) + 8 * k for k in range(4)])
    ev = dp.evaluate(Xt, np.repeat(["a", "b", "c", "d"], 10))
    assert ev["accuracy"] == 1.0 and ev["mean_per_label_accuracy"] == 1.0
    assert 0 < ev["min_inter_cluster_distance"] <= ev["mean_inter_cluster_distance"]


def test_xor_needs_more_clusters():
    rng = np.random.default_rng(1)
    corners = np.array([[0, 0], [4, 4], [0, 4], [4, 0]], dtype=float)
    X = np.vstack([rng.normal(scale=0.3, size=(30, 2)) + c for c in corners])
    y = np.repeat([0, 0, 1, 1], 30)
    dp = DirectProbe().fit(X, y)
    # the two labels' hulls overlap at the centre: at least one label must be split in two
    assert dp.n_clusters_ >= 3
    assert dp.stats_.lp_overlap >= 1
    assert dp.score(X, y) == 1.0
    # invariant: clusters of different labels are pairwise separable (checked independently by the LP)
    for i in range(dp.n_clusters_):
        for j in range(i + 1, dp.n_clusters_):
            if dp.cluster_labels_[i] != dp.cluster_labels_[j]:
                assert _lp_check(X[dp.clusters_[i]], X[dp.clusters_[j]]) is True
    # maximality: no two same-label clusters can be merged
    for i in range(dp.n_clusters_):
        for j in range(i + 1, dp.n_clusters_):
            if dp.cluster_labels_[i] == dp.cluster_labels_[j]:
                merged = np.concatenate([dp.clusters_[i], dp.clusters_[j]])
                others = [c for c, l in zip(dp.clusters_, dp.cluster_labels_) if l != dp.cluster_labels_[i]]
                assert any(_lp_check(X[merged], X[o]) is False for o in others)


def test_identical_points_with_different_labels_are_counted():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 5.0]])
    y = np.array([0, 1, 1, 0])
    dp = DirectProbe().fit(X, y)
    assert dp.n_conflicts_ == 2
    assert dp.predict(np.array([[5.0, 5.1]]))[0] == 1


def test_svm_mode_matches_exact_on_easy_data_and_modes_validated():
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(size=(30, 5)) + 6 * k for k in range(3)])
    y = np.repeat([0, 1, 2], 30)
    assert DirectProbe(exact=False).fit(X, y).n_clusters_ == 3
    with pytest.raises(ValueError, match="mode"):
        separable(X[:2], X[2:4], mode="soft")
    with pytest.raises(ValueError, match="NaN"):
        DirectProbe().fit(np.full((2, 2), np.nan), [0, 1])
    with pytest.raises(RuntimeError, match="not fitted"):
        DirectProbe().predict(X)


def test_separability_exact_on_touching_and_crossing_sets():
    stats = SeparabilityStats()
    A = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert separable(A, np.array([[1.0, 0.0]]), stats) is False  # a point on the segment
    assert separable(A, np.array([[1.0, 1e-6]]), stats) is True  # just above it
    # crossing segments (an X) overlap; parallel ones do not
    assert separable(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]), stats) is False
    assert separable(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 2.0]]), stats) is True
    # high dimension, n < d: random sets are separable; decided in the Gram-matrix LP or by the SVM
    rng = np.random.default_rng(0)
    assert separable(rng.normal(size=(300, 400)), rng.normal(size=(300, 400)), stats) is True
    # an exact duplicate point across the sets makes them overlap, whatever the dimension
    B = rng.normal(size=(50, 80))
    A = np.vstack([rng.normal(size=(49, 80)), B[:1]])
    assert separable(A, B, stats) is False


def test_simplex_distances_match_analytic():
    d = 7
    A = np.eye(d)  # the standard simplex, normal direction 1/sqrt(d)
    n = np.ones(d) / np.sqrt(d)
    for t in (0.5, 2.0):
        B = np.eye(d) + t * n
        assert hull_hull_distance(A, B) == pytest.approx(t, rel=1e-3)
    # two simplices in disjoint coordinate blocks, shifted apart along a third block
    A2 = np.zeros((3, 8)); A2[:, :3] = np.eye(3)
    B2 = np.zeros((3, 8)); B2[:, 3:6] = np.eye(3); B2[:, 7] = 2.0
    # closest points: centroids (1/3,...) of each face; distance^2 = 3*(1/3)^2 * 2 + 4
    assert hull_hull_distance(A2, B2) == pytest.approx(np.sqrt(2 / 3 + 4), rel=1e-3)
    # point to simplex: projection of c*1 onto the simplex is 1/d, distance sqrt(d)*|c - 1/d|
    pts = np.stack([np.full(d, c) for c in (0.5, 1.0, 3.0)])
    expect = [np.sqrt(d) * abs(c - 1 / d) for c in (0.5, 1.0, 3.0)]
    np.testing.assert_allclose(point_hull_distances(pts, A), expect, rtol=1e-3)
    # a vertex and an interior point are at distance 0
    np.testing.assert_allclose(point_hull_distances(np.stack([A[0], np.full(d, 1 / d)]), A), [0, 0], atol=1e-3)


def test_simplex_projection_rows():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(20, 6)) * 3
    P = project_rows_to_simplex(V)
    assert np.allclose(P.sum(1), 1) and (P >= 0).all()
    # optimality: brute-force check against random simplex points
    for i in range(5):
        Q = rng.dirichlet(np.ones(6), size=2000)
        assert ((Q - V[i]) ** 2).sum(1).min() >= ((P[i] - V[i]) ** 2).sum() - 1e-9


def test_noisy_overlapping_classes_still_satisfy_invariants():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + 0.8 * rng.normal(size=120) > 0).astype(int)
    dp = DirectProbe().fit(X, y)
    assert dp.n_clusters_ > 2
    assert dp.score(X, y) == 1.0  # training points lie in their own clusters' hulls
    assert sum(len(c) for c in dp.clusters_) == len(X)
    for i in range(dp.n_clusters_):
        for j in range(i + 1, dp.n_clusters_):
            if dp.cluster_labels_[i] != dp.cluster_labels_[j]:
                assert _lp_check(X[dp.clusters_[i]], X[dp.clusters_[j]]) is True


def rescan_split(X, y, seed=0):
    """Phases 1-2 the plain way: after every split, scan all cluster pairs again from the first and check the
    first one of different labels not yet certified (the reference for the heap of pending pairs)."""
    import itertools

    from mambacode.probing.directprobe import _two_means
    from mambacode.probing.hull import SeparabilityStats, separable

    rng, stats = np.random.default_rng(seed), SeparabilityStats()
    clusters = {k: (lab, np.flatnonzero(y == lab)) for k, lab in enumerate(np.unique(y))}
    next_id, sep, stuck = len(clusters), set(), set()
    while True:
        bad = None
        for i, j in itertools.combinations(sorted(clusters), 2):
            if clusters[i][0] == clusters[j][0] or frozenset((i, j)) in sep | stuck:
                continue
            if separable(X[clusters[i][1]], X[clusters[j][1]], stats, mode="exact"):
                sep.add(frozenset((i, j)))
                continue
            bad = (i, j)
            break
        if bad is None:
            return clusters, stuck, stats.as_dict()
        split = False
        for c in bad:
            lab, idx = clusters[c]
            if len(idx) < 2:
                continue
            mask = _two_means(X[idx], rng)
            del clusters[c]
            clusters[next_id], clusters[next_id + 1] = (lab, idx[mask]), (lab, idx[~mask])
            for key in [k for k in sep if c in k]:
                sep.discard(key)
                sep |= {frozenset((next_id, *(key - {c}))), frozenset((next_id + 1, *(key - {c})))}
            next_id, split = next_id + 2, True
        if not split:
            i, j = bad
            ok = separable(X[clusters[i][1]], X[clusters[j][1]], stats, mode="exact")
            (sep if ok else stuck).add(frozenset(bad))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_phase_matches_a_full_rescan_after_every_split(seed):
    """Overlapping classes (and identical points under two labels) split into many clusters; the heap of pending
    pairs must check the same pairs in the same order as rescanning everything, so the clusters, the stuck pairs
    and every separability count are the same."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(150, 3))
    y = rng.integers(0, 3, size=150)
    X[:6] = X[6:12]  # identical points: where labels differ they can never be separated
    probe = DirectProbe(random_state=seed)
    from mambacode.probing.hull import SeparabilityStats

    probe.classes_, probe.stats_ = np.unique(y), SeparabilityStats()
    clusters, _, stuck = probe._split(X, y, np.random.default_rng(seed))
    ref_clusters, ref_stuck, ref_stats = rescan_split(X, y, seed)
    assert len(clusters) > 20  # the case the heap is for: many clusters
    assert sorted(clusters) == sorted(ref_clusters)
    for c in clusters:
        assert clusters[c][0] == ref_clusters[c][0] and np.array_equal(clusters[c][1], ref_clusters[c][1])
    assert stuck == ref_stuck and probe.stats_.as_dict() == ref_stats
