"""Shared test setup: offline, deterministic, small thread pools; GPU tests skipped without CUDA."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def tiny_config(mixer: str = "s4d", **overrides):
    """A MambaCodeConfig small enough for CPU tests: width 32, 2 layers; `overrides` replace any field."""
    from mambacode import MambaCodeConfig

    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, intermediate_size=64, mixer=mixer,
                  state_size=16, num_kernels=4 if mixer == "s4d" else 1, mamba_head_dim=8, mamba_chunk_size=8)
    fields.update(overrides)
    return MambaCodeConfig(**fields)


@pytest.fixture(scope="session")
def tiny():
    """The tiny-config factory: `tiny(mixer="s4d", **overrides)` -> MambaCodeConfig."""
    return tiny_config


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE tokenizer (100 ids, no post-processor: an empty string has no tokens), trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=100, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["def add(a, b):\n    return a + b", "for i in range(10): print(i)", "class A: pass",
              "x = '\u00e9\U0001f600'"] * 20
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>")
