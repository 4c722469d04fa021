"""The retrieval baselines (BM25 with bm25s; dense + BM25 by reciprocal-rank fusion) against references
independent of the code under test: BM25 as a float64 loop over the Lucene formula, rankings and MRRs that
are obvious from the hand-built pool, RRF sums written out by hand."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from mambacode.search import code_tokens
from mambacode.training import RetrievalResult, load_metric
from mambacode.training import evaluation
from mambacode.search.fusion import Fusion, fusion_grid, reciprocal_rank_fusion
from mambacode.training.baselines import baseline_metrics, bm25_scores, hybrid_scores, ranking, tune_fusion
from mambacode.training.evaluation import evaluate_retrieval, metrics_by_ranker

POOL = ["def parse_config(path):\n    return json.load(open(path))",
        "def add_numbers(a, b):\n    return a + b",
        "def send_email(to, body):\n    smtp.send(to, body)",
        "def add(x, y):\n    total = x + y\n    log(total, x, y, 'adding values')"]
QUERIES = ["Parse the config file.", "Send an email.", "Frobnicate quickly.", "add"]
GOLD = [0, 2, 1, 3]
# by hand: Q0 and Q1 share words with their gold only (rank 1); Q2 shares no word with any candidate (every
# score 0, ties count against the ranker: rank 4 of 4); Q3's word `add` occurs once in candidates 1 and 3,
# and BM25 favours the shorter one (5 words against 7), so the gold candidate 3 comes second.
BM25_RANKS = [1, 1, 4, 2]


def lucene_bm25(query: list[str], docs: list[list[str]], k1=1.5, b=0.75) -> list[float]:
    """BM25 (Lucene variant: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b dl / avgdl)))."""
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for doc in docs:
        score = 0.0
        for word in query:
            df, tf = sum(word in d for d in docs), doc.count(word)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        out.append(score)
    return out


def test_bm25_scores_equal_the_lucene_formula_and_rank_by_lexical_overlap():
    scores = bm25_scores(QUERIES, POOL)
    docs = [code_tokens(c) for c in POOL]
    reference = np.array([lucene_bm25(code_tokens(q), docs) for q in QUERIES])
    np.testing.assert_allclose(scores, reference, rtol=1e-6, atol=1e-7)
    assert scores.shape == (4, 4) and not scores.flags.writeable
    assert not scores[2].any()  # no shared word: all 0
    ranks = [int((row >= row[g]).sum()) for row, g in zip(scores, GOLD)]
    assert ranks == BM25_RANKS
    assert bm25_scores(QUERIES, POOL) is scores  # model-free: one pool is scored once


def test_bm25_metrics_by_hand():
    out = baseline_metrics(QUERIES, POOL, GOLD, np.zeros((4, 4)))["bm25"]
    assert out["mrr"] == pytest.approx((1 + 1 + 1 / 4 + 1 / 2) / 4)  # 0.6875
    assert out["recall@1"] == 0.5 and out["recall@5"] == 1.0
    assert out["ndcg@10"] == pytest.approx((2 + 1 / math.log2(5) + 1 / math.log2(3)) / 4)


def test_pools_without_words_and_queries_without_words_score_zero():
    assert not bm25_scores(["parse config"], ["+ - *", "()"]).any()  # bm25s cannot index this pool: zeros
    assert not bm25_scores(["!!", "a b"], POOL).any()  # punctuation and one-letter words only


def test_ranking_orders_by_score_then_index():
    assert ranking(np.array([0.5, 2.0, 0.5, 0.0, 3.0])) == [4, 1, 0, 2, 3]
    assert ranking(np.array([0.5, 2.0, 0.5, 0.0, 3.0]), positive_only=True) == [4, 1, 0, 2]


def test_rrf_of_two_hand_written_rankings():
    # dense ranking [1, 2, 3, 0]; BM25 ranking [3, 0, 2] (candidate 1 shares no word: not in the list)
    dense = np.array([[0.1, 0.9, 0.5, 0.3],
                      [0.9, 0.1, 0.0, 0.0]])
    lexical = np.array([[2.0, 0.0, 0.5, 3.0],
                        [1.0, 2.0, 0.0, 0.0]])
    # k = 60: cand 0: 1/64 + 1/62 = 0.031754; cand 1: 1/61 = 0.016393; cand 2: 1/62 + 1/63 = 0.032002;
    # cand 3: 1/63 + 1/61 = 0.032266 -> order 3, 2, 0, 1 -> scores (pool size for the first) [2, 1, 3, 4]
    assert 1 / 63 + 1 / 61 > 1 / 62 + 1 / 63 > 1 / 64 + 1 / 62 > 1 / 61
    # row 2: cand 0 is dense 1st, BM25 2nd; cand 1 the other way round: equal sums, the smaller index first;
    # cands 2 and 3 only in the dense list, at ranks 3 and 4
    np.testing.assert_array_equal(hybrid_scores(dense, lexical), [[2, 1, 3, 4], [4, 3, 2, 1]])
    # k = 0: 1/rank sums; cand 3: 1/3 + 1 = 1.333, cand 1: 1, cand 0: 1/4 + 1/2 = 0.75, cand 2: 1/2 + 1/3 = 0.833
    np.testing.assert_array_equal(hybrid_scores(dense[:1], lexical[:1], k=0), [[1, 3, 2, 4]])
    with pytest.raises(ValueError, match="differ in shape"):
        hybrid_scores(dense, lexical[:1])


def test_weighted_fusion_by_hand():
    # dense [1, 2, 3, 0] with weight 0.2, BM25 [3, 0, 2] with weight 1, k = 60:
    # cand 0: 0.2/64 + 1/62; cand 1: 0.2/61; cand 2: 0.2/62 + 1/63; cand 3: 0.2/63 + 1/61
    expected = {0: 0.2 / 64 + 1 / 62, 1: 0.2 / 61, 2: 0.2 / 62 + 1 / 63, 3: 0.2 / 63 + 1 / 61}
    fused = reciprocal_rank_fusion([[1, 2, 3, 0], [3, 0, 2]], 60, [0.2, 1.0])
    assert [d for d, _ in fused] == [3, 0, 2, 1]  # BM25's order, the dense-only candidate last
    for doc, score in fused:
        assert score == pytest.approx(expected[doc], abs=1e-15)
    dense = np.array([[0.1, 0.9, 0.5, 0.3]])
    lexical = np.array([[2.0, 0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(hybrid_scores(dense, lexical, 60, 0.2), [[3, 1, 2, 4]])
    # weight 3: the dense ranks decide between BM25's candidates: cand 2 (dense 2nd, BM25 3rd) overtakes
    # cand 3 (dense 3rd, BM25 1st), and both pass cand 0; the dense-only cand 1 stays last
    assert 3 / 62 + 1 / 63 > 3 / 63 + 1 / 61 > 3 / 64 + 1 / 62 > 3 / 61
    np.testing.assert_array_equal(hybrid_scores(dense, lexical, 60, 3.0), [[2, 1, 4, 3]])
    with pytest.raises(ValueError, match="2 weights for 1 rankings"):
        reciprocal_rank_fusion([[1]], 60, [1.0, 1.0])


def test_hybrid_scores_match_reciprocal_rank_fusion_row_by_row():
    """The all-rows-at-once hybrid against the dict-based fusion per row, with tied scores in both rankers and
    rows where BM25 retrieves nothing."""
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 6, size=(40, 30)) / 5.0  # many ties
    lexical = np.where(rng.random((40, 30)) < 0.6, 0.0, rng.integers(1, 4, size=(40, 30)).astype(float))
    lexical[:3] = 0.0
    for k, weight in ((60, 1.0), (10, 0.3), (0, 2.0)):
        out = hybrid_scores(dense, lexical, k, weight)
        for row in range(len(dense)):
            fused = reciprocal_rank_fusion([ranking(dense[row]), ranking(lexical[row], positive_only=True)], k,
                                           [weight, 1.0])
            want = np.zeros(30)
            want[[doc for doc, _ in fused]] = np.arange(30, 0, -1)
            np.testing.assert_array_equal(out[row], want)


def test_tune_fusion_follows_the_better_ranker():
    """BM25 puts every gold second, behind the next candidate. A dense ranker that puts every gold first lifts it
    to the top with enough weight (not with 0.1 at k = 10: 0.1/11 + 1/12 < 1/11 + 0.1/22); one that puts every
    gold last costs a large weight its second places (3/11, 3/12 and 3/13 all beat 3/22 + 1/12), and on the
    MRR ties that remain the grid's first candidate (equal weights, k = 60) is kept."""
    n = 12
    gold = list(range(n))
    lexical = np.zeros((n, n))
    for q in range(n):
        lexical[q, q], lexical[q, (q + 1) % n] = 1.0, 2.0
    best, table = tune_fusion(np.eye(n), lexical, gold)
    assert len(table) == len(fusion_grid()) and table[f"w={best.dense_weight:g},k={best.k}"] == pytest.approx(1.0)
    assert table["w=0.1,k=10"] == pytest.approx(0.5)
    assert 0.1 / 11 + 1 / 12 < 1 / 11 + 0.1 / 22
    best, table = tune_fusion(-np.eye(n), lexical, gold)
    assert best == Fusion(1.0, 60) and table["w=1,k=60"] == pytest.approx(0.5)
    assert min(3 / 11, 3 / 12, 3 / 13) > 3 / 22 + 1 / 12 and table["w=3,k=10"] < 0.5


def test_fusion_of_a_config():
    class Config:
        pass

    config = Config()
    assert Fusion.of_config(config) == Fusion(1.0, 60)
    config.hybrid_fusion = {"dense_weight": 0.3, "k": 10, "chosen_on": "retrieval:validation"}
    assert Fusion.of_config(config) == Fusion(0.3, 10)
    config.hybrid_fusion = {"weight": 0.3}
    with pytest.raises(ValueError, match="config.hybrid_fusion"):
        Fusion.of_config(config)
    with pytest.raises(ValueError, match="dense_weight=-0.1"):
        Fusion(-0.1, 60)  # w = 0 is a fusion now (BM25 first, issue 24): only a negative weight is refused


def test_hybrid_metrics_by_hand():
    dense = np.array([[0.1, 0.4, 0.3, 0.2],   # ranking 1, 2, 3, 0; BM25 [0]: cand 0 = 1/64 + 1/61 is first
                      [0.4, 0.3, 0.2, 0.1],   # ranking 0, 1, 2, 3; BM25 [2]: cand 2 = 1/63 + 1/61 is first
                      [0.1, 0.2, 0.3, 0.4],   # ranking 3, 2, 1, 0; BM25 empty: gold 1 stays third
                      [0.4, 0.1, 0.2, 0.3]])  # ranking 0, 3, 2, 1; BM25 [1, 3]: cand 3 = 2/62 beats 1/64 + 1/61
    out = baseline_metrics(QUERIES, POOL, GOLD, dense)
    assert out["hybrid"]["mrr"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
    assert out["hybrid"]["recall@1"] == 0.75
    assert out["bm25"]["mrr"] == pytest.approx(0.6875)  # the dense scores do not touch BM25
    with pytest.raises(ValueError, match="do not match 4 queries x 4 candidates"):
        baseline_metrics(QUERIES, POOL, GOLD, dense[:3])


def test_evaluate_retrieval_reports_every_ranker_on_one_pool(monkeypatch):
    # hand-written unit embeddings instead of a model: query i is closest to candidate i
    vectors = {text: torch.nn.functional.normalize(torch.tensor([1.0, 0.1 * i, 0.0]), dim=0)
               for i, text in enumerate(QUERIES)}
    vectors.update({text: torch.nn.functional.normalize(torch.tensor([1.0, 0.1 * i, 0.0]), dim=0)
                    for i, text in enumerate(POOL)})
    monkeypatch.setattr(evaluation, "embed_texts", lambda model, tok, texts, *a, **k: torch.stack([vectors[t] for t in texts]))
    rows = Dataset.from_dict({"query": QUERIES, "code": [POOL[g] for g in GOLD]})
    out = evaluate_retrieval(None, None, rows, prefix="adv")
    assert out["adv_pool_size"] == 4 and "adv_bm25_pool_size" not in out
    assert out["adv_bm25_mrr"] == pytest.approx(0.6875)
    metric = load_metric("mrr")
    # the pool is in first-seen order of the gold codes: POOL[0], POOL[2], POOL[1], POOL[3]
    order = [0, 2, 1, 3]
    dense = [[float(vectors[q] @ vectors[POOL[j]]) for j in order] for q in QUERIES]
    assert out["adv_mrr"] == pytest.approx(metric.compute(predictions=dense, references=[0, 1, 2, 3])["mrr"])
    split = metrics_by_ranker(out, "adv")
    assert set(split) == {"dense", "bm25", "hybrid"}
    assert split["bm25"]["mrr"] == out["adv_bm25_mrr"] and split["dense"]["pool_size"] == 4
    assert set(split["hybrid"]) == {"mrr", "recall@1", "recall@5", "recall@10", "ndcg@10"}
    plain = evaluate_retrieval(None, None, rows, prefix="adv", baselines=False)
    assert plain == {f"adv_{k}": v for k, v in split["dense"].items()}  # the dense numbers alone, unchanged


def test_retrieval_result_per_ranker():
    res = RetrievalResult("x", test_metrics={"test": {"mrr": 0.5}}, bm25_metrics={"test": {"mrr": 0.25}},
                          hybrid_metrics={"test": {"mrr": 0.75}})
    assert (res.mrr(), res.mrr("test", "bm25"), res.mrr("test", "hybrid"), res.mrr("adv", "bm25")) == (0.5, 0.25, 0.75, None)
    assert RetrievalResult("y", test_metrics={"test": {"mrr": 0.5}}).mrr("test", "hybrid") is None  # an older marker
    with pytest.raises(ValueError, match="ranker 'sparse'"):
        res.mrr("test", "sparse")
