"""Reports: the results as JSON and one per-layer accuracy plot (PNG) comparing the models.

Every table and plot says on how many pairs each task was probed and which model's truncation dropped the
others (`probe_models` drops a pair cut by any model for all of them, so one model's accuracy at one layer
can differ between a run alone and a run beside a model with a shorter input limit).
"""

from __future__ import annotations

import json
import os

from mambacode.atomic import atomic_path, atomic_write_text
from mambacode.tables import markdown_table


def report_paths(output_dir: str, name: str = "probe_report") -> dict:
    return {"json": os.path.join(output_dir, f"{name}.json"), "png": os.path.join(output_dir, f"{name}.png")}


def existing_report(output_dir: str, name: str = "probe_report") -> list[str]:
    """The report files of an earlier run in `output_dir` (empty: none)."""
    return [p for p in report_paths(output_dir, name).values() if os.path.exists(p)]


def save_report(results: dict, output_dir: str, name: str = "probe_report", overwrite: bool = False) -> dict:
    """Write `<name>.json` and `<name>.png` into `output_dir` (each atomically); return their paths. An
    earlier report there is a FileExistsError unless `overwrite`."""
    paths = report_paths(output_dir, name)
    earlier = existing_report(output_dir, name)
    if earlier and not overwrite:
        raise FileExistsError(f"{earlier[0]} exists (an earlier probe run); pass overwrite=True (scripts/probe.py "
                              "--overwrite) to replace it, or choose another output_dir")
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(paths["json"], json.dumps(results, indent=2, default=float))
    with atomic_path(paths["png"], suffix=".png") as tmp:
        plot_layers(results, tmp)
    return paths


def pairs_used(results: dict, task: str) -> tuple[int | None, int | None, dict]:
    """(pairs used, pairs sampled, {model: pairs it truncated}) of `task` in a `probe_models` result; the
    counts a result without the probe set's record allows (the first layer's train + test pairs)."""
    info = (results.get("probe_set") or {}).get("pairs", {}).get(task)
    if info:
        return info.get("n_used"), info.get("n"), dict(info.get("dropped_by") or {})
    for per_task in results.get("results", {}).values():
        for res in per_task.get(task, {}).values():
            if "n_train" in res:
                return res["n_train"] + res["n_test"], None, {}
    return None, None, {}


def _count(used, total) -> str:
    if used is None:
        return "–"
    return f"{used:,}" if total is None else f"{used:,} of {total:,}"


def pairs_notes(results: dict, tasks=None) -> list[str]:
    """One line per task: pairs used of those sampled, and how many each model's truncation dropped."""
    labels = unique_labels(list(results.get("models") or results.get("results", {})))
    lines = []
    for task in tasks if tasks is not None else results.get("tasks") or []:
        used, total, dropped = pairs_used(results, task)
        line = f"{task}: {_count(used, total)} pairs"
        if dropped:
            cut = ", ".join(f"{labels.get(m, m)} {n:,}" for m, n in dropped.items())
            line += f" (truncated, so dropped for every model: {cut})"
        lines.append(line)
    return lines


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
    """One panel per task: accuracy by layer (integer ticks), one colour per model; DirectProbe solid, linear
    dashed; the pairs used in the panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
        used, total, _ = pairs_used(results, task)
        ax.set_title(task if used is None else f"{task} ({_count(used, total)} pairs)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside, not over, the lines
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def summary_table(results: dict, probe: str = "directprobe") -> str:
    """Markdown table: rows model x task, a column of the pairs used, columns layers, cells accuracy (n clusters
    for DirectProbe); below it, per task, the pairs used and which models' truncation dropped the rest."""
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
            rows.append([labels[model], task, _count(*pairs_used(results, task)[:2]), *cells])
    tasks = list(dict.fromkeys(t for per_task in results["results"].values() for t in per_task))
    table = markdown_table(["model", "task", "pairs", *(f"L{l}" for l in layers)], rows)
    return table + "\n\nPairs per task: " + "; ".join(pairs_notes(results, tasks)) + "."


def layer_table(accuracies: dict, probe: str = "directprobe", name=short_name, pairs: dict | None = None) -> str:
    """Wide Markdown table over several probe runs: one row per model, one column per (task, layer), cells
    the `probe`'s accuracy. `accuracies` maps a model to {task: {layer: {probe: accuracy}}} (the layout of
    `probe_models(...)["results"]` with accuracies only); `name` labels the rows. `pairs` ({task: pairs used,
    a number or a text}) is printed under the table when given."""
    tasks = list(dict.fromkeys(t for per_task in accuracies.values() for t in per_task))
    layers = sorted({int(l) for per_task in accuracies.values() for per_layer in per_task.values() for l in per_layer})
    rows = []
    for model, per_task in accuracies.items():
        cells = [per_task.get(t, {}).get(str(l), {}).get(probe) for t in tasks for l in layers]
        rows.append([name(model), *("–" if c is None else f"{c:.3f}" for c in cells)])
    table = markdown_table(["model", *(f"{t} L{l}" for t in tasks for l in layers)], rows)
    if pairs:
        table += "\n\nPairs per task: " + "; ".join(
            f"{t} {n:,}" if isinstance(n, int) else f"{t} {n}" for t, n in pairs.items()) + "."
    return table
