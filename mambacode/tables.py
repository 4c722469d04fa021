"""The one Markdown table helper shared by every report (probes, spectra, model cards, benchmarks, the
reproduction report): cells are formatted by the caller, so each report keeps its own number style."""

from __future__ import annotations


def markdown_table(headers: list, rows: list) -> str:
    """A GitHub-flavoured Markdown table: a header row, a `|---|` rule, one line per row (cells via str)."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["markdown_table"]
