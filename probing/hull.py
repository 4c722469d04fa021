"""Convex-hull geometry for DirectProbe: exact separability and Euclidean hull distances.

Separability of two point sets (do their convex hulls intersect?) is decided in three steps, cheapest
first; any hyperplane that strictly separates every point is an exact certificate, so only the last step
ever has to *prove* overlap:
1. the direction between the two centroids (one dot product per point);
2. (modes "fast"/"svm" only) a hard-margin linear SVM (`LinearSVC`, large C);
3. the separating-hyperplane LP (scipy `linprog`, HiGHS) by constraint generation: solved on the points
   nearest the other set, adding violated points until none is left (feasible = separable) or the subset
   LP is infeasible (a subset overlaps, so the sets do); with fewer points than dimensions the LP is written
   in the span of the points (one variable per point).
Distances (point to hull, hull to hull) are QPs over simplices, solved by accelerated projected gradient
(FISTA) in batches, stopped by the Frank-Wolfe duality gap, which bounds the error of the objective.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

_SVM_C = 1e4


@dataclass
class SeparabilityStats:
    """How each separability question was settled (the cheap paths should answer almost all)."""

    centroid: int = 0
    svm: int = 0
    lp_separable: int = 0
    lp_overlap: int = 0
    lp_failed: int = 0
    trivial: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self):
        return {"centroid": self.centroid, "svm": self.svm, "lp_separable": self.lp_separable,
                "lp_overlap": self.lp_overlap, "lp_failed": self.lp_failed, "trivial": self.trivial}


def _strictly_separates(w, b, A, B) -> bool:
    """True if w.a + b > 0 > w.x + b for all a in A, x in B, with a margin above float64 round-off."""
    sa, sb = A @ w + b, B @ w + b
    scale = np.abs(w).sum() * max(np.abs(A).max(initial=0.0), np.abs(B).max(initial=0.0)) + abs(b) + 1e-300
    eps = 1e-9 * scale
    return bool(sa.min() > eps and sb.max() < -eps)


def _centroid_check(A, B) -> bool:
    w = A.mean(0) - B.mean(0)
    if not np.any(w):
        return False
    pa, pb = A @ w, B @ w
    if pa.min() <= pb.max():
        return False
    b = -0.5 * (pa.min() + pb.max())
    return _strictly_separates(w, b, A, B)


def _svm_check(A, B, max_iter=2000) -> bool:
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
    b = float(clf.intercept_[0]) - float(mu @ w)
    return _strictly_separates(w, b, A, B)


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
        res = linprog(np.zeros(A_ub.shape[1]), A_ub=A_ub, b_ub=-np.ones(len(Z)), bounds=(None, None),
                      method="highs")
        status = res.status
        if status == 0:
            w = Z.T @ res.x[:-1] if form == "span" else res.x[:-1]
            return 0, w, res.x[-1]
        if status == 2:
            return 2, None, None
    return status, None, None


def _lp_check(A, B, init: int = 256, add: int = 256, max_rounds: int = 40):
    """Exact separability by the separating-hyperplane LP (HiGHS), solved by constraint generation.

    Start from the points of each set nearest the other set; solve the LP on that subset; add the points the
    hyperplane violates; repeat. Infeasible on a subset = the hulls overlap (a subset's hull lies inside);
    feasible with no violator left = separable. Returns True, False, or None if the solver failed.
    """
    X = np.vstack([A, B])
    sign = np.r_[np.ones(len(A)), -np.ones(len(B))]
    Xc = X - X.mean(0)
    Xc = Xc / (np.abs(Xc).max() or 1.0)
    direction = Xc[: len(A)].mean(0) - Xc[len(A):].mean(0)
    proj = Xc @ direction * sign  # small = deep on the other side
    ia = np.argsort(proj[: len(A)])[:init]
    ib = len(A) + np.argsort(proj[len(A):])[:init]
    S = np.unique(np.r_[ia, ib])
    for _ in range(max_rounds):
        status, w, b = _solve_hyperplane_lp(Xc[S], sign[S])
        if status == 2:
            return False
        if status != 0:
            return None
        margins = sign * (Xc @ w + b)
        # any strictly separating hyperplane is a certificate: only points on the wrong side (or too close
        # to the plane for float64 to be sure) must join the LP
        bad = np.flatnonzero(margins <= 1e-6)
        bad = bad[~np.isin(bad, S)]
        if len(bad) == 0:
            return bool(margins.min() > 1e-6)
        S = np.union1d(S, bad[np.argsort(margins[bad])[:add]])
    status, w, b = _solve_hyperplane_lp(Xc, sign)  # did not settle: the whole LP
    return True if status == 0 else (False if status == 2 else None)


def separable(A: np.ndarray, B: np.ndarray, stats: SeparabilityStats | None = None, mode: str = "exact",
              lp_first_max: int = 400) -> bool:
    """Whether conv(A) and conv(B) are disjoint (strict linear separability of the two point sets).

    mode "exact": centroid direction, then the constraint-generation LP (its first rounds are small and
    cheaper than an SVM fit, and it settles both answers);
    "fast": centroid direction, the LP for small problems (n <= `lp_first_max`), the SVM otherwise (an SVM
    failure then counts as overlap);
    "svm": centroid direction and SVM only (the original DirectProbe's approximation).
    """
    if mode not in ("exact", "fast", "svm"):
        raise ValueError(f"mode must be 'exact', 'fast' or 'svm', got {mode!r}")
    stats = stats if stats is not None else SeparabilityStats()
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if len(A) == 0 or len(B) == 0:
        stats.trivial += 1
        return True
    if len(A) == 1 and len(B) == 1:
        stats.trivial += 1
        return bool(np.any(A[0] != B[0]))
    if _centroid_check(A, B):
        stats.centroid += 1
        return True
    if mode == "svm" or (mode == "fast" and len(A) + len(B) > lp_first_max):
        if _svm_check(A, B):
            stats.svm += 1
            return True
        if mode != "exact":
            return False
    out = _lp_check(A, B)
    if out is None:
        stats.lp_failed += 1
        return False
    if out:
        stats.lp_separable += 1
    else:
        stats.lp_overlap += 1
    return out


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


def point_hull_distances(points: np.ndarray, hull: np.ndarray, tol: float = 1e-6, rtol: float = 1e-3,
                         max_iter: int = 1000,
                         batch: int = 4096) -> np.ndarray:
    """Euclidean distance from each row of `points` to conv(rows of `hull`), solved for all points at once.

    min_a ||a H - x||^2 over the simplex; FISTA from the nearest vertex, stopped when the Frank-Wolfe
    gap (an upper bound on the objective's error) is below `tol` times the squared scale of the data.
    """
    P = np.asarray(points, dtype=np.float64)
    H = np.asarray(hull, dtype=np.float64)
    if len(H) == 1:
        return np.linalg.norm(P - H[0], axis=1)
    out = np.empty(len(P))
    center = H.mean(0)
    H = H - center
    P = P - center
    G = H @ H.T
    L = _lipschitz(G)
    hn = np.diag(G)
    for s in range(0, len(P), batch):
        X = P[s: s + batch]
        XH = X @ H.T  # (t, m)
        xn = np.einsum("ij,ij->i", X, X)
        d2 = xn[:, None] - 2 * XH + hn[None, :]
        alpha = np.zeros_like(XH)
        alpha[np.arange(len(X)), d2.argmin(1)] = 1.0
        scale2 = max(float(hn.max()), 1e-12)
        y, t = alpha.copy(), np.ones(len(X))
        active = np.arange(len(X))  # rows whose duality gap is still above tolerance
        for it in range(max_iter):
            ya, aa, xh = y[active], alpha[active], XH[active]
            new = project_rows_to_simplex(ya - 2.0 * (ya @ G - xh) / L)
            ta = t[active]
            t_new = 0.5 * (1 + np.sqrt(1 + 4 * ta * ta))
            y[active] = new + ((ta - 1) / t_new)[:, None] * (new - aa)
            alpha[active], t[active] = new, t_new
            if it % 5 == 4 or it == max_iter - 1:
                g = 2.0 * (new @ G - xh)
                gap = np.einsum("ij,ij->i", g, new) - g.min(1)
                f = np.einsum("ij,ij->i", new @ G, new) - 2 * np.einsum("ij,ij->i", new, xh) + xn[active]
                active = active[gap > tol * scale2 + rtol * np.maximum(f, 0.0)]
                if len(active) == 0:
                    break
        f = np.einsum("ij,ij->i", alpha @ G, alpha) - 2 * np.einsum("ij,ij->i", alpha, XH) + xn
        out[s: s + batch] = np.sqrt(np.maximum(f, 0.0))
    return out


def hull_hull_distance(A: np.ndarray, B: np.ndarray, tol: float = 1e-9, rtol: float = 1e-3,
                       max_iter: int = 3000) -> float:
    """Euclidean distance between conv(A) and conv(B): min ||a A - b B|| over two simplices (FISTA)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if len(A) == 1:
        return float(point_hull_distances(A, B)[0])
    if len(B) == 1:
        return float(point_hull_distances(B, A)[0])
    center = 0.5 * (A.mean(0) + B.mean(0))
    A, B = A - center, B - center
    P = np.vstack([A, -B])
    G = P @ P.T
    L = _lipschitz(G)
    na = len(A)
    # start from the closest pair of vertices
    d2 = (A * A).sum(1)[:, None] - 2 * A @ B.T + (B * B).sum(1)[None, :]
    i, j = np.unravel_index(np.argmin(d2), d2.shape)
    z = np.zeros(len(P))
    z[i] = 1.0
    z[na + j] = 1.0
    scale2 = max(float(np.diag(G).max()), 1e-12)
    y, t = z.copy(), 1.0
    for _ in range(max_iter):
        v = y - (2.0 * (G @ y)) / L
        new = np.concatenate([project_rows_to_simplex(v[None, :na])[0], project_rows_to_simplex(v[None, na:])[0]])
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = new + ((t - 1) / t_new) * (new - z)
        z, t = new, t_new
        g = 2.0 * (G @ z)
        gap = g @ z - g[:na].min() - g[na:].min()
        if gap <= tol * scale2 + rtol * (0.5 * g @ z):
            break
    return float(np.sqrt(max(z @ G @ z, 0.0)))
