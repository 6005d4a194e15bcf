"""The JSON API: projects, notes (in a project, with tags) and tags.

Flask's own URL conventions: a collection is ``/projects/`` and an item ``/projects/<id>``. With
Flask's default ``strict_slashes``, ``/projects`` answers a 308 redirect to ``/projects/``, and
``/projects/7/`` is a 404 (no redirect): the item rule has no trailing slash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from flask import Blueprint, abort, g, jsonify, request
from flask.typing import ResponseReturnValue
from psycopg import sql
from psycopg.rows import DictRow

from . import auth, db
from .validation import Field, Invalid, body, not_blank, one_of

api = Blueprint("api", __name__)
api.before_request(auth.authenticate)


def _out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


def _update(table: str, row_id: int, changes: Mapping[str, Any]) -> None:
    """``UPDATE <table> SET <col> = %s, ... WHERE id = %s`` for the validated fields only."""
    if not changes:
        return
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(col)) for col in changes)
    statement = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), assignments)
    db.conn().execute(statement, [*changes.values(), row_id])


def _missing(what: str, row_id: int) -> NoReturn:
    abort(404, f"{what} {row_id} does not exist")


@api.get("/me")
def me() -> ResponseReturnValue:
    return jsonify(auth.current_user())


@api.post("/logout")
def logout() -> ResponseReturnValue:
    """Revoke the token this request presented."""
    db.conn().execute("DELETE FROM api_tokens WHERE token_sha256 = %s", [g.token_sha256])
    return "", 204


# -- projects: members create them and own them -------------------------------------------------------

PROJECT_SELECT = "SELECT id, name, description, status, owner_id, created_at FROM projects"
PROJECT_FIELDS = {
    "name": Field(str, required=True, check=not_blank),
    "description": Field(str),
    "status": Field(str, check=one_of("active", "archived")),
}


def _project(project_id: int) -> DictRow:
    row = db.one(PROJECT_SELECT + " WHERE id = %s", project_id)
    if row is None:
        _missing("project", project_id)
    return row


@api.get("/projects/")
def list_projects() -> ResponseReturnValue:
    status = request.args.get("status")
    rows = db.query(PROJECT_SELECT + " WHERE %s::text IS NULL OR status = %s ORDER BY id", status, status)
    return jsonify([_out(row) for row in rows])


@api.post("/projects/")
def create_project() -> ResponseReturnValue:
    data = body(PROJECT_FIELDS)
    row = db.one(
        "INSERT INTO projects (name, description, status, owner_id) VALUES (%s, %s, %s, %s) RETURNING id",
        data["name"],
        data.get("description", ""),
        data.get("status", "active"),
        auth.current_user()["id"],
    )
    assert row is not None
    return jsonify(_out(_project(row["id"]))), 201


@api.get("/projects/<int:project_id>")
def read_project(project_id: int) -> ResponseReturnValue:
    return jsonify(_out(_project(project_id)))


@api.patch("/projects/<int:project_id>")
def update_project(project_id: int) -> ResponseReturnValue:
    auth.require_owner(_project(project_id)["owner_id"], "the project's owner")
    _update("projects", project_id, body(PROJECT_FIELDS, partial=True))
    return jsonify(_out(_project(project_id)))


@api.delete("/projects/<int:project_id>")
def delete_project(project_id: int) -> ResponseReturnValue:
    """Deletes the project's notes too (ON DELETE CASCADE)."""
    auth.require_owner(_project(project_id)["owner_id"], "the project's owner")
    db.conn().execute("DELETE FROM projects WHERE id = %s", [project_id])
    return "", 204


# -- tags: any member creates and renames them; only an admin deletes one ----------------------------

TAG_SELECT = "SELECT id, name, color FROM tags"
COLOR = re.compile(r"#[0-9a-f]{6}")
TAG_FIELDS = {
    "name": Field(str, required=True, check=not_blank),
    "color": Field(str, check=lambda c: None if COLOR.fullmatch(c) else "must look like #1a2b3c"),
}


def _tag(tag_id: int) -> DictRow:
    row = db.one(TAG_SELECT + " WHERE id = %s", tag_id)
    if row is None:
        _missing("tag", tag_id)
    return row


@api.get("/tags/")
def list_tags() -> ResponseReturnValue:
    return jsonify(db.query(TAG_SELECT + " ORDER BY id"))


@api.post("/tags/")
def create_tag() -> ResponseReturnValue:
    data = body(TAG_FIELDS)
    row = db.one(
        "INSERT INTO tags (name, color) VALUES (%s, %s) RETURNING id",
        data["name"],
        data.get("color", "#777777"),
    )
    assert row is not None
    return jsonify(_tag(row["id"])), 201


@api.get("/tags/<int:tag_id>")
def read_tag(tag_id: int) -> ResponseReturnValue:
    return jsonify(_tag(tag_id))


@api.patch("/tags/<int:tag_id>")
def update_tag(tag_id: int) -> ResponseReturnValue:
    _tag(tag_id)
    _update("tags", tag_id, body(TAG_FIELDS, partial=True))
    return jsonify(_tag(tag_id))


@api.delete("/tags/<int:tag_id>")
def delete_tag(tag_id: int) -> ResponseReturnValue:
    auth.require_admin("delete tags")
    _tag(tag_id)
    db.conn().execute("DELETE FROM tags WHERE id = %s", [tag_id])
    return "", 204


# -- notes: written into any project; only the author (or an admin) edits one -------------------------

NOTE_SELECT = """
SELECT n.id, n.project_id, n.author_id, n.title, n.body, n.pinned, n.created_at,
       coalesce(array_agg(nt.tag_id ORDER BY nt.tag_id) FILTER (WHERE nt.tag_id IS NOT NULL), '{}')
           AS tag_ids
FROM notes n LEFT JOIN note_tags nt ON nt.note_id = n.id LEFT JOIN tags t ON t.id = nt.tag_id
"""
NOTE_FIELDS = {
    "project_id": Field(int, required=True),
    "title": Field(str, required=True, check=not_blank),
    "body": Field(str),
    "pinned": Field(bool),
    "tag_ids": Field(int, many=True),
}


def _note(note_id: int) -> DictRow:
    row = db.one(NOTE_SELECT + " WHERE n.id = %s GROUP BY n.id", note_id)
    if row is None:
        _missing("note", note_id)
    return row


def _check_refs(data: Mapping[str, Any]) -> None:
    """References answer 400 naming the field, not a 500 from the foreign key."""
    problems: dict[str, str] = {}
    if "project_id" in data and db.one("SELECT 1 FROM projects WHERE id = %s", data["project_id"]) is None:
        problems["project_id"] = f"project {data['project_id']} does not exist"
    if data.get("tag_ids"):
        found = {r["id"] for r in db.query("SELECT id FROM tags WHERE id = ANY(%s)", data["tag_ids"])}
        unknown = sorted(set(data["tag_ids"]) - found)
        if unknown:
            problems["tag_ids"] = f"unknown tags {unknown}"
    if problems:
        raise Invalid(problems)


def _set_tags(note_id: int, tag_ids: Iterable[int]) -> None:
    connection = db.conn()
    connection.execute("DELETE FROM note_tags WHERE note_id = %s", [note_id])
    connection.execute(
        "INSERT INTO note_tags (note_id, tag_id) SELECT %s, unnest(%s::int[]) ON CONFLICT DO NOTHING",
        [note_id, list(tag_ids)],
    )


@api.get("/notes/")
def list_notes() -> ResponseReturnValue:
    """``?project_id=1`` and ``?tag=todo`` filter."""
    project_id = request.args.get("project_id", type=int)
    tag = request.args.get("tag")
    rows = db.query(
        NOTE_SELECT
        + " WHERE %s::int IS NULL OR n.project_id = %s GROUP BY n.id"
        + " HAVING %s::text IS NULL OR %s = ANY(array_agg(t.name)) ORDER BY n.id",
        project_id,
        project_id,
        tag,
        tag,
    )
    return jsonify([_out(row) for row in rows])


@api.post("/notes/")
def create_note() -> ResponseReturnValue:
    data = body(NOTE_FIELDS)
    _check_refs(data)
    row = db.one(
        "INSERT INTO notes (project_id, author_id, title, body, pinned) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id",
        data["project_id"],
        auth.current_user()["id"],
        data["title"],
        data.get("body", ""),
        data.get("pinned", False),
    )
    assert row is not None
    _set_tags(row["id"], data.get("tag_ids", []))
    return jsonify(_out(_note(row["id"]))), 201


@api.get("/notes/<int:note_id>")
def read_note(note_id: int) -> ResponseReturnValue:
    return jsonify(_out(_note(note_id)))


@api.patch("/notes/<int:note_id>")
def update_note(note_id: int) -> ResponseReturnValue:
    auth.require_owner(_note(note_id)["author_id"], "the note's author")
    data = body(NOTE_FIELDS, partial=True)
    _check_refs(data)
    tag_ids = data.pop("tag_ids", None)
    _update("notes", note_id, data)
    if tag_ids is not None:
        _set_tags(note_id, tag_ids)
    return jsonify(_out(_note(note_id)))


@api.delete("/notes/<int:note_id>")
def delete_note(note_id: int) -> ResponseReturnValue:
    """The note's author, the project's owner, or an admin."""
    note = _note(note_id)
    user = auth.current_user()
    if user["id"] != _project(note["project_id"])["owner_id"]:
        auth.require_owner(note["author_id"], "the note's author or the project's owner")
    db.conn().execute("DELETE FROM notes WHERE id = %s", [note_id])
    return "", 204
