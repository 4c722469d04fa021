"""Whole-pool retrieval evaluation (CodeSearchNet-style): every query is ranked against every distinct
candidate of the test split, not just its batch, and the local `mrr` metric turns ranks into MRR,
Recall@k and nDCG@10.

Candidates are deduplicated by their text, so a document queried several times (long-context QA) is one
pool entry and each of its queries has that entry as gold.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def retrieval_pool(queries: list[str], codes: list[str]) -> tuple[list[str], list[int]]:
    """(distinct candidates in first-seen order, gold candidate index of each query)."""
    index: dict[str, int] = {}
    gold = []
    for code in codes:
        gold.append(index.setdefault(code, len(index)))
    if len(gold) != len(queries):
        raise ValueError(f"retrieval_pool: {len(queries)} queries but {len(codes)} codes")
    return list(index), gold


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32,
                desc: str = "embed") -> torch.Tensor:
    """(n, d) L2-normalised embeddings via `model.embed`, length-sorted batches, input order kept."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = None
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        emb, _ = model.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        if out is None:
            out = torch.empty(len(texts), emb.shape[-1])
        out[idx] = emb.float().cpu()
    model.train(was_training)
    return out if out is not None else torch.empty(0, 0)


def evaluate_retrieval(model, tokenizer, dataset, query_column: str = "query", code_column: str = "code",
                       max_query_length: int = 128, max_code_length: int = 256, batch_size: int = 32,
                       max_samples: int | None = None, prefix: str = "test") -> dict:
    """MRR, Recall@1/5/10, nDCG@10 of `model` on `dataset` (queries vs. the pool of all its codes)."""
    from .metrics_loader import retrieval_metrics
    from .validation import require_columns

    require_columns(dataset, [query_column, code_column], where=prefix)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    queries, codes = list(dataset[query_column]), list(dataset[code_column])
    pool, gold = retrieval_pool(queries, codes)
    q = embed_texts(model, tokenizer, queries, max_query_length, batch_size, desc=f"{prefix} queries")
    c = embed_texts(model, tokenizer, pool, max_code_length, batch_size, desc=f"{prefix} pool")
    scores = (q @ c.T).numpy()
    result = retrieval_metrics(scores, gold)
    return {f"{prefix}_{k}": v for k, v in result.items()}


__all__ = ["retrieval_pool", "embed_texts", "evaluate_retrieval"]
