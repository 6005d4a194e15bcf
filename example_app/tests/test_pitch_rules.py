"""The pitch lock and the one-vote rule: business rules that need several users in one flow.

Rule (``API.md``): once a pitch has a vote or a comment it is *locked*; PUT/PATCH of it is a **409**
for everyone, its owner and staff included. It unlocks when its last vote/comment is deleted, and the
owner may still delete it. Each user may vote once per pitch (a second vote is a 400).

The first test is written as a step ``Flow``: each step is one thing that happens in the story, later
steps get earlier steps' return values as ``ctx["step"]``, and a failure report says which step broke
(the vote? the refused edit?) and lists each step's requests, labelled by user. ``as_user=WRITER`` makes
the flow's own client the pitch owner; ``writer2`` comes from ``nocrud_client_factory``.

The rest are plain tests using the logged-in client fixtures from ``conftest.py``: the same kind of
scenario, shorter to write when the step table would add little.
"""

from __future__ import annotations

import httpx
import pytest
from pitchdesk_api import PITCH_LOCKED, WRITER, WRITER2, WRITER2_ID, WRITER_ID, create, create_pitch

from pytest_nocrud import Flow, StepContext, expect_status

pytestmark = pytest.mark.crud_flow

lock = Flow("pitch_locked_by_a_vote", as_user=WRITER)


@lock.step
def pitch(ctx: StepContext) -> dict:
    pitch = create_pitch(ctx.client, title="Undertow")
    assert pitch["is_locked"] is False
    return pitch


@lock.step(depends_on=pitch)
def writer2_votes(ctx: StepContext) -> dict:
    writer2 = ctx.fixtures["nocrud_client_factory"](as_user=WRITER2)
    return create(writer2, "/api/votes/", pitch=ctx["pitch"]["id"], value=1)


@lock.step(depends_on=writer2_votes)
def owner_edit_refused(ctx: StepContext) -> None:
    response = ctx.client.patch(f"/api/pitches/{ctx['pitch']['id']}/", json={"title": "Rewritten"})
    assert expect_status(response, 409).json() == {"detail": PITCH_LOCKED}


@lock.step(depends_on=owner_edit_refused)
def pitch_unchanged(ctx: StepContext) -> None:
    current = expect_status(ctx.client.get(f"/api/pitches/{ctx['pitch']['id']}/"), 200).json()
    assert current["title"] == "Undertow" and current["is_locked"] is True


test_pitch_locked_by_a_vote = lock.as_test(fixtures=["nocrud_client_factory"])


def test_comment_locks_the_pitch_too(writer: httpx.Client, writer2: httpx.Client, pitch: dict):
    create(writer2, "/api/pitch-comments/", pitch=pitch["id"], body="Act two drags.")
    full = {"production": pitch["production"], "title": "Fixed act two", "logline": pitch["logline"]}
    refused = writer.put(f"/api/pitches/{pitch['id']}/", json=full)
    assert expect_status(refused, 409).json() == {"detail": PITCH_LOCKED}


def test_lock_is_checked_before_validation(writer: httpx.Client, pitch: dict):
    create(writer, "/api/votes/", pitch=pitch["id"], value=1)  # one may vote on one's own pitch
    expect_status(writer.patch(f"/api/pitches/{pitch['id']}/", json={"title": ""}), 409)  # not 400


def test_staff_cannot_edit_a_locked_pitch_either(admin: httpx.Client, pitch: dict):
    create(admin, "/api/pitch-comments/", pitch=pitch["id"], body="Staff note.")
    refused = admin.patch(f"/api/pitches/{pitch['id']}/", json={"title": "Staff rewrite"})
    assert expect_status(refused, 409).json() == {"detail": PITCH_LOCKED}


def test_non_owner_gets_403_before_the_lock(writer: httpx.Client, writer2: httpx.Client, pitch: dict):
    create(writer2, "/api/votes/", pitch=pitch["id"], value=-1)
    expect_status(writer2.patch(f"/api/pitches/{pitch['id']}/", json={"title": "Mine now"}), 403)


def test_unlocked_again_after_the_last_vote_is_deleted(
    writer: httpx.Client, writer2: httpx.Client, pitch: dict
):
    url = f"/api/pitches/{pitch['id']}/"
    vote = create(writer2, "/api/votes/", pitch=pitch["id"], value=1)
    expect_status(writer.patch(url, json={"title": "Too early"}), 409)
    expect_status(writer2.delete(f"/api/votes/{vote['id']}/"), 204)
    edited = expect_status(writer.patch(url, json={"title": "Now editable"}), 200).json()
    assert edited["title"] == "Now editable" and edited["is_locked"] is False


def test_owner_may_delete_a_locked_pitch(writer: httpx.Client, writer2: httpx.Client, pitch: dict):
    vote = create(writer2, "/api/votes/", pitch=pitch["id"], value=1)
    comment = create(writer2, "/api/pitch-comments/", pitch=pitch["id"], body="Great.")
    expect_status(writer.delete(f"/api/pitches/{pitch['id']}/"), 204)
    expect_status(writer.get(f"/api/votes/{vote['id']}/"), 404)
    expect_status(writer.get(f"/api/pitch-comments/{comment['id']}/"), 404)


def test_one_vote_per_user_and_pitch(writer: httpx.Client, writer2: httpx.Client, pitch: dict):
    create(writer2, "/api/votes/", pitch=pitch["id"], value=1)
    again = writer2.post("/api/votes/", json={"pitch": pitch["id"], "value": -1})
    assert expect_status(again, 400).json() == {"non_field_errors": ["You have already voted on this pitch."]}
    # Another user may still vote, and the pitch's votes are exactly the two accepted ones.
    create(writer, "/api/votes/", pitch=pitch["id"], value=1)
    votes = expect_status(writer.get(f"/api/votes/?pitch={pitch['id']}"), 200).json()
    assert sorted((v["user"], v["value"]) for v in votes) == [(WRITER_ID, 1), (WRITER2_ID, 1)]
