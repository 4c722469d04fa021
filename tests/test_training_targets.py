"""Issue 13's targets checked against hand-built results, with the expected verdicts worked out by hand."""

from mambacode.training import RetrievalResult, TypeInferenceResult
from mambacode.training.targets import (EVERY_SEED, MEAN_ONLY, MET, NOT_MET, TargetCheck, probe_targets,
                                        retrieval_targets, targets_table, types_target)


def _retrieval(dense_adv, hybrid_plain, bm25_adv=0.30, bm25_plain=0.46):
    return RetrievalResult("x", test_metrics={"retrieval_adv": {"mrr": dense_adv}, "test": {"mrr": 0.2}},
                           bm25_metrics={"retrieval_adv": {"mrr": bm25_adv}, "test": {"mrr": bm25_plain}},
                           hybrid_metrics={"retrieval_adv": {"mrr": 0.29}, "test": {"mrr": hybrid_plain}})


def test_retrieval_targets_over_seeds():
    runs = {("advtest", "s4d-hf"): {0: _retrieval(0.05, 0.47), 1: _retrieval(0.06, 0.47), 2: _retrieval(0.07, 0.45)},
            ("advtest", "s4d"): {0: _retrieval(0.90, 0.90)}}  # another variant: not the shipped one
    dense, hybrid = retrieval_targets(runs)
    assert dense.target == "s4d-hf: dense above BM25 on the AdvTest-style pool" and dense.status() == NOT_MET
    # 5, 6, 7 -> mean 6, sample std 1
    assert dense.row()[2:] == ["> 30.00", "6.00 ± 1.00", "5.00 / 6.00 / 7.00", NOT_MET]
    # 47, 47, 45: mean 46.33 above BM25's 46, seed 2 below it
    assert hybrid.status() == MEAN_ONLY and hybrid.row()[3] == "46.33 ± 1.15"
    runs[("advtest", "s4d-hf")][2] = _retrieval(0.07, 0.4601)
    assert retrieval_targets(runs)[1].status() == EVERY_SEED


def test_retrieval_target_is_strict_and_needs_one_bm25():
    assert retrieval_targets({("advtest", "s4d-hf"): {0: _retrieval(0.30, 0.46)}})[0].status() == NOT_MET  # a tie
    # runs ranked on different pools (BM25 disagrees): nothing to compare with, so no check
    disagree = {("advtest", "s4d-hf"): {0: _retrieval(0.1, 0.5), 1: _retrieval(0.1, 0.5, bm25_adv=0.2, bm25_plain=0.4)}}
    assert retrieval_targets(disagree) == []
    assert retrieval_targets({}) == []


def test_types_target_takes_the_best_mean_and_is_inclusive():
    runs = {("types", "s4d"): {0: TypeInferenceResult("a", test_metrics={"micro_f1": 0.35}),
                               1: TypeInferenceResult("b", test_metrics={"micro_f1": 0.25})},   # mean 0.30
            ("types", "rocoder"): {0: TypeInferenceResult("c", test_metrics={"micro_f1": 0.29}),
                                   1: TypeInferenceResult("d", test_metrics={"micro_f1": 0.29})},
            ("advtest", "s4d"): {0: _retrieval(0.9, 0.9)}}
    (check,) = types_target(runs)
    assert check.target == "type inference, best variant (s4d)"
    assert check.status() == MEAN_ONLY  # 0.30 >= 0.30; seed 1 below
    assert types_target({}) == []


def test_probe_targets_best_layer_of_each_pretrained_encoder():
    runs = {("pretrained", "s4d"): {0: {"distance": {"0": {"directprobe": 0.46, "linear": 0.9},
                                                     "1": {"directprobe": 0.40}, "2": {"directprobe": 0.44}},
                                        "siblings": {"0": {"directprobe": 0.70}, "1": {"directprobe": 0.75}},
                                        "dfg": {"0": {"directprobe": 0.99}}}},
            ("types", "s4d"): {0: {"distance": {"0": {"directprobe": 0.99}}}}}  # fine-tuned: not a target
    distance, siblings, pairs = probe_targets(runs, {"distance": 987, "siblings": 201})
    assert distance.target == "s4d pretrained: distance probe" and distance.values == {0: 0.46}
    assert distance.measure == "directprobe accuracy, best layer (L0 of 0..2)" and distance.status() == MET
    assert siblings.values == {0: 0.75} and siblings.status() == MET  # at least 0.75
    assert pairs.values == {0: 100 / 201} and pairs.status() == MET and "siblings, 201" in pairs.measure
    (_, _, pairs) = probe_targets(runs, {"distance": 987, "siblings": 200, "dfg": 0})  # 0.5 points: not below
    assert pairs.status() == NOT_MET and pairs.row()[2:4] == ["< 0.500", "0.500"]
    assert [c.target for c in probe_targets(runs, {})] == ["s4d pretrained: distance probe",
                                                           "s4d pretrained: siblings probe"]


def test_targets_table():
    assert targets_table([]) == "No target can be checked with the stages this run has."
    lines = targets_table([TargetCheck("t", "m", {0: 0.5, 1: 0.7}, 0.55, percent=True)]).splitlines()
    assert lines[0] == "| target | measure | required | value (mean ± std over seeds) | per seed | status |"
    assert lines[2] == "| t | m | ≥ 55.00 | 60.00 ± 14.14 | 50.00 / 70.00 | met by the mean only |"
