"""The Python API: the skynetsoap-compatible surface over soapd's ledger and store.

:mod:`.soap` (the ``Soap`` class), :mod:`.results` (``PhotometryResult``,
``TargetLightcurve``), :mod:`.select` (row selection by time, band and
position), :mod:`.cache` (cache sizes, clearing, pruning), :mod:`.support`
(config resolution, date windows, forced positions). Import ``Soap`` from
``soapd`` (lazily) rather than from here.
"""
