"""RoCoder retrieval head: transformers' RoFormer encoder as a bi-encoder, trained exactly like
`MambaCodeForRetrieval` (mean pooling over non-padding, L2-normalised, in-batch InfoNCE), so the
Transformer baseline differs from the SSM only in the encoder.

Saved folders load back with `RoCoderForRetrieval.from_pretrained` (with its head-free weights under the
`roformer.` prefix, so `AutoModel.from_pretrained` gives the plain `RoFormerModel` encoder too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import RoFormerConfig
from transformers.modeling_outputs import ModelOutput
from transformers.models.roformer.modeling_roformer import RoFormerModel, RoFormerPreTrainedModel


@dataclass
class RoCoderRetrievalOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    code_embeddings: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple | None = None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return hidden.mean(1)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class RoCoderForRetrieval(RoFormerPreTrainedModel):
    config_class = RoFormerConfig

    def __init__(self, config: RoFormerConfig):
        super().__init__(config)
        self.roformer = RoFormerModel(config)
        self.post_init()

    @property
    def temperature(self) -> float:
        return float(getattr(self.config, "retrieval_temperature", 0.05))

    def embed(self, input_ids, attention_mask=None, output_hidden_states=None):
        out = self.roformer(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=output_hidden_states, return_dict=True)
        return F.normalize(mean_pool(out.last_hidden_state, attention_mask).float(), dim=-1), out

    def forward(self, input_ids=None, attention_mask=None, code_input_ids=None, code_attention_mask=None,
                output_hidden_states=None, return_dict=None, return_loss: bool | None = True,
                **kwargs) -> RoCoderRetrievalOutput:
        # return_loss as in MambaCodeForRetrieval: True by default, so Trainer.evaluate() reports eval_loss
        emb, out = self.embed(input_ids, attention_mask, output_hidden_states)
        code_emb = logits = loss = None
        if code_input_ids is not None:
            code_emb, _ = self.embed(code_input_ids, code_attention_mask)
            logits = emb @ code_emb.T / self.temperature
            if return_loss is not False:
                loss = F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))
        return RoCoderRetrievalOutput(loss=loss, embeddings=emb, code_embeddings=code_emb, logits=logits,
                                      last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states)


__all__ = ["RoCoderForRetrieval", "RoCoderRetrievalOutput", "mean_pool"]
