"""Code snippets for probes and spectra: from a built corpus, a folder of source files or a JSON(L) file.

One reader with one meaning for each argument, so the probe set and the spectral inputs of a run can
come from the same corpus. Everything is read in a fixed order, so the same arguments give the same list.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..languages import get_parser, get_spec, grammar_key, language_of, parse_within


@dataclass(frozen=True)
class FunctionSpan:
    """One function-level snippet and where it sits: 1-based first/last line, its name ('' when anonymous)
    qualified by the named nodes around it (`Class.method`), and whether tree-sitter found errors inside."""

    code: str
    start_byte: int
    line: int
    end_line: int
    name: str
    has_error: bool


def extract_functions(text: str, language: str, path: str = "", seconds: float | None = None) -> list[FunctionSpan]:
    """Function-level snippets of one source file with their positions and names, in source order.

    The nodes cut out are the language table's `function_types`; nested functions stay inside their
    enclosing snippet. `path` picks a dialect grammar (`.tsx`). With `seconds`, a parse that takes longer
    raises `TimeoutError` (the corpus builder's `parse_timeout`).
    """
    spec = get_spec(language)
    src = text.encode("utf-8", errors="surrogatepass")
    key = grammar_key(spec.name, path)
    tree = get_parser(key).parse(src) if seconds is None else parse_within(key, src, seconds)
    out, stack = [], [(tree.root_node, ())]
    while stack:
        node, outer = stack.pop()
        name_node = node.child_by_field_name("name")
        name = name_node.text.decode("utf-8", errors="replace") if name_node is not None else ""
        if node.type in spec.function_types:
            code = src[node.start_byte:node.end_byte].decode("utf-8", errors="replace")
            out.append(FunctionSpan(code, node.start_byte, node.start_point[0] + 1, node.end_point[0] + 1,
                                    ".".join((*outer, name)) if name else "", node.has_error))
            continue
        inner = (*outer, name) if name else outer
        stack.extend((child, inner) for child in node.children)
    return sorted(out, key=lambda f: f.start_byte)


def split_functions(text: str, language: str, path: str = "") -> list[str]:
    """Function-level snippets of one source file (the unit the paper probes on), in source order
    (the `code` of `extract_functions`)."""
    return [f.code for f in extract_functions(text, language, path)]


def read_snippets(corpus_dir: str | None = None, *, source_dir: str | None = None, inputs_file: str | None = None,
                  language: str | None = None, dataset: str = "retrieval", split: str | None = None,
                  max_snippets: int | None = None, seed: int | None = 0, text_field: str = "code") -> list[str]:
    """Code snippets from exactly one of three places.

    corpus_dir: a corpus written by `build_corpus`; the `code` column of `<corpus_dir>/<dataset>` (one
        `split` of it, or all splits concatenated in name order), rows whose `language` is `language` (all
        rows if None). With `seed`, `max_snippets` rows are drawn at random and returned in stored order;
        with `seed=None` the first `max_snippets` rows are taken.
    source_dir: every source file below it (sorted walk) of `language` (every language of the table if
        None), split into functions (`split_functions`). The walk is the corpus builder's (iterative, links
        leaving the folder not followed, regular files only, its size cap, minified check and parse timeout);
        whatever it skips is named in one warning.
    inputs_file: `.jsonl` (one string or object with `text_field` per line) or `.json` (a list of those);
        any other file is one snippet. Blank snippets are dropped; `language` does not apply.
    """
    given = [name for name, value in (("corpus_dir", corpus_dir), ("source_dir", source_dir),
                                      ("inputs_file", inputs_file)) if value]
    if len(given) != 1:
        raise ValueError("read_snippets: give exactly one of corpus_dir, source_dir, inputs_file "
                         f"(got {given or 'none'})")
    name = get_spec(language).name if language is not None else None
    if corpus_dir:
        return _from_corpus(corpus_dir, name, dataset, split, max_snippets, seed)
    if source_dir:
        return _from_sources(source_dir, name, max_snippets)
    return _from_file(inputs_file, text_field, max_snippets)


def _from_corpus(corpus_dir, language, dataset, split, max_snippets, seed) -> list[str]:
    import datasets
    import numpy as np

    path = os.path.join(corpus_dir, dataset)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: expected a `datasets.save_to_disk` folder named '{dataset}' in the corpus")
    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split is not None:
            if split not in ds:
                raise ValueError(f"{path}: no split {split!r} (splits: {sorted(ds)})")
            ds = ds[split]
        else:
            ds = datasets.concatenate_datasets([ds[k] for k in sorted(ds)])
    elif split is not None:
        raise ValueError(f"{path}: a single dataset without splits; drop split={split!r}")
    columns = ("code", "language") if language else ("code",)
    for col in columns:
        if col not in ds.column_names:
            raise ValueError(f"{path}: missing column {col!r} (columns: {ds.column_names})")
    if language:
        langs = ds["language"]
        idx = [i for i, lang in enumerate(langs) if str(lang).lower() == language]
        if not idx:
            raise ValueError(f"{path}: no rows with language == {language!r} (found {sorted(set(langs))})")
    else:
        idx = list(range(len(ds)))
    if seed is not None:
        idx = np.random.default_rng(seed).permutation(idx)
    if max_snippets:
        idx = idx[:max_snippets]
    return list(ds.select(sorted(int(i) for i in idx))["code"])


def _from_sources(source_dir, language, max_snippets) -> list[str]:
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"source_dir {source_dir}: not a directory")
    from .parsing import PARSE_SECONDS
    from .sources import MAX_FILE_BYTES, FileSkipped, SkipLog, _Walker, looks_minified, read_regular_file

    log = SkipLog()
    out = []
    for path, rel in _Walker(log, MAX_FILE_BYTES, skip_tests=False, confine=True).walk(source_dir, source_dir):
        lang = language_of(rel, None if language is None else (language,))
        if lang is None:
            continue
        try:
            data = read_regular_file(path)
            if looks_minified(data, lang, rel):
                raise FileSkipped("minified", "")
            out.extend(f.code for f in extract_functions(data.decode("utf-8"), lang, path, PARSE_SECONDS))
        except FileSkipped as exc:
            log.add(exc.reason, path)
        except UnicodeDecodeError:
            log.add("non_utf8", path)
        except TimeoutError:
            log.add("parse_timeout", path)
        if max_snippets and len(out) >= max_snippets:
            break
    named = [(reason, where) for reason, where in log.named if reason != "empty_dir"]
    if named:
        import warnings

        warnings.warn(f"read_snippets: skipped {len(named)} entries below {source_dir}: "
                      + "; ".join(f"{where} ({reason})" for reason, where in named), stacklevel=3)
    if not out:
        what = language or "source"
        exts = get_spec(language).extensions if language else "any known extension"
        raise ValueError(f"{source_dir}: no {what} source files ({', '.join(exts) if language else exts}) "
                         "with functions found")
    return out[:max_snippets] if max_snippets else out


def _from_file(inputs_file, text_field, max_snippets) -> list[str]:
    if inputs_file.endswith(".jsonl"):
        with open(inputs_file, encoding="utf-8") as fh:
            items = [json.loads(line) for line in fh if line.strip()]
    elif inputs_file.endswith(".json"):
        with open(inputs_file, encoding="utf-8") as fh:
            items = json.load(fh)
        if not isinstance(items, list):
            raise ValueError(f"{inputs_file}: expected a JSON list of strings or objects with {text_field!r}.")
    else:
        with open(inputs_file, encoding="utf-8") as fh:
            items = [fh.read()]
    snippets = []
    for n, item in enumerate(items):
        text = item if isinstance(item, str) else item.get(text_field) if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise ValueError(f"{inputs_file}: item {n} is neither a string nor an object with a string "
                             f"{text_field!r} field.")
        if text.strip():
            snippets.append(text)
    if not snippets:
        raise ValueError(f"{inputs_file}: no code snippets found.")
    return snippets[:max_snippets] if max_snippets else snippets


__all__ = ["FunctionSpan", "extract_functions", "read_snippets", "split_functions"]
