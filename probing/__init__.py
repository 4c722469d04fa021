"""mambacode.probing: what an encoder knows about code (AST distance, siblings, data flow).

Labels come from tree-sitter (`code_graph`), features from any Hugging Face encoder's hidden states
(`extract_token_features`), and the geometry is read by `DirectProbe` and a linear probe with control
tasks. `ProbeCallback` runs the same probes during `Trainer` fine-tuning.
"""

from .callback import ProbeCallback
from .code_graph import COMES_FROM, COMPUTED_FROM, CodeGraph, Token, code_graph
from .directprobe import DirectProbe
from .features import (alignment_matrix, cached_token_features, check_tokenizer, extract_token_features,
                       model_key, pair_features)
from .hull import hull_hull_distance, point_hull_distances, separable
from ..languages import SUPPORTED_LANGUAGES
from .linear import control_labels, logistic_probe, probe_with_control
from .report import plot_layers, save_report, summary_table
from .runner import probe_layers, probe_models
from .sampling import TASKS, ProbeSet, build_probe_set

__all__ = [
    "COMES_FROM", "COMPUTED_FROM", "CodeGraph", "DirectProbe", "ProbeCallback", "ProbeSet", "SUPPORTED_LANGUAGES",
    "TASKS", "Token", "alignment_matrix", "build_probe_set", "cached_token_features", "check_tokenizer",
    "code_graph", "control_labels", "extract_token_features", "hull_hull_distance", "logistic_probe", "model_key",
    "pair_features", "plot_layers", "point_hull_distances", "probe_layers", "probe_models", "probe_with_control",
    "save_report", "separable", "summary_table",
]
