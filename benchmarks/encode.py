#!/usr/bin/env python
"""Encoding speed on CPU: the distilled student against its teacher (all-MiniLM-L6-v2 through
sentence-transformers), on the same real texts, in one run.

Three settings (JSON keys):
- `256`: functions of the corpus' retrieval test split with at least 256 tokens, each cut to its first 256
  tokens for both models (the teacher's own limit);
- `4096` ("long"): long-context test documents (whole modules or classes). The student reads each in one pass
  (up to 4,096 of its tokens); the teacher reads the same document as consecutive 256-word-piece chunks (its
  `Teacher.windows`, decoded back to text and encoded by sentence-transformers), i.e. the chunking its
  long-text rule needs;
- `exact_4096`: texts of exactly 4,096 student tokens (special tokens included): the distinct long-context
  test documents joined by blank lines and cut into consecutive spans of 4,094 tokens (by the tokenizer's
  character offsets, so each text is a slice of the real documents). The teacher reads each text as in `4096`.

Each model runs in float32 and under CPU bfloat16 autocast; the student's batches hold up to `--max_tokens`
padded tokens (`encode(max_tokens=...)`), the teacher's `--batch_size` texts (its chunks are 256 pieces).
Reported: texts/s (the same texts for both models, so this ratio is the like-for-like one), each model's tokens/s
in its own tokens, the student / teacher ratio per precision, and each model at its fastest precision
(`best_vs_best`). Times: the best of `--repeats` passes (medians kept as `*_seconds_median`), student and
teacher passes alternating after one warm-up pass each, so both see the same load. Threads: `--threads` (2), with the
OpenMP wait policy PASSIVE for both models (`mambacode.threads`: spinning threads lose scheduler slices beside
other work). Prints a table and writes benchmarks/results/encode.json.
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
    ap.add_argument("--texts_exact_4096", type=int, default=16)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_tokens", type=int, default=4096, help="the student's padded tokens per batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default=os.path.join(HERE, "results", "encode.json"))
    return ap.parse_args(argv)


def timed_pair(first, second, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of `repeats` passes of each function, the two alternating (after one warm-up pass each), so that
    both see the same load on a shared machine."""
    first(), second()  # warm-up
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((first, second), times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def exact_length_texts(tokenizer, documents: list[str], pieces: int, count: int) -> list[str]:
    """Up to `count` consecutive slices of `documents` joined by blank lines, each a text of `pieces` tokens
    (without special tokens): cut at the tokenizer's character offsets of every `pieces`-th token, widened a
    token at a time where re-tokenizing the slice alone gives fewer (a cut through a word), then cut at the end
    of its own `pieces`-th token where it gives more."""
    text = "\n\n".join(documents)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    offsets = enc["offset_mapping"]
    texts, start = [], 0
    while len(texts) < count and start + pieces <= len(offsets):
        end = start + pieces
        while end <= len(offsets):
            piece = text[offsets[start][0]:offsets[end - 1][1]]
            if len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"]) >= pieces:
                break
            end += 1
        if end > len(offsets):  # the text ran out
            break
        # cut the slice at its own `pieces`-th token: a prefix ending at a token's end re-tokenizes to those tokens
        own = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
        texts.append(piece[:own[pieces - 1][1]])
        start = end
    return texts


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads
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
    long_context = datasets.load_from_disk(os.path.join(args.corpus_dir, "long_context"))["test"]
    all_docs = list(dict.fromkeys(long_context["code"]))
    limit = min(4096, student.config.max_position_embeddings)
    docs = [stok.decode(stok(d, add_special_tokens=False)["input_ids"][:limit - 2]) for d in all_docs[:args.texts_4096]]
    chunks = [ttok.decode(w[1:-1]) for d in docs for w in teacher.windows(d)]
    exact = exact_length_texts(stok, all_docs, limit - 2, args.texts_exact_4096)
    exact_chunks = [ttok.decode(w[1:-1]) for d in exact for w in teacher.windows(d)]

    rows, out = [], {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                                 "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                                 "load_average_before": os.getloadavg()},
                     "student": args.student, "student_max_tokens": args.max_tokens, "settings": {}}
    settings = (("256", short, short), ("4096", docs, chunks), ("exact_4096", exact, exact_chunks))
    for setting, texts, teacher_texts in settings:
        s_tokens = sum(min(len(stok(t)["input_ids"]), limit) for t in texts)
        t_tokens = sum(min(len(ttok(t)["input_ids"]), 256) for t in teacher_texts)
        res = {"texts": len(texts), "teacher_inputs": len(teacher_texts), "student_tokens": s_tokens,
               "teacher_tokens": t_tokens}
        for precision in ("float32", "bf16"):
            auto = precision == "bf16"

            def run_student():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto):
                    student.encode(texts, stok, batch_size=args.batch_size, max_length=limit,
                                   max_tokens=args.max_tokens, show_progress_bar=False)

            def run_teacher():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto):
                    st.encode(teacher_texts, batch_size=args.batch_size, show_progress_bar=False)

            s_times, t_times = timed_pair(run_student, run_teacher, args.repeats)
            s_sec, t_sec = min(s_times), min(t_times)
            res[precision] = {"student_seconds": s_sec, "teacher_seconds": t_sec,
                              "student_seconds_median": statistics.median(s_times),
                              "teacher_seconds_median": statistics.median(t_times),
                              "student_texts_per_s": len(texts) / s_sec, "teacher_texts_per_s": len(texts) / t_sec,
                              "student_tokens_per_s": s_tokens / s_sec, "teacher_tokens_per_s": t_tokens / t_sec,
                              "speedup_texts": t_sec / s_sec}
            rows.append([setting, precision, len(texts), f"{len(texts) / t_sec:.2f}", f"{len(texts) / s_sec:.2f}",
                         f"{t_tokens / t_sec:.0f}", f"{s_tokens / s_sec:.0f}", f"{t_sec / s_sec:.2f}x"])
        out["settings"][setting] = res
    out["machine"]["load_average_after"] = os.getloadavg()
    print(markdown_table(["setting", "precision", "texts", "teacher texts/s", "student texts/s", "teacher tokens/s",
                          "student tokens/s", "student / teacher"], rows))
    best, fastest, best_rows = {}, {}, []
    for name, res in out["settings"].items():
        s_prec = max(("float32", "bf16"), key=lambda p: res[p]["student_texts_per_s"])
        t_prec = max(("float32", "bf16"), key=lambda p: res[p]["teacher_texts_per_s"])
        s_rate, t_rate = res[s_prec]["student_texts_per_s"], res[t_prec]["teacher_texts_per_s"]
        best[name] = s_rate / t_rate
        fastest[name] = {"student_precision": s_prec, "teacher_precision": t_prec, "student_texts_per_s": s_rate,
                         "teacher_texts_per_s": t_rate,
                         "student_mean_tokens": res["student_tokens"] / res["texts"]}
        best_rows.append([name, res["texts"], f"{res['student_tokens'] / res['texts']:.0f}",
                          f"{t_rate:.2f} ({t_prec})", f"{s_rate:.2f} ({s_prec})", f"{s_rate / t_rate:.2f}x"])
    out["best_vs_best"] = best
    out["fastest"] = fastest
    print()
    print(markdown_table(["setting", "texts", "student tokens/text", "teacher texts/s (fastest)",
                          "student texts/s (fastest)", "student / teacher"], best_rows))
    print("load average before / after:", out["machine"]["load_average_before"], out["machine"]["load_average_after"])
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    atomic_write_text(args.output, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
