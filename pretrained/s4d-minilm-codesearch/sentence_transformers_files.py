"""The files that make a saved retrieval folder a sentence-transformers model too.

`SentenceTransformer(folder, trust_remote_code=True)` reads `modules.json` (Transformer -> Pooling ->
Normalize), the pooling mode, the maximum length and the similarity function from these files. They are
written in the long-standing format (the one sentence-transformers 2.x wrote and every later version still
reads), so the folder loads with old and new versions alike, offline. Plain JSON: no sentence-transformers
import here (this file is copied next to the weights for remote code, like every file in `modeling/`).
"""

from __future__ import annotations

import json
import os

# Hub metadata tags of a folder these files are in (the model card writer adds them to its tags).
SENTENCE_TRANSFORMERS_TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction")

# config.pooling -> the sentence-transformers Pooling flag that computes the same vector
POOLING_FLAGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
ALL_POOLING_FLAGS = (*POOLING_FLAGS.values(), "pooling_mode_mean_sqrt_len_tokens")

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=2)
        fh.write("\n")


def write_sentence_transformers_files(folder: str, config) -> None:
    """Write modules.json, sentence_bert_config.json, 1_Pooling/config.json and (if absent)
    config_sentence_transformers.json into `folder` for a model pooling with `config.pooling`.

    `config_sentence_transformers.json` is left alone when it exists: `SentenceTransformer.save` writes it
    (with the user's prompts) before it saves the model, and this function runs inside that save.
    """
    if config.pooling not in POOLING_FLAGS:
        raise ValueError(f"config.pooling={config.pooling!r} has no sentence-transformers equivalent: expected "
                         f"one of {tuple(POOLING_FLAGS)}.")
    _write_json(os.path.join(folder, "modules.json"), MODULES)
    # encode() truncates to max_position_embeddings by default; sentence-transformers does the same with this
    _write_json(os.path.join(folder, "sentence_bert_config.json"),
                {"max_seq_length": int(config.max_position_embeddings), "do_lower_case": False})
    pooling_dir = os.path.join(folder, "1_Pooling")
    os.makedirs(pooling_dir, exist_ok=True)
    pooling = {"word_embedding_dimension": int(config.hidden_size)}
    pooling.update({flag: flag == POOLING_FLAGS[config.pooling] for flag in ALL_POOLING_FLAGS})
    _write_json(os.path.join(pooling_dir, "config.json"), pooling)
    model_config = os.path.join(folder, "config_sentence_transformers.json")
    if not os.path.exists(model_config):
        _write_json(model_config, {"model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
                                   "similarity_fn_name": "cosine"})


__all__ = ["SENTENCE_TRANSFORMERS_TAGS", "POOLING_FLAGS", "write_sentence_transformers_files"]
