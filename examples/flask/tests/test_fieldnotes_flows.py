"""Multi-step flows across users, and what one test's changes leave for the next (nothing)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fieldnotes_api import BOB, CAROL, SEED_NOTE_IDS, SEED_PROJECT_ID, create_note, create_project

from pytest_nocrud import Flow, StepContext, expect_status

# -- a shared project: bob makes it, carol writes in it, each keeps to their own --------------------

shared_project = Flow("shared_project", as_user=BOB)


@shared_project.step
def project(ctx: StepContext) -> dict[str, Any]:
    return create_project(ctx.client, "Bat walk", description="Detector on channel 45")


@shared_project.step(depends_on=[project])
def carols_note(ctx: StepContext) -> dict[str, Any]:
    carol = ctx.fixtures["nocrud_client_factory"](as_user=CAROL)
    return create_note(carol, ctx["project"]["id"], "Pipistrelles", tag_ids=[2])


@shared_project.step(depends_on=[carols_note])
def bob_may_not_edit_carols_note(ctx: StepContext) -> None:
    url = f"/notes/{ctx['carols_note']['id']}"
    expect_status(ctx.client.patch(url, json={"title": "Noctules"}), 403)
    assert ctx.client.get(url).json()["title"] == "Pipistrelles"


@shared_project.step(depends_on=[carols_note])
def carol_may_not_rename_the_project(ctx: StepContext) -> None:
    carol = ctx.fixtures["nocrud_client_factory"](as_user=CAROL)
    expect_status(carol.patch(f"/projects/{ctx['project']['id']}", json={"name": "Mine"}), 403)


@shared_project.step(depends_on=[bob_may_not_edit_carols_note, carol_may_not_rename_the_project])
def the_note_is_filed_under_its_tag(ctx: StepContext) -> None:
    ideas = expect_status(ctx.client.get("/notes/", params={"tag": "idea"}), 200).json()
    assert ctx["carols_note"]["id"] in [n["id"] for n in ideas]


test_shared_project = shared_project.as_test(fixtures=["nocrud_client_factory"])

# -- cascade: deleting a project deletes its notes --------------------------------------------------

cascade = Flow("project_delete_cascades", as_user=BOB, max_attempts=1)


@cascade.step
def notes_of_seed_project(ctx: StepContext) -> list[int]:
    notes = expect_status(ctx.client.get("/notes/", params={"project_id": SEED_PROJECT_ID}), 200).json()
    return [n["id"] for n in notes]


@cascade.step(depends_on=[notes_of_seed_project])
def delete_project(ctx: StepContext) -> None:
    assert ctx["notes_of_seed_project"] == SEED_NOTE_IDS
    expect_status(ctx.client.delete(f"/projects/{SEED_PROJECT_ID}"), 204)


@cascade.step(depends_on=[delete_project])
def its_notes_are_gone(ctx: StepContext) -> None:
    expect_status(ctx.client.get(f"/projects/{SEED_PROJECT_ID}"), 404)
    for note_id in SEED_NOTE_IDS:
        expect_status(ctx.client.get(f"/notes/{note_id}"), 404)
    assert ctx.client.get("/notes/").json() == []


test_project_delete_cascades = cascade.as_test()


@pytest.mark.crud_flow
def test_logout_revokes_the_token(bob: httpx.Client) -> None:
    expect_status(bob.post("/logout"), 204)
    assert bob.get("/me").status_code == 401
    assert bob.get("/me").json() == {"error": "invalid or revoked token"}


@pytest.mark.crud_flow
def test_no_test_sees_another_tests_changes(bob: httpx.Client) -> None:
    """Every test starts from the seed, whatever another test deleted or revoked, on any worker."""
    assert expect_status(bob.get("/me"), 200).json()["username"] == "bob"  # the token is back
    notes = expect_status(bob.get("/notes/", params={"project_id": SEED_PROJECT_ID}), 200).json()
    assert [n["id"] for n in notes] == SEED_NOTE_IDS


@pytest.mark.crud_flow
def test_a_write_lands_in_this_tests_database(carol: httpx.Client, nocrud_db: Any) -> None:
    """The app's DATABASE_URL is this test's database: what the API wrote, SQL reads."""
    created = create_project(carol, "Rock pools")
    with nocrud_db.connect() as conn:
        row = conn.execute("SELECT name, owner_id FROM projects WHERE id = %s", [created["id"]]).fetchone()
    assert row == ("Rock pools", created["owner_id"])
