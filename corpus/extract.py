"""Per-file extraction, run in worker processes: one file in, pairs + documents + type examples out.

Kept free of ``datasets``/``torch`` imports so that spawned workers start fast. Every failure is turned
into a skip reason: a bad file never stops a build.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .long_context import LongContextConfig, documents
from .pairs import PairFilters, comment_spans, find_functions, make_pair
from .parsing import grammar_key, parse
from .sources import MAX_LINE_CHARS, FileTask, looks_minified, read_task
from .types import examples as type_examples


@dataclass(frozen=True)
class ExtractConfig:
    filters: PairFilters = field(default_factory=PairFilters)
    long_context: LongContextConfig = field(default_factory=LongContextConfig)
    type_max_words: int = 512
    max_line_chars: int = MAX_LINE_CHARS  # longer average lines mean minified or generated code
    tasks: tuple[str, ...] = ("retrieval", "long_context", "type_inference")


@dataclass
class FileResult:
    index: int
    skip: str | None = None  # why the whole file was skipped
    pairs: list = field(default_factory=list)
    docs: list = field(default_factory=list)
    types: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # per-item skip reasons, prefixed by stage


def process_file(task: FileTask, config: ExtractConfig) -> FileResult:
    """Parse one file and extract everything the corpus needs from it."""
    result = FileResult(task.index)
    try:
        data = read_task(task)
    except OSError:
        result.skip = "unreadable_file"
        return result
    if not data.strip():
        result.skip = "empty_file"
        return result
    if b"\x00" in data:
        result.skip = "binary_file"
        return result
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        result.skip = "non_utf8"
        return result
    if looks_minified(data, task.language, task.path, config.max_line_chars):
        result.skip = "minified"
        return result
    key = grammar_key(task.language, task.path)
    try:
        tree = parse(data, key)
    except TimeoutError:  # a pathological input: some grammars take exponential time
        result.skip = "parse_timeout"
        return result
    except Exception:  # tree-sitter gives up otherwise: count, do not crash
        result.skip = "unparseable"
        return result
    root = tree.root_node
    if root.has_error:
        result.skip = "unparseable"
        return result

    sites = find_functions(root, data, key)
    if "retrieval" in config.tasks:
        comments = comment_spans(root, key)
        for site in sites:
            try:
                record, reason = make_pair(site, data, key, config.filters, comments)
            except (UnicodeDecodeError, ValueError):
                record, reason = None, "bad_text"
            if record is None:
                result.counts[f"function_{reason}"] += 1
            else:
                result.pairs.append(record)
    if "long_context" in config.tasks:
        docs, skipped = documents(root, data, sites, config.long_context)
        result.docs = docs
        for reason, n in skipped.items():
            result.counts[f"long_context_{reason}"] += n
    if "type_inference" in config.tasks and task.language in ("python", "typescript"):
        exs, unlabelled = type_examples(root, key, config.type_max_words)
        result.types = exs
        if unlabelled:
            result.counts["type_inference_window_without_annotation"] += unlabelled
    return result


def process_batch(args) -> list[FileResult]:
    """Pool entry point: a chunk of tasks (fewer, larger messages between processes)."""
    tasks, config = args
    return [process_file(t, config) for t in tasks]
