"""Training throughput and peak memory: MambaCode (s4d, mamba2, each +/- hf_conv) vs BERT and RoFormer.

Every model is built at (about) the same parameter count as BERT (checked within 5%), trained for a few
forward+backward+AdamW steps on random tokens at a fixed number of tokens per step. Each (model, length)
runs in its own subprocess so that peak memory is that run's own high-water mark:
CPU: the resident high-water mark of one more step after the timed ones minus the resident size before it
(activations, gradients and temporaries above the weights and optimizer state; see _cpu_step_peak_mib);
CUDA: torch.cuda.max_memory_allocated.

Levers are appended to a model's name: `s4d+bf16` trains under bf16 autocast (on CPU; CUDA always uses it),
`s4d+bf16+compile` also wraps the model in torch.compile (its compile steps are not timed). Ratios are
printed to `bert-sdpa` (the BERT a user gets by default, float32 eager) and to `bert-sdpa` with the same
levers (like for like), both measured in the same run.

    python benchmarks/throughput.py                      # CPU, lengths 256 1024 4096 8192
    python benchmarks/throughput.py --lengths 1024 4096 --models bert-sdpa s4d bert-sdpa+bf16 s4d+bf16
    python benchmarks/throughput.py --width 768 --depth 2 --inner 3072 --heads 12 --batch 1 --lengths 1024 4096
Prints a table with ratios to BERT and writes benchmarks/results/throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from mambacode.tables import markdown_table

MODELS = ["bert-sdpa", "bert-eager", "roformer", "s4d", "s4d-hf", "s4d-ckpt", "mamba2", "mamba2-hf"]
LEVERS = ("bf16", "compile")  # appended to a model name: "s4d+bf16", "bert-sdpa+bf16+compile"


def parse_spec(spec: str) -> tuple[str, set[str]]:
    """'s4d+bf16+compile' -> ('s4d', {'bf16', 'compile'}); an unknown model or lever is an argparse error."""
    name, *levers = spec.split("+")
    if name not in MODELS or any(lever not in LEVERS for lever in levers):
        raise argparse.ArgumentTypeError(f"{spec!r}: expected MODEL[+bf16][+compile] with MODEL in {MODELS}")
    return name, set(levers)


DEFAULT_SPECS = MODELS + ["bert-sdpa+bf16", "s4d+bf16", "s4d-hf+bf16", "mamba2+bf16", "s4d-ckpt+bf16",
                          "bert-sdpa+bf16+compile", "s4d+bf16+compile"]


def spec_type(spec: str) -> str:
    parse_spec(spec)
    return spec


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


def run_one(spec: str, length: int, args) -> dict:
    """One (model, length) measurement, in this process.

    Levers: `bf16` trains under bf16 autocast (on CUDA always, as before), `compile` wraps the model in
    `torch.compile` (the first two steps, which compile, are not timed).
    """
    import torch

    name, levers = parse_spec(spec)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build(name, args).to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    batch = args.batch or max(1, args.tokens_per_step // length)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, args.vocab, (batch, length), device=device)
    mask = torch.ones_like(ids)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=device.type == "cuda" or "bf16" in levers)
    forward = torch.compile(model) if "compile" in levers else model

    def step():
        with autocast:
            out = forward(input_ids=ids, attention_mask=mask).last_hidden_state
            loss = out.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_compile = time.perf_counter()
    step()  # warm-up (allocates optimizer state; compiles forward and backward)
    if "compile" in levers:
        step()  # a compiled model may recompile once after the first step
    t_compile = time.perf_counter() - t_compile
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _cpu_step_peak_mib(step)
    return {"model": spec, "length": length, "warmup_s": t_compile, "batch": batch, "params": n_params,
            "tokens_per_s": batch * length * args.steps / elapsed, "peak_mib": peak,
            "seconds_per_step": elapsed / args.steps}


def _cpu_step_peak_mib(step) -> float:
    """Resident memory one more step needs above what is resident before it (activations, gradients and
    temporaries), in MiB. Measured after the timed steps, with glibc told to map every block of 128 KiB or
    more by itself and with its free memory returned first: otherwise freed tensors stay resident in its
    heap (it raises its mmap threshold after the first large free) and the peak reads low. Doing that
    during the timed steps would halve their speed (a page fault per fresh tensor), so it is done after.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (also switches off its dynamic adjustment)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
    hwm_reset = _reset_peak_rss()
    before = _rss_now_kib()
    step()
    high = _peak_rss_kib() if hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0.0, (high - before) / 1024)


def _reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kib() -> float:
    with open("/proc/self/status") as f:
        return next(float(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _rss_now_kib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_SPECS, type=spec_type,
                        help="MODEL[+bf16][+compile], MODEL one of " + ", ".join(MODELS))
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 4096, 8192])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--inner", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--max_len", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--tokens_per_step", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=None, help="a fixed batch size instead of tokens_per_step / L")
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
    add_ratios(results)
    print("\n" + table(results, args))
    out = Path(args.output or Path(__file__).parent / "results" / f"throughput_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                               "results": results}, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


def add_ratios(results: list[dict]) -> None:
    """Speed and memory ratios to BERT measured in the same run: to `bert-sdpa` (the BERT a user gets by
    default: fp32 eager), to `bert-sdpa` with the same levers (bf16/compile: like for like), and to
    `bert-eager` (materialised attention)."""
    by_key = {(r["model"], r["length"]): r for r in results}
    for r in results:
        if "error" in r:
            continue
        levers = "".join("+" + lever for lever in LEVERS if lever in parse_spec(r["model"])[1])
        for tag, ref in (("vs_bert_sdpa", "bert-sdpa"), ("vs_bert_sdpa_same", "bert-sdpa" + levers),
                         ("vs_bert_eager", "bert-eager")):
            base = by_key.get((ref, r["length"]))
            if base and "error" not in base:
                r[f"speed_{tag}"] = r["tokens_per_s"] / base["tokens_per_s"]
                r[f"memory_{tag}"] = r["peak_mib"] / base["peak_mib"] if base["peak_mib"] > 0 else None


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
                     fmt(r.get("speed_vs_bert_sdpa_same")), fmt(r.get("speed_vs_bert_eager"))])
    headers = ["model", "params", "L", "tokens/s", "peak MiB", "speed vs BERT-sdpa", "memory vs BERT-sdpa",
               "speed vs BERT-sdpa, same levers", "speed vs BERT-eager"]
    return (f"device={args.device}  width={args.width} depth={args.depth} "
            + (f"batch={args.batch}\n" if args.batch else f"tokens/step={args.tokens_per_step}\n")
            + markdown_table(headers, rows))


if __name__ == "__main__":
    main()
