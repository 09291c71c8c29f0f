"""The masked-column helpers of soapd.catalogs.normalise (shared by api, alerts, output)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, QTable, Table

from soapd.columns import column_or, filled


def _table() -> Table:
    t = Table()
    t["ra"] = MaskedColumn([1.5, 2.5, 3.5], mask=[False, True, False], unit="deg")
    t["n"] = MaskedColumn([1, 2, 3], mask=[False, True, False])
    t["name"] = MaskedColumn(["a", "b", "c"], mask=[False, True, False])
    t["ok"] = Column([True, False, True])
    return t


def test_filled_gives_plain_floats_with_nan_for_masked():
    for table in (_table(), QTable(_table())):  # a Column with a unit, and a MaskedQuantity
        got = filled(table, "ra")
        assert type(got) is np.ndarray
        assert got.dtype == np.float64
        assert np.array_equal(got, [1.5, np.nan, 3.5], equal_nan=True)
    assert np.array_equal(filled(_table(), "n"), [1.0, np.nan, 3.0], equal_nan=True)
    with pytest.raises(KeyError):
        filled(_table(), "dec")


def test_column_or_keeps_the_dtype_and_fills_with_the_default():
    t = _table()
    assert column_or(t, "n", -1).tolist() == [1, -1, 3]
    assert column_or(t, "n", -1).dtype.kind == "i"
    assert column_or(t, "name", "").tolist() == ["a", "", "c"]
    assert column_or(t, "ok", False).tolist() == [True, False, True]
    assert np.array_equal(column_or(t, "ra", np.nan), [1.5, np.nan, 3.5], equal_nan=True)
    assert np.array_equal(column_or(QTable(t), "ra", 0.0), [1.5, 0.0, 3.5])
    assert column_or(t, "absent", 7).tolist() == [7, 7, 7]
    assert len(column_or(Table(), "absent", 7)) == 0
