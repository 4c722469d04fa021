"""Shift reports and scripts/spectrum.py: files written, counts consistent, bad inputs refused."""

import functools
import json
import os

import numpy as np
import pytest
import torch

from mambacode import MambaCodeForMaskedLM, MambaCodeForRetrieval
from mambacode.spectral import (
    ArchitectureMismatchError,
    shift_report,
    spectrum_report,
    write_report,
)
from mambacode.spectral.cli import main


@pytest.fixture
def tiny(tiny):
    """The shared tiny config, with the hf_conv path and pad id 0 (the word tokenizer's)."""
    return functools.partial(tiny, hf_conv=True, pad_token_id=0)


def drift_first_layer(model, scale=0.3):
    with torch.no_grad():
        for p in model.mambacode.layers[0].mixer.ssm.parameters():
            p.add_(scale * torch.randn_like(p))


def word_tokenizer():
    """A tiny offline word-level tokenizer (ids < 100) built with `tokenizers`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mambacode.spectral import DEFAULT_SNIPPETS

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(DEFAULT_SNIPPETS, trainers.WordLevelTrainer(vocab_size=100,
                                                                        special_tokens=["[PAD]", "[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def test_shift_report_counts_and_json(tmp_path, tiny):
    pre = MambaCodeForMaskedLM(tiny("s4d"))
    post = MambaCodeForMaskedLM(pre.config)
    post.load_state_dict(pre.state_dict())
    same = shift_report(pre, post, 1024)
    assert same.class_changes()["total"] == 0
    assert all(r["delta_log10_lhfr"] == 0 for r in same.rows() if r["kind"] == "s4d")
    drift_first_layer(post)
    shift = shift_report(pre, post, 1024)
    rows = shift.rows()
    changed = sum(r["class_changed"] for r in rows if r["kind"] != "hf_conv")
    assert shift.class_changes()["total"] == changed
    layers, per_layer = shift.layer_shift()
    assert layers == [0, 1] and per_layer["forward"][1] == 0 and per_layer["forward"][0] > 0
    manual = np.mean([abs(r["delta_log10_lhfr"]) for r in rows if r["layer"] == 0 and r["direction"] == "backward"
                      and r["kind"] == "s4d"])
    assert per_layer["backward"][0] == pytest.approx(manual)
    paths = write_report(shift, str(tmp_path), figures=False)
    with open(paths["json"]) as fh:
        data = json.load(fh)  # strict JSON: NaN of the zero-initialised hf_conv became null
    assert data["class_changes"]["total"] == changed
    assert len(data["kernels"]) == len(rows)
    assert {"summary", "magnitude_responses"}.isdisjoint(paths)
    md = open(paths["markdown"]).read()
    assert f"{changed} of 16 kernels changed class" in md


def test_architecture_mismatch_names_the_difference(tiny):
    a = MambaCodeForMaskedLM(tiny("s4d"))
    b = MambaCodeForMaskedLM(tiny("s4d", num_kernels=2))
    with pytest.raises(ArchitectureMismatchError, match=r"num_kernels: 4 \(pre\) vs 2 \(post\)"):
        shift_report(a, b, 256, labels=("pre", "post"))
    c = MambaCodeForMaskedLM(tiny("s4d", num_hidden_layers=3))
    with pytest.raises(ArchitectureMismatchError, match="num_hidden_layers"):
        shift_report(a, c, 256)


def test_cli_s4d_shift_report_with_figures(tmp_path, capsys, tiny):
    pre = MambaCodeForMaskedLM(tiny("s4d"))
    pre.save_pretrained(tmp_path / "pre")
    drift_first_layer(pre)
    pre.save_pretrained(tmp_path / "ft")
    out = tmp_path / "report"
    assert main(["--model_name_or_path", str(tmp_path / "pre"), "--compare_to", str(tmp_path / "ft"),
                 "--output_dir", str(out), "--length", "1024"]) == 0
    for name in ("spectral_shift.json", "spectral_shift.md", "summary.png", "magnitude_responses.png",
                 "centroid_vs_lhfr.png", "hf_conv_responses.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "spectral_shift.json").read_text())
    assert data["length"] == 1024 and data["architecture"]["num_kernels"] == 4
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]  # atomic writes leave no temp files
    assert "SSM kernels changed class" in capsys.readouterr().out


def test_cli_mamba2_single_report_uses_checkpoint_tokenizer(tmp_path, tiny):
    model = MambaCodeForRetrieval(tiny("mamba2"))
    model.save_pretrained(tmp_path / "m2")
    word_tokenizer().save_pretrained(tmp_path / "m2")
    snippets = tmp_path / "snippets.jsonl"
    snippets.write_text("\n".join(json.dumps({"code": f"def f{i}(x):\n    return x + {i}"}) for i in range(5)))
    out = tmp_path / "m2report"
    assert main(["--model_name_or_path", str(tmp_path / "m2"), "--output_dir", str(out), "--inputs_file",
                 str(snippets), "--no_figures"]) == 0
    data = json.loads((out / "spectrum_report.json").read_text())
    assert data["inputs"]["sequences"] == 5
    assert {k["kind"] for k in data["kernels"]} == {"mamba2", "hf_conv"}
    # without a tokenizer anywhere, a mamba2 checkpoint is refused with the way out named
    model.save_pretrained(tmp_path / "m2_notok")
    assert main(["--model_name_or_path", str(tmp_path / "m2_notok"), "--output_dir", str(out)]) == 2


def test_cli_refuses_non_ssm_checkpoint_and_architecture_pairs(tmp_path, capsys, tiny):
    from transformers import RoFormerConfig, RoFormerModel

    RoFormerModel(RoFormerConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, embedding_size=16)).save_pretrained(tmp_path / "rof")
    assert main(["--model_name_or_path", str(tmp_path / "rof"), "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "model_type='roformer'" in err and "mixer='s4d'" in err
    MambaCodeForMaskedLM(tiny("s4d")).save_pretrained(tmp_path / "a")
    MambaCodeForMaskedLM(tiny("s4d", hf_conv=False)).save_pretrained(tmp_path / "b")
    assert main(["--model_name_or_path", str(tmp_path / "a"), "--compare_to", str(tmp_path / "b"),
                 "--output_dir", str(tmp_path / "x")]) == 2
    assert "hf_conv: True" in capsys.readouterr().err


def test_single_report_markdown_and_metrics_alignment(tiny):
    model = MambaCodeForMaskedLM(tiny("s4d", hf_conv=False))
    rep = spectrum_report(model, 512, thresholds={"centroid": 0.2})
    assert rep.thresholds.centroid == 0.2
    assert sum(rep.class_counts().values()) == len(rep.records) == 16
    from mambacode.spectral import spectrum_metrics

    for r, m in zip(rep.records, rep.metrics):
        assert m == spectrum_metrics(r.kernel, centroid=0.2)
