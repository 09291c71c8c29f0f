"""Plain-text tables with headings stacked over several lines (GCN circulars, drafts)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["stacked_table"]


def stacked_table(
    heads: Sequence[Sequence[str]], body: Sequence[Sequence[str]], *, head_lines: int = 5
) -> list[str]:
    """Return the lines of a left-aligned table whose headings are words stacked bottom-up.

    Parameters
    ----------
    heads
        One list of heading words per column, top to bottom; each column's words
        end on the last of ``head_lines`` heading lines (at most ``head_lines`` words).
    body
        The rows' cells, as text, one list per row in column order.
    head_lines
        How many heading lines to write (shorter headings start lower).

    Columns are as wide as their widest word or cell and two spaces apart; a dashed
    line separates headings and rows; trailing blanks are removed.
    """
    widths = [max([len(w) for w in h] + [len(b[j]) for b in body]) for j, h in enumerate(heads)]
    lines = []
    for k in range(head_lines):
        cells = []
        for h, w in zip(heads, widths, strict=True):
            pad = head_lines - len(h)
            cells.append((h[k - pad] if k >= pad else "").ljust(w))
        lines.append("  ".join(cells).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body
    )
    return lines
