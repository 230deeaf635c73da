"""The alert evaluator thread of an API process (evaluator.py). The rules, their state machine and
the ``/v1/alerts`` use cases are readmodels/alerts.py; their storage is connectors/alert_store.py.

See docs/alerts.md.
"""
