"""The bookshelf API.

URL styles differ per resource on purpose, as they do in real FastAPI projects, and pytest-nocrud's
``CrudFlow`` copes with each:

* ``/authors``  -- POST answers ``201`` with a ``Location`` header naming the new item
* ``/books``    -- no Location, no URL field: the item is ``/books/{id}`` (endpoint + id)
* ``/tags/``    -- router style with a trailing slash; items carry their own ``url`` field
* ``/reviews/`` -- router style, nothing to go by: items are ``/reviews/{id}`` (no slash), so a guessed
  ``/reviews/{id}/`` gets FastAPI's 307 redirect; the flow sets ``detail_path``

Reads are public; writes need ``Authorization: Bearer <token>`` from ``POST /token`` (OAuth2 password
flow, form-encoded) or ``POST /auth/login`` (JSON), or the cookie ``POST /session/login`` sets.
Editors and admins write the catalogue; any user may
review a book, and only the review's author (or an admin) may change it.

``BOOKSHELF_BREAK=erased_author`` plants a state-dependent bug (the pattern of ``PITCHDESK_BREAK`` in
example_app) for the fuzz tests: ``DELETE /authors/{id}`` then erases the author's data but keeps the
row, and ``POST /books`` files the new book under its author's initial -- a 500 for a book of a deleted
author. Only a sequence finds it: delete an author, then create a book for them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bookshelf import schemas
from bookshelf.db import SessionLocal, get_session
from bookshelf.models import ApiToken, Author, Book, Review, Tag, User
from bookshelf.security import check_password, new_token

app = FastAPI(title="Bookshelf", version="1.0")
BREAK = {name.strip() for name in os.environ.get("BOOKSHELF_BREAK", "").split(",") if name.strip()}
ERASED = "erased_author" in BREAK


@app.exception_handler(DataError)
def _value_out_of_range(request: Request, exc: DataError) -> JSONResponse:
    """An id the database cannot hold (e.g. 2**63 for an integer column): the client's mistake, 422 --
    found by the fuzz tests, where it was a 500."""
    return JSONResponse({"detail": "a value is out of range for the database"}, status_code=422)
DB = Annotated[Session, Depends(get_session)]
bearer = HTTPBearer(auto_error=False)


def _not_found(what: str, obj_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {obj_id} not found")


# -- auth -------------------------------------------------------------------------------------------


SESSION_COOKIE = "bookshelf_session"


def current_user(
    request: Request, db: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> User:
    """The bearer token's user, else the session cookie's (a browser-style login without CSRF)."""
    presented = credentials.credentials if credentials else request.cookies.get(SESSION_COOKIE)
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"}
        )
    token = db.get(ApiToken, presented)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Invalid token", headers={"WWW-Authenticate": "Bearer"}
        )
    return token.user


CurrentUser = Annotated[User, Depends(current_user)]


def editor(user: CurrentUser) -> User:
    if user.role not in ("editor", "admin"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Editors only")
    return user


Editor = Annotated[User, Depends(editor)]


def _issue_token(username: str, password: str) -> str | None:
    with SessionLocal() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is None or not check_password(password, user.password_hash):
            return None
        token = ApiToken(token=new_token(), user_id=user.id)
        db.add(token)
        db.commit()
        return token.token


async def _credentials(request: Request) -> tuple[str, str]:
    """Username and password from a form (OAuth2 password flow) or a JSON body."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data: Any = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        return str(data.get("username", "")), str(data.get("password", ""))
    form = parse_qs(raw.decode("utf-8", "replace"))
    return form.get("username", [""])[0], form.get("password", [""])[0]


@app.post("/token", response_model=schemas.TokenOut, tags=["auth"])
async def token(request: Request) -> schemas.TokenOut:
    """OAuth2 password flow: form fields ``username``, ``password`` (``grant_type=password``)."""
    username, password = await _credentials(request)
    issued = await run_in_threadpool(_issue_token, username, password)
    if issued is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return schemas.TokenOut(access_token=issued)


@app.post("/auth/login", tags=["auth"])
def login(body: schemas.Credentials) -> dict[str, Any]:
    """The same credentials as JSON; answers ``{"token": ..., "user": {...}}``."""
    issued = _issue_token(body.username, body.password)
    if issued is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password")
    with SessionLocal() as db:
        user = db.scalar(select(User).where(User.username == body.username))
        return {"token": issued, "user": schemas.Me.model_validate(user).model_dump()}


@app.post("/session/login", response_model=schemas.Me, tags=["auth"])
def session_login(body: schemas.Credentials, response: Response) -> User:
    """Cookie session login with no CSRF endpoint (like noCRUD's app); SameSite=Lax limits CSRF."""
    issued = _issue_token(body.username, body.password)
    if issued is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password")
    response.set_cookie(SESSION_COOKIE, issued, httponly=True, samesite="lax")
    with SessionLocal() as db:
        return db.scalars(select(User).where(User.username == body.username)).one()


@app.get("/me", response_model=schemas.Me, tags=["auth"])
def me(user: CurrentUser) -> User:
    return user


@app.get("/health", include_in_schema=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


# -- authors: POST answers with a Location header ---------------------------------------------------


@app.get("/authors", response_model=list[schemas.AuthorOut], tags=["authors"])
def list_authors(db: DB) -> Sequence[Author]:
    query = select(Author).order_by(Author.id)
    return db.scalars(query.where(Author.name != "") if ERASED else query).all()


@app.post("/authors", response_model=schemas.AuthorOut, status_code=201, tags=["authors"])
def create_author(body: schemas.AuthorIn, db: DB, response: Response, _: Editor) -> Author:
    author = Author(**body.model_dump())
    db.add(author)
    db.commit()
    response.headers["Location"] = f"/authors/{author.id}"
    return author


def _author(db: Session, author_id: int) -> Author:
    author = db.get(Author, author_id)
    if author is None or (ERASED and author.name == ""):
        raise _not_found("author", author_id)
    return author


@app.get("/authors/{author_id}", response_model=schemas.AuthorOut, tags=["authors"])
def read_author(author_id: int, db: DB) -> Author:
    return _author(db, author_id)


@app.patch("/authors/{author_id}", response_model=schemas.AuthorOut, tags=["authors"])
def update_author(author_id: int, body: schemas.AuthorPatch, db: DB, _: Editor) -> Author:
    author = _author(db, author_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(author, field, value)
    db.commit()
    return author


@app.put("/authors/{author_id}", response_model=schemas.AuthorOut, tags=["authors"])
def replace_author(author_id: int, body: schemas.AuthorIn, db: DB, _: Editor) -> Author:
    author = _author(db, author_id)
    for field, value in body.model_dump().items():
        setattr(author, field, value)
    db.commit()
    return author


@app.delete("/authors/{author_id}", status_code=204, tags=["authors"])
def delete_author(author_id: int, db: DB, _: Editor) -> None:
    author = _author(db, author_id)
    if ERASED:  # the planted bug: erase the data, keep the row (and the books)
        author.name, author.birth_year, author.country = "", None, None
    else:
        db.delete(author)  # the database cascades to the author's books
    db.commit()


# -- books: a foreign key to authors, many-to-many tags; item URL = endpoint + id -------------------


def _book_out(book: Book) -> schemas.BookOut:
    return schemas.BookOut(
        id=book.id,
        title=book.title,
        author_id=book.author_id,
        genre=book.genre,  # type: ignore[arg-type]
        isbn=book.isbn,
        published=book.published,
        tag_ids=[tag.id for tag in book.tags],
    )


def _check_refs(db: Session, author_id: int | None, tag_ids: list[int] | None) -> list[Tag] | None:
    if author_id is not None and db.get(Author, author_id) is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"author_id": f"author {author_id} does not exist"})
    if tag_ids is None:
        return None
    tags = list(db.scalars(select(Tag).where(Tag.id.in_(tag_ids)).order_by(Tag.id)))
    missing = sorted(set(tag_ids) - {tag.id for tag in tags})
    if missing:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"tag_ids": f"unknown tags {missing}"})
    return tags


def _isbn_free(db: Session, isbn: str | None, book_id: int | None = None) -> None:
    if isbn is None:
        return
    other = db.scalar(select(Book).where(Book.isbn == isbn))
    if other is not None and other.id != book_id:
        raise HTTPException(status.HTTP_409_CONFLICT, {"isbn": "a book with this ISBN exists"})


@app.get("/books", response_model=list[schemas.BookOut], tags=["books"])
def list_books(db: DB, author_id: int | None = None) -> list[schemas.BookOut]:
    query = select(Book).order_by(Book.id)
    if author_id is not None:
        query = query.where(Book.author_id == author_id)
    return [_book_out(book) for book in db.scalars(query)]


@app.post("/books", response_model=schemas.BookOut, status_code=201, tags=["books"])
def create_book(body: schemas.BookIn, db: DB, _: Editor) -> schemas.BookOut:
    tags = _check_refs(db, body.author_id, body.tag_ids) or []
    _isbn_free(db, body.isbn)
    if ERASED:  # the shelf label: the author's initial (an erased author has none: IndexError, 500)
        shelf = db.get(Author, body.author_id).name[0].upper()  # type: ignore[union-attr]
        app.state.last_shelf = shelf
    book = Book(**body.model_dump(exclude={"tag_ids"}), tags=tags)
    db.add(book)
    db.commit()
    return _book_out(book)


def _book(db: Session, book_id: int) -> Book:
    book = db.get(Book, book_id)
    if book is None:
        raise _not_found("book", book_id)
    return book


@app.get("/books/{book_id}", response_model=schemas.BookOut, tags=["books"])
def read_book(book_id: int, db: DB) -> schemas.BookOut:
    return _book_out(_book(db, book_id))


@app.patch("/books/{book_id}", response_model=schemas.BookOut, tags=["books"])
def update_book(book_id: int, body: schemas.BookPatch, db: DB, _: Editor) -> schemas.BookOut:
    book = _book(db, book_id)
    changes = body.model_dump(exclude_unset=True)
    tags = _check_refs(db, changes.get("author_id"), changes.pop("tag_ids", None))
    _isbn_free(db, changes.get("isbn"), book.id)
    for field, value in changes.items():
        setattr(book, field, value)
    if tags is not None:
        book.tags = tags
    db.commit()
    return _book_out(book)


@app.delete("/books/{book_id}", status_code=204, tags=["books"])
def delete_book(book_id: int, db: DB, _: Editor) -> None:
    db.delete(_book(db, book_id))
    db.commit()


# -- tags: router style (/tags/), items carry their own url ----------------------------------------

tags_router = APIRouter(prefix="/tags", tags=["tags"])


def _tag_out(tag: Tag) -> schemas.TagOut:
    return schemas.TagOut(id=tag.id, name=tag.name, url=f"/tags/{tag.id}")


def _tag(db: Session, tag_id: int) -> Tag:
    tag = db.get(Tag, tag_id)
    if tag is None:
        raise _not_found("tag", tag_id)
    return tag


def _name_free(db: Session, name: str, tag_id: int | None = None) -> None:
    other = db.scalar(select(Tag).where(Tag.name == name))
    if other is not None and other.id != tag_id:
        raise HTTPException(status.HTTP_409_CONFLICT, {"name": "a tag with this name exists"})


@tags_router.get("/", response_model=list[schemas.TagOut])
def list_tags(db: DB) -> list[schemas.TagOut]:
    return [_tag_out(tag) for tag in db.scalars(select(Tag).order_by(Tag.id))]


@tags_router.post("/", response_model=schemas.TagOut, status_code=201)
def create_tag(body: schemas.TagIn, db: DB, _: Editor) -> schemas.TagOut:
    _name_free(db, body.name)
    tag = Tag(name=body.name)
    db.add(tag)
    db.commit()
    return _tag_out(tag)


@tags_router.get("/{tag_id}", response_model=schemas.TagOut)
def read_tag(tag_id: int, db: DB) -> schemas.TagOut:
    return _tag_out(_tag(db, tag_id))


@tags_router.patch("/{tag_id}", response_model=schemas.TagOut)
def update_tag(tag_id: int, body: schemas.TagIn, db: DB, _: Editor) -> schemas.TagOut:
    tag = _tag(db, tag_id)
    _name_free(db, body.name, tag.id)
    tag.name = body.name
    db.commit()
    return _tag_out(tag)


@tags_router.delete("/{tag_id}", status_code=204)
def delete_tag(tag_id: int, db: DB, _: Editor) -> None:
    db.delete(_tag(db, tag_id))
    db.commit()


# -- reviews: router style, any user reviews, only the author edits ---------------------------------

reviews_router = APIRouter(prefix="/reviews", tags=["reviews"])


def _own_review(db: Session, review_id: int, user: User) -> Review:
    review = db.get(Review, review_id)
    if review is None:
        raise _not_found("review", review_id)
    if review.user_id != user.id and user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Only the review's author may change it")
    return review


@reviews_router.get("/", response_model=list[schemas.ReviewOut])
def list_reviews(db: DB, book_id: int | None = None) -> Sequence[Review]:
    query = select(Review).order_by(Review.id)
    if book_id is not None:
        query = query.where(Review.book_id == book_id)
    return db.scalars(query).all()


@reviews_router.post("/", response_model=schemas.ReviewOut, status_code=201)
def create_review(body: schemas.ReviewIn, db: DB, user: CurrentUser) -> Review:
    _book(db, body.book_id)
    review = Review(**body.model_dump(), user_id=user.id)
    db.add(review)
    db.commit()
    return review


@reviews_router.get("/{review_id}", response_model=schemas.ReviewOut)
def read_review(review_id: int, db: DB) -> Review:
    review = db.get(Review, review_id)
    if review is None:
        raise _not_found("review", review_id)
    return review


@reviews_router.patch("/{review_id}", response_model=schemas.ReviewOut)
def update_review(review_id: int, body: schemas.ReviewPatch, db: DB, user: CurrentUser) -> Review:
    review = _own_review(db, review_id, user)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(review, field, value)
    db.commit()
    return review


@reviews_router.delete("/{review_id}", status_code=204)
def delete_review(review_id: int, db: DB, user: CurrentUser) -> None:
    db.delete(_own_review(db, review_id, user))
    db.commit()


app.include_router(tags_router)
app.include_router(reviews_router)
