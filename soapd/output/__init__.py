"""What soapd writes for people: table exports, lightcurve plots, the debug figure, progress bars.

:mod:`.export` (CSV/ECSV/Parquet/JSON), :mod:`.plots` (lightcurves),
:mod:`.debug` and :mod:`.debug_figure` (the four-panel frame figure),
:mod:`.progress` (a terminal-only progress bar).
"""
