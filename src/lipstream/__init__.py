"""lipstream: a real-time lip-sync avatar server."""

__version__ = "0.1.0"
