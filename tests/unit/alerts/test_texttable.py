"""The stacked-heading text table shared by the GCN draft and the circular."""

from __future__ import annotations

from soapd.alerts.texttable import stacked_table


def test_headings_end_on_the_last_heading_line_and_columns_fit_their_widest_text() -> None:
    heads = [["mean", "time", "(MJD)"], ["filter"], ["mag. or", "5-sigma", "limit"]]
    body = [["61000.12345", "V", "18.20 +/- 0.05"], ["61000.2", "R", "> 19.1"]]
    assert stacked_table(heads, body, head_lines=3) == [
        "mean                 mag. or",
        "time                 5-sigma",
        "(MJD)        filter  limit",
        "-----------  ------  --------------",
        "61000.12345  V       18.20 +/- 0.05",
        "61000.2      R       > 19.1",
    ]


def test_short_headings_leave_blank_top_lines() -> None:
    lines = stacked_table([["a"], ["b", "c"]], [["1", "2"]], head_lines=3)
    assert lines == ["", "   b", "a  c", "-  -", "1  2"]
