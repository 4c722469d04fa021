"""mambacode.corpus: code corpora built offline from installed source code.

Sources (standard library, installed packages, user directories, npm tarballs) are parsed with
tree-sitter into four Hugging Face datasets: ``retrieval`` (docstring -> function pairs),
``retrieval_adv`` (AdvTest-style obfuscated test split), ``long_context`` (module/class documents
queried by the docstrings inside) and ``type_inference`` (word-level type labels). A byte-level BPE
tokenizer can then be trained on the result, and `read_snippets` reads code back for probes and spectra.
"""

from .build import TASKS, BuildConfig, CorpusBuild, build_corpus, corpus_is_complete, read_manifest
from .long_context import LongContextConfig, crop_to_functions, function_window
from .obfuscate import obfuscate, obfuscate_training_codes
from .pairs import PairFilters
from .snippets import FunctionSpan, extract_functions, read_snippets, split_functions
from .sources import CORPUS_PACKAGES, CORPUS_PINS, collect_tasks, missing_corpus_packages
from .splits import assign_splits
from .tokenizer import corpus_texts, train_tokenizer
from .types import align_labels_with_tokens

__all__ = [
    "CORPUS_PACKAGES", "CORPUS_PINS", "BuildConfig", "CorpusBuild", "FunctionSpan", "extract_functions", "LongContextConfig", "PairFilters", "TASKS",
    "align_labels_with_tokens", "assign_splits", "build_corpus", "collect_tasks", "corpus_is_complete",
    "corpus_texts", "missing_corpus_packages", "crop_to_functions", "function_window", "obfuscate", "obfuscate_training_codes", "read_manifest", "read_snippets",
    "split_functions", "train_tokenizer",
]
