"""`python -m mambacode.distill.probes` on tiny saved models: a random BERT with a hand-built WordPiece vocabulary
(the teacher's kind), a MambaCode student with the same vocabulary and a MambaCode MLM encoder with the shipped
code BPE. Code tokens are mapped to word pieces and to BPE pieces by hand on one example; the probe numbers are
recomputed from hidden states aligned by a naive loop; the spectra from the kernels by numpy's FFT; the preset's
probe sizes against scripts/reproduce.py."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from mambacode.distill import probes as dp  # noqa: E402
from mambacode.probing import DirectProbe, ProbeSet, build_probe_set, extract_token_features  # noqa: E402

SNIPPETS = [
    "def add(a, b):\n    x = a + b\n    return x\n",
    "def getvalue(self, key):\n    value = self.items[key]\n    if value is None:\n        value = 0\n"
    "    return value\n",
    "def total(items):\n    s = 0\n    for it in items:\n        s = s + it\n    return s\n",
    "def scale(x, k=2):\n    y = x * k\n    z = y - 1\n    return z\n",
    "def first(seq):\n    for item in seq:\n        return item\n    return None\n",
    "def clip(v, lo, hi):\n    if v < lo:\n        v = lo\n    if v > hi:\n        v = hi\n    return v\n",
]
WORDS = ["def", "add", "a", "b", "x", "return", "get", "##value", "value", "self", "key", "items", "if", "is", "none",
         "total", "s", "for", "it", "in", "scale", "k", "y", "z", "first", "seq", "item", "clip", "v", "lo", "hi",
         "e", "(", ")", ":", ",", "=", "+", "-", "*", "<", ">", "[", "]", "0", "1", "2"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SIZES = dp.ProbeSizes(probe_snippets=6, probe_pairs=6, probe_test_fraction=0.5, spectrum_length=256)


def wordpiece_tokenizer():
    """An uncased BERT-style WordPiece tokenizer (lower case, accents stripped, punctuation split), by hand."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True)


def bpe_tokenizer():
    import mambacode.modeling  # noqa: F401  (the shipped folder's tokenizer config names our classes)
    from transformers import AutoTokenizer

    from mambacode.model_names import pretrained_path

    return AutoTokenizer.from_pretrained(pretrained_path("s4d-mlm"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{student, teacher, mlm, corpus}: tiny models saved with their tokenizers, and a tiny corpus."""
    import datasets
    from transformers import BertConfig, BertModel

    from mambacode import MambaCodeConfig, MambaCodeForMaskedLM, MambaCodeForRetrieval

    root = tmp_path_factory.mktemp("distill-probes")
    wp, bpe = wordpiece_tokenizer(), bpe_tokenizer()
    arch = dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64, mixer="s4d", state_size=16, num_kernels=1)
    torch.manual_seed(0)
    models = {
        "teacher": (BertModel(BertConfig(vocab_size=len(wp), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=512)), wp),
        "student": (MambaCodeForRetrieval(MambaCodeConfig(vocab_size=len(wp), pad_token_id=0, **arch)), wp),
        "mlm": (MambaCodeForMaskedLM(MambaCodeConfig(vocab_size=len(bpe), pad_token_id=bpe.pad_token_id, **arch)), bpe),
    }
    out = {}
    for name, (model, tok) in models.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    corpus = root / "corpus"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"code": SNIPPETS + ["function f() { return 1; }"], "language": ["python"] * len(SNIPPETS) + ["javascript"]})}
    ).save_to_disk(str(corpus / "retrieval"))
    out["corpus"] = str(corpus)
    return out


def _naive_features(model, tok, code: str, spans, layer: int) -> np.ndarray:
    """Mean hidden state of the sub-words whose character span overlaps each code token: a plain double loop."""
    enc = tok(code, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        h = model(**enc, output_hidden_states=True).hidden_states[layer][0].double().numpy()
    rows = []
    for start, end in spans:
        picked = [h[j] for j, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        rows.append(np.mean(picked, axis=0))
    return np.array(rows)


# ------------------------------------------------------------------------------------------ alignment by hand
CODE = "def Getvalue(é):\n    return é + 1\n"
CODE_TOKENS = ["def", "Getvalue", "(", "é", ")", ":", "return", "é", "+", "1"]


def _one_snippet_set():
    ps = build_probe_set([CODE], "python", n_per_class=1, progress=False)
    assert [t for t in ps.texts[0]] == CODE_TOKENS
    return ps


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_code_tokens_map_to_the_right_sub_words(kind):
    """Uncased WordPiece (lower-cased, accent-stripped, '##' continuations) and byte-level BPE (a two-byte 'é' as
    two pieces, '):' one piece for two code tokens): each code token's feature is the mean of the pieces picked by
    hand from the printed tokenisation."""
    from mambacode import MambaCodeConfig, MambaCodeModel

    tok = wordpiece_tokenizer() if kind == "wordpiece" else bpe_tokenizer()
    enc = tok(CODE, return_tensors="pt")
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    if kind == "wordpiece":
        assert pieces == ["[CLS]", "def", "get", "##value", "(", "e", ")", ":", "return", "e", "+", "1", "[SEP]"]
        by_hand = [[1], [2, 3], [4], [5], [6], [7], [8], [9], [10], [11]]
    else:
        assert pieces == ["<s>", "def", "ĠGet", "value", "(", "Ã", "©", "):", "ĊĠĠĠ", "Ġreturn", "Ġ", "Ã", "©", "Ġ+",
                          "Ġ1", "Ċ", "</s>"]
        by_hand = [[1], [2, 3], [4], [5, 6], [7], [7], [9], [11, 12], [13], [14]]
    torch.manual_seed(0)
    model = MambaCodeModel(MambaCodeConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                           intermediate_size=32, state_size=4, num_kernels=1)).eval()
    ps = _one_snippet_set()
    feats, stats = extract_token_features(model, tok, ps, progress=False)
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    for layer in (0, 1):
        want = np.stack([hidden[layer][0, idx].mean(0).numpy() for idx in by_hand])
        np.testing.assert_allclose(feats[layer], want, rtol=1e-5, atol=1e-6)
    assert stats["code_tokens_uncovered"] == 0


# ------------------------------------------------------------------------------------------ the command
def test_command_on_tiny_models(folders, tmp_path):
    work = tmp_path / "work"
    ps = build_probe_set(SNIPPETS, "python", n_per_class=6, test_fraction=0.5, progress=False)
    ps.save(str(tmp_path / "pairs.json"))
    out, md = tmp_path / "out" / "probes.json", tmp_path / "out" / "probes.md"
    argv = ["--student", folders["student"], "--teacher", folders["teacher"], "--mlm", folders["mlm"],
            "--probe_set", str(tmp_path / "pairs.json"), "--work_dir", str(work), "--output", str(out),
            "--markdown", str(md), "--threads", "1", "--no_figures", "--no_progress"]
    assert dp.main(argv) == 0
    res = json.loads(out.read_text())  # strict JSON: json.loads would accept NaN, so check the text too
    assert "NaN" not in out.read_text()
    assert res["models"] == ["student", "teacher", "s4d-mlm"]
    # folders outside the working folder are shown by name only: a report reads the same on every machine
    assert res["paths"] == {"student": "student", "teacher": "teacher", "s4d-mlm": "mlm"}
    assert [os.path.basename(folders[k]) for k in ("student", "teacher", "mlm")] == ["student", "teacher", "mlm"]
    assert res["tasks"] == ["distance", "siblings", "dfg"]
    assert res["n_hidden_states"] == {"student": 3, "teacher": 3, "s4d-mlm": 3}  # embeddings + 2 blocks each
    assert res["extraction"]["teacher"]["tokenizer"] == "BertTokenizer"  # transformers 5's fast BERT tokenizer
    for task in res["tasks"]:
        tp = ps.tasks[task]
        info = res["probe_set"]["pairs"][task]
        # snippets this short fit every model: no pair is dropped, every pair of the file is used
        assert info["n"] == info["n_used"] == len(tp) and info["n_test_used"] == int(tp.is_test.sum())
        assert info["dropped_by"] == {"student": 0, "teacher": 0, "s4d-mlm": 0}
        for model in res["models"]:
            assert sorted(res["results"][model][task]) == ["0", "1", "2"]
            for r in res["results"][model][task].values():
                assert (r["n_train"], r["n_test"]) == (int((~tp.is_test).sum()), int(tp.is_test.sum()))
                assert set(r) >= {"directprobe", "linear"}

    # the student's layer-1 siblings probe, recomputed from hidden states aligned by a naive loop
    from mambacode import MambaCodeForRetrieval

    model = MambaCodeForRetrieval.from_pretrained(folders["student"]).eval()
    tok = wordpiece_tokenizer()
    feats = np.concatenate([_naive_features(model, tok, c, s, 1) for c, s in zip(ps.codes, ps.spans)])
    tp, off = ps.tasks["siblings"], ps.token_offsets()
    X = np.concatenate([feats[off[tp.snippet] + tp.u], feats[off[tp.snippet] + tp.v]], 1)
    probe = DirectProbe(random_state=0, merge_candidates=None).fit(X[~tp.is_test], tp.label[~tp.is_test])
    want = probe.evaluate(X[tp.is_test], tp.label[tp.is_test])
    got = res["results"]["student"]["siblings"]["1"]["directprobe"]
    assert got["accuracy"] == pytest.approx(want["accuracy"]) and got["n_clusters"] == want["n_clusters"]

    # spectra: s4d-mlm's kernels on the left, the student's on the right, metrics as numpy computes them
    from mambacode.spectral import extract_kernels
    from mambacode.spectral.cli import load_encoder

    sp = res["spectra"]
    assert sp["length"] == 4096 and len(sp["kernels"]) == 2 * 2  # the preset's length; 2 layers x 2 directions
    for side, folder in (("pre", folders["mlm"]), ("post", folders["student"])):
        for rec in extract_kernels(load_encoder(folder), 4096):
            row = next(k for k in sp["kernels"] if (k["layer"], k["direction"], k["index"])
                       == (rec.layer, rec.direction, rec.index))
            mag = np.abs(np.fft.rfft(rec.kernel))
            freqs = np.arange(mag.size) / 4096
            assert row[f"centroid_{side}"] == pytest.approx((mag * freqs).sum() / mag.sum(), rel=1e-9)
            lo, hi = mag[: int(0.1 * mag.size)] ** 2, mag[int(0.6 * mag.size):] ** 2
            assert row[f"log10_lhfr_{side}"] == pytest.approx(np.log10(lo.sum() / hi.sum()), rel=1e-9)
    assert [k["centroid_pre"] for k in sp["kernels"]] != [k["centroid_post"] for k in sp["kernels"]]

    # the markdown: one row per model and layer in each probe table, one per kernel in the spectra table
    text = md.read_text()
    for m in res["models"]:
        for layer in range(3):
            assert text.count(f"| {m} | {layer} |") == 2
    assert text.count("| forward |") == 2 and text.count("| backward |") == 2
    siblings = res["results"]["teacher"]["siblings"]["2"]
    assert f"{siblings['directprobe']['accuracy']:.3f} ({siblings['directprobe']['n_clusters']})" in text


def test_preset_probe_set_is_sampled_reused_and_probes_cached(folders, tmp_path):
    """Without --probe_set: the preset's sampling from the corpus (Python rows only), saved and reused by a
    rerun, whose probes come from the cache with the same numbers."""
    kwargs = dict(teacher=folders["teacher"], mlm=folders["mlm"], corpus_dir=folders["corpus"],
                  work_dir=str(tmp_path), sizes=SIZES, figures=False, progress=False)
    first = dp.probe_student(folders["student"], **kwargs)
    assert first["probe_set_source"]["source"] == "sampled"
    ps = ProbeSet.load(str(tmp_path / "probe_set.json"))
    assert ps.meta["n_snippets_in"] == len(SNIPPETS)  # the JavaScript row is not read
    for task, tp in ps.tasks.items():
        for c, name in enumerate(tp.classes):  # 6 pairs per class (or all there are), half of them held out
            n = int((tp.label == c).sum())
            assert n == min(6, tp.available[name]) and int((tp.is_test & (tp.label == c)).sum()) == round(n / 2)
    assert not any(v["probes_cached"] for v in first["timing"]["per_model"].values())
    again = dp.probe_student(folders["student"], **kwargs)
    assert again["probe_set_source"]["source"] == "reused"
    assert all(v["probes_cached"] for v in again["timing"]["per_model"].values())
    assert again["results"] == first["results"]


def test_preset_mismatch_names_what_differs():
    ps = build_probe_set(SNIPPETS, "python", n_per_class=4, test_fraction=0.5, progress=False)
    assert dp.preset_mismatch(ps, dp.ProbeSizes(probe_snippets=6, probe_pairs=4)) == []
    problems = dp.preset_mismatch(ps, dp.ProbeSizes(probe_snippets=6, probe_pairs=5))
    assert problems and all("expected 5" in p for p in problems if "pairs, expected" in p)
    assert dp.preset_mismatch(ps, dp.ProbeSizes(probe_snippets=2, probe_pairs=4))[0].startswith("meta.n_snippets_in")


def test_sizes_are_the_cpu_presets():
    spec = importlib.util.spec_from_file_location("reproduce_for_test", os.path.join(ROOT, "scripts", "reproduce.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cpu = mod.PRESETS["cpu"]
    assert dp.CPU == dp.ProbeSizes(probe_snippets=cpu.probe_snippets, probe_pairs=cpu.probe_pairs,
                                   probe_test_fraction=cpu.probe_test_fraction, probe_kinds=cpu.probe_kinds,
                                   max_positions=cpu.max_positions, spectrum_length=cpu.spectrum_length)
