"""The distillation objective: match the teacher's embeddings, keep a contrastive term, and match the teacher's
in-batch similarity structure.

    loss = w_match * (cos-distance(P s_q, t_q) + cos-distance(P s_c, t_c)) / 2
         + w_contrast * InfoNCE(s_q, s_c)                          (query i's positive is code i)
         + w_listwise * KL(softmax(t_q t_c^T / tau) || softmax(s_q s_c^T / tau))   (row-wise)

`s` are the student's L2-normalised embeddings, `t` the teacher's, `P` a linear map from the student's width to
the teacher's 384 (trained with the student, kept beside it but not part of the saved model: retrieval uses `s` itself, which the
contrastive and listwise terms shape directly). The cosine distance 1 - cos equals half the squared distance
of unit vectors, i.e. sentence-transformers' `MSELoss` up to a constant factor. In-batch entries whose code or
query text equals the positive's are masked out of both softmaxes (no false negatives).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossWeights:
    match: float = 1.0
    contrast: float = 1.0
    listwise: float = 1.0
    temperature: float = 0.05  # the student's InfoNCE and listwise temperature
    teacher_temperature: float = 0.05  # sharpness of the teacher's in-batch distribution

    def __post_init__(self):
        for name in ("match", "contrast", "listwise"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossWeights.{name}={getattr(self, name)} is invalid: weights are >= 0")
        if self.match == self.contrast == self.listwise == 0:
            raise ValueError("LossWeights: every weight is 0; nothing would be trained")
        for name in ("temperature", "teacher_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LossWeights.{name}={getattr(self, name)} is invalid: expected > 0")


def false_negative_mask(query_groups: torch.Tensor, code_groups: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: True where entry (i, j), j != i, shares query i's code or query text (to be masked)."""
    same = (code_groups[:, None] == code_groups[None, :]) | (query_groups[:, None] == query_groups[None, :])
    return same & ~torch.eye(len(code_groups), dtype=torch.bool, device=code_groups.device)


def distillation_loss(s_q, s_c, p_q, p_c, t_q, t_c, query_groups, code_groups, w: LossWeights) -> dict:
    """{'loss', 'match', 'contrast', 'listwise'}: see the module docstring. `s_*` (B, d) student embeddings
    (unit), `p_*` (B, 384) their projections (any norm), `t_*` (B, 384) teacher targets (unit)."""
    parts = {}
    parts["match"] = ((1 - F.cosine_similarity(p_q.float(), t_q.float(), dim=-1)).mean()
                      + (1 - F.cosine_similarity(p_c.float(), t_c.float(), dim=-1)).mean()) / 2
    mask = false_negative_mask(query_groups, code_groups)
    logits = (s_q.float() @ s_c.float().T / w.temperature).masked_fill(mask, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    parts["contrast"] = F.cross_entropy(logits, target)
    teacher = (t_q.float() @ t_c.float().T / w.teacher_temperature).masked_fill(mask, float("-inf"))
    t_prob = teacher.softmax(-1)
    log_s = logits.log_softmax(-1)
    log_t = teacher.log_softmax(-1)
    # KL(t || s) row-wise, with 0 * log 0 = 0 on the masked entries
    kl = torch.where(t_prob > 0, t_prob * (log_t - log_s), torch.zeros_like(t_prob)).sum(-1)
    parts["listwise"] = kl.mean()
    parts["loss"] = w.match * parts["match"] + w.contrast * parts["contrast"] + w.listwise * parts["listwise"]
    return parts
