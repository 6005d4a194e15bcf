"""Bookshelf: a small FastAPI + SQLAlchemy 2 + Alembic API, the second pytest-nocrud example."""
