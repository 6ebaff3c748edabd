"""Go's text/tabwriter (left-aligned, space padding), which kubectl formats all its text with.

Cells are tab-terminated; the text after a line's last tab is not aligned. A column block is a
run of consecutive lines that all have a tab-terminated cell in that column, so a line without
tabs ("Pod Template:") ends every block above it, exactly as in kubectl's describe output.
"""

from __future__ import annotations

from .terminal import escape_cell

# kubectl get: printers.GetNewTabWriter; kubectl describe and rollout history: tabbedString.
GET_MINWIDTH, GET_PADDING = 6, 3
DESCRIBE_MINWIDTH, DESCRIBE_PADDING = 0, 2


def tabwrite(text: str, minwidth: int = GET_MINWIDTH, padding: int = GET_PADDING) -> str:
    """Align tab-separated text as tabwriter.NewWriter(out, minwidth, 8, padding, ' ', 0) does."""
    trailing_newline = text.endswith("\n")
    lines = [line.split("\t") for line in (text[:-1] if trailing_newline else text).split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(start: int, end: int) -> None:
        for cells in lines[start:end]:
            parts = []
            for j, cell in enumerate(cells):
                if j < len(widths):
                    parts.append(cell.ljust(widths[j]))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    result = "\n".join(out)
    return result + "\n" if trailing_newline else result


def table_text(rows: list[list[str]]) -> str:
    """Rows of cells as `kubectl get` prints them, control characters escaped in every cell."""
    if not rows:
        return ""
    return tabwrite("".join("\t".join(map(escape_cell, r)) + "\n" for r in rows), GET_MINWIDTH, GET_PADDING)
