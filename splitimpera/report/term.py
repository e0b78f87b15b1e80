"""Text that fits the terminal: its width, tables that choose their columns by it, prose
wrapped to it. The terminal renderers (:mod:`.text`, the sweep's) lay their tables out here."""

from __future__ import annotations

import shutil
import textwrap

DEFAULT_WIDTH = 100  # not a terminal (a pipe, a file, a test): what most readers' windows hold
MIN_WIDTH = 40


def width() -> int:
    """Columns to fit: ``$COLUMNS`` when set, else the terminal's, else :data:`DEFAULT_WIDTH`."""
    return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def _layout(header, rows, align, widths) -> list[str]:
    def fmt(cells):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    return [fmt(header), fmt(["─" * w for w in widths]), *(fmt(r) for r in rows)]


def _widths(header, rows) -> list[int]:
    return [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]


def _total(widths) -> int:
    return sum(widths) + 2 * (len(widths) - 1)


def grid(header: list[str], rows: list[list[str]], align: str, cols: int | None = None,
         drop: tuple[str, ...] = (), keep: int = 1) -> str:
    """A table of ``rows`` under ``header`` (``align``: one ``l``/``r`` per column) in at most
    ``cols`` columns (default: :func:`width`).

    Too wide, it first leaves out the columns named in ``drop`` (least important first) and
    says so below the table; then wraps a left-aligned last column (a verdict) onto further
    lines; then, for a table of like columns (a split × bottleneck matrix), breaks the
    columns into blocks that each repeat the first ``keep`` columns. A cell wider than the
    whole width is cut with ``…``.
    """
    cols = cols or width()
    header, rows, align = list(header), [list(r) for r in rows], list(align)
    dropped = []
    for name in drop:
        if _total(_widths(header, rows)) <= cols:
            break
        if name in header:
            i = header.index(name)
            dropped.append(name)
            for lst in (header, align, *rows):
                del lst[i]
    widths = _widths(header, rows)
    note = ([f"(left out to fit {cols} columns: {', '.join(dropped)}; a wider terminal or COLUMNS=… shows them)"]
            if dropped else [])
    if _total(widths) > cols and align[-1] == "l" and len(header) > 1:
        room = cols - _total(widths[:-1]) - 2
        if room >= max(16, len(header[-1])):
            wrapped = []
            for r in rows:
                parts = textwrap.wrap(r[-1], room, break_on_hyphens=False) or [""]
                wrapped.append([*r[:-1], parts[0]])
                wrapped += [[""] * (len(r) - 1) + [p] for p in parts[1:]]
            rows = wrapped
            widths = _widths(header, rows)
    if _total(widths) <= cols:
        return "\n".join(_layout(header, rows, align, widths) + _wrap_lines(note, cols))
    # Blocks of columns, each led by the first ``keep``.
    keep = min(keep, len(header) - 1)
    lead = _total(widths[:keep]) + 2 if keep else 0
    cut = max(1, cols - lead)
    widths = [min(w, cut) for w in widths]
    rows = [[c if len(c) <= w else c[:w - 1] + "…" for c, w in zip(r, widths)] for r in rows]
    header = [c if len(c) <= w else c[:w - 1] + "…" for c, w in zip(header, widths)]
    blocks, start = [], keep
    while start < len(header):
        end, used = start, lead
        while end < len(header) and (end == start or used + widths[end] <= cols):
            used += widths[end] + 2
            end += 1
        idx = [*range(keep), *range(start, end)]
        blocks.append("\n".join(_layout([header[i] for i in idx], [[r[i] for i in idx] for r in rows],
                                        [align[i] for i in idx], [widths[i] for i in idx])))
        start = end
    return "\n\n".join(blocks) + "".join("\n" + n for n in _wrap_lines(note, cols))


def _wrap_lines(lines: list[str], cols: int) -> list[str]:
    out = []
    for line in lines:
        if len(line) <= cols:
            out.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        out += textwrap.wrap(line, cols, initial_indent="", subsequent_indent=indent + "  ",
                             break_on_hyphens=False, break_long_words=True) or [""]
    return out


def fit(text: str, cols: int | None = None) -> str:
    """``text`` with every line longer than ``cols`` (default: :func:`width`) wrapped, its
    continuation indented two more spaces than the line."""
    return "\n".join(_wrap_lines(text.split("\n"), cols or width()))
