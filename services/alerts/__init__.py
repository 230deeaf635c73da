"""Threshold alerts on metrics: rules (pure state machine), their store, and the evaluator.

See docs/alerts.md.
"""
