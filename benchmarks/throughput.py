"""Training throughput and peak memory: MambaCode (s4d, mamba2, each +/- hf_conv) vs BERT and RoFormer.

Every model is built at (about) the same parameter count as BERT (checked within 5%), trained for a few
forward+backward+AdamW steps on random tokens at a fixed number of tokens per step. Each (model, length)
runs in its own subprocess so that peak memory is that run's own high-water mark:
CPU: ru_maxrss during the timed steps minus the resident size before the first step (activations, gradients
and optimizer state); CUDA: torch.cuda.max_memory_allocated.

    python benchmarks/throughput.py                      # CPU, lengths 256 1024 4096 8192
    python benchmarks/throughput.py --lengths 1024 4096 --models bert-sdpa s4d
Prints a table with ratios to BERT and writes benchmarks/results/throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from mambacode.tables import markdown_table

MODELS = ["bert-sdpa", "bert-eager", "roformer", "s4d", "s4d-hf", "s4d-ckpt", "mamba2", "mamba2-hf"]


def peer_configs(width: int, depth: int, inner: int, heads: int, vocab: int, max_len: int):
    from transformers import BertConfig, RoFormerConfig

    common = dict(vocab_size=vocab, hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                  intermediate_size=inner, max_position_embeddings=max_len, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    return BertConfig(**common), RoFormerConfig(**common)


def build(name: str, args):
    """The model for `name`, parameter-matched to BERT at the benchmark's size."""
    import torch
    from transformers import BertModel, RoFormerModel

    from mambacode import MambaCodeConfig, MambaCodeModel, count_parameters

    bert_cfg, roformer_cfg = peer_configs(args.width, args.depth, args.inner, args.heads, args.vocab, args.max_len)
    if name.startswith("bert"):
        bert_cfg._attn_implementation = "sdpa" if name == "bert-sdpa" else "eager"
        return BertModel(bert_cfg, add_pooling_layer=False)
    with torch.device("meta"):
        target = sum(p.numel() for p in BertModel(bert_cfg, add_pooling_layer=False).parameters())
    if name == "roformer":
        # no absolute position table: a wider feed-forward brings it to BERT's size
        def count(inner):
            roformer_cfg.intermediate_size = inner
            with torch.device("meta"):
                return sum(p.numel() for p in RoFormerModel(roformer_cfg).parameters())
        roformer_cfg.intermediate_size = min(range(64, 8 * args.inner + 1, 64), key=lambda i: abs(count(i) - target))
        return RoFormerModel(roformer_cfg)
    mixer = name.split("-")[0]  # "-ckpt": the same model trained with gradient checkpointing
    base = MambaCodeConfig(vocab_size=args.vocab, hidden_size=args.width, num_hidden_layers=args.depth,
                           intermediate_size=args.inner, max_position_embeddings=args.max_len, mixer=mixer,
                           hf_conv=name.endswith("-hf"), mamba_head_dim=64, state_size=64,
                           mamba_chunk_size=args.chunk)
    # depth is kept equal to BERT's; intermediate_size (multiple of 64) absorbs the difference
    best = min((MambaCodeConfig(**{**base.to_dict(), "intermediate_size": i})
                for i in range(64, 8 * args.inner + 1, 64)),
               key=lambda c: abs(count_parameters(c) - target))
    model = MambaCodeModel(best)
    if name.endswith("-ckpt"):
        model.gradient_checkpointing_enable()
    return model


def run_one(name: str, length: int, args) -> dict:
    """One (model, length) measurement, in this process."""
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build(name, args).to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    batch = max(1, args.tokens_per_step // length)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, args.vocab, (batch, length), device=device)
    mask = torch.ones_like(ids)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def step():
        with autocast:
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            loss = out.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (allocates optimizer state)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_now_kib()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = max(0.0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024)
    return {"model": name, "length": length, "batch": batch, "params": n_params,
            "tokens_per_s": batch * length * args.steps / elapsed, "peak_mib": peak,
            "seconds_per_step": elapsed / args.steps}


def _rss_now_kib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 4096, 8192])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--inner", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--max_len", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--tokens_per_step", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per (model, length) run")
    parser.add_argument("--output", default=None)
    parser.add_argument("--_child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args._child:
        print(json.dumps(run_one(args._child[0], int(args._child[1]), args)))
        return
    results = []
    passthrough = [a for a in sys.argv[1:]]
    for length in args.lengths:
        for name in args.models:
            cmd = [sys.executable, __file__, *passthrough, "--device", args.device, "--_child", name, str(length)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                if proc.returncode == 0:
                    rec = json.loads(proc.stdout.strip().splitlines()[-1])
                else:
                    rec = {"model": name, "length": length, "error": proc.stderr.strip().splitlines()[-1][:200]
                           if proc.stderr.strip() else f"exit {proc.returncode}"}
            except subprocess.TimeoutExpired:
                rec = {"model": name, "length": length, "error": f"timeout after {args.timeout}s"}
            results.append(rec)
            print(_row(rec), flush=True)
    by_key = {(r["model"], r["length"]): r for r in results}
    for r in results:
        ref = by_key.get(("bert-sdpa", r["length"])) or by_key.get(("bert-eager", r["length"]))
        ref_e = by_key.get(("bert-eager", r["length"]))
        for tag, base in (("vs_bert_sdpa", ref), ("vs_bert_eager", ref_e)):
            if base and "error" not in base and "error" not in r:
                r[f"speed_{tag}"] = r["tokens_per_s"] / base["tokens_per_s"]
                r[f"memory_{tag}"] = r["peak_mib"] / base["peak_mib"] if base["peak_mib"] > 0 else None
    print("\n" + table(results, args))
    out = Path(args.output or Path(__file__).parent / "results" / f"throughput_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                               "results": results}, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


def _row(r):
    if "error" in r:
        return f"{r['model']:>11} L={r['length']:<5} ERROR {r['error']}"
    return (f"{r['model']:>11} L={r['length']:<5} B={r['batch']:<3} params={r['params'] / 1e6:6.2f}M "
            f"{r['tokens_per_s']:9.0f} tok/s  peak {r['peak_mib']:8.0f} MiB")


def table(results, args) -> str:
    fmt = lambda v: "–" if v is None else f"{v:.2f}x"
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["model"], "", r["length"], r["error"], "", "", "", "", ""])
            continue
        rows.append([r["model"], f"{r['params'] / 1e6:.2f}M", r["length"], f"{r['tokens_per_s']:.0f}",
                     f"{r['peak_mib']:.0f}", fmt(r.get("speed_vs_bert_sdpa")), fmt(r.get("memory_vs_bert_sdpa")),
                     fmt(r.get("speed_vs_bert_eager")), fmt(r.get("memory_vs_bert_eager"))])
    headers = ["model", "params", "L", "tokens/s", "peak MiB", "speed vs BERT-sdpa", "memory vs BERT-sdpa",
               "speed vs BERT-eager", "memory vs BERT-eager"]
    return (f"device={args.device}  width={args.width} depth={args.depth} tokens/step={args.tokens_per_step}\n"
            + markdown_table(headers, rows))

if __name__ == "__main__":
    main()
