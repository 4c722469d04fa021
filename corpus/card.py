"""Dataset cards (``README.md`` beside each saved ``DatasetDict``).

A card says what is in the data and where it came from: split sizes, every source with its version and
licence, what was skipped and why, and the build settings. Its metadata is `huggingface_hub.DatasetCardData`
(task categories, `configs` naming each split's Arrow file, `dataset_info` with features and split sizes as
`datasets` writes it, licence fields). It holds no timings or paths that change between machines of the same
install, so two builds from the same packages write identical cards.
"""

from __future__ import annotations

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

TASK_DESCRIPTIONS = {
    "retrieval": (
        "Natural-language code search, CodeSearchNet-style: `query` is the first paragraph of a function's "
        "docstring (at least 3 words), `code` the function with that docstring removed. Splits are by "
        "package: no package appears in two splits."
    ),
    "retrieval_adv": (
        "AdvTest-style test set: the `test` split of `retrieval` with the function renamed to `func`, "
        "parameters to `arg_0, arg_1, ...` and locals to `var_0, var_1, ...` (consistently within the "
        "function; attributes, globals, builtins and imported names untouched). Every `code` parses "
        "without errors. `original_code` keeps the unobfuscated function."
    ),
    "long_context": (
        "Long-context retrieval (StackOverflow-QA style): `code` is a whole module, or a whole top-level "
        "class when the module is over the token budget, with every function docstring removed; each row "
        "pairs it with one `query`, the docstring of a function inside it (`func_name`). Rows sharing "
        "`doc_id` share the document; rank the unique documents of a split for each query."
    ),
    "type_inference": (
        "Type inference, ManyTypes4TypeScript-style, as word-level token classification: `tokens` are code "
        "tokens with type annotations removed; `labels` give, for each identifier that carried an "
        "annotation, its type (the most frequent types of the train split, else `other`) and -1 for every "
        "other token (mask it, e.g. to -100, before a loss). `raw_types` keeps the full type string."
    ),
}


# Hub task categories and task ids of each dataset
TASK_CATEGORIES = {
    "retrieval": (["text-retrieval"], ["document-retrieval"]),
    "retrieval_adv": (["text-retrieval"], ["document-retrieval"]),
    "long_context": (["text-retrieval"], ["document-retrieval"]),
    "type_inference": (["token-classification"], []),
}
# the code comes from many sources, each under its own licence (listed in the card): no single Hub licence id
LICENSE_NAME = "per-source-licenses"


def licence_text(sources: list[dict]) -> str:
    """The licence statement of a corpus built from `sources` (for `DatasetInfo.license` and the card)."""
    licences = sorted({s["license"] for s in sources})
    return ("Code from several sources, each under its own licence (see the card's Sources table): "
            + (", ".join(licences) or "none") + ".")


def dataset_info(task: str, sources: list[dict]) -> datasets.DatasetInfo:
    """The `DatasetInfo` description and licence of one saved dataset (features and splits are the data's)."""
    return datasets.DatasetInfo(description=TASK_DESCRIPTIONS[task], license=licence_text(sources),
                                dataset_name=f"mambacode_{task}")


def card_data(task: str, dsets: dict, sizes: dict[str, int]) -> DatasetCardData:
    """`DatasetCardData` of one saved `DatasetDict`: `configs` point at each split's Arrow shard as
    `save_to_disk(num_shards=1)` writes it, `dataset_info` lists features and split sizes."""
    categories, task_ids = TASK_CATEGORIES[task]
    total = sum(sizes.values())
    data = DatasetCardData(
        pretty_name=f"MambaCode {task}", language=["code", "en"], license="other", license_name=LICENSE_NAME,
        task_categories=categories, task_ids=task_ids or None, annotations_creators=["machine-generated"],
        language_creators=["found"], multilinguality=["monolingual"], source_datasets=["original"],
        size_categories=[f"n<{10 ** max(3, len(str(max(1, total))))}"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": sp, "path": f"{sp}/data-*.arrow"} for sp in sizes]}])
    features = next(iter(dsets.values())).features if dsets else None
    splits = datasets.SplitDict()
    for sp, ds in dsets.items():
        splits.add(datasets.SplitInfo(name=sp, num_bytes=ds.data.nbytes, num_examples=len(ds)))
    info = datasets.DatasetInfo(features=features, splits=splits,
                                dataset_size=sum(ds.data.nbytes for ds in dsets.values()))
    datasets.info.DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |")
    return "\n".join(lines)


def render_card(task: str, sizes: dict[str, int], packages: dict[str, int], sources: list[dict], skipped: dict,
                config: dict, extra: dict | None = None, dsets: dict | None = None) -> str:
    """The card: `card_data` front matter (from `dsets`, the saved `DatasetDict`), then the sections."""
    licences = sorted({s["license"] for s in sources})
    head = [
        f"# MambaCode corpus: `{task}`",
        "",
        TASK_DESCRIPTIONS[task],
        "",
        "Built offline by `scripts/build_corpus.py` (`mambacode.corpus`) from installed source code; the "
        "licence of each source is listed below and applies to the code taken from it. Source licences: "
        + ", ".join(f"`{x}`" for x in licences) + ".",
        "",
        "## Sizes",
        "",
        _table(["split", "rows", "packages"], [[s, n, packages.get(s, 0)] for s, n in sizes.items()]),
        "",
    ]
    if extra:
        head += ["## Details", ""]
        for k, v in extra.items():
            head.append(f"- {k}: {v}")
        head.append("")
    head += [
        "## Sources",
        "",
        _table(["name", "version", "licence", "kind", "files parsed"],
               [[s["name"], s["version"], s["license"], s["kind"], s["num_files"]] for s in sources]),
        "",
        "## Skipped inputs (by reason)",
        "",
        _table(["reason", "count"], [[k, v] for k, v in sorted(skipped.items())]) if skipped else "Nothing was skipped.",
        "",
        "## Build settings",
        "",
        "```",
        *[f"{k} = {v}" for k, v in sorted(config.items())],
        "```",
        "",
    ]
    data = card_data(task, dsets or {}, sizes)
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(head)))
