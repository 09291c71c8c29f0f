"""The Python API: the skynetsoap-compatible surface over soapd's ledger and store.

:mod:`.soap` (the ``Soap`` class), :mod:`.state` (its store, archive client and
ledger steps), :mod:`.soap_tools` (debug figures, cache methods with
skynetsoap's ``confirm``), :mod:`.compat` and :mod:`.compat_run` (skynetsoap's
file layout, verbosity, ``plot``/``export``, warnings, ``run`` arguments),
:mod:`.results` and :mod:`.result_output` (``PhotometryResult``,
``TargetLightcurve``), :mod:`.select` (row selection by time, band and
position), :mod:`.cache` (cache sizes, clearing, pruning), :mod:`.support`
(config resolution, date windows, forced positions). Import ``Soap`` from
``soapd`` (lazily) rather than from here.
"""
