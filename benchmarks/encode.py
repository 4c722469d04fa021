#!/usr/bin/env python
"""Encoding speed on CPU: the distilled student against its teacher (all-MiniLM-L6-v2 through
sentence-transformers), on the same real texts, in one run.

Two settings:
- `256`: functions of the corpus' retrieval test split with at least 256 tokens, each cut to its first 256
  tokens for both models (the teacher's own limit);
- `4096`: long-context test documents (whole modules or classes). The student reads each in one pass (up to
  4,096 of its tokens); the teacher reads the same document as consecutive 256-word-piece chunks (its
  `Teacher.windows`, decoded back to text and encoded by sentence-transformers), i.e. the chunking its
  long-text rule needs.

Each model runs in float32 and under CPU bfloat16 autocast. Reported: texts/s (the same texts for both models,
so this ratio is the like-for-like one), each model's tokens/s in its own tokens, and the student / teacher
ratio per precision. Median of `--repeats` timed passes after one warm-up pass. Threads: `--threads` (2).
Prints a table and writes benchmarks/results/encode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", required=True, help="a MambaCode retrieval folder (the distilled student)")
    ap.add_argument("--corpus_dir", required=True)
    ap.add_argument("--texts_256", type=int, default=256)
    ap.add_argument("--texts_4096", type=int, default=24)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default=os.path.join(HERE, "results", "encode.json"))
    return ap.parse_args(argv)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import datasets
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from mambacode.atomic import atomic_write_text
    from mambacode.distill.teacher import Teacher
    from mambacode.tables import markdown_table

    torch.set_num_threads(args.threads)
    student = AutoModel.from_pretrained(args.student).eval()
    stok = AutoTokenizer.from_pretrained(args.student)
    teacher = Teacher()
    st = SentenceTransformer(teacher.path, device="cpu")
    ttok = teacher.tokenizer

    codes = datasets.load_from_disk(os.path.join(args.corpus_dir, "retrieval"))["test"]["code"]
    short = []
    for c in codes:  # functions long enough for both tokenizers, cut to 256 student tokens
        ids = stok(c, add_special_tokens=False)["input_ids"]
        if len(ids) >= 256 and len(ttok(c, add_special_tokens=False)["input_ids"]) >= 256:
            short.append(stok.decode(ids[:254]))
        if len(short) == args.texts_256:
            break
    docs = list(dict.fromkeys(datasets.load_from_disk(os.path.join(args.corpus_dir, "long_context"))["test"]["code"]))
    docs = docs[:args.texts_4096]
    limit = min(4096, student.config.max_position_embeddings)
    docs = [stok.decode(stok(d, add_special_tokens=False)["input_ids"][:limit - 2]) for d in docs]
    chunks = [ttok.decode(w[1:-1]) for d in docs for w in teacher.windows(d)]

    rows, out = [], {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                                 "threads": args.threads, "load_average_before": os.getloadavg()},
                     "student": args.student, "settings": {}}
    for setting, texts, teacher_texts in (("256", short, short), ("4096", docs, chunks)):
        s_tokens = sum(min(len(stok(t)["input_ids"]), limit) for t in texts)
        t_tokens = sum(min(len(ttok(t)["input_ids"]), 256) for t in teacher_texts)
        res = {"texts": len(texts), "teacher_inputs": len(teacher_texts), "student_tokens": s_tokens,
               "teacher_tokens": t_tokens}
        for precision in ("float32", "bf16"):
            auto = precision == "bf16"

            def run_student():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto):
                    student.encode(texts, stok, batch_size=args.batch_size if setting == "256" else 4,
                                   max_length=limit, show_progress_bar=False)

            def run_teacher():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto):
                    st.encode(teacher_texts, batch_size=args.batch_size, show_progress_bar=False)

            s_sec, t_sec = timed(run_student, args.repeats), timed(run_teacher, args.repeats)
            res[precision] = {"student_seconds": s_sec, "teacher_seconds": t_sec,
                              "student_texts_per_s": len(texts) / s_sec, "teacher_texts_per_s": len(texts) / t_sec,
                              "student_tokens_per_s": s_tokens / s_sec, "teacher_tokens_per_s": t_tokens / t_sec,
                              "speedup_texts": t_sec / s_sec}
            rows.append([setting, precision, len(texts), f"{len(texts) / t_sec:.2f}", f"{len(texts) / s_sec:.2f}",
                         f"{t_tokens / t_sec:.0f}", f"{s_tokens / s_sec:.0f}", f"{t_sec / s_sec:.2f}x"])
        out["settings"][setting] = res
    out["machine"]["load_average_after"] = os.getloadavg()
    print(markdown_table(["setting", "precision", "texts", "teacher texts/s", "student texts/s", "teacher tokens/s",
                          "student tokens/s", "student / teacher"], rows))
    best = {s: max(out["settings"][s][p]["student_texts_per_s"] for p in ("float32", "bf16")) /
            max(out["settings"][s][p]["teacher_texts_per_s"] for p in ("float32", "bf16")) for s in ("256", "4096")}
    out["best_vs_best"] = best
    print("fastest student / fastest teacher (texts/s):", {k: f"{v:.2f}x" for k, v in best.items()})
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    atomic_write_text(args.output, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
