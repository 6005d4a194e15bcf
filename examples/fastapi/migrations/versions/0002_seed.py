"""Seed data every test starts from: four users, two authors, two books, two tags, one review.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from bookshelf.security import hash_password

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# username -> role; every password is "<username>-pass".
USERS = {"admin": "admin", "editor": "editor", "editor2": "editor", "reader": "reader"}


def upgrade() -> None:
    meta = sa.MetaData()
    meta.reflect(op.get_bind(), only=("users", "authors", "books", "tags", "book_tags", "reviews"))
    t = meta.tables
    op.bulk_insert(
        t["users"],
        [
            {
                "id": i,
                "username": name,
                "password_hash": hash_password(f"{name}-pass", salt=name),
                "role": role,
            }
            for i, (name, role) in enumerate(USERS.items(), start=1)
        ],
    )
    op.bulk_insert(
        t["authors"],
        [
            {"id": 1, "name": "Ursula K. Le Guin", "birth_year": 1929, "country": "US"},
            {"id": 2, "name": "Octavia E. Butler", "birth_year": 1947, "country": "US"},
        ],
    )
    op.bulk_insert(t["tags"], [{"id": 1, "name": "classic"}, {"id": 2, "name": "space"}])
    op.bulk_insert(
        t["books"],
        [
            {"id": 1, "title": "The Dispossessed", "author_id": 1, "genre": "science-fiction",
             "isbn": "978-0-06-051275-3"},
            {"id": 2, "title": "Kindred", "author_id": 2, "genre": "fiction", "isbn": "978-0-8070-8305-5"},
        ],
    )  # fmt: skip
    op.bulk_insert(t["book_tags"], [{"book_id": 1, "tag_id": 1}, {"book_id": 1, "tag_id": 2}])
    op.bulk_insert(t["reviews"], [{"id": 1, "book_id": 1, "user_id": 4, "rating": 5, "body": "Anarres!"}])
    # Explicit ids above: move the sequences past them so the API's inserts do not collide.
    for name in ("users", "authors", "tags", "books", "reviews"):
        highest = sa.select(sa.func.max(t[name].c.id)).scalar_subquery()
        op.execute(sa.select(sa.func.setval(sa.func.pg_get_serial_sequence(name, "id"), highest)))


def downgrade() -> None:
    meta = sa.MetaData()
    meta.reflect(op.get_bind(), only=("users", "authors", "books", "tags", "book_tags", "reviews"))
    for name in ("reviews", "book_tags", "books", "tags", "authors", "users"):
        op.execute(meta.tables[name].delete())
