"""pytest-nocrud: end-to-end API flow tests on a real app and a real PostgreSQL, one fresh database per test."""

__version__ = "0.1.0"
