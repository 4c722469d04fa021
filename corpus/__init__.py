"""mambacode.corpus: code corpora built offline from installed source code.

Sources (standard library, installed packages, user directories, npm tarballs) are parsed with
tree-sitter into four Hugging Face datasets: ``retrieval`` (docstring -> function pairs),
``retrieval_adv`` (AdvTest-style obfuscated test split), ``long_context`` (module/class documents
queried by the docstrings inside) and ``type_inference`` (word-level type labels). A byte-level BPE
tokenizer can then be trained on the result.

Heavy dependencies (datasets, transformers) load on first use, so worker processes start fast.
"""

from importlib import import_module

_EXPORTS = {
    "build_corpus": "build",
    "BuildConfig": "build",
    "TASKS": "build",
    "PairFilters": "pairs",
    "LongContextConfig": "long_context",
    "CORPUS_PACKAGES": "sources",
    "collect_tasks": "sources",
    "obfuscate": "obfuscate",
    "assign_splits": "splits",
    "align_labels_with_tokens": "types",
    "train_tokenizer": "tokenizer",
    "corpus_texts": "tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
