"""SpectrumCallback and SpectralAnchorCallback during a tiny CPU Trainer run (and its resume)."""

import json
import os

import pytest
import torch
from transformers import Trainer, TrainingArguments

from mambacode import MambaCodeConfig, MambaCodeForMaskedLM
from mambacode.spectral import SpectralAnchorCallback, SpectrumCallback, enable_spectral_anchor, get_spectral_anchor
from mambacode.spectral.regularizer import ANCHOR_FILE


class RandomTokens(torch.utils.data.Dataset):
    """A handful of random sequences with MLM-style labels (every 4th token predicted)."""

    def __init__(self, n=8, length=16, vocab=100):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, vocab, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        labels = torch.full_like(self.ids[i], -100)
        labels[::4] = self.ids[i, ::4]
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": labels}


def args(out, **kw):
    base = dict(output_dir=str(out), per_device_train_batch_size=4, max_steps=4, logging_steps=2,
                learning_rate=5e-2, report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
                dataloader_num_workers=0, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


def tiny(mixer="s4d", **kw):
    return MambaCodeConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, intermediate_size=64, mixer=mixer,
                           state_size=16, num_kernels=4 if mixer == "s4d" else 1, mamba_head_dim=8,
                           mamba_chunk_size=8, hf_conv=True, **kw)


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_spectrum_callback_logs_during_training(tmp_path):
    model = MambaCodeForMaskedLM(tiny())
    cb = SpectrumCallback(length=512)
    trainer = Trainer(model=model, args=args(tmp_path), train_dataset=RandomTokens(), callbacks=[cb])
    trainer.train()
    lines = read_jsonl(tmp_path / "spectrum_log.jsonl")
    assert [ln["step"] for ln in lines] == [0, 2, 4]  # train begin, two logging steps (end deduplicated)
    assert [ln["event"] for ln in lines] == ["train_begin", "log", "log"]
    assert len(lines[0]["kernels"]) == 2 * 2 * 4 + 2 * 2 * 8  # s4d kernels + hf_conv groups
    assert {"log10_lhfr", "centroid", "filter_class", "effective_receptive_field"} <= set(lines[1]["kernels"][0])
    # the kernels moved under lr 5e-2, and the drift scalars say so
    assert lines[-1]["scalars"]["spectrum/mean_abs_delta_log10_lhfr"] > 0
    logged = [h for h in trainer.state.log_history if "spectrum/L0_forward/log10_lhfr" in h]
    assert [h["step"] for h in logged] == [2, 4] and "loss" in logged[0]
    events = [f for root, _, files in os.walk(tmp_path / "runs" / "spectrum") for f in files
              if f.startswith("events.out.tfevents")]
    assert events, "TensorBoard event file missing"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "runs" / "spectrum"))
    acc.Reload()
    assert "spectrum/L1_backward/centroid" in acc.Tags()["scalars"]
    assert "spectrum/magnitude_responses" in acc.Tags()["images"]


def test_anchor_callback_saves_restores_and_regularises(tmp_path):
    model = MambaCodeForMaskedLM(tiny())
    enable_spectral_anchor(model, 1.0, length=64, capture=False)  # the callback records it at train begin
    first = SpectrumCallback(length=256, every_n_steps=2, log_images=False)
    trainer = Trainer(model=model, args=args(tmp_path, save_strategy="steps", save_steps=2),
                      train_dataset=RandomTokens(), callbacks=[SpectralAnchorCallback(), first])
    trainer.train()
    for folder in ("checkpoint-2", "checkpoint-4", "."):
        assert (tmp_path / folder / ANCHOR_FILE).is_file(), folder
    drift = [h["spectrum/anchor_drift"] for h in first.history]
    assert drift[0] == 0.0 and drift[-1] > 0  # the anchor is the step-0 spectrum
    anchor = {k: v["log_step"].clone() for k, v in get_spectral_anchor(model).items()}

    # resume from checkpoint-2 in a fresh model: the anchor comes back from the checkpoint folder,
    # not from the (already drifted) resumed weights
    resumed = MambaCodeForMaskedLM(tiny(spectral_anchor_weight=1.0, spectral_anchor_length=64))
    trainer = Trainer(model=resumed, args=args(tmp_path, max_steps=6, save_strategy="no"),
                      train_dataset=RandomTokens(), callbacks=[SpectralAnchorCallback()])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    for name, value in get_spectral_anchor(resumed).items():
        torch.testing.assert_close(value["log_step"], anchor[name])

    # no anchor file to resume from: refused rather than silently re-anchored
    os.remove(tmp_path / "checkpoint-4" / ANCHOR_FILE)
    fresh = MambaCodeForMaskedLM(tiny(spectral_anchor_weight=1.0))
    trainer = Trainer(model=fresh, args=args(tmp_path, max_steps=6, save_strategy="no"),
                      train_dataset=RandomTokens(), callbacks=[SpectralAnchorCallback()])
    with pytest.raises(FileNotFoundError, match=ANCHOR_FILE):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))


def test_callback_refuses_unsupported_and_mamba2_without_inputs(tmp_path):
    from transformers import RoFormerConfig, RoFormerForMaskedLM

    from mambacode.spectral import UnsupportedModelError

    rof = RoFormerForMaskedLM(RoFormerConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, embedding_size=16))
    trainer = Trainer(model=rof, args=args(tmp_path, max_steps=1), train_dataset=RandomTokens(),
                      callbacks=[SpectrumCallback()])
    with pytest.raises(UnsupportedModelError, match="mixer='mamba2'"):
        trainer.train()
    m2 = MambaCodeForMaskedLM(tiny("mamba2"))
    trainer = Trainer(model=m2, args=args(tmp_path, max_steps=1), train_dataset=RandomTokens(),
                      callbacks=[SpectrumCallback()])
    with pytest.raises(ValueError, match="inputs="):
        trainer.train()
    # with tokenized inputs it logs mamba2 kernels
    cb = SpectrumCallback(inputs={"input_ids": RandomTokens(n=3).ids}, log_images=False)
    trainer = Trainer(model=m2, args=args(tmp_path / "m2", max_steps=2, logging_steps=1),
                      train_dataset=RandomTokens(), callbacks=[cb])
    trainer.train()
    lines = read_jsonl(tmp_path / "m2" / "spectrum_log.jsonl")
    assert len(lines) == 3 and {k["kind"] for k in lines[0]["kernels"]} == {"mamba2", "hf_conv"}
