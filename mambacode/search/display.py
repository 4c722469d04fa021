"""How `mambacode search` prints hits for people and editors.

* default: grep/ripgrep style, `path:line:col: name  (language, #rank, score S)` then the function's first
  lines indented, colour when stdout is a terminal (`--color`, `NO_COLOR`);
* `--vimgrep`: one line per hit, `path:line:col:name  (language, #rank, score S)`, never coloured: what
  vim's quickfix (`errorformat` `%f:%l:%c:%m`), emacs' compilation mode and VS Code's problem matchers read;
* `--explain`: a line per hit with each ranker's rank and score and, for the hybrid, the fused sum.

Text from the indexed files (names, paths, snippets) is untrusted: a function named with terminal escape
sequences must not retitle the window or clear the screen. `escape_controls` writes every C0 / C1 control
character (but tab in code), DEL, the bidirectional overrides and isolates, the line and paragraph separators
and lone surrogates as visible `\\xNN` / `\\uNNNN` escapes. `--json` is escaped by the JSON encoder.
"""

from __future__ import annotations

import os
import re

#: C0 controls, DEL and C1 controls, bidi embeddings/overrides/isolates/marks, line/paragraph separators and
#: lone surrogates (from undecodable file names)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_BUT_TAB = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                             "\ud800-\udfff]")
COLUMN_READ_LIMIT = 1 << 20  # bytes read from a file to find a hit's column (beyond: column 1)

_STYLES = {"path": "35", "position": "32", "name": "1", "dim": "2"}  # magenta, green, bold, faint (as ripgrep)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, keep_tab: bool = False) -> str:
    """`text` with every character that a terminal would act on written as a visible escape (see module doc)."""
    return (_UNSAFE_BUT_TAB if keep_tab else _UNSAFE).sub(_escape, text)


def use_colour(choice: str, stream) -> bool:
    """--color always/never/auto: auto colours a terminal unless NO_COLOR is set or TERM is 'dumb'."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m" if colour else text


def display_path(file: str) -> str:
    """`file` relative to the working folder when it is below it, else as stored (absolute)."""
    try:
        rel = os.path.relpath(file)
    except ValueError:  # another drive (Windows)
        return file
    return file if rel.startswith("..") else rel


def hit_column(file: str, line: int, snippet: str) -> int:
    """The 1-based byte column where the function starts on `line`: its indentation + 1 when the file's line
    still reads as the indexed function's first line, else 1 (the file changed, is gone, or is huge)."""
    first = snippet.split("\n", 1)[0].strip()
    try:
        if not first or os.path.getsize(file) > COLUMN_READ_LIMIT:
            return 1
        with open(file, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number == line:
                    text = raw.rstrip(b"\r\n")
                    body = text.lstrip(b" \t")
                    if body.decode("utf-8", "replace").strip() == first:
                        return len(text) - len(body) + 1
                    return 1
    except OSError:
        pass
    return 1


def location(hit, column: int) -> str:
    """'path:line:col' of a hit (escaped)."""
    return f"{escape_controls(display_path(hit.file))}:{hit.line}:{column}"


def _label(hit) -> str:
    return f"({escape_controls(hit.language)}, #{hit.rank}, score {hit.score:.4f})"


def vimgrep_line(hit, column: int) -> str:
    """`path:line:col:name  (language, #rank, score S)`: one line an editor's quickfix reads."""
    return f"{location(hit, column)}:{escape_controls(hit.name or '<anonymous>')}  {_label(hit)}"


def human_lines(hit, column: int, colour: bool = False, explain: str | None = None) -> list[str]:
    """The location line (`path:line:col: name  (...)`), the explanation line if any, then the snippet."""
    path = _paint(escape_controls(display_path(hit.file)), "path", colour)
    position = _paint(f"{hit.line}:{column}", "position", colour)
    name = _paint(escape_controls(hit.name or "<anonymous>"), "name", colour)
    lines = [f"{path}:{position}: {name}  {_paint(_label(hit), 'dim', colour)}"]
    if explain:
        lines.append(f"    {_paint(explain, 'dim', colour)}")
    lines += [f"    {escape_controls(text, keep_tab=True)}" for text in hit.snippet.splitlines()]
    return lines


def explanation(hit, mode: str, fusion=None, depth: int | None = None) -> str:
    """Where each ranker put `hit`: 'dense #3 (cosine 0.4123), bm25 #1 (score 2.310)', and for the hybrid the
    fused sum, e.g. '= 0.2/(10+3) + 1/(10+1) = 0.1063'."""
    missing = f"not in its top {depth}" if depth else "not retrieved"
    dense = (f"dense #{hit.dense_rank} (cosine {hit.dense_score:.4f})" if hit.dense_rank is not None
             else f"dense: {missing}")
    bm25 = (f"bm25 #{hit.bm25_rank} (score {hit.bm25_score:.3f})" if hit.bm25_rank is not None
            else f"bm25: {missing}")
    text = f"{dense}, {bm25}"
    if mode == "hybrid" and fusion is not None:
        terms = []
        if hit.dense_rank is not None:
            terms.append(f"{fusion.dense_weight:g}/({fusion.k}+{hit.dense_rank})")
        if hit.bm25_rank is not None:
            terms.append(f"1/({fusion.k}+{hit.bm25_rank})")
        text += f"; fused {' + '.join(terms) or '0'} = {hit.score:.4f}"
    return text


__all__ = ["display_path", "escape_controls", "explanation", "hit_column", "human_lines", "location", "use_colour",
           "vimgrep_line"]
