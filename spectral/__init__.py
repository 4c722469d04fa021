"""mambacode.spectral: SSM-Interpret, the frequency-domain view of MambaCode kernels (PAPER.md sections 4-5).

- `extract_kernels(model, length=4096, inputs=None)`: one `KernelRecord` per layer x direction x kernel
  group / head (s4d exact, mamba2 input-dependent effective kernel, hf_conv response).
- `spectrum_metrics(kernel, **thresholds)`: dominant frequency, centroid, LHFR, class, receptive field.
- `spectrum_report`, `shift_report`, `write_report`: per-checkpoint and pretrained-vs-fine-tuned reports.
- `SpectrumCallback`: the same measurements logged during `Trainer` fine-tuning.
- transformers' own `MambaModel` / `Mamba2Model` (and heads) are read too (`spectral.hf_mamba`), and
  `attention_matrices(model, code, tokenizer)` returns the effective attention matrices of selective layers
  on one input (`spectral.attention`; `plots.plot_attention_matrices` draws them).
- The spectral-preserving regulariser is model state, not part of this package: set
  `config.spectral_anchor_weight > 0` and call `model.record_spectral_anchor()` (see
  `mambacode.modeling.spectral_anchor`); `SpectrumCallback` logs its drift.
Figures (`mambacode.spectral.plots`) import matplotlib on first use only.
"""

from .attention import AttentionMatrix, attention_matrices
from .callback import SpectrumCallback
from .kernels import KernelRecord, UnsupportedModelError, extract_kernels, find_encoder, mixer_kind
from .metrics import Thresholds, classify, magnitude_response, spectrum_metrics, spectrum_metrics_batch
from .report import (
    ArchitectureMismatchError,
    ShiftReport,
    SpectrumReport,
    check_same_architecture,
    compare_reports,
    shift_report,
    spectrum_report,
    write_report,
)
from .snippets import DEFAULT_SNIPPETS

__all__ = [
    "extract_kernels",
    "KernelRecord",
    "attention_matrices",
    "AttentionMatrix",
    "find_encoder",
    "mixer_kind",
    "UnsupportedModelError",
    "spectrum_metrics",
    "spectrum_metrics_batch",
    "magnitude_response",
    "classify",
    "Thresholds",
    "spectrum_report",
    "shift_report",
    "compare_reports",
    "write_report",
    "check_same_architecture",
    "SpectrumReport",
    "ShiftReport",
    "ArchitectureMismatchError",
    "SpectrumCallback",
    "DEFAULT_SNIPPETS",
]
