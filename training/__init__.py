"""mambacode.training: the glue between the model, the corpora and `transformers.Trainer`.

The training entry points as library functions (`run_mlm`, `run_retrieval`, `run_type_inference`, each
returning a typed result), the reproduction pipeline (`mambacode.training.pipeline`), collators, local
`evaluate` metric modules (MRR & co. over a whole pool, type-inference F1), the NaN-guarded Trainer, model
construction for MambaCode and the RoCoder (RoFormer) baseline, data validation and model cards.
"""

from .callbacks import GuardedTrainer, NaNGuardCallback, NonFiniteLossError
from .collators import (DataCollatorForMaskedLM, DataCollatorForRetrieval, MaskingEpochCallback, add_example_index, group_texts, tokenize_and_align_labels,
                        tokenize_retrieval_pairs)
from .entry_points import (MLMDataArguments, MLMResult, RetrievalDataArguments, RetrievalResult,
                           TypeInferenceDataArguments, TypeInferenceResult, run_mlm, run_retrieval, run_type_inference)
from .evaluation import evaluate_retrieval, retrieval_pool
from .metrics_loader import load_metric, metric_path, retrieval_metrics
from .model_card import render_model_card, write_model_card
from .models import ModelArguments, build_model
from .rocoder import RoCoderForRetrieval
from .script_utils import RunArguments
from .validation import DataValidationError, check_tokenizer_matches_model, require_columns

__all__ = ["DataCollatorForMaskedLM", "DataCollatorForRetrieval",
           "DataValidationError", "GuardedTrainer", "MaskingEpochCallback", "add_example_index",
           "MLMDataArguments", "MLMResult", "ModelArguments", "NaNGuardCallback", "NonFiniteLossError",
           "RetrievalDataArguments", "RetrievalResult", "RoCoderForRetrieval", "RunArguments",
           "TypeInferenceDataArguments", "TypeInferenceResult", "build_model", "check_tokenizer_matches_model",
           "evaluate_retrieval", "group_texts", "load_metric", "metric_path", "render_model_card",
           "require_columns", "retrieval_metrics", "retrieval_pool", "run_mlm", "run_retrieval",
           "run_type_inference", "tokenize_and_align_labels", "tokenize_retrieval_pairs", "write_model_card"]
