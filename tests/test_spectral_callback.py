"""SpectrumCallback during a tiny CPU Trainer run; the spectral anchor through checkpoints and resume."""

import functools
import json
import os

import pytest
import torch
from transformers import Trainer, TrainingArguments

from mambacode import MambaCodeForMaskedLM
from mambacode.spectral import SpectrumCallback


@pytest.fixture
def tiny(tiny):
    """The shared tiny config, with the hf_conv path."""
    return functools.partial(tiny, hf_conv=True)


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


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_spectrum_callback_logs_during_training(tmp_path, tiny):
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


def test_anchor_is_saved_in_checkpoints_and_restored_on_resume(tmp_path, tiny):
    from safetensors.torch import load_file, save_file

    model = MambaCodeForMaskedLM(tiny(spectral_anchor_weight=1.0, spectral_anchor_length=64))
    model.record_spectral_anchor()
    anchor = model.base_model.spectral_anchor.log_power.clone()
    first = SpectrumCallback(length=256, every_n_steps=2, log_images=False)
    trainer = Trainer(model=model, args=args(tmp_path, save_strategy="steps", save_steps=2),
                      train_dataset=RandomTokens(), callbacks=[first])
    trainer.train()
    key = "mambacode.spectral_anchor.log_power"
    for folder in ("checkpoint-2", "checkpoint-4"):  # the anchor is part of every checkpoint's weights
        torch.testing.assert_close(load_file(tmp_path / folder / "model.safetensors")[key], anchor, rtol=0, atol=0)
        assert (tmp_path / folder / "checksums.sha256").is_file()  # Trainer saves through save_pretrained
    drift = [h["spectrum/anchor_drift"] for h in first.history]
    assert drift[0] == 0.0 and drift[-1] > 0  # the anchor is the step-0 spectrum, and it regularised a moving model

    # resume from checkpoint-2 in a fresh model that has recorded nothing: the anchor comes back from the
    # checkpoint, not from the (already drifted) resumed weights
    resumed = MambaCodeForMaskedLM(tiny(spectral_anchor_weight=1.0, spectral_anchor_length=64))
    assert not resumed.has_spectral_anchor()
    trainer = Trainer(model=resumed, args=args(tmp_path, max_steps=6, save_strategy="no"),
                      train_dataset=RandomTokens())
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    torch.testing.assert_close(resumed.base_model.spectral_anchor.log_power, anchor, rtol=0, atol=0)

    # a checkpoint that lost its anchor: refused at the first training step, naming the remedy
    weights = load_file(tmp_path / "checkpoint-4" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "spectral_anchor" not in k},
              tmp_path / "checkpoint-4" / "model.safetensors", metadata={"format": "pt"})
    fresh = MambaCodeForMaskedLM(tiny(spectral_anchor_weight=1.0, spectral_anchor_length=64))
    trainer = Trainer(model=fresh, args=args(tmp_path, max_steps=6, save_strategy="no"),
                      train_dataset=RandomTokens())
    with pytest.raises(ValueError, match="record_spectral_anchor"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))


def test_callback_refuses_unsupported_and_mamba2_without_inputs(tmp_path, tiny):
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
