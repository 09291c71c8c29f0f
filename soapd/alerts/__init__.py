"""Alerts: rules on each new lightcurve point, the outbox sender, notifiers and GCN drafts.

``history.decide_alerts`` runs the rules on a processed frame's target rows
against each target's stored rule state (``state``: the decisions of ``rules`` on
the history, from a few numbers per telescope, band and system), and returns the
drafts and the new states (``soapd.frames.record_result`` stores both with the frame
in one transaction); ``outbox.flush`` delivers them
later through the notifiers of ``notifiers.build_notifiers``; ``gcn`` writes
circular drafts. Nothing here writes to the store except the outbox's delivery
bookkeeping.
"""
