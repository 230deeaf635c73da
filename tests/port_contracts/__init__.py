"""Abstract test suites, one per port, run over every implementation of it (the way
pyeventsourcing/eventsourcing tests its recorders): a concrete ``Test...`` class subclasses the suite
and provides the ``store`` fixture. Nothing here is collected on its own (no ``test_`` modules)."""
