"""Puts tests/ on sys.path so test modules share helpers such as ``event_log``.

The session fixtures of real servers (Kafka + Connect, legacy Postgres + MariaDB) are registered here
once: imported into several test modules instead, each module would start its own servers.
"""

pytest_plugins = ["distributed_stack", "legacy_databases"]
