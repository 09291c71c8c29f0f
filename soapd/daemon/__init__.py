"""The long-running service: composition root, scheduled jobs, worker pool, health, systemd.

:mod:`.service` builds everything and supervises; :mod:`.jobs` are the
scheduler's thin jobs; :mod:`.pool` runs frames in worker processes;
:mod:`.health` holds the heartbeat and the job waker; :mod:`.systemd` speaks
sd_notify. Each frame's lifecycle itself lives in :mod:`soapd.frames`, shared
with the Python API.
"""
