"""Reports: the results as JSON and one per-layer accuracy plot (PNG) comparing the models."""

from __future__ import annotations

import json
import os

from mambacode.tables import markdown_table


def save_report(results: dict, output_dir: str, name: str = "probe_report") -> dict:
    """Write `<name>.json` and `<name>.png` into `output_dir`; return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, f"{name}.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2, default=float)
    png_path = os.path.join(output_dir, f"{name}.png")
    plot_layers(results, png_path)
    return {"json": json_path, "png": png_path}


def _parts(model) -> list[str]:
    return [p for p in str(model).replace("\\", "/").split("/") if p]


def short_name(model: str) -> str:
    """Readable model label: the folder name, with its parent when the name alone is generic."""
    parts = _parts(model)
    if not parts:
        return str(model)
    if len(parts) > 1 and parts[-1].lower() in ("model", "models", "final", "best", "checkpoint", "pretrained"):
        return "/".join(parts[-2:])
    return parts[-1]


def unique_labels(models: list) -> dict:
    """{model: label}: each model's `short_name`, lengthened by parent folders until no two labels are alike
    (e.g. `types/s4d` and `longctx/s4d`, two fine-tunings of one variant, rather than `s4d` twice)."""
    labels = {m: short_name(m) for m in models}
    for depth in range(2, 1 + max((len(_parts(m)) for m in models), default=0)):
        clashing = [m for m in models if list(labels.values()).count(labels[m]) > 1]
        if not clashing:
            break
        for m in clashing:
            labels[m] = "/".join(_parts(m)[-depth:])
    return labels


def _series(per_layer: dict, probe: str, key: str = "accuracy"):
    xs, ys = [], []
    for layer in sorted(per_layer, key=int):
        r = per_layer[layer].get(probe)
        if r is not None and r.get(key) is not None:
            xs.append(int(layer))
            ys.append(r[key])
    return xs, ys


def plot_layers(results: dict, path: str) -> None:
    """One panel per task: accuracy by layer, one colour per model; DirectProbe solid, linear dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = unique_labels(results["models"])
    for ax, task in zip(axes[0], tasks):
        for m, model in enumerate(results["models"]):
            per_layer = results["results"][model].get(task, {})
            label = labels[model]
            for probe, style in (("directprobe", "-o"), ("linear", "--s")):
                xs, ys = _series(per_layer, probe)
                if xs:
                    ax.plot(xs, ys, style, color=colors[m % len(colors)], label=f"{label} ({probe})", ms=4)
        n_cls = len(results["probe_set"]["pairs"][task]["classes"])
        ax.axhline(1.0 / n_cls, color="grey", lw=0.8, ls=":", label="chance")
        ax.set_title(task)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside, not over, the lines
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def summary_table(results: dict, probe: str = "directprobe") -> str:
    """Markdown table: rows model x task, columns layers, cells accuracy (n clusters for DirectProbe)."""
    layers = sorted({int(l) for m in results["results"].values() for t in m.values() for l in t})
    labels, rows = unique_labels(list(results["results"])), []
    for model, per_task in results["results"].items():
        for task, per_layer in per_task.items():
            cells = []
            for l in layers:
                r = per_layer.get(str(l), {}).get(probe)
                if r is None:
                    cells.append("–")
                elif probe == "directprobe":
                    cells.append(f"{r['accuracy']:.3f} ({r['n_clusters']})")
                else:
                    cells.append(f"{r['accuracy']:.3f} / sel {r['selectivity']:+.3f}")
            rows.append([labels[model], task, *cells])
    return markdown_table(["model", "task", *(f"L{l}" for l in layers)], rows)


def layer_table(accuracies: dict, probe: str = "directprobe", name=short_name) -> str:
    """Wide Markdown table over several probe runs: one row per model, one column per (task, layer), cells
    the `probe`'s accuracy. `accuracies` maps a model to {task: {layer: {probe: accuracy}}} (the layout of
    `probe_models(...)["results"]` with accuracies only); `name` labels the rows."""
    tasks = list(dict.fromkeys(t for per_task in accuracies.values() for t in per_task))
    layers = sorted({int(l) for per_task in accuracies.values() for per_layer in per_task.values() for l in per_layer})
    rows = []
    for model, per_task in accuracies.items():
        cells = [per_task.get(t, {}).get(str(l), {}).get(probe) for t in tasks for l in layers]
        rows.append([name(model), *("–" if c is None else f"{c:.3f}" for c in cells)])
    return markdown_table(["model", *(f"{t} L{l}" for t in tasks for l in layers)], rows)
