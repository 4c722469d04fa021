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


def _split_clusters(X, clusters, sep, bad, next_id, rng):
    """The naive references' split step: each cluster of the pair `bad` with two or more points is cut in two by
    2-means, and the known-separable pairs it was in are carried to both halves. Returns (next id, split?)."""
    from mambacode.probing.directprobe import _two_means

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
    return next_id, split


def rescan_split(X, y, seed=0):
    """Phases 1-2 the plain way: after every split, scan all cluster pairs again from the first and check the
    first one of different labels not yet certified (the reference for the heap of pending pairs)."""
    import itertools

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
        next_id, split = _split_clusters(X, clusters, sep, bad, next_id, rng)
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


# ---- the fast fit against a naive reference ---------------------------------------------------------------
def lp_separable(A, B):
    """Plain separating-hyperplane LP over all points: exists (w, b) with w.a + b >= 1 >= 1 - ... on A and
    w.x + b <= -1 on B (feasible iff the hulls are disjoint)."""
    from scipy.optimize import linprog

    Z = np.vstack([A, B])
    s = np.r_[np.ones(len(A)), -np.ones(len(B))]
    A_ub = -np.hstack([Z * s[:, None], s[:, None]])
    res = linprog(np.zeros(Z.shape[1] + 1), A_ub=A_ub, b_ub=-np.ones(len(Z)), bounds=(None, None), method="highs")
    assert res.status in (0, 2), res.message
    return res.status == 0


def naive_directprobe(X, y, seed=0):
    """The whole fit the plain way: split (rescan all pairs after every split, 2-means) until every pair of
    clusters of different labels is separable, then merge passes (same-label pairs nearest centroids first,
    merged if the merged hull is separable from every cluster of another label), every question one LP."""
    import itertools

    rng = np.random.default_rng(seed)
    clusters = {k: (lab, np.flatnonzero(y == lab)) for k, lab in enumerate(np.unique(y))}
    next_id, sep, stuck = len(clusters), set(), set()
    while True:
        bad = None
        for i, j in itertools.combinations(sorted(clusters), 2):
            if clusters[i][0] == clusters[j][0] or frozenset((i, j)) in sep | stuck:
                continue
            if lp_separable(X[clusters[i][1]], X[clusters[j][1]]):
                sep.add(frozenset((i, j)))
                continue
            bad = (i, j)
            break
        if bad is None:
            break
        next_id, split = _split_clusters(X, clusters, sep, bad, next_id, rng)
        if not split:
            stuck.add(frozenset(bad))
    stuck_ids = {c for key in stuck for c in key}
    refused, changed = set(), True
    while changed:
        changed = False
        cents = {c: X[idx].mean(0) for c, (_, idx) in clusters.items()}
        cands = []
        for lab in np.unique(y):
            ids = [c for c, (l, _) in clusters.items() if l == lab and c not in stuck_ids]
            for p, q in itertools.combinations(ids, 2):
                cands.append((((cents[p] - cents[q]) ** 2).sum(), min(p, q), max(p, q)))
        # ties broken like the probe's (a stable sort of pairs listed by position): compare distances only
        cands.sort(key=lambda t: t[0])
        gone = set()
        for _, a, b in cands:
            if a in gone or b in gone or frozenset((a, b)) in refused:
                continue
            lab = clusters[a][0]
            merged = np.concatenate([clusters[a][1], clusters[b][1]])
            if all(lp_separable(X[merged], X[idx]) for c, (l, idx) in clusters.items() if l != lab):
                clusters[next_id] = (lab, merged)
                del clusters[a], clusters[b]
                cents[next_id] = X[merged].mean(0)
                gone |= {a, b}
                next_id, changed = next_id + 1, True
            else:
                refused.add(frozenset((a, b)))
    return {(lab, frozenset(idx.tolist())) for lab, idx in clusters.values()}


def probe_clusters(dp):
    return {(lab, frozenset(idx.tolist())) for lab, idx in zip(dp.cluster_labels_, dp.clusters_)}


def structured_sets():
    rng = np.random.default_rng(7)
    cases = {}
    corners = np.array([[0, 0], [4, 4], [0, 4], [4, 0]], dtype=float)  # XOR: the labels' hulls truly overlap
    cases["xor"] = (np.vstack([rng.normal(scale=0.4, size=(25, 2)) + c for c in corners]), np.repeat([0, 0, 1, 1], 25))
    X = rng.normal(size=(90, 3))  # three labels of one cloud, noisy boundary: many clusters
    cases["noisy"] = (X, (X[:, 0] + 0.7 * rng.normal(size=90) > 0).astype(int) + (X[:, 1] > 0.8))
    R = rng.normal(size=(80, 5)) @ rng.normal(size=(5, 12))  # low rank in 12 dims, 4 labels, shared duplicates
    yR = rng.integers(0, 4, size=80)
    R[:4] = R[4:8]
    cases["low_rank_dups"] = (R, yR)
    S = np.vstack([rng.normal(size=(30, 8)) + 5 * k for k in range(3)])  # separable: one cluster per label
    cases["separable"] = (S, np.repeat([0, 1, 2], 30))
    return cases


@pytest.mark.parametrize("name", ["xor", "noisy", "low_rank_dups", "separable"])
def test_fit_matches_naive_reference(name):
    X, y = structured_sets()[name]
    dp = DirectProbe(distances=False).fit(X, y)
    assert probe_clusters(dp) == naive_directprobe(X, y)
    if name == "separable":
        assert dp.n_clusters_ == 3
    if name == "xor":
        assert dp.n_clusters_ >= 3 and dp.stats_.lp_overlap >= 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fit_matches_naive_reference_random(seed):
    """Random points whose labels overlap: hundreds of separability questions, each path (centroid, stored
    hint, SVM, LP) gets used; the clusters must be the naive fit's."""
    rng = np.random.default_rng(100 + seed)
    d = [2, 4, 6, 10][seed]
    X = rng.normal(size=(70, d))
    y = (X @ rng.normal(size=d) + rng.normal(scale=1.0, size=70) > 0).astype(int) + (rng.random(70) < 0.2)
    dp = DirectProbe(distances=False, random_state=seed).fit(X, y)
    assert probe_clusters(dp) == naive_directprobe(X, y, seed=seed)
    assert dp.n_clusters_ > len(np.unique(y))  # the labels overlap


@pytest.mark.parametrize("path", ["default", "nnls", "lp_only", "constraint_generation"])
def test_fit_matches_naive_reference_on_every_path(monkeypatch, path):
    """The other ways to a verdict: "default" (hints, their subspace, the batched point-to-hull directions
    for single points, NNLS); "nnls" with the subspace and point-to-hull steps switched off (NNLS certifies
    what the centroid and hints leave); "lp_only" with NNLS off too, so every question the cheap tests leave
    goes to the LP (which must then also prove separability); "constraint_generation", a tiny one-piece
    limit so the LP goes by constraint generation. Same clusters as the naive fit in every case, and every
    stored certificate (a direction between two live clusters) separates them."""
    import mambacode.probing.directprobe as dpm
    import mambacode.probing.hull as hull

    if path in ("nnls", "lp_only"):
        monkeypatch.setattr(hull, "_subspace_direction", lambda A, B, dirs, **kw: None)
        monkeypatch.setattr(dpm, "point_hull_closest", lambda P, M, **kw: (None, P.copy()))
    if path == "lp_only":
        monkeypatch.setattr(hull, "_nnls_direction", lambda A, B, **kw: (None, None))
    elif path == "constraint_generation":
        monkeypatch.setattr(hull, "_LP_FULL_MAX", 50)
    X, y = structured_sets()["low_rank_dups"]
    dp = DirectProbe(distances=False).fit(X, y)
    assert probe_clusters(dp) == naive_directprobe(X, y)
    st = dp.stats_
    assert st.lp_overlap > 0 and st.centroid > 0 and st.hint > 0
    if path == "default":
        assert st.subspace + st.point_hull > 0
    if path == "nnls":
        assert st.subspace == st.point_hull == 0 and st.nnls > 0
    if path == "lp_only":
        assert st.nnls == 0 and st.lp_separable > 0
    live = {c: idx for c, idx in zip(dp._live_ids, dp.clusters_)}
    checked = 0
    for p, row in dp._certified.items():
        for q in row:
            w = dp._direction(dp._cents, p, q)
            if w is not None and p in live and q in live:
                assert (X[live[p]] @ w).min() > (X[live[q]] @ w).max()
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("full_max", [400_000, 60])
def test_separation_verdicts_match_plain_lp(monkeypatch, full_max):
    """`separation` against the plain LP on sets from clearly apart to interleaved, n < d and n > d, with the
    LP in one piece and by constraint generation; every certificate separates its two sets."""
    import mambacode.probing.hull as hull

    monkeypatch.setattr(hull, "_LP_FULL_MAX", full_max)
    rng = np.random.default_rng(11)
    seen = set()
    for trial in range(40):
        d = int(rng.choice([3, 8, 40]))
        na, nb = int(rng.integers(2, 40)), int(rng.integers(2, 40))
        shift = float(rng.choice([0.0, 0.5, 1.5, 4.0]))
        A = rng.normal(size=(na, d))
        B = rng.normal(size=(nb, d)) + shift * np.eye(d)[0]
        ok, w = hull.separation(A, B)
        assert ok == lp_separable(A, B), (trial, d, na, nb, shift)
        seen.add(ok)
        if ok:
            assert (A @ w).min() > (B @ w).max()
    assert seen == {True, False}


def qp_hull_distance(A, B):
    """Reference: min ||alpha A - beta B||^2 over two simplices by scipy's SLSQP (small sets only)."""
    from scipy.optimize import minimize

    na, nb = len(A), len(B)
    P = np.vstack([A, -B])
    G = P @ P.T
    cons = [{"type": "eq", "fun": lambda z: z[:na].sum() - 1}, {"type": "eq", "fun": lambda z: z[na:].sum() - 1}]
    z0 = np.r_[np.full(na, 1 / na), np.full(nb, 1 / nb)]
    res = minimize(lambda z: z @ G @ z, z0, jac=lambda z: 2 * G @ z, bounds=[(0, None)] * (na + nb),
                   constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    return float(np.sqrt(max(res.fun, 0.0)))


@pytest.mark.parametrize("working_set", [None, 2, 5, 64])
def test_hull_hull_distance_matches_qp_reference(monkeypatch, working_set):
    """The NNLS solution (None), and with it switched off the working-set FISTA (small sets force several
    rounds of added points), against a plain QP."""
    import mambacode.probing.hull as hull

    if working_set is None:
        working_set = 64
    else:
        monkeypatch.setattr(hull, "_nnls_closest", lambda A, B: None)
    rng = np.random.default_rng(5)
    for trial in range(12):
        d = int(rng.choice([2, 5, 12]))
        A = rng.normal(size=(int(rng.integers(2, 30)), d))
        B = rng.normal(size=(int(rng.integers(2, 30)), d)) + float(rng.choice([1.0, 3.0, 6.0])) * rng.normal(size=d)
        ref = qp_hull_distance(A, B)
        got = hull_hull_distance(A, B, working_set=working_set)
        if ref > 1e-3:
            assert got == pytest.approx(ref, rel=2e-3), (trial, got, ref)
        else:  # overlapping hulls: distance 0 up to the tolerance
            assert got < 1e-2


@pytest.mark.parametrize("working_set", [1, 3, 32])
def test_point_hull_distances_match_qp_reference(working_set):
    """Batched point-to-hull distances with per-point working sets (1 and 3 force rounds of added vertices)
    against the plain QP, for points outside, on the boundary of and inside the hull."""
    rng = np.random.default_rng(9)
    for d, m in ((2, 7), (6, 25), (15, 40)):
        H = rng.normal(size=(m, d))
        inside = rng.dirichlet(np.ones(m), size=3) @ H
        P = np.vstack([rng.normal(size=(10, d)) * 3, inside, H[:2]])
        got = point_hull_distances(P, H, working_set=working_set, batch=7)
        ref = np.array([qp_hull_distance(H, p[None]) for p in P])
        for g, r in zip(got, ref):
            if r > 1e-2:
                assert g == pytest.approx(r, rel=2e-3)
            else:
                assert g < 2e-2


def test_separation_with_hints_on_larger_sets_matches_plain_lp():
    """Sets of 150-300 points with hint directions (the subspace step), from apart to interleaved: the verdict
    is the plain LP's, every certificate separates its two sets, and the subspace step, NNLS and the LP's
    overlap proofs are all used."""
    import mambacode.probing.hull as hull

    rng = np.random.default_rng(12)
    stats = SeparabilityStats()
    for trial in range(24):
        d = int(rng.choice([5, 20, 60]))
        na, nb = int(rng.integers(150, 300)), int(rng.integers(150, 300))
        shift = float(rng.choice([0.0, 1.0, 3.0, 6.0]))
        A = rng.normal(size=(na, d)) + shift * np.eye(d)[0]
        B = rng.normal(size=(nb, d))
        hints = [np.eye(d)[0] + 0.8 * rng.normal(size=d), rng.normal(size=d)] if trial % 2 else []
        ok, w = hull.separation(A, B, stats, hints=hints, centroid=bool(trial % 3))
        assert ok == lp_separable(A, B), (trial, d, shift)
        if ok:
            assert (A @ w).min() > (B @ w).max()
    assert stats.lp_overlap > 0 and stats.nnls > 0 and stats.subspace + stats.hint > 0


def test_point_hull_bounds_and_pruned_prediction():
    """Bounds bracket the QP distance; `nearest_clusters` (bounds, then only the QPs that can matter) picks
    the cluster `decision_distances` (every QP) picks, on overlapping labels with many clusters."""
    from mambacode.probing.hull import point_hull_bounds

    rng = np.random.default_rng(4)
    H = rng.normal(size=(25, 6))
    P = np.vstack([rng.normal(size=(30, 6)) * 2, rng.dirichlet(np.ones(25), size=5) @ H])
    lo, hi = point_hull_bounds(P, H)
    ref = np.array([qp_hull_distance(H, p[None]) for p in P])
    assert np.all(lo <= ref + 1e-6) and np.all(ref <= hi + 1e-6) and np.all(lo[-5:] < 1e-6)
    assert (lo > 0.5 * ref).mean() > 0.5  # not vacuous
    X = rng.normal(size=(300, 5))
    y = (X @ rng.normal(size=5) + rng.normal(size=300) > 0).astype(int) + (X[:, 0] > 1)
    dp = DirectProbe(distances=False).fit(X, y)
    assert dp.n_clusters_ > 6
    Xt = rng.normal(size=(400, 5)) * 1.3
    np.testing.assert_array_equal(dp.nearest_clusters(Xt), dp.decision_distances(Xt).argmin(1))
    assert dp.prediction_qps_["solved"] < dp.prediction_qps_["of"]
