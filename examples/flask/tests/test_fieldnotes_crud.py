"""CRUD flows: one declaration per resource.

Flask's URL layout: collections ``/projects/``, items ``/projects/<id>`` with no trailing slash, and
nothing in a create response says where the item lives (no ``Location``, no ``url`` field). CrudFlow
first tries ``/projects/7/``, which Flask answers with a 404 (``strict_slashes``; see
``test_flask_slash_conventions``); it then tries the other slash form once and keeps the one that
answers, so no declaration here needs ``detail_path``.
"""

from __future__ import annotations

from typing import Any

from fieldnotes_api import ALICE, BOB_ID, CAROL, CAROL_ID, SEED_PROJECT_ID

from pytest_nocrud import CrudFlow, StepContext

PROJECT = CrudFlow(
    "project",
    endpoint="/projects/",
    create={"name": "Moth trap", "description": "Light trap by the shed, Fridays"},
    update={"name": "Moth trap (weekly)", "status": "archived"},
    as_user=CAROL,
    checks={"create": lambda ctx, project: _owned_by(project, CAROL_ID)},
)


def _owned_by(project: dict[str, Any], user_id: int) -> None:
    assert project["owner_id"] == user_id  # set by the server from the token, never sent
    assert project["status"] == "active"  # the column default


test_project_crud = PROJECT.as_test()

TAG = CrudFlow(
    "tag",
    endpoint="/tags/",
    create={"name": "dusk", "color": "#5f3dc4"},
    update={"name": "dawn"},
    as_user=ALICE,  # only an admin deletes tags (a member's delete: test_fieldnotes_rules.py)
)
test_tag_crud = TAG.as_test()


NOTE = CrudFlow(
    "note",
    endpoint="/notes/",
    create=lambda project_id: {"title": f"Seen at {project_id['name']}", "body": "Two barn owls"},
    update={"pinned": True, "body": "Two barn owls, one tawny"},
    requires={"project_id": PROJECT, "tag_ids": [TAG]},  # a foreign key, and a many-to-many list of ids
    as_user=CAROL,
)
test_note_crud = NOTE.as_test()


def seed_project(ctx: StepContext) -> int:
    """A prerequisite that creates nothing: the seed project, owned by bob, where anyone may write."""
    return SEED_PROJECT_ID


def _listed_in_its_project(ctx: StepContext, note: dict[str, Any]) -> None:
    in_project = ctx.client.get("/notes/", params={"project_id": SEED_PROJECT_ID}).json()
    assert note["id"] in [n["id"] for n in in_project]
    elsewhere = ctx.client.get("/notes/", params={"project_id": SEED_PROJECT_ID + 1000}).json()
    assert elsewhere == []


test_note_in_someone_elses_project = CrudFlow(
    "note",
    name="note_in_someone_elses_project",
    endpoint="/notes/",
    create={"title": "Kingfisher", "tag_ids": []},
    update={"title": "Kingfisher, twice"},
    requires={"project_id": seed_project},
    as_user=CAROL,
    checks={
        "create": lambda ctx, note: _not_bobs(note),
        "read": _listed_in_its_project,
    },
).as_test()


def _not_bobs(note: dict[str, Any]) -> None:
    assert note["author_id"] == CAROL_ID != BOB_ID
