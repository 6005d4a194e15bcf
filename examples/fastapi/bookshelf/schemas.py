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


class AuthorPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
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
    title: str | None = Field(default=None, min_length=1, max_length=300)
    author_id: int | None = None
    genre: Genre | None = None
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
    rating: int | None = Field(default=None, ge=1, le=5)
    body: str | None = None


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
