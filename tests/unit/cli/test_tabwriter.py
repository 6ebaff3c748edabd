"""Go tabwriter alignment, which every kubectl table and describe page is made with."""

from __future__ import annotations

import pytest

from ketch.cli.tabwriter import table_text, tabwrite


@pytest.mark.parametrize(
    ("text", "minwidth", "padding", "want"),
    [
        pytest.param("a\tb\nccc\td\n", 0, 2, "a    b\nccc  d\n",
                     id="a column is as wide as its widest cell plus padding"),
        pytest.param("Name:\tpi\nPod Template:\n  Labels:\tx\n", 0, 2,
                     "Name:  pi\nPod Template:\n  Labels:  x\n", id="a line without tabs ends the block"),
        pytest.param("a\tb\tc\nlonger\td\n", 0, 1, "a      b c\nlonger d\n",
                     id="the last cell of a line is never padded"),
        pytest.param("ID\tX\n1\t2\n", 6, 3, "ID    X\n1     2\n", id="kubectl get's minimum width of 6"),
        pytest.param("Labels:\ta=b\n\tc=d\n", 0, 2, "Labels:  a=b\n         c=d\n",
                     id="continuation lines align under the value"),
    ],
)
def test_tabwrite(text: str, minwidth: int, padding: int, want: str) -> None:
    assert tabwrite(text, minwidth, padding) == want


def test_table_text_pads_with_three_spaces() -> None:
    rows = [["NAME", "STATUS", "AGE"], ["pi", "Complete", "5s"]]
    assert table_text(rows) == "NAME   STATUS     AGE\npi     Complete   5s\n"
