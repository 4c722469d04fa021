#!/usr/bin/env python
"""Export the checkpoints that ship with the package from a finished `scripts/reproduce.py` run.

    python scripts/ship_pretrained.py --run_dir runs/cpu --preset cpu --output_dir pretrained

Writes `OUTPUT_DIR/<name>/` for each of (by default):

* `<variant>-mlm`: the MLM-pretrained encoder of each variant of the run (`RUN_DIR/pretrain/<variant>`),
  with a slice of the plain retrieval test split's code (masked-token accuracy and loss);
* `s4d-hf-codesearch`: the `s4d-hf` model fine-tuned for AdvTest-style code search with the run's first seed
  (`RUN_DIR/finetune/advtest/s4d-hf`), with a slice of the obfuscated (AdvTest-style) test split (MRR, R@1).

Each folder is made by `mambacode.pretrained.export_pretrained` (float16 weights where they leave the slice
metrics unchanged to the card's precision, the card, `shipped.json`, checksums); the whole set must stay
under `--max_total_mb` (100 MB, the repository's budget for weights). The card records this command and the
run's. Every folder is replaced atomically; a missing stage is named and the exit status is 2.

    python scripts/ship_pretrained.py --refresh [--output_dir pretrained]

re-renders the card and tidies the tokenizer files of every folder already shipped under `--output_dir`
(`mambacode.pretrained.refresh_shipped_folder`), without the run and without touching a weight file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

RETRIEVAL_SLICE, MLM_SLICE = 256, 128  # first rows of the test split shipped with each model


def _results(folder: str) -> dict:
    path = os.path.join(folder, "all_results.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def _first_rows(path: str, split: str, n: int, columns: tuple) -> list[dict]:
    import datasets

    ds = datasets.load_from_disk(path)[split]
    return [{c: row[c] for c in columns} for row in ds.select(range(min(n, len(ds))))]


def plan(run_dir: str, variants: list[str], retrieval_variant: str) -> list[tuple[str, str, str]]:
    """(name, task, source folder) of every checkpoint to ship, in order."""
    items = [(f"{v}-mlm", "mlm", os.path.join(run_dir, "pretrain", v)) for v in variants]
    if retrieval_variant:
        items.append((f"{retrieval_variant}-codesearch", "retrieval",
                      os.path.join(run_dir, "finetune", "advtest", retrieval_variant)))
    return items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run_dir", help="a finished reproduce.py output folder")
    ap.add_argument("--refresh", action="store_true",
                    help="only re-render the cards and tidy the tokenizers of the folders shipped in --output_dir")
    ap.add_argument("--preset", default="cpu", help="the run's preset (its lengths are the evaluation's)")
    ap.add_argument("--output_dir", default=os.path.join(ROOT, "pretrained"))
    ap.add_argument("--variants", default="s4d,s4d-hf,rocoder", help="MLM encoders to ship")
    ap.add_argument("--retrieval_variant", default="s4d-hf",
                    help="the MambaCode variant whose code-search model ships ('' for none)")
    ap.add_argument("--max_total_mb", type=float, default=100.0)
    ap.add_argument("--no_half", action="store_true", help="keep float32 weights")
    args = ap.parse_args(argv)

    from mambacode.pretrained import SHIPPED_FILE, export_pretrained, folder_megabytes, refresh_shipped_folder

    if args.refresh:
        names = sorted(n for n in os.listdir(args.output_dir)
                       if os.path.isfile(os.path.join(args.output_dir, n, SHIPPED_FILE)))
        for name in names:
            changed = refresh_shipped_folder(os.path.join(args.output_dir, name))
            print(f"{name}: {', '.join(changed) if changed else 'unchanged'}")
        return 0
    if not args.run_dir:
        ap.error("--run_dir is required (unless --refresh)")
    from reproduce import PRESETS

    if args.preset not in PRESETS:
        ap.error(f"--preset: unknown {args.preset!r}; choose from {list(PRESETS)}")
    preset = PRESETS[args.preset]
    run_dir, corpus = os.path.abspath(args.run_dir), os.path.join(os.path.abspath(args.run_dir), "corpus")
    items = plan(run_dir, [v.strip() for v in args.variants.split(",") if v.strip()], args.retrieval_variant)
    missing = [src for _, _, src in items if not os.path.exists(os.path.join(src, ".done"))]
    missing += [p for p in (os.path.join(corpus, "retrieval"), os.path.join(corpus, "retrieval_adv"))
                if not os.path.isdir(p)]
    if missing:
        print(f"error: {run_dir} has no finished stage at: {', '.join(missing)}", file=sys.stderr)
        return 2
    run_command = f"python scripts/reproduce.py --preset {args.preset} --output_dir {args.run_dir}"
    ship_command = shlex.join(["python", "scripts/ship_pretrained.py", *(argv if argv is not None else sys.argv[1:])])
    written = []
    shipped_names = {name for name, _, _ in items}
    for name, task, source in items:
        base_model = None
        if task == "retrieval":
            rows = _first_rows(os.path.join(corpus, "retrieval_adv"), "test", RETRIEVAL_SLICE, ("query", "code"))
            res = _results(source)
            metrics = {**{f"advtest_{k[len('retrieval_adv_'):]}": v for k, v in res.items()
                          if k.startswith("retrieval_adv_") and "num_" not in k and "pool" not in k},
                       **{f"plain_{k[len('test_'):]}": v for k, v in res.items()
                          if k.startswith("test_") and "num_" not in k and "pool" not in k}}
            description = (f"A {name.split('-codesearch')[0]} encoder fine-tuned for natural-language code search "
                           "(InfoNCE, in-batch negatives) from its MLM-pretrained encoder; the slice is the "
                           "obfuscated (AdvTest-style) test pool: identifiers renamed, so words must come from "
                           "the code's structure and library calls.")
            with open(os.path.join(source, "config.json")) as fh:
                fusion = json.load(fh).get("hybrid_fusion")
            if fusion:
                description += (f" Its config carries the hybrid's fusion, chosen on the validation pool (dense weight "
                                f"{fusion['dense_weight']:g} against BM25's 1, k = {fusion['k']}), which "
                                "`mambacode search --mode hybrid` uses.")
            kw = dict(max_query_length=preset.query_len, max_code_length=preset.code_len)
            encoder = f"{name.split('-codesearch')[0]}-mlm"  # the MLM encoder it was fine-tuned from, if shipped
            if encoder in shipped_names or os.path.isfile(os.path.join(args.output_dir, encoder, SHIPPED_FILE)):
                base_model = encoder
        else:
            rows = _first_rows(os.path.join(corpus, "retrieval"), "test", MLM_SLICE, ("code",))
            metrics = {k: v for k, v in _results(source).items() if k in ("eval_loss", "perplexity")}
            description = (f"The {name[:-4]} encoder pretrained with masked language modelling on the MambaCode "
                           "corpus; the slice is code of the package-disjoint test split.")
            kw = dict(max_length=preset.mlm_seq, test_metrics_caption=(
                "MLM loss and perplexity of the run that trained it, on the first 200 texts of the validation split "
                f"in {preset.mlm_seq}-token blocks (its own final evaluation):"))
        target = os.path.join(args.output_dir, name)
        info = export_pretrained(source, target, task=task, slice_rows=rows, commands=[run_command, ship_command],
                                 test_metrics=metrics, description=description, half=not args.no_half,
                                 base_model=base_model, **kw)
        written.append(target)
        size = folder_megabytes(target)
        print(f"{name}: {info['weights_dtype']} weights, slice {info['slice_metrics']}, {size:.1f} MB", flush=True)
    total = sum(folder_megabytes(f) for f in written)
    print(f"total {total:.1f} MB in {len(written)} folders")
    if total > args.max_total_mb:
        print(f"error: the shipped folders take {total:.1f} MB, over --max_total_mb {args.max_total_mb:g}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
