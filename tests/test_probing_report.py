"""Labels of the probe report's plot and table: two models with the same folder name (one variant fine-tuned on
two tasks) must not share a label."""
from mambacode.probing.report import summary_table, unique_labels


def test_unique_labels_lengthen_only_clashing_names():
    models = ["/runs/cpu/finetune/types/s4d", "/runs/cpu/finetune/longctx/s4d", "/runs/cpu/finetune/types/rocoder",
              "/runs/a/pretrained"]
    assert unique_labels(models) == {"/runs/cpu/finetune/types/s4d": "types/s4d",
                                     "/runs/cpu/finetune/longctx/s4d": "longctx/s4d",
                                     "/runs/cpu/finetune/types/rocoder": "rocoder",
                                     "/runs/a/pretrained": "a/pretrained"}
    # a clash that the parent folder does not settle goes one level further up
    assert unique_labels(["x/run1/types/s4d", "x/run2/types/s4d"]) == {"x/run1/types/s4d": "run1/types/s4d",
                                                                       "x/run2/types/s4d": "run2/types/s4d"}
    assert unique_labels(["a/s4d", "b/rocoder"]) == {"a/s4d": "s4d", "b/rocoder": "rocoder"}


def test_summary_table_rows_are_told_apart():
    per_layer = {"0": {"linear": {"accuracy": 0.5, "selectivity": 0.1}}}
    results = {"results": {"ft/types/s4d": {"distance": per_layer}, "ft/longctx/s4d": {"distance": per_layer}}}
    rows = [line.split("|")[1].strip() for line in summary_table(results, "linear").splitlines()[2:]]
    assert rows == ["types/s4d", "longctx/s4d"]
