"""Escaping terminal control characters in human output, so an object's fields cannot drive the
reader's terminal (move the cursor, erase lines, retitle the window, hide text).

kubectl does this since 1.29 (cli-runtime printers.EscapeTerminal, kubernetes#112553) in tables,
custom columns, describe and events: ESC becomes `^[` and CR becomes `\\r`. Ketch writes those
two the same way and goes further, since the other controls are just as able to act on a
terminal: every other C0 control but tab and newline, DEL and the C1 controls (U+0080-U+009F,
which terminals may take as CSI, OSC...) are written Go-quoted (`\\x07`, `\\u009b`). In a table
cell, where a line break would forge a row, tab and newline are escaped (`\\t`, `\\n`) too.

Only human output is escaped. JSON and YAML stay exact (their formats escape controls), as do
jsonpath and names; `logs` prints the program's own bytes as they are (kubectl does not escape
logs either).
"""

from __future__ import annotations

_TEXT: dict[int, str] = {c: f"\\x{c:02x}" for c in range(0x20) if c not in (0x09, 0x0A)}
_TEXT[0x1B] = "^["
_TEXT[0x0D] = "\\r"
_TEXT[0x7F] = "\\x7f"
_TEXT.update({c: f"\\u{c:04x}" for c in range(0x80, 0xA0)})
_CELL = {**_TEXT, 0x09: "\\t", 0x0A: "\\n"}


def escape(text: str) -> str:
    """Text for a terminal: controls escaped, tabs and newlines kept (describe, messages)."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_TEXT)


def escape_cell(text: str) -> str:
    """One table cell: as escape(), and tabs and newlines escaped as well."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_CELL)
