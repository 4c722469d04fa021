"""Labels of the probe report's plot and table: two models with the same folder name (one variant fine-tuned on
two tasks) must not share a label."""
import os

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
    rows = [line.split("|")[1].strip() for line in summary_table(results, "linear").splitlines()[2:]
            if line.startswith("|")]
    assert rows == ["types/s4d", "longctx/s4d"]


# ---- issue 24: the pairs behind every number, integer layer ticks, no silent replacement of a report
def _results(dropped=None, layers=3):
    per_layer = {str(l): {"linear": {"accuracy": 0.5 + l / 10, "selectivity": 0.1},
                          "directprobe": {"accuracy": 0.4, "n_clusters": 3}, "n_train": 72, "n_test": 18}
                 for l in range(layers)}
    models = ["runs/s4d-hf-mlm", "runs/bert"]
    return {"models": models, "tasks": ["distance"],
            "probe_set": {"pairs": {"distance": {"n": 100, "n_used": 90, "classes": [0, 1, 2],
                                                 "dropped_by": dropped or {"runs/s4d-hf-mlm": 0, "runs/bert": 10}}}},
            "results": {m: {"distance": per_layer} for m in models}}


def test_every_table_says_how_many_pairs_and_which_model_dropped_the_rest():
    from mambacode.probing.report import layer_table

    for probe in ("linear", "directprobe"):
        text = summary_table(_results(), probe)
        rows = [line for line in text.splitlines() if line.startswith("|")][2:]
        assert len(rows) == 2 and all("| 90 of 100 |" in row for row in rows)
        assert "distance: 90 of 100 pairs (truncated, so dropped for every model: s4d-hf-mlm 0, bert 10)" in text
    wide = layer_table({"a/s4d": {"distance": {"0": {"linear": 0.3}}}}, "linear", pairs={"distance": 90})
    assert wide.rstrip().endswith("Pairs per task: distance 90.")


def test_probe_models_records_the_pairs_each_model_truncated(monkeypatch):
    import numpy as np

    import mambacode.probing.runner as runner
    from mambacode.probing import build_probe_set

    code = ("def f(a, b):\n    x = a + b\n    y = x * 2\n    for i in range(y):\n        x += i\n    return x\n\n\n"
            "def g(items):\n    total = 0\n    for it in items:\n        if it > 0:\n            total = total + it\n"
            "    return total\n")
    snippets = [code.replace("f(", f"f{i}(").replace("g(", f"g{i}(") for i in range(6)]
    probe_set = build_probe_set(snippets, "python", tasks=["distance"], n_per_class=8, seed=0, progress=False)
    rng = np.random.default_rng(0)
    offsets = probe_set.token_offsets()

    def features(model, tok, ps, cache_dir, key, layers=None, **kwargs):
        feats = rng.normal(size=(ps.n_tokens, 8)).astype(np.float32)
        if model == "short":  # a model with a small max_length: the tail of every snippet is cut
            for s in range(len(ps.spans)):
                feats[offsets[s] + 20:offsets[s + 1]] = np.nan
        return {0: feats, 1: feats * 2}, {"cached": False, "tokens_per_second": 1.0}

    monkeypatch.setattr(runner, "load_model", lambda name, device: (name, None))
    monkeypatch.setattr(runner, "model_key", lambda name, model: name)
    monkeypatch.setattr(runner, "cached_token_features", features)
    tp = probe_set.tasks["distance"]
    cut = int(((tp.u >= 20) | (tp.v >= 20)).sum())
    assert 0 < cut < len(tp)
    alone = runner.probe_models(["long"], probe_set, ["distance"], probes=("linear",), progress=False)
    both = runner.probe_models(["long", "short"], probe_set, ["distance"], probes=("linear",), progress=False)
    assert alone["probe_set"]["pairs"]["distance"]["n_used"] == len(tp)
    pairs = both["probe_set"]["pairs"]["distance"]
    assert pairs["n_used"] == len(tp) - cut and pairs["dropped_by"] == {"long": 0, "short": cut}
    assert f"short {cut}" in summary_table(both, "linear")


def test_the_plot_has_integer_layer_ticks_and_the_pairs_in_its_titles(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from mambacode.probing.report import plot_layers

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    plot_layers(_results(layers=2), str(tmp_path / "p.png"))  # two layers: matplotlib alone ticks 0.2, 0.4, ...
    ax = figures[0].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_title() == "distance (90 of 100 pairs)"
    real_close(figures[0])


def test_a_second_report_into_the_same_folder_is_refused_unless_overwrite(tmp_path):
    import json

    import pytest

    from mambacode.probing import save_report

    first = _results()
    save_report(first, str(tmp_path))
    second = _results({"runs/s4d-hf-mlm": 0, "runs/bert": 12})
    with pytest.raises(FileExistsError, match="probe_report.json exists .*overwrite"):
        save_report(second, str(tmp_path))
    assert json.load(open(tmp_path / "probe_report.json")) == json.loads(json.dumps(first))
    save_report(second, str(tmp_path), overwrite=True)
    assert json.load(open(tmp_path / "probe_report.json"))["probe_set"]["pairs"]["distance"]["dropped_by"]["runs/bert"] == 12
    assert sorted(os.listdir(tmp_path)) == ["probe_report.json", "probe_report.png"]
