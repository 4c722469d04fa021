"""mambacode.training: the glue between the model, the corpora and `transformers.Trainer`.

Collators, local `evaluate` metric modules (MRR & co. over a whole pool, type-inference F1), Trainer
callbacks (NaN guard; the probing and spectral callbacks re-exported lazily), model construction for
MambaCode and the RoCoder (RoFormer) baseline, data validation and model cards. Heavy imports are lazy so
`import mambacode.training` stays cheap.
"""

from importlib import import_module

_EXPORTS = {
    "DataCollatorForRetrieval": "collators",
    "DataCollatorForTypeInference": "collators",
    "mlm_collator": "collators",
    "tokenize_and_align_labels": "collators",
    "tokenize_retrieval_pairs": "collators",
    "group_texts": "collators",
    "load_metric": "metrics_loader",
    "metric_path": "metrics_loader",
    "retrieval_metrics": "metrics_loader",
    "retrieval_pool": "evaluation",
    "evaluate_retrieval": "evaluation",
    "NonFiniteLossError": "callbacks",
    "NaNGuardCallback": "callbacks",
    "GuardedTrainer": "callbacks",
    "ProbeCallback": "callbacks",
    "SpectrumCallback": "callbacks",
    "DataValidationError": "validation",
    "require_columns": "validation",
    "check_tokenizer_matches_model": "validation",
    "build_model": "models",
    "ModelArguments": "models",
    "RoCoderForRetrieval": "rocoder",
    "write_model_card": "model_card",
    "render_model_card": "model_card",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
