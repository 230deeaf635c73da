"""Puts tests/ on sys.path so test modules share helpers such as ``event_log``."""
