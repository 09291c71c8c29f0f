"""The README's flags table must list every bit of soapd.flags.Flag, with its value."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from soapd.flags import Flag, describe

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_flags_table_matches_flag_registry() -> None:
    text = README.read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (\d+) \|", text, re.MULTILINE))
    expected = {f.name: str(f.value) for f in Flag}
    assert rows == expected


def test_flag_bits_are_distinct_powers_of_two() -> None:
    values = [f.value for f in Flag]
    assert len(set(values)) == len(values)
    assert all(v > 0 and v & (v - 1) == 0 for v in values)


@given(st.sets(st.sampled_from(list(Flag))))
def test_flag_encode_decode_round_trips(bits: set[Flag]) -> None:
    value = 0
    for b in bits:
        value |= b
    assert set(describe(value)) == {b.name for b in bits}
    assert Flag(value) == value
