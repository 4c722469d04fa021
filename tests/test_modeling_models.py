"""Models: padding invariance, heads, save/load (also as remote code), gradients, LoRA, config errors."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import mambacode
from mambacode import (
    MambaCodeConfig,
    MambaCodeForMaskedLM,
    MambaCodeForRetrieval,
    MambaCodeForSequenceClassification,
    MambaCodeForTokenClassification,
    MambaCodeModel,
    count_parameters,
)

MIXERS = ["s4d", "mamba2"]




def randomize_hf_conv(model):
    """Give the (zero-initialised) high-frequency path a visible effect."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("short_conv.scale"):
                p.normal_()


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("hf_conv", [False, True])
def test_padding_invariance(mixer, hf_conv, tiny):
    model = MambaCodeForRetrieval(tiny(mixer, hf_conv=hf_conv, hf_conv_groups=4, num_kernels=1)).eval()
    randomize_hf_conv(model)
    lengths = [23, 9, 16]
    seqs = [torch.randint(3, 96, (n,)) for n in lengths]
    batch = torch.full((3, max(lengths)), model.config.pad_token_id)
    mask = torch.zeros(3, max(lengths), dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = s
        mask[i, : len(s)] = 1
    with torch.no_grad():
        out = model(batch, mask, output_hidden_states=True)
        for i, s in enumerate(seqs):
            alone = model(s[None], torch.ones(1, len(s), dtype=torch.long), output_hidden_states=True)
            n = len(s)
            torch.testing.assert_close(out.last_hidden_state[i, :n], alone.last_hidden_state[0], atol=1e-5, rtol=1e-5)
            for h_batch, h_alone in zip(out.hidden_states, alone.hidden_states):
                torch.testing.assert_close(h_batch[i, :n], h_alone[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.embeddings[i], alone.embeddings[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mixer", MIXERS)
def test_backward_direction_sees_the_future(mixer, tiny):
    """Changing the last token changes the first token's state: both directions are wired in."""
    model = MambaCodeModel(tiny(mixer, initializer_range=0.3)).eval()  # large enough to see in float32
    ids = torch.randint(3, 96, (1, 12))
    ids2 = ids.clone()
    ids2[0, -1] = (ids[0, -1] + 1) % 96
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, model(ids2).last_hidden_state
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-6


@pytest.mark.parametrize("mixer", MIXERS)
def test_every_parameter_gets_a_gradient(mixer, tiny):
    cfg = tiny(mixer, hf_conv=True, hf_conv_groups=4, num_kernels=4 if mixer == "s4d" else 1,
               learnable_temperature=True)
    model = MambaCodeForRetrieval(cfg)
    randomize_hf_conv(model)
    q, c = torch.randint(3, 96, (4, 14)), torch.randint(3, 96, (4, 20))
    model(q, torch.ones_like(q), c, torch.ones_like(c)).loss.backward()
    for name, p in model.named_parameters():
        if name.endswith("embeddings.weight"):
            continue  # rows of unused tokens have zero gradient
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_infonce_loss_matches_hand_computation(tiny):
    model = MambaCodeForRetrieval(tiny(retrieval_temperature=0.1)).eval()
    q, c = torch.randint(3, 96, (5, 11)), torch.randint(3, 96, (5, 17))
    qm, cm = torch.ones_like(q), torch.ones_like(c)
    qm[2, 7:] = 0
    with torch.no_grad():
        out = model(q, qm, c, cm)
        enc = model.mambacode
        def emb(ids, m):
            h = enc(ids, m).last_hidden_state.double()
            pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
            return pooled / pooled.norm(dim=-1, keepdim=True)
        eq, ec = emb(q, qm), emb(c, cm)
    sims = (eq @ ec.T / 0.1).numpy()
    expected = -sum(sims[i, i] - math.log(sum(math.exp(v) for v in sims[i])) for i in range(5)) / 5
    assert abs(out.loss.item() - expected) < 1e-4
    torch.testing.assert_close(out.embeddings.double(), eq, atol=1e-5, rtol=1e-5)


def test_encode_returns_normalised_embeddings_in_input_order(tokenizer, tiny):
    model = MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)).eval()
    texts = ["def add(a, b): return a + b", "x", "for i in range(3): print(i, i * 2, i ** 3)", "class A: pass"]
    emb = model.encode(texts, tokenizer, batch_size=2)
    assert emb.shape == (4, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4), atol=1e-5, rtol=0)
    for i, t in enumerate(texts):
        ids = tokenizer(t, return_tensors="pt")
        with torch.no_grad():
            alone = model(ids["input_ids"], ids["attention_mask"]).embeddings[0]
        torch.testing.assert_close(emb[i], alone, atol=1e-5, rtol=1e-5)
    long = model.encode(["a + b " * 400], tokenizer, max_length=50)  # truncated, not rejected
    assert long.shape == (1, 32)


def test_too_long_input_is_rejected_with_a_clear_message(tiny):
    model = MambaCodeModel(tiny(max_position_embeddings=16))
    with pytest.raises(ValueError, match="max_position_embeddings=16"):
        model(torch.randint(3, 96, (1, 17)))


def test_auto_classes_are_registered(tiny):
    cfg = tiny()
    assert isinstance(AutoConfig.for_model("mambacode"), MambaCodeConfig)
    assert type(AutoModel.from_config(cfg)) is MambaCodeForRetrieval
    assert type(AutoModelForMaskedLM.from_config(cfg)) is MambaCodeForMaskedLM
    assert type(AutoModelForTokenClassification.from_config(tiny(num_labels=5))) is MambaCodeForTokenClassification
    assert type(AutoModelForSequenceClassification.from_config(cfg)) is MambaCodeForSequenceClassification


@pytest.mark.parametrize("mixer", MIXERS)
def test_save_load_round_trip(tmp_path, mixer, tiny):
    model = MambaCodeForRetrieval(tiny(mixer, hf_conv=True, hf_conv_groups=4)).eval()
    randomize_hf_conv(model)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"] == "modeling_mambacode.MambaCodeForRetrieval"
    for f in ("modeling_mambacode.py", "configuration_mambacode.py", "s4d.py", "mamba2.py"):
        assert (tmp_path / f).exists(), f
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is MambaCodeForRetrieval
    ids = torch.randint(3, 96, (2, 21))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).embeddings, model(ids).embeddings, atol=0, rtol=0)
    mlm = AutoModelForMaskedLM.from_pretrained(tmp_path)  # the encoder transfers to another head
    torch.testing.assert_close(mlm.mambacode.embeddings.weight, model.mambacode.embeddings.weight)


def test_masked_lm_ties_embeddings_and_computes_loss(tiny):
    model = MambaCodeForMaskedLM(tiny()).eval()
    assert model.lm_head.decoder.weight.data_ptr() == model.mambacode.embeddings.weight.data_ptr()
    ids = torch.randint(3, 96, (2, 10))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = model(ids, labels=labels)
    expected = F.cross_entropy(out.logits[:, 3].double(), ids[:, 3])
    assert abs(out.loss.item() - expected.item()) < 1e-5


@pytest.mark.parametrize("mixer", MIXERS)
def test_trust_remote_code_load_without_mambacode(tmp_path, mixer, tiny):
    model = MambaCodeForRetrieval(tiny(mixer, hf_conv=True, hf_conv_groups=4)).eval()
    randomize_hf_conv(model)
    save = tmp_path / "model"
    model.save_pretrained(save)
    ids = torch.randint(3, 96, (2, 13))
    torch.save(ids, tmp_path / "ids.pt")
    with torch.no_grad():
        expected = model(ids).embeddings
    script = textwrap.dedent(f"""
        import sys
        sys.modules["mambacode"] = None          # make the package unimportable
        try:
            import mambacode
            raise SystemExit("mambacode is still importable")
        except ImportError:
            pass
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(save)!r}, trust_remote_code=True).eval()
        assert type(model).__name__ == "MambaCodeForRetrieval", type(model)
        assert "mambacode" not in (type(model).__module__.split(".")[0],), type(model).__module__
        ids = torch.load({str(tmp_path / 'ids.pt')!r})
        with torch.no_grad():
            torch.save(model(ids).embeddings, {str(tmp_path / 'out.pt')!r})
            try:  # the remote model validates its inputs too
                model(ids[:0])
                raise SystemExit("an empty batch was accepted")
            except ValueError as exc:
                assert "empty batch" in str(exc), exc
        # the checksums written by save_pretrained are verified by the remote code as well
        import shutil
        damaged = shutil.copytree({str(save)!r}, "damaged")
        with open(damaged + "/model.safetensors", "r+b") as fh:
            fh.seek(-1, 2)
            last = fh.read(1)
            fh.seek(-1, 2)
            fh.write(bytes([last[0] ^ 1]))
        try:
            AutoModel.from_pretrained(damaged, trust_remote_code=True)
            raise SystemExit("a flipped byte loaded silently")
        except OSError as exc:
            assert type(exc).__name__ == "DamagedWeightsError" and "model.safetensors" in str(exc), exc
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_token_and_sequence_classification_losses(tiny):
    tok_model = MambaCodeForTokenClassification(tiny(num_labels=4))
    ids = torch.randint(3, 96, (2, 9))
    labels = torch.randint(0, 4, (2, 9))
    labels[0, :3] = -100
    out = tok_model(ids, labels=labels)
    keep = labels != -100
    expected = F.cross_entropy(out.logits[keep].double(), labels[keep])
    assert abs(out.loss.item() - expected.item()) < 1e-5
    seq_model = MambaCodeForSequenceClassification(tiny(num_labels=3))
    y = torch.tensor([0, 2])
    out = seq_model(ids, labels=y)
    assert abs(out.loss.item() - F.cross_entropy(out.logits.double(), y).item()) < 1e-5


@pytest.mark.parametrize("field,kwargs,match", [
    ("mixer", dict(mixer="transformer"), "mixer='transformer'.*'s4d', 'mamba2'"),
    ("num_kernels", dict(num_kernels=5), "num_kernels=5.*divisor of hidden_size=32"),
    ("hf_conv_groups", dict(hf_conv=True, hf_conv_groups=5), "hf_conv_groups=5.*divisor of hidden_size=32"),
    ("hf_conv_kernel_size", dict(hf_conv_kernel_size=4), "hf_conv_kernel_size=4.*odd"),
    ("mamba_head_dim", dict(mixer="mamba2", mamba_head_dim=5), "mamba_head_dim=5.*divisor"),
    ("num_kernels", dict(mixer="mamba2", num_kernels=4), "num_kernels=4.*mixer='mamba2'"),
    ("hf_conv_layers", dict(hf_conv=True, hf_conv_layers=[0, 7]), r"hf_conv_layers=\[0, 7\]"),
    ("direction_merge", dict(direction_merge="concat"), "direction_merge='concat'"),
    ("use_mamba_kernels", dict(use_mamba_kernels="yes"), "use_mamba_kernels='yes'"),
    ("hidden_size", dict(hidden_size=0), "hidden_size=0"),
    ("state_size", dict(state_size=7), "state_size=7.*even"),
])
def test_config_errors_name_the_field(field, kwargs, match, tiny):
    with pytest.raises(ValueError, match=match) as err:
        tiny(**kwargs)
    assert f"MambaCodeConfig.{field}" in str(err.value)


def layer_parameters_by_hand(d, inner, mixer, state, G, hf, k, groups, head_dim):
    """Parameters of one layer, counted from the architecture's definition (not from the code)."""
    linear = lambda i, o: i * o + o
    n = 2 * d  # LayerNorm
    n += linear(d, inner) * 2 + linear(inner, d)  # proj_v, proj_ol, proj_o
    n += linear(d, d) * 4  # proj_uf, proj_ub, proj_cf, proj_cb
    if mixer == "s4d":
        modes = state // 2
        n += 2 * G * (1 + 1 + 2 * modes + 2 * modes)  # log_step, D, A_real + A_imag, C (re, im)
    else:
        heads = d // head_dim
        n += 2 * linear(d, 2 * state + heads) + 3 * 2 * heads  # proj_fwd/bwd, dt_bias, A_log, D
    if hf:
        n += 2 * d * (d // groups) * k + 2 * d  # one grouped conv per direction + scale
    return n


@pytest.mark.parametrize("mixer", MIXERS)
def test_parameter_count_and_matching(mixer):
    base = MambaCodeConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=12, intermediate_size=1024,
                           mixer=mixer, state_size=64, num_kernels=1, mamba_head_dim=64)
    per_layer = layer_parameters_by_hand(256, 1024, mixer, 64, 1, False, 3, 8, 64)
    per_layer_hf = layer_parameters_by_hand(256, 1024, mixer, 64, 1, True, 3, 8, 64)
    fixed = 1000 * 256 + 2 * 256  # embeddings + final norm
    assert count_parameters(base) == fixed + 12 * per_layer
    matched = MambaCodeConfig.parameter_matched(base, hf_conv=True)
    assert matched.hf_conv and matched.num_hidden_layers < 12
    target = fixed + 12 * per_layer
    best = min(range(1, 25), key=lambda n: abs(fixed + n * per_layer_hf - target))
    assert matched.num_hidden_layers == best
    per_layer_matched = layer_parameters_by_hand(256, matched.intermediate_size, mixer, 64, 1, True, 3, 8, 64)
    assert count_parameters(matched) == fixed + best * per_layer_matched
    assert abs(count_parameters(matched) - target) / target <= 0.02
    with pytest.raises(ValueError, match="within 0.00%"):
        MambaCodeConfig.parameter_matched(base, tolerance=1e-7, hf_conv=True)


def test_paper_scale_hf_model_drops_to_eleven_layers_and_widens_to_match():
    """At BERT-base width, 11 layers with the HF path are 3.3% short; intermediate_size absorbs the rest."""
    base = MambaCodeConfig(vocab_size=32100, hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
    target = count_parameters(base)
    matched = MambaCodeConfig.parameter_matched(base, hf_conv=True)
    assert matched.num_hidden_layers == 11 and matched.intermediate_size > 3072
    assert matched.intermediate_size % 8 == 0
    fixed = 32100 * 768 + 2 * 768
    by_hand = fixed + 11 * layer_parameters_by_hand(768, matched.intermediate_size, "s4d", 64, 1, True, 3, 8, 64)
    assert count_parameters(matched) == by_hand
    assert abs(by_hand - target) / target <= 0.02
    # the next multiple of 8 up or down would be no closer
    for other in (matched.intermediate_size - 8, matched.intermediate_size + 8):
        n = fixed + 11 * layer_parameters_by_hand(768, other, "s4d", 64, 1, True, 3, 8, 64)
        assert abs(n - target) >= abs(by_hand - target)


@pytest.mark.parametrize("mixer", MIXERS)
def test_lora_adapters_train_and_merge(mixer, tiny):
    from peft import LoraConfig, get_peft_model

    targets = ["proj_uf", "proj_ub", "proj_cf", "proj_cb"] + (["proj_fwd", "proj_bwd"] if mixer == "mamba2" else [])
    model = MambaCodeForRetrieval(tiny(mixer)).eval()
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    q, c = torch.randint(3, 96, (3, 10)), torch.randint(3, 96, (3, 12))
    out = peft_model(input_ids=q, attention_mask=torch.ones_like(q), code_input_ids=c,
                     code_attention_mask=torch.ones_like(c))
    out.loss.backward()
    lora = [(n, p) for n, p in peft_model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * len(targets) * 2  # A and B per target per layer
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in lora)
    assert all(not p.requires_grad for n, p in peft_model.named_parameters() if "lora_" not in n)
    with torch.no_grad():
        adapted = peft_model(input_ids=q).embeddings
        merged = peft_model.merge_and_unload()
        torch.testing.assert_close(merged(q).embeddings, adapted, atol=1e-5, rtol=1e-5)
    assert type(merged) is MambaCodeForRetrieval


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    model = MambaCodeForMaskedLM(tiny(hf_conv=True, hf_conv_groups=4)).train()
    randomize_hf_conv(model)
    ids = torch.randint(3, 96, (2, 10))
    model(ids, torch.ones_like(ids), labels=ids).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.mambacode.layers)
    model(ids, torch.ones_like(ids), labels=ids).loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], msg=n)
