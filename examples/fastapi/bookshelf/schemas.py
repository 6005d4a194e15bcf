"""Request and response bodies (pydantic v2). ``*In`` is what clients send, ``*Out`` what they get."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Genre = Literal["fiction", "nonfiction", "poetry", "science-fiction"]
ISBN = Field(default=None, pattern=r"^97[89]-?\d{1,5}-?\d{1,7}-?\d{1,7}-?\d$", examples=["978-0-441-47812-5"])


class AuthorIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Ursula K. Le Guin"])
    birth_year: int | None = Field(default=None, ge=0, le=2100)
    country: str | None = Field(default=None, max_length=100)


# A PATCH field left out keeps its value; an explicit null is refused (422) where the column is NOT
# NULL: typed ``str``, not ``str | None``, with a default that is never validated. (It was a 500 --
# found by the fuzz tests, tests/test_bookshelf_fuzz.py.)


class AuthorPatch(BaseModel):
    name: str = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]
    birth_year: int | None = Field(default=None, ge=0, le=2100)
    country: str | None = Field(default=None, max_length=100)


class AuthorOut(AuthorIn):
    model_config = ConfigDict(from_attributes=True)
    id: int


class TagIn(BaseModel):
    name: str = Field(min_length=1, max_length=50, examples=["space opera"])


class TagOut(TagIn):
    id: int
    url: str  # the item's own URL: clients (and CrudFlow) need not guess it


class BookIn(BaseModel):
    title: str = Field(min_length=1, max_length=300, examples=["The Left Hand of Darkness"])
    author_id: int
    genre: Genre = "fiction"
    isbn: str | None = ISBN
    published: datetime.date | None = None
    tag_ids: list[int] = []


class BookPatch(BaseModel):
    title: str = Field(default=None, min_length=1, max_length=300)  # type: ignore[assignment]
    author_id: int = None  # type: ignore[assignment]
    genre: Genre = None  # type: ignore[assignment]
    isbn: str | None = ISBN
    published: datetime.date | None = None
    tag_ids: list[int] | None = None


class BookOut(BaseModel):
    id: int
    title: str
    author_id: int
    genre: Genre
    isbn: str | None
    published: datetime.date | None
    tag_ids: list[int]


class ReviewIn(BaseModel):
    book_id: int
    rating: int = Field(ge=1, le=5)
    body: str = ""


class ReviewPatch(BaseModel):
    rating: int = Field(default=None, ge=1, le=5)  # type: ignore[assignment]
    body: str = None  # type: ignore[assignment]


class ReviewOut(ReviewIn):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int


class Credentials(BaseModel):
    username: str
    password: str


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"


class Me(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
