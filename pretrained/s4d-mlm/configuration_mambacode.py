"""MambaCodeConfig: one config for the bidirectional SSM code encoder with either sequence mixer.

Every field is validated at construction so that a bad combination fails with the field's name and the
allowed values, not deep inside a forward pass.
"""

from __future__ import annotations

import os

from transformers import PretrainedConfig

MIXERS = ("s4d", "mamba2")
MERGES = ("mul", "add")
POOLINGS = ("mean", "cls", "max")
KERNEL_CHOICES = ("auto", True, False)
SPECTRAL_ANCHOR_WEIGHTINGS = ("uniform", "low", "high", "bands")
POSITION_EMBEDDINGS = (None, "absolute")
#: a config describing more parameters + buffers than this is refused before anything is allocated (a damaged
#: or hostile config.json, e.g. num_hidden_layers=1000000); MAMBACODE_MAX_PARAMETERS raises it
MAX_PARAMETERS = 20_000_000_000
#: deeper stacks are refused too, whatever their width (building a module per layer is what takes the time)
MAX_LAYERS = 1024


class MambaCodeConfig(PretrainedConfig):
    r"""Configuration of a MambaCode encoder (a BiGS/CodeSSM stack, PAPER.md section 2).

    Args:
        vocab_size, hidden_size, num_hidden_layers, intermediate_size, pad_token_id, layer_norm_eps,
        hidden_dropout_prob, initializer_range: as in transformers' BERT-style configs.
        max_position_embeddings: longest sequence accepted. There are no position embeddings (the SSM
            encodes order); longer inputs are rejected with a clear error, or, for `encode`, truncated.
        mixer: `"s4d"` (LTI diagonal S4D long convolution, the faithful CodeSSM layer) or `"mamba2"`
            (selective SSD scan, Mamba-2), each bidirectional with its own parameters per direction.
        state_size: SSM state size N (S4D: N/2 complex conjugate modes; Mamba-2: size of B and C).
        num_kernels: S4D only: G independent kernels per direction over contiguous channel groups
            (1 = CodeSSM, hidden_size = one kernel per channel). Must divide hidden_size.
        ssm_dt_min, ssm_dt_max: range of the log-uniform initial S4D step size.
        mamba_dt_min, mamba_dt_max: range of the log-uniform initial Mamba-2 step size (softplus(dt_bias)).
        mamba_head_dim: Mamba-2 head dimension P (hidden_size / P heads per direction).
        mamba_chunk_size: chunk length of the Mamba-2 chunked scan.
        use_mamba_kernels: `"auto"` uses mamba-ssm's Triton SSD kernel when it imports and the input is on
            CUDA; `True` requires it (error if unavailable on a CUDA input; CPU inputs use it too when
            `TRITON_INTERPRET=1` runs Triton's interpreter, for tests); `False` always uses pure torch.
        direction_merge: `"mul"` (BiGS, elementwise product of the two directions) or `"add"`.
        hf_conv: add the high-frequency path (a grouped short convolution beside each direction's SSM,
            PAPER.md section 5), output scale initialised to zero.
        hf_conv_kernel_size, hf_conv_groups: its kernel size (odd, 'same' padding) and groups.
        hf_conv_layers: layer indices carrying the path (None = all layers).
        pooling: how `MambaCodeForRetrieval` pools token states (`"mean"` over non-padding, `"cls"`, `"max"`).
        retrieval_temperature: InfoNCE temperature; `learnable_temperature` makes it a parameter.
        spectral_anchor_weight: weight of the spectral-preserving regulariser (0 disables it; see
            `mambacode.spectral`).
        spectral_anchor_length: kernel length L at which the regulariser compares log-magnitude spectra
            (L // 2 + 1 frequency bins; longer is closer to the L = 4096 analysis, shorter is cheaper).
        spectral_anchor_weighting: frequency weighting of the drift: `"uniform"`, `"low"` (linear ramp, 1 at
            DC to 0 at Nyquist), `"high"` (the reverse ramp) or `"bands"` (only the two LHFR bands).

    Fields for converted checkpoints (`mambacode convert bigs`); their defaults leave every MambaCode model as is:
        s4d_conjugate_pairs: True: the S4D state of size N is N/2 complex modes, each standing for a conjugate
            pair, so K = 2 Re(sum ...). False (BiGS): N complex modes read as they are, K = Re(sum ...).
        position_embedding_type: None (the SSM encodes order) or `"absolute"` (BiGS: a learned table of
            max_position_embeddings rows added to the token embeddings; positions 0..L-1, right padding).
        type_vocab_size: 0 (no token types; `token_type_ids` must then be None or all zeros) or the number of
            token types of a learned token-type table (BiGS/BERT: 2).
        embedding_layer_norm: a LayerNorm over the summed embeddings (BiGS) before the first layer.
        final_layer_norm: the LayerNorm after the last layer (MambaCode); BiGS has none.
    """

    model_type = "mambacode"
    # Trainer leaves these out of the predictions it gathers for compute_metrics (token states of every
    # batch would be padded and concatenated for nothing); the heads' logits and embeddings stay
    keys_to_ignore_at_inference = ["last_hidden_state", "hidden_states"]

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 8192,
        mixer: str = "s4d",
        state_size: int = 64,
        num_kernels: int = 1,
        ssm_dt_min: float = 0.01,
        ssm_dt_max: float = 1.0,
        mamba_head_dim: int = 64,
        mamba_chunk_size: int = 64,
        mamba_dt_min: float = 0.001,
        mamba_dt_max: float = 0.1,
        use_mamba_kernels="auto",
        direction_merge: str = "mul",
        hf_conv: bool = False,
        hf_conv_kernel_size: int = 3,
        hf_conv_groups: int = 8,
        hf_conv_layers: list[int] | None = None,
        pooling: str = "mean",
        retrieval_temperature: float = 0.05,
        learnable_temperature: bool = False,
        spectral_anchor_weight: float = 0.0,
        spectral_anchor_length: int = 1024,
        spectral_anchor_weighting: str = "uniform",
        hidden_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        pad_token_id: int = 1,
        bos_token_id: int = 0,
        eos_token_id: int = 2,
        tie_word_embeddings: bool = True,
        s4d_conjugate_pairs: bool = True,
        position_embedding_type: str | None = None,
        type_vocab_size: int = 0,
        embedding_layer_norm: bool = False,
        final_layer_norm: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.mixer = mixer
        self.state_size = state_size
        self.num_kernels = num_kernels
        self.ssm_dt_min = ssm_dt_min
        self.ssm_dt_max = ssm_dt_max
        self.mamba_head_dim = mamba_head_dim
        self.mamba_chunk_size = mamba_chunk_size
        self.mamba_dt_min = mamba_dt_min
        self.mamba_dt_max = mamba_dt_max
        self.use_mamba_kernels = use_mamba_kernels
        self.direction_merge = direction_merge
        self.hf_conv = hf_conv
        self.hf_conv_kernel_size = hf_conv_kernel_size
        self.hf_conv_groups = hf_conv_groups
        self.hf_conv_layers = list(hf_conv_layers) if hf_conv_layers is not None else None
        self.pooling = pooling
        self.retrieval_temperature = retrieval_temperature
        self.learnable_temperature = learnable_temperature
        self.spectral_anchor_weight = spectral_anchor_weight
        self.spectral_anchor_length = spectral_anchor_length
        self.spectral_anchor_weighting = spectral_anchor_weighting
        self.hidden_dropout_prob = hidden_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.s4d_conjugate_pairs = s4d_conjugate_pairs
        self.position_embedding_type = position_embedding_type
        self.type_vocab_size = type_vocab_size
        self.embedding_layer_norm = embedding_layer_norm
        self.final_layer_norm = final_layer_norm
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_fields()

    # ------------------------------------------------------------------ validation
    def validate_fields(self) -> None:
        """Raise ValueError naming the field, its value and what is allowed."""

        def fail(field, value, allowed):
            raise ValueError(f"MambaCodeConfig.{field}={value!r} is invalid: expected {allowed}.")

        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                      "max_position_embeddings", "state_size", "num_kernels", "mamba_head_dim",
                      "mamba_chunk_size", "hf_conv_kernel_size", "hf_conv_groups"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(field, value, "a positive integer")
        if self.mixer not in MIXERS:
            fail("mixer", self.mixer, f"one of {MIXERS}")
        if self.direction_merge not in MERGES:
            fail("direction_merge", self.direction_merge, f"one of {MERGES}")
        if self.pooling not in POOLINGS:
            fail("pooling", self.pooling, f"one of {POOLINGS}")
        if not any(self.use_mamba_kernels is c or self.use_mamba_kernels == c for c in KERNEL_CHOICES):
            fail("use_mamba_kernels", self.use_mamba_kernels, "'auto', True or False")
        d = self.hidden_size
        if self.mixer == "s4d":
            if d % self.num_kernels:
                fail("num_kernels", self.num_kernels, f"a divisor of hidden_size={d} (1 = one shared kernel, "
                     f"{d} = one kernel per channel)")
            if self.s4d_conjugate_pairs and self.state_size % 2:
                fail("state_size", self.state_size, "an even number for mixer='s4d' with s4d_conjugate_pairs=True "
                     "(N/2 conjugate mode pairs)")
        else:
            if self.num_kernels != 1:
                fail("num_kernels", self.num_kernels, "1 for mixer='mamba2' (its heads already give "
                     "independent kernels; num_kernels applies to mixer='s4d')")
            if d % self.mamba_head_dim:
                fail("mamba_head_dim", self.mamba_head_dim, f"a divisor of hidden_size={d}")
        for lo, hi in (("ssm_dt_min", "ssm_dt_max"), ("mamba_dt_min", "mamba_dt_max")):
            if not 0 < getattr(self, lo) <= getattr(self, hi):
                fail(f"{lo}/{hi}", (getattr(self, lo), getattr(self, hi)), f"0 < {lo} <= {hi}")
        if self.hf_conv_kernel_size % 2 == 0:
            fail("hf_conv_kernel_size", self.hf_conv_kernel_size, "an odd integer ('same' padding)")
        if d % self.hf_conv_groups:
            fail("hf_conv_groups", self.hf_conv_groups, f"a divisor of hidden_size={d}")
        if self.hf_conv_layers is not None:
            bad = [i for i in self.hf_conv_layers
                   if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.num_hidden_layers]
            if bad:
                fail("hf_conv_layers", self.hf_conv_layers,
                     f"None or layer indices in [0, {self.num_hidden_layers - 1}]")
        for flag in ("s4d_conjugate_pairs", "embedding_layer_norm", "final_layer_norm"):
            if not isinstance(getattr(self, flag), bool):
                fail(flag, getattr(self, flag), "True or False")
        if self.position_embedding_type not in POSITION_EMBEDDINGS:
            fail("position_embedding_type", self.position_embedding_type, f"one of {POSITION_EMBEDDINGS}")
        if (isinstance(self.type_vocab_size, bool) or not isinstance(self.type_vocab_size, int)
                or self.type_vocab_size < 0):
            fail("type_vocab_size", self.type_vocab_size, "an integer >= 0 (0 = no token-type embeddings)")
        if not self.retrieval_temperature > 0:
            fail("retrieval_temperature", self.retrieval_temperature, "a positive float")
        if self.spectral_anchor_weight < 0:
            fail("spectral_anchor_weight", self.spectral_anchor_weight, "a float >= 0")
        if (isinstance(self.spectral_anchor_length, bool) or not isinstance(self.spectral_anchor_length, int)
                or self.spectral_anchor_length < 8):
            fail("spectral_anchor_length", self.spectral_anchor_length, "an integer >= 8")
        if self.spectral_anchor_weighting not in SPECTRAL_ANCHOR_WEIGHTINGS:
            fail("spectral_anchor_weighting", self.spectral_anchor_weighting,
                 f"one of {SPECTRAL_ANCHOR_WEIGHTINGS}")
        if self.num_hidden_layers > MAX_LAYERS:
            fail("num_hidden_layers", self.num_hidden_layers, f"at most {MAX_LAYERS} layers (is config.json damaged?)")
        limit = max_parameters()
        size = self.estimated_size()
        if size > limit:
            raise ValueError(
                f"MambaCodeConfig describes about {size:,} parameters and buffers (vocab_size={self.vocab_size}, "
                f"hidden_size={self.hidden_size}, num_hidden_layers={self.num_hidden_layers}, intermediate_size="
                f"{self.intermediate_size}, state_size={self.state_size}), over the limit of {limit:,}: expected a "
                "realistic size (is config.json damaged?); set MAMBACODE_MAX_PARAMETERS to allow more.")

    def estimated_size(self) -> int:
        """An upper estimate of the parameters and buffers of the largest head for this config, from the
        sizes alone (nothing is built): what `validate_fields` compares with `MAX_PARAMETERS`."""
        d, inner, n = self.hidden_size, self.intermediate_size, self.state_size
        embeddings = (self.vocab_size + self.type_vocab_size + (self.max_position_embeddings
                                                                  if self.position_embedding_type else 0)) * d
        head = d * d + 2 * d + self.vocab_size * (d + 1)  # the MLM head (untied, at worst)
        heads = max(1, d // self.mamba_head_dim)
        mixer = 2 * (d * (2 * n + heads) + 2 * n + heads) + 6 * heads if self.mixer == "mamba2" else \
            2 * self.num_kernels * (2 + 4 * n)
        conv = 2 * d * (2 * d // max(1, 2 * self.hf_conv_groups)) * self.hf_conv_kernel_size + 2 * d
        layer = 2 * d + 4 * (d * d + d) + 3 * d * inner + 2 * inner + d + mixer + (conv if self.hf_conv else 0)
        kernels = self.num_kernels if self.mixer == "s4d" else heads
        anchor = 2 * kernels * (self.spectral_anchor_length // 2 + 2) if self.spectral_anchor_weight else 0
        return embeddings + head + self.num_hidden_layers * (layer + anchor) + 2 * d


    def layer_has_hf_conv(self, layer_idx: int) -> bool:
        return bool(self.hf_conv) and (self.hf_conv_layers is None or layer_idx in self.hf_conv_layers)

    # ------------------------------------------------------------------ parameter matching
    @classmethod
    def parameter_matched(cls, baseline: "MambaCodeConfig", tolerance: float = 0.02, multiple_of: int = 8,
                          **changes) -> "MambaCodeConfig":
        """Return `baseline` with `changes` applied, at the parameter count of `baseline`.

        As the paper does for CodeSSM-HF (12 -> 11 layers), the depth is chosen first: the one whose count
        is closest to the baseline's. If that is still more than `tolerance` away (at BERT-base width a
        kernel-3 groups-8 path costs about half a layer, so 11 layers land 3% low), `intermediate_size` is
        then adjusted, in steps of `multiple_of`, to absorb the rest. Counts are exact (meta-device build).
        Raises ValueError if the result is not within `tolerance`.
        """
        from .modeling_mambacode import count_parameters  # local import: config must not need the model

        target = count_parameters(baseline)
        fields = baseline.to_dict()
        for key in ("auto_map", "architectures", "transformers_version", "model_type", "num_hidden_layers"):
            fields.pop(key, None)
        fields.update(changes)

        def build(depth, **extra):
            cand = dict(fields, **extra)
            if cand.get("hf_conv_layers") is not None:
                cand["hf_conv_layers"] = [i for i in cand["hf_conv_layers"] if i < depth]
            config = cls(num_hidden_layers=depth, **cand)
            return config, abs(count_parameters(config) - target) / target

        best, rel = min((build(depth) for depth in range(1, 2 * baseline.num_hidden_layers + 2)),
                        key=lambda pair: pair[1])
        if rel > tolerance:
            # parameters are affine in intermediate_size: solve for it, then round to `multiple_of`
            inner = best.intermediate_size
            lo = count_parameters(best)
            hi = count_parameters(build(best.num_hidden_layers, intermediate_size=inner + multiple_of)[0])
            per_step = (hi - lo) / multiple_of
            wanted = inner + (target - lo) / per_step
            candidates = {max(multiple_of, int(wanted // multiple_of) * multiple_of + k * multiple_of) for k in (0, 1)}
            best, rel = min((build(best.num_hidden_layers, intermediate_size=i) for i in candidates),
                            key=lambda pair: pair[1])
        if rel > tolerance:
            raise ValueError(
                f"parameter_matched: cannot reach the baseline's {target:,} parameters within {tolerance:.2%}; "
                f"the closest is {best.num_hidden_layers} layers, intermediate_size={best.intermediate_size} "
                f"at {rel:.2%}."
            )
        return best


def max_parameters() -> int:
    """`MAX_PARAMETERS`, or the MAMBACODE_MAX_PARAMETERS environment variable when set to an integer."""
    value = os.environ.get("MAMBACODE_MAX_PARAMETERS", "").replace("_", "")
    return int(value) if value.isdigit() else MAX_PARAMETERS


__all__ = ["MambaCodeConfig", "MAX_LAYERS", "MAX_PARAMETERS"]
