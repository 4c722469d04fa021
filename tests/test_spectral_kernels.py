"""extract_kernels against independent references: the S4D closed-form DTFT, a naive Mamba-2 recurrence
loop, a rank-1 hf_conv; padding invariance; unsupported models."""

import functools

import numpy as np
import pytest
import torch

from mambacode import MambaCodeForMaskedLM, MambaCodeModel
from mambacode.spectral import UnsupportedModelError, extract_kernels, spectrum_metrics


@pytest.fixture
def tiny(tiny):
    """The shared tiny config, with the hf_conv path."""
    return functools.partial(tiny, hf_conv=True)


# ------------------------------------------------------------------------------------------ s4d
def s4d_dtft(kernel_module, direction, group, length):
    """rfft of the truncated kernel from the parameters, as geometric sums (float64):
    K[l] = sum_m Ct_m r_m^l + conj(Ct_m) conj(r_m)^l  ->  sum_m Ct_m (1 - r_m^L) / (1 - r_m z) + conj."""
    p = {n: getattr(kernel_module, n).detach().double()[direction, group].numpy()
         for n in ("log_step", "A_real", "A_imag", "C")}
    A = np.minimum(p["A_real"], -1e-4) + 1j * p["A_imag"]
    dt = np.exp(p["log_step"])
    C = p["C"][:, 0] + 1j * p["C"][:, 1]
    Ct = C * (np.exp(dt * A) - 1) / A
    r = np.exp(dt * A)
    z = np.exp(-2j * np.pi * np.arange(length // 2 + 1) / length)[:, None]
    return ((Ct * (1 - r ** length) / (1 - r * z)) + (np.conj(Ct) * (1 - np.conj(r) ** length)
                                                      / (1 - np.conj(r) * z))).sum(-1)


def test_s4d_spectrum_matches_closed_form_dtft(tiny):
    model = MambaCodeForMaskedLM(tiny("s4d"))
    length = 4096
    records = [r for r in extract_kernels(model, length) if r.kind == "s4d"]
    assert len(records) == 2 * 2 * 4  # layers x directions x groups
    layers = model.mambacode.layers
    for r in records:
        d = 0 if r.direction == "forward" else 1
        want = s4d_dtft(layers[r.layer].mixer.ssm.kernel, d, r.index, length)
        got = np.fft.rfft(r.kernel)
        np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-8, atol=1e-10 * np.abs(want).max())
        # and the float64 kernel is the model's own float32 kernel
        with torch.no_grad():
            model_k = layers[r.layer].mixer.ssm.kernel.materialize(length)[d, r.index].double().numpy()
        np.testing.assert_allclose(r.kernel, model_k, atol=1e-5 * np.abs(model_k).max())


def test_records_layout_and_hf_conv_rank_one(tiny):
    model = MambaCodeModel(tiny("s4d", hf_conv_layers=[1]))
    conv = model.layers[1].mixer.short_conv
    taps = torch.tensor([1.0, -2.0, 1.0])
    with torch.no_grad():
        # every (out, in) pair of every group = c_oi * [1, -2, 1]: a rank-1 tap matrix
        conv.conv.weight.copy_(torch.randn(conv.conv.weight.shape[:2])[..., None] * taps)
        conv.scale.fill_(0.5)
    records = extract_kernels(model, 512)
    hf = [r for r in records if r.kind == "hf_conv"]
    assert {r.layer for r in hf} == {1} and len(hf) == 2 * 8  # directions x hf_conv_groups
    for r in hf:
        assert r.extra["energy_fraction"] == pytest.approx(1.0)
        shape = r.kernel[:3] / r.kernel[np.abs(r.kernel[:3]).argmax()]
        np.testing.assert_allclose(shape, [-0.5, 1.0, -0.5], atol=1e-9)
        assert not r.kernel[3:].any() and r.kernel.shape == (512,)
        assert spectrum_metrics(r.kernel)["filter_class"] == "high-pass"
    keys = [r.key for r in records]
    assert len(set(keys)) == len(keys)


def test_unsupported_models_are_refused_with_what_is_supported(tiny):
    from transformers import RoFormerConfig, RoFormerModel

    roformer = RoFormerModel(RoFormerConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=32, embedding_size=16))
    with pytest.raises(UnsupportedModelError, match="RoFormerModel.*mixer='s4d'.*mixer='mamba2'"):
        extract_kernels(roformer)
    with pytest.raises(ValueError, match="inputs="):
        extract_kernels(MambaCodeModel(tiny("mamba2")))
    with pytest.raises(ValueError, match="length"):
        extract_kernels(MambaCodeModel(tiny("s4d")), length=1)


# ------------------------------------------------------------------------------------------ mamba2
def naive_attention(dt, A, B, C):
    """alpha[h, t, s] by running the recurrence h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t with a unit impulse
    x at position s, reading y_t = C_t . h_t (float64 Python loops)."""
    n, H = dt.shape
    alpha = np.zeros((H, n, n))
    for h in range(H):
        for s in range(n):
            state = dt[s, h] * B[s]
            alpha[h, s, s] = C[s] @ state
            for t in range(s + 1, n):
                state = np.exp(dt[t, h] * A[h]) * state
                alpha[h, t, s] = C[t] @ state
    return alpha


def capture_params(model, input_ids, attention_mask):
    """dt, A, B, C (float64 numpy) of every layer's scan on the given batch.

    The mixer inputs are rebuilt here from each layer's input and its own weights (pre-norm, GELU of the
    direction projections, padding zeroed), independently of the model's forward.
    """
    enc = model.mambacode if hasattr(model, "mambacode") else model
    mask = attention_mask[..., None].float()
    out = {}
    with torch.no_grad():
        hidden = enc(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        for i, layer in enumerate(enc.layers):
            h = layer.norm(hidden[i])
            u_f = torch.nn.functional.gelu(layer.proj_uf(h)) * mask
            u_b = torch.nn.functional.gelu(layer.proj_ub(h)) * mask
            params = layer.mixer.ssm.selective_parameters(u_f, u_b)
            out[i] = {k: v.double().numpy() for k, v in params.items()}
    return out


def test_mamba2_effective_kernel_matches_naive_recurrence(tiny):
    torch.manual_seed(1)
    model = MambaCodeForMaskedLM(tiny("mamba2")).eval()
    lengths = [13, 9, 5]
    ids = torch.randint(3, 100, (3, 13))
    mask = (torch.arange(13)[None] < torch.tensor(lengths)[:, None]).long()
    records = extract_kernels(model, 4096, {"input_ids": ids, "attention_mask": mask}, include_hf_conv=False)
    params = capture_params(model, ids, mask)
    H = model.mambacode.layers[0].mixer.ssm.num_heads
    assert len(records) == 2 * 2 * H
    for layer in range(2):
        p = params[layer]
        for d, direction in enumerate(("forward", "backward")):
            per_lag = [[] for _ in range(13)]  # samples alpha[h, t, t - l] over sequences and positions
            for b, n in enumerate(lengths):
                # scan order: the backward direction's sequence is reversed, its padding first
                pos = np.arange(n) if d == 0 else np.arange(13 - n, 13)
                heads = slice(d * H, (d + 1) * H)
                alpha = naive_attention(p["dt"][b, pos][:, heads], p["A"][heads], p["B"][b, pos, d],
                                        p["C"][b, pos, d])
                for t in range(n):
                    for s in range(t + 1):
                        per_lag[t - s].append(alpha[:, t, s])
            mean = np.stack([np.mean(x, 0) for x in per_lag], 1)  # (H, lags)
            std = np.stack([np.std(x, 0) for x in per_lag], 1)
            count = np.array([len(x) for x in per_lag])
            for r in records:
                if r.layer == layer and r.direction == direction:
                    np.testing.assert_allclose(r.kernel, mean[r.index], rtol=1e-9, atol=1e-12)
                    np.testing.assert_allclose(r.spread, std[r.index], rtol=1e-6, atol=1e-9)
                    np.testing.assert_array_equal(r.count, count)


def test_mamba2_attention_reproduces_the_models_scan(tiny):
    """The attention the kernels are read from is the model's actual operator: y = alpha @ x (+ D x)."""
    from mambacode.modeling.mamba2 import ssd_chunked_scan

    model = MambaCodeModel(tiny("mamba2")).eval()
    ssm = model.layers[0].mixer.ssm
    u_f, u_b = torch.randn(1, 11, 32), torch.randn(1, 11, 32)
    with torch.no_grad():
        p = ssm.selective_parameters(u_f, u_b)
        y = ssd_chunked_scan(p["x"], p["dt"], p["A"], p["B"], p["C"], ssm.chunk_size)[0].double().numpy()
        outputs = [t[0].double().numpy() for t in ssm(u_f, u_b)]  # (y_f, y_b) in the original order
    H, P = ssm.num_heads, ssm.head_dim
    D = ssm.D.detach().double().numpy()
    for d in (0, 1):
        heads = slice(d * H, (d + 1) * H)
        alpha = naive_attention(p["dt"][0, :, heads].double().numpy(), p["A"][heads].double().numpy(),
                                p["B"][0, :, d].double().numpy(), p["C"][0, :, d].double().numpy())
        x = p["x"][0, :, heads].double().numpy()  # (L, H, P)
        mixed = np.einsum("hts,shp->thp", alpha, x)
        np.testing.assert_allclose(mixed, y[:, heads], rtol=1e-4, atol=1e-5)
        # the mixer's forward: the same operator plus D x, the backward direction back in original order
        want = (mixed + D[d][None, :, None] * x).reshape(11, H * P)
        np.testing.assert_allclose(outputs[d] if d == 0 else outputs[d][::-1], want, rtol=1e-4, atol=1e-5)


def test_mamba2_kernels_ignore_padding_and_accept_strings(tiny):
    model = MambaCodeModel(tiny("mamba2")).eval()
    ids = torch.randint(3, 100, (2, 10))
    alone = [extract_kernels(model, 64, {"input_ids": ids[i:i + 1, :n]}, include_hf_conv=False)
             for i, n in enumerate((10, 6))]
    right = torch.full((2, 10), 1)
    right[0], right[1, :6] = ids[0], ids[1, :6]
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0], mask[1, :6] = 1, 1
    batched = extract_kernels(model, 64, {"input_ids": right, "attention_mask": mask}, include_hf_conv=False)
    left_ids, left_mask = right.clone(), mask.clone()
    left_ids[1], left_mask[1] = torch.cat([right[1, 6:], right[1, :6]]), torch.cat([mask[1, 6:], mask[1, :6]])
    left = extract_kernels(model, 64, [{"input_ids": left_ids, "attention_mask": left_mask}], include_hf_conv=False)
    for k, (a, b, c) in enumerate(zip(alone[0], batched, left)):
        # pooled over both sequences = count-weighted mean of each alone
        other = alone[1][k]
        n0, n1 = a.count, np.pad(other.count, (0, 4))
        pooled = (a.kernel * n0 + np.pad(other.kernel, (0, 4)) * n1) / (n0 + n1)
        np.testing.assert_allclose(b.kernel, pooled, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(c.kernel, b.kernel, rtol=1e-9, atol=1e-12)
    holes = mask.clone()
    holes[0, 3] = 0
    with pytest.raises(ValueError, match="padding between tokens"):
        extract_kernels(model, 64, {"input_ids": right, "attention_mask": holes})

    class CharTokenizer:  # a minimal tokenizer: one id per character
        def __call__(self, texts, padding=True, return_tensors="pt", truncation=False, max_length=None):
            rows = [[3 + ord(c) % 90 for c in t][: max_length or None] for t in texts]
            n = max(map(len, rows))
            return {"input_ids": torch.tensor([r + [1] * (n - len(r)) for r in rows]),
                    "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])}

    recs = extract_kernels(model, 64, ["def f(x):\n    return x", "x = 1"], tokenizer=CharTokenizer(),
                           max_length=16)
    assert recs[0].kernel.shape == (16,) and recs[0].extra["sequences"] == 2
    with pytest.raises(ValueError, match="tokenizer="):
        extract_kernels(model, 64, ["x = 1"])
