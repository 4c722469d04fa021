"""Convex-hull geometry for DirectProbe: exact separability and Euclidean hull distances.

Separability of two point sets (do their convex hulls intersect?) is decided cheapest test first. Any
direction w along which every projection of one set lies above every projection of the other (with a gap
above float64 round-off) is an exact certificate of separability, so only the last step ever has to
*prove* overlap:
1. the direction between the two centroids (one dot product per point);
2. hint directions the caller knows (say the directions that separated each half of a merged cluster
   from the other set); in mode "exact" then the closest points of the two sets projected onto the span
   of the hints and the centroid direction (a few dimensions, so cheap), grown once by the directions
   that direction misses;
3. mode "exact": a point the two sets share proves overlap at once (no direction can separate them); else
   the direction between the two hulls' closest points, found by non-negative least squares (scipy `nnls`,
   an active-set method: min |a A - b B| with a, b >= 0 and the simplex constraints as heavily weighted
   rows); it certifies separable pairs however thin the gap, in a tenth of an LP's time (its cost grows
   like d s^2 for s support points: 15-45 ms at d = 256, 40-160 ms at d = 768 on real features).
   Modes "fast"/"svm": a hard-margin linear SVM (`LinearSVC`, large C) instead;
4. the separating-hyperplane LP (scipy `linprog`, HiGHS dual simplex; interior point where the simplex
   stalls): first on the points step 3's closest points combine (at most d + 2; where the hulls meet, an
   infeasible LP on them proves the overlap), then in one piece when it is small, otherwise by
   constraint generation seeded with the points nearest the other set along step 3's direction. Infeasible = the hulls overlap; a feasible LP's
   hyperplane is checked on every point. With fewer points than dimensions the LP is written in the span
   of the points (one variable per point).
Distances (point to hull, hull to hull) are QPs over simplices, solved by accelerated projected gradient
(FISTA) in batches or on working sets, stopped by the Frank-Wolfe duality gap, which bounds the error of
the objective. `point_hull_bounds` brackets point-to-hull distances by a few matrix products (nearest
vertex above, projections below), so a prediction solves only the QPs that can decide the nearest hull.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

_SVM_C = 1e4
_SVM_ITER = 300  # a failed fit costs this many passes; a failure only means "ask the LP"
_LP_FULL_MAX = 400_000  # matrix entries up to which the LP is solved in one piece (measured: faster than rounds)
_GAP_RTOL = 1e-9  # a certificate's gap must exceed this times the scale of the projections
_NNLS_WEIGHT = 1e3  # weight of the two simplex rows (sum a = 1, sum b = 1) against the unit-scaled points


@dataclass
class SeparabilityStats:
    """How each separability question was settled (the cheap paths should answer almost all)."""

    centroid: int = 0
    hint: int = 0
    subspace: int = 0
    point_hull: int = 0
    nnls: int = 0
    svm: int = 0
    lp_separable: int = 0
    lp_overlap: int = 0
    lp_failed: int = 0
    lp_solves: int = 0
    shared_point: int = 0
    trivial: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self):
        return {"centroid": self.centroid, "hint": self.hint, "subspace": self.subspace,
                "point_hull": self.point_hull, "nnls": self.nnls,
                "svm": self.svm,
                "lp_separable": self.lp_separable,
                "lp_overlap": self.lp_overlap, "lp_failed": self.lp_failed, "lp_solves": self.lp_solves,
                "shared_point": self.shared_point,
                "trivial": self.trivial}


def _abs_max(M) -> float:
    return float(np.abs(M).max(initial=0.0))


def direction_separates(w, A, B, scale: float | None = None) -> bool:
    """True if min(A w) - max(B w) exceeds float64 round-off: conv(A) and conv(B) are then disjoint.

    `scale`: max |entry| of A and B if the caller has it (it only sets the round-off margin)."""
    if w is None or not np.any(w):
        return False
    pa, pb = A @ w, B @ w
    lo, hi = float(pa.min()), float(pb.max())
    if not lo > hi:
        return False
    if scale is None:
        scale = max(_abs_max(A), _abs_max(B))
    eps = _GAP_RTOL * (float(np.abs(w).sum()) * scale + 0.5 * abs(lo + hi)) + 1e-300
    return 0.5 * (lo - hi) > eps


def directions_separate(W, A, Bs, scales) -> np.ndarray:
    """`direction_separates(W[j], A, Bs[j], scales[j])` for every row j of W at once: A's projections on all
    directions in one matrix product (A is shared, often the large set). Same rule, same margin."""
    W = np.asarray(W, dtype=np.float64)
    out = np.zeros(len(W), dtype=bool)
    if len(W) == 0:
        return out
    lo = (A @ W.T).min(0)
    for j, (w, B) in enumerate(zip(W, Bs)):
        if not np.any(w):
            continue
        low, hi = float(lo[j]), float((B @ w).max())
        if not low > hi:
            continue
        eps = _GAP_RTOL * (float(np.abs(w).sum()) * scales[j] + 0.5 * abs(low + hi)) + 1e-300
        out[j] = 0.5 * (low - hi) > eps
    return out


def _strictly_separates(w, b, A, B) -> bool:
    """True if w.a + b > 0 > w.x + b for all a in A, x in B, with a margin above float64 round-off."""
    sa, sb = A @ w + b, B @ w + b
    scale = np.abs(w).sum() * max(np.abs(A).max(initial=0.0), np.abs(B).max(initial=0.0)) + abs(b) + 1e-300
    eps = 1e-9 * scale
    return bool(sa.min() > eps and sb.max() < -eps)


def _centroid_check(A, B) -> bool:
    return direction_separates(A.mean(0) - B.mean(0), A, B)


def _svm_direction(A, B, max_iter=_SVM_ITER):
    """Direction of a hard-margin linear SVM (LinearSVC, C=1e4) fitted to A (+1) and B (-1), or None."""
    from sklearn.svm import LinearSVC

    X = np.vstack([A, B])
    y = np.r_[np.ones(len(A)), -np.ones(len(B))]
    mu = X.mean(0)
    scale = np.abs(X - mu).max() or 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LinearSVC(C=_SVM_C, loss="hinge", dual=True, max_iter=max_iter, tol=1e-6, random_state=0)
        clf.fit((X - mu) / scale, y)
    w = clf.coef_.ravel() / scale
    return w if np.all(np.isfinite(w)) and np.any(w) else None


def _svm_check(A, B, max_iter=2000) -> bool:
    return direction_separates(_svm_direction(A, B, max_iter), A, B)


def _shares_a_point(A, B) -> bool:
    """True if some row of A equals some row of B (then the hulls overlap, whatever the dimension)."""
    small, large = (A, B) if len(A) <= len(B) else (B, A)
    rows = {np.ascontiguousarray(r).tobytes() for r in small + 0.0}  # + 0.0: -0.0 and 0.0 compare equal
    return any(np.ascontiguousarray(r).tobytes() in rows for r in large + 0.0)


def _nnls_closest(A, B, weight: float = _NNLS_WEIGHT):
    """Closest points of conv(A) and conv(B) by non-negative least squares: min |A^T a - B^T b|^2 +
    w^2 (sum a - 1)^2 + w^2 (sum b - 1)^2 over a, b >= 0 (Lawson-Hanson: an exact active-set method), the
    simplex constraints as heavily weighted rows on unit-scaled points. Returns the weights (a, b), each
    rescaled to sum 1 (so a A and b B are points of the two hulls), or None if the solver gives up."""
    from scipy.optimize import nnls

    center = 0.5 * (A.mean(0) + B.mean(0))
    s = max(_abs_max(A - center), _abs_max(B - center)) or 1.0
    An, Bn = (A - center) / s, (B - center) / s
    na, nb = len(A), len(B)
    M = np.vstack([np.hstack([An.T, -Bn.T]), np.r_[np.full(na, weight), np.zeros(nb)],
                   np.r_[np.zeros(na), np.full(nb, weight)]])
    rhs = np.r_[np.zeros(A.shape[1]), weight, weight]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, _ = nnls(M, rhs, maxiter=3 * (na + nb))
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    a, b = x[:na], x[na:]
    if not (a.sum() > 0 and b.sum() > 0 and np.all(np.isfinite(x))):
        return None
    return a / a.sum(), b / b.sum()


def _subspace_direction(A, B, dirs, rounds: int = 2):
    """A direction in a small subspace that may separate A from B: the closest points of the two hulls
    *projected* onto span(dirs) (NNLS in a handful of dimensions, so cheap), then, if that direction fails
    on some point, the subspace grows by the lifted closest-points difference and the worst pair of points,
    once more. The caller checks the direction on every point. None if none was found."""
    dirs = [np.asarray(d, dtype=np.float64) for d in dirs if d is not None and np.any(d)]
    w = None
    for _ in range(rounds):
        if not dirs:
            return None
        Q, R = np.linalg.qr(np.stack(dirs, 1))
        Q = Q[:, np.abs(np.diag(R)) > 1e-12 * np.abs(np.diag(R)).max()]
        PA, PB = A @ Q, B @ Q
        ab = _nnls_closest(PA, PB)
        if ab is None:
            return w
        w = Q @ (ab[0] @ PA - ab[1] @ PB)
        if direction_separates(w, A, B):
            return w
        pa, pb = A @ w, B @ w
        dirs = dirs + [ab[0] @ A - ab[1] @ B, A[int(np.argmin(pa))] - B[int(np.argmax(pb))]]
    return w


def _nnls_direction(A, B):
    """(w, support): w the direction from the closest point of conv(B) to that of conv(A) (`_nnls_closest`),
    when the hulls are apart the hard-margin SVM's normal (the caller checks it on every point); support the
    indices (into A, into B) of the points those closest points combine, where the hulls come nearest or
    meet (at most d + 2 points: an overlap LP on them alone is small). (None, None) if not found."""
    ab = _nnls_closest(A, B)
    if ab is None:
        return None, None
    w = ab[0] @ A - ab[1] @ B
    support = (np.flatnonzero(ab[0] > 0), np.flatnonzero(ab[1] > 0))
    return (w if np.all(np.isfinite(w)) and np.any(w) else None), support


def _solve_hyperplane_lp(Z, sign):
    """Feasibility LP: sign_i * (w.z_i + b) >= 1 for all rows; returns (status, w, b).

    With fewer rows than columns, w is searched in the span of the rows (w = Z^T g), which loses nothing:
    only the values w.z_i enter the constraints. The LP then has one variable per row. If HiGHS reports
    numerical trouble in that (Gram-matrix) form, the primal form is tried.
    """
    from scipy.optimize import linprog

    forms = ["span", "primal"] if Z.shape[0] < Z.shape[1] else ["primal"]
    status = None
    for form in forms:  # the span form can be ill-conditioned (near-duplicate points): retry in the primal
        M = Z @ Z.T if form == "span" else Z  # span: w = Z^T g, constraint values = (Z Z^T g)_i
        A_ub = -np.hstack([M * sign[:, None], sign[:, None]])
        # the dual simplex settles almost every case; on thin overlaps it can stall ("unknown" after many
        # iterations), where the interior-point method still proves infeasibility: cap it and fall back
        for method, opts in (("highs-ds", {"maxiter": 20 * len(Z) + 1000}), ("highs-ipm", {})):
            res = linprog(np.zeros(A_ub.shape[1]), A_ub=A_ub, b_ub=-np.ones(len(Z)), bounds=(None, None),
                          method=method, options=opts)
            status = res.status
            if status == 0:
                w = Z.T @ res.x[:-1] if form == "span" else res.x[:-1]
                return 0, w, res.x[-1]
            if status == 2:
                return 2, None, None
    return status, None, None


def _lp_entries(n: int, d: int) -> int:
    """Size of the LP's constraint matrix for n points in d dimensions (span form when n < d)."""
    return n * (min(n, d) + 1)


def _lp_separation(A, B, w0=None, stats: SeparabilityStats | None = None, init: int = 256, add: int = 256,
                   max_rounds: int = 40, support=None):
    """Exact separability by the separating-hyperplane LP (HiGHS). Returns (verdict, w): verdict True with a
    separating direction w (A on the positive side, original coordinates), False (the hulls overlap), or
    None (the solver failed).

    `support`: (indices into A, into B) of points whose hulls are thought to meet (`_nnls_direction`); the
    LP on them alone comes first, and if it is infeasible the hulls overlap (a subset's hulls meet).
    Otherwise small problems are one LP, and larger ones go by constraint generation: solve on the points of each set
    deepest on the wrong side of `w0` (a direction that nearly separates, e.g. a failed SVM's; default the
    centroid direction), add the points the LP's hyperplane gets wrong, repeat. Infeasible on a subset =
    the hulls overlap (a subset's hull lies inside); feasible with no wrong point left = separable.
    """
    X = np.vstack([A, B])
    sign = np.r_[np.ones(len(A)), -np.ones(len(B))]
    mu = X.mean(0)
    Xc = X - mu
    s = _abs_max(Xc) or 1.0
    Xc = Xc / s
    scale = _abs_max(X)

    def solve(S):
        if stats is not None:
            stats.lp_solves += 1
        return _solve_hyperplane_lp(Xc[S], sign[S])

    def verdict_of(w):
        w = w / s  # back to the original coordinates (a direction; the offset is re-chosen)
        return (True, w) if direction_separates(w, A, B, scale) else (None, None)

    n, d = X.shape
    if support is not None and 0 < len(support[0]) + len(support[1]) < n and len(support[0]) and len(support[1]):
        S = np.r_[support[0], len(A) + support[1]]
        status, w, b = solve(S)
        if status == 2:
            return False, None
        if status == 0 and direction_separates(w / s, A, B, scale):
            return True, w / s
    if _lp_entries(n, d) <= _LP_FULL_MAX:
        status, w, b = solve(np.arange(n))
        if status == 2:
            return False, None
        return verdict_of(w) if status == 0 else (None, None)
    if w0 is None or not np.any(w0):
        w0 = Xc[: len(A)].mean(0) - Xc[len(A):].mean(0)
    else:
        w0 = np.asarray(w0, dtype=np.float64) * s
    proj = Xc @ w0
    proj = sign * (proj - 0.5 * (proj[: len(A)].min() + proj[len(A):].max()))  # small = deep on the other side
    ia = np.argsort(proj[: len(A)])[:init]
    ib = len(A) + np.argsort(proj[len(A):])[:init]
    S = np.unique(np.r_[ia, ib])
    for _ in range(max_rounds):
        status, w, b = solve(S)
        if status == 2:
            return False, None
        if status != 0:
            break  # the solver failed on the subset: try the whole LP
        margins = sign * (Xc @ w + b)
        # any strictly separating hyperplane is a certificate: only points on the wrong side (or too close
        # to the plane for float64 to be sure) must join the LP
        bad = np.flatnonzero(margins <= 1e-6)
        bad = bad[~np.isin(bad, S)]
        if len(bad) == 0:
            return verdict_of(w) if margins.min() > 1e-6 else (None, None)
        S = np.union1d(S, bad[np.argsort(margins[bad])[:add]])
    status, w, b = solve(np.arange(n))  # did not settle (or failed on a subset): the whole LP
    if status == 2:
        return False, None
    return verdict_of(w) if status == 0 else (None, None)


def _lp_check(A, B, **kwargs):
    """The LP's verdict alone: True (separable), False (overlap) or None (solver failure)."""
    return _lp_separation(np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64), **kwargs)[0]


def separation(A: np.ndarray, B: np.ndarray, stats: SeparabilityStats | None = None, mode: str = "exact",
               hints=(), lp_first_max: int = 400, scale: float | None = None, centroid: bool = True,
               hints_checked: bool = False):
    """Whether conv(A) and conv(B) are disjoint, with the certificate: (verdict, w), w a direction along which
    A projects strictly above B (None when the verdict is False or the question is trivial).

    mode "exact": centroid direction, `hints`, the closest-points direction (NNLS), then the LP, which
    settles both answers; "fast": centroid, hints, the LP for small problems (n <= `lp_first_max`), the SVM
    otherwise (an SVM failure then counts as overlap); "svm": centroid, hints and SVM only (the original
    DirectProbe's approximation). `centroid=False` skips the centroid test (the caller has done it);
    `hints_checked=True` skips checking each hint alone (the caller has), not the subspace step.
    """
    if mode not in ("exact", "fast", "svm"):
        raise ValueError(f"mode must be 'exact', 'fast' or 'svm', got {mode!r}")
    stats = stats if stats is not None else SeparabilityStats()
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if len(A) == 0 or len(B) == 0:
        stats.trivial += 1
        return True, None
    if len(A) == 1 and len(B) == 1:
        stats.trivial += 1
        w = A[0] - B[0]
        return (True, w) if np.any(w) else (False, None)
    if scale is None:
        scale = max(_abs_max(A), _abs_max(B))
    if centroid:
        w = A.mean(0) - B.mean(0)
        if direction_separates(w, A, B, scale):
            stats.centroid += 1
            return True, w
    hints = [w for w in hints if w is not None]
    for w in (() if hints_checked else hints):
        if direction_separates(w, A, B, scale):
            stats.hint += 1
            return True, w
    if hints and mode == "exact":
        w = _subspace_direction(A, B, hints + [A.mean(0) - B.mean(0)])
        if direction_separates(w, A, B, scale):
            stats.subspace += 1
            return True, w
    n = len(A) + len(B)
    w0 = support = None
    if mode == "exact":
        if _shares_a_point(A, B):  # no direction can separate them: no NNLS, no LP
            stats.shared_point += 1
            return False, None
        w0, support = _nnls_direction(A, B)
        if direction_separates(w0, A, B, scale):
            stats.nnls += 1
            return True, w0
    elif mode == "svm" or n > lp_first_max:
        w0 = _svm_direction(A, B)
        if direction_separates(w0, A, B, scale):
            stats.svm += 1
            return True, w0
        return False, None
    out, w = _lp_separation(A, B, w0=w0, stats=stats, support=support)
    if out is None:
        stats.lp_failed += 1
        return False, None
    if out:
        stats.lp_separable += 1
    else:
        stats.lp_overlap += 1
    return out, w


def separable(A: np.ndarray, B: np.ndarray, stats: SeparabilityStats | None = None, mode: str = "exact",
              lp_first_max: int = 400, hints=()) -> bool:
    """Whether conv(A) and conv(B) are disjoint (strict linear separability of the two point sets); see
    `separation`, which also returns the certificate."""
    return separation(A, B, stats, mode=mode, hints=hints, lp_first_max=lp_first_max)[0]


# ---------------------------------------------------------------------------------------------------
# distances
def project_rows_to_simplex(V: np.ndarray) -> np.ndarray:
    """Euclidean projection of every row of V onto the probability simplex (sort-based, vectorised)."""
    n, m = V.shape
    U = -np.sort(-V, axis=1)
    css = np.cumsum(U, axis=1) - 1.0
    ind = np.arange(1, m + 1)
    cond = U - css / ind > 0
    rho = m - 1 - np.argmax(cond[:, ::-1], axis=1)
    theta = css[np.arange(n), rho] / (rho + 1)
    return np.maximum(V - theta[:, None], 0.0)


def _lipschitz(G: np.ndarray, iters: int = 50) -> float:
    """2 * lambda_max(G) for a PSD Gram matrix, by power iteration with a 10% safety margin."""
    v = np.ones(len(G)) / np.sqrt(len(G))
    lam = 0.0
    for _ in range(iters):
        w = G @ v
        nw = np.linalg.norm(w)
        if nw <= 0:
            return 1e-12
        lam_new = float(v @ w)
        v = w / nw
        if abs(lam_new - lam) <= 1e-4 * abs(lam_new):
            lam = lam_new
            break
        lam = lam_new
    return 2.2 * max(lam, float(np.diag(G).max()) / len(G), 1e-12)


def _batched_lipschitz(Gs: np.ndarray, iters: int = 30) -> np.ndarray:
    """2.2 * lambda_max of each PSD matrix in a (t, k, k) stack, by batched power iteration (10% margin)."""
    v = np.full(Gs.shape[:2], 1.0 / np.sqrt(Gs.shape[1]))
    lam = np.zeros(len(Gs))
    for _ in range(iters):
        w = np.einsum("tkl,tl->tk", Gs, v)
        lam = np.einsum("tk,tk->t", v, w)
        nw = np.linalg.norm(w, axis=1)
        v = w / np.maximum(nw, 1e-300)[:, None]
    diag_mean = np.einsum("tkk->t", Gs) / Gs.shape[1]
    return 2.2 * np.maximum(np.maximum(lam, diag_mean), 1e-12)


def _fista_working_sets(alpha, Gs, b, xn, L, tol_abs, rtol, max_iter):
    """FISTA for min_a |a H_S - x|^2 over the simplex, one small problem per row (Gram matrices Gs (t, k, k),
    b = x.h (t, k), xn = |x|^2), from `alpha` (t, k), updated in place. A row stops when its Frank-Wolfe gap on
    the working set is below tol_abs + rtol * f. The arrays are compacted to the unfinished rows every
    5 iterations (not indexed by them every iteration: copying the stack of Gram matrices costs more than
    the products)."""
    idx = np.arange(len(alpha))
    Ga, ba, xa, La = Gs, b, xn, L[:, None]
    aa = alpha.copy()
    ya, ta = aa.copy(), np.ones(len(aa))
    for it in range(max_iter):
        grad = np.matmul(ya[:, None, :], Ga)[:, 0] - ba
        new = project_rows_to_simplex(ya - 2.0 * grad / La)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * ta * ta))
        ya = new + ((ta - 1) / t_new)[:, None] * (new - aa)
        aa, ta = new, t_new
        if it % 5 == 4 or it == max_iter - 1:
            ag = np.matmul(aa[:, None, :], Ga)[:, 0]
            g = 2.0 * (ag - ba)
            gap = np.einsum("ij,ij->i", g, aa) - g.min(1)
            f = np.einsum("ij,ij->i", ag, aa) - 2 * np.einsum("ij,ij->i", aa, ba) + xa
            go = gap > tol_abs + rtol * np.maximum(f, 0.0)
            if not go.all():
                alpha[idx[~go]] = aa[~go]
                idx, Ga, ba, xa, La = idx[go], Ga[go], ba[go], xa[go], La[go]
                aa, ya, ta = aa[go], ya[go], ta[go]
                if len(idx) == 0:
                    return
    alpha[idx] = aa


def point_hull_distances(points: np.ndarray, hull: np.ndarray, tol: float = 1e-6, rtol: float = 1e-3,
                         max_iter: int = 1000, batch: int = 256, working_set: int = 32) -> np.ndarray:
    """Euclidean distance from each row of `points` to conv(rows of `hull`) (see `point_hull_closest`)."""
    return point_hull_closest(points, hull, tol, rtol, max_iter, batch, working_set)[0]


def point_hull_closest(points: np.ndarray, hull: np.ndarray, tol: float = 1e-6, rtol: float = 1e-3,
                       max_iter: int = 1000, batch: int = 256, working_set: int = 32,
                       max_rounds: int | None = None):
    """Euclidean distance from each row of `points` to conv(rows of `hull`): min_a ||a H - x||^2 over the
    simplex, for a batch of points at once, to a Frank-Wolfe gap (a bound on the squared distance's error)
    below `tol` times the squared scale of the data plus `rtol` times the squared distance.

    Each point gets a working set of vertices (at first its `working_set` nearest); FISTA runs on all
    working sets of a batch at once (stacked small Gram matrices), from the nearest vertex; then the gap is
    evaluated against *all* vertices and, for the points above tolerance, the vertices that widen it most
    join their sets. The nearest point of a hull is a combination of few vertices, so the sets stay small.
    Returns (distances, the nearest points of the hull). `max_rounds`: stop growing the working sets after
    that many rounds (the points then left above tolerance keep their last iterate).
    """
    P = np.asarray(points, dtype=np.float64)
    H = np.asarray(hull, dtype=np.float64)
    if len(H) == 1:
        return np.linalg.norm(P - H[0], axis=1), np.repeat(H[:1], len(P), axis=0)
    out = np.empty(len(P))
    near = np.empty(P.shape)
    center = H.mean(0)
    H = H - center
    P = P - center
    m = len(H)
    hn = np.einsum("ij,ij->i", H, H)
    scale2 = max(float(hn.max()), 1e-12)
    G = H @ H.T if m <= 4096 else None
    for s in range(0, len(P), batch):
        X = P[s: s + batch]
        XH = X @ H.T  # (t, m)
        xn = np.einsum("ij,ij->i", X, X)
        order = np.argsort(xn[:, None] - 2 * XH + hn[None, :], axis=1, kind="stable")
        k = min(working_set, m)
        S = order[:, :k]  # per point: vertex indices of its working set, nearest first
        alpha = np.zeros((len(X), k))
        alpha[:, 0] = 1.0
        rows = np.arange(len(X))  # the points of the batch still being solved
        res = np.empty(len(X))
        qs = np.empty(X.shape)
        rounds = 0
        while len(rows):
            rounds += 1
            Xr = X[rows]
            Gs = G[S[:, :, None], S[:, None, :]] if G is not None else np.matmul(H[S], H[S].transpose(0, 2, 1))
            b = np.take_along_axis(XH[rows], S, axis=1)  # x.h for the working set
            _fista_working_sets(alpha, Gs, b, xn[rows], _batched_lipschitz(Gs), tol * scale2, rtol, max_iter)
            # the whole problem: gradient 2 (q.h - x.h) over all vertices, q = alpha H_S the hull point
            q = np.einsum("tk,tkd->td", alpha, H[S])
            g = 2.0 * (q @ H.T - XH[rows])
            f = np.einsum("ij,ij->i", q - Xr, q - Xr)
            gap = 2.0 * (np.einsum("ij,ij->i", q, q) - np.einsum("ij,ij->i", q, Xr)) - g.min(1)
            done = (gap <= tol * scale2 + rtol * np.maximum(f, 0.0)) | (S.shape[1] >= m)
            if max_rounds is not None and rounds >= max_rounds:
                done[:] = True
            res[rows[done]] = np.sqrt(np.maximum(f[done], 0.0))
            qs[rows[done]] = q[done]
            keep = ~done
            if not keep.any():
                break
            # add the vertices with the most negative gradient that are not in the set yet
            g = g[keep]
            np.put_along_axis(g, S[keep], np.inf, axis=1)
            add = np.argsort(g, axis=1, kind="stable")[:, : min(working_set, m - S.shape[1])]
            improving = np.take_along_axis(g, add[:, :1], axis=1)[:, 0] < np.inf
            rows, S, alpha = rows[keep], np.hstack([S[keep], add]), np.hstack([alpha[keep], np.zeros(add.shape)])
            if not improving.all():  # nothing left to add for some rows (cannot happen before S covers all)
                res[rows[~improving]] = np.sqrt(np.maximum(f[keep][~improving], 0.0))
                qs[rows[~improving]] = q[keep][~improving]
                rows, S, alpha = rows[improving], S[improving], alpha[improving]
        out[s: s + batch] = res
        near[s: s + batch] = qs + center
    return out, near


def point_hull_bounds(points: np.ndarray, hull: np.ndarray, batch: int = 1024):
    """(lower, upper): bounds on the Euclidean distance from each row of `points` to conv(rows of `hull`),
    from a few matrix products. upper: the distance to the nearest vertex v. lower: how far the hull lies
    beyond x along two directions u (every point of the hull projects at least that far): u = v - x (the
    Frank-Wolfe bound at v) and u = centroid - x, i.e. max(0, min_h (h - x).u) / |u|, less a round-off
    margin."""
    P = np.asarray(points, dtype=np.float64)
    H = np.asarray(hull, dtype=np.float64)
    center = H.mean(0)
    H = H - center
    P = P - center
    hn = np.einsum("ij,ij->i", H, H)
    lower, upper = np.empty(len(P)), np.empty(len(P))
    for s in range(0, len(P), batch):
        X = P[s: s + batch]
        XH = X @ H.T
        xn = np.einsum("ij,ij->i", X, X)
        d2 = xn[:, None] - 2 * XH + hn[None, :]
        v = d2.argmin(1)
        dv = np.sqrt(np.maximum(d2[np.arange(len(X)), v], 0.0))
        # (h - x).(v - x) = h.v - x.h - x.v + |x|^2, for all h at once
        proj_v = (H[v] @ H.T) - XH - XH[np.arange(len(X)), v][:, None] + xn[:, None]
        lb_v = np.where(dv > 0, np.maximum(proj_v.min(1), 0.0) / np.where(dv > 0, dv, 1.0), 0.0)
        xl = np.sqrt(xn)  # u = 0 - x (the centroid is the origin): (h - x).(-x) = |x|^2 - x.h
        lb_c = np.where(xl > 0, np.maximum(xn - XH.max(1), 0.0) / np.where(xl > 0, xl, 1.0), 0.0)
        # round-off of the products above, relative to the scale of the data
        margin = 1e-9 * (xn + hn.max() + 1e-300) / np.maximum(np.minimum(dv, xl), 1e-150)
        lower[s: s + batch] = np.maximum(np.maximum(lb_v, lb_c) - margin, 0.0)
        upper[s: s + batch] = dv
    return lower, upper


def _pair_fista(G, na, z, tol_abs, rtol, max_iter):
    """FISTA for min z^T G z over two simplices (z[:na] and z[na:]) from z, stopped by the Frank-Wolfe gap."""
    L = _lipschitz(G)
    y, t = z.copy(), 1.0
    for _ in range(max_iter):
        v = y - (2.0 * (G @ y)) / L
        new = np.concatenate([project_rows_to_simplex(v[None, :na])[0], project_rows_to_simplex(v[None, na:])[0]])
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = new + ((t - 1) / t_new) * (new - z)
        z, t = new, t_new
        g = 2.0 * (G @ z)
        gap = g @ z - g[:na].min() - g[na:].min()
        if gap <= tol_abs + rtol * (0.5 * g @ z):
            break
    return z


def _closest_points(A, B, tol_abs, rtol, max_iter, working_set, max_rounds=50):
    """min ||a A - b B||^2 over two simplices, A and B centred. Returns (f, v, converged): f the squared
    distance reached, v = a A - b B the difference of the two hull points, converged whether the
    Frank-Wolfe gap of the whole problem is below tol_abs + rtol * f.

    FISTA on a working set of points (at first those of each set deepest towards the other along the
    centroid direction); the gap is then evaluated on *all* points and the points that widen it join the
    set. The closest points of two hulls are combinations of few vertices, so the set stays small."""
    w = A.mean(0) - B.mean(0)
    ia = np.sort(np.argsort(A @ w, kind="stable")[:working_set])
    ib = np.sort(np.argsort(-(B @ w), kind="stable")[:working_set])
    za = np.full(len(ia), 1.0 / len(ia))
    zb = np.full(len(ib), 1.0 / len(ib))
    for _ in range(max_rounds):
        P = np.vstack([A[ia], -B[ib]])
        z = _pair_fista(P @ P.T, len(ia), np.r_[za, zb], tol_abs, rtol, max_iter)
        za, zb = z[: len(ia)], z[len(ia):]
        v = za @ A[ia] - zb @ B[ib]
        f = float(v @ v)
        pa, pb = A @ v, B @ v
        # Frank-Wolfe gap of the whole problem: 2 (|v|^2 - min_A a.v + max_B b.v)
        gap = 2.0 * (f - float(pa.min()) + float(pb.max()))
        if gap <= tol_abs + rtol * f:
            return f, v, True
        add_a = np.setdiff1d(np.flatnonzero(pa < float(pa[ia].min())), ia)
        add_b = np.setdiff1d(np.flatnonzero(pb > float(pb[ib].max())), ib)
        if len(add_a) == 0 and len(add_b) == 0:  # the working set's own FISTA stopped at max_iter
            return f, v, False
        add_a = add_a[np.argsort(pa[add_a], kind="stable")[:working_set]]
        add_b = add_b[np.argsort(-pb[add_b], kind="stable")[:working_set]]
        za = np.r_[za, np.zeros(len(add_a))]
        zb = np.r_[zb, np.zeros(len(add_b))]
        ia, ib = np.r_[ia, add_a], np.r_[ib, add_b]
    return f, v, False


def hull_hull_distance(A: np.ndarray, B: np.ndarray, tol: float = 1e-9, rtol: float = 1e-3,
                       max_iter: int = 3000, working_set: int = 64) -> float:
    """Euclidean distance between conv(A) and conv(B): min ||a A - b B|| over two simplices, to a Frank-Wolfe
    gap (a bound on the squared distance's error) below `tol` times the squared scale of the data plus
    `rtol` times the squared distance. First by non-negative least squares (`_nnls_closest`, which almost
    always meets the bound), else by FISTA on a working set of points (`_closest_points`)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if len(A) == 1 and len(B) == 1:
        return float(np.linalg.norm(A[0] - B[0]))
    center = 0.5 * (A.mean(0) + B.mean(0))
    A, B = A - center, B - center
    scale2 = max(float(np.einsum("ij,ij->i", A, A).max()), float(np.einsum("ij,ij->i", B, B).max()), 1e-12)
    ab = _nnls_closest(A, B)  # exact up to the weighting of the simplex rows; its gap says if that is enough
    if ab is not None:
        v = ab[0] @ A - ab[1] @ B
        f = float(v @ v)
        gap = 2.0 * (f - float((A @ v).min()) + float((B @ v).max()))  # Frank-Wolfe gap of the whole problem
        if gap <= tol * scale2 + rtol * f:
            return float(np.sqrt(max(f, 0.0)))
    f, _, _ = _closest_points(A, B, tol * scale2, rtol, max_iter, working_set, max_rounds=10_000)
    return float(np.sqrt(max(f, 0.0)))


def _distance_direction(A, B, max_iter: int = 100, working_set: int = 32, max_rounds: int = 8):
    """A direction that may certify separability: the difference of the two hulls' closest points (the
    hard-margin SVM's normal), solved only until the gap is below the squared distance (then the direction
    separates with half the distance to spare), or None after the iteration budget."""
    center = 0.5 * (A.mean(0) + B.mean(0))
    f, v, ok = _closest_points(A - center, B - center, 0.0, 0.5, max_iter, working_set, max_rounds)
    return v if ok and f > 0 else None
