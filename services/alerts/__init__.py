"""Alert evaluation in the worker fleet: the ``evaluate_alert`` actor (actors.py) evaluating one rule
(evaluator.py), the scheduler that enqueues it (scheduler.py), and the part of the fleet a serving
process runs (fleet.py). The rules, their state machine and the ``/v1/alerts`` use cases are
readmodels/alerts.py; their storage is connectors/alert_store.py.

See docs/alerts.md.
"""
