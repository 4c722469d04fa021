"""SSM-Interpret on transformers' own Mamba / Mamba-2 (and the attention matrices of MambaCode's BiMamba2Mixer)
against independent float64 references: the mixers' selective parameters rebuilt here in numpy from the
weights (explicit causal-conv loop), the SSM run as a sequential recurrence, impulse responses read off it,
and the models' own mixer outputs. Tiny random configs, built offline, on the CPU; no socket may connect."""

import json
import os
import socket

import numpy as np
import pytest
import torch

from mambacode.spectral import UnsupportedModelError, extract_kernels
from mambacode.spectral.attention import attention_matrices


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Building and running transformers' Mamba layers must not reach for the Hub (kernels or files)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def hf_model(kind: str, vocab_size: int = 100, head=False, seed: int = 0):
    """A tiny random transformers Mamba ('mamba') or Mamba-2 ('mamba2') model with non-trivial dt, A and
    conv biases (the stock init has dt ~ 0.01 and zero conv bias, which would hide mistakes)."""
    from transformers import Mamba2Config, Mamba2ForCausalLM, Mamba2Model, MambaConfig, MambaForCausalLM, MambaModel

    torch.manual_seed(seed)
    if kind == "mamba":
        config = MambaConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, state_size=4, expand=2,
                             conv_kernel=3, time_step_rank=4)
        model = (MambaForCausalLM if head else MambaModel)(config)
    else:
        config = Mamba2Config(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, state_size=4, expand=1,
                              conv_kernel=3, head_dim=4, num_heads=4, n_groups=2, chunk_size=4)
        model = (Mamba2ForCausalLM if head else Mamba2Model)(config)
    assert config.hidden_act == "silu"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv1d.bias" in name:
                p.normal_(0, 0.3)
            elif "A_log" in name:
                p.uniform_(-1.0, 1.0)
            elif "dt_bias" in name or "dt_proj.bias" in name:
                p.uniform_(-1.5, 0.5)
    return model.eval()


def backbone_of(model):
    return getattr(model, "backbone", model)


# ------------------------------------------------------------------------------------------ references
def np64(t):
    return t.detach().double().cpu().numpy()


def silu(x):
    return x / (1 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def causal_conv(x, w, b):
    """x (n, ch), w (ch, k): y[t] = b + sum_j w[:, j] x[t - (k-1) + j], by explicit loops."""
    n, k = x.shape[0], w.shape[1]
    y = np.tile(b, (n, 1)) if b is not None else np.zeros_like(x)
    for t in range(n):
        for j in range(k):
            if t - (k - 1) + j >= 0:
                y[t] += w[:, j] * x[t - (k - 1) + j]
    return y


def reference_params(mixer, u):
    """The SSM inputs of one unpadded sequence u (n, d), rebuilt in numpy float64 from the mixer's weights."""
    u = np64(u)
    lin = lambda x, m: x @ np64(m.weight).T + (0 if m.bias is None else np64(m.bias))  # noqa: E731
    conv_w, conv_b = np64(mixer.conv1d.weight)[:, 0], None if mixer.conv1d.bias is None else np64(mixer.conv1d.bias)
    N = mixer.ssm_state_size
    if type(mixer).__name__ == "MambaMixer":
        xz = lin(u, mixer.in_proj)
        I = mixer.intermediate_size
        x = silu(causal_conv(xz[:, :I], conv_w, conv_b))
        proj = x @ np64(mixer.x_proj.weight).T
        R = mixer.time_step_rank
        dt = softplus(lin(proj[:, :R], mixer.dt_proj))
        return {"x": x, "z": xz[:, I:], "dt": dt, "A": -np.exp(np64(mixer.A_log)), "B": proj[:, R:R + N],
                "C": proj[:, R + N:], "D": np64(mixer.D)}
    I, H, P, G = mixer.intermediate_size, mixer.num_heads, mixer.head_dim, mixer.n_groups
    proj = lin(u, mixer.in_proj)
    n = u.shape[0]
    xbc = silu(causal_conv(proj[:, I:2 * I + 2 * G * N], conv_w, conv_b))
    return {"x": xbc[:, :I].reshape(n, H, P), "z": proj[:, :I],
            "dt": softplus(proj[:, 2 * I + 2 * G * N:] + np64(mixer.dt_bias)), "A": -np.exp(np64(mixer.A_log)),
            "B": xbc[:, I:I + G * N].reshape(n, G, N), "C": xbc[:, I + G * N:].reshape(n, G, N), "D": np64(mixer.D)}


def scan_mamba2(x, dt, A, B, C):
    """Sequential recurrence per head: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T; y_t = h_t C_t."""
    n, H, P = x.shape
    per = H // B.shape[1]
    h = np.zeros((H, P, B.shape[2]))
    y = np.zeros((n, H, P))
    for t in range(n):
        for hd in range(H):
            g = hd // per
            h[hd] = np.exp(dt[t, hd] * A[hd]) * h[hd] + dt[t, hd] * np.outer(x[t, hd], B[t, g])
            y[t, hd] = h[hd] @ C[t, g]
    return y


def scan_mamba1(x, dt, A, B, C):
    """Sequential recurrence per channel c: h_t[c] = exp(dt_t[c] A[c]) h_{t-1}[c] + dt_t[c] x_t[c] B_t; y = h C_t."""
    n, ch = x.shape
    h = np.zeros((ch, A.shape[1]))
    y = np.zeros((n, ch))
    for t in range(n):
        h = np.exp(dt[t][:, None] * A) * h + (dt[t] * x[t])[:, None] * B[t][None, :]
        y[t] = h @ C[t]
    return y


def impulse_mamba2(dt, A, B, C):
    """alpha[h, t, s]: the recurrence fed a unit impulse at s on head h, read at t (scalar channel)."""
    n, H = dt.shape
    per = H // B.shape[1]
    alpha = np.zeros((H, n, n))
    for hd in range(H):
        g = hd // per
        for s in range(n):
            state = dt[s, hd] * B[s, g]
            for t in range(s, n):
                if t > s:
                    state = np.exp(dt[t, hd] * A[hd]) * state
                alpha[hd, t, s] = C[t, g] @ state
    return alpha


def impulse_mamba1(dt, A, B, C, channels):
    """alpha[c, t, s] for Mamba-1 channels: a unit impulse on channel c at s, read at t."""
    n = dt.shape[0]
    alpha = np.zeros((len(channels), n, n))
    for j, c in enumerate(channels):
        for s in range(n):
            state = dt[s, c] * B[s]
            for t in range(s, n):
                if t > s:
                    state = np.exp(dt[t, c] * A[c]) * state
                alpha[j, t, s] = C[t] @ state
    return alpha


def capture(model, ids, mask=None, module="mixer"):
    """[(args, kwargs)] of every layer's `module` (the mixer or one of its submodules) in a real forward."""
    backbone = backbone_of(model)
    seen = {}
    handles = []
    for i, layer in enumerate(backbone.layers):
        target = layer.mixer if module == "mixer" else getattr(layer.mixer, module)
        handles.append(target.register_forward_pre_hook(
            lambda m, a, k, i=i: seen.__setitem__(i, (a, k)), with_kwargs=True))
    try:
        with torch.no_grad():
            backbone(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return [seen[i] for i in range(len(backbone.layers))]


# ------------------------------------------------------------------------------------------ attention matrices
def test_hf_mamba2_attention_matrix_is_the_scan():
    model = hf_model("mamba2")
    ids = torch.randint(0, 100, (1, 11))
    mats = attention_matrices(model, ids)
    assert {(m.layer, m.direction, m.index, m.kind) for m in mats} == {
        (layer, "forward", h, "mamba2") for layer in range(2) for h in range(4)}
    inputs = capture(model, ids)
    scan_in = capture(model, ids, module="norm")  # Mamba2RMSNormGated(scan_output, gate): y + D x, before the gate
    for layer in range(2):
        mixer = model.layers[layer].mixer
        p = reference_params(mixer, inputs[layer][0][0][0])
        M = np.stack([m.matrix for m in sorted(mats, key=lambda m: m.index) if m.layer == layer])
        np.testing.assert_allclose(M, impulse_mamba2(p["dt"], p["A"], p["B"], p["C"]), rtol=1e-10, atol=1e-13)
        assert np.all(np.triu(M, 1) == 0)
        y = scan_mamba2(p["x"], p["dt"], p["A"], p["B"], p["C"])
        np.testing.assert_allclose(np.einsum("hts,shp->thp", M, p["x"]), y, rtol=1e-10, atol=1e-12)
        model_y = np64(scan_in[layer][0][0][0]).reshape(11, 4, 4)
        want = y + p["D"][None, :, None] * p["x"]
        np.testing.assert_allclose(model_y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_hf_mamba_attention_matrix_per_channel_is_the_scan():
    model = hf_model("mamba")
    ids = torch.randint(0, 100, (1, 10))
    channels = [0, 5, 31]
    mats = attention_matrices(model, ids, heads=channels, layers=[1])
    assert [(m.layer, m.index, m.kind) for m in mats] == [(1, c, "mamba") for c in channels]
    mixer = model.layers[1].mixer
    p = reference_params(mixer, capture(model, ids)[1][0][0][0])
    M = np.stack([m.matrix for m in mats])
    np.testing.assert_allclose(M, impulse_mamba1(p["dt"], p["A"], p["B"], p["C"], channels), rtol=1e-10,
                               atol=1e-13)
    y = scan_mamba1(p["x"], p["dt"], p["A"], p["B"], p["C"])
    np.testing.assert_allclose(np.einsum("cts,sc->tc", M, p["x"][:, channels]), y[:, channels], rtol=1e-10,
                               atol=1e-12)
    # the model's own scan: out_proj receives (y + D x) * silu(z)
    model_out = np64(capture(model, ids, module="out_proj")[1][0][0][0])
    want = (y + p["D"] * p["x"]) * silu(p["z"])
    np.testing.assert_allclose(model_out, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_mambacode_mamba2_attention_matrices_in_token_order(tiny):
    """BiMamba2Mixer: the forward matrix is lower, the backward one upper triangular in token order; both
    reproduce the mixer's output (y = M x + D x)."""
    from mambacode import MambaCodeModel

    model = MambaCodeModel(tiny("mamba2")).eval()
    ids = torch.randint(3, 100, (1, 9))
    mats = attention_matrices(model, ids, layers=[1], heads=[0, 3])
    assert [(m.direction, m.index) for m in mats] == [("forward", 0), ("forward", 3), ("backward", 0), ("backward", 3)]
    layer = model.layers[1]
    ssm = layer.mixer.ssm
    H, P = ssm.num_heads, ssm.head_dim
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[1]
        h = layer.norm(hidden)
        u_f = torch.nn.functional.gelu(layer.proj_uf(h))
        u_b = torch.nn.functional.gelu(layer.proj_ub(h))
        p = {k: np64(v[0]) if v.ndim > 1 else np64(v) for k, v in ssm.selective_parameters(u_f, u_b).items()}
        y_f, y_b = (np64(t[0]) for t in ssm(u_f, u_b))
    D = np64(ssm.D)
    for d, out in ((0, y_f), (1, y_b)):
        heads = [d * H, d * H + 3]
        ref = impulse_mamba2(p["dt"][:, heads], p["A"][heads], p["B"][:, d:d + 1], p["C"][:, d:d + 1])
        if d == 1:
            ref = ref[:, ::-1, ::-1]  # scan order -> token order
        got = np.stack([m.matrix for m in mats if m.direction == ("forward", "backward")[d]])
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
        assert np.all((np.triu(got, 1) if d == 0 else np.tril(got, -1)) == 0)
        x = p["x"][:, heads]  # scan order (n, 2, P)
        if d == 1:
            x = x[::-1]
        want = np.einsum("hts,shp->thp", got, x) + D[d][[0, 3]][None, :, None] * x
        have = out.reshape(9, H, P)[:, [0, 3]]
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="s4d"):
        attention_matrices(MambaCodeModel(tiny("s4d")), ids)
    with pytest.raises(ValueError, match="head 7 out of range"):
        attention_matrices(model, ids, heads=[7])


# ------------------------------------------------------------------------------------------ effective kernels
@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_hf_effective_kernels_match_naive_recurrence(kind):
    """Right-padded batch: per-lag mean / spread / count of alpha over every sequence alone (its own forward,
    impulse responses of the float64 recurrence); a left-padded batch gives the same kernels."""
    model = hf_model(kind, head=(kind == "mamba"))  # a head for Mamba-1: MambaForCausalLM
    lengths = [12, 8, 5]
    ids = torch.randint(0, 100, (3, 12))
    mask = (torch.arange(12)[None] < torch.tensor(lengths)[:, None]).long()
    channels = [0, 7, 31]
    records = extract_kernels(model, 4096, {"input_ids": ids, "attention_mask": mask}, include_hf_conv=False,
                              channels=channels)
    units = channels if kind == "mamba" else list(range(4))
    assert [(r.layer, r.direction, r.index, r.kind) for r in records] == [
        (layer, "forward", u, kind) for layer in range(2) for u in units]
    backbone = backbone_of(model)
    per_lag = {(layer, u): [[] for _ in range(12)] for layer in range(2) for u in range(len(units))}
    for b, n in enumerate(lengths):
        seq = ids[b:b + 1, :n]
        for layer, (args, _) in enumerate(capture(model, seq)):
            p = reference_params(backbone.layers[layer].mixer, args[0][0])
            alpha = (impulse_mamba1(p["dt"], p["A"], p["B"], p["C"], channels) if kind == "mamba"
                     else impulse_mamba2(p["dt"], p["A"], p["B"], p["C"]))
            for u in range(len(units)):
                for t in range(n):
                    for s in range(t + 1):
                        per_lag[layer, u][t - s].append(alpha[u, t, s])
    for r in records:
        samples = per_lag[r.layer, units.index(r.index)]
        mean = np.array([np.mean(x) for x in samples])
        scale = np.abs(mean).max()
        np.testing.assert_allclose(r.kernel, mean, rtol=1e-5, atol=1e-7 * scale)
        np.testing.assert_allclose(r.spread, [np.std(x) for x in samples], rtol=1e-4, atol=1e-6 * scale)
        np.testing.assert_array_equal(r.count, [len(x) for x in samples])
        assert r.extra["sequences"] == 3
    left_ids, left_mask = ids.clone(), mask.clone()
    for b, n in enumerate(lengths):
        left_ids[b] = torch.roll(ids[b], 12 - n)
        left_mask[b] = torch.roll(mask[b], 12 - n)
    left = extract_kernels(model, 4096, [{"input_ids": left_ids, "attention_mask": left_mask}], include_hf_conv=False,
                           channels=channels)
    for a, b in zip(records, left):
        np.testing.assert_allclose(b.kernel, a.kernel, rtol=1e-5, atol=1e-7 * np.abs(a.kernel).max())


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_hf_conv1d_records_are_the_tap_pattern(kind):
    model = hf_model(kind)
    taps = torch.tensor([1.0, -2.0, 1.0])
    with torch.no_grad():
        for layer in model.layers:
            w = layer.mixer.conv1d.weight
            w.copy_(torch.randn(w.shape[0], 1, 1) * taps)  # every channel a multiple of [1, -2, 1]: rank 1
    records = [r for r in extract_kernels(model, 128, torch.randint(0, 100, (1, 6)), channels=2)
               if r.kind == "conv1d"]
    assert [(r.layer, r.index) for r in records] == [(layer, j) for layer in range(2)
                                                     for j in range(1 if kind == "mamba" else 2)]
    for r in records:
        assert r.extra["energy_fraction"] == pytest.approx(1.0) and r.direction == "forward"
        np.testing.assert_allclose(r.kernel[:3] / r.kernel[1], [-0.5, 1.0, -0.5], atol=1e-9)
        assert not r.kernel[3:].any()


def test_mamba1_channel_selection_and_unsupported_models():
    from transformers import BertConfig, BertModel

    from mambacode.spectral.hf_mamba import select_channels

    assert select_channels(32, 4) == [0, 10, 21, 31]
    assert select_channels(32, "all") == list(range(32)) and select_channels(32, "3, 1") == [1, 3]
    with pytest.raises(ValueError, match="out of range.*0..31"):
        select_channels(32, [40])
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    with pytest.raises(UnsupportedModelError, match="BertModel.*MambaForCausalLM, Mamba2ForCausalLM"):
        extract_kernels(bert, inputs=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="inputs="):
        extract_kernels(hf_model("mamba2"))
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        extract_kernels(hf_model("mamba"), inputs=torch.full((1, 4), 500))


# ------------------------------------------------------------------------------------------ the CLI
def _spectrum_main(argv):
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("spectrum_script", os.path.join(root, "scripts", "spectrum.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(argv)


def test_spectrum_script_on_saved_transformers_models(tmp_path, tokenizer, capsys):
    from transformers import BertConfig, BertModel

    V = len(tokenizer)
    folders = {}
    for name, model in (("mamba_lm", hf_model("mamba", V, head=True)), ("mamba2", hf_model("mamba2", V)),
                        ("bert", BertModel(BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=32)))):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        folders[name] = str(tmp_path / name)
    common = ["--length", "128", "--max_snippets", "3", "--max_length", "40"]
    out = tmp_path / "mamba_out"
    assert _spectrum_main(["--model_name_or_path", folders["mamba_lm"], "--output_dir", str(out), *common,
                           "--mamba_channels", "0,9,31", "--attention_matrix_for", "def f(a):\n    return a + 1"]) == 0
    report = json.load(open(out / "spectrum_report.json"))
    assert report["architecture"]["source"] == "transformers" and report["architecture"]["mixer"] == "mamba"
    assert {(k["layer"], k["kind"], k["index"]) for k in report["kernels"]} == {
        (layer, kind, i) for layer in range(2) for kind, i in
        [("mamba", 0), ("mamba", 9), ("mamba", 31), ("conv1d", 0)]}
    assert {k["direction"] for k in report["kernels"]} == {"forward"}
    assert sum(report["class_counts"].values()) == 6 and report["inputs"]["channels"] == [0, 9, 31]
    md = (out / "spectrum_report.md").read_text()
    assert "![attention_matrices](attention_matrices.png)" in md and "alpha_c[t, s]" in md
    mats = np.load(out / "attention_matrices.npz")
    n = len(mats["tokens"])
    assert mats["layer1/forward/channel31"].shape == (n, n) and not np.triu(mats["layer1/forward/channel31"], 1).any()
    assert os.path.getsize(out / "attention_matrices.png") > 5000

    out2 = tmp_path / "mamba2_out"
    assert _spectrum_main(["--model_name_or_path", folders["mamba2"], "--compare_to", folders["mamba2"],
                           "--output_dir", str(out2), *common, "--attention_matrix_for", "first",
                           "--attention_layers", "1", "--no_figures"]) == 0
    shift = json.load(open(out2 / "spectral_shift.json"))
    assert shift["class_changes"]["total"] == 0 and shift["class_changes"]["kernels"] == 2 * 4
    assert sorted(k for k in np.load(out2 / "attention_matrices.npz").files if k != "tokens") == [
        f"layer1/forward/head{h}" for h in range(4)]

    capsys.readouterr()
    assert _spectrum_main(["--model_name_or_path", folders["bert"], "--output_dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model_type='bert'" in err and "Mamba2ForCausalLM" in err
