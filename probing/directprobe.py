"""DirectProbe (Zhou & Srikumar, NAACL 2021): a classifier-free probe of the geometry of a representation.

Training points are grouped into clusters such that (a) every cluster holds one label, (b) the convex hulls
of clusters with different labels are disjoint, and (c) no two clusters of the same label can be merged
without their merged hull touching a cluster of another label. A test point takes the label of the cluster
whose hull is nearest. One cluster per label means the labels are linearly separable.

How we get there fast and exactly (the original merges from singletons, testing overlap with a soft SVM):
1. one cluster per label; if every pair of labels is separable (usually certified by a single hyperplane,
   see `hull.separable`), that is already the answer;
2. otherwise, while two clusters of different labels overlap (exact LP), split them in two (2-means);
   subsets of separable sets stay separable, so certificates are inherited by the parts;
3. then merge bottom-up, nearest same-label clusters first, whenever the merged hull is separable from
   every cluster of another label; a merge is refused only on an exact overlap proof (HiGHS LP). The
   result satisfies (a)-(c); step 3 is DirectProbe's merge rule started from a finer pure partition.
Points with identical features and different labels can never be separated; they stay as singleton
clusters and are counted in `n_conflicts_`.
"""

from __future__ import annotations

import heapq
import itertools
import time

import numpy as np
from tqdm.auto import tqdm

from .hull import (SeparabilityStats, directions_separate, hull_hull_distance, point_hull_bounds, point_hull_closest,
                   point_hull_distances, separation)


def _two_means(X: np.ndarray, rng: np.random.Generator, iters: int = 20) -> np.ndarray:
    """Split indices 0..n-1 of X in two non-empty groups by 2-means (k-means++ seeding)."""
    n = len(X)
    a = int(rng.integers(n))
    d = ((X - X[a]) ** 2).sum(1)
    if d.max() <= 0:
        mask = np.zeros(n, dtype=bool)
        mask[: n // 2] = True
        return mask
    b = int(np.argmax(d))  # farthest point: deterministic, well separated seeds
    c = np.stack([X[a], X[b]])
    mask = None
    for _ in range(iters):
        dist = ((X[:, None, :] - c[None]) ** 2).sum(-1) if X.shape[1] * n < 5e7 else \
            np.stack([((X - c[k]) ** 2).sum(1) for k in range(2)], 1)
        new = dist[:, 0] <= dist[:, 1]
        if new.all() or not new.any():
            new = np.zeros(n, dtype=bool)
            new[np.argsort(dist[:, 0] - dist[:, 1])[: n // 2]] = True
        if mask is not None and np.array_equal(new, mask):
            break
        mask = new
        c = np.stack([X[mask].mean(0), X[~mask].mean(0)])
    return mask


class DirectProbe:
    """Cluster-based probe; `fit(X, y)`, `predict(X)`, `score(X, y)`, `evaluate(X, y)`.

    Parameters
    ----------
    exact: decide overlaps with the exact LP (default). `False` trusts the SVM alone (the original's
        approximation; faster on heavily overlapping data, may report spurious overlaps).
    merge_candidates: how many nearest same-label clusters each cluster tries to merge with per pass
        (None = all pairs, the full DirectProbe rule).
    distances: compute hull-to-hull distances between clusters of different labels at fit time.
    """

    def __init__(self, exact: bool = True, merge_candidates: int | None = None, distances: bool = True,
                 random_state: int = 0, verbose: bool = False, tol: float = 1e-6, rtol: float = 1e-2):
        self.exact = exact
        self.merge_candidates = merge_candidates
        self.distances = distances
        self.random_state = random_state
        self.verbose = verbose
        self.tol = tol
        self.rtol = rtol  # prediction: squared hull distances to 1% (relative), enough to pick the nearest

    # ---- fitting -----------------------------------------------------------------------------------
    def fit(self, X, y) -> "DirectProbe":
        t0 = time.perf_counter()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, d) and y (n,); got X{X.shape} and y{y.shape}")
        if len(X) == 0:
            raise ValueError("DirectProbe.fit: no training points")
        if not np.isfinite(X).all():
            raise ValueError("DirectProbe.fit: X contains NaN or inf")
        self.classes_ = np.unique(y)
        rng = np.random.default_rng(self.random_state)
        self.stats_ = SeparabilityStats()
        self._X = X
        t_split = time.perf_counter()
        clusters, next_id, stuck = self._split(X, y, rng)

        # phase 3: merge bottom-up
        t_merge = time.perf_counter()
        clusters = self._merge(X, clusters, next_id, stuck)
        t_rest = time.perf_counter()
        self.clusters_ = [idx for _, idx in clusters.values()]
        self._live_ids = list(clusters)
        self.cluster_labels_ = np.array([lab for lab, _ in clusters.values()])
        self.n_clusters_ = len(self.clusters_)
        conflict_points = set()
        for key in stuck:
            for c in key:
                if c in clusters:
                    conflict_points.update(clusters[c][1].tolist())
        self.n_conflicts_ = len(conflict_points)
        t_dist = time.perf_counter()
        self.cluster_distances_ = self._cluster_distances() if self.distances else None
        self.fit_time_ = time.perf_counter() - t0
        self.phase_times_ = {"split_s": t_merge - t_split, "merge_s": t_rest - t_merge,
                             "distances_s": time.perf_counter() - t_dist}
        return self

    def _split(self, X, y, rng):
        """Phases 1 and 2: one cluster per label, split by 2-means until every pair of clusters of different
        labels is certified separable (or is two identical points, `stuck`). Returns (clusters {id: (label,
        indices)}, the id counter, stuck pairs). The certificates (a separating direction per certified pair,
        `self._certified[i][j]`) and the centroids (`self._cents`) are kept for the merge phase."""
        # clusters: id -> (label, index array)
        clusters: dict[int, tuple] = {}
        next_id = itertools.count()
        for lab in self.classes_:
            clusters[next(next_id)] = (lab, np.flatnonzero(y == lab))
        # certified[i][j]: (direction, sign), i above j along sign * direction: the proof that i and j (of
        # different labels) are apart. Parts of a split cluster inherit their parent's entries.
        certified: dict[int, dict] = {c: {} for c in clusters}
        stuck = set()  # singleton pairs that cannot be split further (identical points)
        self._certified = certified

        split_mode = "exact" if self.exact else "svm"

        def check(i, j, mode):
            ok, w = separation(X[clusters[i][1]], X[clusters[j][1]], self.stats_, mode=mode)
            if ok:
                certified[i][j] = (w, 1.0)
                certified[j][i] = (w, -1.0)
            return ok

        # phase 1 + 2: split until every cross-label pair is certified separable. The pairs still to check wait in
        # a heap, smallest (i, j) first: the order a rescan of all pairs after every split would meet them in,
        # at the cost of the new pairs only (a rescan is cubic in the number of clusters, and overlapping
        # classes split into hundreds of clusters).
        pending = [(i, j) for i, j in itertools.combinations(sorted(clusters), 2) if clusters[i][0] != clusters[j][0]]
        heapq.heapify(pending)
        pbar = tqdm(desc="DirectProbe split", disable=not self.verbose, unit="check")
        while pending:
            i, j = heapq.heappop(pending)
            if i not in clusters or j not in clusters or j in certified[i] or frozenset((i, j)) in stuck:
                continue  # a part of a split cluster, or a pair already settled (pushed twice)
            pbar.update(1)
            if check(i, j, split_mode):
                continue
            new_ids = []
            for c in (i, j):
                lab, idx = clusters[c]
                if len(idx) < 2:
                    continue
                mask = _two_means(X[idx], rng)
                del clusters[c]
                parts = []
                for part in (idx[mask], idx[~mask]):
                    nid = next(next_id)
                    clusters[nid] = (lab, part)
                    parts.append(nid)
                # inherit certificates: parts of a set separable from K are separable from K (same direction)
                inherited = certified.pop(c)
                for other, (w, sgn) in inherited.items():
                    row = certified[other]
                    del row[c]
                    for nid in parts:
                        row[nid] = (w, -sgn)
                for nid in parts:
                    certified[nid] = dict(inherited)
                new_ids += parts
            if not new_ids:  # two singletons that the checks cannot separate: decide exactly
                if not check(i, j, "exact"):
                    stuck.add(frozenset((i, j)))
                continue
            for n in new_ids:
                lab = clusters[n][0]
                for other, (other_lab, _) in clusters.items():
                    if other_lab != lab and other not in certified[n]:
                        heapq.heappush(pending, (min(n, other), max(n, other)))
        pbar.close()
        return clusters, next_id, stuck

    def _merge(self, X, clusters, next_id, stuck):
        """Phase 3: passes over same-label pairs, nearest centroids first; a pair merges if the merged hull is
        separable from every cluster of another label (the rule and the order of the original rescan; only the
        way each verdict is reached is faster, see `_merge_verdict`)."""
        merge_mode = "exact" if self.exact else "svm"
        certified = getattr(self, "_certified", None)
        if certified is None or any(c not in certified for c in clusters):
            certified = {c: {} for c in clusters}
        self._certified = certified
        changed = True
        pbar = tqdm(desc="DirectProbe merge", disable=not self.verbose, unit="merge")
        stuck_ids = {c for key in stuck for c in key}
        refused = set()  # merges refused on a solver failure (counted as overlap), by id pair
        # Merges refused on an overlap proof: conv(a + b) meets conv(c) for a cluster c of another label. Clusters
        # only grow, so every later pair p, q with a inside p and b inside q overlaps c's cluster too and is
        # refused without a new LP (`ancestors[p]`: the ids merged into p, p included).
        overlap_with: dict[int, set] = {}
        ancestors = {c: {c} for c in clusters}
        counts = {"pairs_tried": 0, "merges": 0, "refused_lp": 0, "refused_inherited": 0, "refused_failed": 0}
        # per cluster: centroid, largest |entry|; per point: its projection on its own cluster's centroid
        cents = {c: X[idx].mean(0) for c, (_, idx) in clusters.items()}
        absmax = {c: float(np.abs(X[idx]).max()) for c, (_, idx) in clusters.items()}
        self_proj = np.empty(len(X))
        for c, (_, idx) in clusters.items():
            self_proj[idx] = X[idx] @ cents[c]
        while changed:
            changed = False
            candidates = []
            for lab in self.classes_:
                ids = [c for c, (l, _) in clusters.items() if l == lab and c not in stuck_ids]
                if len(ids) < 2:
                    continue
                C = np.stack([cents[c] for c in ids])
                D = ((C[:, None, :] - C[None]) ** 2).sum(-1)
                for a in range(len(ids)):
                    order = np.argsort(D[a])
                    order = [o for o in order if o != a]
                    if self.merge_candidates is not None:
                        order = order[: self.merge_candidates]
                    for o in order:
                        if a < o or self.merge_candidates is not None:
                            candidates.append((D[a, o], ids[a], ids[o]))
            candidates.sort(key=lambda t: t[0])
            gone = set()
            for _, a, b in candidates:
                if a in gone or b in gone or a == b:
                    continue
                key = frozenset((a, b))
                if key in refused:
                    continue
                small, large = (a, b) if len(ancestors[a]) <= len(ancestors[b]) else (b, a)
                if any(not overlap_with.get(x, set()).isdisjoint(ancestors[large]) for x in ancestors[small]):
                    counts["refused_inherited"] += 1
                    refused.add(key)
                    continue
                counts["pairs_tried"] += 1
                lab = clusters[a][0]
                merged = np.concatenate([clusters[a][1], clusters[b][1]])
                M = X[merged]
                mc = M.mean(0)
                failed = self.stats_.lp_failed
                certs = self._merge_verdict(X, clusters, cents, absmax, self_proj, a, b, M, mc, merge_mode)
                if certs is None:
                    refused.add(key)
                    if self.stats_.lp_failed == failed and merge_mode == "exact":  # an overlap proof
                        counts["refused_lp"] += 1
                        overlap_with.setdefault(a, set()).add(b)
                        overlap_with.setdefault(b, set()).add(a)
                    else:
                        counts["refused_failed"] += 1
                    continue
                counts["merges"] += 1
                nid = next(next_id)
                clusters[nid] = (lab, merged)
                del clusters[a], clusters[b]
                for c in (a, b):
                    for other in certified.pop(c, {}):
                        certified[other].pop(c, None)
                certified[nid] = {}
                for other, w in certs.items():
                    if w is None:  # certified by the centroid direction: kept as that (no array per pair)
                        certified[nid][other] = (("centroid", nid, other), 1.0)
                        certified[other][nid] = (("centroid", nid, other), -1.0)
                    else:
                        certified[nid][other] = (w, 1.0)
                        certified[other][nid] = (w, -1.0)
                cents[nid] = mc
                absmax[nid] = max(absmax[a], absmax[b])
                ancestors[nid] = ancestors.pop(a) | ancestors.pop(b) | {nid}
                self_proj[merged] = M @ mc
                gone.update((a, b))
                changed = True
                pbar.update(1)
        pbar.close()
        self._cents = cents
        self.merge_counts_ = counts
        return clusters

    def _direction(self, cents, p, q):
        """The stored direction along which cluster p lies above cluster q, or None."""
        entry = self._certified.get(p, {}).get(q)
        if entry is None:
            return None
        w, sgn = entry
        if isinstance(w, tuple):  # ("centroid", x, y): the direction cents[x] - cents[y]
            w = cents[w[1]] - cents[w[2]]
        elif w is None:
            return None
        return w if sgn > 0 else -w

    def _merge_verdict(self, X, clusters, cents, absmax, self_proj, a, b, M, mc, mode):
        """May clusters a and b (points M, centroid mc) merge? None if the merged hull overlaps a cluster of
        another label, else {other cluster: its certificate (a direction, or None for mc - its centroid)}.

        The verdict is the rescan's (every other-label cluster separable from M) reached cheaply:
        1. the centroid direction for all other-label clusters at once (a few matrix products), with a
           round-off margin that keeps every certificate sound;
        2. for the rest, the directions that proved a and b apart from that cluster (a subset of a merged
           cluster that was certified as a whole, often, since splits over-split);
        3. then `hull.separation` (SVM, exact LP), nearest clusters first, stopping at the first overlap.
        """
        lab = clusters[a][0]
        others = [c for c, (l, _) in clusters.items() if l != lab]
        if not others:
            return {}
        C = np.stack([cents[c] for c in others])
        W = mc[None, :] - C  # centroid directions, one row per other cluster
        lo = (M @ W.T).min(0)  # the merged cluster's lowest projection on each direction
        sizes = np.array([len(clusters[c][1]) for c in others])
        oidx = np.concatenate([clusters[c][1] for c in others])
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        # x.(mc - cent_c) for x in cluster c, as x.mc - x.cent_c (x.cent_c is kept per point)
        hi = np.maximum.reduceat(X[oidx] @ mc - self_proj[oidx], starts)
        am = float(np.abs(M).max())
        scale = np.maximum(am, np.array([absmax[c] for c in others]))
        # round-off: the 1e-9 margin of `direction_separates` plus a bound on the cancellation in x.mc - x.cent_c
        eps = 1e-9 * (np.abs(W).sum(1) * scale + 0.5 * np.abs(lo + hi)) + \
            1e-12 * scale * (np.abs(mc).sum() + np.abs(C).sum(1)) + 1e-300
        ok = 0.5 * (lo - hi) > eps
        self.stats_.centroid += int(ok.sum())
        certs = {c: None for c, k in zip(others, ok) if k}
        rest = [c for c, k in zip(others, ok) if not k]
        if not rest:
            return certs
        # the directions that proved a and b apart from c, for all such c at once (one product with M)
        hints = {c: [h for h in (self._direction(cents, a, c), self._direction(cents, b, c)) if h is not None]
                 for c in rest}
        owners = [c for c in rest for _ in hints[c]]
        if owners:
            ok = directions_separate(np.stack([h for c in rest for h in hints[c]]), M,
                                     [X[clusters[c][1]] for c in owners], [max(am, absmax[c]) for c in owners])
            for c, w, k in zip(owners, (h for c in rest for h in hints[c]), ok):
                if k and c not in certs:
                    self.stats_.hint += 1
                    certs[c] = w
        still = [c for c in rest if c not in certs]
        still.sort(key=lambda c: float(((cents[c] - mc) ** 2).sum()))
        single = [c for c in still if len(clusters[c][1]) == 1]
        if single and mode == "exact":
            # single points (overlaps split down to one point, conflicts): all at once, the direction from
            # each to its nearest point of conv(M) (batched point-to-hull QPs, loose: only the sign matters)
            P = X[[int(clusters[c][1][0]) for c in single]]
            _, Q = point_hull_closest(P, M, tol=1e-9, rtol=0.5, max_iter=200, max_rounds=3)
            ok = directions_separate(Q - P, M, [p[None] for p in P], [max(am, absmax[c]) for c in single])
            for c, w, k in zip(single, Q - P, ok):
                if k:
                    self.stats_.point_hull += 1
                    certs[c] = w
            still = [c for c in still if c not in certs]
        for c in still:  # (the hints, checked above, span the subspace step there: see hull.separation)
            okc, w = separation(M, X[clusters[c][1]], self.stats_, mode=mode, centroid=False,
                                scale=max(am, absmax[c]), hints=hints[c], hints_checked=True)
            if not okc:
                return None
            certs[c] = w
        return certs

    def _cluster_distances(self) -> np.ndarray:
        """Hull-to-hull distances between clusters of different labels (NaN on the diagonal/same label)."""
        k = self.n_clusters_
        D = np.full((k, k), np.nan)
        for i, j in itertools.combinations(range(k), 2):
            if self.cluster_labels_[i] == self.cluster_labels_[j]:
                continue
            d = hull_hull_distance(self._X[self.clusters_[i]], self._X[self.clusters_[j]])
            D[i, j] = D[j, i] = d
        return D

    # ---- inference ---------------------------------------------------------------------------------
    def decision_distances(self, X) -> np.ndarray:
        """(n, n_clusters) Euclidean distances from each point to each cluster's convex hull."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        D = np.empty((len(X), self.n_clusters_))
        for c, idx in enumerate(self.clusters_):
            D[:, c] = point_hull_distances(X, self._X[idx], tol=self.tol, rtol=self.rtol)
        return D

    def nearest_clusters(self, X) -> np.ndarray:
        """Index of the cluster whose hull is nearest to each row of X: `decision_distances(X).argmin(1)`,
        without solving every point-to-hull QP. Cheap bounds first (`hull.point_hull_bounds`: the distance
        to the nearest vertex above, projections below); each point's QP for the cluster of its smallest
        upper bound is solved, which gives d_best; a cluster whose lower bound exceeds d_best is farther
        than that cluster for sure (its solved distance, never below the true one, could not be the
        minimum either) and is skipped; the QPs of the other clusters are solved as in
        `decision_distances`, and the argmin is taken over those (ties: the lower index, as argmin)."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        n, k = len(X), self.n_clusters_
        LB, UB = np.empty((n, k)), np.empty((n, k))
        for c, idx in enumerate(self.clusters_):
            LB[:, c], UB[:, c] = point_hull_bounds(X, self._X[idx])
        D = np.full((n, k), np.inf)
        first = UB.argmin(1)
        for c in np.unique(first):
            rows = np.flatnonzero(first == c)
            D[rows, c] = point_hull_distances(X[rows], self._X[self.clusters_[c]], tol=self.tol, rtol=self.rtol)
        best = D[np.arange(n), first]
        todo = (LB <= best[:, None]) & ~np.isfinite(D)
        for c in range(k):
            rows = np.flatnonzero(todo[:, c])
            if len(rows):
                D[rows, c] = point_hull_distances(X[rows], self._X[self.clusters_[c]], tol=self.tol, rtol=self.rtol)
        self.prediction_qps_ = {"solved": int(np.isfinite(D).sum()), "of": int(n * k)}
        return D.argmin(1)

    def predict(self, X) -> np.ndarray:
        nearest = self.nearest_clusters(X)
        return self.cluster_labels_[nearest]

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def evaluate(self, X, y) -> dict:
        """Accuracy, mean per-label accuracy, cluster count and inter-cluster distances, as a dict."""
        y = np.asarray(y)
        pred = self.predict(X)
        per_label = {str(l): float(np.mean(pred[y == l] == l)) for l in np.unique(y)}
        out = {
            "accuracy": float(np.mean(pred == y)),
            "mean_per_label_accuracy": float(np.mean(list(per_label.values()))) if per_label else float("nan"),
            "per_label_accuracy": per_label,
            "n_clusters": int(self.n_clusters_),
            "n_labels": int(len(self.classes_)),
            "n_conflicts": int(self.n_conflicts_),
            "fit_time_s": round(float(self.fit_time_), 3),
            "phase_times_s": {k: round(float(v), 3) for k, v in self.phase_times_.items()},
            "separability_checks": self.stats_.as_dict(),
            "merge_counts": dict(self.merge_counts_),
            "prediction_qps": dict(self.prediction_qps_),
        }
        out.update(self.distance_summary())
        return out

    def distance_summary(self) -> dict:
        D = self.cluster_distances_
        if D is None or not np.isfinite(D).any():
            return {"min_inter_cluster_distance": None, "mean_inter_cluster_distance": None}
        vals = D[np.triu_indices_from(D, 1)]
        vals = vals[np.isfinite(vals)]
        return {"min_inter_cluster_distance": float(vals.min()), "mean_inter_cluster_distance": float(vals.mean())}

    def _check_fitted(self):
        if not hasattr(self, "clusters_"):
            raise RuntimeError("DirectProbe is not fitted: call fit(X, y) first")
