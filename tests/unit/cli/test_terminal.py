"""What human output does to control characters: kubectl's `^[` and `\\r`, Go-quoted otherwise."""

from __future__ import annotations

import pytest

from ketch.cli.terminal import escape, escape_cell


@pytest.mark.parametrize(("text", "want"), [
    ("plain text, ünïcödé ✓", "plain text, ünïcödé ✓"),
    ("\x1b[31mred\x1b[0m", "^[[31mred^[[0m"),
    ("over\rwrite", "over\\rwrite"),
    ("bell\x07 back\x08 nul\x00 del\x7f", "bell\\x07 back\\x08 nul\\x00 del\\x7f"),
    ("8-bit CSI \x9b2J and OSC \x9d", "8-bit CSI \\u009b2J and OSC \\u009d"),
    ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
])
def test_escape(text: str, want: str) -> None:
    assert escape(text) == want


def test_a_cell_escapes_tabs_and_newlines_too() -> None:
    assert escape_cell("a\tb\nc\x1b") == "a\\tb\\nc^["
    assert escape_cell("ok") == "ok"
