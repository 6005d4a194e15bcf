"""pytest-nocrud: end-to-end API flows on a real app and real PostgreSQL, a fresh database per test."""

__version__ = "0.1.0"
