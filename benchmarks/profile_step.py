#!/usr/bin/env python
"""Where one training step's time goes: torch.profiler over a few forward+backward+AdamW steps of one model
of `benchmarks/throughput.py` (same builder, same sizes), the top aten operators by self device time (CUDA)
or self CPU time, as a table and JSON.

    python benchmarks/profile_step.py --model s4d --length 2048 --batch 16 --device cuda \\
        --width 768 --depth 12 --inner 3072 --heads 12 --vocab 32000 --max_len 32768
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import build  # noqa: E402

from mambacode.tables import markdown_table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="s4d")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    for name, default in (("width", 256), ("depth", 4), ("inner", 1024), ("heads", 4), ("vocab", 8192),
                          ("max_len", 8192), ("chunk", 64)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--output", default=None, help="JSON of the table (default: print only)")
    args = ap.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build(args.model, args).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, args.vocab, (args.batch, args.length), device=device)
    mask = torch.ones_like(ids)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask).last_hidden_state.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    # operator level only: on CUDA each kernel's time is listed twice, under its launching aten operator and
    # under the kernel's own name, so summing every event would count it twice
    events = sorted((e for e in prof.key_averages() if e.key.startswith("aten::")),
                    key=lambda e: getattr(e, key, 0), reverse=True)
    total = sum(getattr(e, key, 0) for e in events) or 1
    rows = [{"op": e.key[:70], "calls": e.count, "ms_per_step": getattr(e, key, 0) / 1e3 / args.steps,
             "share": getattr(e, key, 0) / total} for e in events[:args.top]]
    print(f"{args.model} L={args.length} batch={args.batch} on {device.type}: "
          f"{total / 1e3 / args.steps:.1f} ms of self {'device' if device.type == 'cuda' else 'CPU'} time per step")
    print(markdown_table(["operator", "calls", "ms / step", "share"],
                         [[r["op"], r["calls"], f"{r['ms_per_step']:.2f}", f"{100 * r['share']:.1f}%"] for r in rows]))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump({"settings": vars(args), "total_ms_per_step": total / 1e3 / args.steps, "top": rows}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
