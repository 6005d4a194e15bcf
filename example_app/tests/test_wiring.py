"""The wiring itself: isolation through the live app, fixture rows present, login works."""

import pytest

from pytest_nocrud import session_login


@pytest.mark.crud_flow
@pytest.mark.parametrize("round_", [1, 2, 3])
def test_each_test_sees_only_fixture_rows_and_its_own_writes(nocrud_client, round_):
    session_login(nocrud_client, "producer", "producer-pass")
    names = [a["name"] for a in nocrud_client.get("/api/actors/").json()]
    assert names == ["Ada Marlowe", "Tomas Reyes"]  # fixture rows only: earlier rounds' writes are gone
    created = nocrud_client.post("/api/actors/", json={"name": f"Round {round_}"})
    assert created.status_code == 201, created.text
    assert len(nocrud_client.get("/api/actors/").json()) == 3
