#!/usr/bin/env python
"""Benchmark of SSM-Interpret on CPU: prints a table, writes benchmarks/results/spectrum.json.

1. Full spectrum report of a 12-layer S4D model (24 kernels at L = 4096): kernel extraction (float64) +
   metrics + markdown/JSON; figures timed separately. Peer in the same run: the model's own float32
   `S4DKernel.materialize` + the same metrics (ratio printed).
2. Mamba-2 effective kernels over 256 snippets (random token sequences of 64-256 tokens) of a 12-layer
   model: time of the forward passes alone (peer) and of the whole extraction.
3. The regulariser per training step (forward + backward of the penalty) at its default length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--snippets", type=int, default=256)
    parser.add_argument("--mamba_hidden_size", type=int, default=256)
    parser.add_argument("--mamba_head_dim", type=int, default=64)
    parser.add_argument("--min_tokens", type=int, default=64)
    parser.add_argument("--max_tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                         "spectrum.json"))
    a = parser.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    from mambacode import MambaCodeConfig, MambaCodeModel
    from mambacode.spectral import spectrum_report, write_report
    from mambacode.spectral.kernels import extract_kernels
    from mambacode.spectral.report import metrics_for

    rows = []
    # -------------------------------------------------------------------- 1. S4D report
    s4d = MambaCodeModel(MambaCodeConfig(vocab_size=1000, hidden_size=a.hidden_size, num_hidden_layers=a.layers,
                                         intermediate_size=4 * a.hidden_size, state_size=64, num_kernels=1)).eval()
    out_dir = tempfile.mkdtemp(prefix="spectrum-bench-")

    def full_report():
        rep = spectrum_report(s4d, a.length)
        write_report(rep, out_dir, figures=False)
        return rep

    t_report, rep = timed(full_report, a.repeat)
    assert len(rep.records) == 2 * a.layers
    t_extract, recs = timed(lambda: extract_kernels(s4d, a.length), a.repeat)
    t_metrics, _ = timed(lambda: metrics_for(recs), a.repeat)

    def peer():
        with torch.no_grad():
            ks = [layer.mixer.ssm.kernel.materialize(a.length).reshape(-1, a.length) for layer in s4d.layers]
        from mambacode.spectral import spectrum_metrics_batch

        return spectrum_metrics_batch(torch.cat(ks).double().numpy())

    t_peer, _ = timed(peer, a.repeat)
    t_fig, _ = timed(lambda: write_report(rep, out_dir, figures=True), 1)
    rows += [("s4d report: extract + metrics + md/JSON (24 kernels, L=%d)" % a.length, t_report, None),
             ("  extract (float64)", t_extract, None),
             ("  metrics (batched rfft)", t_metrics, None),
             ("  peer: model float32 materialize + metrics", t_peer, t_report / t_peer),
             ("  figures (4 PNGs, once)", t_fig, None)]
    del s4d

    # -------------------------------------------------------------------- 2. Mamba-2 effective kernels
    cfg = MambaCodeConfig(vocab_size=1000, hidden_size=a.mamba_hidden_size, num_hidden_layers=a.layers,
                          intermediate_size=4 * a.mamba_hidden_size, mixer="mamba2", state_size=64,
                          mamba_head_dim=a.mamba_head_dim, mamba_chunk_size=64, pad_token_id=0)
    m2 = MambaCodeModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(a.min_tokens, a.max_tokens + 1, (a.snippets,), generator=g)
    order = lengths.argsort(descending=True)  # length-sorted batches carry little padding
    batches = []
    for i in range(0, a.snippets, 16):
        idx = order[i:i + 16]
        n = int(lengths[idx].max())
        ids = torch.randint(3, 1000, (len(idx), n), generator=g)
        mask = (torch.arange(n)[None] < lengths[idx][:, None]).long()
        batches.append({"input_ids": ids * mask, "attention_mask": mask})

    def forward_only():
        with torch.no_grad():
            for b in batches:
                m2(**b)

    with torch.no_grad():
        m2(**batches[-1])  # warm-up
    t_m2, m2recs = timed(lambda: extract_kernels(m2, a.length, batches, progress=False), 1)
    t_fwd, _ = timed(forward_only, 1)
    tokens = int(lengths.sum())
    heads = len([r for r in m2recs if r.kind == "mamba2"])
    rows += [(f"mamba2 effective kernels: {a.snippets} snippets, {tokens} tokens, {heads} heads", t_m2, None),
             ("  peer: forward passes alone", t_fwd, t_m2 / t_fwd)]

    # -------------------------------------------------------------------- 3. regulariser per step
    reg_model = MambaCodeModel(MambaCodeConfig(vocab_size=1000, hidden_size=a.hidden_size,
                                               num_hidden_layers=a.layers, intermediate_size=4 * a.hidden_size,
                                               state_size=64, num_kernels=8, spectral_anchor_weight=1.0))
    reg_times = {}
    for length in (1024, 4096):
        reg_model.config.spectral_anchor_length = length
        reg_model.record_spectral_anchor()
        with torch.no_grad():
            for layer in reg_model.layers:
                layer.mixer.ssm.kernel.log_step.add_(0.01)

        def step():
            loss = reg_model.spectral_anchor_penalty()
            loss.backward()
            return loss

        step()  # warm-up
        reg_times[length], _ = timed(step, a.repeat)
        rows.append((f"regulariser fwd+bwd, 12 layers x 2 dirs x 8 kernels, L={length}", reg_times[length], None))

    # -------------------------------------------------------------------- table + JSON
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark'.ljust(width)}  {'seconds':>9}  {'ratio':>7}")
    for name, sec, ratio in rows:
        print(f"{name.ljust(width)}  {sec:9.4f}  {'' if ratio is None else f'{ratio:7.2f}'}")
    result = {"platform": platform.platform(), "processor": platform.processor(), "threads": a.threads,
              "torch": torch.__version__, "settings": vars(a),
              "rows": [{"name": n.strip(), "seconds": s, "ratio_to_peer": r} for n, s, r in rows]}
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    tmp = a.output + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, a.output)
    print(f"written {a.output}")


if __name__ == "__main__":
    main()
