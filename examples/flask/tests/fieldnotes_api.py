"""Shared declarations for the fieldnotes flows: who can call the API, and one-request helpers.

The users are the seed rows every test starts with (db/seed.sql); each one's bearer token is
``<username>-token``. ``AsBearer`` sends it on every request; the token stays out of reprs and reports.
"""

from __future__ import annotations

from typing import Any

import httpx

from pytest_nocrud import AsBearer, expect_status

ALICE = AsBearer("alice-token", label="alice")  # id 1, admin: everything
BOB = AsBearer("bob-token", label="bob")  # id 2, member: owns the seed project
CAROL = AsBearer("carol-token", label="carol")  # id 3, member: wrote seed note 2
VICTOR = AsBearer("victor-token", label="victor")  # id 4, viewer: reads only

BOB_ID, CAROL_ID = 2, 3
SEED_PROJECT_ID = 1  # "Field survey", owned by bob, notes 1 (bob's) and 2 (carol's)
SEED_NOTE_IDS = [1, 2]
SEED_TAGS = ["todo", "idea"]


def create_project(client: httpx.Client, name: str = "Night walk", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = expect_status(client.post("/projects/", json={"name": name, **extra}), 201).json()
    return body


def create_note(client: httpx.Client, project_id: int, title: str = "Owls", **extra: Any) -> dict[str, Any]:
    response = client.post("/notes/", json={"project_id": project_id, "title": title, **extra})
    body: dict[str, Any] = expect_status(response, 201).json()
    return body
