"""mambacode.modeling: config, sequence mixers and PreTrainedModel classes, registered with Auto*.

`AutoModel` maps to `MambaCodeForRetrieval` (the design card's model); its outputs carry the token states
too, and `MambaCodeModel` stays importable as the bare encoder.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_mambacode import MambaCodeConfig
from .mamba2 import BiMamba2Mixer, mamba_chunk_scan_kernel, ssd_chunked_scan
from .modeling_mambacode import (
    MambaCodeForMaskedLM,
    MambaCodeForRetrieval,
    MambaCodeForSequenceClassification,
    MambaCodeForTokenClassification,
    MambaCodeModel,
    MambaCodeModelOutput,
    MambaCodePreTrainedModel,
    MambaCodeRetrievalOutput,
    SENTENCE_TRANSFORMERS_TAGS,
    count_parameters,
    encode_texts,
    pool,
)
from .s4d import S4DKernel, S4DMixer


def _register() -> None:
    """Register with transformers' Auto* factories (in-process) and for remote-code saving."""
    pairs = [
        (AutoModel, MambaCodeForRetrieval),
        (AutoModelForMaskedLM, MambaCodeForMaskedLM),
        (AutoModelForTokenClassification, MambaCodeForTokenClassification),
        (AutoModelForSequenceClassification, MambaCodeForSequenceClassification),
    ]
    try:
        AutoConfig.register(MambaCodeConfig.model_type, MambaCodeConfig)
    except ValueError:  # already registered (module reloaded)
        pass
    MambaCodeConfig.register_for_auto_class("AutoConfig")
    for auto, cls in pairs:
        try:
            auto.register(MambaCodeConfig, cls)
        except ValueError:
            pass
        cls.register_for_auto_class(auto.__name__)
    MambaCodeModel.register_for_auto_class("AutoModel")


_register()

from .modeling_mambacode import __all__ as _model_classes

__all__ = [
    "MambaCodeConfig",
    *_model_classes,
    "S4DKernel",
    "S4DMixer",
    "BiMamba2Mixer",
    "ssd_chunked_scan",
    "mamba_chunk_scan_kernel",
]
